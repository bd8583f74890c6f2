// TEMPORARY stubs while the kernels are written (replaced before landing).
#include "ops/elementwise.h"
#include "runtime/status.h"
namespace edgetrain {
void add_forward(const KernelCall&) { ET_CHECK(!"add_forward not implemented yet"); }
void add_forward_reference(const KernelCall&) { ET_CHECK(!"add_forward_reference not implemented yet"); }
void grad_copy(const KernelCall&) { ET_CHECK(!"grad_copy not implemented yet"); }
void grad_copy_reference(const KernelCall&) { ET_CHECK(!"grad_copy_reference not implemented yet"); }
void flatten_forward(const KernelCall&) { ET_CHECK(!"flatten_forward not implemented yet"); }
}  // namespace edgetrain
