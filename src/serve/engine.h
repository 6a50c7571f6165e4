// serve/engine.h: the one in-process engine behind `longquant serve`.
//
// What: a loaded Model (plus its tokenizer when the directory has one), one KV
// cache Session, and one worker thread that runs generation jobs strictly in
// arrival order (FIFO). HTTP handler threads submit a job and block until it is
// done; at most `max_queue` jobs may wait, the next one is refused (EngineBusy).
//
// Why a dedicated thread: the forward pass runs on the OpenMP pool, and GNU
// OpenMP keeps one pool (and one thread-count setting) per thread that starts a
// parallel region. Running every request on the same thread keeps exactly one
// pool of `threads` workers, however many HTTP threads hand work in.
//
// Numerics: generation is lq::generate() on a Session reset to position 0 for
// every request, so a greedy request yields exactly the ids of the model layer's
// own generate() on a fresh Session with the same precision and chunk size. Text
// is Tokenizer::decode(ids, skip_special = true), cut before the first stop
// string; a streamed response is the same text, sent in pieces (see
// GenParams::on_text).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/precision.h"
#include "io/chat_template.h"
#include "io/tokenizer.h"
#include "model/generate.h"
#include "model/model.h"

namespace lq {

struct EngineOptions {
  std::string model_dir;
  Precision precision = Precision::BF16;
  std::string chat_format = "auto";  // auto | llama3 | chatml | raw
  int64_t max_context = 0;           // tokens per request (prompt + generated); 0 = the model's context
  int threads = 0;                   // OpenMP threads of the engine (0 = all hardware threads)
  int64_t chunk_size = 512;          // prefill chunk
  size_t max_queue = 512;            // jobs allowed to wait for the engine
};

// The engine refused a job: its queue is full (busy) or it is shutting down.
class EngineUnavailable : public Error {
 public:
  EngineUnavailable(const std::string& msg, bool shutting_down) : Error(msg), shutting_down_(shutting_down) {}
  bool shutting_down() const { return shutting_down_; }

 private:
  bool shutting_down_;
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;                             // log-probability under the model (temperature 1)
  size_t text_offset = 0;                        // byte offset of its text in GenOutput::text
  std::vector<std::pair<int32_t, float>> top;    // most likely alternatives, best first
};

struct GenParams {
  std::vector<int32_t> prompt;  // non-empty, ids < vocab, prompt + max_tokens <= max_context (caller checks)
  int64_t max_tokens = 16;
  SamplingOptions sampling;
  std::vector<std::string> stop;  // needs the tokenizer
  int top_logprobs = -1;          // -1: no log-probabilities; k >= 0: each token's, plus k alternatives
  // Streaming: called on the engine thread with each new piece of text as soon as
  // it can no longer be the start of a stop string (whole UTF-8 characters only).
  // The pieces concatenate to GenOutput::text. Return false to cancel (client gone).
  std::function<bool(std::string_view)> on_text;
};

struct GenOutput {
  std::vector<int32_t> ids;          // generated ids (no eos)
  std::string text;                  // "" without a tokenizer
  std::string finish_reason;         // "stop" (eos or stop string) | "length"
  int64_t prompt_tokens = 0;
  std::vector<TokenLogprob> logprobs;  // one per id when top_logprobs >= 0 (cut with the text)
  bool cancelled = false;            // on_text returned false; the rest is incomplete
};

struct EngineStats {
  size_t queued = 0;      // jobs waiting
  bool busy = false;      // a job is running
  uint64_t served = 0;    // jobs finished
};

class Engine {
 public:
  // Loads the model (and tokenizer.json if present); starts the worker thread.
  // Throws lq::Error naming the file or option on any problem.
  explicit Engine(const EngineOptions& o);
  ~Engine();  // stop() and join
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelConfig& config() const { return model_->config(); }
  const Tokenizer* tokenizer() const { return tok_ ? &*tok_ : nullptr; }
  ChatFormat chat_format() const { return fmt_; }
  int64_t max_context() const { return max_context_; }
  const std::vector<int32_t>& eos_ids() const { return eos_; }
  const EngineOptions& options() const { return opt_; }

  // Text prompt -> ids (needs the tokenizer). With add_special the tokenizer's
  // own prefix (Llama-3: <|begin_of_text|>) is added unless the text already
  // starts with it (a prompt rendered by a chat template carries it).
  std::vector<int32_t> encode(std::string_view text, bool add_special) const;
  // Messages rendered with the model's chat template plus the assistant header.
  std::vector<int32_t> encode_chat(const std::vector<ChatMessage>& messages) const;

  // Runs the requests one after another as one job (FIFO with other jobs);
  // blocks until done. Throws EngineUnavailable when refused, lq::Error on failure.
  std::vector<GenOutput> generate(const std::vector<GenParams>& requests);

  // Refuse queued and future jobs (EngineUnavailable{shutting_down}); the
  // running one finishes. Idempotent, thread-safe.
  void stop();
  EngineStats stats() const;

 private:
  struct Job {
    std::function<void()> fn;
    std::promise<void> done;
  };
  void worker();
  GenOutput run_one(const GenParams& p);

  EngineOptions opt_;
  std::unique_ptr<Model> model_;
  std::optional<Tokenizer> tok_;
  ChatFormat fmt_ = ChatFormat::Raw;
  int64_t max_context_ = 0;
  std::vector<int32_t> eos_;
  std::unique_ptr<Session> session_;  // engine thread only

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool stopping_ = false;
  bool busy_ = false;
  uint64_t served_ = 0;
  std::thread thread_;
};

}  // namespace lq
