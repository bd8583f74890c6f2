// A training step performs no heap allocation: this binary replaces malloc and friends with
// counting wrappers around glibc's and counts every allocation, on every thread (ours and
// OpenBLAS's), while steps 2..N run.
#include <gtest/gtest.h>

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "models/model_zoo.h"
#include "runtime/parameter_store.h"
#include "runtime/trainer.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
// Call stacks of the first few counted allocations, printed when a test fails (no allocation).
constexpr int kTraces = 4, kDepth = 12;
void* g_trace[kTraces][kDepth];
int g_trace_depth[kTraces];
inline void count() {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  long i = g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (i < kTraces) g_trace_depth[i] = backtrace(g_trace[i], kDepth);
}
// backtrace() loads the unwinder (and allocates) on its first call: do that before any test.
const int g_warm_backtrace = [] {
  void* frame[2];
  return backtrace(frame, 2);
}();
void print_traces() {
  for (long i = 0; i < std::min<long>(kTraces, g_allocations.load()); ++i) {
    std::fprintf(stderr, "allocation %ld during a step:\n", i + 1);
    backtrace_symbols_fd(g_trace[i], g_trace_depth[i], STDERR_FILENO);
  }
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  count();
  return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
  count();
  return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
  count();
  return __libc_realloc(p, n);
}
void* aligned_alloc(size_t align, size_t n) {
  count();
  return __libc_memalign(align, n);
}
void* memalign(size_t align, size_t n) {
  count();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  count();
  *out = __libc_memalign(align, n);
  return *out ? 0 : 12;
}
void free(void* p) { __libc_free(p); }
}

namespace edgetrain {
namespace {

long allocations_during_steps(Architecture arch, int input, int64_t batch, FreezeMode mode) {
  GraphFactory f = [=](int64_t b, bool training) {
    ModelSpec spec;
    spec.arch = arch;
    spec.input_size = input;
    if (arch == Architecture::kMobileNetV2) spec.width_mult = 0.35f;
    return build_model(spec, b, training);
  };
  TrainerOptions o;
  o.batch = batch;
  o.config.optimizer.attrs.momentum = 0.9f;
  o.config.freeze.mode = mode;
  Result<std::unique_ptr<Trainer>> t = Trainer::create(f, o);
  EXPECT_TRUE(t.is_ok()) << t.status().to_string();
  if (!t.is_ok()) return -1;
  Trainer& tr = **t;
  Rng rng(1);
  for (int64_t i = 0; i < tr.input_shape().numel(); ++i) tr.train_images()[i] = static_cast<float>(rng.normal());
  for (int64_t i = 0; i < batch; ++i) tr.train_labels()[i] = static_cast<int32_t>(i % 10);
  EXPECT_TRUE(tr.train_step(0.01f).is_ok());  // step 1 may warm up libraries
  void* warm[2];
  backtrace(warm, 2);  // loads the unwinder now, not while counting
  g_allocations = 0;
  g_counting = true;
  for (int step = 0; step < 3; ++step) {
    Result<StepResult> r = tr.train_step(0.01f);
    if (!r.is_ok()) break;
  }
  g_counting = false;
  if (g_allocations.load() > 0) print_traces();
  return g_allocations.load();
}

TEST(NoAllocation, CountingWorks) {
  g_allocations = 0;
  g_counting = true;
  void* volatile p = std::malloc(100);
  g_counting = false;
  std::free(p);
  EXPECT_EQ(g_allocations.load(), 1);
}

TEST(NoAllocation, SmallCnnTrainingStepsAllocateNothing) {
  EXPECT_EQ(allocations_during_steps(Architecture::kSmallCnn, 16, 4, FreezeMode::kNone), 0);
}

TEST(NoAllocation, MobileNetV2TrainingStepsAllocateNothing) {
  EXPECT_EQ(allocations_during_steps(Architecture::kMobileNetV2, 32, 4, FreezeMode::kNone), 0);
}

TEST(NoAllocation, ResNet18ClassifierOnlyStepsAllocateNothing) {
  EXPECT_EQ(allocations_during_steps(Architecture::kResNet18, 32, 2, FreezeMode::kClassifierOnly), 0);
}

}  // namespace
}  // namespace edgetrain
