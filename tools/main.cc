// The edgetrain command-line program.
#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "runtime/blas_env.h"
#include "tools/commands.h"

namespace {

const char* kUsage =
    "usage: edgetrain <command> [options]     (edgetrain <command> --help for its options)\n"
    "\n"
    "commands:\n"
    "  demo      pretrain MobileNetV2 on Fashion-MNIST and report accuracy, time and memory\n"
    "  train     train a model on a dataset, save weights (safetensors)\n"
    "  eval      evaluate saved weights on a dataset's test split\n"
    "  plan      choose micro-batches, freezing, checkpointing, compression under a memory budget\n"
    "  retrain   plan under --budget, retrain on new data, save weights atomically\n"
    "  memory    where a training step's memory goes: text report and SVG chart\n"
    "  bench     time training steps and peak memory on synthetic data (--profile: per layer kind)\n"
    "  profile   time this machine's kernels and fit the planner's cost models\n"
    "  info      version, CPU, OpenBLAS core and threads\n"
    "  --version\n";

}  // namespace

int main(int argc, char** argv) {
  // Large blocks (arenas, parameter stores) always come from mmap and go back to the system when
  // freed, so the memory one phase frees is not silently reused by the next phase's RSS budget.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  // Before anything uses BLAS: re-run with OPENBLAS_CORETYPE set if OpenBLAS picked slow kernels.
  edgetrain::ensure_fast_blas(argc, argv);
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    std::printf("%s", kUsage);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  using namespace edgetrain::cli;
  if (cmd == "--version" || cmd == "info") return cmd_info(argc - 1, argv + 1);
  if (cmd == "train") return cmd_train(argc - 1, argv + 1);
  if (cmd == "eval") return cmd_eval(argc - 1, argv + 1);
  if (cmd == "memory") return cmd_memory(argc - 1, argv + 1);
  if (cmd == "demo") return cmd_demo(argc - 1, argv + 1);
  if (cmd == "plan") return cmd_plan(argc - 1, argv + 1);
  if (cmd == "retrain") return cmd_retrain(argc - 1, argv + 1);
  if (cmd == "bench") return cmd_bench(argc - 1, argv + 1);
  if (cmd == "profile") return cmd_profile(argc - 1, argv + 1);
  std::fprintf(stderr, "edgetrain: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
