// quant/algo_fp8.h: FP8 E4M3FN weight quantization with per-output-channel scales
// (the weights of compressed-tensors "FP8_DYNAMIC" / W8A8 checkpoints).
//
//   scale[n] = max(absmax(W[n, :]) / 448, FLT_EPSILON)   (fp32; llm-compressor clamps the
//              scale at float32 eps so an all-zero row does not divide by zero),
//              then rounded to its storage type (F32 for compressed-tensors fp8)
//   code     = f32_to_fp8e4m3(clamp(W / scale, -448, 448))   (fp32 division, clamp, RNE)
// Activations are quantized per token at run time by the FP8 linear layer; nothing
// about them is decided here (input_scale stays nullopt = dynamic).
#pragma once

#include <cstdint>

#include "quant/algo_common.h"
#include "quant/formats.h"

namespace lq::quant {

Fp8Weight quantize_fp8(const float* W, int64_t out, int64_t in, ScaleStorage storage = ScaleStorage::F32);

}  // namespace lq::quant
