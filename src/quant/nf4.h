// quant/nf4.h: bitsandbytes NF4 constants and helpers.
//
// NF4 code table: the 16 float32 values of bitsandbytes' get_4bit_type("nf4")
// (the QLoRA normal-float quantiles normalised to [-1, 1]).
// Dynamic map: bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7,
// total_bits=8), the 256-entry code used to 8-bit quantize the absmax values in
// double quantization; reproduced with float32 arithmetic the way torch computes it
// (linspace from both ends, midpoints, times a float32 power of ten), then sorted.
// Checkpoints carry both tables (quant_map, nested_quant_map); readers use the
// stored tables and check them against these.
#pragma once

#include <array>
#include <cstdint>

#include "quant/formats.h"

namespace lq::quant {

inline constexpr std::array<float, 16> kNf4Code = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

// The code bitsandbytes' dQuantizeNF4 picks for a value already divided by its
// block's absmax: a decision tree over the midpoints between codes with strict '>'
// comparisons, so a value exactly on a midpoint takes the LOWER code.
uint8_t nf4_nearest(float x);

// bitsandbytes' signed dynamic 8-bit map (256 sorted float32 values, -1 .. 1).
const std::array<float, 256>& bnb_dynamic_map();

// Fills w.absmax from the double-quantized fields:
//   absmax[b] = float(DYN[absmax_q[b]] * nested_absmax[b / nested_blocksize]) + offset
// (two fp32 roundings, like bitsandbytes' dequantize_blockwise followed by += offset).
// `dyn` is the map stored in the checkpoint (nested_quant_map).
void nf4_decode_absmax(Nf4Blocks& w, const std::array<float, 256>& dyn);

// Nibble i of the packed bytes: element 2j is the HIGH nibble of byte j.
inline uint8_t nf4_nibble(const uint8_t* packed, int64_t i) {
  const uint8_t b = packed[i >> 1];
  return (i & 1) ? uint8_t(b & 0x0f) : uint8_t(b >> 4);
}

}  // namespace lq::quant
