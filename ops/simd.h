// Channel-slice vectors for the hand-written kernels over NHWC's contiguous channels: GCC vector
// extensions of 16 floats (one AVX-512 register, or two AVX2 ones) and 8 floats (a tail of 8),
// with plain floats for what remains; and the register-blocked products kernel built on them.
// Internal to ops/.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

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

// f.operator()<V>(c) over slices covering [0, channels): 16 wide, then 8, then single channels.
template <class F>
inline void for_slices(int64_t channels, F&& f) {
  int64_t c = 0;
  for (; c + 16 <= channels; c += 16) f.template operator()<V16>(c);
  for (; c + 8 <= channels; c += 8) f.template operator()<V8>(c);
  for (; c < channels; ++c) f.template operator()<float>(c);
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

}  // namespace edgetrain::simd
