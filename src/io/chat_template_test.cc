// io/chat_template_test.cc: exact rendered strings for the Llama-3.1 and ChatML
// formats (written out from the official templates), format detection, and the
// interplay with the real Llama-3 tokenizer (skipped without ../shared).
#include "io/chat_template.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/testing.h"
#include "io/tokenizer.h"

namespace lq {
namespace {

namespace fs = std::filesystem;

TEST(ChatTemplate, Llama3DefaultSystemBlock) {
  const std::string got = render_chat(ChatFormat::Llama3, {{"user", "  What is 2+2?\n"}});
  EXPECT_EQ(got,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
            "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama3SystemAndMultiTurn) {
  ChatOptions o;
  o.date_string = "01 Jan 2025";
  const std::string got = render_chat(ChatFormat::Llama3,
                                      {{"system", "\nYou are terse. "},
                                       {"user", "Hi"},
                                       {"assistant", " Hello! "},
                                       {"tool", "{\"t\": 1}\n"},
                                       {"user", "Bye"}},
                                      false, o);
  EXPECT_EQ(got,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n"
            "You are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>ipython<|end_header_id|>\n\n\"{\\\"t\\\": 1}\\n\"<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>");
  // default_system_prompt applies only when there is no system message.
  ChatOptions d;
  d.default_system_prompt = "Be brief.";
  EXPECT_NE(render_chat(ChatFormat::Llama3, {{"user", "x"}}, true, d).find("2024\n\nBe brief.<|eot_id|>"),
            std::string::npos);
}

TEST(ChatTemplate, ChatMLDefaultSystem) {
  EXPECT_EQ(render_chat(ChatFormat::ChatML, {{"user", "Hello"}}),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, ChatMLSystemToolsAndNoTrim) {
  const std::string got = render_chat(ChatFormat::ChatML,
                                      {{"system", "Sys "},
                                       {"user", " q "},
                                       {"assistant", "a"},
                                       {"tool", "r1"},
                                       {"tool", "r2"},
                                       {"system", "late"}},
                                      false);
  EXPECT_EQ(got,
            "<|im_start|>system\nSys <|im_end|>\n"
            "<|im_start|>user\n q <|im_end|>\n"
            "<|im_start|>assistant\na<|im_end|>\n"
            "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response><|im_end|>\n"
            "<|im_start|>system\nlate<|im_end|>\n");
  EXPECT_THROW(render_chat(ChatFormat::ChatML, {{"narrator", "x"}}), Error);
}

TEST(ChatTemplate, RawAndFormatNames) {
  EXPECT_EQ(render_chat(ChatFormat::Raw, {{"user", "just text\n"}}), "just text\n");
  EXPECT_EQ(parse_chat_format("raw"), ChatFormat::Raw);
  EXPECT_EQ(parse_chat_format("llama3"), ChatFormat::Llama3);
  EXPECT_EQ(parse_chat_format("chatml"), ChatFormat::ChatML);
  try {
    parse_chat_format("jinja");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("jinja"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("chatml"), std::string::npos);
  }
  for (auto f : {ChatFormat::Raw, ChatFormat::Llama3, ChatFormat::ChatML})
    EXPECT_EQ(parse_chat_format(chat_format_name(f)), f);
}

TEST(ChatTemplate, DetectFromConfigThenArchitecture) {
  const fs::path d = fs::temp_directory_path() / ("lq_chat_detect_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  // No config: architecture decides.
  EXPECT_EQ(detect_chat_format(d.string(), "LlamaForCausalLM"), ChatFormat::Llama3);
  EXPECT_EQ(detect_chat_format(d.string(), "Qwen2ForCausalLM"), ChatFormat::ChatML);
  EXPECT_EQ(detect_chat_format(d.string(), "MistralForCausalLM"), ChatFormat::Raw);
  // Template content wins over the architecture.
  std::ofstream(d / "tokenizer_config.json") << R"({"chat_template": "{{ '<|im_start|>' }}"})";
  EXPECT_EQ(detect_chat_format(d.string(), "LlamaForCausalLM"), ChatFormat::ChatML);
  std::ofstream(d / "tokenizer_config.json") << R"({"chat_template": [{"name": "default", "template": "<|start_header_id|>"}]})";
  EXPECT_EQ(detect_chat_format(d.string(), "Qwen2ForCausalLM"), ChatFormat::Llama3);
  std::ofstream(d / "tokenizer_config.json") << "{not json";
  EXPECT_THROW(detect_chat_format(d.string(), "LlamaForCausalLM"), Error);
  fs::remove_all(d);
  // The committed tiny tokenizer's template is ChatML-like.
  EXPECT_EQ(detect_chat_format(testing::source_dir() + "/tests/data/tokenizer/tiny", ""), ChatFormat::ChatML);
}

TEST(ChatTemplate, RealLlama3TokenizerRecognisesRenderedSpecials) {
  LQ_REQUIRE_SHARED(shared);
  EXPECT_EQ(detect_chat_format(shared + "/tokenizers/llama3", ""), ChatFormat::Llama3);
  EXPECT_EQ(detect_chat_format(shared + "/tokenizers/qwen2_5", ""), ChatFormat::ChatML);
  const Tokenizer llama = Tokenizer::load(shared + "/tokenizers/llama3");
  const std::vector<int32_t> ids =
      llama.encode(render_chat(ChatFormat::Llama3, {{"system", "Be kind."}, {"user", "Hello"}}), false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 128000);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 128006), 3);  // start_header_id: system, user, assistant
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 128007), 3);  // end_header_id
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 128009), 2);  // eot_id
  // (The ChatML prompt with the Qwen tokenizer is checked in tokenizer_test.cc,
  // which already has that tokenizer loaded.)
}

}  // namespace
}  // namespace lq
