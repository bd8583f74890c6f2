// `edgetrain train` and `edgetrain eval`.
#include <cstdio>

#include "models/weights.h"
#include "runtime/blas_env.h"
#include "tools/commands.h"
#include "tools/setup.h"
#include "tools/training_loop.h"

namespace edgetrain::cli {

int fail(const Status& s) {
  std::fprintf(stderr, "edgetrain: %s\n", s.to_string().c_str());
  return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

namespace {

JsonValue report_json(const TrainReport& r) {
  JsonValue j = JsonValue::object();
  j.set("steps", r.steps);
  j.set("images", r.images);
  j.set("seconds", r.seconds);
  j.set("images_per_second", r.images_per_second);
  j.set("median_step_ms", r.median_step_ms);
  j.set("last_epoch_loss", r.last_epoch_loss);
  j.set("peak_rss_bytes", static_cast<int64_t>(r.peak_rss));
  return j;
}

JsonValue eval_json(const EvalReport& r) {
  JsonValue j = JsonValue::object();
  j.set("accuracy", r.accuracy);
  j.set("mean_loss", r.mean_loss);
  j.set("images", r.images);
  j.set("seconds", r.seconds);
  return j;
}

}  // namespace

void add_train_command_options(ArgParser& p) {
  add_model_options(p);
  add_data_options(p);
  add_training_options(p);
  p.option("out", "FILE", "", "write the trained weights here (atomically: an old file survives a failure)");
  p.flag("json", "print a JSON summary on stdout at the end");
}

int cmd_train(int argc, char** argv) {
  ArgParser p("train", "Train a model on a dataset and save its weights (safetensors, torchvision names).");
  add_train_command_options(p);
  if (Status s = p.parse(argc, argv, 1); !s.is_ok()) return fail(s);
  if (p.help_requested()) {
    std::printf("%s", p.help_text().c_str());
    return 0;
  }
  JsonValue summary;
  int rc = run_train(p, &summary);
  if (rc == 0 && p.has("json")) std::printf("%s\n", to_json_pretty(summary).c_str());
  return rc;
}

int run_train(const ArgParser& p, JsonValue* summary_out) {
  Result<DataChoice> data = load_data(p, /*need_train=*/true);
  if (!data.is_ok()) return fail(data.status());
  const Dataset& train = data->train;
  int size = static_cast<int>(output_height(train, data->train_pre));
  Result<ModelSpec> spec = model_spec(p, train.num_classes(), size, data->train_pre.out_channels);
  if (!spec.is_ok()) return fail(spec.status());
  Result<TrainerOptions> opts = trainer_options(p);
  if (!opts.is_ok()) return fail(opts.status());
  Result<LrSchedule> schedule = lr_schedule(p);
  if (!schedule.is_ok()) return fail(schedule.status());
  Result<int64_t> epochs = p.integer("epochs");
  if (!epochs.is_ok()) return fail(epochs.status());
  if (*epochs <= 0) return fail(invalid_argument("--epochs must be positive"));

  uint64_t rss_before = process_memory().rss;
  Result<std::unique_ptr<Trainer>> trainer = Trainer::create(graph_factory(*spec), *opts);
  if (!trainer.is_ok()) return fail(trainer.status());
  Trainer& t = **trainer;
  if (Status s = load_initial_weights(p, t); !s.is_ok()) return fail(s);
  std::fprintf(stderr, "edgetrain train: %s on %s: %lld training images, batch %lld, %lld trainable parameters, arena %s\n",
               model_name(*spec).c_str(), data->description.c_str(), static_cast<long long>(train.size()),
               static_cast<long long>(opts->batch), static_cast<long long>(t.trainable_param_count()),
               format_bytes(static_cast<double>(t.train_executor().arena_bytes())).c_str());
  std::fprintf(stderr, "  %s\n", blas_summary().c_str());

  LoopOptions lo;
  lo.epochs = *epochs;
  lo.seed = opts->init_seed;
  LrSchedule sched = *schedule;
  lo.learning_rate = [sched](int64_t step, int64_t total) { return learning_rate_at(sched, step, total); };
  Result<TrainReport> tr = train_epochs(t, train, data->train_pre, lo);
  if (!tr.is_ok()) return fail(tr.status());
  std::fprintf(stderr, "trained %lld steps in %s (%.0f images/s, median step %.1f ms), last epoch loss %.4f, peak RSS %s\n",
               static_cast<long long>(tr->steps), format_seconds(tr->seconds).c_str(), tr->images_per_second,
               tr->median_step_ms, tr->last_epoch_loss, format_bytes(static_cast<double>(tr->peak_rss)).c_str());

  JsonValue& summary = *summary_out;
  summary = JsonValue::object();
  summary.set("model", model_name(*spec));
  summary.set("data", data->description);
  summary.set("train", report_json(*tr));
  summary.set("memory", memory_json(t));
  summary.set("rss_before_training_bytes", static_cast<int64_t>(rss_before));
  summary.set("blas", blas_summary());
  if (data->test.size() > 0) {
    Result<EvalReport> ev = evaluate(t, data->test, data->eval_pre, "test");
    if (!ev.is_ok()) return fail(ev.status());
    std::fprintf(stderr, "test accuracy %.4f (%lld images), mean loss %.4f\n", ev->accuracy,
                 static_cast<long long>(ev->images), ev->mean_loss);
    summary.set("test", eval_json(*ev));
  }
  std::string out = p.str("out");
  if (!out.empty()) {
    std::map<std::string, std::string> meta{{"model", model_name(*spec)}, {"producer", "edgetrain train"}};
    if (Status s = save_weights(out, t.params(), meta); !s.is_ok()) return fail(s);
    std::fprintf(stderr, "saved weights to %s\n", out.c_str());
    summary.set("weights", out);
  }
  return 0;
}

int cmd_eval(int argc, char** argv) {
  ArgParser p("eval", "Evaluate a model's accuracy on a dataset's test split.");
  add_model_options(p);
  add_data_options(p);
  p.option("batch", "N", "100", "evaluation batch size");
  p.flag("json", "print a JSON summary on stdout");
  if (Status s = p.parse(argc, argv, 1); !s.is_ok()) return fail(s);
  if (p.help_requested()) {
    std::printf("%s", p.help_text().c_str());
    return 0;
  }
  if (p.str("weights").empty()) return fail(invalid_argument("eval needs --weights FILE"));
  Result<DataChoice> data = load_data(p, /*need_train=*/false);
  if (!data.is_ok()) return fail(data.status());
  if (data->test.size() == 0) return fail(invalid_argument("--data '" + p.str("data") + "' has no test split"));
  int size = static_cast<int>(output_height(data->test, data->eval_pre));
  Result<ModelSpec> spec = model_spec(p, data->test.num_classes(), size, data->eval_pre.out_channels);
  if (!spec.is_ok()) return fail(spec.status());
  Result<int64_t> batch = p.integer("batch");
  if (!batch.is_ok()) return fail(batch.status());
  TrainerOptions o;
  o.batch = 1;
  o.eval_batch = *batch;
  o.config.freeze.mode = FreezeMode::kClassifierOnly;  // the training schedule stays tiny
  Result<int64_t> threads = p.integer("threads");
  if (!threads.is_ok()) return fail(threads.status());
  o.threads = static_cast<int>(*threads);
  set_blas_threads(o.threads);
  Result<std::unique_ptr<Trainer>> trainer = Trainer::create(graph_factory(*spec), o);
  if (!trainer.is_ok()) return fail(trainer.status());
  if (Status s = load_initial_weights(p, **trainer); !s.is_ok()) return fail(s);
  Result<EvalReport> ev = evaluate(**trainer, data->test, data->eval_pre, "test");
  if (!ev.is_ok()) return fail(ev.status());
  std::fprintf(stderr, "%s on %s: accuracy %.4f (%lld images), mean loss %.4f, %s\n", model_name(*spec).c_str(),
               data->description.c_str(), ev->accuracy, static_cast<long long>(ev->images), ev->mean_loss,
               format_seconds(ev->seconds).c_str());
  if (p.has("json")) std::printf("%s\n", to_json_pretty(eval_json(*ev)).c_str());
  return 0;
}

}  // namespace edgetrain::cli
