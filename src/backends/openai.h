// backends/openai.h: an OpenAI-compatible HTTP server (vLLM, llama.cpp's server,
// `longquant serve`, ...) as an evaluation backend.
//
// What is sent. Greedy decoding (temperature 0) with max_tokens = the task's
// generation budget, to one of two APIs:
//  * /v1/completions (default): the prompt is rendered exactly as the native
//    backend renders it (PromptRenderer: the chat template around the user
//    message, then the task's answer prefix), with a local tokenizer
//    (tokenizer=DIR). With prompt=text the rendered string is sent; with
//    prompt=ids its token ids (the very ids the native engine would prefill,
//    immune to the server adding a second BOS).
//  * /v1/chat/completions (chat=1): messages = [{"role": "user", "content":
//    user_message + answer_prefix}]; the server applies its own template. The
//    answer prefix has no standard place in the chat API (a trailing partial
//    assistant message is a vLLM extension), so it ends the user message.
// Both need the tokenizer to count prompt tokens while the task generator fits
// examples to a length; in chat mode the count renders the same single user
// message with the local chat format.
//
// Robustness. At most `concurrency` requests are in flight (a counting
// semaphore, whoever calls generate()). Each attempt has a timeout (connect,
// read and write). Retryable: transport errors (refused, reset, timed out),
// HTTP 408, 429 and 5xx, and a 200 whose body is not a completion (malformed
// JSON, no choices). Retries wait an exponential backoff with jitter:
// delay_k = b * 2^k * (1/2 + u/2), u uniform in [0, 1), capped at max_backoff,
// or the server's Retry-After (seconds) when it gives one (capped likewise).
// Any other status (400, 401, 404, 422, ...) is final: the example gets an
// error holding the status and the server's message, and the run goes on.
// When the retries are exhausted the example also gets an error and
// EndpointResult::transient says so (the runner stops a variant whose
// endpoint keeps failing, leaving the rest pending for a rerun).
//
// Several URLs (a fleet): each attempt goes to the URL with the fewest
// requests in flight, ties broken round-robin; a URL that just failed is
// avoided for its backoff delay while others are available.
//
// Token usage: prompt_tokens / generated_tokens come from the response's
// `usage` (prompt_tokens, completion_tokens); when a server omits it, from the
// local tokenizer (the prompt's count, and the encoded generated text).
//
// Thread-safety: generate(), call() and count_prompt_tokens() may be called
// from many threads at once.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"

namespace lq {

struct EndpointOptions {
  std::vector<std::string> urls;   // base URLs, e.g. http://127.0.0.1:8000/v1 ("/completions" is appended)
  std::string model;               // the served model name (required)
  int concurrency = 4;             // requests in flight, all URLs together
  std::string api_key;             // sent as "Authorization: Bearer ..." when non-empty
  std::string api_key_env;         // where api_key came from (for messages)
  bool chat = false;               // /v1/chat/completions instead of /v1/completions
  double timeout_s = 600;          // per attempt: connect, read and write timeouts
  int retries = 5;                 // retries after the first attempt
  double backoff_s = 1.0;          // first retry's nominal delay (doubles each retry)
  double max_backoff_s = 60.0;     // cap of one delay (also of Retry-After)
  std::string tokenizer_dir;       // HF model/tokenizer dir: rendering and counting (required)
  std::string chat_format = "auto";  // auto | llama3 | chatml | raw (auto: from tokenizer_dir)
  bool prompt_ids = false;         // completions: send token ids instead of the rendered text
  int add_special_tokens = -1;     // -1: not sent; 0/1: vLLM's "add_special_tokens" field
  int64_t context = 0;             // context length; 0: the server's max_model_len or config.json
  int abort_after = -1;            // runner: consecutive exhausted examples that stop the variant
                                   // (-1: concurrency + 2; 0: never)
  uint64_t jitter_seed = 0;         // seeds the retry jitter; 0: a fresh random seed per backend
                                   // (so clients started together do not retry in lockstep)

  // From a variant's SOURCE (URL or URL1|URL2|...) and its key=value settings
  // (model, concurrency, api_key_env, chat, timeout, retries, backoff,
  // max_backoff, tokenizer, chat_format, prompt=text|ids, add_special_tokens,
  // context, abort_after). `chat_default` / `chat_format_default` apply when
  // the settings do not say (the CLI's --chat-api / --chat-format). Throws
  // lq::Error naming the variant and the setting.
  static EndpointOptions from_variant(const std::string& variant, const std::string& source,
                                      const std::map<std::string, std::string>& settings, bool chat_default = false,
                                      const std::string& chat_format_default = "auto");
};

// The outcome of one example: the response plus how it was obtained.
struct EndpointResult {
  GenResponse response;
  int attempts = 0;        // HTTP attempts made (1 = no retry)
  int http_status = 0;     // last HTTP status (0: no response)
  bool transient = false;  // failed with a retryable error after every retry
};

class OpenAIBackend : public Backend {
 public:
  // Loads the tokenizer and probes every URL's /models: an unreachable fleet,
  // a refused key (401/403) or a server that lists models without `model` is
  // an lq::Error. A server without /models (404) is accepted as it is.
  explicit OpenAIBackend(EndpointOptions o);
  ~OpenAIBackend() override;

  GenResponse generate(const GenRequest& r) override { return call(r).response; }
  EndpointResult call(const GenRequest& r);
  int64_t count_prompt_tokens(const std::string& user_message, const std::string& answer_prefix) override;
  // options().context, else the server's max_model_len (vLLM's /models), else
  // max_position_embeddings of tokenizer_dir/config.json, else INT64_MAX (unknown).
  int64_t context_length() const override { return context_; }
  std::string describe() const override;

  const EndpointOptions& options() const { return opt_; }
  ChatFormat chat_format() const { return renderer_->format(); }
  // The JSON body call() would send for r (for tests and --dry-run style checks).
  std::string request_body(const GenRequest& r) const;

  struct Stats {
    int64_t attempts = 0, retries = 0, failures = 0;
    int max_in_flight = 0;
  };
  Stats stats() const;

 private:
  struct Url;
  struct Impl;
  EndpointOptions opt_;
  std::unique_ptr<PromptRenderer> renderer_;
  int64_t context_ = 0;
  std::unique_ptr<Impl> impl_;
};

std::unique_ptr<OpenAIBackend> make_openai_backend(const EndpointOptions& o);

// "http://h:p/v1" -> {"http://h:p", "/v1"}; throws lq::Error for anything but
// an http(s) URL with a host.
std::pair<std::string, std::string> split_endpoint_url(const std::string& url);

}  // namespace lq
