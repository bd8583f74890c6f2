// `edgetrain demo`: the README's first command. Pretrains MobileNetV2 (width 0.5) on
// Fashion-MNIST with the PyTorch peer's recipe (shared/peers/torch_fmnist_retrain.py: batch 128,
// SGD Nesterov momentum 0.9, weight decay 4e-5, lr 0.1 with linear warm-up and cosine decay,
// 28x28 padded to 32x32, 3 channels) and reports test accuracy, time and memory.
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "runtime/blas_env.h"
#include "tools/commands.h"

namespace edgetrain::cli {

int cmd_demo(int argc, char** argv) {
  ArgParser d("demo", "Pretrain MobileNetV2 (width 0.5) on Fashion-MNIST and report test accuracy, time and memory.");
  d.option("epochs", "N", "2", "pretraining epochs (the PyTorch peer reaches 86.6% in 2)");
  d.option("limit", "N", "-1", "use only the first N training images (a quick look)");
  d.option("out-dir", "DIR", "out/demo", "where the pretrained weights go");
  d.option("threads", "N", "2", "threads");
  d.option("data", "SRC", "fashion-mnist", "Fashion-MNIST location (see edgetrain train --help)");
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
  // 60000 / 128 = 468 steps per epoch (the last partial batch is dropped); warm-up as the peer:
  // min(200, total / 10) steps.
  int64_t total = 468 * *epochs;
  std::vector<std::string> args = {"train",        "--model",     "mobilenet_v2", "--width",    "0.5",
                                   "--data",       d.str("data"), "--epochs",     std::to_string(*epochs),
                                   "--batch",      "128",         "--lr",         "0.1",
                                   "--schedule",   "cosine:warmup=" + std::to_string(std::min<int64_t>(200, total / 10)),
                                   "--nesterov",   "--momentum",  "0.9",          "--weight-decay", "4e-5",
                                   "--limit",      d.str("limit"), "--threads",   d.str("threads"),
                                   "--out",        weights};
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
  return 0;
}

}  // namespace edgetrain::cli
