#include "runtime/executor.h"

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "memory/bitmap_codec.h"
#include "runtime/blas_env.h"
#include "runtime/float_env.h"

namespace edgetrain {

namespace {
}  // namespace

Executor::Executor(Graph g, int threads) : graph_(std::move(g)), pool_(threads) {}

Executor::~Executor() {
  if (owns_arena_) std::free(arena_);
}

Result<std::unique_ptr<Executor>> Executor::create(Graph g, ParameterStore* params,
                                                   const ExecutorOptions& options) {
  if (params == nullptr) return invalid_argument("executor needs a parameter store");
  // Our pool splits GEMMs (ops/gemm.h); OpenBLAS's own threads would allocate on every call.
  set_blas_threads(1);
  std::unique_ptr<Executor> ex(new Executor(std::move(g), options.threads));
  const Graph& graph = ex->graph_;
  ET_ASSIGN_OR_RETURN(ex->layout_, layout_arena(graph));

  ex->arena_alloc_bytes_ = (ex->layout_.arena_bytes + kArenaSlackBytes + 63) / 64 * 64;
  if (options.arena != nullptr) {
    if (options.arena_capacity < ex->arena_alloc_bytes_)
      return invalid_argument("the shared arena holds " + std::to_string(options.arena_capacity) + " bytes; this schedule needs " +
                              std::to_string(ex->arena_alloc_bytes_));
    ex->arena_ = options.arena;
    ex->owns_arena_ = false;
  } else {
    ex->arena_ = static_cast<unsigned char*>(std::aligned_alloc(64, ex->arena_alloc_bytes_));
    if (ex->arena_ == nullptr)
      return out_of_memory("cannot allocate the training arena of " + std::to_string(ex->layout_.arena_bytes) + " bytes");
    // Touch every page now, so steps take no page faults, and lay the pattern for high-water checks.
    ex->refill_arena_pattern();
  }

  ex->pointers_.assign(graph.values.size(), nullptr);
  for (size_t i = 0; i < graph.values.size(); ++i) {
    const Value& v = graph.values[i];
    if (v.role == ValueRole::kParam || v.role == ValueRole::kBuffer) {
      if (v.param_index < 0 || v.param_index >= params->size() ||
          params->spec(v.param_index).shape != v.shape || params->spec(v.param_index).name != v.name)
        return invalid_argument("parameter '" + v.name + "' does not match the parameter store");
      ex->pointers_[i] = params->data(v.param_index);
    } else if (v.role == ValueRole::kOptimizerState) {
      int k = options.optimizer_state ? options.optimizer_state->find(v.name) : -1;
      if (k >= 0 && options.optimizer_state->spec(k).shape == v.shape) ex->pointers_[i] = options.optimizer_state->data(k);
    } else if (ex->layout_.offsets[i] >= 0) {
      ex->pointers_[i] = ex->arena_ + ex->layout_.offsets[i];
    }
  }

  // Prebuild one KernelCall per node. Reserve first: calls point into these vectors.
  size_t slots = 0;
  for (const Node& n : graph.nodes) slots += n.inputs.size() + n.outputs.size();
  ex->call_pointers_.reserve(slots);
  ex->call_shapes_.reserve(slots);
  for (const Node& n : graph.nodes) {
    KernelCall c;
    c.attrs = &n.attrs;
    c.in = ex->call_pointers_.data() + ex->call_pointers_.size();
    c.in_shape = ex->call_shapes_.data() + ex->call_shapes_.size();
    c.n_in = static_cast<int>(n.inputs.size());
    for (ValueId v : n.inputs) {
      ex->call_pointers_.push_back(v == kNoValue ? nullptr : ex->pointers_[static_cast<size_t>(v)]);
      ex->call_shapes_.push_back(v == kNoValue ? Shape{} : graph.value(v).shape);
    }
    c.out = ex->call_pointers_.data() + ex->call_pointers_.size();
    c.out_shape = ex->call_shapes_.data() + ex->call_shapes_.size();
    c.n_out = static_cast<int>(n.outputs.size());
    for (ValueId v : n.outputs) {
      ex->call_pointers_.push_back(v == kNoValue ? nullptr : ex->pointers_[static_cast<size_t>(v)]);
      ex->call_shapes_.push_back(v == kNoValue ? Shape{} : graph.value(v).shape);
    }
    if (n.workspace != kNoValue) {
      c.workspace = ex->pointers_[static_cast<size_t>(n.workspace)];
      c.workspace_bytes = graph.value(n.workspace).bytes();
    }
    c.parallel = ex->pool_.parallel();
    c.step = &ex->step_;
    for (int k = 0; k < c.n_in + c.n_out; ++k) {
      ValueId v = k < c.n_in ? n.inputs[static_cast<size_t>(k)] : n.outputs[static_cast<size_t>(k - c.n_in)];
      if (v != kNoValue && ex->pointers_[static_cast<size_t>(v)] == nullptr)
        return internal_error(std::string("node ") + op_name(n.op) + " [" + n.layer + "] uses value '" +
                              graph.value(v).name + "' which has no memory");
    }
    ex->calls_.push_back(c);
    const OpInfo& info = op_info(n.op);
    ex->kernels_.push_back(options.reference_kernels ? info.reference : info.fast);
    ex->checks_overflow_.push_back(n.op == OpKind::kPackSparse ? 1 : 0);
  }
  // Micro-batching: the body ends at the first update; patch the views and accumulate bits.
  ex->micro_batches_ = std::max(1, graph.micro_batches);
  while (ex->body_begin_ < graph.nodes.size() && graph.nodes[ex->body_begin_].phase == Phase::kPrepare)
    ++ex->body_begin_;
  ex->body_end_ = graph.nodes.size();
  for (size_t i = ex->body_begin_; i < graph.nodes.size(); ++i) {
    if (graph.nodes[i].phase == Phase::kPrepare)
      return internal_error("prepare nodes must come first in a schedule");
    if (graph.nodes[i].phase == Phase::kUpdate) {
      ex->body_end_ = i;
      break;
    }
  }
  if (ex->micro_batches_ > 1) {
    for (size_t i = ex->body_end_; i < graph.nodes.size(); ++i)
      if (graph.nodes[i].phase != Phase::kUpdate)
        return internal_error("a micro-batched schedule must end with all its updates");
    for (size_t i = ex->body_begin_; i < ex->body_end_; ++i) {
      const Node& n = graph.nodes[i];
      for (int k = 0; k < static_cast<int>(n.inputs.size()); ++k) {
        ValueId v = n.inputs[static_cast<size_t>(k)];
        if (v != kNoValue && (v == graph.micro_input || v == graph.micro_labels))
          ex->view_patches_.push_back({i, false, k, static_cast<unsigned char*>(ex->pointers_[static_cast<size_t>(v)]),
                                       graph.value(v).bytes()});
      }
      Attrs acc = n.attrs;
      bool any = false;
      for (size_t k = 0; k < n.outputs.size(); ++k) {
        ValueId v = n.outputs[k];
        if (v == kNoValue) continue;
        const Value& val = graph.value(v);
        if (val.role == ValueRole::kGradient && val.grad_of != kNoValue && graph.value(val.grad_of).role == ValueRole::kParam) {
          acc.accumulate_mask |= 1u << k;
          any = true;
        }
      }
      if (any) ex->accumulate_attrs_.push_back({i, acc});
    }
  }
  return ex;
}

bool Executor::run_body(size_t begin, size_t end, double* node_seconds) {
  for (size_t i = begin; i < end; ++i) {
    if (node_seconds) {
      auto t0 = std::chrono::steady_clock::now();
      kernels_[i](calls_[i]);
      node_seconds[i] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } else {
      kernels_[i](calls_[i]);
    }
    // Packs run in forward passes, before any update: stopping here leaves the weights untouched.
    if (checks_overflow_[i] && packed_overflowed(calls_[i].out[0])) return false;
  }
  return true;
}

bool Executor::run_profiled(const StepScalars& step, double* node_seconds) {
  const ScopedFlushDenormals flush;  // this thread runs kernels too (runtime/float_env.h)
  step_ = step;
  loss_ = 0;
  const float* loss = graph_.loss == kNoValue ? nullptr : static_cast<const float*>(ptr(graph_.loss));
  if (!run_body(0, body_begin_, node_seconds)) return false;
  for (int r = 0; r < micro_batches_; ++r) {
    if (micro_batches_ > 1) {
      // Point the body at slice r of the batch; after the first repetition, accumulate.
      for (const ViewPatch& p : view_patches_) {
        void* const* arr = p.output ? calls_[p.call].out : calls_[p.call].in;
        const_cast<void**>(arr)[p.slot] = p.base + static_cast<size_t>(r) * p.stride;
      }
      if (r == 1)
        for (auto& [call, attrs] : accumulate_attrs_) calls_[call].attrs = &attrs;
      step_.seed = step.seed + static_cast<uint64_t>(r) * 0xd1b54a32d192ed03ull;  // own dropout masks
    }
    bool ok = run_body(body_begin_, body_end_, node_seconds);
    if (micro_batches_ > 1 && (r == micro_batches_ - 1 || !ok))
      for (auto& [call, attrs] : accumulate_attrs_) calls_[call].attrs = &graph_.nodes[call].attrs;
    if (!ok) return false;
    if (loss) loss_ += *loss;
  }
  return run_body(body_end_, calls_.size(), node_seconds);
}

bool Executor::run(const StepScalars& step) { return run_profiled(step, nullptr); }

void Executor::refill_arena_pattern() { std::memset(arena_, kArenaFillByte, arena_alloc_bytes_); }

size_t Executor::measured_high_water() const {
  size_t end = layout_.arena_bytes;
  while (end > 0 && arena_[end - 1] == kArenaFillByte) --end;
  return end;
}

}  // namespace edgetrain
