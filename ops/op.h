// The op table: one enum of every kernel kind the schedule can contain, the attributes a node
// carries, and the calling convention of kernels. Adding an op means adding it to OpKind, to the
// name/kernel table in ops/registry.cc (a static_assert checks the count) and, for forward ops,
// a gradient rule in runtime/gradients.cc (checked the same way).
//
// Calling convention. A kernel gets a KernelCall with its input and output pointers (already
// placed in the arena), their shapes, the node's attributes, a workspace sized by the op's
// WorkspaceFn, a parallel-for and the step's scalars. A kernel never allocates.
// An output pointer may be null when the schedule does not need that output (for instance the
// weight gradient of a frozen layer): the kernel skips it. Bit i of attrs.accumulate_mask asks
// the kernel to add into output i instead of overwriting it (gradients of values used twice,
// gradient accumulation over micro-batches).
//
// Inputs and outputs of each op, in order ("?" = optional, may be null):
//   kConv2d                  in {x[N,H,W,C], w[O,kh,kw,C/g], b?[O]}     out {y[N,Ho,Wo,O]}
//   kConv2dBackwardData      in {dy, w}                                 out {dx}
//   kConv2dBackwardWeight    in {dy, x}                                 out {dw?, db?}
//   kBatchNorm (training)    in {x, gamma, beta, running_mean, running_var}
//                            out {y, saved_mean[C], saved_invstd[C]}
//                            updates running_mean/var in place when norm.update_running_stats;
//                            with attrs.activation, y = relu(bn(x)) or relu6(bn(x))
//   kBatchNorm (eval)        in {x, gamma, beta, running_mean, running_var} out {y}
//   kBatchNorm (apply_saved) in {x, gamma, beta, saved_mean, saved_invstd}  out {y}
//   kBatchNormBackward       training: in {dy, x, gamma, saved_mean, saved_invstd}
//                            eval:     in {dy, x, gamma, running_mean, running_var}
//                            out {dx?, dgamma?, dbeta?}
//   kRelu, kRelu6            in {x}                                     out {y}
//   kReluBackward, kRelu6Backward in {dy, y}                            out {dx}
//   kAdd                     in {a, b}                                  out {y}  (y = act(a + b) with attrs.activation)
//   kGradCopy                in {dy}                                    out {dx}   (same numel)
//   kFlatten                 in {x[N,...]}                              out {y[N,K]} (a copy)
//   kMaxPool                 in {x}                                     out {y, argmax?}
//                            argmax (i32, y's shape): the maximum's position in its window
//                            clipped to the input, (ih - lo_h) * k + (iw - lo_w); -1 if empty
//   kMaxPoolBackward         in {dy, argmax}                            out {dx}
//   kAvgPool                 in {x}                                     out {y}
//   kAvgPoolBackward         in {dy}                                    out {dx}
//   kGlobalAvgPool           in {x[N,H,W,C]}                            out {y[N,C]}
//   kGlobalAvgPoolBackward   in {dy[N,C]}                               out {dx[N,H,W,C]}
//   kLinear                  in {x[N,I], w[O,I], b?[O]}                 out {y[N,O]}
//   kLinearBackwardData      in {dy, w}                                 out {dx}
//   kLinearBackwardWeight    in {dy, x}                                 out {dw?, db?}
//   kSoftmaxCrossEntropy     in {logits[N,K], labels i32[N]}            out {loss[1], probs[N,K]}
//                            loss = loss.scale * sum_n -log softmax(logits_n)[label_n]
//   kSoftmaxCrossEntropyBackward in {probs, labels}                     out {dlogits}
//                            dlogits = loss.scale * (probs - onehot(labels))
//   kDropout                 in {x}                         out {y, mask u64[ceil(n/64)]}
//                            y = kept ? x / (1-p) : 0, kept drawn from (step seed, salt, index)
//   kDropoutBackward         in {dy, mask}                              out {dx}
//   kSgdUpdate               in {param, grad, momentum_buffer?}         out {}  (in place)
//   kAdamWUpdate             in {param, grad, m, v}                     out {}  (in place)
//   kSgdMomentumDecay        in {param, momentum_buffer}                out {}  (in place)
//                            on the first step buf = weight_decay * param, later nothing (the
//                            apply decayed it); the gradient is then accumulated into buf by its
//                            producer (optimizer/momentum_fusion.h)
//   kSgdApplyMomentum        in {param, momentum_buffer}                out {}  (in place)
//                            param -= lr * buf, then buf = momentum * buf + weight_decay * param
//   kPackSparse              in {x}                          out {packed u64[packed_bytes(n, cap)/8]}
//                            cap = sparse.capacity; overflow sets a flag in the packed header
//   kUnpackSparse            in {packed}                                out {x}
//   kPackMask                in {y}              out {bits u64[ceil(n/64)]}: sparse.lo < y < sparse.hi
//   kReluBackwardMask        in {dy, bits}                              out {dx} (ReLU and ReLU6)
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "runtime/tensor.h"

namespace edgetrain {

enum class OpKind : uint8_t {
  kConv2d,
  kConv2dBackwardData,
  kConv2dBackwardWeight,
  kBatchNorm,
  kBatchNormBackward,
  kRelu,
  kReluBackward,
  kRelu6,
  kRelu6Backward,
  kAdd,
  kGradCopy,
  kFlatten,
  kMaxPool,
  kMaxPoolBackward,
  kAvgPool,
  kAvgPoolBackward,
  kGlobalAvgPool,
  kGlobalAvgPoolBackward,
  kLinear,
  kLinearBackwardData,
  kLinearBackwardWeight,
  kSoftmaxCrossEntropy,
  kSoftmaxCrossEntropyBackward,
  kSgdUpdate,
  kAdamWUpdate,
  kPackSparse,
  kUnpackSparse,
  kPackMask,
  kReluBackwardMask,
  kDropout,
  kDropoutBackward,
  kSgdMomentumDecay,
  kSgdApplyMomentum,
  kCount,
};
constexpr int kOpCount = static_cast<int>(OpKind::kCount);

struct ConvAttrs {
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int groups = 1;
};

struct PoolAttrs {
  int kernel = 2;
  int stride = 2;
  int pad = 0;  // max pool pads with -inf; avg pool counts padding (torch's count_include_pad)
};

// An activation fused into the op that produces its input (runtime/fusion.h): the op writes
// the activation's output and its own output never exists.
enum class FusedActivation : uint8_t { kNone, kRelu, kRelu6 };
// Its bounds: output = min(max(value, low), high) (-inf and inf without an activation).
inline float fused_activation_low(FusedActivation a) {
  return a == FusedActivation::kNone ? -std::numeric_limits<float>::infinity() : 0.0f;
}
inline float fused_activation_high(FusedActivation a) {
  return a == FusedActivation::kRelu6 ? 6.0f : std::numeric_limits<float>::infinity();
}

struct NormAttrs {
  float eps = 1e-5f;
  float momentum = 0.1f;            // torch convention: running = (1-m)*running + m*batch
  bool training = true;             // batch statistics (true) or running statistics (false)
  bool update_running_stats = true; // only with training; recompute passes turn it off
  // A training-mode norm applied again from the statistics its forward saved (inputs 3 and 4
  // are saved_mean and saved_invstd, the one output y): y equal to the forward's to the bit, no
  // reduction, no running statistics touched (memory/norm_recompute.h).
  bool apply_saved = false;
};

struct LossAttrs {
  float scale = 1.0f;  // 1/N for a mean over the batch
};

struct OptimAttrs {
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;  // SGD: L2 added to the gradient; AdamW: decoupled decay
  bool nesterov = false;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float lr_scale = 1.0f;      // per-parameter multiplier of the step's learning rate
};

// Sparse storage of saved activations (ops/bitmap_storage.h).
struct DropoutAttrs {
  float p = 0.0f;     // probability of zeroing an element
  uint32_t salt = 0;  // distinguishes the masks of different dropout nodes in one step
};

struct SparseAttrs {
  int64_t capacity = 0;  // kPackSparse: room for this many nonzeros (the planner's estimate)
  float lo = 0.0f;       // kPackMask: bit set when lo < y < hi; hi = +inf means no upper bound
  float hi = std::numeric_limits<float>::infinity();
};

// Everything a node may need; each op reads only its own part. Plain data, copied freely.
struct Attrs {
  ConvAttrs conv;
  PoolAttrs pool;
  NormAttrs norm;
  LossAttrs loss;
  OptimAttrs optim;
  SparseAttrs sparse;
  DropoutAttrs dropout;
  uint32_t accumulate_mask = 0;  // bit i: add into output i instead of overwriting it
  // kBatchNorm and kAdd: output 0 is act(result); kConv2d with conv_norm: act(norm(conv))
  // (runtime/fusion.h).
  FusedActivation activation = FusedActivation::kNone;
  // kConv2d: an eval-mode batch norm (running statistics, `norm`) follows in the conv's own
  // pass; inputs {x, w, b?, gamma, beta, running_mean, running_var} (ops/conv2d.h).
  bool conv_norm = false;
  bool accumulates(int output) const { return (accumulate_mask >> output) & 1u; }
};

// Scalars that change from step to step without changing the schedule.
struct StepScalars {
  float learning_rate = 0.0f;
  int64_t optimizer_step = 1;  // 1-based count of updates, for Adam's bias correction
  uint64_t seed = 0;           // per-step randomness (dropout masks), set by the trainer
};

// A parallel-for handed to kernels by the runtime (its thread pool), so that ops do not depend
// on the runtime. fn(ctx, begin, end) is called on disjoint chunks covering [0, n).
struct Parallel {
  using ChunkFn = void (*)(void* fn_ctx, int64_t begin, int64_t end);
  void (*run)(void* pool, int64_t n, int64_t min_chunk, ChunkFn fn, void* fn_ctx) = nullptr;
  void* pool = nullptr;
  int threads = 1;

  // Runs body(begin, end) over [0, n) in chunks of at least min_chunk items.
  template <typename Body>
  void for_each(int64_t n, int64_t min_chunk, Body&& body) const {
    if (run == nullptr || threads <= 1 || n <= min_chunk) {
      if (n > 0) body(int64_t{0}, n);
      return;
    }
    auto trampoline = [](void* c, int64_t b, int64_t e) { (*static_cast<Body*>(c))(b, e); };
    run(pool, n, min_chunk, trampoline, &body);
  }
};

// Smallest share of a parallel loop worth handing to another thread: about 16K floats of work
// per chunk (items of floats_per_item floats each).
inline int64_t min_chunk_for(int64_t floats_per_item) {
  return floats_per_item >= 16384 ? 1 : 16384 / (floats_per_item > 0 ? floats_per_item : 1);
}

struct KernelCall {
  const Attrs* attrs = nullptr;
  void* const* in = nullptr;
  const Shape* in_shape = nullptr;
  int n_in = 0;
  void* const* out = nullptr;
  const Shape* out_shape = nullptr;
  int n_out = 0;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  Parallel parallel;
  const StepScalars* step = nullptr;

  float* in_f(int i) const { return i < n_in ? static_cast<float*>(in[i]) : nullptr; }
  float* out_f(int i) const { return i < n_out ? static_cast<float*>(out[i]) : nullptr; }
  const int32_t* in_i32(int i) const { return static_cast<const int32_t*>(in[i]); }
};

using KernelFn = void (*)(const KernelCall&);
// Bytes of scratch memory a node needs while it runs (0 for most ops).
using WorkspaceFn = size_t (*)(const Attrs&, const Shape* in, int n_in, const Shape* out, int n_out);

struct OpInfo {
  const char* name;       // "conv2d", "conv2d_backward_data", ...
  KernelFn fast;          // the kernel the executor runs
  KernelFn reference;     // the naive kernel every fast path is tested against
  WorkspaceFn workspace;  // null: no workspace
  bool is_forward;        // true for ops that a model graph contains (they have gradient rules)
};

const OpInfo& op_info(OpKind kind);
inline const char* op_name(OpKind kind) { return op_info(kind).name; }

}  // namespace edgetrain
