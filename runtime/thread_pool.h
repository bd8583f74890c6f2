// A fixed pool of worker threads for kernels' parallel loops. The calling thread takes part, so
// a pool of T threads starts T-1 workers. Dispatch allocates nothing: the chunk function and its
// context are plain pointers (see Parallel in ops/op.h). Workers spin briefly between jobs
// before sleeping, because kernels arrive back to back (see thread_pool.cc).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "ops/op.h"

namespace edgetrain {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }
  // The handle kernels use; valid while this pool lives.
  Parallel parallel();
  // Runs fn over [0, n) split into at most threads() chunks of at least min_chunk items.
  void run(int64_t n, int64_t min_chunk, Parallel::ChunkFn fn, void* fn_ctx);

 private:
  void worker_loop(int index);

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::atomic<uint64_t> generation_{0};  // bumped (under mutex_) for every job
  std::atomic<int> pending_{0};          // worker chunks of the current job not yet done
  std::atomic<int> sleepers_{0};         // workers blocked on wake_
  bool stopping_ = false;
  // The job being run.
  Parallel::ChunkFn fn_ = nullptr;
  void* fn_ctx_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0;
};

}  // namespace edgetrain
