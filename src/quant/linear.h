// quant/linear.h: linear layers, one implementation per weight family.
//
// y = x W^T (+ b), W is [out, in] as Hugging Face stores it. The model layer only
// sees this interface; the weight family (bf16 here; affine int groups, NF4 and
// FP8 in quantized checkpoints) decides the kernels.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/aligned.h"
#include "core/precision.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "kernels/cpu/amx_gemm.h"

namespace lq {

// A linear layer y = x W^T (+ b). W is [out, in]. Implementations per weight
// family (bf16 here; quantized families plug in the same way).
class Linear {
 public:
  virtual ~Linear() = default;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // X: [M, in] fp32, Y: [M, out] fp32.
  virtual void forward(const float* X, int64_t M, float* Y, Precision p) const = 0;
  // Bytes of weight data streamed by one forward (for bandwidth accounting).
  virtual int64_t weight_bytes() const = 0;
};

// bf16 weight [out, in] in `owned` (resident_bf16_weight: a copy of the
// checkpoint's bf16 tensor, or its conversion from another float type), or
// pointing into the mapped checkpoint (LQ_MAP_WEIGHTS=1) or another layer's data.
class Bf16Linear : public Linear {
 public:
  Bf16Linear(const uint16_t* w, int64_t out, int64_t in, std::vector<float> bias,
             AlignedVector<uint16_t> owned = {});
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void forward(const float* X, int64_t M, float* Y, Precision p) const override;
  int64_t weight_bytes() const override { return out_ * in_ * 2; }
  const uint16_t* data() const { return w_; }
  bool has_bias() const { return !bias_.empty(); }
  void add_bias(float* Y, int64_t M) const;

 private:
  const uint16_t* w_;
  int64_t out_, in_;
  std::vector<float> bias_;
  AlignedVector<uint16_t> owned_;
};

// Y[i] = layers[i]->forward(X) for up to 3 layers reading the same X (q/k/v). When
// all are Bf16Linear, one grouped GEMM (cpu::matmul_bf16w_group: X packed once in
// bf16 prefill) then each layer's bias; otherwise each layer's forward. Results are
// bitwise those of the separate forwards.
void forward_group(std::span<const Linear* const> layers, const float* X, int64_t M, std::span<float* const> Y,
                   Precision p);

// SwiGLU MLP input projections in one fused pass, H = silu(X gate^T) * (X up^T), when
// both layers are bias-free bf16 Bf16Linear and the kernels have a fused path for
// this call (cpu::swiglu_bf16w: BF16 prefill on AMX); the result is bitwise that of
// the two forwards and cpu::silu_mul. Returns false (nothing written) otherwise.
bool swiglu_forward(const Linear& gate, const Linear& up, const float* X, int64_t M, float* H, Precision p);

// The whole MLP's products in two steps with H kept packed in bf16 between them
// (cpu::swiglu_bf16w_packed, cpu::matmul_bf16w_packed): when gate, up and down are
// bias-free Bf16Linear of matching shapes and the kernels fuse this call (BF16
// prefill on AMX). swiglu_forward_packed returns false (nothing written)
// otherwise; down_forward_packed then gives Y = H down^T, bitwise the result of
// swiglu_forward and down.forward.
bool swiglu_forward_packed(const Linear& gate, const Linear& up, const Linear& down, const float* X, int64_t M,
                           cpu::AmxPackedX* H, Precision p);
// add: Y += H down^T (the residual connection, bitwise the product followed by
// cpu::add_inplace).
void down_forward_packed(const Linear& down, const cpu::AmxPackedX& H, float* Y, bool add = false);

// Y += X layer^T in one pass, the product added in the GEMM's epilogue (never
// stored): when the layer is a bias-free Bf16Linear and the kernels fuse this call
// (cpu::matmul_bf16w_add: BF16 prefill on AMX). Bitwise layer.forward into a buffer
// followed by cpu::add_inplace. Returns false (nothing written) otherwise.
bool residual_forward(const Linear& layer, const float* X, int64_t M, float* Y, Precision p);

// Builds the linear layer `prefix` (e.g. "model.layers.0.self_attn.q_proj") of
// shape [out, in] from a checkpoint: bf16/f16/f32 weights here, quantized formats
// according to the config's quantization_config. Checks every tensor's dtype and
// shape and names file and tensor on error.
// Where bf16 weights live (resident_bf16_weight): copied into process memory
// (the default for running a model), or read in place from the mapped file (for
// commands that only inspect a model: no copy, instant).
enum class WeightStorage { Resident, Mapped };

std::unique_ptr<Linear> load_linear(const SafeTensors& st, const ModelConfig& cfg, const std::string& prefix,
                                    int64_t out, int64_t in, bool bias,
                                    WeightStorage storage = WeightStorage::Resident);

// Float tensor (BF16/F16/F32) as fp32 values; throws naming the tensor otherwise.
std::vector<float> tensor_to_f32(const TensorInfo& t);

// A bf16 view of a float weight tensor of the given shape: the mapped bytes if the
// checkpoint stores bf16 (at an even address), else a converted copy in `owned`.
struct Bf16Tensor {
  const uint16_t* ptr = nullptr;
  AlignedVector<uint16_t> owned;
};
Bf16Tensor bf16_weight(const SafeTensors& st, const std::string& name, const std::vector<int64_t>& shape);

// The weight `prefix`.weight as bf16 in process memory for the engine: a mapped
// bf16 tensor is copied into `owned` (64-byte aligned, on transparent huge pages,
// core/aligned.h) and its mapped pages are released (SafeTensors::release), so
// resident memory stays one copy of the weights. Why: the GEMM reads 64-byte
// aligned weight rows in place (downloaded checkpoints align tensors to 8 bytes
// only), and with 2 MiB pages decode and prefill lose fewer cycles to TLB misses
// (docs/kernels-matmul.md "Resident weights"). The copy is read with pread, so
// the mapped pages are never touched. WeightStorage::Mapped, or the environment
// LQ_MAP_WEIGHTS=1, keeps the mapped bytes instead (no copy; slower kernels,
// pages faulted in lazily).
Bf16Tensor resident_bf16_weight(const SafeTensors& st, const std::string& prefix, const std::vector<int64_t>& shape,
                                WeightStorage storage = WeightStorage::Resident);

}  // namespace lq
