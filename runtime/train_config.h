// TrainConfig: the memory-related hyperparameters (m-hyperparameters) and the optimizer that
// turn a model's forward graph into a training schedule. Every knob is a transformation of the
// graph or the schedule, never a special case in a kernel.
#pragma once

#include <string>
#include <vector>

#include "ops/op.h"

namespace edgetrain {

enum class OptimizerKind : uint8_t { kSgd, kAdamW };

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kSgd;
  OptimAttrs attrs;  // momentum, nesterov, weight decay, betas
};

// Which parameters train. Resolved against a graph by resolve_trainable() (runtime/freezing.h).
enum class FreezeMode : uint8_t {
  kNone,            // everything trains (except frozen_prefix_layers / frozen_patterns)
  kBiasOnly,        // only biases (conv/linear bias, batch-norm beta) and the classifier
  kNormOnly,        // only batch-norm weight and bias
  kClassifierOnly,  // only the last layer
  kNormAndBias,     // batch-norm weights and biases, conv/linear biases and the classifier
};

struct FreezeConfig {
  FreezeMode mode = FreezeMode::kNone;
  int frozen_prefix_layers = 0;             // layers [0, k) are frozen
  // The k layers before the last one (the classifier) are frozen: the early layers and the
  // classifier train. Gradients still flow back through the frozen layers (backward-data only),
  // but they keep no weight gradients or optimizer state, and frozen convolutions save no input.
  int frozen_suffix_layers = 0;
  std::vector<std::string> frozen_patterns; // parameter-name globs ("features.1*") that freeze
  bool frozen_norm_in_eval_mode = true;     // frozen batch norms use running statistics
};

// Gradient checkpointing: forward values inside a segment are freed after the forward and
// recomputed right before that segment's backward. Segments are delimited by cut points: the
// values where the model is a chain (one tensor crosses), numbered 0.. in forward order
// (memory/checkpointing.h lists them).
enum class CheckpointMode : uint8_t {
  kNone,
  kManual,        // boundaries = the cut points that start a new segment
  kSqrtBytes,     // about sqrt(n) segments of equal activation bytes (segments = 0: automatic)
  kBudget,        // the fewest recomputed bytes whose peak fits budget_bytes (dynamic programming)
};

struct CheckpointConfig {
  CheckpointMode mode = CheckpointMode::kNone;
  std::vector<int> boundaries;  // kManual
  int segments = 0;             // kSqrtBytes: 0 = round(sqrt(number of cut points))
  int64_t budget_bytes = 0;     // kBudget: peak of the training arena to stay under
};

// BitTrain-style storage of activations saved for backward.
struct CompressionConfig {
  // Saved post-ReLU/ReLU6 tensors are stored as a bitmap + packed nonzeros between their last
  // forward use and their first backward use.
  bool sparse_activations = false;
  // Capacity of a packed tensor's slot, as a fraction of its elements (expected density plus a
  // margin, from a probe batch). A batch with more nonzeros falls back (see Trainer).
  float capacity = 0.6f;
  // ReLU/ReLU6 backward reads a 1-bit mask instead of the float output.
  bool relu_masks = false;
  // Batch-norm outputs that backward reads are recomputed from the norm's input and saved
  // statistics right before their first backward use instead of kept (memory/norm_recompute.h).
  // On by default, as the momentum fusion: training is bit-identical, MobileNetV2's saved
  // activations shrink by ~45%, and steps measured as fast or faster (the recomputed copy is in
  // cache where the kept one came from memory).
  bool recompute_norm_outputs = true;
};

// Which statistics batch norms normalise with while training.
enum class NormStatistics : uint8_t {
  // Trained norms use the (micro-)batch's statistics and update the running ones (torch train
  // mode); frozen norms use running statistics (FreezeConfig::frozen_norm_in_eval_mode).
  kBatch,
  // Every norm normalises with its running statistics (torch eval mode) while its gamma and beta
  // still train. Nothing depends on which images share a micro-batch, so micro-batching is exact
  // at any micro-batch size (down to one image). Meant for running statistics re-estimated on the
  // new data first (runtime/norm_recalibration.h): statistics of the old domain would be wrong.
  kRunning,
};

struct TrainConfig {
  OptimizerConfig optimizer;
  FreezeConfig freeze;
  CheckpointConfig checkpoint;
  CompressionConfig compression;
  // The batch runs as this many micro-batches of batch/micro_batches images, gradients
  // accumulated, one optimizer update per batch. Batch-norm statistics are per micro-batch
  // (with NormStatistics::kBatch).
  int micro_batches = 1;
  NormStatistics norm_statistics = NormStatistics::kBatch;
  // Parameter gradients keep their memory for the whole step so they can be read after it
  // (tests against PyTorch); normally each dies right after its update.
  bool retain_parameter_gradients = false;
  // SGD with momentum: parameter gradients accumulate straight into the momentum buffers, so
  // they need no memory of their own (optimizer/momentum_fusion.h says when it applies).
  bool fuse_momentum = true;
};

}  // namespace edgetrain
