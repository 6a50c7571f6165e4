// io/hf_config_test.cc: config.json parsing (values, defaults, every rejection
// path) and RoPE inverse frequencies against the fixtures' transformers output.
//
// Tolerances:
//  * rope_inv_freq vs the fixtures' float32 `rope_inv_freq`: relative 1e-7,
//    i.e. less than one float32 ulp (2^-23 ~ 1.19e-7 relative at most); the test
//    additionally requires bit-identical values, which is what we get.
//  * rope_attention_factor vs the fixture's __metadata__ string: 1e-12 absolute
//    (the string is Python's repr of a double, so only formatting can differ).
//  * Independent double-precision formulas for default/linear/llama3/yarn:
//    relative 2e-7 (a few float32 roundings of ~6e-8 each).
#include "io/hf_config.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <numbers>

#include "core/error.h"
#include "core/testing.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"

namespace lq {
namespace {

using json = nlohmann::json;

template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected lq::Error, nothing was thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// A small valid Llama config, with `patch` applied as a JSON merge patch
// (a null value in the patch deletes the key).
std::string llama(const json& patch = json::object()) {
  json j = {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"vocab_size", 512},
            {"hidden_size", 64},
            {"intermediate_size", 192},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"max_position_embeddings", 4096},
            {"rms_norm_eps", 1e-5},
            {"hidden_act", "silu"},
            {"bos_token_id", 1},
            {"eos_token_id", 2}};
  j.merge_patch(patch);
  return j.dump();
}

std::string qwen(const json& patch = json::object()) {
  json p = {{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}};
  p.merge_patch(patch);
  return llama(p);
}

ModelConfig parse(const std::string& s, const std::string& gen = "") {
  return parse_model_config(s, "dir/config.json", gen);
}

TEST(HfConfig, LlamaValuesAndDefaults) {
  ModelConfig c = parse(llama());
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 192);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.q_dim(), 64);
  EXPECT_EQ(c.kv_dim(), 32);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 10000.0);  // default
  EXPECT_EQ(c.rope_scaling.type, RopeType::Default);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2}));
  EXPECT_EQ(c.quantization_method, "");
  EXPECT_EQ(c.raw_json, llama());
  EXPECT_EQ(rope_attention_factor(c), 1.0);

  // num_key_value_heads defaults to the number of heads (also when null).
  EXPECT_EQ(parse(llama({{"num_key_value_heads", nullptr}})).num_kv_heads, 4);
  // attention_bias covers q, k, v and o for Llama; mlp_bias is separate.
  ModelConfig b = parse(llama({{"attention_bias", true}, {"mlp_bias", true}, {"tie_word_embeddings", true}}));
  EXPECT_TRUE(b.attention_bias);
  EXPECT_TRUE(b.o_bias);
  EXPECT_TRUE(b.mlp_bias);
  EXPECT_TRUE(b.tie_word_embeddings);
  EXPECT_EQ(parse(llama({{"quantization_config", {{"quant_method", "fp8"}}}})).quantization_method, "fp8");
  EXPECT_EQ(parse(llama({{"bos_token_id", nullptr}})).bos_token_id, -1);
}

TEST(HfConfig, Qwen2Biases) {
  ModelConfig c = parse(qwen({{"attention_bias", false}, {"mlp_bias", true}}));
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_TRUE(c.attention_bias);  // Qwen2: q/k/v bias always
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_FALSE(c.tie_word_embeddings);  // Qwen2Config default
  expect_error([] { parse(qwen({{"use_sliding_window", true}})); }, {"dir/config.json", "use_sliding_window"});
}

TEST(HfConfig, HeadDimExplicitVsDerived) {
  EXPECT_EQ(parse(llama()).head_dim, 16);  // 64 / 4
  ModelConfig c = parse(llama({{"head_dim", 32}}));
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.q_dim(), 128);
  EXPECT_EQ(c.kv_dim(), 64);
  EXPECT_EQ(parse(llama({{"head_dim", 32}})).hidden_size, 64);
  // null head_dim counts as absent (merge_patch would delete the key, so patch the text).
  json j = json::parse(llama());
  j["head_dim"] = nullptr;
  EXPECT_EQ(parse(j.dump()).head_dim, 16);
  // Explicit head_dim lets hidden_size be indivisible by heads.
  EXPECT_EQ(parse(llama({{"hidden_size", 66}, {"head_dim", 16}})).head_dim, 16);
  expect_error([] { parse(llama({{"hidden_size", 66}})); }, {"dir/config.json", "'hidden_size' (66)", "head_dim"});
  expect_error([] { parse(llama({{"head_dim", 15}})); }, {"dir/config.json", "head_dim 15 is odd"});
}

TEST(HfConfig, EosIntListAndGenerationConfig) {
  EXPECT_EQ(parse(llama({{"eos_token_id", 7}})).eos_token_ids, (std::vector<int64_t>{7}));
  EXPECT_EQ(parse(llama({{"eos_token_id", {7, 8, 9}}})).eos_token_ids, (std::vector<int64_t>{7, 8, 9}));
  EXPECT_TRUE(parse(llama({{"eos_token_id", nullptr}})).eos_token_ids.empty());
  // generation_config.json overrides config.json (int or list) ...
  EXPECT_EQ(parse(llama(), R"({"eos_token_id": [128001, 128008, 128009]})").eos_token_ids,
            (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(parse(llama({{"eos_token_id", {7, 8}}}), R"({"eos_token_id": 5})").eos_token_ids,
            (std::vector<int64_t>{5}));
  // ... but only when it has the key.
  EXPECT_EQ(parse(llama(), R"({"bos_token_id": 1})").eos_token_ids, (std::vector<int64_t>{2}));
  expect_error([] { parse(llama({{"eos_token_id", "x"}})); }, {"dir/config.json", "'eos_token_id'", "integer"});
  expect_error([] { parse(llama({{"eos_token_id", {1, "x"}}})); }, {"dir/config.json", "'eos_token_id'"});
  expect_error([] { parse(llama(), R"({"eos_token_id": 5,})"); }, {"dir/generation_config.json", "invalid JSON"});
  expect_error([] { parse(llama(), R"({"eos_token_id": 2.5})"); }, {"dir/generation_config.json", "'eos_token_id'"});
}

TEST(HfConfig, Errors) {
  expect_error([] { parse(R"({"hidden_size": 64,, })"); }, {"dir/config.json", "invalid JSON at byte offset 19"});
  expect_error([] { parse("[]"); }, {"dir/config.json", "expected an object"});
  expect_error([] { parse(llama({{"hidden_size", nullptr}})); },
               {"dir/config.json", "required field 'hidden_size' is missing"});
  expect_error([] { parse(llama({{"hidden_size", "64"}})); }, {"dir/config.json", "'hidden_size'", "integer"});
  expect_error([] { parse(llama({{"hidden_size", 64.5}})); }, {"dir/config.json", "'hidden_size'", "integer"});
  expect_error([] { parse(llama({{"intermediate_size", 0}})); }, {"dir/config.json", "'intermediate_size' is 0"});
  expect_error([] { parse(llama({{"architectures", {"MistralForCausalLM"}}})); },
               {"dir/config.json", "'architectures'", "MistralForCausalLM", "not support"});
  expect_error([] { parse(llama({{"architectures", {"LlamaForCausalLM", "X"}}})); },
               {"dir/config.json", "'architectures'"});
  expect_error([] { parse(llama({{"model_type", "mistral"}})); }, {"dir/config.json", "'model_type' is 'mistral'"});
  expect_error([] { parse(llama({{"architectures", nullptr}, {"model_type", "gemma"}})); },
               {"dir/config.json", "'architectures' is missing", "gemma"});
  EXPECT_EQ(parse(llama({{"architectures", nullptr}})).arch, Arch::Llama);  // inferred from model_type
  expect_error([] { parse(llama({{"num_key_value_heads", 3}})); },
               {"dir/config.json", "'num_attention_heads' (4)", "'num_key_value_heads' (3)"});
  expect_error([] { parse(llama({{"hidden_act", "gelu"}})); }, {"dir/config.json", "'hidden_act' is 'gelu'"});
  expect_error([] { parse(llama({{"rms_norm_eps", 0}})); }, {"dir/config.json", "'rms_norm_eps'"});
  expect_error([] { parse(llama({{"rope_theta", -1}})); }, {"dir/config.json", "'rope_theta'"});
  expect_error([] { parse(llama({{"tie_word_embeddings", 1}})); }, {"dir/config.json", "'tie_word_embeddings'"});
  expect_error([] { parse(llama({{"quantization_config", 3}})); }, {"dir/config.json", "'quantization_config'"});
}

TEST(HfConfig, RopeScalingParsing) {
  // Both spellings of the type key.
  for (const char* key : {"rope_type", "type"}) {
    ModelConfig c = parse(llama({{"rope_scaling", {{key, "linear"}, {"factor", 2.0}}}}));
    EXPECT_EQ(c.rope_scaling.type, RopeType::Linear) << key;
    EXPECT_EQ(c.rope_scaling.factor, 2.0);
    ModelConfig y = parse(qwen({{"rope_scaling", {{key, "yarn"}, {"factor", 4.0}}}}));
    EXPECT_EQ(y.rope_scaling.type, RopeType::Yarn) << key;
    // original_max_position_embeddings falls back to max_position_embeddings.
    EXPECT_EQ(y.rope_scaling.original_max_position_embeddings, 4096);
  }
  // rope_type wins over the legacy type.
  EXPECT_EQ(parse(llama({{"rope_scaling", {{"rope_type", "default"}, {"type", "linear"}}}})).rope_scaling.type,
            RopeType::Default);
  // null rope_scaling = none.
  json j = json::parse(llama());
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse(j.dump()).rope_scaling.type, RopeType::Default);

  ModelConfig l = parse(llama({{"rope_scaling",
                                {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                 {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}}}));
  EXPECT_EQ(l.rope_scaling.type, RopeType::Llama3);
  EXPECT_EQ(l.rope_scaling.original_max_position_embeddings, 8192);

  ModelConfig y = parse(qwen({{"rope_scaling",
                               {{"rope_type", "yarn"}, {"factor", 4.0}, {"beta_fast", 16}, {"beta_slow", 2},
                                {"original_max_position_embeddings", 1024}, {"truncate", false},
                                {"attention_factor", 1.5}}}}));
  EXPECT_EQ(y.rope_scaling.beta_fast, 16.0);
  EXPECT_EQ(y.rope_scaling.beta_slow, 2.0);
  EXPECT_EQ(y.rope_scaling.original_max_position_embeddings, 1024);
  EXPECT_FALSE(y.rope_scaling.truncate);
  EXPECT_EQ(rope_attention_factor(y), 1.5);

  // transformers >= 5 layout: rope_parameters holds rope_theta and the scaling.
  ModelConfig v5 = parse(llama({{"rope_parameters", {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 5e5}}}}));
  EXPECT_EQ(v5.rope_theta, 5e5);
  EXPECT_EQ(v5.rope_scaling.type, RopeType::Linear);

  for (const char* bad : {"dynamic", "longrope", "su", "mrope"}) {
    expect_error([&] { parse(llama({{"rope_scaling", {{"rope_type", bad}, {"factor", 2.0}}}})); },
                 {"dir/config.json", "'rope_scaling.rope_type'", std::string("'") + bad + "'", "not support"});
  }
  expect_error([] { parse(llama({{"rope_scaling", {{"type", "ntk"}, {"factor", 2.0}}}})); },
               {"dir/config.json", "'rope_scaling.type' is 'ntk'"});
  expect_error([] { parse(llama({{"rope_scaling", {{"factor", 2.0}}}})); },
               {"dir/config.json", "'rope_scaling' has neither 'rope_type' nor 'type'"});
  expect_error([] { parse(llama({{"rope_scaling", "linear"}})); }, {"dir/config.json", "'rope_scaling'"});
  expect_error([] { parse(llama({{"rope_scaling", {{"rope_type", "linear"}}}})); },
               {"dir/config.json", "'rope_scaling.factor' is missing"});
  expect_error([] { parse(llama({{"rope_scaling", {{"rope_type", "linear"}, {"factor", 0.5}}}})); },
               {"dir/config.json", "'rope_scaling.factor'", ">= 1"});
  expect_error([] { parse(llama({{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}})); },
               {"dir/config.json", "'rope_scaling.low_freq_factor' is missing"});
  expect_error(
      [] {
        parse(llama({{"rope_scaling",
                      {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 4.0}, {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}}}}));
      },
      {"dir/config.json", "low_freq_factor", "high_freq_factor"});
  expect_error([] { parse(qwen({{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}, {"attention_factor", -1}}}})); },
               {"dir/config.json", "'rope_scaling.attention_factor'"});
}

// ---- RoPE numerics ------------------------------------------------------------

// Independent double-precision reference of transformers' formulas (no float32
// emulation): the float32 implementation must agree to a few float32 roundings.
std::vector<double> ref_default(double theta, int dim) {
  std::vector<double> v;
  for (int i = 0; i < dim; i += 2) v.push_back(1.0 / std::pow(theta, double(i) / dim));
  return v;
}

void expect_close_rel(const std::vector<float>& got, const std::vector<double>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_LE(std::abs(double(got[i]) - want[i]), rel * std::abs(want[i])) << "i=" << i << " got " << got[i]
                                                                           << " want " << want[i];
}

TEST(Rope, DefaultAndLinear) {
  ModelConfig c = parse(llama({{"rope_theta", 500000.0}, {"head_dim", 128}}));
  expect_close_rel(rope_inv_freq(c), ref_default(500000.0, 128), 2e-7);
  EXPECT_EQ(rope_inv_freq(c)[0], 1.0f);
  ModelConfig l = parse(llama({{"rope_theta", 500000.0}, {"head_dim", 128},
                               {"rope_scaling", {{"rope_type", "linear"}, {"factor", 4.0}}}}));
  const auto base = rope_inv_freq(c), lin = rope_inv_freq(l);
  // Division by 4 is exact in float32.
  for (size_t i = 0; i < base.size(); ++i) EXPECT_EQ(lin[i], base[i] / 4.0f) << i;
  EXPECT_EQ(rope_attention_factor(l), 1.0);
}

TEST(Rope, Llama3AgainstDoubleFormula) {
  // Llama-3.1-8B parameters, head_dim 128.
  ModelConfig c = parse(llama({{"rope_theta", 500000.0}, {"head_dim", 128},
                               {"rope_scaling",
                                {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                 {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}}}));
  std::vector<double> want = ref_default(500000.0, 128);
  int n_low = 0, n_mid = 0, n_high = 0;
  for (double& f : want) {
    const double wl = 2 * std::numbers::pi / f;
    if (wl < 8192.0 / 4) {
      ++n_high;
    } else if (wl > 8192.0) {
      f /= 8;
      ++n_low;
    } else {
      const double s = (8192.0 / wl - 1.0) / 3.0;
      f = (1 - s) * f / 8 + s * f;
      ++n_mid;
    }
  }
  // All three bands are exercised.
  EXPECT_GT(n_low, 0);
  EXPECT_GT(n_mid, 0);
  EXPECT_GT(n_high, 0);
  expect_close_rel(rope_inv_freq(c), want, 4e-7);  // extra roundings in the smoothing expression
  EXPECT_EQ(rope_attention_factor(c), 1.0);
}

TEST(Rope, YarnAttentionFactor) {
  auto cfg = [](json rs) { return parse(qwen({{"rope_scaling", rs}})); };
  EXPECT_DOUBLE_EQ(rope_attention_factor(cfg({{"type", "yarn"}, {"factor", 4.0}})), 0.1 * std::log(4.0) + 1.0);
  EXPECT_EQ(rope_attention_factor(cfg({{"type", "yarn"}, {"factor", 1.0}})), 1.0);  // get_mscale(<=1) = 1
  EXPECT_EQ(rope_attention_factor(cfg({{"type", "yarn"}, {"factor", 4.0}, {"attention_factor", 0.75}})), 0.75);
  // DeepSeek-style mscale / mscale_all_dim ratio.
  EXPECT_DOUBLE_EQ(rope_attention_factor(cfg({{"type", "yarn"}, {"factor", 40.0}, {"mscale", 1.0}, {"mscale_all_dim", 0.5}})),
                   (0.1 * std::log(40.0) + 1.0) / (0.05 * std::log(40.0) + 1.0));
  // Only one of the two -> plain get_mscale(factor).
  EXPECT_DOUBLE_EQ(rope_attention_factor(cfg({{"type", "yarn"}, {"factor", 40.0}, {"mscale", 0.7}})),
                   0.1 * std::log(40.0) + 1.0);
}

TEST(Rope, YarnAgainstDoubleFormula) {
  // Qwen2.5-style: theta 1e6, head_dim 128, factor 4, original context 32768.
  for (bool truncate : {true, false}) {
    ModelConfig c = parse(qwen({{"rope_theta", 1e6}, {"head_dim", 128},
                                {"rope_scaling", {{"type", "yarn"}, {"factor", 4.0}, {"truncate", truncate},
                                                  {"original_max_position_embeddings", 32768}}}}));
    const double d = 128, base = 1e6;
    auto cdim = [&](double rot) { return d * std::log(32768 / (rot * 2 * std::numbers::pi)) / (2 * std::log(base)); };
    double lo = cdim(32), hi = cdim(1);
    if (truncate) lo = std::floor(lo), hi = std::ceil(hi);
    lo = std::max(lo, 0.0);
    hi = std::min(hi, d - 1);
    std::vector<double> want = ref_default(base, 128);
    for (size_t i = 0; i < want.size(); ++i) {
      const double ramp = std::clamp((double(i) - lo) / (hi - lo), 0.0, 1.0);
      const double ef = 1 - ramp;  // extrapolation weight
      want[i] = want[i] / 4 * (1 - ef) + want[i] * ef;
    }
    expect_close_rel(rope_inv_freq(c), want, 4e-7);
  }
}

// ---- fixtures --------------------------------------------------------------------

void check_fixture_rope(const std::string& dir, const ModelConfig& c) {
  SafeTensors g = SafeTensors::open(dir + "/golden.safetensors");
  const TensorInfo& t = g.get("rope_inv_freq", DType::F32, {c.head_dim / 2});
  std::vector<float> want(size_t(t.numel()));
  std::memcpy(want.data(), t.data, t.nbytes);
  const std::vector<float> got = rope_inv_freq(c);
  ASSERT_EQ(got.size(), want.size());
  int bit_exact = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    // 1e-7 relative: < 1 float32 ulp (2^-23 ~ 1.19e-7) at the bottom of a binade.
    EXPECT_LE(std::abs(double(got[i]) - double(want[i])), 1e-7 * std::abs(double(want[i])))
        << dir << " i=" << i << " got " << got[i] << " want " << want[i];
    bit_exact += std::memcmp(&got[i], &want[i], 4) == 0;
  }
  ::testing::Test::RecordProperty("rope_inv_freq_bit_exact", bit_exact);
  EXPECT_EQ(bit_exact, int(got.size())) << dir << ": within tolerance but not bit-identical";
  // Attention factor: Python repr of a double in the metadata; 1e-12 absolute.
  const double af = std::stod(g.metadata().at("rope_attention_factor"));
  EXPECT_NEAR(rope_attention_factor(c), af, 1e-12) << dir;
}

TEST(HfConfigShared, TinyLlama31) {
  const std::string dir = ::lq::testing::fixture_dir("tiny-llama31");
  if (!file_exists(dir + "/config.json")) GTEST_SKIP() << dir << " absent";
  ModelConfig c = load_model_config(dir);
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 192);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeType::Llama3);
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2}));
  check_fixture_rope(dir, c);
  // README's printed values (7 significant digits) as an extra sanity check.
  const float readme[8] = {1, 0.1939228f, 0.03760603f, 0.007292665f, 0.000524846f, 3.428102e-05f, 6.64787e-06f,
                           1.289173e-06f};
  const auto got = rope_inv_freq(c);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(got[size_t(i)], readme[i], 1e-6 * readme[i]) << i;
}

TEST(HfConfigShared, TinyQwen25) {
  const std::string dir = ::lq::testing::fixture_dir("tiny-qwen25");
  if (!file_exists(dir + "/config.json")) GTEST_SKIP() << dir << " absent";
  ModelConfig c = load_model_config(dir);
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_EQ(c.intermediate_size, 160);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, RopeType::Yarn);  // spelled "type" in this config
  EXPECT_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 32768);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2}));
  check_fixture_rope(dir, c);
  EXPECT_NEAR(rope_attention_factor(c), 1.138629436111989, 1e-12);
  const float readme[8] = {1, 0.1778279f, 0.03162278f, 0.00421756f, 0.0005f, 4.445699e-05f, 7.905694e-06f,
                           1.405853e-06f};
  const auto got = rope_inv_freq(c);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(got[size_t(i)], readme[i], 1e-6 * readme[i]) << i;
  // Sensitivity: using max_position_embeddings (131072) for the correction range
  // (the pre-DeepSeek-V3 transformers behaviour) must change the result.
  ModelConfig old = c;
  old.rope_scaling.original_max_position_embeddings = c.max_position_embeddings;
  EXPECT_NE(rope_inv_freq(old), got);
}

TEST(HfConfig, LoadModelConfigFiles) {
  expect_error([] { load_model_config("/nonexistent_lq_dir"); }, {"/nonexistent_lq_dir/config.json", "not found"});
}

}  // namespace
}  // namespace lq
