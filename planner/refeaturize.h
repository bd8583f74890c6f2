// Rebuilding the features of a stored profile's kernel samples with this edgetrain's
// node_features (planner/features.h). A sample's row is computed when it is measured; when a
// later edgetrain computes other rows for the same nodes (kFeatureVersion moved), models fitted on
// the stored rows would be queried with new ones. Profiles store where each sample came from (its
// configuration and node key), so the rows can be computed again from the same nodes:
//
//   Result<RefeaturizeSummary> r = refeaturize_profile(&profile);  // then CostModel::fit
//
// A sample whose node no longer exists or now takes another kernel path (another class, or
// since feature version 1 another variant within it) timed code that no longer runs for it: it
// is dropped. Profiles from before the origins were stored
// cannot be rebuilt (can_refeaturize is false): they need `edgetrain profile` again.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "planner/cost_model.h"
#include "planner/features.h"
#include "planner/profile_store.h"
#include "runtime/status.h"

namespace edgetrain {

// Identifies a node within a configuration's graph: layer, class and occurrence (the n-th node of
// that layer and class in schedule order), e.g. "features.3.conv.0.0|conv.pointwise.fwd|0".
std::string node_key(const std::string& layer, OpClass c, int occurrence);

// Calls visit(index, key, features) for every node of g that node_features classifies, in
// schedule order, until visit returns false: the one walk that gives nodes their keys, for the
// profiler (which stores them) and for the rebuild (which finds the nodes again by them).
template <typename Visit>
void for_each_keyed_node(const Graph& g, Visit&& visit) {
  std::map<std::string, int> occurrences;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    const NodeFeatures f = node_features(g, n);
    if (f.op_class == OpClass::kCount) continue;
    const std::string key = node_key(n.layer, f.op_class, occurrences[n.layer + "|" + op_class_name(f.op_class)]++);
    if (!visit(i, key, f)) return;
  }
}

// Whether p's kernel samples all say where they came from.
bool can_refeaturize(const Profile& p);
// Whether p's rows were computed by this edgetrain's node_features.
inline bool features_current(const Profile& p) { return p.features_version == kFeatureVersion; }

struct RefeaturizeSummary {
  int samples = 0;  // kernel samples kept, their rows recomputed
  int changed = 0;  // ... of which the row changed
  int dropped = 0;  // samples whose node is gone or now runs another kernel (class or variant)
};

// Recomputes every kernel sample's row (and sets p->features_version to kFeatureVersion). Fails,
// leaving p as it was, when !can_refeaturize(*p) or a stored configuration no longer builds.
Result<RefeaturizeSummary> refeaturize_profile(Profile* p);

// Fits p's cost models again (p->models, p->report), first rebuilding its rows when they are
// stale and can be rebuilt. `note` (optional) says what the user should know: "" when the rows
// were current and every calibration step's per-node times still match its schedule, else one
// line (rows rebuilt, or stale and not rebuildable; steps timed on an older schedule).
Result<CostModel> refit_profile(Profile* p, const SelectOptions& select, std::string* note = nullptr);

// CostModel::load for the planner's commands: a profile whose rows are stale is rebuilt, refitted
// (about a second per minute of profiling) and stored again (atomically) first, and one whose
// models an older CostModel::fit made (kCostModelFitVersion) is refitted and stored; one whose
// rows cannot be rebuilt loads as it is, with `note` saying its predictions may be off. `note`
// says what was done ("" when the profile was current or only refitted).
// `progress` hears before the refit starts.
Result<CostModel> load_current_cost_model(const std::string& path, std::string* note,
                                          const std::function<void(const std::string&)>& progress = nullptr);

// `edgetrain profile --add-refused`: the run a refused `--extend` kept at refused_run_path(dir)
// (profile_store.h) added to the profile at profile_path(dir): both brought to this edgetrain's
// features, merged (merge_profiles: the same machine, threads and kind), refitted and stored;
// the kept run's file is removed once the merged profile is stored. On any failure nothing is
// written: the stored profile and the kept run stay as they were. Returns the merged profile.
// `progress` hears once the kept run is found, before the merge and refit (~15 s for two runs).
Result<Profile> add_refused_run(const std::string& cache_dir, const SelectOptions& select,
                                const std::function<void(const std::string&)>& progress = nullptr);

}  // namespace edgetrain
