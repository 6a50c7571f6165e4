// The OpenAI-compatible endpoint backend against in-process fake servers
// (httplib::Server on 127.0.0.1, port chosen by binding port 0): what is sent,
// and how 500s, 429 + Retry-After, slow replies, malformed JSON, 400s, a bound
// on requests in flight and a fleet with one dead URL are handled. Every
// retry test counts the attempts the server saw.
#include "backends/openai.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "model/synth.h"

namespace lq {
namespace {

using json = nlohmann::json;
using Handler = std::function<void(const httplib::Request&, httplib::Response&, int hit)>;

// A byte-level tokenizer + Llama config (synth; the weights are deleted, only the
// tokenizer is needed), made once per process and removed at exit: the endpoint's tokenizer=DIR.
struct TokDir {
  std::string root, dir;
  TokDir() {
    root = ::testing::TempDir() + "lq_openai_XXXXXX";
    if (::mkdtemp(root.data()) == nullptr) throw Error("mkdtemp failed for " + root);
    SynthOptions so;
    so.like = "tiny-llama";
    so.out_dir = root + "/m";
    so.layers = 1;
    so.seed = 5;
    synth_checkpoint(so);
    std::filesystem::remove(so.out_dir + "/model.safetensors");
    dir = so.out_dir;
  }
  ~TokDir() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
};
const std::string& tok_dir() {
  static TokDir t;
  return t.dir;
}

// An OpenAI-shaped completion body.
std::string completion(const std::string& text, int prompt_tokens = 11, int completion_tokens = 3) {
  return json{{"object", "text_completion"},
              {"choices", {{{"index", 0}, {"text", text}, {"finish_reason", "stop"}}}},
              {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}}}}
      .dump();
}

// An in-process server: /v1/models lists `models`; both completion routes call
// `handler` with the 1-based hit number. Counts hits and requests in flight.
class FakeServer {
 public:
  explicit FakeServer(Handler h, std::vector<std::string> models = {"fake"}) : handler_(std::move(h)) {
    // More worker threads than any test's concurrency, so the server never caps it.
    svr_.new_task_queue = [] { return new httplib::ThreadPool(32); };
    svr_.Get("/v1/models", [models](const httplib::Request& req, httplib::Response& res) {
      json data = json::array();
      for (auto& m : models) data.push_back({{"id", m}, {"object", "model"}, {"max_model_len", 4096}});
      res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
    });
    auto route = [this](const httplib::Request& req, httplib::Response& res) {
      const int hit = ++hits;
      const int now = ++in_flight;
      int m = max_in_flight.load();
      while (now > m && !max_in_flight.compare_exchange_weak(m, now)) {
      }
      {
        std::lock_guard<std::mutex> lk(mu);
        bodies.push_back(req.body);
        auth.push_back(req.get_header_value("Authorization"));
      }
      handler_(req, res, hit);
      --in_flight;
    };
    svr_.Post("/v1/completions", route);
    svr_.Post("/v1/chat/completions", route);
    port_ = svr_.bind_to_any_port("127.0.0.1");
    EXPECT_GT(port_, 0);
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    for (int i = 0; i < 500 && !svr_.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ~FakeServer() {
    svr_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  std::string last_body() {
    std::lock_guard<std::mutex> lk(mu);
    return bodies.empty() ? "" : bodies.back();
  }

  std::atomic<int> hits{0}, in_flight{0}, max_in_flight{0};
  std::mutex mu;
  std::vector<std::string> bodies, auth;

 private:
  Handler handler_;
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
};

// A port nothing listens on: bound (never listened on), then closed, so a connection is refused at once.
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

EndpointOptions options(const std::string& url) {
  EndpointOptions o;
  o.urls = {url};
  o.model = "fake";
  o.tokenizer_dir = tok_dir();
  o.retries = 4;
  o.backoff_s = 0.01;  // short delays: these tests count attempts, not wait for them
  o.max_backoff_s = 0.05;
  o.timeout_s = 5;
  return o;
}

const GenRequest kReq{"What is the magic number?", " The magic number is", 16};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(OpenAI, RequestBodiesMatchTheNativeRendering) {
  FakeServer s([](auto&, auto& res, int) { res.set_content(completion(" 42"), "application/json"); });
  OpenAIBackend b(options(s.url()));
  EXPECT_EQ(b.chat_format(), ChatFormat::Llama3);  // from config.json's LlamaForCausalLM (no template file)
  EXPECT_EQ(b.context_length(), 4096);              // the server's max_model_len
  const std::string rendered =
      render_chat(ChatFormat::Llama3, {{"user", kReq.user_message}}, true) + kReq.answer_prefix;
  PromptRenderer ref(Tokenizer::load(tok_dir()), ChatFormat::Llama3);

  EndpointResult r = b.call(kReq);
  EXPECT_EQ(r.response.error, "");
  EXPECT_EQ(r.response.text, " 42");
  EXPECT_EQ(r.response.prompt_tokens, 11);  // from usage
  EXPECT_EQ(r.response.generated_tokens, 3);
  json sent = json::parse(s.last_body());
  EXPECT_EQ(sent["model"], "fake");
  EXPECT_EQ(sent["prompt"], rendered);
  EXPECT_EQ(sent["max_tokens"], 16);
  EXPECT_EQ(sent["temperature"], 0);
  EXPECT_FALSE(sent.contains("add_special_tokens"));
  EXPECT_EQ(b.count_prompt_tokens(kReq.user_message, kReq.answer_prefix),
            int64_t(ref.encode(kReq.user_message, kReq.answer_prefix).size()));

  auto o = options(s.url());
  o.prompt_ids = true;
  o.add_special_tokens = 0;
  OpenAIBackend ids(o);
  ids.call(kReq);
  sent = json::parse(s.last_body());
  EXPECT_EQ(sent["prompt"].get<std::vector<int32_t>>(), ref.encode(kReq.user_message, kReq.answer_prefix));
  EXPECT_EQ(sent["add_special_tokens"], false);

  o = options(s.url());
  o.chat = true;
  OpenAIBackend chat(o);
  chat.call(kReq);
  sent = json::parse(s.last_body());
  EXPECT_FALSE(sent.contains("prompt"));
  ASSERT_EQ(sent["messages"].size(), 1u);
  EXPECT_EQ(sent["messages"][0]["role"], "user");
  EXPECT_EQ(sent["messages"][0]["content"], kReq.user_message + kReq.answer_prefix);
  EXPECT_EQ(chat.count_prompt_tokens(kReq.user_message, kReq.answer_prefix),
            int64_t(ref.encode(kReq.user_message + kReq.answer_prefix, "").size()));
}

TEST(OpenAI, Retries500sThenSucceeds) {
  FakeServer s([](auto&, httplib::Response& res, int hit) {
    if (hit <= 2) {
      res.status = 500;
      res.set_content(R"({"error": {"message": "engine hiccup"}})", "application/json");
    } else {
      res.set_content(completion("ok"), "application/json");
    }
  });
  OpenAIBackend b(options(s.url()));
  EndpointResult r = b.call(kReq);
  EXPECT_EQ(r.response.error, "");
  EXPECT_EQ(r.response.text, "ok");
  EXPECT_EQ(r.attempts, 3);
  EXPECT_EQ(s.hits.load(), 3);
  EXPECT_FALSE(r.transient);
  EXPECT_EQ(b.stats().retries, 2);
}

TEST(OpenAI, GivesUpAfterTheRetriesWithTheServersMessage) {
  FakeServer s([](auto&, httplib::Response& res, int) {
    res.status = 503;
    res.set_content(R"({"error": {"message": "overloaded"}})", "application/json");
  });
  auto o = options(s.url());
  o.retries = 2;
  OpenAIBackend b(o);
  EndpointResult r = b.call(kReq);
  EXPECT_TRUE(r.transient);
  EXPECT_EQ(r.attempts, 3);
  EXPECT_EQ(s.hits.load(), 3);
  EXPECT_EQ(r.http_status, 503);
  EXPECT_NE(r.response.error.find("HTTP 503: overloaded"), std::string::npos) << r.response.error;
  EXPECT_NE(r.response.error.find("after 3 attempts"), std::string::npos) << r.response.error;
}

TEST(OpenAI, HonoursRetryAfterOn429) {
  FakeServer s([](auto&, httplib::Response& res, int hit) {
    if (hit == 1) {
      res.status = 429;
      res.set_header("Retry-After", "1");
      res.set_content(R"({"error": {"message": "rate limited"}})", "application/json");
    } else {
      res.set_content(completion("after the wait"), "application/json");
    }
  });
  auto o = options(s.url());
  o.max_backoff_s = 5;  // the cap must not cut the server's 1 s
  OpenAIBackend b(o);
  const auto t0 = std::chrono::steady_clock::now();
  EndpointResult r = b.call(kReq);
  const double el = seconds_since(t0);
  EXPECT_EQ(r.response.text, "after the wait");
  EXPECT_EQ(r.attempts, 2);
  // Our own backoff would be <= 0.05 s; waiting >= 1 s (less 10 ms of timer slack) shows Retry-After was used.
  EXPECT_GE(el, 0.99);
  EXPECT_LT(el, 4.0);  // generous: a loaded machine, but far below any wrong multiple of the delay
}

TEST(OpenAI, RetryAfterIsCappedByMaxBackoff) {
  FakeServer s([](auto&, httplib::Response& res, int hit) {
    if (hit == 1) {
      res.status = 429;
      res.set_header("Retry-After", "3600");
    } else {
      res.set_content(completion("x"), "application/json");
    }
  });
  auto o = options(s.url());
  o.max_backoff_s = 0.1;
  OpenAIBackend b(o);
  const auto t0 = std::chrono::steady_clock::now();
  EndpointResult r = b.call(kReq);
  EXPECT_EQ(r.attempts, 2);
  EXPECT_EQ(r.response.error, "");
  EXPECT_LT(seconds_since(t0), 3.0);  // 0.1 s cap, generous margin for a loaded machine
}

TEST(OpenAI, SlowReplyTimesOutAndIsRetried) {
  FakeServer s([](auto&, httplib::Response& res, int hit) {
    if (hit == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    res.set_content(completion(hit == 1 ? "too late" : "fast"), "application/json");
  });
  auto o = options(s.url());
  o.timeout_s = 0.3;
  OpenAIBackend b(o);
  const auto t0 = std::chrono::steady_clock::now();
  EndpointResult r = b.call(kReq);
  const double el = seconds_since(t0);
  EXPECT_EQ(r.response.error, "");
  EXPECT_EQ(r.response.text, "fast");
  EXPECT_EQ(r.attempts, 2);
  // The first attempt was abandoned at the 0.3 s timeout, not after the 1.5 s reply.
  EXPECT_LT(el, 1.4);
}

TEST(OpenAI, MalformedReplyIsRetried) {
  FakeServer s([](auto&, httplib::Response& res, int hit) {
    if (hit == 1) res.set_content("{\"choices\": [", "application/json");           // truncated JSON
    else if (hit == 2) res.set_content(R"({"object": "list"})", "application/json");  // no choices
    else if (hit == 3) res.set_content(R"({"choices": [{"text": 7}]})", "application/json");  // wrong type
    else res.set_content(completion("fine"), "application/json");
  });
  OpenAIBackend b(options(s.url()));
  EndpointResult r = b.call(kReq);
  EXPECT_EQ(r.response.error, "");
  EXPECT_EQ(r.response.text, "fine");
  EXPECT_EQ(r.attempts, 4);
  EXPECT_EQ(s.hits.load(), 4);
}

TEST(OpenAI, BadRequestIsFinalAndKeepsTheMessage) {
  FakeServer s([](auto&, httplib::Response& res, int) {
    res.status = 400;
    res.set_content(R"({"error": {"message": "This model's maximum context length is 4096 tokens", "type":
                        "invalid_request_error", "param": null, "code": null}})",
                    "application/json");
  });
  OpenAIBackend b(options(s.url()));
  EndpointResult r = b.call(kReq);
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(s.hits.load(), 1);
  EXPECT_FALSE(r.transient);
  EXPECT_EQ(r.http_status, 400);
  EXPECT_NE(r.response.error.find("HTTP 400: This model's maximum context length is 4096 tokens"), std::string::npos)
      << r.response.error;
}

TEST(OpenAI, MissingUsageFallsBackToTheLocalTokenizer) {
  FakeServer s([](auto&, httplib::Response& res, int) {
    res.set_content(R"({"choices": [{"message": {"role": "assistant", "content": "abc def"}}]})", "application/json");
  });
  auto o = options(s.url());
  o.chat = true;
  OpenAIBackend b(o);
  EndpointResult r = b.call(kReq);
  EXPECT_EQ(r.response.text, "abc def");
  EXPECT_EQ(r.response.prompt_tokens, b.count_prompt_tokens(kReq.user_message, kReq.answer_prefix));
  EXPECT_EQ(r.response.generated_tokens, 7);  // byte-level tokenizer: one token per byte
}

TEST(OpenAI, ConcurrencyBoundIsRespected) {
  FakeServer s([](auto&, httplib::Response& res, int) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    res.set_content(completion("x"), "application/json");
  });
  auto o = options(s.url());
  o.concurrency = 3;
  OpenAIBackend b(o);
  std::vector<std::thread> callers;
  std::atomic<int> errors{0};
  for (int i = 0; i < 12; ++i)
    callers.emplace_back([&] {
      if (!b.call(kReq).response.error.empty()) ++errors;
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(s.hits.load(), 12);
  // 12 callers at once on 100 ms replies: the bound is reached and never passed.
  EXPECT_EQ(s.max_in_flight.load(), 3);
  EXPECT_EQ(b.stats().max_in_flight, 3);
}

TEST(OpenAI, FleetSpreadsLoadAndSkipsADeadUrl) {
  auto slow_ok = [](auto&, httplib::Response& res, int) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    res.set_content(completion("y"), "application/json");
  };
  FakeServer a(slow_ok), c(slow_ok);
  auto o = options(a.url());
  o.urls = {a.url(), c.url()};
  o.concurrency = 4;
  {
    OpenAIBackend b(o);
    std::vector<std::thread> callers;
    for (int i = 0; i < 12; ++i) callers.emplace_back([&] { EXPECT_EQ(b.call(kReq).response.error, ""); });
    for (auto& t : callers) t.join();
    EXPECT_EQ(a.hits.load() + c.hits.load(), 12);
    // Least busy first: with 4 in flight over 2 URLs each gets about half; 3 is a loose lower bound.
    EXPECT_GE(a.hits.load(), 3);
    EXPECT_GE(c.hits.load(), 3);
  }
  // One URL dead: every request still succeeds through the other.
  const std::string dead = "http://127.0.0.1:" + std::to_string(closed_port()) + "/v1";
  o.urls = {dead, a.url()};
  const int before = a.hits.load();
  OpenAIBackend b(o);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b.call(kReq).response.error, "");
  EXPECT_EQ(a.hits.load() - before, 6);
}

TEST(OpenAI, ProbeAndOptionErrorsAreClear) {
  auto expect_error = [](const std::function<void()>& f, const std::string& want) {
    try {
      f();
      ADD_FAILURE() << "no error, expected: " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  FakeServer s([](auto&, auto& res, int) { res.set_content(completion("z"), "application/json"); }, {"llama-a", "llama-b"});
  // The server lists its models and ours is not among them.
  expect_error([&] { OpenAIBackend b(options(s.url())); }, "serves: llama-a, llama-b");
  // Nothing listening.
  const std::string dead = "http://127.0.0.1:" + std::to_string(closed_port()) + "/v1";
  expect_error([&] { OpenAIBackend b(options(dead)); }, "cannot reach the endpoint");

  const std::map<std::string, std::string> ok{{"model", "m"}, {"tokenizer", "tok"}};
  auto with = [&](std::map<std::string, std::string> extra) {
    auto m = ok;
    for (auto& [k, v] : extra) m[k] = v;
    return m;
  };
  auto from = [](const std::string& src, const std::map<std::string, std::string>& st) {
    return EndpointOptions::from_variant("ep", src, st);
  };
  const std::string u = "http://127.0.0.1:8000/v1";
  expect_error([&] { from(u, {{"tokenizer", "t"}}); }, "model=SERVED_NAME");
  expect_error([&] { from(u, {{"model", "m"}}); }, "tokenizer=DIR");
  expect_error([&] { from(u, with({{"concurency", "2"}})); }, "unknown endpoint setting 'concurency'");
  expect_error([&] { from(u, with({{"concurrency", "two"}})); }, "concurrency=two is not an integer");
  expect_error([&] { from(u, with({{"concurrency", "0"}})); }, "out of range");
  expect_error([&] { from(u, with({{"timeout", "-1"}})); }, "timeout=-1");
  expect_error([&] { from(u, with({{"chat", "maybe"}})); }, "chat=maybe is not a boolean");
  expect_error([&] { from(u, with({{"prompt", "tokens"}})); }, "prompt=tokens");
  expect_error([&] { from(u, with({{"chat", "1"}, {"prompt", "ids"}})); }, "prompt=ids applies");
  expect_error([&] { from(u, with({{"chat_format", "vicuna"}})); }, "vicuna");
  expect_error([&] { from(u, with({{"api_key_env", "LQ_TEST_SURELY_UNSET_KEY"}})); }, "LQ_TEST_SURELY_UNSET_KEY");
  expect_error([&] { from(u + "|ftp://x", ok); }, "ftp://x");
  expect_error([&] { from(u + "|" + u, ok); }, "given twice");

  EndpointOptions e = from(u + "|https://h2:9/v1/", with({{"concurrency", "8"}, {"chat", "1"}, {"timeout", "2.5"}}));
  EXPECT_EQ(e.urls, (std::vector<std::string>{u, "https://h2:9/v1/"}));
  EXPECT_EQ(e.concurrency, 8);
  EXPECT_TRUE(e.chat);
  EXPECT_DOUBLE_EQ(e.timeout_s, 2.5);
  EXPECT_EQ(split_endpoint_url("https://h2:9/v1/"), (std::pair<std::string, std::string>{"https://h2:9", "/v1"}));
  EXPECT_EQ(split_endpoint_url("http://h"), (std::pair<std::string, std::string>{"http://h", ""}));
}

TEST(OpenAI, SendsTheApiKeyAndExplainsARefusedOne) {
  ::setenv("LQ_TEST_ENDPOINT_KEY", "sekret-123", 1);
  FakeServer s([](auto&, auto& res, int) { res.set_content(completion("k"), "application/json"); });
  auto o = EndpointOptions::from_variant(
      "ep", s.url(), {{"model", "fake"}, {"tokenizer", tok_dir()}, {"api_key_env", "LQ_TEST_ENDPOINT_KEY"}});
  OpenAIBackend b(o);
  EXPECT_EQ(b.call(kReq).response.error, "");
  {
    std::lock_guard<std::mutex> lk(s.mu);
    ASSERT_EQ(s.auth.size(), 1u);
    EXPECT_EQ(s.auth[0], "Bearer sekret-123");
  }
  // A server refusing the (missing) key at the probe: the error says how to send one.
  httplib::Server locked;
  locked.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
    res.status = 401;
    res.set_content(R"({"error": {"message": "invalid api key"}})", "application/json");
  });
  const int port = locked.bind_to_any_port("127.0.0.1");
  std::thread t([&] { locked.listen_after_bind(); });
  for (int i = 0; i < 500 && !locked.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  try {
    OpenAIBackend x(options("http://127.0.0.1:" + std::to_string(port) + "/v1"));
    ADD_FAILURE() << "a 401 at the probe must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid api key"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("api_key_env"), std::string::npos) << e.what();
  }
  locked.stop();
  t.join();
}

}  // namespace
}  // namespace lq
