// quant/formats.h: the internal representation of each quantized weight family.
//
// One representation per family; every on-disk layout (GPTQ v1/v2, AWQ GEMM,
// bitsandbytes NF4, compressed-tensors) converts to and from these, and every
// quantization algorithm produces them. Kernels may re-pack them for speed, but
// these are the reference semantics: dequantize() defines the weight's value.
//
// All weights are logically W[out][in] (Hugging Face's [N, K]).
//
// Reference numerics (fp32, exactly as dequantize() below computes them; every
// kernel is tested against these values):
//   affine: W = scale * (float(q) - zero)      (q - zero is exact; one fp32 rounding)
//   NF4:    W = NF4_CODE[nibble] * absmax       (one fp32 rounding; absmax decoded as
//           DYN[absmax_q] * nested_absmax + offset, two fp32 roundings, as bitsandbytes)
//   FP8:    W = fp8_to_f32(code) * scale        (one fp32 rounding)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lq::quant {

// Affine integer groups (GPTQ, AWQ, RTN):
//   W[n][k] = scale[g][n] * (q[n][k] - zero[g][n]),   g = g_idx[k]
// q in [0, 2^bits). Without act-order g_idx[k] = k / group_size; with it (GPTQ
// desc_act) g_idx is an arbitrary map given by the checkpoint. group_size = in for
// per-channel quantization. Symmetric schemes have zero = 2^(bits-1).
struct AffineGroups {
  int bits = 4;
  int64_t out = 0, in = 0;
  int64_t group_size = 128;
  bool sym = true;
  std::vector<uint8_t> q;        // [out][in], one code per byte
  std::vector<float> scales;     // [n_groups][out]
  std::vector<float> zeros;      // [n_groups][out], integer-valued
  std::vector<int32_t> g_idx;    // [in]; empty = k / group_size
  int64_t n_groups() const { return group_size > 0 ? (in + group_size - 1) / group_size : 1; }
  int32_t group_of(int64_t k) const { return g_idx.empty() ? int32_t(k / group_size) : g_idx[size_t(k)]; }
};

// bitsandbytes NF4 (blocks of `blocksize` over the row-major flattened weight):
//   W.flat[i] = NF4_CODE[nibble(i)] * absmax[i / blocksize]
// nibble(2j) is the HIGH nibble of packed[j], nibble(2j+1) the low one.
// With double quantization, absmax is stored as 8-bit codes of the dynamic map
// in blocks of `nested_blocksize`: absmax[b] = DYN[absmax_q[b]] * nested_absmax[b / nb] + offset.
struct Nf4Blocks {
  int64_t out = 0, in = 0;
  int64_t blocksize = 64;
  std::vector<uint8_t> packed;        // [out*in/2]
  std::vector<float> absmax;          // [n_blocks] decoded (always filled)
  bool double_quant = false;
  int64_t nested_blocksize = 256;
  std::vector<uint8_t> absmax_q;      // [n_blocks] when double_quant
  std::vector<float> nested_absmax;   // [ceil(n_blocks / nested_blocksize)]
  float offset = 0.0f;                // mean subtracted before nested quantization
};

// FP8 E4M3FN weights with scales:  W[n][k] = fp8_to_f32(w[n][k]) * scale[per_channel ? n : 0]
// Activations (W8A8): dynamic per-token scales unless input_scale (static per-tensor) is set;
// w8a8 = false is weight-only FP8 (compressed-tensors without input_activations).
struct Fp8Weight {
  int64_t out = 0, in = 0;
  std::vector<uint8_t> w;             // [out][in] E4M3FN codes
  std::vector<float> scale;           // [out] or [1]
  bool per_channel = true;
  std::optional<float> input_scale;   // static activation scale; nullopt = dynamic per token
  bool w8a8 = true;                   // quantize activations to E4M3 before the product
};

// ---- Reference semantics (implemented in affine.cc / nf4.cc / fp8.cc) ----------

// Checks sizes, code ranges and finiteness; throws lq::Error naming `what`
// (e.g. "model.layers.0.mlp.up_proj") and the offending field.
void validate(const AffineGroups& w, const std::string& what);
void validate(const Nf4Blocks& w, const std::string& what);
void validate(const Fp8Weight& w, const std::string& what);

// W[out][in] as fp32, by the formulas at the top of this file.
std::vector<float> dequantize(const AffineGroups& w);
std::vector<float> dequantize(const Nf4Blocks& w);
std::vector<float> dequantize(const Fp8Weight& w);

// One weight value, identical to dequantize()[n * in + k].
inline float affine_value(const AffineGroups& w, int64_t n, int64_t k) {
  const size_t gi = size_t(w.group_of(k)) * size_t(w.out) + size_t(n);
  return w.scales[gi] * (float(w.q[size_t(n * w.in + k)]) - w.zeros[gi]);
}

}  // namespace lq::quant
