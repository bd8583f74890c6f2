// Sparse activation storage kernels: the op-table wrappers around memory/bitmap_codec, their
// naive references, and the ReLU/ReLU6 backward that reads a 1-bit mask instead of y.
#include "ops/bitmap_storage.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ET_MASK_X86 1
#endif

namespace edgetrain {
namespace {

// 512 mask words = 32K elements per parallel chunk (the activation kernels' grain).
constexpr int64_t kMinWordsPerChunk = 512;

// dx[i] = bit ? dy[i] : 0, or dx[i] += that, over mask words [wb, we) of an n-element tensor.
// Computed exactly as relu_backward does (g = on ? dy : 0; dx = g or dx + g), so both agree to
// the bit, signed zeros included. dx may alias dy: each element is read before it is written.
template <bool kAccumulate>
void backward_words_portable(int64_t n, const float* dy, const uint64_t* bits, float* dx, int64_t wb,
                             int64_t we) {
  for (int64_t w = wb; w < we; ++w) {
    const uint64_t word = bits[w];
    const int64_t base = w * 64, m = std::min<int64_t>(64, n - base);
    for (int64_t j = 0; j < m; ++j) {
      const float g = ((word >> j) & 1u) ? dy[base + j] : 0.0f;
      if constexpr (kAccumulate) dx[base + j] += g;
      else dx[base + j] = g;
    }
  }
}

#ifdef ET_MASK_X86
template <bool kAccumulate>
__attribute__((target("avx512f"))) void backward_words_avx512(int64_t n, const float* dy,
                                                              const uint64_t* bits, float* dx,
                                                              int64_t wb, int64_t we) {
  for (int64_t w = wb; w < we; ++w) {
    const uint64_t word = bits[w];
    const int64_t base = w * 64;
    for (int g = 0; g < 4 && base + 16 * g < n; ++g) {
      const int64_t i = base + 16 * g, left = n - i;
      const __mmask16 lanes = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
      const __mmask16 on = static_cast<__mmask16>(word >> (16 * g));
      __m512 v = _mm512_maskz_loadu_ps(on, dy + i);  // inactive lanes: +0.0, as in relu_backward
      if constexpr (kAccumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, dx + i), v);
      _mm512_mask_storeu_ps(dx + i, lanes, v);
    }
  }
}
#endif

int64_t numel(const Shape& s) { return s.numel(); }

void check_pack(const KernelCall& call) {
  ET_CHECK(call.n_in >= 1 && call.n_out >= 1 && call.attrs->sparse.capacity >= 0);
  // The packed value is a kU64 tensor: its element count times 8 is the slot's byte size.
  ET_CHECK(static_cast<size_t>(numel(call.out_shape[0])) * sizeof(uint64_t) >=
           packed_bytes(numel(call.in_shape[0]), call.attrs->sparse.capacity));
}

void check_unpack(const KernelCall& call) {
  ET_CHECK(call.n_in >= 1 && call.n_out >= 1);
  ET_CHECK(call.in[0] != nullptr && packed_numel(call.in[0]) == numel(call.out_shape[0]));
  if (packed_overflowed(call.in[0]))
    check_failed("unpack_sparse of an overflowed slot: the executor must check packed_overflowed() "
                 "after the forward phase and fall back",
                 __FILE__, __LINE__);
}

void check_mask(const KernelCall& call) {
  ET_CHECK(call.n_in >= 1 && call.n_out >= 1);
  ET_CHECK(numel(call.out_shape[0]) == mask_words(numel(call.in_shape[0])));
}

void check_backward(const KernelCall& call) {
  ET_CHECK(call.n_in >= 2 && call.n_out >= 1);
  const int64_t n = numel(call.in_shape[0]);
  ET_CHECK(numel(call.in_shape[1]) == mask_words(n) && numel(call.out_shape[0]) == n);
}

}  // namespace

void pack_sparse_naive(const float* x, int64_t n, int64_t capacity, void* packed) {
  const PackedLayout l = packed_layout(n, capacity);
  auto* base = static_cast<unsigned char*>(packed);
  auto* counts = reinterpret_cast<uint32_t*>(base + l.counts_offset);
  auto* bitmap = reinterpret_cast<uint64_t*>(base + l.bitmap_offset);
  auto* values = reinterpret_cast<float*>(base + l.values_offset);
  std::fill(counts, counts + l.blocks, 0u);
  std::fill(bitmap, bitmap + l.words, uint64_t{0});
  int64_t nnz = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] == 0.0f) continue;  // +0.0 and -0.0; NaN compares unequal, so it is kept
    bitmap[i / 64] |= uint64_t{1} << (i % 64);
    ++counts[i / kBitmapBlockElems];
    ++nnz;
  }
  PackedHeader h{};
  h.magic = kPackedMagic;
  h.n = n;
  h.capacity = capacity;
  h.nnz = nnz;
  h.overflow = nnz > capacity ? 1u : 0u;
  h.block_elems = static_cast<uint32_t>(kBitmapBlockElems);
  std::memcpy(base, &h, sizeof(h));
  if (h.overflow) return;
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i)
    if (x[i] != 0.0f) std::memcpy(values + k++, x + i, sizeof(float));
}

bool unpack_sparse_naive(const void* packed, float* x) {
  if (packed_overflowed(packed)) return false;
  const int64_t n = packed_numel(packed);
  PackedHeader h;
  std::memcpy(&h, packed, sizeof(h));
  const PackedLayout l = packed_layout(n, h.capacity);
  const auto* base = static_cast<const unsigned char*>(packed);
  const auto* bitmap = reinterpret_cast<const uint64_t*>(base + l.bitmap_offset);
  const auto* values = reinterpret_cast<const float*>(base + l.values_offset);
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    if ((bitmap[i / 64] >> (i % 64)) & 1u) std::memcpy(x + i, values + k++, sizeof(float));
    else x[i] = 0.0f;
  }
  return true;
}

void pack_mask_naive(const float* y, int64_t n, float lo, float hi, uint64_t* bits) {
  const bool unbounded = std::isinf(hi) && hi > 0;
  std::fill(bits, bits + mask_words(n), uint64_t{0});
  for (int64_t i = 0; i < n; ++i)
    if (y[i] > lo && (unbounded || y[i] < hi)) bits[i / 64] |= uint64_t{1} << (i % 64);
}

template <typename T>
void relu_backward_mask_naive(int64_t n, const T* dy, const uint64_t* bits, T* dx, bool accumulate) {
  for (int64_t i = 0; i < n; ++i) {
    T g = ((bits[i / 64] >> (i % 64)) & 1u) ? dy[i] : T(0);
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

template void relu_backward_mask_naive<float>(int64_t, const float*, const uint64_t*, float*, bool);
template void relu_backward_mask_naive<double>(int64_t, const double*, const uint64_t*, double*, bool);

void pack_sparse_kernel(const KernelCall& call) {
  check_pack(call);
  if (call.out[0] == nullptr) return;
  pack_sparse(call.in_f(0), numel(call.in_shape[0]), call.attrs->sparse.capacity, call.out[0],
              call.parallel);
}

void pack_sparse_reference(const KernelCall& call) {
  check_pack(call);
  if (call.out[0] == nullptr) return;
  pack_sparse_naive(call.in_f(0), numel(call.in_shape[0]), call.attrs->sparse.capacity, call.out[0]);
}

void unpack_sparse_kernel(const KernelCall& call) {
  check_unpack(call);
  if (call.out_f(0) == nullptr) return;
  unpack_sparse(call.in[0], call.out_f(0), call.parallel);
}

void unpack_sparse_reference(const KernelCall& call) {
  check_unpack(call);
  if (call.out_f(0) == nullptr) return;
  unpack_sparse_naive(call.in[0], call.out_f(0));
}

void pack_mask_kernel(const KernelCall& call) {
  check_mask(call);
  if (call.out[0] == nullptr) return;
  pack_mask(call.in_f(0), numel(call.in_shape[0]), call.attrs->sparse.lo, call.attrs->sparse.hi,
            static_cast<uint64_t*>(call.out[0]), call.parallel);
}

void pack_mask_reference(const KernelCall& call) {
  check_mask(call);
  if (call.out[0] == nullptr) return;
  pack_mask_naive(call.in_f(0), numel(call.in_shape[0]), call.attrs->sparse.lo,
                  call.attrs->sparse.hi, static_cast<uint64_t*>(call.out[0]));
}

void relu_backward_masked(int64_t n, const float* dy, const uint64_t* bits, float* dx, bool accumulate,
                          const Parallel& parallel, CodecIsa isa) {
  const bool avx512 = isa != CodecIsa::kPortable && codec_avx512_available();
  parallel.for_each(mask_words(n), kMinWordsPerChunk, [&](int64_t wb, int64_t we) {
#ifdef ET_MASK_X86
    if (avx512) {
      if (accumulate) backward_words_avx512<true>(n, dy, bits, dx, wb, we);
      else backward_words_avx512<false>(n, dy, bits, dx, wb, we);
      return;
    }
#endif
    if (accumulate) backward_words_portable<true>(n, dy, bits, dx, wb, we);
    else backward_words_portable<false>(n, dy, bits, dx, wb, we);
  });
}

void relu_backward_mask(const KernelCall& call) {
  check_backward(call);
  if (call.out_f(0) == nullptr) return;
  relu_backward_masked(numel(call.in_shape[0]), call.in_f(0), static_cast<const uint64_t*>(call.in[1]),
                       call.out_f(0), call.attrs->accumulates(0), call.parallel);
}

void relu_backward_mask_reference(const KernelCall& call) {
  check_backward(call);
  if (call.out_f(0) == nullptr) return;
  relu_backward_mask_naive<float>(numel(call.in_shape[0]), call.in_f(0),
                                  static_cast<const uint64_t*>(call.in[1]), call.out_f(0),
                                  call.attrs->accumulates(0));
}

}  // namespace edgetrain
