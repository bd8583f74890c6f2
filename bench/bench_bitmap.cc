// Sparse bitmap storage speed: pack / unpack throughput in GB/s of *dense* bytes (4n), at 50%
// sparsity (a ReLU output of uniform [-1, 1] data, zeros at random positions: the worst case for
// branches), against a plain memcpy of the same dense tensor. Also the 1-bit mask and the masked
// ReLU backward. Tensors: a MobileNetV2 expansion output at 224x224, batch 8 (8x112x112x96, 38.5
// MB) and one at 32x32, batch 32 (32x16x16x96, 3 MB).
//
// Arguments: {tensor (0 large, 1 small), threads, isa (0 auto, 1 portable)}.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "memory/bitmap_codec.h"
#include "ops/bitmap_storage.h"
#include "runtime/thread_pool.h"

namespace edgetrain {
namespace {

constexpr int64_t kNumel[] = {int64_t{8} * 112 * 112 * 96, int64_t{32} * 16 * 16 * 96};
const char* const kLabel[] = {"8x112x112x96", "32x16x16x96"};

std::vector<float> relu_output(int64_t n) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = std::max(0.0f, u(rng));
  return x;
}

struct Setup {
  int64_t n;
  std::vector<float> x;
  ThreadPool pool;
  CodecIsa isa;
  explicit Setup(const benchmark::State& s)
      : n(kNumel[s.range(0)]), x(relu_output(n)), pool(static_cast<int>(s.range(1))),
        isa(s.range(2) == 1 ? CodecIsa::kPortable : CodecIsa::kAuto) {}
  void finish(benchmark::State& s) const {
    s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * n * 4);
    s.SetLabel(std::string(kLabel[s.range(0)]) + (isa == CodecIsa::kPortable ? " portable" : ""));
  }
};

// Slots of uint64 words: 8-byte aligned like (and no worse than) the arena's 64-byte slots.
std::vector<uint64_t> slot_for(int64_t n, int64_t cap) {
  return std::vector<uint64_t>(packed_bytes(n, cap) / 8, 0);
}

void BM_Memcpy(benchmark::State& s) {
  Setup st(s);
  std::vector<float> y(st.x.size(), 1.0f);
  const Parallel par = st.pool.parallel();
  for (auto _ : s) {
    par.for_each(st.n, int64_t{1} << 15, [&](int64_t b, int64_t e) {
      std::memcpy(y.data() + b, st.x.data() + b, static_cast<size_t>(e - b) * 4);
    });
    benchmark::ClobberMemory();
  }
  st.finish(s);
}

void BM_PackSparse(benchmark::State& s) {
  Setup st(s);
  std::vector<uint64_t> slot = slot_for(st.n, st.n);
  const Parallel par = st.pool.parallel();
  int64_t nnz = 0;
  for (auto _ : s) {
    nnz = pack_sparse(st.x.data(), st.n, st.n, slot.data(), par, st.isa).nnz;
    benchmark::ClobberMemory();
  }
  s.counters["packed/dense"] = static_cast<double>(packed_bytes(st.n, nnz)) / (4.0 * st.n);
  st.finish(s);
}

void BM_UnpackSparse(benchmark::State& s) {
  Setup st(s);
  std::vector<uint64_t> slot = slot_for(st.n, st.n);
  const Parallel par = st.pool.parallel();
  pack_sparse(st.x.data(), st.n, st.n, slot.data(), par);
  std::vector<float> y(st.x.size(), 1.0f);
  for (auto _ : s) {
    unpack_sparse(slot.data(), y.data(), par, st.isa);
    benchmark::ClobberMemory();
  }
  st.finish(s);
}

void BM_PackMask(benchmark::State& s) {
  Setup st(s);
  std::vector<uint64_t> bits(static_cast<size_t>(mask_words(st.n)));
  const Parallel par = st.pool.parallel();
  for (auto _ : s) {
    pack_mask(st.x.data(), st.n, 0.0f, 6.0f, bits.data(), par, st.isa);
    benchmark::ClobberMemory();
  }
  st.finish(s);
}

void BM_ReluBackwardMask(benchmark::State& s) {
  Setup st(s);
  std::vector<uint64_t> bits(static_cast<size_t>(mask_words(st.n)));
  const Parallel par = st.pool.parallel();
  pack_mask(st.x.data(), st.n, 0.0f, 6.0f, bits.data(), par);
  std::vector<float> dx(st.x.size());
  for (auto _ : s) {
    relu_backward_masked(st.n, st.x.data(), bits.data(), dx.data(), false, par, st.isa);
    benchmark::ClobberMemory();
  }
  st.finish(s);
}

void args(benchmark::internal::Benchmark* b) {
  for (int64_t tensor : {0, 1})
    for (int64_t threads : {1, 2}) b->Args({tensor, threads, 0});
  for (int64_t tensor : {0, 1}) b->Args({tensor, 1, 1});  // the portable path, one thread
  b->ArgNames({"tensor", "threads", "isa"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}

void memcpy_args(benchmark::internal::Benchmark* b) {
  for (int64_t tensor : {0, 1})
    for (int64_t threads : {1, 2}) b->Args({tensor, threads, 0});
  b->ArgNames({"tensor", "threads", "isa"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_Memcpy)->Apply(memcpy_args);
BENCHMARK(BM_PackSparse)->Apply(args);
BENCHMARK(BM_UnpackSparse)->Apply(args);
BENCHMARK(BM_PackMask)->Apply(args);
BENCHMARK(BM_ReluBackwardMask)->Apply(args);

}  // namespace
}  // namespace edgetrain

BENCHMARK_MAIN();
