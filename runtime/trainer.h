// The Trainer owns one model's parameters (or trains a caller's ParameterStore in place) and two
// executors over them: the training schedule (forward + backward + updates at the training batch
// size) and an evaluation schedule (forward only, batch norm on running statistics). Both run in
// one arena block of the larger size: evaluation and training never run at the same time, and no
// arena value outlives a step (callers write a batch right before each train_step/eval_step). Callers write a batch straight into the executor's
// input slots (train_images() / train_labels()), then call train_step(): no copies, no allocation.
// Data loading and epochs live above the runtime (tools/, C API), which keeps this layer free
// of file formats.
#pragma once

#include <cstdint>
#include <functional>
#include <cstdlib>
#include <memory>
#include <optional>

#include "memory/liveness.h"
#include "runtime/executor.h"
#include "runtime/parameter_store.h"
#include "runtime/status.h"
#include "runtime/train_config.h"
#include "runtime/training_schedule.h"

namespace edgetrain {


// What most likely made a training step's loss non-finite, for the error: a batch norm in
// training mode over at most 3 values per channel (named, with the count), else a learning rate
// too high.
std::string non_finite_loss_cause(const Graph& g);

struct TrainerOptions {
  int64_t batch = 32;
  int64_t eval_batch = 0;   // 0: same as batch
  // Halve the evaluation batch (down to 1) while the evaluation arena would be larger than the
  // training arena, so evaluation never sets the size of the shared block (it only runs slower).
  bool eval_within_training_arena = false;
  int threads = 2;
  bool reference_kernels = false;
  uint64_t init_seed = 1;   // parameter initialisation (before any weights are loaded)
  // Train the ParameterStore given to Trainer::create in place (the caller loaded the model
  // before retraining, as PyTorch holds a loaded model): the trainer allocates no parameters,
  // and TrainerMemory::parameter_bytes is 0.
  bool external_parameters = false;
  TrainConfig config;
};

struct StepResult {
  float loss = 0;
  bool fell_back = false;  // a packed activation overflowed; the step ran on the fallback schedule
};

struct EvalResult {
  double loss_sum = 0;  // sum over the valid rows of the per-example loss
  int64_t correct = 0;
  int64_t count = 0;
};

// What a Trainer will allocate, in bytes, known before it allocates anything (the planner ranks
// configurations with exactly these numbers).
struct TrainerMemory {
  size_t parameter_bytes = 0;        // weights + batch-norm statistics (0: trained in place)
  size_t optimizer_state_bytes = 0;  // momentum / Adam moments
  size_t train_arena_bytes = 0;      // what the training schedule (and a compression fallback) needs
  size_t eval_arena_bytes = 0;       // what the evaluation schedule needs
  // Both schedules run in one block of the larger size (they never run at the same time).
  size_t arena_block_bytes() const { return train_arena_bytes > eval_arena_bytes ? train_arena_bytes : eval_arena_bytes; }
  size_t total() const { return parameter_bytes + optimizer_state_bytes + arena_block_bytes(); }
};

// Everything a Trainer is made of, planned but not allocated.
struct TrainerBlueprint {
  TrainingSchedule primary;
  std::optional<TrainingSchedule> fallback;  // compression: the schedule an overflowing batch re-runs on
  Graph eval;
  int64_t eval_batch = 0;
  std::vector<ParamSpec> state_specs;
  TrainerMemory memory;
};

Result<TrainerBlueprint> design_trainer(const GraphFactory& factory, const TrainerOptions& options);

class Trainer {
 public:
  // `params` is required exactly when options.external_parameters is set: a store created from
  // the model's ParamSpecs (same names and shapes), which must outlive the trainer.
  static Result<std::unique_ptr<Trainer>> create(const GraphFactory& factory, const TrainerOptions& options,
                                                 ParameterStore* params = nullptr);
  static Result<std::unique_ptr<Trainer>> create(TrainerBlueprint blueprint, const TrainerOptions& options,
                                                 ParameterStore* params = nullptr);
  // The bytes this trainer allocated (as design_trainer predicted them).
  const TrainerMemory& memory() const { return memory_; }

  ParameterStore& params() { return *params_; }
  const TrainerOptions& options() const { return options_; }
  int64_t batch() const { return options_.batch; }
  int64_t eval_batch() const { return eval_batch_; }
  int classes() const { return classes_; }
  const Shape& input_shape() const;  // [batch, H, W, C] of the training schedule

  float* train_images() { return train_->input(); }
  int32_t* train_labels() { return train_->labels(); }
  float* eval_images() { return eval_->input(); }
  int32_t* eval_labels() { return eval_->labels(); }

  // One optimizer step on the batch in train_images()/train_labels() at learning rate lr.
  // Fails (without running) when a label is outside [0, classes).
  Result<StepResult> train_step(float lr);
  // Forward pass on eval_images()/eval_labels(); only the first `valid` rows count.
  Result<EvalResult> eval_step(int64_t valid);

  int64_t optimizer_steps() const { return optimizer_steps_; }
  // Steps that ran on the compression fallback schedule (a batch denser than the slots).
  int64_t fallback_steps() const { return fallback_steps_; }
  const std::vector<bool>& trainable() const { return trainable_; }
  int64_t trainable_param_count() const;
  Executor& train_executor() { return *train_; }
  Executor& eval_executor() { return *eval_; }
  // The training schedule's simulated memory timeline (exact: the executor uses its layout).
  MemoryTimeline memory_timeline() const;

 private:
  Status check_labels(const int32_t* labels, int64_t n) const;
  void copy_buffers(bool save);  // batch-norm running statistics <-> snapshot
  struct FreeDeleter {
    void operator()(unsigned char* p) const { std::free(p); }
  };

  TrainerOptions options_;
  int64_t eval_batch_ = 0;
  int classes_ = 0;
  std::unique_ptr<ParameterStore> owned_params_;
  ParameterStore* params_ = nullptr;  // owned_params_ or the caller's store
  TrainerMemory memory_;
  std::unique_ptr<ParameterStore> optimizer_state_;
  std::unique_ptr<unsigned char, FreeDeleter> shared_arena_;  // training, fallback (compression) and evaluation
  std::unique_ptr<Executor> fallback_;
  std::vector<float> buffer_snapshot_;
  int64_t fallback_steps_ = 0;
  std::unique_ptr<Executor> train_;
  std::unique_ptr<Executor> eval_;
  std::vector<bool> trainable_;
  int64_t optimizer_steps_ = 0;
};

}  // namespace edgetrain
