// quant/algo_rtn.h: round-to-nearest baselines (rtn-int8 / rtn-int4).
//
// Same group format and parameters as GPTQ (quant/algo_common.h MinMaxQuantizer:
// per-group min/max including 0, symmetric by default), but every weight is simply
// rounded: no calibration data, no error feedback. group_size -1 = per output channel.
#pragma once

#include <cstdint>

#include "quant/algo_common.h"
#include "quant/formats.h"

namespace lq::quant {

struct RtnOptions {
  int bits = 4;
  int64_t group_size = 128;  // -1 = per channel; a group larger than `in` is one group per row
  bool sym = true;
  ScaleStorage storage = ScaleStorage::F16;
};

// W: [out][in] fp32. Groups run along `in` (g = k / group_size).
AffineGroups quantize_rtn(const float* W, int64_t out, int64_t in, const RtnOptions& o);

// The effective group size for a layer width (-1 or > in -> in). Throws on 0 / < -1.
int64_t effective_group_size(int64_t group_size, int64_t in);

}  // namespace lq::quant
