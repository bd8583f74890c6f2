// Liveness over a schedule, the arena layout it implies, and the memory timeline: the live bytes
// at every schedule step by category, computed without running any kernel. The executor places
// tensors with exactly this layout, so the simulated arena size is the real one.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "runtime/graph.h"
#include "runtime/status.h"

namespace edgetrain {

enum class MemoryCategory : uint8_t {
  kParameters,      // weights and batch-norm statistics (ParameterStore, outside the arena)
  kOptimizerState,  // momentum / Adam moments (the trainer's state block, outside the arena)
  kInputs,          // the batch, labels, loss and logits (arena, persistent)
  kActivations,     // forward values, including those saved for backward (arena)
  kPackedActivations,  // bitmap-packed activations and 1-bit ReLU masks (arena)
  kGradients,       // gradients of activations and parameters (arena)
  kWorkspace,       // per-node scratch (arena)
  kCount,
};
constexpr int kMemoryCategoryCount = static_cast<int>(MemoryCategory::kCount);
const char* memory_category_name(MemoryCategory c);
MemoryCategory memory_category(const Value& v);
// Parameters, buffers and optimizer state live outside the arena, in blocks of their own.
bool value_in_arena(const Value& v);

// Where every value lives. Values outside the arena (parameters, buffers) have offset -1.
struct ArenaLayout {
  std::vector<int64_t> offsets;  // per ValueId
  std::vector<int> first;        // first schedule step a value is live (-1: never used)
  std::vector<int> last;         // last schedule step it is live
  size_t arena_bytes = 0;
  // The highest byte any value occupies (offset + its exact size): what a step really touches,
  // without the alignment padding of the topmost slot. The executor measures the same number.
  size_t high_water_bytes = 0;
};

// Lifetimes from the node order; persistent arena values live across the whole step.
Result<ArenaLayout> layout_arena(const Graph& g);

struct MemoryTimeline {
  // live[s][c]: bytes of category c live during schedule step s (parameters included).
  std::vector<std::array<size_t, kMemoryCategoryCount>> live;
  std::vector<size_t> total;  // per step
  size_t peak_bytes = 0;      // max over steps of total (parameters included)
  int peak_step = 0;
  size_t arena_bytes = 0;     // the arena the layout needs (>= peak of arena categories)
  size_t parameter_bytes = 0; // parameters, buffers and optimizer state: outside the arena
  // The breakdown at the peak step.
  std::array<size_t, kMemoryCategoryCount> at_peak{};
};

MemoryTimeline simulate_memory(const Graph& g, const ArenaLayout& layout);

}  // namespace edgetrain
