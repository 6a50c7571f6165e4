// core/threads.h: the project's thread pool is OpenMP's.
//
// oneDNN (Debian's build) runs on GNU OpenMP; our own kernels use the same
// pool so the two never oversubscribe the cores. Work is split statically, so
// results are deterministic for a fixed thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace lq {

// Set the number of worker threads (<= 0: all hardware threads).
void set_num_threads(int n);
int num_threads();
// Hardware threads available to this process.
int hardware_threads();
// The CPU's model name from /proc/cpuinfo ("unknown" if unavailable).
std::string cpu_model_name();

// Run fn(begin, end) over [0, n) split into contiguous chunks, one per thread
// (static partition; chunks are multiples of `grain`).
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

// Run fn(thread_index, num_threads) once on each thread.
void parallel_run(const std::function<void(int, int)>& fn);

}  // namespace lq
