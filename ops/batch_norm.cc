// Batch normalisation over [rows][channels] (NHWC with rows = N*H*W): shape rule, the naive
// reference (float and double, one channel at a time, two-pass statistics) and the fast kernels
// (inner loops over contiguous channels, rows split into blocks that run in parallel).
#include "ops/batch_norm.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ops/simd.h"

namespace edgetrain {

namespace {

// The per-channel scale a training-mode forward normalises with, from the invstd it saved.
float training_scale(float gamma, float invstd) { return float(double(gamma) * double(invstd)); }

// The per-channel scale the forward normalises with, from the saved invstd (training) or the
// running variance (eval).
float forward_scale(const NormAttrs& a, float gamma, float invstd_or_running_var) {
  return a.training ? training_scale(gamma, invstd_or_running_var) : batch_norm_eval_scale(gamma, invstd_or_running_var, a.eps);
}

// A fused activation backward (runtime/fusion.h fuse_activation_backwards): the norm's backward
// receives the gradient of act(y) and passes it where the activation passed it. The activation's
// input, the norm's output v = (x - mean) * scale + beta, is recomputed from x with the
// forward's very expression and rounding (same mean, scale and beta as floats), so the decision
// is the forward's own: lo < v < hi.
// d where on, else +0 (exactly what the activation's backward writes), as bit operations: GCC
// does not if-convert a float select in these loops ("control flow in loop"; measured: scalar
// code, the norm's backward 10x slower).
inline float gated_by(float d, bool on) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(d) & (0u - static_cast<uint32_t>(on)));
}

struct ActivationGate {
  const float* scale = nullptr;  // workspace, per channel (the mean is the backward's own input)
  const float* beta = nullptr;
  float lo = 0.0f, hi = 0.0f;
};

}  // namespace

float batch_norm_eval_scale(float gamma, float running_var, float eps) {
  return float(double(gamma) / std::sqrt(double(running_var) + double(eps)));
}

Result<Shape> batch_norm_output_shape(const Shape& x, const Shape& param, const NormAttrs& a) {
  if (x.rank < 2)
    return invalid_argument("batch_norm: input " + x.to_string() +
                            " must have rank >= 2 (channels last)");
  for (int i = 0; i < x.rank; ++i)
    if (x[i] <= 0) return invalid_argument("batch_norm: input " + x.to_string() + " has an empty dimension");
  const int64_t c = x[x.rank - 1];
  if (param.rank != 1 || param[0] != c)
    return invalid_argument("batch_norm: parameter shape " + param.to_string() + " must be [" +
                            std::to_string(c) + "] for input " + x.to_string());
  if (!(a.eps > 0.0f) || !std::isfinite(a.eps))
    return invalid_argument("batch_norm: eps must be a positive number, got " + std::to_string(a.eps));
  if (!(a.momentum >= 0.0f && a.momentum <= 1.0f))
    return invalid_argument("batch_norm: momentum must be in [0, 1], got " + std::to_string(a.momentum));
  const int64_t rows = x.numel() / c;
  if (a.training && rows < 2)
    return invalid_argument("batch_norm: training needs more than 1 value per channel, input " +
                            x.to_string() + " has " + std::to_string(rows));
  return x;
}

// ---------------------------------------------------------------------------------------------
// Naive reference: per channel, mean then variance (two passes), all sums in double.

template <typename T>
void batch_norm_forward_naive(int64_t rows, int64_t channels, const NormAttrs& a, const T* x,
                              const T* gamma, const T* beta, T* running_mean, T* running_var,
                              T* y, T* saved_mean, T* saved_invstd) {
  if (rows <= 0) return;
  const double eps = a.eps, m = a.momentum;
  for (int64_t c = 0; c < channels; ++c) {
    double mean, invstd;
    if (a.training) {
      double sum = 0;
      for (int64_t r = 0; r < rows; ++r) sum += double(x[r * channels + c]);
      mean = sum / double(rows);
      double sq = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const double d = double(x[r * channels + c]) - mean;
        sq += d * d;
      }
      const double var = sq / double(rows);  // biased: what the batch is normalised with
      invstd = 1.0 / std::sqrt(var + eps);
      if (saved_mean) saved_mean[c] = T(mean);
      if (saved_invstd) saved_invstd[c] = T(invstd);
      if (a.update_running_stats && running_mean && running_var) {
        // torch keeps the unbiased variance; rows == 1 is rejected by the shape rule.
        const double unbiased = rows > 1 ? var * double(rows) / double(rows - 1) : var;
        running_mean[c] = T((1.0 - m) * double(running_mean[c]) + m * mean);
        running_var[c] = T((1.0 - m) * double(running_var[c]) + m * unbiased);
      }
    } else {
      mean = double(running_mean[c]);
      invstd = 1.0 / std::sqrt(double(running_var[c]) + eps);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r * channels + c;
      y[i] = T((double(x[i]) - mean) * invstd * double(gamma[c]) + double(beta[c]));
    }
  }
}

template <typename T>
void batch_norm_backward_naive(int64_t rows, int64_t channels, const NormAttrs& a, const T* dy,
                               const T* x, const T* gamma, const T* mean_or_running_mean,
                               const T* invstd_or_running_var, T* dx, T* dgamma, T* dbeta,
                               uint32_t accumulate_mask) {
  if (rows <= 0) return;
  const bool acc_dx = accumulate_mask & 1u, acc_dgamma = accumulate_mask & 2u,
             acc_dbeta = accumulate_mask & 4u;
  for (int64_t c = 0; c < channels; ++c) {
    const double mean = double(mean_or_running_mean[c]);
    const double invstd = a.training ? double(invstd_or_running_var[c])
                                     : 1.0 / std::sqrt(double(invstd_or_running_var[c]) + double(a.eps));
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r * channels + c;
      sum_dy += double(dy[i]);
      sum_dy_xhat += double(dy[i]) * (double(x[i]) - mean) * invstd;
    }
    if (dgamma) dgamma[c] = T((acc_dgamma ? double(dgamma[c]) : 0.0) + sum_dy_xhat);
    if (dbeta) dbeta[c] = T((acc_dbeta ? double(dbeta[c]) : 0.0) + sum_dy);
    if (!dx) continue;
    const double g = double(gamma[c]) * invstd;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r * channels + c;
      double v;
      if (a.training) {
        // y depends on x also through the batch mean and variance.
        const double xhat = (double(x[i]) - mean) * invstd;
        v = g * (double(dy[i]) - sum_dy / double(rows) - xhat * sum_dy_xhat / double(rows));
      } else {
        v = g * double(dy[i]);  // running statistics are constants
      }
      dx[i] = T((acc_dx ? double(dx[i]) : 0.0) + v);
    }
  }
}

template void batch_norm_forward_naive<float>(int64_t, int64_t, const NormAttrs&, const float*,
                                              const float*, const float*, float*, float*, float*,
                                              float*, float*);
template void batch_norm_forward_naive<double>(int64_t, int64_t, const NormAttrs&, const double*,
                                               const double*, const double*, double*, double*,
                                               double*, double*, double*);
template void batch_norm_backward_naive<float>(int64_t, int64_t, const NormAttrs&, const float*,
                                               const float*, const float*, const float*,
                                               const float*, float*, float*, float*, uint32_t);
template void batch_norm_backward_naive<double>(int64_t, int64_t, const NormAttrs&, const double*,
                                                const double*, const double*, const double*,
                                                const double*, double*, double*, double*, uint32_t);

namespace {

int64_t channels_of(const Shape& x) { return x.rank > 0 ? x[x.rank - 1] : 0; }
int64_t rows_of(const Shape& x) {
  const int64_t c = channels_of(x);
  return c > 0 ? x.numel() / c : 0;
}

}  // namespace


void batch_norm_forward_reference(const KernelCall& call) {
  const Shape& xs = call.in_shape[0];
  const bool training = call.attrs->norm.training;
  if (training && call.attrs->norm.apply_saved) {
    // The forward's expression with the statistics it saved (inputs 3 and 4).
    const int64_t c = channels_of(xs), n = xs.numel();
    const float *x = call.in_f(0), *gamma = call.in_f(1), *beta = call.in_f(2), *mean = call.in_f(3),
                *invstd = call.in_f(4);
    const FusedActivation act = call.attrs->activation;
    float* y = call.out_f(0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = i % c;
      const float v = (x[i] - mean[k]) * forward_scale(call.attrs->norm, gamma[k], invstd[k]) + beta[k];
      y[i] = act == FusedActivation::kNone ? v : std::min(std::max(v, fused_activation_low(act)), fused_activation_high(act));
    }
    return;
  }
  batch_norm_forward_naive<float>(rows_of(xs), channels_of(xs), call.attrs->norm, call.in_f(0),
                                  call.in_f(1), call.in_f(2), call.in_f(3), call.in_f(4),
                                  call.out_f(0), training ? call.out_f(1) : nullptr,
                                  training ? call.out_f(2) : nullptr);
  const FusedActivation act = call.attrs->activation;
  float* y = call.out_f(0);
  if (act == FusedActivation::kNone || y == nullptr) return;
  const float lo = fused_activation_low(act), hi = fused_activation_high(act);
  for (int64_t i = 0, n = xs.numel(); i < n; ++i) y[i] = std::min(std::max(y[i], lo), hi);
}

void batch_norm_backward_reference(const KernelCall& call) {
  const Shape& xs = call.in_shape[1];
  const float* dy = call.in_f(0);
  // A fused activation backward: dy is gated first (ActivationGate), then the plain backward.
  std::vector<float> gated;
  const FusedActivation act = call.attrs->activation;
  if (act != FusedActivation::kNone) {
    const int64_t c = channels_of(xs), n = xs.numel();
    const float* x = call.in_f(1);
    const float* gamma = call.in_f(2);
    const float* mean = call.in_f(3);
    const float* stat = call.in_f(4);
    const float* beta = call.in_f(5);
    gated.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = i % c;
      const float v = (x[i] - mean[k]) * forward_scale(call.attrs->norm, gamma[k], stat[k]) + beta[k];
      gated[static_cast<size_t>(i)] = v > fused_activation_low(act) && v < fused_activation_high(act) ? dy[i] : 0.0f;
    }
    dy = gated.data();
  }
  batch_norm_backward_naive<float>(rows_of(xs), channels_of(xs), call.attrs->norm, dy,
                                   call.in_f(1), call.in_f(2), call.in_f(3), call.in_f(4),
                                   call.out_f(0), call.out_f(1), call.out_f(2),
                                   call.attrs->accumulate_mask);
}

// ---------------------------------------------------------------------------------------------
// Fast kernels.
//
// Statistics: rows are split into `stat_blocks(rows)` blocks; each block sums its rows into its
// own [2][C] double slice of the workspace (channel slices in vector registers, runs of rows
// summed in float and then in double: reduce_slices), then the slices are added in block order.
// The block count depends on rows only, so the result is the same for any number of threads.
// The threads share the work as blocks x channel groups (channel_groups): a block of a 7x7 or
// 2x2 map is the whole tensor, and one thread summing it alone took half the norm's forward
// (MobileNetV2 224 b8, 7x7x960: 56 of 78 us). A group holds whole 16-channel slices, so each
// channel is summed exactly as without groups.
// The forward sums x - x[row 0] and its square: the shift keeps E[d^2] - E[d]^2 free of
// cancellation when |mean| >> std, and double sums of the runs over 100k+ rows stay accurate to
// ~1e-7, so one pass over x is enough.
//
// Workspace: double partial[blocks][2][C], then float coef[4][C] (per-channel coefficients of
// the final elementwise pass, and the scale a fused activation gate recomputes).

namespace {

constexpr int64_t kRowsPerBlock = 512;
constexpr int64_t kMaxBlocks = 8;  // enough blocks to keep 2..8 cores busy
constexpr int64_t kElementsPerChunk = 16384;  // parallel grain of the elementwise passes

int64_t stat_blocks(int64_t rows) {
  return std::clamp<int64_t>((rows + kRowsPerBlock - 1) / kRowsPerBlock, 1, kMaxBlocks);
}

size_t workspace_size(int64_t rows, int64_t c) {
  return size_t(stat_blocks(rows)) * 2 * size_t(c) * sizeof(double) + 4 * size_t(c) * sizeof(float);
}

struct Scratch {
  double* partial;  // [blocks][2][C]; after reduce_blocks, sums in [0][0][C] and [0][1][C]
  float* coef;      // [4][C]: the elementwise pass's coefficients, then a fused gate's scale
};

Scratch scratch_of(const KernelCall& call, int64_t rows, int64_t c) {
  ET_CHECK(call.workspace != nullptr && call.workspace_bytes >= workspace_size(rows, c));
  Scratch s;
  s.partial = static_cast<double*>(call.workspace);
  s.coef = reinterpret_cast<float*>(s.partial + stat_blocks(rows) * 2 * c);
  return s;
}

// Channel groups per block so that blocks x groups splits evenly between the threads: 1 where
// the blocks already do, else enough that every thread gets as many (block, group) tasks (at
// most one group per 16-channel slice, and none smaller than a parallel chunk's elements: split,
// 32 rows of 960 channels took 1.1x as long).
int64_t channel_groups(int64_t rows, int64_t blocks, int64_t c, int threads) {
  if (threads <= 1 || blocks % threads == 0) return 1;
  const int64_t groups = threads / std::gcd(blocks, int64_t{threads});
  const int64_t most = std::min(c / 16, rows / blocks * c / kElementsPerChunk);
  return std::clamp<int64_t>(groups, 1, std::max<int64_t>(1, most));
}

// Channel range [k0, k1) of group g of `groups`: whole 16-channel slices, the last group also
// the channels past the last full slice (so for_slices over it takes the same slice widths as
// over all channels).
std::pair<int64_t, int64_t> group_channels(int64_t c, int64_t groups, int64_t g) {
  const int64_t slices = c / 16;
  const int64_t k0 = slices * g / groups * 16;
  const int64_t k1 = g + 1 == groups ? c : slices * (g + 1) / groups * 16;
  return {k0, k1};
}

// Runs block_fn(r0, r1, k0, k1, s0, s1) over blocks of rows x groups of channels, each block into
// its own partial slice (zeroed over [k0, k1) by its task), then adds the slices into block 0's:
// on return partial[0..C) and partial[C..2C) hold the two sums.
template <typename BlockFn>
void reduce_blocks(const KernelCall& call, int64_t rows, int64_t c, double* partial, BlockFn&& block_fn) {
  const int64_t blocks = stat_blocks(rows);
  const int64_t groups = channel_groups(rows, blocks, c, call.parallel.threads);
  call.parallel.for_each(blocks * groups, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / groups;
      const auto [k0, k1] = group_channels(c, groups, t % groups);
      double* s0 = partial + b * 2 * c;
      double* s1 = s0 + c;
      std::fill(s0 + k0, s0 + k1, 0.0);
      std::fill(s1 + k0, s1 + k1, 0.0);
      block_fn(rows * b / blocks, rows * (b + 1) / blocks, k0, k1, s0, s1);
    }
  });
  for (int64_t b = 1; b < blocks; ++b) {
    const double* src = partial + b * 2 * c;
    for (int64_t k = 0; k < 2 * c; ++k) partial[k] += src[k];
  }
}

// Sums of two terms per channel over a block's rows, in slices of 16 and 8 channels (one AVX-512
// or AVX register) with the rest one channel at a time. Each slice adds runs of kRunRows rows in
// float (even and odd rows in separate registers: an add waits for the one before it), then
// each run's sums into double accumulators; a block walks its rows in groups of about 32 KiB
// (kGroupBytes: in L1 while every slice reads them). The previous loops summed every element in
// double, which GCC vectorised four lanes wide: MobileNetV2 width 0.5, 32x32, batch 32, one thread,
// [32, 16, 16, 48]: forward 0.215 ms, backward 0.343 ms (the 1x1 conv before it 0.071 ms). A run's
// float sum of 8 terms per register keeps ~1e-7 relative error; the order depends on the row
// count only (the same on any number of threads).
typedef double D8 __attribute__((vector_size(64)));
constexpr int64_t kRunRows = 16;
constexpr int64_t kGroupBytes = 32 << 10;

// v's lanes added into acc (8 lanes each).
template <class V>
inline void add_lanes(const V& v, D8* acc) {
  if constexpr (sizeof(V) == 64) {
    acc[0] += __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7), D8);
    acc[1] += __builtin_convertvector(__builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15), D8);
  } else {
    acc[0] += __builtin_convertvector(v, D8);
  }
}

// s0[k..], s1[k..] += the sums over rows [r0, r1) of term(r) = {t, u} (V wide, channel k on).
template <class V, class Term>
void sum_slice(int64_t r0, int64_t r1, int64_t k, double* s0, double* s1, Term& term) {
  constexpr int kD = sizeof(V) / 32;  // D8 accumulators per V
  D8 a[kD] = {}, b[kD] = {};
  for (int64_t run = r0; run < r1; run += kRunRows) {
    const int64_t end = std::min(r1, run + kRunRows);
    V a0{}, a1{}, b0{}, b1{};
    int64_t r = run;
    for (; r + 2 <= end; r += 2) {
      const auto [t0, u0] = term(r, k);
      const auto [t1, u1] = term(r + 1, k);
      a0 += t0, b0 += u0, a1 += t1, b1 += u1;
    }
    if (r < end) {
      const auto [t0, u0] = term(r, k);
      a0 += t0, b0 += u0;
    }
    add_lanes(a0 + a1, a);
    add_lanes(b0 + b1, b);
  }
  for (int j = 0; j < kD; ++j)
    for (int l = 0; l < 8; ++l) s0[k + 8 * j + l] += a[j][l], s1[k + 8 * j + l] += b[j][l];
}

// Over every block (reduce_blocks): term.template operator()<V>(r, k) gives a slice's two terms
// of row r as V (V = float for the channels past the last 8, summed in double directly).
template <typename Term>
void reduce_slices(const KernelCall& call, int64_t rows, int64_t c, double* partial, Term&& term) {
  // Rows per L1-sized group, from all C channels even for a channel group's task: the groups
  // decide where runs are added into the double sums, so they must not depend on the threads.
  const int64_t row_group = std::max<int64_t>(kRunRows, kGroupBytes / (c * int64_t{sizeof(float)}) / kRunRows * kRunRows);
  reduce_blocks(call, rows, c, partial, [&](int64_t r0, int64_t r1, int64_t k0, int64_t k1, double* s0, double* s1) {
    for (int64_t g0 = r0; g0 < r1; g0 += row_group) {
      const int64_t g1 = std::min(r1, g0 + row_group);
      simd::for_slices(k0, k1, [&]<class V>(int64_t k) {
        auto row_term = [&](int64_t r, int64_t kk) { return term.template operator()<V>(r, kk); };
        if constexpr (std::is_same_v<V, float>) {
          for (int64_t r = g0; r < g1; ++r) {
            const auto [t, u] = row_term(r, k);
            s0[k] += t, s1[k] += u;
          }
        } else {
          sum_slice<V>(g0, g1, k, s0, s1, row_term);
        }
      });
    }
  });
}

// Lanes of v below lo become lo, above hi hi, as std::min(std::max(v, lo), hi) (NaN stays NaN).
template <class V>
inline V clamp_lanes(V v, float lo, float hi) {
  const V l = V{} + lo, h = V{} + hi;
  v = v < l ? l : v;
  return h < v ? h : v;
}

// dy where lo < v < hi, else +0 (gated_by over a slice).
template <class V>
inline V gate_lanes(V dy, V v, float lo, float hi) {
  if constexpr (std::is_same_v<V, float>) {
    return gated_by(dy, (v > lo) & (v < hi));
  } else {
    const V l = V{} + lo, h = V{} + hi;
    using Mask = decltype(v > l);
    return reinterpret_cast<V>(reinterpret_cast<Mask>(dy) & ((v > l) & (v < h)));
  }
}

// y = clamp((x - mean) * scale + beta, lo, hi) over rows [r0, r1). Arguments by value, so that
// the stores into y do not make the compiler reload them per slice.
void normalize_rows(int64_t r0, int64_t r1, int64_t c, const float* x, const float* mean, const float* scale,
                    const float* beta, float lo, float hi, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * c;
    float* yr = y + r * c;
    simd::for_slices(c, [&]<class V>(int64_t k) {
      using simd::load;
      const V v = (load<V>(xr + k) - load<V>(mean + k)) * load<V>(scale + k) + load<V>(beta + k);
      simd::store(yr + k, clamp_lanes(v, lo, hi));
    });
  }
}

// dx (+)= k1 * g + k2 * (x - mean) + k3 (training) or k1 * g (eval) over rows [r0, r1), with g
// the incoming gradient gated by a fused activation (kGated) or as it is.
template <bool kGated, bool kTraining, bool kAccumulate>
void backward_data_rows(int64_t r0, int64_t r1, int64_t c, const float* dy, const float* x, const float* mean,
                        const float* k1, const float* k2, const float* k3, ActivationGate gate, float* dx) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* dyr = dy + r * c;
    const float* xr = x + r * c;
    float* dxr = dx + r * c;
    simd::for_slices(c, [&]<class V>(int64_t k) {
      using simd::load;
      const V xm = load<V>(xr + k) - load<V>(mean + k);
      V g = load<V>(dyr + k);
      if constexpr (kGated) g = gate_lanes(g, xm * load<V>(gate.scale + k) + load<V>(gate.beta + k), gate.lo, gate.hi);
      V d = load<V>(k1 + k) * g;
      if constexpr (kTraining) d = d + load<V>(k2 + k) * xm + load<V>(k3 + k);
      if constexpr (kAccumulate) d = load<V>(dxr + k) + d;
      simd::store(dxr + k, d);
    });
  }
}

int64_t row_grain(int64_t c) { return std::max<int64_t>(1, kElementsPerChunk / std::max<int64_t>(1, c)); }

}  // namespace

size_t batch_norm_workspace(const Attrs&, const Shape* in, int n_in, const Shape*, int) {
  if (n_in < 1) return 0;
  return workspace_size(rows_of(in[0]), channels_of(in[0]));
}

void batch_norm_forward(const KernelCall& call) {
  const NormAttrs& a = call.attrs->norm;
  const Shape& xs = call.in_shape[0];
  const int64_t c = channels_of(xs), rows = rows_of(xs);
  if (rows <= 0 || c <= 0) return;
  const float* x = call.in_f(0);
  const float* gamma = call.in_f(1);
  const float* beta = call.in_f(2);
  float* running_mean = call.in_f(3);
  float* running_var = call.in_f(4);
  float* y = call.out_f(0);
  Scratch s = scratch_of(call, rows, c);
  float* mean_f = s.coef;       // the mean y is normalised with
  float* scale_f = s.coef + c;  // gamma * invstd
  const double eps = a.eps, m = a.momentum;

  if (a.training && a.apply_saved) {
    // Inputs 3 and 4 hold the forward's saved mean and invstd here (NormAttrs::apply_saved): the
    // forward's own floats, mean_f = float(mean) = saved_mean and the scale from the saved invstd.
    for (int64_t k = 0; k < c; ++k) {
      mean_f[k] = running_mean[k];
      scale_f[k] = forward_scale(a, gamma[k], running_var[k]);
    }
  } else if (a.training) {
    // Sums of x - x[row 0] and its square (the shift keeps the variance accurate).
    reduce_slices(call, rows, c, s.partial, [x, c]<class V>(int64_t r, int64_t k) {
      if constexpr (std::is_same_v<V, float>) {
        const double d = double(x[r * c + k]) - double(x[k]);
        return std::pair{d, d * d};
      } else {
        const V d = simd::load<V>(x + r * c + k) - simd::load<V>(x + k);
        return std::pair{d, d * d};
      }
    });
    float* saved_mean = call.out_f(1);
    float* saved_invstd = call.out_f(2);
    // Per channel, in loops without branches (they vectorise: a 1280-channel norm on a 1x1 map
    // spent more time here, one channel at a time, than in its two passes over x). The sums
    // become the mean and the variance in place.
    const double n = double(rows);
    double* mean_d = s.partial;
    double* var_d = s.partial + c;
    float* invstd_f = s.coef + 2 * c;
    for (int64_t k = 0; k < c; ++k) {
      const double shifted_mean = mean_d[k] / n;
      var_d[k] = std::max(0.0, var_d[k] / n - shifted_mean * shifted_mean);
      mean_d[k] = double(x[k]) + shifted_mean;
    }
    for (int64_t k = 0; k < c; ++k) {
      invstd_f[k] = float(1.0 / std::sqrt(var_d[k] + eps));
      mean_f[k] = float(mean_d[k]);
      // From the invstd as saved (rounded to float), so that a backward can recompute exactly
      // what this pass computed (ActivationGate).
      scale_f[k] = training_scale(gamma[k], invstd_f[k]);
    }
    if (saved_mean) std::copy(mean_f, mean_f + c, saved_mean);
    if (saved_invstd) std::copy(invstd_f, invstd_f + c, saved_invstd);
    if (a.update_running_stats && running_mean && running_var) {
      const bool unbias = rows > 1;
      for (int64_t k = 0; k < c; ++k) {
        const double unbiased = unbias ? var_d[k] * n / (n - 1.0) : var_d[k];
        running_mean[k] = float((1.0 - m) * double(running_mean[k]) + m * mean_d[k]);
        running_var[k] = float((1.0 - m) * double(running_var[k]) + m * unbiased);
      }
    }
  } else {
    for (int64_t k = 0; k < c; ++k) {
      mean_f[k] = running_mean[k];
      scale_f[k] = forward_scale(a, gamma[k], running_var[k]);
    }
  }
  if (!y) return;
  // (x - mean) * scale + beta rather than x * scale + shift: no cancellation when |mean| >> std.
  // A fused ReLU/ReLU6 clamps in the same pass (lo = -inf, hi = inf without one).
  const float lo = fused_activation_low(call.attrs->activation), hi = fused_activation_high(call.attrs->activation);
  call.parallel.for_each(rows, row_grain(c), [&](int64_t r0, int64_t r1) {
    normalize_rows(r0, r1, c, x, mean_f, scale_f, beta, lo, hi, y);
  });
}

void batch_norm_backward(const KernelCall& call) {
  const NormAttrs& a = call.attrs->norm;
  const Shape& xs = call.in_shape[1];
  const int64_t c = channels_of(xs), rows = rows_of(xs);
  if (rows <= 0 || c <= 0) return;
  const float* dy = call.in_f(0);
  const float* x = call.in_f(1);
  const float* gamma = call.in_f(2);
  const float* mean = call.in_f(3);    // saved batch mean or running mean
  const float* stat = call.in_f(4);    // saved invstd or running variance
  float* dx = call.out_f(0);
  float* dgamma = call.out_f(1);
  float* dbeta = call.out_f(2);
  const uint32_t mask = call.attrs->accumulate_mask;
  if (!dx && !dgamma && !dbeta) return;
  Scratch s = scratch_of(call, rows, c);

  // A fused activation backward: dy passes where the forward's activation passed its input.
  const FusedActivation act = call.attrs->activation;
  ActivationGate gate;
  if (act != FusedActivation::kNone) {
    float* scale = s.coef + 3 * c;
    for (int64_t k = 0; k < c; ++k) scale[k] = forward_scale(a, gamma[k], stat[k]);
    gate.scale = scale, gate.beta = call.in_f(5);
    gate.lo = fused_activation_low(act), gate.hi = fused_activation_high(act);
  }
  const bool gated = act != FusedActivation::kNone;

  // Sums of dy and dy * (x - mean) per channel (dbeta and dgamma / invstd); dx in training mode
  // needs both. Eval-mode dx alone needs none.
  const bool need_sums = dgamma || dbeta || (dx && a.training);
  if (need_sums) {
    reduce_slices(call, rows, c, s.partial, [&]<class V>(int64_t r, int64_t k) {
      using simd::load;
      const V xm = load<V>(x + r * c + k) - load<V>(mean + k);
      V g = load<V>(dy + r * c + k);
      if (gated) g = gate_lanes(g, xm * load<V>(gate.scale + k) + load<V>(gate.beta + k), gate.lo, gate.hi);
      if constexpr (std::is_same_v<V, float>) {
        // The last channels in double, as the reference.
        return std::pair{double(g), double(g) * (double(x[r * c + k]) - double(mean[k]))};
      } else {
        return std::pair{g, g * xm};
      }
    });
  }
  // dx = k1 * dy + k2 * (x - mean) + k3, the training formula
  //   gamma * invstd * (dy - sum(dy)/rows - xhat * sum(dy * xhat)/rows) with xhat = (x-mean)*invstd.
  float* k1 = s.coef;
  float* k2 = s.coef + c;
  float* k3 = s.coef + 2 * c;
  const double n = double(rows);
  for (int64_t k = 0; k < c; ++k) {
    const double invstd = a.training ? double(stat[k]) : 1.0 / std::sqrt(double(stat[k]) + double(a.eps));
    const double sum_dy = need_sums ? s.partial[k] : 0.0;
    const double sum_dy_xhat = need_sums ? s.partial[c + k] * invstd : 0.0;
    if (dgamma) dgamma[k] = float(((mask & 2u) ? double(dgamma[k]) : 0.0) + sum_dy_xhat);
    if (dbeta) dbeta[k] = float(((mask & 4u) ? double(dbeta[k]) : 0.0) + sum_dy);
    const double g = double(gamma[k]) * invstd;
    k1[k] = float(g);
    k2[k] = a.training ? float(-g * invstd * sum_dy_xhat / n) : 0.0f;
    k3[k] = a.training ? float(-g * sum_dy / n) : 0.0f;
  }
  if (!dx) return;
  // The flags as template parameters: tested per slice, they cost as much as the arithmetic.
  const auto run = [&]<bool kGated, bool kTraining, bool kAccumulate>() {
    call.parallel.for_each(rows, row_grain(c), [&](int64_t r0, int64_t r1) {
      backward_data_rows<kGated, kTraining, kAccumulate>(r0, r1, c, dy, x, mean, k1, k2, k3, gate, dx);
    });
  };
  const bool accumulate = mask & 1u;
  const int flags = (gated ? 4 : 0) + (a.training ? 2 : 0) + (accumulate ? 1 : 0);
  switch (flags) {
    case 0: return run.template operator()<false, false, false>();
    case 1: return run.template operator()<false, false, true>();
    case 2: return run.template operator()<false, true, false>();
    case 3: return run.template operator()<false, true, true>();
    case 4: return run.template operator()<true, false, false>();
    case 5: return run.template operator()<true, false, true>();
    case 6: return run.template operator()<true, true, false>();
    default: return run.template operator()<true, true, true>();
  }
}

}  // namespace edgetrain
