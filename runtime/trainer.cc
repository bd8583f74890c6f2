#include "runtime/trainer.h"

#include <cmath>

#include "runtime/schedule.h"

namespace edgetrain {

Result<std::unique_ptr<Trainer>> Trainer::create(const GraphFactory& factory, const TrainerOptions& options) {
  if (options.batch <= 0) return invalid_argument("batch size must be positive, got " + std::to_string(options.batch));
  if (options.threads <= 0) return invalid_argument("threads must be positive, got " + std::to_string(options.threads));
  std::unique_ptr<Trainer> t(new Trainer());
  t->options_ = options;
  t->eval_batch_ = options.eval_batch > 0 ? options.eval_batch : options.batch;

  ET_ASSIGN_OR_RETURN(TrainingSchedule schedule, make_training_schedule(factory, options.batch, options.config));
  ET_ASSIGN_OR_RETURN(Graph eval_graph, factory(t->eval_batch_, /*training=*/false));
  Graph& training = schedule.graph;
  t->trainable_ = std::move(schedule.trainable);
  t->classes_ = static_cast<int>(training.value(training.logits).shape[1]);

  ET_ASSIGN_OR_RETURN(ParameterStore store, ParameterStore::create(training.params));
  t->params_ = std::make_unique<ParameterStore>(std::move(store));
  t->params_->initialize(options.init_seed);
  ET_RETURN_IF_ERROR(finalize_schedule(eval_graph));

  ExecutorOptions eo;
  eo.threads = options.threads;
  eo.reference_kernels = options.reference_kernels;
  ET_ASSIGN_OR_RETURN(t->train_, Executor::create(std::move(training), t->params_.get(), eo));
  ET_ASSIGN_OR_RETURN(t->eval_, Executor::create(std::move(eval_graph), t->params_.get(), eo));
  return t;
}

const Shape& Trainer::input_shape() const { return train_->graph().value(train_->graph().input).shape; }

Status Trainer::check_labels(const int32_t* labels, int64_t n) const {
  for (int64_t i = 0; i < n; ++i)
    if (labels[i] < 0 || labels[i] >= classes_)
      return invalid_argument("label " + std::to_string(labels[i]) + " at batch row " + std::to_string(i) +
                              " is outside [0, " + std::to_string(classes_) + ")");
  return Status::ok();
}

Result<StepResult> Trainer::train_step(float lr) {
  ET_RETURN_IF_ERROR(check_labels(train_->labels(), options_.batch));
  StepScalars s;
  s.learning_rate = lr;
  s.optimizer_step = optimizer_steps_ + 1;
  train_->run(s);
  ++optimizer_steps_;
  StepResult r;
  r.loss = train_->loss();
  if (!std::isfinite(r.loss))
    return invalid_argument("the loss became " + std::to_string(r.loss) + " at step " + std::to_string(optimizer_steps_) +
                            ": the learning rate is probably too high");
  return r;
}

Result<EvalResult> Trainer::eval_step(int64_t valid) {
  if (valid <= 0 || valid > eval_batch_)
    return invalid_argument("eval_step: valid rows must be in [1, " + std::to_string(eval_batch_) + "]");
  const int32_t* labels = eval_->labels();
  ET_RETURN_IF_ERROR(check_labels(labels, eval_batch_));
  eval_->run(StepScalars{});
  const float* logits = eval_->logits();
  EvalResult r;
  r.count = valid;
  for (int64_t i = 0; i < valid; ++i) {
    const float* row = logits + i * classes_;
    int best = 0;
    float mx = row[0];
    for (int k = 1; k < classes_; ++k)
      if (row[k] > mx) mx = row[k], best = k;
    double lse = 0;
    for (int k = 0; k < classes_; ++k) lse += std::exp(static_cast<double>(row[k] - mx));
    r.loss_sum += std::log(lse) + mx - row[labels[i]];
    if (best == labels[i]) ++r.correct;
  }
  return r;
}

int64_t Trainer::trainable_param_count() const {
  int64_t n = 0;
  for (int i = 0; i < params_->size(); ++i)
    if (trainable_[static_cast<size_t>(i)]) n += params_->spec(i).shape.numel();
  return n;
}

MemoryTimeline Trainer::memory_timeline() const { return simulate_memory(train_->graph(), train_->layout()); }

}  // namespace edgetrain
