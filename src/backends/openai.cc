// backends/openai.cc: the OpenAI-compatible endpoint backend (see openai.h for
// what is sent, the retry policy and the load spreading).
#include "backends/openai.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/rng.h"

namespace lq {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::pair<std::string, std::string> split_endpoint_url(const std::string& url) {
  const bool http = url.rfind("http://", 0) == 0, https = url.rfind("https://", 0) == 0;
  LQ_CHECK(http || https, "endpoint '{}': expected an http:// or https:// URL", url);
  const size_t host_start = http ? 7 : 8;
  const size_t slash = url.find('/', host_start);
  std::string shp = url.substr(0, slash);
  std::string base = slash == std::string::npos ? "" : url.substr(slash);
  LQ_CHECK(shp.size() > host_start, "endpoint '{}': no host", url);
  LQ_CHECK(base.find_first_of("?#") == std::string::npos, "endpoint '{}': a base URL has no query or fragment", url);
  while (!base.empty() && base.back() == '/') base.pop_back();
  return {shp, base};
}

namespace {

bool parse_bool(const std::string& variant, const std::string& key, const std::string& v) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  fail("variant '{}': {}={} is not a boolean (1/0, true/false)", variant, key, v);
}

int64_t parse_int(const std::string& variant, const std::string& key, const std::string& v, int64_t lo, int64_t hi) {
  int64_t x = 0;
  size_t used = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  LQ_CHECK(used == v.size() && !v.empty(), "variant '{}': {}={} is not an integer", variant, key, v);
  LQ_CHECK(x >= lo && x <= hi, "variant '{}': {}={} is out of range [{}, {}]", variant, key, v, lo, hi);
  return x;
}

double parse_seconds(const std::string& variant, const std::string& key, const std::string& v) {
  double x = 0;
  size_t used = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  LQ_CHECK(used == v.size() && !v.empty() && std::isfinite(x) && x >= 0,
           "variant '{}': {}={} is not a number of seconds >= 0", variant, key, v);
  return x;
}

// (seconds, microseconds) for httplib's timeouts.
std::pair<time_t, time_t> split_seconds(double s) {
  const double whole = std::floor(s);
  return {time_t(whole), time_t(std::llround((s - whole) * 1e6))};
}

// The server's message from an error body: {"error": {"message": ...}} (OpenAI,
// vLLM), {"error": "..."}, {"message": ...} or {"detail": ...} (FastAPI); else the body.
std::string server_message(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    if (j.contains("error")) {
      const json& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
      if (e.is_string()) return e.get<std::string>();
    }
    for (const char* k : {"message", "detail"})
      if (j.contains(k) && j[k].is_string()) return j[k].get<std::string>();
  }
  std::string s = body.substr(0, 300);
  if (body.size() > 300) s += "...";
  return s.empty() ? "(empty body)" : s;
}

// Retry-After in seconds (the delta-seconds form; an HTTP date is ignored): -1 if absent.
double retry_after_seconds(const httplib::Result& res) {
  if (!res || !res->has_header("Retry-After")) return -1;
  const std::string v = res->get_header_value("Retry-After");
  try {
    size_t used = 0;
    const double s = std::stod(v, &used);
    if (used == v.size() && std::isfinite(s) && s >= 0) return s;
  } catch (const std::exception&) {
  }
  return -1;
}

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

EndpointOptions EndpointOptions::from_variant(const std::string& variant, const std::string& source,
                                              const std::map<std::string, std::string>& settings, bool chat_default,
                                              const std::string& chat_format_default) {
  EndpointOptions o;
  size_t pos = 0;
  while (pos <= source.size()) {
    size_t bar = source.find('|', pos);
    if (bar == std::string::npos) bar = source.size();
    const std::string u = source.substr(pos, bar - pos);
    LQ_CHECK(!u.empty(), "variant '{}': an empty URL in '{}'", variant, source);
    try {
      split_endpoint_url(u);
    } catch (const Error& e) {
      fail("variant '{}': {}", variant, e.what());
    }
    LQ_CHECK(std::find(o.urls.begin(), o.urls.end(), u) == o.urls.end(), "variant '{}': URL {} given twice", variant,
             u);
    o.urls.push_back(u);
    pos = bar + 1;
  }
  o.chat = chat_default;
  o.chat_format = chat_format_default;
  for (const auto& [k, v] : settings) {
    if (k == "model") o.model = v;
    else if (k == "concurrency") o.concurrency = int(parse_int(variant, k, v, 1, 1024));
    else if (k == "api_key_env") {
      LQ_CHECK(!v.empty(), "variant '{}': api_key_env is empty", variant);
      const char* key = std::getenv(v.c_str());
      LQ_CHECK(key && *key, "variant '{}': api_key_env={}, but the environment variable {} is not set", variant, v,
               v);
      o.api_key = key;
      o.api_key_env = v;
    } else if (k == "chat") o.chat = parse_bool(variant, k, v);
    else if (k == "timeout") {
      o.timeout_s = parse_seconds(variant, k, v);
      LQ_CHECK(o.timeout_s > 0, "variant '{}': timeout must be > 0 seconds", variant);
    } else if (k == "retries") o.retries = int(parse_int(variant, k, v, 0, 100));
    else if (k == "backoff") o.backoff_s = parse_seconds(variant, k, v);
    else if (k == "max_backoff") o.max_backoff_s = parse_seconds(variant, k, v);
    else if (k == "tokenizer") o.tokenizer_dir = v;
    else if (k == "chat_format") {
      if (v != "auto") parse_chat_format(v);  // validates
      o.chat_format = v;
    } else if (k == "prompt") {
      LQ_CHECK(v == "text" || v == "ids", "variant '{}': prompt={} (expected text or ids)", variant, v);
      o.prompt_ids = v == "ids";
    } else if (k == "add_special_tokens") o.add_special_tokens = parse_bool(variant, k, v) ? 1 : 0;
    else if (k == "context") o.context = parse_int(variant, k, v, 1, INT64_MAX);
    else if (k == "abort_after") o.abort_after = int(parse_int(variant, k, v, 0, 1000000));
    else
      fail("variant '{}': unknown endpoint setting '{}' (known: model, concurrency, api_key_env, chat, timeout, "
           "retries, backoff, max_backoff, tokenizer, chat_format, prompt, add_special_tokens, context, abort_after)",
           variant, k);
  }
  LQ_CHECK(!o.model.empty(), "variant '{}': an endpoint needs model=SERVED_NAME (the name the server serves)",
           variant);
  LQ_CHECK(!o.tokenizer_dir.empty(),
           "variant '{}': an endpoint needs tokenizer=DIR (the served model's Hugging Face directory with "
           "tokenizer.json): the prompt is rendered with its chat template for /v1/completions, and prompt tokens "
           "are counted with it to fit every example to its length (also with chat=1)",
           variant);
  LQ_CHECK(!(o.chat && o.prompt_ids), "variant '{}': prompt=ids applies to /v1/completions, not chat=1", variant);
  if (o.max_backoff_s < o.backoff_s) o.max_backoff_s = o.backoff_s;
  return o;
}

struct OpenAIBackend::Url {
  std::string url, scheme_host_port, base;
  int in_flight = 0;
  Clock::time_point down_until{};
};

struct OpenAIBackend::Impl {
  std::vector<Url> urls;
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  size_t rr = 0;
  Rng rng;
  Stats stats;

  explicit Impl(uint64_t seed) : rng(seed) {}

  std::unique_ptr<httplib::Client> client(const Url& u, const EndpointOptions& o, double timeout) const {
    auto c = std::make_unique<httplib::Client>(u.scheme_host_port);
    const auto [cs, cus] = split_seconds(std::min(timeout, 30.0));
    const auto [ts, tus] = split_seconds(timeout);
    c->set_connection_timeout(cs, cus);
    c->set_read_timeout(ts, tus);
    c->set_write_timeout(ts, tus);
    c->set_keep_alive(false);
    if (!o.api_key.empty()) c->set_bearer_token_auth(o.api_key);
    return c;
  }

  // Waits for a free slot and takes the least busy URL (round-robin among ties,
  // URLs in their backoff period only when every URL is in one).
  size_t acquire(int concurrency) {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return in_flight < concurrency; });
    ++in_flight;
    stats.max_in_flight = std::max(stats.max_in_flight, in_flight);
    const auto now = Clock::now();
    bool any_up = false;
    for (auto& u : urls) any_up |= u.down_until <= now;
    size_t best = SIZE_MAX;
    for (size_t k = 0; k < urls.size(); ++k) {
      const size_t i = (rr + k) % urls.size();
      if (any_up && urls[i].down_until > now) continue;
      if (best == SIZE_MAX || urls[i].in_flight < urls[best].in_flight) best = i;
    }
    rr = (best + 1) % urls.size();
    ++urls[best].in_flight;
    ++stats.attempts;
    return best;
  }

  void release(size_t i) {
    {
      std::lock_guard<std::mutex> lk(mu);
      --in_flight;
      --urls[i].in_flight;
    }
    cv.notify_one();
  }

  // Delay before retry number `k` (0-based): equal jitter over the doubled backoff.
  double delay(const EndpointOptions& o, int k, double retry_after) {
    if (retry_after >= 0) return std::min(retry_after, o.max_backoff_s);
    double u;
    {
      std::lock_guard<std::mutex> lk(mu);
      u = rng.uniform();
    }
    const double nominal = std::min(o.backoff_s * std::ldexp(1.0, std::min(k, 40)), o.max_backoff_s);
    return nominal * (0.5 + 0.5 * u);
  }
};

namespace {
uint64_t jitter_seed(uint64_t given) {
  if (given != 0) return given;
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd() ^ uint64_t(Clock::now().time_since_epoch().count());
}
}  // namespace

OpenAIBackend::OpenAIBackend(EndpointOptions o)
    : opt_(std::move(o)), impl_(std::make_unique<Impl>(jitter_seed(opt_.jitter_seed))) {
  LQ_CHECK(!opt_.urls.empty(), "endpoint backend: no URL");
  LQ_CHECK(!opt_.model.empty(), "endpoint backend: no model name");
  LQ_CHECK(opt_.concurrency >= 1, "endpoint backend: concurrency must be >= 1");
  for (auto& u : opt_.urls) {
    auto [shp, base] = split_endpoint_url(u);
    impl_->urls.push_back(Url{u, shp, base});
  }
  // The tokenizer: a directory with tokenizer.json, or the file itself.
  const std::string& td = opt_.tokenizer_dir;
  LQ_CHECK(!td.empty(), "endpoint {}: tokenizer=DIR is required (rendering and counting prompts)", opt_.urls[0]);
  std::string dir = td;
  if (!std::filesystem::is_directory(td)) dir = std::filesystem::path(td).parent_path().string();
  LQ_CHECK(file_exists(td + "/tokenizer.json") || (file_exists(td) && !std::filesystem::is_directory(td)),
           "endpoint tokenizer {}: no tokenizer.json there", td);
  Tokenizer tok = Tokenizer::load(td);
  json cfg;
  if (file_exists(dir + "/config.json")) {
    cfg = json::parse(read_file(dir + "/config.json"), nullptr, false);
    LQ_CHECK(!cfg.is_discarded() && cfg.is_object(), "{}/config.json: invalid JSON", dir);
  }
  std::string arch;
  if (cfg.is_object() && cfg.contains("architectures") && cfg["architectures"].is_array() &&
      !cfg["architectures"].empty() && cfg["architectures"][0].is_string())
    arch = cfg["architectures"][0].get<std::string>();
  const ChatFormat fmt = opt_.chat_format == "auto" ? detect_chat_format(dir, arch) : parse_chat_format(opt_.chat_format);
  renderer_ = std::make_unique<PromptRenderer>(std::move(tok), fmt);

  // Probe /models on every URL: reachability, the key, the served name, max_model_len.
  std::vector<std::string> unreachable;
  int64_t server_context = 0;
  for (auto& u : impl_->urls) {
    auto c = impl_->client(u, opt_, std::min(opt_.timeout_s, 30.0));
    auto res = c->Get(u.base + "/models");
    if (!res) {
      unreachable.push_back(fmt::format("{}: {}", u.url, httplib::to_string(res.error())));
      u.down_until = Clock::now() + std::chrono::milliseconds(int64_t(opt_.backoff_s * 1000));
      continue;
    }
    LQ_CHECK(res->status != 401 && res->status != 403, "endpoint {}: HTTP {} for /models: {}{}", u.url, res->status,
             server_message(res->body),
             opt_.api_key.empty() ? " (no API key was sent: set api_key_env=VAR)" : "");
    if (res->status != 200) continue;  // a server without /models: nothing to check
    json j = json::parse(res->body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("data") || !j["data"].is_array()) continue;
    std::vector<std::string> ids;
    bool found = false;
    for (auto& m : j["data"]) {
      if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
      ids.push_back(m["id"].get<std::string>());
      if (ids.back() == opt_.model) {
        found = true;
        if (m.contains("max_model_len") && m["max_model_len"].is_number_integer())
          server_context = m["max_model_len"].get<int64_t>();
      }
    }
    if (!ids.empty() && !found) {
      std::string list;
      for (auto& id : ids) list += (list.empty() ? "" : ", ") + id;
      fail("endpoint {} does not serve model '{}' (it serves: {}); set model= to one of those", u.url, opt_.model,
           list);
    }
  }
  if (unreachable.size() == impl_->urls.size()) {
    std::string why;
    for (auto& s : unreachable) why += "\n  " + s;
    fail("cannot reach the endpoint (GET /models):{}", why);
  }
  if (opt_.context > 0) context_ = opt_.context;
  else if (server_context > 0) context_ = server_context;
  else if (cfg.is_object() && cfg.contains("max_position_embeddings") && cfg["max_position_embeddings"].is_number_integer())
    context_ = cfg["max_position_embeddings"].get<int64_t>();
  else context_ = INT64_MAX;
}

OpenAIBackend::~OpenAIBackend() = default;

int64_t OpenAIBackend::count_prompt_tokens(const std::string& user_message, const std::string& answer_prefix) {
  if (opt_.chat) return int64_t(renderer_->encode(user_message + answer_prefix, "").size());
  return int64_t(renderer_->encode(user_message, answer_prefix).size());
}

std::string OpenAIBackend::request_body(const GenRequest& r) const {
  json j;
  j["model"] = opt_.model;
  if (opt_.chat) {
    j["messages"] = json::array({json{{"role", "user"}, {"content", r.user_message + r.answer_prefix}}});
  } else if (opt_.prompt_ids) {
    j["prompt"] = renderer_->encode(r.user_message, r.answer_prefix);
  } else {
    j["prompt"] = renderer_->render(r.user_message, r.answer_prefix);
  }
  j["max_tokens"] = r.max_tokens;
  j["temperature"] = 0;
  j["stream"] = false;
  if (opt_.add_special_tokens >= 0) j["add_special_tokens"] = opt_.add_special_tokens == 1;
  return dump_json(j);
}

EndpointResult OpenAIBackend::call(const GenRequest& r) {
  const auto t0 = Clock::now();
  EndpointResult out;
  const std::string body = request_body(r);
  const std::string what = opt_.chat ? "/chat/completions" : "/completions";
  std::string last_error;
  for (int attempt = 0; attempt <= opt_.retries; ++attempt) {
    const size_t ui = impl_->acquire(opt_.concurrency);
    const Url& u = impl_->urls[ui];
    httplib::Result res = impl_->client(u, opt_, opt_.timeout_s)->Post(u.base + what, body, "application/json");
    impl_->release(ui);
    ++out.attempts;
    double retry_after = -1;
    if (!res) {
      out.http_status = 0;
      last_error = fmt::format("{}{}: {}", u.url, what, httplib::to_string(res.error()));
    } else {
      out.http_status = res->status;
      if (res->status == 200) {
        json j = json::parse(res->body, nullptr, false);
        const json* choice = nullptr;
        if (!j.is_discarded() && j.is_object() && j.contains("choices") && j["choices"].is_array() &&
            !j["choices"].empty() && j["choices"][0].is_object())
          choice = &j["choices"][0];
        const json* text = nullptr;
        if (choice) {
          if (opt_.chat) {
            if (choice->contains("message") && (*choice)["message"].is_object() &&
                (*choice)["message"].contains("content"))
              text = &(*choice)["message"]["content"];
          } else if (choice->contains("text")) {
            text = &(*choice)["text"];
          }
        }
        if (text && (text->is_string() || text->is_null())) {
          GenResponse& g = out.response;
          g.text = text->is_string() ? text->get<std::string>() : "";
          g.prompt_tokens = -1;
          g.generated_tokens = -1;
          if (j.contains("usage") && j["usage"].is_object()) {
            const json& us = j["usage"];
            if (us.contains("prompt_tokens") && us["prompt_tokens"].is_number_integer())
              g.prompt_tokens = us["prompt_tokens"].get<int64_t>();
            if (us.contains("completion_tokens") && us["completion_tokens"].is_number_integer())
              g.generated_tokens = us["completion_tokens"].get<int64_t>();
          }
          if (g.prompt_tokens < 0) g.prompt_tokens = count_prompt_tokens(r.user_message, r.answer_prefix);
          if (g.generated_tokens < 0) g.generated_tokens = int64_t(renderer_->tokenizer().encode(g.text).size());
          g.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
          return out;
        }
        last_error = fmt::format("{}{}: HTTP 200 with a malformed completion: {}", u.url, what,
                                 server_message(res->body));
      } else if (res->status == 408 || res->status == 429 || res->status >= 500) {
        last_error = fmt::format("{}{}: HTTP {}: {}", u.url, what, res->status, server_message(res->body));
        retry_after = retry_after_seconds(res);
      } else {
        // Final: the request itself is refused (400, 401, 404, 422, ...).
        out.response.error = fmt::format("{}{}: HTTP {}: {}", u.url, what, res->status, server_message(res->body));
        out.response.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        std::lock_guard<std::mutex> lk(impl_->mu);
        ++impl_->stats.failures;
        return out;
      }
    }
    if (attempt == opt_.retries) break;
    const double d = impl_->delay(opt_, attempt, retry_after);
    {
      std::lock_guard<std::mutex> lk(impl_->mu);
      ++impl_->stats.retries;
      impl_->urls[ui].down_until = Clock::now() + std::chrono::microseconds(int64_t(d * 1e6));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(int64_t(d * 1e6)));
  }
  out.transient = true;
  out.response.error = fmt::format("{} (gave up after {} attempt{})", last_error, out.attempts,
                                   out.attempts == 1 ? "" : "s");
  out.response.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::lock_guard<std::mutex> lk(impl_->mu);
  ++impl_->stats.failures;
  return out;
}

std::string OpenAIBackend::describe() const {
  std::string urls;
  for (auto& u : opt_.urls) urls += (urls.empty() ? "" : "|") + u;
  const std::string api = opt_.chat ? "/v1/chat/completions"
                                    : fmt::format("/v1/completions ({} prompts, {} template)",
                                                  opt_.prompt_ids ? "token-id" : "text",
                                                  chat_format_name(renderer_->format()));
  return fmt::format("endpoint {} serving '{}', {}, {} in flight", urls, opt_.model, api, opt_.concurrency);
}

OpenAIBackend::Stats OpenAIBackend::stats() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->stats;
}

std::unique_ptr<OpenAIBackend> make_openai_backend(const EndpointOptions& o) {
  return std::make_unique<OpenAIBackend>(o);
}

}  // namespace lq
