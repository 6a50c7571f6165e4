// eval/results_db_test.cc: the SQLite results store: round trip, idempotence,
// conflicts, schema/version errors, permissions, WAL concurrency and kill -9.
#include "eval/results_db.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"

namespace lq {
namespace {

using json = nlohmann::json;

// A fresh directory (mode 0755 so a dropped-privilege child can enter it), removed at the end.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/lq_results_test_XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (!p) throw std::runtime_error("mkdtemp failed");
    path = p;
    ::chmod(path.c_str(), 0755);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    for (auto& e : std::filesystem::recursive_directory_iterator(path, ec))
      std::filesystem::permissions(e.path(), std::filesystem::perms::owner_all, std::filesystem::perm_options::add,
                                   ec);
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

VariantDef def(const std::string& name, const std::string& method) {
  return {name, json{{"source", "/models/tiny"}, {"method", method}, {"settings", {{"group_size", 128}}},
                     {"config_checksum", "abc123"}}, ""};
}

ResultRow row(const std::string& variant, int64_t index, double score, const std::string& lang = "en",
              int64_t length = 8192) {
  ResultRow r;
  r.key = {variant, "ruler", "niah_single_1", length, lang, index, 7};
  r.prompt_hash = prompt_hash("prompt " + std::to_string(index) + lang + std::to_string(length));
  r.prediction = "answer " + std::to_string(index);
  r.score = score;
  r.outputs = {"1234567"};
  r.depths = {double(index % 10) * 10.0};
  r.prompt_tokens = 8000 + index;
  r.generated_tokens = 12;
  r.seconds = 1.5;
  return r;
}

// Expects `f` to throw lq::Error whose message contains every string in `parts`.
template <typename F>
void expect_error(F f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected lq::Error";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "message lacks '" << p << "': " << m;
  }
}

TEST(ResultsDb, RoundTripAllFields) {
  TempDir t;
  const std::string path = t.file("r.db");
  {
    auto db = ResultsDb::open(path);
    EXPECT_EQ(db->schema_version(), kResultsSchemaVersion);
    const int64_t run = db->register_run(make_run_info("longquant eval --n 2", 4, "Test CPU"));
    EXPECT_EQ(run, 1);
    db->register_variant(def("bf16", "bf16"));
    db->register_variant(def("q4", "gptq-int4"));
    ResultRow a = row("q4", 3, 0.5, "pl", 16384);
    a.key.seed = 0xFFFF'FFFF'FFFF'FFF0ull;  // > INT64_MAX: stored bit-cast
    a.prediction = "Zażółć \"gęślą\", jaźń\nline 2";
    a.outputs = {"x, y", "ź"};
    a.depths = {12.5, 87.5};
    a.run_id = run;
    EXPECT_EQ(db->insert_result(a), InsertOutcome::Inserted);
    ResultRow f = row("bf16", 0, 0.0);
    f.score.reset();
    f.error = "prompt longer than the model's context";
    EXPECT_EQ(db->insert_result(f), InsertOutcome::Inserted);
    db->finish_run(run);
  }
  auto db = ResultsDb::open(path, ResultsDb::Mode::ReadOnly);
  const auto rows = db->query();
  ASSERT_EQ(rows.size(), 2u);
  // Order: variant registration order first (bf16 before q4).
  EXPECT_EQ(rows[0].key.variant, "bf16");
  EXPECT_FALSE(rows[0].score.has_value());
  EXPECT_EQ(rows[0].error, "prompt longer than the model's context");
  EXPECT_FALSE(rows[0].ok());
  const ResultRow& r = rows[1];
  EXPECT_EQ(r.key.variant, "q4");
  EXPECT_EQ(r.key.suite, "ruler");
  EXPECT_EQ(r.key.task, "niah_single_1");
  EXPECT_EQ(r.key.length, 16384);
  EXPECT_EQ(r.key.lang, "pl");
  EXPECT_EQ(r.key.index, 3);
  EXPECT_EQ(r.key.seed, 0xFFFF'FFFF'FFFF'FFF0ull);
  EXPECT_EQ(r.prediction, "Zażółć \"gęślą\", jaźń\nline 2");
  ASSERT_TRUE(r.score.has_value());
  EXPECT_EQ(*r.score, 0.5);
  EXPECT_EQ(r.outputs, (std::vector<std::string>{"x, y", "ź"}));
  EXPECT_EQ(r.depths, (std::vector<double>{12.5, 87.5}));
  EXPECT_EQ(r.prompt_tokens, 8003);
  EXPECT_EQ(r.generated_tokens, 12);
  EXPECT_EQ(r.seconds, 1.5);
  EXPECT_EQ(r.run_id, 1);
  EXPECT_FALSE(r.created.empty());
  EXPECT_EQ(r.prompt_hash, prompt_hash("prompt 3pl16384"));

  const auto runs = db->runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].command_line, "longquant eval --n 2");
  EXPECT_EQ(runs[0].cpu, "Test CPU");
  EXPECT_EQ(runs[0].threads, 4);
  EXPECT_EQ(runs[0].version, LQ_VERSION);
  EXPECT_FALSE(runs[0].ended.empty());

  const auto vs = db->variants();
  ASSERT_EQ(vs.size(), 2u);
  EXPECT_EQ(vs[1].name, "q4");
  EXPECT_EQ(vs[1].method(), "gptq-int4");
  EXPECT_EQ(vs[1].definition["settings"]["group_size"], 128);

  // Filters.
  ResultFilter fl;
  fl.lang = "pl";
  EXPECT_EQ(db->query(fl).size(), 1u);
  fl = {};
  fl.include_failed = false;
  EXPECT_EQ(db->query(fl).size(), 1u);
  fl = {};
  fl.length = 8192;
  EXPECT_EQ(db->query(fl).size(), 1u);
  EXPECT_EQ(db->count_results(true), 2);
  EXPECT_EQ(db->count_results(false), 1);

  const json s = db->summary_json();
  EXPECT_EQ(s["schema_version"], kResultsSchemaVersion);
  EXPECT_EQ(s["totals"]["results"], 2);
  EXPECT_EQ(s["totals"]["failed"], 1);
  ASSERT_EQ(s["cells"].size(), 2u);
  EXPECT_EQ(s["cells"][1]["variant"], "q4");
  EXPECT_EQ(s["cells"][1]["n"], 1);
  EXPECT_EQ(s["cells"][1]["mean_score"], 0.5);
  EXPECT_EQ(s["cells"][0]["failed"], 1);
  EXPECT_TRUE(s["cells"][0]["mean_score"].is_null());
  EXPECT_EQ(db->integrity_check(), "ok");
}

TEST(ResultsDb, IdempotentInsertAndRetryOfFailures) {
  TempDir t;
  auto db = ResultsDb::open(t.file("r.db"));
  db->register_variant(def("bf16", "bf16"));
  EXPECT_EQ(db->insert_result(row("bf16", 0, 1.0)), InsertOutcome::Inserted);
  // Same key again, even with another prediction: the first result stays.
  ResultRow again = row("bf16", 0, 0.0);
  again.prediction = "different";
  EXPECT_EQ(db->insert_result(again), InsertOutcome::AlreadyPresent);
  EXPECT_EQ(db->count_results(), 1);
  EXPECT_EQ(*db->query()[0].score, 1.0);

  // A failed example is stored, not "done", and replaced by a later success.
  ResultRow f = row("bf16", 1, 0.0);
  f.score.reset();
  f.error = "out of memory";
  EXPECT_EQ(db->insert_result(f), InsertOutcome::Inserted);
  EXPECT_FALSE(db->has_result(f.key));
  EXPECT_EQ(db->insert_result(f), InsertOutcome::AlreadyPresent);
  EXPECT_EQ(db->insert_result(row("bf16", 1, 1.0)), InsertOutcome::ReplacedFailure);
  EXPECT_TRUE(db->has_result(f.key));
  const auto rows = db->query();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(rows[1].ok());
  EXPECT_EQ(rows[1].error, "");
  // A failure never overwrites a success.
  EXPECT_EQ(db->insert_result(f), InsertOutcome::AlreadyPresent);
  EXPECT_TRUE(db->has_result(f.key));

  // Batches: duplicates inside and across batches are skipped.
  const auto out = db->insert_results({row("bf16", 2, 1.0), row("bf16", 0, 1.0), row("bf16", 3, 0.0)});
  EXPECT_EQ(out, (std::vector<InsertOutcome>{InsertOutcome::Inserted, InsertOutcome::AlreadyPresent,
                                             InsertOutcome::Inserted}));
  EXPECT_EQ(db->done_indices("bf16", "ruler", "niah_single_1", 8192, "en", 7), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_TRUE(db->done_indices("bf16", "ruler", "niah_single_1", 8192, "en", 8).empty());
  ResultKey k = row("bf16", 2, 1.0).key;
  EXPECT_TRUE(db->has_result(k));
  k.seed = 8;
  EXPECT_FALSE(db->has_result(k));

  // A batch with a bad row is rolled back as a whole.
  ResultRow bad = row("bf16", 5, 2.0);
  EXPECT_THROW(db->insert_results({row("bf16", 4, 1.0), bad}), Error);
  EXPECT_EQ(db->count_results(), 4);
}

TEST(ResultsDb, ChangedPromptUnderSameKeyIsAnError) {
  TempDir t;
  auto db = ResultsDb::open(t.file("r.db"));
  db->register_variant(def("bf16", "bf16"));
  ResultRow a = row("bf16", 0, 1.0);
  db->insert_result(a);
  ResultRow b = a;
  b.prompt_hash = prompt_hash("another prompt");
  expect_error([&] { db->insert_result(b); }, {a.prompt_hash, b.prompt_hash, "index=0", "changed"});
}

TEST(ResultsDb, VariantDefinitionConflictNamesBoth) {
  TempDir t;
  auto db = ResultsDb::open(t.file("r.db"));
  db->register_variant(def("q4", "gptq-int4"));
  // Same definition with keys in another order: fine (JSON equality).
  db->register_variant({"q4", json::parse(R"({"config_checksum":"abc123","settings":{"group_size":128},
                                              "method":"gptq-int4","source":"/models/tiny"})"), ""});
  EXPECT_EQ(db->variants().size(), 1u);
  VariantDef other = def("q4", "awq-int4");
  expect_error([&] { db->register_variant(other); }, {"'q4'", "gptq-int4", "awq-int4", "another definition"});
  expect_error([&] { db->register_variant({"x", json::array(), ""}); }, {"JSON object"});
}

TEST(ResultsDb, RejectsBadRows) {
  TempDir t;
  auto db = ResultsDb::open(t.file("r.db"));
  db->register_variant(def("bf16", "bf16"));
  expect_error([&] { db->insert_result(row("nope", 0, 1.0)); }, {"'nope'", "not registered"});
  expect_error([&] { db->insert_result(row("bf16", 0, 1.5)); }, {"score 1.5"});
  expect_error([&] { db->insert_result(row("bf16", 0, std::nan(""))); }, {"[0, 1]"});
  ResultRow f = row("bf16", 0, 1.0);
  f.error = "boom";
  expect_error([&] { db->insert_result(f); }, {"must not have a score"});
  ResultRow g = row("bf16", 0, 1.0);
  g.score.reset();
  expect_error([&] { db->insert_result(g); }, {"neither a score nor an error"});
  EXPECT_EQ(db->count_results(), 0);
}

TEST(ResultsDb, SchemaVersionMismatchIsAClearError) {
  TempDir t;
  const std::string path = t.file("r.db");
  ResultsDb::open(path)->register_variant(def("bf16", "bf16"));
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw, "PRAGMA user_version=2", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  expect_error([&] { ResultsDb::open(path); }, {path, "schema version 2", "schema version 1"});
  expect_error([&] { ResultsDb::open(path, ResultsDb::Mode::ReadOnly); }, {"schema version 2"});
}

TEST(ResultsDb, OtherFilesAreClearErrors) {
  TempDir t;
  // Some other application's SQLite database.
  const std::string other = t.file("other.db");
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(other.c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw, "CREATE TABLE t(x)", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  expect_error([&] { ResultsDb::open(other); }, {other, "not a longquant results database"});
  // Not a database at all.
  const std::string text = t.file("notes.txt");
  std::ofstream(text) << "this is not a database, just some text that is long enough to look like a header....\n";
  expect_error([&] { ResultsDb::open(text); }, {text, "not a SQLite database"});
  // Missing file / directory.
  expect_error([&] { ResultsDb::open(t.file("absent.db"), ResultsDb::Mode::ReadOnly); }, {"does not exist"});
  expect_error([&] { ResultsDb::open(t.file("no/such/dir/r.db")); }, {"directory", "does not exist"});
  expect_error([&] { ResultsDb::open(t.path); }, {"not a regular file"});
}

// Opening in a read-only directory / an unwritable file must fail with a
// clear message. Root ignores permissions, so as root the check runs in a
// forked child that drops to uid/gid 65534 (nobody).
TEST(ResultsDb, ReadOnlyDirectoryAndFileAreClearErrors) {
  TempDir t;
  const std::string ro = t.file("ro");
  ASSERT_EQ(::mkdir(ro.c_str(), 0755), 0);
  const std::string existing = t.file("existing.db");
  ResultsDb::open(existing)->register_variant(def("bf16", "bf16"));
  ASSERT_EQ(::chmod(existing.c_str(), 0444), 0);
  ASSERT_EQ(::chmod(ro.c_str(), 0555), 0);

  auto check = [&]() -> std::string {  // "" on success, else what went wrong
    std::string problems;
    try {
      ResultsDb::open(ro + "/r.db");
      problems += "no error for a read-only directory; ";
    } catch (const Error& e) {
      if (std::string(e.what()).find("not writable") == std::string::npos) problems += e.what();
    }
    try {
      ResultsDb::open(existing);
      problems += "no error for a read-only file; ";
    } catch (const Error& e) {
      if (std::string(e.what()).find("not writable") == std::string::npos) problems += e.what();
    }
    try {  // Reading it is fine.
      auto db = ResultsDb::open(existing, ResultsDb::Mode::ReadOnly);
      if (db->variants().size() != 1) problems += "read-only open lost data; ";
    } catch (const Error& e) {
      problems += std::string("read-only open failed: ") + e.what();
    }
    return problems;
  };
  if (::geteuid() != 0) {
    EXPECT_EQ(check(), "");
    return;
  }
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string msg;
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) msg = "cannot drop privileges";
    else msg = check();
    (void)!::write(fds[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) msg.append(buf, size_t(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  if (msg == "cannot drop privileges") GTEST_SKIP() << "running as root and cannot drop privileges to uid 65534";
  EXPECT_EQ(msg, "");
}

// WAL: a reader inside a transaction keeps its snapshot while the writer
// commits, and neither blocks the other (with a rollback journal the
// writer's commit would wait for the reader's SHARED lock and fail after the
// busy timeout).
TEST(ResultsDb, ConcurrentReaderWhileWriting) {
  TempDir t;
  const std::string path = t.file("r.db");
  auto writer = ResultsDb::open(path);
  writer->register_variant(def("bf16", "bf16"));
  for (int i = 0; i < 5; ++i) writer->insert_result(row("bf16", i, 1.0));
  EXPECT_TRUE(std::filesystem::exists(path + "-wal"));

  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  auto count = [&] {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(reader, "SELECT count(*) FROM results", -1, &st, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(st), SQLITE_ROW);
    const int64_t c = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return c;
  };
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(count(), 5);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 5; i < 10; ++i) writer->insert_result(row("bf16", i, 1.0));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 5.0) << "the writer waited for the reader";  // 5 commits take milliseconds; busy timeout is 10 s
  EXPECT_EQ(count(), 5);  // still the snapshot
  ASSERT_EQ(sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(count(), 10);
  sqlite3_close(reader);

  // Threads: a writer inserting while a reader (own connection) polls; the
  // reader's counts never decrease and it never fails with SQLITE_BUSY.
  std::atomic<bool> done{false};
  std::thread w([&] {
    auto db = ResultsDb::open(path);
    for (int i = 10; i < 60; ++i) db->insert_result(row("bf16", i, 0.0));
    done = true;
  });
  auto rd = ResultsDb::open(path, ResultsDb::Mode::ReadOnly);
  int64_t last = 0;
  bool monotonic = true;
  std::string error;
  while (true) {
    const bool finished = done.load();
    try {
      const int64_t c = rd->count_results();
      if (c < last) monotonic = false;
      last = c;
      rd->cell_counts();
    } catch (const Error& e) {
      error = e.what();
      break;
    }
    if (finished) break;
  }
  w.join();
  EXPECT_EQ(error, "");
  EXPECT_TRUE(monotonic);
  EXPECT_EQ(rd->count_results(), 60);
}

// kill -9 while a child inserts rows one transaction each: the database is
// intact, the stored indices are exactly a prefix 0..k-1 (no gaps, no
// duplicates), and a "rerun" inserts only the missing ones.
TEST(ResultsDb, SigkillKeepsAPrefixAndResumes) {
  TempDir t;
  const std::string path = t.file("r.db");
  ResultsDb::open(path)->register_variant(def("bf16", "bf16"));  // closed before fork
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    try {
      auto db = ResultsDb::open(path);
      for (int i = 0; i < 1000000; ++i) db->insert_result(row("bf16", i, double(i % 2)));
    } catch (...) {
    }
    ::_exit(3);
  }
  // Wait until at least 40 rows are committed (or 20 s), then kill.
  int64_t seen = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
    try {
      seen = ResultsDb::open(path, ResultsDb::Mode::ReadOnly)->count_results();
    } catch (const Error&) {
    }
    if (seen >= 40) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child ended by itself (status " << status << ")";
  ASSERT_GE(seen, 40) << "the child did not commit 40 rows in 20 s";

  auto db = ResultsDb::open(path);
  EXPECT_EQ(db->integrity_check(), "ok");
  const auto rows = db->query();
  const int64_t k = int64_t(rows.size());
  EXPECT_GE(k, seen);
  std::set<int64_t> idx;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].key.index, int64_t(i)) << "not a prefix";
    EXPECT_EQ(*rows[i].score, double(i % 2));
    idx.insert(rows[i].key.index);
  }
  EXPECT_EQ(int64_t(idx.size()), k);
  // Resume: the rerun skips 0..k-1 and adds k..k+4.
  int inserted = 0, skipped = 0;
  for (int64_t i = 0; i < k + 5; ++i) {
    (db->insert_result(row("bf16", i, double(i % 2))) == InsertOutcome::Inserted ? inserted : skipped)++;
  }
  EXPECT_EQ(skipped, k);
  EXPECT_EQ(inserted, 5);
  EXPECT_EQ(db->count_results(), k + 5);
}

// Minimal RFC 4180 reader for the test.
std::vector<std::vector<std::string>> parse_csv(const std::string& s) {
  std::vector<std::vector<std::string>> out(1);
  std::string cell;
  bool quoted = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '"' && i + 1 < s.size() && s[i + 1] == '"') {
        cell += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cell += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.back().push_back(cell);
      cell.clear();
    } else if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') {
      out.back().push_back(cell);
      cell.clear();
      out.emplace_back();
      ++i;
    } else {
      cell += c;
    }
  }
  if (out.back().empty()) out.pop_back();
  return out;
}

TEST(ResultsDb, ExportJsonlAndCsv) {
  TempDir t;
  auto db = ResultsDb::open(t.file("r.db"));
  db->register_variant(def("bf16", "bf16"));
  ResultRow a = row("bf16", 0, 0.75);
  a.prediction = "a, \"quoted\"\nanswer";
  db->insert_result(a);
  ResultRow f = row("bf16", 1, 0.0);
  f.score.reset();
  f.error = "timeout";
  db->insert_result(f);

  std::ostringstream jl;
  db->export_jsonl(jl);
  std::istringstream in(jl.str());
  std::string line;
  std::vector<json> recs;
  while (std::getline(in, line)) recs.push_back(json::parse(line));
  ASSERT_EQ(recs.size(), 2u);
  const json& r = recs[0];
  EXPECT_EQ(r["variant"], "bf16");
  EXPECT_EQ(r["method"], "bf16");
  EXPECT_EQ(r["suite"], "ruler");
  EXPECT_EQ(r["task"], "niah_single_1");
  EXPECT_TRUE(r["length"].is_number_integer());
  EXPECT_EQ(r["length"], 8192);
  EXPECT_EQ(r["lang"], "en");
  EXPECT_EQ(r["index"], 0);
  EXPECT_EQ(r["seed"], 7);
  EXPECT_EQ(r["score"], 0.75);
  EXPECT_EQ(r["prediction"], a.prediction);
  EXPECT_EQ(r["outputs"], json::array({"1234567"}));
  EXPECT_EQ(r["prompt_tokens"], 8000);
  EXPECT_EQ(r["generated_tokens"], 12);
  EXPECT_TRUE(recs[1]["score"].is_null());
  EXPECT_EQ(recs[1]["error"], "timeout");

  std::ostringstream cs;
  db->export_csv(cs);
  const auto table = parse_csv(cs.str());
  ASSERT_EQ(table.size(), 3u);
  EXPECT_EQ(table[0], ResultsDb::csv_columns());
  auto col = [&](const std::string& name) {
    const auto& h = table[0];
    return size_t(std::find(h.begin(), h.end(), name) - h.begin());
  };
  EXPECT_EQ(table[1][col("prediction")], a.prediction);
  EXPECT_EQ(table[1][col("score")], "0.75");
  EXPECT_EQ(table[1][col("length")], "8192");
  EXPECT_EQ(json::parse(table[1][col("outputs")]), json::array({"1234567"}));
  EXPECT_EQ(table[2][col("score")], "");
  EXPECT_EQ(table[2][col("error")], "timeout");
  for (const auto& r2 : table) EXPECT_EQ(r2.size(), ResultsDb::csv_columns().size());
}

TEST(ResultsDb, IntrinsicResults) {
  TempDir t;
  auto db = ResultsDb::open(t.file("r.db"));
  db->register_variant(def("q4", "gptq-int4"));
  IntrinsicResult r;
  r.variant = "q4";
  r.label = "pg19@8k";
  r.baseline = "bf16";
  r.tokens = 8192;
  r.kld_mean = 0.0123;
  r.top1_agreement = 0.97;
  r.ppl_base = 7.5;
  r.ppl_model = 7.7;
  r.by_position = {{"positions", {1024, 2048}}, {"kld", {0.01, 0.02}}};
  db->put_intrinsic(r);
  r.kld_mean = 0.0125;  // re-measured: replaces
  db->put_intrinsic(r);
  const auto got = db->intrinsic();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kld_mean, 0.0125);
  EXPECT_EQ(got[0].by_position["kld"][1], 0.02);
  r.variant = "absent";
  EXPECT_THROW(db->put_intrinsic(r), Error);
}

TEST(ResultsDb, HelpersAreStable) {
  // FNV-1a 64 of "" and "a" (published test vectors).
  EXPECT_EQ(prompt_hash(""), "cbf29ce484222325");
  EXPECT_EQ(prompt_hash("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(csv_escape("plain"), "plain");
  EXPECT_EQ(csv_escape("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_escape("say \"hi\""), "\"say \"\"hi\"\"\"");
}

}  // namespace
}  // namespace lq
