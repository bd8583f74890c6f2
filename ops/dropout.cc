#include "ops/dropout.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace edgetrain {

namespace {
inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
}  // namespace

bool dropout_keep(uint64_t seed, uint32_t salt, int64_t i, float p) {
  uint64_t h = mix(seed * 0x9e3779b97f4a7c15ull + (static_cast<uint64_t>(salt) << 40) + static_cast<uint64_t>(i));
  // Top 24 bits as a uniform number in [0, 1).
  float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
  return u >= p;
}

template <typename T>
void dropout_forward_naive(int64_t n, float p, uint64_t seed, uint32_t salt, const T* x, T* y, uint64_t* mask) {
  T scale = T(1) / (T(1) - T(p));
  std::memset(mask, 0, static_cast<size_t>((n + 63) / 64) * sizeof(uint64_t));
  for (int64_t i = 0; i < n; ++i) {
    bool keep = dropout_keep(seed, salt, i, p);
    y[i] = keep ? x[i] * scale : T(0);
    if (keep) mask[i / 64] |= uint64_t{1} << (i % 64);
  }
}

template <typename T>
void dropout_backward_naive(int64_t n, float p, const T* dy, const uint64_t* mask, T* dx, bool accumulate) {
  T scale = T(1) / (T(1) - T(p));
  for (int64_t i = 0; i < n; ++i) {
    T g = ((mask[i / 64] >> (i % 64)) & 1u) ? dy[i] * scale : T(0);
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

template void dropout_forward_naive<float>(int64_t, float, uint64_t, uint32_t, const float*, float*, uint64_t*);
template void dropout_forward_naive<double>(int64_t, float, uint64_t, uint32_t, const double*, double*, uint64_t*);
template void dropout_backward_naive<float>(int64_t, float, const float*, const uint64_t*, float*, bool);
template void dropout_backward_naive<double>(int64_t, float, const double*, const uint64_t*, double*, bool);

void dropout_forward_reference(const KernelCall& call) {
  dropout_forward_naive<float>(call.in_shape[0].numel(), call.attrs->dropout.p, call.step ? call.step->seed : 0,
                               call.attrs->dropout.salt, call.in_f(0), call.out_f(0), static_cast<uint64_t*>(call.out[1]));
}

void dropout_backward_reference(const KernelCall& call) {
  if (!call.out_f(0)) return;
  dropout_backward_naive<float>(call.in_shape[0].numel(), call.attrs->dropout.p, call.in_f(0),
                                static_cast<const uint64_t*>(call.in[1]), call.out_f(0), call.attrs->accumulates(0));
}

namespace {
// Eight elements at a time in 64-bit lanes (the hash is 64-bit; AVX-512 multiplies such lanes in
// one instruction). The one-element loop hashed, compared and packed a bit per element: the
// MobileNetV2 classifier's dropout over [32, 1280] took 0.12-0.13 ms a step, 2% of the width-0.5
// 32x32 step and as long as its largest 1x1 conv.
typedef uint64_t U64x8 __attribute__((vector_size(64)));
typedef int32_t I32x8 __attribute__((vector_size(32)));
typedef float F32x8 __attribute__((vector_size(32)));

inline U64x8 mix8(U64x8 z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// One whole mask word: elements [i0, i0 + 64) of x into y, kept where dropout_keep says so (the
// same hash; u >= p as the integer test top24 >= threshold, exact since u = top24 / 2^24).
inline uint64_t dropout_word(uint64_t key, int64_t i0, int64_t threshold, float scale, const float* x, float* y) {
  const U64x8 lanes = {0, 1, 2, 3, 4, 5, 6, 7};
  const U64x8 lane_bits = {1, 2, 4, 8, 16, 32, 64, 128};
  uint64_t bits = 0;
  for (int q = 0; q < 8; ++q) {
    const U64x8 h = mix8(lanes + (key + static_cast<uint64_t>(i0 + 8 * q)));
    const auto keep = (h >> 40) >= static_cast<uint64_t>(threshold);  // lanes of all ones or zero
    const U64x8 on = reinterpret_cast<const U64x8&>(keep) & lane_bits;
    const uint64_t byte = on[0] | on[1] | on[2] | on[3] | on[4] | on[5] | on[6] | on[7];
    bits |= byte << (8 * q);
    F32x8 v;
    std::memcpy(&v, x + i0 + 8 * q, sizeof v);
    const I32x8 keep32 = __builtin_convertvector(keep, I32x8);
    const F32x8 out = reinterpret_cast<F32x8>(reinterpret_cast<I32x8>(v * scale) & keep32);
    std::memcpy(y + i0 + 8 * q, &out, sizeof out);
  }
  return bits;
}

// dx (+)= dy * scale where the mask's bit is set, else 0, for mask words [wb, we): sixteen
// elements at a time, the bits spread over lanes. Arguments by value (the loop writes dx).
template <bool kAccumulate>
void dropout_backward_words(int64_t wb, int64_t we, int64_t n, float scale, const float* dy, const uint64_t* mask,
                            float* dx) {
  typedef uint32_t U32x16 __attribute__((vector_size(64)));
  typedef float F32x16 __attribute__((vector_size(64)));
  const U32x16 lanes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int64_t w = wb; w < we; ++w) {
    const int64_t i0 = w * 64;
    if (i0 + 64 > n) {  // the last, partial word
      for (int64_t i = i0; i < n; ++i) {
        const float g = ((mask[w] >> (i - i0)) & 1u) ? dy[i] * scale : 0.0f;
        dx[i] = kAccumulate ? dx[i] + g : g;
      }
      continue;
    }
    for (int q = 0; q < 4; ++q) {
      const U32x16 on = ((U32x16{} + static_cast<uint32_t>(mask[w] >> (16 * q))) >> lanes) & 1u;
      F32x16 d, out;
      std::memcpy(&d, dy + i0 + 16 * q, sizeof d);
      const F32x16 g = reinterpret_cast<F32x16>(reinterpret_cast<U32x16>(d * scale) & (U32x16{} - on));
      if constexpr (kAccumulate) {
        std::memcpy(&out, dx + i0 + 16 * q, sizeof out);
        out += g;
      } else {
        out = g;
      }
      std::memcpy(dx + i0 + 16 * q, &out, sizeof out);
    }
  }
}
}  // namespace

// Word by word (64 elements), chunks of words in parallel: each word is written by one thread.
void dropout_forward(const KernelCall& call) {
  const int64_t n = call.in_shape[0].numel();
  const float p = call.attrs->dropout.p;
  const uint64_t seed = call.step ? call.step->seed : 0;
  const uint32_t salt = call.attrs->dropout.salt;
  const float* x = call.in_f(0);
  float* y = call.out_f(0);
  uint64_t* mask = static_cast<uint64_t*>(call.out[1]);
  const float scale = 1.0f / (1.0f - p);
  // dropout_keep's hash input is key + i; u >= p <=> top 24 bits >= ceil(p * 2^24) (p <= 0: all kept).
  const uint64_t key = seed * 0x9e3779b97f4a7c15ull + (static_cast<uint64_t>(salt) << 40);
  const int64_t threshold = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(static_cast<double>(p) * 16777216.0)));
  call.parallel.for_each((n + 63) / 64, 256, [&](int64_t wb, int64_t we) {
    for (int64_t w = wb; w < we; ++w) {
      if ((w + 1) * 64 <= n) {
        mask[w] = dropout_word(key, w * 64, threshold, scale, x, y);
        continue;
      }
      uint64_t bits = 0;
      int64_t end = std::min<int64_t>(n, (w + 1) * 64);
      for (int64_t i = w * 64; i < end; ++i) {
        bool keep = dropout_keep(seed, salt, i, p);
        y[i] = keep ? x[i] * scale : 0.0f;
        bits |= static_cast<uint64_t>(keep) << (i - w * 64);
      }
      mask[w] = bits;
    }
  });
}

void dropout_backward(const KernelCall& call) {
  float* dx = call.out_f(0);
  if (!dx) return;
  const int64_t n = call.in_shape[0].numel();
  const float scale = 1.0f / (1.0f - call.attrs->dropout.p);
  const float* dy = call.in_f(0);
  const uint64_t* mask = static_cast<const uint64_t*>(call.in[1]);
  const bool acc = call.attrs->accumulates(0);
  call.parallel.for_each((n + 63) / 64, 256, [&](int64_t wb, int64_t we) {
    if (acc) dropout_backward_words<true>(wb, we, n, scale, dy, mask, dx);
    else dropout_backward_words<false>(wb, we, n, scale, dy, mask, dx);
  });
}

}  // namespace edgetrain
