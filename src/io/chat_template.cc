// io/chat_template.cc: see chat_template.h. Each renderer follows its official
// Jinja template statement by statement (comments name the template's lines).
#include "io/chat_template.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "io/unicode.h"

namespace lq {

namespace {

namespace fs = std::filesystem;

const char* const kQwenDefaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("cannot open {}", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return std::move(ss).str();
}

// Python json.dumps(s, ensure_ascii=False) for a string: transformers' |tojson.
std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out.push_back(ch);
    }
  }
  out += '"';
  return out;
}

std::string render_llama3(const std::vector<ChatMessage>& msgs, bool gen, const ChatOptions& o) {
  std::string out = "<|begin_of_text|>";  // {{- bos_token }}
  // {%- if messages[0]['role'] == 'system' %} system_message = messages[0]['content']|trim; messages = messages[1:]
  size_t first = 0;
  std::string_view system;
  if (!msgs.empty() && msgs[0].role == "system") {
    system = unicode::python_strip(msgs[0].content);
    first = 1;
  } else if (o.default_system_prompt) {
    system = unicode::python_strip(*o.default_system_prompt);
  }
  out += "<|start_header_id|>system<|end_header_id|>\n\n";
  out += "Cutting Knowledge Date: December 2023\n";
  out += "Today Date: " + o.date_string + "\n\n";
  out += system;
  out += "<|eot_id|>";
  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role.empty()) fail("render_chat(llama3): message {} has an empty role", i);
    if (m.role == "tool" || m.role == "ipython") {
      // {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }} + content|tojson (a string is iterable)
      out += "<|start_header_id|>ipython<|end_header_id|>\n\n";
      out += json_string(m.content);
      out += "<|eot_id|>";
    } else {
      out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
      out += unicode::python_strip(m.content);
      out += "<|eot_id|>";
    }
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_chatml(const std::vector<ChatMessage>& msgs, bool gen, const ChatOptions& o) {
  std::string out;
  if (!msgs.empty() && msgs[0].role == "system") {
    out += "<|im_start|>system\n" + msgs[0].content + "<|im_end|>\n";
  } else {
    out += "<|im_start|>system\n";
    out += o.default_system_prompt ? *o.default_system_prompt : std::string(kQwenDefaultSystem);
    out += "<|im_end|>\n";
  }
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "user" || (m.role == "system" && i > 0) || m.role == "assistant") {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    } else if (m.role == "system") {
      // loop.first system message: already rendered above.
    } else if (m.role == "tool") {
      if (i == 0 || msgs[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
      if (i + 1 == msgs.size() || msgs[i + 1].role != "tool") out += "<|im_end|>\n";
    } else {
      fail("render_chat(chatml): message {} has unsupported role \"{}\" (system, user, assistant, tool)", i, m.role);
    }
  }
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace

ChatFormat detect_chat_format(const std::string& model_dir, const std::string& architecture) {
  std::error_code ec;
  std::string tmpl;
  const fs::path cfg = fs::path(model_dir) / "tokenizer_config.json";
  if (fs::is_regular_file(cfg, ec)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text(cfg));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", cfg.string(), e.what());
    }
    if (j.is_object() && j.contains("chat_template")) {
      const auto& ct = j["chat_template"];
      if (ct.is_string()) {
        tmpl = ct.get<std::string>();
      } else if (ct.is_array()) {
        for (const auto& e : ct)
          if (e.is_object() && e.contains("template") && e["template"].is_string()) tmpl += e["template"].get<std::string>();
      }
    }
  }
  const fs::path jinja = fs::path(model_dir) / "chat_template.jinja";
  if (tmpl.empty() && fs::is_regular_file(jinja, ec)) tmpl = read_text(jinja);
  if (tmpl.find("<|start_header_id|>") != std::string::npos) return ChatFormat::Llama3;
  if (tmpl.find("<|im_start|>") != std::string::npos) return ChatFormat::ChatML;
  if (architecture == "LlamaForCausalLM") return ChatFormat::Llama3;
  if (architecture == "Qwen2ForCausalLM") return ChatFormat::ChatML;
  return ChatFormat::Raw;
}

ChatFormat parse_chat_format(std::string_view name) {
  if (name == "raw") return ChatFormat::Raw;
  if (name == "llama3") return ChatFormat::Llama3;
  if (name == "chatml") return ChatFormat::ChatML;
  fail("unknown chat format \"{}\" (expected raw, llama3 or chatml)", name);
}

std::string_view chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::Raw: return "raw";
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::ChatML: return "chatml";
  }
  return "?";
}

std::string render_chat(ChatFormat f, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const ChatOptions& opts) {
  switch (f) {
    case ChatFormat::Llama3: return render_llama3(messages, add_generation_prompt, opts);
    case ChatFormat::ChatML: return render_chatml(messages, add_generation_prompt, opts);
    case ChatFormat::Raw: break;
  }
  std::string out;
  for (const auto& m : messages) out += m.content;
  return out;
}

}  // namespace lq
