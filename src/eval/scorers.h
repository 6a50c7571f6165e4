// eval/scorers.h: scorers for the long-context task suites (RULER, OneRuler,
// NoCha, QA) plus the small set of Python-compatible Unicode helpers they need.
//
// Why these exact rules: published numbers for RULER and OneRuler come from
// their Python scripts, so a score computed here must agree with them on every
// input, quirks included:
//  * RULER (scripts/eval/synthetic/constants.py): the prediction is cleaned
//    (control characters -> '\n', strip), then string_match_all = fraction of
//    gold strings that occur in it case-insensitively (Python str.lower());
//    string_match_part = 1 if any gold string occurs.
//  * OneRuler (eval/evaluate.py): NFKC-normalise; a NIAH answer fails if a
//    none word of the instruction language occurs in it as written or as
//    clean_text(word) (strip, lower, U+200C and ' ' removed) -- a
//    case-SENSITIVE substring test; then Python `re.findall(r'\d+')` (Unicode
//    Nd digits), drop 1-digit strings, deduplicate, and require |extracted| ==
//    |gold| and set(int) equality. niah_none: clean_text(NFKC(answer)) with
//    `\b\d\b` removed must contain a cleaned none word. CWE: every stripped,
//    lower-cased gold word must occur in the stripped, lower-cased answer.
//    Language codes "a-b" (cross-lingual) use the part after '-'.
//  * QA: SQuAD normalisation (lower, drop ASCII punctuation and the articles
//    a/an/the, collapse whitespace); exact match and token F1, max over golds.
//  * NoCha: the verdict is the last TRUE/FALSE inside <answer>...</answer>, else
//    the last standalone TRUE/FALSE word in the text; a pair counts only if
//    both of its claims are right.
// Python's lower() is full case mapping: beyond utf8proc's simple mapping we
// handle U+0130 -> "i\u0307" and the Final_Sigma rule, the only differences
// that can occur. Invalid UTF-8 is replaced by U+FFFD (Python errors="replace").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lq::uni {

// UTF-8 <-> code points. Invalid bytes decode to U+FFFD, one per bad byte.
std::u32string decode(const std::string& s);
std::string encode(const std::u32string& s);
std::string encode(char32_t c);
// Replace invalid UTF-8 with U+FFFD (valid input is returned unchanged).
std::string sanitize(const std::string& s);

std::string nfkc(const std::string& s);          // Unicode NFKC (utf8proc)
std::string py_lower(const std::string& s);      // Python str.lower()
std::string py_strip(const std::string& s);      // Python str.strip() (Unicode whitespace)
bool py_isspace(char32_t c);                     // Python str.isspace() for one char
bool is_decimal_digit(char32_t c);               // general category Nd (Python re \d)
int decimal_value(char32_t c);                   // 0..9 for Nd, -1 otherwise
bool is_word_char(char32_t c);                   // Python re \w (letters, numbers, '_')
bool is_cjk_like(char32_t c);                    // Han, kana, hangul, CJK punctuation: scripts without spaces
std::string replace_all(std::string s, const std::string& from, const std::string& to);

}  // namespace lq::uni

namespace lq {

// ---- RULER ---------------------------------------------------------------
// RULER's postprocess_pred: every char in [\x00-\x1f] -> '\n', then strip().
std::string ruler_postprocess(const std::string& pred);
// Fraction in [0,1] of gold strings found (case-insensitive) in the cleaned pred.
double ruler_string_match_all(const std::vector<std::string>& gold, const std::string& pred);
// 1 if any gold string is found, else 0.
double ruler_string_match_part(const std::vector<std::string>& gold, const std::string& pred);

// ---- OneRuler ------------------------------------------------------------
// evaluate.py's none_dict entry for `lang` (after the '-' rule); throws lq::Error
// naming the language when it has none.
const std::vector<std::string>& oneruler_none_words(const std::string& lang);
bool oneruler_has_language(const std::string& lang);
// evaluate.py clean_text: strip(), lower(), remove U+200C and ' '.
std::string oneruler_clean_text(const std::string& s);
bool oneruler_compare_numbers(const std::string& lang, const std::vector<std::string>& gold,
                              const std::string& pred);
bool oneruler_compare_none(const std::string& lang, const std::vector<std::string>& gold,
                           const std::string& pred);
bool oneruler_cwe_correct(const std::vector<std::string>& gold, const std::string& pred);
// Python re.findall(r'\d+', s): maximal runs of Nd digits, as UTF-8 substrings.
std::vector<std::string> find_digit_runs(const std::string& s);
// Python int(s) for a string of digits / gold item, rendered as a canonical
// decimal string ("-12", "0", "1234567"); nullopt where int() would raise.
std::optional<std::string> py_int_canonical(const std::string& s);

// ---- QA ------------------------------------------------------------------
std::string qa_normalize(const std::string& s);
double qa_exact_match(const std::vector<std::string>& gold, const std::string& pred);
double qa_f1(const std::vector<std::string>& gold, const std::string& pred);

// ---- NoCha ---------------------------------------------------------------
// The claim verdict in a model answer: true (TRUE), false (FALSE), or nullopt
// when neither can be found (counted wrong).
std::optional<bool> nocha_parse_verdict(const std::string& pred);

struct NochaClaimResult {
  std::string book_title;
  int64_t pair_index = 0;  // NoCha's "index": both claims of a pair share it
  bool gold = false;       // the claim's "type"
  std::optional<bool> predicted;
};
struct NochaPairScore {
  int64_t pairs = 0;          // complete pairs scored
  int64_t pairs_correct = 0;  // both claims right
  int64_t claims = 0;
  int64_t claims_correct = 0;
  int64_t incomplete_pairs = 0;  // pair indices with != 2 claims (not scored)
  double pair_accuracy() const { return pairs ? double(pairs_correct) / double(pairs) : 0.0; }
};
// Pairs are grouped by (book_title, pair_index).
NochaPairScore nocha_pair_accuracy(const std::vector<NochaClaimResult>& results);

// ---- dispatch ------------------------------------------------------------
// Scorer names used by the task registry (tasks.h): "string_match_all",
// "string_match_part", "oneruler_niah", "oneruler_none", "oneruler_cwe",
// "qa_em", "qa_f1", "nocha_claim". Returns a score in [0,1].
double score_with(const std::string& scorer, const std::string& lang,
                  const std::vector<std::string>& gold, const std::string& pred);

}  // namespace lq
