// io/tokenizer.cc: byte-level BPE (see tokenizer.h for the supported subset).
//
// Encoding pipeline, mirroring Hugging Face `tokenizers`:
//   1. added tokens with normalized=false are cut out of the raw text
//      (leftmost-longest match, lstrip/rstrip/single_word applied);
//   2. each remaining segment is normalized (NFC for Qwen), then added tokens
//      with normalized=true are cut out of it;
//   3. pre-tokenizers split segments into pre-tokens (PCRE2 regex "Isolated"
//      splits; ByteLevel optionally prepends a space and splits with the GPT-2
//      regex; its byte->char mapping is implicit because the BPE works on bytes);
//   4. each pre-token is BPE-encoded: ignore_merges lookup of the whole piece, then
//      repeated merging of the adjacent pair with the lowest (rank, position) using
//      a binary heap over a doubly linked list of symbols (O(n log n) per piece).
//      A per-call cache maps pre-tokens already seen in this text to their ids.
// The vocabulary is stored as raw bytes (the ByteLevel spelling "Ġthe" is mapped
// back to " the" at load time), so no byte->unicode conversion happens per call.
#include "io/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "io/unicode.h"

namespace lq {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using StrMap = std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>>;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open {}", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail("error reading {}", path);
  return std::move(ss).str();
}

json parse_json_file(const std::string& path) {
  const std::string text = slurp(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

// ---------------------------------------------------------------- PCRE2 regex

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

class Regex {
 public:
  // literal: match `pattern` as a plain string (Split {"String": ...}).
  Regex(const std::string& pattern, bool literal, const std::string& where) {
    int err = 0;
    PCRE2_SIZE off = 0;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
    if (literal) opts |= PCRE2_LITERAL;
    pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts, &err, &off,
                                  nullptr);
    if (!c) fail("{}: cannot compile regex at offset {}: {} (pattern: {})", where, off, pcre2_message(err), pattern);
    code_.reset(c);
    jit_ = pcre2_jit_compile(c, PCRE2_JIT_COMPLETE) == 0;
  }

  pcre2_code* code() const { return code_.get(); }

  // Next match in subject at or after `start`; false when there is none.
  bool find(std::string_view subject, size_t start, pcre2_match_data* md, size_t* ms, size_t* me) const {
    const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
    int rc;
    if (jit_) {
      rc = pcre2_jit_match(code_.get(), s, subject.size(), start, 0, md, nullptr);
      // Pathological inputs can exhaust the JIT stack: redo with the interpreter.
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(code_.get(), s, subject.size(), start, PCRE2_NO_JIT | PCRE2_NO_UTF_CHECK, md, nullptr);
    } else {
      rc = pcre2_match(code_.get(), s, subject.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) fail("tokenizer: regex match failed: {}", pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return true;
  }

 private:
  std::unique_ptr<pcre2_code, CodeDeleter> code_;
  bool jit_ = false;
};

// GPT-2's pre-tokenizer regex, used by ByteLevel when use_regex is true.
const char* const kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ------------------------------------------------------------ merge hash map

// Open-addressing map (id_a, id_b) -> (rank, merged id). ~2x faster than
// std::unordered_map in the merge loop and a third of its memory.
class PairMap {
 public:
  struct Entry {
    uint64_t key;
    int32_t rank, id;
  };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n + n / 2 + 1) cap <<= 1;
    slots_.assign(cap, Entry{kEmpty, 0, 0});
    bits_ = 0;
    while ((size_t{1} << bits_) < cap) ++bits_;
  }
  // Returns false (and keeps the old entry) if the key is already present.
  bool insert(int32_t a, int32_t b, int32_t rank, int32_t id) {
    const uint64_t k = key(a, b);
    for (size_t i = slot(k);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].key == kEmpty) {
        slots_[i] = Entry{k, rank, id};
        return true;
      }
      if (slots_[i].key == k) return false;
    }
  }
  const Entry* find(int32_t a, int32_t b) const {
    const uint64_t k = key(a, b);
    for (size_t i = slot(k);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].key == k) return &slots_[i];
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  size_t slot(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> (64 - bits_)); }
  std::vector<Entry> slots_;
  int bits_ = 0;
};

// ------------------------------------------------------------- added tokens

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// Finds added tokens in text: leftmost match, longest at that position.
class AddedMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens, bool normalized_pass,
             const std::vector<unicode::NormalForm>& norms) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const AddedToken& t = tokens[i];
      if (t.normalized != normalized_pass || t.content.empty()) continue;
      std::string c = t.content;
      for (auto f : norms) c = unicode::normalize(c, f);
      if (!by_content_.emplace(c, static_cast<int32_t>(i)).second) continue;
      auto& lens = lengths_[static_cast<uint8_t>(c[0])];
      if (std::find(lens.begin(), lens.end(), c.size()) == lens.end()) lens.push_back(c.size());
      any_ = true;
    }
    for (auto& lens : lengths_) std::sort(lens.begin(), lens.end(), std::greater<>());
  }
  bool empty() const { return !any_; }

  // Split text at added tokens: on_text(segment) for text between them,
  // on_token(index into the token list) for each token.
  template <class TextFn, class TokFn>
  void split(std::string_view text, const std::vector<AddedToken>& tokens, TextFn&& on_text,
             TokFn&& on_token) const {
    size_t seg = 0;  // start of the pending text segment
    size_t p = 0;
    const size_t n = text.size();
    while (p < n) {
      const auto& lens = lengths_[static_cast<uint8_t>(text[p])];
      int32_t hit = -1;
      size_t hit_len = 0;
      for (size_t len : lens) {
        if (p + len > n) continue;
        auto it = by_content_.find(text.substr(p, len));
        if (it == by_content_.end()) continue;
        const AddedToken& t = tokens[it->second];
        if (t.single_word && !single_word_ok(text, p, p + len)) continue;
        hit = it->second;
        hit_len = len;
        break;
      }
      if (hit < 0) {
        ++p;
        continue;
      }
      const AddedToken& t = tokens[hit];
      size_t s = p, e = p + hit_len;
      if (t.lstrip) s = seg + skip_space_back(text.substr(seg, s - seg));
      if (t.rstrip) e += skip_space_fwd(text.substr(e));
      if (s > seg) on_text(text.substr(seg, s - seg));
      on_token(hit);
      seg = p = e;
    }
    if (seg < n) on_text(text.substr(seg));
  }

 private:
  // Length of s without its trailing whitespace.
  static size_t skip_space_back(std::string_view s) {
    size_t e = s.size();
    while (e > 0) {
      size_t b = e - 1;
      while (b > 0 && (static_cast<uint8_t>(s[b]) & 0xC0) == 0x80) --b;
      char32_t cp;
      if (unicode::decode_utf8(s.substr(b, e - b), &cp) != e - b || !unicode::is_python_space(cp)) break;
      e = b;
    }
    return e;
  }
  // Number of leading whitespace bytes of s.
  static size_t skip_space_fwd(std::string_view s) {
    size_t b = 0;
    while (b < s.size()) {
      char32_t cp;
      const size_t k = unicode::decode_utf8(s.substr(b), &cp);
      if (k == 0 || !unicode::is_python_space(cp)) break;
      b += k;
    }
    return b;
  }
  static bool single_word_ok(std::string_view text, size_t s, size_t e) {
    if (s > 0) {
      size_t b = s - 1;
      while (b > 0 && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) --b;
      char32_t cp;
      if (unicode::decode_utf8(text.substr(b, s - b), &cp) && unicode::is_word_char(cp)) return false;
    }
    if (e < text.size()) {
      char32_t cp;
      if (unicode::decode_utf8(text.substr(e), &cp) && unicode::is_word_char(cp)) return false;
    }
    return true;
  }

  std::array<std::vector<size_t>, 256> lengths_;  // distinct content lengths by first byte, longest first
  StrMap by_content_;                             // content -> index into the token list
  bool any_ = false;
};

// ------------------------------------------------------------ pre-tokenizers

struct PreStage {
  enum class Kind { Split, ByteLevel } kind = Kind::Split;
  std::shared_ptr<const Regex> regex;  // null: ByteLevel without regex
  bool isolated = true;                // Split behavior: Isolated (true) or Removed
  bool add_prefix_space = false;       // ByteLevel
};

}  // namespace

// ------------------------------------------------------------------ the state

struct Tokenizer::Impl {
  std::string path;
  std::vector<unicode::NormalForm> normalizers;
  std::vector<PreStage> stages;

  StrMap spelling_to_id;  // tokenizer.json spelling (model vocab) and added-token contents
  StrMap bytes_to_id;     // model vocab by raw bytes (for ignore_merges)
  std::array<int32_t, 256> byte_id{};
  PairMap merges;
  bool ignore_merges = false;

  std::vector<std::string> id_spelling, id_bytes;
  std::vector<uint8_t> id_flags;  // kExists | kSpecial
  static constexpr uint8_t kExists = 1, kSpecial = 2;

  std::vector<AddedToken> added;
  AddedMatcher raw_matcher, norm_matcher;

  std::vector<int32_t> prefix, suffix;

  std::optional<int32_t> bos;
  std::vector<int32_t> eos;
  std::optional<bool> add_bos;
  std::string chat_template;

  const std::string* bytes_of(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= id_flags.size() || !(id_flags[id] & kExists)) return nullptr;
    return &id_bytes[id];
  }
};

namespace {

using Impl = Tokenizer::Impl;

// -------------------------------------------------------------- load helpers

std::string type_of(const json& j, const std::string& path, const std::string& field) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail("{}: {} has no string \"type\"", path, field);
  return j["type"].get<std::string>();
}

bool get_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) fail("field \"{}\" is not a boolean", key);
  return it->get<bool>();
}

void add_normalizer(Impl& m, const json& j, const std::string& field) {
  if (j.is_null()) return;
  const std::string t = type_of(j, m.path, field);
  if (t == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array())
      fail("{}: {}.normalizers is missing or not an array", m.path, field);
    for (size_t i = 0; i < j["normalizers"].size(); ++i)
      add_normalizer(m, j["normalizers"][i], fmt::format("{}.normalizers[{}]", field, i));
  } else if (t == "NFC") {
    m.normalizers.push_back(unicode::NormalForm::NFC);
  } else if (t == "NFD") {
    m.normalizers.push_back(unicode::NormalForm::NFD);
  } else if (t == "NFKC") {
    m.normalizers.push_back(unicode::NormalForm::NFKC);
  } else if (t == "NFKD") {
    m.normalizers.push_back(unicode::NormalForm::NFKD);
  } else {
    fail("{}: unsupported {} type \"{}\" (supported: NFC, NFD, NFKC, NFKD, Sequence)", m.path, field, t);
  }
}

void add_pre_tokenizer(Impl& m, const json& j, const std::string& field) {
  if (j.is_null()) return;
  const std::string t = type_of(j, m.path, field);
  if (t == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      fail("{}: {}.pretokenizers is missing or not an array", m.path, field);
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i)
      add_pre_tokenizer(m, j["pretokenizers"][i], fmt::format("{}.pretokenizers[{}]", field, i));
  } else if (t == "Split") {
    PreStage s;
    s.kind = PreStage::Kind::Split;
    const std::string where = m.path + ": " + field;
    if (!j.contains("pattern") || !j["pattern"].is_object()) fail("{}.pattern is missing", where);
    const json& p = j["pattern"];
    if (p.contains("Regex") && p["Regex"].is_string()) {
      s.regex = std::make_shared<Regex>(p["Regex"].get<std::string>(), false, where + ".pattern.Regex");
    } else if (p.contains("String") && p["String"].is_string()) {
      s.regex = std::make_shared<Regex>(p["String"].get<std::string>(), true, where + ".pattern.String");
    } else {
      fail("{}.pattern has neither a \"Regex\" nor a \"String\"", where);
    }
    const std::string behavior = j.value("behavior", std::string("Isolated"));
    if (behavior == "Isolated") s.isolated = true;
    else if (behavior == "Removed") s.isolated = false;
    else fail("{}: unsupported Split behavior \"{}\" (supported: Isolated, Removed)", where, behavior);
    if (get_bool(j, "invert", false)) fail("{}: Split with invert=true is not supported", where);
    m.stages.push_back(std::move(s));
  } else if (t == "ByteLevel") {
    PreStage s;
    s.kind = PreStage::Kind::ByteLevel;
    s.add_prefix_space = get_bool(j, "add_prefix_space", true);
    if (get_bool(j, "use_regex", true)) s.regex = std::make_shared<Regex>(kGpt2Regex, false, m.path + ": " + field);
    m.stages.push_back(std::move(s));
  } else {
    fail("{}: unsupported {} type \"{}\" (supported: Split, ByteLevel, Sequence)", m.path, field, t);
  }
}

void add_post_processor(Impl& m, const json& j, const std::string& field) {
  if (j.is_null()) return;
  const std::string t = type_of(j, m.path, field);
  if (t == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array())
      fail("{}: {}.processors is missing or not an array", m.path, field);
    for (size_t i = 0; i < j["processors"].size(); ++i)
      add_post_processor(m, j["processors"][i], fmt::format("{}.processors[{}]", field, i));
  } else if (t == "ByteLevel") {
    // Only adjusts offsets; ids are unchanged.
  } else if (t == "TemplateProcessing") {
    if (!j.contains("single") || !j["single"].is_array()) fail("{}: {}.single is missing", m.path, field);
    const json specials = j.value("special_tokens", json::object());
    bool seen_seq = false;
    for (const json& item : j["single"]) {
      if (item.contains("Sequence")) {
        const std::string id = item["Sequence"].value("id", std::string());
        if (id != "A") fail("{}: {}.single uses sequence \"{}\" (only \"A\" is valid)", m.path, field, id);
        seen_seq = true;
      } else if (item.contains("SpecialToken")) {
        const std::string name = item["SpecialToken"].value("id", std::string());
        if (!specials.contains(name) || !specials[name].contains("ids"))
          fail("{}: {}: special token \"{}\" is not in special_tokens", m.path, field, name);
        for (const json& id : specials[name]["ids"]) (seen_seq ? m.suffix : m.prefix).push_back(id.get<int32_t>());
      } else {
        fail("{}: {}.single has an item that is neither Sequence nor SpecialToken", m.path, field);
      }
    }
    if (!seen_seq) fail("{}: {}.single has no Sequence item", m.path, field);
  } else {
    fail("{}: unsupported {} type \"{}\" (supported: TemplateProcessing, ByteLevel, Sequence)", m.path, field, t);
  }
}

void check_decoder(const Impl& m, const json& j) {
  if (j.is_null()) fail("{}: decoder is null (a byte-level BPE needs the ByteLevel decoder)", m.path);
  const std::string t = type_of(j, m.path, "decoder");
  if (t != "ByteLevel") fail("{}: unsupported decoder type \"{}\" (supported: ByteLevel)", m.path, t);
}

// Raw bytes of a ByteLevel spelling, or nullopt if a character is outside the map.
std::optional<std::string> spelling_to_bytes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    const size_t n = unicode::decode_utf8(s.substr(i), &cp);
    if (n == 0) return std::nullopt;
    const int b = unicode::codepoint_to_byte(cp);
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
    i += n;
  }
  return out;
}

void set_id(Impl& m, int32_t id, const std::string& spelling) {
  if (static_cast<size_t>(id) >= m.id_flags.size()) {
    m.id_flags.resize(id + 1, 0);
    m.id_spelling.resize(id + 1);
    m.id_bytes.resize(id + 1);
  }
  m.id_flags[id] |= Impl::kExists;
  m.id_spelling[id] = spelling;
  // ByteLevel decoder: map each character back to its byte; a token with a
  // character outside the map is emitted as its own UTF-8 (as HF does).
  auto b = spelling_to_bytes(spelling);
  m.id_bytes[id] = b ? std::move(*b) : spelling;
}

constexpr int32_t kMaxId = 1 << 24;

void load_model(Impl& m, const json& model) {
  const std::string t = type_of(model, m.path, "model");
  if (t != "BPE") fail("{}: unsupported model type \"{}\" (supported: BPE)", m.path, t);
  auto nonempty_string = [&](const char* k) {
    auto it = model.find(k);
    return it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty());
  };
  if (nonempty_string("dropout") && model["dropout"].get<double>() != 0.0)
    fail("{}: model.dropout is not supported", m.path);
  if (nonempty_string("continuing_subword_prefix")) fail("{}: model.continuing_subword_prefix is not supported", m.path);
  if (nonempty_string("end_of_word_suffix")) fail("{}: model.end_of_word_suffix is not supported", m.path);
  if (get_bool(model, "byte_fallback", false)) fail("{}: model.byte_fallback is not supported", m.path);
  m.ignore_merges = get_bool(model, "ignore_merges", false);

  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("{}: model.vocab is missing or not an object", m.path);
  const json& vocab = model["vocab"];
  m.spelling_to_id.reserve(vocab.size() + 1024);
  m.bytes_to_id.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) fail("{}: model.vocab[\"{}\"] is not an integer", m.path, it.key());
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= kMaxId) fail("{}: model.vocab[\"{}\"] = {} is out of range", m.path, it.key(), id);
    if (static_cast<size_t>(id) < m.id_flags.size() && (m.id_flags[id] & Impl::kExists))
      fail("{}: model.vocab id {} is used by both \"{}\" and \"{}\"", m.path, id, m.id_spelling[id], it.key());
    set_id(m, static_cast<int32_t>(id), it.key());
    m.spelling_to_id.emplace(it.key(), static_cast<int32_t>(id));
    if (auto b = spelling_to_bytes(it.key())) m.bytes_to_id.emplace(std::move(*b), static_cast<int32_t>(id));
  }
  const auto& b2c = unicode::byte_to_codepoint();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    unicode::append_utf8(s, b2c[b]);
    auto it = m.spelling_to_id.find(s);
    if (it == m.spelling_to_id.end())
      fail("{}: model.vocab lacks the ByteLevel token \"{}\" for byte 0x{:02X}", m.path, s, b);
    m.byte_id[b] = it->second;
  }

  if (!model.contains("merges") || !model["merges"].is_array()) fail("{}: model.merges is missing or not an array", m.path);
  const json& merges = model["merges"];
  m.merges.reserve(merges.size());
  std::string a, b;
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& e = merges[r];
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail("{}: model.merges[{}] = \"{}\" is not two tokens separated by one space", m.path, r, s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      fail("{}: model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]", m.path, r);
    }
    auto ia = m.spelling_to_id.find(a), ib = m.spelling_to_id.find(b), im = m.spelling_to_id.find(a + b);
    if (ia == m.spelling_to_id.end() || ib == m.spelling_to_id.end() || im == m.spelling_to_id.end())
      fail("{}: model.merges[{}] (\"{}\" + \"{}\") uses a token missing from model.vocab", m.path, r, a, b);
    m.merges.insert(ia->second, ib->second, static_cast<int32_t>(r), im->second);  // first (lowest rank) wins
  }
}

void load_added(Impl& m, const json& j) {
  if (j.is_null()) return;
  if (!j.is_array()) fail("{}: added_tokens is not an array", m.path);
  for (size_t i = 0; i < j.size(); ++i) {
    const json& e = j[i];
    if (!e.is_object() || !e.contains("id") || !e["id"].is_number_integer() || !e.contains("content") ||
        !e["content"].is_string())
      fail("{}: added_tokens[{}] needs an integer \"id\" and a string \"content\"", m.path, i);
    AddedToken t;
    const int64_t id = e["id"].get<int64_t>();
    if (id < 0 || id >= kMaxId) fail("{}: added_tokens[{}].id = {} is out of range", m.path, i, id);
    t.id = static_cast<int32_t>(id);
    t.content = e["content"].get<std::string>();
    if (unicode::find_invalid_utf8(t.content) != t.content.size())
      fail("{}: added_tokens[{}].content is not valid UTF-8", m.path, i);
    t.single_word = get_bool(e, "single_word", false);
    t.lstrip = get_bool(e, "lstrip", false);
    t.rstrip = get_bool(e, "rstrip", false);
    t.normalized = get_bool(e, "normalized", false);
    t.special = get_bool(e, "special", false);
    set_id(m, t.id, t.content);
    if (t.special) m.id_flags[t.id] |= Impl::kSpecial;
    m.spelling_to_id[t.content] = t.id;
    m.added.push_back(std::move(t));
  }
  m.raw_matcher.build(m.added, false, {});
  m.norm_matcher.build(m.added, true, m.normalizers);
}

// A token name in tokenizer_config.json: a string, {"content": ...}, or null.
std::optional<std::string> config_token_name(const json& cfg, const char* key, const std::string& path) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  fail("{}: \"{}\" is neither a string nor an object with \"content\"", path, key);
}

void load_config(Impl& m, const std::string& path) {
  const json cfg = parse_json_file(path);
  if (!cfg.is_object()) fail("{}: not a JSON object", path);
  auto resolve = [&](const char* key) -> std::optional<int32_t> {
    auto name = config_token_name(cfg, key, path);
    if (!name) return std::nullopt;
    auto it = m.spelling_to_id.find(*name);
    if (it == m.spelling_to_id.end()) fail("{}: {} \"{}\" is not a token of {}", path, key, *name, m.path);
    return it->second;
  };
  m.bos = resolve("bos_token");
  if (auto e = resolve("eos_token")) m.eos.push_back(*e);
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) m.add_bos = cfg["add_bos_token"].get<bool>();
  if (cfg.contains("chat_template")) {
    const json& ct = cfg["chat_template"];
    if (ct.is_string()) {
      m.chat_template = ct.get<std::string>();
    } else if (ct.is_array()) {
      // [{"name": ..., "template": ...}]: the "default" one, else the first.
      for (const json& e : ct) {
        if (!e.is_object() || !e.contains("template") || !e["template"].is_string()) continue;
        if (m.chat_template.empty() || e.value("name", std::string()) == "default")
          m.chat_template = e["template"].get<std::string>();
      }
    } else if (!ct.is_null()) {
      fail("{}: chat_template is neither a string nor a list of templates", path);
    }
  }
}

// ------------------------------------------------------------------ encoding

// Per-call state: scratch buffers, the pre-token cache and the output.
class Encoder {
 public:
  Encoder(const Impl& m, std::vector<int32_t>& out) : m_(m), out_(out), match_data_(m.stages.size()) {
    for (size_t i = 0; i < m.stages.size(); ++i)
      if (m.stages[i].regex)
        match_data_[i].reset(pcre2_match_data_create_from_pattern(m.stages[i].regex->code(), nullptr));
  }

  void segment(std::string_view seg) {
    if (!m_.normalizers.empty()) {
      std::string s(seg);
      for (auto f : m_.normalizers) s = unicode::normalize(s, f);
      arena_.push_back(std::move(s));
      seg = arena_.back();
    }
    if (m_.norm_matcher.empty()) {
      stage(0, seg);
    } else {
      m_.norm_matcher.split(
          seg, m_.added, [&](std::string_view t) { stage(0, t); },
          [&](int32_t i) { out_.push_back(m_.added[i].id); });
    }
  }

 private:
  void stage(size_t k, std::string_view piece) {
    if (k == m_.stages.size()) {
      bpe(piece);
      return;
    }
    const PreStage& s = m_.stages[k];
    if (s.kind == PreStage::Kind::ByteLevel && s.add_prefix_space && (piece.empty() || piece[0] != ' ')) {
      arena_.push_back(" " + std::string(piece));
      piece = arena_.back();
    }
    if (!s.regex) {
      stage(k + 1, piece);
      return;
    }
    pcre2_match_data* md = match_data_[k].get();
    size_t pos = 0, last = 0, ms = 0, me = 0;
    while (pos <= piece.size() && s.regex->find(piece, pos, md, &ms, &me)) {
      if (me == ms) {  // empty match: nothing to isolate; step one character
        size_t step = 1;
        while (ms + step < piece.size() && (static_cast<uint8_t>(piece[ms + step]) & 0xC0) == 0x80) ++step;
        pos = ms + step;
        continue;
      }
      if (ms > last) stage(k + 1, piece.substr(last, ms - last));
      if (s.isolated) stage(k + 1, piece.substr(ms, me - ms));
      last = pos = me;
    }
    if (last < piece.size()) stage(k + 1, piece.substr(last));
  }

  void bpe(std::string_view w) {
    if (w.empty()) return;
    const bool cacheable = w.size() <= kMaxCachedLen;
    if (cacheable) {
      auto it = cache_.find(w);
      if (it != cache_.end()) {
        const auto [off, len] = it->second;
        for (uint32_t i = 0; i < len; ++i) {
          const int32_t id = out_[off + i];  // copy first: push_back may reallocate
          out_.push_back(id);
        }
        return;
      }
    }
    const size_t start = out_.size();
    if (w.size() == 1) {
      out_.push_back(m_.byte_id[static_cast<uint8_t>(w[0])]);
    } else if (auto it = m_.ignore_merges ? m_.bytes_to_id.find(w) : m_.bytes_to_id.end();
               it != m_.bytes_to_id.end()) {
      out_.push_back(it->second);  // ignore_merges: a piece that is a token maps directly
    } else {
      merge(w);
    }
    if (cacheable)
      cache_.emplace(w, std::pair<uint32_t, uint32_t>(static_cast<uint32_t>(start), static_cast<uint32_t>(out_.size() - start)));
  }

  struct Cand {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };

  void push_pair(int32_t a, int32_t b) {
    const PairMap::Entry* e = m_.merges.find(id_[a], id_[b]);
    if (!e) return;
    heap_.push_back(Cand{e->rank, a, id_[a], id_[b], e->id});
    std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
  }

  // Merge the pieces' bytes: always the applicable merge of lowest rank, the
  // leftmost one among equal ranks (the order HF's BPE uses).
  void merge(std::string_view w) {
    const int32_t n = static_cast<int32_t>(w.size());
    id_.resize(n);
    prev_.resize(n);
    next_.resize(n);
    for (int32_t i = 0; i < n; ++i) {
      id_[i] = m_.byte_id[static_cast<uint8_t>(w[i])];
      prev_[i] = i - 1;
      next_[i] = i + 1 < n ? i + 1 : -1;
    }
    heap_.clear();
    for (int32_t i = 0; i + 1 < n; ++i) push_pair(i, i + 1);
    while (!heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
      const Cand c = heap_.back();
      heap_.pop_back();
      // Stale entries: a symbol changes id exactly when its byte span changes.
      if (id_[c.pos] != c.left) continue;
      const int32_t r = next_[c.pos];
      if (r < 0 || id_[r] != c.right) continue;
      id_[c.pos] = c.merged;
      id_[r] = -1;
      next_[c.pos] = next_[r];
      if (next_[r] >= 0) prev_[next_[r]] = c.pos;
      if (prev_[c.pos] >= 0) push_pair(prev_[c.pos], c.pos);
      if (next_[c.pos] >= 0) push_pair(c.pos, next_[c.pos]);
    }
    for (int32_t i = 0; i >= 0; i = next_[i]) out_.push_back(id_[i]);
  }

  static constexpr size_t kMaxCachedLen = 64;

  const Impl& m_;
  std::vector<int32_t>& out_;
  std::vector<std::unique_ptr<pcre2_match_data, MatchDataDeleter>> match_data_;
  std::deque<std::string> arena_;  // normalized / prefixed copies (stable addresses for the cache keys)
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache_;  // piece -> (offset, count) in out_
  std::vector<int32_t> id_, prev_, next_;
  std::vector<Cand> heap_;
};

// Append bytes to out as valid UTF-8, holding back an incomplete trailing
// sequence in `pending` (pending holds the not yet emitted bytes on entry).
void drain_utf8(std::string& pending, std::string& out, bool final) {
  size_t i = 0;
  while (i < pending.size()) {
    size_t len = 0;
    const auto h = unicode::classify_utf8_head(std::string_view(pending).substr(i), &len);
    if (h == unicode::Utf8Head::Complete) {
      out.append(pending, i, len);
    } else if (h == unicode::Utf8Head::Invalid || final) {
      out.append("\xEF\xBF\xBD");
    } else {
      break;  // incomplete: wait for more bytes
    }
    i += len;
  }
  pending.erase(0, i);
}

}  // namespace

// ------------------------------------------------------------------ public API

Tokenizer Tokenizer::load(const std::string& path_or_dir) {
  auto m = std::make_shared<Impl>();
  std::error_code ec;
  fs::path p(path_or_dir);
  if (fs::is_directory(p, ec)) p /= "tokenizer.json";
  if (!fs::is_regular_file(p, ec)) fail("tokenizer file not found: {}", p.string());
  m->path = p.string();

  const json j = parse_json_file(m->path);
  if (!j.is_object()) fail("{}: not a JSON object", m->path);
  if (!j.contains("model")) fail("{}: no \"model\" section", m->path);
  try {
    load_model(*m, j["model"]);
    add_normalizer(*m, j.value("normalizer", json()), "normalizer");
    add_pre_tokenizer(*m, j.value("pre_tokenizer", json()), "pre_tokenizer");
    load_added(*m, j.value("added_tokens", json()));
    add_post_processor(*m, j.value("post_processor", json()), "post_processor");
    check_decoder(*m, j.value("decoder", json()));
  } catch (const json::exception& e) {
    fail("{}: unexpected JSON structure: {}", m->path, e.what());
  }
  if (m->stages.empty()) fail("{}: no pre_tokenizer (a byte-level BPE needs at least ByteLevel)", m->path);
  bool has_byte_level = false;
  for (const auto& s : m->stages) has_byte_level |= s.kind == PreStage::Kind::ByteLevel;
  if (!has_byte_level) fail("{}: pre_tokenizer has no ByteLevel step; only byte-level BPE is supported", m->path);
  for (int32_t id : m->prefix)
    if (!m->bytes_of(id)) fail("{}: post_processor adds id {} which no token has", m->path, id);
  for (int32_t id : m->suffix)
    if (!m->bytes_of(id)) fail("{}: post_processor adds id {} which no token has", m->path, id);

  const fs::path cfg = p.parent_path() / "tokenizer_config.json";
  if (fs::is_regular_file(cfg, ec)) {
    try {
      load_config(*m, cfg.string());
    } catch (const json::exception& e) {
      fail("{}: unexpected JSON structure: {}", cfg.string(), e.what());
    }
  }
  return Tokenizer(std::move(m));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  const Impl& m = *impl_;
  const size_t bad = unicode::find_invalid_utf8(text);
  if (bad != text.size()) fail("Tokenizer::encode: input is not valid UTF-8 (byte offset {})", bad);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special) out.insert(out.end(), m.prefix.begin(), m.prefix.end());
  Encoder enc(m, out);
  if (m.raw_matcher.empty()) {
    enc.segment(text);
  } else {
    m.raw_matcher.split(
        text, m.added, [&](std::string_view t) { enc.segment(t); }, [&](int32_t i) { out.push_back(m.added[i].id); });
  }
  if (add_special) out.insert(out.end(), m.suffix.begin(), m.suffix.end());
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const Impl& m = *impl_;
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0) fail("Tokenizer::decode: negative token id {}", id);
    const std::string* b = m.bytes_of(id);
    if (!b) continue;  // unknown id (e.g. the padded tail of a model's embedding): no text, as in HF
    if (skip_special && (m.id_flags[id] & Impl::kSpecial)) continue;
    bytes += *b;
  }
  std::string out;
  out.reserve(bytes.size());
  drain_utf8(bytes, out, /*final=*/true);
  return out;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_flags.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view tok) const {
  auto it = impl_->spelling_to_id.find(tok);
  if (it == impl_->spelling_to_id.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("Tokenizer::id_to_token: id {} is outside [0, {})", id, vocab_size());
  return impl_->id_spelling[id];
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("Tokenizer::token_bytes: id {} is outside [0, {})", id, vocab_size());
  return impl_->id_bytes[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && (impl_->id_flags[id] & Impl::kSpecial);
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::vector<int32_t> Tokenizer::eos_ids() const { return impl_->eos; }
std::optional<bool> Tokenizer::add_bos_token() const { return impl_->add_bos; }
const std::vector<int32_t>& Tokenizer::special_prefix() const { return impl_->prefix; }
const std::vector<int32_t>& Tokenizer::special_suffix() const { return impl_->suffix; }
const std::string& Tokenizer::chat_template_source() const { return impl_->chat_template; }
const std::string& Tokenizer::path() const { return impl_->path; }

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special)
    : impl_(tok.impl_), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  if (id < 0) fail("StreamDecoder::push: negative token id {}", id);
  const std::string* b = impl_->bytes_of(id);
  if (!b || (skip_special_ && (impl_->id_flags[id] & Tokenizer::Impl::kSpecial))) return {};
  pending_ += *b;
  std::string out;
  drain_utf8(pending_, out, /*final=*/false);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  drain_utf8(pending_, out, /*final=*/true);
  return out;
}

}  // namespace lq
