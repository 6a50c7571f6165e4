// eval/languages.h: per-language prompt sets for the OneRuler-style tasks.
//
// A LanguagePack holds what OneRuler keeps in its data directory for one
// language: the NIAH prompt pieces (prompt/<lang>/niah.txt, a JSON object),
// the CWE template (prompt/<lang>/cwe.txt), the key nouns (one column of
// vocab/100_noun_list_translated.tsv), the CWE dictionary words
// (vocab/dictionaries/<Name>/<Name>.csv) and the books (books/<lang>/*.txt).
// Built-in packs for en, de, pl, ru, zh, ja were written for this project
// (our own wording, not OneRuler's); load_oneruler_dir() adds or replaces packs
// from a OneRuler data directory as published, so all 26 languages work.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace lq {

// The fields of OneRuler's prompt/<lang>/niah.txt (names kept as in the file).
struct NiahPrompts {
  std::string task;                     // contains {context}
  std::string needle_words, needle_numbers;  // contain {key} and {value}
  std::string question_single_numbers, question_single_words;  // {query1}
  std::string question_multi_numbers, question_multi_words;    // {query1}, {query2}
  std::string please_list, if_no_numbers, if_no_words;
  std::string answer_prefix, answer_words, answer_numbers;
  std::string none;  // the language's word for "none" (gold answer of niah_none)
};

struct LanguagePack {
  std::string code;            // ISO code, e.g. "en", "zh"
  std::string source;          // "built-in" or the directory it was loaded from
  NiahPrompts niah;
  std::string cwe_template;    // contains {context}
  std::vector<std::string> nouns;             // needle keys (stripped, distinct)
  std::vector<std::string> noise_sentences;   // built-in noise haystack (may be empty)
  std::vector<std::string> book_files;        // haystack books (sorted paths)
  std::string dictionary_file;                // CWE word list csv ("" if none)
  bool no_spaces = false;      // zh/ja: pieces are joined without spaces
  std::string period;          // sentence end added to needles ("." / "。" / "۔")
};

class LanguageSet {
 public:
  // The built-in packs (en, de, pl, ru, zh, ja).
  static LanguageSet builtin();
  // Adds/replaces packs from a OneRuler data directory: every language with
  // prompt/<lang>/niah.txt. Built-in noise sentences of a replaced pack are
  // kept. Throws lq::Error naming the file on malformed input.
  void load_oneruler_dir(const std::string& dir);

  bool has(const std::string& code) const { return packs_.count(code) > 0; }
  const LanguagePack& get(const std::string& code) const;  // throws lq::Error listing known codes
  std::vector<std::string> codes() const;

 private:
  std::map<std::string, LanguagePack> packs_;
};

// ---- word lists for the common/frequent-words tasks -------------------------
// OneRuler's dictionary rule (synthetic/common_words_extraction.py): read
// vocab/dictionaries/<Name>/<Name>.csv (header "words,pos"; RFC 4180 quoting,
// CRLF or LF), drop rows whose word is empty or one of pandas' default NA
// strings ("NA", "null", "nan", ...), drop words containing a Unicode decimal
// digit, keep rows whose pos is exactly "noun", "adjective" or "verb", and
// return the distinct words sorted by code point (Python sorted(set(...))).
// Throws lq::Error naming the file on a missing header or unterminated quote.
std::vector<std::string> load_oneruler_dictionary(const std::string& csv_path);
// Our own English list of common nouns, adjectives and verbs (1011 words,
// lower-case ASCII, distinct, sorted): the English CWE vocabulary (OneRuler
// and RULER draw English words from the `wonderwords` package instead).
const std::vector<std::string>& builtin_english_words();
// Distinct words of a UTF-8 text for languages written with spaces: split at
// whitespace, strip leading/trailing non-word characters, keep tokens made only
// of letters (no digits, no '_'), Python-lower-case them; sorted, distinct.
std::vector<std::string> words_from_text(const std::string& text);

// OneRuler's add_period() punctuation for a language code.
std::string language_period(const std::string& code);
bool language_without_spaces(const std::string& code);

}  // namespace lq
