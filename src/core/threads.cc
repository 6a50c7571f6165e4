#include "core/threads.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <exception>
#include <fstream>
#include <mutex>

namespace lq {

int hardware_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, omp_get_num_procs());
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos && p + 2 <= line.size()) return line.substr(p + 2);
    }
  }
  return "unknown";
}

void set_num_threads(int n) { omp_set_num_threads(n <= 0 ? hardware_threads() : n); }

int num_threads() { return omp_get_max_threads(); }

namespace {
// Exceptions must not cross an OpenMP region: capture the first and rethrow.
struct ExceptionSlot {
  std::exception_ptr ptr;
  std::mutex mu;
  void capture() {
    std::lock_guard<std::mutex> lock(mu);
    if (!ptr) ptr = std::current_exception();
  }
  void rethrow() {
    if (ptr) std::rethrow_exception(ptr);
  }
};
}  // namespace

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t units = (n + grain - 1) / grain;
  const int nt = int(std::min<int64_t>(num_threads(), units));
  if (nt <= 1) { fn(0, n); return; }
  ExceptionSlot slot;
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    const int64_t u0 = units * t / nt, u1 = units * (t + 1) / nt;
    const int64_t b = u0 * grain, e = std::min(n, u1 * grain);
    if (b < e) {
      try { fn(b, e); } catch (...) { slot.capture(); }
    }
  }
  slot.rethrow();
}

void parallel_run(const std::function<void(int, int)>& fn) {
  const int nt = num_threads();
  if (nt <= 1) { fn(0, 1); return; }
  ExceptionSlot slot;
#pragma omp parallel num_threads(nt)
  {
    try { fn(omp_get_thread_num(), omp_get_num_threads()); } catch (...) { slot.capture(); }
  }
  slot.rethrow();
}

}  // namespace lq
