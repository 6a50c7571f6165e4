// quant/algo_nf4.h: bitsandbytes NF4 quantization (what transformers' load_in_4bit /
// bnb_4bit_quant_type="nf4" stores), reproduced from bitsandbytes' CUDA kernels:
//
//   * blocks of `blocksize` (64) values over the row-major flattened weight [out*in];
//   * absmax[b] = max |x| over the block (fp32); values are normalised by multiplying with
//     the fp32 reciprocal 1.0f / absmax (not divided), as kQuantizeBlockwise does;
//   * the code is dQuantizeNF4's decision tree over the midpoints (strict '>': a value on
//     a midpoint takes the lower code; an all-zero block gives NaN comparisons -> code 0);
//   * element 2j is the HIGH nibble of byte j (an odd tail pads a 0 value -> code 7);
//   * double quantization (compress_statistics): offset = mean(absmax) (float32, computed
//     in double and rounded once), absmax - offset quantized blockwise with block 256 and
//     the signed dynamic map by dQuantize<0> (binary search over the sorted map, then the
//     nearer neighbour by midpoint; ties go to the pivot side exactly as the kernel does).
#pragma once

#include <array>
#include <cstdint>

#include "quant/formats.h"

namespace lq::quant {

struct Nf4Options {
  int64_t blocksize = 64;
  bool double_quant = true;
  int64_t nested_blocksize = 256;
};

// W: [out][in] fp32 (bf16 checkpoint values converted exactly).
Nf4Blocks quantize_nf4(const float* W, int64_t out, int64_t in, const Nf4Options& o);

// bitsandbytes' dQuantize<0>: index of the code value nearest to x (x already divided
// by the block's absmax), via its 7-step binary search over the 256 sorted values.
uint8_t bnb_dynamic_quantize(const std::array<float, 256>& code, float x);

}  // namespace lq::quant
