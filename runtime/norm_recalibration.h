// Re-estimates every batch norm's running statistics on new data (AdaBN: Li et al., "Revisiting
// batch normalization for practical domain adaptation"): forward passes only, batch norms on
// batch statistics, nothing trains. A domain shift moves the activations' statistics (inverted
// intensities flip the sign of early features), so a pretrained model's running statistics
// normalise the new data wrongly; recalibrated ones make frozen layers, and training with
// NormStatistics::kRunning (runtime/train_config.h), see the new data as the old layers saw theirs.
//
// The result is exact, not a moving average: each pass's per-channel mean and unbiased variance
// are combined into the mean and unbiased variance over every value the norm saw, so the answer
// does not depend on how the images were split into passes (torch's momentum=None averages the
// per-batch variances instead, which drops the spread between batch means).
#pragma once

#include <cstdint>
#include <functional>

#include "runtime/parameter_store.h"
#include "runtime/status.h"
#include "runtime/training_schedule.h"

namespace edgetrain {

struct RecalibrationOptions {
  int64_t batch = 32;          // images per forward pass, at most
  int threads = 2;
  // The pass's arena (one block, allocated for the recalibration and freed after it) stays within
  // this many bytes: the batch halves until it does (0: no limit). Retraining passes the chosen
  // configuration's arena block, so recalibration never sets the peak.
  size_t max_arena_bytes = 0;
  // How many images `next` gives in all (0: unknown, only full passes run). Known, the images
  // after the last full pass (2 or more) take one more pass at their own size: every image counts.
  int64_t images = 0;
};

struct RecalibrationReport {
  int64_t images = 0;       // images seen
  int64_t batch = 0;        // images per pass
  int64_t tail = 0;         // of them, in the last, shorter pass (0: none)
  int norms = 0;            // batch norms recalibrated
  size_t arena_bytes = 0;   // the pass's arena block
  double seconds = 0;
};

// `next(images, n)` writes the next n images ([n, H, W, C] as the model's input) and returns
// false when fewer than n are left (with options.images set, n is the last pass's size then). The graph must hold at least one batch norm. Fails without
// touching `params` when no pass ran or the smallest pass (2 images: batch statistics need more
// than one value per channel) does not fit max_arena_bytes.
Result<RecalibrationReport> recalibrate_batch_norms(const GraphFactory& factory, ParameterStore& params,
                                                    const RecalibrationOptions& options,
                                                    const std::function<bool(float* images, int64_t n)>& next);

// The batch a recalibration with these options would use (the batch-halving alone), and its
// arena block; nothing is allocated.
Result<int64_t> recalibration_batch(const GraphFactory& factory, const RecalibrationOptions& options,
                                    size_t* arena_block_bytes = nullptr);

}  // namespace edgetrain
