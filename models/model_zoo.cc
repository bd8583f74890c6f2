#include "models/model_zoo.h"

#include <cmath>
#include <cstdio>

#include "models/mobilenet_v2.h"
#include "models/resnet.h"
#include "models/small_cnn.h"
#include "runtime/graph_builder.h"

namespace edgetrain {
namespace {

struct NamedArchitecture {
  const char* name;
  Architecture arch;
};
constexpr NamedArchitecture kArchitectures[] = {
    {"small_cnn", Architecture::kSmallCnn},   {"mobilenet_v2", Architecture::kMobileNetV2},
    {"resnet18", Architecture::kResNet18},    {"resnet34", Architecture::kResNet34},
    {"resnet50", Architecture::kResNet50},
};

// Generous bounds that keep every shape product far from overflow; real uses are far inside.
constexpr int kMaxInputSize = 4096;
constexpr int kMaxChannels = 4096;
constexpr int kMaxClasses = 1 << 20;
constexpr float kMaxWidth = 4.0f;

std::string format_width(float w) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(w));
  return buf;
}

}  // namespace

std::string valid_model_names() {
  std::string s;
  for (const NamedArchitecture& a : kArchitectures) {
    if (!s.empty()) s += ", ";
    s += a.name;
  }
  return s;
}

std::string model_name(const ModelSpec& spec) {
  for (const NamedArchitecture& a : kArchitectures)
    if (a.arch == spec.arch) return a.name;
  return "unknown";
}

std::string describe_model(const ModelSpec& spec) {
  std::string s = model_name(spec) + " (";
  if (spec.arch == Architecture::kMobileNetV2) s += "width " + format_width(spec.width_mult) + ", ";
  const std::string size = std::to_string(spec.input_size);
  return s + std::to_string(spec.num_classes) + " classes, " + size + "x" + size + "x" +
         std::to_string(spec.in_channels) + " input)";
}

Status validate_model_spec(const ModelSpec& spec) {
  const std::string name = model_name(spec);
  if (name == "unknown") return invalid_argument("model spec: unknown architecture value");
  if (spec.arch == Architecture::kMobileNetV2 &&
      (!std::isfinite(spec.width_mult) || spec.width_mult <= 0.0f || spec.width_mult > kMaxWidth))
    return invalid_argument("model " + name + ": width_mult " + format_width(spec.width_mult) +
                            " is out of range (0, " + format_width(kMaxWidth) + "]");
  if (spec.num_classes < 1 || spec.num_classes > kMaxClasses)
    return invalid_argument("model " + name + ": num_classes " + std::to_string(spec.num_classes) +
                            " is out of range [1, " + std::to_string(kMaxClasses) + "]");
  if (spec.input_size < 1 || spec.input_size > kMaxInputSize)
    return invalid_argument("model " + name + ": input_size " + std::to_string(spec.input_size) +
                            " is out of range [1, " + std::to_string(kMaxInputSize) + "]");
  if (spec.in_channels < 1 || spec.in_channels > kMaxChannels)
    return invalid_argument("model " + name + ": in_channels " + std::to_string(spec.in_channels) +
                            " is out of range [1, " + std::to_string(kMaxChannels) + "]");
  return Status::ok();
}

Result<ModelSpec> parse_model_spec(const std::string& name, float width, int classes,
                                   int input_size) {
  ModelSpec spec;
  bool found = false;
  for (const NamedArchitecture& a : kArchitectures) {
    if (name == a.name) {
      spec.arch = a.arch;
      found = true;
    }
  }
  if (!found)
    return invalid_argument("unknown model '" + name + "': valid names are " + valid_model_names());
  // A hand-made spec's width is ignored by the other architectures, but a user who asks for
  // "resnet18" at width 0.5 expects a thinner network: say that there is none.
  if (spec.arch != Architecture::kMobileNetV2 && width != 1.0f)
    return invalid_argument("model " + name + ": width " + format_width(width) +
                            " applies only to mobilenet_v2; " + name + " has a fixed width (1.0)");
  spec.width_mult = width;
  spec.num_classes = classes;
  spec.input_size = input_size;
  ET_RETURN_IF_ERROR(validate_model_spec(spec));
  return spec;
}

Result<Graph> build_model(const ModelSpec& spec, int64_t batch, bool training) {
  ET_RETURN_IF_ERROR(validate_model_spec(spec));
  if (batch < 1)
    return invalid_argument("model " + model_name(spec) + ": batch " + std::to_string(batch) +
                            " must be at least 1");

  GraphBuilder b(batch, spec.input_size, spec.input_size, spec.in_channels, training);
  ValueId logits = kNoValue;
  switch (spec.arch) {
    case Architecture::kSmallCnn: logits = add_small_cnn(b, spec.num_classes); break;
    case Architecture::kMobileNetV2:
      logits = add_mobilenet_v2(b, spec.num_classes, spec.width_mult, spec.dropout);
      break;
    case Architecture::kResNet18: logits = add_resnet(b, ResNetDepth::k18, spec.num_classes); break;
    case Architecture::kResNet34: logits = add_resnet(b, ResNetDepth::k34, spec.num_classes); break;
    case Architecture::kResNet50: logits = add_resnet(b, ResNetDepth::k50, spec.num_classes); break;
  }
  b.softmax_cross_entropy(logits);

  Result<Graph> graph = b.finish();
  if (!graph.is_ok()) {
    // The builder names the layer; say which model and input it was building.
    return Status(graph.status().code(),
                  "building " + describe_model(spec) + ": " + graph.status().message());
  }
  return graph;
}

}  // namespace edgetrain
