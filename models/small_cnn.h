// The small CNN that fast tests train: a few thousand parameters, yet every forward op the big
// models use (plain, strided, depthwise and 1x1-with-bias convolutions, batch norm, ReLU, ReLU6,
// a residual add, max/avg/global pooling, linear). tests/fixtures/make_torch_fixture.py holds its
// PyTorch twin (NCHW, same layer order and parameter names).
#pragma once

#include <cstdint>

#include "runtime/graph_builder.h"

namespace edgetrain {

// Adds the small CNN on b's input (NHWC, 16x16x3 by default) and returns the logits
// [N, num_classes]:
//   conv1 3x3 s1 p1 C->8 -> bn1 -> relu -> max_pool 2/2
//   conv2 3x3 s2 p1 8->16 -> bn2 -> relu (= r2)
//   conv3 3x3 s1 p1 depthwise 16 -> bn3 -> relu6 -> + r2
//   conv4 1x1 16->24 with bias -> relu -> avg_pool 2/2 -> global_avg_pool -> fc 24->num_classes
// Inputs smaller than 6x6 fail in the builder (avg_pool needs a 2x2 map).
ValueId add_small_cnn(GraphBuilder& b, int64_t num_classes);

}  // namespace edgetrain
