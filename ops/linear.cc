// Fully connected layer, torch layout: x[N][I], w[O][I], b[O], y[N][O].
//   forward          y  = x w^T + b
//   backward data    dx = dy w              (accumulate bit 0)
//   backward weight  dw = dy^T x            (accumulate bit 0, output 0, may be null)
//                    db = sum_n dy[n][:]    (accumulate bit 1, output 1, may be null)
// The fast kernels are one cblas_sgemm each (OpenBLAS threads itself); the naive ones are triple
// loops in T, instantiated for float and double (double for the finite-difference checks).
#include "ops/linear.h"

#include <cblas.h>

#include "ops/gemm.h"

#include <algorithm>
#include <string>

namespace edgetrain {

Result<Shape> linear_output_shape(const Shape& x, const Shape& w) {
  if (x.rank != 2)
    return invalid_argument("linear: input " + x.to_string() +
                            " must be [N, in] (rank 2; flatten the features first)");
  if (w.rank != 2)
    return invalid_argument("linear: weight " + w.to_string() + " must be [out, in] (rank 2)");
  if (w[1] != x[1])
    return invalid_argument("linear: weight " + w.to_string() + " expects " +
                            std::to_string(w[1]) + " input features, input " + x.to_string() +
                            " has " + std::to_string(x[1]));
  if (x[0] <= 0 || w[0] <= 0 || w[1] <= 0)
    return invalid_argument("linear: empty dimension in input " + x.to_string() + " or weight " +
                            w.to_string());
  return Shape{x[0], w[0]};
}

template <typename T>
void linear_forward_naive(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* b, T* y) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      T s = b ? b[o] : T(0);
      for (int64_t k = 0; k < in; ++k) s += x[i * in + k] * w[o * in + k];
      y[i * out + o] = s;
    }
}

template <typename T>
void linear_backward_data_naive(int64_t n, int64_t in, int64_t out, const T* dy, const T* w, T* dx,
                                bool accumulate) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < in; ++k) {
      T s = 0;
      for (int64_t o = 0; o < out; ++o) s += dy[i * out + o] * w[o * in + k];
      dx[i * in + k] = accumulate ? dx[i * in + k] + s : s;
    }
}

template <typename T>
void linear_backward_weight_naive(int64_t n, int64_t in, int64_t out, const T* dy, const T* x, T* dw,
                                  T* db, bool accumulate_dw, bool accumulate_db) {
  if (dw)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t k = 0; k < in; ++k) {
        T s = 0;
        for (int64_t i = 0; i < n; ++i) s += dy[i * out + o] * x[i * in + k];
        dw[o * in + k] = accumulate_dw ? dw[o * in + k] + s : s;
      }
  if (db)
    for (int64_t o = 0; o < out; ++o) {
      T s = 0;
      for (int64_t i = 0; i < n; ++i) s += dy[i * out + o];
      db[o] = accumulate_db ? db[o] + s : s;
    }
}

#define ET_INSTANTIATE_LINEAR(T)                                                                     \
  template void linear_forward_naive<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T*); \
  template void linear_backward_data_naive<T>(int64_t, int64_t, int64_t, const T*, const T*, T*,      \
                                              bool);                                                  \
  template void linear_backward_weight_naive<T>(int64_t, int64_t, int64_t, const T*, const T*, T*,    \
                                                T*, bool, bool);
ET_INSTANTIATE_LINEAR(float)
ET_INSTANTIATE_LINEAR(double)
#undef ET_INSTANTIATE_LINEAR

namespace {

// Problem sizes read from the call; the shapes were validated by linear_output_shape when the
// graph was built, so a mismatch here is a schedule bug.
struct Dims {
  int64_t n, in, out;
};

Dims forward_dims(const KernelCall& call) {  // in {x[N,I], w[O,I], b?} out {y[N,O]}
  ET_CHECK(call.n_in >= 2 && call.n_out >= 1);
  const Shape& x = call.in_shape[0];
  const Shape& w = call.in_shape[1];
  ET_CHECK(x.rank == 2 && w.rank == 2 && x[1] == w[1]);
  ET_CHECK(call.out_shape[0].numel() == x[0] * w[0]);
  return {x[0], x[1], w[0]};
}

Dims backward_data_dims(const KernelCall& call) {  // in {dy[N,O], w[O,I]} out {dx[N,I]}
  ET_CHECK(call.n_in >= 2 && call.n_out >= 1);
  const Shape& dy = call.in_shape[0];
  const Shape& w = call.in_shape[1];
  ET_CHECK(dy.rank == 2 && w.rank == 2 && dy[1] == w[0]);
  ET_CHECK(call.out_shape[0].numel() == dy[0] * w[1]);
  return {dy[0], w[1], dy[1]};
}

Dims backward_weight_dims(const KernelCall& call) {  // in {dy[N,O], x[N,I]} out {dw?, db?}
  ET_CHECK(call.n_in >= 2 && call.n_out >= 1);
  const Shape& dy = call.in_shape[0];
  const Shape& x = call.in_shape[1];
  ET_CHECK(dy.rank == 2 && x.rank == 2 && dy[0] == x[0]);
  if (call.out_f(0)) ET_CHECK(call.out_shape[0].numel() == dy[1] * x[1]);
  if (call.out_f(1)) ET_CHECK(call.out_shape[1].numel() == dy[1]);
  return {dy[0], x[1], dy[1]};
}

int blas_int(int64_t v) {
  ET_CHECK(v >= 0 && v <= INT32_MAX);
  return static_cast<int>(v);
}

}  // namespace

void linear_forward(const KernelCall& call) {
  const Dims d = forward_dims(call);
  const float* x = call.in_f(0);
  const float* w = call.in_f(1);
  const float* b = call.in_f(2);
  float* y = call.out_f(0);
  if (y == nullptr) return;
  // With a bias, y starts as b in every row and the GEMM adds onto it (beta = 1).
  if (b)
    for (int64_t i = 0; i < d.n; ++i) std::copy(b, b + d.out, y + i * d.out);
  gemm(call.parallel, false, true, blas_int(d.n), blas_int(d.out),
              blas_int(d.in), 1.0f, x, blas_int(d.in), w, blas_int(d.in), b ? 1.0f : 0.0f, y,
              blas_int(d.out));
}

void linear_forward_reference(const KernelCall& call) {
  const Dims d = forward_dims(call);
  if (call.out_f(0) == nullptr) return;
  linear_forward_naive<float>(d.n, d.in, d.out, call.in_f(0), call.in_f(1), call.in_f(2), call.out_f(0));
}

void linear_backward_data(const KernelCall& call) {
  const Dims d = backward_data_dims(call);
  float* dx = call.out_f(0);
  if (dx == nullptr) return;
  // dx[N,I] = dy[N,O] w[O,I]; beta = 0 makes BLAS overwrite dx (whatever the arena held).
  gemm(call.parallel, false, false, blas_int(d.n), blas_int(d.in),
              blas_int(d.out), 1.0f, call.in_f(0), blas_int(d.out), call.in_f(1), blas_int(d.in),
              call.attrs->accumulates(0) ? 1.0f : 0.0f, dx, blas_int(d.in));
}

void linear_backward_data_reference(const KernelCall& call) {
  const Dims d = backward_data_dims(call);
  if (call.out_f(0) == nullptr) return;
  linear_backward_data_naive<float>(d.n, d.in, d.out, call.in_f(0), call.in_f(1), call.out_f(0),
                                    call.attrs->accumulates(0));
}

void linear_backward_weight(const KernelCall& call) {
  const Dims d = backward_weight_dims(call);
  const float* dy = call.in_f(0);
  const float* x = call.in_f(1);
  float* dw = call.out_f(0);
  float* db = call.out_f(1);
  if (dw) {
    // dw[O,I] = dy^T[O,N] x[N,I]
    gemm(call.parallel, true, false, blas_int(d.out), blas_int(d.in),
                blas_int(d.n), 1.0f, dy, blas_int(d.out), x, blas_int(d.in),
                call.attrs->accumulates(0) ? 1.0f : 0.0f, dw, blas_int(d.in));
  }
  if (db) {
    // Column sums, row by row: the inner loop runs over contiguous outputs and vectorises.
    if (!call.attrs->accumulates(1)) std::fill(db, db + d.out, 0.0f);
    for (int64_t i = 0; i < d.n; ++i) {
      const float* row = dy + i * d.out;
      for (int64_t o = 0; o < d.out; ++o) db[o] += row[o];
    }
  }
}

void linear_backward_weight_reference(const KernelCall& call) {
  const Dims d = backward_weight_dims(call);
  linear_backward_weight_naive<float>(d.n, d.in, d.out, call.in_f(0), call.in_f(1), call.out_f(0),
                                      call.out_f(1), call.attrs->accumulates(0),
                                      call.attrs->accumulates(1));
}

}  // namespace edgetrain
