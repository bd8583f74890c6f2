#include "planner/refeaturize.h"

#include <unistd.h>

#include <cstdio>
#include <map>
#include <utility>
#include <vector>

#include "planner/step_config.h"

namespace edgetrain {

std::string node_key(const std::string& layer, OpClass c, int occurrence) {
  return layer + "|" + op_class_name(c) + "|" + std::to_string(occurrence);
}

namespace {

// What the user should know of a profile whose rows are stale and cannot be rebuilt.
std::string stale_note(const Profile& p) {
  return "the profile's kernel samples carry features of an older edgetrain (version " +
          std::to_string(p.features_version) + ", this one " + std::to_string(kFeatureVersion) +
          ") and do not say where they came from: predictions may be off; run `edgetrain profile` again";
}

}  // namespace

bool can_refeaturize(const Profile& p) {
  for (const KernelSample& s : p.kernels)
    if (s.config_index < 0 || s.config_index >= static_cast<int>(p.configs.size()) || s.node.empty()) return false;
  return true;
}

Result<RefeaturizeSummary> refeaturize_profile(Profile* p) {
  if (!can_refeaturize(*p))
    return invalid_argument(
        "the profile does not say where its kernel samples came from (measured before edgetrain stored it): "
        "run `edgetrain profile` again");
  // First every used configuration's features by node key (a configuration that no longer builds
  // fails here, before p changes), then the rows.
  std::vector<std::map<std::string, FeatureRow>> rows(p->configs.size());
  std::vector<bool> used(p->configs.size(), false);
  for (const KernelSample& s : p->kernels) used[static_cast<size_t>(s.config_index)] = true;
  for (size_t ci = 0; ci < p->configs.size(); ++ci) {
    if (!used[ci]) continue;
    Result<Graph> g = build_step_graph(p->configs[ci]);
    if (!g.is_ok())
      return Status(g.status().code(),
                    "stored configuration '" + p->configs[ci].describe() + "' no longer builds: " + g.status().message());
    for_each_keyed_node(*g, [&](size_t, const std::string& key, const NodeFeatures& f) {
      rows[ci][key] = f.row;
      return true;
    });
  }
  RefeaturizeSummary summary;
  std::vector<KernelSample> kept;
  kept.reserve(p->kernels.size());
  for (KernelSample& s : p->kernels) {
    const std::map<std::string, FeatureRow>& by_key = rows[static_cast<size_t>(s.config_index)];
    auto it = by_key.find(s.node);
    // Since version 1 a row's variant names the kernel that ran (a 1x1 conv's GEMM kernel, an
    // im2col plan, a Winograd tile; a depthwise conv's loop since 7, a linear layer's GEMM
    // kernel since 9): another variant now means the timing is of code that no longer runs for
    // this node. (Before, the class's variant was 0 whatever ran.) A node that now takes a
    // kernel added since the sample was stored timed other code too.
    const bool other_kernel =
        it != by_key.end() &&
        ((p->features_version >= kernel_variant_version(s.op_class) &&
          it->second.z[kKernelVariantFeature] != s.row.z[kKernelVariantFeature]) ||
         kernel_newer_than(s.op_class, it->second.z[kKernelVariantFeature], p->features_version));
    if (it == by_key.end() || other_kernel) {
      ++summary.dropped;
      continue;
    }
    if (it->second.flops != s.row.flops || it->second.bytes != s.row.bytes || it->second.z != s.row.z) ++summary.changed;
    s.row = it->second;
    kept.push_back(std::move(s));
  }
  summary.samples = static_cast<int>(kept.size());
  p->kernels = std::move(kept);
  p->features_version = kFeatureVersion;
  return summary;
}

Result<CostModel> refit_profile(Profile* p, const SelectOptions& select, std::string* note) {
  std::string said;
  if (!features_current(*p)) {
    if (can_refeaturize(*p)) {
      const int before = p->features_version;
      ET_ASSIGN_OR_RETURN(RefeaturizeSummary r, refeaturize_profile(p));
      said = "features of " + std::to_string(r.samples) + " kernel samples rebuilt (version " + std::to_string(before) +
             " -> " + std::to_string(kFeatureVersion) + "; " + std::to_string(r.changed) + " changed, " +
             std::to_string(r.dropped) + " dropped: their node now runs another kernel path)";
    } else {
      said = stale_note(*p);
    }
  }
  FitReport report;
  ET_ASSIGN_OR_RETURN(CostModel model, CostModel::fit(*p, select, &report));
  p->models = model.to_json();
  p->report = report.to_json();
  if (report.calibration_steps_other_schedule > 0) {
    if (!said.empty()) said += "; ";
    said += std::to_string(report.calibration_steps_other_schedule) +
            " calibration steps were timed on an older schedule: their per-node times are not used, so the "
            "in-step corrections rest on " + std::to_string(report.calibration_steps) +
            " steps; run `edgetrain profile` again for all of them";
  }
  if (note != nullptr) *note = said;
  return model;
}

Result<CostModel> load_current_cost_model(const std::string& path, std::string* note,
                                          const std::function<void(const std::string&)>& progress) {
  note->clear();
  ET_ASSIGN_OR_RETURN(Profile p, load_profile(path));
  const bool models_current = cost_model_fit_version(p.models) == kCostModelFitVersion;
  const bool rebuildable = features_current(p) || can_refeaturize(p);
  if ((features_current(p) && models_current) || !rebuildable || !check_machine(p.machine, current_machine()).is_ok()) {
    if (!rebuildable) *note = stale_note(p);
    return CostModel::from_profile(p, path);  // read once: a profile is tens of MB of JSON
  }
  if (progress)
    progress(features_current(p) ? "the cost-model profile's models were fitted by an older edgetrain: refitting them"
                                 : "the cost-model profile's features predate this edgetrain: rebuilding them and refitting");
  ET_ASSIGN_OR_RETURN(CostModel model, refit_profile(&p, SelectOptions{}, note));
  if (Status s = save_profile(p, path); !s.is_ok()) *note += "; storing it failed: " + s.message();
  return model;
}

Result<Profile> add_refused_run(const std::string& cache_dir, const SelectOptions& select,
                                const std::function<void(const std::string&)>& progress) {
  const std::string path = profile_path(cache_dir), refused = refused_run_path(cache_dir);
  ET_ASSIGN_OR_RETURN(Profile stored, load_profile(path));
  if (access(refused.c_str(), F_OK) != 0)
    return not_found("no refused run at '" + refused +
                     "' (an `edgetrain profile --extend` that finds its host noisier than the stored profile's keeps its "
                     "run there)");
  Result<Profile> run = load_profile(refused);
  if (!run.is_ok()) return Status(run.status().code(), "the refused run: " + run.status().message());
  if (progress) progress("adding the run kept at " + refused + " and fitting the models to all runs' samples");
  if (Status machine = check_machine(stored.machine, current_machine()); !machine.is_ok()) return machine;
  // Either may predate this edgetrain's features.
  for (Profile* q : {&stored, &*run})
    if (!features_current(*q)) ET_RETURN_IF_ERROR(refeaturize_profile(q).status());
  ET_RETURN_IF_ERROR(merge_profiles(&stored, std::move(*run)));
  ET_RETURN_IF_ERROR(refit_profile(&stored, select).status());
  ET_RETURN_IF_ERROR(save_profile(stored, path));
  std::remove(refused.c_str());  // added: it must not be added twice
  return stored;
}

}  // namespace edgetrain
