// io/unicode.cc: see unicode.h.
#include "io/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "core/error.h"

namespace lq::unicode {

namespace {

// Expected length of the sequence led by byte b and the allowed range of its
// second byte (Unicode Table 3-7). len 0: b cannot start a sequence.
struct Lead {
  uint8_t len, lo, hi;
};

inline Lead lead_info(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

}  // namespace

Utf8Head classify_utf8_head(std::string_view s, size_t* len) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const Lead l = lead_info(p[0]);
  if (l.len == 0) {
    *len = 1;
    return Utf8Head::Invalid;
  }
  for (size_t i = 1; i < l.len; ++i) {
    if (i >= s.size()) {
      *len = i;
      return Utf8Head::Incomplete;
    }
    const uint8_t lo = i == 1 ? l.lo : 0x80, hi = i == 1 ? l.hi : 0xBF;
    if (p[i] < lo || p[i] > hi) {
      *len = i;
      return Utf8Head::Invalid;
    }
  }
  *len = l.len;
  return Utf8Head::Complete;
}

size_t decode_utf8(std::string_view s, char32_t* cp) {
  if (s.empty()) return 0;
  size_t len = 0;
  if (classify_utf8_head(s, &len) != Utf8Head::Complete) return 0;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  char32_t c;
  switch (len) {
    case 1: c = p[0]; break;
    case 2: c = (char32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F); break;
    case 3: c = (char32_t(p[0] & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F); break;
    default:
      c = (char32_t(p[0] & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) | (char32_t(p[2] & 0x3F) << 6) |
          (p[3] & 0x3F);
  }
  *cp = c;
  return len;
}

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    if (classify_utf8_head(s.substr(i), &len) != Utf8Head::Complete) return i;
    i += len;
  }
  return n;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

void append_utf8_lossy(std::string& out, std::string_view in) {
  size_t i = 0;
  while (i < in.size()) {
    size_t len = 0;
    const Utf8Head h = classify_utf8_head(in.substr(i), &len);
    if (h == Utf8Head::Complete) {
      out.append(in.data() + i, len);
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD; an Incomplete head here is truncated input
    }
    i += len;
  }
}

const std::array<char32_t, 256>& byte_to_codepoint() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? char32_t(b) : next++;
    }
    return t;
  }();
  return table;
}

int codepoint_to_byte(char32_t cp) {
  // The map's image is U+0021..U+00FF minus a few, plus U+0100..U+0143.
  static const std::array<int16_t, 0x144> inv = [] {
    std::array<int16_t, 0x144> t{};
    t.fill(-1);
    const auto& fwd = byte_to_codepoint();
    for (int b = 0; b < 256; ++b) t[fwd[b]] = static_cast<int16_t>(b);
    return t;
  }();
  return cp < inv.size() ? inv[cp] : -1;
}

std::string normalize_full(std::string_view s, NormalForm form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::NFC: options |= UTF8PROC_COMPOSE; break;
    case NormalForm::NFD: options |= UTF8PROC_DECOMPOSE; break;
    case NormalForm::NFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormalForm::NFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                   &out, static_cast<utf8proc_option_t>(options));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(out, &std::free);
  if (n < 0) fail("unicode normalization failed: {}", utf8proc_errmsg(n));
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

namespace {

// A code point that NFC leaves alone whatever surrounds it: a starter (ccc 0)
// with no canonical decomposition that takes part in no canonical composition
// (utf8proc's comb_index), and not a Hangul jamo/syllable (composed algorithmically).
bool nfc_inert(char32_t cp) {
  if ((cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0xAC00 && cp <= 0xD7AF)) return false;
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
  const bool canonical_decomp = p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0;
  return p->combining_class == 0 && !canonical_decomp && p->comb_index == UINT16_MAX;
}

}  // namespace

std::string normalize(std::string_view s, NormalForm form) {
  if (form != NormalForm::NFC) {
    bool ascii = true;
    for (char c : s) ascii &= static_cast<uint8_t>(c) < 0x80;
    return ascii ? std::string(s) : normalize_full(s, form);
  }
  // NFC fast path. The position before an ASCII character is a normalization
  // boundary (ASCII characters are starters that never decompose and are never
  // the second part of a composition), so NFC(text) is the concatenation of the
  // NFC of the segments "ASCII char + following non-ASCII run". A segment whose
  // non-ASCII characters are all NFC-inert is unchanged and copied; the rest go
  // through utf8proc. English or CJK text then costs one property lookup per
  // non-ASCII character. normalize_full is the reference (see unicode tests).
  std::string out;
  size_t copied = 0;  // s[copied, i) is pending verbatim output
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    size_t j = i + 1;
    while (j < n && static_cast<uint8_t>(s[j]) >= 0x80) ++j;
    bool inert = true;
    for (size_t k = i; k < j && inert;) {
      if (static_cast<uint8_t>(s[k]) < 0x80) {
        ++k;
        continue;
      }
      char32_t cp;
      const size_t len = decode_utf8(s.substr(k, j - k), &cp);
      if (len == 0) fail("unicode normalization: invalid UTF-8 at byte offset {}", k);
      inert = nfc_inert(cp);
      k += len;
    }
    if (!inert) {
      if (out.empty()) out.reserve(s.size() + 16);
      out.append(s.data() + copied, i - copied);
      out += normalize_full(s.substr(i, j - i), NormalForm::NFC);
      copied = j;
    }
    i = j;
  }
  if (copied == 0) return std::string(s);
  out.append(s.data() + copied, n - copied);
  return out;
}

bool is_python_space(char32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
  return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
         p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

bool is_word_char(char32_t cp) {
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

std::string_view python_strip(std::string_view s) {
  // Leading.
  size_t b = 0;
  while (b < s.size()) {
    char32_t cp;
    const size_t n = decode_utf8(s.substr(b), &cp);
    if (n == 0 || !is_python_space(cp)) break;
    b += n;
  }
  // Trailing: walk back to the start of each code point.
  size_t e = s.size();
  while (e > b) {
    size_t start = e - 1;
    while (start > b && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    char32_t cp;
    const size_t n = decode_utf8(s.substr(start, e - start), &cp);
    if (n != e - start || !is_python_space(cp)) break;
    e = start;
  }
  return s.substr(b, e - b);
}

}  // namespace lq::unicode
