// Max, average and global average pooling over NHWC: shape rules, naive references (float and
// double) and fast kernels. See ops/pooling.h for the semantics shared by both.
#include "ops/pooling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace edgetrain {

namespace {

struct PoolGeometry {
  int64_t n, h, w, c;     // input
  int64_t k, s, p;        // kernel, stride, pad (square)
  int64_t out_h, out_w;   // output spatial size
  int64_t x_index(int64_t in, int64_t ih, int64_t iw) const { return ((in * h + ih) * w + iw) * c; }
  int64_t y_index(int64_t in, int64_t oh, int64_t ow) const { return ((in * out_h + oh) * out_w + ow) * c; }
};

PoolGeometry pool_geometry(const Shape& x, const PoolAttrs& a) {
  PoolGeometry g;
  g.n = x[0];
  g.h = x[1];
  g.w = x[2];
  g.c = x[3];
  g.k = a.kernel;
  g.s = a.stride;
  g.p = a.pad;
  g.out_h = (g.h + 2 * g.p - g.k) / g.s + 1;
  g.out_w = (g.w + 2 * g.p - g.k) / g.s + 1;
  return g;
}

// The first maximum of window (oh, ow) for channel ch in scan order, as an index into x, or -1
// when the window holds no input (impossible once the shape rule has passed). NaN wins, as in
// torch (which then propagates NaN).
template <typename T>
int64_t window_argmax(const PoolGeometry& g, const T* x, int64_t in, int64_t oh, int64_t ow, int64_t ch) {
  int64_t best_i = -1;
  T best = -std::numeric_limits<T>::infinity();
  for (int64_t kh = 0; kh < g.k; ++kh) {
    const int64_t ih = oh * g.s - g.p + kh;
    if (ih < 0 || ih >= g.h) continue;
    for (int64_t kw = 0; kw < g.k; ++kw) {
      const int64_t iw = ow * g.s - g.p + kw;
      if (iw < 0 || iw >= g.w) continue;
      const int64_t i = g.x_index(in, ih, iw) + ch;
      if (best_i < 0 || x[i] > best || std::isnan(x[i])) {
        best = x[i];
        best_i = i;
      }
    }
  }
  return best_i;
}

}  // namespace

Result<Shape> pool_output_shape(const Shape& x, const PoolAttrs& a) {
  if (x.rank != 4) return invalid_argument("pool: input " + x.to_string() + " must be NHWC (rank 4)");
  for (int i = 0; i < 4; ++i)
    if (x[i] <= 0) return invalid_argument("pool: input " + x.to_string() + " has an empty dimension");
  if (a.kernel < 1) return invalid_argument("pool: kernel must be >= 1, got " + std::to_string(a.kernel));
  if (a.stride < 1) return invalid_argument("pool: stride must be >= 1, got " + std::to_string(a.stride));
  if (a.pad < 0) return invalid_argument("pool: pad must be >= 0, got " + std::to_string(a.pad));
  if (a.pad > a.kernel / 2)
    return invalid_argument("pool: pad " + std::to_string(a.pad) + " must be at most half the kernel " +
                            std::to_string(a.kernel) + " (torch rejects it: a window could hold only padding)");
  const int64_t ph = x.h() + 2 * int64_t(a.pad), pw = x.w() + 2 * int64_t(a.pad);
  if (a.kernel > ph || a.kernel > pw)
    return invalid_argument("pool: kernel " + std::to_string(a.kernel) + " larger than padded input " +
                            std::to_string(ph) + "x" + std::to_string(pw) + " (input " + x.to_string() +
                            ", pad " + std::to_string(a.pad) + ")");
  return Shape{x.n(), (ph - a.kernel) / a.stride + 1, (pw - a.kernel) / a.stride + 1, x.c()};
}

Result<Shape> global_avg_pool_output_shape(const Shape& x) {
  if (x.rank != 4)
    return invalid_argument("global_avg_pool: input " + x.to_string() + " must be NHWC (rank 4)");
  for (int i = 0; i < 4; ++i)
    if (x[i] <= 0)
      return invalid_argument("global_avg_pool: input " + x.to_string() + " has an empty dimension");
  return Shape{x.n(), x.c()};
}

// ---------------------------------------------------------------------------------------------
// Naive references: one output element at a time.

namespace {
// Input rows [lo, hi] (or columns) a window starting at `start` covers, clipped to the input.
struct Span {
  int64_t lo, hi;
};
Span clip(int64_t start, int64_t k, int64_t size) {
  return {std::max<int64_t>(start, 0), std::min<int64_t>(start + k, size) - 1};
}
}  // namespace

template <typename T>
void max_pool_forward_naive(const Shape& x_shape, const PoolAttrs& a, const T* x, T* y, int32_t* argmax) {
  const PoolGeometry g = pool_geometry(x_shape, a);
  for (int64_t in = 0; in < g.n; ++in)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t ch = 0; ch < g.c; ++ch) {
          const int64_t i = window_argmax(g, x, in, oh, ow, ch);
          y[g.y_index(in, oh, ow) + ch] = i >= 0 ? x[i] : -std::numeric_limits<T>::infinity();
          if (argmax == nullptr) continue;
          const int64_t pixel = i / g.c, ih = pixel / g.w % g.h, iw = pixel % g.w;
          const int64_t row0 = clip(oh * g.s - g.p, g.k, g.h).lo, col0 = clip(ow * g.s - g.p, g.k, g.w).lo;
          argmax[g.y_index(in, oh, ow) + ch] = i < 0 ? -1 : int32_t((ih - row0) * g.k + (iw - col0));
        }
}

template <typename T>
void max_pool_backward_naive(const Shape& x_shape, const PoolAttrs& a, const T* dy, const int32_t* argmax, T* dx,
                             bool accumulate) {
  const PoolGeometry g = pool_geometry(x_shape, a);
  if (!accumulate) std::fill(dx, dx + x_shape.numel(), T(0));
  for (int64_t in = 0; in < g.n; ++in)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t ch = 0; ch < g.c; ++ch) {
          const int32_t pos = argmax[g.y_index(in, oh, ow) + ch];
          if (pos < 0) continue;
          const Span rows = clip(oh * g.s - g.p, g.k, g.h), cols = clip(ow * g.s - g.p, g.k, g.w);
          const int64_t ih = rows.lo + pos / g.k, iw = cols.lo + pos % g.k;
          if (ih > rows.hi || iw > cols.hi) continue;  // not a position the forward can write
          dx[g.x_index(in, ih, iw) + ch] += dy[g.y_index(in, oh, ow) + ch];
        }
}

template <typename T>
void avg_pool_forward_naive(const Shape& x_shape, const PoolAttrs& a, const T* x, T* y) {
  const PoolGeometry g = pool_geometry(x_shape, a);
  // count_include_pad: with floor output sizes every window lies inside the padded input, so
  // the divisor is always k*k.
  const T area = T(g.k * g.k);
  for (int64_t in = 0; in < g.n; ++in)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t ch = 0; ch < g.c; ++ch) {
          T sum = 0;
          for (int64_t kh = 0; kh < g.k; ++kh) {
            const int64_t ih = oh * g.s - g.p + kh;
            if (ih < 0 || ih >= g.h) continue;
            for (int64_t kw = 0; kw < g.k; ++kw) {
              const int64_t iw = ow * g.s - g.p + kw;
              if (iw < 0 || iw >= g.w) continue;
              sum += x[g.x_index(in, ih, iw) + ch];
            }
          }
          y[g.y_index(in, oh, ow) + ch] = sum / area;
        }
}

template <typename T>
void avg_pool_backward_naive(const Shape& x_shape, const PoolAttrs& a, const T* dy, T* dx, bool accumulate) {
  const PoolGeometry g = pool_geometry(x_shape, a);
  const T area = T(g.k * g.k);
  if (!accumulate) std::fill(dx, dx + x_shape.numel(), T(0));
  for (int64_t in = 0; in < g.n; ++in)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t ch = 0; ch < g.c; ++ch) {
          const T d = dy[g.y_index(in, oh, ow) + ch] / area;
          for (int64_t kh = 0; kh < g.k; ++kh) {
            const int64_t ih = oh * g.s - g.p + kh;
            if (ih < 0 || ih >= g.h) continue;
            for (int64_t kw = 0; kw < g.k; ++kw) {
              const int64_t iw = ow * g.s - g.p + kw;
              if (iw < 0 || iw >= g.w) continue;
              dx[g.x_index(in, ih, iw) + ch] += d;
            }
          }
        }
}

template <typename T>
void global_avg_pool_forward_naive(const Shape& x_shape, const T* x, T* y) {
  const int64_t n = x_shape[0], hw = x_shape[1] * x_shape[2], c = x_shape[3];
  for (int64_t in = 0; in < n; ++in)
    for (int64_t ch = 0; ch < c; ++ch) {
      double sum = 0;
      for (int64_t i = 0; i < hw; ++i) sum += double(x[(in * hw + i) * c + ch]);
      y[in * c + ch] = T(sum / double(hw));
    }
}

template <typename T>
void global_avg_pool_backward_naive(const Shape& x_shape, const T* dy, T* dx, bool accumulate) {
  const int64_t n = x_shape[0], hw = x_shape[1] * x_shape[2], c = x_shape[3];
  for (int64_t in = 0; in < n; ++in)
    for (int64_t i = 0; i < hw; ++i)
      for (int64_t ch = 0; ch < c; ++ch) {
        T& d = dx[(in * hw + i) * c + ch];
        d = (accumulate ? d : T(0)) + dy[in * c + ch] / T(hw);
      }
}

#define ET_POOL_INSTANTIATE(T)                                                                     \
  template void max_pool_forward_naive<T>(const Shape&, const PoolAttrs&, const T*, T*, int32_t*); \
  template void max_pool_backward_naive<T>(const Shape&, const PoolAttrs&, const T*, const int32_t*, \
                                           T*, bool);                                              \
  template void avg_pool_forward_naive<T>(const Shape&, const PoolAttrs&, const T*, T*);          \
  template void avg_pool_backward_naive<T>(const Shape&, const PoolAttrs&, const T*, T*, bool);   \
  template void global_avg_pool_forward_naive<T>(const Shape&, const T*, T*);                     \
  template void global_avg_pool_backward_naive<T>(const Shape&, const T*, T*, bool);
ET_POOL_INSTANTIATE(float)
ET_POOL_INSTANTIATE(double)
#undef ET_POOL_INSTANTIATE

void max_pool_forward_reference(const KernelCall& call) {
  max_pool_forward_naive<float>(call.in_shape[0], call.attrs->pool, call.in_f(0), call.out_f(0),
                                call.n_out > 1 ? static_cast<int32_t*>(call.out[1]) : nullptr);
}
void max_pool_backward_reference(const KernelCall& call) {
  if (!call.out_f(0)) return;
  max_pool_backward_naive<float>(call.out_shape[0], call.attrs->pool, call.in_f(0),
                                 static_cast<const int32_t*>(call.in[1]), call.out_f(0), call.attrs->accumulates(0));
}
void avg_pool_forward_reference(const KernelCall& call) {
  avg_pool_forward_naive<float>(call.in_shape[0], call.attrs->pool, call.in_f(0), call.out_f(0));
}
void avg_pool_backward_reference(const KernelCall& call) {
  if (!call.out_f(0)) return;
  avg_pool_backward_naive<float>(call.out_shape[0], call.attrs->pool, call.in_f(0), call.out_f(0),
                                 call.attrs->accumulates(0));
}
void global_avg_pool_forward_reference(const KernelCall& call) {
  global_avg_pool_forward_naive<float>(call.in_shape[0], call.in_f(0), call.out_f(0));
}
void global_avg_pool_backward_reference(const KernelCall& call) {
  if (!call.out_f(0)) return;
  global_avg_pool_backward_naive<float>(call.out_shape[0], call.in_f(0), call.out_f(0),
                                        call.attrs->accumulates(0));
}

// ---------------------------------------------------------------------------------------------
// Fast kernels: inner loops over contiguous channels (vectorised by the compiler), parallel
// over (n, row).

namespace {

constexpr int64_t kElementsPerChunk = 8192;  // parallel grain, in elements touched
constexpr int64_t kChannelBlock = 64;        // channels per task of the global average pool (stack sums)

int64_t grain(int64_t elements_per_item) {
  return std::max<int64_t>(1, kElementsPerChunk / std::max<int64_t>(1, elements_per_item));
}

// fn(in, oh, ow, rows, cols) for every output pixel of the (n, oh) items [b, e), with the input
// rows and columns its window covers.
template <typename Fn>
void for_windows(const PoolGeometry& g, int64_t b, int64_t e, Fn&& fn) {
  for (int64_t item = b; item < e; ++item) {
    const int64_t in = item / g.out_h, oh = item % g.out_h;
    const Span rows = clip(oh * g.s - g.p, g.k, g.h);
    for (int64_t ow = 0; ow < g.out_w; ++ow) fn(in, oh, ow, rows, clip(ow * g.s - g.p, g.k, g.w));
  }
}

// Rows [b, e) of (n, oh) items: each output the maximum of its window, and with kArgmax its
// position (the rule of window_argmax: the first of equal maxima, a NaN over any number).
template <bool kArgmax>
void max_pool_rows(const PoolGeometry& g, const float* x, float* y, int32_t* argmax, int64_t b, int64_t e) {
  const int64_t c = g.c;
  for_windows(g, b, e, [&](int64_t in, int64_t oh, int64_t ow, Span rows, Span cols) {
    float* __restrict yr = y + g.y_index(in, oh, ow);
    int32_t* __restrict ar = kArgmax ? argmax + g.y_index(in, oh, ow) : nullptr;
    std::fill(yr, yr + c, -std::numeric_limits<float>::infinity());
    if constexpr (kArgmax) std::fill(ar, ar + c, -1);
    for (int64_t ih = rows.lo; ih <= rows.hi; ++ih)
      for (int64_t iw = cols.lo; iw <= cols.hi; ++iw) {
        const float* __restrict xr = x + g.x_index(in, ih, iw);
        if constexpr (kArgmax) {
          const int32_t pos = int32_t((ih - rows.lo) * g.k + (iw - cols.lo));
          for (int64_t k = 0; k < c; ++k) {
            const float v = xr[k];
            const bool take = v > yr[k] || v != v || ar[k] < 0;
            yr[k] = take ? v : yr[k];
            ar[k] = take ? pos : ar[k];
          }
        } else {
          for (int64_t k = 0; k < c; ++k) {
            const float v = xr[k];
            yr[k] = (v > yr[k] || v != v) ? v : yr[k];  // NaN propagates, as in torch
          }
        }
      }
  });
}
}  // namespace

void max_pool_forward(const KernelCall& call) {
  const PoolGeometry g = pool_geometry(call.in_shape[0], call.attrs->pool);
  const float* x = call.in_f(0);
  float* y = call.out_f(0);
  int32_t* argmax = call.n_out > 1 ? static_cast<int32_t*>(call.out[1]) : nullptr;
  call.parallel.for_each(g.n * g.out_h, grain(g.out_w * g.c * g.k * g.k), [&](int64_t b, int64_t e) {
    if (argmax) max_pool_rows<true>(g, x, y, argmax, b, e);
    else max_pool_rows<false>(g, x, y, nullptr, b, e);
  });
}

void max_pool_backward(const KernelCall& call) {
  float* dx = call.out_f(0);
  if (!dx) return;
  const PoolGeometry g = pool_geometry(call.out_shape[0], call.attrs->pool);
  const float* dy = call.in_f(0);
  const int32_t* argmax = static_cast<const int32_t*>(call.in[1]);
  const int64_t c = g.c;
  if (!call.attrs->accumulates(0)) {
    call.parallel.for_each(g.n * g.h, grain(g.w * c), [&](int64_t b, int64_t e) {
      std::memset(dx + b * g.w * c, 0, size_t((e - b) * g.w * c) * sizeof(float));
    });
  }
  // Output rows oh and oh + phases read disjoint input rows (phases * s >= k), so within a phase
  // every task scatters into input rows no other task touches.
  const int64_t phases = (g.k + g.s - 1) / g.s;
  for (int64_t phase = 0; phase < std::min(phases, g.out_h); ++phase) {
    const int64_t rows_in_phase = (g.out_h - phase + phases - 1) / phases;
    call.parallel.for_each(g.n * rows_in_phase, grain(g.out_w * c * 2), [&](int64_t b, int64_t e) {
      for (int64_t item = b; item < e; ++item) {
        const int64_t in = item / rows_in_phase;
        const int64_t oh = phase + (item % rows_in_phase) * phases;
        const Span rows = clip(oh * g.s - g.p, g.k, g.h);
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const Span cols = clip(ow * g.s - g.p, g.k, g.w);
          const float* dyr = dy + g.y_index(in, oh, ow);
          const int32_t* ar = argmax + g.y_index(in, oh, ow);
          for (int64_t k = 0; k < c; ++k) {
            const int32_t pos = ar[k];
            if (pos < 0) continue;
            const int64_t ih = rows.lo + pos / g.k, iw = cols.lo + pos % g.k;
            if (ih > rows.hi || iw > cols.hi) continue;  // not a position the forward writes
            dx[g.x_index(in, ih, iw) + k] += dyr[k];
          }
        }
      }
    });
  }
}

void avg_pool_forward(const KernelCall& call) {
  const PoolGeometry g = pool_geometry(call.in_shape[0], call.attrs->pool);
  const float* x = call.in_f(0);
  float* y = call.out_f(0);
  const int64_t c = g.c;
  const float inv_area = float(1.0 / double(g.k * g.k));
  call.parallel.for_each(g.n * g.out_h, grain(g.out_w * c * g.k * g.k), [&](int64_t b, int64_t e) {
    for_windows(g, b, e, [&](int64_t in, int64_t oh, int64_t ow, Span rows, Span cols) {
      float* __restrict yr = y + g.y_index(in, oh, ow);
      std::fill(yr, yr + c, 0.0f);
      for (int64_t ih = rows.lo; ih <= rows.hi; ++ih)
        for (int64_t iw = cols.lo; iw <= cols.hi; ++iw) {
          const float* __restrict xr = x + g.x_index(in, ih, iw);
          for (int64_t k = 0; k < c; ++k) yr[k] += xr[k];
        }
      for (int64_t k = 0; k < c; ++k) yr[k] *= inv_area;
    });
  });
}

void avg_pool_backward(const KernelCall& call) {
  const PoolGeometry g = pool_geometry(call.out_shape[0], call.attrs->pool);
  const float* dy = call.in_f(0);
  float* dx = call.out_f(0);
  if (!dx) return;
  const int64_t c = g.c;
  const bool accumulate = call.attrs->accumulates(0);
  const float inv_area = float(1.0 / double(g.k * g.k));
  // Output index range [lo, hi] of the windows that cover input index i (may be empty).
  auto covering = [&](int64_t i, int64_t out_size) {
    const int64_t t = i + g.p - g.k + 1;  // first window start s*o - p that still reaches i
    const int64_t lo = t <= 0 ? 0 : (t + g.s - 1) / g.s;
    const int64_t hi = std::min(out_size - 1, (i + g.p) / g.s);
    return Span{lo, hi};
  };
  // Gather: each task owns whole input rows, so no two tasks write the same dx.
  call.parallel.for_each(g.n * g.h, grain(g.w * c * g.k), [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t in = item / g.h, ih = item % g.h;
      const Span ohs = covering(ih, g.out_h);
      for (int64_t iw = 0; iw < g.w; ++iw) {
        const Span ows = covering(iw, g.out_w);
        float* __restrict dxr = dx + g.x_index(in, ih, iw);
        if (!accumulate) std::fill(dxr, dxr + c, 0.0f);
        for (int64_t oh = ohs.lo; oh <= ohs.hi; ++oh)
          for (int64_t ow = ows.lo; ow <= ows.hi; ++ow) {
            const float* __restrict dyr = dy + g.y_index(in, oh, ow);
            for (int64_t k = 0; k < c; ++k) dxr[k] += dyr[k] * inv_area;
          }
      }
    }
  });
}

void global_avg_pool_forward(const KernelCall& call) {
  const Shape& xs = call.in_shape[0];
  const int64_t n = xs[0], hw = xs[1] * xs[2], c = xs[3];
  const float* x = call.in_f(0);
  float* y = call.out_f(0);
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  const double inv_hw = 1.0 / double(hw);
  call.parallel.for_each(n * blocks, grain(hw * kChannelBlock), [&](int64_t b, int64_t e) {
    double acc[kChannelBlock];  // double: hw can be large (global pooling of early layers)
    for (int64_t item = b; item < e; ++item) {
      const int64_t in = item / blocks, c0 = (item % blocks) * kChannelBlock;
      const int64_t cb = std::min(kChannelBlock, c - c0);
      std::fill(acc, acc + cb, 0.0);
      for (int64_t i = 0; i < hw; ++i) {
        const float* __restrict xr = x + (in * hw + i) * c + c0;
        for (int64_t k = 0; k < cb; ++k) acc[k] += double(xr[k]);
      }
      for (int64_t k = 0; k < cb; ++k) y[in * c + c0 + k] = float(acc[k] * inv_hw);
    }
  });
}

void global_avg_pool_backward(const KernelCall& call) {
  const Shape& xs = call.out_shape[0];
  const int64_t n = xs[0], h = xs[1], w = xs[2], c = xs[3];
  const float* dy = call.in_f(0);
  float* dx = call.out_f(0);
  if (!dx) return;
  const bool accumulate = call.attrs->accumulates(0);
  const float inv_hw = float(1.0 / double(h * w));
  call.parallel.for_each(n * h, grain(w * c), [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const float* __restrict dyr = dy + (item / h) * c;
      for (int64_t iw = 0; iw < w; ++iw) {
        float* __restrict dxr = dx + (item * w + iw) * c;
        if (accumulate) {
          for (int64_t k = 0; k < c; ++k) dxr[k] += dyr[k] * inv_hw;
        } else {
          for (int64_t k = 0; k < c; ++k) dxr[k] = dyr[k] * inv_hw;
        }
      }
    }
  });
}

}  // namespace edgetrain
