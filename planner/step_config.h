// A training configuration the profiler measures: model, batch and the m-hyperparameters
// (optimizer, freezing, checkpointing, compression, micro-batches). It rebuilds the exact
// training schedule a Trainer would run (runtime/training_schedule.h), so stored step
// measurements can be predicted again by a refitted cost model.
#pragma once

#include <cstdint>
#include <string>

#include "models/model_zoo.h"
#include "runtime/graph.h"
#include "runtime/json.h"
#include "runtime/status.h"
#include "runtime/train_config.h"
#include "runtime/training_schedule.h"

namespace edgetrain {

struct StepConfig {
  ModelSpec model;
  int64_t batch = 8;
  OptimizerKind optimizer = OptimizerKind::kSgd;
  float momentum = 0.9f;       // SGD only; 0 = no momentum buffer
  FreezeMode freeze = FreezeMode::kNone;
  int frozen_prefix_layers = 0;
  int checkpoint_segments = 0; // 0: no checkpointing; else byte-balanced segments (1 = sqrt rule)
  bool sparse_activations = false;
  float sparse_capacity = 0.75f;
  bool relu_masks = false;
  bool recompute_norms = true;  // CompressionConfig::recompute_norm_outputs
  int micro_batches = 1;
  NormStatistics norm_statistics = NormStatistics::kBatch;

  TrainConfig train_config() const;
  // "mobilenet_v2 w0.5 64px b8 sgd(m)", then the knobs that differ from the defaults.
  std::string describe() const;
  bool operator==(const StepConfig& o) const;
};

// The finalized training schedule's graph (what Trainer::create would run).
Result<Graph> build_step_graph(const StepConfig& c);
// The model factory a Trainer takes for this configuration.
GraphFactory step_graph_factory(const StepConfig& c);

// A fingerprint of a schedule's node order (each node's layer and op, in order): stored with a
// step's per-node times, so that a refit uses them only while the schedule built from the same
// configuration still runs the same nodes in the same order (runtime/schedule.h may move nodes).
uint64_t schedule_hash(const Graph& g);

JsonValue step_config_to_json(const StepConfig& c);
Result<StepConfig> step_config_from_json(const JsonValue& j);

}  // namespace edgetrain
