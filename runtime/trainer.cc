#include "runtime/trainer.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "runtime/fusion.h"
#include "runtime/schedule.h"

namespace edgetrain {

namespace {
size_t store_bytes(const std::vector<ParamSpec>& specs) {
  size_t floats = 0;
  for (const ParamSpec& p : specs) floats += static_cast<size_t>((p.shape.numel() + 15) / 16 * 16);
  return floats * sizeof(float);
}
size_t arena_block_bytes(size_t arena) { return (arena + kArenaSlackBytes + 63) / 64 * 64; }

// The evaluation schedule at a batch size: the eval-mode graph, fused (runtime/fusion.h), finalized.
Result<Graph> evaluation_schedule(const GraphFactory& factory, int64_t batch) {
  ET_ASSIGN_OR_RETURN(Graph g, factory(batch, /*training=*/false));
  fuse_ops(g);
  ET_RETURN_IF_ERROR(finalize_schedule(g));
  return g;
}
}  // namespace

// Batch 2 on MobileNetV2's 1x1 maps at 32x32: with two values the normalised outputs are +-1
// whatever the inputs, the norm's gradient to them is zero but for rounding, divided by a
// deviation that may be tiny; the loss went NaN at step 3-4 with lr 1e-2 and 1e-4 alike (width
// 1.0; width 0.35 in one seed of three), at batch 3 training diverged, at batch 4 it trained.
constexpr int64_t kFewNormValues = 3;
std::string non_finite_loss_cause(const Graph& g) {
  int64_t fewest = 0;
  std::string layer;
  for (const Node& n : g.nodes) {
    if (n.op != OpKind::kBatchNorm || !n.attrs.norm.training || n.attrs.norm.apply_saved) continue;
    const Shape& x = g.value(n.inputs[0]).shape;  // channels last
    if (x.rank == 0) continue;
    const int64_t values = x.numel() / std::max<int64_t>(1, x.dims[x.rank - 1]);
    if (layer.empty() || values < fewest) fewest = values, layer = n.layer;
  }
  if (!layer.empty() && fewest <= kFewNormValues)
    return "batch norm '" + layer + "' normalises only " + std::to_string(fewest) +
           " values per channel, which makes its gradient unstable (use larger micro-batches, or norms on running "
           "statistics); or the learning rate is too high";
  return "the learning rate is probably too high";
}

Result<TrainerBlueprint> design_trainer(const GraphFactory& factory, const TrainerOptions& options) {
  if (options.batch <= 0) return invalid_argument("batch size must be positive, got " + std::to_string(options.batch));
  if (options.threads <= 0) return invalid_argument("threads must be positive, got " + std::to_string(options.threads));
  TrainerBlueprint b;
  b.eval_batch = options.eval_batch > 0 ? options.eval_batch : options.batch;
  ET_ASSIGN_OR_RETURN(b.primary, make_training_schedule(factory, options.batch, options.config));
  ET_ASSIGN_OR_RETURN(b.eval, evaluation_schedule(factory, b.eval_batch));
  const Graph& training = b.primary.graph;

  // Optimizer state (momentum, Adam moments): a block of its own, zeroed, shared by the primary
  // and the fallback schedule.
  std::vector<bool> seen(training.values.size(), false);
  for (const Node& n : training.nodes)
    for (ValueId v : n.inputs)
      if (v != kNoValue && training.value(v).role == ValueRole::kOptimizerState && !seen[static_cast<size_t>(v)]) {
        seen[static_cast<size_t>(v)] = true;
        ParamSpec sp;
        sp.name = training.value(v).name;
        sp.shape = training.value(v).shape;
        b.state_specs.push_back(sp);
      }

  ET_ASSIGN_OR_RETURN(ArenaLayout primary_layout, layout_arena(training));
  size_t train_arena = primary_layout.arena_bytes;
  if (options.config.compression.sparse_activations) {
    // A batch denser than the packed slots' capacity re-runs on a fallback schedule: twice the
    // micro-batches (when the batch splits) with slots that hold every element, so it cannot
    // overflow. Both schedules share one arena of the larger size.
    TrainConfig fb = options.config;
    fb.compression.capacity = 1.0f;
    Result<TrainingSchedule> halves = invalid_argument("the batch does not split further");
    if (options.batch % (2 * fb.micro_batches) == 0) {
      TrainConfig split = fb;
      split.micro_batches *= 2;
      halves = make_training_schedule(factory, options.batch, split);  // fails e.g. for 1-image norms
    }
    Result<TrainingSchedule> fallback_or = halves.is_ok() ? std::move(halves) : make_training_schedule(factory, options.batch, fb);
    ET_ASSIGN_OR_RETURN(TrainingSchedule fallback, std::move(fallback_or));
    ET_ASSIGN_OR_RETURN(ArenaLayout fallback_layout, layout_arena(fallback.graph));
    if (primary_layout.offsets[static_cast<size_t>(training.input)] !=
            fallback_layout.offsets[static_cast<size_t>(fallback.graph.input)] ||
        primary_layout.offsets[static_cast<size_t>(training.labels)] !=
            fallback_layout.offsets[static_cast<size_t>(fallback.graph.labels)])
      return internal_error("the fallback schedule does not find the batch where the primary one writes it");
    train_arena = std::max(train_arena, fallback_layout.arena_bytes);
    b.fallback = std::move(fallback);
  }
  ET_ASSIGN_OR_RETURN(ArenaLayout eval_layout, layout_arena(b.eval));
  while (options.eval_within_training_arena && b.eval_batch > 1 &&
         arena_block_bytes(eval_layout.arena_bytes) > arena_block_bytes(train_arena)) {
    b.eval_batch = (b.eval_batch + 1) / 2;
    ET_ASSIGN_OR_RETURN(b.eval, evaluation_schedule(factory, b.eval_batch));
    ET_ASSIGN_OR_RETURN(eval_layout, layout_arena(b.eval));
  }
  b.memory.parameter_bytes = options.external_parameters ? 0 : store_bytes(training.params);
  b.memory.optimizer_state_bytes = store_bytes(b.state_specs);
  b.memory.train_arena_bytes = arena_block_bytes(train_arena);
  b.memory.eval_arena_bytes = arena_block_bytes(eval_layout.arena_bytes);
  return b;
}

Result<std::unique_ptr<Trainer>> Trainer::create(const GraphFactory& factory, const TrainerOptions& options,
                                                 ParameterStore* params) {
  ET_ASSIGN_OR_RETURN(TrainerBlueprint b, design_trainer(factory, options));
  return create(std::move(b), options, params);
}

Result<std::unique_ptr<Trainer>> Trainer::create(TrainerBlueprint b, const TrainerOptions& options,
                                                 ParameterStore* params) {
  if (options.external_parameters != (params != nullptr))
    return invalid_argument(options.external_parameters
                                ? "external_parameters is set but no parameter store was given to train in place"
                                : "a parameter store was given but external_parameters is not set");
  std::unique_ptr<Trainer> t(new Trainer());
  t->options_ = options;
  t->eval_batch_ = b.eval_batch;
  t->memory_ = b.memory;
  Graph& training = b.primary.graph;
  t->trainable_ = std::move(b.primary.trainable);
  t->classes_ = static_cast<int>(training.value(training.logits).shape[1]);

  if (params != nullptr) {
    // Trained in place: it must be this model's store.
    if (params->size() != static_cast<int>(training.params.size()))
      return invalid_argument("the parameter store holds " + std::to_string(params->size()) + " tensors; the model has " +
                              std::to_string(training.params.size()));
    for (size_t i = 0; i < training.params.size(); ++i) {
      const ParamSpec& have = params->spec(static_cast<int>(i));
      const ParamSpec& want = training.params[i];
      if (have.name != want.name || have.shape != want.shape)
        return invalid_argument("the parameter store's tensor " + std::to_string(i) + " is '" + have.name + "' " +
                                have.shape.to_string() + "; the model has '" + want.name + "' " + want.shape.to_string());
    }
    t->params_ = params;
  } else {
    ET_ASSIGN_OR_RETURN(ParameterStore store, ParameterStore::create(training.params));
    t->owned_params_ = std::make_unique<ParameterStore>(std::move(store));
    t->params_ = t->owned_params_.get();
    t->params_->initialize(options.init_seed);
  }
  if (!b.state_specs.empty()) {
    ET_ASSIGN_OR_RETURN(ParameterStore state, ParameterStore::create(b.state_specs));
    t->optimizer_state_ = std::make_unique<ParameterStore>(std::move(state));
  }

  ExecutorOptions eo;
  eo.threads = options.threads;
  eo.reference_kernels = options.reference_kernels;
  eo.optimizer_state = t->optimizer_state_.get();
  // One block for the training schedule, its fallback and the evaluation schedule, planned ahead.
  size_t need = b.memory.arena_block_bytes();
  t->shared_arena_.reset(static_cast<unsigned char*>(std::aligned_alloc(64, need)));
  if (!t->shared_arena_) return out_of_memory("cannot allocate the training arena of " + std::to_string(need) + " bytes");
  // Touch every page now (no page faults in steps) and lay the high-water pattern.
  std::memset(t->shared_arena_.get(), kArenaFillByte, need);
  eo.arena = t->shared_arena_.get();
  eo.arena_capacity = need;
  if (b.fallback) {
    ET_ASSIGN_OR_RETURN(t->fallback_, Executor::create(std::move(b.fallback->graph), t->params_, eo));
    for (int i = 0; i < t->params_->size(); ++i)
      if (!param_kind_is_trainable(t->params_->spec(i).kind))
        t->buffer_snapshot_.resize(t->buffer_snapshot_.size() + static_cast<size_t>(t->params_->spec(i).shape.numel()));
  }
  ET_ASSIGN_OR_RETURN(t->train_, Executor::create(std::move(training), t->params_, eo));
  ET_ASSIGN_OR_RETURN(t->eval_, Executor::create(std::move(b.eval), t->params_, eo));
  return t;
}

void Trainer::copy_buffers(bool save) {
  size_t at = 0;
  for (int i = 0; i < params_->size(); ++i) {
    const ParamSpec& p = params_->spec(i);
    if (param_kind_is_trainable(p.kind)) continue;
    size_t n = static_cast<size_t>(p.shape.numel());
    if (save) std::memcpy(buffer_snapshot_.data() + at, params_->data(i), n * sizeof(float));
    else std::memcpy(params_->data(i), buffer_snapshot_.data() + at, n * sizeof(float));
    at += n;
  }
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
  // Dropout masks: a fresh, reproducible draw per step.
  s.seed = options_.init_seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(s.optimizer_step);
  StepResult r;
  if (fallback_) copy_buffers(/*save=*/true);
  if (train_->run(s)) {
    r.loss = train_->loss();
  } else {
    // A packed activation overflowed its slot: nothing was updated yet. Undo the running-stat
    // updates of the aborted forward pass and run the step on the fallback schedule.
    copy_buffers(/*save=*/false);
    if (!fallback_->run(s)) return internal_error("the compression fallback schedule overflowed");
    r.loss = fallback_->loss();
    r.fell_back = true;
    ++fallback_steps_;
  }
  ++optimizer_steps_;
  if (!std::isfinite(r.loss))
    return invalid_argument("the loss became " + std::to_string(r.loss) + " at step " + std::to_string(optimizer_steps_) +
                            ": " + non_finite_loss_cause(train_->graph()));
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
