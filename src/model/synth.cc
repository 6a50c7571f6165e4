#include "model/synth.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "core/rng.h"
#include "core/threads.h"

namespace lq {

namespace {

using json = nlohmann::json;

json llama_config(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv,
                  int64_t head_dim, double theta, double factor, bool tied) {
  json c = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"attention_bias", false},
            {"attention_dropout", 0.0}, {"bos_token_id", 128000}, {"eos_token_id", {128001, 128008, 128009}},
            {"head_dim", head_dim}, {"hidden_act", "silu"}, {"hidden_size", hidden}, {"initializer_range", 0.02},
            {"intermediate_size", inter}, {"max_position_embeddings", 131072}, {"mlp_bias", false},
            {"num_attention_heads", heads}, {"num_hidden_layers", layers}, {"num_key_value_heads", kv},
            {"pretraining_tp", 1}, {"rms_norm_eps", 1e-5},
            {"rope_scaling", {{"factor", factor}, {"high_freq_factor", 4.0}, {"low_freq_factor", 1.0},
                              {"original_max_position_embeddings", 8192}, {"rope_type", "llama3"}}},
            {"rope_theta", theta}, {"tie_word_embeddings", tied}, {"torch_dtype", "bfloat16"},
            {"use_cache", true}, {"vocab_size", vocab}};
  return c;
}

json qwen_config(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv,
                 bool tied, int64_t max_pos) {
  json c = {{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"attention_dropout", 0.0},
            {"bos_token_id", 151643}, {"eos_token_id", 151645}, {"hidden_act", "silu"}, {"hidden_size", hidden},
            {"initializer_range", 0.02}, {"intermediate_size", inter}, {"max_position_embeddings", max_pos},
            {"max_window_layers", layers}, {"num_attention_heads", heads}, {"num_hidden_layers", layers},
            {"num_key_value_heads", kv}, {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0},
            {"sliding_window", max_pos}, {"tie_word_embeddings", tied}, {"torch_dtype", "bfloat16"},
            {"use_cache", true}, {"use_sliding_window", false}, {"vocab_size", vocab}};
  return c;
}

// Shapes from the models' published config.json files.
std::map<std::string, json> presets() {
  std::map<std::string, json> p;
  p["llama-3.1-8b"] = llama_config(128256, 4096, 14336, 32, 32, 8, 128, 500000.0, 8.0, false);
  p["llama-3.1-70b"] = llama_config(128256, 8192, 28672, 80, 64, 8, 128, 500000.0, 8.0, false);
  p["llama-3.2-1b"] = llama_config(128256, 2048, 8192, 16, 32, 8, 64, 500000.0, 32.0, true);
  p["llama-3.2-3b"] = llama_config(128256, 3072, 8192, 28, 24, 8, 128, 500000.0, 32.0, true);
  p["qwen2.5-0.5b"] = qwen_config(151936, 896, 4864, 24, 14, 2, true, 32768);
  p["qwen2.5-1.5b"] = qwen_config(151936, 1536, 8960, 28, 12, 2, true, 32768);
  p["qwen2.5-3b"] = qwen_config(151936, 2048, 11008, 36, 16, 2, true, 32768);
  p["qwen2.5-7b"] = qwen_config(152064, 3584, 18944, 28, 28, 4, false, 32768);
  p["qwen2.5-14b"] = qwen_config(152064, 5120, 13824, 48, 40, 8, false, 32768);
  p["qwen2.5-32b"] = qwen_config(152064, 5120, 27648, 64, 40, 8, false, 32768);
  p["qwen2.5-72b"] = qwen_config(152064, 8192, 29568, 80, 64, 8, false, 32768);
  // A tiny model for quick tests and the README's smoke run.
  json tiny = llama_config(128256, 256, 768, 4, 8, 2, 32, 500000.0, 8.0, true);
  p["tiny-llama"] = tiny;
  return p;
}

struct SynthTensor {
  std::string name;
  std::vector<int64_t> shape;
  enum Kind { Normal, Ones } kind = Normal;
  float stddev = 0.02f;
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// The GPT-2 / byte-level BPE byte -> unicode code point map.
std::vector<int> byte_to_codepoint() {
  std::vector<int> m(256, -1);
  for (int b = 33; b <= 126; ++b) m[b] = b;
  for (int b = 161; b <= 172; ++b) m[b] = b;
  for (int b = 174; b <= 255; ++b) m[b] = b;
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (m[b] < 0) m[b] = 256 + n++;
  return m;
}

std::string utf8(int cp) {
  std::string s;
  if (cp < 0x80) s += char(cp);
  else if (cp < 0x800) { s += char(0xc0 | (cp >> 6)); s += char(0x80 | (cp & 0x3f)); }
  else { s += char(0xe0 | (cp >> 12)); s += char(0x80 | ((cp >> 6) & 0x3f)); s += char(0x80 | (cp & 0x3f)); }
  return s;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot write", path);
  f << text;
  if (!f) fail("{}: write failed", path);
}

// A byte-level BPE tokenizer.json with no merges: every byte is one token (ids
// 0..255), plus the family's special tokens at their real ids.
void write_byte_tokenizer(const std::string& dir, bool llama) {
  const auto m = byte_to_codepoint();
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[utf8(m[b])] = b;
  json added = json::array();
  auto add = [&](int id, const std::string& content) {
    added.push_back({{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  };
  const std::string split_regex =
      llama ? "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
            : "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  json post = nullptr;
  json tok_config;
  if (llama) {
    add(128000, "<|begin_of_text|>");
    add(128001, "<|end_of_text|>");
    add(128006, "<|start_header_id|>");
    add(128007, "<|end_header_id|>");
    add(128008, "<|eom_id|>");
    add(128009, "<|eot_id|>");
    post = {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair", json::array()},
            {"special_tokens", {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {128000}}, {"tokens", {"<|begin_of_text|>"}}}}}}};
    tok_config = {{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|eot_id|>"},
                  {"chat_template", "{{- bos_token }}<|start_header_id|>system<|end_header_id|>... (Llama-3.1 format)"}};
  } else {
    add(151643, "<|endoftext|>");
    add(151644, "<|im_start|>");
    add(151645, "<|im_end|>");
    tok_config = {{"bos_token", nullptr}, {"eos_token", "<|im_end|>"},
                  {"chat_template", "{%- for message in messages %}<|im_start|>... (ChatML format)"}};
  }
  json tok = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer",
               {{"type", "Sequence"},
                {"pretokenizers",
                 {{{"type", "Split"}, {"pattern", {{"Regex", split_regex}}}, {"behavior", "Isolated"}, {"invert", false}},
                  {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
              {"post_processor", post},
              {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
              {"model",
               {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                {"ignore_merges", llama}, {"vocab", vocab}, {"merges", json::array()}}}};
  write_text(dir + "/tokenizer.json", tok.dump());
  write_text(dir + "/tokenizer_config.json", tok_config.dump(2));
}

}  // namespace

std::vector<std::string> synth_preset_names() {
  std::vector<std::string> n;
  for (auto& [k, v] : presets()) n.push_back(k);
  return n;
}

ModelConfig synth_checkpoint(const SynthOptions& o) {
  auto all = presets();
  auto it = all.find(o.like);
  if (it == all.end()) {
    std::string names;
    for (auto& [k, v] : all) names += (names.empty() ? "" : ", ") + k;
    fail("synth: unknown model '{}'; known: {}", o.like, names);
  }
  json cfg = it->second;
  if (o.layers > 0) {
    cfg["num_hidden_layers"] = o.layers;
    if (cfg.contains("max_window_layers")) cfg["max_window_layers"] = o.layers;
  }
  LQ_CHECK(!o.out_dir.empty(), "synth: --out is required");
  ::mkdir(o.out_dir.c_str(), 0755);
  struct stat st {};
  LQ_CHECK(::stat(o.out_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "synth: cannot create directory {}", o.out_dir);

  const ModelConfig c = parse_model_config(cfg.dump(), o.out_dir + "/config.json");
  const bool llama = c.arch == Arch::Llama;
  write_text(o.out_dir + "/config.json", cfg.dump(2));
  json gen = {{"bos_token_id", cfg["bos_token_id"]}, {"eos_token_id", cfg["eos_token_id"]}, {"do_sample", false}};
  write_text(o.out_dir + "/generation_config.json", gen.dump(2));
  write_byte_tokenizer(o.out_dir, llama);

  // Tensor list. Linear weights ~ U(-a, a) with the std of N(0, 0.02); norms = 1.
  std::vector<SynthTensor> ts;
  const int64_t H = c.hidden_size;
  ts.push_back({"model.embed_tokens.weight", {c.vocab_size, H}});
  ts.push_back({"model.norm.weight", {H}, SynthTensor::Ones});
  if (!c.tie_word_embeddings) ts.push_back({"lm_head.weight", {c.vocab_size, H}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    ts.push_back({p + ".input_layernorm.weight", {H}, SynthTensor::Ones});
    ts.push_back({p + ".post_attention_layernorm.weight", {H}, SynthTensor::Ones});
    ts.push_back({p + ".self_attn.q_proj.weight", {c.q_dim(), H}});
    ts.push_back({p + ".self_attn.k_proj.weight", {c.kv_dim(), H}});
    ts.push_back({p + ".self_attn.v_proj.weight", {c.kv_dim(), H}});
    ts.push_back({p + ".self_attn.o_proj.weight", {H, c.q_dim()}});
    if (!llama) {
      ts.push_back({p + ".self_attn.q_proj.bias", {c.q_dim()}});
      ts.push_back({p + ".self_attn.k_proj.bias", {c.kv_dim()}});
      ts.push_back({p + ".self_attn.v_proj.bias", {c.kv_dim()}});
    }
    ts.push_back({p + ".mlp.gate_proj.weight", {c.intermediate_size, H}});
    ts.push_back({p + ".mlp.up_proj.weight", {c.intermediate_size, H}});
    ts.push_back({p + ".mlp.down_proj.weight", {H, c.intermediate_size}});
  }
  std::sort(ts.begin(), ts.end(), [](const SynthTensor& a, const SynthTensor& b) { return a.name < b.name; });

  // Header, then each tensor generated and written in turn (streaming: memory
  // stays at one block, whatever the model size).
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}, {"generator", "longquant synth"}, {"like", o.like},
                            {"seed", std::to_string(o.seed)}};
  int64_t off = 0;
  for (const auto& t : ts) {
    const int64_t nb = t.numel() * 2;
    header[t.name] = {{"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {off, off + nb}}};
    off += nb;
  }
  // Padded as write_safetensors pads: every tensor size here is a multiple of 64
  // bytes for real shapes, so the bf16 matrices are cache-line aligned.
  std::string hs = header.dump();
  hs.append(safetensors_header_padding(hs.size()), ' ');
  const std::string path = o.out_dir + "/model.safetensors";
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("{}: cannot write", tmp);
  auto put = [&](const void* p, size_t n) {
    if (std::fwrite(p, 1, n, f) != n) {
      std::fclose(f);
      std::remove(tmp.c_str());
      fail("{}: write failed (disk full?)", tmp);
    }
  };
  uint64_t hl = hs.size();
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = uint8_t(hl >> (8 * i));
  put(le, 8);
  put(hs.data(), hs.size());
  const int64_t block = int64_t(1) << 20;  // elements per generated block
  std::vector<uint16_t> buf;
  int64_t written = 0;
  for (size_t ti = 0; ti < ts.size(); ++ti) {
    const SynthTensor& t = ts[ti];
    const int64_t n = t.numel();
    for (int64_t b0 = 0; b0 < n; b0 += block) {
      const int64_t m = std::min(block, n - b0);
      buf.resize(size_t(m));
      if (t.kind == SynthTensor::Ones) {
        std::fill(buf.begin(), buf.end(), f32_to_bf16(1.0f));
      } else {
        const float a = t.stddev * 1.7320508f;  // U(-a, a) has std a/sqrt(3)
        // Each 64K-element piece has its own stream: same bytes for any thread count.
        const int64_t piece = 65536;
        parallel_for((m + piece - 1) / piece, [&](int64_t p0, int64_t p1) {
          for (int64_t p = p0; p < p1; ++p) {
            Rng rng(o.seed * 0x9e3779b97f4a7c15ull ^ (uint64_t(ti) << 40) ^ uint64_t(b0 / piece + p));
            const int64_t e = std::min(m, (p + 1) * piece);
            for (int64_t i = p * piece; i < e; ++i) {
              const float u = float(rng.next() >> 40) * (1.0f / 16777216.0f);  // [0, 1)
              buf[size_t(i)] = f32_to_bf16((2.0f * u - 1.0f) * a);
            }
          }
        });
      }
      put(buf.data(), size_t(m) * 2);
      written += m * 2;
      if (o.progress) o.progress(written, off);
    }
  }
  if (std::fclose(f) != 0) fail("{}: close failed", tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("{}: cannot rename to {}", tmp, path);
  return c;
}

}  // namespace lq
