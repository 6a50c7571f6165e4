#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>

#include "core/error.h"
#include "core/profile.h"
#include "core/progress.h"
#include "core/threads.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"

namespace lq {

// ---------------------------------------------------------------------------
// Loading

namespace {

std::vector<uint16_t> bf16_vector(const SafeTensors& st, const std::string& name, int64_t n) {
  Bf16Tensor t = bf16_weight(st, name, {n});
  return std::vector<uint16_t>(t.ptr, t.ptr + n);
}


}  // namespace

std::unique_ptr<Model> Model::load(const std::string& dir, WeightStorage storage) {
  std::unique_ptr<Model> m(new Model());
  m->dir_ = dir;
  m->cfg_ = load_model_config(dir);
  m->st_ = SafeTensors::open(dir);
  const ModelConfig& c = m->cfg_;
  const SafeTensors& st = m->st_;
  const int64_t H = c.hidden_size;

  Bf16Tensor emb = resident_bf16_weight(st, "model.embed_tokens", {c.vocab_size, H}, storage);
  m->embed_owned_ = std::move(emb.owned);
  m->embed_ = m->embed_owned_.empty() ? emb.ptr : m->embed_owned_.data();
  m->final_norm_ = bf16_vector(st, "model.norm.weight", H);
  if (c.tie_word_embeddings && !st.has("lm_head.weight")) {
    m->lm_head_ = std::make_unique<Bf16Linear>(m->embed_, c.vocab_size, H, std::vector<float>{});
  } else {
    m->lm_head_ = load_linear(st, c, "lm_head", c.vocab_size, H, false, storage);
  }
  // Layers load in parallel: quantized checkpoints are converted into kernel layouts
  // here (unpacking, validation, re-packing), which is CPU work per layer (llama-3.2-1b
  // AWQ: 11 s on one thread). Errors are reported for the lowest failing layer, as a
  // sequential load would.
  // Progress on stderr past 2 s (copying the bf16 weights of an 8B model into
  // memory, or converting a quantized one, takes tens of seconds).
  m->layers_.resize(size_t(c.num_layers));
  std::vector<std::exception_ptr> errors(size_t(c.num_layers));
  Progress prog("load " + dir, c.num_layers, "layers");
  std::mutex prog_mu;
  int64_t loaded = 0;
  parallel_for(c.num_layers, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      try {
        const std::string p = "model.layers." + std::to_string(i);
        LayerWeights& L = m->layers_[size_t(i)];
        L.q = load_linear(st, c, p + ".self_attn.q_proj", c.q_dim(), H, c.attention_bias, storage);
        L.k = load_linear(st, c, p + ".self_attn.k_proj", c.kv_dim(), H, c.attention_bias, storage);
        L.v = load_linear(st, c, p + ".self_attn.v_proj", c.kv_dim(), H, c.attention_bias, storage);
        L.o = load_linear(st, c, p + ".self_attn.o_proj", H, c.q_dim(), c.o_bias, storage);
        L.gate = load_linear(st, c, p + ".mlp.gate_proj", c.intermediate_size, H, c.mlp_bias, storage);
        L.up = load_linear(st, c, p + ".mlp.up_proj", c.intermediate_size, H, c.mlp_bias, storage);
        L.down = load_linear(st, c, p + ".mlp.down_proj", H, c.intermediate_size, c.mlp_bias, storage);
        L.attn_norm = bf16_vector(st, p + ".input_layernorm.weight", H);
        L.mlp_norm = bf16_vector(st, p + ".post_attention_layernorm.weight", H);
      } catch (...) {
        errors[size_t(i)] = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(prog_mu);
      prog.update(++loaded);
    }
  });
  prog.finish();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  m->inv_freq_ = rope_inv_freq(c);
  m->attn_factor_ = lq::rope_attention_factor(c);
  return m;
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const auto& name : st_.names()) n += st_.get(name).numel();
  return n;
}

int64_t Model::weight_bytes() const { return int64_t(st_.total_bytes()); }

int64_t Model::decode_weight_bytes() const {
  int64_t b = lm_head_->weight_bytes() + cfg_.hidden_size * 2;
  for (const auto& L : layers_) {
    for (const Linear* l : {L.q.get(), L.k.get(), L.v.get(), L.o.get(), L.gate.get(), L.up.get(), L.down.get()})
      b += l->weight_bytes();
  }
  return b;
}

int64_t Model::kv_bytes_per_token(Precision p) const {
  return 2 * cfg_.num_layers * cfg_.kv_dim() * (p == Precision::BF16 ? 2 : 4);
}

// ---------------------------------------------------------------------------
// Session

Session::Session(const Model& m, SessionOptions opt) : m_(m), opt_(std::move(opt)) {
  const ModelConfig& c = m.config();
  LQ_CHECK(opt_.capacity > 0, "session capacity must be positive (got {})", opt_.capacity);
  LQ_CHECK(opt_.capacity <= c.max_position_embeddings,
           "requested context of {} tokens exceeds the model's max_position_embeddings ({})", opt_.capacity,
           c.max_position_embeddings);
  LQ_CHECK(opt_.chunk_size > 0, "chunk size must be positive");
  cap_ = opt_.capacity;
  const size_t n = size_t(c.num_kv_heads) * size_t(cap_) * size_t(c.head_dim);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    if (opt_.precision == Precision::BF16) {
      kb_.emplace_back(new uint16_t[n]);
      vb_.emplace_back(new uint16_t[n]);
    } else {
      kf_.emplace_back(new float[n]);
      vf_.emplace_back(new float[n]);
    }
  }
}

int64_t Session::kv_bytes() const { return cap_ * m_.kv_bytes_per_token(opt_.precision); }

void Session::truncate(int64_t n) {
  LQ_CHECK(n >= 0 && n <= pos_, "cannot truncate a session at position {} to {}", pos_, n);
  pos_ = n;
}

std::vector<float> Session::forward(std::span<const int32_t> ids, int64_t n_logits) {
  const ModelConfig& c = m_.config();
  const int64_t T = int64_t(ids.size());
  LQ_CHECK(T > 0, "forward called with no tokens");
  n_logits = std::clamp<int64_t>(n_logits, 0, T);
  if (pos_ + T > cap_) {
    fail("sequence of {} tokens (at position {} + {} new) exceeds the context of {} tokens{}", pos_ + T, pos_, T,
         cap_, cap_ == c.max_position_embeddings ? " (the model's max_position_embeddings)" : "");
  }
  for (int64_t i = 0; i < T; ++i) {
    LQ_CHECK(ids[size_t(i)] >= 0 && ids[size_t(i)] < c.vocab_size, "token id {} at index {} is outside the vocabulary [0, {})",
             ids[size_t(i)], i, c.vocab_size);
  }
  std::vector<float> logits(static_cast<size_t>(n_logits * c.vocab_size));
  for (int64_t done = 0; done < T;) {
    const int64_t t = std::min(opt_.chunk_size, T - done);
    // Logits wanted from this chunk: those of the last n_logits positions overall.
    const int64_t first_wanted = T - n_logits;
    const int64_t chunk_end = done + t;
    const int64_t want = std::max<int64_t>(0, chunk_end - std::max(done, first_wanted));
    float* out = want > 0 ? logits.data() + (chunk_end - want - first_wanted) * c.vocab_size : nullptr;
    forward_chunk(ids.data() + done, t, want, out);
    done += t;
    if (opt_.progress && T > opt_.chunk_size) opt_.progress(done, T);
  }
  return logits;
}

namespace {
// Activation scratch of the forward pass, per calling thread (see Session in
// model.h), sized by the largest chunk seen; cache-line aligned (GEMM operands).
struct ForwardScratch {
  AlignedVector<float> x, h, q, k, v, att, g, u, cos, sin;
};
thread_local ForwardScratch tl_scratch;
}  // namespace

void Session::forward_chunk(const int32_t* ids, int64_t T, int64_t n_logits, float* logits_out) {
  const ModelConfig& c = m_.config();
  const Precision prec = opt_.precision;
  const int64_t H = c.hidden_size, D = c.head_dim, Hq = c.num_heads, Hkv = c.num_kv_heads;
  const int64_t QD = c.q_dim(), KVD = c.kv_dim(), I = c.intermediate_size;
  const int64_t pos0 = pos_;

  profile::PhaseTimer setup("embed+scratch");
  auto grow = [](AlignedVector<float>& b, int64_t n) -> AlignedVector<float>& {
    if (int64_t(b.size()) < n) b.resize(size_t(n));
    return b;
  };
  ForwardScratch& sc = tl_scratch;
  AlignedVector<float>& x = grow(sc.x, T * H);
  AlignedVector<float>& h = grow(sc.h, T * H);
  AlignedVector<float>& q = grow(sc.q, T * QD);
  AlignedVector<float>& k = grow(sc.k, T * KVD);
  AlignedVector<float>& v = grow(sc.v, T * KVD);
  AlignedVector<float>& att = grow(sc.att, T * QD);

  // Embedding rows (bf16 -> fp32, exact).
  const uint16_t* E = m_.embed_bf16();
  for (int64_t t = 0; t < T; ++t) {
    const uint16_t* row = E + int64_t(ids[t]) * H;
    for (int64_t j = 0; j < H; ++j) x[size_t(t * H + j)] = bf16_to_f32(row[j]);
  }

  // RoPE tables for this chunk's positions, as transformers computes them: the
  // angle float32(inv_freq * pos) in float32, cos/sin of it, times the attention factor.
  const int64_t half = D / 2;
  AlignedVector<float>& cos_t = grow(sc.cos, T * half);
  AlignedVector<float>& sin_t = grow(sc.sin, T * half);
  const std::vector<float>& inv = m_.inv_freq();
  const double af = m_.rope_attention_factor();
  for (int64_t t = 0; t < T; ++t) {
    const float p = float(pos0 + t);
    for (int64_t i = 0; i < half; ++i) {
      const float ang = inv[size_t(i)] * p;  // float32 product, as torch does
      cos_t[size_t(t * half + i)] = float(std::cos(double(ang)) * af);
      sin_t[size_t(t * half + i)] = float(std::sin(double(ang)) * af);
    }
  }

  setup.stop();
  const float eps = float(c.rms_norm_eps);
  const float scale = float(1.0 / std::sqrt(double(D)));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& L = m_.layer(l);
    profile::PhaseTimer pt("norm");
    cpu::rmsnorm(x.data(), L.attn_norm.data(), eps, T, H, h.data());
    pt.next("matmul.qkv");
    {
      const Linear* qkv[3] = {L.q.get(), L.k.get(), L.v.get()};
      float* out[3] = {q.data(), k.data(), v.data()};
      forward_group(qkv, h.data(), T, out, prec);
    }
    pt.next("rope+kv_store");
    cpu::rope_apply(q.data(), T, Hq, D, cos_t.data(), sin_t.data());
    cpu::rope_apply(k.data(), T, Hkv, D, cos_t.data(), sin_t.data());

    // Append K/V at positions pos0..pos0+T-1 in the [Hkv][cap][D] layout.
    cpu::KVView kv;
    kv.head_stride = cap_ * D;
    if (prec == Precision::BF16) {
      uint16_t* Kc = kb_[size_t(l)].get();
      uint16_t* Vc = vb_[size_t(l)].get();
      parallel_for(T, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t)
          for (int64_t hh = 0; hh < Hkv; ++hh) {
            uint16_t* kd = Kc + hh * cap_ * D + (pos0 + t) * D;
            uint16_t* vd = Vc + hh * cap_ * D + (pos0 + t) * D;
            const float* ks = k.data() + t * KVD + hh * D;
            const float* vs = v.data() + t * KVD + hh * D;
            cpu::f32_to_bf16_n(ks, D, kd);  // SIMD, bit-exact with f32_to_bf16
            cpu::f32_to_bf16_n(vs, D, vd);
          }
      });
      kv.k = Kc; kv.v = Vc; kv.bf16 = true;
    } else {
      float* Kc = kf_[size_t(l)].get();
      float* Vc = vf_[size_t(l)].get();
      for (int64_t t = 0; t < T; ++t)
        for (int64_t hh = 0; hh < Hkv; ++hh) {
          std::memcpy(Kc + hh * cap_ * D + (pos0 + t) * D, k.data() + t * KVD + hh * D, size_t(D) * 4);
          std::memcpy(Vc + hh * cap_ * D + (pos0 + t) * D, v.data() + t * KVD + hh * D, size_t(D) * 4);
        }
      kv.k = Kc; kv.v = Vc; kv.bf16 = false;
    }
    pt.next("attention");
    cpu::attention_causal(q.data(), T, Hq, Hkv, D, kv, pos0, scale, att.data(), prec);
    pt.next("matmul.o");
    // x += o(att): in the GEMM's epilogue where the kernels fuse it (same bits).
    if (!residual_forward(*L.o, att.data(), T, x.data(), prec)) {
      L.o->forward(att.data(), T, h.data(), prec);
      cpu::add_inplace(x.data(), h.data(), T * H);
    }
    pt.next("norm");
    cpu::rmsnorm(x.data(), L.mlp_norm.data(), eps, T, H, h.data());
    pt.next("matmul.gate_up");
    // Fused where the kernels allow (bf16 prefill on AMX: same bits, no fp32
    // gate/up products in memory, H handed to the down projection packed in
    // bf16); else the two projections and silu_mul.
    cpu::AmxPackedX hp;
    if (swiglu_forward_packed(*L.gate, *L.up, *L.down, h.data(), T, &hp, prec)) {
      pt.next("matmul.down");
      down_forward_packed(*L.down, hp, x.data(), /*add=*/true);  // x += down(H), same bits
    } else {
      // fp32 [T, I] buffers only on this path (the packed one needs none).
      AlignedVector<float>& g = grow(sc.g, T * I);
      if (!swiglu_forward(*L.gate, *L.up, h.data(), T, g.data(), prec)) {
        AlignedVector<float>& u = grow(sc.u, T * I);
        L.gate->forward(h.data(), T, g.data(), prec);
        L.up->forward(h.data(), T, u.data(), prec);
        pt.next("silu_mul");
        cpu::silu_mul(g.data(), u.data(), T * I, g.data());
      }
      pt.next("matmul.down");
      L.down->forward(g.data(), T, h.data(), prec);
      cpu::add_inplace(x.data(), h.data(), T * H);
    }
  }
  pos_ += T;

  if (n_logits > 0) {
    profile::ScopedTimer pt("lm_head");
    const float* last = x.data() + (T - n_logits) * H;
    cpu::rmsnorm(last, m_.final_norm().data(), eps, n_logits, H, h.data());
    m_.lm_head().forward(h.data(), n_logits, logits_out, prec);
  }
}

}  // namespace lq
