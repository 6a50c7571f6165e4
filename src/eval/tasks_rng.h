// eval/tasks_rng.h: the deterministic random numbers of the task generators.
//
// Every example must be byte-identical across machines and standard
// libraries, so nothing here uses std:: distributions (their algorithms are
// implementation-defined). Seeds are mixed with SplitMix64 (Steele et al.),
// strings hashed with 64-bit FNV-1a, and the stream is xoshiro256** (Blackman &
// Vigna) seeded from SplitMix64. below(n) is unbiased (Lemire's multiply-shift
// with rejection); shuffle is Fisher-Yates driven by below().
#pragma once

#include <cstdint>

#include "core/rng.h"
#include <string>
#include <utility>
#include <vector>

namespace lq {

inline uint64_t mix64(uint64_t a, uint64_t b) {
  uint64_t s = a ^ (b * 0xD6E8FEB86659FD93ull);
  splitmix64(s);
  return splitmix64(s);
}

class TaskRng {
 public:
  explicit TaskRng(uint64_t seed) : rng_(seed) {}
  uint64_t next() { return rng_.next(); }
  // Uniform integer in [0, n), n > 0.
  uint64_t below(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < n) {
      const uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }
  // Uniform integer in [lo, hi].
  int64_t range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1)); }
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }
  // k distinct indices of [0, n) in random order (partial Fisher-Yates).
  std::vector<size_t> sample(size_t n, size_t k) {
    std::vector<size_t> idx(n);
    for (size_t i = 0; i < n; ++i) idx[i] = i;
    for (size_t i = 0; i < k && i < n; ++i) std::swap(idx[i], idx[i + below(n - i)]);
    idx.resize(k < n ? k : n);
    return idx;
  }

 private:
  Rng rng_;  // core/rng.h: xoshiro256** seeded by SplitMix64
};

}  // namespace lq
