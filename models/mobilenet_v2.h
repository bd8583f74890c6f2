// MobileNetV2 exactly as torchvision.models.mobilenet_v2(num_classes, width_mult) builds it
// (torchvision 0.14), with the same parameter names, so torchvision state_dicts load by name:
//
//   features.0        stem: conv 3x3 s2 ("features.0.0") + BN ("features.0.1") + ReLU6
//   features.1..17    inverted residual blocks, "features.N.conv.*":
//                       expand ratio 1: conv.0.0/conv.0.1 (depthwise 3x3 + BN + ReLU6),
//                                       conv.1 (1x1 projection), conv.2 (BN)
//                       otherwise:      conv.0.0/conv.0.1 (1x1 expand + BN + ReLU6),
//                                       conv.1.0/conv.1.1 (depthwise 3x3 + BN + ReLU6),
//                                       conv.2 (1x1 projection), conv.3 (BN)
//                     plus the input when stride is 1 and input and output channels are equal
//   features.18       1x1 conv to last_channel + BN + ReLU6
//   classifier.1      global average pool, then Linear(last_channel, num_classes),
//                     weight N(0, 0.01), bias zero
//
// torchvision's classifier.0 is Dropout(0.2): a dropout node in training graphs (no parameters,
// so the state_dict is unchanged); ModelSpec::dropout = 0 removes it (the PyTorch parity test).
#pragma once

#include <cstdint>

#include "runtime/graph_builder.h"

namespace edgetrain {

// torchvision's _make_divisible(v, divisor): v rounded to the nearest multiple of divisor, at
// least divisor, and never more than 10% below v.
int64_t make_divisible(double v, int64_t divisor = 8);

// Adds MobileNetV2 on b's input and returns the logits [N, num_classes]. width_mult scales
// every layer's channels as torchvision does (0.35, 0.5, 0.75, 1.0, 1.4 are the usual values).
// dropout: torchvision's classifier.0 (0.2 by default; 0 = none).
ValueId add_mobilenet_v2(GraphBuilder& b, int64_t num_classes, float width_mult, float dropout = 0.2f);

}  // namespace edgetrain
