// kernels/cpu/matmul.cc: linear layers Y = X · W^T with bf16 weights W[N, K].
//
// Dispatch (see matmul.h):
//   M <= kGemvMaxRows  -> gemv_bf16w (gemv.cc, Highway): memory-bound decode.
//   M >  kGemvMaxRows  -> compute-bound prefill: for Precision::BF16 with AMX
//                         available (amx_gemm_enabled()) the hand-written
//                         gemm_bf16w_amx (amx_gemm.cc); otherwise (F32, no
//                         AMX, or LQ_BF16_GEMM=onednn) gemm_bf16w_onednn
//                         (oneDNN brgemm, AMX / AVX-512 where present).
//
// oneDNN path, no persistent weight copies (resident memory must stay equal to
// the mmapped checkpoint):
//   BF16: X is rounded to bf16 (RNE) into a per-thread scratch buffer; the
//         checkpoint's W[N, K] is handed to oneDNN as the [K, N] matrix with
//         strides {1, K} (format "ba"), which brgemm reads directly (it packs
//         the B blocks it needs internally, per call). Measured on the 2-core
//         SPR VM: "ba" is faster than the plain "ab" layout and within ~10% of
//         pre-reordered blocked weights (see docs/kernels-matmul.md).
//   F32:  oneDNN 2.6 has no f32 x bf16 matmul, so W is widened to fp32 one
//         N-tile (~kF32TileBytes) at a time into a per-thread scratch buffer
//         (still [n, K] = "ba" view, no transpose) and multiplied by the f32
//         matmul into a dense [M, n] buffer that is then copied into Y's columns
//         (a strided destination makes oneDNN fall back from brgemm to gemm:jit).
// Primitives are created once per shape and cached (mutex-protected map,
// bounded); executions from several caller threads are safe (one stream per call).
// Numerics: both paths accumulate in fp32 with exact products (bf16·bf16 and
// fp32·bf16 fit an fp32 FMA's exact intermediate).

#include "kernels/cpu/matmul.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdlib>
#include <cstring>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/aligned.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/amx_gemm.h"

namespace lq::cpu {

namespace {

using dt = dnnl::memory::data_type;
using dims = dnnl::memory::dims;

// Size of the fp32 weight tile of the F32 GEMM path: about half an L2 (2 MiB
// per core here) per thread, so the tile is converted in cache and consumed
// from cache by the matmul.
#ifndef LQ_F32_TILE_BYTES
#define LQ_F32_TILE_BYTES (int64_t(4) << 20)
#endif
constexpr int64_t kF32TileBytes = LQ_F32_TILE_BYTES;

void check_args(const char* fn, const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N,
                const float* Y) {
  LQ_CHECK(M >= 0 && K >= 0 && N >= 0, "{}: negative shape M={} K={} N={}", fn, M, K, N);
  if (M == 0 || N == 0) return;
  LQ_CHECK(Y != nullptr, "{}: null output Y for M={} N={}", fn, M, N);
  if (K > 0)
    LQ_CHECK(X != nullptr && W != nullptr, "{}: null input (X={}, W={}) for M={} K={} N={}", fn,
             static_cast<const void*>(X), static_cast<const void*>(W), M, K, N);
}

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// Cache of matmul primitives keyed by (precision, M, K, n); the destination is
// always a dense [M, n] matrix (see onednn_matmul_nt).
struct Prim {
  dnnl::matmul mm;
  dnnl::memory::desc src, wei, dst;
  std::string impl;
};
using PrimKey = std::tuple<int, int64_t, int64_t, int64_t>;

std::shared_ptr<const Prim> get_prim(Precision p, int64_t M, int64_t K, int64_t n) {
  static std::mutex mu;
  static std::map<PrimKey, std::shared_ptr<const Prim>> cache;
  const PrimKey key{int(p), M, K, n};
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  // Create outside the lock (JIT compilation can take milliseconds).
  const dt in = p == Precision::BF16 ? dt::bf16 : dt::f32;
  auto prim = std::make_shared<Prim>();
  prim->src = dnnl::memory::desc(dims{M, K}, in, dims{K, 1});
  prim->wei = dnnl::memory::desc(dims{K, n}, in, dims{1, K});  // W[n, K] read as [K, n] ("ba")
  prim->dst = dnnl::memory::desc(dims{M, n}, dt::f32, dims{n, 1});
  try {
    auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(prim->src, prim->wei, prim->dst),
                                           cpu_engine());
    prim->impl = pd.impl_info_str();
    prim->mm = dnnl::matmul(pd);
  } catch (const dnnl::error& e) {
    fail("matmul: oneDNN could not create a {} matmul for M={} K={} N={}: {}",
         precision_name(p), M, K, n, e.what());
  }
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= 256) cache.clear();  // prompts of many lengths: keep memory bounded
  auto [it, inserted] = cache.emplace(key, std::move(prim));
  return it->second;
}

int64_t f32_tile_cols(int64_t K, int64_t N) {
  int64_t nt = kF32TileBytes / (4 * std::max<int64_t>(K, 1));
  nt = std::max<int64_t>(64, nt / 64 * 64);
  return std::min(nt, N);
}

// Reused per calling thread so that repeated calls do not page-fault fresh memory.
// X in bf16 is oneDNN's A operand: 64-byte aligned rows-start, else its AMX kernel
// runs ~1.35x slower (measured: 1.40 vs 1.91 TFLOP/s, M=512 K=2048 N=8192, 2 threads).
thread_local AlignedVector<uint16_t> tl_xbf16;
thread_local AlignedVector<float> tl_wtile;
thread_local AlignedVector<float> tl_ytile;

}  // namespace

void onednn_matmul_nt(bool bf16, const void* A, int64_t M, int64_t K, const void* B, int64_t n, float* Y,
                      int64_t ldy) {
  LQ_CHECK(M > 0 && K > 0 && n > 0 && ldy >= n && A && B && Y,
           "onednn_matmul_nt: bad arguments M={} K={} n={} ldy={}", M, K, n, ldy);
  const auto prim = get_prim(bf16 ? Precision::BF16 : Precision::F32, M, K, n);
  // oneDNN 2.6 runs its AMX / AVX-512 brgemm only for a dense destination; a strided
  // one falls back to gemm:jit (1.55 vs 1.99 TFLOP/s, M=512 K=2048 n=1024, bf16, 2
  // threads): a destination narrower than ldy goes through a dense buffer.
  float* out = Y;
  if (n != ldy) {
    if (int64_t(tl_ytile.size()) < M * n) tl_ytile.resize(size_t(M * n));
    out = tl_ytile.data();
  }
  dnnl::engine& eng = cpu_engine();
  dnnl::stream s(eng);
  // oneDNN takes non-const handles but only reads src and weights.
  dnnl::memory ms(prim->src, eng, const_cast<void*>(A));
  dnnl::memory mw(prim->wei, eng, const_cast<void*>(B));
  dnnl::memory md(prim->dst, eng, out);
  prim->mm.execute(s, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}});
  s.wait();
  if (out != Y)
    parallel_for(M, [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m) std::copy(out + m * n, out + (m + 1) * n, Y + m * ldy);
    });
}

void gemm_bf16w_onednn(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                       Precision p) {
  check_args("gemm_bf16w_onednn", X, M, K, W, N, Y);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::fill(Y, Y + M * N, 0.0f);
    return;
  }
  if (p == Precision::BF16) {
    AlignedVector<uint16_t>& xb = tl_xbf16;
    if (int64_t(xb.size()) < M * K) xb.resize(size_t(M * K));
    uint16_t* xbp = xb.data();
    parallel_for(
        M * K, [&](int64_t b, int64_t e) { f32_to_bf16_n(X + b, e - b, xbp + b); }, 4096);
    onednn_matmul_nt(true, xbp, M, K, W, N, Y, N);
    return;
  }
  const int64_t nt = f32_tile_cols(K, N);
  AlignedVector<float>& wt = tl_wtile;
  if (int64_t(wt.size()) < nt * K) wt.resize(size_t(nt * K));
  float* wtp = wt.data();
  for (int64_t n0 = 0; n0 < N; n0 += nt) {
    const int64_t n = std::min(nt, N - n0);
    const uint16_t* wsrc = W + n0 * K;
    parallel_for(
        n * K, [&](int64_t b, int64_t e) { bf16_to_f32_n(wsrc + b, e - b, wtp + b); }, 4096);
    onednn_matmul_nt(false, X, M, K, wtp, n, Y + n0, N);
  }
}

std::string onednn_impl_name(int64_t M, int64_t K, int64_t N, Precision p) {
  LQ_CHECK(M > 0 && K > 0 && N > 0, "onednn_impl_name: shape must be positive, got M={} K={} N={}",
           M, K, N);
  return get_prim(p, M, K, p == Precision::BF16 ? N : f32_tile_cols(K, N))->impl;
}

namespace {
// BF16 prefill GEMM: the AMX kernel where available (default), or oneDNN
// (LQ_BF16_GEMM=onednn). With streaming stores of Y and L2 prefetch of the next W
// panel, amx_gemm.cc measured 1.94-2.08 TFLOP/s vs oneDNN 2.6's 1.61-1.73 on the
// K = 2048 prefill shapes and the same (~1.5) on K = 8192 and N = 512 (2 threads,
// same session); llama-3.2-1b prefill 512: 642-685 vs 528-639 tok/s (4 interleaved
// runs each, docs/kernels-matmul.md). LQ_DISABLE_AMX=1 also rules the AMX kernel out.
bool use_amx_gemm() {
  static const bool amx = [] {
    const char* e = std::getenv("LQ_BF16_GEMM");
    return !(e != nullptr && std::strcmp(e, "onednn") == 0) && amx_gemm_enabled();
  }();
  return amx;
}

// Products of M rows in precision p run on the AMX GEMM (and its fused forms).
bool amx_prefill(int64_t M, Precision p) { return p == Precision::BF16 && M > kGemvMaxRows && use_amx_gemm(); }
}  // namespace

void matmul_bf16w(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                  Precision p) {
  check_args("matmul_bf16w", X, M, K, W, N, Y);
  if (M <= kGemvMaxRows) gemv_bf16w(X, M, K, W, N, Y, p);
  else if (p == Precision::BF16 && use_amx_gemm()) gemm_bf16w_amx(X, M, K, W, N, Y);
  else gemm_bf16w_onednn(X, M, K, W, N, Y, p);
}

void matmul_bf16w_group(const float* X, int64_t M, int64_t K, const Bf16WeightOut* outs, int n_out, Precision p) {
  LQ_CHECK(outs != nullptr && n_out >= 1 && n_out <= 3, "matmul_bf16w_group: {} outputs (1 to 3 supported)", n_out);
  if (amx_prefill(M, p)) {
    AmxGemmOut o[3];
    for (int i = 0; i < n_out; ++i) o[i] = AmxGemmOut{outs[i].W, outs[i].N, outs[i].Y};
    gemm_bf16w_amx_group(X, M, K, o, n_out);
    return;
  }
  for (int i = 0; i < n_out; ++i) matmul_bf16w(X, M, K, outs[i].W, outs[i].N, outs[i].Y, p);
}

bool swiglu_bf16w(const float* X, int64_t M, int64_t K, const uint16_t* Wg, const uint16_t* Wu, int64_t N,
                  float* H, Precision p) {
  if (!amx_prefill(M, p) || N <= 0 || !amx_swiglu_fusable(K)) return false;
  check_args("swiglu_bf16w", X, M, K, Wg, N, H);
  LQ_CHECK(Wu != nullptr, "swiglu_bf16w: null up weights (M={} K={} N={})", M, K, N);
  gemm_bf16w_amx_swiglu(X, M, K, Wg, Wu, N, H);
  return true;
}

bool swiglu_bf16w_packed(const float* X, int64_t M, int64_t K, const uint16_t* Wg, const uint16_t* Wu, int64_t N,
                         AmxPackedX* H, Precision p) {
  if (!amx_prefill(M, p) || N <= 0 || !amx_swiglu_fusable(K)) return false;
  LQ_CHECK(H != nullptr, "swiglu_bf16w_packed: null output handle (M={} K={} N={})", M, K, N);
  *H = gemm_bf16w_amx_swiglu_packed(X, M, K, Wg, Wu, N);
  return true;
}

void matmul_bf16w_packed(const AmxPackedX& H, const uint16_t* W, int64_t N, float* Y, bool add) {
  gemm_bf16w_amx_packed(H, W, N, Y, add);
}

bool matmul_bf16w_add(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y, Precision p) {
  if (!amx_prefill(M, p)) return false;
  check_args("matmul_bf16w_add", X, M, K, W, N, Y);
  gemm_bf16w_amx(X, M, K, W, N, Y, /*add=*/true);
  return true;
}

void matmul_bf16w_ref(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                      Precision p) {
  check_args("matmul_bf16w_ref", X, M, K, W, N, Y);
  std::vector<double> x(static_cast<size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k = 0; k < K; ++k)
      x[k] = p == Precision::BF16 ? double(round_bf16(X[m * K + k])) : double(X[m * K + k]);
    for (int64_t n = 0; n < N; ++n) {
      const uint16_t* w = W + n * K;
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k) acc += x[k] * double(bf16_to_f32(w[k]));
      Y[m * N + n] = float(acc);
    }
  }
}

}  // namespace lq::cpu
