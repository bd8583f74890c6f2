// Training batch norm with a fused ReLU6 on MobileNetV2's norm shapes (width 1.0; 32x32 batch 32
// and 224x224 batch 8), as a training step runs it: forward (statistics, then normalise), the
// backward (the two sums, then dx, dgamma, dbeta) and the forward's normalising pass alone (the
// apply of memory/norm_recompute.h). Inputs stay warm between calls, as in a step where the
// producing conv has just written them. Batch norm was 30% of MobileNetV2's step in session 9's
// profile, much of it on maps of 1x1 to 4x4 where each call has few rows and many channels.
//
// Arguments: {shape index}; EDGETRAIN_THREADS threads (default 2).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench/conv_call.h"
#include "ops/batch_norm.h"
#include "runtime/thread_pool.h"

namespace edgetrain {
namespace {

struct NormShape {
  const char* label;
  int64_t n, h, w, c;
};

constexpr NormShape kShapes[] = {
    {"32x32 b32 16x16x96", 32, 16, 16, 96},   {"32x32 b32 8x8x144", 32, 8, 8, 144},
    {"32x32 b32 4x4x192", 32, 4, 4, 192},     {"32x32 b32 2x2x576", 32, 2, 2, 576},
    {"32x32 b32 2x2x384", 32, 2, 2, 384},     {"32x32 b32 1x1x960", 32, 1, 1, 960},
    {"32x32 b32 1x1x1280", 32, 1, 1, 1280},   {"224 b8 112x112x96", 8, 112, 112, 96},
    {"224 b8 28x28x192", 8, 28, 28, 192},     {"224 b8 14x14x576", 8, 14, 14, 576},
    {"224 b8 14x14x384", 8, 14, 14, 384},     {"224 b8 7x7x960", 8, 7, 7, 960},
};

// One norm's buffers and calls: slots as ops/op.h gives them (forward {x, gamma, beta,
// running_mean, running_var} -> {y, saved_mean, saved_invstd}; backward {dy, x, gamma, mean,
// invstd, beta} -> {dx, dgamma, dbeta}).
class NormCall {
 public:
  explicit NormCall(const NormShape& s)
      : xs_{s.n, s.h, s.w, s.c}, cs_{s.c}, pool_(bench::bench_threads()) {
    const int64_t n = xs_.numel();
    x_ = bench::random_buffer(n, 1), y_ = bench::random_buffer(n, 2), dy_ = bench::random_buffer(n, 3),
    dx_ = bench::random_buffer(n, 4);
    gamma_ = bench::random_buffer(s.c, 5), beta_ = bench::random_buffer(s.c, 6);
    mean_ = bench::random_buffer(s.c, 7), var_ = bench::random_buffer(s.c, 8);
    for (float& v : var_) v = std::abs(v) + 0.5f;
    saved_mean_ = mean_, saved_invstd_ = var_, dgamma_ = gamma_, dbeta_ = beta_;
    attrs_.norm.training = true;
    attrs_.activation = FusedActivation::kRelu6;
    workspace_.resize(batch_norm_workspace(attrs_, &xs_, 1, nullptr, 0) / sizeof(float) + 16);
  }

  void forward(bool apply_saved) {
    attrs_.norm.apply_saved = apply_saved;
    void* in[5] = {x_.data(), gamma_.data(), beta_.data(), apply_saved ? saved_mean_.data() : mean_.data(),
                   apply_saved ? saved_invstd_.data() : var_.data()};
    Shape in_shape[5] = {xs_, cs_, cs_, cs_, cs_};
    void* out[3] = {y_.data(), apply_saved ? nullptr : saved_mean_.data(), apply_saved ? nullptr : saved_invstd_.data()};
    Shape out_shape[3] = {xs_, cs_, cs_};
    batch_norm_forward(call(in, in_shape, 5, out, out_shape, 3));
  }

  void backward() {
    attrs_.norm.apply_saved = false;
    void* in[6] = {dy_.data(), x_.data(), gamma_.data(), saved_mean_.data(), saved_invstd_.data(), beta_.data()};
    Shape in_shape[6] = {xs_, xs_, cs_, cs_, cs_, cs_};
    void* out[3] = {dx_.data(), dgamma_.data(), dbeta_.data()};
    Shape out_shape[3] = {xs_, cs_, cs_};
    batch_norm_backward(call(in, in_shape, 6, out, out_shape, 3));
  }

  int64_t bytes_per_element_pass() const { return xs_.numel() * int64_t{sizeof(float)}; }

 private:
  KernelCall call(void** in, Shape* in_shape, int n_in, void** out, Shape* out_shape, int n_out) {
    KernelCall c;
    c.attrs = &attrs_;
    c.in = in, c.in_shape = in_shape, c.n_in = n_in;
    c.out = out, c.out_shape = out_shape, c.n_out = n_out;
    c.workspace = workspace_.data(), c.workspace_bytes = workspace_.size() * sizeof(float);
    c.parallel = pool_.parallel();
    return c;
  }

  Shape xs_, cs_;
  Attrs attrs_;
  ThreadPool pool_;
  bench::Buffer x_, y_, dy_, dx_, gamma_, beta_, mean_, var_, saved_mean_, saved_invstd_, dgamma_, dbeta_;
  bench::Buffer workspace_;
};

// Bytes per call as the kernels move them: forward reads x twice and writes y; the apply reads x
// and writes y; the backward reads dy and x twice and writes dx.
void report(benchmark::State& s, const NormCall& nc, int passes) {
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * passes * nc.bytes_per_element_pass());
  s.SetLabel(kShapes[s.range(0)].label);
}

void BM_NormForward(benchmark::State& s) {
  NormCall nc(kShapes[s.range(0)]);
  for (auto _ : s) nc.forward(false), benchmark::ClobberMemory();
  report(s, nc, 3);
}

void BM_NormApply(benchmark::State& s) {
  NormCall nc(kShapes[s.range(0)]);
  for (auto _ : s) nc.forward(true), benchmark::ClobberMemory();
  report(s, nc, 2);
}

void BM_NormBackward(benchmark::State& s) {
  NormCall nc(kShapes[s.range(0)]);
  for (auto _ : s) nc.backward(), benchmark::ClobberMemory();
  report(s, nc, 5);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int i = 0; i < static_cast<int>(std::size(kShapes)); ++i) b->Arg(i);
  b->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_NormForward)->Apply(shapes);
BENCHMARK(BM_NormApply)->Apply(shapes);
BENCHMARK(BM_NormBackward)->Apply(shapes);

}  // namespace
}  // namespace edgetrain

BENCHMARK_MAIN();
