// backends/backend.h: what the evaluation runner talks to.
//
// A backend turns a task example (a user message plus the task's answer prefix)
// into generated text, greedily, under a token budget. The native backend runs
// our engine in-process; the OpenAI-compatible HTTP backend (issue 7) sends the
// same rendered prompt to a server. Both render prompts the same way: the model's
// chat template around the user message, then the answer prefix, as the study did.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/precision.h"
#include "io/chat_template.h"
#include "io/tokenizer.h"

namespace lq {

struct GenRequest {
  std::string user_message;
  std::string answer_prefix;
  int64_t max_tokens = 128;
};

struct GenResponse {
  std::string text;            // generated text (answer prefix not included)
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double seconds = 0;
  std::string error;           // non-empty if this example failed (the run goes on)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual GenResponse generate(const GenRequest& r) = 0;
  // Tokens of the fully rendered prompt for (user_message, answer_prefix).
  virtual int64_t count_prompt_tokens(const std::string& user_message, const std::string& answer_prefix) = 0;
  virtual int64_t context_length() const = 0;
  virtual std::string describe() const = 0;
};

// Renders and encodes prompts: chat template (or raw) + answer prefix.
class PromptRenderer {
 public:
  PromptRenderer(Tokenizer tok, ChatFormat fmt) : tok_(std::move(tok)), fmt_(fmt) {}
  std::string render(const std::string& user_message, const std::string& answer_prefix) const;
  std::vector<int32_t> encode(const std::string& user_message, const std::string& answer_prefix) const;
  const Tokenizer& tokenizer() const { return tok_; }
  ChatFormat format() const { return fmt_; }

 private:
  Tokenizer tok_;
  ChatFormat fmt_;
};

struct NativeOptions {
  Precision precision = Precision::BF16;
  std::string chat_format = "auto";  // auto | llama3 | chatml | raw
  int64_t chunk_size = 512;
};

// The in-process engine on a model directory (BF16 or any quantized layout it loads).
std::unique_ptr<Backend> make_native_backend(const std::string& model_dir, const NativeOptions& o);

}  // namespace lq
