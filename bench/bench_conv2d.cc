// Fast conv2d kernels on real MobileNetV2 layer shapes (32x32 input, batch 32), in GFLOP/s
// (2 * multiply-adds per second; the bias gradient is not counted). Forward runs without bias
// and backward weight without db, as in MobileNetV2 where batch norm follows every conv.
// ResNet-18's dense 3x3 stride-1 convs (224x224 batch 8, 32x32 batch 32) run three ways each:
// im2col, Winograd F(2x2, 3x3) and F(4x4, 3x3) (backward weight: F(3x3, 2x2), F(3x3, 4x4)),
// GFLOP/s in the direct conv's nominal FLOPs.
//   OPENBLAS_CORETYPE=Haswell build/bench/bench_conv2d
// EDGETRAIN_THREADS sets the kernels' thread pool size (default 2, the target's core count).
#include <benchmark/benchmark.h>

#include <random>
#include <cstdlib>
#include <vector>

#include "ops/conv2d.h"
#include "ops/conv2d_winograd.h"
#include "runtime/thread_pool.h"

namespace edgetrain {
namespace {

struct Layer {
  int64_t n, h, w, c, out_c;
  int k, stride, pad, groups;
};

// Input sizes are those the layer sees in MobileNetV2 on 32x32 images.
constexpr Layer kProject96to24{32, 8, 8, 96, 24, 1, 1, 0, 1};          // block 2 project conv
constexpr Layer kDepthwise144{32, 8, 8, 144, 144, 3, 1, 1, 144};       // block 3 depthwise
constexpr Layer kStem{32, 32, 32, 3, 32, 3, 2, 1, 1};                  // features.0
// ResNet-18 basic-block 3x3 convs (stride 1): 224x224 input, batch 8 ...
constexpr Layer kR18_56{8, 56, 56, 64, 64, 3, 1, 1, 1};
constexpr Layer kR18_28{8, 28, 28, 128, 128, 3, 1, 1, 1};
constexpr Layer kR18_14{8, 14, 14, 256, 256, 3, 1, 1, 1};
constexpr Layer kR18_7{8, 7, 7, 512, 512, 3, 1, 1, 1};
// ... and 32x32 input, batch 32.
constexpr Layer kR18s_8{32, 8, 8, 64, 64, 3, 1, 1, 1};
constexpr Layer kR18s_4{32, 4, 4, 128, 128, 3, 1, 1, 1};
constexpr Layer kR18s_2{32, 2, 2, 256, 256, 3, 1, 1, 1};
constexpr Layer kResNetStem32{32, 32, 32, 3, 64, 7, 2, 3, 1};           // ResNet-18 conv1, 32x32 b32
constexpr Layer kResNetStem224{8, 224, 224, 3, 64, 7, 2, 3, 1};         // ResNet-18 conv1, 224x224 b8

std::vector<float> random_buffer(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

void run_layer(benchmark::State& state, const Layer& l, OpKind op,
               WinogradPolicy policy = WinogradPolicy::kAuto) {
  set_winograd_policy(policy);  // before the workspace is sized
  Attrs attrs;
  attrs.conv.kernel_h = attrs.conv.kernel_w = l.k;
  attrs.conv.stride_h = attrs.conv.stride_w = l.stride;
  attrs.conv.pad_h = attrs.conv.pad_w = l.pad;
  attrs.conv.groups = l.groups;
  const Shape xs{l.n, l.h, l.w, l.c};
  const Shape ws{l.out_c, l.k, l.k, l.c / l.groups};
  const Shape ys = conv2d_output_shape(xs, ws, attrs.conv).value();
  std::vector<float> x = random_buffer(xs.numel(), 1), w = random_buffer(ws.numel(), 2),
                     y = random_buffer(ys.numel(), 3);

  // Slots per direction (see ops/op.h): fwd {x, w, b?} -> {y}; data {dy, w} -> {dx};
  // weight {dy, x} -> {dw?, db?}.
  std::vector<void*> in, out;
  std::vector<Shape> in_shape, out_shape;
  if (op == OpKind::kConv2d) {
    in = {x.data(), w.data(), nullptr}, in_shape = {xs, ws, Shape{l.out_c}};
    out = {y.data()}, out_shape = {ys};
  } else if (op == OpKind::kConv2dBackwardData) {
    in = {y.data(), w.data()}, in_shape = {ys, ws};
    out = {x.data()}, out_shape = {xs};
  } else {
    in = {y.data(), x.data()}, in_shape = {ys, xs};
    out = {w.data(), nullptr}, out_shape = {ws, Shape{l.out_c}};
  }
  const OpInfo& info = op_info(op);
  const size_t ws_bytes = info.workspace(attrs, in_shape.data(), (int)in.size(), out_shape.data(),
                                         (int)out.size());
  std::vector<float> workspace(ws_bytes / sizeof(float) + 1);
  const char* threads = std::getenv("EDGETRAIN_THREADS");
  ThreadPool pool(threads ? std::atoi(threads) : 2);
  KernelCall call;
  call.attrs = &attrs;
  call.in = in.data(), call.in_shape = in_shape.data(), call.n_in = (int)in.size();
  call.out = out.data(), call.out_shape = out_shape.data(), call.n_out = (int)out.size();
  call.workspace = workspace.data(), call.workspace_bytes = ws_bytes;
  call.parallel = pool.parallel();

  for (auto _ : state) {
    info.fast(call);
    benchmark::ClobberMemory();
  }
  set_winograd_policy(WinogradPolicy::kAuto);
  const double flops = 2.0 * ys.numel() * l.k * l.k * (l.c / l.groups);
  // Wall time (UseRealTime below): the kernels and OpenBLAS run on several threads.
  state.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_CAPTURE(run_layer, pw96to24_8x8_fwd, kProject96to24, OpKind::kConv2d)->UseRealTime();
BENCHMARK_CAPTURE(run_layer, pw96to24_8x8_bwd_data, kProject96to24, OpKind::kConv2dBackwardData)->UseRealTime();
BENCHMARK_CAPTURE(run_layer, pw96to24_8x8_bwd_weight, kProject96to24, OpKind::kConv2dBackwardWeight)->UseRealTime();
BENCHMARK_CAPTURE(run_layer, dw144_s1_8x8_fwd, kDepthwise144, OpKind::kConv2d)->UseRealTime();
BENCHMARK_CAPTURE(run_layer, dw144_s1_8x8_bwd_data, kDepthwise144, OpKind::kConv2dBackwardData)->UseRealTime();
BENCHMARK_CAPTURE(run_layer, dw144_s1_8x8_bwd_weight, kDepthwise144, OpKind::kConv2dBackwardWeight)->UseRealTime();
BENCHMARK_CAPTURE(run_layer, stem3to32_s2_32x32_fwd, kStem, OpKind::kConv2d)->UseRealTime();
BENCHMARK_CAPTURE(run_layer, stem3to32_s2_32x32_bwd_data, kStem, OpKind::kConv2dBackwardData)->UseRealTime();
BENCHMARK_CAPTURE(run_layer, resnet_stem7x7_s2_32x32_b32_fwd, kResNetStem32, OpKind::kConv2d)->UseRealTime();
BENCHMARK_CAPTURE(run_layer, resnet_stem7x7_s2_224x224_b8_fwd, kResNetStem224, OpKind::kConv2d)->UseRealTime();
BENCHMARK_CAPTURE(run_layer, stem3to32_s2_32x32_bwd_weight, kStem, OpKind::kConv2dBackwardWeight)->UseRealTime();

#define ET_BENCH_3WAYS(name, layer, op, dir)                                                      \
  BENCHMARK_CAPTURE(run_layer, name##_##dir##_im2col, layer, op, WinogradPolicy::kOff)->UseRealTime()->MeasureProcessCPUTime(); \
  BENCHMARK_CAPTURE(run_layer, name##_##dir##_f2, layer, op, WinogradPolicy::kF2)->UseRealTime()->MeasureProcessCPUTime();      \
  BENCHMARK_CAPTURE(run_layer, name##_##dir##_f4, layer, op, WinogradPolicy::kF4)->UseRealTime()->MeasureProcessCPUTime()
#define ET_BENCH_LAYER(name, layer)                                \
  ET_BENCH_3WAYS(name, layer, OpKind::kConv2d, fwd);               \
  ET_BENCH_3WAYS(name, layer, OpKind::kConv2dBackwardData, bwd_data); \
  ET_BENCH_3WAYS(name, layer, OpKind::kConv2dBackwardWeight, bwd_weight)

ET_BENCH_LAYER(r18_b8_56x56x64, kR18_56);
ET_BENCH_LAYER(r18_b8_28x28x128, kR18_28);
ET_BENCH_LAYER(r18_b8_14x14x256, kR18_14);
ET_BENCH_LAYER(r18_b8_7x7x512, kR18_7);
ET_BENCH_LAYER(r18_b32_8x8x64, kR18s_8);
ET_BENCH_LAYER(r18_b32_4x4x128, kR18s_4);
ET_BENCH_LAYER(r18_b32_2x2x256, kR18s_2);

}  // namespace
}  // namespace edgetrain

BENCHMARK_MAIN();
