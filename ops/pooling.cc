// TEMPORARY stubs while the kernels are written (replaced before landing).
#include "ops/pooling.h"
#include "runtime/status.h"
namespace edgetrain {
void max_pool_forward(const KernelCall&) { ET_CHECK(!"max_pool_forward not implemented yet"); }
void max_pool_forward_reference(const KernelCall&) { ET_CHECK(!"max_pool_forward_reference not implemented yet"); }
void max_pool_backward(const KernelCall&) { ET_CHECK(!"max_pool_backward not implemented yet"); }
void max_pool_backward_reference(const KernelCall&) { ET_CHECK(!"max_pool_backward_reference not implemented yet"); }
void avg_pool_forward(const KernelCall&) { ET_CHECK(!"avg_pool_forward not implemented yet"); }
void avg_pool_forward_reference(const KernelCall&) { ET_CHECK(!"avg_pool_forward_reference not implemented yet"); }
void avg_pool_backward(const KernelCall&) { ET_CHECK(!"avg_pool_backward not implemented yet"); }
void avg_pool_backward_reference(const KernelCall&) { ET_CHECK(!"avg_pool_backward_reference not implemented yet"); }
void global_avg_pool_forward(const KernelCall&) { ET_CHECK(!"global_avg_pool_forward not implemented yet"); }
void global_avg_pool_forward_reference(const KernelCall&) { ET_CHECK(!"global_avg_pool_forward_reference not implemented yet"); }
void global_avg_pool_backward(const KernelCall&) { ET_CHECK(!"global_avg_pool_backward not implemented yet"); }
void global_avg_pool_backward_reference(const KernelCall&) { ET_CHECK(!"global_avg_pool_backward_reference not implemented yet"); }
}  // namespace edgetrain
