// The graph IR: values (tensors with static shapes and a role) and nodes (kernel calls) in
// execution order. A model's forward graph and the training graph made from it by autodiff are
// both Graphs; the schedule is the node order of the training graph.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ops/op.h"
#include "runtime/tensor.h"

namespace edgetrain {

using ValueId = int32_t;
using NodeId = int32_t;
constexpr ValueId kNoValue = -1;

// What a value is; decides where it lives and how long.
enum class ValueRole : uint8_t {
  kInput,           // the batch of images, written by the caller before each step
  kLabel,           // the batch of labels (int32)
  kParam,           // a model parameter (lives in the ParameterStore)
  kBuffer,          // a model buffer: batch-norm running statistics (ParameterStore)
  kOptimizerState,  // momentum / Adam moments (owned by the optimizer state block)
  kActivation,      // a forward intermediate (arena, transient)
  kGradient,        // a gradient (arena, transient)
  kWorkspace,       // scratch memory of one node (arena, transient)
  kOutput,          // the loss and anything else read after the step (arena, persistent)
};
const char* value_role_name(ValueRole role);
// Persistent values keep their memory across steps; the others get it only while live.
bool value_role_is_persistent(ValueRole role);

struct Value {
  std::string name;
  Shape shape;
  DType dtype = DType::kF32;
  ValueRole role = ValueRole::kActivation;
  int param_index = -1;   // kParam/kBuffer: index into Graph::params
  ValueId grad_of = kNoValue;  // kGradient: the value this is the gradient of
  bool keep = false;           // keep memory across the whole step even if transient (debugging,
                               // gradient accumulation over micro-batches)
  ValueId alias_of = kNoValue; // a view: this value's bytes are alias_offset bytes into alias_of
  size_t alias_offset = 0;     // (micro-batch slices of the input batch)
  size_t bytes() const { return static_cast<size_t>(shape.numel()) * dtype_size(dtype); }
};

// Which part of the training step a node belongs to (for reports and the memory chart).
// kPrepare: optimizer work that runs once per step before the forward (not once per
// micro-batch), such as decaying momentum buffers that gradients then accumulate into.
enum class Phase : uint8_t { kPrepare, kForward, kBackward, kRecompute, kUpdate };
const char* phase_name(Phase phase);

struct Node {
  OpKind op = OpKind::kCount;
  Attrs attrs;
  std::vector<ValueId> inputs;   // kNoValue marks an absent optional input
  std::vector<ValueId> outputs;  // kNoValue marks an output the schedule does not need
  Phase phase = Phase::kForward;
  ValueId workspace = kNoValue;  // scratch memory for this node only (set by the schedule)
  std::string layer;             // the layer this node implements, "features.3.conv.0.0"
  int layer_index = -1;          // depth of that layer in the forward graph (for freezing)
};

// How a parameter is initialised (torchvision's choices for the layer it belongs to).
enum class ParamInit : uint8_t {
  kZeros,
  kOnes,
  kKaimingNormalFanOut,  // conv weights: N(0, sqrt(2 / fan_out))
  kNormal001,            // MobileNetV2 classifier weight: N(0, 0.01)
  kUniformFanIn,         // torch default for linear weight/bias: U(-1/sqrt(fan_in), +)
};

enum class ParamKind : uint8_t { kWeight, kBias, kNormWeight, kNormBias, kRunningMean, kRunningVar };
bool param_kind_is_trainable(ParamKind kind);

struct ParamSpec {
  std::string name;     // torchvision name, "features.0.0.weight"
  Shape shape;          // in memory (conv weights OHWI)
  ParamKind kind = ParamKind::kWeight;
  ParamInit init = ParamInit::kZeros;
  bool is_conv_weight = false;  // stored OIHW on disk, OHWI in memory
  int64_t fan_in = 0;
  int layer_index = -1; // depth of the owning layer, 0 = first layer
  std::string layer;    // "features.0.0"
  ValueId value = kNoValue;
};

struct Graph {
  std::vector<Value> values;
  std::vector<Node> nodes;
  std::vector<ParamSpec> params;   // parameters and buffers, in creation order
  ValueId input = kNoValue;
  ValueId labels = kNoValue;
  ValueId logits = kNoValue;
  ValueId loss = kNoValue;
  // Micro-batching (memory/micro_batching.h): the nodes before the first update form a body the
  // executor runs micro_batches times, each time on the next slice of the batch; the nodes read
  // the slice through the views micro_input / micro_labels (offset advanced per repetition).
  int micro_batches = 1;
  ValueId micro_input = kNoValue;
  ValueId micro_labels = kNoValue;
  int layer_count = 0;             // number of distinct layers (layer_index is in [0, count))
  bool training = true;            // batch norm in batch-statistics mode

  ValueId add_value(Value v) {
    values.push_back(std::move(v));
    return static_cast<ValueId>(values.size() - 1);
  }
  const Value& value(ValueId id) const { return values[static_cast<size_t>(id)]; }
  Value& value(ValueId id) { return values[static_cast<size_t>(id)]; }
  // Index into params by name, or -1.
  int find_param(const std::string& name) const;
  // Number of trainable parameter elements (weights, biases, norm affine).
  int64_t trainable_param_count() const;
  // A human-readable listing of the nodes, one per line, for debugging and reports.
  std::string to_string() const;
};

// How many times the executor runs each node in one step: prepare nodes once, the body (up to
// the first update) once per micro-batch, the updates once (runtime/executor.cc).
std::vector<int> node_repeats(const Graph& g);

}  // namespace edgetrain
