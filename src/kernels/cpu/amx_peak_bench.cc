// kernels/cpu/amx_peak_bench.cc: what the AMX unit delivers when only its operand
// streams matter (the ceiling for amx_gemm.cc), on every thread at once.
//
//   BM_AmxTileLoop/A_KiB/B_KiB: per step, 2 A tiles and 2 B tiles (1 KiB each) are
//   loaded and 4 TDPBF16PS issued (the 2x2 register block of amx_gemm.cc); A and B
//   walk cyclically through regions of A_KiB and B_KiB bytes. Small regions stay in
//   L1, ~1 MiB in L2, more than the 2 MiB L2 spills to L3. FLOP/s over all threads.
// Measured on the 2-core VM, 2 threads (docs/kernels-matmul.md; two sessions of
// runs, a standalone program and this benchmark): both in L1 7.1-7.3 TFLOP/s
// (~3.6 per core); A in L1 (16 KiB) + B in L2 (1 MiB) 5.5-6.5; both in L2
// (128 KiB + 1 MiB) 4.4-5.3; B 2 MiB (past L2) 3.2-3.6.
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

__attribute__((target("amx-tile,amx-bf16"))) void tile_loop(const uint16_t* A, int64_t na, const uint16_t* B,
                                                            int64_t nb, int64_t steps, float* out) {
  x86::configure_tiles_16x64();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  int64_t ia = 0, ib = 0;
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
  }
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
      // Zeroed bf16 operands (values do not change the timing of TDPBF16PS).
      AlignedVector<uint16_t> A(size_t(a_bytes / 2)), B(size_t(b_bytes / 2));
      alignas(64) float out[256];
      tile_loop(A.data(), a_bytes / 2048, B.data(), b_bytes / 2048, kSteps, out);
      benchmark::DoNotOptimize(out[0]);
      threads = nt;
    });
  }
  const double flops = double(kSteps) * 4 * 16 * 16 * 32 * 2 * threads;
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}
BENCHMARK(BM_AmxTileLoop)
    ->Args({2, 2})
    ->Args({16, 1024})
    ->Args({128, 1024})
    ->Args({16, 2048})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lq::cpu
