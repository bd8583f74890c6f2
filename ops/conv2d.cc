// TEMPORARY stubs while the kernels are written (replaced before landing).
#include "ops/conv2d.h"
#include "runtime/status.h"
namespace edgetrain {
void conv2d_forward(const KernelCall&) { ET_CHECK(!"conv2d_forward not implemented yet"); }
void conv2d_forward_reference(const KernelCall&) { ET_CHECK(!"conv2d_forward_reference not implemented yet"); }
void conv2d_backward_data(const KernelCall&) { ET_CHECK(!"conv2d_backward_data not implemented yet"); }
void conv2d_backward_data_reference(const KernelCall&) { ET_CHECK(!"conv2d_backward_data_reference not implemented yet"); }
void conv2d_backward_weight(const KernelCall&) { ET_CHECK(!"conv2d_backward_weight not implemented yet"); }
void conv2d_backward_weight_reference(const KernelCall&) { ET_CHECK(!"conv2d_backward_weight_reference not implemented yet"); }
size_t conv2d_forward_workspace(const Attrs&, const Shape*, int, const Shape*, int) { return 0; }
size_t conv2d_backward_data_workspace(const Attrs&, const Shape*, int, const Shape*, int) { return 0; }
size_t conv2d_backward_weight_workspace(const Attrs&, const Shape*, int, const Shape*, int) { return 0; }
}  // namespace edgetrain
