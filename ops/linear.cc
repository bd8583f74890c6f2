// TEMPORARY stubs while the kernels are written (replaced before landing).
#include "ops/linear.h"
#include "runtime/status.h"
namespace edgetrain {
void linear_forward(const KernelCall&) { ET_CHECK(!"linear_forward not implemented yet"); }
void linear_forward_reference(const KernelCall&) { ET_CHECK(!"linear_forward_reference not implemented yet"); }
void linear_backward_data(const KernelCall&) { ET_CHECK(!"linear_backward_data not implemented yet"); }
void linear_backward_data_reference(const KernelCall&) { ET_CHECK(!"linear_backward_data_reference not implemented yet"); }
void linear_backward_weight(const KernelCall&) { ET_CHECK(!"linear_backward_weight not implemented yet"); }
void linear_backward_weight_reference(const KernelCall&) { ET_CHECK(!"linear_backward_weight_reference not implemented yet"); }
}  // namespace edgetrain
