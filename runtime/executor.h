// The executor runs a finalized schedule on one arena. Everything is resolved when it is created:
// the arena layout (memory/liveness), one allocation of the arena, and a prebuilt KernelCall per
// node with its pointers. run() then only calls kernels in order: no allocation, no lookups.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "memory/liveness.h"
#include "runtime/graph.h"
#include "runtime/parameter_store.h"
#include "runtime/status.h"
#include "runtime/thread_pool.h"

namespace edgetrain {

struct ExecutorOptions {
  int threads = 2;
  bool reference_kernels = false;  // run the naive kernels (tests)
  // Momentum / Adam moments, bound by value name (runtime/trainer.cc creates it from the
  // schedule's optimizer-state values). Required when the schedule has update nodes with state.
  ParameterStore* optimizer_state = nullptr;
  // Run in a caller's block instead of allocating one (schedules that share an arena, such as a
  // compression fallback). It must hold arena_bytes + kArenaSlackBytes and stay alive.
  unsigned char* arena = nullptr;
  size_t arena_capacity = 0;
};

// An arena starts filled with this byte so measured_high_water() can find what steps wrote.
constexpr unsigned char kArenaFillByte = 0xA5;

// Bytes past the planned arena kept readable (XNNPACK and vector tails read a little past ends).
constexpr size_t kArenaSlackBytes = 64;

class Executor {
 public:
  // `g` must be finalized (runtime/schedule.h). Parameters and buffers are bound to `params`,
  // which must outlive the executor and have been created from the same ParamSpecs.
  static Result<std::unique_ptr<Executor>> create(Graph g, ParameterStore* params,
                                                  const ExecutorOptions& options);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Runs every node of the schedule once, denormal floats flushed to zero on this thread for the
  // step (runtime/float_env.h; its own mode is restored after). Returns false, having run no
  // update, when a sparse activation slot overflowed its capacity (the step's results are then
  // void; see Trainer).
  bool run(const StepScalars& step);
  // The same, adding each node's wall time in seconds to node_seconds[i] (graph().nodes order).
  bool run_profiled(const StepScalars& step, double* node_seconds);
  // Fills the whole arena with the pattern measured_high_water() looks for.
  void refill_arena_pattern();

  float* input() { return static_cast<float*>(ptr(graph_.input)); }
  int32_t* labels() { return static_cast<int32_t*>(ptr(graph_.labels)); }
  // The batch's loss of the last run (the sum over micro-batches in a micro-batched schedule).
  float loss() const { return loss_; }
  const float* logits() const { return static_cast<const float*>(ptr(graph_.logits)); }
  void* ptr(ValueId v) const { return pointers_[static_cast<size_t>(v)]; }

  const Graph& graph() const { return graph_; }
  const ArenaLayout& layout() const { return layout_; }
  size_t arena_bytes() const { return layout_.arena_bytes; }
  // The highest arena byte any step has written so far, found by scanning for the fill pattern
  // the arena was created with (a real measurement, independent of the layout's arithmetic).
  size_t measured_high_water() const;
  int threads() const { return pool_.threads(); }

 private:
  Executor(Graph g, int threads);

  Graph graph_;
  ArenaLayout layout_;
  ThreadPool pool_;
  unsigned char* arena_ = nullptr;
  size_t arena_alloc_bytes_ = 0;
  bool owns_arena_ = true;
  std::vector<uint8_t> checks_overflow_;  // per node: a sparse pack whose slot may overflow
  // Prepare nodes [0, body_begin_) run once, the body [body_begin_, body_end_) micro_batches
  // times, then the updates once.
  size_t body_begin_ = 0;
  size_t body_end_ = 0;
  int micro_batches_ = 1;
  struct ViewPatch {
    size_t call;
    bool output;  // in[] or out[]
    int slot;
    unsigned char* base;
    size_t stride;  // bytes per repetition
  };
  std::vector<ViewPatch> view_patches_;
  // Repetitions after the first accumulate into parameter gradients: their attributes.
  std::vector<std::pair<size_t, Attrs>> accumulate_attrs_;
  std::vector<void*> patched_pointers_;  // per-call pointer arrays are mutated through these
  float loss_ = 0;
  bool run_body(size_t begin, size_t end, double* node_seconds);
  std::vector<void*> pointers_;        // per ValueId
  std::vector<KernelCall> calls_;      // per node, prebuilt
  std::vector<KernelFn> kernels_;      // per node
  std::vector<void*> call_pointers_;   // flat storage behind calls_[i].in / .out
  std::vector<Shape> call_shapes_;
  StepScalars step_;
};

}  // namespace edgetrain
