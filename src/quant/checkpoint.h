// quant/checkpoint.h: quantized checkpoints on disk, in the Hugging Face layouts
// that vLLM and transformers load, converted to and from quant/formats.h.
//
// Layouts (docs/quant-formats.md has the byte-level details):
//   Gptq      qweight I32 [K*bits/32, N] (packed along K, LSB first), qzeros I32
//             [G, N*bits/32] ('zero minus one' in v1, plain in gptq_v2), scales F16
//             [G, N], g_idx I32 [K]; quantize_config.json + quantization_config.
//   Awq       (GEMM) qweight I32 [K, N/8] with the nibble order 0,2,4,6,1,3,5,7,
//             qzeros I32 [K/g, N/8] (same order, no offset), scales F16 [K/g, N].
//   BnbNf4    bitsandbytes 4-bit: weight U8 [N*K/2, 1], weight.absmax (F32, or U8
//             codes with double quant), weight.quant_map F32 [16], weight.nested_absmax,
//             weight.nested_quant_map F32 [256], weight.quant_state.bitsandbytes__nf4
//             (U8 bytes of a JSON object).
//   CtFp8     compressed-tensors float-quantized: weight F8_E4M3 [N, K], weight_scale
//             ([], [1] or [N, 1]; BF16/F16/F32), optional input_scale.
//   CtPacked  compressed-tensors pack-quantized (w4a16 / w8a16): weight_packed I32
//             [N, K*bits/32] (packed along K, LSB first, offset-binary), weight_scale
//             [N, G], weight_shape I64 [2], optional weight_g_idx I32 [K] and
//             weight_zero_point (packed along N).
//
// Readers take an opened SafeTensors and the parsed QuantScheme; each throws
// lq::Error naming the file, tensor and field on any mismatch.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "quant/formats.h"

namespace lq::quant {

enum class CheckpointFormat { Gptq, Awq, BnbNf4, CtFp8, CtPacked };

// "gptq", "awq", "bnb-nf4", "ct-fp8", "ct-packed"; parse throws lq::Error on others.
std::string_view format_name(CheckpointFormat f);
CheckpointFormat parse_checkpoint_format(std::string_view s);

// Weight family a format stores.
enum class WeightFamily { Float, Affine, Nf4, Fp8 };

// What the readers need from config.json's quantization_config.
struct QuantScheme {
  std::string source;           // "<dir>/config.json", for messages
  std::string quant_method;     // as written: gptq | awq | bitsandbytes | compressed-tensors | fp8
  CheckpointFormat format = CheckpointFormat::Gptq;
  // Affine formats (gptq, awq, ct-packed):
  int bits = 4;
  int64_t group_size = 128;     // -1 in the config = per channel
  bool sym = true;
  bool desc_act = false;
  bool gptq_v2 = false;         // checkpoint_format / format == "gptq_v2": zeros stored without offset
  // compressed-tensors fp8:
  std::string weight_strategy;  // "channel" | "tensor"
  bool act_dynamic = true;      // input_activations dynamic (per token) vs static (per tensor)
  std::string act_strategy;     // "token" | "tensor"
};

// Parses a quantization_config object. Unknown methods, formats or settings throw
// lq::Error "<source>: quantization_config.<field> ..." naming the field.
QuantScheme parse_quant_scheme(const nlohmann::json& qc, const std::string& source);
// From a loaded ModelConfig (its raw config.json text); nullopt if not quantized.
std::optional<QuantScheme> quant_scheme_of(const ModelConfig& cfg, const std::string& source);

// Which family the linear layer `prefix` is stored in (Float when the checkpoint
// keeps it unquantized, e.g. lm_head; detected from the tensors present).
WeightFamily stored_family(const SafeTensors& st, const QuantScheme& s, const std::string& prefix);

// Readers (prefix like "model.layers.0.mlp.up_proj"; out/in from config.json).
AffineGroups read_affine(const SafeTensors& st, const QuantScheme& s, const std::string& prefix, int64_t out,
                         int64_t in);
Nf4Blocks read_nf4(const SafeTensors& st, const QuantScheme& s, const std::string& prefix, int64_t out,
                   int64_t in);
Fp8Weight read_fp8(const SafeTensors& st, const QuantScheme& s, const std::string& prefix, int64_t out,
                   int64_t in);

// One tensor as it goes to disk.
struct EncodedTensor {
  std::string name;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Encoders of one layer into a format's tensors (the writer uses these; exposed for
// tests). Scales are rounded (RNE) to the on-disk type (F16 for GPTQ/AWQ, BF16 for
// ct-packed, F32 for ct-fp8 and NF4), so pass f16/bf16-exact scales (see
// round_scales()) when the dequantized weights must survive bit-identically.
// GPTQ: `gptq_v2` stores zeros without the v1 '-1' offset. Throws lq::Error if the
// weight cannot be represented (e.g. AWQ with act-order, a v1 zero of 0).
std::vector<EncodedTensor> encode_gptq(const AffineGroups& w, const std::string& prefix, bool gptq_v2);
std::vector<EncodedTensor> encode_awq(const AffineGroups& w, const std::string& prefix);
std::vector<EncodedTensor> encode_ct_packed(const AffineGroups& w, const std::string& prefix);
std::vector<EncodedTensor> encode_bnb_nf4(const Nf4Blocks& w, const std::string& prefix,
                                          const std::string& compute_dtype = "bfloat16");
std::vector<EncodedTensor> encode_ct_fp8(const Fp8Weight& w, const std::string& prefix);

// Rounds an AffineGroups' scales in place to what `f` stores on disk (F16 / BF16),
// so that quantizing against the rounded scales makes the round trip exact.
void round_scales(AffineGroups& w, CheckpointFormat f);
// The float value a scale takes after storing it in format f.
float stored_scale(float s, CheckpointFormat f);

// Writes a quantized copy of a model directory.
//
//   QuantizedCheckpointWriter w(src_dir, out_dir, {CheckpointFormat::Gptq, settings});
//   for each linear layer (any order, e.g. as each layer is quantized):
//     w.add("model.layers.0.self_attn.q_proj", affine_groups);   // encoded now,
//   w.finish();                                                  // written here
//
// add() encodes immediately and keeps only the encoded bytes, so memory is the
// quantized model's size; the source checkpoint stays mmapped. finish() writes
//   out_dir/model.safetensors: every source tensor except '<prefix>.weight' of the
//       added layers (embeddings, norms, biases, lm_head unless added), plus the
//       encoded tensors;
//   out_dir/config.json: the source config with quantization_config (the format's
//       own fields, which the reader needs, plus "longquant": settings verbatim);
//       tie_word_embeddings is set false when lm_head is added;
//   out_dir/quantize_config.json (GPTQ);
//   copies of generation_config.json, tokenizer*.json, tokenizer.model,
//   special_tokens_map.json, chat_template.* when present.
// Format-level settings are taken from the added weights (bits, group size, sym,
// act-order, fp8 scale strategy) and must agree across layers (else lq::Error).
// Settings keys copied to the format's top level when present: damp_percent,
// true_sequential, static_groups (GPTQ); the rest live under "longquant".
// A GPTQ layer with a zero point of 0 (unrepresentable in v1) makes the whole
// checkpoint gptq_v2 (checkpoint_format recorded).
class QuantizedCheckpointWriter {
 public:
  struct Options {
    CheckpointFormat format = CheckpointFormat::Gptq;
    nlohmann::json settings = nlohmann::json::object();
    bool copy_tokenizer = true;
  };
  QuantizedCheckpointWriter(const std::string& src_dir, const std::string& out_dir, Options opt);
  ~QuantizedCheckpointWriter();

  void add(const std::string& prefix, const AffineGroups& w);  // Gptq, Awq, CtPacked
  void add(const std::string& prefix, const Nf4Blocks& w);     // BnbNf4
  void add(const std::string& prefix, const Fp8Weight& w);     // CtFp8
  void finish();

  int64_t layers_added() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lq::quant
