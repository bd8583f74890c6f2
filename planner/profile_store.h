// The profile: what `edgetrain profile` measured on this machine (single-kernel samples and whole
// training steps), the cost models fitted to it and their accuracy report, stored as one
// versioned JSON file in the cache directory.
//
// A profile is only valid for the machine it was measured on: the CPU model and the OpenBLAS
// core decide every kernel's speed. load_profile() reads any profile of the current format;
// check_machine() says whether it fits this machine (CostModel::load runs it).
#pragma once

#include <string>
#include <vector>

#include "planner/features.h"
#include "planner/step_config.h"
#include "runtime/json.h"
#include "runtime/status.h"

namespace edgetrain {

// Bump when the meaning of stored samples or models changes (features, classes, model kinds):
// an old file then fails to load with a message that says to re-run `edgetrain profile`.
// 2: conv classes and FLOPs follow the kernel path (Winograd, direct, im2col plan), 10 features.
// 3: the fused SGD momentum's decay works on the first step only, its apply decays for the next
//    step (optimizer/momentum_fusion.h); max pool's backward reads a saved argmax, not its input:
//    their samples and FLOPs mean other work than in 2.
constexpr int kProfileFormatVersion = 3;

struct MachineInfo {
  std::string cpu_model;     // /proc/cpuinfo "model name"
  std::string blas_core;     // the OpenBLAS core kernels ran on ("SkylakeX", "Haswell", ...)
  std::string blas_config;   // openblas_get_config()
  int hardware_threads = 0;
};
MachineInfo current_machine();
// Ok when `stored` was measured on a machine like `current` (same CPU model and BLAS core);
// otherwise kInvalidArgument naming both, and what to do about it.
Status check_machine(const MachineInfo& stored, const MachineInfo& current);

// One kernel timed in isolation: the median wall time of one call.
struct KernelSample {
  OpClass op_class = OpClass::kCount;
  int threads = 1;
  FeatureRow row;
  double seconds = 0;
  bool holdout = false;   // never used for fitting, selection or resampling: the accuracy report
  int round = 0;          // 0: the initial grid; 1+: added near a badly predicted sample
  std::string config;     // the training configuration it came from ("mobilenet_v2 w0.5 ...")
  std::string layer;      // the node's layer in that configuration
  // Where it came from exactly, so that its features can be rebuilt when node_features changes
  // (planner/refeaturize.h): Profile::configs[config_index] and the node's key there
  // (layer|class|occurrence). -1 and "" in profiles from before they were stored.
  int config_index = -1;
  std::string node;
};

// One whole training step timed through the executor.
struct StepSample {
  StepConfig config;
  int threads = 1;
  // A step's time: the fastest of its plain steps (wall clock; one thread: the thread's CPU time
  // when the profile says so); a step timed a second time (a calibration step's second look, a
  // validation step's repeat in Profile::step_repeats) keeps the faster of the two timings.
  double seconds = 0;
  bool validation = false;   // a configuration none of the kernel samples came from
  // Per-node wall times inside one step (Executor::run_profiled), in schedule order: the
  // per-op accuracy on configurations not used in fitting (features come from rebuilding the
  // graph of `config`).
  std::vector<double> node_seconds;
  // schedule_hash() of the schedule node_seconds were measured on (0: not stored, from before
  // 2026-12-07's session 11): they are used only while the rebuilt schedule has the same hash.
  uint64_t schedule_hash = 0;
};

// A kernel sample timed a second time, later: how repeatable a timing is on this machine (the
// noise floor no model can beat).
struct RepeatSample {
  int threads = 1;
  double first = 0, second = 0;
};

struct Profile {
  int format_version = kProfileFormatVersion;
  MachineInfo machine;
  std::string created;        // UTC, "2024-05-01T12:00:00Z"
  bool quick = false;
  std::vector<int> threads;   // thread counts measured
  double profile_seconds = 0; // wall time of the profiling run (all of them: see runs)
  int runs = 1;               // profiling runs merged into this one (`edgetrain profile --extend`)
  // The features' definition the kernel samples' rows were computed with (planner/features.h
  // kFeatureVersion; 0: before it was stored), and the configurations they came from.
  int features_version = 0;
  std::vector<StepConfig> configs;
  std::vector<KernelSample> kernels;
  std::vector<StepSample> steps;
  std::vector<RepeatSample> repeats;
  // Validation steps timed a second time at the end (first: the StepSample's seconds): the noise
  // floor of the whole-step numbers. Empty in profiles from before it was measured.
  std::vector<RepeatSample> step_repeats;
  // How quiet the machine was: samples thrown away and steps measured again because other
  // processes were busy (planner/profiler.cc's quiet gate).
  JsonValue measurement;
  JsonValue models;           // CostModel::to_json(): the fitted models
  JsonValue report;           // the accuracy report (cost_model.h: FitReport::to_json())
};

// $XDG_CACHE_HOME/edgetrain, else $HOME/.cache/edgetrain; "" when neither is set.
std::string default_cache_dir();
// DIR/profile-v<version>.json
std::string profile_path(const std::string& cache_dir);
// Where `edgetrain profile --extend` keeps a run it refused as noisier than the stored profile,
// for `--add-refused` (cache_dir/profile-vN.refused-run.json).
std::string refused_run_path(const std::string& cache_dir);

JsonValue profile_to_json(const Profile& p);
Result<Profile> profile_from_json(const JsonValue& j);
// Writes atomically (a temporary file renamed over the old one), creating the directory.
Status save_profile(const Profile& p, const std::string& path);
// Adds the samples of `more` (a later run on the same machine, same thread counts, same features
// version) to `into`: kernel samples keep their held-out marks and point at their own stored
// configurations, steps, repeats and timings are appended, `created` becomes the later run's and
// the run count and profiling time add up. The models and report are left to a refit.
Status merge_profiles(Profile* into, Profile more);

// Whether a new run's host was clearly noisier than the stored profile's latest run: its canary
// (planner/profiler.cc: a fixed workload timed against its best) ran more than `tolerance` slower
// at the median. Adding such a run degrades the models: session 11's third 7-minute run (canary
// 1.14x against 1.10x) took the merged profile's held-out per-op accuracy from 77.8% to 72.0%.
// `why` says so with both numbers. False when either run did not record its canary.
bool run_noisier_than_stored(const Profile& stored, const Profile& run, double tolerance, std::string* why);
// The comparison itself, on the two canary medians (either <= 0: not recorded, false); the
// profiler's early note (planner/profiler.h host_noise_note) asks it before the run ends.
bool canary_noisier(double stored_median, double run_median, double tolerance);
// How much slower at the median the canary of an --extend run may be than the stored profile's
// latest run before the run is not added (session 11: runs at 1.08x and 1.10x improved the models
// together, a third at 1.14x made them worse).
constexpr double kNoisierRunTolerance = 0.03;

// Reads and validates a profile file; a missing file is kNotFound with a hint to run
// `edgetrain profile`, another format version kInvalidArgument saying so.
Result<Profile> load_profile(const std::string& path);

}  // namespace edgetrain
