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

TEST(ChunkClaims, OwnChunkFirstThenAnyLeft) {
  ChunkClaims claims;
  claims.open(1);
  EXPECT_EQ(claims.claim(1, 3, /*preferred=*/1), 1);
  EXPECT_EQ(claims.claim(1, 3, /*preferred=*/1), 0);  // its own is taken: the lowest left
  EXPECT_EQ(claims.claim(1, 3, /*preferred=*/2), 2);
  EXPECT_EQ(claims.claim(1, 3, /*preferred=*/0), -1);
  claims.open(2);
  EXPECT_EQ(claims.claim(2, 2, /*preferred=*/5), 0);  // a thread beyond the chunk count takes any
  EXPECT_EQ(claims.claim(2, 2, /*preferred=*/0), 1);
  claims.open(3);
  for (int i = 0; i < ChunkClaims::kMaxChunks; ++i)
    EXPECT_EQ(claims.claim(3, ChunkClaims::kMaxChunks, ChunkClaims::kMaxChunks - 1 - i), ChunkClaims::kMaxChunks - 1 - i);
  EXPECT_EQ(claims.claim(3, ChunkClaims::kMaxChunks, 0), -1);
}

TEST(ThreadPool, EachChunkStaysOnItsThread) {
  // Chunk 0 of a two-chunk job is the caller's and chunk 1 the worker's, so that a kernel finds
  // the rows its predecessor wrote in its own core's cache. A late thread's chunk is taken by the
  // other (then one thread ran both), but whenever each ran one, they ran their own: first-come
  // claims gave the worker chunk 0 in about a third of short jobs.
  ThreadPool pool(2);
  const pthread_t caller = pthread_self();
  // A new thread may wait a few milliseconds for a core: first a job whose chunk 0 holds on
  // until the worker has run chunk 1 (or a second passed).
  std::atomic<int> started{0};
  pool.parallel().for_each(2, 1, [&](int64_t b, int64_t) {
    started++;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    if (b == 0)
      while (started.load() < 2 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  });
  int split = 0, swapped = 0;
  // Until 100 jobs ran split, or two seconds passed (the scheduler may keep both threads on one
  // core for a few milliseconds while the caller spins).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (split < 100 && std::chrono::steady_clock::now() < deadline) {
    std::atomic<int> on_caller[2] = {0, 0};
    pool.parallel().for_each(2, 1, [&](int64_t b, int64_t) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(10);
      while (std::chrono::steady_clock::now() < until) {
      }
      on_caller[b] = pthread_equal(pthread_self(), caller) ? 1 : 2;
    });
    if (on_caller[0].load() != on_caller[1].load()) {
      ++split;
      swapped += on_caller[0].load() == 2 ? 1 : 0;
    }
  }
  EXPECT_GT(split, 0) << "the worker ran no chunk in two seconds of jobs";
  EXPECT_EQ(swapped, 0) << "of " << split << " jobs split between the threads";
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
