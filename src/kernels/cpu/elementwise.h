// kernels/cpu/elementwise.h: the small ops of a decoder layer.
// Each has a SIMD version (Highway, runtime dispatch) and a scalar *_ref.
#pragma once

#include <cstdint>

namespace lq::cpu {

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w[:]   (w: bf16 bits). fp32 math.
// out may alias x.
void rmsnorm(const float* x, const uint16_t* w, float eps, int64_t rows, int64_t dim, float* out);
void rmsnorm_ref(const float* x, const uint16_t* w, float eps, int64_t rows, int64_t dim, float* out);

// Rotate-half RoPE in place on x[T][H][D] (D even):
//   x1 = x[..., :D/2], x2 = x[..., D/2:];  x1' = x1*c - x2*s;  x2' = x2*c + x1*s
// with c = cos_tab[t][i], s = sin_tab[t][i] (tables [T][D/2] for the rows' own
// positions, computed by the caller and already including any YaRN attention factor).
void rope_apply(float* x, int64_t T, int64_t H, int64_t D, const float* cos_tab, const float* sin_tab);
void rope_apply_ref(float* x, int64_t T, int64_t H, int64_t D, const float* cos_tab,
                    const float* sin_tab);

// SwiGLU: out[i] = silu(gate[i]) * up[i],  silu(x) = x / (1 + exp(-x)). n elements.
// out may alias gate or up.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
void silu_mul_ref(const float* gate, const float* up, int64_t n, float* out);

// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);

// Round n floats to bf16 values (kept as float).
void round_to_bf16(float* x, int64_t n);

}  // namespace lq::cpu
