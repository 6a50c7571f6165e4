#include "quant/algo_awq.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/threads.h"

namespace lq::quant {

namespace {

struct AwqGroup {
  float scale, zero;
};

AwqGroup awq_params(const float* w, int64_t n, const AwqOptions& o) {
  const float maxq = float((1 << o.bits) - 1);
  float mx = -std::numeric_limits<float>::infinity(), mn = std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    mx = std::max(mx, w[i]);
    mn = std::min(mn, w[i]);
  }
  AwqGroup g;
  g.scale = round_scale(std::max(mx - mn, 1e-5f) / maxq, o.storage);
  g.zero = std::clamp(-std::nearbyint(mn / g.scale), 0.0f, maxq);
  return g;
}

inline uint8_t awq_code(float w, const AwqGroup& g, float maxq) {
  return uint8_t(std::clamp(std::nearbyint(w / g.scale) + g.zero, 0.0f, maxq));
}

}  // namespace

void awq_check_shape(int64_t in, const AwqOptions& o, const char* what) {
  LQ_CHECK(o.group_size > 0, "AWQ needs a positive group size (got {})", o.group_size);
  LQ_CHECK(in % o.group_size == 0,
           "AWQ: {} has {} input features, not a multiple of the group size {} (use --group-size with a divisor)",
           what, in, o.group_size);
}

AffineGroups awq_quantize(const float* W, int64_t rows, int64_t in, const AwqOptions& o) {
  awq_check_shape(in, o, "a linear layer");
  AffineGroups r;
  r.bits = o.bits;
  r.out = rows;
  r.in = in;
  r.group_size = o.group_size;
  r.sym = false;
  const int64_t G = in / o.group_size;
  r.q.resize(size_t(rows * in));
  r.scales.resize(size_t(G * rows));
  r.zeros.resize(size_t(G * rows));
  const float maxq = float((1 << o.bits) - 1);
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; ++n)
      for (int64_t g = 0; g < G; ++g) {
        const float* w = W + n * in + g * o.group_size;
        const AwqGroup p = awq_params(w, o.group_size, o);
        r.scales[size_t(g * rows + n)] = p.scale;
        r.zeros[size_t(g * rows + n)] = p.zero;
        for (int64_t k = 0; k < o.group_size; ++k) r.q[size_t(n * in + g * o.group_size + k)] = awq_code(w[k], p, maxq);
      }
  });
  return r;
}

void awq_pseudo_quantize(float* W, int64_t rows, int64_t in, const AwqOptions& o) {
  awq_check_shape(in, o, "a linear layer");
  const int64_t G = in / o.group_size;
  const float maxq = float((1 << o.bits) - 1);
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; ++n)
      for (int64_t g = 0; g < G; ++g) {
        float* w = W + n * in + g * o.group_size;
        const AwqGroup p = awq_params(w, o.group_size, o);
        for (int64_t k = 0; k < o.group_size; ++k) w[k] = (float(awq_code(w[k], p, maxq)) - p.zero) * p.scale;
      }
  });
}

std::vector<float> awq_w_mean(const std::vector<const float*>& Ws, const std::vector<int64_t>& rows, int64_t in,
                              int64_t group_size) {
  LQ_CHECK(Ws.size() == rows.size() && !Ws.empty(), "awq_w_mean: mismatched inputs");
  std::vector<double> acc(static_cast<size_t>(in), 0.0);
  int64_t total = 0;
  const int64_t G = in / group_size;
  for (size_t l = 0; l < Ws.size(); ++l) {
    for (int64_t n = 0; n < rows[l]; ++n) {
      const float* w = Ws[l] + n * in;
      for (int64_t g = 0; g < G; ++g) {
        float am = 0;
        for (int64_t k = 0; k < group_size; ++k) am = std::max(am, std::fabs(w[g * group_size + k]));
        const float den = am + 1e-6f;
        for (int64_t k = 0; k < group_size; ++k) acc[size_t(g * group_size + k)] += double(std::fabs(w[g * group_size + k]) / den);
      }
    }
    total += rows[l];
  }
  std::vector<float> m(static_cast<size_t>(in));
  for (int64_t k = 0; k < in; ++k) m[size_t(k)] = float(acc[size_t(k)] / double(total));
  return m;
}

std::vector<float> awq_x_mean(const float* X, int64_t T, int64_t in) {
  std::vector<double> acc(static_cast<size_t>(in), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < in; ++k) acc[size_t(k)] += std::fabs(double(X[t * in + k]));
  std::vector<float> m(static_cast<size_t>(in));
  for (int64_t k = 0; k < in; ++k) m[size_t(k)] = T > 0 ? float(acc[size_t(k)] / double(T)) : 0.0f;
  return m;
}

std::vector<float> awq_candidate_scales(const std::vector<float>& x_mean, const std::vector<float>& w_mean,
                                        double ratio, bool duo) {
  const size_t K = x_mean.size();
  std::vector<float> s(K);
  const float r = float(ratio);
  for (size_t k = 0; k < K; ++k) {
    float v = duo ? std::pow(x_mean[k], r) / (std::pow(w_mean[k], 1.0f - r) + 1e-4f) : std::pow(x_mean[k], r);
    s[k] = std::max(v, 1e-4f);
  }
  float mx = s[0], mn = s[0];
  for (float v : s) {
    mx = std::max(mx, v);
    mn = std::min(mn, v);
  }
  const float norm = std::sqrt(mx * mn);
  for (float& v : s) {
    v = v / norm;
    if (!std::isfinite(v)) v = 1.0f;
  }
  return s;
}

AwqScaleResult awq_search_scale(const std::vector<const float*>& Ws, const std::vector<int64_t>& rows, int64_t in,
                                const std::vector<float>& x_mean, const AwqOptions& o, const AwqLossFn& loss) {
  awq_check_shape(in, o, "a scale group");
  const std::vector<float> w_mean = awq_w_mean(Ws, rows, in, o.group_size);
  AwqScaleResult res;
  double best = std::numeric_limits<double>::infinity();
  std::vector<std::vector<float>> cand(Ws.size());
  for (int i = 0; i < o.n_grid; ++i) {
    const double ratio = double(i) / double(o.n_grid);
    const std::vector<float> s = awq_candidate_scales(x_mean, w_mean, ratio, o.duo_scaling);
    for (size_t l = 0; l < Ws.size(); ++l) {
      std::vector<float>& c = cand[l];
      c.resize(size_t(rows[l] * in));
      for (int64_t n = 0; n < rows[l]; ++n)
        for (int64_t k = 0; k < in; ++k) c[size_t(n * in + k)] = Ws[l][n * in + k] * s[size_t(k)];
      awq_pseudo_quantize(c.data(), rows[l], in, o);
      for (int64_t n = 0; n < rows[l]; ++n)
        for (int64_t k = 0; k < in; ++k) c[size_t(n * in + k)] /= s[size_t(k)];
    }
    const double l = loss(cand);
    res.losses.push_back(l);
    if (l < best) {
      best = l;
      res.best_ratio = ratio;
      res.scales = s;
    }
  }
  LQ_CHECK(res.best_ratio >= 0, "AWQ scale search found no finite loss (losses are NaN)");
  res.best_loss = best;
  return res;
}

std::vector<float> awq_search_clip(const float* W, int64_t rows, int64_t in, const float* X, int64_t T,
                                   const AwqOptions& o) {
  awq_check_shape(in, o, "a clipped linear");
  const int64_t gs = o.group_size, G = in / gs;
  const int64_t step = std::max<int64_t>(1, T / o.clip_tokens);
  const int64_t Ts = (T + step - 1) / step;
  std::vector<float> best_val(static_cast<size_t>(rows * G));
  const int n_shrink = int(o.max_shrink * o.clip_grid);
  std::vector<float> Xg(static_cast<size_t>(Ts * gs)), Wg(static_cast<size_t>(rows * gs)), Qg(static_cast<size_t>(rows * gs));
  std::vector<float> org(static_cast<size_t>(Ts * rows)), cur(static_cast<size_t>(Ts * rows));
  std::vector<float> org_max(static_cast<size_t>(rows)), min_err(static_cast<size_t>(rows)), mv(static_cast<size_t>(rows));
  const float maxq = float((1 << o.bits) - 1);
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t t = 0; t < Ts; ++t)
      std::copy(X + (t * step) * in + g * gs, X + (t * step) * in + (g + 1) * gs, Xg.begin() + t * gs);
    for (int64_t n = 0; n < rows; ++n) {
      std::copy(W + n * in + g * gs, W + n * in + (g + 1) * gs, Wg.begin() + n * gs);
      float am = 0;
      for (int64_t k = 0; k < gs; ++k) am = std::max(am, std::fabs(Wg[size_t(n * gs + k)]));
      org_max[size_t(n)] = am;
      best_val[size_t(n * G + g)] = am;
      min_err[size_t(n)] = 1e9f;
    }
    sgemm_abt(Ts, rows, gs, 1.0f, Xg.data(), gs, Wg.data(), gs, 0.0f, org.data(), rows);
    for (int i_s = 0; i_s < n_shrink; ++i_s) {
      const float f = float(1.0 - double(i_s) / double(o.clip_grid));
      parallel_for(rows, [&](int64_t r0, int64_t r1) {
        for (int64_t n = r0; n < r1; ++n) {
          const float m = org_max[size_t(n)] * f;
          mv[size_t(n)] = m;
          float* q = Qg.data() + n * gs;
          for (int64_t k = 0; k < gs; ++k) q[k] = std::clamp(Wg[size_t(n * gs + k)], -m, m);
          const AwqGroup p = awq_params(q, gs, o);
          for (int64_t k = 0; k < gs; ++k) q[k] = (float(awq_code(q[k], p, maxq)) - p.zero) * p.scale;
        }
      });
      sgemm_abt(Ts, rows, gs, 1.0f, Xg.data(), gs, Qg.data(), gs, 0.0f, cur.data(), rows);
      parallel_for(rows, [&](int64_t r0, int64_t r1) {
        for (int64_t n = r0; n < r1; ++n) {
          double e = 0;
          for (int64_t t = 0; t < Ts; ++t) {
            const double d = double(cur[size_t(t * rows + n)]) - double(org[size_t(t * rows + n)]);
            e += d * d;
          }
          const float err = float(e / double(Ts));
          if (err < min_err[size_t(n)]) {
            min_err[size_t(n)] = err;
            best_val[size_t(n * G + g)] = mv[size_t(n)];
          }
        }
      });
    }
  }
  return best_val;
}

void awq_apply_clip(float* W, int64_t rows, int64_t in, int64_t group_size, const std::vector<float>& max_val) {
  const int64_t G = in / group_size;
  LQ_CHECK(int64_t(max_val.size()) == rows * G, "awq_apply_clip: {} thresholds for a [{}, {}] weight", max_val.size(),
           rows, in);
  for (int64_t n = 0; n < rows; ++n)
    for (int64_t k = 0; k < in; ++k) {
      const float m = max_val[size_t(n * G + k / group_size)];
      W[n * in + k] = std::clamp(W[n * in + k], -m, m);
    }
}

}  // namespace lq::quant
