#include "quant/algo_nf4.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "core/error.h"
#include "core/threads.h"
#include "quant/nf4.h"

namespace lq::quant {

uint8_t bnb_dynamic_quantize(const std::array<float, 256>& code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code[size_t(pivot)];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[size_t(pivot)];
  }
  if (upper_pivot == 255) upper = code[size_t(upper_pivot)];
  if (lower_pivot == 0) lower = code[size_t(lower_pivot)];
  if (x > val) {
    const float mid = (upper + val) * 0.5f;
    return uint8_t(x > mid ? upper_pivot : pivot);
  }
  const float mid = (lower + val) * 0.5f;
  return uint8_t(x < mid ? lower_pivot : pivot);
}

Nf4Blocks quantize_nf4(const float* W, int64_t out, int64_t in, const Nf4Options& o) {
  LQ_CHECK(out > 0 && in > 0, "NF4: empty weight [{}, {}]", out, in);
  LQ_CHECK(o.blocksize > 0 && o.blocksize % 2 == 0, "NF4 blocksize must be positive and even, got {}", o.blocksize);
  LQ_CHECK(o.nested_blocksize > 0, "NF4 nested blocksize must be positive, got {}", o.nested_blocksize);
  Nf4Blocks r;
  r.out = out;
  r.in = in;
  r.blocksize = o.blocksize;
  const int64_t n = out * in, nb = (n + o.blocksize - 1) / o.blocksize;
  r.packed.assign(size_t((n + 1) / 2), 0);
  r.absmax.resize(size_t(nb));
  parallel_for(nb, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * o.blocksize, i1 = std::min(n, i0 + o.blocksize);
      float am = -FLT_MAX;
      for (int64_t i = i0; i < i1; ++i) am = std::fmax(am, std::fabs(W[i]));
      r.absmax[size_t(b)] = am;
      const float inv = 1.0f / am;
      // blocksize is even, so a block never shares a byte with the next one; an odd
      // tail pads a 0 value (times the reciprocal, as the kernel's zero-filled load).
      for (int64_t i = i0; i < i1; i += 2) {
        const float a = W[i] * inv;
        const float c = i + 1 < n ? W[i + 1] * inv : 0.0f * inv;
        r.packed[size_t(i / 2)] = uint8_t((nf4_nearest(a) << 4) | nf4_nearest(c));
      }
    }
  });
  if (o.double_quant) {
    r.double_quant = true;
    r.nested_blocksize = o.nested_blocksize;
    double sum = 0;
    for (float a : r.absmax) sum += double(a);
    r.offset = float(sum / double(nb));
    const int64_t nn = (nb + o.nested_blocksize - 1) / o.nested_blocksize;
    r.nested_absmax.resize(size_t(nn));
    r.absmax_q.resize(size_t(nb));
    const std::array<float, 256>& dyn = bnb_dynamic_map();
    for (int64_t j = 0; j < nn; ++j) {
      const int64_t b0 = j * o.nested_blocksize, b1 = std::min(nb, b0 + o.nested_blocksize);
      float am = -FLT_MAX;
      for (int64_t b = b0; b < b1; ++b) am = std::fmax(am, std::fabs(r.absmax[size_t(b)] - r.offset));
      r.nested_absmax[size_t(j)] = am;
      const float inv = 1.0f / am;
      for (int64_t b = b0; b < b1; ++b)
        r.absmax_q[size_t(b)] = bnb_dynamic_quantize(dyn, (r.absmax[size_t(b)] - r.offset) * inv);
    }
    nf4_decode_absmax(r, dyn);  // absmax now holds the decoded values readers will see
  }
  return r;
}

}  // namespace lq::quant
