// eval/scorers_test.cc: hand-written cases for every scorer rule. The OneRuler
// expectations below were cross-checked by running OneRuler's own
// eval/evaluate.py (compare_numbers / compare_none / is_correct_order) on the
// same inputs; scores are exact (0/1 or small rationals), compared with ==
// or DOUBLE_EQ (4 ulp: the values are exactly representable quotients).
#include "eval/scorers.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace lq {
namespace {

using V = std::vector<std::string>;

TEST(Unicode, LowerStripNfkcDigits) {
  EXPECT_EQ(uni::py_lower("ÄBC Ωmega"), "äbc ωmega");
  EXPECT_EQ(uni::py_lower("\u0130"), "i\u0307");  // SpecialCasing, as Python
  EXPECT_EQ(uni::py_lower("ΟΔΟΣ"), "οδος");        // Final_Sigma
  EXPECT_EQ(uni::py_lower("Σ"), "σ");              // no cased letter before
  EXPECT_EQ(uni::py_strip("\u3000 \t x y \u00a0\n"), "x y");
  EXPECT_EQ(uni::nfkc("１２３ｎｏｎｅ"), "123none");
  EXPECT_EQ(uni::nfkc("ﬁ"), "fi");
  EXPECT_EQ(uni::decimal_value(U'\u0967'), 1);     // Devanagari one
  EXPECT_EQ(uni::decimal_value(U'\U0001D7D9'), 1); // mathematical double-struck one (2nd run of 5)
  EXPECT_EQ(uni::decimal_value(U'x'), -1);
  EXPECT_EQ(uni::sanitize(std::string("a\xff" "b")), "a\uFFFDb");
  EXPECT_EQ(find_digit_runs("ab12cd345 6"), (V{"12", "345", "6"}));
  EXPECT_EQ(find_digit_runs("१२३"), (V{"१२३"}));
  EXPECT_EQ(py_int_canonical("0001234"), "1234");
  EXPECT_EQ(py_int_canonical(" 12 "), "12");
  EXPECT_EQ(py_int_canonical("1_000"), "1000");
  EXPECT_EQ(py_int_canonical("-0"), "0");
  EXPECT_EQ(py_int_canonical("१२"), "12");
  EXPECT_FALSE(py_int_canonical("1__0"));
  EXPECT_FALSE(py_int_canonical("abc"));
  EXPECT_FALSE(py_int_canonical(""));
  EXPECT_FALSE(py_int_canonical("12a"));
}

TEST(RulerScorer, MatchAllAndPart) {
  V gold{"1234567", "AbC"};
  EXPECT_DOUBLE_EQ(ruler_string_match_all(gold, "the numbers are 1234567 and abc"), 1.0);
  EXPECT_DOUBLE_EQ(ruler_string_match_all(gold, "1234567 only"), 0.5);
  EXPECT_DOUBLE_EQ(ruler_string_match_all(gold, "nothing"), 0.0);
  EXPECT_DOUBLE_EQ(ruler_string_match_part(gold, "ABC!"), 1.0);
  EXPECT_DOUBLE_EQ(ruler_string_match_part(gold, "nothing"), 0.0);
  // Case-insensitive with Unicode lower-casing on both sides.
  EXPECT_DOUBLE_EQ(ruler_string_match_all({"Straße"}, "STRASSE straße"), 1.0);
  EXPECT_DOUBLE_EQ(ruler_string_match_all({"ÉTÉ"}, "été"), 1.0);
  // Control characters become newlines before matching (postprocess_pred).
  EXPECT_EQ(ruler_postprocess("\x01 ab\tc \x02"), "ab\nc");
  EXPECT_DOUBLE_EQ(ruler_string_match_all({"b c"}, "ab\tc"), 0.0);
  EXPECT_THROW(ruler_string_match_all({}, "x"), Error);
}

struct NumCase {
  const char* lang;
  V gold;
  const char* pred;
  bool want;
};

TEST(OneRulerScorer, CompareNumbersEdgeCases) {
  const NumCase cases[] = {
      {"en", {"1234567"}, "The number is 1234567.", true},
      {"en", {"1234567"}, "1234567 and 7654321", false},           // extra number fails
      {"en", {"1234567"}, "None. 1234567", true},                  // case-sensitive: 'None' is fine
      {"en", {"1234567"}, "none 1234567", false},                  // none word fails
      {"en", {"1234567"}, "nonetheless 1234567", false},           // substring test, quirk
      {"en", {"1234567"}, "1234567 1234567 (1 item)", true},       // dedupe; single digits dropped
      {"en", {"1234567"}, "abc1234567def", true},                  // numbers inside words
      {"en", {"1234567"}, "１２３４５６７", true},                 // full-width digits after NFKC
      {"en", {"1234567"}, "0001234567", true},                     // int() comparison
      {"en", {"1234567", "7654321"}, "7654321, 1234567", true},    // order free
      {"en", {"1234567", "7654321"}, "7654321", false},            // missing one
      {"en", {"1234567"}, "", false},
      {"en", {"1234567"}, "no numbers", false},
      {"en", {"1234567"}, "1,234,567", false},                     // splits into 234, 567
      {"en", {"12"}, "12 3", true},
      {"en", {"1_000"}, "1000", true},                              // int('1_000')
      {"en", {" 1234567 "}, "1234567", true},
      {"de", {"1234567"}, "Keine vorhanden 1234567", false},       // as written
      {"de", {"1234567"}, "keinevorhanden 1234567", false},        // cleaned form
      {"de", {"1234567"}, "keine vorhanden 1234567", true},        // neither form: passes
      {"de", {"1234567"}, "KEINE VORHANDEN 1234567", true},
      {"ja", {"1234567"}, "数字はありません1234567", false},        // second ja none word
      {"uk", {"1234567"}, "Нема 1234567", false},
      {"uk", {"1234567"}, "нема 1234567", false},                  // clean_text('Нема')
      {"hi", {"1234567"}, "१२३४५६७", true},                         // Devanagari digits (\d, int())
      {"en-de", {"1234567"}, "Keine vorhanden 1234567", false},    // xling: instruction language
      {"en-de", {"1234567"}, "none 1234567", true},
      {"vi", {"1234567"}, "không có 1234567", true},
      {"vi", {"1234567"}, "khôngcó 1234567", false},
      {"en", {"abc"}, "12 34", false},                              // non-numeric gold
  };
  for (const auto& c : cases)
    EXPECT_EQ(oneruler_compare_numbers(c.lang, c.gold, c.pred), c.want) << c.lang << " | " << c.pred;
}

TEST(OneRulerScorer, CompareNone) {
  struct C {
    const char* lang;
    const char* pred;
    bool want;
  };
  const C cases[] = {
      {"en", "none", true},          {"en", "None", true},           {"en", "NONE.", true},
      {"en", "There are none", true}, {"en", "no", false},            {"en", "n o n e", true},
      {"de", "Keine vorhanden", true}, {"de", "keine   vorhanden", true}, {"de", "KEINEVORHANDEN", true},
      {"fa", "هیچ\u200cکدام", true},  {"fa", "هیچ کدام", true},       {"en", "non5e", false},
      {"en", "non 5 e", false},      {"en", "ｎｏｎｅ", true},        {"ja", "なし", true},
      {"ja", "ナシ", false},          {"st", "Ha ho letho", true},     {"en", "1234567", false},
      {"en", "no(5)ne", false},
  };
  for (const auto& c : cases)
    EXPECT_EQ(oneruler_compare_none(c.lang, {"none"}, c.pred), c.want) << c.lang << " | " << c.pred;
  // \b\d\b removal: "no 5ne" -> "no5ne" keeps the 5 (no boundary); "none 5" -> "none5" still matches.
  EXPECT_TRUE(oneruler_compare_none("en", {"none"}, "none 5"));
  EXPECT_THROW(oneruler_compare_none("xx", {"none"}, "none"), Error);
}

TEST(OneRulerScorer, Cwe) {
  EXPECT_TRUE(oneruler_cwe_correct({"apple", "Book"}, "  APPLE, book, cat"));
  EXPECT_FALSE(oneruler_cwe_correct({"apple", "book"}, "apple"));
  EXPECT_TRUE(oneruler_cwe_correct({" apple "}, "xappley"));  // substring test, quirk
  EXPECT_TRUE(oneruler_cwe_correct({"Äpfel"}, "ÄPFEL"));
}

TEST(OneRulerScorer, NoneWordsTable) {
  EXPECT_EQ(oneruler_none_words("ja"), (V{"なし", "数字はありません"}));
  EXPECT_EQ(oneruler_none_words("en-pl"), (V{"brak"}));
  EXPECT_TRUE(oneruler_has_language("st"));
  EXPECT_FALSE(oneruler_has_language("xx"));
  EXPECT_EQ(oneruler_clean_text(" Keine Vorhanden\u200c "), "keinevorhanden");
}

TEST(QaScorer, ExactMatchAndF1) {
  EXPECT_DOUBLE_EQ(qa_exact_match({"The Eiffel Tower"}, "eiffel tower!"), 1.0);
  EXPECT_DOUBLE_EQ(qa_exact_match({"Paris"}, "Paris, France"), 0.0);
  EXPECT_EQ(qa_normalize("  The  cat, an apple;  a DOG "), "cat apple dog");
  EXPECT_EQ(qa_normalize("theater"), "theater");  // articles only as whole words
  // pred "paris france" vs gold "paris": p=1/2, r=1 -> f1 = 2/3.
  EXPECT_DOUBLE_EQ(qa_f1({"Paris"}, "Paris, France"), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(qa_f1({"London", "Paris"}, "Paris"), 1.0);   // max over golds
  EXPECT_DOUBLE_EQ(qa_f1({"x b b c"}, "b b y"), 2.0 * (2.0 / 3) * (2.0 / 4) / ((2.0 / 3) + (2.0 / 4)));
  EXPECT_DOUBLE_EQ(qa_f1({"cat"}, "dog"), 0.0);
  EXPECT_DOUBLE_EQ(qa_f1({"the"}, ""), 1.0);  // both normalise to empty (SQuAD v2 rule)
}

TEST(NochaScorer, VerdictAndPairs) {
  EXPECT_EQ(nocha_parse_verdict("<explanation>It is false that...</explanation>\n<answer>TRUE</answer>"), true);
  EXPECT_EQ(nocha_parse_verdict("<answer>False</answer>"), false);
  EXPECT_EQ(nocha_parse_verdict("I think the statement is TRUE."), true);
  EXPECT_EQ(nocha_parse_verdict("Partly true but overall FALSE"), false);  // last word wins
  EXPECT_EQ(nocha_parse_verdict("untrue falsehood"), std::nullopt);
  EXPECT_EQ(nocha_parse_verdict(""), std::nullopt);

  std::vector<NochaClaimResult> r = {
      {"b1", 1, true, true},  {"b1", 1, false, false},   // pair right
      {"b1", 2, true, true},  {"b1", 2, false, true},    // one wrong
      {"b2", 1, true, std::nullopt}, {"b2", 1, false, false},  // unparsed counts wrong
      {"b2", 7, true, true},                                   // incomplete
  };
  auto s = nocha_pair_accuracy(r);
  EXPECT_EQ(s.pairs, 3);
  EXPECT_EQ(s.pairs_correct, 1);
  EXPECT_EQ(s.incomplete_pairs, 1);
  EXPECT_EQ(s.claims, 7);
  EXPECT_EQ(s.claims_correct, 5);
  EXPECT_DOUBLE_EQ(s.pair_accuracy(), 1.0 / 3.0);
}

TEST(ScoreWith, Dispatch) {
  EXPECT_DOUBLE_EQ(score_with("string_match_all", "en", {"a1", "b2"}, "A1"), 0.5);
  EXPECT_DOUBLE_EQ(score_with("oneruler_niah", "en", {"1234567"}, "1234567"), 1.0);
  EXPECT_DOUBLE_EQ(score_with("oneruler_none", "zh", {"无"}, "答案：无"), 1.0);
  EXPECT_DOUBLE_EQ(score_with("oneruler_cwe", "en", {"x"}, "X"), 1.0);
  EXPECT_DOUBLE_EQ(score_with("nocha_claim", "en", {"FALSE"}, "<answer>FALSE</answer>"), 1.0);
  EXPECT_THROW(score_with("nocha_claim", "en", {"maybe"}, "TRUE"), Error);
  EXPECT_THROW(score_with("bogus", "en", {"x"}, "x"), Error);
}

}  // namespace
}  // namespace lq
