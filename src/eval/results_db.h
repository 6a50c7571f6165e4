// eval/results_db.h: the SQLite results store behind `longquant eval`,
// `longquant results` and `longquant report`.
//
// One database file holds a whole study: the runs that wrote to it, the model
// variants (name -> definition), one row per evaluated example, and intrinsic
// (divergence) measurements. It is the only state of a study, so it must never
// lose a finished example and never mix two definitions under one name.
//
// Durability (kill -9 at any moment):
//  * journal_mode=WAL, synchronous=FULL. In WAL mode a transaction is committed
//    once its commit frame is in the -wal file; a process killed at any point
//    leaves either the whole transaction or none of it (SQLite recovers the
//    WAL on the next open), so the file is never corrupted. synchronous=NORMAL
//    would already survive kill -9 (the OS keeps the written pages); FULL also
//    fsyncs the WAL at every commit, so a power loss cannot roll back finished
//    examples either. It costs one fsync per example, nothing next to the
//    seconds-to-minutes a long-context generation takes.
//  * insert_result() commits every example in its own transaction, so a kill
//    loses at most the examples that were being generated; insert_results()
//    commits a small batch atomically (all or none).
//  * busy_timeout is 10 s, so a reader (`results`, `report`) and a writer can
//    work on the same file at the same time (WAL: readers see the last commit
//    and never block the writer).
//
// Schema versioning: PRAGMA user_version holds kSchemaVersion and
// PRAGMA application_id holds kApplicationId ("LQRS"). An empty file gets the
// current schema; a database with another version, or a SQLite file of some
// other application, is refused with an error naming the file and versions.
//
// Idempotence: results have the UNIQUE key (variant, suite, task, length,
// lang, example index, seed). Inserting a key that is already stored with a
// score is a no-op (the first result wins; predictions of a deterministic
// greedy run are identical anyway) -- unless the stored row has a different
// prompt hash, which means the example generator or its data changed under the
// same key: that is an error, never a silent mix. A stored *failed* example
// (error text, no score) is replaced by a later successful result, so
// rerunning a study retries failures; has_result() is true only for scored rows.
//
// A ResultsDb is one SQLite connection: use one object per thread.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace lq {

inline constexpr int kResultsSchemaVersion = 1;
inline constexpr int32_t kResultsApplicationId = 0x4C515253;  // "LQRS"

// One `longquant eval` invocation.
struct RunInfo {
  int64_t id = 0;              // assigned by register_run
  std::string started;         // ISO-8601 UTC ("2025-01-31T12:00:00.000Z"); filled by register_run if empty
  std::string ended;           // "" while running / if killed
  std::string version;         // longquant version
  std::string git_hash;
  std::string cpu;
  int64_t threads = 0;
  std::string command_line;
  nlohmann::json to_json() const;
};
// A RunInfo with version and git hash of this build and the current time.
RunInfo make_run_info(const std::string& command_line, int64_t threads, const std::string& cpu);

// A model variant. `definition` is a JSON object; by convention it holds
// "source" (path or URL), "method" ("bf16", "gptq-int4", ...), "settings"
// (quantization settings object) and "config_checksum" (checksum of the
// weights' config). Two definitions are the same if their JSON values are
// equal (object key order does not matter).
struct VariantDef {
  std::string name;
  nlohmann::json definition = nlohmann::json::object();
  std::string created;  // set by the database
  // definition["method"] if it is a string, else "".
  std::string method() const;
};

// The identity of one evaluated example.
struct ResultKey {
  std::string variant, suite, task;
  int64_t length = 0;  // target length in tokens
  std::string lang;
  int64_t index = 0;   // example index
  uint64_t seed = 0;   // the user seed (stored bit-cast to SQLite's int64)
  std::string task_id() const { return suite + "/" + task; }
  std::string to_string() const;  // "variant=... suite/task length=... lang=... index=... seed=..."
  bool operator==(const ResultKey&) const = default;
};

struct ResultRow {
  ResultKey key;
  std::string prompt_hash;             // e.g. prompt_hash(prompt text); "" if unknown
  std::string prediction;
  std::optional<double> score;         // in [0, 1]; empty for a failed example
  std::vector<std::string> outputs;    // gold answers
  std::vector<double> depths;          // needle depths (percent), empty if none
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double seconds = 0.0;
  std::string error;                   // non-empty: the example failed (score must be empty)
  int64_t run_id = 0;                  // 0: none
  std::string created;                 // set by the database
  bool ok() const { return error.empty() && score.has_value(); }
};

// Intrinsic measurement of a variant against a baseline (`longquant divergence`).
struct IntrinsicResult {
  std::string variant;
  std::string label;       // what was measured, e.g. "pg19@8k"; (variant, label) is unique
  std::string baseline;    // baseline variant name
  int64_t tokens = 0;      // tokens scored
  double kld_mean = 0.0;   // mean KL(base || model), nats/token
  double top1_agreement = 0.0;  // fraction in [0, 1]
  double ppl_base = 0.0, ppl_model = 0.0;
  // By position: {"positions": [...], "kld": [...], "top1": [...], ...} (free form, arrays of equal length).
  nlohmann::json by_position = nlohmann::json::object();
  std::string created;
};

enum class InsertOutcome { Inserted, AlreadyPresent, ReplacedFailure };

// Filter for query(); empty fields match everything.
struct ResultFilter {
  std::string variant, suite, task, lang;
  std::optional<int64_t> length;
  bool include_failed = true;
};

struct CellCount {
  std::string variant, suite, task, lang;
  int64_t length = 0;
  int64_t n = 0;          // scored examples
  int64_t failed = 0;     // examples with an error
  double mean_score = 0;  // over scored examples (0 if none)
};

class ResultsDb {
 public:
  enum class Mode { ReadWrite, ReadOnly };
  // Opens (ReadWrite: creates if absent) the database at `path`. Throws
  // lq::Error naming the path when: the directory does not exist or is not
  // writable (ReadWrite, new file), the file is not writable, the file is not
  // a SQLite database or not a longquant results database, or its schema
  // version differs from kResultsSchemaVersion. ReadOnly requires the file.
  static std::unique_ptr<ResultsDb> open(const std::string& path, Mode mode = Mode::ReadWrite);
  ~ResultsDb();
  ResultsDb(const ResultsDb&) = delete;
  ResultsDb& operator=(const ResultsDb&) = delete;

  const std::string& path() const { return path_; }
  int schema_version() const;

  // ---- runs ----
  int64_t register_run(RunInfo run);        // returns the new run id
  void finish_run(int64_t run_id);          // sets `ended` to now
  std::vector<RunInfo> runs() const;

  // ---- variants ----
  // Registers the variant, or checks that the stored one has the same
  // definition; a different definition under the same name is an lq::Error
  // that prints both definitions.
  void register_variant(const VariantDef& v);
  std::optional<VariantDef> variant(const std::string& name) const;
  std::vector<VariantDef> variants() const;  // in registration order

  // ---- results ----
  bool has_result(const ResultKey& key) const;  // a scored row exists
  // Example indices with a scored row for the cell (sorted): lets a runner skip done work in one query.
  std::vector<int64_t> done_indices(const std::string& variant, const std::string& suite, const std::string& task,
                                    int64_t length, const std::string& lang, uint64_t seed) const;
  // One transaction per call. The variant must be registered; score in [0,1]
  // (finite) for a scored row, empty with a non-empty error for a failed one.
  InsertOutcome insert_result(const ResultRow& row);
  // All rows in one transaction (all or none); returns one outcome per row.
  std::vector<InsertOutcome> insert_results(const std::vector<ResultRow>& rows);
  // Rows ordered by (variant registration, suite, task, length, lang, seed, index).
  std::vector<ResultRow> query(const ResultFilter& f = {}) const;
  std::vector<CellCount> cell_counts() const;
  int64_t count_results(bool include_failed = true) const;

  // ---- intrinsic ----
  // Insert or replace the measurement for (variant, label); the variant must be registered.
  void put_intrinsic(const IntrinsicResult& r);
  std::vector<IntrinsicResult> intrinsic() const;

  // ---- export ----
  // One JSON object per example (lm-eval-harness sample-log spirit): variant,
  // method, suite, task, length, lang, index, seed, score (null if failed),
  // prediction, outputs, depths, prompt_tokens, generated_tokens, seconds,
  // prompt_hash, error, run_id, created.
  static nlohmann::json row_to_json(const ResultRow& r, const std::string& method);
  // The columns of export_csv, in order.
  static const std::vector<std::string>& csv_columns();
  // Writes every row (query() order) to `out` as JSONL / CSV (RFC 4180; lists as JSON text).
  void export_jsonl(std::ostream& out, const ResultFilter& f = {}) const;
  void export_csv(std::ostream& out, const ResultFilter& f = {}) const;
  // `results --json`: {path, schema_version, variants, runs, cells, intrinsic, totals}.
  nlohmann::json summary_json() const;

  // PRAGMA integrity_check: "ok" or SQLite's report.
  std::string integrity_check() const;

 private:
  ResultsDb() = default;
  sqlite3* db_ = nullptr;
  std::string path_;
  void exec(const std::string& sql) const;
  void create_schema();
  InsertOutcome insert_one(const ResultRow& row);
};

// A stable 64-bit FNV-1a hash of the prompt text as 16 hex digits: detects a
// changed prompt under the same key (not a cryptographic hash).
std::string prompt_hash(const std::string& text);

// RFC 4180 CSV field: quoted when it holds a comma, quote, CR or LF.
std::string csv_escape(const std::string& s);

}  // namespace lq
