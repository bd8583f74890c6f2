// Channel-slice vectors for the hand-written kernels over NHWC's contiguous channels: GCC vector
// extensions of 16 floats (one AVX-512 register, or two AVX2 ones) and 8 floats (a tail of 8),
// with plain floats for what remains; and the register-blocked products kernel built on them.
// Internal to ops/.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace edgetrain::simd {

typedef float V16 __attribute__((vector_size(64)));
typedef float V8 __attribute__((vector_size(32)));
constexpr int64_t kLanes = 16;  // floats in a V16

template <class V> inline V load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <> inline float load<float>(const float* p) { return *p; }
template <class V> inline void store(float* p, const V& v) { std::memcpy(p, &v, sizeof v); }

// Non-temporal stores (AVX-512 only): a whole 64-byte aligned line written to memory without
// reading it into the cache first. store_stream of anything but a V16 is an ordinary store; a
// writer ends with stream_fence() before others may read what it wrote.
constexpr bool kCanStream =
#if defined(__AVX512F__)
    true;
#else
    false;
#endif
template <class V> inline void store_stream(float* p, const V& v) {
#if defined(__AVX512F__)
  if constexpr (sizeof(V) == 64) {
    _mm512_stream_ps(p, reinterpret_cast<const __m512&>(v));
    return;
  }
#endif
  store(p, v);
}
inline void stream_fence() {
#if defined(__AVX512F__)
  _mm_sfence();
#endif
}

// Keeps a loaded vector in a register: GCC otherwise folds a load that feeds several FMAs into
// each of them (R loads where one would do; the register-blocked loops became load-bound). Only
// where V fits one register (AVX-512: up to 16 floats; AVX: up to 8); elsewhere nothing.
template <class V> inline void keep_in_register(V& v) {
#if defined(__AVX512F__)
  asm("" : "+v"(v));
#elif defined(__AVX__)
  if constexpr (sizeof(V) <= 32) asm("" : "+x"(v));
#else
  (void)v;
#endif
}

// f.operator()<V>(c) over slices covering [begin, end): 16 wide, then 8, then single channels.
template <class F>
inline void for_slices(int64_t begin, int64_t end, F&& f) {
  int64_t c = begin;
  for (; c + 16 <= end; c += 16) f.template operator()<V16>(c);
  for (; c + 8 <= end; c += 8) f.template operator()<V8>(c);
  for (; c < end; ++c) f.template operator()<float>(c);
}
// ... covering [0, channels).
template <class F>
inline void for_slices(int64_t channels, F&& f) {
  for_slices(0, channels, static_cast<F&&>(f));
}

// ---------------------------------------------------------------------------------------------
// 16x16 transpose in registers: dst[c * ld_dst + r] = src[r * ld_src + c] for r, c < 16. Four
// rounds swap the off-diagonal s x s blocks (s = 8, 4, 2, 1) of row pairs (i, i + s); each output
// row is one two-source shuffle (AVX-512: vpermt2ps), 64 in all. Packing a B^T of 64 x 192
// floats with scalar strided loads took as long as the 128-row GEMM it fed (pw_192to64_2x2).
template <int S, size_t... C>
inline void swap_blocks(V16& lo, V16& hi, std::index_sequence<C...>) {
  const V16 a = lo, b = hi;
  lo = __builtin_shufflevector(a, b, ((C & S) ? 16 + C - S : C)...);
  hi = __builtin_shufflevector(a, b, ((C & S) ? 16 + C : C + S)...);
}
template <int S>
inline void swap_round(V16 (&v)[16]) {
  for (int i = 0; i < 16; ++i)
    if ((i & S) == 0) swap_blocks<S>(v[i], v[i + S], std::make_index_sequence<16>{});
}
inline void transpose_16x16(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
  V16 v[16];
  for (int r = 0; r < 16; ++r) v[r] = load<V16>(src + r * ld_src);
  swap_round<8>(v);
  swap_round<4>(v);
  swap_round<2>(v);
  swap_round<1>(v);
  for (int c = 0; c < 16; ++c) store(dst + c * ld_dst, v[c]);
}

// dst[p * ld_dst + j] = src[j * ld_src + p] for j < n, p < k, and zero for n <= j < n_pad (the
// padding of the last vector): B^T's rows packed as B's, for the streaming kernels.
inline void transpose_pack(const float* src, int64_t ld_src, int64_t n, int64_t k, float* dst, int64_t ld_dst,
                           int64_t n_pad) {
  for (int64_t j0 = 0; j0 < n_pad; j0 += kLanes) {
    for (int64_t p0 = 0; p0 < k; p0 += kLanes) {
      if (j0 + kLanes <= n && p0 + kLanes <= k) {
        transpose_16x16(src + j0 * ld_src + p0, ld_src, dst + p0 * ld_dst + j0, ld_dst);
        continue;
      }
      // An edge block: through a zero-padded tile.
      alignas(64) float in[kLanes * kLanes] = {}, out[kLanes * kLanes];
      const int64_t rows = std::min(kLanes, n - j0), cols = std::min(kLanes, k - p0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) in[r * kLanes + c] = src[(j0 + r) * ld_src + p0 + c];
      transpose_16x16(in, kLanes, out, kLanes);
      for (int64_t c = 0; c < cols; ++c)
        for (int64_t r = 0; r < std::min(kLanes, n_pad - j0); ++r) dst[(p0 + c) * ld_dst + j0 + r] = out[c * kLanes + r];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The register-blocked products kernel (Winograd's three directions, ops/gemm.cc's small
// GEMMs): for R rows r,
//   m[r][0 .. 16 NV) (+)= sum over k of A(r, k) * b[k * ldb + 0 .. 16 NV),  A(r, k) = a[r * a_r + k * a_k],
// accumulators in registers (R x NV vectors), one broadcast of A per (r, k). Winograd's forward
// and backward data read V rows in place (a_r = ldv, a_k = 1) against packed weight panels, its
// weight gradient dy's transformed tiles across (a_r = 1, a_k = ldd) against x's.
//
// The sum over k runs in stretches of kSumBlock, each from zero, added to the result at its
// end: a float sum of n terms rounds ~n x eps in the worst case, so at 512 channels this rounds
// like 32 + 16 terms, not 512 (measured at 256 channels, F(4x4): max error 1.9e-5 of the output
// RMS with one running sum, 5.6e-6 in stretches of 32; see tests/ops/test_conv2d_winograd.cc).
constexpr int64_t kSumBlock = 32;

template <int R, int NV>
inline void product_block(int64_t k_count, const float* a, int64_t a_r, int64_t a_k, const float* b, int64_t ldb,
                          float* m, int64_t ldm, bool add) {
  V16 total[R][NV];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NV; ++j) total[r][j] = add ? load<V16>(m + r * ldm + j * kLanes) : V16{};
  for (int64_t k0 = 0; k0 < k_count; k0 += kSumBlock) {
    V16 acc[R][NV];
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < NV; ++j) acc[r][j] = V16{};
    const int64_t k1 = std::min(k_count, k0 + kSumBlock);
    for (int64_t k = k0; k < k1; ++k) {
      V16 bk[NV];
      for (int j = 0; j < NV; ++j) bk[j] = load<V16>(b + k * ldb + j * kLanes);
      for (int r = 0; r < R; ++r) {
        const float av = a[r * a_r + k * a_k];
        for (int j = 0; j < NV; ++j) acc[r][j] += av * bk[j];
      }
    }
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < NV; ++j) total[r][j] += acc[r][j];
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NV; ++j) store(m + r * ldm + j * kLanes, total[r][j]);
}

// ---------------------------------------------------------------------------------------------
// The streaming kernel (ops/gemm.cc's skinny GEMMs: C[M,N] (+)= A[M,K] * B[K,N] with M large and
// B small, the pointwise convs' forward and backward data on small feature maps): B packed once
// as [K][NV * 16] (zero-padded columns), kept in L1/L2 while row blocks of A stream past it. A tile
// of R rows x NV vectors (and maybe a half vector) keeps its accumulators in registers; A(r, k) = a[r * a_r + k * a_k] (the
// weight gradient reads A transposed); `cols` (<= 16 NV) are the valid columns, the rest is
// dropped when storing. The sum over k runs in stretches of kStreamStretch
// added into C, for the rounding reason given at kSumBlock (C is in L1: the stores are cheap).
constexpr int64_t kStreamStretch = 64;

// Where the streamed operand is read down its columns (a_k > one vector: the short GEMMs'
// B^T taken from a row-major B, the backward data of 1x1 convs on 1x1 maps, dx = dy W with W
// [out][in]), each k reads one cache line of a row 1.3-3.8 KiB from the last (MobileNetV2's
// last convs): the hardware prefetchers do not follow, and with W out of cache (as in a training
// step, where the forward read it long before) every line waited on memory. A software prefetch
// kStridedPrefetchRows rows ahead: MobileNetV2 32x32 b32's last conv's backward data 0.37 ->
// 0.24 ms and the one before 0.30 -> 0.21 ms in the step (bench --profile); whole steps
// 0.95-0.98x MobileNetV2, 0.96x ResNet-18 (32x32 b32, interleaved A/B, noisy host). A prefetch
// per 16 k along contiguous rows measured mixed (forward of the same layers 0.88-1.05x).
constexpr int64_t kStridedPrefetchRows = 32;
template <int R, int NV, bool kHalf = false>
inline void stream_tile(int64_t k_count, const float* a, int64_t a_r, int64_t a_k, const float* bp, int64_t ldbp,
                        float* c, int64_t ldc, int64_t cols, bool add) {
  // NV vectors of 16 columns, then with kHalf one of 8 (N = 24 wastes no lanes; N = 8 is the
  // half vector alone, NV = 0).
  constexpr int kWidth = NV * kLanes + (kHalf ? 8 : 0);
  constexpr int kVectors = NV > 0 ? NV : 1;  // array sizes (a zero-length array is not C++)
  const bool full = cols == kWidth;
  const bool strided = a_k > kLanes;
  // B read in place from a wide row-major matrix (ops/gemm.cc's wide GEMMs): rows far apart.
  const bool b_strided = ldbp > 4 * kLanes;
  for (int64_t k0 = 0; k0 < k_count; k0 += kStreamStretch) {
    V16 acc[R][kVectors];
    V8 half[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[r][j] = V16{};
      half[r] = V8{};
    }
    const int64_t k1 = std::min(k_count, k0 + kStreamStretch);
    for (int64_t k = k0; k < k1; ++k) {
      if (strided && k + kStridedPrefetchRows < k_count) __builtin_prefetch(a + (k + kStridedPrefetchRows) * a_k);
      // B in place (wide GEMMs, one stretch of rows per call, tiles left to right): the same row's
      // columns of the next tile, into L2, so that each row of B streams from memory in order. (A
      // packed B of 80-128 columns, the skinny GEMMs', takes it too: in cache, a wasted hint.)
      if (b_strided)
        for (int j = 0; j < kVectors; ++j) __builtin_prefetch(bp + k * ldbp + kWidth + j * kLanes, 0, 2);
      V16 bk[kVectors];
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) {
        V16 t = load<V16>(bp + k * ldbp + j * kLanes);
        keep_in_register(t);
        bk[j] = t;
      }
      V8 bh{};
      if constexpr (kHalf) {
        bh = load<V8>(bp + k * ldbp + NV * kLanes);
        keep_in_register(bh);
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const V16 av = a[r * a_r + k * a_k] - V16{};  // one broadcast (x - 0 folds to x), its low half for the half vector
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) acc[r][j] += av * bk[j];
        if constexpr (kHalf) half[r] += __builtin_shufflevector(av, av, 0, 1, 2, 3, 4, 5, 6, 7) * bh;
      }
    }
    const bool into = add || k0 > 0;  // C holds a sum to add to (else it may hold garbage)
    for (int r = 0; r < R; ++r) {
      float* cr = c + r * ldc;
      if (full) {
        for (int j = 0; j < NV; ++j) store(cr + j * kLanes, into ? load<V16>(cr + j * kLanes) + acc[r][j] : acc[r][j]);
        if constexpr (kHalf) store(cr + NV * kLanes, into ? load<V8>(cr + NV * kLanes) + half[r] : half[r]);
      } else {
        alignas(64) float t[NV * kLanes + 8];
        for (int j = 0; j < NV; ++j) store(t + j * kLanes, acc[r][j]);
        if constexpr (kHalf) store(t + NV * kLanes, half[r]);
        for (int64_t q = 0; q < cols; ++q) cr[q] = into ? cr[q] + t[q] : t[q];
      }
    }
  }
}

}  // namespace edgetrain::simd
