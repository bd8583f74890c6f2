#include "planner/step_config.h"

#include <cstdio>

#include "runtime/freezing.h"

namespace edgetrain {

TrainConfig StepConfig::train_config() const {
  TrainConfig t;
  t.optimizer.kind = optimizer;
  t.optimizer.attrs.momentum = optimizer == OptimizerKind::kSgd ? momentum : 0.0f;
  t.freeze.mode = freeze;
  t.freeze.frozen_prefix_layers = frozen_prefix_layers;
  if (checkpoint_segments > 0) {
    t.checkpoint.mode = CheckpointMode::kSqrtBytes;
    t.checkpoint.segments = checkpoint_segments == 1 ? 0 : checkpoint_segments;
  }
  t.compression.sparse_activations = sparse_activations;
  t.compression.capacity = sparse_capacity;
  t.compression.relu_masks = relu_masks;
  t.compression.recompute_norm_outputs = recompute_norms;
  t.micro_batches = micro_batches;
  t.norm_statistics = norm_statistics;
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
  if (checkpoint_segments == 1) s += " ckpt";
  if (checkpoint_segments > 1) s += " ckpt:" + std::to_string(checkpoint_segments);
  if (sparse_activations) s += " sparse";
  if (relu_masks) s += " masks";
  if (!recompute_norms) s += " norms-kept";
  if (micro_batches > 1) s += " mb" + std::to_string(micro_batches);
  if (norm_statistics == NormStatistics::kRunning) s += " running-norms";
  return s;
}

bool StepConfig::operator==(const StepConfig& o) const {
  return model.arch == o.model.arch && model.width_mult == o.model.width_mult &&
         model.num_classes == o.model.num_classes && model.input_size == o.model.input_size &&
         model.in_channels == o.model.in_channels && batch == o.batch && optimizer == o.optimizer &&
         momentum == o.momentum && freeze == o.freeze && frozen_prefix_layers == o.frozen_prefix_layers &&
         checkpoint_segments == o.checkpoint_segments && sparse_activations == o.sparse_activations &&
         sparse_capacity == o.sparse_capacity && relu_masks == o.relu_masks &&
         recompute_norms == o.recompute_norms && micro_batches == o.micro_batches &&
         norm_statistics == o.norm_statistics;
}

GraphFactory step_graph_factory(const StepConfig& c) {
  const ModelSpec spec = c.model;
  return [spec](int64_t batch, bool training) { return build_model(spec, batch, training); };
}

Result<Graph> build_step_graph(const StepConfig& c) {
  ET_ASSIGN_OR_RETURN(TrainingSchedule s, make_training_schedule(step_graph_factory(c), c.batch, c.train_config()));
  return std::move(s.graph);
}

uint64_t schedule_hash(const Graph& g) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a, 64 bits
  auto mix = [&](const std::string& text) {
    for (unsigned char ch : text) h = (h ^ ch) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;  // separator
  };
  for (const Node& n : g.nodes) {
    mix(n.layer);
    mix(op_name(n.op));
  }
  return h;
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
  j.set("checkpoint_segments", c.checkpoint_segments);
  j.set("sparse_activations", c.sparse_activations);
  j.set("sparse_capacity", static_cast<double>(c.sparse_capacity));
  j.set("relu_masks", c.relu_masks);
  j.set("recompute_norms", c.recompute_norms);
  j.set("micro_batches", c.micro_batches);
  j.set("norm_statistics", c.norm_statistics == NormStatistics::kRunning ? "running" : "batch");
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
  c.checkpoint_segments = static_cast<int>(j.get_int("checkpoint_segments", 0));
  c.sparse_activations = j.get_bool("sparse_activations");
  c.sparse_capacity = static_cast<float>(j.get_double("sparse_capacity", 0.75));
  c.relu_masks = j.get_bool("relu_masks");
  c.recompute_norms = j.get_bool("recompute_norms");  // absent (false) in profiles before 2026-12-07
  c.micro_batches = static_cast<int>(j.get_int("micro_batches", 1));
  // Absent in profiles written before the planner's running-statistics variant was profiled.
  const std::string norms = j.get_string("norm_statistics", "batch");
  if (norms != "batch" && norms != "running")
    return corrupt_data("step config: unknown norm_statistics '" + norms + "' (expected batch or running)");
  c.norm_statistics = norms == "running" ? NormStatistics::kRunning : NormStatistics::kBatch;
  if (c.micro_batches < 1 || c.checkpoint_segments < 0)
    return corrupt_data("step config: micro_batches must be >= 1 and checkpoint_segments >= 0");
  return c;
}

}  // namespace edgetrain
