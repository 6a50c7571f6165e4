// model/quantize_model.h: quantize a BF16 Llama / Qwen2 checkpoint layer by layer.
//
// Methods: fp8 (compressed-tensors FP8_DYNAMIC), gptq-int8 / gptq-int4 (GPTQ), awq-int4
// (AWQ GEMM), nf4 (bitsandbytes), rtn-int8 / rtn-int4 (round to nearest, written in
// the GPTQ layout). The algorithms live in quant/algo_*.h; this file runs calibration
// data through the decoder and feeds each algorithm what it needs:
//
//   * rtn / fp8 / nf4: no calibration; each linear is converted and quantized in turn.
//   * gptq: true-sequential per decoder layer. The calibration hidden states enter the
//     layer; q/k/v share one Hessian (their common input) and are quantized together,
//     then the attention output is recomputed with the quantized q/k/v to build o's
//     Hessian, then gate/up (input: the residual stream after the quantized o), then
//     down (input: silu(gate) * up of the quantized gate/up); the layer's output, the
//     next layer's input, comes from the fully quantized layer. All in fp32.
//   * awq: one forward of the unquantized layer captures every linear's input and the
//     attention / MLP outputs; the four scale groups are searched on those (losses from
//     bf16 matmuls over bf16 weights, as AutoAWQ's fp16 forward), applied (norm weights
//     divided, with the linears multiplied by the scale the rounded bf16 norm actually
//     realises), clipping searched (not q/k), weights quantized; the next layer's input
//     comes from the unquantized layer, as in AutoAWQ.
//
// Memory: the source checkpoint stays mmapped; at any time one decoder layer's weights
// are held in fp32, plus the calibration activations (samples x len x width for the few
// tensors a method needs) and, for GPTQ, the layer's Hessians (double).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "quant/calib.h"
#include "quant/formats.h"

namespace lq {

enum class QuantMethod { Fp8, GptqInt8, GptqInt4, AwqInt4, Nf4, RtnInt8, RtnInt4 };

QuantMethod parse_quant_method(std::string_view s);  // throws lq::Error listing the names
std::string_view quant_method_name(QuantMethod m);
std::vector<std::string> quant_method_names();
bool method_needs_calibration(QuantMethod m);

struct QuantizeOptions {
  QuantMethod method = QuantMethod::GptqInt4;
  int64_t group_size = 128;  // -1 = per channel (affine methods)
  bool asym = false;         // gptq / rtn (awq is always asymmetric)
  bool act_order = false;    // gptq
  bool static_groups = false;  // gptq
  double damp = 0.01;        // gptq
  quant::CalibOptions calib;
  bool quantize_lm_head = false;
  bool show_progress = true;  // lq::Progress on stderr, per decoder layer with ETA
};

// Receives the quantized layers (prefix like "model.layers.3.mlp.up_proj", or "lm_head")
// and any float tensor the method changed (AWQ's scaled norm weights, bf16 bits of the
// source tensor's shape).
struct QuantizeSink {
  std::function<void(const std::string&, const quant::AffineGroups&)> affine;
  std::function<void(const std::string&, const quant::Nf4Blocks&)> nf4;
  std::function<void(const std::string&, const quant::Fp8Weight&)> fp8;
  std::function<void(const std::string&, const std::vector<uint16_t>&)> replace_bf16;
};

struct QuantizeSummary {
  nlohmann::json settings;       // every setting (recorded under quantization_config.longquant)
  nlohmann::json layers = nlohmann::json::array();  // per decoder layer: seconds, GPTQ loss/damp, AWQ ratios
  double seconds = 0;
  std::string calibration;       // one-line description ("" when not calibrated)
};

// The settings object for a run (method, bits, group size, ... and the calibration's
// description when `calib` is non-null).
nlohmann::json quantize_settings(const QuantizeOptions& o, const quant::CalibData* calib);

// Quantizes every decoder linear (and lm_head when asked) of `m`, which must hold float
// weights (bf16/f16/f32), reporting to `sink`. `calib` is required for gptq / awq.
QuantizeSummary quantize_layers(const Model& m, const QuantizeOptions& o, const quant::CalibData* calib,
                                const QuantizeSink& sink);

// The calibration forward (fp32, one fresh causal sequence at positions 0..T-1) over all
// decoder layers with the model's own weights: the hidden states [T][H] before the final
// norm. The driver's passes are built from the same pieces; exposed so tests can check
// them against Session.
std::vector<float> calibration_forward(const Model& m, const std::vector<int32_t>& ids);

// Reads `model_dir`, builds the calibration set, quantizes and writes `out_dir` in the
// method's Hugging Face layout (see quant/checkpoint.h). Returns the summary it recorded.
QuantizeSummary quantize_model(const std::string& model_dir, const std::string& out_dir, const QuantizeOptions& o);

}  // namespace lq
