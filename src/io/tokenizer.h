// io/tokenizer.h: byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json.
//
// Supports exactly the pipeline used by Llama-3/3.1 and Qwen2/2.5 (and GPT-2 style
// files), and throws lq::Error naming the file and field for anything else:
//   normalizer:     null | NFC | NFD | NFKC | NFKD | Sequence of those (utf8proc)
//   pre_tokenizer:  Split{Regex|String, behavior "Isolated"|"Removed", invert false}
//                   | ByteLevel{add_prefix_space, use_regex} | Sequence of those
//                   (regexes compiled by PCRE2 with UTF+UCP, JIT when available)
//   model:          BPE over the ByteLevel alphabet, merges as "a b" or ["a","b"],
//                   ignore_merges, no dropout / subword prefix / suffix
//   post_processor: null | ByteLevel | TemplateProcessing | Sequence of those
//   decoder:        ByteLevel (bytes are joined, then decoded as lossy UTF-8)
//   added_tokens:   matched in the text before normalization (normalized=false) or
//                   after (normalized=true), leftmost-longest, with lstrip/rstrip/
//                   single_word.
//
// Numerics/exactness: encode() reproduces the Hugging Face `tokenizers` ids;
// decode(encode(x)) == x for any valid UTF-8 x that normalization leaves unchanged.
// Invalid UTF-8 input to encode() is an error (the reference libraries only take
// valid strings). decode() replaces ill-formed byte sequences (e.g. a generation
// cut inside a multi-byte character) by U+FFFD, one per maximal ill-formed
// subsequence, as Rust's from_utf8_lossy does.
//
// tokenizer_config.json (next to tokenizer.json) provides bos/eos token names,
// add_bos_token and the raw chat template string.
//
// Tokenizer is an immutable value with shared state: copies and moves are cheap
// and every const method is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

class Tokenizer {
 public:
  // path_or_dir: a directory holding tokenizer.json (and optionally
  // tokenizer_config.json), or the path of a tokenizer.json file.
  static Tokenizer load(const std::string& path_or_dir);

  // Token ids for text. add_special adds what the post_processor's single
  // template adds (Llama-3: <|begin_of_text|> in front; Qwen2.5: nothing).
  // Special-token text inside `text` (e.g. "<|eot_id|>") is recognised as that token.
  std::vector<int32_t> encode(std::string_view text, bool add_special = false) const;

  // Text of ids; skip_special drops added tokens marked special. Ids that no
  // token has (e.g. the padded tail of a model's embedding table) give no text,
  // as in Hugging Face; negative ids throw.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // Number of ids (model vocabulary and added tokens): max id + 1.
  int32_t vocab_size() const;
  // Id of a token given in its tokenizer.json spelling (ByteLevel form, e.g. "Ġthe"),
  // or an added token's content.
  std::optional<int32_t> token_to_id(std::string_view tok) const;
  // The tokenizer.json spelling of id ("" for an unused id); throws if out of range.
  std::string id_to_token(int32_t id) const;
  // The raw bytes id stands for when decoded (not UTF-8 checked).
  std::string token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;

  // From tokenizer_config.json (nullopt / empty when absent).
  std::optional<int32_t> bos_id() const;
  std::vector<int32_t> eos_ids() const;
  // tokenizer_config.json add_bos_token (nullopt when absent).
  std::optional<bool> add_bos_token() const;
  // Ids that encode(..., add_special=true) puts before / after the text.
  const std::vector<int32_t>& special_prefix() const;
  const std::vector<int32_t>& special_suffix() const;
  // Raw Jinja string from tokenizer_config.json, "" if none.
  const std::string& chat_template_source() const;
  // The tokenizer.json path this was loaded from.
  const std::string& path() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  friend class StreamDecoder;
};

// Incremental detokenizer for generation: push() returns the text that became
// complete (only whole UTF-8 characters; a character split across tokens is held
// back until its last byte arrives); flush() returns what is left (an unfinished
// character becomes U+FFFD). The concatenation of all push() results and flush()
// equals tok.decode(all ids, skip_special). Keeps a reference to tok's state.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true);
  std::string push(int32_t id);
  std::string flush();

 private:
  std::shared_ptr<const Tokenizer::Impl> impl_;
  bool skip_special_;
  std::string pending_;  // bytes of an incomplete UTF-8 sequence
};

}  // namespace lq
