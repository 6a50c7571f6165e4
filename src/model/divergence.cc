#include "model/divergence.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/threads.h"

namespace lq {

PositionDivergence position_divergence(const float* b, const float* m, int64_t V, int32_t next) {
  double mb = -INFINITY, mm = -INFINITY;
  int64_t ab = 0, am = 0;
  for (int64_t v = 0; v < V; ++v) {
    if (b[v] > mb) { mb = b[v]; ab = v; }
    if (m[v] > mm) { mm = m[v]; am = v; }
  }
  double sb = 0, sm = 0;
  for (int64_t v = 0; v < V; ++v) {
    sb += std::exp(double(b[v]) - mb);
    sm += std::exp(double(m[v]) - mm);
  }
  const double lzb = mb + std::log(sb), lzm = mm + std::log(sm);
  double kl = 0;
  for (int64_t v = 0; v < V; ++v) {
    const double lb = double(b[v]) - lzb, lm = double(m[v]) - lzm;
    const double p = std::exp(lb);
    if (p > 0) kl += p * (lb - lm);
  }
  PositionDivergence r;
  r.kld = std::max(0.0, kl);  // exact KL is >= 0; rounding can leave -1e-17
  r.top1_equal = ab == am;
  r.nll_base = next >= 0 ? lzb - double(b[next]) : 0.0;
  r.nll_model = next >= 0 ? lzm - double(m[next]) : 0.0;
  return r;
}

DivergenceAccumulator::DivergenceAccumulator(int64_t vocab, int64_t bucket) : V_(vocab), bucket_(bucket) {
  LQ_CHECK(vocab > 0, "divergence: vocabulary size must be positive");
  LQ_CHECK(bucket > 0, "--bucket must be positive, got {}", bucket);
}

void DivergenceAccumulator::add(int64_t pos, const float* base, const float* model, int64_t rows, const int32_t* next) {
  std::vector<PositionDivergence> r(static_cast<size_t>(rows));
  parallel_for(rows, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) r[size_t(i)] = position_divergence(base + i * V_, model + i * V_, V_, next[i]);
  });
  for (int64_t i = 0; i < rows; ++i) {
    const size_t b = size_t((pos + i) / bucket_);
    if (buckets_.size() <= b) buckets_.resize(b + 1);
    for (Acc* a : {&all_, &buckets_[b]}) {
      a->kld += r[size_t(i)].kld;
      a->kld_max = std::max(a->kld_max, r[size_t(i)].kld);
      a->top1 += r[size_t(i)].top1_equal ? 1.0 : 0.0;
      a->nll_b += r[size_t(i)].nll_base;
      a->nll_m += r[size_t(i)].nll_model;
      a->n += 1;
    }
  }
}

DivergenceResult DivergenceAccumulator::result() const {
  auto stats = [](const Acc& a, int64_t s, int64_t e) {
    DivergenceStats d;
    d.start = s;
    d.end = e;
    d.n = a.n;
    if (a.n > 0) {
      d.kld_mean = a.kld / double(a.n);
      d.top1_agreement = a.top1 / double(a.n);
      d.ppl_base = std::exp(a.nll_b / double(a.n));
      d.ppl_model = std::exp(a.nll_m / double(a.n));
      d.kld_max = a.kld_max;
    }
    return d;
  };
  DivergenceResult r;
  int64_t end = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const int64_t s = int64_t(b) * bucket_;
    const int64_t e = s + buckets_[b].n;
    end = std::max(end, e);
    r.by_position.push_back(stats(buckets_[b], s, e));
  }
  r.overall = stats(all_, 0, end);
  return r;
}

nlohmann::json DivergenceResult::to_json() const {
  auto one = [](const DivergenceStats& s, bool range) {
    nlohmann::json j = {{"kld_mean", s.kld_mean}, {"top1_agreement", s.top1_agreement}, {"ppl_base", s.ppl_base},
                        {"ppl_model", s.ppl_model}, {"kld_max", s.kld_max}, {"positions", s.n}};
    if (range) {
      j["start"] = s.start;
      j["end"] = s.end;
    }
    return j;
  };
  nlohmann::json j = one(overall, false);
  j["by_position"] = nlohmann::json::array();
  for (const auto& b : by_position) j["by_position"].push_back(one(b, true));
  return j;
}

DivergenceResult compute_divergence(const Model& base, const Model& model, std::span<const int32_t> ids,
                                    const DivergenceOptions& o) {
  const int64_t n = int64_t(ids.size());
  LQ_CHECK(n >= 2, "divergence needs at least 2 tokens, got {}", n);
  const int64_t V = base.config().vocab_size;
  LQ_CHECK(model.config().vocab_size == V, "the models' vocabularies differ ({} vs {})", V, model.config().vocab_size);
  LQ_CHECK(o.chunk >= 1, "--chunk must be >= 1");
  // Keep each chunk's logits (per model) at or below 16M floats.
  const int64_t chunk = std::max<int64_t>(1, std::min(o.chunk, (int64_t(1) << 24) / V));
  SessionOptions so;
  so.precision = o.precision;
  so.capacity = n;
  so.chunk_size = chunk;
  Session sb(base, so), sm(model, so);
  DivergenceAccumulator acc(V, o.bucket);
  for (int64_t p = 0; p < n - 1; p += chunk) {
    const int64_t t = std::min(chunk, n - 1 - p);  // positions p .. p+t-1 all have a next token
    const std::span<const int32_t> part = ids.subspan(size_t(p), size_t(t));
    const std::vector<float> lb = sb.forward(part, t);
    const std::vector<float> lm = sm.forward(part, t);
    acc.add(p, lb.data(), lm.data(), t, ids.data() + p + 1);
    if (o.progress) o.progress(p + t, n - 1);
  }
  return acc.result();
}

}  // namespace lq
