// eval/scorers.cc: RULER / OneRuler / QA / NoCha scorers (see scorers.h for
// the exact rules and their Python sources).
#include "eval/scorers.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "core/error.h"

namespace lq::uni {

std::u32string decode(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t n = static_cast<utf8proc_ssize_t>(s.size()), i = 0;
  while (i < n) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t len = utf8proc_iterate(p + i, n - i, &cp);
    if (len <= 0 || cp < 0) {
      out.push_back(U'\uFFFD');
      i += 1;
    } else {
      out.push_back(static_cast<char32_t>(cp));
      i += len;
    }
  }
  return out;
}

std::string encode(char32_t c) {
  utf8proc_uint8_t buf[8];
  utf8proc_ssize_t len = utf8proc_encode_char(static_cast<utf8proc_int32_t>(c), buf);
  if (len <= 0) return "\xEF\xBF\xBD";
  return std::string(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
}

std::string encode(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) out += encode(c);
  return out;
}

std::string sanitize(const std::string& s) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t n = static_cast<utf8proc_ssize_t>(s.size()), i = 0;
  while (i < n) {  // fast path: valid input is returned as is
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t len = utf8proc_iterate(p + i, n - i, &cp);
    if (len <= 0 || cp < 0) return encode(decode(s));
    i += len;
  }
  return s;
}

std::string nfkc(const std::string& s) {
  std::string in = sanitize(s);
  // utf8proc_NFKC takes a NUL-terminated string; embedded NULs would cut it,
  // so map with explicit length via utf8proc_map.
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t len = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(in.data()),
                                      static_cast<utf8proc_ssize_t>(in.size()), &out,
                                      static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                                                                     UTF8PROC_COMPAT));
  LQ_CHECK(len >= 0 && out, "NFKC normalisation failed: {}", utf8proc_errmsg(len));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(out, &std::free);
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(len));
}

namespace {
bool is_cased(char32_t c) {
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}
bool is_case_ignorable(char32_t c) {
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  if (cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
      cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK)
    return true;
  // Word_Break MidLetter / MidNumLet / Single_Quote characters.
  switch (c) {
    case U'\'': case U'.': case U':': case U'\u00B7': case U'\u0387': case U'\u05F4':
    case U'\u2018': case U'\u2019': case U'\u2024': case U'\u2027': case U'\uFE13':
    case U'\uFE52': case U'\uFE55': case U'\uFF07': case U'\uFF0E': case U'\uFF1A':
      return true;
    default:
      return false;
  }
}
}  // namespace

std::string py_lower(const std::string& s) {
  std::u32string in = decode(s);
  std::u32string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char32_t c = in[i];
    if (c < 0x80) {
      out.push_back((c >= 'A' && c <= 'Z') ? c + 32 : c);
    } else if (c == 0x130) {  // SpecialCasing: LATIN CAPITAL I WITH DOT ABOVE
      out.push_back(U'i');
      out.push_back(U'\u0307');
    } else if (c == 0x3A3) {  // Final_Sigma context, as CPython's lower()
      bool before = false, after = false;
      for (size_t j = i; j-- > 0;) {
        if (is_case_ignorable(in[j])) continue;
        before = is_cased(in[j]);
        break;
      }
      for (size_t j = i + 1; j < in.size(); ++j) {
        if (is_case_ignorable(in[j])) continue;
        after = is_cased(in[j]);
        break;
      }
      out.push_back(before && !after ? U'\u03C2' : U'\u03C3');
    } else {
      out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  }
  return encode(out);
}

bool py_isspace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (c > 0x10FFFF) return false;
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(c));
  return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
         p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

std::string py_strip(const std::string& s) {
  std::u32string u = decode(s);
  size_t b = 0, e = u.size();
  while (b < e && py_isspace(u[b])) ++b;
  while (e > b && py_isspace(u[e - 1])) --e;
  return encode(u.substr(b, e - b));
}

bool is_decimal_digit(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  if (c > 0x10FFFF) return false;
  return utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_ND;
}

int decimal_value(char32_t c) {
  if (!is_decimal_digit(c)) return -1;
  if (c < 0x80) return static_cast<int>(c - '0');
  // Unicode encodes every Nd digit set as a contiguous run 0..9 (runs may be
  // adjacent, e.g. the mathematical digits), so the value is the distance to
  // the start of the maximal Nd run, modulo 10.
  char32_t start = c;
  while (start > 0 && is_decimal_digit(start - 1)) --start;
  return static_cast<int>((c - start) % 10);
}

bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (c > 0x10FFFF) return false;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

bool is_cjk_like(char32_t c) {
  return (c >= 0x2E80 && c <= 0x9FFF) ||   // CJK radicals, punctuation, kana, Han
         (c >= 0xAC00 && c <= 0xD7AF) ||   // Hangul syllables
         (c >= 0xF900 && c <= 0xFAFF) ||   // CJK compatibility ideographs
         (c >= 0xFF00 && c <= 0xFFEF) ||   // half/full-width forms
         (c >= 0x20000 && c <= 0x3FFFF);   // Han extensions
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

}  // namespace lq::uni

namespace lq {

// ---- RULER ------------------------------------------------------------------

std::string ruler_postprocess(const std::string& pred) {
  std::string s = uni::sanitize(pred);
  for (char& c : s)
    if (static_cast<unsigned char>(c) <= 0x1F) c = '\n';
  return uni::py_strip(s);
}

namespace {
double match_fraction(const std::vector<std::string>& gold, const std::string& pred, bool all) {
  LQ_CHECK(!gold.empty(), "RULER scorer: the gold list is empty (RULER divides by its length)");
  std::string p = uni::py_lower(ruler_postprocess(pred));
  size_t hits = 0;
  for (const auto& g : gold)
    if (p.find(uni::py_lower(uni::sanitize(g))) != std::string::npos) ++hits;
  if (all) return static_cast<double>(hits) / static_cast<double>(gold.size());
  return hits > 0 ? 1.0 : 0.0;
}
}  // namespace

double ruler_string_match_all(const std::vector<std::string>& gold, const std::string& pred) {
  return match_fraction(gold, pred, true);
}
double ruler_string_match_part(const std::vector<std::string>& gold, const std::string& pred) {
  return match_fraction(gold, pred, false);
}

// ---- OneRuler ---------------------------------------------------------------

namespace {
// evaluate.py's none_dict, verbatim data (the words a model may use for "none").
const std::map<std::string, std::vector<std::string>>& none_dict() {
  static const std::map<std::string, std::vector<std::string>> d = {
      {"en", {"none"}}, {"ko", {"없음"}}, {"pl", {"brak"}}, {"zh", {"无"}},
      {"vi", {"Không có"}}, {"ja", {"なし", "数字はありません"}}, {"ta", {"ஏதுமில்லை"}},
      {"hu", {"nincs"}}, {"fr", {"aucun"}}, {"no", {"ingen"}}, {"uk", {"немає", "Нема"}},
      {"ru", {"нет"}}, {"de", {"Keine vorhanden"}}, {"es", {"ninguno"}}, {"sv", {"inga"}},
      {"fi", {"ei mikään"}}, {"cs", {"žádné", "žádná"}}, {"sr", {"nema"}}, {"pt", {"nenhum"}},
      {"it", {"nessuno"}}, {"fa", {"هیچ کدام"}}, {"sw", {"hakuna"}}, {"nl", {"geen"}},
      {"st", {"ha ho letho"}}, {"hi", {"कोई नहीं"}}, {"da", {"ingen"}}};
  return d;
}

std::string inst_lang(const std::string& lang) {
  auto dash = lang.find('-');
  if (dash == std::string::npos) return lang;
  // Python: lang.split("-")[1]
  auto rest = lang.substr(dash + 1);
  return rest.substr(0, rest.find('-'));
}
}  // namespace

bool oneruler_has_language(const std::string& lang) { return none_dict().count(inst_lang(lang)) > 0; }

const std::vector<std::string>& oneruler_none_words(const std::string& lang) {
  auto it = none_dict().find(inst_lang(lang));
  LQ_CHECK(it != none_dict().end(),
           "OneRuler scorer: no none words for language '{}' (evaluate.py knows en, ko, pl, zh, vi, ja, ta, "
           "hu, fr, no, uk, ru, de, es, sv, fi, cs, sr, pt, it, fa, sw, nl, st, hi, da)",
           lang);
  return it->second;
}

std::string oneruler_clean_text(const std::string& s) {
  std::string t = uni::py_lower(uni::py_strip(s));
  t = uni::replace_all(t, "\u200c", "");
  return uni::replace_all(t, " ", "");
}

std::vector<std::string> find_digit_runs(const std::string& s) {
  std::u32string u = uni::decode(s);
  std::vector<std::string> out;
  size_t i = 0;
  while (i < u.size()) {
    if (!uni::is_decimal_digit(u[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < u.size() && uni::is_decimal_digit(u[j])) ++j;
    out.push_back(uni::encode(u.substr(i, j - i)));
    i = j;
  }
  return out;
}

std::optional<std::string> py_int_canonical(const std::string& s) {
  std::u32string u = uni::decode(s);
  size_t b = 0, e = u.size();
  while (b < e && uni::py_isspace(u[b])) ++b;
  while (e > b && uni::py_isspace(u[e - 1])) --e;
  bool neg = false;
  if (b < e && (u[b] == U'+' || u[b] == U'-')) {
    neg = u[b] == U'-';
    ++b;
  }
  if (b == e) return std::nullopt;
  std::string digits;
  bool prev_digit = false;
  for (size_t i = b; i < e; ++i) {
    if (u[i] == U'_') {  // single underscores between digits only
      if (!prev_digit || i + 1 >= e || !uni::is_decimal_digit(u[i + 1])) return std::nullopt;
      prev_digit = false;
      continue;
    }
    int v = uni::decimal_value(u[i]);
    if (v < 0) return std::nullopt;
    digits.push_back(static_cast<char>('0' + v));
    prev_digit = true;
  }
  size_t nz = digits.find_first_not_of('0');
  if (nz == std::string::npos) return std::string("0");
  return (neg ? "-" : "") + digits.substr(nz);
}

bool oneruler_compare_numbers(const std::string& lang, const std::vector<std::string>& gold,
                              const std::string& pred) {
  if (pred.empty()) return false;  // evaluate.py checks this before the none_dict lookup
  const auto& none_words = oneruler_none_words(lang);
  std::string p = uni::nfkc(pred);
  for (const auto& w : none_words)
    if (p.find(w) != std::string::npos || p.find(oneruler_clean_text(w)) != std::string::npos) return false;
  std::vector<std::string> nums;  // deduplicated, order-preserving, 2+ code points
  for (auto& run : find_digit_runs(p)) {
    if (uni::decode(run).size() <= 1) continue;
    if (std::find(nums.begin(), nums.end(), run) == nums.end()) nums.push_back(run);
  }
  if (nums.empty()) return false;
  std::vector<std::string> extracted, expected;
  for (const auto& n : nums) {
    auto v = py_int_canonical(n);
    if (!v) return false;
    extracted.push_back(*v);
  }
  for (const auto& g : gold) {
    auto v = py_int_canonical(g);
    if (!v) return false;
    expected.push_back(*v);
  }
  if (extracted.size() != expected.size()) return false;
  return std::set<std::string>(extracted.begin(), extracted.end()) ==
         std::set<std::string>(expected.begin(), expected.end());
}

namespace {
// Python re.sub(r'\b\d\b', '', s) on code points.
std::u32string remove_isolated_digits(const std::u32string& u) {
  std::u32string out;
  out.reserve(u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    if (uni::is_decimal_digit(u[i])) {
      // \d is also \w, so \b before it means the previous char is not \w (or
      // start), and \b after it means the next char is not \w (or end).
      bool left = i == 0 || !uni::is_word_char(u[i - 1]);
      bool right = i + 1 == u.size() || !uni::is_word_char(u[i + 1]);
      if (left && right) continue;
    }
    out.push_back(u[i]);
  }
  return out;
}
}  // namespace

bool oneruler_compare_none(const std::string& lang, const std::vector<std::string>& gold,
                           const std::string& pred) {
  const auto& none_words = oneruler_none_words(lang);
  std::string p = uni::encode(remove_isolated_digits(uni::decode(oneruler_clean_text(uni::nfkc(pred)))));
  for (const auto& w : none_words)
    if (p.find(oneruler_clean_text(w)) != std::string::npos) return true;
  return false;
}

bool oneruler_cwe_correct(const std::vector<std::string>& gold, const std::string& pred) {
  std::string p = uni::py_lower(uni::py_strip(uni::sanitize(pred)));
  for (const auto& g : gold)
    if (p.find(uni::py_lower(uni::py_strip(uni::sanitize(g)))) == std::string::npos) return false;
  return true;
}

// ---- QA ---------------------------------------------------------------------

std::string qa_normalize(const std::string& s) {
  std::string low = uni::py_lower(uni::sanitize(s));
  std::string nopunct;
  for (char c : low) {
    unsigned char uc = static_cast<unsigned char>(c);
    bool punct = uc < 0x80 && ((uc >= 33 && uc <= 47) || (uc >= 58 && uc <= 64) || (uc >= 91 && uc <= 96) ||
                               (uc >= 123 && uc <= 126));
    if (!punct) nopunct.push_back(c);
  }
  // \b(a|an|the)\b -> ' ': whole word-character runs equal to an article.
  std::u32string u = uni::decode(nopunct), out;
  for (size_t i = 0; i < u.size();) {
    if (!uni::is_word_char(u[i])) {
      out.push_back(u[i++]);
      continue;
    }
    size_t j = i;
    while (j < u.size() && uni::is_word_char(u[j])) ++j;
    std::u32string w = u.substr(i, j - i);
    if (w == U"a" || w == U"an" || w == U"the") out.push_back(U' ');
    else out += w;
    i = j;
  }
  // ' '.join(text.split())
  std::string res;
  std::u32string tok;
  auto flush = [&]() {
    if (tok.empty()) return;
    if (!res.empty()) res.push_back(' ');
    res += uni::encode(tok);
    tok.clear();
  };
  for (char32_t c : out) {
    if (uni::py_isspace(c)) flush();
    else tok.push_back(c);
  }
  flush();
  return res;
}

namespace {
std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}
double f1_one(const std::string& gold, const std::string& pred) {
  auto g = split_ws(qa_normalize(gold)), p = split_ws(qa_normalize(pred));
  if (g.empty() || p.empty()) return g == p ? 1.0 : 0.0;  // SQuAD v2 convention
  std::unordered_map<std::string, int> cg;
  for (auto& t : g) ++cg[t];
  int same = 0;
  for (auto& t : p) {
    auto it = cg.find(t);
    if (it != cg.end() && it->second > 0) {
      --it->second;
      ++same;
    }
  }
  if (same == 0) return 0.0;
  double prec = double(same) / double(p.size()), rec = double(same) / double(g.size());
  return 2.0 * prec * rec / (prec + rec);
}
}  // namespace

double qa_exact_match(const std::vector<std::string>& gold, const std::string& pred) {
  LQ_CHECK(!gold.empty(), "QA scorer: the gold answer list is empty");
  std::string p = qa_normalize(pred);
  for (const auto& g : gold)
    if (qa_normalize(g) == p) return 1.0;
  return 0.0;
}

double qa_f1(const std::vector<std::string>& gold, const std::string& pred) {
  LQ_CHECK(!gold.empty(), "QA scorer: the gold answer list is empty");
  double best = 0.0;
  for (const auto& g : gold) best = std::max(best, f1_one(g, pred));
  return best;
}

// ---- NoCha ------------------------------------------------------------------

namespace {
std::string ascii_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return s;
}
bool ascii_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
// Positions of standalone words "true"/"false" in a lower-cased text.
std::optional<bool> verdict_in(const std::string& low, bool last) {
  std::optional<bool> found;
  for (size_t i = 0; i < low.size(); ++i) {
    for (int v = 0; v < 2; ++v) {
      const char* w = v ? "true" : "false";
      size_t n = v ? 4 : 5;
      if (low.compare(i, n, w) != 0) continue;
      bool lb = i == 0 || !ascii_alnum(low[i - 1]);
      bool rb = i + n >= low.size() || !ascii_alnum(low[i + n]);
      if (lb && rb) {
        found = v == 1;
        if (!last) return found;
      }
    }
  }
  return found;
}
}  // namespace

std::optional<bool> nocha_parse_verdict(const std::string& pred) {
  std::string low = ascii_lower(pred);
  size_t open = low.rfind("<answer>");
  if (open != std::string::npos) {
    size_t b = open + 8;
    size_t close = low.find("</answer", b);
    auto v = verdict_in(low.substr(b, close == std::string::npos ? std::string::npos : close - b), false);
    if (v) return v;
  }
  return verdict_in(low, true);
}

NochaPairScore nocha_pair_accuracy(const std::vector<NochaClaimResult>& results) {
  std::map<std::pair<std::string, int64_t>, std::vector<const NochaClaimResult*>> groups;
  for (const auto& r : results) groups[{r.book_title, r.pair_index}].push_back(&r);
  NochaPairScore s;
  for (const auto& [key, claims] : groups) {
    bool all_right = true;
    for (const auto* c : claims) {
      bool ok = c->predicted && *c->predicted == c->gold;
      ++s.claims;
      s.claims_correct += ok;
      all_right = all_right && ok;
    }
    if (claims.size() != 2) {
      ++s.incomplete_pairs;
      continue;
    }
    ++s.pairs;
    s.pairs_correct += all_right;
  }
  return s;
}

// ---- dispatch ---------------------------------------------------------------

double score_with(const std::string& scorer, const std::string& lang, const std::vector<std::string>& gold,
                  const std::string& pred) {
  if (scorer == "string_match_all") return ruler_string_match_all(gold, pred);
  if (scorer == "string_match_part") return ruler_string_match_part(gold, pred);
  if (scorer == "oneruler_niah") return oneruler_compare_numbers(lang, gold, pred) ? 1.0 : 0.0;
  if (scorer == "oneruler_none") return oneruler_compare_none(lang, gold, pred) ? 1.0 : 0.0;
  if (scorer == "oneruler_cwe") return oneruler_cwe_correct(gold, pred) ? 1.0 : 0.0;
  if (scorer == "qa_em") return qa_exact_match(gold, pred);
  if (scorer == "qa_f1") return qa_f1(gold, pred);
  if (scorer == "nocha_claim") {
    LQ_CHECK(gold.size() == 1, "NoCha scorer: gold must be one item, \"TRUE\" or \"FALSE\" (got {} items)",
             gold.size());
    std::string g = ascii_lower(gold[0]);
    LQ_CHECK(g == "true" || g == "false", "NoCha scorer: gold must be \"TRUE\" or \"FALSE\", got \"{}\"", gold[0]);
    auto v = nocha_parse_verdict(pred);
    return v && *v == (g == "true") ? 1.0 : 0.0;
  }
  fail("unknown scorer '{}' (known: string_match_all, string_match_part, oneruler_niah, oneruler_none, "
       "oneruler_cwe, qa_em, qa_f1, nocha_claim)",
       scorer);
}

}  // namespace lq
