// kernels/cpu/amx_peak_bench.cc: what the AMX unit delivers when only its operand
// streams matter (the ceiling for amx_gemm.cc), on every thread at once.
//
//   BM_AmxTileLoop/A_KiB/B_KiB/run: per step, 2 A tiles and 2 B tiles (1 KiB each) are
//   loaded and 4 TDPBF16PS issued (the 2x2 register block of amx_gemm.cc); A and B
//   walk cyclically through regions of A_KiB and B_KiB bytes. Small regions stay in
//   L1, ~1 MiB in L2, more than the 2 MiB L2 spills to L3. FLOP/s over all threads.
//   run > 0: the 4 C tiles are stored and zeroed every `run` steps, as amx_gemm.cc
//   does per 32 x 32 block (128/128/64: 3.5 TFLOP/s vs 4.2-4.3 with run 0).
// Operands are pseudo-random bf16 values (|v| in [2^-7, 2^-6), random signs): with
// all-zero operands, as this benchmark first used, the unit runs ~20% faster
// (presumably less switching power and a higher clock), which overstated the ceiling.
// Measured on the 2-core VM, 2 threads (docs/kernels-matmul.md), random operands
// (session 5, medians of 3): both in L1 5.2-5.7 TFLOP/s; A in L1 (16 KiB) + B in L2
// (1 MiB) 4.8-5.0; both in L2 (128 KiB + 1 MiB) 3.8-4.2, 128 KiB + 128 KiB 4.2-4.3;
// B 2 MiB (past L2) 2.9-3.2. Zero operands: 6.9-7.3, 5.6-6.0, 4.4-4.8, 3.0-3.1.
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "core/aligned.h"
#include "core/threads.h"
#include "kernels/cpu/amx_gemm.h"
#include "kernels/cpu/x86.h"

namespace lq::cpu {
namespace {

// Deterministic pseudo-random bf16 values: exponent 2^-7, random 7-bit mantissa and
// sign (normal numbers; TDPBF16PS reads denormals as zero).
void fill_random_bf16(AlignedVector<uint16_t>& v, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 12345u;
  for (auto& e : v) {
    x = x * 1664525u + 1013904223u;
    e = uint16_t(0x3c00u | ((x >> 16) & 0x7fu) | ((x >> 31) << 15));
  }
}

// run > 0: every `run` steps the 4 C tiles are stored to cbuf and zeroed, as
// amx_gemm.cc does at each 32 x 32 block (64 steps for K = 2048).
__attribute__((target("amx-tile,amx-bf16"))) void tile_loop(const uint16_t* A, int64_t na, const uint16_t* B,
                                                            int64_t nb, int64_t steps, int64_t run, float* out) {
  alignas(64) float cbuf[4 * 256];
  x86::configure_tiles_16x64();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  int64_t ia = 0, ib = 0, left = run;
  for (int64_t i = 0; i < steps; ++i) {
    const uint16_t* a = A + ia * 1024;  // 2 tiles = 1024 bf16
    const uint16_t* b = B + ib * 1024;
    _tile_loadd(4, a, 64);
    _tile_loadd(5, a + 512, 64);
    _tile_loadd(6, b, 64);
    _tile_loadd(7, b + 512, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
    if (++ia == na) ia = 0;
    if (++ib == nb) ib = 0;
    if (--left == 0) {  // never 0 when run <= 0
      left = run;
      _tile_stored(0, cbuf, 64);
      _tile_stored(1, cbuf + 256, 64);
      _tile_stored(2, cbuf + 512, 64);
      _tile_stored(3, cbuf + 768, 64);
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
    }
  }
  out[1] = cbuf[0];
  _tile_stored(0, out, 64);
  _tile_release();
}

void BM_AmxTileLoop(benchmark::State& state) {
  if (!amx_available()) {
    state.SkipWithError("no AMX-BF16 on this CPU/OS");
    return;
  }
  const int64_t a_bytes = state.range(0) * 1024, b_bytes = state.range(1) * 1024;
  constexpr int64_t kSteps = 1 << 20;
  int threads = 0;
  for (auto _ : state) {
    parallel_run([&](int, int nt) {
      AlignedVector<uint16_t> A(size_t(a_bytes / 2)), B(size_t(b_bytes / 2));
      fill_random_bf16(A, 1);
      fill_random_bf16(B, 2);
      alignas(64) float out[256];
      tile_loop(A.data(), a_bytes / 2048, B.data(), b_bytes / 2048, kSteps, state.range(2), out);
      benchmark::DoNotOptimize(out[0]);
      threads = nt;
    });
  }
  const double flops = double(kSteps) * 4 * 16 * 16 * 32 * 2 * threads;
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}
BENCHMARK(BM_AmxTileLoop)
    ->Args({2, 2, 0})
    ->Args({16, 1024, 0})
    ->Args({128, 1024, 0})
    ->Args({16, 2048, 0})
    ->Args({128, 128, 0})
    ->Args({128, 128, 64})
    ->Args({128, 128, 16})
    ->Args({128, 1024, 64})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lq::cpu
