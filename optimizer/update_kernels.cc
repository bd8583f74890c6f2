// TEMPORARY stubs while the kernels are written (replaced before landing).
#include "optimizer/update_kernels.h"
#include "runtime/status.h"
namespace edgetrain {
void sgd_update(const KernelCall&) { ET_CHECK(!"sgd_update not implemented yet"); }
void sgd_update_reference(const KernelCall&) { ET_CHECK(!"sgd_update_reference not implemented yet"); }
void adamw_update(const KernelCall&) { ET_CHECK(!"adamw_update not implemented yet"); }
void adamw_update_reference(const KernelCall&) { ET_CHECK(!"adamw_update_reference not implemented yet"); }
}  // namespace edgetrain
