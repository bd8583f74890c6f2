#include <gtest/gtest.h>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "runtime/thread_pool.h"

namespace edgetrain {
namespace {

TEST(ThreadPool, ChunksCoverTheRangeExactlyOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    Parallel par = pool.parallel();
    for (int64_t n : {1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      for (int rep = 0; rep < 20; ++rep) {
        par.for_each(n, 1, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        });
      }
      for (auto& h : hits) EXPECT_EQ(h.load(), 20);
    }
  }
}

TEST(ThreadPool, MinChunkKeepsSmallWorkOnOneThread) {
  ThreadPool pool(2);
  std::atomic<int> calls{0};
  pool.parallel().for_each(10, 100, [&](int64_t b, int64_t e) {
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 10);
    calls++;
  });
  EXPECT_EQ(calls.load(), 1);
}

TEST(ChunkClaims, EachChunkOnceAndNothingOfANewerJobForAStaleOne) {
  ChunkClaims claims;
  claims.open(1);
  EXPECT_EQ(claims.claim(1, 2), 0);
  EXPECT_EQ(claims.claim(1, 2), 1);
  EXPECT_EQ(claims.claim(1, 2), -1);
  claims.open(2);
  // A worker that read job 1 and woke late must not take job 2's chunks.
  EXPECT_EQ(claims.claim(1, 2), -1);
  EXPECT_EQ(claims.claim(2, 3), 0);
  EXPECT_EQ(claims.claim(2, 3), 1);
  EXPECT_EQ(claims.claim(2, 3), 2);
  EXPECT_EQ(claims.claim(2, 3), -1);
}

TEST(ThreadPool, WorkersHaveTheStackTheKernelsNeed) {
  // Workers are created with kWorkerStackBytes, not the C library's default (8 MiB on glibc,
  // 128 KiB on musl, too little for the kernels' stack scratch).
  ThreadPool pool(2);
  const pthread_t caller = pthread_self();
  std::atomic<size_t> worker_stack{0};
  for (int attempt = 0; attempt < 5 && worker_stack.load() == 0; ++attempt) {
    std::atomic<int> started{0};
    pool.parallel().for_each(2, 1, [&](int64_t, int64_t) {
      started++;
      if (pthread_equal(pthread_self(), caller)) {
        // Hold this chunk until the worker has claimed the other one (or a second passed).
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        while (started.load() < 2 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
        return;
      }
      pthread_attr_t attr;
      size_t bytes = 0;
      if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstacksize(&attr, &bytes);
        pthread_attr_destroy(&attr);
      }
      worker_stack = bytes;
    });
  }
  ASSERT_GT(worker_stack.load(), 0u) << "no chunk ran on the worker in 5 jobs";
  EXPECT_GE(worker_stack.load(), kWorkerStackBytes);
  EXPECT_LT(worker_stack.load(), kWorkerStackBytes + (size_t{1} << 20));
}

}  // namespace
}  // namespace edgetrain
