// model/divergence.h: how far a (quantized) model's next-token distributions are from a
// base model's, along the context.
//
// Both models run over the same tokens in lockstep, chunk by chunk (only one chunk of
// logits per model is alive at a time: chunk x vocab floats). For each position t that
// has a next token (t = 0 .. n-2), from the full log-softmax rows (double):
//   KL(base || model)_t = sum_v p_base(v) (log p_base(v) - log p_model(v))
//   top-1 agreement_t   = argmax base == argmax model (lowest index on ties)
//   NLL_t               = -log p(ids[t+1]) for each model
// Reported overall and per bucket of positions [start, end) (default 1024 wide):
// kld_mean and top1_agreement are means over positions, ppl = exp(mean NLL).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <span>
#include <vector>

#include "model/model.h"

namespace lq {

struct DivergenceStats {
  int64_t start = 0, end = 0;  // positions [start, end)
  double kld_mean = 0, top1_agreement = 0, ppl_base = 0, ppl_model = 0;
  double kld_max = 0;
  int64_t n = 0;
};

struct DivergenceResult {
  DivergenceStats overall;
  std::vector<DivergenceStats> by_position;
  nlohmann::json to_json() const;  // {"kld_mean", "top1_agreement", "ppl_base", "ppl_model", "by_position": [...]}
};

// Accumulates per-position statistics from pairs of logits rows.
class DivergenceAccumulator {
 public:
  DivergenceAccumulator(int64_t vocab, int64_t bucket);
  // Rows for positions pos .. pos+rows-1; next[i] is the token after position pos+i.
  void add(int64_t pos, const float* base, const float* model, int64_t rows, const int32_t* next);
  DivergenceResult result() const;

 private:
  struct Acc {
    double kld = 0, top1 = 0, nll_b = 0, nll_m = 0, kld_max = 0;
    int64_t n = 0;
  };
  int64_t V_, bucket_;
  Acc all_;
  std::vector<Acc> buckets_;
};

// One position's numbers (exposed for tests).
struct PositionDivergence {
  double kld, nll_base, nll_model;
  bool top1_equal;
};
PositionDivergence position_divergence(const float* base, const float* model, int64_t V, int32_t next);

struct DivergenceOptions {
  int64_t bucket = 1024;
  int64_t chunk = 512;  // tokens per lockstep step (also capped so a chunk's logits stay <= ~64 MB)
  Precision precision = Precision::BF16;
  std::function<void(int64_t, int64_t)> progress;  // (positions done, total)
};

// Runs base and model over ids (>= 2 tokens). The models must share the vocabulary size.
DivergenceResult compute_divergence(const Model& base, const Model& model, std::span<const int32_t> ids,
                                    const DivergenceOptions& o);

}  // namespace lq
