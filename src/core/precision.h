// core/precision.h: the engine's two numerics modes.
#pragma once

#include <string>
#include <string_view>

namespace lq {

// F32:  activations, matmul inputs and the KV cache stay float32 everywhere
//       (the exact mode the golden tests rely on).
// BF16: matrix-multiply inputs (activations and attention q/k/v) are rounded to
//       bfloat16, the KV cache is bfloat16, accumulation stays float32. This is
//       what GPU inference computes and lets AMX / AVX512-BF16 run at full speed.
enum class Precision { F32, BF16 };

Precision parse_precision(std::string_view s);  // "fp32" | "bf16"; throws lq::Error otherwise
std::string_view precision_name(Precision p);

}  // namespace lq
