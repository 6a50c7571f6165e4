// kernels/cpu/amx_gemm.cc: AMX-BF16 GEMM, Y[M, N] = bf16(X)[M, K] · W[N, K]^T.
//
// Why: oneDNN 2.6 brgemm reaches ~1.2-1.45 TFLOP/s for the prefill shapes on
// the 2-core SPR VM; this kernel 1.45-1.7 (docs/kernels-matmul.md). It computes
// the transposed product Y^T = W · X^T so that the checkpoint's W[N, K] is the
// AMX "A" operand, whose tiles are plain row-major 16 x 32 bf16 blocks of W (no
// VNNI re-layout of W).
//
// Per call:
//   1. X is rounded to bf16 (RNE, NaN -> quiet NaN: bit-exact with
//      core/dtype.h f32_to_bf16, done with AVX-512 integer ops; the hardware
//      VCVTNE2PS2BF16 is not used because it flushes denormals) and packed into
//      the VNNI "B" layout: for each block of 16 rows m and each k pair p, one
//      32-bit unit [x[m][2p], x[m][2p+1]]; a B tile (16 pairs x 16 m) is 1 KiB
//      contiguous. M and K are zero-padded to multiples of 32.
//   2. Register block: 2 A tiles (32 rows n) x 2 B tiles (32 columns m) ->
//      4 C tiles (fp32, 16 n x 16 m); tiles 0-3 = C, 4-5 = A, 6-7 = B.
//      Loops: K blocks of kb -> M blocks of mb (the packed X block, mb x kb
//      bf16 = 1 MiB, stays in the 2 MiB L2; see blocking_for) -> 32-row N blocks (claimed
//      dynamically by the threads) -> 32-column m blocks -> k steps of 32.
//   3. A tiles come straight from W (stride 2K bytes) when W is 64-byte aligned
//      and K a multiple of 32, so that every tile row is one whole cache line
//      (bf16 only, full 32-row N blocks). Otherwise, and for the N tail and FP8,
//      the 32 x kb piece of W is copied into a 64-byte aligned per-thread
//      scratch panel (128 KiB, transient, reused; nothing of W is kept across
//      calls) laid out tile after tile, zero-padded past N and K, so no tile reads
//      outside W; unaligned tile rows cost ~1.4x, more than the copy. The W
//      rows of the next N block are prefetched into L2 meanwhile (both paths).
//   4. With several K blocks, a block's C tiles are stored after each K block but
//      the last to a partial-sum buffer in tile layout and loaded from it at the
//      start of the next (prefetched into L1 meanwhile): TDPBF16PS accumulates
//      through the whole K, exactly as with one K block. After the last K block
//      they are stored to one of two 4 KiB buffers; the AVX-512 epilogue (16x16
//      transpose, masked row stores into Y for the M/N tails, or adds into Y in
//      add mode) of a block runs during the next block, one C tile after each of
//      its first four groups of 8 k steps, so that AMX work is queued beside
//      every part (whole epilogue after 8 steps: +6% over none; in four parts:
//      another +5%).
//   5. SwiGLU mode (W2 = up weights): per block both products, and an epilogue
//      that combines them with silu_mul into H: fp32 rows into Y, or (packed
//      mode, hp) bf16 pairs in the packed X layout of step 1, which the next
//      GEMM (the down projection) takes as its X without packing.
// FP8 weights (gemm_fp8w_amx): the same kernel; step 3 converts the E4M3 codes
// to their exact bf16 values while it copies them into the panel (AVX-512:
// normal codes by integer arithmetic on the bits, the 8 subnormal magnitudes by
// a VPERMW table lookup), so no bf16 copy of W exists.
// Threads: lq::parallel_run; 32-row N blocks are claimed dynamically within
// each (K block, M block) phase (see run_worker; the shared VM's cores are
// often unequally loaded); every thread configures its own tiles. Each output
// is accumulated in an order that depends neither on the thread count nor on
// which thread claims it: results are identical for any number of threads.
// Numerics: TDPBF16PS forms exact bf16 x bf16 products, adds pairs and
// accumulates in fp32 (denormal bf16 inputs are treated as zero by the
// hardware, as in oneDNN's AMX path); the tile accumulates through all of K
// (partial sums between K blocks are stored and reloaded exactly), so the
// blocking does not change any bit. Error is within the fp32 summation bound
// used by matmul_test.cc.
// ISA: only the functions marked LQ_AMX_FN are compiled for AMX/AVX-512 (GCC
// target attributes), so no AMX or AVX-512 instruction can leak into inline
// functions shared with other translation units; they are called only after
// amx_available() has checked the CPU and obtained the tile permission.

#include "kernels/cpu/amx_gemm.h"

// GCC 12 warns "__Y is used uninitialized" inside its own avx512fintrin.h for the
// _mm512_undefined_* idiom of the shuffles in x86::transpose16 (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/x86.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/threads.h"

// GCC 12's AVX-512 intrinsics build their "undefined" pass-through operands as
// self-initialised locals, which -Wuninitialized reports once they are inlined
// into target-attributed functions; the values are never used.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define LQ_AMX_FN __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw")))

namespace lq::cpu {

namespace {

// Blocking: K blocks of kb, M blocks of mb rows; the packed X block (mb x kb bf16)
// is 1 MiB, half the 2 MiB L2: 2048 x 256, except 2048 < K <= 4096 (8B-class
// models): 4096 x 128, one K block, which the fused SwiGLU needs. Since the
// K-block partial sums stay in tile layout (run_worker), results do not depend on
// the blocking. Down projection of llama-3.2-1b (K = 8192) in the forward, per
// 512-token prefill, with the threads on separate M blocks (run_worker): 2048 x
// 256 107-113 ms, 1024 x 512 115-121, 1024 x 256 119-128, 4096 x 128 134-140
// (interleaved runs). (Without that, 1024 x 512 had been best: 133-137 vs 142-147.)
struct Blocking {
  int64_t kb, mb;
};
// amx_set_blocking (tests), else LQ_AMX_BLOCK="kb,mb" (multiples of 32, tuning
// experiments), overrides it.
std::atomic<int64_t> g_set_kb{0}, g_set_mb{0};
inline Blocking blocking_for(int64_t K) {
  static const Blocking env = [] {
    long a = 0, b = 0;
    const char* e = std::getenv("LQ_AMX_BLOCK");
    if (e && std::sscanf(e, "%ld,%ld", &a, &b) == 2 && a > 0 && b > 0 && a % 32 == 0 && b % 32 == 0)
      return Blocking{a, b};
    return Blocking{0, 0};
  }();
  const int64_t skb = g_set_kb.load(std::memory_order_relaxed), smb = g_set_mb.load(std::memory_order_relaxed);
  if (skb > 0 && smb > 0) return Blocking{skb, smb};
  if (env.kb > 0) return env;
  return K > 2048 && K <= 4096 ? Blocking{4096, 128} : Blocking{2048, 256};
}

// ---- detection ------------------------------------------------------------


// ---- AVX-512 helpers ------------------------------------------------------


// Packs rows [16 j, 16 j + 16) of X into the VNNI B layout (see file comment):
// xp32[(j * KP2 + p) * 16 + i] = pair(X[16 j + i], p), KP2 = Kp / 2.
LQ_AMX_FN void pack_x_block(const float* X, int64_t M, int64_t K, int64_t Kp, int64_t j,
                            uint32_t* xp32) {
  const int64_t KP2 = Kp / 2;
  __m512i r[16];
  for (int64_t k0 = 0; k0 < Kp; k0 += 32) {
    const int64_t kv = std::min<int64_t>(32, K - k0);
    for (int i = 0; i < 16; ++i) {
      const int64_t m = 16 * j + i;
      r[i] = m < M ? x86::load_bf16_pairs(X + m * K + k0, kv) : _mm512_setzero_si512();
    }
    x86::transpose16(r);
    uint32_t* dst = xp32 + (j * KP2 + k0 / 2) * 16;
    for (int p = 0; p < 16; ++p) _mm512_storeu_si512(dst + 16 * p, r[p]);
  }
}

// ---- AMX kernel -----------------------------------------------------------


struct Problem {
  int64_t M, K, N, Mp, Kp;
  const uint16_t* W;      // bf16 weights, or null when W8 is used
  const uint8_t* W8;      // E4M3 weights (converted while packing), or null
  const uint16_t* xp;     // packed X, Mp x Kp bf16
  float* Y;
  int64_t kb, mb;         // blocking (blocking_for)
  const uint16_t* W2 = nullptr;  // SwiGLU mode: up weights [N, K] (W = gate); Y = silu(X W^T) * (X W2^T)
  uint32_t* hp = nullptr;        // SwiGLU mode with packed output: H goes here (B layout, Np/2 pairs), not to Y
  int64_t hKP2 = 0;              // pairs per 16-row group of hp (Np / 2)
  bool add = false;              // Y += product (the residual connection) instead of Y = product
};

// Writes v's first nv lanes (final values) to y: streaming store when the row is a
// whole aligned 64-byte line (no read-for-ownership of Y, no eviction of the
// packed X block from L2; run_worker fences before Y is read), else a masked store.
LQ_AMX_FN inline void store_row(float* y, __m512 v, int64_t nv, __mmask16 mask) {
  if (nv == 16 && (reinterpret_cast<uintptr_t>(y) & 63) == 0) _mm512_stream_ps(y, v);
  else _mm512_mask_storeu_ps(y, mask, v);
}

// Writes C tile c (0-3) of a 32 x 32 block (final sums) to Y[m0.., n0..], or adds
// it (pr.add: y + c, the one IEEE addition add_inplace does on the stored product).
LQ_AMX_FN inline void store_tile(const Problem& pr, const float* cbuf, int64_t n0, int64_t m0, int c) {
  const int64_t nt = n0 + 16 * (c >> 1), mt = m0 + 16 * (c & 1);
  const int64_t nv = std::min<int64_t>(16, pr.N - nt);
  if (nv <= 0 || mt >= pr.M) return;
  const __mmask16 mask = nv >= 16 ? __mmask16(0xffff) : __mmask16((1u << nv) - 1u);
  __m512i r[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_load_si512(cbuf + 256 * c + 16 * i);
  x86::transpose16(r);
  const int64_t mv = std::min<int64_t>(16, pr.M - mt);
  for (int64_t j = 0; j < mv; ++j) {
    float* y = pr.Y + (mt + j) * pr.N + nt;
    if (pr.add) _mm512_mask_storeu_ps(y, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, y), _mm512_castsi512_ps(r[j])));
    else store_row(y, _mm512_castsi512_ps(r[j]), nv, mask);
  }
}


// SwiGLU epilogue of a 32 x 32 block (one K block: the sums are final): the gate
// and up C tiles are transposed into [32 m][32 n] buffers, cpu::silu_mul (the
// op the unfused path runs, so the bits are the same) combines them, and the
// rows go to Y (streaming stores where whole aligned 64-byte rows).
LQ_AMX_FN inline void store_block_swiglu(const Problem& pr, const float* cg, const float* cu, int64_t n0,
                                         int64_t m0) {
  alignas(64) float g[32 * 32], u[32 * 32], h[32 * 32];
  for (int c = 0; c < 4; ++c) {
    const int nb = 16 * (c >> 1), mbk = 16 * (c & 1);
    __m512i rg[16], ru[16];
    for (int i = 0; i < 16; ++i) {
      rg[i] = _mm512_load_si512(cg + 256 * c + 16 * i);
      ru[i] = _mm512_load_si512(cu + 256 * c + 16 * i);
    }
    x86::transpose16(rg);
    x86::transpose16(ru);
    for (int j = 0; j < 16; ++j) {
      _mm512_store_si512(g + (mbk + j) * 32 + nb, rg[j]);
      _mm512_store_si512(u + (mbk + j) * 32 + nb, ru[j]);
    }
  }
  silu_mul(g, u, 32 * 32, h);
  const int64_t mv = std::min<int64_t>(32, pr.M - m0);
  for (int half = 0; half < 2; ++half) {
    const int64_t nt = n0 + 16 * half;
    const int64_t nv = std::min<int64_t>(16, pr.N - nt);
    if (nv <= 0) continue;
    const __mmask16 mask = nv >= 16 ? __mmask16(0xffff) : __mmask16((1u << nv) - 1u);
    for (int64_t j = 0; j < mv; ++j) {
      store_row(pr.Y + (m0 + j) * pr.N + nt, _mm512_load_ps(h + j * 32 + 16 * half), nv, mask);
    }
  }
}

// SwiGLU epilogue writing H as the packed bf16 operand of the next product (the
// down projection): the layout pack_x_block produces for an X of Np columns, so
// the next GEMM reads it without a pack. A C tile's row i holds 16 m values of
// one n; pair p = (n = 2p, 2p + 1) of the 16 rows m is the lane-wise interleave of
// two tile rows, so no transpose is needed. silu_mul runs on the tile layout
// (elementwise: same bits as in any other layout), and each value is rounded
// with to_bf16_lanes, exactly as pack_x_block rounds an fp32 H: the next product
// gets bitwise the operand the unfused path packs. Padding rows (m >= M) and
// columns (n >= N) come out exactly 0 (zero X rows / zero W panel rows give
// silu(0) * 0 = 0), as the packed layout requires.
// One C tile c (0-3) of the block per call (run_worker spreads the four over the
// next block's k steps).
LQ_AMX_FN inline void store_tile_swiglu_packed(const Problem& pr, const float* cg, const float* cu, int64_t n0,
                                               int64_t m0, int c) {
  alignas(64) float hc[256];
  silu_mul(cg + 256 * c, cu + 256 * c, 256, hc);
  const int64_t nt = n0 + 16 * (c >> 1), mt = m0 + 16 * (c & 1);
  uint32_t* dst = pr.hp + ((mt / 16) * pr.hKP2 + nt / 2) * 16;
  for (int p = 0; p < 8; ++p) {
    const __m512i lo = x86::to_bf16_lanes(_mm512_load_ps(hc + 32 * p));
    const __m512i hi = x86::to_bf16_lanes(_mm512_load_ps(hc + 32 * p + 16));
    _mm512_store_si512(dst + 16 * p, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
}

// bf16 bits of the E4M3 values m * 2^-9, m = 0..7 (the subnormal magnitudes), padded to 32.
alignas(64) constexpr uint16_t kFp8SubnormalBf16[32] = {0x0000, 0x3B00, 0x3B80, 0x3BC0, 0x3C00, 0x3C20, 0x3C40, 0x3C60};

// Scalar definition of the fp8 -> bf16 conversion (the SIMD code computes the same).
inline uint16_t fp8_to_bf16_scalar(uint8_t c) {
  const unsigned mag = c & 0x7fu;
  const unsigned r = mag < 8 ? kFp8SubnormalBf16[mag] : (mag << 4) + (120u << 7);  // exponent 7 -> 127 bias
  return uint16_t(r | (unsigned(c & 0x80u) << 8));
}

// 32 E4M3 codes -> 32 bf16 words, exact (see fp8_to_bf16_scalar).
LQ_AMX_FN inline __m512i fp8_to_bf16_words(__m256i bytes) {
  const __m512i c = _mm512_cvtepu8_epi16(bytes);
  const __m512i mag = _mm512_and_si512(c, _mm512_set1_epi16(0x7f));
  __m512i r = _mm512_add_epi16(_mm512_slli_epi16(mag, 4), _mm512_set1_epi16(120 << 7));
  const __mmask32 sub = _mm512_cmplt_epu16_mask(mag, _mm512_set1_epi16(8));
  r = _mm512_mask_permutexvar_epi16(r, sub, mag, _mm512_load_si512(kFp8SubnormalBf16));
  return _mm512_or_si512(r, _mm512_slli_epi16(_mm512_and_si512(c, _mm512_set1_epi16(0x80)), 8));
}

LQ_AMX_FN void fp8_to_bf16_avx512(const uint8_t* src, int64_t n, uint16_t* dst) {
  for (int64_t i = 0; i < n; i += 32) {
    const int64_t kv = std::min<int64_t>(32, n - i);
    const __mmask64 lm = kv >= 32 ? __mmask64(0xffffffffu) : ((__mmask64(1) << kv) - 1);
    const __m256i b = _mm512_castsi512_si256(_mm512_maskz_loadu_epi8(lm, src + i));
    _mm512_mask_storeu_epi16(dst + i, __mmask32(lm), fp8_to_bf16_words(b));
  }
}

// Row n, k step s (kv <= 32 valid elements) of W as 32 bf16 words, zero past kv.
struct Bf16Rows {
  const uint16_t* W;
  LQ_AMX_FN __m512i operator()(int64_t n, int64_t K, int64_t s, int64_t kv) const {
    const __mmask32 mask = kv >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << kv) - 1u);
    return _mm512_maskz_loadu_epi16(mask, W + n * K + 32 * s);
  }
};
// The same for E4M3 codes converted to bf16 (zero codes past kv give bf16 +0).
struct Fp8Rows {
  const uint8_t* W8;
  LQ_AMX_FN __m512i operator()(int64_t n, int64_t K, int64_t s, int64_t kv) const {
    const __mmask64 mask = kv >= 32 ? __mmask64(0xffffffffu) : ((__mmask64(1) << kv) - 1);
    return fp8_to_bf16_words(_mm512_castsi512_si256(_mm512_maskz_loadu_epi8(mask, W8 + n * K + 32 * s)));
  }
};

// Copies W rows [n0, n0 + 32) x k steps [s0, s1) into wpk as A tiles:
// wpk[((s - s0) * 32 + r) * 32 + c] = W[n0 + r][32 s + c], zero outside W.
// The tiles then load with a 64-byte stride: reading W in place with its 2K-byte
// row stride puts all 16 rows of a tile in one L1 set when K is a multiple of
// 2048 (the usual case) and measured ~1.5x slower.
template <typename Rows>
LQ_AMX_FN void pack_w_panel(const Rows& rows, int64_t K, int64_t N, int64_t n0, int64_t s0, int64_t s1,
                            uint16_t* wpk) {
  for (int r = 0; r < 32; ++r) {
    const int64_t n = n0 + r;
    uint16_t* dst = wpk + 32 * r;
    for (int64_t s = s0; s < s1; ++s)
      _mm512_storeu_si512(dst + (s - s0) * 1024,
                          n < N ? rows(n, K, s, std::min<int64_t>(32, K - 32 * s)) : _mm512_setzero_si512());
  }
}

// Software prefetch (into L2) of the W rows [n0, n0 + 32) x k steps [s0, s1) that
// the next pack_w_panel will read, spread evenly over `calls` calls of step().
struct PanelPrefetch {
  const char* base = nullptr;
  int64_t row_stride = 0, lines_per_row = 0, rows = 0, total = 0, done = 0, per_call = 0;
  bool to_l1 = false;  // prefetch into L1 (T0) instead of L2 (T1)
  PanelPrefetch() = default;
  // Rows [0, nrows) of `bytes` bytes each, `stride` bytes apart, from p.
  static PanelPrefetch rows_of(const void* p, int64_t stride, int64_t bytes, int64_t nrows, int64_t calls) {
    PanelPrefetch f;
    if (p == nullptr || nrows <= 0 || bytes <= 0 || calls <= 0) return f;
    f.base = static_cast<const char*>(p);
    f.row_stride = stride;
    f.lines_per_row = (bytes + 63) / 64;
    f.rows = nrows;
    f.total = nrows * f.lines_per_row;
    f.per_call = (f.total + calls - 1) / calls;
    return f;
  }
  // The W rows [n0, n0 + 32) x k steps [s0, s1) of weight w (bf16 or E4M3) of pr.
  PanelPrefetch(const Problem& pr, const void* w, int64_t n0, int64_t s0, int64_t s1, int64_t calls) {
    if (w == nullptr || n0 >= pr.N) return;
    const int64_t elt = pr.W8 ? 1 : 2;
    *this = rows_of(static_cast<const char*>(w) + (n0 * pr.K + s0 * 32) * elt, pr.K * elt,
                    (std::min(pr.K, s1 * 32) - s0 * 32) * elt, std::min<int64_t>(32, pr.N - n0), calls);
  }
  int64_t row = 0, col = 0;
  void step() {
    for (int64_t i = 0; i < per_call && done < total; ++i, ++done) {
      if (to_l1) _mm_prefetch(base + row * row_stride + col * 64, _MM_HINT_T0);
      else _mm_prefetch(base + row * row_stride + col * 64, _MM_HINT_T1);
      if (++col == lines_per_row) {
        col = 0;
        ++row;
      }
    }
  }
};

// One worker thread's share of Y. Work is split into phases (K block s0, M block
// mb); within a K block each thread takes the M blocks in turn starting from its
// own (see m_offset), and within a phase the 32-row N blocks are claimed
// dynamically from next[phase] (the shared VM's cores are often unequally
// loaded, a static split waits for the slowest). A barrier separates K blocks,
// since K block s0 > 0 starts from the partial sums of block s0 - 1. Every output
// is still summed in the same order whichever thread computes it, so results are
// identical for any thread count.
// prs[0..np): problems sharing X (M, K, the packed xp, blocking) with their own W, N
// and Y (q/k/v projections: one X pack, one parallel region, one N-block index
// space over all outputs); np == 1 otherwise.
LQ_AMX_FN void run_worker(const Problem* prs, int np, uint16_t* wpk, float* part, std::atomic<int64_t>* next,
                          int tid, int nthreads) {
  x86::configure_tiles_16x64();
  const Problem& p0 = prs[0];
  const bool swiglu = p0.W2 != nullptr;  // two products per block (gate, up), one epilogue (np == 1)
  const int nw = swiglu ? 2 : 1;

  // C tiles are stored to one of two buffers (per weight); the vector epilogue of a
  // block (store_block / store_block_swiglu) runs while the next block's first tile
  // products execute, so the AMX unit and the vector transposition overlap.
  alignas(64) float cbuf[2][2][4 * 256];
  int cur = 0;
  bool pending = false;
  int64_t pend_n0 = 0, pend_m = 0;
  const Problem* pend_pr = &p0;
  // Part c (0-3) of the pending block's epilogue: C tile c, or the whole block for
  // the fp32 SwiGLU epilogue (its silu_mul runs on [32 m][32 n] buffers).
  auto flush_part = [&](int c) {
    if (!pending) return;
    const float* cb = cbuf[cur ^ 1][0];
    if (swiglu && pend_pr->hp) store_tile_swiglu_packed(*pend_pr, cb, cbuf[cur ^ 1][1], pend_n0, pend_m, c);
    else if (!swiglu) store_tile(*pend_pr, cb, pend_n0, pend_m, c);
    else if (c == 0) store_block_swiglu(*pend_pr, cb, cbuf[cur ^ 1][1], pend_n0, pend_m);
    if (c == 3) pending = false;
  };
  auto flush = [&] {
    for (int c = 0; c < 4; ++c) flush_part(c);
  };
  // The epilogue's four parts run after k steps kOverlapSteps, 2 kOverlapSteps, ...
  // of the next block: each part's vector work then has AMX work queued beside it.
  // Measured (llama-3.2-1b, 512-token prefill, interleaved runs): the whole epilogue
  // after 8 k steps 935 tok/s median; four parts every 8 steps 983 (every 4: 949,
  // 6: 971, 12: 971, 16: 976), e.g. down 132-144 -> 126-133 ms.
  constexpr int64_t kOverlapSteps = 8;

  const int64_t KP2 = p0.Kp / 2, steps = p0.Kp / 32;
  // Global N block b belongs to problem i with first[i] <= b < first[i + 1].
  int64_t first_block[4] = {0, 0, 0, 0};
  for (int i = 0; i < np; ++i) first_block[i + 1] = first_block[i] + (prs[i].N + 31) / 32;
  const int64_t nblocks = first_block[np];
  auto locate = [&](int64_t b, int64_t* local) -> const Problem& {
    int i = 0;
    while (i + 1 < np && b >= first_block[i + 1]) ++i;
    *local = b - first_block[i];
    return prs[i];
  };
  // bf16 W whose rows are whole 64-byte lines (W 64-byte aligned, K a multiple of
  // 32) is read in place: no panel copy. Measured +16% on 8192x2048 (2.2 -> 2.55
  // TFLOP/s) and +8% on 2048x8192; with misaligned rows (safetensors only aligns
  // to 8 bytes unless the writer pads, as write_safetensors does) each tile row
  // spans two lines and the copy is faster (1.8 vs 2.1), so those keep it.
  auto direct_ok = [&](const uint16_t* w) {
    return !p0.W8 && p0.K % 32 == 0 && reinterpret_cast<uintptr_t>(w) % 64 == 0;
  };
  // Each thread starts on its own M block (offset tid * mphases / nt) and then
  // helps with the others: with M = 512 and two threads, each keeps its packed X
  // block in its own L2 for the whole call, and the two walk the same W panels
  // at about the same time (so, presumably, one DRAM read serves both through L3;
  // this VM has no counters to confirm it), where before both
  // worked on one M block, then the other (X blocks crossing between the cores'
  // L2s, W streamed twice). llama-3.2-1b 512-token prefill, interleaved runs:
  // 1029-1055 -> 1079-1110 tok/s (o 35 -> 30 ms, q/k/v 47 -> 44, gate/up 220 -> 209).
  const int64_t mphases = (p0.Mp + p0.mb - 1) / p0.mb;
  const int64_t m_offset = int64_t(tid) * mphases / std::max(1, nthreads);
  for (int64_t s0 = 0, kblk = 0; s0 < steps; s0 += p0.kb / 32, ++kblk) {
    const int64_t s1 = std::min(steps, s0 + p0.kb / 32);
    const bool first = s0 == 0, last = s1 == steps;
    if (!first) {
#pragma omp barrier
    }
    for (int64_t pi = 0; pi < mphases; ++pi) {
      const int64_t mi = (pi + m_offset) % mphases;
      const int64_t phase = kblk * mphases + mi;
      const int64_t mb = mi * p0.mb;
      const int64_t mb1 = std::min(p0.Mp, mb + p0.mb);
      // N blocks are claimed one ahead: while this block's tile products run, the
      // W rows of the next one are prefetched into L2 (spread over the k steps),
      // so its panel copy reads cache instead of waiting on DRAM.
      int64_t nb = next[phase].fetch_add(1, std::memory_order_relaxed);
      while (nb < nblocks) {
        const int64_t nb_next = next[phase].fetch_add(1, std::memory_order_relaxed);
        int64_t lnb = 0, lnb_next = 0;
        const Problem& pr = locate(nb, &lnb);
        const Problem& pr_next = locate(std::min(nb_next, nblocks - 1), &lnb_next);
        const uint16_t* wsrc[2] = {pr.W, pr.W2};
        // A tiles per weight: straight from W where every tile row is a whole
        // aligned line (see direct_ok), else from the copied panel.
        const uint16_t* abase[2];
        int64_t astep[2], a1off[2], astride[2];
        for (int w = 0; w < nw; ++w) {
          const bool direct = direct_ok(wsrc[w]) && lnb * 32 + 32 <= pr.N;
          uint16_t* panel = wpk + w * 32 * pr.kb;
          if (!direct) {
            if (pr.W8) pack_w_panel(Fp8Rows{pr.W8}, pr.K, pr.N, lnb * 32, s0, s1, panel);
            else pack_w_panel(Bf16Rows{wsrc[w]}, pr.K, pr.N, lnb * 32, s0, s1, panel);
          }
          abase[w] = direct ? wsrc[w] + lnb * 32 * pr.K + 32 * s0 : panel;
          astep[w] = direct ? 32 : 1024;        // elements per k step
          a1off[w] = direct ? 16 * pr.K : 512;  // second A tile (rows 16..31)
          astride[w] = direct ? 2 * pr.K : 64;  // bytes between tile rows
        }
        const int64_t calls = (mb1 - mb) / 32 * (s1 - s0) * nw;
        const bool has_next = nb_next < nblocks;
        PanelPrefetch pf0(pr_next, !has_next ? nullptr : pr_next.W8 ? static_cast<const void*>(pr_next.W8) : pr_next.W,
                          lnb_next * 32, s0, s1, calls);
        PanelPrefetch pf1(pr_next, has_next && swiglu ? pr_next.W2 : nullptr, lnb_next * 32, s0, s1,
                          swiglu ? calls : 0);
        for (int64_t m = mb; m < mb1; m += 32) {
          // Several K blocks: the C tiles of block (nb, m) start from, and (but in
          // the last K block) go back to, its partial sums in `part` (tile layout,
          // 4 KiB per block; see gemm_amx). The partial block of the next m block
          // (or of the next N block's first) is prefetched into L1 meanwhile.
          float* pblk = part ? part + (nb * (p0.Mp / 32) + m / 32) * 1024 : nullptr;
          PanelPrefetch pfp;
          if (!first) {
            const int64_t pn = m + 32 < mb1 ? nb : nb_next, pm = m + 32 < mb1 ? m + 32 : mb;
            if (pn < nblocks) pfp = PanelPrefetch::rows_of(part + (pn * (p0.Mp / 32) + pm / 32) * 1024, 64, 64, 64, s1 - s0);
            pfp.to_l1 = true;
          }
          // Add mode: the epilogue reads this block's Y rows (from L3 or DRAM: Y
          // is larger than L2); fetch them into L1 while its tile products run.
          PanelPrefetch pfy;
          if (last && pr.add) {
            pfy = PanelPrefetch::rows_of(pr.Y + m * pr.N + lnb * 32, pr.N * 4, std::min<int64_t>(32, pr.N - lnb * 32) * 4,
                                         std::min<int64_t>(32, pr.M - m), s1 - s0);
            pfy.to_l1 = true;
          }
          const uint16_t* x0 = pr.xp + (m / 16) * KP2 * 32;
          const uint16_t* x1 = x0 + KP2 * 32;
          for (int w = 0; w < nw; ++w) {
            if (first) {
              _tile_zero(0);
              _tile_zero(1);
              _tile_zero(2);
              _tile_zero(3);
            } else {  // (SwiGLU has a single K block: w == 0 here)
              _tile_loadd(0, pblk, 64);
              _tile_loadd(1, pblk + 256, 64);
              _tile_loadd(2, pblk + 512, 64);
              _tile_loadd(3, pblk + 768, 64);
            }
            const uint16_t* ab = abase[w];
            const int64_t ast = astep[w], a1 = a1off[w], ars = astride[w];
            auto k_steps = [&](int64_t sa, int64_t sb) LQ_AMX_FN {
              for (int64_t s = sa; s < sb; ++s) {
                const uint16_t* a = ab + (s - s0) * ast;
                _tile_loadd(4, a, ars);
                _tile_loadd(6, x0 + 512 * s, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_loadd(7, x1 + 512 * s, 64);
                _tile_dpbf16ps(1, 4, 7);
                _tile_loadd(5, a + a1, ars);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
                pf0.step();
                pf1.step();
                pfp.step();
                pfy.step();
              }
            };
            if (w == 0) {  // the previous block's epilogue, in four parts
              int64_t s = s0;
              for (int c = 0; c < 4; ++c) {
                const int64_t se = std::min(s1, s + kOverlapSteps);
                k_steps(s, se);
                s = se;
                flush_part(c);
              }
              k_steps(s, s1);
            } else {
              k_steps(s0, s1);
            }
            float* c = last ? cbuf[cur][w] : pblk;
            _tile_stored(0, c, 64);
            _tile_stored(1, c + 256, 64);
            _tile_stored(2, c + 512, 64);
            _tile_stored(3, c + 768, 64);
          }
          if (last) {  // final sums: the epilogue writes them to Y (deferred, see flush)
            pending = true;
            pend_pr = &pr;
            pend_n0 = lnb * 32;
            pend_m = m;
            cur ^= 1;
          }
        }
        nb = nb_next;
      }
      flush();
      _mm_sfence();  // order the streaming stores of Y before the return
    }
  }
  _tile_release();
}

// X: the activations (fp32, or the packed operand); Y: where the result goes.
void check_args(const char* fn, const void* X, int64_t M, int64_t K, const void* W, int64_t N, const void* Y) {
  LQ_CHECK(M >= 0 && K >= 0 && N >= 0, "{}: negative shape M={} K={} N={}", fn, M, K, N);
  if (M == 0 || N == 0) return;
  LQ_CHECK(Y != nullptr, "{}: null output Y for M={} N={}", fn, M, N);
  if (K > 0)
    LQ_CHECK(X != nullptr && W != nullptr, "{}: null input (X={}, W={}) for M={} K={} N={}", fn, X, W, M, K, N);
}

// Per calling thread, reused across calls (no fresh page faults per call): the
// packed X of a call, and the packed H of the last gemm_bf16w_amx_swiglu_packed.
thread_local std::vector<uint32_t> tl_xpacked;
thread_local std::vector<uint32_t> tl_hpacked;
// The K-block partial sums of a call with several K blocks (fp32, tile layout).
thread_local std::vector<float> tl_partial;

// First 64-byte aligned element of v after making room for n elements: tile
// rows must not straddle cache lines (an unaligned 64-byte row costs two
// line accesses; measured ~1.5x slower loads).
template <typename T>
T* aligned_scratch(std::vector<T>& v, size_t n) {
  const size_t pad = 64 / sizeof(T);
  if (v.size() < n + pad) v.resize(n + pad);
  const uintptr_t p = reinterpret_cast<uintptr_t>(v.data());
  return v.data() + ((64 - p % 64) % 64) / sizeof(T);
}

}  // namespace

bool amx_available() {
  static const bool ok = x86::features().amx_bf16;
  return ok;
}

bool amx_gemm_enabled() {
  static const bool ok = [] {
    const char* e = std::getenv("LQ_DISABLE_AMX");
    if (e != nullptr && std::strcmp(e, "1") == 0) return false;
    return amx_available();
  }();
  return ok;
}

namespace {

// One output of a call: bf16 W (or E4M3 W8) [N, K] -> Y [M, N]; W2: SwiGLU up weights.
struct Out {
  const uint16_t* W = nullptr;
  const uint8_t* W8 = nullptr;
  int64_t N = 0;
  float* Y = nullptr;
  const uint16_t* W2 = nullptr;
};

// X is packed once for all outputs (at most 3; SwiGLU and FP8 calls have one).
// `pre`: X given already packed (X is then null and M, K are pre's). `hout`: the
// SwiGLU output H goes packed to the calling thread's tl_hpacked (outs[0].Y unused).
void gemm_amx(const char* fn, const float* X, int64_t M, int64_t K, const Out* outs, int n_out,
              const AmxPackedX* pre = nullptr, AmxPackedX* hout = nullptr, bool add = false) {
  LQ_CHECK(n_out >= 1 && n_out <= 3, "{}: {} outputs (1 to 3 supported)", fn, n_out);
  for (int i = 0; i < n_out; ++i) {
    const Out& o = outs[i];
    const void* w = o.W ? static_cast<const void*>(o.W) : static_cast<const void*>(o.W8);
    check_args(fn, pre ? static_cast<const void*>(pre->data) : X, M, K, w, o.N,
               hout ? static_cast<const void*>(hout) : o.Y);
  }
  LQ_CHECK(amx_available(), "{}: this CPU/OS does not provide AMX-BF16 (M={} K={} N={})", fn, M, K, outs[0].N);
  if (M == 0) return;
  if (K == 0) {  // the product is 0
    for (int i = 0; i < n_out; ++i)
      for (float* y = outs[i].Y; y < outs[i].Y + M * outs[i].N; ++y) *y = add ? *y + 0.0f : 0.0f;
    return;
  }
  const int64_t Mp = (M + 31) / 32 * 32, Kp = (K + 31) / 32 * 32;
  bool swiglu = false;
  for (int i = 0; i < n_out; ++i) swiglu = swiglu || outs[i].W2 != nullptr;
  const Blocking bl = blocking_for(Kp);
  // Before any work: the fused SwiGLU needs the complete sums in one K block.
  LQ_CHECK(!swiglu || Kp <= bl.kb, "{}: K={} needs more than one K block (fused SwiGLU needs one)", fn, K);
  LQ_CHECK(!add || (!swiglu && !hout), "{}: add mode is for plain products", fn);

  const uint32_t* xp32 = pre ? pre->data : nullptr;
  if (!pre) {
    uint32_t* xw = aligned_scratch(tl_xpacked, size_t(Mp * Kp / 2));
    parallel_for(Mp / 16, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) pack_x_block(X, M, K, Kp, j, xw);
    });
    xp32 = xw;
  }
  uint32_t* hp = nullptr;
  int64_t hKP2 = 0;
  if (hout) {
    const int64_t Np = (outs[0].N + 31) / 32 * 32;
    hKP2 = Np / 2;
    hp = aligned_scratch(tl_hpacked, size_t(Mp * Np / 2));
    *hout = AmxPackedX{hp, M, outs[0].N};
  }

  Problem prs[3];
  int np = 0;
  for (int i = 0; i < n_out; ++i) {
    const Out& o = outs[i];
    if (o.N == 0) continue;  // nothing to compute (check_args allowed it)
    prs[np++] = Problem{M, K, o.N, Mp, Kp, o.W, o.W8, reinterpret_cast<const uint16_t*>(xp32), o.Y, bl.kb, bl.mb, o.W2,
                        hp, hKP2, add};
  }
  if (np == 0) return;
  const int64_t kblocks = (Kp + bl.kb - 1) / bl.kb;
  const int64_t phases = kblocks * ((Mp + bl.mb - 1) / bl.mb);
  // Several K blocks: each 32 x 32 block's C tiles are stored after a K block and
  // reloaded for the next, in a [N block][m block][4 C tiles] fp32 buffer, and
  // only the last K block's epilogue writes Y. So the sums are those of a single
  // K block (TDPBF16PS accumulating through the whole K; the stores and loads
  // are exact): results do not depend on the blocking. This replaced a
  // transpose-and-add of every K block's products into Y (down projection of
  // llama-3.2-1b, K = 8192: ~10% faster).
  float* part = nullptr;
  if (kblocks > 1) {
    int64_t nblocks = 0;
    for (int i = 0; i < n_out; ++i) nblocks += (outs[i].N + 31) / 32;
    part = aligned_scratch(tl_partial, size_t(nblocks * (Mp / 32) * 1024));
  }
  std::vector<std::atomic<int64_t>> next(static_cast<size_t>(phases));
  for (auto& c : next) c.store(0, std::memory_order_relaxed);
  parallel_run([&](int tid, int nt) {
    // Transient W panels (32 rows x kb, 128-256 KiB; two for SwiGLU), per worker thread.
    thread_local std::vector<uint16_t> wpk;
    run_worker(prs, np, aligned_scratch(wpk, size_t(32 * bl.kb * (swiglu ? 2 : 1))), part, next.data(), tid, nt);
  });
}

}  // namespace

void gemm_bf16w_amx(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y, bool add) {
  const Out o{W, nullptr, N, Y};
  gemm_amx("gemm_bf16w_amx", X, M, K, &o, 1, nullptr, nullptr, add);
}

void gemm_bf16w_amx_group(const float* X, int64_t M, int64_t K, const AmxGemmOut* outs, int n_out) {
  LQ_CHECK(outs != nullptr && n_out >= 1 && n_out <= 3, "gemm_bf16w_amx_group: {} outputs (1 to 3 supported)", n_out);
  Out o[3];
  for (int i = 0; i < n_out; ++i) o[i] = Out{outs[i].W, nullptr, outs[i].N, outs[i].Y};
  gemm_amx("gemm_bf16w_amx_group", X, M, K, o, n_out);
}

void gemm_fp8w_amx(const float* X, int64_t M, int64_t K, const uint8_t* W8, int64_t N, float* Y) {
  const Out o{nullptr, W8, N, Y};
  gemm_amx("gemm_fp8w_amx", X, M, K, &o, 1);
}

void amx_set_blocking(int64_t kb, int64_t mb) {
  const bool off = kb == 0 && mb == 0;
  LQ_CHECK(off || (kb > 0 && mb > 0 && kb % 32 == 0 && mb % 32 == 0),
           "amx_set_blocking: kb={} mb={} (positive multiples of 32, or 0, 0 for the default)", kb, mb);
  g_set_mb.store(mb);
  g_set_kb.store(kb);
}

bool amx_swiglu_fusable(int64_t K) {
  const int64_t Kp = (K + 31) / 32 * 32;
  return K > 0 && Kp <= blocking_for(Kp).kb;
}

void gemm_bf16w_amx_swiglu(const float* X, int64_t M, int64_t K, const uint16_t* Wg, const uint16_t* Wu,
                           int64_t N, float* H) {
  LQ_CHECK(Wu != nullptr || M == 0 || N == 0 || K == 0, "gemm_bf16w_amx_swiglu: null up weights (M={} K={} N={})",
           M, K, N);
  LQ_CHECK(K > 0 || M == 0 || N == 0, "gemm_bf16w_amx_swiglu: K must be positive (M={} N={})", M, N);
  const Out o{Wg, nullptr, N, H, Wu};
  gemm_amx("gemm_bf16w_amx_swiglu", X, M, K, &o, 1);
}

AmxPackedX gemm_bf16w_amx_swiglu_packed(const float* X, int64_t M, int64_t K, const uint16_t* Wg,
                                         const uint16_t* Wu, int64_t N) {
  LQ_CHECK(M > 0 && N > 0 && K > 0, "gemm_bf16w_amx_swiglu_packed: empty shape M={} K={} N={}", M, K, N);
  LQ_CHECK(Wu != nullptr, "gemm_bf16w_amx_swiglu_packed: null up weights (M={} K={} N={})", M, K, N);
  const Out o{Wg, nullptr, N, nullptr, Wu};  // no Y: H goes to the packed buffer
  AmxPackedX h;
  gemm_amx("gemm_bf16w_amx_swiglu_packed", X, M, K, &o, 1, nullptr, &h);
  return h;
}

void gemm_bf16w_amx_packed(const AmxPackedX& X, const uint16_t* W, int64_t N, float* Y, bool add) {
  LQ_CHECK(X.data != nullptr && X.M > 0 && X.K > 0 && reinterpret_cast<uintptr_t>(X.data) % 64 == 0,
           "gemm_bf16w_amx_packed: invalid packed operand (M={} K={})", X.M, X.K);
  const Out o{W, nullptr, N, Y};
  gemm_amx("gemm_bf16w_amx_packed", nullptr, X.M, X.K, &o, 1, &X, nullptr, add);
}

void fp8e4m3_to_bf16_n(const uint8_t* src, int64_t n, uint16_t* dst) {
  LQ_CHECK(n >= 0 && (n == 0 || (src && dst)), "fp8e4m3_to_bf16_n: bad arguments (n={})", n);
  if (amx_available()) {
    fp8_to_bf16_avx512(src, n, dst);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = fp8_to_bf16_scalar(src[i]);
}

}  // namespace lq::cpu
