#include "planner/step_config.h"

#include <cstdio>

#include "runtime/autodiff.h"
#include "runtime/freezing.h"
#include "runtime/schedule.h"

namespace edgetrain {

TrainConfig StepConfig::train_config() const {
  TrainConfig t;
  t.optimizer.kind = optimizer;
  t.optimizer.attrs.momentum = optimizer == OptimizerKind::kSgd ? momentum : 0.0f;
  t.freeze.mode = freeze;
  t.freeze.frozen_prefix_layers = frozen_prefix_layers;
  return t;
}

std::string StepConfig::describe() const {
  char buf[160];
  std::string name = model_name(model);
  if (model.arch == Architecture::kMobileNetV2) {
    char w[32];
    std::snprintf(w, sizeof(w), " w%g", static_cast<double>(model.width_mult));
    name += w;
  }
  std::string opt = optimizer == OptimizerKind::kAdamW ? "adamw" : (momentum != 0.0f ? "sgd(m)" : "sgd");
  std::snprintf(buf, sizeof(buf), "%s %dpx b%lld %s", name.c_str(), model.input_size,
                static_cast<long long>(batch), opt.c_str());
  std::string s = buf;
  if (freeze != FreezeMode::kNone) s += std::string(" ") + freeze_mode_name(freeze);
  if (frozen_prefix_layers > 0) s += " frozen<" + std::to_string(frozen_prefix_layers);
  return s;
}

bool StepConfig::operator==(const StepConfig& o) const {
  return model.arch == o.model.arch && model.width_mult == o.model.width_mult &&
         model.num_classes == o.model.num_classes && model.input_size == o.model.input_size &&
         model.in_channels == o.model.in_channels && batch == o.batch && optimizer == o.optimizer &&
         momentum == o.momentum && freeze == o.freeze && frozen_prefix_layers == o.frozen_prefix_layers;
}

Result<Graph> build_step_graph(const StepConfig& c) {
  ET_ASSIGN_OR_RETURN(Graph forward, build_model(c.model, c.batch, /*training=*/true));
  const TrainConfig t = c.train_config();
  ET_ASSIGN_OR_RETURN(std::vector<bool> trainable, resolve_trainable(forward, t.freeze));
  ET_ASSIGN_OR_RETURN(Graph g, build_training_graph(forward, trainable, t));
  ET_RETURN_IF_ERROR(finalize_schedule(g));
  return g;
}

JsonValue step_config_to_json(const StepConfig& c) {
  JsonValue j = JsonValue::object();
  j.set("model", model_name(c.model));
  j.set("width", static_cast<double>(c.model.width_mult));
  j.set("classes", c.model.num_classes);
  j.set("input_size", c.model.input_size);
  j.set("in_channels", c.model.in_channels);
  j.set("batch", c.batch);
  j.set("optimizer", c.optimizer == OptimizerKind::kAdamW ? "adamw" : "sgd");
  j.set("momentum", static_cast<double>(c.momentum));
  j.set("freeze", freeze_mode_name(c.freeze));
  j.set("frozen_prefix_layers", c.frozen_prefix_layers);
  return j;
}

Result<StepConfig> step_config_from_json(const JsonValue& j) {
  if (!j.is_object()) return corrupt_data("step config: expected an object");
  StepConfig c;
  const float width = static_cast<float>(j.get_double("width", 1.0));
  ET_ASSIGN_OR_RETURN(c.model, parse_model_spec(j.get_string("model"), width,
                                                static_cast<int>(j.get_int("classes", 10)),
                                                static_cast<int>(j.get_int("input_size", 32))));
  c.model.in_channels = static_cast<int>(j.get_int("in_channels", 3));
  c.batch = j.get_int("batch", 0);
  if (c.batch < 1) return corrupt_data("step config: batch must be at least 1");
  const std::string opt = j.get_string("optimizer");
  if (opt != "sgd" && opt != "adamw") return corrupt_data("step config: unknown optimizer '" + opt + "'");
  c.optimizer = opt == "adamw" ? OptimizerKind::kAdamW : OptimizerKind::kSgd;
  c.momentum = static_cast<float>(j.get_double("momentum", 0.0));
  ET_ASSIGN_OR_RETURN(c.freeze, parse_freeze_mode(j.get_string("freeze", "none")));
  c.frozen_prefix_layers = static_cast<int>(j.get_int("frozen_prefix_layers", 0));
  return c;
}

}  // namespace edgetrain
