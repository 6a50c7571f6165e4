// io/unicode.h: small UTF-8 and Unicode helpers for the tokenizer and chat templates.
//
// What: strict UTF-8 validation/decoding (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF), a lossy UTF-8 repair that follows the "maximal subpart"
// rule used by Rust's String::from_utf8_lossy and Python's errors='replace' (each
// maximal ill-formed subsequence becomes one U+FFFD), the GPT-2 "ByteLevel"
// byte <-> code point map, Unicode normalization through utf8proc, and Python's
// str.isspace() predicate (needed for Jinja's |trim).
//
// Why here: these are shared by io/tokenizer.cc and io/chat_template.cc and are
// testable on their own.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lq::unicode {

// Length of the well-formed UTF-8 sequence starting at s[0], or 0 if s does not
// start with one (ill-formed or truncated). On success *cp receives the code point.
size_t decode_utf8(std::string_view s, char32_t* cp);

// Byte offset of the first ill-formed UTF-8 byte in s, or s.size() if s is valid.
size_t find_invalid_utf8(std::string_view s);

// Append the UTF-8 encoding of cp (must be a Unicode scalar value).
void append_utf8(std::string& out, char32_t cp);

// Result of classifying the head of a byte buffer for streaming UTF-8 output.
enum class Utf8Head {
  Complete,    // a well-formed sequence of `len` bytes
  Incomplete,  // a proper prefix of a well-formed sequence: wait for more bytes
  Invalid,     // ill-formed: the maximal subpart has `len` (>= 1) bytes
};
// Classify the bytes at the start of s (s non-empty); *len as described above.
Utf8Head classify_utf8_head(std::string_view s, size_t* len);

// Append `in` to `out`, replacing each maximal ill-formed subsequence by U+FFFD
// (also a truncated sequence at the very end).
void append_utf8_lossy(std::string& out, std::string_view in);

// GPT-2 ByteLevel map: each byte 0..255 is represented by one printable code
// point (printable Latin-1 bytes by themselves, the others by U+0100 + n).
const std::array<char32_t, 256>& byte_to_codepoint();
// Inverse of byte_to_codepoint: the byte for cp, or -1 if cp is not in the map.
int codepoint_to_byte(char32_t cp);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
// Unicode normalization of valid UTF-8 text; throws lq::Error on invalid UTF-8.
// NFC skips utf8proc for text it provably leaves unchanged (see unicode.cc);
// the result always equals normalize_full.
std::string normalize(std::string_view s, NormalForm form);
// Reference: the whole text through utf8proc_map.
std::string normalize_full(std::string_view s, NormalForm form);

// Python's str.isspace() for one code point: general category Zs, or bidi class
// WS, B or S. (Jinja's |trim is Python's str.strip().)
bool is_python_space(char32_t cp);
// Letter, mark, number or connector punctuation (Unicode \w).
bool is_word_char(char32_t cp);

// Python str.strip() on UTF-8 text (s must be valid UTF-8).
std::string_view python_strip(std::string_view s);

}  // namespace lq::unicode
