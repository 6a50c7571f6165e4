// eval/tasks_test.cc: generators, budget fitting, haystacks, JSONL, file scoring.
// Budgets are checked exactly (integer token counts); "within one haystack
// unit" is checked against the largest unit cost of the haystack used.
#include "eval/tasks.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/testing.h"
#include "eval/haystack.h"
#include "eval/scorers.h"
#include "eval/tasks_rng.h"

namespace lq {
namespace {

size_t count_occurrences(const std::string& s, const std::string& sub) {
  size_t n = 0;
  for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + 1)) ++n;
  return n;
}

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lq_tasks_test_" + name)).string();
}

TEST(TaskRng, DeterministicAndInRange) {
  TaskRng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    differs |= x != c.next();
  }
  EXPECT_TRUE(differs);
  TaskRng r(7);
  std::vector<int> hist(5, 0);
  for (int i = 0; i < 5000; ++i) {
    uint64_t v = r.below(5);
    ASSERT_LT(v, 5u);
    ++hist[v];
  }
  for (int h : hist) EXPECT_GT(h, 800);  // ~1000 each; 800 is > 6 sigma below
  auto s = r.sample(10, 10);
  EXPECT_EQ(std::set<size_t>(s.begin(), s.end()).size(), 10u);
  EXPECT_NE(example_seed("ruler", "a", 1, "en", 1, 0), example_seed("ruler", "a", 1, "en", 1, 1));
  EXPECT_NE(example_seed("ruler", "a", 1, "en", 1, 0), example_seed("ruler", "a", 1, "en", 2, 0));
}

TEST(Tasks, ParseLength) {
  EXPECT_EQ(parse_length("8k"), 8192);
  EXPECT_EQ(parse_length("128K"), 131072);
  EXPECT_EQ(parse_length("5000"), 5000);
  EXPECT_THROW(parse_length("8x"), Error);
  EXPECT_THROW(parse_length(""), Error);
  EXPECT_THROW(parse_length("k"), Error);
}

TEST(Haystack, SplitSentences) {
  EXPECT_EQ(split_sentences("Hello there.  How are you?\n\"Fine!\" he said. Dr. X"),
            (std::vector<std::string>{"Hello there.", "How are you?", "\"Fine!\"", "he said.", "Dr.", "X"}));
  EXPECT_EQ(split_sentences("我很好。你呢？「是的。」好"),
            (std::vector<std::string>{"我很好。", "你呢？", "「是的。」", "好"}));
  EXPECT_EQ(split_sentences("यह है। वह है।"), (std::vector<std::string>{"यह है।", "वह है।"}));
  EXPECT_EQ(split_sentences("3.14 is pi."), (std::vector<std::string>{"3.14 is pi."}));
  // Over-long pieces are cut at spaces (or code points) under the byte limit.
  std::string longs;
  for (int i = 0; i < 100; ++i) longs += "word ";
  auto parts = split_sentences(longs, 64);
  ASSERT_GT(parts.size(), 1u);
  for (const auto& p : parts) EXPECT_LE(p.size(), 64u);
  std::string cjk;
  for (int i = 0; i < 100; ++i) cjk += "字";
  for (const auto& p : split_sentences(cjk, 32)) {
    EXPECT_LE(p.size(), 32u);
    EXPECT_EQ(uni::sanitize(p), p);  // never cut inside a code point
  }
  EXPECT_EQ(essay_sentence(1, 5), essay_sentence(1, 5));
  EXPECT_NE(essay_sentence(1, 5), essay_sentence(1, 6));
}

TEST(Tasks, RegistryAndListJson) {
  auto langs = LanguageSet::builtin();
  auto j = task_list_json(langs);
  ASSERT_TRUE(j.is_array());
  std::set<std::string> ids;
  for (const auto& t : j) ids.insert(t["id"].get<std::string>());
  for (const char* id : {"ruler/niah_single_1", "ruler/niah_multikey_3", "ruler/vt", "ruler/cwe", "ruler/fwe",
                         "oneruler/niah_none", "oneruler/cwe_easy", "nocha/claims", "qa/qa"})
    EXPECT_TRUE(ids.count(id)) << id;
  EXPECT_EQ(find_task("ruler/niah_single_1").gen_tokens, 128);
  EXPECT_EQ(find_task("oneruler/niah_none").scorer, "oneruler_none");
  auto ol = task_languages(find_task("oneruler/niah_single"), langs);
  EXPECT_EQ(ol, (std::vector<std::string>{"de", "en", "ja", "pl", "ru", "zh"}));
  EXPECT_THROW(find_task("ruler/nope"), Error);
  EXPECT_THROW(find_task("nosuite"), Error);
}

// Checks every invariant of a generated example.
void check_example(const Example& e, double max_unit_cost) {
  SCOPED_TRACE(e.suite + "/" + e.task + " " + e.lang + " len=" + std::to_string(e.length) + " idx=" +
               std::to_string(e.index));
  EXPECT_LE(e.token_count + e.gen_tokens, e.length);
  EXPECT_LT(e.length - e.gen_tokens - e.token_count, max_unit_cost + 1);
  ASSERT_EQ(e.needles.size(), e.needle_offsets.size());
  ASSERT_EQ(e.needles.size(), e.depths.size());
  for (size_t k = 0; k < e.needles.size(); ++k) {
    EXPECT_EQ(e.input.compare(static_cast<size_t>(e.needle_offsets[k]), e.needles[k].size(), e.needles[k]), 0);
    EXPECT_EQ(count_occurrences(e.input, e.needles[k]), 1u) << e.needles[k];
    if (k) {
      EXPECT_LE(e.depths[k - 1], e.depths[k]);
    }
  }
  for (const auto& q : e.queries) EXPECT_NE(e.input.find(q), std::string::npos);
  EXPECT_FALSE(e.outputs.empty());
}

TEST(Tasks, RulerNiahAllTasksFitBudget) {
  auto langs = LanguageSet::builtin();
  auto counter = byte_counter();
  for (const char* task : {"niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1",
                           "niah_multikey_2", "niah_multikey_3", "niah_multivalue", "niah_multiquery"}) {
    for (int64_t len : {1024, 4096, 16384}) {
      TaskOptions o;
      o.suite = "ruler";
      o.task = task;
      o.length = len;
      o.n = 3;
      auto ex = generate_examples(o, langs, counter);
      ASSERT_EQ(ex.size(), 3u);
      for (const auto& e : ex) {
        // Largest unit: a distractor needle with UUIDs (~110 bytes) or an essay sentence (< 120 bytes).
        check_example(e, 40.0);
        for (const auto& g : e.outputs) EXPECT_NE(e.input.find(g), std::string::npos);
        EXPECT_EQ(e.answer_prefix.rfind(" The special magic ", 0), 0u);
        const std::string t = task;
        if (t == "niah_multikey_1") {
          EXPECT_EQ(e.needles.size(), 4u);
        }
        if (t == "niah_multivalue") { EXPECT_EQ(e.outputs.size(), 4u); }
        if (t == "niah_multiquery") {
          EXPECT_EQ(e.outputs.size(), 4u);
        }
        if (t == "niah_multikey_2" || t == "niah_multikey_3") {
          // Distractor needles never use the asked key.
          EXPECT_EQ(count_occurrences(e.input, " for " + e.queries[0] + " is: "), 1u);
          EXPECT_GT(count_occurrences(e.input, "One of the special magic"), 5u);
        }
      }
    }
  }
}

TEST(Tasks, ReproducibleAndSeedSensitive) {
  auto langs = LanguageSet::builtin();
  TaskOptions o;
  o.task = "niah_multikey_2";
  o.length = 2048;
  o.n = 4;
  auto a = generate_examples(o, langs, word_counter());
  auto b = generate_examples(o, langs, word_counter());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(example_to_json(a[i]).dump(), example_to_json(b[i]).dump());
  // One example alone (first_index) equals the same index of a batch.
  TaskOptions one = o;
  one.first_index = 2;
  one.n = 1;
  EXPECT_EQ(example_to_json(generate_examples(one, langs, word_counter())[0]).dump(), example_to_json(a[2]).dump());
  o.seed = 2;
  auto c = generate_examples(o, langs, word_counter());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NE(a[i].input, c[i].input);
  EXPECT_NE(a[0].input, a[1].input);
}

TEST(Tasks, ExplicitDepthsArePlacedExactly) {
  auto langs = LanguageSet::builtin();
  TaskOptions o;
  o.task = "niah_single_2";
  o.length = 4096;
  o.n = 3;
  o.depths.list = {0, 50, 100};
  auto ex = generate_examples(o, langs, byte_counter());
  const std::string head_end = "afterwards.\n";
  for (size_t i = 0; i < ex.size(); ++i) {
    const auto& e = ex[i];
    ASSERT_EQ(e.depths.size(), 1u);
    EXPECT_EQ(e.depths[0], o.depths.list[i]);
    size_t ctx_begin = e.input.find(head_end) + head_end.size();
    size_t ctx_end = e.input.rfind("\nWhat are all the special magic");
    size_t off = static_cast<size_t>(e.needle_offsets[0]);
    if (i == 0) {
      EXPECT_EQ(off, ctx_begin);
    }
    if (i == 2) { EXPECT_EQ(off + e.needles[0].size(), ctx_end); }
    if (i == 1) {
      // Depth 50: the needle follows exactly floor(n / 2) units, i.e. that many sentence ends before it.
      std::string before = e.input.substr(ctx_begin, off - ctx_begin);
      EXPECT_EQ(static_cast<int64_t>(count_occurrences(before, ". ")), e.haystack_units / 2);
    }
  }
  o.depths.list = {101};
  EXPECT_THROW(generate_examples(o, langs, byte_counter()), Error);
}

TEST(Tasks, OneRulerBuiltinLanguages) {
  auto langs = LanguageSet::builtin();
  for (const std::string lang : {"en", "de", "pl", "ru", "zh", "ja"}) {
    for (const char* task : {"niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "niah_none"}) {
      TaskOptions o;
      o.suite = "oneruler";
      o.task = task;
      o.lang = lang;
      o.length = 2048;
      o.n = 2;
      auto ex = generate_examples(o, langs, byte_counter());
      for (const auto& e : ex) {
        check_example(e, 40.0);
        EXPECT_EQ(e.answer_prefix, "");
        const auto& pack = langs.get(lang);
        if (std::string(task) == "niah_none") {
          EXPECT_EQ(e.outputs, std::vector<std::string>{pack.niah.none});
          for (const auto& nd : e.needles) EXPECT_EQ(nd.find(e.queries[0]), std::string::npos);
          // The gold none word passes the OneRuler none scorer; a needle value fails it.
          EXPECT_TRUE(oneruler_compare_none(lang, e.outputs, e.outputs[0]));
        } else {
          for (const auto& g : e.outputs) EXPECT_NE(e.input.find(g), std::string::npos);
          std::string ans;
          for (const auto& g : e.outputs) ans += g + ", ";
          EXPECT_TRUE(oneruler_compare_numbers(lang, e.outputs, ans)) << ans;
        }
        if (std::string(task) == "niah_multiquery") {
          EXPECT_EQ(e.queries.size(), 2u);
        }
        for (const auto& nd : e.needles) EXPECT_EQ(nd.substr(nd.size() - pack.period.size()), pack.period);
      }
    }
  }
}

TEST(Tasks, HaystackFilesAndErrors) {
  std::string p = tmp_path("hay.txt");
  {
    std::ofstream f(p);
    f << "Erster Satz hier. Zweiter Satz dort! Dritter?\n";
  }
  auto langs = LanguageSet::builtin();
  TaskOptions o;
  o.suite = "oneruler";
  o.task = "niah_single";
  o.lang = "de";
  o.length = 1024;
  o.haystack_files = {p};
  auto e = generate_examples(o, langs, byte_counter())[0];
  check_example(e, 10.0);
  EXPECT_NE(e.input.find("Zweiter Satz dort!"), std::string::npos);
  std::remove(p.c_str());
  o.haystack_files = {tmp_path("missing.txt")};
  EXPECT_THROW(generate_examples(o, langs, byte_counter()), Error);
  o.haystack_files.clear();
  o.length = 64;  // smaller than the prompt alone
  EXPECT_THROW(generate_examples(o, langs, byte_counter()), Error);
  o.length = 1024;
  o.lang = "xx";
  EXPECT_THROW(generate_examples(o, langs, byte_counter()), Error);
  o.lang = "de";
  o.suite = "ruler";
  o.task = "vt";
  EXPECT_THROW(generate_examples(o, langs, byte_counter()), Error);  // RULER is English only
  o.lang = "en";
  o.task = "nope";
  EXPECT_THROW(generate_examples(o, langs, byte_counter()), Error);  // unknown task
}

TEST(Tasks, JsonlRoundTripAndRulerImport) {
  auto langs = LanguageSet::builtin();
  TaskOptions o;
  o.task = "niah_multivalue";
  o.length = 1500;
  o.n = 2;
  auto ex = generate_examples(o, langs, byte_counter());
  std::string p = tmp_path("ex.jsonl");
  write_examples_jsonl(p, ex);
  auto back = read_examples_jsonl(p);
  ASSERT_EQ(back.size(), ex.size());
  for (size_t i = 0; i < ex.size(); ++i) EXPECT_EQ(example_to_json(back[i]).dump(), example_to_json(ex[i]).dump());
  {
    std::ofstream f(p);
    f << R"({"index": 7, "input": "ctx", "outputs": ["1234567"], "length": 4096, "answer_prefix": " Answer:"})"
      << "\n\n";
  }
  auto r = read_examples_jsonl(p);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].index, 7);
  EXPECT_EQ(r[0].length, 4096);
  EXPECT_EQ(r[0].answer_prefix, " Answer:");
  {
    std::ofstream f(p);
    f << R"({"index": 1, "input": 5, "outputs": []})" << "\n";
  }
  EXPECT_THROW(read_examples_jsonl(p), Error);
  std::remove(p.c_str());
}

TEST(Tasks, ScoreFileAndCase) {
  EXPECT_DOUBLE_EQ(score_case("ruler/niah_multivalue", "en", {"1", "2"}, "1"), 0.5);
  EXPECT_DOUBLE_EQ(score_case("oneruler/niah_single", "en", {"1234567"}, "none 1234567"), 0.0);
  std::string p = tmp_path("pred.jsonl");
  {
    std::ofstream f(p);
    f << R"({"index": 0, "outputs": ["1234567"], "response-m": "1234567"})" << "\n"
      << R"({"index": 0, "outputs": ["1234567"], "response-m": "1234567"})" << "\n"    // duplicate: skipped
      << R"({"index": 1, "outputs": ["7654321"], "response-m": "7654321 1111111"})" << "\n"
      << R"({"index": 2, "outputs": ["7654321"], "response-m": null})" << "\n"          // null: skipped
      << R"({"index": 3, "suite": "oneruler", "task": "niah_none", "lang": "pl", "outputs": ["brak"], "pred": "Brak"})"
      << "\n";
  }
  auto fs = score_predictions_jsonl(p, "oneruler/niah_single", "en");
  EXPECT_EQ(fs.scored, 3);
  EXPECT_EQ(fs.skipped, 2);
  EXPECT_EQ(fs.scores, (std::vector<double>{1.0, 0.0, 1.0}));
  EXPECT_DOUBLE_EQ(fs.mean, 2.0 / 3.0);
  std::remove(p.c_str());
}

// ---- tests with ../shared data ---------------------------------------------

TEST(TasksShared, OneRulerAll26LanguagesGenerate) {
  LQ_REQUIRE_SHARED(shared);
  auto langs = LanguageSet::builtin();
  langs.load_oneruler_dir(shared + "/data/oneruler");
  auto codes = langs.codes();
  EXPECT_EQ(codes.size(), 26u);
  for (const auto& lang : codes) {
    const auto& pack = langs.get(lang);
    EXPECT_FALSE(pack.book_files.empty()) << lang;
    EXPECT_TRUE(oneruler_has_language(lang)) << lang;
    for (const char* task : {"niah_single", "niah_none"}) {
      TaskOptions o;
      o.suite = "oneruler";
      o.task = task;
      o.lang = lang;
      o.length = 3000;
      auto e = generate_examples(o, langs, byte_counter())[0];
      // Book units are capped at 1024 bytes -> <= 256 + 1 byte-counter tokens.
      check_example(e, 260.0);
      EXPECT_GT(e.haystack_units, 3) << lang;
      if (std::string(task) == "niah_none") {
        EXPECT_EQ(e.outputs[0], pack.niah.none);
        EXPECT_TRUE(oneruler_compare_none(lang, e.outputs, e.outputs[0])) << lang;
      }
    }
  }
}

}  // namespace
}  // namespace lq

// Real tokenizers + chat templates (../shared/tokenizers): budgets at several
// lengths for RULER and OneRuler tasks. Slow (tokenises up to ~32K-token prompts).
#include "io/chat_template.h"
#include "io/tokenizer.h"

namespace lq {
namespace {
PromptCounter real_counter(const Tokenizer& tok, ChatFormat fmt) {
  PromptCounter c;
  c.count = [&tok, fmt](const std::string& m, const std::string& a) {
    return static_cast<int64_t>(tok.encode(render_chat(fmt, {{"user", m}}, true) + a, false).size());
  };
  c.count_piece = [&tok](const std::string& t) { return static_cast<int64_t>(tok.encode(t, false).size()); };
  return c;
}

TEST(TasksShared, RealTokenizerBudgetsSlow) {
  LQ_REQUIRE_SHARED(shared);
  auto langs = LanguageSet::builtin();
  langs.load_oneruler_dir(shared + "/data/oneruler");
  for (auto [dir, fmt] : {std::pair{"llama3", ChatFormat::Llama3}, std::pair{"qwen2_5", ChatFormat::ChatML}}) {
    Tokenizer tok = Tokenizer::load(shared + "/tokenizers/" + dir);
    auto counter = real_counter(tok, fmt);
    struct C { const char* suite; const char* task; const char* lang; };
    for (auto c : {C{"ruler", "niah_single_1", "en"}, C{"ruler", "niah_multikey_3", "en"}, C{"ruler", "niah_single_2", "en"},
                   C{"oneruler", "niah_multivalue", "zh"}, C{"oneruler", "niah_none", "ru"}, C{"oneruler", "niah_single", "ta"}}) {
      for (int64_t len : {1024, 8192, 32768}) {
        TaskOptions o;
        o.suite = c.suite;
        o.task = c.task;
        o.lang = c.lang;
        o.length = len;
        auto e = generate_examples(o, langs, counter)[0];
        // The recorded count is the real count of the final prompt.
        EXPECT_EQ(e.token_count, counter.count(e.input, e.answer_prefix));
        // Largest unit cost: a book sentence capped at 1024 bytes (<= ~400 tokens in Tamil).
        check_example(e, 450.0);
        EXPECT_GT(e.token_count + e.gen_tokens, len - 450) << dir << " " << c.task << " " << len;
      }
    }
  }
}
}  // namespace
}  // namespace lq
