// serve/server.cc: HTTP routes, request validation and OpenAI-shaped responses.
//
// Validation happens on the HTTP thread before a request reaches the engine
// queue, so a bad request never waits behind generations and never touches the
// engine. Rules (docs/serving.md):
//   * body: valid UTF-8 (checked first, to name the offending byte), a JSON object;
//   * model: required, must equal the served name;
//   * max_tokens (chat also max_completion_tokens): integer >= 1; prompt tokens +
//     max_tokens must fit the context, else 400 (code context_length_exceeded) --
//     an explicit value is never silently clamped. Defaults: completions 16 (OpenAI's
//     default, lowered to what fits), chat: all the context left;
//   * temperature in [0, 2] (0 = greedy argmax; default 1), top_p in (0, 1], seed an
//     integer, stop a string or up to 16 strings, n = 1, echo false, penalties 0;
//   * logprobs: completions an integer 0..20, chat a bool with top_logprobs 0..20
//     (not with stream).
// Any field of the wrong type is a 400 naming the field; unknown fields are ignored
// (clients send many optional ones).
#include "serve/server.h"

#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "core/error.h"
#include "io/unicode.h"

namespace lq {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxBodyBytes = size_t(256) << 20;  // a 128k-token id prompt is ~1 MiB
constexpr size_t kMaxPrompts = 64;                    // prompts in one /v1/completions request
constexpr size_t kMaxStop = 16;
constexpr int kMaxTopLogprobs = 20;

// A request the server refuses, with the OpenAI error fields.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param;  // "" -> null
  std::string code;   // "" -> null
  std::string type = "invalid_request_error";
};

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "") {
  throw ApiError{400, message, param, code};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json error_body(const ApiError& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", "1");
  res.set_content(dump(error_body(e)), "application/json");
}

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

json parse_body(const httplib::Request& req) {
  const std::string& b = req.body;
  if (b.empty()) bad("", "the request body is empty; expected a JSON object");
  const size_t badpos = unicode::find_invalid_utf8(b);
  if (badpos < b.size())
    bad("", fmt::format("the request body is not valid UTF-8: ill-formed byte 0x{:02x} at offset {}",
                        unsigned(uint8_t(b[badpos])), badpos),
        "invalid_utf8");
  json j;
  try {
    j = json::parse(b);
  } catch (const json::parse_error& e) {
    bad("", fmt::format("the request body is not valid JSON: {}", e.what()), "invalid_json");
  }
  if (!j.is_object()) bad("", fmt::format("the request body must be a JSON object, got {}", type_name(j)));
  return j;
}

// The field, or nullptr when absent or null (OpenAI treats null as "not given").
const json* field(const json& b, const char* k) {
  auto it = b.find(k);
  if (it == b.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integer field (a JSON number with an integral value) in [lo, hi].
std::optional<int64_t> get_int(const json& b, const char* k, int64_t lo, int64_t hi) {
  const json* v = field(b, k);
  if (!v) return std::nullopt;
  int64_t x = 0;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    x = u > uint64_t(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max() : int64_t(u);
  } else if (v->is_number_integer()) {
    x = v->get<int64_t>();
  } else if (v->is_number_float()) {
    const double d = v->get<double>();
    if (!(std::floor(d) == d) || std::fabs(d) > 9e18) bad(k, fmt::format("'{}' must be an integer, got {}", k, d));
    x = int64_t(d);
  } else {
    bad(k, fmt::format("'{}' must be an integer, got {}", k, type_name(*v)));
  }
  if (x < lo || x > hi) bad(k, fmt::format("'{}' must be in [{}, {}], got {}", k, lo, hi, v->dump()));
  return x;
}

std::optional<double> get_number(const json& b, const char* k) {
  const json* v = field(b, k);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad(k, fmt::format("'{}' must be a number, got {}", k, type_name(*v)));
  return v->get<double>();
}

std::optional<bool> get_bool(const json& b, const char* k) {
  const json* v = field(b, k);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad(k, fmt::format("'{}' must be a boolean, got {}", k, type_name(*v)));
  return v->get<bool>();
}

// What both endpoints accept besides the prompt / messages.
struct CommonParams {
  std::optional<int64_t> max_tokens;
  SamplingOptions sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  int top_logprobs = -1;
};

CommonParams parse_common(const json& b, const std::string& served, const Engine& eng, bool chat) {
  const json* m = field(b, "model");
  if (!m) bad("model", "'model' is required (this server serves '" + served + "')");
  if (!m->is_string()) bad("model", fmt::format("'model' must be a string, got {}", type_name(*m)));
  if (m->get<std::string>() != served)
    bad("model", fmt::format("the model '{}' does not exist; this server serves '{}'", m->get<std::string>(), served),
        "model_not_found");

  CommonParams p;
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  p.max_tokens = get_int(b, "max_tokens", 1, kMax);
  if (chat && !p.max_tokens) p.max_tokens = get_int(b, "max_completion_tokens", 1, kMax);
  // max_tokens: 0 or negative gives "must be in [1, ...]" from get_int.

  const double temperature = get_number(b, "temperature").value_or(1.0);
  if (!(temperature >= 0 && temperature <= 2))
    bad("temperature", fmt::format("'temperature' must be in [0, 2], got {}", temperature));
  const double top_p = get_number(b, "top_p").value_or(1.0);
  if (!(top_p > 0 && top_p <= 1)) bad("top_p", fmt::format("'top_p' must be in (0, 1], got {}", top_p));
  p.sampling.greedy = temperature == 0;
  p.sampling.temperature = float(temperature);
  p.sampling.top_p = float(top_p);
  if (auto s = get_int(b, "seed", std::numeric_limits<int64_t>::min(), kMax)) {
    p.sampling.seed = uint64_t(*s);
  } else {
    static std::atomic<uint64_t> counter{0};
    p.sampling.seed = uint64_t(std::time(nullptr)) * 0x9E3779B97F4A7C15ull + counter++;
  }

  if (const json* s = field(b, "stop")) {
    if (s->is_string()) {
      p.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      if (s->size() > kMaxStop) bad("stop", fmt::format("'stop' may hold at most {} strings, got {}", kMaxStop, s->size()));
      for (const auto& x : *s) {
        if (!x.is_string()) bad("stop", fmt::format("'stop' must be a string or an array of strings; found {}", type_name(x)));
        p.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", fmt::format("'stop' must be a string or an array of strings, got {}", type_name(*s)));
    }
    std::erase_if(p.stop, [](const std::string& x) { return x.empty(); });
    if (!p.stop.empty() && !eng.tokenizer())
      bad("stop", "'stop' needs the model's tokenizer, and this model directory has no tokenizer.json");
  }

  p.stream = get_bool(b, "stream").value_or(false);
  if (const json* so = field(b, "stream_options")) {
    if (!so->is_object()) bad("stream_options", fmt::format("'stream_options' must be an object, got {}", type_name(*so)));
    p.include_usage = get_bool(*so, "include_usage").value_or(false);
  }
  if (p.stream && !eng.tokenizer())
    bad("stream", "streaming sends text, which needs the model's tokenizer; this model directory has no tokenizer.json");

  if (auto n = get_int(b, "n", 1, kMax); n && *n != 1) bad("n", fmt::format("only 'n' = 1 is supported, got {}", *n));
  for (const char* k : {"presence_penalty", "frequency_penalty"})
    if (auto v = get_number(b, k); v && *v != 0) bad(k, fmt::format("'{}' is not supported (must be 0), got {}", k, *v));

  if (chat) {
    const bool lp = get_bool(b, "logprobs").value_or(false);
    const auto top = get_int(b, "top_logprobs", 0, kMaxTopLogprobs);
    if (top && !lp) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (lp) p.top_logprobs = int(top.value_or(0));
  } else {
    if (auto lp = get_int(b, "logprobs", 0, kMaxTopLogprobs)) p.top_logprobs = int(*lp);
    if (get_bool(b, "echo").value_or(false)) bad("echo", "'echo' is not supported");
  }
  if (p.stream && p.top_logprobs >= 0) bad("logprobs", "'logprobs' is not supported with 'stream'");
  return p;
}

// Checks the prompt against the context and settles max_tokens.
int64_t fit_max_tokens(size_t prompt_tokens, const CommonParams& p, const Engine& eng, bool chat,
                       const std::string& prompt_param) {
  const int64_t ctx = eng.max_context(), n = int64_t(prompt_tokens);
  if (n == 0) bad(prompt_param, "the prompt is empty (no tokens)");
  if (n >= ctx)
    bad(prompt_param,
        fmt::format("the prompt has {} tokens but the context is {} tokens (prompt + max_tokens must fit, "
                    "max_tokens >= 1)",
                    n, ctx),
        "context_length_exceeded");
  if (p.max_tokens) {
    if (*p.max_tokens > ctx - n)
      bad("max_tokens",
          fmt::format("max_tokens is {} but the prompt has {} tokens and the context is {} tokens: at most {} "
                      "tokens can be generated",
                      *p.max_tokens, n, ctx, ctx - n),
          "context_length_exceeded");
    return *p.max_tokens;
  }
  return chat ? ctx - n : std::min<int64_t>(16, ctx - n);
}

std::vector<int32_t> parse_id_array(const json& a, const Engine& eng, const std::string& where) {
  const int64_t V = eng.config().vocab_size;
  std::vector<int32_t> ids;
  ids.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const json& x = a[i];
    if (!x.is_number_integer())
      bad("prompt", fmt::format("{}[{}]: a token id must be an integer, got {}", where, i, type_name(x)));
    const bool neg = !x.is_number_unsigned() && x.get<int64_t>() < 0;
    if (neg || x.get<uint64_t>() >= uint64_t(V))
      bad("prompt", fmt::format("{}[{}]: token id {} is out of range [0, {})", where, i, x.dump(), V));
    ids.push_back(int32_t(x.get<int64_t>()));
  }
  return ids;
}

std::vector<int32_t> encode_text(const Engine& eng, const std::string& text, bool add_special,
                                 const std::string& param) {
  if (!eng.tokenizer())
    bad(param,
        fmt::format("this model ({}) has no tokenizer.json, so text prompts cannot be encoded: send the prompt "
                    "as an array of token ids",
                    eng.options().model_dir),
        "no_tokenizer");
  try {
    return eng.encode(text, add_special);
  } catch (const Error& e) {
    bad(param, e.what());
  }
}

// prompt: string | [int] | [string] | [[int]]
std::vector<std::vector<int32_t>> parse_prompts(const json& b, const Engine& eng) {
  const json* pr = field(b, "prompt");
  if (!pr) bad("prompt", "'prompt' is required");
  const bool add_special = get_bool(b, "add_special_tokens").value_or(true);
  std::vector<std::vector<int32_t>> out;
  if (pr->is_string()) {
    out.push_back(encode_text(eng, pr->get<std::string>(), add_special, "prompt"));
    return out;
  }
  const char* shape = "'prompt' must be a string, an array of token ids, or an array of strings or of token-id arrays";
  if (!pr->is_array()) bad("prompt", fmt::format("{}; got {}", shape, type_name(*pr)));
  if (pr->empty()) bad("prompt", "'prompt' is an empty array");
  const json& first = (*pr)[0];
  if (first.is_number()) {
    out.push_back(parse_id_array(*pr, eng, "prompt"));
    return out;
  }
  if (pr->size() > kMaxPrompts)
    bad("prompt", fmt::format("at most {} prompts per request, got {}", kMaxPrompts, pr->size()));
  for (size_t i = 0; i < pr->size(); ++i) {
    const json& x = (*pr)[i];
    if (x.is_string() && first.is_string()) {
      out.push_back(encode_text(eng, x.get<std::string>(), add_special, "prompt"));
    } else if (x.is_array() && first.is_array()) {
      if (x.empty()) bad("prompt", fmt::format("prompt[{}] is an empty array", i));
      out.push_back(parse_id_array(x, eng, fmt::format("prompt[{}]", i)));
    } else {
      bad("prompt", fmt::format("{}; prompt[{}] is {}", shape, i, type_name(x)));
    }
  }
  return out;
}

std::vector<ChatMessage> parse_messages(const json& b) {
  const json* ms = field(b, "messages");
  if (!ms) bad("messages", "'messages' is required");
  if (!ms->is_array()) bad("messages", fmt::format("'messages' must be an array, got {}", type_name(*ms)));
  if (ms->empty()) bad("messages", "'messages' is empty");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < ms->size(); ++i) {
    const json& m = (*ms)[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad("messages", fmt::format("{} must be an object, got {}", where, type_name(m)));
    const json* role = field(m, "role");
    if (!role || !role->is_string()) bad("messages", fmt::format("{}.role is required and must be a string", where));
    ChatMessage cm;
    cm.role = role->get<std::string>();
    // OpenAI's roles that a text chat template can render ("ipython" is Llama-3's tool role).
    static const char* const kRoles[] = {"system", "user", "assistant", "tool", "ipython"};
    if (std::find(std::begin(kRoles), std::end(kRoles), cm.role) == std::end(kRoles))
      bad("messages", fmt::format("{}.role '{}' is not supported; use system, user, assistant or tool", where, cm.role));
    const json* c = field(m, "content");
    if (!c) {
      if (cm.role != "assistant") bad("messages", fmt::format("{}.content is required", where));
    } else if (c->is_string()) {
      cm.content = c->get<std::string>();
    } else if (c->is_array()) {
      // Content parts: only text is served (this is a text model).
      for (size_t k = 0; k < c->size(); ++k) {
        const json& part = (*c)[k];
        const json* type = part.is_object() ? field(part, "type") : nullptr;
        const json* text = part.is_object() ? field(part, "text") : nullptr;
        if (!type || !type->is_string() || type->get<std::string>() != "text" || !text || !text->is_string())
          bad("messages", fmt::format("{}.content[{}]: only parts {{\"type\": \"text\", \"text\": STRING}} are supported",
                                      where, k));
        cm.content += text->get<std::string>();
      }
    } else {
      bad("messages", fmt::format("{}.content must be a string or an array of text parts, got {}", where, type_name(*c)));
    }
    out.push_back(std::move(cm));
  }
  return out;
}

std::string token_text(const Engine& eng, int32_t id) {
  if (!eng.tokenizer()) return fmt::format("token_id:{}", id);
  return eng.tokenizer()->decode({id}, false);
}

json completion_logprobs(const Engine& eng, const GenOutput& o) {
  json tokens = json::array(), lps = json::array(), offs = json::array(), tops = json::array();
  bool any_top = false;
  for (const auto& t : o.logprobs) {
    tokens.push_back(token_text(eng, t.id));
    lps.push_back(t.logprob);
    offs.push_back(t.text_offset);
    json top = json::object();
    for (const auto& [id, lp] : t.top) {
      any_top = true;
      const std::string k = token_text(eng, id);
      if (!top.contains(k)) top[k] = lp;
    }
    tops.push_back(top);
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", any_top ? tops : json(nullptr)},
          {"text_offset", offs}};
}

json chat_logprobs(const Engine& eng, const GenOutput& o) {
  auto entry = [&](int32_t id, float lp) {
    const std::string bytes = eng.tokenizer()->token_bytes(id);
    json jb = json::array();
    for (char c : bytes) jb.push_back(int(uint8_t(c)));
    return json{{"token", token_text(eng, id)}, {"logprob", lp}, {"bytes", jb}};
  };
  json content = json::array();
  for (const auto& t : o.logprobs) {
    json e = entry(t.id, t.logprob);
    json top = json::array();
    for (const auto& [id, lp] : t.top) top.push_back(entry(id, lp));
    e["top_logprobs"] = top;
    content.push_back(e);
  }
  return {{"content", content}};
}

json usage_json(int64_t prompt, int64_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

}  // namespace

std::string served_model_name(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const size_t p = dir.rfind('/');
  return p == std::string::npos ? dir : dir.substr(p + 1);
}

struct Server::Impl {
  ServeOptions opt;
  std::string name;
  std::unique_ptr<Engine> engine;
  httplib::Server http;
  int port = 0;
  int listen_fd = -1;
  std::atomic<bool> stop_requested{false};
  std::atomic<bool> in_run{false};
  std::atomic<bool> ran{false};
  std::atomic<uint64_t> next_id{1};

  std::string new_id(const char* prefix) { return fmt::format("{}-{}", prefix, next_id++); }

  // Runs fn, turning every failure into an OpenAI error response.
  template <typename Fn>
  void guarded(httplib::Response& res, Fn&& fn) {
    try {
      fn();
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const EngineUnavailable& e) {
      send_error(res, ApiError{503, e.what(), "", e.shutting_down() ? "shutting_down" : "queue_full", "server_error"});
    } catch (const std::exception& e) {
      send_error(res, ApiError{500, std::string("internal error: ") + e.what(), "", "", "server_error"});
    }
  }

  void handle_models(httplib::Response& res) {
    json m = {{"id", name},
              {"object", "model"},
              {"created", int64_t(std::time(nullptr))},
              {"owned_by", "longquant"},
              {"max_model_len", engine->max_context()}};
    res.set_content(dump({{"object", "list"}, {"data", json::array({m})}}), "application/json");
  }

  void handle_completions(const httplib::Request& req, httplib::Response& res) {
    const json b = parse_body(req);
    const CommonParams cp = parse_common(b, name, *engine, false);
    const auto prompts = parse_prompts(b, *engine);
    if (cp.stream && prompts.size() != 1) bad("prompt", "'stream' supports one prompt per request");
    std::vector<GenParams> gps;
    for (const auto& ids : prompts) {
      GenParams g;
      g.prompt = ids;
      g.max_tokens = fit_max_tokens(ids.size(), cp, *engine, false, "prompt");
      g.sampling = cp.sampling;
      g.stop = cp.stop;
      g.top_logprobs = cp.top_logprobs;
      gps.push_back(std::move(g));
    }
    const std::string id = new_id("cmpl");
    const int64_t created = int64_t(std::time(nullptr));
    if (!cp.stream) {
      const auto outs = engine->generate(gps);
      json choices = json::array();
      int64_t pt = 0, ct = 0;
      for (size_t i = 0; i < outs.size(); ++i) {
        const GenOutput& o = outs[i];
        choices.push_back({{"index", i},
                           {"text", o.text},
                           {"token_ids", o.ids},
                           {"logprobs", cp.top_logprobs >= 0 ? completion_logprobs(*engine, o) : json(nullptr)},
                           {"finish_reason", o.finish_reason}});
        pt += o.prompt_tokens;
        ct += int64_t(o.ids.size());
      }
      res.set_content(dump({{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", name},
                            {"choices", choices}, {"usage", usage_json(pt, ct)}}),
                      "application/json");
      return;
    }
    auto chunk = [=, this](const std::string& text, const json& finish) {
      return json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", name},
                  {"choices", json::array({{{"index", 0}, {"text", text}, {"logprobs", nullptr},
                                            {"finish_reason", finish}}})}};
    };
    stream(res, std::move(gps[0]), cp.include_usage, nullptr, chunk);
  }

  void handle_chat(const httplib::Request& req, httplib::Response& res) {
    const json b = parse_body(req);
    const CommonParams cp = parse_common(b, name, *engine, true);
    const auto messages = parse_messages(b);
    if (!engine->tokenizer())
      bad("messages",
          fmt::format("this model ({}) has no tokenizer.json, so chat is unavailable; use /v1/completions with "
                      "token ids",
                      engine->options().model_dir),
          "no_tokenizer");
    std::vector<int32_t> ids;
    try {
      ids = engine->encode_chat(messages);
    } catch (const Error& e) {
      bad("messages", e.what());
    }
    GenParams g;
    g.prompt = std::move(ids);
    g.max_tokens = fit_max_tokens(g.prompt.size(), cp, *engine, true, "messages");
    g.sampling = cp.sampling;
    g.stop = cp.stop;
    g.top_logprobs = cp.top_logprobs;
    const std::string id = new_id("chatcmpl");
    const int64_t created = int64_t(std::time(nullptr));
    if (!cp.stream) {
      const GenOutput o = engine->generate({g}).at(0);
      json choice = {{"index", 0},
                     {"message", {{"role", "assistant"}, {"content", o.text}}},
                     {"logprobs", cp.top_logprobs >= 0 ? chat_logprobs(*engine, o) : json(nullptr)},
                     {"finish_reason", o.finish_reason}};
      res.set_content(dump({{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", name},
                            {"choices", json::array({choice})},
                            {"usage", usage_json(o.prompt_tokens, int64_t(o.ids.size()))}}),
                      "application/json");
      return;
    }
    auto chunk = [=, this](const json& delta, const json& finish) {
      return json{{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", name},
                  {"choices", json::array({{{"index", 0}, {"delta", delta}, {"logprobs", nullptr},
                                            {"finish_reason", finish}}})}};
    };
    const json first = chunk(json{{"role", "assistant"}, {"content", ""}}, nullptr);
    stream(res, std::move(g), cp.include_usage, first,
           [chunk](const std::string& text, const json& finish) {
             return chunk(finish.is_null() ? json{{"content", text}} : json::object(), finish);
           });
  }

  // Server-sent events: `first` (if not null), one chunk per piece of text, a
  // final chunk with the finish reason, optionally a usage chunk, then [DONE].
  // Generation runs when httplib asks for the body, after the 200 headers went
  // out; a failure from then on is sent as an event {"error": {...}}.
  void stream(httplib::Response& res, GenParams g, bool include_usage, json first,
              std::function<json(const std::string&, const json&)> chunk) {
    auto gp = std::make_shared<GenParams>(std::move(g));
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream", [this, gp, include_usage, first, chunk](size_t, httplib::DataSink& sink) {
          auto send = [&sink](const std::string& s) { return sink.write(s.data(), s.size()); };
          auto event = [&](const json& j) { return send("data: " + dump(j) + "\n\n"); };
          bool ok = true;
          try {
            if (!first.is_null()) ok = event(first);
            if (ok) {
              gp->on_text = [&](std::string_view piece) { return event(chunk(std::string(piece), nullptr)); };
              const GenOutput o = engine->generate({*gp}).at(0);
              ok = !o.cancelled && event(chunk("", o.finish_reason));
              if (ok && include_usage) {
                json u = chunk("", nullptr);
                u["choices"] = json::array();
                u["usage"] = usage_json(o.prompt_tokens, int64_t(o.ids.size()));
                ok = event(u);
              }
            }
          } catch (const EngineUnavailable& e) {
            ok = event(error_body(ApiError{503, e.what(), "", e.shutting_down() ? "shutting_down" : "queue_full",
                                           "server_error"}));
          } catch (const std::exception& e) {
            ok = event(error_body(ApiError{500, std::string("internal error: ") + e.what(), "", "", "server_error"}));
          }
          if (!ok) return false;  // the client is gone: close the connection
          send("data: [DONE]\n\n");
          sink.done();
          return true;
        });
  }
};

Server::Server(const ServeOptions& o) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opt = o;
  LQ_CHECK(o.http_threads >= 1, "--http-threads must be >= 1, got {}", o.http_threads);
  LQ_CHECK(o.port >= 0 && o.port <= 65535, "--port must be in [0, 65535], got {}", o.port);
  s.engine = std::make_unique<Engine>(o.engine);
  s.name = o.served_name.empty() ? served_model_name(o.engine.model_dir) : o.served_name;

  httplib::Server& h = s.http;
  const size_t nthreads = size_t(o.http_threads);
  // httplib owns the queue it gets from this factory (its API takes a raw pointer).
  h.new_task_queue = [nthreads] { return new httplib::ThreadPool(nthreads); };
  h.set_payload_max_length(kMaxBodyBytes);
  h.set_read_timeout(60);
  h.set_write_timeout(60);
  h.set_socket_options([&s](socket_t fd) {
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    s.listen_fd = fd;
  });
  h.Get("/health", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump({{"status", "ok"}, {"model", s.name}}), "application/json");
  });
  h.Get("/v1/models", [&s](const httplib::Request&, httplib::Response& res) {
    s.guarded(res, [&] { s.handle_models(res); });
  });
  h.Post("/v1/completions", [&s](const httplib::Request& req, httplib::Response& res) {
    s.guarded(res, [&] { s.handle_completions(req, res); });
  });
  h.Post("/v1/chat/completions", [&s](const httplib::Request& req, httplib::Response& res) {
    s.guarded(res, [&] { s.handle_chat(req, res); });
  });
  // Errors httplib produces itself (unknown route 404, body too large 413, ...) get an OpenAI body too.
  h.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    ApiError e{res.status, "", "", "", "invalid_request_error"};
    e.message = res.status == 404 ? fmt::format("no route for {} {}", req.method, req.path)
                                  : fmt::format("HTTP {} for {} {}", res.status, req.method, req.path);
    res.set_content(dump(error_body(e)), "application/json");
  });
  h.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError{500, "internal error: " + what, "", "", "server_error"});
  });

  if (o.port == 0) {
    s.port = h.bind_to_any_port(o.host);
    LQ_CHECK(s.port > 0, "cannot listen on {} (any port): {}", o.host, std::strerror(errno));
  } else {
    LQ_CHECK(h.bind_to_port(o.host, o.port), "cannot listen on {}:{}: {} (is the port in use?)", o.host, o.port,
             std::strerror(errno));
    s.port = o.port;
  }
  // httplib listens with a backlog of 5; a burst of connections (the load test's
  // 100) would overflow it and wait for SYN retransmits. Linux lets listen() be
  // called again on a listening socket to raise the backlog.
  if (s.listen_fd >= 0) ::listen(s.listen_fd, 1024);
}

Server::~Server() {
  stop();
  // A socket bound but never served is still open (httplib closes it only in its accept loop).
  if (!impl_->ran && impl_->listen_fd >= 0) ::close(impl_->listen_fd);
}

int Server::port() const { return impl_->port; }
const std::string& Server::host() const { return impl_->opt.host; }
const std::string& Server::model_name() const { return impl_->name; }
const Engine& Server::engine() const { return *impl_->engine; }
bool Server::listening() const { return impl_->http.is_running(); }

void Server::run() {
  Impl& s = *impl_;
  s.in_run = true;
  s.ran = true;
  if (!s.stop_requested) s.http.listen_after_bind();
  s.in_run = false;
}

void Server::stop() {
  Impl& s = *impl_;
  if (s.stop_requested.exchange(true)) return;
  // Refuse what waits for the engine first; the running request finishes.
  s.engine->stop();
  // run() may be between its check of stop_requested and httplib's accept loop:
  // wait until that loop runs (or run() has left) so that stop() cannot be lost.
  while (s.in_run && !s.http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.http.stop();
}

}  // namespace lq
