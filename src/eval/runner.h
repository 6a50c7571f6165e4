// eval/runner.h: `longquant eval`: a grid of model variants over tasks, lengths
// and languages, every result stored as it is produced (resumable).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/precision.h"

namespace lq {

// NAME=SOURCE[,method=M][,key=value...]. SOURCE is a model directory, or an
// OpenAI-compatible endpoint: an http(s):// base URL, or several joined by '|'
// (URL1|URL2|...: one variant served by a fleet; see backends/openai.h for its
// settings).
struct VariantSpec {
  std::string name;
  std::string source;                         // model directory or http(s):// endpoint(s)
  std::string method;                         // "" = use SOURCE as it is
  std::map<std::string, std::string> settings;  // every other key=value
  static VariantSpec parse(const std::string& s);
  std::string to_string() const;
  bool is_endpoint() const;                   // SOURCE starts with http:// or https://
  std::vector<std::string> endpoint_urls() const;  // SOURCE split at '|' (empty unless is_endpoint())
};

struct EvalOptions {
  std::vector<VariantSpec> variants;
  std::vector<std::string> tasks;   // "suite/task"
  std::vector<int64_t> lengths;     // target tokens
  std::vector<std::string> langs;
  int64_t n = 50;
  uint64_t seed = 1;
  std::string db_path;
  std::string baseline;             // default: "bf16" if present, else the first
  std::string oneruler_data;
  std::string cache_dir = ".cache/quantized";  // on-the-fly quantized variants
  Precision precision = Precision::BF16;
  std::string chat_format = "auto";
  bool chat_api = false;            // endpoints: /v1/chat/completions unless a variant says chat=0
  int threads = 0;
  std::string command_line;
  // Quantizes `source` with `method` and `settings` into `out_dir` (set by the CLI,
  // which owns the quantization driver). Empty: method=... is an error.
  std::function<void(const std::string& source, const std::string& method,
                     const std::map<std::string, std::string>& settings, const std::string& out_dir)>
      quantize;
  bool quiet = false;
};

// Reads a study file: JSON {"variants": ["bf16=DIR", ...], "tasks": [...],
// "lengths": ["1k", 2048, ...], "langs": [...], "n": 50, "seed": 1,
// "baseline": "bf16", "oneruler_data": "DIR", "precision": "bf16", "chat_format": "auto",
// "chat_api": false}, or the same
// keys as TOML (a file ending in .toml: top-level `key = value`, strings, integers,
// arrays). Fields given on the command line win. Throws lq::Error naming the file
// and field (and line, for TOML).
nlohmann::json parse_study_toml(const std::string& text, const std::string& path);
void load_study_file(const std::string& path, EvalOptions* o, bool has_variants, bool has_tasks,
                     bool has_lengths, bool has_langs);

struct EvalSummary {
  int64_t done = 0, skipped = 0, failed = 0;  // this run: evaluated, already in the db, errors
  std::string baseline;
  nlohmann::json to_json() const;
};

// Runs the grid. Each variant is loaded once (one at a time); examples already
// in the database are skipped; each finished example is committed at once.
// A native variant runs its examples one after another on this thread. An
// endpoint variant runs up to `concurrency` examples at once on worker threads
// (examples are still generated here, in order); each finished example is
// committed under one lock on the one database connection. An example whose
// request failed (a 4xx, or retries exhausted) is stored as failed and is run
// again by the next run_eval, like any failed example. When `abort_after`
// examples in a row exhaust their retries (the endpoint is down), the variant
// stops: the examples in flight are stored, the rest stay pending, and
// run_eval throws lq::Error saying so (rerun to resume).
EvalSummary run_eval(const EvalOptions& o);

// The directory an on-the-fly quantized variant is cached in: keyed by the
// source's absolute path, its config.json checksum, the method and settings.
std::string quantized_cache_dir(const EvalOptions& o, const VariantSpec& v);

// FNV-1a 64 of a file's bytes as 16 hex digits ("" if unreadable).
std::string file_checksum(const std::string& path);

}  // namespace lq
