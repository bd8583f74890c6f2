// The op table: name, fast kernel, reference kernel and workspace rule of every OpKind.
// It lives in runtime/ because it gathers kernels from ops/ and optimizer/.
#include "ops/activation.h"
#include "ops/batch_norm.h"
#include "ops/bitmap_storage.h"
#include "ops/conv2d.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/loss.h"
#include "ops/op.h"
#include "ops/pooling.h"
#include "optimizer/update_kernels.h"

namespace edgetrain {
namespace {

constexpr OpInfo kOps[] = {
    {"conv2d", conv2d_forward, conv2d_forward_reference, conv2d_forward_workspace, true},
    {"conv2d_backward_data", conv2d_backward_data, conv2d_backward_data_reference,
     conv2d_backward_data_workspace, false},
    {"conv2d_backward_weight", conv2d_backward_weight, conv2d_backward_weight_reference,
     conv2d_backward_weight_workspace, false},
    {"batch_norm", batch_norm_forward, batch_norm_forward_reference, batch_norm_workspace, true},
    {"batch_norm_backward", batch_norm_backward, batch_norm_backward_reference,
     batch_norm_workspace, false},
    {"relu", relu_forward, relu_forward_reference, nullptr, true},
    {"relu_backward", relu_backward, relu_backward_reference, nullptr, false},
    {"relu6", relu6_forward, relu6_forward_reference, nullptr, true},
    {"relu6_backward", relu6_backward, relu6_backward_reference, nullptr, false},
    {"add", add_forward, add_forward_reference, nullptr, true},
    {"grad_copy", grad_copy, grad_copy_reference, nullptr, false},
    {"flatten", flatten_forward, flatten_forward, nullptr, true},
    {"max_pool", max_pool_forward, max_pool_forward_reference, nullptr, true},
    {"max_pool_backward", max_pool_backward, max_pool_backward_reference, nullptr, false},
    {"avg_pool", avg_pool_forward, avg_pool_forward_reference, nullptr, true},
    {"avg_pool_backward", avg_pool_backward, avg_pool_backward_reference, nullptr, false},
    {"global_avg_pool", global_avg_pool_forward, global_avg_pool_forward_reference, nullptr, true},
    {"global_avg_pool_backward", global_avg_pool_backward, global_avg_pool_backward_reference,
     nullptr, false},
    {"linear", linear_forward, linear_forward_reference, nullptr, true},
    {"linear_backward_data", linear_backward_data, linear_backward_data_reference, nullptr, false},
    {"linear_backward_weight", linear_backward_weight, linear_backward_weight_reference, nullptr,
     false},
    {"softmax_cross_entropy", softmax_cross_entropy_forward,
     softmax_cross_entropy_forward_reference, nullptr, true},
    {"softmax_cross_entropy_backward", softmax_cross_entropy_backward,
     softmax_cross_entropy_backward_reference, nullptr, false},
    {"sgd_update", sgd_update, sgd_update_reference, nullptr, false},
    {"adamw_update", adamw_update, adamw_update_reference, nullptr, false},
    {"pack_sparse", pack_sparse_kernel, pack_sparse_reference, nullptr, false},
    {"unpack_sparse", unpack_sparse_kernel, unpack_sparse_reference, nullptr, false},
    {"pack_mask", pack_mask_kernel, pack_mask_reference, nullptr, false},
    {"relu_backward_mask", relu_backward_mask, relu_backward_mask_reference, nullptr, false},
    {"dropout", dropout_forward, dropout_forward_reference, nullptr, true},
    {"dropout_backward", dropout_backward, dropout_backward_reference, nullptr, false},
    {"sgd_momentum_decay", sgd_momentum_decay, sgd_momentum_decay_reference, nullptr, false},
    {"sgd_apply_momentum", sgd_apply_momentum, sgd_apply_momentum_reference, nullptr, false},
};
static_assert(sizeof(kOps) / sizeof(kOps[0]) == kOpCount,
              "every OpKind needs a row in kOps, in enum order");

}  // namespace

const OpInfo& op_info(OpKind kind) { return kOps[static_cast<int>(kind)]; }

}  // namespace edgetrain
