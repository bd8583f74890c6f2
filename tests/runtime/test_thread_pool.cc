#include <gtest/gtest.h>

#include <atomic>
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

}  // namespace
}  // namespace edgetrain
