// Rebuilding stored kernel samples' features (planner/refeaturize.h): rows recomputed from the
// node each sample came from, vanished nodes dropped, profiles without origins refused with a
// hint, origins kept through the profile store, the planner's loader refitting a stale profile
// and storing it again, and runs merged into one profile (`edgetrain profile --extend`).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <map>

#include "planner/features.h"
#include "planner/profile_store.h"
#include "ops/gemm.h"
#include "planner/refeaturize.h"
#include "planner/step_config.h"

namespace edgetrain {
namespace {

StepConfig small_config(int input_size) {
  StepConfig c;
  c.model.arch = Architecture::kSmallCnn;
  c.model.input_size = input_size;
  c.batch = 4;
  return c;
}

// The key of every classified node of c's step graph and its features, in schedule order.
std::vector<std::pair<std::string, NodeFeatures>> keyed_features(const StepConfig& c) {
  Result<Graph> g = build_step_graph(c);
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  std::vector<std::pair<std::string, NodeFeatures>> out;
  for_each_keyed_node(*g, [&](size_t, const std::string& key, const NodeFeatures& f) {
    out.emplace_back(key, f);
    return true;
  });
  return out;
}

// A profile of two configurations (small CNNs at first_input and 24 pixels) whose samples (every
// node, both thread counts) carry rows from an "older edgetrain": every feature zero but the
// kernel variant. Timings follow the true FLOPs and bytes.
Profile stale_profile(int first_input = 16) {
  Profile p;
  p.machine = current_machine();
  p.created = "2026-01-01T00:00:00Z";
  p.threads = {1, 2};
  p.configs = {small_config(first_input), small_config(24)};
  p.features_version = kFeatureVersion - 1;
  for (size_t ci = 0; ci < p.configs.size(); ++ci)
    for (const auto& [key, f] : keyed_features(p.configs[ci]))
      for (int t : p.threads) {
        KernelSample s;
        s.op_class = f.op_class;
        s.threads = t;
        s.seconds = (1e-6 + f.row.flops / 2e10 + f.row.bytes / 1e10) / t;
        s.row.flops = s.row.bytes = 1;  // z all zero but the kernel variant (the same kernel ran)
        s.row.z[kKernelVariantFeature] = f.row.z[kKernelVariantFeature];
        s.holdout = (p.kernels.size() % 7) == 0;
        s.config = p.configs[ci].describe();
        s.layer = key.substr(0, key.find('|'));
        s.config_index = static_cast<int>(ci);
        s.node = key;
        p.kernels.push_back(s);
      }
  return p;
}

std::string temp_dir(const std::string& name) {
  std::string d = std::filesystem::temp_directory_path().string() + "/edgetrain_test_" + name + "_" +
                  std::to_string(getpid());
  std::filesystem::remove_all(d);
  return d;
}

TEST(Refeaturize, RebuildsEveryRowFromItsNodeAndDropsVanishedNodes) {
  Profile p = stale_profile();
  const size_t samples = p.kernels.size();
  ASSERT_GT(samples, 20u);
  // A node that no longer exists (a layer renamed, or a kernel path that changed class).
  KernelSample gone = p.kernels[0];
  gone.node = "features.99|conv.pointwise.fwd|0";
  p.kernels.push_back(gone);
  ASSERT_TRUE(can_refeaturize(p));
  ASSERT_FALSE(features_current(p));

  Result<RefeaturizeSummary> r = refeaturize_profile(&p);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->samples, static_cast<int>(samples));
  EXPECT_EQ(r->changed, static_cast<int>(samples));
  EXPECT_EQ(r->dropped, 1);
  EXPECT_TRUE(features_current(p));
  ASSERT_EQ(p.kernels.size(), samples);
  // Every row is what node_features gives that node now.
  std::map<std::pair<int, std::string>, FeatureRow> truth;
  for (int ci = 0; ci < 2; ++ci)
    for (const auto& [key, f] : keyed_features(p.configs[static_cast<size_t>(ci)])) truth[{ci, key}] = f.row;
  for (const KernelSample& s : p.kernels) {
    const FeatureRow& want = truth.at({s.config_index, s.node});
    EXPECT_EQ(s.row.z, want.z) << s.node;
    EXPECT_EQ(s.row.flops, want.flops) << s.node;
    EXPECT_EQ(s.row.bytes, want.bytes) << s.node;
  }
  // Features are a function of the node: a second pass changes nothing.
  Result<RefeaturizeSummary> again = refeaturize_profile(&p);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->changed, 0);
  EXPECT_EQ(again->dropped, 0);
}

// A sample whose stored variant is not the kernel its node runs now (a GEMM kernel added since it
// was timed) is dropped; before feature version 1 variants did not name kernels and are rebuilt.
TEST(Refeaturize, SamplesOfAnotherKernelVariantAreDropped) {
  for (int version : {1, 0}) {
    Profile p = stale_profile();
    p.features_version = version;
    const size_t samples = p.kernels.size();
    p.kernels[0].row.z[kKernelVariantFeature] += 1;
    Result<RefeaturizeSummary> r = refeaturize_profile(&p);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->dropped, version >= 1 ? 1 : 0) << "version " << version;
    EXPECT_EQ(p.kernels.size(), samples - (version >= 1 ? 1 : 0)) << "version " << version;
  }
}

// A one-thread profile of configuration c with features version `version`: one sample per
// classified node, its row the node's current one as `stored` leaves it (what an older edgetrain
// wrote).
Profile one_config_profile(const StepConfig& c, int version, const std::function<void(KernelSample*)>& stored) {
  Profile p;
  p.machine = current_machine();
  p.created = "2026-01-01T00:00:00Z";
  p.threads = {1};
  p.configs = {c};
  p.features_version = version;
  for (const auto& [key, f] : keyed_features(c)) {
    KernelSample s;
    s.op_class = f.op_class;
    s.seconds = 1e-5;
    s.row = f.row;
    s.config = c.describe();
    s.layer = key.substr(0, key.find('|'));
    s.config_index = 0;
    s.node = key;
    stored(&s);
    p.kernels.push_back(s);
  }
  return p;
}

// Depthwise convs' variant names their loop since feature version 7; stored with 0 before, their
// samples are rebuilt, not dropped (the same loops ran).
TEST(Refeaturize, DepthwiseSamplesFromBeforeTheirVariantAreKept) {
  StepConfig c;
  c.model.arch = Architecture::kMobileNetV2;
  c.model.width_mult = 0.35f;
  c.model.input_size = 32;
  c.batch = 2;
  for (int version : {6, 7}) {
    int depthwise_named = 0;  // depthwise samples whose node's variant is not 0
    int newer_kernels = 0;    // samples whose node takes a kernel added since `version`
    Profile p = one_config_profile(c, version, [&](KernelSample* s) {
      newer_kernels += kernel_newer_than(s->op_class, s->row.z[kKernelVariantFeature], version);
      if (std::string(op_class_name(s->op_class)).rfind("conv.depthwise", 0) == 0) {
        if (s->row.z[kKernelVariantFeature] != 0) ++depthwise_named;
        s->row.z[kKernelVariantFeature] = 0;  // as stored before version 7
      }
    });
    ASSERT_GT(depthwise_named, 3);
    const size_t samples = p.kernels.size();
    Result<RefeaturizeSummary> r = refeaturize_profile(&p);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    // Stored as version 7, a variant-0 depthwise sample whose node runs another loop is dropped
    // (and at either version one that now takes a newer GEMM kernel).
    EXPECT_EQ(r->dropped, (version >= 7 ? depthwise_named : 0) + newer_kernels) << "version " << version;
    EXPECT_EQ(p.kernels.size(), samples - static_cast<size_t>(r->dropped));
  }
}

// Small GEMMs of few rows or K over 1024 run as dot products since feature version 9: a 1x1
// conv's or a linear layer's sample stored before, whose node takes them now, timed the transpose
// or the plain loops it replaced and is dropped; one stored at version 9 is kept.
TEST(Refeaturize, SamplesTimedBeforeTheDotProductGemmsAreDropped) {
  EXPECT_TRUE(kernel_newer_than(OpClass::kLinear, static_cast<double>(GemmPath::kSmallDots), 8));
  EXPECT_TRUE(kernel_newer_than(OpClass::kConvPointwise, static_cast<double>(GemmPath::kSmallDots), 6));
  EXPECT_FALSE(kernel_newer_than(OpClass::kLinear, static_cast<double>(GemmPath::kSmallDots), 9));
  EXPECT_FALSE(kernel_newer_than(OpClass::kLinear, static_cast<double>(GemmPath::kSmall), 8));
  EXPECT_FALSE(kernel_newer_than(OpClass::kConvGemm, static_cast<double>(GemmPath::kSmallDots), 8));
  // ResNet-18 at 32 pixels, batch 2: the classifier runs 2 rows against B^T's 512-long rows.
  StepConfig c;
  c.model.arch = Architecture::kResNet18;
  c.model.input_size = 32;
  c.model.num_classes = 20;
  c.batch = 2;
  for (int version : {8, 9}) {
    int dots = 0;
    Profile p = one_config_profile(c, version, [&](KernelSample* s) {
      dots += s->row.z[kKernelVariantFeature] == static_cast<double>(GemmPath::kSmallDots);
      if (version < 9 && (s->op_class == OpClass::kLinear || s->op_class == OpClass::kLinearBackwardData ||
                          s->op_class == OpClass::kLinearBackwardWeight))
        s->row.z[kKernelVariantFeature] = 0;  // linear layers had no variant before 9
    });
    ASSERT_GE(dots, 1);
    Result<RefeaturizeSummary> r = refeaturize_profile(&p);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->dropped, version < 9 ? dots : 0) << "version " << version;
  }
}

TEST(Refeaturize, ProfilesWithoutOriginsAreRefusedAndLeftAsTheyWere) {
  Profile p = stale_profile();
  p.kernels[3].config_index = -1;  // measured before origins were stored
  const FeatureRow before = p.kernels[0].row;
  EXPECT_FALSE(can_refeaturize(p));
  Result<RefeaturizeSummary> r = refeaturize_profile(&p);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("edgetrain profile"), std::string::npos) << r.status().message();
  EXPECT_EQ(p.kernels[0].row.z, before.z);
  EXPECT_EQ(p.features_version, kFeatureVersion - 1);

  // Refitting still works, on the rows as they are, and says why predictions may be off.
  std::string note;
  Result<CostModel> m = refit_profile(&p, SelectOptions{}, &note);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_NE(note.find("older edgetrain"), std::string::npos) << note;
  EXPECT_NE(note.find("edgetrain profile"), std::string::npos) << note;
}

TEST(Refeaturize, RefitSaysWhenCalibrationStepsWereTimedOnAnotherSchedule) {
  Profile p = stale_profile();
  ASSERT_TRUE(refeaturize_profile(&p).is_ok());
  const Graph g = *build_step_graph(p.configs[0]);
  for (int i = 0; i < 2; ++i) {
    StepSample s;
    s.config = p.configs[0];
    s.threads = 1;
    s.seconds = 1e-3;
    s.node_seconds.assign(g.nodes.size(), 1e-3 / static_cast<double>(g.nodes.size()));
    s.schedule_hash = i == 0 ? schedule_hash(g) : 0;  // the second from before fingerprints
    p.steps.push_back(s);
  }
  std::string note;
  ASSERT_TRUE(refit_profile(&p, SelectOptions{}, &note).is_ok());
  EXPECT_NE(note.find("1 calibration steps were timed on an older schedule"), std::string::npos) << note;
  EXPECT_NE(report_text(p.report).find("1 measured on another schedule"), std::string::npos) << report_text(p.report);
  p.steps[1].schedule_hash = schedule_hash(g);
  ASSERT_TRUE(refit_profile(&p, SelectOptions{}, &note).is_ok());
  EXPECT_EQ(note, "");
}

TEST(Refeaturize, OriginsSurviveTheProfileStoreAndBadIndicesAreCorrupt) {
  Profile p = stale_profile();
  const std::string dir = temp_dir("origins");
  const std::string path = profile_path(dir);
  ASSERT_TRUE(save_profile(p, path).is_ok());
  Result<Profile> back = load_profile(path);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->features_version, p.features_version);
  ASSERT_EQ(back->configs.size(), 2u);
  EXPECT_TRUE(back->configs[1] == p.configs[1]);
  ASSERT_EQ(back->kernels.size(), p.kernels.size());
  for (size_t i = 0; i < p.kernels.size(); ++i) {
    EXPECT_EQ(back->kernels[i].config_index, p.kernels[i].config_index);
    EXPECT_EQ(back->kernels[i].node, p.kernels[i].node);
  }

  JsonValue j = profile_to_json(p);
  JsonValue kernels = JsonValue::array();
  for (const JsonValue& k : j.find("kernels")->items()) {
    JsonValue copy = k;
    if (kernels.size() == 0) copy.set("config_index", 5);  // only 2 configurations stored
    kernels.push_back(std::move(copy));
  }
  j.set("kernels", std::move(kernels));
  std::ofstream(path) << to_json(j);
  Result<Profile> bad = load_profile(path);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(bad.status().message().find("config_index 5"), std::string::npos) << bad.status().message();
  std::filesystem::remove_all(dir);
}

TEST(Refeaturize, ThePlannersLoaderRefitsAStaleProfileAndStoresIt) {
  Profile p = stale_profile();
  const std::string dir = temp_dir("loader");
  const std::string path = profile_path(dir);
  ASSERT_TRUE(save_profile(p, path).is_ok());
  std::string note;
  int progress_lines = 0;
  Result<CostModel> m = load_current_cost_model(path, &note, [&](const std::string&) { ++progress_lines; });
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(progress_lines, 1);
  EXPECT_NE(note.find("rebuilt"), std::string::npos) << note;
  Result<Profile> stored = load_profile(path);
  ASSERT_TRUE(stored.is_ok());
  EXPECT_TRUE(features_current(*stored));
  EXPECT_NE(stored->kernels[0].row.flops, 1.0);  // the rebuilt rows were stored
  EXPECT_TRUE(stored->models == m->to_json());
  // Now current: loaded as it is, nothing to say.
  Result<CostModel> again = load_current_cost_model(path, &note, [&](const std::string&) { ++progress_lines; });
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(note, "");
  EXPECT_EQ(progress_lines, 1);
  std::filesystem::remove_all(dir);
}

TEST(Refeaturize, ThePlannersLoaderRefitsModelsAnOlderFitMade) {
  // Current rows, models from an older CostModel::fit (no fit_version): refitted and stored, the
  // rows untouched; then loaded as they are.
  Profile p = stale_profile();
  ASSERT_TRUE(refeaturize_profile(&p).is_ok());
  Result<CostModel> fitted = CostModel::fit(p, SelectOptions{}, nullptr);
  ASSERT_TRUE(fitted.is_ok());
  p.models = fitted->to_json();
  p.models.set("fit_version", 0);
  const std::string dir = temp_dir("older_fit");
  const std::string path = profile_path(dir);
  ASSERT_TRUE(save_profile(p, path).is_ok());
  std::string note = "unset";
  std::vector<std::string> progress;
  Result<CostModel> m = load_current_cost_model(path, &note, [&](const std::string& line) { progress.push_back(line); });
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(progress.size(), 1u);
  EXPECT_NE(progress[0].find("older edgetrain"), std::string::npos) << progress[0];
  EXPECT_EQ(note, "");
  Result<Profile> stored = load_profile(path);
  ASSERT_TRUE(stored.is_ok());
  EXPECT_EQ(cost_model_fit_version(stored->models), kCostModelFitVersion);
  EXPECT_EQ(stored->kernels.size(), p.kernels.size());
  Result<CostModel> again = load_current_cost_model(path, &note, [&](const std::string& line) { progress.push_back(line); });
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(progress.size(), 1u);
  std::filesystem::remove_all(dir);
}

TEST(MergeProfiles, AddsTheLaterRunsSamplesWithTheirOwnConfigurations) {
  Profile first = stale_profile(), second = stale_profile(/*first_input=*/20);  // the later run sampled other shapes
  second.created = "2026-02-02T00:00:00Z";
  second.profile_seconds = 400;
  first.profile_seconds = 420;
  second.kernels.erase(std::remove_if(second.kernels.begin(), second.kernels.end(),
                                      [](const KernelSample& k) { return k.config_index != 0; }),
                       second.kernels.end());
  second.configs.resize(1);
  second.repeats = {{1, 1e-4, 1.1e-4}};
  const size_t n1 = first.kernels.size(), n2 = second.kernels.size();
  ASSERT_TRUE(merge_profiles(&first, second).is_ok());
  EXPECT_EQ(first.kernels.size(), n1 + n2);
  ASSERT_EQ(first.configs.size(), 3u);
  EXPECT_TRUE(first.configs[2] == small_config(20));
  for (size_t i = n1; i < first.kernels.size(); ++i) EXPECT_EQ(first.kernels[i].config_index, 2);
  EXPECT_EQ(first.runs, 2);
  EXPECT_EQ(first.created, "2026-02-02T00:00:00Z");
  EXPECT_DOUBLE_EQ(first.profile_seconds, 820);
  EXPECT_EQ(first.repeats.size(), 1u);
  // The merged samples still find their nodes: every row rebuilds from its own configuration.
  Result<RefeaturizeSummary> r = refeaturize_profile(&first);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->dropped, 0);
  EXPECT_EQ(r->samples, static_cast<int>(n1 + n2));
  const std::vector<std::pair<std::string, NodeFeatures>> truth = keyed_features(small_config(20));
  for (size_t i = n1; i < first.kernels.size(); ++i) {
    const auto it = std::find_if(truth.begin(), truth.end(), [&](const auto& t) { return t.first == first.kernels[i].node; });
    ASSERT_NE(it, truth.end());
    EXPECT_EQ(first.kernels[i].row.z, it->second.row.z);
  }
}

TEST(MergeProfiles, RefusesRunsThatDoNotBelongTogether) {
  Profile base = stale_profile();
  Profile threads = stale_profile();
  threads.threads = {1};
  Status s = merge_profiles(&base, threads);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("thread counts"), std::string::npos) << s.message();

  Profile features = stale_profile();
  features.features_version = kFeatureVersion;
  s = merge_profiles(&base, features);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("rebuild"), std::string::npos) << s.message();

  Profile machine = stale_profile();
  machine.machine.cpu_model = "Some Other CPU";
  s = merge_profiles(&base, machine);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("Some Other CPU"), std::string::npos) << s.message();
  EXPECT_EQ(base.kernels.size(), stale_profile().kernels.size());  // nothing merged
  EXPECT_EQ(base.runs, 1);
}

TEST(MergeProfiles, ANoisierRunIsToldApart) {
  Profile stored = stale_profile(), run = stale_profile();
  std::string why;
  EXPECT_FALSE(run_noisier_than_stored(stored, run, 0.03, &why));  // no canary recorded
  stored.measurement = JsonValue::object();
  stored.measurement.set("canary_ratio_median", 1.10);
  run.measurement = JsonValue::object();
  run.measurement.set("canary_ratio_median", 1.12);
  EXPECT_FALSE(run_noisier_than_stored(stored, run, 0.03, &why));
  run.measurement.set("canary_ratio_median", 1.14);
  EXPECT_TRUE(run_noisier_than_stored(stored, run, 0.03, &why));
  EXPECT_NE(why.find("1.14x"), std::string::npos) << why;
  EXPECT_NE(why.find("1.10x"), std::string::npos) << why;
  run.measurement.set("canary_ratio_median", 1.02);  // quieter than the stored run: welcome
  EXPECT_FALSE(run_noisier_than_stored(stored, run, 0.03, &why));
}

std::string file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

TEST(AddRefusedRun, MergesTheKeptRunRefitsStoresAndRemovesIt) {
  const std::string dir = temp_dir("add_refused");
  Profile stored = stale_profile(), run = stale_profile(/*first_input=*/20);  // the refused run sampled other shapes
  run.kernels.erase(std::remove_if(run.kernels.begin(), run.kernels.end(),
                                   [](const KernelSample& k) { return k.config_index != 0; }),
                    run.kernels.end());
  run.configs.resize(1);
  ASSERT_TRUE(save_profile(stored, profile_path(dir)).is_ok());
  ASSERT_TRUE(save_profile(run, refused_run_path(dir)).is_ok());
  Result<Profile> merged = add_refused_run(dir, SelectOptions{});
  ASSERT_TRUE(merged.is_ok()) << merged.status().to_string();
  EXPECT_EQ(merged->runs, 2);
  EXPECT_EQ(merged->kernels.size(), stored.kernels.size() + run.kernels.size());
  EXPECT_EQ(merged->features_version, kFeatureVersion);  // both rebuilt before the merge
  EXPECT_EQ(cost_model_fit_version(merged->models), kCostModelFitVersion);  // refitted
  EXPECT_FALSE(std::filesystem::exists(refused_run_path(dir)));  // never added twice
  Result<Profile> reloaded = load_profile(profile_path(dir));
  ASSERT_TRUE(reloaded.is_ok()) << reloaded.status().to_string();
  EXPECT_EQ(reloaded->runs, 2);
  EXPECT_EQ(reloaded->kernels.size(), merged->kernels.size());
  // Nothing left to add now.
  Result<Profile> again = add_refused_run(dir, SelectOptions{});
  EXPECT_FALSE(again.is_ok());
  EXPECT_EQ(again.status().code(), StatusCode::kNotFound) << again.status().to_string();
  std::filesystem::remove_all(dir);
}

TEST(AddRefusedRun, ARunThatDoesNotBelongLeavesBothFilesAsTheyWere) {
  const std::string dir = temp_dir("add_refused_mismatch");
  Profile stored = stale_profile(), run = stale_profile();
  run.threads = {1};
  ASSERT_TRUE(save_profile(stored, profile_path(dir)).is_ok());
  ASSERT_TRUE(save_profile(run, refused_run_path(dir)).is_ok());
  const std::string stored_before = file_bytes(profile_path(dir)), run_before = file_bytes(refused_run_path(dir));
  Result<Profile> merged = add_refused_run(dir, SelectOptions{});
  ASSERT_FALSE(merged.is_ok());
  EXPECT_NE(merged.status().message().find("thread counts"), std::string::npos) << merged.status().to_string();
  EXPECT_EQ(file_bytes(profile_path(dir)), stored_before);
  EXPECT_EQ(file_bytes(refused_run_path(dir)), run_before);

  // A corrupt kept run is named as such, and nothing changes either.
  { std::ofstream(refused_run_path(dir), std::ios::trunc) << "{ not json"; }
  merged = add_refused_run(dir, SelectOptions{});
  ASSERT_FALSE(merged.is_ok());
  EXPECT_NE(merged.status().message().find("refused run"), std::string::npos) << merged.status().to_string();
  EXPECT_EQ(file_bytes(profile_path(dir)), stored_before);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace edgetrain
