// kernels/cpu/bandwidth.cc: machine probe for sustained DRAM read bandwidth.
//
// measure_read_bandwidth allocates a buffer (default 1 GiB, larger than any L3
// we target), touches it in parallel, then repeatedly reads it with all current
// OpenMP threads, each summing its own contiguous slice with a Highway SIMD
// kernel (8 independent integer accumulators, so loads never wait on each other
// and the hardware prefetchers see one linear stream per thread). The median of
// the repeats is returned in bytes/s. Decode speed of a bf16 model is bounded by
// this number, so the GEMV is compared against it.
//
// Integer (wrapping) sums are used so the data can be anything: no denormal or
// NaN slow paths and no rounding concerns.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/bandwidth.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lq::cpu {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// Wrapping sum of p[0, n); p is vector-aligned, n a multiple of 8 vectors.
uint32_t SumU32(const uint32_t* HWY_RESTRICT p, size_t n) {
  const hn::ScalableTag<uint32_t> d;
  const size_t L = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  auto a4 = hn::Zero(d), a5 = hn::Zero(d), a6 = hn::Zero(d), a7 = hn::Zero(d);
  for (size_t i = 0; i + 8 * L <= n; i += 8 * L) {
    a0 = hn::Add(a0, hn::Load(d, p + i + 0 * L));
    a1 = hn::Add(a1, hn::Load(d, p + i + 1 * L));
    a2 = hn::Add(a2, hn::Load(d, p + i + 2 * L));
    a3 = hn::Add(a3, hn::Load(d, p + i + 3 * L));
    a4 = hn::Add(a4, hn::Load(d, p + i + 4 * L));
    a5 = hn::Add(a5, hn::Load(d, p + i + 5 * L));
    a6 = hn::Add(a6, hn::Load(d, p + i + 6 * L));
    a7 = hn::Add(a7, hn::Load(d, p + i + 7 * L));
  }
  const auto s = hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)),
                         hn::Add(hn::Add(a4, a5), hn::Add(a6, a7)));
  return hn::GetLane(hn::SumOfLanes(d, s));
}

}  // namespace HWY_NAMESPACE
}  // namespace lq::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE

#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "hwy/aligned_allocator.h"
#include "kernels/cpu/matmul.h"

namespace lq::cpu {

HWY_EXPORT(SumU32);

// The sums go to a global atomic so the reads cannot be optimized away.
std::atomic<uint32_t> g_bandwidth_sink{0};

double measure_read_bandwidth(int64_t bytes, int repeats) {
  LQ_CHECK(bytes >= (int64_t(1) << 16), "measure_read_bandwidth: buffer of {} bytes is too small "
           "(need >= 64 KiB, and more than the L3 size for a DRAM figure)", bytes);
  LQ_CHECK(repeats >= 1, "measure_read_bandwidth: repeats must be >= 1, got {}", repeats);
  // Slices are whole 4 KiB pages so every thread's slice is aligned and a
  // multiple of 8 vectors of any target.
  constexpr int64_t kPage = 4096;
  constexpr int64_t kWordsPerPage = kPage / int64_t(sizeof(uint32_t));
  const int64_t pages = bytes / kPage;
  const int64_t words = pages * kWordsPerPage;
  auto buf = hwy::AllocateAligned<uint32_t>(size_t(words));
  LQ_CHECK(buf != nullptr, "measure_read_bandwidth: cannot allocate {} bytes", bytes);
  uint32_t* p = buf.get();
  // Touch (first write) in parallel so pages are resident before timing.
  parallel_for(
      pages,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b * kWordsPerPage; i < e * kWordsPerPage; ++i) p[i] = uint32_t(i);
      },
      1);

  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_run([&](int t, int nt) {
      const int64_t b = pages * t / nt, e = pages * (t + 1) / nt;
      const uint32_t s = HWY_DYNAMIC_DISPATCH(SumU32)(p + b * kWordsPerPage,
                                                      size_t((e - b) * kWordsPerPage));
      g_bandwidth_sink.fetch_add(s, std::memory_order_relaxed);
    });
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(double(pages * kPage) / std::max(sec, 1e-9));
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace lq::cpu

#endif  // HWY_ONCE
