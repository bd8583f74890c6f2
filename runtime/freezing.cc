#include "runtime/freezing.h"

#include <fnmatch.h>

#include <algorithm>

namespace edgetrain {

const char* freeze_mode_name(FreezeMode m) {
  switch (m) {
    case FreezeMode::kNone: return "none";
    case FreezeMode::kBiasOnly: return "bias-only";
    case FreezeMode::kNormOnly: return "norm-only";
    case FreezeMode::kClassifierOnly: return "classifier-only";
    case FreezeMode::kNormAndBias: return "norm-and-bias";
  }
  return "?";
}

const char* norm_statistics_name(NormStatistics n) {
  switch (n) {
    case NormStatistics::kBatch: return "batch";
    case NormStatistics::kRunning: return "running";
  }
  return "?";
}

Result<FreezeMode> parse_freeze_mode(const std::string& s) {
  for (FreezeMode m : {FreezeMode::kNone, FreezeMode::kBiasOnly, FreezeMode::kNormOnly, FreezeMode::kClassifierOnly,
                       FreezeMode::kNormAndBias})
    if (s == freeze_mode_name(m)) return m;
  return invalid_argument("unknown freeze mode '" + s + "' (valid: none, bias-only, norm-only, norm-and-bias, classifier-only)");
}

Result<std::vector<bool>> resolve_trainable(const Graph& g, const FreezeConfig& freeze) {
  std::vector<bool> trainable(g.params.size(), false);
  int last_layer = -1;
  for (const ParamSpec& p : g.params) last_layer = std::max(last_layer, p.layer_index);
  if (freeze.frozen_prefix_layers < 0 || freeze.frozen_prefix_layers > g.layer_count)
    return invalid_argument("cannot freeze " + std::to_string(freeze.frozen_prefix_layers) + " layers: the model has " +
                            std::to_string(g.layer_count));
  if (freeze.frozen_suffix_layers < 0 || freeze.frozen_suffix_layers >= g.layer_count)
    return invalid_argument("cannot freeze the last " + std::to_string(freeze.frozen_suffix_layers) +
                            " layers before the classifier: the model has " + std::to_string(g.layer_count));
  for (size_t i = 0; i < g.params.size(); ++i) {
    const ParamSpec& p = g.params[i];
    if (!param_kind_is_trainable(p.kind)) continue;
    bool on = false;
    switch (freeze.mode) {
      case FreezeMode::kNone: on = true; break;
      case FreezeMode::kBiasOnly: on = p.kind == ParamKind::kBias || p.kind == ParamKind::kNormBias || p.layer_index == last_layer; break;
      case FreezeMode::kNormOnly: on = p.kind == ParamKind::kNormWeight || p.kind == ParamKind::kNormBias; break;
      case FreezeMode::kClassifierOnly: on = p.layer_index == last_layer; break;
      case FreezeMode::kNormAndBias:
        on = p.kind == ParamKind::kBias || p.kind == ParamKind::kNormBias || p.kind == ParamKind::kNormWeight ||
             p.layer_index == last_layer;
        break;
    }
    if (p.layer_index < freeze.frozen_prefix_layers) on = false;
    if (p.layer_index < last_layer && p.layer_index >= last_layer - freeze.frozen_suffix_layers) on = false;
    trainable[i] = on;
  }
  for (const std::string& pattern : freeze.frozen_patterns) {
    bool matched = false;
    for (size_t i = 0; i < g.params.size(); ++i) {
      if (fnmatch(pattern.c_str(), g.params[i].name.c_str(), 0) == 0) {
        trainable[i] = false;
        matched = true;
      }
    }
    if (!matched) return invalid_argument("freeze pattern '" + pattern + "' matches no parameter name");
  }
  if (std::none_of(trainable.begin(), trainable.end(), [](bool b) { return b; }))
    return invalid_argument("the freeze configuration leaves no parameter to train");
  return trainable;
}

}  // namespace edgetrain
