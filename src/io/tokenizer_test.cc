// io/tokenizer_test.cc: tests for the byte-level BPE tokenizer.
//
// Always run: a tiny hand-written tokenizer.json (tests/data/tokenizer/tiny) whose
// expected ids were worked out by hand from its merge list, a brute-force BPE
// reference on random words, UTF-8 helpers, streaming decode, and clear errors
// for malformed files. With ../shared: the real Llama-3 and Qwen2.5 tokenizers
// must reproduce every line of tokenizers/golden.jsonl exactly (no tolerance:
// token ids are integers).
#include "io/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "core/testing.h"
#include "io/chat_template.h"
#include "io/unicode.h"

namespace lq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;

std::string tiny_dir() { return testing::source_dir() + "/tests/data/tokenizer/tiny"; }

const Tokenizer& tiny() {
  static const Tokenizer t = Tokenizer::load(tiny_dir());
  return t;
}

json tiny_json() {
  std::ifstream f(tiny_dir() + "/tokenizer.json");
  return json::parse(f);
}

// A fresh temporary directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            (std::string("lq_tok_") + info->test_suite_name() + "_" + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = path_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// Expect load() to throw lq::Error whose message contains every needle.
void expect_load_error(const std::string& path, const std::vector<std::string>& needles) {
  try {
    Tokenizer::load(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------ unicode

TEST(TokenizerUnicode, ByteLevelMapIsABijectionOntoPrintables) {
  const auto& m = unicode::byte_to_codepoint();
  EXPECT_EQ(m[' '], U'\u0120');   // Ġ
  EXPECT_EQ(m['\n'], U'\u010A');  // Ċ
  EXPECT_EQ(m['A'], U'A');
  EXPECT_EQ(m[0xAD], U'\u0143');  // soft hyphen is the last remapped byte
  for (int b = 0; b < 256; ++b) EXPECT_EQ(unicode::codepoint_to_byte(m[b]), b);
  EXPECT_EQ(unicode::codepoint_to_byte(U' '), -1);
  EXPECT_EQ(unicode::codepoint_to_byte(U'\u0144'), -1);
}

TEST(TokenizerUnicode, Utf8ValidationAndLossyRepair) {
  EXPECT_EQ(unicode::find_invalid_utf8("plain ascii text, long enough for the fast path"), 47u);
  EXPECT_EQ(unicode::find_invalid_utf8("caf\xC3\xA9"), 5u);
  EXPECT_EQ(unicode::find_invalid_utf8("ab\xC3"), 2u);              // truncated
  EXPECT_EQ(unicode::find_invalid_utf8("ab\xC0\x80"), 2u);          // overlong
  EXPECT_EQ(unicode::find_invalid_utf8("\xED\xA0\x80"), 0u);        // surrogate
  EXPECT_EQ(unicode::find_invalid_utf8("x\xF4\x90\x80\x80"), 1u);   // > U+10FFFF
  std::string out;
  // Maximal-subpart rule: E2 82 is one ill-formed unit, then 'A', then a lone FF.
  unicode::append_utf8_lossy(out, "\xE2\x82" "A\xFF" "\xF0\x9F\x91\x8D");
  EXPECT_EQ(out, "\xEF\xBF\xBD" "A" "\xEF\xBF\xBD" "\xF0\x9F\x91\x8D");
}

TEST(TokenizerUnicode, NormalizeAndStrip) {
  EXPECT_EQ(unicode::normalize("e\xCC\x81", unicode::NormalForm::NFC), "\xC3\xA9");
  EXPECT_EQ(unicode::normalize("\xC3\xA9", unicode::NormalForm::NFD), "e\xCC\x81");
  EXPECT_EQ(unicode::normalize("\xEF\xAC\x81", unicode::NormalForm::NFKC), "fi");  // ligature
  EXPECT_EQ(unicode::python_strip(" \t\n\xC2\xA0\xE3\x80\x80 x y \x1F\xC2\x85"), "x y");
  EXPECT_EQ(unicode::python_strip("\xE2\x80\x8Bz"), "\xE2\x80\x8Bz");  // ZWSP is not space in Python
  EXPECT_EQ(unicode::python_strip("   "), "");
}

TEST(TokenizerUnicode, FastNfcEqualsUtf8procOnRandomMixes) {
  // Pieces chosen to hit every NFC case: composition with an ASCII or non-ASCII
  // starter, mark reordering (ccc 220 vs 230), singleton decompositions (U+212B),
  // non-starter decompositions (U+0344), Hangul L+V+T, and inert CJK/punctuation.
  const std::vector<std::string> pieces = {"e", "a", "A", " ", "\xCC\x81", "\xCC\xA3", "\xC3\xA9", "\xE1\x84\x80",
                                           "\xE1\x85\xA1", "\xE1\x86\xA8", "\xEA\xB0\x80", "\xE4\xB8\xAD",
                                           "\xE2\x80\x99", "\xC3\x86", "\xE2\x84\xAB", "\xCD\x84",
                                           "\xE0\xA4\xA8", "\xE0\xA4\xBC", "\xE1\xBA\xBF", "o\xCC\x88"};
  std::mt19937 rng(5);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s;
    for (unsigned k = rng() % 12; k > 0; --k) s += pieces[rng() % pieces.size()];
    ASSERT_EQ(unicode::normalize(s, unicode::NormalForm::NFC), unicode::normalize_full(s, unicode::NormalForm::NFC))
        << s;
  }
}

// ------------------------------------------------------------- tiny tokenizer

TEST(TokenizerTiny, MergesFollowRankNotPosition) {
  const Tokenizer& t = tiny();
  EXPECT_EQ(t.vocab_size(), 305);
  EXPECT_EQ(t.encode("hello"), (Ids{259}));
  // "ell": (l,l) has rank 1, (e,l) rank 11: "ll" wins although "el" is leftmost.
  EXPECT_EQ(t.encode("ell"), (Ids{'e', 257}));
  // Equal ranks: the leftmost pair first.
  EXPECT_EQ(t.encode("aaa"), (Ids{264, 'a'}));
  EXPECT_EQ(t.encode("aaaaa"), (Ids{265, 'a'}));
  // " world": Ġw (4), or (5), Ġwor (6), ld (7).
  EXPECT_EQ(t.encode("hello world"), (Ids{259, 262, 263}));
  // Multi-byte: é is C3 A9 -> merge "Ã ©".
  EXPECT_EQ(t.encode("caf\xC3\xA9"), (Ids{'c', 'a', 'f', 266}));
  // Pre-tokenizer: digits in groups of three, punctuation, newlines.
  EXPECT_EQ(t.encode("12345!\n"), (Ids{'1', '2', '3', '4', '5', '!', '\n'}));
  EXPECT_EQ(t.encode(""), Ids{});
}

TEST(TokenizerTiny, IgnoreMergesMapsWholePiece) {
  EXPECT_EQ(tiny().encode("xyz"), (Ids{268}));  // "xyz" has no merges but is a token
  json j = tiny_json();
  j["model"]["ignore_merges"] = false;
  TempDir d;
  const Tokenizer t = Tokenizer::load(d.write("tokenizer.json", j.dump()));
  EXPECT_EQ(t.encode("xyz"), (Ids{'x', 'y', 'z'}));
  EXPECT_EQ(t.encode("ell"), (Ids{'e', 257}));
}

TEST(TokenizerTiny, MergesAsPairsEqualMergesAsStrings) {
  json j = tiny_json();
  json pairs = json::array();
  for (const auto& m : j["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ');
    pairs.push_back(json::array({s.substr(0, sp), s.substr(sp + 1)}));
  }
  j["model"]["merges"] = pairs;
  TempDir d;
  const Tokenizer t = Tokenizer::load(d.write("tokenizer.json", j.dump()));
  for (const char* s : {"hello world", "ell", "aaaaa", "caf\xC3\xA9", "xyz"}) EXPECT_EQ(t.encode(s), tiny().encode(s)) << s;
}

TEST(TokenizerTiny, SpecialTokensInText) {
  const Tokenizer& t = tiny();
  EXPECT_EQ(t.encode("<|bos|>hello<|eot|>"), (Ids{300, 259, 301}));
  EXPECT_EQ(t.encode("a<tool>b"), (Ids{'a', 302, 'b'}));
  EXPECT_EQ(t.encode("<tool>s<tool>x"), (Ids{304, 302, 'x'}));  // longest match at a position
  // [MASK] has lstrip and rstrip: the spaces around it are absorbed.
  EXPECT_EQ(t.encode("a  [MASK]  b"), (Ids{'a', 303, 'b'}));
  // No flags on <tool>: the space before it is its own pre-token.
  EXPECT_EQ(t.encode("a <tool>"), (Ids{'a', ' ', 302}));
  EXPECT_EQ(t.encode("<|bos|", false), (Ids{'<', '|', 'b', 'o', 's', '|'}));
  EXPECT_TRUE(t.is_special(300));
  EXPECT_FALSE(t.is_special(302));
  EXPECT_FALSE(t.is_special(259));
}

TEST(TokenizerTiny, AddSpecialUsesTemplateProcessing) {
  const Tokenizer& t = tiny();
  EXPECT_EQ(t.encode("hello", true), (Ids{300, 259}));
  EXPECT_EQ(t.special_prefix(), (Ids{300}));
  EXPECT_TRUE(t.special_suffix().empty());
}

TEST(TokenizerTiny, ConfigAndVocabAccessors) {
  const Tokenizer& t = tiny();
  EXPECT_EQ(t.bos_id(), std::optional<int32_t>(300));
  EXPECT_EQ(t.eos_ids(), (Ids{301}));  // eos_token given as {"content": ...}
  EXPECT_EQ(t.add_bos_token(), std::optional<bool>(true));
  EXPECT_NE(t.chat_template_source().find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(t.token_to_id("\xC4\xA0w"), std::optional<int32_t>(260));  // "Ġw"
  EXPECT_EQ(t.token_to_id("<tool>"), std::optional<int32_t>(302));
  EXPECT_EQ(t.token_to_id("nope"), std::nullopt);
  EXPECT_EQ(t.id_to_token(260), "\xC4\xA0w");
  EXPECT_EQ(t.token_bytes(260), " w");
  EXPECT_THROW(t.id_to_token(305), Error);
  EXPECT_THROW(t.id_to_token(-1), Error);
  // Copies share state.
  const Tokenizer copy = t;
  EXPECT_EQ(copy.encode("hello world"), t.encode("hello world"));
}

TEST(TokenizerTiny, DecodeAndSkipSpecial) {
  const Tokenizer& t = tiny();
  EXPECT_EQ(t.decode({259, 262, 263}), "hello world");
  EXPECT_EQ(t.decode({300, 259, 301}), "<|bos|>hello<|eot|>");
  EXPECT_EQ(t.decode({300, 259, 302, 301}, true), "hello<tool>");  // <tool> is not special
  EXPECT_EQ(t.decode({'a', 0xC3}), "a\xEF\xBF\xBD");              // truncated é -> U+FFFD
  EXPECT_EQ(t.decode({'a', 299, 'b'}), "ab");                      // 299: no token, no text
  EXPECT_THROW(t.decode({-3}), Error);
  for (const char* s : {"hello world", "a  [MASK]  b", "caf\xC3\xA9 <tool>s \xF0\x9F\x91\x8D", "\t\r\n  x  "})
    EXPECT_EQ(t.decode(t.encode(s)), s == std::string("a  [MASK]  b") ? "a[MASK]b" : s) << s;
}

TEST(TokenizerTiny, InvalidUtf8InputIsAnError) {
  EXPECT_THROW(tiny().encode("ab\xC3(x"), Error);
}

TEST(TokenizerTiny, NormalizerNFC) {
  json j = tiny_json();
  j["normalizer"] = json{{"type", "NFC"}};
  TempDir d;
  const Tokenizer t = Tokenizer::load(d.write("tokenizer.json", j.dump()));
  EXPECT_EQ(t.encode("cafe\xCC\x81"), (Ids{'c', 'a', 'f', 266}));       // e + combining acute -> é
  EXPECT_EQ(tiny().encode("cafe\xCC\x81"), (Ids{'c', 'a', 'f', 'e', 0xCC, 0x81}));  // no normalizer
}

// Brute-force reference: repeatedly merge the leftmost lowest-rank pair.
Ids reference_bpe(const std::string& word, const json& model) {
  std::map<std::pair<std::string, std::string>, int> rank;
  int r = 0;
  for (const auto& m : model["merges"]) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ');
    rank[{s.substr(0, sp), s.substr(sp + 1)}] = r++;
  }
  const auto& vocab = model["vocab"];
  if (model.value("ignore_merges", false) && vocab.contains(word)) return {vocab[word].get<int32_t>()};
  std::vector<std::string> sym;
  for (char c : word) sym.emplace_back(1, c);  // ASCII letters only: byte == ByteLevel char
  while (true) {
    int best = -1, best_rank = 1 << 30;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = rank.find({sym[i], sym[i + 1]});
      if (it != rank.end() && it->second < best_rank) best_rank = it->second, best = static_cast<int>(i);
    }
    if (best < 0) break;
    sym[best] += sym[best + 1];
    sym.erase(sym.begin() + best + 1);
  }
  Ids ids;
  for (const auto& s : sym) ids.push_back(vocab[s].get<int32_t>());
  return ids;
}

TEST(TokenizerTiny, MergeLoopMatchesBruteForceOnRandomWords) {
  const json j = tiny_json();
  std::mt19937 rng(1234);
  const std::string alphabet = "aaaheelllodrxyz";
  for (int n = 0; n < 500; ++n) {
    std::string w(1 + rng() % 40, 'a');
    for (char& c : w) c = alphabet[rng() % alphabet.size()];
    ASSERT_EQ(tiny().encode(w), reference_bpe(w, j["model"])) << w;
  }
}

// --------------------------------------------------------------- streaming

TEST(TokenizerStream, SplitMultibyteCharacterIsHeldBack) {
  StreamDecoder sd(tiny());
  EXPECT_EQ(sd.push('c'), "c");
  EXPECT_EQ(sd.push(0xC3), "");  // first byte of é
  EXPECT_EQ(sd.push(0xA9), "\xC3\xA9");
  // 👍 = F0 9F 91 8D, one byte per token.
  EXPECT_EQ(sd.push(0xF0), "");
  EXPECT_EQ(sd.push(0x9F), "");
  EXPECT_EQ(sd.push(0x91), "");
  EXPECT_EQ(sd.push(0x8D), "\xF0\x9F\x91\x8D");
  EXPECT_EQ(sd.push(300), "");  // special, skipped by default
  EXPECT_EQ(sd.push(0xFF), "\xEF\xBF\xBD");  // can never start a character
  EXPECT_EQ(sd.push(0xE2), "");
  EXPECT_EQ(sd.flush(), "\xEF\xBF\xBD");  // unfinished at the end
  EXPECT_EQ(sd.flush(), "");
}

TEST(TokenizerStream, ConcatenationEqualsDecode) {
  std::mt19937 rng(99);
  for (bool skip : {false, true}) {
    for (int trial = 0; trial < 50; ++trial) {
      Ids ids(rng() % 30);
      for (auto& id : ids) id = static_cast<int32_t>(rng() % 305);
      StreamDecoder sd(tiny(), skip);
      std::string s;
      for (int32_t id : ids) s += sd.push(id);
      s += sd.flush();
      ASSERT_EQ(s, tiny().decode(ids, skip));
    }
  }
}

// ------------------------------------------------------------------ errors

TEST(TokenizerErrors, MalformedFilesNameTheFile) {
  TempDir d;
  expect_load_error(d.write("bad.json", "{ \"model\": [1, 2"), {"bad.json", "invalid JSON"});
  json j = tiny_json();
  j["model"]["type"] = "WordPiece";
  expect_load_error(d.write("wp.json", j.dump()), {"wp.json", "unsupported model type", "WordPiece"});
  j = tiny_json();
  j["pre_tokenizer"] = json{{"type", "Metaspace"}};
  expect_load_error(d.write("meta.json", j.dump()), {"meta.json", "pre_tokenizer", "Metaspace"});
  j = tiny_json();
  j["normalizer"] = json{{"type", "Lowercase"}};
  expect_load_error(d.write("lower.json", j.dump()), {"lower.json", "normalizer", "Lowercase"});
  j = tiny_json();
  j["decoder"] = json{{"type", "WordPiece"}};
  expect_load_error(d.write("dec.json", j.dump()), {"dec.json", "decoder", "WordPiece"});
  j = tiny_json();
  j["model"]["merges"].push_back("q zz");
  expect_load_error(d.write("merge.json", j.dump()), {"merge.json", "merges[12]", "zz"});
  j = tiny_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  expect_load_error(d.write("re.json", j.dump()), {"re.json", "regex"});
  j = tiny_json();
  j["model"]["vocab"].erase("a");
  expect_load_error(d.write("byte.json", j.dump()), {"byte.json", "0x61"});
  expect_load_error(d.str() + "/missing", {"missing"});
  // tokenizer_config.json naming a token that does not exist.
  j = tiny_json();
  d.write("tokenizer.json", j.dump());
  d.write("tokenizer_config.json", R"({"eos_token": "<|nope|>"})");
  expect_load_error(d.str(), {"tokenizer_config.json", "<|nope|>"});
}

// ------------------------------------------------------- real tokenizers

struct Real {
  Tokenizer llama3, qwen;
};

const Real& real(const std::string& shared) {
  static const Real r{Tokenizer::load(shared + "/tokenizers/llama3"), Tokenizer::load(shared + "/tokenizers/qwen2_5")};
  return r;
}

TEST(TokenizerReal, GoldenIdsAndRoundTrip) {
  LQ_REQUIRE_SHARED(shared);
  const Real& r = real(shared);
  std::ifstream f(shared + "/tokenizers/golden.jsonl");
  ASSERT_TRUE(f) << "missing golden.jsonl";
  std::string line;
  int lines = 0;
  std::map<std::string, int> ids_ok, round_ok, round_checked;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    ++lines;
    const json g = json::parse(line);
    const std::string text = g["text"].get<std::string>();
    for (const auto& [name, tok] : {std::pair<std::string, const Tokenizer*>{"llama3", &r.llama3}, {"qwen2_5", &r.qwen}}) {
      const Ids want = g[name].get<Ids>();
      const Ids got = tok->encode(text, false);
      EXPECT_EQ(got, want) << name << " line " << lines << ": " << text.substr(0, 80);
      ids_ok[name] += got == want;
      if (g[name + "_roundtrip"].get<bool>()) {
        ++round_checked[name];
        const std::string back = tok->decode(got);
        EXPECT_EQ(back, text) << name << " round trip, line " << lines;
        round_ok[name] += back == text;
      }
    }
  }
  EXPECT_EQ(lines, 60);
  for (const char* n : {"llama3", "qwen2_5"}) {
    std::printf("[golden] %s: %d/%d ids match, %d/%d round trips exact\n", n, ids_ok[n], lines, round_ok[n],
                round_checked[n]);
    EXPECT_EQ(ids_ok[n], lines);
  }
}

TEST(TokenizerReal, SpecialTokensAndConfig) {
  LQ_REQUIRE_SHARED(shared);
  const Real& r = real(shared);
  EXPECT_EQ(r.llama3.vocab_size(), 128256);
  EXPECT_EQ(r.qwen.vocab_size(), 151665);
  EXPECT_EQ(r.llama3.encode("Hi", true).front(), 128000);
  EXPECT_EQ(r.llama3.special_prefix(), (Ids{128000}));
  EXPECT_TRUE(r.qwen.special_prefix().empty());
  EXPECT_EQ(r.qwen.encode("Hi", true), r.qwen.encode("Hi", false));
  EXPECT_EQ(r.llama3.bos_id(), std::optional<int32_t>(128000));
  EXPECT_EQ(r.qwen.bos_id(), std::nullopt);
  EXPECT_EQ(r.llama3.eos_ids(), (Ids{128009}));
  EXPECT_EQ(r.qwen.eos_ids(), (Ids{151645}));
  EXPECT_EQ(r.qwen.add_bos_token(), std::optional<bool>(false));
  EXPECT_FALSE(r.llama3.chat_template_source().empty());
  EXPECT_TRUE(r.llama3.is_special(128009));
  EXPECT_TRUE(r.qwen.is_special(151644));
  EXPECT_FALSE(r.qwen.is_special(151657));  // <tool_call> is added but not special
  EXPECT_EQ(r.qwen.encode("<tool_call>"), (Ids{151657}));
  EXPECT_EQ(r.llama3.decode({128000, 9906, 1917, 128009}, true), "Hello world");
  EXPECT_EQ(r.llama3.id_to_token(22691), "\xC4\xA0Hello");
  // A rendered ChatML prompt: its markup becomes special tokens.
  const Ids q = r.qwen.encode(render_chat(ChatFormat::ChatML, {{"user", "Hello"}}), false);
  EXPECT_EQ(q.front(), 151644);                          // <|im_start|>
  EXPECT_EQ(std::count(q.begin(), q.end(), 151644), 3);  // system, user, assistant
  EXPECT_EQ(std::count(q.begin(), q.end(), 151645), 2);  // <|im_end|>
}

// Regression: a text of many identical pre-tokens once took quadratic time
// (reserve() per cache hit). 300K single-digit pieces must take well under the
// 10 s bound (about 20 ms in Release; the quadratic version took minutes).
TEST(TokenizerReal, ManyIdenticalPiecesAreLinearSlow) {
  LQ_REQUIRE_SHARED(shared);
  const Real& r = real(shared);
  const std::string digits(300000, '7');
  const auto t0 = std::chrono::steady_clock::now();
  const Ids ids = r.qwen.encode(digits);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(ids.size(), digits.size());  // Qwen splits digits one by one
  EXPECT_EQ(r.qwen.decode(ids), digits);
  EXPECT_LT(s, 10.0);
}

TEST(TokenizerReal, BookRoundTripSlow) {
  LQ_REQUIRE_SHARED(shared);
  const std::string book = shared + "/data/oneruler/books/en/little_women_louisa_may_alcott.txt";
  if (!fs::exists(book)) GTEST_SKIP() << "missing " << book;
  std::ifstream f(book, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  text.resize(std::min<size_t>(text.size(), 400000));
  while (!text.empty() && (static_cast<uint8_t>(text.back()) & 0xC0) == 0x80) text.pop_back();  // cut at a char
  if (!text.empty() && static_cast<uint8_t>(text.back()) >= 0xC0) text.pop_back();
  const Real& r = real(shared);
  const Ids ids = r.llama3.encode(text);
  EXPECT_EQ(r.llama3.decode(ids), text);
  // Pieces encoded one call at a time (no shared cache) give the same ids as one
  // call, when cut where the pre-tokenizer splits anyway: after "\n\n" before a letter.
  size_t cut = text.size() / 2;
  while (cut + 3 < text.size() && !(text.compare(cut, 2, "\n\n") == 0 && std::isalpha(static_cast<uint8_t>(text[cut + 2]))))
    ++cut;
  ASSERT_LT(cut + 3, text.size());
  cut += 2;
  Ids a = r.llama3.encode(std::string_view(text).substr(0, cut));
  const Ids b = r.llama3.encode(std::string_view(text).substr(cut));
  a.insert(a.end(), b.begin(), b.end());
  EXPECT_EQ(a, ids);
  EXPECT_EQ(r.qwen.decode(r.qwen.encode(text)), text);
}

}  // namespace
}  // namespace lq
