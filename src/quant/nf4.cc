// quant/nf4.cc: bitsandbytes NF4 tables and the reference semantics of Nf4Blocks.
#include "quant/nf4.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace lq::quant {

uint8_t nf4_nearest(float x) {
  // Midpoints between consecutive codes, as float32 literals (bitsandbytes' tree).
  static constexpr float kMid[15] = {
      -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
      -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
      0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
      0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f};
  // The tree's answer equals the number of midpoints strictly below x
  // (every comparison is 'x > mid'). NaN compares false everywhere: code 0,
  // as in the tree.
  uint8_t c = 0;
  for (float m : kMid) c += (x > m) ? 1 : 0;
  return c;
}

namespace {

// torch.linspace(start, end, steps) in float32 on the CPU: the first half is
// start + step * i, the second half end - step * (steps - 1 - i).
std::vector<float> torch_linspace_f32(float start, float end, int64_t steps) {
  std::vector<float> r(static_cast<size_t>(steps));
  if (steps == 1) {
    r[0] = start;
    return r;
  }
  const float step = (end - start) / float(steps - 1);
  const int64_t half = steps / 2;
  for (int64_t i = 0; i < steps; ++i)
    r[size_t(i)] = i < half ? start + step * float(i) : end - step * float(steps - 1 - i);
  return r;
}

}  // namespace

const std::array<float, 256>& bnb_dynamic_map() {
  static const std::array<float, 256> map = [] {
    // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    // for i in 0..6: fraction_items = 2^i + 1, boundaries = linspace(0.1, 1, ...),
    // means = (b[:-1] + b[1:]) / 2, values +-10^(i-6) * means; then 0 and 1.0.
    std::vector<float> data;
    const int max_exp = 7, non_sign_bits = 7;
    for (int i = 0; i < max_exp; ++i) {
      const int64_t items = (int64_t(1) << (i + non_sign_bits - max_exp)) + 1;
      const std::vector<float> b = torch_linspace_f32(0.1f, 1.0f, items);
      const float p = float(std::pow(10.0, double(-(max_exp - 1) + i)));  // python float -> fp32 operand
      std::vector<float> means;
      for (size_t j = 0; j + 1 < b.size(); ++j) means.push_back((b[j] + b[j + 1]) / 2.0f);
      for (float m : means) data.push_back(p * m);
      for (float m : means) data.push_back(-p * m);
    }
    data.push_back(0.0f);
    data.push_back(1.0f);
    LQ_ASSERT(data.size() == 256);
    std::sort(data.begin(), data.end());
    std::array<float, 256> a{};
    std::copy(data.begin(), data.end(), a.begin());
    return a;
  }();
  return map;
}

void nf4_decode_absmax(Nf4Blocks& w, const std::array<float, 256>& dyn) {
  LQ_ASSERT(w.double_quant && w.nested_blocksize > 0);
  w.absmax.resize(w.absmax_q.size());
  for (size_t b = 0; b < w.absmax_q.size(); ++b) {
    const float v = dyn[w.absmax_q[b]] * w.nested_absmax[b / size_t(w.nested_blocksize)];
    w.absmax[b] = v + w.offset;
  }
}

void validate(const Nf4Blocks& w, const std::string& what) {
  LQ_CHECK(w.out > 0 && w.in > 0, "{}: nf4 weight has shape [{}, {}]", what, w.out, w.in);
  const int64_t n = w.out * w.in;
  LQ_CHECK(n % 2 == 0, "{}: nf4 weight [{}, {}] has an odd number of elements", what, w.out, w.in);
  LQ_CHECK(w.blocksize > 0, "{}: nf4 blocksize {} must be positive", what, w.blocksize);
  LQ_CHECK(int64_t(w.packed.size()) == n / 2, "{}: nf4 weight holds {} bytes, expected {}", what, w.packed.size(),
           n / 2);
  const int64_t nb = (n + w.blocksize - 1) / w.blocksize;
  LQ_CHECK(int64_t(w.absmax.size()) == nb, "{}: nf4 weight has {} absmax values, expected {} (blocksize {})", what,
           w.absmax.size(), nb, w.blocksize);
  for (float a : w.absmax) LQ_CHECK(std::isfinite(a), "{}: nf4 absmax {} is not finite", what, a);
  if (w.double_quant) {
    LQ_CHECK(w.nested_blocksize > 0, "{}: nf4 nested_blocksize {} must be positive", what, w.nested_blocksize);
    LQ_CHECK(int64_t(w.absmax_q.size()) == nb, "{}: nf4 weight has {} absmax codes, expected {}", what,
             w.absmax_q.size(), nb);
    const int64_t nn = (nb + w.nested_blocksize - 1) / w.nested_blocksize;
    LQ_CHECK(int64_t(w.nested_absmax.size()) == nn, "{}: nf4 weight has {} nested_absmax values, expected {}", what,
             w.nested_absmax.size(), nn);
    for (float a : w.nested_absmax) LQ_CHECK(std::isfinite(a), "{}: nf4 nested_absmax {} is not finite", what, a);
    LQ_CHECK(std::isfinite(w.offset), "{}: nf4 nested_offset {} is not finite", what, w.offset);
  }
}

std::vector<float> dequantize(const Nf4Blocks& w) {
  const int64_t n = w.out * w.in;
  std::vector<float> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    r[size_t(i)] = kNf4Code[nf4_nibble(w.packed.data(), i)] * w.absmax[size_t(i / w.blocksize)];
  return r;
}

}  // namespace lq::quant
