#include "quant/linear.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "quant/checkpoint.h"
#include "quant/qlinear.h"

namespace lq {

// ---------------------------------------------------------------------------
// Bf16Linear

Bf16Linear::Bf16Linear(const uint16_t* w, int64_t out, int64_t in, std::vector<float> bias,
                       AlignedVector<uint16_t> owned)
    : w_(w), out_(out), in_(in), bias_(std::move(bias)), owned_(std::move(owned)) {
  if (!owned_.empty()) w_ = owned_.data();
}

void Bf16Linear::forward(const float* X, int64_t M, float* Y, Precision p) const {
  cpu::matmul_bf16w(X, M, in_, w_, out_, Y, p);
  add_bias(Y, M);
}

void Bf16Linear::add_bias(float* Y, int64_t M) const {
  if (bias_.empty()) return;
  for (int64_t m = 0; m < M; ++m) cpu::add_inplace(Y + m * out_, bias_.data(), out_);
}

void forward_group(std::span<const Linear* const> layers, const float* X, int64_t M, std::span<float* const> Y,
                   Precision p) {
  LQ_CHECK(layers.size() == Y.size() && !layers.empty() && layers.size() <= 3,
           "forward_group: {} layers for {} outputs (1 to 3 supported)", layers.size(), Y.size());
  cpu::Bf16WeightOut outs[3];
  const Bf16Linear* bl[3] = {nullptr, nullptr, nullptr};
  bool all_bf16 = true;
  for (size_t i = 0; i < layers.size(); ++i) {
    bl[i] = dynamic_cast<const Bf16Linear*>(layers[i]);
    all_bf16 = all_bf16 && bl[i] != nullptr && bl[i]->in_features() == layers[0]->in_features();
    if (bl[i]) outs[i] = cpu::Bf16WeightOut{bl[i]->data(), bl[i]->out_features(), Y[i]};
  }
  if (!all_bf16) {
    for (size_t i = 0; i < layers.size(); ++i) layers[i]->forward(X, M, Y[i], p);
    return;
  }
  cpu::matmul_bf16w_group(X, M, layers[0]->in_features(), outs, int(layers.size()), p);
  for (size_t i = 0; i < layers.size(); ++i) bl[i]->add_bias(Y[i], M);
}

namespace {
// The layer as a bias-free Bf16Linear (what the fused kernels take), or nullptr.
const Bf16Linear* bias_free_bf16(const Linear& layer) {
  const auto* b = dynamic_cast<const Bf16Linear*>(&layer);
  return b != nullptr && !b->has_bias() ? b : nullptr;
}

// gate and up as bias-free Bf16Linear of one shape (what the fused SwiGLU kernels
// take), or {nullptr, nullptr}.
std::pair<const Bf16Linear*, const Bf16Linear*> fusable_gate_up(const Linear& gate, const Linear& up) {
  const Bf16Linear* g = bias_free_bf16(gate);
  const Bf16Linear* u = bias_free_bf16(up);
  if (g == nullptr || u == nullptr) return {nullptr, nullptr};
  if (g->in_features() != u->in_features() || g->out_features() != u->out_features()) return {nullptr, nullptr};
  return {g, u};
}
}  // namespace

bool swiglu_forward(const Linear& gate, const Linear& up, const float* X, int64_t M, float* H, Precision p) {
  const auto [g, u] = fusable_gate_up(gate, up);
  if (g == nullptr) return false;
  return cpu::swiglu_bf16w(X, M, g->in_features(), g->data(), u->data(), g->out_features(), H, p);
}

bool swiglu_forward_packed(const Linear& gate, const Linear& up, const Linear& down, const float* X, int64_t M,
                           cpu::AmxPackedX* H, Precision p) {
  const auto [g, u] = fusable_gate_up(gate, up);
  const Bf16Linear* d = bias_free_bf16(down);
  if (g == nullptr || d == nullptr || d->in_features() != g->out_features()) return false;
  return cpu::swiglu_bf16w_packed(X, M, g->in_features(), g->data(), u->data(), g->out_features(), H, p);
}

void down_forward_packed(const Linear& down, const cpu::AmxPackedX& H, float* Y, bool add) {
  const Bf16Linear* d = bias_free_bf16(down);
  LQ_CHECK(d != nullptr && d->in_features() == H.K,
           "down_forward_packed: the layer must be a bias-free bf16 linear with {} inputs", H.K);
  cpu::matmul_bf16w_packed(H, d->data(), d->out_features(), Y, add);
}

bool residual_forward(const Linear& layer, const float* X, int64_t M, float* Y, Precision p) {
  const Bf16Linear* l = bias_free_bf16(layer);
  if (l == nullptr) return false;
  return cpu::matmul_bf16w_add(X, M, l->in_features(), l->data(), l->out_features(), Y, p);
}

// Reads a float tensor of any float dtype into fp32 values.
std::vector<float> tensor_to_f32(const TensorInfo& t) {
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::BF16: { uint16_t h; std::memcpy(&h, t.data + 2 * i, 2); out[i] = bf16_to_f32(h); break; }
      case DType::F16: { uint16_t h; std::memcpy(&h, t.data + 2 * i, 2); out[i] = f16_to_f32(h); break; }
      case DType::F32: std::memcpy(&out[i], t.data + 4 * i, 4); break;
      default: fail("{}: tensor '{}' has dtype {}, expected a float type", t.file, t.name, dtype_name(t.dtype));
    }
  }
  return out;
}

Bf16Tensor bf16_weight(const SafeTensors& st, const std::string& name, const std::vector<int64_t>& shape) {
  const TensorInfo& t = st.get(name);
  if (t.shape != shape) {
    std::string want = "[";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    want += "]";
    fail("{}: tensor '{}' has shape {}, expected {} from config.json", t.file, name, t.shape_str(), want);
  }
  Bf16Tensor r;
  if (t.dtype == DType::BF16) {
    if (reinterpret_cast<uintptr_t>(t.data) % 2 == 0) {
      r.ptr = reinterpret_cast<const uint16_t*>(t.data);
    } else {
      // Safetensors does not require alignment (a writer may place a bf16 tensor after an
      // odd-sized U8 one): copy it rather than read misaligned memory.
      r.owned.resize(t.nbytes / 2);
      std::memcpy(r.owned.data(), t.data, t.nbytes);
      r.ptr = r.owned.data();
    }
    return r;
  }
  if (t.dtype != DType::F16 && t.dtype != DType::F32) {
    fail("{}: tensor '{}' has dtype {}; the native engine runs BF16/F16/F32 checkpoints "
         "(quantized checkpoints need their quantization_config)", t.file, name, dtype_name(t.dtype));
  }
  std::vector<float> f = tensor_to_f32(t);
  r.owned.resize(f.size());
  for (size_t i = 0; i < f.size(); ++i) r.owned[i] = f32_to_bf16(f[i]);
  r.ptr = r.owned.data();
  return r;
}

Bf16Tensor resident_bf16_weight(const SafeTensors& st, const std::string& prefix, const std::vector<int64_t>& shape,
                                WeightStorage storage) {
  Bf16Tensor t = bf16_weight(st, prefix + ".weight", shape);
  const char* keep = std::getenv("LQ_MAP_WEIGHTS");
  if (!t.owned.empty() || storage == WeightStorage::Mapped || (keep != nullptr && std::strcmp(keep, "1") == 0))
    return t;
  const size_t n = st.get(prefix + ".weight").nbytes / 2;
  t.owned.resize(n);
  st.read(prefix + ".weight", t.owned.data());  // pread: the mapped pages are never touched
  t.ptr = t.owned.data();
  return t;
}

namespace {

std::vector<float> bias_vector(const SafeTensors& st, const std::string& name, int64_t n) {
  const TensorInfo& t = st.get(name);
  LQ_CHECK(t.shape == std::vector<int64_t>{n}, "{}: tensor '{}' has shape {}, expected [{}]", t.file, name,
           t.shape_str(), n);
  return tensor_to_f32(t);
}

}  // namespace

std::unique_ptr<Linear> load_linear(const SafeTensors& st, const ModelConfig& cfg, const std::string& prefix,
                                    int64_t out, int64_t in, bool bias, WeightStorage storage) {
  std::vector<float> b;
  if (bias) b = bias_vector(st, prefix + ".bias", out);
  // Quantized checkpoints: the family is decided per layer by the tensors present
  // (layers the checkpoint keeps in bf16, e.g. lm_head, load as Bf16Linear).
  if (auto scheme = quant::quant_scheme_of(cfg, "config.json (" + st.source() + ")")) {
    // The quantized layers copy their tensors into kernel layouts: the mapped
    // pages are then released so that RSS counts the weights once.
    std::unique_ptr<Linear> q;
    switch (quant::stored_family(st, *scheme, prefix)) {
      case quant::WeightFamily::Affine:
        q = std::make_unique<AffineLinear>(quant::read_affine(st, *scheme, prefix, out, in), std::move(b));
        break;
      case quant::WeightFamily::Nf4:
        q = std::make_unique<Nf4Linear>(quant::read_nf4(st, *scheme, prefix, out, in), std::move(b));
        break;
      case quant::WeightFamily::Fp8:
        q = std::make_unique<Fp8Linear>(quant::read_fp8(st, *scheme, prefix, out, in), std::move(b));
        break;
      case quant::WeightFamily::Float: break;
    }
    if (q) {
      st.release(prefix);
      return q;
    }
  }
  Bf16Tensor w = resident_bf16_weight(st, prefix, {out, in}, storage);
  return std::make_unique<Bf16Linear>(w.ptr, out, in, std::move(b), std::move(w.owned));
}

}  // namespace lq
