#include "tests/support/model_factories.h"

namespace edgetrain::testing {

GraphFactory model_factory(Architecture arch, int input_size, float width_mult) {
  ModelSpec s;
  s.arch = arch;
  s.input_size = input_size;
  s.width_mult = width_mult;
  return [s](int64_t batch, bool training) { return build_model(s, batch, training); };
}

}  // namespace edgetrain::testing
