// Tests of `longquant serve` in-process: a Server on a free loopback port, real
// HTTP clients (cpp-httplib), answers compared with the model layer's own
// generate(). Two models:
//   * the tiny-llama31 fixture (no tokenizer): token-id prompts, error handling, load;
//   * a 1-layer synthetic "tiny-llama" (lq::synth_checkpoint) with a byte-level
//     tokenizer: text prompts, chat, streaming, stop strings, log-probabilities.
// Numerics: greedy ids must be identical (exact), not close: the server runs the
// same generate() on a Session reset for every request.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/mapped_file.h"
#include "core/testing.h"
#include "io/chat_template.h"
#include "io/tokenizer.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/synth.h"
#include "serve/server.h"

namespace lq {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

// A Server running on its own thread for the duration of a test.
class Running {
 public:
  explicit Running(ServeOptions o) {
    o.port = 0;
    srv_ = std::make_unique<Server>(o);
    th_ = std::thread([this] { srv_->run(); });
    const auto t0 = clock_type::now();
    while (!srv_->listening() && clock_type::now() - t0 < std::chrono::seconds(10))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_TRUE(srv_->listening());
  }
  ~Running() { shutdown(); }
  void shutdown() {
    if (!th_.joinable()) return;
    srv_->stop();
    th_.join();
  }
  Server& server() { return *srv_; }
  int port() const { return srv_->port(); }

 private:
  std::unique_ptr<Server> srv_;
  std::thread th_;
};

struct Reply {
  int status = -1;  // -1: no HTTP response (connection error)
  std::string body;
  json j;  // parsed body when it is JSON
};

Reply post_raw(int port, const std::string& path, const std::string& body) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60);
  Reply r;
  auto res = c.Post(path.c_str(), body, "application/json");
  if (!res) return r;
  r.status = res->status;
  r.body = res->body;
  r.j = json::parse(r.body, nullptr, false);
  return r;
}

Reply post(int port, const std::string& path, const json& body) { return post_raw(port, path, body.dump()); }

Reply get(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  Reply r;
  auto res = c.Get(path.c_str());
  if (!res) return r;
  r.status = res->status;
  r.body = res->body;
  r.j = json::parse(r.body, nullptr, false);
  return r;
}

std::vector<int32_t> eos_of(const Model& m, const Tokenizer* tok) {
  std::vector<int32_t> e;
  for (auto x : m.config().eos_token_ids) e.push_back(int32_t(x));
  if (tok)
    for (auto x : tok->eos_ids())
      if (std::find(e.begin(), e.end(), x) == e.end()) e.push_back(x);
  return e;
}

// The model layer's own generation on a fresh session sized to the request.
GenerateResult reference(const Model& m, const std::vector<int32_t>& prompt, int64_t max_tokens,
                         const std::vector<int32_t>& eos, Precision p = Precision::BF16) {
  SessionOptions so;
  so.precision = p;
  so.capacity = int64_t(prompt.size()) + max_tokens;
  Session s(m, so);
  GenerateOptions go;
  go.max_tokens = max_tokens;
  go.eos_ids = eos;
  return generate(s, prompt, go);
}

std::vector<int32_t> ids_of(const json& a) { return a.get<std::vector<int32_t>>(); }

// Server-sent events -> the JSON payloads; `done` tells whether "data: [DONE]" ended the stream.
std::vector<json> parse_sse(const std::string& body, bool* done) {
  std::vector<json> out;
  *done = false;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event at " << pos;
    if (end == std::string::npos) break;
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    const std::string data = ev.substr(6);
    EXPECT_FALSE(*done) << "event after [DONE]";
    if (data == "[DONE]") { *done = true; continue; }
    out.push_back(json::parse(data));
  }
  return out;
}

// ---------------------------------------------------------------- fixture model (ids only)

constexpr int64_t kFixtureContext = 256;

ServeOptions fixture_options() {
  ServeOptions o;
  o.engine.model_dir = testing::fixture_dir("tiny-llama31");
  o.engine.max_context = kFixtureContext;
  o.engine.threads = 1;
  return o;
}

class ServeFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = Model::load(testing::fixture_dir("tiny-llama31")).release();
    run_ = new Running(fixture_options());
  }
  static void TearDownTestSuite() {
    delete run_;
    delete model_;
    run_ = nullptr;
    model_ = nullptr;
  }
  static int port() { return run_->port(); }
  static json completion(const json& prompt, int64_t max_tokens) {
    return {{"model", "tiny-llama31"}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  }
  static Model* model_;
  static Running* run_;
};
Model* ServeFixture::model_ = nullptr;
Running* ServeFixture::run_ = nullptr;

TEST_F(ServeFixture, HealthAndModels) {
  Reply h = get(port(), "/health");
  ASSERT_EQ(h.status, 200);
  EXPECT_EQ(h.j["status"], "ok");
  Reply m = get(port(), "/v1/models");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.j["object"], "list");
  ASSERT_EQ(m.j["data"].size(), 1u);
  EXPECT_EQ(m.j["data"][0]["id"], "tiny-llama31");  // the directory's base name
  EXPECT_EQ(m.j["data"][0]["max_model_len"], kFixtureContext);
}

TEST_F(ServeFixture, GreedyIdCompletionsEqualGenerate) {
  const auto eos = eos_of(*model_, nullptr);
  const std::vector<std::vector<int32_t>> prompts = {{1, 17, 300, 42, 9}, {1}, {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}};
  for (const auto& p : prompts) {
    for (int64_t mt : {int64_t(1), int64_t(20)}) {
      const GenerateResult want = reference(*model_, p, mt, eos);
      Reply r = post(port(), "/v1/completions", completion(p, mt));
      ASSERT_EQ(r.status, 200) << r.body;
      EXPECT_EQ(r.j["object"], "text_completion");
      const json& c = r.j["choices"][0];
      EXPECT_EQ(ids_of(c["token_ids"]), want.ids);
      EXPECT_EQ(c["text"], "");  // no tokenizer
      EXPECT_EQ(c["finish_reason"], want.stop_reason == "eos" ? "stop" : "length");
      EXPECT_EQ(r.j["usage"]["prompt_tokens"], p.size());
      EXPECT_EQ(r.j["usage"]["completion_tokens"], want.ids.size());
      EXPECT_EQ(r.j["usage"]["total_tokens"], p.size() + want.ids.size());
    }
  }
  // Several prompts in one request: one choice each, in order, usage summed.
  Reply r = post(port(), "/v1/completions", completion(json{prompts[0], prompts[2]}, 6));
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.j["choices"].size(), 2u);
  size_t total = 0;
  for (size_t i : {size_t(0), size_t(1)}) {
    const auto want = reference(*model_, prompts[i * 2], 6, eos).ids;
    EXPECT_EQ(r.j["choices"][i]["index"], i);
    EXPECT_EQ(ids_of(r.j["choices"][i]["token_ids"]), want);
    total += want.size();
  }
  EXPECT_EQ(r.j["usage"]["completion_tokens"], total);
}

TEST_F(ServeFixture, SeededSamplingIsReproducible) {
  json req = completion(json{3, 4, 5}, 12);
  req["temperature"] = 1.0;
  req["top_p"] = 0.9;
  req["seed"] = 1234;
  Reply a = post(port(), "/v1/completions", req), b = post(port(), "/v1/completions", req);
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(a.j["choices"][0]["token_ids"], b.j["choices"][0]["token_ids"]);
}

TEST_F(ServeFixture, BadRequestsGet400AndTheServerKeepsServing) {
  struct Case {
    const char* what;
    std::string path;
    std::string body;
    const char* param;  // expected error.param ("" = null)
    const char* code;   // expected error.code ("" = any)
  };
  const std::string m = R"("model": "tiny-llama31")";
  auto obj = [&](const std::string& rest) { return "{" + m + (rest.empty() ? "" : ", " + rest) + "}"; };
  std::string long_prompt = "[";
  for (int i = 0; i < kFixtureContext; ++i) long_prompt += (i ? "," : "") + std::to_string(i % 500);
  long_prompt += "]";
  const std::vector<Case> cases = {
      {"malformed JSON", "/v1/completions", "{\"model\": \"tiny-llama31\", \"prompt\": [1,", "", "invalid_json"},
      {"empty body", "/v1/completions", "", "", ""},
      {"not an object", "/v1/completions", "[1, 2]", "", ""},
      {"non-UTF-8 byte", "/v1/completions", obj("\"prompt\": \"a\xff\xfe b\""), "", "invalid_utf8"},
      {"missing model", "/v1/completions", R"({"prompt": [1, 2]})", "model", ""},
      {"model of wrong type", "/v1/completions", R"({"model": 7, "prompt": [1, 2]})", "model", ""},
      {"unknown model", "/v1/completions", R"({"model": "gpt-4", "prompt": [1, 2]})", "model", "model_not_found"},
      {"missing prompt", "/v1/completions", obj(""), "prompt", ""},
      {"prompt of wrong type", "/v1/completions", obj("\"prompt\": 5"), "prompt", ""},
      {"empty prompt array", "/v1/completions", obj("\"prompt\": []"), "prompt", ""},
      {"mixed prompt array", "/v1/completions", obj("\"prompt\": [1, \"a\"]"), "prompt", ""},
      {"token id out of range", "/v1/completions", obj("\"prompt\": [1, 99999]"), "prompt", ""},
      {"negative token id", "/v1/completions", obj("\"prompt\": [1, -4]"), "prompt", ""},
      {"fractional token id", "/v1/completions", obj("\"prompt\": [1, 2.5]"), "prompt", ""},
      {"text prompt without tokenizer", "/v1/completions", obj("\"prompt\": \"hello\""), "prompt", "no_tokenizer"},
      {"prompt over the context", "/v1/completions", obj("\"prompt\": " + long_prompt), "prompt",
       "context_length_exceeded"},
      {"max_tokens of wrong type", "/v1/completions", obj("\"prompt\": [1], \"max_tokens\": \"ten\""), "max_tokens", ""},
      {"max_tokens 0", "/v1/completions", obj("\"prompt\": [1], \"max_tokens\": 0"), "max_tokens", ""},
      {"negative max_tokens", "/v1/completions", obj("\"prompt\": [1], \"max_tokens\": -3"), "max_tokens", ""},
      {"huge max_tokens", "/v1/completions", obj("\"prompt\": [1], \"max_tokens\": 1000000000000000"), "max_tokens",
       "context_length_exceeded"},
      {"max_tokens beyond int64", "/v1/completions", obj("\"prompt\": [1], \"max_tokens\": 18446744073709551615"),
       "max_tokens", "context_length_exceeded"},
      {"max_tokens past the context left", "/v1/completions", obj("\"prompt\": [1, 2, 3], \"max_tokens\": 254"),
       "max_tokens", "context_length_exceeded"},
      {"temperature of wrong type", "/v1/completions", obj("\"prompt\": [1], \"temperature\": \"hot\""),
       "temperature", ""},
      {"temperature out of range", "/v1/completions", obj("\"prompt\": [1], \"temperature\": 5"), "temperature", ""},
      {"top_p 0", "/v1/completions", obj("\"prompt\": [1], \"top_p\": 0"), "top_p", ""},
      {"stop of wrong type", "/v1/completions", obj("\"prompt\": [1], \"stop\": 7"), "stop", ""},
      {"stop without tokenizer", "/v1/completions", obj("\"prompt\": [1], \"stop\": \"x\""), "stop", ""},
      {"n > 1", "/v1/completions", obj("\"prompt\": [1], \"n\": 2"), "n", ""},
      {"stream of wrong type", "/v1/completions", obj("\"prompt\": [1], \"stream\": \"yes\""), "stream", ""},
      {"seed of wrong type", "/v1/completions", obj("\"prompt\": [1], \"seed\": [1]"), "seed", ""},
      {"chat without tokenizer", "/v1/chat/completions",
       obj(R"("messages": [{"role": "user", "content": "hi"}])"), "messages", "no_tokenizer"},
      {"chat without messages", "/v1/chat/completions", obj(""), "messages", ""},
      {"chat messages of wrong type", "/v1/chat/completions", obj("\"messages\": \"hi\""), "messages", ""},
      {"chat message without role", "/v1/chat/completions", obj(R"("messages": [{"content": "hi"}])"), "messages",
       ""},
  };
  const json good = completion(json{1, 2, 3}, 2);
  const Reply want = post(port(), "/v1/completions", good);
  ASSERT_EQ(want.status, 200) << want.body;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Reply r = post_raw(port(), c.path, c.body);
    EXPECT_EQ(r.status, 400) << r.body;
    ASSERT_TRUE(r.j.is_object() && r.j.contains("error")) << r.body;
    const json& e = r.j["error"];
    EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.body;
    EXPECT_EQ(e["type"], "invalid_request_error");
    EXPECT_EQ(e["param"], std::string(c.param).empty() ? json(nullptr) : json(c.param)) << r.body;
    if (std::string(c.code).size()) {
      EXPECT_EQ(e["code"], c.code) << r.body;
    }
    Reply ok = post(port(), "/v1/completions", good);
    ASSERT_EQ(ok.status, 200) << ok.body;
    EXPECT_EQ(ok.j["choices"][0]["token_ids"], want.j["choices"][0]["token_ids"]);
  }
  Reply nf = get(port(), "/v1/nothing-here");
  EXPECT_EQ(nf.status, 404);
  EXPECT_TRUE(nf.j.contains("error")) << nf.body;
}

// Bounded load test: 100 client connections at once, each a small greedy request;
// all must succeed with the right answer (responses are not mixed up), within a
// time cap. Prints requests/s for this run (measured medians: docs/serving.md).
TEST_F(ServeFixture, HundredConcurrentConnections) {
  constexpr int kClients = 100;
  const auto eos = eos_of(*model_, nullptr);
  std::vector<std::vector<int32_t>> want(kClients);
  auto prompt_of = [](int i) { return std::vector<int32_t>{1, int32_t(10 + i % 25), int32_t(100 + i)}; };
  auto mt_of = [](int i) { return int64_t(1 + i % 2); };
  for (int i = 0; i < kClients; ++i) want[size_t(i)] = reference(*model_, prompt_of(i), mt_of(i), eos).ids;
  std::vector<Reply> got(kClients);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int i = 0; i < kClients; ++i) {
    ts.emplace_back([&, i] {
      const std::string body = completion(prompt_of(i), mt_of(i)).dump();
      httplib::Client c("127.0.0.1", port());
      c.set_connection_timeout(20);
      c.set_read_timeout(20);
      ++ready;
      while (!go) std::this_thread::yield();
      auto res = c.Post("/v1/completions", body, "application/json");
      if (res) {
        got[size_t(i)].status = res->status;
        got[size_t(i)].j = json::parse(res->body, nullptr, false);
      }
    });
  }
  while (ready < kClients) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto t0 = clock_type::now();
  go = true;
  for (auto& t : ts) t.join();
  const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  int ok = 0;
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(got[size_t(i)].status, 200) << "client " << i;
    if (got[size_t(i)].status != 200) continue;
    EXPECT_EQ(ids_of(got[size_t(i)].j["choices"][0]["token_ids"]), want[size_t(i)]) << "client " << i;
    ++ok;
  }
  EXPECT_EQ(ok, kClients);
  EXPECT_LT(secs, 20.0);  // cap: the whole burst must clear well within the clients' timeouts
  std::printf("[ load ] %d concurrent connections, %d ok, %.3f s, %.1f requests/s\n", kClients, ok, secs,
              kClients / secs);
  RecordProperty("requests_per_second", std::to_string(kClients / secs));
}

TEST(Serve, BindsLoopbackByDefaultAndRejectsBadOptions) {
  ServeOptions o = fixture_options();
  EXPECT_EQ(o.host, "127.0.0.1");
  o.engine.max_context = 1 << 30;  // beyond the model's context
  EXPECT_THROW(Server{o}, Error);
  o = fixture_options();
  o.engine.model_dir = "/nonexistent/model";
  EXPECT_THROW(Server{o}, Error);
  o = fixture_options();
  o.served_name = "my-model";
  Running r(o);
  EXPECT_EQ(r.server().model_name(), "my-model");
  EXPECT_EQ(r.server().host(), "127.0.0.1");
  Reply ok = post(r.port(), "/v1/completions", {{"model", "my-model"}, {"prompt", {1, 2}}, {"max_tokens", 1}});
  EXPECT_EQ(ok.status, 200) << ok.body;
  // stop() before run() makes run() return at once.
  ServeOptions o2 = fixture_options();
  o2.port = 0;
  Server s(o2);
  s.stop();
  s.run();
}

// ---------------------------------------------------------------- synthetic model with a tokenizer

std::string make_temp_dir() {
  return lq::testing::temp_dir("lq_serve_");
}

// A 1-layer synthetic tiny-llama (vocabulary 128256, so a decode step costs a
// 128256 x 256 lm_head): slow enough per token to catch a request in flight.
std::string synth_dir() {
  static const std::string dir = [] {
    const std::string t = make_temp_dir();
    SynthOptions o;
    o.like = "tiny-llama";
    o.layers = 1;
    o.seed = 3;
    o.out_dir = t;
    synth_checkpoint(o);
    return t;
  }();
  return dir;
}

// The tiny-llama31 fixture (vocabulary 512) with a byte-level tokenizer: the
// synthetic checkpoint's tokenizer (256 byte tokens) with its Llama-3 special
// tokens moved to ids 500.. so that every id fits the fixture's vocabulary. Half
// the vocabulary has text, so generations are non-empty text.
std::string text_model_dir() {
  static const std::string dir = [] {
    const std::string src = testing::fixture_dir("tiny-llama31"), dst = make_temp_dir();
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors"})
      std::ofstream(dst + "/" + f, std::ios::binary) << read_file(src + "/" + f);
    json tok = json::parse(read_file(synth_dir() + "/tokenizer.json"));
    std::map<int, int> remap;
    int next = 500;
    for (auto& a : tok["added_tokens"]) {
      remap[a["id"].get<int>()] = next;
      a["id"] = next++;
    }
    for (auto& [name, st] : tok["post_processor"]["special_tokens"].items())
      for (auto& id : st["ids"]) id = remap.at(id.get<int>());
    std::ofstream(dst + "/tokenizer.json") << tok.dump();
    std::ofstream(dst + "/tokenizer_config.json") << read_file(synth_dir() + "/tokenizer_config.json");
    return dst;
  }();
  return dir;
}

class ServeSynth : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = Model::load(text_model_dir()).release();
    tok_ = new Tokenizer(Tokenizer::load(text_model_dir()));
    ServeOptions o;
    o.engine.model_dir = text_model_dir();
    o.served_name = "synth";
    o.engine.max_context = 512;
    o.engine.threads = 1;
    run_ = new Running(o);
  }
  static void TearDownTestSuite() {
    delete run_;
    delete tok_;
    delete model_;
  }
  static int port() { return run_->port(); }
  static Model* model_;
  static Tokenizer* tok_;
  static Running* run_;
};
Model* ServeSynth::model_ = nullptr;
Tokenizer* ServeSynth::tok_ = nullptr;
Running* ServeSynth::run_ = nullptr;

TEST_F(ServeSynth, TextCompletionEqualsGenerate) {
  const std::string text = "The capital of France is";
  const auto ids = tok_->encode(text, true);
  const auto want = reference(*model_, ids, 10, eos_of(*model_, tok_));
  Reply r = post(port(), "/v1/completions", {{"model", "synth"}, {"prompt", text}, {"max_tokens", 10}, {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ids_of(r.j["choices"][0]["token_ids"]), want.ids);
  EXPECT_EQ(r.j["choices"][0]["text"], tok_->decode(want.ids, true));
  EXPECT_EQ(r.j["usage"]["prompt_tokens"], ids.size());
  // A prompt that already starts with <|begin_of_text|> (a rendered chat template) gets no second one;
  // an array of one string is the same prompt.
  Reply r2 = post(port(), "/v1/completions",
                  {{"model", "synth"}, {"prompt", {"<|begin_of_text|>" + text}}, {"max_tokens", 10}, {"temperature", 0}});
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(r2.j["usage"]["prompt_tokens"], ids.size());
  EXPECT_EQ(r2.j["choices"][0]["token_ids"], r.j["choices"][0]["token_ids"]);
}

TEST_F(ServeSynth, ChatEqualsGenerateAndStreamConcatenatesToIt) {
  const json messages = json::array({{{"role", "system"}, {"content", "Answer briefly."}},
                                     {{"role", "user"}, {"content", "Name a colour."}}});
  const std::vector<ChatMessage> msgs = {{"system", "Answer briefly."}, {"user", "Name a colour."}};
  const auto ids = tok_->encode(render_chat(ChatFormat::Llama3, msgs, true), false);
  const auto want = reference(*model_, ids, 16, eos_of(*model_, tok_));
  const json req = {{"model", "synth"}, {"messages", messages}, {"max_tokens", 16}, {"temperature", 0}};
  Reply r = post(port(), "/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["object"], "chat.completion");
  const json& c = r.j["choices"][0];
  EXPECT_EQ(c["message"]["role"], "assistant");
  EXPECT_EQ(c["message"]["content"], tok_->decode(want.ids, true));
  EXPECT_EQ(c["finish_reason"], want.stop_reason == "eos" ? "stop" : "length");
  EXPECT_EQ(r.j["usage"]["prompt_tokens"], ids.size());
  EXPECT_EQ(r.j["usage"]["completion_tokens"], want.ids.size());

  json sreq = req;
  sreq["stream"] = true;
  sreq["stream_options"] = {{"include_usage", true}};
  Reply s = post(port(), "/v1/chat/completions", sreq);
  ASSERT_EQ(s.status, 200) << s.body;
  bool done = false;
  const auto events = parse_sse(s.body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front()["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  json finish;
  for (const auto& e : events) {
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    if (e["choices"].empty()) continue;  // the usage chunk
    const json& ch = e["choices"][0];
    if (ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
    if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
  }
  EXPECT_EQ(text, c["message"]["content"].get<std::string>());
  EXPECT_EQ(finish, c["finish_reason"]);
  EXPECT_EQ(events.back()["usage"], r.j["usage"]);
}

TEST_F(ServeSynth, StopStringCutsTextStreamedOrNot) {
  // The greedy text, then a stop string taken from it: the answer is that text cut
  // before the stop string's first occurrence.
  const json base = {{"model", "synth"}, {"prompt", "Once upon a time"}, {"max_tokens", 40}, {"temperature", 0}};
  Reply full = post(port(), "/v1/completions", base);
  ASSERT_EQ(full.status, 200) << full.body;
  const std::string t = full.j["choices"][0]["text"];
  // An ASCII character past the beginning, at its first occurrence, as the stop string
  // (the model is random: its text is mostly bytes that are not valid UTF-8 alone).
  size_t at = std::string::npos;
  for (size_t p = 1; p < t.size() && at == std::string::npos; ++p)
    if (uint8_t(t[p]) >= 0x21 && uint8_t(t[p]) < 0x7f && t.find(t[p]) == p) at = p;
  std::printf("[ text ] %s\n", t.c_str());
  ASSERT_NE(at, std::string::npos) << "no ASCII character to stop on in: " << t;
  const std::string stop = t.substr(at, 1);
  json req = base;
  req["stop"] = {"never-appears", stop};
  Reply r = post(port(), "/v1/completions", req);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["choices"][0]["text"], t.substr(0, at));
  EXPECT_EQ(r.j["choices"][0]["finish_reason"], "stop");
  req["stream"] = true;
  Reply s = post(port(), "/v1/completions", req);
  ASSERT_EQ(s.status, 200) << s.body;
  bool done = false;
  std::string text;
  for (const auto& e : parse_sse(s.body, &done)) text += e["choices"][0]["text"].get<std::string>();
  EXPECT_TRUE(done);
  EXPECT_EQ(text, t.substr(0, at));
}

TEST_F(ServeSynth, LogprobsAreTheModelsAndTopOneIsTheGreedyToken) {
  const json req = {{"model", "synth"}, {"prompt", "abc"}, {"max_tokens", 5}, {"temperature", 0}, {"logprobs", 3}};
  Reply r = post(port(), "/v1/completions", req);
  ASSERT_EQ(r.status, 200) << r.body;
  const json& lp = r.j["choices"][0]["logprobs"];
  const size_t n = r.j["choices"][0]["token_ids"].size();
  ASSERT_EQ(lp["token_logprobs"].size(), n);
  ASSERT_EQ(lp["top_logprobs"].size(), n);
  // Reference log-probabilities from the model layer (generate's own, float).
  const auto want = reference(*model_, tok_->encode("abc", true), 5, eos_of(*model_, tok_));
  for (size_t i = 0; i < n; ++i) {
    // Exact: same float computed the same way, sent through JSON (round-trips floats).
    EXPECT_EQ(lp["token_logprobs"][i].get<float>(), want.logprobs[i]);
    float best = -INFINITY;
    for (auto& [k, v] : lp["top_logprobs"][i].items()) best = std::max(best, v.get<float>());
    // Greedy picks the most likely token; log_softmax of its row is the same value to
    // float rounding (two computations in double, rounded once each): 1e-5.
    EXPECT_NEAR(best, want.logprobs[i], 1e-5);
    EXPECT_LE(lp["top_logprobs"][i].size(), 3u);
  }
  // Chat logprobs: token, logprob, bytes, top_logprobs.
  Reply c = post(port(), "/v1/chat/completions",
                 {{"model", "synth"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 3},
                  {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 2}});
  ASSERT_EQ(c.status, 200) << c.body;
  const json& content = c.j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), c.j["usage"]["completion_tokens"].get<size_t>());
  for (const auto& e : content) {
    EXPECT_TRUE(e["bytes"].is_array());
    EXPECT_EQ(e["top_logprobs"].size(), 2u);
    EXPECT_EQ(e["top_logprobs"][0]["logprob"].get<float>() >= e["top_logprobs"][1]["logprob"].get<float>(), true);
  }
}

TEST_F(ServeSynth, ChatErrorsNameTheMessage) {
  Reply r = post(port(), "/v1/chat/completions",
                 {{"model", "synth"}, {"messages", {{{"role", "wizard"}, {"content", "hi"}}}}, {"max_tokens", 2}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.j["error"]["param"], "messages");
  Reply p = post(port(), "/v1/chat/completions",
                 {{"model", "synth"}, {"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}});
  EXPECT_EQ(p.status, 400) << p.body;
  Reply big = post(port(), "/v1/chat/completions",
                   {{"model", "synth"}, {"messages", {{{"role", "user"}, {"content", std::string(600, 'x')}}}}});
  EXPECT_EQ(big.status, 400) << big.body;
  EXPECT_EQ(big.j["error"]["code"], "context_length_exceeded");
  // Content given as text parts is the same as the plain string.
  Reply a = post(port(), "/v1/chat/completions",
                 {{"model", "synth"}, {"messages", {{{"role", "user"}, {"content", "hi there"}}}}, {"max_tokens", 3},
                  {"temperature", 0}});
  Reply b = post(port(), "/v1/chat/completions",
                 {{"model", "synth"},
                  {"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "hi "}}, {{"type", "text"}, {"text", "there"}}}}}}},
                  {"max_tokens", 3},
                  {"temperature", 0}});
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(a.j["choices"][0]["message"], b.j["choices"][0]["message"]);
  EXPECT_EQ(a.j["usage"], b.j["usage"]);
}

// Shutdown: the request being generated finishes (200, complete), the one waiting
// for the engine is refused with 503, run() returns.
TEST(ServeShutdown, StopFinishesTheRequestInFlightAndRefusesTheQueue) {
  ServeOptions o;
  o.engine.model_dir = synth_dir();
  o.served_name = "synth";
  o.engine.max_context = 512;
  o.engine.threads = 1;
  Running run(o);
  const json req = {{"model", "synth"}, {"prompt", "x"}, {"max_tokens", 150}, {"temperature", 0}};
  Reply first, second;
  std::thread a([&] { first = post(run.port(), "/v1/completions", req); });
  const auto t0 = clock_type::now();
  auto wait_for = [&](auto pred) {
    while (!pred() && clock_type::now() - t0 < std::chrono::seconds(20))
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  };
  wait_for([&] { return run.server().engine().stats().busy; });
  std::thread b([&] { second = post(run.port(), "/v1/completions", req); });
  wait_for([&] { return run.server().engine().stats().queued == 1; });
  const bool queued = run.server().engine().stats().queued == 1 && run.server().engine().stats().busy;
  run.shutdown();  // stop() and wait for run() to return
  a.join();
  b.join();
  if (!queued) GTEST_SKIP() << "the first request finished before the second was queued (machine too fast)";
  ASSERT_EQ(first.status, 200) << first.body;
  const int64_t n = first.j["usage"]["completion_tokens"];
  EXPECT_EQ(first.j["choices"][0]["token_ids"].size(), size_t(n));
  EXPECT_TRUE(n == 150 || first.j["choices"][0]["finish_reason"] == "stop");
  EXPECT_EQ(second.status, 503) << second.body;
  EXPECT_EQ(second.j["error"]["code"], "shutting_down");
}

}  // namespace
}  // namespace lq
