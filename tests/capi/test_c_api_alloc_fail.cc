// Allocation-failure injection through the C API (as ncnn's TestOOMAllocator and dav1d's
// alloc_fail): operator new is replaced for this test binary, and for every i the i-th
// allocation made by the calling thread inside one C API call throws std::bad_alloc. Each call
// must then return ET_OUT_OF_MEMORY with a message (never crash, never let the exception out,
// never hand back a half-built handle), and succeed once i passes the call's allocation count.
// Also checks that a training step, a prediction and an evaluation through the C API allocate
// nothing at all (on the calling thread; the pool threads are covered by tests/runtime).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <unistd.h>

#include <vector>

#include "edgetrain/edgetrain.h"

namespace {

// Armed only on the thread under test: other threads (the trainer's pool) allocate normally.
thread_local bool t_armed = false;
thread_local long t_countdown = 0;  // allocations left before the failing one
thread_local long t_seen = 0;       // allocations made while armed

bool should_fail() {
  if (!t_armed) return false;
  ++t_seen;
  return t_countdown-- == 0;
}

void* allocate(size_t n, size_t align) {
  if (should_fail()) throw std::bad_alloc();
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align)
                                              : std::malloc(n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(size_t n) { return allocate(n, 0); }
void* operator new[](size_t n) { return allocate(n, 0); }
void* operator new(size_t n, std::align_val_t a) { return allocate(n, static_cast<size_t>(a)); }
void* operator new[](size_t n, std::align_val_t a) { return allocate(n, static_cast<size_t>(a)); }
// nothrow allocations are not failed on purpose: their callers may legitimately carry on
// without the memory (std::stable_sort's temporary buffer, in the arena planner, falls back to
// an in-place merge), so a failure there need not make the call fail.
void* operator new(size_t n, const std::nothrow_t&) noexcept { return std::malloc(n == 0 ? 1 : n); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return std::malloc(n == 0 ? 1 : n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

// Runs `call` with the fail_at-th allocation failing; returns its status and counts the
// allocations it made in *seen.
template <typename Call>
et_status with_failure_at(long fail_at, Call call, long* seen) {
  t_seen = 0;
  t_countdown = fail_at;
  t_armed = true;
  et_status s = call();
  t_armed = false;
  *seen = t_seen;
  return s;
}

et_trainer_config tiny_config() {
  et_trainer_config c;
  et_trainer_config_init(&c);
  c.classes = 3;
  c.input_size = 8;
  c.batch = 4;
  c.threads = 1;
  return c;
}

// Fails every allocation of `call` in turn (every `stride`-th once past the first 300, to keep
// the test fast) and expects ET_OUT_OF_MEMORY each time, then a success. `after_each` cleans up.
template <typename Call, typename Cleanup>
void fail_each_allocation(Call call, Cleanup after_each) {
  long total = -1;
  int failures = 0;
  for (long i = 0;; i += i < 300 ? 1 : 7) {
    long seen = 0;
    et_status s = with_failure_at(i, call, &seen);
    after_each(s);
    if (s == ET_OK) {
      ASSERT_LE(seen, i) << "succeeded although allocation " << i << " failed";
      total = seen;
      break;
    }
    ++failures;
    ASSERT_EQ(s, ET_OUT_OF_MEMORY) << "allocation " << i << ": " << et_last_error();
    ASSERT_STRNE(et_last_error(), "") << "allocation " << i << ": no message";
    ASSERT_LT(i, 1000000) << "no success after a million allocations";
  }
  std::printf("[          ] %d injected failures, %ld allocations in a successful call\n", failures, total);
  EXPECT_GT(failures, 0);
}

TEST(CApiAllocFail, CreateReturnsOutOfMemoryForEveryFailedAllocation) {
  const et_trainer_config c = tiny_config();
  et_trainer* t = nullptr;
  fail_each_allocation([&] { return et_trainer_create(&c, &t); },
                       [&](et_status s) {
                         if (s != ET_OK) {
                           EXPECT_EQ(t, nullptr);
                         }
                         et_trainer_destroy(t);
                         t = nullptr;
                       });
}

TEST(CApiAllocFail, SaveAndLoadReturnOutOfMemoryForEveryFailedAllocation) {
  const et_trainer_config c = tiny_config();
  et_trainer* t = nullptr;
  ASSERT_EQ(et_trainer_create(&c, &t), ET_OK) << et_last_error();
  const std::string path = std::string("/tmp/edgetrain_capi_allocfail_") + std::to_string(getpid()) + ".safetensors";
  ASSERT_NO_FATAL_FAILURE(
      fail_each_allocation([&] { return et_trainer_save_weights(t, path.c_str()); }, [](et_status) {}));
  ASSERT_NO_FATAL_FAILURE(
      fail_each_allocation([&] { return et_trainer_load_weights(t, path.c_str(), 1); }, [](et_status) {}));
  std::remove(path.c_str());
  et_trainer_destroy(t);
}

TEST(CApiAllocFail, StepPredictAndEvaluateAllocateNothing) {
  const et_trainer_config c = tiny_config();
  et_trainer* t = nullptr;
  ASSERT_EQ(et_trainer_create(&c, &t), ET_OK) << et_last_error();
  std::vector<float> images(4 * 8 * 8 * 3, 0.5f);
  std::vector<int32_t> labels = {0, 1, 2, 1};
  long seen = 0;
  float loss = 0;
  // Any allocation would be the failing one (countdown 0).
  EXPECT_EQ(with_failure_at(0, [&] { return et_trainer_step(t, images.data(), labels.data(), 0.01f, &loss); }, &seen),
            ET_OK)
      << et_last_error();
  EXPECT_EQ(seen, 0);
  int32_t classes[4];
  EXPECT_EQ(with_failure_at(0, [&] { return et_trainer_predict(t, images.data(), 4, classes); }, &seen), ET_OK)
      << et_last_error();
  EXPECT_EQ(seen, 0);
  int64_t correct = 0;
  double loss_sum = 0;
  EXPECT_EQ(with_failure_at(0, [&] { return et_trainer_evaluate(t, images.data(), labels.data(), 3, &correct, &loss_sum); },
                            &seen),
            ET_OK)
      << et_last_error();
  EXPECT_EQ(seen, 0);
  et_trainer_destroy(t);
}

}  // namespace
