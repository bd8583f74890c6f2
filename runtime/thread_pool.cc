#include "runtime/thread_pool.h"

#include <algorithm>

namespace edgetrain {

ThreadPool::ThreadPool(int threads) : threads_(std::max(1, threads)) {
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

Parallel ThreadPool::parallel() {
  Parallel p;
  p.pool = this;
  p.threads = threads_;
  p.run = [](void* pool, int64_t n, int64_t min_chunk, Parallel::ChunkFn fn, void* ctx) {
    static_cast<ThreadPool*>(pool)->run(n, min_chunk, fn, ctx);
  };
  return p;
}

static void chunk_bounds(int64_t n, int chunks, int index, int64_t* begin, int64_t* end) {
  int64_t base = n / chunks, extra = n % chunks;
  *begin = index * base + std::min<int64_t>(index, extra);
  *end = *begin + base + (index < extra ? 1 : 0);
}

void ThreadPool::run(int64_t n, int64_t min_chunk, Parallel::ChunkFn fn, void* fn_ctx) {
  if (n <= 0) return;
  int chunks = static_cast<int>(std::min<int64_t>(threads_, std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk))));
  if (chunks <= 1) {
    fn(fn_ctx, 0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    fn_ctx_ = fn_ctx;
    n_ = n;
    chunks_ = chunks;
    pending_ = chunks - 1;
    ++generation_;
  }
  wake_.notify_all();
  int64_t b, e;
  chunk_bounds(n, chunks, 0, &b, &e);
  fn(fn_ctx, b, e);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return pending_ == 0; });
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    Parallel::ChunkFn fn;
    void* ctx;
    int64_t n;
    int chunks;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      fn = fn_;
      ctx = fn_ctx_;
      n = n_;
      chunks = chunks_;
    }
    if (index < chunks) {
      int64_t b, e;
      chunk_bounds(n, chunks, index, &b, &e);
      fn(ctx, b, e);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

}  // namespace edgetrain
