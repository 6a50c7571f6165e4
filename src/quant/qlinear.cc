// quant/qlinear.cc: the quantized Linear implementations (see qlinear.h).
#include "quant/qlinear.h"

#include <algorithm>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "quant/affine.h"
#include "quant/fp8.h"
#include "quant/nf4.h"

namespace lq {

namespace {
void add_bias(float* Y, int64_t M, int64_t N, const std::vector<float>& b) {
  if (b.empty()) return;
  for (int64_t m = 0; m < M; ++m) cpu::add_inplace(Y + m * N, b.data(), N);
}
void check_bias(const std::vector<float>& b, int64_t out) {
  LQ_CHECK(b.empty() || int64_t(b.size()) == out, "linear layer: bias has {} values, expected {}", b.size(), out);
}
}  // namespace

// ---- AffineLinear -------------------------------------------------------------------

AffineLinear::AffineLinear(const quant::AffineGroups& w, std::vector<float> bias)
    : out_(w.out), in_(w.in), bias_(std::move(bias)) {
  quant::validate(w, "AffineLinear");
  check_bias(bias_, out_);
  const quant::GroupOrder o = quant::group_order(w);
  const int64_t G = int64_t(o.group_start.size()) - 1, N = out_, K = in_;
  const bool identity = quant::trivial_g_idx(w);
  if (!identity) perm_ = o.perm;
  group_start_ = o.group_start;
  const int64_t row_bytes = cpu::qaffine_row_bytes(w.bits, K);
  // Symmetric 8-bit (every zero 128): store q - 128 as int8 with zero 0, the same
  // values (q - zero) with one subtraction less per weight in the decode loop.
  const bool signed8 = w.bits == 8 && std::all_of(w.zeros.begin(), w.zeros.end(), [](auto z) { return z == 128; });
  const int shift = signed8 ? 128 : 0;
  q_.assign(size_t(N * row_bytes), 0);
  for (int64_t n = 0; n < N; ++n) {
    uint8_t* r = q_.data() + n * row_bytes;
    const uint8_t* src = w.q.data() + n * K;
    for (int64_t k = 0; k < K; ++k)
      cpu::qaffine_put_code(r, w.bits, k, int(src[identity ? k : o.perm[size_t(k)]]) - shift);
  }
  scales_.resize(size_t(N * G));
  zeros_.resize(size_t(N * G));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < N; ++n) {
      scales_[size_t(n * G + g)] = w.scales[size_t(g * N + n)];
      zeros_[size_t(n * G + g)] = int32_t(w.zeros[size_t(g * N + n)]) - shift;
    }
  v_.signed8 = signed8;
  v_.bits = w.bits;
  v_.N = N;
  v_.K = K;
  v_.row_bytes = row_bytes;
  v_.q = q_.data();
  v_.n_groups = G;
  v_.group_start = group_start_.data();
  v_.scales = scales_.data();
  v_.zeros = zeros_.data();
  v_.perm = perm_.empty() ? nullptr : perm_.data();
}

void AffineLinear::forward(const float* X, int64_t M, float* Y, Precision p) const {
  if (M <= cpu::kGemvMaxRows) cpu::qgemv_affine(v_, X, M, Y, p);
  else cpu::qgemm_affine(v_, X, M, Y, p);
  add_bias(Y, M, out_, bias_);
}

int64_t AffineLinear::weight_bytes() const {
  return int64_t(q_.size() + scales_.size() * 4 + zeros_.size() * 4 + perm_.size() * 4);
}

// ---- Nf4Linear ----------------------------------------------------------------------

Nf4Linear::Nf4Linear(const quant::Nf4Blocks& w, std::vector<float> bias)
    : out_(w.out), in_(w.in), packed_(w.packed), absmax_(w.absmax),
      code_(quant::kNf4Code.begin(), quant::kNf4Code.end()), bias_(std::move(bias)) {
  quant::validate(w, "Nf4Linear");
  check_bias(bias_, out_);
  v_.N = out_;
  v_.K = in_;
  v_.blocksize = w.blocksize;
  v_.packed = packed_.data();
  v_.absmax = absmax_.data();
  v_.code = code_.data();
}

void Nf4Linear::forward(const float* X, int64_t M, float* Y, Precision p) const {
  if (M <= cpu::kGemvMaxRows && cpu::qgemv_nf4_supported(v_)) cpu::qgemv_nf4(v_, X, M, Y, p);
  else cpu::qgemm_nf4(v_, X, M, Y, p);
  add_bias(Y, M, out_, bias_);
}

int64_t Nf4Linear::weight_bytes() const { return int64_t(packed_.size() + absmax_.size() * 4); }

// ---- Fp8Linear ----------------------------------------------------------------------

Fp8Linear::Fp8Linear(const quant::Fp8Weight& w, std::vector<float> bias)
    : out_(w.out), in_(w.in), w_(w.w), scale_(w.scale), bias_(std::move(bias)), input_scale_(w.input_scale),
      w8a8_(w.w8a8) {
  quant::validate(w, "Fp8Linear");
  check_bias(bias_, out_);
  v_.N = out_;
  v_.K = in_;
  v_.w = w_.data();
  v_.scale = scale_.data();
  v_.per_channel = w.per_channel;
}

std::vector<float> Fp8Linear::activation_scales(const float* X, int64_t M) const {
  if (!w8a8_) return {};
  std::vector<float> s(static_cast<size_t>(M));
  auto rows = [&](int64_t a, int64_t b) {
    for (int64_t m = a; m < b; ++m) s[size_t(m)] = input_scale_ ? *input_scale_ : quant::fp8_dynamic_scale(X + m * in_, in_);
  };
  if (M > cpu::kGemvMaxRows) parallel_for(M, rows);  // prefill: one absmax pass per token
  else rows(0, M);
  return s;
}

void Fp8Linear::forward(const float* X, int64_t M, float* Y, Precision p) const {
  const std::vector<float> s = activation_scales(X, M);
  const float* sp = w8a8_ ? s.data() : nullptr;
  if (M <= cpu::kGemvMaxRows) cpu::qgemv_fp8(v_, X, M, sp, Y, p);
  else cpu::qgemm_fp8(v_, X, M, sp, Y, p);
  add_bias(Y, M, out_, bias_);
}

int64_t Fp8Linear::weight_bytes() const { return int64_t(w_.size() + scale_.size() * 4); }

}  // namespace lq
