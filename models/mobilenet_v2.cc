#include "models/mobilenet_v2.h"

#include <charconv>
#include <cstdlib>
#include <string>

namespace edgetrain {
namespace {

// torchvision's inverted_residual_setting: expand ratio t, output channels c (before the width
// multiplier), repeats n, stride s of the first block of the stage.
struct Stage {
  int expand;
  int channels;
  int repeats;
  int stride;
};
constexpr Stage kStages[] = {
    {1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
    {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1},
};
constexpr int64_t kStemChannels = 32;
constexpr int64_t kLastChannels = 1280;

// The width as the double Python would hold: the float 0.35f is 0.3499999940..., while
// torchvision computes with the double 0.35. Going through the float's shortest decimal form
// gives the same double, so channel rounding never differs at a rounding boundary.
double width_as_python_double(float width) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf) - 1, width);
  if (ec != std::errc()) return static_cast<double>(width);
  *end = '\0';
  return std::strtod(buf, nullptr);
}

// torchvision's Conv2dNormActivation(..., activation_layer=ReLU6): "<name>.0" conv (no bias,
// padding (k-1)/2), "<name>.1" batch norm, ReLU6.
ValueId conv_bn_relu6(GraphBuilder& b, ValueId x, const std::string& name, int64_t out_channels,
                      int kernel, int stride, int groups) {
  x = b.conv2d(x, name + ".0", out_channels, kernel, stride, (kernel - 1) / 2, groups);
  return b.relu6(b.batch_norm(x, name + ".1"));
}

// torchvision's InvertedResidual. Submodules of "<name>.conv" are numbered in order, so the
// depthwise conv is conv.0 when there is no expansion and conv.1 otherwise.
ValueId inverted_residual(GraphBuilder& b, ValueId x, const std::string& name, int64_t in_channels,
                          int64_t out_channels, int stride, int expand) {
  const int64_t hidden = in_channels * expand;
  const std::string conv = name + ".conv.";
  int index = 0;
  ValueId y = x;
  if (expand != 1) y = conv_bn_relu6(b, y, conv + std::to_string(index++), hidden, 1, 1, 1);
  y = conv_bn_relu6(b, y, conv + std::to_string(index++), hidden, 3, stride, /*groups=*/hidden);
  y = b.conv2d(y, conv + std::to_string(index++), out_channels, 1, 1, 0);
  y = b.batch_norm(y, conv + std::to_string(index++));
  if (stride == 1 && in_channels == out_channels) y = b.add(y, x);
  return y;
}

}  // namespace

int64_t make_divisible(double v, int64_t divisor) {
  // Python: max(divisor, int(v + divisor / 2) // divisor * divisor), +divisor if < 0.9 v.
  int64_t rounded = static_cast<int64_t>(v + static_cast<double>(divisor) / 2) / divisor * divisor;
  if (rounded < divisor) rounded = divisor;
  if (static_cast<double>(rounded) < 0.9 * v) rounded += divisor;
  return rounded;
}

ValueId add_mobilenet_v2(GraphBuilder& b, int64_t num_classes, float width_mult, float dropout) {
  const double width = width_as_python_double(width_mult);
  int64_t channels = make_divisible(kStemChannels * width);
  const int64_t last_channels = make_divisible(kLastChannels * (width > 1.0 ? width : 1.0));

  ValueId x = conv_bn_relu6(b, b.input(), "features.0", channels, 3, 2, 1);
  int feature = 1;
  for (const Stage& stage : kStages) {
    const int64_t out_channels = make_divisible(stage.channels * width);
    for (int i = 0; i < stage.repeats; ++i) {
      x = inverted_residual(b, x, "features." + std::to_string(feature++), channels, out_channels,
                            i == 0 ? stage.stride : 1, stage.expand);
      channels = out_channels;
    }
  }
  x = conv_bn_relu6(b, x, "features." + std::to_string(feature), last_channels, 1, 1, 1);

  x = b.global_avg_pool(x);
  x = b.dropout(x, dropout);  // classifier.0: no parameters, training graphs only
  return b.linear(x, "classifier.1", num_classes, /*bias=*/true, ParamInit::kNormal001);
}

}  // namespace edgetrain
