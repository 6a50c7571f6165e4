#include "quant/linear.h"

#include <cstring>

#include "core/error.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"

namespace lq {

// ---------------------------------------------------------------------------
// Bf16Linear

Bf16Linear::Bf16Linear(const uint16_t* w, int64_t out, int64_t in, std::vector<float> bias,
                       std::vector<uint16_t> owned)
    : w_(w), out_(out), in_(in), bias_(std::move(bias)), owned_(std::move(owned)) {
  if (!owned_.empty()) w_ = owned_.data();
}

void Bf16Linear::forward(const float* X, int64_t M, float* Y, Precision p) const {
  cpu::matmul_bf16w(X, M, in_, w_, out_, Y, p);
  if (!bias_.empty()) {
    for (int64_t m = 0; m < M; ++m) cpu::add_inplace(Y + m * out_, bias_.data(), out_);
  }
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
    LQ_CHECK(reinterpret_cast<uintptr_t>(t.data) % 2 == 0, "{}: tensor '{}' is not 2-byte aligned", t.file, name);
    r.ptr = reinterpret_cast<const uint16_t*>(t.data);
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

namespace {

std::vector<float> bias_vector(const SafeTensors& st, const std::string& name, int64_t n) {
  const TensorInfo& t = st.get(name);
  LQ_CHECK(t.shape == std::vector<int64_t>{n}, "{}: tensor '{}' has shape {}, expected [{}]", t.file, name,
           t.shape_str(), n);
  return tensor_to_f32(t);
}

}  // namespace

std::unique_ptr<Linear> load_linear(const SafeTensors& st, const ModelConfig& cfg, const std::string& prefix,
                                    int64_t out, int64_t in, bool bias) {
  if (!cfg.quantization_method.empty()) {
    fail("{}: quantization_config.quant_method '{}' is not supported by this build (tensor '{}')", st.source(),
         cfg.quantization_method, prefix + ".weight");
  }
  Bf16Tensor w = bf16_weight(st, prefix + ".weight", {out, in});
  std::vector<float> b;
  if (bias) b = bias_vector(st, prefix + ".bias", out);
  return std::make_unique<Bf16Linear>(w.ptr, out, in, std::move(b), std::move(w.owned));
}

}  // namespace lq
