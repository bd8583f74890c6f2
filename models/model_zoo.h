// The models edgetrain can build, chosen by name ("mobilenet_v2", "resnet18", ...), and the one
// entry point that turns a choice into a forward graph ending in the training loss.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/graph.h"
#include "runtime/status.h"

namespace edgetrain {

enum class Architecture { kSmallCnn, kMobileNetV2, kResNet18, kResNet34, kResNet50 };

struct ModelSpec {
  Architecture arch = Architecture::kSmallCnn;
  float width_mult = 1.0f;  // MobileNetV2 only; ignored by the other architectures
  int num_classes = 10;
  int input_size = 32;      // square input, input_size x input_size pixels
  int in_channels = 3;
  // Dropout before MobileNetV2's classifier (torchvision: 0.2); training graphs only.
  float dropout = 0.2f;
};

// A spec from a model name: "small_cnn", "mobilenet_v2", "resnet18", "resnet34", "resnet50".
// Fails, listing the valid names, for any other name; fails for a width other than 1.0 except
// with mobilenet_v2, and for non-positive classes or input size.
Result<ModelSpec> parse_model_spec(const std::string& name, float width, int classes,
                                   int input_size);

// The checks for a spec built by hand (build_model runs them too): classes, input size and
// channels in range, and for MobileNetV2 a width in (0, 4]. Other architectures ignore the width.
Status validate_model_spec(const ModelSpec& spec);

// The forward graph of the model for a batch of `batch` images of spec's size (NHWC), with
// softmax cross-entropy (mean over the batch) on the logits. training: batch norm uses batch
// statistics (and updates the running ones); otherwise the running statistics.
// An input too small for the architecture fails with the layer that cannot fit.
Result<Graph> build_model(const ModelSpec& spec, int64_t batch, bool training);

// The name parse_model_spec accepts for spec.arch: "mobilenet_v2", ...
std::string model_name(const ModelSpec& spec);

// For reports and logs: "mobilenet_v2 (width 0.35, 10 classes, 32x32x3 input)".
std::string describe_model(const ModelSpec& spec);

// "small_cnn, mobilenet_v2, resnet18, resnet34, resnet50".
std::string valid_model_names();

}  // namespace edgetrain
