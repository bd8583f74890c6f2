// Denormal floats are flushed to zero while kernels run (runtime/float_env.h): in a scope, on the
// pool's workers for their lifetime, and on the thread running a training step for that step only.
#include <gtest/gtest.h>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "models/model_zoo.h"
#include "runtime/float_env.h"
#include "runtime/parameter_store.h"
#include "runtime/thread_pool.h"
#include "runtime/trainer.h"

namespace edgetrain {
namespace {

constexpr float kDenormal = 1e-39f;  // below FLT_MIN (1.18e-38)

// x + 0 through memory, so that the compiler cannot fold it: kDenormal itself when denormals
// are kept, exactly 0 when they are flushed.
float add_zero(float x) {
  volatile float a = x, b = 0.0f;
  return a + b;
}

bool can_flush() {
  ScopedFlushDenormals f;
  return denormals_flushed();
}

TEST(FloatEnv, ScopedFlushReadsDenormalsAsZeroAndRestoresTheMode) {
  if (!can_flush()) GTEST_SKIP() << "no flush-to-zero control on this CPU";
  ASSERT_FALSE(denormals_flushed()) << "the test thread starts in the default IEEE mode";
  EXPECT_EQ(add_zero(kDenormal), kDenormal);
  {
    ScopedFlushDenormals flush;
    EXPECT_TRUE(denormals_flushed());
    EXPECT_EQ(add_zero(kDenormal), 0.0f);
    {
      ScopedFlushDenormals nested;  // already flushing: leaves the mode alone on exit
    }
    EXPECT_TRUE(denormals_flushed());
  }
  EXPECT_FALSE(denormals_flushed());
  EXPECT_EQ(add_zero(kDenormal), kDenormal);
}

TEST(FloatEnv, PoolWorkersFlushDenormals) {
  if (!can_flush()) GTEST_SKIP() << "no flush-to-zero control on this CPU";
  ThreadPool pool(2);
  const pthread_t caller = pthread_self();
  std::atomic<int> worker_chunks{0}, worker_flushed{0};
  // Chunks are claimed, so a worker may miss a job; a chunk that waits a little lets it in.
  for (int attempt = 0; attempt < 200 && worker_chunks.load() == 0; ++attempt) {
    pool.parallel().for_each(2, 1, [&](int64_t, int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (pthread_equal(pthread_self(), caller)) return;
      worker_chunks++;
      if (denormals_flushed() && add_zero(kDenormal) == 0.0f) worker_flushed++;
    });
  }
  ASSERT_GT(worker_chunks.load(), 0) << "no chunk ran on the worker";
  EXPECT_EQ(worker_flushed.load(), worker_chunks.load());
  EXPECT_FALSE(denormals_flushed()) << "the caller's own mode is untouched by the pool";
}

// A parameter holding denormals, trained with learning rate 0: the update w - 0 * v reads w as 0
// when denormals are flushed (w becomes exactly 0), and keeps it otherwise. Every element, so the
// chunks of both threads are covered; the caller's mode is as before after the step.
TEST(FloatEnv, TrainingStepsFlushDenormalsAndRestoreTheCallersMode) {
  if (!can_flush()) GTEST_SKIP() << "no flush-to-zero control on this CPU";
  for (int threads : {1, 2}) {
    TrainerOptions o;
    o.batch = 4;
    o.threads = threads;
    o.config.optimizer.attrs.momentum = 0.9f;
    auto factory = [](int64_t batch, bool training) {
      ModelSpec spec;
      spec.arch = Architecture::kSmallCnn;
      spec.input_size = 16;
      return build_model(spec, batch, training);
    };
    Result<std::unique_ptr<Trainer>> t = Trainer::create(factory, o);
    ASSERT_TRUE(t.is_ok()) << t.status().to_string();
    ParameterStore& params = (*t)->params();
    int largest = 0;
    for (int i = 1; i < params.size(); ++i)
      if (params.spec(i).shape.numel() > params.spec(largest).shape.numel()) largest = i;
    const int64_t n = params.spec(largest).shape.numel();
    for (int64_t k = 0; k < n; ++k) params.data(largest)[k] = kDenormal;
    const Shape& s = (*t)->input_shape();
    for (int64_t i = 0; i < s.numel(); ++i) (*t)->train_images()[i] = static_cast<float>(i % 5) * 0.25f - 0.5f;
    for (int64_t i = 0; i < (*t)->batch(); ++i) (*t)->train_labels()[i] = static_cast<int32_t>(i % 10);
    ASSERT_TRUE((*t)->train_step(0.0f).is_ok());
    int64_t kept = 0;
    for (int64_t k = 0; k < n; ++k) kept += params.data(largest)[k] != 0.0f;
    EXPECT_EQ(kept, 0) << threads << " thread(s): " << params.spec(largest).name << " kept " << kept << " of " << n
                       << " denormal values";
    EXPECT_FALSE(denormals_flushed()) << threads << " thread(s): the step left the caller flushing";
  }
}

}  // namespace
}  // namespace edgetrain
