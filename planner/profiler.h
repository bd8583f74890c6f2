// The profiler: measures kernel run times on this machine for the cost models.
//
// Kernel samples. Shapes come from the real training schedules of MobileNetV2 (widths
// 0.35..1.0), ResNet-18 and the small CNN at inputs 32..224 and batches 1..64 (half from that
// grid, half randomly perturbed off it), with every node a training step has under every
// m-hyperparameter (forward, backward, updates, frozen variants, recompute, pack/unpack, masks,
// micro-batches). Each chosen node runs alone through the op table's fast kernel on buffers
// allocated once, at every thread count, and its time is the fastest of several repetitions
// (tiny kernels are timed in groups of calls so the clock's resolution does not matter). Every
// class gets samples in turn until the time budget is spent; a fifth are held out for the
// accuracy report.
//
// Why the fastest and not the median: interference (other processes, interrupts, a thread of
// the pool descheduled) only ever adds time, so the fastest repetition is the most repeatable
// estimate of a kernel's own cost, and the planner wants the cost on a quiet device. Steps are
// timed the same way, so predictions and measurements agree in kind. At one thread, kernels and
// whole steps are timed by the calling thread's CPU time (the executor and the timer run
// single-threaded work on the calling thread, OpenBLAS is single-threaded): on a shared machine
// the time slices other processes take then do not count, only their effect on caches does.
// What is left is reported as a noise floor: the share of kernel timings that a second
// measurement, later, puts within 10% of the first.
//
// The quiet gate. Samples are measured in batches of at least 150 ms; a batch during which other
// processes (or the virtual machine's host) kept more than a quarter of a core busy is thrown
// away and measuring resumes once the machine is quiet; a disturbed step is measured again
// (while the machine stays busy, every fifth only).
// The profile records how much was thrown away (Profile::measurement). On a machine that stays
// busy, and in a quick profile (which has no time to wait), disturbed samples are kept and
// counted instead.
//
// A second look. Interference outlasts a sample's timing often enough on a shared host (on the
// 2026-12-07 AMD EPYC guest, another guest on the second core slowed a quarter of the two-thread
// kernel timings by more than 10%, for seconds at a time, unseen by /proc/stat and by a canary
// on the first core), so after the grid, every held-out node (all of them: which ones get a second
// timing must not depend on the models they score) and every fitting node measured more than 10%
// slower than its cross-validated prediction is timed again, minutes after its first timing, and
// the faster of the two timings counts. The calibration steps get their second look too (their
// per-node times calibrate the kernels' in-step slowdown, so they must be measured alike), and
// every validation step timed twice for the noise floor keeps its faster timing.
//
// Error-driven resampling. After a first fit, fitting samples whose cross-validated prediction
// is off by more than 10% get new samples near them: the same layer in a slightly perturbed
// configuration (batch, input size, width).
//
// Calibration steps. A kernel alone, called again and again on the same buffers, runs faster
// than inside a training step, where its weights, optimizer state and output buffers come cold
// from memory. Whole steps of random configurations of the sampling space are timed per node
// (Executor::run_profiled); the cost model learns the in-step / alone ratio per op class.
//
// Validation steps. Whole training steps of configurations that no sample came from (another
// ResNet depth, widths, input sizes and batches off the grid, and every m-hyperparameter) are
// timed through the Trainer, for step-level validation of the summed predictions.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "planner/cost_model.h"
#include "planner/profile_store.h"
#include "planner/step_config.h"
#include "runtime/graph.h"
#include "runtime/parameter_store.h"
#include "runtime/status.h"
#include "runtime/thread_pool.h"

namespace edgetrain {

struct ProfileOptions {
  bool quick = false;                 // ~30 s instead of ~8 minutes
  std::vector<int> threads = {1, 2};
  // The full profile's length in minutes (0: the default, about 8). Longer profiles spend the
  // extra time on kernel samples (13/20), their second look (3/20) and resampling near bad
  // predictions (1/5): held-out
  // accuracy grows with the samples (refitting a 7-minute profile on 25% / 50% / 100% of its
  // kernel samples: 56 / 66 / 72% of held-out predictions within 10%). Ignored when quick.
  double minutes = 0;
  // Time budgets in seconds; 0 picks the default of the mode (quick / full, `minutes`).
  double kernel_seconds = 0;
  double recheck_seconds = 0;      // the second look at held-out and slow-looking samples
  double resample_seconds = 0;
  double calibration_seconds = 0;  // whole steps whose per-node times calibrate the models
  double step_seconds = 0;         // whole steps of the validation configurations
  uint64_t seed = 1;
  // Time one-thread kernels and steps by the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) instead
  // of the wall clock: a single-threaded kernel runs on the calling thread only, so its CPU time
  // is its wall time on a quiet core, without the time slices other processes take (see the
  // header comment). Multi-threaded timings stay on the wall clock.
  bool single_thread_cpu_time = true;
  // Progress lines ("force" for lines that must not be dropped); may be empty.
  std::function<void(const std::string& line, bool force)> progress;
  // With `edgetrain profile --extend`: the stored profile's canary median over its best (its
  // measurement's canary_ratio_median; 0: none), so that the run can say early, once its kernel
  // grid is measured, when it is already noisier than that (host_noise_note).
  double stored_canary_median = 0;
};

// The line run_profile prints once the kernel grid is measured when the host is noisy: the canary
// (a fixed workload) at `median` / `p90` times its best so far. "" on a quiet host (median under
// 1.15x) unless the run is already noisier than a stored profile it extends (canary_noisier with
// kNoisierRunTolerance, planner/profile_store.h), which a --extend refuses at the end.
std::string host_noise_note(double median, double p90, double stored_median);

// The second look's choice (see the header): the index of the first sample (threads[0]) of every
// held-out node, then of every fitting node with a sample measured more than 10% slower than its
// out-of-fold prediction in `fits`, each node once. A node's samples are consecutive, one per
// thread count in the order of `threads` (as the profiler stores them). `held_out`, when given,
// receives how many of the indices are held-out nodes.
std::vector<size_t> second_look_samples(const std::vector<KernelSample>& kernels, const std::vector<int>& threads,
                                        const std::vector<GroupFit>& fits, size_t* held_out = nullptr);

// Measures, fits (CostModel::fit) and returns the complete profile, models and report included.
Result<Profile> run_profile(const ProfileOptions& options);

// The time run_profile plans for each part, in seconds (measuring may overrun a part by one
// sample or step, and fitting comes on top).
struct ProfilePlan {
  double kernels = 0, recheck = 0, resample = 0, calibration = 0, step_recheck = 0, steps = 0, step_repeats = 0;
  double total() const { return kernels + recheck + resample + calibration + step_recheck + steps + step_repeats; }
};
ProfilePlan profile_plan(const ProfileOptions& options);

// The quiet gate's rule for whole steps: whether a step that other processes disturbed in its
// attempt `attempt` (from 0) is measured again, after `busy_steps` steps in a row that were
// disturbed in every attempt: at most 3 attempts, none in a quick profile, and on a machine that
// stays busy (2 such steps in a row) only every fifth step tries again.
bool remeasure_disturbed_step(int attempt, int busy_steps, bool quick);

// Times one training step of `c` as the profiler times calibration and validation steps: through
// a Trainer on random inputs drawn from `rng`, one warm-up step, `profiled` steps with per-node
// times (StepSample::node_seconds: each node's fastest), then the fastest of plain steps lasting
// about rep_seconds (2 to 7; one-thread ones by the thread's CPU time when
// single_thread_cpu_time). Unsupported when its arena is too large to time, or when its packed
// activations overflow their slots (every step would re-run on the fallback schedule, a time
// that is neither schedule's).
Result<StepSample> time_training_step(const StepConfig& c, int threads, int profiled, double rep_seconds,
                                      bool single_thread_cpu_time, uint64_t init_seed, Rng& rng);

// The fixed configurations whose whole steps validate the cost model (none of them is ever
// sampled for kernels). quick: a subset.
std::vector<StepConfig> validation_configs(bool quick);

// Runs single nodes of a graph alone, on buffers it owns (grown as needed, filled once with
// benign random data), at each of its thread counts.
class KernelTimer {
 public:
  // single_thread_cpu_time: ProfileOptions::single_thread_cpu_time.
  explicit KernelTimer(const std::vector<int>& threads, uint64_t seed = 1, bool single_thread_cpu_time = true);
  ~KernelTimer();
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;

  // Bytes of buffers node n needs (inputs, outputs, workspace).
  static size_t node_bytes(const Graph& g, const Node& n);
  // Seconds of one call of node n at each thread count (in the order given to the
  // constructor): the fastest of several timings (at least 3, 2 for calls over 0.2 s, at most
  // kMaxGroups) spending about budget_seconds per thread count. Fails for a node larger than
  // max_bytes.
  static constexpr int kMaxGroups = 25;
  Result<std::vector<double>> time_node(const Graph& g, const Node& n, double budget_seconds,
                                        size_t max_bytes);

 private:
  struct Pool;
  static constexpr int kInputPools = 4;  // signed, positive, zero, post-ReLU-like data
  std::vector<int> threads_;
  bool single_thread_cpu_time_;
  std::vector<std::unique_ptr<ThreadPool>> pools_;
  std::unique_ptr<Pool> inputs_[kInputPools];
  std::unique_ptr<Pool> outputs_;
};

}  // namespace edgetrain
