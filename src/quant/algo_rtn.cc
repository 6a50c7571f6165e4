#include "quant/algo_rtn.h"

#include "core/error.h"
#include "core/threads.h"

namespace lq::quant {

int64_t effective_group_size(int64_t group_size, int64_t in) {
  LQ_CHECK(group_size == -1 || group_size > 0, "group size must be -1 (per channel) or positive, got {}",
           group_size);
  if (group_size == -1 || group_size > in) return in;
  return group_size;
}

AffineGroups quantize_rtn(const float* W, int64_t out, int64_t in, const RtnOptions& o) {
  LQ_CHECK(o.bits >= 2 && o.bits <= 8, "RTN supports 2..8 bits, got {}", o.bits);
  LQ_CHECK(out > 0 && in > 0, "RTN: empty weight [{}, {}]", out, in);
  AffineGroups r;
  r.bits = o.bits;
  r.out = out;
  r.in = in;
  r.group_size = effective_group_size(o.group_size, in);
  r.sym = o.sym;
  const int64_t G = r.n_groups();
  r.q.resize(size_t(out * in));
  r.scales.resize(size_t(G * out));
  r.zeros.resize(size_t(G * out));
  MinMaxQuantizer mq{o.bits, o.sym, o.storage};
  parallel_for(out, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t g = 0; g < G; ++g) {
        const int64_t k0 = g * r.group_size, k1 = std::min(in, k0 + r.group_size);
        const float* x = W + n * in;
        const GroupParams p = mq.find_params(x + k0, k1 - k0);
        r.scales[size_t(g * out + n)] = p.scale;
        r.zeros[size_t(g * out + n)] = p.zero;
        for (int64_t k = k0; k < k1; ++k) r.q[size_t(n * in + k)] = mq.quantize(x[k], p);
      }
    }
  });
  return r;
}

}  // namespace lq::quant
