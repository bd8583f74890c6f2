// A training configuration the profiler measures: model, batch, optimizer and freezing. It
// rebuilds the exact training graph (forward + autodiff + schedule) that a Trainer would run, so
// stored step measurements can be predicted again by a refitted cost model.
#pragma once

#include <cstdint>
#include <string>

#include "models/model_zoo.h"
#include "runtime/graph.h"
#include "runtime/json.h"
#include "runtime/status.h"
#include "runtime/train_config.h"

namespace edgetrain {

struct StepConfig {
  ModelSpec model;
  int64_t batch = 8;
  OptimizerKind optimizer = OptimizerKind::kSgd;
  float momentum = 0.9f;       // SGD only; 0 = no momentum buffer
  FreezeMode freeze = FreezeMode::kNone;
  int frozen_prefix_layers = 0;

  TrainConfig train_config() const;
  // "mobilenet_v2 w0.5 64px b8 sgd(m=0.9)", with the freezing when there is one.
  std::string describe() const;
  bool operator==(const StepConfig& o) const;
};

// The finalized training graph (what Trainer::create would run for this configuration).
Result<Graph> build_step_graph(const StepConfig& c);

JsonValue step_config_to_json(const StepConfig& c);
Result<StepConfig> step_config_from_json(const JsonValue& j);

}  // namespace edgetrain
