// What train, eval, demo (and later retrain/plan) share: the model, data and optimizer options,
// and turning parsed options into datasets, a model spec and trainer options.
#pragma once

#include <string>

#include "data/dataset.h"
#include "data/transforms.h"
#include "models/model_zoo.h"
#include "optimizer/lr_schedule.h"
#include "runtime/json.h"
#include "runtime/trainer.h"
#include "tools/cli_common.h"

namespace edgetrain::cli {

void add_model_options(ArgParser& p);
void add_data_options(ArgParser& p);
void add_training_options(ArgParser& p);

struct DataChoice {
  Dataset train;
  Dataset test;          // size() == 0 when the source has no test split
  Preprocess train_pre;  // with augmentation when asked
  Preprocess eval_pre;
  std::string description;
};

// --data fashion-mnist[:DIR] | DIR with IDX files | image folder (DIR/train + DIR/val|test, or
// DIR/<class>/...); --limit, --test-limit, --image-size, --augment.
Result<DataChoice> load_data(const ArgParser& p, bool need_train);
// --model, --width; classes and input size come from the data.
Result<ModelSpec> model_spec(const ArgParser& p, int classes, int input_size, int channels);
GraphFactory graph_factory(const ModelSpec& spec);
// --batch, --threads, --optimizer, --momentum, --nesterov, --weight-decay, --freeze*, --seed.
Result<TrainerOptions> trainer_options(const ArgParser& p);
Result<LrSchedule> lr_schedule(const ArgParser& p);
// "none", "sqrt", "sqrt:S", "manual:C1,C2", "budget:64MiB".
Result<CheckpointConfig> parse_checkpoint(const std::string& spec);
// --weights: loads into the trainer's parameters (classifier skipped with --skip-classifier).
Status load_initial_weights(const ArgParser& p, Trainer& t);
Status load_initial_weights(const ArgParser& p, ParameterStore& params);
// The model's parameters as retraining starts from them: initialised with --seed, then --weights
// (honouring --skip-classifier). `batch` only sizes the graph the specs are read from.
Result<ParameterStore> load_model_parameters(const ArgParser& p, const GraphFactory& factory, int64_t batch);
// Puts `params` back to what load_model_parameters gave (after trials trained them in place).
Status reset_model_parameters(const ArgParser& p, ParameterStore& params);

JsonValue memory_json(const Trainer& t);

}  // namespace edgetrain::cli
