// io/hf_config.cc: config.json / generation_config.json parsing and RoPE frequencies.
//
// What: turns a Hugging Face config.json (LlamaForCausalLM or Qwen2ForCausalLM)
// into a validated ModelConfig, and computes the RoPE inverse frequencies and
// attention factor exactly as transformers' modeling_rope_utils does.
//
// Semantics followed (transformers, current main):
//  * num_key_value_heads defaults to num_attention_heads; head_dim defaults to
//    hidden_size / num_attention_heads (a null head_dim counts as absent).
//  * rope_scaling: "rope_type" wins over the legacy "type"; null = no scaling.
//    Supported: default, linear, llama3, yarn. Anything else is rejected, since
//    running a model with the wrong RoPE silently produces garbage.
//  * Qwen2 always has q/k/v biases and never o_proj / MLP biases. Llama's
//    attention_bias applies to q, k, v and o; mlp_bias to gate/up/down.
//  * eos_token_id from generation_config.json (if that file has the key)
//    overrides config.json's; either may be an int or a list.
//
// Numerics of rope_inv_freq: transformers computes inv_freq in float32 torch
// ops. We reproduce each op in float32 with the same order of operations;
// python scalars become float32 operands, as torch casts a wrapped scalar to
// the tensor's dtype. The one op that is not correctly rounded in torch is
// pow(float, float) (vectorised Sleef, <= 1 ulp); we compute it in double and
// round once to float, which agrees with the fixtures bit for bit (see
// hf_config_test.cc). No FMA contraction may happen here: the baseline ISA has
// no FMA and C++20 (ISO mode) keeps -ffp-contract=off.
#include "io/hf_config.h"

#include <cmath>
#include <limits>
#include <numbers>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/json_util.h"

namespace lq {

namespace {

using json = nlohmann::json;

// Field accessors that name the file and the field in every error.
// A JSON null counts as "absent" (transformers treats None as unset).
class Fields {
 public:
  Fields(const json& j, std::string source, std::string prefix = "")
      : j_(j), src_(std::move(source)), prefix_(std::move(prefix)) {}

  const json* find(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool has(const char* key) const { return find(key) != nullptr; }
  std::string name(const char* key) const { return prefix_ + key; }

  int64_t get_int(const char* key) const {
    const json* v = find(key);
    if (!v) fail("{}: required field '{}' is missing", src_, name(key));
    return as_int(*v, key);
  }
  int64_t get_int(const char* key, int64_t def) const {
    const json* v = find(key);
    return v ? as_int(*v, key) : def;
  }
  double get_double(const char* key) const {
    const json* v = find(key);
    if (!v) fail("{}: required field '{}' is missing", src_, name(key));
    return as_double(*v, key);
  }
  double get_double(const char* key, double def) const {
    const json* v = find(key);
    return v ? as_double(*v, key) : def;
  }
  bool get_bool(const char* key, bool def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_boolean())
      fail("{}: field '{}' is a JSON {}, expected true or false", src_, name(key), json_type_name(*v));
    return v->get<bool>();
  }
  std::string get_string(const char* key, const std::string& def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_string()) fail("{}: field '{}' is a JSON {}, expected a string", src_, name(key), json_type_name(*v));
    return v->get<std::string>();
  }
  // Int or list of ints (token ids); absent -> empty, *present = false.
  std::vector<int64_t> get_int_list(const char* key, bool* present) const {
    std::vector<int64_t> out;
    const json* v = find(key);
    *present = v != nullptr;
    if (!v) return out;
    if (v->is_array()) {
      for (const json& e : *v) out.push_back(as_int(e, key));
    } else {
      out.push_back(as_int(*v, key));
    }
    return out;
  }

 private:
  int64_t as_int(const json& v, const char* key) const {
    int64_t x = 0;
    if (!json_get_int(v, &x))
      fail("{}: field '{}' is {}, expected an integer", src_, name(key), v.is_primitive() ? v.dump() : json_type_name(v));
    return x;
  }
  double as_double(const json& v, const char* key) const {
    if (!v.is_number()) fail("{}: field '{}' is {}, expected a number", src_, name(key), v.dump());
    return v.get<double>();
  }

  const json& j_;
  std::string src_;
  std::string prefix_;
};

std::string generation_config_name(const std::string& source) {
  static constexpr std::string_view kCfg = "config.json";
  if (source.size() >= kCfg.size() && source.compare(source.size() - kCfg.size(), kCfg.size(), kCfg) == 0) {
    std::string dir = source.substr(0, source.size() - kCfg.size());
    if (dir.empty() || dir.back() == '/') return dir + "generation_config.json";
  }
  return source + " (generation_config.json)";
}

RopeScaling parse_rope(const json& rs, const std::string& src, const char* field, int64_t max_pos) {
  RopeScaling r;
  if (!rs.is_object()) fail("{}: field '{}' is a JSON {}, expected an object or null", src, field, json_type_name(rs));
  const std::string prefix = std::string(field) + ".";
  Fields f(rs, src, prefix);
  std::string type;
  const char* type_key = f.has("rope_type") ? "rope_type" : "type";
  if (!f.has(type_key)) fail("{}: field '{}' has neither 'rope_type' nor 'type'", src, field);
  type = f.get_string(type_key, "");
  auto need_factor = [&] {
    r.factor = f.get_double("factor");
    if (!(r.factor >= 1.0) || !std::isfinite(r.factor))
      fail("{}: field '{}factor' is {}, expected a finite number >= 1", src, prefix, r.factor);
  };
  if (type == "default") {
    r.type = RopeType::Default;
  } else if (type == "linear") {
    r.type = RopeType::Linear;
    need_factor();
  } else if (type == "llama3") {
    r.type = RopeType::Llama3;
    need_factor();
    r.low_freq_factor = f.get_double("low_freq_factor");
    r.high_freq_factor = f.get_double("high_freq_factor");
    r.original_max_position_embeddings = f.get_int("original_max_position_embeddings");
    if (!(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor) || !std::isfinite(r.high_freq_factor))
      fail("{}: fields '{}low_freq_factor' ({}) and '{}high_freq_factor' ({}) must satisfy 0 < low < high", src, prefix,
           r.low_freq_factor, prefix, r.high_freq_factor);
    if (r.original_max_position_embeddings <= 0)
      fail("{}: field '{}original_max_position_embeddings' is {}, expected > 0", src, prefix,
           r.original_max_position_embeddings);
  } else if (type == "yarn") {
    r.type = RopeType::Yarn;
    need_factor();
    // transformers: `rope_scaling.get("original_max_position_embeddings") or config.max_position_embeddings`
    r.original_max_position_embeddings = f.get_int("original_max_position_embeddings", 0);
    if (r.original_max_position_embeddings == 0) r.original_max_position_embeddings = max_pos;
    if (r.original_max_position_embeddings <= 0)
      fail("{}: field '{}original_max_position_embeddings' is {}, expected > 0", src, prefix,
           r.original_max_position_embeddings);
    r.attention_factor = f.get_double("attention_factor", 0.0);
    if (f.has("attention_factor") && !(r.attention_factor > 0))
      fail("{}: field '{}attention_factor' is {}, expected > 0", src, prefix, r.attention_factor);
    // transformers: `get("beta_fast") or 32`, so 0 also means the default.
    r.beta_fast = f.get_double("beta_fast", 0.0);
    if (r.beta_fast == 0) r.beta_fast = 32.0;
    r.beta_slow = f.get_double("beta_slow", 0.0);
    if (r.beta_slow == 0) r.beta_slow = 1.0;
    if (!(r.beta_fast > 0) || !(r.beta_slow > 0))
      fail("{}: fields '{}beta_fast' ({}) and '{}beta_slow' ({}) must be positive", src, prefix, r.beta_fast, prefix,
           r.beta_slow);
    r.mscale = f.get_double("mscale", 0.0);
    r.mscale_all_dim = f.get_double("mscale_all_dim", 0.0);
    r.truncate = f.get_bool("truncate", true);
  } else {
    fail("{}: field '{}{}' is '{}', which longquant does not support (supported: default, linear, llama3, yarn)", src,
         prefix, type_key, type);
  }
  return r;
}

}  // namespace

ModelConfig parse_model_config(const std::string& config_json, const std::string& source,
                               const std::string& generation_config_json) {
  ModelConfig c;
  c.raw_json = config_json;
  const json j = parse_json(config_json, source);
  if (!j.is_object()) fail("{}: top level is a JSON {}, expected an object", source, json_type_name(j));
  Fields f(j, source);

  // Architecture.
  c.model_type = f.get_string("model_type", "");
  if (const json* a = f.find("architectures")) {
    if (!a->is_array() || a->size() != 1 || !(*a)[0].is_string())
      fail("{}: field 'architectures' is {}, expected a list with one architecture name", source, a->dump());
    c.architecture = (*a)[0].get<std::string>();
  } else if (c.model_type == "llama") {
    c.architecture = "LlamaForCausalLM";
  } else if (c.model_type == "qwen2") {
    c.architecture = "Qwen2ForCausalLM";
  } else {
    fail("{}: field 'architectures' is missing and model_type '{}' is not supported", source, c.model_type);
  }
  std::string expect_type;
  if (c.architecture == "LlamaForCausalLM") {
    c.arch = Arch::Llama;
    expect_type = "llama";
  } else if (c.architecture == "Qwen2ForCausalLM") {
    c.arch = Arch::Qwen2;
    expect_type = "qwen2";
  } else {
    fail("{}: field 'architectures' is '{}', which longquant does not support (supported: LlamaForCausalLM, "
         "Qwen2ForCausalLM)",
         source, c.architecture);
  }
  if (c.model_type.empty()) c.model_type = expect_type;
  if (c.model_type != expect_type)
    fail("{}: field 'model_type' is '{}' but architecture {} needs '{}'", source, c.model_type, c.architecture,
         expect_type);

  // Sizes.
  c.vocab_size = f.get_int("vocab_size");
  c.hidden_size = f.get_int("hidden_size");
  c.intermediate_size = f.get_int("intermediate_size");
  c.num_layers = f.get_int("num_hidden_layers");
  c.num_heads = f.get_int("num_attention_heads");
  c.max_position_embeddings = f.get_int("max_position_embeddings");
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) fail("{}: field '{}' is {}, expected a positive integer", source, key, v);
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("intermediate_size", c.intermediate_size);
  positive("num_hidden_layers", c.num_layers);
  positive("num_attention_heads", c.num_heads);
  positive("max_position_embeddings", c.max_position_embeddings);
  c.num_kv_heads = f.get_int("num_key_value_heads", c.num_heads);
  positive("num_key_value_heads", c.num_kv_heads);
  if (c.num_heads % c.num_kv_heads != 0)
    fail("{}: field 'num_attention_heads' ({}) is not a multiple of 'num_key_value_heads' ({})", source, c.num_heads,
         c.num_kv_heads);
  if (f.has("head_dim")) {
    c.head_dim = f.get_int("head_dim");
    positive("head_dim", c.head_dim);
  } else {
    if (c.hidden_size % c.num_heads != 0)
      fail("{}: field 'hidden_size' ({}) is not a multiple of 'num_attention_heads' ({}) and no 'head_dim' is given",
           source, c.hidden_size, c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) fail("{}: head_dim {} is odd; RoPE needs an even head_dim", source, c.head_dim);

  // Norm, activation, RoPE.
  c.rms_norm_eps = f.get_double("rms_norm_eps", 1e-6);
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps))
    fail("{}: field 'rms_norm_eps' is {}, expected a small positive number", source, c.rms_norm_eps);
  c.hidden_act = f.get_string("hidden_act", "silu");
  if (c.hidden_act != "silu")
    fail("{}: field 'hidden_act' is '{}', but only 'silu' is supported", source, c.hidden_act);
  c.rope_theta = f.get_double("rope_theta", 10000.0);
  // transformers >= 5 writes {"rope_parameters": {"rope_type", "rope_theta", ...}} instead.
  const json* rp = f.find("rope_parameters");
  if (rp && rp->is_object() && rp->contains("rope_theta") && !f.has("rope_theta"))
    c.rope_theta = Fields(*rp, source, "rope_parameters.").get_double("rope_theta");
  if (!(c.rope_theta > 1.0) || !std::isfinite(c.rope_theta))
    fail("{}: field 'rope_theta' is {}, expected a finite number > 1", source, c.rope_theta);
  if (const json* rs = f.find("rope_scaling")) {
    c.rope_scaling = parse_rope(*rs, source, "rope_scaling", c.max_position_embeddings);
  } else if (rp) {
    c.rope_scaling = parse_rope(*rp, source, "rope_parameters", c.max_position_embeddings);
  }
  if (c.rope_scaling.type == RopeType::Yarn && c.head_dim < 4)
    fail("{}: yarn RoPE needs head_dim >= 4, got {}", source, c.head_dim);

  // Embeddings and biases.
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", false);
  if (c.arch == Arch::Qwen2) {
    c.attention_bias = true;  // Qwen2Attention: q/k/v_proj bias=True, o_proj bias=False
    c.o_bias = false;
    c.mlp_bias = false;  // Qwen2MLP has no bias option
    if (f.get_bool("use_sliding_window", false))
      fail("{}: field 'use_sliding_window' is true; sliding-window attention is not supported", source);
  } else {
    c.attention_bias = f.get_bool("attention_bias", false);
    c.o_bias = c.attention_bias;
    c.mlp_bias = f.get_bool("mlp_bias", false);
  }
  c.torch_dtype = f.get_string("torch_dtype", f.get_string("dtype", ""));

  // Special tokens.
  c.bos_token_id = f.get_int("bos_token_id", -1);
  bool present = false;
  c.eos_token_ids = f.get_int_list("eos_token_id", &present);
  if (!generation_config_json.empty()) {
    const std::string gsrc = generation_config_name(source);
    const json g = parse_json(generation_config_json, gsrc);
    if (!g.is_object()) fail("{}: top level is a JSON {}, expected an object", gsrc, json_type_name(g));
    std::vector<int64_t> eos = Fields(g, gsrc).get_int_list("eos_token_id", &present);
    if (present) c.eos_token_ids = std::move(eos);
  }

  // Quantization (recorded only).
  if (const json* q = f.find("quantization_config")) {
    if (!q->is_object())
      fail("{}: field 'quantization_config' is a JSON {}, expected an object", source, json_type_name(*q));
    c.quantization_method = Fields(*q, source, "quantization_config.").get_string("quant_method", "");
  }
  return c;
}

ModelConfig load_model_config(const std::string& dir) {
  const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  const std::string cfg = base + "config.json";
  if (!file_exists(cfg)) fail("{}: config.json not found (is this a Hugging Face model directory?)", cfg);
  const std::string text = read_file(cfg);
  const std::string gen_path = base + "generation_config.json";
  std::string gen;
  if (file_exists(gen_path)) {
    gen = read_file(gen_path);
    // An empty file would be indistinguishable from "absent" in parse_model_config.
    if (gen.find_first_not_of(" \t\r\n") == std::string::npos) fail("{}: file is empty", gen_path);
  }
  return parse_model_config(text, cfg, gen);
}

// ---------------------------------------------------------------------------
// RoPE

namespace {

// torch: base ** (torch.arange(0, dim, 2).float() / dim) in float32.
// The exponent (float(2i) / float(dim)) is one correctly rounded float32 division;
// the power is evaluated in double and rounded once.
std::vector<float> rope_pos_freqs(double theta, int64_t dim) {
  std::vector<float> p(size_t(dim / 2));
  const float base = float(theta);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float e = float(2 * i) / float(dim);
    p[size_t(i)] = float(std::pow(double(base), double(e)));
  }
  return p;
}

double yarn_get_mscale(double scale, double mscale) {
  if (scale <= 1) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t dim = c.head_dim;
  LQ_CHECK(dim > 0 && dim % 2 == 0, "rope_inv_freq: head_dim {} must be positive and even", dim);
  const RopeScaling& r = c.rope_scaling;
  const std::vector<float> pos = rope_pos_freqs(c.rope_theta, dim);
  const size_t half = pos.size();
  std::vector<float> inv(half);
  for (size_t i = 0; i < half; ++i) inv[i] = 1.0f / pos[i];

  switch (r.type) {
    case RopeType::Default:
      return inv;
    case RopeType::Linear: {
      const float factor = float(r.factor);
      for (float& v : inv) v = v / factor;
      return inv;
    }
    case RopeType::Llama3: {
      const float factor = float(r.factor);
      const double old_ctx = double(r.original_max_position_embeddings);
      const float low_wavelen = float(old_ctx / r.low_freq_factor);
      const float high_wavelen = float(old_ctx / r.high_freq_factor);
      const float two_pi = float(2 * std::numbers::pi);
      const float old_ctx_f = float(old_ctx);
      const float low_f = float(r.low_freq_factor);
      const float band = float(r.high_freq_factor - r.low_freq_factor);
      for (size_t i = 0; i < half; ++i) {
        const float wavelen = two_pi / inv[i];
        float v = wavelen > low_wavelen ? inv[i] / factor : inv[i];
        const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        if (medium) {
          const float smooth = (old_ctx_f / wavelen - low_f) / band;
          const float a = (1.0f - smooth) * v;
          const float b = a / factor;
          const float s = smooth * v;
          v = b + s;
        }
        inv[i] = v;
      }
      return inv;
    }
    case RopeType::Yarn: {
      const double base = c.rope_theta;
      const double d = double(dim);
      const double omax = double(r.original_max_position_embeddings > 0 ? r.original_max_position_embeddings
                                                                        : c.max_position_embeddings);
      auto correction_dim = [&](double rot) {
        return (d * std::log(omax / (rot * 2 * std::numbers::pi))) / (2 * std::log(base));
      };
      double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
      if (r.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, d - 1);
      double hi = high;
      if (low == high) hi += 0.001;  // transformers: prevent singularity
      const float denom = float(hi - low);
      const float low_f = float(low);
      const float factor = float(r.factor);
      for (size_t i = 0; i < half; ++i) {
        const float extrap = 1.0f / pos[i];
        const float interp = 1.0f / (factor * pos[i]);
        float ramp = (float(int64_t(i)) - low_f) / denom;
        ramp = std::min(std::max(ramp, 0.0f), 1.0f);
        const float ef = 1.0f - ramp;
        const float a = interp * (1.0f - ef);
        const float b = extrap * ef;
        inv[i] = a + b;
      }
      return inv;
    }
  }
  return inv;
}

double rope_attention_factor(const ModelConfig& c) {
  const RopeScaling& r = c.rope_scaling;
  if (r.type != RopeType::Yarn) return 1.0;
  if (r.attention_factor > 0) return r.attention_factor;
  if (r.mscale != 0 && r.mscale_all_dim != 0)
    return yarn_get_mscale(r.factor, r.mscale) / yarn_get_mscale(r.factor, r.mscale_all_dim);
  return yarn_get_mscale(r.factor, 1.0);
}

}  // namespace lq
