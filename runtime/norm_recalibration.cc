#include "runtime/norm_recalibration.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "memory/liveness.h"
#include "runtime/executor.h"
#include "runtime/fusion.h"
#include "runtime/schedule.h"

namespace edgetrain {

namespace {

size_t block_bytes(size_t arena) { return (arena + kArenaSlackBytes + 63) / 64 * 64; }

// The statistics pass at `batch` images: the training-mode forward graph whose batch norms write
// the pass's own statistics into the running ones (momentum 1), activations fused, finalized.
Result<Graph> statistics_schedule(const GraphFactory& factory, int64_t batch) {
  ET_ASSIGN_OR_RETURN(Graph g, factory(batch, /*training=*/true));
  for (Node& n : g.nodes) {
    if (n.op != OpKind::kBatchNorm) continue;
    n.attrs.norm.training = true;
    n.attrs.norm.update_running_stats = true;
    n.attrs.norm.momentum = 1.0f;
  }
  fuse_ops(g);
  ET_RETURN_IF_ERROR(finalize_schedule(g));
  return g;
}

struct Fitted {
  Graph graph;
  int64_t batch = 0;
  size_t block = 0;
};

Result<Fitted> fit_statistics_schedule(const GraphFactory& factory, const RecalibrationOptions& o) {
  if (o.batch < 2) return invalid_argument("recalibration needs passes of at least 2 images, got " + std::to_string(o.batch));
  Fitted f;
  f.batch = o.batch;
  for (;;) {
    ET_ASSIGN_OR_RETURN(f.graph, statistics_schedule(factory, f.batch));
    ET_ASSIGN_OR_RETURN(ArenaLayout layout, layout_arena(f.graph));
    f.block = block_bytes(layout.arena_bytes);
    if (o.max_arena_bytes == 0 || f.block <= o.max_arena_bytes) return f;
    if (f.batch <= 2)
      return out_of_memory("recalibrating batch norms needs an arena of " + std::to_string(f.block) +
                           " bytes for 2 images; the limit is " + std::to_string(o.max_arena_bytes));
    f.batch = std::max<int64_t>(2, f.batch / 2);
  }
}

}  // namespace

Result<int64_t> recalibration_batch(const GraphFactory& factory, const RecalibrationOptions& options,
                                    size_t* arena_block_bytes) {
  ET_ASSIGN_OR_RETURN(Fitted f, fit_statistics_schedule(factory, options));
  if (arena_block_bytes != nullptr) *arena_block_bytes = f.block;
  return f.batch;
}

namespace {

// Per norm of a statistics schedule: its running statistics in the store, its channels, values
// per channel per pass, where its channels start in the sums.
struct Norm {
  int mean = -1, var = -1;
  int64_t channels = 0, rows = 0;
  size_t at = 0;
};

Result<std::vector<Norm>> norms_of(const Graph& g) {
  std::vector<Norm> norms;
  size_t channels_total = 0;
  for (const Node& n : g.nodes) {
    if (n.op != OpKind::kBatchNorm) continue;
    Norm m;
    m.mean = g.value(n.inputs[3]).param_index;
    m.var = g.value(n.inputs[4]).param_index;
    const Shape& x = g.value(n.inputs[0]).shape;
    m.channels = x[x.rank - 1];
    m.rows = x.numel() / m.channels;
    m.at = channels_total;
    channels_total += static_cast<size_t>(m.channels);
    if (m.mean < 0 || m.var < 0) return internal_error("a batch norm's running statistics are not model buffers");
    norms.push_back(m);
  }
  if (norms.empty()) return invalid_argument("the model has no batch norm to recalibrate");
  return norms;
}

// Per channel, over every pass: the values seen and the sums of values and of squared values,
// from each pass's mean and unbiased variance (n values: sum = n*mean, sum of squares =
// (n-1)*var + n*mean^2).
struct Sums {
  std::vector<double> count, sum, sum_sq;
};

// Runs passes of `batch` images on `graph` in its own arena block while `next` gives them, at
// most max_passes (-1: no limit), adding each pass's statistics to `sums`; the passes run.
Result<int64_t> run_passes(Graph graph, size_t block_size, int64_t batch, int64_t max_passes, int threads,
                           ParameterStore& params, const std::function<bool(float*, int64_t)>& next, Sums& sums) {
  ET_ASSIGN_OR_RETURN(std::vector<Norm> norms, norms_of(graph));
  ExecutorOptions eo;
  eo.threads = threads;
  std::unique_ptr<unsigned char, decltype(&std::free)> block(static_cast<unsigned char*>(std::aligned_alloc(64, block_size)),
                                                             &std::free);
  if (!block) return out_of_memory("cannot allocate the recalibration arena of " + std::to_string(block_size) + " bytes");
  std::memset(block.get(), kArenaFillByte, block_size);
  eo.arena = block.get();
  eo.arena_capacity = block_size;
  ET_ASSIGN_OR_RETURN(std::unique_ptr<Executor> ex, Executor::create(std::move(graph), &params, eo));
  int64_t passes = 0;
  while ((max_passes < 0 || passes < max_passes) && next(ex->input(), batch)) {
    std::fill(ex->labels(), ex->labels() + batch, 0);  // the loss is not looked at
    ex->run(StepScalars{});
    for (const Norm& m : norms) {
      const float* mean = params.data(m.mean);
      const float* var = params.data(m.var);
      const double n = static_cast<double>(m.rows);
      for (int64_t c = 0; c < m.channels; ++c) {
        const size_t k = m.at + static_cast<size_t>(c);
        const double mu = mean[c];
        sums.count[k] += n;
        sums.sum[k] += n * mu;
        sums.sum_sq[k] += (n - 1.0) * static_cast<double>(var[c]) + n * mu * mu;
      }
    }
    ++passes;
  }
  return passes;
}

}  // namespace

Result<RecalibrationReport> recalibrate_batch_norms(const GraphFactory& factory, ParameterStore& params,
                                                    const RecalibrationOptions& options,
                                                    const std::function<bool(float* images, int64_t n)>& next) {
  auto t0 = std::chrono::steady_clock::now();
  if (!next) return invalid_argument("recalibration needs a source of images");
  ET_ASSIGN_OR_RETURN(Fitted f, fit_statistics_schedule(factory, options));
  ET_ASSIGN_OR_RETURN(std::vector<Norm> norms, norms_of(f.graph));
  const size_t channels_total = norms.back().at + static_cast<size_t>(norms.back().channels);
  Sums sums{std::vector<double>(channels_total, 0.0), std::vector<double>(channels_total, 0.0),
            std::vector<double>(channels_total, 0.0)};

  RecalibrationReport report;
  report.batch = f.batch;
  report.norms = static_cast<int>(norms.size());
  report.arena_bytes = f.block;
  const int64_t full_passes = options.images > 0 ? options.images / f.batch : -1;
  int64_t passes = 0;
  if (full_passes != 0) {
    ET_ASSIGN_OR_RETURN(passes, run_passes(std::move(f.graph), f.block, f.batch, full_passes, options.threads, params,
                                           next, sums));
  }
  report.images = passes * f.batch;
  // The images after the last full pass take one pass at their own size (its arena is smaller,
  // and the first pass's block is freed by now), so every image counts. One image alone has a
  // single value per channel where the maps are 1x1: no variance, so it is left out.
  const int64_t tail = options.images > 0 ? options.images - report.images : 0;
  if (tail >= 2 && (full_passes < 0 || passes == full_passes)) {
    ET_ASSIGN_OR_RETURN(Graph g, statistics_schedule(factory, tail));
    ET_ASSIGN_OR_RETURN(ArenaLayout layout, layout_arena(g));
    const size_t block = block_bytes(layout.arena_bytes);
    if (options.max_arena_bytes == 0 || block <= options.max_arena_bytes) {
      ET_ASSIGN_OR_RETURN(int64_t ran, run_passes(std::move(g), block, tail, 1, options.threads, params, next, sums));
      report.images += ran * tail;
      report.tail = ran * tail;
    }
  }
  if (report.images == 0) return invalid_argument("recalibration got no batch of " + std::to_string(f.batch) + " images");
  for (const Norm& m : norms) {
    float* mean = params.data(m.mean);
    float* var = params.data(m.var);
    for (int64_t c = 0; c < m.channels; ++c) {
      const size_t k = m.at + static_cast<size_t>(c);
      const double n = sums.count[k];
      const double mu = sums.sum[k] / n;
      const double v = (sums.sum_sq[k] - n * mu * mu) / (n - 1.0);
      mean[c] = static_cast<float>(mu);
      var[c] = static_cast<float>(std::max(0.0, v));
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace edgetrain
