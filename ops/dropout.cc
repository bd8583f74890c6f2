#include "ops/dropout.h"

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
  call.parallel.for_each((n + 63) / 64, 256, [&](int64_t wb, int64_t we) {
    for (int64_t w = wb; w < we; ++w) {
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
  call.parallel.for_each(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float g = ((mask[i >> 6] >> (i & 63)) & 1u) ? dy[i] * scale : 0.0f;
      dx[i] = acc ? dx[i] + g : g;
    }
  });
}

}  // namespace edgetrain
