// eval/tasks.h: long-context task suites (RULER, OneRuler, NoCha, QA): the task
// registry behind `longquant tasks list`, the example generators behind
// `tasks generate`, JSONL import/export, and file scoring for `tasks score`.
//
// Determinism: an example is a pure function of (suite, task, target length,
// language, seed, index) plus the configured data (languages, haystack files,
// depths, NoCha/QA files): every random choice comes from TaskRng seeded by
// example_seed() (tasks_rng.h), never from std:: distributions or global state.
//
// Token budget: every generated prompt is a function of one integer n, the
// number of "haystack units" (sentences for NIAH, noise blocks for vt, distinct
// words for cwe, the Zipf word budget for fwe, distractor documents for qa).
// For each example the generator finds the largest n such that
//     counter.count(input(n), answer_prefix) + task.gen_tokens <= length
// by a bracketed search over n: interpolation from per-unit cost estimates
// (counter.count_piece, recalibrated against exact counts), then bisection, so
// a 128K example needs a handful of full tokenisations, never a linear scan.
// The search always ends with a measured pair (n fits, n + 1 does not), so the
// recorded token_count (the exact count of the final prompt: chat template +
// message + answer prefix) satisfies token_count + gen_tokens <= length and
// one more unit would not fit. Exceptions: a source that runs out (all QA
// distractors used) -- reported in GenerateReport::notes.
//
// Needles are whole sentences inserted between haystack units: a needle at
// depth d (percent) goes before unit floor(n * d / 100) (d = 100: after the
// last unit); `needle_offsets` records the byte offset of each needle in
// `input` (same order as `depths`).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eval/languages.h"
#include "eval/scorers.h"
#include "io/chat_template.h"

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
class Tokenizer;
// The real counter used by the CLI: the prompt is rendered as one user message
// with render_chat(fmt, {{"user", message}}, add_generation_prompt = true),
// the answer prefix is appended, and the whole string is encoded with
// add_special = false (the template carries the special tokens; ChatFormat::Raw
// gives the bare text). count_piece encodes a bare piece. Keeps a reference
// to tok.
PromptCounter chat_prompt_counter(const Tokenizer& tok, ChatFormat fmt);

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
  std::vector<std::string> queries;     // asked keys (vt: the value)
  int64_t haystack_units = 0;
  uint64_t seed = 0;         // the user seed
  // Task-specific fields, written as extra top-level JSONL keys (NoCha:
  // book_title, pair_index, claim; QA: qa_index, documents, gold_documents).
  // Reading JSONL puts every unknown key here.
  nlohmann::json meta = nlohmann::json::object();
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

// (Named TaskOptions, not GenerateOptions: that name belongs to
// model/generate.h, and two classes of one name are an ODR violation.)
struct TaskOptions {
  std::string suite = "ruler", task = "niah_single_1", lang = "en";
  int64_t length = 8192;
  int64_t n = 1;
  uint64_t seed = 1;
  int64_t first_index = 0;
  DepthSpec depths;
  std::vector<std::string> haystack_files;  // --haystack FILE...: replaces the default haystack
                                            // (cwe: the word list is taken from these texts)
  std::string haystack;  // "" (task default), "noise", "essay", "files", "book"
  // nocha: the data directory (claims.json, books.jsonl, prompt file);
  // qa: the JSONL file (qa.h). n < 0 means every claim / example.
  std::string data;
  std::string nocha_prompt = "prompt.txt";  // or prompt_simple.txt
  // Called after each example (done, total); may be empty.
  std::function<void(int64_t, int64_t)> progress;
};

// What a generate call could not do exactly: NoCha claims skipped because
// their book does not fit, QA examples whose distractor pool ran out.
struct GenerateReport {
  int64_t generated = 0;
  int64_t skipped = 0;                    // examples not produced (NoCha: claims)
  std::vector<std::string> skipped_books; // NoCha titles that do not fit, sorted
  std::vector<std::string> notes;         // human-readable, one per event
  nlohmann::json to_json() const;
};

// "10,50,90" / "[10, 50, 90]" -> depths in percent; throws lq::Error naming the
// bad item or a depth outside 0..100.
std::vector<double> parse_depths(const std::string& s);

// Generates examples first_index .. first_index + n - 1. `langs` must hold
// the language (LanguageSet::builtin(), plus load_oneruler_dir for
// --oneruler-data). Throws lq::Error for unknown tasks/languages, tasks not
// implemented yet, or a length too small for the prompt without haystack.
std::vector<Example> generate_examples(const TaskOptions& opt, const LanguageSet& langs,
                                       const PromptCounter& counter, GenerateReport* report = nullptr);
// Example `index` built with exactly `units` haystack units (no fitting): for
// tests and inspection (e.g. checking that units + 1 exceeds the budget).
// NoCha has no units (the whole book); `units` is ignored there.
Example generate_example_at(const TaskOptions& opt, const LanguageSet& langs, const PromptCounter& counter,
                            int64_t index, int64_t units);

// The generator behind both functions above, for callers that build many
// examples of one configuration (it loads haystacks, word lists and data
// once). `opt`, `langs` and `counter` must outlive it.
class TaskGenerator {
 public:
  TaskGenerator(const TaskOptions& opt, const LanguageSet& langs, const PromptCounter& counter);
  ~TaskGenerator();
  TaskGenerator(const TaskGenerator&) = delete;
  TaskGenerator& operator=(const TaskGenerator&) = delete;
  // Examples the data holds (NoCha claims, QA lines), or -1 when unbounded.
  int64_t available() const;
  // Example `index` fitted to the budget; nullopt when it cannot be built
  // within the budget and the task skips such examples (NoCha), which is
  // recorded in `report`.
  std::optional<Example> fitted(int64_t index, GenerateReport* report = nullptr);
  // Example `index` with exactly `units` haystack units (throws when units is
  // outside the task's range, e.g. more QA distractors than exist).
  Example at_units(int64_t index, int64_t units);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};
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
  // NoCha lines (task nocha/claims; they need book_title and pair_index):
  // pair accuracy, which is then the file's "score".
  std::optional<NochaPairScore> nocha;
  // {"score", "n", "skipped"} (+ "claim_accuracy", "pairs", "pairs_correct",
  // "incomplete_pairs" for NoCha)
  nlohmann::json to_json() const;
};
// Scores a JSONL of predictions. Each line needs "outputs" and a prediction in
// "pred", "prediction", "output" or exactly one "response-*" key; "suite"/"task"
// and "lang" come from the line when present, else from the defaults
// (task_id "suite/task"). Lines with a repeated index or a null prediction are
// skipped, as OneRuler does. NoCha lines are grouped into pairs by
// (book_title, pair_index) and the score is the pair accuracy.
FileScore score_predictions_jsonl(const std::string& path, const std::string& default_task_id,
                                  const std::string& default_lang);

}  // namespace lq
