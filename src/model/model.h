// model/model.h: Llama / Qwen2 decoder (the families of Llama-3.x and Qwen-2.5).
//
// A Model binds the tensors of a Hugging Face checkpoint (bf16 weights copied
// into huge-page memory, or left mapped: WeightStorage) to the decoder's structure. A Session owns a KV cache and
// runs the forward pass over chunks of tokens. The model layer sees only the
// kernels' public API (kernels/cpu/*.h), never their internals.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/aligned.h"
#include "core/precision.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "quant/linear.h"

namespace lq {

struct LayerWeights {
  std::unique_ptr<Linear> q, k, v, o, gate, up, down;
  std::vector<uint16_t> attn_norm, mlp_norm;  // bf16 bits [hidden]
};

class Model {
 public:
  // Loads <dir>/config.json, generation_config.json and the safetensors.
  // Throws lq::Error naming the file/tensor on any problem.
  // `storage`: bf16 weights copied into process memory (default, for running the
  // model) or read in place from the mapped checkpoint (inspection; see
  // resident_bf16_weight in quant/linear.h).
  static std::unique_ptr<Model> load(const std::string& dir, WeightStorage storage = WeightStorage::Resident);

  const ModelConfig& config() const { return cfg_; }
  const std::string& dir() const { return dir_; }
  const LayerWeights& layer(int64_t i) const { return layers_[size_t(i)]; }
  const Linear& lm_head() const { return *lm_head_; }
  const uint16_t* embed_bf16() const { return embed_; }  // [vocab, hidden]
  const std::vector<uint16_t>& final_norm() const { return final_norm_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  double rope_attention_factor() const { return attn_factor_; }

  int64_t parameter_count() const;
  int64_t weight_bytes() const;  // bytes of all tensors in the checkpoint
  // Bytes of weights streamed per decoded token (all linears + lm_head + embed row).
  int64_t decode_weight_bytes() const;
  // KV-cache bytes per token for a precision (bf16: 2 bytes per element, fp32: 4).
  int64_t kv_bytes_per_token(Precision p) const;

 private:
  Model() = default;
  std::string dir_;
  ModelConfig cfg_;
  SafeTensors st_;
  const uint16_t* embed_ = nullptr;
  AlignedVector<uint16_t> embed_owned_;
  std::unique_ptr<Linear> lm_head_;
  std::vector<uint16_t> final_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<float> inv_freq_;
  double attn_factor_ = 1.0;
};

struct SessionOptions {
  Precision precision = Precision::BF16;
  int64_t capacity = 0;      // KV positions to allocate (required, <= max_position_embeddings)
  int64_t chunk_size = 512;  // prefill chunk (tokens per forward step)
  // Called after each prefill chunk with (tokens done, tokens total).
  std::function<void(int64_t, int64_t)> progress;
};

// A KV cache plus the forward pass. Not thread-safe; one sequence at a time.
class Session {
 public:
  Session(const Model& m, SessionOptions opt);

  // Appends `ids` at the current position and returns the logits of the last
  // `n_logits` of them as [n_logits][vocab] (row-major). Prefill runs in chunks.
  // Throws lq::Error if the sequence would exceed the cache or the model's context.
  std::vector<float> forward(std::span<const int32_t> ids, int64_t n_logits = 1);

  int64_t position() const { return pos_; }
  int64_t capacity() const { return cap_; }
  void reset() { pos_ = 0; }
  // Replaces SessionOptions::progress (nullptr: none).
  void set_progress(std::function<void(int64_t, int64_t)> f) { opt_.progress = std::move(f); }
  // Drop cached positions >= n (keeps a shared prefix for the next request).
  void truncate(int64_t n);
  int64_t kv_bytes() const;
  Precision precision() const { return opt_.precision; }
  const Model& model() const { return m_; }

 private:
  void forward_chunk(const int32_t* ids, int64_t T, int64_t n_logits, float* logits_out);

  const Model& m_;
  SessionOptions opt_;
  int64_t cap_ = 0;
  int64_t pos_ = 0;
  // Per layer: K and V, [Hkv][cap][D], float or bf16 bits by precision.
  // Left uninitialised (default-initialised arrays) so pages are only touched
  // as positions are written: resident memory follows the sequence length.
  std::vector<std::unique_ptr<float[]>> kf_, vf_;
  std::vector<std::unique_ptr<uint16_t[]>> kb_, vb_;
  // Activation scratch is per calling thread (model.cc), shared by all sessions
  // run on that thread: a new session reuses the pages of the previous one
  // instead of faulting in and zeroing fresh ones (10-130 ms per 512-token chunk
  // of llama-3.2-1b, depending on how fast the kernel finds huge pages).
};

}  // namespace lq
