#include "tools/planning.h"

#include <algorithm>
#include <cstdio>

#include "models/weights.h"
#include "runtime/executor.h"
#include "runtime/schedule.h"

namespace edgetrain::cli {

Result<double> probe_activation_density(const GraphFactory& factory, const std::string& weights, const Dataset& data,
                                        const Preprocess& pre) {
  ET_ASSIGN_OR_RETURN(Graph g, factory(std::min<int64_t>(4, std::max<int64_t>(1, data.size())), /*training=*/true));
  ET_ASSIGN_OR_RETURN(ParameterStore params, ParameterStore::create(g.params));
  params.initialize(1);
  if (!weights.empty()) {
    WeightsLoadOptions o;
    o.skip_shape_mismatch = true;  // a different classifier does not change ReLU densities
    ET_RETURN_IF_ERROR(load_weights(weights, params, o));
  }
  return probe_activation_density(factory, params, data, pre);
}

Result<double> probe_activation_density(const GraphFactory& factory, ParameterStore& params, const Dataset& data,
                                        const Preprocess& pre) {
  int64_t batch = std::min<int64_t>(4, data.size());
  if (batch <= 0) return invalid_argument("the probe needs at least one image");
  ET_ASSIGN_OR_RETURN(Graph g, factory(batch, /*training=*/true));
  // Forward only, batch statistics, no running-stat updates; keep every ReLU output to count it.
  std::vector<ValueId> relu_outputs;
  for (Node& n : g.nodes) {
    if (n.op == OpKind::kBatchNorm) n.attrs.norm.update_running_stats = false;
    if (n.op == OpKind::kRelu || n.op == OpKind::kRelu6) {
      g.value(n.outputs[0]).keep = true;
      relu_outputs.push_back(n.outputs[0]);
    }
  }
  ET_RETURN_IF_ERROR(finalize_schedule(g));
  ExecutorOptions eo;
  ET_ASSIGN_OR_RETURN(std::unique_ptr<Executor> ex, Executor::create(std::move(g), &params, eo));
  std::vector<int64_t> idx(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) idx[static_cast<size_t>(i)] = i;
  fill_batch(data, idx.data(), batch, pre, ex->input(), ex->labels(), 0);
  for (int64_t i = 0; i < batch; ++i) ex->labels()[i] = 0;  // the loss is not looked at
  ex->run(StepScalars{});
  int64_t nonzero = 0, total = 0;
  for (ValueId v : relu_outputs) {
    const float* y = static_cast<const float*>(ex->ptr(v));
    int64_t n = ex->graph().value(v).shape.numel();
    for (int64_t i = 0; i < n; ++i) nonzero += y[i] != 0.0f;
    total += n;
  }
  if (total == 0) return -1.0;  // no ReLU: sparse storage does not apply
  return static_cast<double>(nonzero) / static_cast<double>(total);
}

Status warm_up_training(const GraphFactory& factory, ParameterStore& params, const Dataset& data, const Preprocess& pre,
                        int threads) {
  TrainerOptions o;
  o.batch = std::min<int64_t>(4, data.size());
  o.eval_batch = 1;
  o.threads = threads;
  o.external_parameters = true;  // momentum 0, no weight decay: learning rate 0 moves nothing
  std::vector<float> saved(params.data(0), params.data(0) + params.total_floats());
  {
    ET_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> t, Trainer::create(factory, o, &params));
    std::vector<int64_t> idx(static_cast<size_t>(o.batch));
    for (int64_t i = 0; i < o.batch; ++i) idx[static_cast<size_t>(i)] = i;
    fill_batch(data, idx.data(), o.batch, pre, t->train_images(), t->train_labels(), 0);
    Result<StepResult> r = t->train_step(0.0f);
    (void)r;  // a non-finite loss on these weights is retraining's business, not the warm-up's
  }
  std::copy(saved.begin(), saved.end(), params.data(0));  // batch-norm running statistics moved
  return Status::ok();
}

Result<RecalibrationReport> recalibrate_norms(const GraphFactory& factory, ParameterStore& params, const Dataset& data,
                                              const Preprocess& pre, int64_t batch, size_t max_arena_bytes, int threads) {
  RecalibrationOptions ro;
  ro.batch = std::max<int64_t>(2, std::min<int64_t>(batch, data.size()));
  ro.threads = threads;
  ro.max_arena_bytes = max_arena_bytes;
  ro.images = data.size();
  int64_t at = 0;
  std::vector<int64_t> idx;
  std::vector<int32_t> labels;
  auto next = [&](float* images, int64_t n) {
    if (at + n > data.size()) return false;
    idx.resize(static_cast<size_t>(n));
    labels.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = at + i;
    fill_batch(data, idx.data(), n, pre, images, labels.data(), mix_seed(0x5eed, at));
    at += n;
    return true;
  };
  ET_ASSIGN_OR_RETURN(RecalibrationReport r, recalibrate_batch_norms(factory, params, ro, next));
  const std::string last = r.tail > 0 ? ", the last of " + std::to_string(r.tail) : "";
  std::fprintf(stderr, "recalibrated %d batch norms' running statistics on %lld images (passes of %lld%s, arena %s) in %.2f s\n",
               r.norms, static_cast<long long>(r.images), static_cast<long long>(r.batch), last.c_str(),
               format_bytes(static_cast<double>(r.arena_bytes)).c_str(), r.seconds);
  return r;
}

Result<std::vector<TrialResult>> run_trials(const PlanRequest& request, const Plan& plan, const std::string& weights,
                                            bool skip_classifier, const Dataset& data, const Preprocess& pre,
                                            const TrialOptions& options, ParameterStore* params,
                                            const std::function<Status()>& reload) {
  std::vector<TrialResult> results;
  if (request.base.external_parameters && (params == nullptr || !reload))
    return invalid_argument("trials in place need the parameter store and a way to reload its weights");
  int n = std::min<int>(options.candidates, static_cast<int>(plan.ranked.size()));
  for (int c = 0; c < n; ++c) {
    TrainerOptions o = candidate_options(request.base, plan.ranked[static_cast<size_t>(c)].config);
    if (o.external_parameters) {
      if (c > 0) ET_RETURN_IF_ERROR(reload());  // the previous trial trained them
      if (options.recalibrate_norms)  // before the trainer exists: the two arenas never coexist
        ET_RETURN_IF_ERROR(recalibrate_norms(request.factory, *params, data, pre, o.batch,
                                             plan.ranked[static_cast<size_t>(c)].memory.arena_block_bytes(), o.threads)
                               .status());
    }
    ET_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> t,
                        Trainer::create(request.factory, o, o.external_parameters ? params : nullptr));
    if (!o.external_parameters && !weights.empty()) {
      WeightsLoadOptions wo;
      if (skip_classifier) wo.skip_shape_mismatch = true;
      ET_RETURN_IF_ERROR(load_weights(weights, t->params(), wo));
    }
    ET_ASSIGN_OR_RETURN(BatchIterator it, BatchIterator::create(data.size(), o.batch, true, true, options.seed));
    it.start_epoch(0);
    TrialResult r;
    r.candidate = c;
    std::vector<double> losses;
    Stopwatch clock;
    for (int s = 0; s < options.steps; ++s) {
      BatchIterator::Batch b;
      if (!it.next(&b)) {
        it.start_epoch(s);
        it.next(&b);
      }
      fill_batch(data, b.indices, b.count, pre, t->train_images(), t->train_labels(), mix_seed(options.seed, s));
      ET_ASSIGN_OR_RETURN(StepResult sr, t->train_step(options.learning_rate));
      losses.push_back(sr.loss);
    }
    r.seconds = clock.seconds();
    size_t k = std::min<size_t>(2, losses.size());
    for (size_t i = 0; i < k; ++i) {
      r.first_loss += losses[i] / k;
      r.last_loss += losses[losses.size() - 1 - i] / k;
    }
    r.loss_drop_per_second = (r.first_loss - r.last_loss) / std::max(r.seconds, 1e-9);
    if (o.external_parameters && c == n - 1) ET_RETURN_IF_ERROR(reload());  // retraining starts from the weights
    std::fprintf(stderr, "  trial %d (%s): loss %.4f -> %.4f in %.2f s, %.3f per second\n", c + 1,
                 plan.ranked[static_cast<size_t>(c)].label.c_str(), r.first_loss, r.last_loss, r.seconds,
                 r.loss_drop_per_second);
    results.push_back(r);
  }
  std::stable_sort(results.begin(), results.end(),
                   [](const TrialResult& a, const TrialResult& b) { return a.loss_drop_per_second > b.loss_drop_per_second; });
  return results;
}

JsonValue candidate_json(const PlanCandidate& c) {
  JsonValue j = JsonValue::object();
  j.set("config", c.label);
  j.set("predicted_peak_bytes", static_cast<int64_t>(c.predicted_peak));
  j.set("predicted_step_ms", c.predicted_step_seconds * 1e3);
  j.set("trainable_params", c.trainable_params);
  j.set("score", c.score);
  JsonValue m = JsonValue::object();
  m.set("parameters", static_cast<int64_t>(c.memory.parameter_bytes));
  m.set("optimizer_state", static_cast<int64_t>(c.memory.optimizer_state_bytes));
  m.set("train_arena", static_cast<int64_t>(c.memory.train_arena_bytes));
  m.set("eval_arena", static_cast<int64_t>(c.memory.eval_arena_bytes));
  j.set("memory", std::move(m));
  return j;
}

std::string plan_table(const Plan& plan) {
  // The configuration column as wide as its longest label (labels cut at kMaxLabel characters,
  // so that a line fits its buffer), so the numbers line up.
  constexpr size_t kMaxLabel = 400;
  int width = 13;
  for (const PlanCandidate& c : plan.ranked) width = std::max(width, static_cast<int>(std::min(c.label.size(), kMaxLabel)));
  std::string s;
  char line[768];
  std::snprintf(line, sizeof line, "  %-3s %-*s %9s %8s %10s %9s %10s\n", "#", width, "configuration", "peak", "step ms",
                "trainable", "arena", "params+opt");
  s += line;
  for (size_t i = 0; i < plan.ranked.size(); ++i) {
    const PlanCandidate& c = plan.ranked[i];
    std::snprintf(line, sizeof line, "  %-3zu %-*s %9s %8.1f %10lld %9s %10s\n", i + 1, width, c.label.substr(0, kMaxLabel).c_str(),
                  format_bytes(static_cast<double>(c.predicted_peak)).c_str(), c.predicted_step_seconds * 1e3,
                  static_cast<long long>(c.trainable_params),
                  format_bytes(static_cast<double>(c.memory.train_arena_bytes)).c_str(),
                  format_bytes(static_cast<double>(c.memory.parameter_bytes + c.memory.optimizer_state_bytes)).c_str());
    s += line;
  }
  return s;
}

}  // namespace edgetrain::cli
