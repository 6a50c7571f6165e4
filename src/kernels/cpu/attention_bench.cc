// kernels/cpu/attention_bench.cc: attention_causal throughput.
//
// BM_AttnPrefill: Precision::BF16 with a bf16 KV cache (the engine's bf16 mode), a
// T=512 chunk ending at a context of ctx in {2048, 8192, 32768} tokens (pos0 = ctx -
// 512), for each prefill kernel: fp32 (the Highway FMA kernel, i.e. the path before
// the bf16 kernels existed), avx512bf16, amx; Hq=32, Hkv=8 with D=64
// (Llama-3.2-1B-like) and D=128 (Llama-3.1-8B-like). Kernels the CPU lacks are
// skipped. BM_AttnPrefillF32: fp32 cache, Precision::F32 (always the fp32 kernel).
// GFLOP/s counts 4*D flops per visible (query head, key) pair (q.k and p.v
// multiply-adds). Decode: T=1 at S in {4096, 32768}; reports GB/s of K and V read.
// Run with OMP_NUM_THREADS=2.

#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/attention.h"

namespace {

using lq::Precision;
using lq::cpu::KVView;

constexpr int64_t kHq = 32, kHkv = 8, kD = 64;  // decode and F32 prefill shapes

struct Cache {
  std::vector<float> f32k, f32v;
  std::vector<uint16_t> bk, bv;
  int64_t S_cap, D;
  Cache(int64_t S, bool bf16, int64_t d = kD) : S_cap(S), D(d) {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    const size_t n = size_t(kHkv * S * D);
    if (bf16) {
      bk.resize(n);
      bv.resize(n);
      for (size_t i = 0; i < n; ++i) {
        bk[i] = lq::f32_to_bf16(nd(rng));
        bv[i] = lq::f32_to_bf16(nd(rng));
      }
    } else {
      f32k.resize(n);
      f32v.resize(n);
      for (size_t i = 0; i < n; ++i) {
        f32k[i] = nd(rng);
        f32v[i] = nd(rng);
      }
    }
  }
  KVView view() const {
    KVView kv;
    kv.bf16 = !bk.empty();
    kv.k = kv.bf16 ? static_cast<const void*>(bk.data()) : static_cast<const void*>(f32k.data());
    kv.v = kv.bf16 ? static_cast<const void*>(bv.data()) : static_cast<const void*>(f32v.data());
    kv.head_stride = S_cap * D;
    return kv;
  }
};

std::vector<float> random_q(int64_t T, int64_t D = kD) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::vector<float> q(size_t(T * kHq * D));
  for (auto& x : q) x = nd(rng);
  return q;
}

double prefill_flops(int64_t T, int64_t pos0, int64_t D) {
  double pairs = 0;  // visible (query, key) pairs per head
  for (int64_t t = 0; t < T; ++t) pairs += double(pos0 + t + 1);
  return 4.0 * double(D) * kHq * pairs;
}

// Args: {ctx, kernel (0 fp32, 1 avx512bf16, 2 amx), D}.
void BM_AttnPrefill(benchmark::State& state) {
  const int64_t T = 512, ctx = state.range(0), pos0 = ctx - T, D = state.range(2);
  const lq::cpu::AttnKernel k = state.range(1) == 0   ? lq::cpu::AttnKernel::Fp32
                                : state.range(1) == 1 ? lq::cpu::AttnKernel::Avx512Bf16
                                                      : lq::cpu::AttnKernel::Amx;
  if (!lq::cpu::attention_kernel_available(k)) {
    state.SkipWithError("kernel not available on this CPU");
    return;
  }
  const Cache cache(ctx, true, D);
  const auto q = random_q(T, D);
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(float(D));
  for (auto _ : state) {
    lq::cpu::attention_causal_with(k, q.data(), T, kHq, kHkv, D, cache.view(), pos0, scale, out.data(),
                                   Precision::BF16);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(lq::cpu::attention_kernel_name(k));
  state.counters["GFLOP/s"] = benchmark::Counter(prefill_flops(T, pos0, D) * 1e-9 * double(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AttnPrefill)
    ->ArgNames({"ctx", "kernel", "D"})
    ->ArgsProduct({{512, 2048, 8192, 32768}, {0, 1, 2}, {64, 128}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_AttnPrefillF32(benchmark::State& state) {
  const int64_t T = 512, pos0 = state.range(0);
  const Cache cache(pos0 + T, false);
  const auto q = random_q(T);
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(float(kD));
  for (auto _ : state) {
    lq::cpu::attention_causal(q.data(), T, kHq, kHkv, kD, cache.view(), pos0, scale, out.data(), Precision::F32);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(prefill_flops(T, pos0, kD) * 1e-9 * double(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AttnPrefillF32)
    ->ArgNames({"pos0"})
    ->Arg(0)
    ->Arg(4096)
    ->Arg(32256)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_AttnDecode(benchmark::State& state) {
  const int64_t S = state.range(0);
  const bool bf16 = state.range(1) != 0;
  const Cache cache(S, bf16);
  const auto q = random_q(1);
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(float(kD));
  for (auto _ : state) {
    lq::cpu::attention_causal(q.data(), 1, kHq, kHkv, kD, cache.view(), S - 1, scale, out.data(),
                              bf16 ? Precision::BF16 : Precision::F32);
    benchmark::DoNotOptimize(out.data());
  }
  const double bytes = 2.0 * kHkv * double(S) * kD * (bf16 ? 2 : 4);
  state.counters["GB/s"] =
      benchmark::Counter(bytes * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AttnDecode)
    ->ArgNames({"S", "bf16"})
    ->ArgsProduct({{4096, 32768}, {1, 0}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
