// TEMPORARY stubs while the kernels are written (replaced before landing).
#include "ops/batch_norm.h"
#include "runtime/status.h"
namespace edgetrain {
void batch_norm_forward(const KernelCall&) { ET_CHECK(!"batch_norm_forward not implemented yet"); }
void batch_norm_forward_reference(const KernelCall&) { ET_CHECK(!"batch_norm_forward_reference not implemented yet"); }
void batch_norm_backward(const KernelCall&) { ET_CHECK(!"batch_norm_backward not implemented yet"); }
void batch_norm_backward_reference(const KernelCall&) { ET_CHECK(!"batch_norm_backward_reference not implemented yet"); }
}  // namespace edgetrain
