// Fully connected layer y = x w^T + b with torch's weight layout w[out][in]: forward, backward
// data (dx = dy w) and backward weight (dw = dy^T x, db = sum over the batch of dy), all GEMMs.
#pragma once

#include <cstdint>

#include "ops/op.h"
#include "runtime/status.h"

namespace edgetrain {

Result<Shape> linear_output_shape(const Shape& x, const Shape& w);

template <typename T>
void linear_forward_naive(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* b, T* y);
template <typename T>
void linear_backward_data_naive(int64_t n, int64_t in, int64_t out, const T* dy, const T* w, T* dx, bool accumulate);
template <typename T>
void linear_backward_weight_naive(int64_t n, int64_t in, int64_t out, const T* dy, const T* x, T* dw,
                                  T* db, bool accumulate_dw, bool accumulate_db);

void linear_forward(const KernelCall& call);
void linear_forward_reference(const KernelCall& call);
void linear_backward_data(const KernelCall& call);
void linear_backward_data_reference(const KernelCall& call);
void linear_backward_weight(const KernelCall& call);
void linear_backward_weight_reference(const KernelCall& call);

}  // namespace edgetrain
