// Fast conv2d kernels on real MobileNetV2 and ResNet-18 layer shapes (32x32 input, batch 32), in
// GFLOP/s (2 * multiply-adds per second of the full conv, padding taps included, so pruned plans
// show as higher rates; the bias gradient is not counted). Forward runs without bias and backward
// weight without db, as in both models where batch norm follows every conv.
// The ResNet-18 layers run once per tap-pruning plan of the im2col path (.../none is the plain
// im2col, .../auto what the kernels pick), next to each other so that A/B pairs share conditions.
//   OPENBLAS_CORETYPE=Haswell build/bench/bench_conv2d --benchmark_filter=r18
// ResNet-18's dense 3x3 stride-1 convs (224x224 batch 8, 32x32 batch 32) also run three ways each
// (r18_b*): im2col, Winograd F(2x2, 3x3) and F(4x4, 3x3) (backward weight: F(3x3, 2x2) and
// F(3x3, 4x4)), GFLOP/s in the nominal FLOPs.
// EDGETRAIN_THREADS sets the kernels' thread pool size (default 2, the target's core count).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <cstdlib>
#include <vector>

#include "bench/conv_call.h"
#include "ops/conv2d.h"
#include "ops/conv2d_im2col.h"
#include "ops/conv2d_winograd.h"
#include "ops/gemm.h"
#include "ops/simd.h"
#include "runtime/blas_env.h"
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

// ResNet-18 on 32x32 images: the stem, then 8x8, 4x4, 2x2 and 1x1 maps in layer1..layer4.
struct NamedLayer {
  const char* name;
  Layer layer;
};
constexpr NamedLayer kResNet18[] = {
    {"r18_stem7x7_s2_32x32", {32, 32, 32, 3, 64, 7, 2, 3, 1}},
    {"r18_l1_3x3_8x8", {32, 8, 8, 64, 64, 3, 1, 1, 1}},
    {"r18_l2_3x3_s2_8x8", {32, 8, 8, 64, 128, 3, 2, 1, 1}},
    {"r18_l2_3x3_4x4", {32, 4, 4, 128, 128, 3, 1, 1, 1}},
    {"r18_l2_down1x1_s2_8x8", {32, 8, 8, 64, 128, 1, 2, 0, 1}},
    {"r18_l3_3x3_s2_4x4", {32, 4, 4, 128, 256, 3, 2, 1, 1}},
    {"r18_l3_3x3_2x2", {32, 2, 2, 256, 256, 3, 1, 1, 1}},
    {"r18_l3_down1x1_s2_4x4", {32, 4, 4, 128, 256, 1, 2, 0, 1}},
    {"r18_l4_3x3_s2_2x2", {32, 2, 2, 256, 512, 3, 2, 1, 1}},
    {"r18_l4_3x3_1x1", {32, 1, 1, 512, 512, 3, 1, 1, 1}},
    {"r18_l4_down1x1_s2_2x2", {32, 2, 2, 256, 512, 1, 2, 0, 1}},
};
// ResNet-18 on 224x224 images, batch 8: little padding waste, the plain im2col plan (auto only).
constexpr NamedLayer kResNet18At224[] = {
    {"r18at224_stem7x7_s2_224x224", {8, 224, 224, 3, 64, 7, 2, 3, 1}},
    {"r18at224_l1_3x3_56x56", {8, 56, 56, 64, 64, 3, 1, 1, 1}},
    {"r18at224_l2_3x3_s2_56x56", {8, 56, 56, 64, 128, 3, 2, 1, 1}},
    {"r18at224_l2_3x3_28x28", {8, 28, 28, 128, 128, 3, 1, 1, 1}},
    {"r18at224_l2_down1x1_s2_56x56", {8, 56, 56, 64, 128, 1, 2, 0, 1}},
    {"r18at224_l3_down1x1_s2_28x28", {8, 28, 28, 128, 256, 1, 2, 0, 1}},
    {"r18at224_l4_down1x1_s2_14x14", {8, 14, 14, 256, 512, 1, 2, 0, 1}},
    {"r18at224_l3_3x3_14x14", {8, 14, 14, 256, 256, 3, 1, 1, 1}},
    {"r18at224_l4_3x3_s2_14x14", {8, 14, 14, 256, 512, 3, 2, 1, 1}},
    {"r18at224_l4_3x3_7x7", {8, 7, 7, 512, 512, 3, 1, 1, 1}},
};

void run_layer_with(benchmark::State& state, const Layer& l, OpKind op, TapPruning pruning,
                    WinogradPolicy policy) {
  set_tap_pruning_for_testing(pruning);  // before the workspace is sized
  set_winograd_policy(policy);
  Attrs attrs;
  attrs.conv.kernel_h = attrs.conv.kernel_w = l.k;
  attrs.conv.stride_h = attrs.conv.stride_w = l.stride;
  attrs.conv.pad_h = attrs.conv.pad_w = l.pad;
  attrs.conv.groups = l.groups;
  const Shape xs{l.n, l.h, l.w, l.c};
  const Shape ws{l.out_c, l.k, l.k, l.c / l.groups};
  const Shape ys = conv2d_output_shape(xs, ws, attrs.conv).value();
  bench::ConvCall call(attrs, xs, ws, op);

  for (auto _ : state) {
    call.run();
    benchmark::ClobberMemory();
  }
  set_winograd_policy(WinogradPolicy::kAuto);
  const double flops = 2.0 * ys.numel() * l.k * l.k * (l.c / l.groups);
  // Wall time (UseRealTime below): the kernels and OpenBLAS run on several threads.
  state.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  set_tap_pruning_for_testing(TapPruning::kAuto);
}

void run_layer(benchmark::State& state, const Layer& l, OpKind op, TapPruning pruning = TapPruning::kAuto) {
  run_layer_with(state, l, op, pruning, WinogradPolicy::kAuto);
}

void run_layer_winograd(benchmark::State& state, const Layer& l, OpKind op, WinogradPolicy policy) {
  run_layer_with(state, l, op, TapPruning::kAuto, policy);
}

// On a shared machine the minimum over many short repetitions is the most stable figure:
//   EDGETRAIN_BENCH_ITERATIONS=5 build/bench/bench_conv2d --benchmark_filter=r18
//       --benchmark_repetitions=20 --benchmark_enable_random_interleaving=true
// (the "_min" rows; with EDGETRAIN_THREADS=1 their cpu_time is the calling thread's own).
// EDGETRAIN_BENCH_BATCH overrides the batch of these layers (micro-batches).
void register_resnet18() {
  const char* iter_env = std::getenv("EDGETRAIN_BENCH_ITERATIONS");
  const int64_t iterations = iter_env ? std::atoll(iter_env) : 0;
  const char* batch_env = std::getenv("EDGETRAIN_BENCH_BATCH");  // e.g. a micro-batch size
  const int64_t batch = batch_env ? std::atoll(batch_env) : 0;
  const struct {
    const char* name;
    OpKind op;
  } dirs[] = {{"fwd", OpKind::kConv2d},
              {"bwd_data", OpKind::kConv2dBackwardData},
              {"bwd_weight", OpKind::kConv2dBackwardWeight}};
  const struct {
    const char* name;
    TapPruning mode;
  } plans[] = {{"none", TapPruning::kNone}, {"global", TapPruning::kGlobal},
               {"classes", TapPruning::kClasses}, {"auto", TapPruning::kAuto}};
  std::vector<std::pair<NamedLayer, bool>> layers;  // (layer, every plan)
  for (const NamedLayer& nl : kResNet18) layers.push_back({nl, true});
  for (const NamedLayer& nl : kResNet18At224) layers.push_back({nl, false});
  for (const auto& [nl, every_plan] : layers)
    for (const auto& d : dirs)
      for (const auto& p : plans) {
        if (!every_plan && p.mode != TapPruning::kAuto) continue;
        const std::string name = std::string(nl.name) + "_" + d.name + "/" + p.name;
        Layer l = nl.layer;
        if (batch > 0) l.n = batch;
        const OpKind op = d.op;
        const TapPruning mode = p.mode;
        auto* b = benchmark::RegisterBenchmark(name.c_str(), [l, op, mode](benchmark::State& st) {
          run_layer(st, l, op, mode);
        });
        b->UseRealTime()->ComputeStatistics("min", [](const std::vector<double>& v) {
          return *std::min_element(v.begin(), v.end());
        });
        if (iterations > 0) b->Iterations(iterations);
      }
}

// MobileNetV2's pointwise convs on 32x32 images, batch 32 (8,192 rows at 16x16 down to 128 at
// 2x2, 32 at 1x1), and ResNet-18's 1x1 stride-2 downsampling convs, each direction twice: /openblas with
// ops/gemm.cc's streaming kernels for skinny and short GEMMs off, /stream with it on (the default).
//   build/bench/bench_conv2d --benchmark_filter='^pw_|down1x1' --benchmark_repetitions=5
//       --benchmark_enable_random_interleaving=true
constexpr NamedLayer kPointwise[] = {
    {"pw_16to8_16x16_w0.5", {32, 16, 16, 16, 8, 1, 1, 0, 1}},  // width 0.5 (the demo's model): block 1's project
    {"pw_32to16_16x16", {32, 16, 16, 32, 16, 1, 1, 0, 1}},
    {"pw_16to96_16x16", {32, 16, 16, 16, 96, 1, 1, 0, 1}},
    {"pw_96to24_8x8", {32, 8, 8, 96, 24, 1, 1, 0, 1}},
    {"pw_24to144_8x8", {32, 8, 8, 24, 144, 1, 1, 0, 1}},
    {"pw_144to24_8x8", {32, 8, 8, 144, 24, 1, 1, 0, 1}},
    {"pw_144to32_4x4", {32, 4, 4, 144, 32, 1, 1, 0, 1}},
    {"pw_32to192_4x4", {32, 4, 4, 32, 192, 1, 1, 0, 1}},
    {"pw_192to64_2x2", {32, 2, 2, 192, 64, 1, 1, 0, 1}},
    {"pw_64to384_2x2", {32, 2, 2, 64, 384, 1, 1, 0, 1}},
    {"pw_384to96_2x2", {32, 2, 2, 384, 96, 1, 1, 0, 1}},
    {"pw_96to576_2x2", {32, 2, 2, 96, 576, 1, 1, 0, 1}},
    {"pw_576to160_1x1", {32, 1, 1, 576, 160, 1, 1, 0, 1}},  // block 6.0 project (1x1 maps: 32 rows)
    {"pw_160to960_1x1", {32, 1, 1, 160, 960, 1, 1, 0, 1}},
    {"pw_320to1280_1x1", {32, 1, 1, 320, 1280, 1, 1, 0, 1}},  // the last conv
    {"pw_at224_24to144_56x56_b8", {8, 56, 56, 24, 144, 1, 1, 0, 1}},
    {"pw_at224_144to24_56x56_b8", {8, 56, 56, 144, 24, 1, 1, 0, 1}},
    {"down1x1_s2_64to128_8x8", {32, 8, 8, 64, 128, 1, 2, 0, 1}},
    {"down1x1_s2_128to256_4x4", {32, 4, 4, 128, 256, 1, 2, 0, 1}},
    {"down1x1_s2_256to512_2x2", {32, 2, 2, 256, 512, 1, 2, 0, 1}},
    {"down1x1_s2_at224_64to128_56x56_b8", {8, 56, 56, 64, 128, 1, 2, 0, 1}},
};

void register_pointwise() {
  const struct {
    const char* name;
    OpKind op;
  } dirs[] = {{"fwd", OpKind::kConv2d},
              {"bwd_data", OpKind::kConv2dBackwardData},
              {"bwd_weight", OpKind::kConv2dBackwardWeight}};
  for (const NamedLayer& nl : kPointwise)
    for (const auto& d : dirs)
      for (bool stream : {false, true}) {
        const std::string name = std::string(nl.name) + "_" + d.name + (stream ? "/stream" : "/openblas");
        const Layer l = nl.layer;
        const OpKind op = d.op;
        auto* b = benchmark::RegisterBenchmark(name.c_str(), [l, op, stream](benchmark::State& st) {
          set_gemm_streaming(stream);
          run_layer(st, l, op);
          set_gemm_streaming(true);
        });
        b->UseRealTime()->ComputeStatistics("min", [](const std::vector<double>& v) {
          return *std::min_element(v.begin(), v.end());
        });
      }
}

// The reference the GEMM-shaped layers are measured against (issue 5: >= 60% of it): a 1024^3
// SGEMM split over the pool by ops/gemm.h as the conv kernels run it (/pool), and OpenBLAS alone
// on the calling thread (/openblas1). Run it in the same process, interleaved with the layers:
//   build/bench/bench_conv2d --benchmark_filter='^pw_|down1x1|sgemm_peak|read_bw'
//       --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
void sgemm_peak(benchmark::State& state, bool pool) {
  constexpr int64_t kN = 1024;
  const bench::Buffer a = bench::random_buffer(kN * kN, 1), b = bench::random_buffer(kN * kN, 2);
  bench::Buffer c(kN * kN);
  ThreadPool threads(pool ? bench::bench_threads() : 1);
  const Parallel par = threads.parallel();
  for (auto _ : state) {
    gemm(par, false, false, kN, kN, kN, 1.0f, a.data(), kN, b.data(), kN, 0.0f, c.data(), kN);
    benchmark::ClobberMemory();
  }
  state.counters["FLOPS"] = benchmark::Counter(2.0 * kN * kN * kN, benchmark::Counter::kIsIterationInvariantRate);
}
double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
BENCHMARK_CAPTURE(sgemm_peak, pool, true)->UseRealTime()->ComputeStatistics("min", min_of);
BENCHMARK_CAPTURE(sgemm_peak, openblas1, false)->UseRealTime()->ComputeStatistics("min", min_of);

// Read bandwidth of the pool's threads, each summing its half of a buffer of state.range(0) KiB
// (sized to sit in L2, L3 or memory): whether a layer moving B bytes in T seconds is near the
// bandwidth it gets from where its operands live. Counter "bytes_per_second".
void read_bw(benchmark::State& state) {
  const int64_t floats = state.range(0) * 256;
  const bench::Buffer buf = bench::random_buffer(floats, 4);
  ThreadPool threads(bench::bench_threads());
  const Parallel par = threads.parallel();
  float sink[64] = {};
  for (auto _ : state) {
    par.for_each(64, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        simd::V16 s[4] = {};  // four sums: not bound by the add latency
        const float* q = buf.data() + floats * p / 64;
        const int64_t n = floats / 64 / (4 * simd::kLanes) * (4 * simd::kLanes);
        for (int64_t i = 0; i < n; i += 4 * simd::kLanes)
          for (int j = 0; j < 4; ++j) s[j] += simd::load<simd::V16>(q + i + j * simd::kLanes);
        sink[p] = (s[0] + s[1] + s[2] + s[3])[0];
      }
    });
    benchmark::DoNotOptimize(sink);
  }
  state.SetBytesProcessed(state.iterations() * floats * 4);
}
BENCHMARK(read_bw)->Arg(1024)->Arg(32 << 10)->Arg(1 << 20)->UseRealTime()->ComputeStatistics("min", min_of);

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
  BENCHMARK_CAPTURE(run_layer_winograd, name##_##dir##_im2col, layer, op, WinogradPolicy::kOff)->UseRealTime()->MeasureProcessCPUTime(); \
  BENCHMARK_CAPTURE(run_layer_winograd, name##_##dir##_f2, layer, op, WinogradPolicy::kF2)->UseRealTime()->MeasureProcessCPUTime();      \
  BENCHMARK_CAPTURE(run_layer_winograd, name##_##dir##_f4, layer, op, WinogradPolicy::kF4)->UseRealTime()->MeasureProcessCPUTime()
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

int main(int argc, char** argv) {
  // As in the executor: OpenBLAS runs single-threaded inside our pool (ops/gemm.h); its own idle
  // threads would otherwise spin in sched_yield next to the measured kernels.
  edgetrain::set_blas_threads(1);
  edgetrain::register_resnet18();
  edgetrain::register_pointwise();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
