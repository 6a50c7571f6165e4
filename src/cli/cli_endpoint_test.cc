// `longquant eval` with OpenAI-compatible endpoint variants (issue 7, client half):
//  * run_eval against an in-process fake server (a deterministic echo: the reply
//    is a hash of the prompt), which is "killed" mid-run -- the request that
//    triggers it and every request arriving before it is gone hang past the
//    client's timeout, then the listener closes -- and either restarted at once
//    (the client's retries carry the run through) or left down (the variant
//    stops, a rerun finishes it). Either way every example ends up in the
//    database exactly once, identical to an uninterrupted run.
//  * a server refusing every request (400): each example is stored as failed
//    with the server's message, the run goes on, and a rerun retries them.
//  * the real `longquant serve` on a synthesised model: the native variant and
//    endpoint variants (token-id and text prompts) give identical predictions.
#include <gtest/gtest.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/rng.h"
#include "eval/results_db.h"
#include "eval/runner.h"
#include "model/synth.h"

namespace lq {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

const std::string kCli = LQ_CLI_PATH;

// Every directory of this process lives under one root, removed at exit.
struct TempRoot {
  std::string path;
  TempRoot() {
    path = ::testing::TempDir() + "lq_endpoint_XXXXXX";
    if (::mkdtemp(path.data()) == nullptr) throw Error("mkdtemp failed for " + path);
  }
  ~TempRoot() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};
std::string tmpdir() {
  static TempRoot root;
  static int n = 0;
  const std::string d = root.path + "/" + std::to_string(n++);
  std::filesystem::create_directories(d);
  return d;
}

int sh(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// A 1-layer random Llama with a byte-level tokenizer: the model `longquant serve`
// serves. With weights = false only its tokenizer and config (the endpoint's
// tokenizer=DIR for the echo server), which is all the runner needs.
std::string synth_model(bool weights) {
  SynthOptions so;
  so.like = "tiny-llama";
  so.out_dir = tmpdir() + "/m";
  so.layers = 1;
  so.seed = 11;
  synth_checkpoint(so);
  if (!weights) std::filesystem::remove(so.out_dir + "/model.safetensors");
  return so.out_dir;
}
const std::string& model_dir() {
  static const std::string dir = synth_model(true);
  return dir;
}
const std::string& tok_dir() {
  static const std::string dir = synth_model(false);
  return dir;
}

// A fake OpenAI server answering /v1/completions with " <16 hex digits of the
// prompt's FNV-1a>" and usage {prompt_tokens: prompt bytes, completion_tokens: 5}.
// Restartable on the same port. kill_at = k: the k-th request "kills" it (sets
// `dying` for the test's operator thread): that request and every later one hang
// for hang_ms (past the client's timeout), so their replies are lost.
class EchoServer {
 public:
  ~EchoServer() { stop(); }

  void start(int port = 0) {
    svr_ = std::make_unique<httplib::Server>();
    svr_->new_task_queue = [] { return new httplib::ThreadPool(16); };
    svr_->Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object": "list", "data": [{"id": "echo", "object": "model"}]})", "application/json");
    });
    svr_->Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      const int hit = ++hits;
      // Decided by the hit number alone, so exactly kill_at - 1 requests are answered.
      if (kill_at > 0 && hit >= kill_at) {
        dying = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(hang_ms));
        res.status = 503;  // too late: the client has given up on this connection
        return;
      }
      if (refuse) {
        res.status = 400;
        res.set_content(R"({"error": {"message": "fake refusal", "type": "invalid_request_error"}})",
                        "application/json");
        return;
      }
      json b = json::parse(req.body);
      const std::string prompt = b["prompt"].get<std::string>();
      json r = {{"choices", {{{"text", fmt::format(" {:016x}", fnv1a64(prompt))}, {"finish_reason", "stop"}}}},
                {"usage", {{"prompt_tokens", prompt.size()}, {"completion_tokens", 5}}}};
      ++answered;
      res.set_content(r.dump(), "application/json");
    });
    if (port == 0) {
      port_ = svr_->bind_to_any_port("127.0.0.1");
    } else {
      bool ok = false;
      for (int i = 0; i < 100 && !ok; ++i) {
        ok = svr_->bind_to_port("127.0.0.1", port);
        if (!ok) std::this_thread::sleep_for(20ms);
      }
      ASSERT_TRUE(ok) << "cannot bind port " << port << " again";
      port_ = port;
    }
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { svr_->listen_after_bind(); });
    for (int i = 0; i < 500 && !svr_->is_running(); ++i) std::this_thread::sleep_for(2ms);
  }

  // Closes the listener and waits for the handlers in flight.
  void stop() {
    if (!svr_) return;
    svr_->stop();
    if (thread_.joinable()) thread_.join();
    svr_.reset();
  }

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

  std::atomic<int> hits{0}, answered{0}, kill_at{0};
  std::atomic<bool> dying{false}, refuse{false};
  int hang_ms = 3000;

 private:
  std::unique_ptr<httplib::Server> svr_;
  std::thread thread_;
  int port_ = 0;
};

EvalOptions eval_options(const std::string& db, const std::string& variant) {
  EvalOptions o;
  o.variants = {VariantSpec::parse(variant)};
  o.tasks = {"ruler/niah_single_1", "ruler/niah_multikey_1"};
  o.lengths = {1000};
  o.n = 6;
  o.seed = 7;
  o.db_path = db;
  o.quiet = true;
  return o;
}
constexpr int64_t kExamples = 2 * 6;

// (key, prediction, score, usage) of every row, in the database's order.
std::vector<std::string> rows_of(const std::string& db) {
  auto d = ResultsDb::open(db, ResultsDb::Mode::ReadOnly);
  std::vector<std::string> out;
  for (auto& r : d->query())
    out.push_back(r.key.to_string() + " | " + r.prediction + " | " +
                  (r.score ? std::to_string(*r.score) : "failed: " + r.error) + " | " +
                  std::to_string(r.prompt_tokens) + "/" + std::to_string(r.generated_tokens));
  return out;
}

std::string endpoint_variant(const EchoServer& s, const std::string& extra) {
  return "ep=" + s.url() + ",model=echo,tokenizer=" + tok_dir() + ",concurrency=3" + extra;
}

// The uninterrupted run every faulty one must reproduce.
std::vector<std::string> reference_rows(const std::string& dir) {
  EchoServer s;
  s.start();
  const std::string db = dir + "/ref.db";
  EvalSummary sum = run_eval(eval_options(db, endpoint_variant(s, "")));
  EXPECT_EQ(sum.done, kExamples);
  EXPECT_EQ(sum.failed, 0);
  auto rows = rows_of(db);
  EXPECT_EQ(int64_t(rows.size()), kExamples);
  return rows;
}

void expect_each_example_once(const std::string& db) {
  auto d = ResultsDb::open(db, ResultsDb::Mode::ReadOnly);
  EXPECT_EQ(d->integrity_check(), "ok");
  std::set<std::string> keys;
  for (auto& r : d->query()) {
    EXPECT_TRUE(r.ok()) << r.key.to_string() << ": " << r.error;
    EXPECT_TRUE(keys.insert(r.key.to_string()).second) << "twice: " << r.key.to_string();
    EXPECT_EQ(r.generated_tokens, 5);  // the server's usage.completion_tokens is what is stored
  }
  EXPECT_EQ(int64_t(keys.size()), kExamples);
}

TEST(CliEndpoint, VariantSpecWithSeveralUrls) {
  auto v = VariantSpec::parse("fleet=http://a:1/v1|https://b:2/v1,model=m,concurrency=8");
  EXPECT_TRUE(v.is_endpoint());
  EXPECT_EQ(v.endpoint_urls(), (std::vector<std::string>{"http://a:1/v1", "https://b:2/v1"}));
  EXPECT_EQ(v.settings.at("model"), "m");
  EXPECT_EQ(v.settings.at("concurrency"), "8");
  EXPECT_EQ(VariantSpec::parse("one=http://a:1/v1,model=m").endpoint_urls(),
            (std::vector<std::string>{"http://a:1/v1"}));
  EXPECT_FALSE(VariantSpec::parse("local=models/x").is_endpoint());
  EXPECT_TRUE(VariantSpec::parse("local=models/x").endpoint_urls().empty());
  EXPECT_THROW(VariantSpec::parse("x=http://a:1/v1|models/dir,model=m"), Error);
  EXPECT_THROW(VariantSpec::parse("x=http://a:1/v1|,model=m"), Error);
}

TEST(CliEndpoint, ServerKilledAndRestartedMidRunLosesNothing) {
  const std::string dir = tmpdir();
  const auto want = reference_rows(dir);

  EchoServer s;
  s.start();
  s.kill_at = 5;
  // The "operator": once the server is dying, close it, leave it down 300 ms, restart it on the same port.
  std::atomic<bool> restarted{false};
  std::thread ctl([&] {
    for (int i = 0; i < 6000 && !s.dying; ++i) std::this_thread::sleep_for(10ms);
    if (!s.dying) return;
    const int port = s.port();
    s.stop();
    std::this_thread::sleep_for(300ms);
    s.kill_at = 0;
    s.dying = false;
    s.start(port);
    restarted = true;
  });
  // timeout 2 s < hang 3 s (2 s: an echo reply never takes that long, even under ASan on a busy machine);
  // 20 retries of 0.05 s doubling to 0.6 s (at least half each, by the jitter) wait >= 5 s in all, well
  // past the ~3.3 s the server is away.
  const std::string db = dir + "/a.db";
  EvalSummary sum;
  try {
    sum = run_eval(eval_options(db, endpoint_variant(s, ",timeout=2,retries=20,backoff=0.05,max_backoff=0.6")));
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
  ctl.join();
  EXPECT_TRUE(restarted.load());
  EXPECT_EQ(sum.done, kExamples);
  EXPECT_EQ(sum.failed, 0);
  expect_each_example_once(db);
  EXPECT_EQ(rows_of(db), want);
}

TEST(CliEndpoint, ServerGoneStopsTheVariantAndARerunFinishes) {
  const std::string dir = tmpdir();
  const auto want = reference_rows(dir);

  EchoServer s;
  s.start();
  const int port = s.port();
  s.kill_at = 5;
  std::thread ctl([&] {
    for (int i = 0; i < 6000 && !s.dying; ++i) std::this_thread::sleep_for(10ms);
    s.stop();  // and it stays down
  });
  const std::string db = dir + "/b.db";
  const std::string variant = endpoint_variant(s, ",timeout=2,retries=2,backoff=0.02,max_backoff=0.05");
  try {
    run_eval(eval_options(db, variant));
    ADD_FAILURE() << "run_eval must stop when the endpoint stays down";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rerun the same command to resume"), std::string::npos) << e.what();
  }
  ctl.join();
  {
    auto d = ResultsDb::open(db, ResultsDb::Mode::ReadOnly);
    // The 4 answered examples are stored; the ones in flight are stored as failed; the rest are pending.
    EXPECT_EQ(d->count_results(false), 4);
    EXPECT_GE(d->count_results(true), 5);
    EXPECT_LT(d->count_results(true), kExamples);
    for (auto& r : d->query())
      if (!r.ok()) {
        EXPECT_NE(r.error.find("gave up after 3 attempts"), std::string::npos) << r.error;
      }
  }
  // Back up on the same port: the rerun retries the failed examples and runs the pending ones.
  s.kill_at = 0;
  s.dying = false;
  s.start(port);
  EvalSummary sum = run_eval(eval_options(db, variant));
  EXPECT_EQ(sum.skipped, 4);
  EXPECT_EQ(sum.done, kExamples - 4);
  EXPECT_EQ(sum.failed, 0);
  expect_each_example_once(db);
  EXPECT_EQ(rows_of(db), want);
}

TEST(CliEndpoint, RefusedRequestsAreStoredAsFailuresAndRetriedByARerun) {
  const std::string dir = tmpdir();
  EchoServer s;
  s.start();
  s.refuse = true;
  const std::string db = dir + "/c.db";
  EvalSummary sum = run_eval(eval_options(db, endpoint_variant(s, ",retries=3")));
  EXPECT_EQ(sum.failed, kExamples);  // the run went on after each 400
  EXPECT_EQ(s.hits.load(), kExamples);  // a 400 is final: one request per example
  {
    auto d = ResultsDb::open(db, ResultsDb::Mode::ReadOnly);
    for (auto& r : d->query()) EXPECT_NE(r.error.find("HTTP 400: fake refusal"), std::string::npos) << r.error;
  }
  s.refuse = false;
  sum = run_eval(eval_options(db, endpoint_variant(s, ",retries=3")));
  EXPECT_EQ(sum.done, kExamples);
  expect_each_example_once(db);
}

TEST(CliEndpoint, VariantDefinitionIgnoresTransportSettings) {
  // URLs, concurrency and timeouts may change between resumed runs; the served model may not.
  const std::string dir = tmpdir();
  EchoServer s;
  s.start();
  const std::string db = dir + "/d.db";
  auto o = eval_options(db, endpoint_variant(s, ""));
  o.n = 1;
  EXPECT_EQ(run_eval(o).done, 2);
  EchoServer s2;
  s2.start();
  o = eval_options(db, "ep=" + s2.url() + "|" + s.url() + ",model=echo,tokenizer=" + tok_dir() +
                           ",concurrency=7,timeout=9");
  o.n = 2;
  EvalSummary sum = run_eval(o);
  EXPECT_EQ(sum.skipped, 2);
  EXPECT_EQ(sum.done, 2);
  o = eval_options(db, endpoint_variant(s, ",chat=1"));
  try {
    run_eval(o);
    ADD_FAILURE() << "switching the API under one variant name must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ep"), std::string::npos) << e.what();
  }
}

TEST(CliEndpoint, BadEndpointVariantsAreClearErrors) {
  const std::string dir = tmpdir();
  auto err = [&](const std::string& variant) {
    EXPECT_EQ(sh(kCli + " eval --variant '" + variant + "' --tasks ruler/niah_single_1 --lengths 1k --n 1 --db " +
                 dir + "/e.db 2>" + dir + "/e.log"),
              1)
        << variant;
    return read_file(dir + "/e.log");
  };
  EXPECT_NE(err("ep=http://127.0.0.1:9/v1,model=x").find("tokenizer=DIR"), std::string::npos);
  EXPECT_NE(err("ep=http://127.0.0.1:9/v1,tokenizer=" + tok_dir()).find("model=SERVED_NAME"), std::string::npos);
  EXPECT_NE(err("ep=http://127.0.0.1:9/v1|/a/dir,model=x").find("/a/dir"), std::string::npos);
  EXPECT_NE(err("ep=http://127.0.0.1:9/v1,model=x,method=nf4").find("not an endpoint"), std::string::npos);
  // Port 9 (discard) has no server here: nothing answers the probe.
  EXPECT_NE(err("ep=http://127.0.0.1:9/v1,model=x,tokenizer=" + tok_dir()).find("cannot reach"),
            std::string::npos);
}

// ---- the real `longquant serve` ------------------------------------------

struct ServeProcess {
  pid_t pid = -1;
  std::string url;
  ~ServeProcess() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// Starts `longquant serve --port 0` and reads "listening on http://HOST:PORT" from its stdout.
void start_serve(ServeProcess* p, const std::string& args, const std::string& log) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  p->pid = fork();
  ASSERT_GE(p->pid, 0);
  if (p->pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    execl("/bin/sh", "sh", "-c", ("exec " + kCli + " serve " + args + " 2>" + log).c_str(), (char*)nullptr);
    _exit(127);
  }
  ::close(fds[1]);
  std::string out;
  const auto t0 = std::chrono::steady_clock::now();
  while (out.find('\n') == std::string::npos && std::chrono::steady_clock::now() - t0 < 120s) {
    pollfd pf{fds[0], POLLIN, 0};
    if (::poll(&pf, 1, 200) <= 0) continue;
    char buf[256];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  ::close(fds[0]);
  const std::string tag = "listening on ";
  const auto at = out.find(tag);
  ASSERT_NE(at, std::string::npos) << "serve printed: '" << out << "'; log: " << read_file(log);
  std::string url = out.substr(at + tag.size());
  url = url.substr(0, url.find('\n'));
  p->url = url + "/v1";
}

TEST(CliEndpoint, ServeGivesTheNativePredictions) {
  if (sh(kCli + " serve --help >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "`longquant serve --help` failed: serve is not in this build; skipping the integration test";
  const std::string dir = tmpdir();
  const std::string& m = model_dir();
  ServeProcess serve;
  start_serve(&serve, "--model " + m + " --port 0 --served-name tiny -t 1", dir + "/serve.log");
  ASSERT_FALSE(serve.url.empty());
  const std::string db = dir + "/s.db";
  const std::string ep = serve.url + ",model=tiny,tokenizer=" + m;
  const std::string cmd = kCli + " eval --variant native=" + m + " --variant ids=" + ep + ",prompt=ids" +
                          " --variant text=" + ep + ",add_special_tokens=0" +
                          " --tasks ruler/niah_single_1,oneruler/niah_none --lengths 1000 --langs en,de --n 1" +
                          " --seed 3 --db " + db + " -t 1 2>" + dir + "/eval.log";
  ASSERT_EQ(sh(cmd), 0) << read_file(dir + "/eval.log") << "\nserve log:\n" << read_file(dir + "/serve.log");
  // Same example -> same prediction, prompt tokens and generated tokens under all three variants.
  auto d = ResultsDb::open(db, ResultsDb::Mode::ReadOnly);
  std::map<std::string, std::map<std::string, ResultRow>> by_example;
  for (auto& r : d->query()) {
    EXPECT_TRUE(r.ok()) << r.key.to_string() << ": " << r.error;
    ResultKey k = r.key;
    const std::string variant = k.variant;
    k.variant = "";
    by_example[k.to_string()][variant] = r;
  }
  EXPECT_EQ(by_example.size(), 3u);  // ruler en + oneruler en, de; n = 1 (3 native generations: ~30 s under ASan)
  for (auto& [key, rows] : by_example) {
    ASSERT_EQ(rows.size(), 3u) << key;
    const ResultRow& native = rows.at("native");
    EXPECT_GT(native.generated_tokens, 0) << key;
    for (const char* v : {"ids", "text"}) {
      const ResultRow& r = rows.at(v);
      EXPECT_EQ(r.prediction, native.prediction) << key << " " << v;
      EXPECT_EQ(r.prompt_tokens, native.prompt_tokens) << key << " " << v;
      EXPECT_EQ(r.generated_tokens, native.generated_tokens) << key << " " << v;
      EXPECT_EQ(r.score, native.score) << key << " " << v;
    }
  }
  ::kill(serve.pid, SIGTERM);
  int st = 0;
  ::waitpid(serve.pid, &st, 0);
  serve.pid = -1;
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << read_file(dir + "/serve.log");
}

}  // namespace
}  // namespace lq
