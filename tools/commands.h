// The subcommands of the edgetrain program. Each returns the process exit code.
#pragma once

#include "data/dataset.h"
#include "data/transforms.h"
#include "runtime/json.h"
#include "runtime/status.h"
#include "tools/cli_common.h"

namespace edgetrain::cli {

int cmd_train(int argc, char** argv);  // argv[0] is "train"
int cmd_eval(int argc, char** argv);
int cmd_demo(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_memory(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_profile(int argc, char** argv);

// The train command's options and body, shared with the demo. Fills `summary` (the --json text).
void add_train_command_options(ArgParser& p);
int run_train(const ArgParser& p, JsonValue* summary);

int cmd_plan(int argc, char** argv);
int cmd_retrain(int argc, char** argv);
// The retrain command's options and body, shared with the demo (which passes shifted data).
void add_retrain_command_options(ArgParser& p);
int run_retrain(const ArgParser& p, const Dataset& train, const Dataset* test, const Preprocess& pre,
                const Preprocess& eval_pre, JsonValue* summary);

// Prints "edgetrain: <status>" to stderr and returns exit code 1 (2 for bad usage).
int fail(const Status& s);

}  // namespace edgetrain::cli
