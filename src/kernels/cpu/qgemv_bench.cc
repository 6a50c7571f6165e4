// kernels/cpu/qgemv_bench.cc: decode (and prefill) throughput of the quantized
// linear kernels on llama-3.2-1b shapes (N=8192,K=2048: gate/up; N=2048,K=8192: down).
//
//   BM_QgemvInt8/N/K/M, BM_QgemvInt4/N/K/M   affine groups of 128 (GPTQ/AWQ/RTN layout)
//   BM_QgemvNf4/N/K/M                        bitsandbytes NF4, blocks of 64
//   BM_QgemvFp8/N/K/M                        FP8 E4M3 W8A8 (dynamic per-token scales)
//   BM_QgemmInt4/N/K/M                       prefill path (tile dequant + oneDNN bf16)
// Counter "bytes_per_second" = weight bytes (codes + scales/zeros/absmax) per call
// / time, i.e. the effective weight bandwidth; compare with the bf16 GEMV in
// bench_kernels (BM_GemvBf16) and BM_ReadBandwidth.
// Suggested run:
//   OMP_NUM_THREADS=2 bench_kernels --benchmark_filter='Qgem'
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true  (one line)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/threads.h"
#include "kernels/cpu/qgemv.h"

namespace lq::cpu {
namespace {

std::vector<uint8_t> rand_bytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint64_t s = 0x9e3779b97f4a7c15ull * (seed + 1);
  for (auto& b : v) {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    b = uint8_t(s >> 32);
  }
  return v;
}

std::vector<float> rand_x(int64_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d;
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = d(rng);
  return x;
}

void report(benchmark::State& st, int64_t bytes) {
  st.SetBytesProcessed(int64_t(st.iterations()) * bytes);
}

void affine_bench(benchmark::State& st, int bits, bool gemm) {
  const int64_t N = st.range(0), K = st.range(1), M = st.range(2), gs = 128, G = K / gs;
  const int64_t row_bytes = bits == 8 ? K : K / 2;
  std::vector<uint8_t> q = rand_bytes(size_t(N * row_bytes), 1);
  std::vector<int32_t> starts;
  for (int64_t g = 0; g <= G; ++g) starts.push_back(int32_t(g * gs));
  std::vector<float> scales(size_t(N * G), 0.01f);
  std::vector<int32_t> zeros(size_t(N * G), 1 << (bits - 1));
  QAffineView v{bits, N, K, row_bytes, q.data(), G, starts.data(), scales.data(), zeros.data(), nullptr};
  const std::vector<float> X = rand_x(M * K);
  std::vector<float> Y(size_t(M * N));
  for (auto _ : st) {
    if (gemm) qgemm_affine(v, X.data(), M, Y.data(), Precision::BF16);
    else qgemv_affine(v, X.data(), M, Y.data(), Precision::BF16);
    benchmark::DoNotOptimize(Y.data());
  }
  report(st, N * row_bytes + N * G * 8);
  st.counters["threads"] = num_threads();
}

void BM_QgemvInt8(benchmark::State& st) { affine_bench(st, 8, false); }
void BM_QgemvInt4(benchmark::State& st) { affine_bench(st, 4, false); }
void BM_QgemmInt4(benchmark::State& st) { affine_bench(st, 4, true); }

void BM_QgemvNf4(benchmark::State& st) {
  const int64_t N = st.range(0), K = st.range(1), M = st.range(2);
  std::vector<uint8_t> packed = rand_bytes(size_t(N * K / 2), 2);
  std::vector<float> absmax(size_t(N * K / 64), 0.05f);
  const std::vector<float> code = {-1.0f, -0.696f, -0.525f, -0.395f, -0.284f, -0.185f, -0.091f, 0.0f,
                                   0.080f, 0.161f, 0.246f, 0.338f, 0.441f, 0.563f, 0.723f, 1.0f};
  QNf4View v{N, K, 64, packed.data(), absmax.data(), code.data()};
  const std::vector<float> X = rand_x(M * K);
  std::vector<float> Y(size_t(M * N));
  for (auto _ : st) {
    qgemv_nf4(v, X.data(), M, Y.data(), Precision::BF16);
    benchmark::DoNotOptimize(Y.data());
  }
  report(st, N * K / 2 + N * K / 64 * 4);
}

void BM_QgemvFp8(benchmark::State& st) {
  const int64_t N = st.range(0), K = st.range(1), M = st.range(2);
  std::vector<uint8_t> w = rand_bytes(size_t(N * K), 3);
  for (auto& c : w)
    if ((c & 0x7f) == 0x7f) c = 0;
  std::vector<float> scale(size_t(N), 0.001f);
  QFp8View v{N, K, w.data(), scale.data(), true};
  const std::vector<float> X = rand_x(M * K);
  std::vector<float> as(size_t(M), 0.01f);
  std::vector<float> Y(size_t(M * N));
  for (auto _ : st) {
    qgemv_fp8(v, X.data(), M, as.data(), Y.data(), Precision::BF16);
    benchmark::DoNotOptimize(Y.data());
  }
  report(st, N * K + N * 4);
}

// {131072, 2048, 1}: a 128-256 MiB matrix, far larger than the caches: the DRAM-bound
// decode regime (the model reads each matrix once per token).
#define LQ_SHAPES(B) \
  B->Args({8192, 2048, 1})->Args({2048, 8192, 1})->Args({8192, 2048, 4})->Args({131072, 2048, 1})->UseRealTime()
BENCHMARK(BM_QgemvInt8)->Apply([](auto* b) { LQ_SHAPES(b); });
BENCHMARK(BM_QgemvInt4)->Apply([](auto* b) { LQ_SHAPES(b); });
BENCHMARK(BM_QgemvNf4)->Apply([](auto* b) { LQ_SHAPES(b); });
BENCHMARK(BM_QgemvFp8)->Apply([](auto* b) { LQ_SHAPES(b); });
BENCHMARK(BM_QgemmInt4)->Args({8192, 2048, 512})->UseRealTime();

}  // namespace
}  // namespace lq::cpu
