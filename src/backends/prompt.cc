// backends/prompt.cc: PromptRenderer (backend.h), shared by every backend and by
// tools that must show a model exactly the prompts an evaluation shows it. Kept
// apart from native.cc so linking it does not pull in the engine.
#include "backends/backend.h"

namespace lq {

std::string PromptRenderer::render(const std::string& user_message, const std::string& answer_prefix) const {
  if (fmt_ == ChatFormat::Raw) return user_message + answer_prefix;
  return render_chat(fmt_, {{"user", user_message}}, true) + answer_prefix;
}

std::vector<int32_t> PromptRenderer::encode(const std::string& user_message, const std::string& answer_prefix) const {
  // Chat templates carry their own special tokens (Llama-3's <|begin_of_text|>);
  // raw prompts get the tokenizer's own (add_special).
  return tok_.encode(render(user_message, answer_prefix), fmt_ == ChatFormat::Raw);
}

}  // namespace lq
