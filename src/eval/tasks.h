// eval/tasks.h: long-context task suites (RULER, OneRuler, NoCha, QA): the task
// registry behind `longquant tasks list`, the example generators behind
// `tasks generate`, JSONL import/export, and file scoring for `tasks score`.
//
// Determinism: an example is a pure function of (suite, task, target length,
// language, seed, index) plus the configured data (languages, haystack files,
// depths): every random choice comes from TaskRng seeded by example_seed()
// (tasks_rng.h), never from std:: distributions or global state.
//
// Token budget: for each example the generator finds the largest number n of
// haystack units (sentences) such that
//     counter.count(input(n), answer_prefix) + task.gen_tokens <= length,
// where input(n) is the user message with n units and the needles. The search
// is a bracketed binary search over n, started from an interpolation estimate
// (per-unit token estimates from counter.count_piece, or bytes calibrated with
// exact counts), so a 128K example needs a handful of full tokenisations. The
// recorded token_count is the exact count of the final prompt; it is the
// PROMPT's count (template + message + answer prefix), so
// token_count + gen_tokens <= length, and adding one more unit would exceed it
// (assuming the count grows with n, which holds for BPE tokenizers up to
// merges across a unit boundary).
//
// Needles are whole sentences inserted between haystack units: a needle at
// depth d (percent) goes before unit floor(n * d / 100) (d = 100: after the
// last unit); `needle_offsets` records the byte offset of each needle in
// `input` (same order as `depths`).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "eval/languages.h"

namespace lq {

// Token counting supplied by the caller (the CLI plugs in tokenizer + chat
// template). count: tokens of the fully rendered prompt, i.e. the chat
// template around `user_message` followed by `answer_prefix` (the start of
// the assistant turn). count_piece (optional): tokens of a bare text piece,
// used only to estimate per-unit costs (faster convergence); the final count
// always comes from `count`.
struct PromptCounter {
  std::function<int64_t(const std::string& user_message, const std::string& answer_prefix)> count;
  std::function<int64_t(const std::string& text)> count_piece;
};
// Test counters: ceil(bytes / 4) of message + prefix + `overhead`, and the
// number of whitespace-separated words (+ overhead). Both have count_piece.
PromptCounter byte_counter(int64_t overhead = 8);
PromptCounter word_counter(int64_t overhead = 8);

struct TaskInfo {
  std::string suite;          // "ruler", "oneruler", "nocha", "qa"
  std::string name;           // e.g. "niah_single_1"
  std::string description;
  int64_t gen_tokens = 0;     // generation budget reserved in the length
  std::string answer_prefix;  // RULER answer prefix template ("" if none)
  std::string scorer;         // scorer name for score_with() (scorers.h)
  bool implemented = false;   // generator available in this build
  std::string id() const { return suite + "/" + name; }
};
const std::vector<TaskInfo>& task_registry();
// Accepts "suite/task" or (suite, task). Throws lq::Error listing tasks.
const TaskInfo& find_task(const std::string& suite, const std::string& name);
const TaskInfo& find_task(const std::string& id);
// Languages usable by a task: "en" for RULER/NoCha/QA, every language of
// `langs` for OneRuler.
std::vector<std::string> task_languages(const TaskInfo& t, const LanguageSet& langs);
// `tasks list --json`: [{suite, task, id, languages, gen_tokens, answer_prefix, scorer, implemented, description}]
nlohmann::json task_list_json(const LanguageSet& langs);

// "8k" -> 8192, "128K" -> 131072, "1m" -> 1048576, "5000" -> 5000.
int64_t parse_length(const std::string& s);

struct Example {
  int64_t index = 0;
  std::string suite, task, lang;
  int64_t length = 0;        // target length (tokens, including gen budget)
  int64_t token_count = 0;   // exact prompt tokens (excluding gen budget)
  int64_t gen_tokens = 0;
  std::string input;         // final user message
  std::string answer_prefix;
  std::vector<std::string> outputs;  // gold answers
  std::vector<double> depths;        // needle depths (percent), text order
  std::vector<int64_t> needle_offsets;  // byte offsets of the needles in input
  std::vector<std::string> needles;     // the needle sentences, text order
  std::vector<std::string> queries;     // asked keys
  int64_t haystack_units = 0;
  uint64_t seed = 0;         // the user seed
};
nlohmann::json example_to_json(const Example& e);
// Reads our JSONL fields, or RULER's own (index, input, outputs, length,
// answer_prefix; missing fields keep defaults). `where` names the source in errors.
Example example_from_json(const nlohmann::json& j, const std::string& where);
void write_examples_jsonl(const std::string& path, const std::vector<Example>& examples);
std::vector<Example> read_examples_jsonl(const std::string& path);

// Needle depths: an explicit list (percent, 0..100) used in order, needle j of
// example i taking list[(i * needles_per_example + j) % size]; or, when the
// list is empty, `grid` depths round(linspace(0, 100, grid)) sampled without
// replacement per example (RULER / OneRuler use 40).
struct DepthSpec {
  std::vector<double> list;
  int grid = 40;
};

struct GenerateOptions {
  std::string suite = "ruler", task = "niah_single_1", lang = "en";
  int64_t length = 8192;
  int64_t n = 1;
  uint64_t seed = 1;
  int64_t first_index = 0;
  DepthSpec depths;
  std::vector<std::string> haystack_files;  // --haystack FILE...: replaces the default haystack
  std::string haystack;  // "" (task default), "noise", "essay", "files", "book"
};

// Generates examples first_index .. first_index + n - 1. `langs` must hold
// the language (LanguageSet::builtin(), plus load_oneruler_dir for
// --oneruler-data). Throws lq::Error for unknown tasks/languages, tasks not
// implemented yet, or a length too small for the prompt without haystack.
std::vector<Example> generate_examples(const GenerateOptions& opt, const LanguageSet& langs,
                                       const PromptCounter& counter);
// The per-example seed: a hash of (suite, task, length, lang, seed, index).
uint64_t example_seed(const std::string& suite, const std::string& task, int64_t length, const std::string& lang,
                      uint64_t seed, int64_t index);

// ---- scoring (`tasks score`) ---------------------------------------------
// Single case: the task's scorer on (gold, pred) -> score in [0,1].
double score_case(const std::string& task_id, const std::string& lang, const std::vector<std::string>& gold,
                  const std::string& pred);

struct FileScore {
  int64_t scored = 0;
  int64_t skipped = 0;      // duplicate index or null prediction (OneRuler's evaluate_jsonl)
  double mean = 0.0;        // mean score in [0,1]
  std::vector<double> scores;  // per scored line, file order
  nlohmann::json to_json() const;  // {"score", "n", "skipped"}
};
// Scores a JSONL of predictions. Each line needs "outputs" and a prediction in
// "pred", "prediction", "output" or exactly one "response-*" key; "suite"/"task"
// and "lang" come from the line when present, else from the defaults
// (task_id "suite/task"). Lines with a repeated index or a null prediction are
// skipped, as OneRuler does.
FileScore score_predictions_jsonl(const std::string& path, const std::string& default_task_id,
                                  const std::string& default_lang);

}  // namespace lq
