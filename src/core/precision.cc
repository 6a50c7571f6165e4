#include "core/precision.h"

#include "core/error.h"

namespace lq {

Precision parse_precision(std::string_view s) {
  if (s == "fp32" || s == "f32" || s == "float32") return Precision::F32;
  if (s == "bf16" || s == "bfloat16") return Precision::BF16;
  fail("unknown precision '{}': expected fp32 or bf16", s);
}

std::string_view precision_name(Precision p) { return p == Precision::F32 ? "fp32" : "bf16"; }

}  // namespace lq
