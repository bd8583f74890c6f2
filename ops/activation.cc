// TEMPORARY stubs while the kernels are written (replaced before landing).
#include "ops/activation.h"
#include "runtime/status.h"
namespace edgetrain {
void relu_forward(const KernelCall&) { ET_CHECK(!"relu_forward not implemented yet"); }
void relu_forward_reference(const KernelCall&) { ET_CHECK(!"relu_forward_reference not implemented yet"); }
void relu_backward(const KernelCall&) { ET_CHECK(!"relu_backward not implemented yet"); }
void relu_backward_reference(const KernelCall&) { ET_CHECK(!"relu_backward_reference not implemented yet"); }
void relu6_forward(const KernelCall&) { ET_CHECK(!"relu6_forward not implemented yet"); }
void relu6_forward_reference(const KernelCall&) { ET_CHECK(!"relu6_forward_reference not implemented yet"); }
void relu6_backward(const KernelCall&) { ET_CHECK(!"relu6_backward not implemented yet"); }
void relu6_backward_reference(const KernelCall&) { ET_CHECK(!"relu6_backward_reference not implemented yet"); }
}  // namespace edgetrain
