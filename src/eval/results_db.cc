// eval/results_db.cc: SQLite implementation of the results store (see results_db.h
// for the durability, versioning and idempotence rules).
#include "core/version.h"
#include "eval/results_db.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <map>
#include <ostream>

#include "core/error.h"

namespace lq {

using json = nlohmann::json;

namespace {

const char* kSchemaSql = R"sql(
CREATE TABLE runs(
  id INTEGER PRIMARY KEY,
  started TEXT NOT NULL,
  ended TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL,
  git_hash TEXT NOT NULL,
  cpu TEXT NOT NULL,
  threads INTEGER NOT NULL,
  command_line TEXT NOT NULL);
CREATE TABLE variants(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  definition TEXT NOT NULL,
  created TEXT NOT NULL);
CREATE TABLE results(
  id INTEGER PRIMARY KEY,
  variant TEXT NOT NULL REFERENCES variants(name),
  suite TEXT NOT NULL,
  task TEXT NOT NULL,
  length INTEGER NOT NULL,
  lang TEXT NOT NULL,
  example_index INTEGER NOT NULL,
  seed INTEGER NOT NULL,
  prompt_hash TEXT NOT NULL,
  prediction TEXT NOT NULL,
  score REAL,
  outputs TEXT NOT NULL,
  depths TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  generated_tokens INTEGER NOT NULL,
  seconds REAL NOT NULL,
  error TEXT NOT NULL DEFAULT '',
  run_id INTEGER REFERENCES runs(id),
  created TEXT NOT NULL,
  UNIQUE(variant, suite, task, length, lang, example_index, seed),
  CHECK ((score IS NULL) = (error <> '')),
  CHECK (score IS NULL OR (score >= 0.0 AND score <= 1.0)));
CREATE TABLE intrinsic(
  id INTEGER PRIMARY KEY,
  variant TEXT NOT NULL REFERENCES variants(name),
  label TEXT NOT NULL,
  baseline TEXT NOT NULL,
  tokens INTEGER NOT NULL,
  kld_mean REAL NOT NULL,
  top1_agreement REAL NOT NULL,
  ppl_base REAL NOT NULL,
  ppl_model REAL NOT NULL,
  by_position TEXT NOT NULL,
  created TEXT NOT NULL,
  UNIQUE(variant, label));
)sql";

const char* kNowSql = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

std::string now_iso8601() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                t.tm_hour, t.tm_min, t.tm_sec, int(ts.tv_nsec / 1000000));
  return buf;
}

std::string dir_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

// Percent-encodes the characters that end or escape a URI path.
std::string uri_escape(const std::string& p) {
  std::string o;
  for (unsigned char c : p) {
    if (c == '%' || c == '?' || c == '#' || c < 0x20 || c == 0x7f) o += fmt::format("%{:02X}", c);
    else o += char(c);
  }
  return o;
}

// A prepared statement bound to the database's path for error messages.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& path, const std::string& sql) : db_(db), path_(path) {
    if (sqlite3_prepare_v2(db, sql.c_str(), int(sql.size()), &st_, nullptr) != SQLITE_OK) {
      fail("results database {}: {} (preparing: {})", path, sqlite3_errmsg(db), sql);
    }
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, const std::string& s) {
    check(sqlite3_bind_text(st_, i, s.data(), int(s.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    check(sqlite3_bind_int64(st_, i, v));
    return *this;
  }
  Stmt& bind(int i, double v) {
    check(sqlite3_bind_double(st_, i, v));
    return *this;
  }
  Stmt& bind_null(int i) {
    check(sqlite3_bind_null(st_, i));
    return *this;
  }
  // true: a row is available; false: done.
  bool step() {
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail("results database {}: {}", path_, sqlite3_errmsg(db_));
  }
  void run() {
    while (step()) {
    }
  }
  int64_t i64(int c) const { return sqlite3_column_int64(st_, c); }
  double f64(int c) const { return sqlite3_column_double(st_, c); }
  bool is_null(int c) const { return sqlite3_column_type(st_, c) == SQLITE_NULL; }
  std::string text(int c) const {
    const auto* p = sqlite3_column_text(st_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), size_t(sqlite3_column_bytes(st_, c))) : std::string();
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) fail("results database {}: bind: {}", path_, sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  const std::string& path_;
  sqlite3_stmt* st_ = nullptr;
};

json parse_json_column(const std::string& text, const std::string& path, const char* what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("results database {}: column {} holds invalid JSON: {}", path, what, e.what());
  }
}

int64_t seed_to_db(uint64_t s) {
  int64_t v;
  std::memcpy(&v, &s, sizeof v);
  return v;
}
uint64_t seed_from_db(int64_t v) {
  uint64_t s;
  std::memcpy(&s, &v, sizeof s);
  return s;
}

// RAII write transaction: BEGIN IMMEDIATE (takes the write lock up front, so
// two writers never deadlock on a lock upgrade), ROLLBACK unless committed.
class WriteTxn {
 public:
  explicit WriteTxn(sqlite3* db, const std::string& path) : db_(db), path_(path) {
    exec("BEGIN IMMEDIATE");
  }
  ~WriteTxn() {
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    exec("COMMIT");
    done_ = true;
  }

 private:
  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string m = err ? err : "unknown error";
      sqlite3_free(err);
      fail("results database {}: {}: {}", path_, sql, m);
    }
  }
  sqlite3* db_;
  const std::string& path_;
  bool done_ = false;
};

const char* kResultColumns =
    "r.variant, r.suite, r.task, r.length, r.lang, r.example_index, r.seed, r.prompt_hash, r.prediction, r.score, "
    "r.outputs, r.depths, r.prompt_tokens, r.generated_tokens, r.seconds, r.error, r.run_id, r.created";

ResultRow read_result(const Stmt& s, const std::string& path) {
  ResultRow r;
  r.key.variant = s.text(0);
  r.key.suite = s.text(1);
  r.key.task = s.text(2);
  r.key.length = s.i64(3);
  r.key.lang = s.text(4);
  r.key.index = s.i64(5);
  r.key.seed = seed_from_db(s.i64(6));
  r.prompt_hash = s.text(7);
  r.prediction = s.text(8);
  if (!s.is_null(9)) r.score = s.f64(9);
  const json outs = parse_json_column(s.text(10), path, "results.outputs");
  for (const auto& o : outs) r.outputs.push_back(o.is_string() ? o.get<std::string>() : o.dump());
  const json deps = parse_json_column(s.text(11), path, "results.depths");
  for (const auto& d : deps) r.depths.push_back(d.get<double>());
  r.prompt_tokens = s.i64(12);
  r.generated_tokens = s.i64(13);
  r.seconds = s.f64(14);
  r.error = s.text(15);
  r.run_id = s.is_null(16) ? 0 : s.i64(16);
  r.created = s.text(17);
  return r;
}

std::string fmt_double(double v) { return fmt::format("{}", v); }

}  // namespace

// ---------------------------------------------------------------------------

json RunInfo::to_json() const {
  return {{"id", id},           {"started", started},   {"ended", ended},
          {"version", version}, {"git_hash", git_hash}, {"cpu", cpu},
          {"threads", threads}, {"command_line", command_line}};
}

RunInfo make_run_info(const std::string& command_line, int64_t threads, const std::string& cpu) {
  RunInfo r;
  r.started = now_iso8601();
  r.version = LQ_VERSION;
  r.git_hash = lq::git_hash();
  r.cpu = cpu;
  r.threads = threads;
  r.command_line = command_line;
  return r;
}

std::string VariantDef::method() const {
  if (definition.is_object() && definition.contains("method") && definition["method"].is_string())
    return definition["method"].get<std::string>();
  return "";
}

std::string ResultKey::to_string() const {
  return fmt::format("variant={} {}/{} length={} lang={} index={} seed={}", variant, suite, task, length, lang, index,
                     seed);
}

std::string prompt_hash(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return fmt::format("{:016x}", h);
}

std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) {
    if (c == '"') o += '"';
    o += c;
  }
  o += '"';
  return o;
}

// ---------------------------------------------------------------------------

std::unique_ptr<ResultsDb> ResultsDb::open(const std::string& path, Mode mode) {
  LQ_CHECK(!path.empty(), "results database: empty path (--db)");
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  const std::string dir = dir_of(path);
  if (exists) {
    LQ_CHECK(S_ISREG(st.st_mode), "results database {} is not a regular file", path);
    if (mode == Mode::ReadWrite) {
      LQ_CHECK(::access(path.c_str(), R_OK | W_OK) == 0,
               "results database {} is not writable (permission denied); `results` and `report` only read it",
               path);
      LQ_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0,
               "results database {}: directory {} is not writable, but SQLite (WAL mode) must create {}-wal and "
               "{}-shm next to the file",
               path, dir, path, path);
    } else {
      LQ_CHECK(::access(path.c_str(), R_OK) == 0, "results database {} is not readable (permission denied)", path);
    }
  } else {
    LQ_CHECK(mode == Mode::ReadWrite, "results database {} does not exist", path);
    struct stat ds {};
    LQ_CHECK(::stat(dir.c_str(), &ds) == 0 && S_ISDIR(ds.st_mode),
             "cannot create results database {}: directory {} does not exist", path, dir);
    LQ_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0,
             "cannot create results database {}: directory {} is not writable (permission denied)", path, dir);
  }

  std::unique_ptr<ResultsDb> self(new ResultsDb());
  self->path_ = path;
  int flags = mode == Mode::ReadWrite ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) : SQLITE_OPEN_READONLY;
  std::string target = path;
  if (mode == Mode::ReadOnly && ::access(dir.c_str(), W_OK | X_OK) != 0 && !file_exists(path + "-shm")) {
    // A WAL database needs its -shm file even to read; in a directory we
    // cannot write, SQLite cannot create it. Without a -wal file (the last
    // writer closed cleanly, so every commit is in the main file, and no
    // writer can be active here) the file can be read as immutable.
    struct stat ws {};
    LQ_CHECK(::stat((path + "-wal").c_str(), &ws) != 0 || ws.st_size == 0,
             "cannot read results database {}: it has a write-ahead log {}-wal (a writer is active or was killed) "
             "but directory {} is not writable, so SQLite cannot create {}-shm; copy the three files to a writable "
             "directory",
             path, path, dir, path);
    target = "file:" + uri_escape(path) + "?immutable=1";
    flags |= SQLITE_OPEN_URI;
  }
  const int rc = sqlite3_open_v2(target.c_str(), &self->db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string m = self->db_ ? sqlite3_errmsg(self->db_) : sqlite3_errstr(rc);
    fail("cannot open results database {}: {}", path, m);
  }
  sqlite3_extended_result_codes(self->db_, 1);
  sqlite3_busy_timeout(self->db_, 10000);

  // The first read of the header: a non-database file fails here.
  int64_t app_id = 0, user_version = 0, tables = 0;
  {
    sqlite3_stmt* st = nullptr;
    int r = sqlite3_prepare_v2(self->db_, "PRAGMA application_id", -1, &st, nullptr);
    if (r == SQLITE_OK) r = sqlite3_step(st);
    if (r == SQLITE_ROW) app_id = sqlite3_column_int64(st, 0);
    const int code = r & 0xff;
    const std::string m = sqlite3_errmsg(self->db_);
    sqlite3_finalize(st);
    if (code == SQLITE_NOTADB) fail("{} is not a SQLite database (so not a longquant results database)", path);
    if (r != SQLITE_ROW) fail("cannot read results database {}: {}", path, m);
  }
  {
    Stmt s(self->db_, path, "PRAGMA user_version");
    if (s.step()) user_version = s.i64(0);
  }
  {
    Stmt s(self->db_, path, "SELECT count(*) FROM sqlite_master");
    if (s.step()) tables = s.i64(0);
  }
  if (tables == 0 && user_version == 0 && app_id == 0) {
    LQ_CHECK(mode == Mode::ReadWrite, "results database {} is empty (no schema): not a longquant results database",
             path);
  } else {
    LQ_CHECK(app_id == kResultsApplicationId,
             "{} is a SQLite database but not a longquant results database (application_id {}, expected {})", path,
             app_id, kResultsApplicationId);
    LQ_CHECK(user_version == kResultsSchemaVersion,
             "results database {} has schema version {}, but this longquant ({}) reads schema version {}: use the "
             "longquant that wrote it, or a new database",
             path, user_version, LQ_VERSION, kResultsSchemaVersion);
  }
  if (mode == Mode::ReadWrite) {
    {
      Stmt s(self->db_, path, "PRAGMA journal_mode=WAL");
      std::string jm = s.step() ? s.text(0) : "";
      LQ_CHECK(jm == "wal", "results database {}: cannot switch to WAL journal mode (got '{}')", path, jm);
    }
    self->exec("PRAGMA synchronous=FULL");
    if (tables == 0) self->create_schema();
  }
  self->exec("PRAGMA foreign_keys=ON");
  return self;
}

ResultsDb::~ResultsDb() {
  if (db_) sqlite3_close_v2(db_);
}

void ResultsDb::exec(const std::string& sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    fail("results database {}: {}", path_, m);
  }
}

void ResultsDb::create_schema() {
  WriteTxn t(db_, path_);
  // Another process may have created the schema between our check and the lock.
  int64_t tables = 0;
  {
    Stmt s(db_, path_, "SELECT count(*) FROM sqlite_master");
    if (s.step()) tables = s.i64(0);
  }
  if (tables != 0) {
    Stmt s(db_, path_, "PRAGMA user_version");
    const int64_t v = s.step() ? s.i64(0) : 0;
    LQ_CHECK(v == kResultsSchemaVersion, "results database {} has schema version {}, expected {}", path_, v,
             kResultsSchemaVersion);
    t.commit();
    return;
  }
  exec(kSchemaSql);
  exec(fmt::format("PRAGMA user_version={}", kResultsSchemaVersion));
  exec(fmt::format("PRAGMA application_id={}", kResultsApplicationId));
  t.commit();
}

int ResultsDb::schema_version() const {
  Stmt s(db_, path_, "PRAGMA user_version");
  return s.step() ? int(s.i64(0)) : 0;
}

std::string ResultsDb::integrity_check() const {
  Stmt s(db_, path_, "PRAGMA integrity_check");
  std::string out;
  while (s.step()) {
    if (!out.empty()) out += "\n";
    out += s.text(0);
  }
  return out;
}

// ---- runs -----------------------------------------------------------------

int64_t ResultsDb::register_run(RunInfo run) {
  if (run.started.empty()) run.started = now_iso8601();
  Stmt s(db_, path_,
         "INSERT INTO runs(started, ended, version, git_hash, cpu, threads, command_line) VALUES(?,?,?,?,?,?,?)");
  s.bind(1, run.started).bind(2, run.ended).bind(3, run.version).bind(4, run.git_hash).bind(5, run.cpu);
  s.bind(6, run.threads).bind(7, run.command_line);
  s.run();
  return sqlite3_last_insert_rowid(db_);
}

void ResultsDb::finish_run(int64_t run_id) {
  Stmt s(db_, path_, "UPDATE runs SET ended=? WHERE id=?");
  s.bind(1, now_iso8601()).bind(2, run_id);
  s.run();
  LQ_CHECK(sqlite3_changes(db_) == 1, "results database {}: no run with id {}", path_, run_id);
}

std::vector<RunInfo> ResultsDb::runs() const {
  Stmt s(db_, path_, "SELECT id, started, ended, version, git_hash, cpu, threads, command_line FROM runs ORDER BY id");
  std::vector<RunInfo> out;
  while (s.step()) {
    RunInfo r;
    r.id = s.i64(0);
    r.started = s.text(1);
    r.ended = s.text(2);
    r.version = s.text(3);
    r.git_hash = s.text(4);
    r.cpu = s.text(5);
    r.threads = s.i64(6);
    r.command_line = s.text(7);
    out.push_back(std::move(r));
  }
  return out;
}

// ---- variants -------------------------------------------------------------

void ResultsDb::register_variant(const VariantDef& v) {
  LQ_CHECK(!v.name.empty(), "results database {}: a variant needs a name", path_);
  LQ_CHECK(v.definition.is_object(), "results database {}: the definition of variant '{}' must be a JSON object",
           path_, v.name);
  WriteTxn t(db_, path_);
  if (auto old = variant(v.name)) {
    LQ_CHECK(old->definition == v.definition,
             "variant '{}' is already in results database {} with another definition:\n  stored: {}\n  new:    {}\n"
             "use a new variant name (or a new database) instead of mixing results of two definitions",
             v.name, path_, old->definition.dump(), v.definition.dump());
    t.commit();
    return;
  }
  Stmt s(db_, path_, std::string("INSERT INTO variants(name, definition, created) VALUES(?,?,") + kNowSql + ")");
  s.bind(1, v.name).bind(2, v.definition.dump());
  s.run();
  t.commit();
}

std::optional<VariantDef> ResultsDb::variant(const std::string& name) const {
  Stmt s(db_, path_, "SELECT name, definition, created FROM variants WHERE name=?");
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  VariantDef v;
  v.name = s.text(0);
  v.definition = parse_json_column(s.text(1), path_, "variants.definition");
  v.created = s.text(2);
  return v;
}

std::vector<VariantDef> ResultsDb::variants() const {
  Stmt s(db_, path_, "SELECT name, definition, created FROM variants ORDER BY id");
  std::vector<VariantDef> out;
  while (s.step()) {
    VariantDef v;
    v.name = s.text(0);
    v.definition = parse_json_column(s.text(1), path_, "variants.definition");
    v.created = s.text(2);
    out.push_back(std::move(v));
  }
  return out;
}

// ---- results --------------------------------------------------------------

bool ResultsDb::has_result(const ResultKey& k) const {
  Stmt s(db_, path_,
         "SELECT 1 FROM results WHERE variant=? AND suite=? AND task=? AND length=? AND lang=? AND example_index=? "
         "AND seed=? AND score IS NOT NULL");
  s.bind(1, k.variant).bind(2, k.suite).bind(3, k.task).bind(4, k.length).bind(5, k.lang).bind(6, k.index);
  s.bind(7, seed_to_db(k.seed));
  return s.step();
}

std::vector<int64_t> ResultsDb::done_indices(const std::string& variant, const std::string& suite,
                                             const std::string& task, int64_t length, const std::string& lang,
                                             uint64_t seed) const {
  Stmt s(db_, path_,
         "SELECT example_index FROM results WHERE variant=? AND suite=? AND task=? AND length=? AND lang=? AND seed=? "
         "AND score IS NOT NULL ORDER BY example_index");
  s.bind(1, variant).bind(2, suite).bind(3, task).bind(4, length).bind(5, lang).bind(6, seed_to_db(seed));
  std::vector<int64_t> out;
  while (s.step()) out.push_back(s.i64(0));
  return out;
}

InsertOutcome ResultsDb::insert_one(const ResultRow& row) {
  const ResultKey& k = row.key;
  LQ_CHECK(!k.variant.empty() && !k.suite.empty() && !k.task.empty() && !k.lang.empty(),
           "results database {}: incomplete result key ({})", path_, k.to_string());
  if (row.error.empty()) {
    LQ_CHECK(row.score.has_value(), "results database {}: result {} has neither a score nor an error", path_,
             k.to_string());
    LQ_CHECK(std::isfinite(*row.score) && *row.score >= 0.0 && *row.score <= 1.0,
             "results database {}: result {} has score {}, expected a value in [0, 1]", path_, k.to_string(),
             *row.score);
  } else {
    LQ_CHECK(!row.score.has_value(), "results database {}: failed result {} (error '{}') must not have a score",
             path_, k.to_string(), row.error);
  }
  {
    Stmt s(db_, path_, "SELECT 1 FROM variants WHERE name=?");
    s.bind(1, k.variant);
    LQ_CHECK(s.step(), "results database {}: variant '{}' is not registered (register_variant first)", path_,
             k.variant);
  }
  const int64_t seed = seed_to_db(k.seed);
  bool exists = false, stored_ok = false;
  std::string stored_hash;
  {
    Stmt s(db_, path_,
           "SELECT score IS NOT NULL, prompt_hash FROM results WHERE variant=? AND suite=? AND task=? AND length=? "
           "AND lang=? AND example_index=? AND seed=?");
    s.bind(1, k.variant).bind(2, k.suite).bind(3, k.task).bind(4, k.length).bind(5, k.lang).bind(6, k.index);
    s.bind(7, seed);
    if (s.step()) {
      exists = true;
      stored_ok = s.i64(0) != 0;
      stored_hash = s.text(1);
    }
  }
  if (exists && !stored_hash.empty() && !row.prompt_hash.empty() && stored_hash != row.prompt_hash) {
    fail("results database {}: example {} is stored with prompt hash {} but the new result has prompt hash {}: the "
         "task generator or its data changed under the same key; use a new seed or a new database",
         path_, k.to_string(), stored_hash, row.prompt_hash);
  }
  if (exists && (stored_ok || !row.ok())) return InsertOutcome::AlreadyPresent;

  json outs = json::array(), deps = json::array();
  for (const auto& o : row.outputs) outs.push_back(o);
  for (double d : row.depths) {
    LQ_CHECK(std::isfinite(d), "results database {}: result {} has a non-finite depth", path_, k.to_string());
    deps.push_back(d);
  }
  const std::string sql =
      exists ? std::string("UPDATE results SET prompt_hash=?8, prediction=?9, score=?10, outputs=?11, depths=?12, "
                           "prompt_tokens=?13, generated_tokens=?14, seconds=?15, error=?16, run_id=?17, created=") +
                   kNowSql +
                   " WHERE variant=?1 AND suite=?2 AND task=?3 AND length=?4 AND lang=?5 AND example_index=?6 AND "
                   "seed=?7"
             : std::string("INSERT INTO results(variant, suite, task, length, lang, example_index, seed, prompt_hash, "
                           "prediction, score, outputs, depths, prompt_tokens, generated_tokens, seconds, error, "
                           "run_id, created) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,") +
                   kNowSql + ")";
  Stmt s(db_, path_, sql);
  s.bind(1, k.variant).bind(2, k.suite).bind(3, k.task).bind(4, k.length).bind(5, k.lang).bind(6, k.index);
  s.bind(7, seed).bind(8, row.prompt_hash).bind(9, row.prediction);
  if (row.score) s.bind(10, *row.score);
  else s.bind_null(10);
  s.bind(11, outs.dump()).bind(12, deps.dump()).bind(13, row.prompt_tokens).bind(14, row.generated_tokens);
  s.bind(15, row.seconds).bind(16, row.error);
  if (row.run_id > 0) s.bind(17, row.run_id);
  else s.bind_null(17);
  s.run();
  return exists ? InsertOutcome::ReplacedFailure : InsertOutcome::Inserted;
}

InsertOutcome ResultsDb::insert_result(const ResultRow& row) {
  WriteTxn t(db_, path_);
  const InsertOutcome o = insert_one(row);
  t.commit();
  return o;
}

std::vector<InsertOutcome> ResultsDb::insert_results(const std::vector<ResultRow>& rows) {
  WriteTxn t(db_, path_);
  std::vector<InsertOutcome> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(insert_one(r));
  t.commit();
  return out;
}

std::vector<ResultRow> ResultsDb::query(const ResultFilter& f) const {
  std::string sql = std::string("SELECT ") + kResultColumns +
                    " FROM results r JOIN variants v ON v.name = r.variant WHERE 1";
  if (!f.variant.empty()) sql += " AND r.variant=?1";
  if (!f.suite.empty()) sql += " AND r.suite=?2";
  if (!f.task.empty()) sql += " AND r.task=?3";
  if (!f.lang.empty()) sql += " AND r.lang=?4";
  if (f.length) sql += " AND r.length=?5";
  if (!f.include_failed) sql += " AND r.score IS NOT NULL";
  sql += " ORDER BY v.id, r.suite, r.task, r.length, r.lang, r.seed, r.example_index";
  Stmt s(db_, path_, sql);
  if (!f.variant.empty()) s.bind(1, f.variant);
  if (!f.suite.empty()) s.bind(2, f.suite);
  if (!f.task.empty()) s.bind(3, f.task);
  if (!f.lang.empty()) s.bind(4, f.lang);
  if (f.length) s.bind(5, *f.length);
  std::vector<ResultRow> out;
  while (s.step()) out.push_back(read_result(s, path_));
  return out;
}

std::vector<CellCount> ResultsDb::cell_counts() const {
  Stmt s(db_, path_,
         "SELECT r.variant, r.suite, r.task, r.length, r.lang, count(r.score), sum(r.score IS NULL), "
         "coalesce(avg(r.score), 0) FROM results r JOIN variants v ON v.name = r.variant "
         "GROUP BY v.id, r.suite, r.task, r.length, r.lang ORDER BY v.id, r.suite, r.task, r.length, r.lang");
  std::vector<CellCount> out;
  while (s.step()) {
    CellCount c;
    c.variant = s.text(0);
    c.suite = s.text(1);
    c.task = s.text(2);
    c.length = s.i64(3);
    c.lang = s.text(4);
    c.n = s.i64(5);
    c.failed = s.i64(6);
    c.mean_score = s.f64(7);
    out.push_back(std::move(c));
  }
  return out;
}

int64_t ResultsDb::count_results(bool include_failed) const {
  Stmt s(db_, path_, include_failed ? "SELECT count(*) FROM results" : "SELECT count(score) FROM results");
  return s.step() ? s.i64(0) : 0;
}

// ---- intrinsic ------------------------------------------------------------

void ResultsDb::put_intrinsic(const IntrinsicResult& r) {
  LQ_CHECK(!r.variant.empty() && !r.label.empty(), "results database {}: intrinsic result needs a variant and label",
           path_);
  for (double v : {r.kld_mean, r.top1_agreement, r.ppl_base, r.ppl_model}) {
    LQ_CHECK(std::isfinite(v), "results database {}: intrinsic result {} / {} has a non-finite value", path_,
             r.variant, r.label);
  }
  WriteTxn t(db_, path_);
  {
    Stmt s(db_, path_, "SELECT 1 FROM variants WHERE name=?");
    s.bind(1, r.variant);
    LQ_CHECK(s.step(), "results database {}: variant '{}' is not registered (register_variant first)", path_,
             r.variant);
  }
  Stmt s(db_, path_,
         std::string("INSERT OR REPLACE INTO intrinsic(variant, label, baseline, tokens, kld_mean, top1_agreement, "
                     "ppl_base, ppl_model, by_position, created) VALUES(?,?,?,?,?,?,?,?,?,") +
             kNowSql + ")");
  s.bind(1, r.variant).bind(2, r.label).bind(3, r.baseline).bind(4, r.tokens).bind(5, r.kld_mean);
  s.bind(6, r.top1_agreement).bind(7, r.ppl_base).bind(8, r.ppl_model).bind(9, r.by_position.dump());
  s.run();
  t.commit();
}

std::vector<IntrinsicResult> ResultsDb::intrinsic() const {
  Stmt s(db_, path_,
         "SELECT i.variant, i.label, i.baseline, i.tokens, i.kld_mean, i.top1_agreement, i.ppl_base, i.ppl_model, "
         "i.by_position, i.created FROM intrinsic i JOIN variants v ON v.name = i.variant ORDER BY v.id, i.label");
  std::vector<IntrinsicResult> out;
  while (s.step()) {
    IntrinsicResult r;
    r.variant = s.text(0);
    r.label = s.text(1);
    r.baseline = s.text(2);
    r.tokens = s.i64(3);
    r.kld_mean = s.f64(4);
    r.top1_agreement = s.f64(5);
    r.ppl_base = s.f64(6);
    r.ppl_model = s.f64(7);
    r.by_position = parse_json_column(s.text(8), path_, "intrinsic.by_position");
    r.created = s.text(9);
    out.push_back(std::move(r));
  }
  return out;
}

// ---- export ---------------------------------------------------------------

json ResultsDb::row_to_json(const ResultRow& r, const std::string& method) {
  return {{"variant", r.key.variant},
          {"method", method},
          {"suite", r.key.suite},
          {"task", r.key.task},
          {"length", r.key.length},
          {"lang", r.key.lang},
          {"index", r.key.index},
          {"seed", r.key.seed},
          {"score", r.score ? json(*r.score) : json(nullptr)},
          {"prediction", r.prediction},
          {"outputs", r.outputs},
          {"depths", r.depths},
          {"prompt_tokens", r.prompt_tokens},
          {"generated_tokens", r.generated_tokens},
          {"seconds", r.seconds},
          {"prompt_hash", r.prompt_hash},
          {"error", r.error},
          {"run_id", r.run_id},
          {"created", r.created}};
}

const std::vector<std::string>& ResultsDb::csv_columns() {
  static const std::vector<std::string> cols = {
      "variant", "method",  "suite",         "task",          "length",           "lang",    "index",
      "seed",    "score",   "prediction",    "outputs",       "depths",           "prompt_tokens",
      "generated_tokens",   "seconds",       "prompt_hash",   "error",            "run_id",  "created"};
  return cols;
}

void ResultsDb::export_jsonl(std::ostream& out, const ResultFilter& f) const {
  std::map<std::string, std::string> methods;
  for (const auto& v : variants()) methods[v.name] = v.method();
  for (const auto& r : query(f)) out << row_to_json(r, methods[r.key.variant]).dump() << '\n';
  LQ_CHECK(out.good(), "results database {}: writing the JSONL export failed", path_);
}

void ResultsDb::export_csv(std::ostream& out, const ResultFilter& f) const {
  std::map<std::string, std::string> methods;
  for (const auto& v : variants()) methods[v.name] = v.method();
  const auto& cols = csv_columns();
  for (size_t i = 0; i < cols.size(); ++i) out << (i ? "," : "") << cols[i];
  out << "\r\n";
  for (const auto& r : query(f)) {
    const std::vector<std::string> cells = {r.key.variant,
                                            methods[r.key.variant],
                                            r.key.suite,
                                            r.key.task,
                                            std::to_string(r.key.length),
                                            r.key.lang,
                                            std::to_string(r.key.index),
                                            std::to_string(r.key.seed),
                                            r.score ? fmt_double(*r.score) : std::string(),
                                            r.prediction,
                                            json(r.outputs).dump(),
                                            json(r.depths).dump(),
                                            std::to_string(r.prompt_tokens),
                                            std::to_string(r.generated_tokens),
                                            fmt_double(r.seconds),
                                            r.prompt_hash,
                                            r.error,
                                            std::to_string(r.run_id),
                                            r.created};
    for (size_t i = 0; i < cells.size(); ++i) out << (i ? "," : "") << csv_escape(cells[i]);
    out << "\r\n";
  }
  LQ_CHECK(out.good(), "results database {}: writing the CSV export failed", path_);
}

json ResultsDb::summary_json() const {
  json vars = json::array();
  std::map<std::string, std::pair<int64_t, int64_t>> per_variant;  // scored, failed
  json cells = json::array();
  for (const auto& c : cell_counts()) {
    per_variant[c.variant].first += c.n;
    per_variant[c.variant].second += c.failed;
    cells.push_back({{"variant", c.variant},
                     {"suite", c.suite},
                     {"task", c.task},
                     {"task_id", c.suite + "/" + c.task},
                     {"length", c.length},
                     {"lang", c.lang},
                     {"n", c.n},
                     {"failed", c.failed},
                     {"mean_score", c.n ? json(c.mean_score) : json(nullptr)}});
  }
  const auto vs = variants();
  for (const auto& v : vs) {
    vars.push_back({{"name", v.name},
                    {"method", v.method()},
                    {"definition", v.definition},
                    {"created", v.created},
                    {"results", per_variant[v.name].first},
                    {"failed", per_variant[v.name].second}});
  }
  json rs = json::array();
  const auto rr = runs();
  for (const auto& r : rr) rs.push_back(r.to_json());
  json intr = json::array();
  for (const auto& i : intrinsic()) {
    intr.push_back({{"variant", i.variant},
                    {"label", i.label},
                    {"baseline", i.baseline},
                    {"tokens", i.tokens},
                    {"kld_mean", i.kld_mean},
                    {"top1_agreement", i.top1_agreement},
                    {"ppl_base", i.ppl_base},
                    {"ppl_model", i.ppl_model},
                    {"by_position", i.by_position},
                    {"created", i.created}});
  }
  const int64_t total = count_results(true), scored = count_results(false);
  return {{"path", path_},
          {"schema_version", schema_version()},
          {"variants", vars},
          {"runs", rs},
          {"cells", cells},
          {"intrinsic", intr},
          {"totals",
           {{"results", total},
            {"scored", scored},
            {"failed", total - scored},
            {"variants", vs.size()},
            {"runs", rr.size()}}}};
}

}  // namespace lq
