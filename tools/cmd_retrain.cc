// `edgetrain plan` and `edgetrain retrain`: choose the m-hyperparameters under a memory budget,
// then (retrain) train with them and save the weights atomically.
//
// What the budget covers: every byte the retraining adds to the process after the program, the
// data and the model (its parameters, loaded from --weights) are loaded, as PyTorch's baseline
// is taken with the model loaded: optimizer state, the arena (training and evaluation share
// one block), planning, the probe and the trials (each smaller than the chosen configuration),
// the batch-norm recalibration (its arena at most the chosen block, freed before training),
// and a reserve for the process's own growth while training (thread stacks, allocator
// bookkeeping, OpenBLAS packing buffers and code pages first touched by backward kernels;
// --reserve). Retraining trains the loaded parameters in place, so they are not duplicated.
// retrain measures it from outside the plan: peak RSS (VmHWM) minus RSS after the density probe
// (which warms the program up).
#include <malloc.h>

#include <cstdio>
#include <memory>
#include <optional>

#include "models/weights.h"
#include "planner/cost_model.h"
#include "planner/memory_chart.h"
#include "planner/profile_store.h"
#include "planner/refeaturize.h"
#include "runtime/blas_env.h"
#include "runtime/norm_recalibration.h"
#include "tools/commands.h"
#include "tools/planning.h"
#include "tools/setup.h"
#include "tools/training_loop.h"

namespace edgetrain::cli {

void add_plan_options(ArgParser& p) {
  p.option("budget", "BYTES", "", "memory budget for retraining, e.g. 64MiB (required)");
  p.option("objective", "NAME", "capacity-per-second",
           "rank feasible configurations by capacity-per-second (trainable parameters per predicted second), "
           "fastest, or most-accurate (most trainable parameters)");
  p.option("trials", "N", "0", "train the best N candidates a few steps each and pick by loss decrease per second");
  p.option("trial-steps", "S", "8", "steps per trial");
  p.option("reserve", "BYTES", "4.5MiB",
           "process overhead beside the planned blocks, counted in the budget (measured 2.4-4.3 MiB for MobileNetV2 "
           "width 0.5 at 32x32: the trainer's schedules and kernel calls, thread stacks, OpenBLAS buffers, heap pages)");
  p.flag("no-freezing", "only consider configurations that train every parameter");
  p.flag("no-recalibrate",
         "keep the loaded batch-norm running statistics: no re-estimation on the new data before training, and no "
         "candidate that trains with every norm on running statistics");
  p.flag("no-momentum-free", "never replace SGD with momentum by momentum-free SGD (lr x 1/(1-momentum), no optimizer state)");
  p.option("min-micro-batch", "N", "16",
           "smallest micro-batch the planner considers where batch norms train on batch statistics (those of a few "
           "images are noise); candidates with running-statistic norms may use any");
  p.option("max-micro-batches", "K", "8",
           "most micro-batches the planner considers: laying out a schedule unrolled K times takes heap that counts in "
           "the budget (32 micro-batches of MobileNetV2 width 0.5: 16.5 MiB)");
  p.flag("auto-threads",
         "train the chosen configuration on the thread count (up to --threads) its predicted step is fastest at: "
         "fewer only when predicted at least 5% faster (small micro-batched steps)");
  p.option("svg", "FILE", "", "write the chosen configuration's memory timeline as SVG");
  p.option("cache-dir", "DIR", "", "where `edgetrain profile` stored its cost models (default ~/.cache/edgetrain)");
}

namespace {

struct Planned {
  std::string predictor;
  PlanRequest request;
  Plan plan;
  size_t chosen = 0;
  double density = -1;
  std::vector<TrialResult> trials;
  // The thread count training runs on and the chosen configuration's predicted step there
  // (--auto-threads may lower the count below the one the plan was made for).
  int threads = 1;
  double predicted_step_seconds = 0;
  std::string threads_note;  // what --auto-threads decided, for the user
};

// The step-time predictor: this device's cost models (edgetrain profile), else a roofline guess.
// Loaded before the retraining baseline: the models are program state, like its code.
struct Predictor {
  std::shared_ptr<CostModel> cost_model;  // kept alive: the predictor refers to it
  NodeTimePredictor predict;
  std::string description;
};

Predictor load_predictor(const ArgParser& p, int threads) {
  Predictor out;
  std::string cache = p.str("cache-dir").empty() ? default_cache_dir() : p.str("cache-dir");
  std::string note;
  Result<CostModel> cost = load_current_cost_model(profile_path(cache), &note, [](const std::string& line) {
    std::fprintf(stderr, "edgetrain: %s...\n", line.c_str());
  });
  if (!note.empty()) std::fprintf(stderr, "edgetrain: %s\n", note.c_str());
  if (cost.is_ok()) {
    out.cost_model = std::make_shared<CostModel>(std::move(*cost));
    out.predict = out.cost_model->node_predictor(threads);
    out.description = "cost models from " + profile_path(cache);
  } else {
    out.predict = roofline_predictor();
    out.description = "roofline estimate (no profile: run `edgetrain profile` for measured cost models; " +
                      cost.status().message() + ")";
  }
  return out;
}

// --auto-threads: the profiled thread count up to --threads at which the chosen configuration's
// step is predicted fastest (CostModel::fastest_threads). Without measured cost models there is
// nothing to compare: the plan's count stays.
Status choose_threads(const ArgParser& p, const Predictor& predictor, Planned* pl) {
  const PlanCandidate& chosen = pl->plan.ranked[pl->chosen];
  pl->threads = pl->request.base.threads;
  pl->predicted_step_seconds = chosen.predicted_step_seconds;
  if (!p.has("auto-threads")) return Status::ok();
  if (predictor.cost_model == nullptr) {
    pl->threads_note = "--auto-threads: no measured cost models (run `edgetrain profile`): " +
                       std::to_string(pl->threads) + " threads as given";
    return Status::ok();
  }
  TrainerOptions o = candidate_options(pl->request.base, chosen.config);
  ET_ASSIGN_OR_RETURN(TrainingSchedule s, make_training_schedule(pl->request.factory, o.batch, o.config));
  const CostModel::ThreadChoice c = predictor.cost_model->fastest_threads(s.graph, pl->threads);
  char line[200];
  std::snprintf(line, sizeof(line), "--auto-threads: %d thread(s), predicted %.1f ms per step (%.1f ms at %d)", c.threads,
                c.predicted_seconds * 1e3, c.predicted_at_most * 1e3, pl->threads);
  pl->threads_note = line;
  // The plan's ranking used the plan's count; on fewer threads the same step is predicted as here.
  if (c.threads != pl->threads) pl->predicted_step_seconds = c.predicted_seconds;
  pl->threads = c.threads;
  return Status::ok();
}

// Plans for training the loaded model `params` in place (the trials train it too, and reset it
// after each: initialisation from --seed, then --weights).
Result<Planned> plan_for(const ArgParser& p, const ModelSpec& spec, const Dataset& data, const Preprocess& pre,
                         double density, const Predictor& predictor, ParameterStore* params) {
  Planned out;
  if (p.str("budget").empty()) return invalid_argument("--budget is required (e.g. --budget 64MiB)");
  ET_ASSIGN_OR_RETURN(uint64_t budget, p.bytes("budget"));
  ET_ASSIGN_OR_RETURN(uint64_t reserve, p.bytes("reserve"));
  ET_ASSIGN_OR_RETURN(PlanObjective objective, parse_plan_objective(p.str("objective")));
  ET_ASSIGN_OR_RETURN(TrainerOptions base, trainer_options(p));
  PlanRequest& r = out.request;
  r.factory = graph_factory(spec);
  r.base = base;
  r.base.config.freeze = FreezeConfig{};  // the planner chooses
  r.base.external_parameters = true;      // the model is loaded before retraining and trained in place
  r.budget_bytes = budget;
  r.reserve_bytes = reserve;
  r.objective = objective;
  r.allow_freezing = !p.has("no-freezing");
  r.allow_momentum_free = !p.has("no-momentum-free");
  r.allow_running_norms = !p.has("no-recalibrate");  // retrain recalibrates the norms before training
  ET_ASSIGN_OR_RETURN(int64_t min_micro, p.integer("min-micro-batch"));
  if (min_micro < 1) return invalid_argument("--min-micro-batch must be >= 1");
  r.min_micro_batch = static_cast<int>(min_micro);
  ET_ASSIGN_OR_RETURN(int64_t max_micro, p.integer("max-micro-batches"));
  if (max_micro < 1) return invalid_argument("--max-micro-batches must be >= 1");
  r.max_micro_batches = static_cast<int>(max_micro);
  r.predict = predictor.predict;
  // Every 8 candidates: bounds the heap's growth at a fraction of the trims' cost.
  r.between_candidates = [n = 0]() mutable {
    if (++n % 8 == 0) malloc_trim(0);
  };
  out.predictor = predictor.description;
  out.density = density;
  r.activation_density = density;
  ET_ASSIGN_OR_RETURN(out.plan, plan_training(r));
  ET_ASSIGN_OR_RETURN(int64_t trials, p.integer("trials"));
  if (trials > 0) {
    TrialOptions to;
    to.candidates = static_cast<int>(trials);
    ET_ASSIGN_OR_RETURN(int64_t steps, p.integer("trial-steps"));
    to.steps = static_cast<int>(std::max<int64_t>(2, steps));
    ET_ASSIGN_OR_RETURN(double lr, p.number("lr"));
    to.learning_rate = static_cast<float>(lr);
    to.recalibrate_norms = r.allow_running_norms;  // retrain recalibrates before training: so do the trials
    std::fprintf(stderr, "emulated trials of the best %d candidates, %d steps each:\n", to.candidates, to.steps);
    auto reload = [&p, params]() { return reset_model_parameters(p, *params); };
    ET_ASSIGN_OR_RETURN(out.trials,
                        run_trials(r, out.plan, p.str("weights"), p.has("skip-classifier"), data, pre, to, params, reload));
    if (!out.trials.empty()) out.chosen = static_cast<size_t>(out.trials.front().candidate);
  }
  return out;
}

JsonValue plan_json(const Planned& pl) {
  JsonValue j = JsonValue::object();
  j.set("budget_bytes", static_cast<int64_t>(pl.request.budget_bytes));
  j.set("reserve_bytes", static_cast<int64_t>(pl.request.reserve_bytes));
  j.set("objective", plan_objective_name(pl.request.objective));
  j.set("activation_density", pl.density);
  j.set("planning_seconds", pl.plan.seconds);
  j.set("step_time_predictor", pl.predictor);
  j.set("configurations_laid_out", pl.plan.evaluated);
  j.set("chosen", candidate_json(pl.plan.ranked[pl.chosen]));
  j.set("threads", pl.threads);  // what training runs on (--auto-threads may lower it)
  j.set("chosen_predicted_step_ms", pl.predicted_step_seconds * 1e3);
  JsonValue all = JsonValue::array();
  for (const PlanCandidate& c : pl.plan.ranked) all.push_back(candidate_json(c));
  j.set("ranked", std::move(all));
  if (!pl.trials.empty()) {
    JsonValue t = JsonValue::array();
    for (const TrialResult& r : pl.trials) {
      JsonValue x = JsonValue::object();
      x.set("config", pl.plan.ranked[static_cast<size_t>(r.candidate)].label);
      x.set("first_loss", r.first_loss);
      x.set("last_loss", r.last_loss);
      x.set("seconds", r.seconds);
      x.set("loss_drop_per_second", r.loss_drop_per_second);
      t.push_back(std::move(x));
    }
    j.set("trials", std::move(t));
  }
  return j;
}

void print_plan(const Planned& pl) {
  std::fprintf(stderr, "plan: %d configurations laid out exactly in %.2f s; budget %s (reserve %s); objective %s; "
               "post-ReLU density %.2f\n",
               pl.plan.evaluated, pl.plan.seconds, format_bytes(static_cast<double>(pl.request.budget_bytes)).c_str(),
               format_bytes(static_cast<double>(pl.request.reserve_bytes)).c_str(), plan_objective_name(pl.request.objective),
               pl.density);
  std::fprintf(stderr, "step times: %s\n", pl.predictor.c_str());
  std::fprintf(stderr, "%s", plan_table(pl.plan).c_str());
  std::fprintf(stderr, "chosen: #%zu %s%s\n", pl.chosen + 1, pl.plan.ranked[pl.chosen].label.c_str(),
               pl.trials.empty() ? " (best predicted score)" : " (largest loss decrease per second in the trials)");
  if (!pl.threads_note.empty()) std::fprintf(stderr, "%s\n", pl.threads_note.c_str());
}

Status write_svg(const ArgParser& p, const Planned& pl, const ModelSpec& spec) {
  std::string path = p.str("svg");
  if (path.empty()) return Status::ok();
  TrainerOptions o = pl.request.base;
  o.config = pl.plan.ranked[pl.chosen].config;
  ET_ASSIGN_OR_RETURN(TrainingSchedule s, make_training_schedule(pl.request.factory, o.batch, o.config));
  ET_ASSIGN_OR_RETURN(ArenaLayout layout, layout_arena(s.graph));
  MemoryTimeline t = simulate_memory(s.graph, layout);
  ChartOptions co;
  co.title = model_name(spec) + ", batch " + std::to_string(o.batch);
  co.subtitle = pl.plan.ranked[pl.chosen].label;
  std::string svg = memory_timeline_svg(s.graph, t, co);
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return io_error("cannot write " + path);
  bool ok = std::fwrite(svg.data(), 1, svg.size(), f) == svg.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return io_error("writing " + path + " failed");
  std::fprintf(stderr, "memory timeline: %s\n", path.c_str());
  return Status::ok();
}

}  // namespace

int run_retrain(const ArgParser& p, const Dataset& train, const Dataset* test, const Preprocess& pre,
                const Preprocess& eval_pre, JsonValue* summary_out) {
  int size = static_cast<int>(output_height(train, pre));
  Result<ModelSpec> spec = model_spec(p, train.num_classes(), size, pre.out_channels);
  if (!spec.is_ok()) return fail(spec.status());
  Result<LrSchedule> schedule = lr_schedule(p);
  if (!schedule.is_ok()) return fail(schedule.status());
  Result<int64_t> epochs = p.integer("epochs");
  if (!epochs.is_ok()) return fail(epochs.status());

  // The probe runs first: besides measuring the data's activation density, it is the process's
  // first forward pass, which maps the kernels' code pages and OpenBLAS's packing buffers. Those
  // belong to the program, not to retraining, so the baseline is taken after it (all the
  // probe's own allocations are freed by then).
  // The model is loaded first, like the data: retraining trains these parameters in place.
  Result<ParameterStore> params = load_model_parameters(p, graph_factory(*spec), std::min<int64_t>(4, train.size()));
  if (!params.is_ok()) return fail(params.status());
  Result<double> density = probe_activation_density(graph_factory(*spec), *params, train, pre);
  if (!density.is_ok()) return fail(density.status());
  Result<int64_t> threads = p.integer("threads");
  if (!threads.is_ok()) return fail(threads.status());
  Predictor predictor = load_predictor(p, static_cast<int>(*threads));
  if (Status s = warm_up_training(graph_factory(*spec), *params, train, pre, static_cast<int>(*threads)); !s.is_ok())
    return fail(s);
  // Give freed heap memory back to the system first: otherwise the trainer could reuse pages the
  // set-up freed and the measurement below would miss them.
  malloc_trim(0);
  // Everything from here on counts against the budget.
  uint64_t rss_before = process_memory().rss;
  reset_peak_rss();
  Result<Planned> pl = plan_for(p, *spec, train, pre, *density, predictor, &*params);
  if (!pl.is_ok()) return fail(pl.status());
  if (Status s = choose_threads(p, predictor, &*pl); !s.is_ok()) return fail(s);
  print_plan(*pl);
  if (Status s = write_svg(p, *pl, *spec); !s.is_ok()) return fail(s);
  const PlanCandidate& chosen = pl->plan.ranked[pl->chosen];
  uint64_t planning_peak = process_memory().peak_rss - std::min(process_memory().peak_rss, rss_before);
  malloc_trim(0);  // the candidates' schedules are gone: hand their pages back before training

  TrainerOptions o = candidate_options(pl->request.base, chosen.config);
  o.threads = pl->threads;
  // AdaBN: re-estimate the norms' running statistics on the new data (forward passes only) in an
  // arena no larger than the chosen configuration's block, freed before the trainer allocates its
  // own. Frozen norms and running-statistic training normalise with these.
  std::optional<RecalibrationReport> recal;
  if (!p.has("no-recalibrate")) {
    Result<RecalibrationReport> rr = recalibrate_norms(pl->request.factory, *params, train, pre, o.batch,
                                                       chosen.memory.arena_block_bytes(), o.threads);
    if (!rr.is_ok()) return fail(rr.status());
    recal = *rr;
    malloc_trim(0);
  }
  Result<std::unique_ptr<Trainer>> trainer = Trainer::create(pl->request.factory, o, &*params);
  if (!trainer.is_ok()) return fail(trainer.status());
  Trainer& t = **trainer;
  LoopOptions lo;
  lo.epochs = *epochs;
  lo.seed = o.init_seed;
  lo.label = "retrain";
  LrSchedule sched = *schedule;
  lo.learning_rate = [sched](int64_t step, int64_t total) { return learning_rate_at(sched, step, total); };
  Result<TrainReport> tr = train_epochs(t, train, pre, lo);
  if (!tr.is_ok()) return fail(tr.status());
  JsonValue& summary = *summary_out;
  summary = JsonValue::object();
  summary.set("model", model_name(*spec));
  summary.set("plan", plan_json(*pl));
  if (recal) {
    JsonValue rj = JsonValue::object();
    rj.set("images", recal->images);
    rj.set("batch", recal->batch);
    rj.set("norms", static_cast<int64_t>(recal->norms));
    rj.set("arena_bytes", static_cast<int64_t>(recal->arena_bytes));
    rj.set("seconds", recal->seconds);
    summary.set("norm_recalibration", std::move(rj));
  }
  if (test != nullptr && test->size() > 0) {
    Result<EvalReport> ev = evaluate(t, *test, eval_pre, "test");
    if (!ev.is_ok()) return fail(ev.status());
    JsonValue e = JsonValue::object();
    e.set("accuracy", ev->accuracy);
    e.set("mean_loss", ev->mean_loss);
    e.set("images", ev->images);
    summary.set("test", std::move(e));
    std::fprintf(stderr, "test accuracy %.4f (%lld images)\n", ev->accuracy, static_cast<long long>(ev->images));
  }
  uint64_t used = process_memory().peak_rss - std::min(process_memory().peak_rss, rss_before);
  // The training loop resets the peak: planning (with its trials) is checked on its own.
  bool within = used <= pl->request.budget_bytes && planning_peak <= pl->request.budget_bytes;
  std::fprintf(stderr,
               "retrained %lld steps in %s: median step %.1f ms (predicted %.1f), fallback steps %lld; memory: planned %s, "
               "measured peak RSS increase %s, budget %s: %s\n",
               static_cast<long long>(tr->steps), format_seconds(tr->seconds).c_str(), tr->median_step_ms,
               pl->predicted_step_seconds * 1e3, static_cast<long long>(t.fallback_steps()),
               format_bytes(static_cast<double>(chosen.predicted_peak)).c_str(), format_bytes(static_cast<double>(used)).c_str(),
               format_bytes(static_cast<double>(pl->request.budget_bytes)).c_str(), within ? "within" : "EXCEEDED");
  // Steps far from their prediction: plans rank configurations by these predictions, so say why
  // they may be off and what measures them again (2026-12-07: the demo's steps ran 1.2x the
  // predictions of a profile measured five hours earlier on a host that had slowed since).
  const double step_ratio =
      pl->predicted_step_seconds > 0 ? tr->median_step_ms / (pl->predicted_step_seconds * 1e3) : 0.0;
  if (predictor.cost_model != nullptr && step_ratio > 0 && (step_ratio > 1.15 || step_ratio < 1 / 1.15))
    std::fprintf(stderr,
                 "note: the steps took %.2fx their predicted time: this machine runs %s than when `edgetrain profile` "
                 "measured it, or the cost models predict this configuration poorly; plans rank configurations by these "
                 "predictions, and `edgetrain profile` measures them again (about 8 minutes)\n",
                 step_ratio, step_ratio > 1 ? "slower (or is busier)" : "faster");
  JsonValue m = JsonValue::object();
  m.set("planning_peak_rss_increase_bytes", static_cast<int64_t>(planning_peak));
  m.set("planned_peak_bytes", static_cast<int64_t>(chosen.predicted_peak));
  m.set("measured_peak_rss_increase_bytes", static_cast<int64_t>(used));
  m.set("budget_bytes", static_cast<int64_t>(pl->request.budget_bytes));
  m.set("within_budget", within);
  summary.set("memory", std::move(m));
  JsonValue tj = JsonValue::object();
  tj.set("steps", tr->steps);
  tj.set("seconds", tr->seconds);
  tj.set("median_step_ms", tr->median_step_ms);
  tj.set("predicted_step_ms", pl->predicted_step_seconds * 1e3);
  tj.set("threads", pl->threads);
  tj.set("fallback_steps", t.fallback_steps());
  summary.set("train", std::move(tj));
  std::string out = p.str("out");
  if (!out.empty()) {
    std::map<std::string, std::string> meta{{"model", model_name(*spec)}, {"producer", "edgetrain retrain"},
                                            {"config", chosen.label}};
    if (Status s = save_weights(out, t.params(), meta); !s.is_ok()) return fail(s);
    std::fprintf(stderr, "saved weights to %s\n", out.c_str());
    summary.set("weights", out);
  }
  return within ? 0 : 3;
}

void add_retrain_command_options(ArgParser& p) {
  add_model_options(p);
  add_data_options(p);
  add_training_options(p);
  add_plan_options(p);
  p.option("out", "FILE", "", "write the retrained weights here (atomically)");
  p.flag("json", "print a JSON summary on stdout at the end");
}

int cmd_retrain(int argc, char** argv) {
  ArgParser p("retrain",
              "Load weights, choose the m-hyperparameters under --budget, retrain on new data and save the weights.\n"
              "The budget covers everything retraining adds to the process (see the README); a budget no\n"
              "configuration fits fails at once with the smallest budget that would work. The planner chooses\n"
              "micro-batches, freezing, checkpointing and compression; --batch is the effective batch.");
  add_retrain_command_options(p);
  if (Status s = p.parse(argc, argv, 1); !s.is_ok()) return fail(s);
  if (p.help_requested()) {
    std::printf("%s", p.help_text().c_str());
    return 0;
  }
  Result<DataChoice> data = load_data(p, /*need_train=*/true);
  if (!data.is_ok()) return fail(data.status());
  JsonValue summary;
  int rc = run_retrain(p, data->train, &data->test, data->train_pre, data->eval_pre, &summary);
  if ((rc == 0 || rc == 3) && p.has("json")) std::printf("%s\n", to_json_pretty(summary).c_str());
  return rc;
}

int cmd_plan(int argc, char** argv) {
  ArgParser p("plan",
              "Choose the m-hyperparameters for retraining a model under a memory budget and show the choice, the\n"
              "runners-up and their predicted peak memory and step time (with --trials: short emulated runs).");
  add_model_options(p);
  add_data_options(p);
  add_training_options(p);
  add_plan_options(p);
  p.flag("json", "print the plan as JSON on stdout");
  if (Status s = p.parse(argc, argv, 1); !s.is_ok()) return fail(s);
  if (p.help_requested()) {
    std::printf("%s", p.help_text().c_str());
    return 0;
  }
  Result<DataChoice> data = load_data(p, /*need_train=*/true);
  if (!data.is_ok()) return fail(data.status());
  int size = static_cast<int>(output_height(data->train, data->train_pre));
  Result<ModelSpec> spec = model_spec(p, data->train.num_classes(), size, data->train_pre.out_channels);
  if (!spec.is_ok()) return fail(spec.status());
  Result<ParameterStore> params =
      load_model_parameters(p, graph_factory(*spec), std::min<int64_t>(4, data->train.size()));
  if (!params.is_ok()) return fail(params.status());
  Result<double> density = probe_activation_density(graph_factory(*spec), *params, data->train, data->train_pre);
  if (!density.is_ok()) return fail(density.status());
  Result<int64_t> threads = p.integer("threads");
  if (!threads.is_ok()) return fail(threads.status());
  Predictor predictor = load_predictor(p, static_cast<int>(*threads));
  Result<Planned> pl = plan_for(p, *spec, data->train, data->train_pre, *density, predictor, &*params);
  if (!pl.is_ok()) return fail(pl.status());
  if (Status s = choose_threads(p, predictor, &*pl); !s.is_ok()) return fail(s);
  print_plan(*pl);
  if (Status s = write_svg(p, *pl, *spec); !s.is_ok()) return fail(s);
  if (p.has("json")) std::printf("%s\n", to_json_pretty(plan_json(*pl)).c_str());
  return 0;
}

}  // namespace edgetrain::cli
