// Where the memory of a training step goes, for people: the memory timeline (memory/liveness.h)
// drawn as a self-contained SVG chart (live bytes over the schedule, stacked by category, phases
// shaded, the peak marked, the arena drawn as a line) and written as a terminal report (peak,
// arena, breakdown at the peak, the largest values live there).
//
// Both are pure functions of the training graph, its layout and its timeline: no kernels run, and
// the same inputs give byte-identical output (tests and diffs of reports rely on it).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "memory/liveness.h"
#include "runtime/graph.h"

namespace edgetrain {

struct ChartOptions {
  std::string title;     // the first heading line: model and batch, chosen by the caller
  std::string subtitle;  // the second: a summary of the TrainConfig (optimizer, freezing, ...)
  int width = 1200;      // pixels; the plot takes what the margins and legend leave
  int height = 640;
};

// A maximal run of consecutive schedule steps in one phase (steps first..last inclusive).
struct PhaseSpan {
  Phase phase = Phase::kForward;
  int first = 0;
  int last = 0;
};
std::vector<PhaseSpan> phase_spans(const Graph& training_graph);
// The same, coarser, as the chart shades them: update steps interleaved with backward work (each
// parameter updated as soon as its gradient is ready) count as part of the backward region;
// only updates after all other work form an update region.
std::vector<PhaseSpan> phase_regions(const Graph& training_graph);

// The `count` largest arena values live during schedule step `step` (layout.first <= step <=
// layout.last), largest first; equal sizes in ValueId order so reports are deterministic. Views
// (micro-batch slices) are left out: their bytes are their base's. count < 0: all of them.
std::vector<ValueId> largest_live_values(const Graph& training_graph, const ArenaLayout& layout, int step,
                                         int count);

// The chart. `t` must be simulate_memory(training_graph, layout) for some layout of that graph.
std::string memory_timeline_svg(const Graph& training_graph, const MemoryTimeline& t, const ChartOptions& options);

// The terminal report: peak (step, phase, node), arena and how full it is at the peak, steps per
// phase, the breakdown at the peak by category, and the `top` largest values live at the peak.
std::string memory_timeline_text(const Graph& training_graph, const ArenaLayout& layout, const MemoryTimeline& t,
                                 int top = 10);

// How the chart and the report print sizes: "352 B", "60.0 KiB", "12.34 MiB", "1.50 GiB".
std::string format_size(size_t bytes);

}  // namespace edgetrain
