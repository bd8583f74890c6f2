// ResNet-18/34 (BasicBlock) and ResNet-50 (Bottleneck) exactly as torchvision.models.resnet*
// builds them (torchvision 0.14, "v1.5": the bottleneck's stride sits on its 3x3 conv), with the
// same parameter names, so torchvision state_dicts load by name:
//
//   conv1 7x7 s2 p3 -> bn1 -> relu -> max_pool 3 s2 p1
//   layer1..layer4    blocks "layerL.B": conv1/bn1, conv2/bn2 (, conv3/bn3 for Bottleneck);
//                     "layerL.B.downsample.0" (1x1 conv, the block's stride) and
//                     "layerL.B.downsample.1" (BN) on the shortcut when the stride is not 1
//                     or the channel count changes
//   fc                global average pool, then Linear(512 * expansion, num_classes) with
//                     torch's default init
//
// The stem is torchvision's even for small inputs (no CIFAR-style 3x3 stem), so parameter counts
// and names match torchvision's exactly; a 32x32 input reaches layer4 at 1x1.
#pragma once

#include <cstdint>

#include "runtime/graph_builder.h"

namespace edgetrain {

enum class ResNetDepth { k18, k34, k50 };

// Adds the ResNet on b's input and returns the logits [N, num_classes].
ValueId add_resnet(GraphBuilder& b, ResNetDepth depth, int64_t num_classes);

}  // namespace edgetrain
