// Builds a forward Graph layer by layer with torchvision parameter names. Shapes are checked as
// layers are added; the first error is kept and returned by finish(), so model code reads as a
// plain sequence of layers without error plumbing:
//
//   GraphBuilder b(/*batch=*/32, /*height=*/32, /*width=*/32, /*channels=*/3, /*training=*/true);
//   ValueId x = b.input();
//   x = b.conv2d(x, "features.0.0", /*out_channels=*/32, /*kernel=*/3, /*stride=*/2, /*pad=*/1);
//   x = b.batch_norm(x, "features.0.1");
//   x = b.relu6(x);
//   ...
//   b.softmax_cross_entropy(b.linear(x, "classifier.1", 10));
//   Result<Graph> g = b.finish();
//
// Every layer that owns parameters gets the next layer index (its depth), which freezing uses.
#pragma once

#include <string>

#include "runtime/graph.h"
#include "runtime/status.h"

namespace edgetrain {

class GraphBuilder {
 public:
  GraphBuilder(int64_t batch, int64_t height, int64_t width, int64_t channels, bool training);

  ValueId input() const { return graph_.input; }

  // Convolution with OHWI weight "<name>.weight" (and "<name>.bias" when bias).
  ValueId conv2d(ValueId x, const std::string& name, int64_t out_channels, int kernel, int stride,
                 int pad, int groups = 1, bool bias = false);
  // Batch norm with "<name>.weight/.bias/.running_mean/.running_var".
  ValueId batch_norm(ValueId x, const std::string& name, float eps = 1e-5f, float momentum = 0.1f);
  ValueId relu(ValueId x);
  ValueId relu6(ValueId x);
  ValueId add(ValueId a, ValueId b);
  ValueId max_pool(ValueId x, int kernel, int stride, int pad);
  ValueId avg_pool(ValueId x, int kernel, int stride, int pad);
  ValueId global_avg_pool(ValueId x);  // [N,H,W,C] -> [N,C]
  ValueId flatten(ValueId x);          // [N,...] -> [N,K] (NHWC order)
  // Dropout with probability p in training graphs; evaluation graphs (and p == 0) get no node.
  ValueId dropout(ValueId x, float p);
  // y = x w^T + b, weight "<name>.weight" [out][in]; init: torch default or N(0, 0.01).
  ValueId linear(ValueId x, const std::string& name, int64_t out_features, bool bias = true,
                 ParamInit weight_init = ParamInit::kUniformFanIn);
  // Marks x as the logits and adds the loss (mean over the batch) with a label input.
  ValueId softmax_cross_entropy(ValueId logits);

  const Shape& shape(ValueId v) const { return graph_.value(v).shape; }
  bool ok() const { return status_.is_ok(); }
  Result<Graph> finish();

 private:
  ValueId add_activation(const std::string& name, const Shape& shape);
  ValueId add_param(const std::string& layer, const std::string& suffix, const Shape& shape,
                    ParamKind kind, ParamInit init, bool conv_weight, int64_t fan_in, int layer_index);
  NodeId add_node(OpKind op, const Attrs& attrs, std::vector<ValueId> inputs,
                  std::vector<ValueId> outputs, const std::string& layer, int layer_index);
  bool check_value(ValueId v, const char* what);
  void fail(Status s);
  std::string next_name(const char* op);

  Graph graph_;
  Status status_;
  int unnamed_ = 0;
};

}  // namespace edgetrain
