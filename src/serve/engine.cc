// serve/engine.cc: model + session + FIFO worker thread (see engine.h).
#include "serve/engine.h"

#include <algorithm>

#include "core/mapped_file.h"
#include "core/threads.h"

namespace lq {

namespace {

// Thrown from the on_token callback to abandon a generation whose client left.
struct Cancelled {};

// Byte offset of the first occurrence of any stop string in text, or npos.
size_t find_stop(const std::string& text, const std::vector<std::string>& stop, size_t from = 0) {
  size_t best = std::string::npos;
  for (const auto& s : stop) {
    if (s.empty()) continue;
    const size_t p = text.find(s, from);
    if (p < best) best = p;
  }
  return best;
}

// Streams text pieces while holding back anything that could still become the
// start of a stop string: with the longest stop string L bytes long, the last
// L-1 bytes stay back until more text (or the end) decides. A stop string that
// completes later starts at or after everything sent (it was not complete when
// the text ended L-1 bytes past its start), so the sent pieces are always a
// prefix of the final, cut text.
class TextStream {
 public:
  TextStream(const std::vector<std::string>& stop, std::function<bool(std::string_view)> emit)
      : stop_(stop), emit_(std::move(emit)) {
    for (const auto& s : stop_) hold_ = std::max(hold_, s.empty() ? size_t(0) : s.size() - 1);
  }
  // Returns false if the consumer is gone.
  bool add(const std::string& piece) {
    text_ += piece;
    size_t safe = text_.size() >= hold_ ? text_.size() - hold_ : 0;
    safe = std::min(safe, find_stop(text_, stop_));
    // Never split a UTF-8 character (the pieces go into JSON strings).
    while (safe > sent_ && safe < text_.size() && (uint8_t(text_[safe]) & 0xC0) == 0x80) --safe;
    if (safe <= sent_) return true;
    const bool ok = emit_(std::string_view(text_).substr(sent_, safe - sent_));
    sent_ = safe;
    return ok;
  }
  // Sends the rest of the final text (which starts with everything sent so far).
  bool finish(const std::string& final_text) {
    LQ_ASSERT(final_text.compare(0, sent_, text_, 0, sent_) == 0);
    if (final_text.size() <= sent_) return true;
    return emit_(std::string_view(final_text).substr(sent_));
  }

 private:
  const std::vector<std::string>& stop_;
  std::function<bool(std::string_view)> emit_;
  size_t hold_ = 0;
  std::string text_;
  size_t sent_ = 0;
};

}  // namespace

Engine::Engine(const EngineOptions& o) : opt_(o) {
  LQ_CHECK(o.chunk_size >= 1, "chunk size must be >= 1, got {}", o.chunk_size);
  LQ_CHECK(o.max_queue >= 1, "--max-queue must be >= 1, got {}", o.max_queue);
  LQ_CHECK(o.threads >= 0, "--threads must be >= 0, got {}", o.threads);
  model_ = Model::load(o.model_dir);
  const ModelConfig& c = model_->config();
  max_context_ = o.max_context == 0 ? c.max_position_embeddings : o.max_context;
  LQ_CHECK(max_context_ >= 2 && max_context_ <= c.max_position_embeddings,
           "--max-context must be in [2, {}] (the model's max_position_embeddings in {}/config.json), got {}",
           c.max_position_embeddings, o.model_dir, o.max_context);
  if (file_exists(o.model_dir + "/tokenizer.json")) tok_ = Tokenizer::load(o.model_dir);
  fmt_ = o.chat_format == "auto" ? detect_chat_format(o.model_dir, c.architecture) : parse_chat_format(o.chat_format);
  for (auto e : c.eos_token_ids) eos_.push_back(int32_t(e));
  if (tok_)
    for (auto e : tok_->eos_ids())
      if (std::find(eos_.begin(), eos_.end(), e) == eos_.end()) eos_.push_back(e);
  thread_ = std::thread([this] { worker(); });
}

Engine::~Engine() {
  stop();
  if (thread_.joinable()) thread_.join();
}

std::vector<int32_t> Engine::encode(std::string_view text, bool add_special) const {
  LQ_CHECK(tok_, "{} has no tokenizer.json: only token-id prompts can be served", opt_.model_dir);
  std::vector<int32_t> ids = tok_->encode(text, false);
  if (!add_special) return ids;
  const auto& pre = tok_->special_prefix();
  const auto& suf = tok_->special_suffix();
  const bool has_prefix = ids.size() >= pre.size() && std::equal(pre.begin(), pre.end(), ids.begin());
  std::vector<int32_t> out;
  out.reserve(pre.size() + ids.size() + suf.size());
  if (!has_prefix) out.insert(out.end(), pre.begin(), pre.end());
  out.insert(out.end(), ids.begin(), ids.end());
  out.insert(out.end(), suf.begin(), suf.end());
  return out;
}

std::vector<int32_t> Engine::encode_chat(const std::vector<ChatMessage>& messages) const {
  LQ_CHECK(tok_, "{} has no tokenizer.json: chat needs the model's tokenizer", opt_.model_dir);
  const std::string text = render_chat(fmt_, messages, true);
  // Chat templates carry their own special tokens; raw text gets the tokenizer's
  // (the same rule as the native evaluation backend).
  return fmt_ == ChatFormat::Raw ? encode(text, true) : tok_->encode(text, false);
}

void Engine::stop() {
  std::deque<std::unique_ptr<Job>> refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    refused.swap(queue_);
  }
  cv_.notify_all();
  for (auto& j : refused)
    j->done.set_exception(std::make_exception_ptr(EngineUnavailable("the server is shutting down", true)));
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {queue_.size(), busy_, served_};
}

std::vector<GenOutput> Engine::generate(const std::vector<GenParams>& requests) {
  std::vector<GenOutput> out;
  auto job = std::make_unique<Job>();
  job->fn = [&] {
    for (const auto& r : requests) out.push_back(run_one(r));
  };
  std::future<void> done = job->done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw EngineUnavailable("the server is shutting down", true);
    if (queue_.size() >= opt_.max_queue)
      throw EngineUnavailable(fmt::format("the server is busy: {} requests are already waiting (--max-queue)",
                                          queue_.size()),
                              false);
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
  done.get();  // rethrows the job's exception
  return out;
}

void Engine::worker() {
  // OpenMP's thread count is per calling thread: set it on the thread that runs the model.
  set_num_threads(opt_.threads);
  for (;;) {
    std::unique_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and nothing left (stop() refuses the queue)
      job = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    try {
      job->fn();
      job->done.set_value();
    } catch (...) {
      job->done.set_exception(std::current_exception());
    }
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = false;
    ++served_;
  }
}

GenOutput Engine::run_one(const GenParams& p) {
  const int64_t need = int64_t(p.prompt.size()) + p.max_tokens;
  LQ_ASSERT(!p.prompt.empty() && p.max_tokens >= 1 && need <= max_context_);
  LQ_ASSERT(p.stop.empty() || tok_);
  // One session, grown when a longer request comes (its arrays are paged in lazily).
  if (!session_ || session_->capacity() < need) {
    session_.reset();
    SessionOptions so;
    so.precision = opt_.precision;
    so.chunk_size = opt_.chunk_size;
    so.capacity = std::min(max_context_, std::max<int64_t>(need, 1024));
    session_ = std::make_unique<Session>(*model_, so);
  }
  session_->reset();

  GenerateOptions go;
  go.max_tokens = p.max_tokens;
  go.sampling = p.sampling;
  go.eos_ids = eos_;
  go.stop_strings = p.stop;
  if (!p.stop.empty()) go.detokenize = [this](const std::vector<int32_t>& ids) { return tok_->decode(ids, true); };
  go.keep_logits = p.top_logprobs > 0;

  GenOutput out;
  out.prompt_tokens = int64_t(p.prompt.size());
  std::optional<StreamDecoder> sd;
  std::optional<TextStream> ts;
  if (p.on_text) {
    LQ_ASSERT(tok_);
    sd.emplace(*tok_, true);
    ts.emplace(p.stop, p.on_text);
    go.on_token = [&](int32_t id) {
      if (!ts->add(sd->push(id))) throw Cancelled{};
    };
  }
  GenerateResult r;
  try {
    r = lq::generate(*session_, p.prompt, go);
  } catch (const Cancelled&) {
    out.cancelled = true;
    return out;
  }
  out.ids = std::move(r.ids);
  out.finish_reason = (r.stop_reason == "eos" || r.stop_reason == "stop_string") ? "stop" : "length";
  size_t cut = std::string::npos;
  if (tok_) {
    out.text = tok_->decode(out.ids, true);
    cut = find_stop(out.text, p.stop);
    if (cut != std::string::npos) out.text.resize(cut);
  }
  if (p.top_logprobs >= 0) {
    // Each token's start offset in the text decides whether it survived the stop cut.
    std::optional<StreamDecoder> offs;
    if (tok_) offs.emplace(*tok_, true);
    size_t offset = 0;
    const int64_t V = model_->config().vocab_size;
    for (size_t i = 0; i < out.ids.size(); ++i) {
      if (cut != std::string::npos && offset >= cut) break;
      TokenLogprob t;
      t.id = out.ids[i];
      t.logprob = r.logprobs[i];
      t.text_offset = offset;
      if (p.top_logprobs > 0) {
        const std::vector<float> ls = log_softmax(r.logits[i].data(), V);
        std::vector<int32_t> order(static_cast<size_t>(V));
        for (int64_t v = 0; v < V; ++v) order[size_t(v)] = int32_t(v);
        const size_t k = std::min<size_t>(size_t(p.top_logprobs), order.size());
        // Most likely first, ties by lower id (deterministic).
        std::partial_sort(order.begin(), order.begin() + long(k), order.end(), [&](int32_t a, int32_t b) {
          return ls[size_t(a)] != ls[size_t(b)] ? ls[size_t(a)] > ls[size_t(b)] : a < b;
        });
        for (size_t j = 0; j < k; ++j) t.top.emplace_back(order[j], ls[size_t(order[j])]);
      }
      out.logprobs.push_back(std::move(t));
      if (offs) offset += offs->push(out.ids[i]).size();
    }
  }
  if (ts && !ts->finish(out.text)) out.cancelled = true;
  return out;
}

}  // namespace lq
