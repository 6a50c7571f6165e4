// quant/affine.cc: reference semantics of AffineGroups (validate, dequantize)
// and the act-order helpers of affine.h.
#include "quant/affine.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace lq::quant {

void validate(const AffineGroups& w, const std::string& what) {
  LQ_CHECK(w.bits == 4 || w.bits == 8, "{}: {}-bit affine weights are not supported (4 or 8)", what, w.bits);
  LQ_CHECK(w.out > 0 && w.in > 0, "{}: affine weight has shape [{}, {}]", what, w.out, w.in);
  LQ_CHECK(w.group_size > 0, "{}: group_size {} must be positive (use `in` for per-channel)", what, w.group_size);
  LQ_CHECK(int64_t(w.q.size()) == w.out * w.in, "{}: affine weight holds {} codes, expected {}", what, w.q.size(),
           w.out * w.in);
  const int64_t G = w.g_idx.empty() ? w.n_groups() : 0;
  int64_t groups = G;
  if (!w.g_idx.empty()) {
    LQ_CHECK(int64_t(w.g_idx.size()) == w.in, "{}: g_idx has {} entries, expected {}", what, w.g_idx.size(), w.in);
    int32_t mx = -1;
    for (int64_t k = 0; k < w.in; ++k) {
      LQ_CHECK(w.g_idx[size_t(k)] >= 0, "{}: g_idx[{}] = {} is negative", what, k, w.g_idx[size_t(k)]);
      mx = std::max(mx, w.g_idx[size_t(k)]);
    }
    groups = int64_t(mx) + 1;
  }
  LQ_CHECK(int64_t(w.scales.size()) >= groups * w.out && w.scales.size() % size_t(w.out) == 0,
           "{}: {} scales do not cover {} groups x {} outputs", what, w.scales.size(), groups, w.out);
  LQ_CHECK(w.zeros.size() == w.scales.size(), "{}: {} zeros but {} scales", what, w.zeros.size(), w.scales.size());
  const int qmax = (1 << w.bits) - 1;
  for (size_t i = 0; i < w.q.size(); ++i)
    LQ_CHECK(w.q[i] <= qmax, "{}: code {} at [{}, {}] exceeds {} bits", what, w.q[i], int64_t(i) / w.in,
             int64_t(i) % w.in, w.bits);
  for (size_t i = 0; i < w.scales.size(); ++i) {
    LQ_CHECK(std::isfinite(w.scales[i]), "{}: scale {} (group {}, output {}) is not finite", what, w.scales[i],
             int64_t(i) / w.out, int64_t(i) % w.out);
    LQ_CHECK(std::isfinite(w.zeros[i]) && w.zeros[i] == std::nearbyint(w.zeros[i]) && std::fabs(w.zeros[i]) < 65536,
             "{}: zero point {} (group {}, output {}) is not a small integer", what, w.zeros[i], int64_t(i) / w.out,
             int64_t(i) % w.out);
  }
}

std::vector<float> dequantize(const AffineGroups& w) {
  std::vector<float> r(size_t(w.out * w.in));
  for (int64_t n = 0; n < w.out; ++n)
    for (int64_t k = 0; k < w.in; ++k) r[size_t(n * w.in + k)] = affine_value(w, n, k);
  return r;
}

bool trivial_g_idx(const AffineGroups& w) {
  if (w.g_idx.empty()) return true;
  for (int64_t k = 0; k < w.in; ++k)
    if (w.g_idx[size_t(k)] != int32_t(k / w.group_size)) return false;
  return true;
}

GroupOrder group_order(const AffineGroups& w) {
  GroupOrder o;
  o.perm.resize(size_t(w.in));
  std::iota(o.perm.begin(), o.perm.end(), 0);
  int64_t G = 0;
  if (!trivial_g_idx(w)) {
    std::stable_sort(o.perm.begin(), o.perm.end(),
                     [&](int32_t a, int32_t b) { return w.g_idx[size_t(a)] < w.g_idx[size_t(b)]; });
    for (int32_t g : w.g_idx) G = std::max<int64_t>(G, int64_t(g) + 1);
  } else {
    G = w.n_groups();
  }
  o.group_start.assign(size_t(G + 1), 0);
  for (int64_t k = 0; k < w.in; ++k) ++o.group_start[size_t(w.group_of(k)) + 1];
  for (int64_t g = 0; g < G; ++g) o.group_start[size_t(g + 1)] += o.group_start[size_t(g)];
  return o;
}

}  // namespace lq::quant
