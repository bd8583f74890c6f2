#include "models/small_cnn.h"

namespace edgetrain {

ValueId add_small_cnn(GraphBuilder& b, int64_t num_classes) {
  ValueId x = b.input();
  x = b.conv2d(x, "conv1", 8, /*kernel=*/3, /*stride=*/1, /*pad=*/1);
  x = b.relu(b.batch_norm(x, "bn1"));
  x = b.max_pool(x, /*kernel=*/2, /*stride=*/2, /*pad=*/0);

  x = b.conv2d(x, "conv2", 16, 3, 2, 1);
  const ValueId r2 = b.relu(b.batch_norm(x, "bn2"));

  x = b.conv2d(r2, "conv3", 16, 3, 1, 1, /*groups=*/16);
  x = b.relu6(b.batch_norm(x, "bn3"));
  x = b.add(x, r2);

  x = b.relu(b.conv2d(x, "conv4", 24, 1, 1, 0, /*groups=*/1, /*bias=*/true));
  x = b.avg_pool(x, 2, 2, 0);
  x = b.global_avg_pool(x);
  return b.linear(x, "fc", num_classes);
}

}  // namespace edgetrain
