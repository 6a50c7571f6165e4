// kernels/cpu/x86.cc: run-time x86 feature detection (see x86.h).
#include "kernels/cpu/x86.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace lq::cpu::x86 {

namespace {

Features detect() {
  Features f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  f.amd = std::strcmp(vendor, "AuthenticAMD") == 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  if (!((c >> 27) & 1u)) return f;  // OSXSAVE
  uint32_t xlo = 0, xhi = 0;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  if ((xlo & 0xE6u) != 0xE6u) return f;  // OS saves SSE, AVX and AVX-512 state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const unsigned max_subleaf = a;
  const bool avx512f = (b >> 16) & 1u, dq = (b >> 17) & 1u, bw = (b >> 30) & 1u, vl = (b >> 31) & 1u;
  const bool amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u;
  f.avx512 = avx512f && dq && bw && vl;
  if (f.avx512 && max_subleaf >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = (a >> 5) & 1u;
  if (f.avx512 && amx_bf16 && amx_tile) {
    // Linux >= 5.16: the process must ask for the (large) tile data state.
    constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    unsigned long perm = 0;
    f.amx_bf16 = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0 &&
                 syscall(SYS_arch_prctl, kArchGetXcompPerm, &perm) == 0 && ((perm >> kXfeatureXtiledata) & 1ul);
  }
  return f;
}

}  // namespace

const Features& features() {
  static const Features f = detect();
  return f;
}

}  // namespace lq::cpu::x86
