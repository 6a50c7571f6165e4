#include "model/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"

namespace lq {

int32_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return int32_t(best);
}

namespace {
// log(sum(exp(logits))), in double for stability.
double log_sum_exp(const float* logits, int64_t n) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, double(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - mx);
  return mx + std::log(sum);
}
}  // namespace

std::vector<float> log_softmax(const float* logits, int64_t n) {
  const double lse = log_sum_exp(logits, n);
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = float(double(logits[i]) - lse);
  return out;
}

Sampler::Sampler(SamplingOptions o) : o_(o), state_(o.seed) {
  if (!o_.greedy) {
    LQ_CHECK(o_.temperature > 0, "temperature must be > 0 (use --greedy for argmax), got {}", o_.temperature);
    LQ_CHECK(o_.top_p > 0 && o_.top_p <= 1, "top_p must be in (0, 1], got {}", o_.top_p);
  }
}

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  if (o_.greedy) return argmax(logits, vocab);
  // Probabilities at temperature T, in double.
  double mx = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, double(logits[i]));
  std::vector<double> p(static_cast<size_t>(vocab));
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += (p[size_t(i)] = std::exp((double(logits[i]) - mx) / o_.temperature));
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  // Most likely first; ties by lower id, so the order is fully deterministic.
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return p[size_t(a)] != p[size_t(b)] ? p[size_t(a)] > p[size_t(b)] : a < b;
  });
  double mass = 0;
  size_t keep = 0;
  while (keep < order.size()) {
    mass += p[size_t(order[keep])] / sum;
    ++keep;
    if (mass >= double(o_.top_p)) break;
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += p[size_t(order[i])];
  const double r = double(splitmix64(state_) >> 11) * 0x1.0p-53 * kept;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[size_t(order[i])];
    if (r < acc) return order[i];
  }
  return order[keep - 1];
}

GenerateResult generate(Session& s, const std::vector<int32_t>& prompt, const GenerateOptions& opt) {
  using clock = std::chrono::steady_clock;
  LQ_CHECK(!prompt.empty(), "generate: the prompt is empty");
  LQ_CHECK(opt.max_tokens >= 0, "max_tokens must be >= 0");
  const int64_t V = s.model().config().vocab_size;
  GenerateResult r;
  r.prompt_tokens = int64_t(prompt.size());
  if (s.position() + r.prompt_tokens > s.capacity()) {
    fail("prompt of {} tokens does not fit the context of {} tokens", s.position() + r.prompt_tokens, s.capacity());
  }
  Sampler sampler(opt.sampling);
  auto t0 = clock::now();
  std::vector<float> logits = s.forward(prompt, 1);
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  auto t1 = clock::now();
  r.stop_reason = "max_tokens";
  for (int64_t step = 0; step < opt.max_tokens; ++step) {
    const int32_t id = sampler.sample(logits.data(), V);
    if (opt.keep_logits) r.logits.push_back(logits);
    if (std::find(opt.eos_ids.begin(), opt.eos_ids.end(), id) != opt.eos_ids.end()) {
      r.stop_reason = "eos";
      break;
    }
    r.logprobs.push_back(float(double(logits[size_t(id)]) - log_sum_exp(logits.data(), V)));
    r.ids.push_back(id);
    if (opt.on_token) opt.on_token(id);
    if (!opt.stop_strings.empty() && opt.detokenize) {
      const std::string text = opt.detokenize(r.ids);
      bool hit = false;
      for (const auto& st : opt.stop_strings) hit |= !st.empty() && text.find(st) != std::string::npos;
      if (hit) { r.stop_reason = "stop_string"; break; }
    }
    if (step + 1 == opt.max_tokens) break;  // no need to run the last token through the model
    if (s.position() >= s.capacity()) { r.stop_reason = "context_full"; break; }
    logits = s.forward(std::span<const int32_t>(&r.ids.back(), 1), 1);
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return r;
}

}  // namespace lq
