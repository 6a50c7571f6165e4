// quant/fp8.cc: FP8 E4M3FN tables, activation quantization and the reference
// semantics of Fp8Weight (see fp8.h and formats.h).
#include "quant/fp8.h"

#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/formats.h"

namespace lq::quant {

const std::array<float, 256>& fp8_decode_table() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> a{};
    for (int i = 0; i < 256; ++i) a[size_t(i)] = fp8e4m3_to_f32(uint8_t(i));
    return a;
  }();
  return t;
}

float fp8_dynamic_scale(const float* x, int64_t n) {
  // max |x| ignoring NaN (as std::fmax does), in 8 independent lanes the compiler
  // can keep in registers; max is exact, so the order does not matter.
  float m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const float a = std::fabs(x[i + j]);
      m[j] = a > m[j] ? a : m[j];
    }
  float amax = 0.0f;
  for (; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  for (float v : m) amax = std::fmax(amax, v);
  return std::fmax(amax / kFp8E4M3Max, kFp8MinScale);
}

void fp8_quantize_row(const float* x, int64_t n, float scale, uint8_t* codes) {
  for (int64_t i = 0; i < n; ++i) codes[i] = f32_to_fp8e4m3(x[i] / scale);
}

void validate(const Fp8Weight& w, const std::string& what) {
  LQ_CHECK(w.out > 0 && w.in > 0, "{}: fp8 weight has shape [{}, {}]", what, w.out, w.in);
  LQ_CHECK(int64_t(w.w.size()) == w.out * w.in, "{}: fp8 weight holds {} codes, expected {}", what, w.w.size(),
           w.out * w.in);
  const size_t ns = w.per_channel ? size_t(w.out) : 1;
  LQ_CHECK(w.scale.size() == ns, "{}: fp8 weight has {} scales, expected {} ({})", what, w.scale.size(), ns,
           w.per_channel ? "per channel" : "per tensor");
  for (float s : w.scale)
    LQ_CHECK(std::isfinite(s) && s > 0.0f, "{}: fp8 weight scale {} is not a finite positive number", what, s);
  if (w.input_scale)
    LQ_CHECK(std::isfinite(*w.input_scale) && *w.input_scale > 0.0f,
             "{}: fp8 input_scale {} is not a finite positive number", what, *w.input_scale);
  for (size_t i = 0; i < w.w.size(); ++i)
    LQ_CHECK(!fp8_is_nan(w.w[i]), "{}: fp8 weight code at [{}, {}] is NaN (0x{:02x})", what,
             int64_t(i) / w.in, int64_t(i) % w.in, w.w[i]);
}

std::vector<float> dequantize(const Fp8Weight& w) {
  const auto& t = fp8_decode_table();
  std::vector<float> r(w.w.size());
  for (int64_t n = 0; n < w.out; ++n) {
    const float s = w.scale[w.per_channel ? size_t(n) : 0];
    for (int64_t k = 0; k < w.in; ++k) r[size_t(n * w.in + k)] = t[w.w[size_t(n * w.in + k)]] * s;
  }
  return r;
}

}  // namespace lq::quant
