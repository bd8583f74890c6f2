// Graph factories for models of the zoo, as tests build many schedules of the same model.
#pragma once

#include <cstdint>

#include "models/model_zoo.h"
#include "runtime/training_schedule.h"

namespace edgetrain::testing {

// build_model(spec with these fields, batch, training); the other fields keep ModelSpec's
// defaults (10 classes, 3 channels, MobileNetV2's dropout 0.2 in training graphs).
GraphFactory model_factory(Architecture arch, int input_size, float width_mult = 1.0f);

}  // namespace edgetrain::testing
