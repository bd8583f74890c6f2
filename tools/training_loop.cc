#include "tools/training_loop.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace edgetrain::cli {

Result<TrainReport> train_epochs(Trainer& trainer, const Dataset& data, const Preprocess& pre,
                                 const LoopOptions& options) {
  ET_RETURN_IF_ERROR(check_preprocess(data, pre));
  Shape want = batch_shape(data, pre, trainer.batch());
  if (want != trainer.input_shape())
    return invalid_argument("the data gives batches of " + want.to_string() + " but the model expects " +
                            trainer.input_shape().to_string());
  if (data.size() < trainer.batch())
    return invalid_argument("the training set has " + std::to_string(data.size()) + " images, fewer than one batch of " +
                            std::to_string(trainer.batch()));
  // drop_last: the training schedule has a static batch size.
  ET_ASSIGN_OR_RETURN(BatchIterator it, BatchIterator::create(data.size(), trainer.batch(), true, true, options.seed));
  int64_t per_epoch = it.batches_per_epoch();
  int64_t total = per_epoch * options.epochs;
  TrainReport report;
  std::vector<double> step_ms;
  step_ms.reserve(static_cast<size_t>(total));
  Progress progress;
  Stopwatch clock;
  reset_peak_rss();
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    it.start_epoch(epoch);
    double loss_sum = 0;
    int64_t loss_count = 0;
    for (BatchIterator::Batch b; it.next(&b);) {
      fill_batch(data, b.indices, b.count, pre, trainer.train_images(), trainer.train_labels(),
                 mix_seed(options.seed, static_cast<uint64_t>(report.steps)));
      float lr = options.learning_rate ? options.learning_rate(report.steps, total) : 0.01f;
      Stopwatch step_clock;
      ET_ASSIGN_OR_RETURN(StepResult r, trainer.train_step(lr));
      step_ms.push_back(step_clock.seconds() * 1e3);
      ++report.steps;
      report.images += b.count;
      loss_sum += r.loss;
      ++loss_count;
      double s = clock.seconds();
      char line[256];
      std::snprintf(line, sizeof line, "%s: epoch %lld/%lld step %lld/%lld  loss %.4f  lr %.4g  %.0f img/s  rss %s",
                    options.label.c_str(), static_cast<long long>(epoch + 1), static_cast<long long>(options.epochs),
                    static_cast<long long>(report.steps), static_cast<long long>(total), loss_sum / loss_count, lr,
                    report.images / std::max(s, 1e-9), format_bytes(static_cast<double>(process_memory().rss)).c_str());
      progress.update(line, report.steps == total);
    }
    report.last_epoch_loss = loss_sum / std::max<int64_t>(1, loss_count);
  }
  progress.finish();
  report.seconds = clock.seconds();
  report.images_per_second = report.images / std::max(report.seconds, 1e-9);
  report.peak_rss = process_memory().peak_rss;
  if (!step_ms.empty()) {
    std::nth_element(step_ms.begin(), step_ms.begin() + step_ms.size() / 2, step_ms.end());
    report.median_step_ms = step_ms[step_ms.size() / 2];
  }
  return report;
}

Result<EvalReport> evaluate(Trainer& trainer, const Dataset& data, const Preprocess& pre, const std::string& label) {
  ET_RETURN_IF_ERROR(check_preprocess(data, pre));
  int64_t batch = trainer.eval_batch();
  Shape want = batch_shape(data, pre, batch);
  Shape have = trainer.eval_executor().graph().value(trainer.eval_executor().graph().input).shape;
  if (want != have)
    return invalid_argument("the data gives batches of " + want.to_string() + " but the model expects " + have.to_string());
  ET_ASSIGN_OR_RETURN(BatchIterator it, BatchIterator::create(data.size(), batch, false, false, 0));
  it.start_epoch(0);
  EvalReport report;
  double loss_sum = 0;
  int64_t correct = 0;
  Stopwatch clock;
  Progress progress;
  std::vector<int64_t> padded(static_cast<size_t>(batch));
  for (BatchIterator::Batch b; it.next(&b);) {
    // The schedule's batch is static: pad a short last batch by repeating its first image.
    const int64_t* idx = b.indices;
    if (b.count < batch) {
      for (int64_t i = 0; i < batch; ++i) padded[static_cast<size_t>(i)] = b.indices[i < b.count ? i : 0];
      idx = padded.data();
    }
    fill_batch(data, idx, batch, pre, trainer.eval_images(), trainer.eval_labels(), 0);
    ET_ASSIGN_OR_RETURN(EvalResult r, trainer.eval_step(b.count));
    loss_sum += r.loss_sum;
    correct += r.correct;
    report.images += r.count;
    char line[160];
    std::snprintf(line, sizeof line, "%s: %lld/%lld images  accuracy %.4f", label.c_str(),
                  static_cast<long long>(report.images), static_cast<long long>(data.size()),
                  static_cast<double>(correct) / report.images);
    progress.update(line, report.images == data.size());
  }
  progress.finish();
  report.accuracy = report.images ? static_cast<double>(correct) / report.images : 0;
  report.mean_loss = report.images ? loss_sum / report.images : 0;
  report.seconds = clock.seconds();
  return report;
}

}  // namespace edgetrain::cli
