// quant/algo_gptq.h: GPTQ (Frantar et al., 2022), as AutoGPTQ's gptq.py implements it.
//
// For a linear layer W [out, in] and calibration inputs X (rows of length in):
//   H = 2 X^T X / n                      (Hessian of the layer's squared output error;
//                                         accumulated in double over all calibration rows)
//   dead columns (H[i,i] == 0): H[i,i] = 1, W[:, i] = 0
//   act-order: columns permuted by descending diag(H) (stable for ties)
//   H += damp * mean(diag(H)) * I        (damp = --damp, default 0.01; if the Cholesky
//                                         factorisation fails, damp is raised x10 and retried)
//   U = upper Cholesky factor of H^-1    (H^-1 = U^T U)
//   for 128-column blocks, column by column:
//       at a group start: min/max parameters of the group from the error-updated weights
//       q = quant(w); err = (w - q) / U[i,i]; the block's later columns -= err * U[i, i:]
//     then the lazy batch update W[:, block end:] -= Err_block * U[block, block end:]
//
// Faithful details of the reference:
//   * group parameters are taken from the running weight matrix at the group's first
//     column (for group sizes that do not start a 128-column block this includes the
//     lazy-batch updates of earlier blocks but not the current block's in-block updates,
//     exactly as the reference reads W, not W1);
//   * -1 (per channel) takes its parameters from the weights before dead columns are zeroed;
//   * static groups: parameters of every group computed up front from the (dead-zeroed)
//     weights in the original column order; with act-order the g_idx stays k / group_size;
//   * without static groups, act-order produces g_idx[k] = (position of k in the
//     permutation) / group_size, and scales/zeros are stored per permuted group.
// Differences (documented in docs/quantization.md): scales are rounded to their storage
// type (F16) when computed so the error feedback sees the stored values; U is computed as
// J inv(chol(J H J)) J (J the reversal permutation), which equals the reference's
// chol(cholesky_inverse(chol(H)), upper) mathematically with half the work and without
// forming H^-1 explicitly. The factorisation runs in fp32 (oneDNN sgemm for the bulk,
// double for the 128x128 diagonal blocks), like the reference's torch fp32 linalg.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/algo_common.h"
#include "quant/formats.h"

namespace lq::quant {

// Accumulates sum_t x_t x_t^T over calibration rows x_t in double.
class Hessian {
 public:
  explicit Hessian(int64_t dim);
  // X: [rows][dim] fp32.
  void add(const float* X, int64_t rows);
  int64_t dim() const { return dim_; }
  int64_t rows() const { return rows_; }
  // H = 2 / n * sum x x^T (n = rows seen), [dim][dim] row-major.
  std::vector<double> matrix() const;
  // The same, moving the accumulator out (the Hessian is empty afterwards; saves a copy).
  std::vector<double> take_matrix();

 private:
  int64_t dim_;
  int64_t rows_ = 0;
  std::vector<double> sum_;
  std::vector<float> tmp_;
};

struct GptqOptions {
  int bits = 4;
  int64_t group_size = 128;  // -1 = per channel
  bool sym = true;
  bool act_order = false;
  bool static_groups = false;
  double damp = 0.01;        // fraction of mean(diag(H))
  int64_t block_size = 128;
  int max_damp_retries = 3;  // damp x10 per retry
  ScaleStorage storage = ScaleStorage::F16;
};

struct GptqResult {
  AffineGroups w;
  double damp_used = 0;    // the fraction that succeeded
  int damp_retries = 0;
  double loss = 0;         // sum over weights of (w - q)^2 / U[i,i]^2 / 2 (the reference's "error")
  int64_t dead_columns = 0;
};

// W: [out][in] fp32, H: [in][in] (Hessian::matrix()). Throws lq::Error (naming the
// shapes) if the factorisation fails even after the damping retries.
GptqResult gptq_quantize(const float* W, int64_t out, int64_t in, std::vector<double> H,
                         const GptqOptions& o);

// Upper Cholesky factor U of A^-1 (A symmetric positive definite, [n][n] row-major,
// only the lower triangle read). Returns false if A is not numerically positive definite.
// Exposed for tests.
bool upper_cholesky_of_inverse(const std::vector<float>& A, int64_t n, std::vector<float>& U);

}  // namespace lq::quant
