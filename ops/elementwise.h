// Residual add, gradient copy (the backward of add and flatten) and flatten.
#pragma once

#include <cstdint>

#include "ops/op.h"

namespace edgetrain {

void add_forward(const KernelCall& call);
void add_forward_reference(const KernelCall& call);
void grad_copy(const KernelCall& call);
void grad_copy_reference(const KernelCall& call);
void flatten_forward(const KernelCall& call);

}  // namespace edgetrain
