// Epoch loops over a Dataset for the CLI: batches are written straight into the trainer's input
// slots with data/transforms, progress goes to stderr, and the numbers come back as reports.
#pragma once

#include <functional>
#include <string>

#include "data/dataset.h"
#include "data/transforms.h"
#include "runtime/trainer.h"
#include "tools/cli_common.h"

namespace edgetrain::cli {

struct LoopOptions {
  int64_t epochs = 1;
  uint64_t seed = 1;           // shuffling and augmentation
  std::string label = "train"; // shown in progress lines
  // Learning rate at optimizer step `step` (0-based) of `total`.
  std::function<float(int64_t step, int64_t total)> learning_rate;
};

struct TrainReport {
  int64_t steps = 0;
  int64_t images = 0;
  double seconds = 0;
  double images_per_second = 0;
  double median_step_ms = 0;
  double last_epoch_loss = 0;   // mean training loss over the last epoch
  uint64_t peak_rss = 0;        // VmHWM during the loop
};

struct EvalReport {
  double accuracy = 0;
  double mean_loss = 0;
  int64_t images = 0;
  double seconds = 0;
};

Result<TrainReport> train_epochs(Trainer& trainer, const Dataset& data, const Preprocess& pre,
                                 const LoopOptions& options);
Result<EvalReport> evaluate(Trainer& trainer, const Dataset& data, const Preprocess& pre,
                            const std::string& label = "eval");

}  // namespace edgetrain::cli
