#include "models/resnet.h"

#include <array>
#include <string>

namespace edgetrain {
namespace {

struct ResNetLayout {
  bool bottleneck;              // Bottleneck (expansion 4) or BasicBlock (expansion 1)
  std::array<int, 4> blocks;    // blocks in layer1..layer4
};

ResNetLayout layout(ResNetDepth depth) {
  switch (depth) {
    case ResNetDepth::k18: return {false, {2, 2, 2, 2}};
    case ResNetDepth::k34: return {false, {3, 4, 6, 3}};
    case ResNetDepth::k50: return {true, {3, 4, 6, 3}};
  }
  return {false, {2, 2, 2, 2}};
}

// The shortcut: the input itself, or a strided 1x1 conv + BN when the shape changes. Built after
// the block's main path, as torchvision's forward (and so its state_dict) orders them.
ValueId shortcut(GraphBuilder& b, ValueId x, const std::string& name, int64_t in_channels,
                 int64_t out_channels, int stride) {
  if (stride == 1 && in_channels == out_channels) return x;
  ValueId s = b.conv2d(x, name + ".downsample.0", out_channels, 1, stride, 0);
  return b.batch_norm(s, name + ".downsample.1");
}

// torchvision's BasicBlock: 3x3 (stride) -> BN -> ReLU -> 3x3 -> BN, + shortcut, ReLU.
ValueId basic_block(GraphBuilder& b, ValueId x, const std::string& name, int64_t in_channels,
                    int64_t planes, int stride) {
  ValueId y = b.relu(b.batch_norm(b.conv2d(x, name + ".conv1", planes, 3, stride, 1), name + ".bn1"));
  y = b.batch_norm(b.conv2d(y, name + ".conv2", planes, 3, 1, 1), name + ".bn2");
  return b.relu(b.add(y, shortcut(b, x, name, in_channels, planes, stride)));
}

// torchvision's Bottleneck (v1.5): 1x1 -> BN -> ReLU -> 3x3 (stride) -> BN -> ReLU ->
// 1x1 (x4 channels) -> BN, + shortcut, ReLU.
ValueId bottleneck_block(GraphBuilder& b, ValueId x, const std::string& name,
                         int64_t in_channels, int64_t planes, int stride) {
  const int64_t out_channels = planes * 4;
  ValueId y = b.relu(b.batch_norm(b.conv2d(x, name + ".conv1", planes, 1, 1, 0), name + ".bn1"));
  y = b.relu(b.batch_norm(b.conv2d(y, name + ".conv2", planes, 3, stride, 1), name + ".bn2"));
  y = b.batch_norm(b.conv2d(y, name + ".conv3", out_channels, 1, 1, 0), name + ".bn3");
  return b.relu(b.add(y, shortcut(b, x, name, in_channels, out_channels, stride)));
}

}  // namespace

ValueId add_resnet(GraphBuilder& b, ResNetDepth depth, int64_t num_classes) {
  const ResNetLayout net = layout(depth);
  const int64_t expansion = net.bottleneck ? 4 : 1;

  ValueId x = b.conv2d(b.input(), "conv1", 64, 7, 2, 3);
  x = b.relu(b.batch_norm(x, "bn1"));
  x = b.max_pool(x, 3, 2, 1);

  int64_t channels = 64;
  for (int layer = 0; layer < 4; ++layer) {
    const int64_t planes = int64_t{64} << layer;
    for (int i = 0; i < net.blocks[static_cast<size_t>(layer)]; ++i) {
      const std::string name = "layer" + std::to_string(layer + 1) + "." + std::to_string(i);
      const int stride = (layer > 0 && i == 0) ? 2 : 1;
      x = net.bottleneck ? bottleneck_block(b, x, name, channels, planes, stride)
                         : basic_block(b, x, name, channels, planes, stride);
      channels = planes * expansion;
    }
  }

  x = b.global_avg_pool(x);
  return b.linear(x, "fc", num_classes);  // torch's default Linear init
}

}  // namespace edgetrain
