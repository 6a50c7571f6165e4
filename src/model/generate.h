// model/generate.h: greedy and sampled generation on a Session.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"

namespace lq {

struct SamplingOptions {
  bool greedy = true;
  float temperature = 1.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
};

// Picks the next token from one row of logits. Greedy: argmax (lowest id on ties).
// Sampling: softmax(logits / T), keep the smallest set of most likely tokens whose
// probability mass reaches top_p, renormalise, draw with the seeded RNG.
class Sampler {
 public:
  explicit Sampler(SamplingOptions o);
  int32_t sample(const float* logits, int64_t vocab);

 private:
  SamplingOptions o_;
  uint64_t state_;
};

// log-softmax of a row, in double for stability, returned as float.
std::vector<float> log_softmax(const float* logits, int64_t n);
int32_t argmax(const float* logits, int64_t n);

struct GenerateOptions {
  int64_t max_tokens = 128;
  SamplingOptions sampling;
  std::vector<int32_t> eos_ids;             // stop when one is generated (not included in output)
  std::vector<std::string> stop_strings;    // stop when the decoded text contains one (text cut before it)
  bool keep_logits = false;                 // store each step's full logits
  // Decodes generated ids to text (for stop strings); may be empty if none are used.
  std::function<std::string(const std::vector<int32_t>&)> detokenize;
  // Called for each generated token (after the stop checks) with its id.
  std::function<void(int32_t)> on_token;
};

struct GenerateResult {
  std::vector<int32_t> ids;       // generated ids (without the eos that stopped it)
  std::vector<float> logprobs;    // log-probability of each generated id under the model
  std::vector<std::vector<float>> logits;  // per step, if keep_logits
  std::string stop_reason;        // "eos", "stop_string", "max_tokens"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Runs the prompt through `s` (appending to whatever it holds) and generates.
GenerateResult generate(Session& s, const std::vector<int32_t>& prompt, const GenerateOptions& opt);

}  // namespace lq
