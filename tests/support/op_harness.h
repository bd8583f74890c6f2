// Test helpers for ops: run any registered kernel (fast or reference) on host buffers, compare
// buffers, and check a backward against central finite differences in double precision.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "ops/op.h"
#include "runtime/tensor.h"

namespace edgetrain::testing {

// A host tensor for tests. Integer tensors (labels) keep their int32 bits in `data`.
struct HostTensor {
  Shape shape;
  std::vector<float> data;
  bool present = true;  // false: pass a null pointer (optional input/output)
};

HostTensor random_tensor(const Shape& shape, uint32_t seed, float lo = -1.0f, float hi = 1.0f);
HostTensor labels_tensor(const std::vector<int32_t>& labels);
HostTensor absent(const Shape& shape = {});

// Runs op_info(op).fast (reference=false) or .reference on the inputs. `outputs` gives the output
// shapes and initial contents (relevant when attrs.accumulate_mask asks to accumulate); absent
// outputs get null pointers. Inputs are copied, so in-place kernels may mutate them freely; the
// mutated inputs are returned through `inputs_after` when given.
std::vector<HostTensor> run_op(OpKind op, const Attrs& attrs, const std::vector<HostTensor>& inputs,
                               std::vector<HostTensor> outputs, bool reference, int threads = 2,
                               std::vector<HostTensor>* inputs_after = nullptr,
                               const StepScalars& step = StepScalars{});

// max |a-b| / max(1, |b|) over elements; fails the current test when shapes differ.
double max_rel_error(const std::vector<float>& a, const std::vector<float>& b);

// Gradient check. `forward` maps inputs (double) to one output (double). `backward` maps
// (inputs, dy) to the gradients of sum(y * dy) with respect to every input listed in `wrt`.
// Numerical gradients use central differences with step eps. Returns the largest relative
// error max |num-ana| / max(1, |num|) over all checked elements.
using ForwardD = std::function<std::vector<double>(const std::vector<std::vector<double>>&)>;
using BackwardD = std::function<std::vector<std::vector<double>>(
    const std::vector<std::vector<double>>&, const std::vector<double>& dy)>;
double gradient_check(const std::vector<std::vector<double>>& inputs, const std::vector<int>& wrt,
                      const ForwardD& forward, const BackwardD& backward, double eps = 1e-6,
                      uint32_t seed = 7);

std::vector<double> random_doubles(size_t n, uint32_t seed, double lo = -1.0, double hi = 1.0);

}  // namespace edgetrain::testing
