// kernels/cpu/x86.h: what the hand-written x86 kernels (amx_gemm, attention_bf16,
// qgemv_avx512) share: CPU feature detection and one AVX-512 register transpose.
// Highway-dispatched kernels do not need this; these few kernels use AMX tiles or
// AVX512-BF16 instructions directly and check for them at run time here.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace lq::cpu::x86 {

struct Features {
  bool avx512 = false;       // F, DQ, BW, VL, and the OS saves the AVX-512 state
  bool avx512_bf16 = false;  // AVX512_BF16 (vdpbf16ps), on top of `avx512`
  bool amx_bf16 = false;     // AMX-TILE + AMX-BF16 with AVX-512, and Linux granted the tile state
  bool amd = false;          // vendor "AuthenticAMD"
};
// Detected once (thread-safe); the first call asks Linux (>= 5.16) for permission
// to use the AMX tile data state when the CPU has AMX.
const Features& features();

// AMX tile configuration (LDTILECFG's 64-byte operand, palette 1).
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64);

// Configures all 8 AMX tiles as 16 rows x 64 bytes (palette 1) for this thread.
__attribute__((target("amx-tile"))) inline void configure_tiles_16x64() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // GCC 12 does not model LDTILECFG as reading all 64 bytes and can drop the colsb/rows
  // stores above (the tiles then stay unconfigured: SIGILL); a memory clobber keeps them.
  __asm__ volatile("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}

// fp32 -> bf16 (in the low 16 bits of each 32-bit lane), exactly as lq::f32_to_bf16:
// round to nearest even, NaN -> quiet NaN (no VCVTNEPS2BF16: it flushes denormals).
__attribute__((target("avx512f"))) inline __m512i to_bf16_lanes(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
  const __m512i r =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __m512i absu = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(absu, _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
}

// 32 fp32 values x[0..kv) (zeros beyond; kv may be <= 0 or >= 32) -> 16 bf16 pairs,
// pair p = (x[2p] in the low word, x[2p+1] in the high word), each rounded exactly as
// lq::f32_to_bf16 (to_bf16_lanes). The VNNI operand layout of AMX / VDPBF16PS.
__attribute__((target("avx512f,avx512bw"))) inline __m512i load_bf16_pairs(const float* x, int64_t kv) {
  const __mmask16 m0 = kv >= 16 ? __mmask16(0xffff) : kv > 0 ? __mmask16((1u << kv) - 1u) : __mmask16(0);
  const __mmask16 m1 = kv >= 32 ? __mmask16(0xffff) : kv > 16 ? __mmask16((1u << (kv - 16)) - 1u) : __mmask16(0);
  const __m512i r0 = to_bf16_lanes(_mm512_maskz_loadu_ps(m0, x));
  const __m512i r1 = to_bf16_lanes(_mm512_maskz_loadu_ps(m1, x + 16));
  // Word i of the result = low word of lane i of r0 (i < 16) / lane i-16 of r1.
  alignas(64) static const uint16_t kIdx[32] = {0,  2,  4,  6,  8,  10, 12, 14, 16, 18, 20,
                                                22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42,
                                                44, 46, 48, 50, 52, 54, 56, 58, 60, 62};
  return _mm512_permutex2var_epi16(r0, _mm512_load_si512(kIdx), r1);
}

// In-place transpose of a 16 x 16 matrix of 32-bit elements held in 16 rows.
__attribute__((target("avx512f"))) inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // Now r[4q + j] holds, in 128-bit lane L, elements (4L..4L+3) of column group
  // j of rows 4q..4q+3. Interleave 128-bit lanes across row quads.
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j) {
      const int a = 8 * h + j, b = 8 * h + 4 + j;
      t[8 * h + j] = _mm512_shuffle_i32x4(r[a], r[b], 0x88);
      t[8 * h + 4 + j] = _mm512_shuffle_i32x4(r[a], r[b], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0xdd);
  }
}

}  // namespace lq::cpu::x86
