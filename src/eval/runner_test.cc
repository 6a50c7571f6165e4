// Variant specs and study files of `longquant eval`.
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "eval/runner.h"

namespace lq {
namespace {

TEST(Runner, VariantSpecParse) {
  auto v = VariantSpec::parse("q4=models/demo,method=gptq-int4,group_size=64,act_order=1");
  EXPECT_EQ(v.name, "q4");
  EXPECT_EQ(v.source, "models/demo");
  EXPECT_EQ(v.method, "gptq-int4");
  EXPECT_EQ(v.settings.at("group_size"), "64");
  EXPECT_EQ(v.settings.at("act_order"), "1");
  EXPECT_EQ(VariantSpec::parse("bf16=dir,method=bf16").method, "");
  EXPECT_EQ(VariantSpec::parse("e=http://127.0.0.1:8000/v1,model=x").settings.at("model"), "x");
  EXPECT_THROW(VariantSpec::parse("nodir"), Error);
  EXPECT_THROW(VariantSpec::parse("=dir"), Error);
  EXPECT_THROW(VariantSpec::parse("a b=dir"), Error);
  EXPECT_THROW(VariantSpec::parse("a=dir,junk"), Error);
}

TEST(Runner, StudyFileJsonAndToml) {
  const std::string dir = ::testing::TempDir();
  {
    std::ofstream(dir + "/s.json") << R"({"variants": ["bf16=m", "q=m,method=nf4"], "tasks": ["ruler/niah_single_1"],
      "lengths": ["1k", 2048], "langs": ["en"], "n": 7, "seed": 3, "baseline": "bf16"})";
    EvalOptions o;
    load_study_file(dir + "/s.json", &o, false, false, false, false);
    ASSERT_EQ(o.variants.size(), 2u);
    EXPECT_EQ(o.variants[1].method, "nf4");
    EXPECT_EQ(o.lengths, (std::vector<int64_t>{1024, 2048}));
    EXPECT_EQ(o.n, 7);
    EXPECT_EQ(o.seed, 3u);
    EXPECT_EQ(o.baseline, "bf16");
  }
  {
    std::ofstream(dir + "/s.toml") << "# the demo study\n"
                                      "variants = [\n  \"bf16=m\",  # baseline\n  'q=m,method=gptq-int4',\n]\n"
                                      "tasks = [\"oneruler/niah_none\"]\nlengths = [\"1k\", 4_096]\n"
                                      "langs = [\"en\", \"pl\"]\nn = 50\n";
    EvalOptions o;
    o.tasks = {"given/on-cli"};
    load_study_file(dir + "/s.toml", &o, false, true, false, false);
    ASSERT_EQ(o.variants.size(), 2u);
    EXPECT_EQ(o.variants[1].method, "gptq-int4");
    EXPECT_EQ(o.tasks, (std::vector<std::string>{"given/on-cli"}));  // the command line wins
    EXPECT_EQ(o.lengths, (std::vector<int64_t>{1024, 4096}));
    EXPECT_EQ(o.langs, (std::vector<std::string>{"en", "pl"}));
    EXPECT_EQ(o.n, 50);
  }
  auto bad = [&](const std::string& name, const std::string& text, const std::string& expect) {
    std::ofstream(dir + "/" + name) << text;
    EvalOptions o;
    try {
      load_study_file(dir + "/" + name, &o, false, false, false, false);
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  bad("b1.json", "{\"variants\": [", "invalid JSON");
  bad("b2.json", "{\"colour\": 1}", "unknown field 'colour'");
  bad("b3.toml", "n = 1\n[table]\n", ":2:");
  bad("b4.toml", "n = \"unterminated\n", "unterminated");
  bad("b5.toml", "n = 1\nn = 2\n", "twice");
  bad("b6.toml", "tasks = [1.5e3]\n", "unsupported value");
}

}  // namespace
}  // namespace lq
