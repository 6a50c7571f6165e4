// quant/qlinear.h: Linear implementations for quantized weight families.
//
// Each is built from the reference representation (quant/formats.h) and keeps a
// kernel layout of about the quantized size (kernels/cpu/qgemv.h):
//   AffineLinear: int4 (2 per byte, 128-column chunks, qgemv.h) or int8 codes in a column
//     order where each group is contiguous (act-order g_idx becomes a permutation
//     of the inputs), fp32 scales and int32 zeros per (output, group).
//   Nf4Linear: the bitsandbytes packed bytes as stored, decoded fp32 absmax.
//   Fp8Linear: the E4M3 codes and scales; W8A8 quantizes each activation row
//     (token) to E4M3 with a dynamic scale max(absmax/448, 1/(448*512)) or the
//     static input_scale, then multiplies (weight-only FP8 when w8a8 is false).
// forward(): M <= cpu::kGemvMaxRows uses the fused GEMVs (AVX512-BF16 for int4 in
// Precision::BF16 when the CPU has it), larger M the dequantize-a-tile + oneDNN
// path; FP8 W8A8 (and weight-only FP8 in BF16) prefill runs the AMX GEMM on the
// E4M3 codes when AMX is available (kernels/cpu/qgemv.h, amx_gemm.h). In Precision::F32 the result is the fp32 value
// of X * W^T for the reference W (within fp32 accumulation error); BF16 rounds
// activations to bf16 (prefill also rounds the dequantized W tile to bf16).
#pragma once

#include <cstdint>
#include <new>
#include <optional>
#include <vector>

#include "core/aligned.h"
#include "kernels/cpu/qgemv.h"
#include "quant/formats.h"
#include "quant/linear.h"

namespace lq {

class AffineLinear : public Linear {
 public:
  AffineLinear(const quant::AffineGroups& w, std::vector<float> bias);
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void forward(const float* X, int64_t M, float* Y, Precision p) const override;
  int64_t weight_bytes() const override;
  const cpu::QAffineView& view() const { return v_; }

 private:
  int64_t out_, in_;
  std::vector<uint8_t, CacheAlignedAllocator<uint8_t>> q_;
  std::vector<int32_t> group_start_, zeros_, perm_;
  std::vector<float> scales_, bias_;
  cpu::QAffineView v_;
};

class Nf4Linear : public Linear {
 public:
  Nf4Linear(const quant::Nf4Blocks& w, std::vector<float> bias);
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void forward(const float* X, int64_t M, float* Y, Precision p) const override;
  int64_t weight_bytes() const override;
  const cpu::QNf4View& view() const { return v_; }

 private:
  int64_t out_, in_;
  std::vector<uint8_t> packed_;
  std::vector<float> absmax_, code_, bias_;
  cpu::QNf4View v_;
};

class Fp8Linear : public Linear {
 public:
  Fp8Linear(const quant::Fp8Weight& w, std::vector<float> bias);
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void forward(const float* X, int64_t M, float* Y, Precision p) const override;
  int64_t weight_bytes() const override;
  const cpu::QFp8View& view() const { return v_; }
  // Activation scales forward() uses for the rows of X (empty for weight-only).
  std::vector<float> activation_scales(const float* X, int64_t M) const;

 private:
  int64_t out_, in_;
  std::vector<uint8_t> w_;
  std::vector<float> scale_, bias_;
  std::optional<float> input_scale_;
  bool w8a8_;
  cpu::QFp8View v_;
};

}  // namespace lq
