#include "quant/algo_fp8.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"

namespace lq::quant {

Fp8Weight quantize_fp8(const float* W, int64_t out, int64_t in, ScaleStorage storage) {
  LQ_CHECK(out > 0 && in > 0, "FP8: empty weight [{}, {}]", out, in);
  Fp8Weight r;
  r.out = out;
  r.in = in;
  r.per_channel = true;
  r.w.resize(size_t(out * in));
  r.scale.resize(size_t(out));
  parallel_for(out, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* x = W + n * in;
      float am = 0.0f;
      for (int64_t k = 0; k < in; ++k) am = std::max(am, std::fabs(x[k]));
      const float s = round_scale(std::max(am / kFp8E4M3Max, FLT_EPSILON), storage);
      r.scale[size_t(n)] = s;
      for (int64_t k = 0; k < in; ++k)
        r.w[size_t(n * in + k)] = f32_to_fp8e4m3(std::clamp(x[k] / s, -kFp8E4M3Max, kFp8E4M3Max));
    }
  });
  return r;
}

}  // namespace lq::quant
