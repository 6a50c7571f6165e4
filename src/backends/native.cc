// backends/native.cc: the in-process engine as an evaluation backend.
#include <chrono>

#include "backends/backend.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "model/generate.h"
#include "model/model.h"

namespace lq {

namespace {

class NativeBackend : public Backend {
 public:
  NativeBackend(const std::string& dir, const NativeOptions& o) : dir_(dir), opt_(o) {
    LQ_CHECK(file_exists(dir + "/tokenizer.json"),
             "{}: no tokenizer.json; text tasks need the model's tokenizer", dir);
    model_ = Model::load(dir);
    Tokenizer tok = Tokenizer::load(dir);
    const ChatFormat fmt = o.chat_format == "auto" ? detect_chat_format(dir, model_->config().architecture)
                                                   : parse_chat_format(o.chat_format);
    renderer_ = std::make_unique<PromptRenderer>(std::move(tok), fmt);
    for (auto e : model_->config().eos_token_ids) eos_.push_back(int32_t(e));
    for (auto e : renderer_->tokenizer().eos_ids()) eos_.push_back(e);
  }

  GenResponse generate(const GenRequest& r) override {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    GenResponse out;
    std::vector<int32_t> ids = renderer_->encode(r.user_message, r.answer_prefix);
    out.prompt_tokens = int64_t(ids.size());
    const int64_t need = out.prompt_tokens + r.max_tokens;
    if (need > model_->config().max_position_embeddings) {
      out.error = fmt::format("prompt of {} tokens + {} to generate exceeds the model's context of {}",
                              out.prompt_tokens, r.max_tokens, model_->config().max_position_embeddings);
      return out;
    }
    // One session, grown when a longer request comes (its arrays are lazily paged).
    if (!session_ || session_->capacity() < need) {
      SessionOptions so;
      so.precision = opt_.precision;
      so.chunk_size = opt_.chunk_size;
      so.capacity = std::min(model_->config().max_position_embeddings, std::max<int64_t>(need, 1024));
      session_.reset();
      session_ = std::make_unique<Session>(*model_, so);
    }
    session_->reset();
    GenerateOptions go;
    go.max_tokens = r.max_tokens;
    go.eos_ids = eos_;
    auto g = lq::generate(*session_, ids, go);
    out.generated_tokens = int64_t(g.ids.size());
    out.text = renderer_->tokenizer().decode(g.ids, true);
    out.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return out;
  }

  int64_t count_prompt_tokens(const std::string& user_message, const std::string& answer_prefix) override {
    return int64_t(renderer_->encode(user_message, answer_prefix).size());
  }

  int64_t context_length() const override { return model_->config().max_position_embeddings; }

  std::string describe() const override {
    return fmt::format("native engine on {} ({}, {})", dir_, model_->config().architecture,
                       precision_name(opt_.precision));
  }

 private:
  std::string dir_;
  NativeOptions opt_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<PromptRenderer> renderer_;
  std::unique_ptr<Session> session_;
  std::vector<int32_t> eos_;
};

}  // namespace

std::unique_ptr<Backend> make_native_backend(const std::string& model_dir, const NativeOptions& o) {
  return std::make_unique<NativeBackend>(model_dir, o);
}

}  // namespace lq
