// io/chat_template.h: the chat prompt formats longquant supports, rendered natively.
//
// We do not implement Jinja. Instead the two official templates are reproduced
// exactly as Hugging Face transformers renders them with their defaults (no tools):
//
//  * Llama3 (Llama-3.1 Instruct):
//      <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n
//      Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n
//      {system|trim}<|eot_id|>
//      then per message <|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>
//      and, with add_generation_prompt, <|start_header_id|>assistant<|end_header_id|>\n\n.
//    The system block is always emitted (empty system text when none is given).
//    Roles "tool"/"ipython" render under the "ipython" header with the content as a
//    JSON string (the template applies |tojson, since a string is iterable in Jinja).
//    |trim is Python's str.strip() (Unicode whitespace).
//  * ChatML (Qwen2.5): <|im_start|>{role}\n{content}<|im_end|>\n per message, a
//    first system message defaulting to "You are Qwen, created by Alibaba Cloud.
//    You are a helpful assistant.", consecutive "tool" messages grouped into one
//    user turn of <tool_response> blocks, and <|im_start|>assistant\n as the
//    generation prompt. Unknown roles are an error (the template would silently
//    drop them).
//  * Raw: the message contents concatenated, no markup.
//
// The result contains special-token text (e.g. "<|eot_id|>"); Tokenizer::encode
// recognises it, so encode the prompt with add_special = false.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

enum class ChatFormat { Raw, Llama3, ChatML };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (also "tool"; "ipython" for Llama3)
  std::string content;
};

struct ChatOptions {
  // Llama3 "Today Date:" text; the official template's default when unset.
  std::string date_string = "26 Jul 2024";
  // System text used when the messages do not start with a system message
  // (Llama3 default: empty; ChatML default: the Qwen sentence above).
  std::optional<std::string> default_system_prompt;
};

// From model_dir/tokenizer_config.json's chat_template (or model_dir/chat_template.jinja):
// "<|start_header_id|>" -> Llama3, "<|im_start|>" -> ChatML; otherwise from the
// architecture (LlamaForCausalLM -> Llama3, Qwen2ForCausalLM -> ChatML); else Raw.
// Throws lq::Error naming the file if tokenizer_config.json exists but is not valid JSON.
ChatFormat detect_chat_format(const std::string& model_dir, const std::string& architecture);

// "raw" | "llama3" | "chatml"; throws lq::Error listing the valid names otherwise.
ChatFormat parse_chat_format(std::string_view name);
std::string_view chat_format_name(ChatFormat f);

// Render messages in format f (see above). Throws lq::Error on an unsupported role.
std::string render_chat(ChatFormat f, const std::vector<ChatMessage>& messages, bool add_generation_prompt = true,
                        const ChatOptions& opts = {});

}  // namespace lq
