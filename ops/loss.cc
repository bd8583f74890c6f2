// TEMPORARY stubs while the kernels are written (replaced before landing).
#include "ops/loss.h"
#include "runtime/status.h"
namespace edgetrain {
void softmax_cross_entropy_forward(const KernelCall&) { ET_CHECK(!"softmax_cross_entropy_forward not implemented yet"); }
void softmax_cross_entropy_forward_reference(const KernelCall&) { ET_CHECK(!"softmax_cross_entropy_forward_reference not implemented yet"); }
void softmax_cross_entropy_backward(const KernelCall&) { ET_CHECK(!"softmax_cross_entropy_backward not implemented yet"); }
void softmax_cross_entropy_backward_reference(const KernelCall&) { ET_CHECK(!"softmax_cross_entropy_backward_reference not implemented yet"); }
}  // namespace edgetrain
