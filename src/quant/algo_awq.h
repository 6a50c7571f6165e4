// quant/algo_awq.h: AWQ (Lin et al., 2023) activation-aware 4-bit quantization, as
// AutoAWQ's quantizer.py implements it (the model-level wiring, which linears share a
// scale and what the loss runs through, is in model/quantize_model.cc).
//
// Weight quantizer (pseudo_quantize_tensor, zero_point=True): per (row, group of
// `group_size` consecutive inputs)
//   max = max(w), min = min(w)            (NOT widened to include 0, unlike GPTQ)
//   scale = max(max - min, 1e-5) / 15,    zero = clamp(-round(min / scale), 0, 15)
//   q = clamp(round(w / scale) + zero, 0, 15),  w' = (q - zero) * scale
// with the scale rounded to F16 (the AWQ GEMM storage type) before zero and codes.
//
// Scale search (_search_best_scale / _compute_best_scale) for a group of linears that
// share an input X (e.g. q/k/v after input_layernorm):
//   w_mean[k] = mean over rows of |W[r,k]| / (max |W[r, group(k)]| + 1e-6)   (all linears stacked)
//   x_mean[k] = mean over tokens of |X[t,k]|
//   for ratio = i / 20, i = 0..19:
//     s = clamp(x_mean^ratio / (w_mean^(1-ratio) + 1e-4), min 1e-4)   (duo scaling)
//     s /= sqrt(max(s) * min(s));  inf/nan -> 1
//     loss = mean squared difference of the block's output with W replaced by Q(W*s)/s
//   keep the s of the smallest loss (strictly smaller wins, so ties keep the earlier ratio).
//
// Clip search (_compute_best_clip), skipped for q/k: tokens subsampled with step
// max(1, T / 512); per (row, group) and shrink i = 0..9: max_val = absmax * (1 - i/20),
// w clamped to [-max_val, max_val] then quantized; error = mean over tokens of the squared
// difference of the group's partial dot product with the unclipped original; the best
// max_val (strictly smaller error than the best so far, starting from 1e9) is applied.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "quant/algo_common.h"
#include "quant/formats.h"

namespace lq::quant {

struct AwqOptions {
  int bits = 4;
  int64_t group_size = 128;
  int n_grid = 20;
  bool duo_scaling = true;
  int clip_grid = 20;
  double max_shrink = 0.5;
  int64_t clip_tokens = 512;
  ScaleStorage storage = ScaleStorage::F16;
};

// Throws lq::Error unless `in` is a multiple of the group size (AWQ's layout requires it).
void awq_check_shape(int64_t in, const AwqOptions& o, const char* what);

// Quantize W [rows][in] to AWQ's asymmetric groups.
AffineGroups awq_quantize(const float* W, int64_t rows, int64_t in, const AwqOptions& o);
// In-place fake quantization (W <- dequantized Q(W)).
void awq_pseudo_quantize(float* W, int64_t rows, int64_t in, const AwqOptions& o);

// w_mean over several linears [rows_i][in] stacked along rows.
std::vector<float> awq_w_mean(const std::vector<const float*>& Ws, const std::vector<int64_t>& rows, int64_t in,
                              int64_t group_size);
// x_mean[k] = mean_t |X[t,k]| (double accumulation).
std::vector<float> awq_x_mean(const float* X, int64_t T, int64_t in);
// The candidate scales for one ratio (normalised; inf/nan -> 1).
std::vector<float> awq_candidate_scales(const std::vector<float>& x_mean, const std::vector<float>& w_mean,
                                        double ratio, bool duo);

struct AwqScaleResult {
  std::vector<float> scales;  // [in]
  double best_ratio = -1;
  double best_loss = 0;
  std::vector<double> losses;  // per grid point
};

// loss(candidates): candidates[i] holds Q(W_i * s) / s for linear i ([rows_i][in]);
// returns the block's output MSE against the unquantized output.
using AwqLossFn = std::function<double(const std::vector<std::vector<float>>& candidates)>;
AwqScaleResult awq_search_scale(const std::vector<const float*>& Ws, const std::vector<int64_t>& rows, int64_t in,
                                const std::vector<float>& x_mean, const AwqOptions& o, const AwqLossFn& loss);

// Best clipping thresholds max_val [rows][n_groups] for W [rows][in] given inputs X [T][in].
std::vector<float> awq_search_clip(const float* W, int64_t rows, int64_t in, const float* X, int64_t T,
                                   const AwqOptions& o);
// W[r, k] = clamp(W[r, k], -max_val[r, g], max_val[r, g]).
void awq_apply_clip(float* W, int64_t rows, int64_t in, int64_t group_size, const std::vector<float>& max_val);

}  // namespace lq::quant
