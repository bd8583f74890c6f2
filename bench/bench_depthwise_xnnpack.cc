// Depthwise convs: edgetrain's kernels in all three directions against XNNPACK's depthwise
// forward on the same shapes (issue 5: "depthwise conv forward and backward at least as fast as
// XNNPACK's depthwise forward here"). MobileNetV2 (width 1.0) depthwise layers at 224x224 batch 8
// and 32x32 batch 32; both libraries on 2 threads (EDGETRAIN_THREADS overrides), GFLOP/s of
// 2 * multiply-adds over wall time. Rows of one layer run next to each other:
//   OPENBLAS_CORETYPE=auto build/bench/bench_depthwise_xnnpack --benchmark_repetitions=5
//       --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <pthreadpool.h>
#include <xnnpack.h>

#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "bench/conv_call.h"
#include "ops/conv2d.h"

namespace edgetrain {
namespace {

struct Depthwise {
  const char* name;
  int64_t n, h, w, c;
  int stride;
};

// Input sizes as the layer sees them in MobileNetV2; 3x3 kernels, padding 1.
constexpr Depthwise kLayers[] = {
    {"mnv2_224_b8_dw32_112x112", 8, 112, 112, 32, 1},
    {"mnv2_224_b8_dw96_s2_112x112", 8, 112, 112, 96, 2},
    {"mnv2_224_b8_dw144_56x56", 8, 56, 56, 144, 1},
    {"mnv2_224_b8_dw192_28x28", 8, 28, 28, 192, 1},
    {"mnv2_224_b8_dw384_14x14", 8, 14, 14, 384, 1},
    {"mnv2_224_b8_dw576_s2_14x14", 8, 14, 14, 576, 2},
    {"mnv2_224_b8_dw960_7x7", 8, 7, 7, 960, 1},
    {"mnv2_32_b32_dw32_16x16", 32, 16, 16, 32, 1},
    {"mnv2_32_b32_dw144_8x8", 32, 8, 8, 144, 1},
    {"mnv2_32_b32_dw384_2x2", 32, 2, 2, 384, 1},
    {"mnv2_32_b32_dw960_1x1", 32, 1, 1, 960, 1},
};

int64_t out_size(int64_t in, int stride) { return (in + 2 - 3) / stride + 1; }

void set_flops(benchmark::State& state, const Depthwise& l) {
  const double flops = 2.0 * l.n * out_size(l.h, l.stride) * out_size(l.w, l.stride) * l.c * 9;
  state.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

void edgetrain_direction(benchmark::State& state, const Depthwise& l, OpKind op) {
  Attrs attrs;
  attrs.conv.kernel_h = attrs.conv.kernel_w = 3;
  attrs.conv.stride_h = attrs.conv.stride_w = l.stride;
  attrs.conv.pad_h = attrs.conv.pad_w = 1;
  attrs.conv.groups = static_cast<int>(l.c);
  bench::ConvCall call(attrs, Shape{l.n, l.h, l.w, l.c}, Shape{l.c, 3, 3, 1}, op);
  for (auto _ : state) {
    call.run();
    benchmark::ClobberMemory();
  }
  set_flops(state, l);
}

void xnnpack_forward(benchmark::State& state, const Depthwise& l) {
  if (xnn_initialize(nullptr) != xnn_status_success) {
    state.SkipWithError("xnn_initialize failed");
    return;
  }
  const int64_t oh = out_size(l.h, l.stride), ow = out_size(l.w, l.stride);
  bench::Buffer x = bench::random_buffer(l.n * l.h * l.w * l.c, 1), w = bench::random_buffer(l.c * 9, 2);
  bench::Buffer y(static_cast<size_t>(l.n * oh * ow * l.c));
  // groups = C, one input and one output channel per group: the kernel is [C][3][3][1], the
  // OHWI layout edgetrain keeps depthwise weights in.
  xnn_operator_t op = nullptr;
  if (xnn_create_convolution2d_nhwc_f32(1, 1, 1, 1, 3, 3, l.stride, l.stride, 1, 1, static_cast<uint32_t>(l.c), 1, 1,
                                        l.c, l.c, w.data(), nullptr, -std::numeric_limits<float>::infinity(),
                                        std::numeric_limits<float>::infinity(), 0, &op) != xnn_status_success) {
    state.SkipWithError("xnn_create_convolution2d_nhwc_f32 failed");
    return;
  }
  pthreadpool_t pool = pthreadpool_create(static_cast<size_t>(bench::bench_threads()));
  if (xnn_setup_convolution2d_nhwc_f32(op, l.n, l.h, l.w, x.data(), y.data(), pool) != xnn_status_success) {
    state.SkipWithError("xnn_setup_convolution2d_nhwc_f32 failed");
  } else {
    for (auto _ : state) {
      xnn_run_operator(op, pool);
      benchmark::ClobberMemory();
    }
    set_flops(state, l);
  }
  xnn_delete_operator(op);
  pthreadpool_destroy(pool);
}

void register_all() {
  for (const Depthwise& l : kLayers) {
    const std::string base = l.name;
    benchmark::RegisterBenchmark((base + "/xnnpack_fwd").c_str(), [l](benchmark::State& s) { xnnpack_forward(s, l); })
        ->UseRealTime();
    benchmark::RegisterBenchmark((base + "/edgetrain_fwd").c_str(),
                                 [l](benchmark::State& s) { edgetrain_direction(s, l, OpKind::kConv2d); })
        ->UseRealTime();
    benchmark::RegisterBenchmark((base + "/edgetrain_bwd_data").c_str(),
                                 [l](benchmark::State& s) { edgetrain_direction(s, l, OpKind::kConv2dBackwardData); })
        ->UseRealTime();
    benchmark::RegisterBenchmark((base + "/edgetrain_bwd_weight").c_str(),
                                 [l](benchmark::State& s) { edgetrain_direction(s, l, OpKind::kConv2dBackwardWeight); })
        ->UseRealTime();
  }
}

}  // namespace
}  // namespace edgetrain

int main(int argc, char** argv) {
  edgetrain::register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
