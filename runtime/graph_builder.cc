#include "runtime/graph_builder.h"

#include "ops/batch_norm.h"
#include "ops/conv2d.h"
#include "ops/linear.h"
#include "ops/pooling.h"

namespace edgetrain {

GraphBuilder::GraphBuilder(int64_t batch, int64_t height, int64_t width, int64_t channels,
                           bool training) {
  graph_.training = training;
  if (batch <= 0 || height <= 0 || width <= 0 || channels <= 0) {
    fail(invalid_argument("model input must have positive batch, height, width and channels, got " +
                          Shape{batch, height, width, channels}.to_string()));
  }
  Value in;
  in.name = "input";
  in.shape = Shape{batch, height, width, channels};
  in.role = ValueRole::kInput;
  graph_.input = graph_.add_value(in);
}

void GraphBuilder::fail(Status s) {
  if (status_.is_ok()) status_ = std::move(s);
}

bool GraphBuilder::check_value(ValueId v, const char* what) {
  if (!status_.is_ok()) return false;
  if (v < 0 || static_cast<size_t>(v) >= graph_.values.size()) {
    fail(invalid_argument(std::string(what) + ": input value id " + std::to_string(v) + " does not exist"));
    return false;
  }
  return true;
}

std::string GraphBuilder::next_name(const char* op) { return std::string(op) + "_" + std::to_string(unnamed_++); }

ValueId GraphBuilder::add_activation(const std::string& name, const Shape& shape) {
  Value v;
  v.name = name;
  v.shape = shape;
  v.role = ValueRole::kActivation;
  return graph_.add_value(v);
}

ValueId GraphBuilder::add_param(const std::string& layer, const std::string& suffix, const Shape& shape,
                                ParamKind kind, ParamInit init, bool conv_weight, int64_t fan_in,
                                int layer_index) {
  ParamSpec spec;
  spec.name = layer + "." + suffix;
  spec.shape = shape;
  spec.kind = kind;
  spec.init = init;
  spec.is_conv_weight = conv_weight;
  spec.fan_in = fan_in;
  spec.layer_index = layer_index;
  spec.layer = layer;
  if (graph_.find_param(spec.name) >= 0) {
    fail(invalid_argument("parameter name '" + spec.name + "' is used twice"));
    return kNoValue;
  }
  Value v;
  v.name = spec.name;
  v.shape = shape;
  v.role = param_kind_is_trainable(kind) ? ValueRole::kParam : ValueRole::kBuffer;
  v.param_index = static_cast<int>(graph_.params.size());
  ValueId id = graph_.add_value(v);
  spec.value = id;
  graph_.params.push_back(spec);
  return id;
}

NodeId GraphBuilder::add_node(OpKind op, const Attrs& attrs, std::vector<ValueId> inputs,
                              std::vector<ValueId> outputs, const std::string& layer, int layer_index) {
  Node n;
  n.op = op;
  n.attrs = attrs;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  n.phase = Phase::kForward;
  n.layer = layer;
  n.layer_index = layer_index;
  graph_.nodes.push_back(std::move(n));
  return static_cast<NodeId>(graph_.nodes.size() - 1);
}

ValueId GraphBuilder::conv2d(ValueId x, const std::string& name, int64_t out_channels, int kernel,
                             int stride, int pad, int groups, bool bias) {
  if (!check_value(x, name.c_str())) return kNoValue;
  const Shape xs = shape(x);  // a copy: adding values may move graph_.values
  if (xs.rank != 4 || groups <= 0 || out_channels <= 0 || xs.c() % groups != 0) {
    fail(invalid_argument("conv '" + name + "': input " + xs.to_string() + " with groups " +
                          std::to_string(groups) + " and " + std::to_string(out_channels) +
                          " output channels is not a valid convolution"));
    return kNoValue;
  }
  Attrs a;
  a.conv.kernel_h = a.conv.kernel_w = kernel;
  a.conv.stride_h = a.conv.stride_w = stride;
  a.conv.pad_h = a.conv.pad_w = pad;
  a.conv.groups = groups;
  Shape ws{out_channels, kernel, kernel, xs.c() / groups};
  Result<Shape> ys = conv2d_output_shape(xs, ws, a.conv);
  if (!ys.is_ok()) {
    fail(invalid_argument("conv '" + name + "': " + ys.status().message()));
    return kNoValue;
  }
  int layer = graph_.layer_count++;
  int64_t fan_in = ws[1] * ws[2] * ws[3];
  ValueId w = add_param(name, "weight", ws, ParamKind::kWeight, ParamInit::kKaimingNormalFanOut, true, fan_in, layer);
  ValueId b = bias ? add_param(name, "bias", Shape{out_channels}, ParamKind::kBias, ParamInit::kZeros, false, fan_in, layer)
                   : kNoValue;
  ValueId y = add_activation(name, *ys);
  add_node(OpKind::kConv2d, a, {x, w, b}, {y}, name, layer);
  return y;
}

ValueId GraphBuilder::batch_norm(ValueId x, const std::string& name, float eps, float momentum) {
  if (!check_value(x, name.c_str())) return kNoValue;
  const Shape xs = shape(x);  // a copy: adding values may move graph_.values
  if (xs.rank != 4) {
    fail(invalid_argument("batch norm '" + name + "': expects an NHWC input, got " + xs.to_string()));
    return kNoValue;
  }
  Shape cs{xs.c()};
  NormAttrs na;
  na.eps = eps;
  na.momentum = momentum;
  // One value per channel is checked where the norm's mode is final: a training schedule may
  // switch every norm to running statistics (NormStatistics::kRunning), which takes one image
  // at a 1x1 feature map; make_training_schedule rejects a norm left on batch statistics.
  na.training = false;
  if (Result<Shape> ys = batch_norm_output_shape(xs, cs, na); !ys.is_ok()) {
    fail(invalid_argument("batch norm '" + name + "': " + ys.status().message()));
    return kNoValue;
  }
  int layer = graph_.layer_count++;
  ValueId gamma = add_param(name, "weight", cs, ParamKind::kNormWeight, ParamInit::kOnes, false, 0, layer);
  ValueId beta = add_param(name, "bias", cs, ParamKind::kNormBias, ParamInit::kZeros, false, 0, layer);
  ValueId mean = add_param(name, "running_mean", cs, ParamKind::kRunningMean, ParamInit::kZeros, false, 0, layer);
  ValueId var = add_param(name, "running_var", cs, ParamKind::kRunningVar, ParamInit::kOnes, false, 0, layer);
  Attrs a;
  a.norm.eps = eps;
  a.norm.momentum = momentum;
  a.norm.training = graph_.training;
  a.norm.update_running_stats = graph_.training;
  ValueId y = add_activation(name, xs);
  std::vector<ValueId> outs{y};
  if (graph_.training) {
    outs.push_back(add_activation(name + ".saved_mean", cs));
    outs.push_back(add_activation(name + ".saved_invstd", cs));
  }
  add_node(OpKind::kBatchNorm, a, {x, gamma, beta, mean, var}, outs, name, layer);
  return y;
}

ValueId GraphBuilder::relu(ValueId x) {
  if (!check_value(x, "relu")) return kNoValue;
  std::string name = graph_.value(x).name + ".relu";
  ValueId y = add_activation(name, shape(x));
  add_node(OpKind::kRelu, Attrs{}, {x}, {y}, name, -1);
  return y;
}

ValueId GraphBuilder::relu6(ValueId x) {
  if (!check_value(x, "relu6")) return kNoValue;
  std::string name = graph_.value(x).name + ".relu6";
  ValueId y = add_activation(name, shape(x));
  add_node(OpKind::kRelu6, Attrs{}, {x}, {y}, name, -1);
  return y;
}

ValueId GraphBuilder::add(ValueId a, ValueId b) {
  if (!check_value(a, "add") || !check_value(b, "add")) return kNoValue;
  if (shape(a) != shape(b)) {
    fail(invalid_argument("add: shapes differ: " + shape(a).to_string() + " vs " + shape(b).to_string() +
                          " ('" + graph_.value(a).name + "' + '" + graph_.value(b).name + "')"));
    return kNoValue;
  }
  std::string name = graph_.value(a).name + ".add";
  ValueId y = add_activation(name, shape(a));
  add_node(OpKind::kAdd, Attrs{}, {a, b}, {y}, name, -1);
  return y;
}


ValueId GraphBuilder::max_pool(ValueId x, int kernel, int stride, int pad) {
  if (!check_value(x, "max_pool")) return kNoValue;
  Attrs a;
  a.pool = PoolAttrs{kernel, stride, pad};
  Result<Shape> ys = pool_output_shape(shape(x), a.pool);
  if (!ys.is_ok()) {
    fail(invalid_argument("max pool after '" + graph_.value(x).name + "': " + ys.status().message()));
    return kNoValue;
  }
  std::string name = graph_.value(x).name + ".maxpool";
  ValueId y = add_activation(name, *ys);
  if (!graph_.training) {
    add_node(OpKind::kMaxPool, a, {x}, {y}, name, -1);
    return y;
  }
  // Training: the window position of each output's maximum, for the backward (4 bytes per output
  // instead of keeping the input alive, which is k^2 / s^2 larger: ResNet's stem pool keeps
  // 512 KiB of positions rather than its 2 MiB input at 32x32, batch 32).
  Value argmax;
  argmax.name = name + ".argmax";
  argmax.shape = *ys;
  argmax.dtype = DType::kI32;
  argmax.role = ValueRole::kActivation;
  ValueId idx = graph_.add_value(argmax);
  add_node(OpKind::kMaxPool, a, {x}, {y, idx}, name, -1);
  return y;
}

ValueId GraphBuilder::avg_pool(ValueId x, int kernel, int stride, int pad) {
  if (!check_value(x, "avg_pool")) return kNoValue;
  Attrs a;
  a.pool = PoolAttrs{kernel, stride, pad};
  Result<Shape> ys = pool_output_shape(shape(x), a.pool);
  if (!ys.is_ok()) {
    fail(invalid_argument("avg pool after '" + graph_.value(x).name + "': " + ys.status().message()));
    return kNoValue;
  }
  std::string name = graph_.value(x).name + ".avgpool";
  ValueId y = add_activation(name, *ys);
  add_node(OpKind::kAvgPool, a, {x}, {y}, name, -1);
  return y;
}

ValueId GraphBuilder::global_avg_pool(ValueId x) {
  if (!check_value(x, "global_avg_pool")) return kNoValue;
  const Shape xs = shape(x);  // a copy: adding values may move graph_.values
  if (xs.rank != 4) {
    fail(invalid_argument("global average pool expects NHWC, got " + xs.to_string()));
    return kNoValue;
  }
  std::string name = graph_.value(x).name + ".gap";
  ValueId y = add_activation(name, Shape{xs.n(), xs.c()});
  add_node(OpKind::kGlobalAvgPool, Attrs{}, {x}, {y}, name, -1);
  return y;
}

ValueId GraphBuilder::flatten(ValueId x) {
  if (!check_value(x, "flatten")) return kNoValue;
  const Shape xs = shape(x);  // a copy: adding values may move graph_.values
  std::string name = graph_.value(x).name + ".flatten";
  ValueId y = add_activation(name, Shape{xs[0], xs.numel() / xs[0]});
  add_node(OpKind::kFlatten, Attrs{}, {x}, {y}, name, -1);
  return y;
}

ValueId GraphBuilder::dropout(ValueId x, float p) {
  if (!check_value(x, "dropout")) return kNoValue;
  if (!(p >= 0.0f && p < 1.0f)) {
    fail(invalid_argument("dropout probability must be in [0, 1), got " + std::to_string(p)));
    return kNoValue;
  }
  if (!graph_.training || p == 0.0f) return x;
  const Shape xs = shape(x);
  std::string name = graph_.value(x).name + ".dropout";
  ValueId y = add_activation(name, xs);
  Value m;
  m.name = name + ".mask";
  m.shape = Shape{(xs.numel() + 63) / 64};
  m.dtype = DType::kU64;
  m.role = ValueRole::kActivation;
  ValueId mask = graph_.add_value(m);
  Attrs a;
  a.dropout.p = p;
  a.dropout.salt = static_cast<uint32_t>(graph_.nodes.size());
  add_node(OpKind::kDropout, a, {x}, {y, mask}, name, -1);
  return y;
}

ValueId GraphBuilder::linear(ValueId x, const std::string& name, int64_t out_features, bool bias,
                             ParamInit weight_init) {
  if (!check_value(x, name.c_str())) return kNoValue;
  const Shape xs = shape(x);  // a copy: adding values may move graph_.values
  if (xs.rank != 2 || out_features <= 0) {
    fail(invalid_argument("linear '" + name + "': expects [N, features] input and positive outputs, got " +
                          xs.to_string()));
    return kNoValue;
  }
  Shape ws{out_features, xs[1]};
  Result<Shape> ys = linear_output_shape(xs, ws);
  if (!ys.is_ok()) {
    fail(invalid_argument("linear '" + name + "': " + ys.status().message()));
    return kNoValue;
  }
  int layer = graph_.layer_count++;
  ValueId w = add_param(name, "weight", ws, ParamKind::kWeight, weight_init, false, xs[1], layer);
  ParamInit bias_init = weight_init == ParamInit::kUniformFanIn ? ParamInit::kUniformFanIn : ParamInit::kZeros;
  ValueId b = bias ? add_param(name, "bias", Shape{out_features}, ParamKind::kBias, bias_init, false, xs[1], layer)
                   : kNoValue;
  ValueId y = add_activation(name, *ys);
  add_node(OpKind::kLinear, Attrs{}, {x, w, b}, {y}, name, layer);
  return y;
}

ValueId GraphBuilder::softmax_cross_entropy(ValueId logits) {
  if (!check_value(logits, "softmax_cross_entropy")) return kNoValue;
  const Shape ls = shape(logits);
  if (ls.rank != 2) {
    fail(invalid_argument("the loss expects logits [N, classes], got " + ls.to_string()));
    return kNoValue;
  }
  Value lab;
  lab.name = "labels";
  lab.shape = Shape{ls[0]};
  lab.dtype = DType::kI32;
  lab.role = ValueRole::kLabel;
  graph_.labels = graph_.add_value(lab);
  Value loss;
  loss.name = "loss";
  loss.shape = Shape{1};
  loss.role = ValueRole::kOutput;
  graph_.loss = graph_.add_value(loss);
  ValueId probs = add_activation("probs", ls);
  graph_.logits = logits;
  // The logits are read after the step (accuracy), so they keep their memory like the loss.
  graph_.value(logits).role = ValueRole::kOutput;
  Attrs a;
  a.loss.scale = 1.0f / static_cast<float>(ls[0]);
  add_node(OpKind::kSoftmaxCrossEntropy, a, {logits, graph_.labels}, {graph_.loss, probs}, "loss", -1);
  return graph_.loss;
}

Result<Graph> GraphBuilder::finish() {
  if (!status_.is_ok()) return status_;
  if (graph_.loss == kNoValue) return invalid_argument("the model has no loss: call softmax_cross_entropy on its logits");
  return std::move(graph_);
}

}  // namespace edgetrain
