// kernels/cpu/matmul_bench.cc: throughput of the linear-layer kernels on
// llama-3.2-1b shapes (hidden 2048, intermediate 8192, vocab 128256).
//
//   BM_GemvBf16/N/K/M     decode: bytes/s of weights streamed (compare with BM_ReadBandwidth)
//   BM_GemmBf16/N/K/M     prefill, Precision::BF16 (oneDNN bf16, AMX if present): FLOP/s
//   BM_GemmAmxBf16/N/K/M  prefill, Precision::BF16, hand-written AMX kernel (amx_gemm.cc): FLOP/s
//   BM_GemmAmxBf16Cold/N/K/M  the same, each iteration on the next of 16 weight copies
//                         (as the 16 layers of a forward pass: W comes from DRAM, not
//                         from the L3 where a repeated matrix stays; 16 x the matrix)
//   BM_SwigluAmxBf16/N/K/M fused gate+up+SwiGLU (gemm_bf16w_amx_swiglu), cold weights:
//                         FLOP/s of both products
//   BM_GemmF32/N/K/M      prefill, Precision::F32 (fp32 x bf16 weights): FLOP/s
//   BM_ReadBandwidth      measure_read_bandwidth(1 GiB): bytes/s
//
// Threads: OMP_NUM_THREADS (the library's pool). Suggested run:
//   OMP_NUM_THREADS=2 bench_kernels --benchmark_filter='Gemv|Gemm|ReadBandwidth'
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "core/aligned.h"
#include "core/dtype.h"
#include "core/threads.h"
#include "kernels/cpu/amx_gemm.h"
#include "kernels/cpu/matmul.h"

namespace lq::cpu {
namespace {

// Deterministic pseudo-random weights in [-0.05, 0.05), generated once per shape
// and shared by all benchmarks (the vocab matrix is 525 MB).
const AlignedVector<uint16_t>& weights(int64_t N, int64_t K) {
  static std::map<std::pair<int64_t, int64_t>, std::unique_ptr<AlignedVector<uint16_t>>> cache;
  auto& slot = cache[{N, K}];
  if (!slot) {
    slot = std::make_unique<AlignedVector<uint16_t>>(size_t(N * K));
    auto& w = *slot;
    parallel_for(N * K, [&](int64_t b, int64_t e) {
      uint64_t s = 0x9e3779b97f4a7c15ull * uint64_t(b + 1);
      for (int64_t i = b; i < e; ++i) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        w[i] = f32_to_bf16(float(int64_t(s >> 40) - (int64_t(1) << 23)) * (0.05f / (1 << 23)));
      }
    });
  }
  return *slot;
}

std::vector<float> activations(int64_t M, int64_t K) {
  std::vector<float> x(size_t(M * K));
  for (int64_t i = 0; i < M * K; ++i) x[i] = float((i * 7919) % 2001 - 1000) * 1e-3f;
  return x;
}

void run(benchmark::State& state, Precision p, bool gemv, bool amx = false) {
  const int64_t N = state.range(0), K = state.range(1), M = state.range(2);
  if (amx && !amx_available()) {
    state.SkipWithError("no AMX-BF16 on this CPU/OS");
    return;
  }
  const auto& W = weights(N, K);
  const auto X = activations(M, K);
  AlignedVector<float> Y(size_t(M * N));  // 64-byte aligned, as the model's activations
  for (auto _ : state) {
    if (gemv) gemv_bf16w(X.data(), M, K, W.data(), N, Y.data(), p);
    else if (amx) gemm_bf16w_amx(X.data(), M, K, W.data(), N, Y.data());
    else gemm_bf16w_onednn(X.data(), M, K, W.data(), N, Y.data(), p);
    benchmark::DoNotOptimize(Y.data());
    benchmark::ClobberMemory();
  }
  state.counters["threads"] = num_threads();
  if (gemv) {
    state.SetBytesProcessed(int64_t(state.iterations()) * N * K * 2);
  } else {
    state.counters["FLOP/s"] =
        benchmark::Counter(2.0 * double(M) * double(N) * double(K),
                           benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
    state.SetLabel(amx ? "amx_gemm" : onednn_impl_name(M, K, N, p));
  }
}

void BM_GemvBf16(benchmark::State& state) { run(state, Precision::BF16, true); }
void BM_GemvF32(benchmark::State& state) { run(state, Precision::F32, true); }
void BM_GemmBf16(benchmark::State& state) { run(state, Precision::BF16, false); }
void BM_GemmF32(benchmark::State& state) { run(state, Precision::F32, false); }
void BM_GemmAmxBf16(benchmark::State& state) { run(state, Precision::BF16, false, true); }

// 16 distinct copies of a weight shape (cold: each read once per 16 iterations).
const std::vector<AlignedVector<uint16_t>>& cold_weights(int64_t N, int64_t K) {
  static std::map<std::pair<int64_t, int64_t>, std::vector<AlignedVector<uint16_t>>> cache;
  auto& v = cache[{N, K}];
  if (v.empty()) {
    const auto& w = weights(N, K);
    for (int i = 0; i < 16; ++i) v.emplace_back(w.begin(), w.end());
  }
  return v;
}

// Runs call(X, W_i, W_{i+1}) once per iteration over the 16 cold weight copies
// (i advancing by `per_call` copies) and reports flops_per_call FLOP/s.
template <typename Call>
void run_cold(benchmark::State& state, bool ok, const char* why, double flops_per_mnk, int per_call, Call call) {
  const int64_t N = state.range(0), K = state.range(1), M = state.range(2);
  if (!ok) {
    state.SkipWithError(why);
    return;
  }
  const auto& Ws = cold_weights(N, K);
  const auto X = activations(M, K);
  AlignedVector<float> Y(size_t(M * N));
  size_t i = 0;
  for (auto _ : state) {
    call(X.data(), M, K, Ws[i % Ws.size()].data(), Ws[(i + 1) % Ws.size()].data(), N, Y.data());
    i += size_t(per_call);
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_mnk * double(M) * double(N) * double(K),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_GemmAmxBf16Cold(benchmark::State& state) {
  run_cold(state, amx_available(), "no AMX-BF16 on this CPU/OS", 2.0, 1,
           [](const float* X, int64_t M, int64_t K, const uint16_t* W, const uint16_t*, int64_t N, float* Y) {
             gemm_bf16w_amx(X, M, K, W, N, Y);
           });
}

void BM_SwigluAmxBf16(benchmark::State& state) {
  run_cold(state, amx_available() && amx_swiglu_fusable(state.range(1)), "no AMX-BF16 on this CPU/OS, or K not fusable",
           4.0, 2, gemm_bf16w_amx_swiglu);
}

// {N, K, M}
BENCHMARK(BM_GemmAmxBf16Cold)
    ->Args({8192, 2048, 512})->Args({2048, 8192, 512})->Args({2048, 2048, 512})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SwigluAmxBf16)->Args({8192, 2048, 512})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GemvBf16)
    ->Args({8192, 2048, 1})->Args({2048, 8192, 1})->Args({128256, 2048, 1})->Args({8192, 2048, 4})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GemvF32)->Args({8192, 2048, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GemmBf16)
    ->Args({8192, 2048, 512})->Args({2048, 8192, 512})->Args({128256, 2048, 512})
    ->Args({2048, 2048, 512})->Args({512, 2048, 512})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GemmAmxBf16)
    ->Args({8192, 2048, 512})->Args({2048, 8192, 512})->Args({128256, 2048, 512})
    ->Args({2048, 2048, 512})->Args({512, 2048, 512})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GemmF32)
    ->Args({8192, 2048, 512})->Args({2048, 8192, 512})->Args({128256, 2048, 512})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ReadBandwidth(benchmark::State& state) {
  double bw = 0;
  for (auto _ : state) bw = measure_read_bandwidth(int64_t(1) << 30, 5);
  state.counters["bytes_per_second"] = bw;
  state.counters["threads"] = num_threads();
}
BENCHMARK(BM_ReadBandwidth)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace lq::cpu
