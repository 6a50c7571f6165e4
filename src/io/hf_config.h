// io/hf_config.h: Hugging Face config.json / generation_config.json for the
// decoder families longquant runs (LlamaForCausalLM, Qwen2ForCausalLM).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lq {

enum class Arch { Llama, Qwen2 };

enum class RopeType { Default, Linear, Llama3, Yarn };

struct RopeScaling {
  RopeType type = RopeType::Default;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
  // yarn
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double attention_factor = 0.0;  // 0 = derive: 0.1 * ln(factor) + 1 (factor > 1), else 1
  double mscale = 0.0, mscale_all_dim = 0.0;  // read if present (deepseek-style); 0 = absent
  bool truncate = true;           // yarn 'truncate' (floor/ceil of the correction range)
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string architecture;  // as written, e.g. "LlamaForCausalLM"
  std::string model_type;    // "llama" / "qwen2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // explicit head_dim, else hidden_size / num_heads
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v bias (Qwen2 always; Llama if attention_bias)
  bool o_bias = false;          // o_proj bias (Llama attention_bias)
  bool mlp_bias = false;
  std::string torch_dtype;      // "bfloat16", ...
  std::string hidden_act = "silu";
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;  // from generation_config.json, else config.json
  std::string quantization_method;     // quantization_config.quant_method, "" if none
  std::string raw_json;                // config.json text, for writers and checksums

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
};

// Reads <dir>/config.json (required) and <dir>/generation_config.json (optional).
// Throws lq::Error naming the file and field for anything missing, malformed,
// inconsistent (e.g. heads not dividing), or unsupported (architecture, rope type, activation,
// Qwen2 use_sliding_window). The transformers-5 layout ("rope_parameters" holding rope_type and
// rope_theta) is accepted when "rope_scaling" is absent. `source` names config.json in errors;
// generation_config.json errors use the same directory.
ModelConfig load_model_config(const std::string& dir);
ModelConfig parse_model_config(const std::string& config_json, const std::string& source,
                               const std::string& generation_config_json = "");

// RoPE inverse frequencies (size head_dim/2) in float32 exactly as transformers
// computes them (default / linear / llama3 / yarn), and the attention factor that
// multiplies cos and sin (1 except YaRN).
std::vector<float> rope_inv_freq(const ModelConfig& c);
double rope_attention_factor(const ModelConfig& c);

}  // namespace lq
