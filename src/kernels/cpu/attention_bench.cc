// kernels/cpu/attention_bench.cc: attention_causal throughput.
//
// Shapes: Hq=32, Hkv=8, D=64 (Llama-3.2-1B-like). Prefill: a T=512 chunk at
// pos0 in {0, 4096, 32256}; reports GFLOP/s counting 4*D flops per visible
// (query head, key) pair (q.k and p.v multiply-adds). Decode: T=1 at S in
// {4096, 32768}; reports GB/s of K and V read. Run with OMP_NUM_THREADS=2.
// Arguments: {pos0 or S, bf16 (0/1)}.

#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/attention.h"

namespace {

using lq::Precision;
using lq::cpu::KVView;

constexpr int64_t kHq = 32, kHkv = 8, kD = 64;

struct Cache {
  std::vector<float> f32k, f32v;
  std::vector<uint16_t> bk, bv;
  int64_t S_cap;
  Cache(int64_t S, bool bf16) : S_cap(S) {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    const size_t n = size_t(kHkv * S * kD);
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
    kv.head_stride = S_cap * kD;
    return kv;
  }
};

std::vector<float> random_q(int64_t T) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::vector<float> q(size_t(T * kHq * kD));
  for (auto& x : q) x = nd(rng);
  return q;
}

void BM_AttnPrefill(benchmark::State& state) {
  const int64_t T = 512, pos0 = state.range(0);
  const bool bf16 = state.range(1) != 0;
  const Cache cache(pos0 + T, bf16);
  const auto q = random_q(T);
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(float(kD));
  for (auto _ : state) {
    lq::cpu::attention_causal(q.data(), T, kHq, kHkv, kD, cache.view(), pos0, scale, out.data(),
                              bf16 ? Precision::BF16 : Precision::F32);
    benchmark::DoNotOptimize(out.data());
  }
  double pairs = 0;  // visible (query, key) pairs per head
  for (int64_t t = 0; t < T; ++t) pairs += double(pos0 + t + 1);
  const double flops = 4.0 * kD * kHq * pairs;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AttnPrefill)
    ->ArgNames({"pos0", "bf16"})
    ->ArgsProduct({{0, 4096, 32256}, {1, 0}})
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
