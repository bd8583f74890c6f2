// Residual add, gradient copy (the backward of add and flatten) and flatten.
#pragma once

#include <cstdint>

#include "ops/op.h"
#include "runtime/status.h"

namespace edgetrain {

// Shape rules. add: both operands must have the same shape (no broadcasting: residual adds only).
// flatten: [N, d1, ..., dk] -> [N, d1*...*dk]; rank >= 1.
Result<Shape> add_output_shape(const Shape& a, const Shape& b);
Result<Shape> flatten_output_shape(const Shape& x);

void add_forward(const KernelCall& call);            // y = a + b
void add_forward_reference(const KernelCall& call);
void grad_copy(const KernelCall& call);              // dx = dy, or dx += dy (accumulate bit 0)
void grad_copy_reference(const KernelCall& call);
void flatten_forward(const KernelCall& call);        // y = x (a copy; also its own reference)

}  // namespace edgetrain
