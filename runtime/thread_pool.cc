#include "runtime/thread_pool.h"

#include <immintrin.h>

#include <algorithm>

#include "runtime/float_env.h"

namespace edgetrain {

namespace {
// A training step dispatches hundreds of short kernels back to back. Waking a sleeping worker
// through a condition variable costs ~50 us on this VM (measured by the cost-model profiler),
// more than many kernels take, so workers and the caller spin on an atomic for a while before
// they sleep. The pause instruction keeps the spinning cheap for a sibling hyperthread.
constexpr int kSpinIterations = 20000;  // ~0.1-0.5 ms of pause instructions

inline void cpu_relax() { _mm_pause(); }
}  // namespace

ThreadPool::ThreadPool(int threads) : threads_(std::clamp(threads, 1, ChunkClaims::kMaxChunks)) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kWorkerStackBytes);
  worker_starts_.resize(static_cast<size_t>(threads_));
  for (int i = 1; i < threads_; ++i) {
    pthread_t t;
    worker_starts_[static_cast<size_t>(i)] = {this, i};
    auto run = [](void* start) -> void* {
      const WorkerStart* s = static_cast<const WorkerStart*>(start);
      flush_denormals_on_this_thread();  // workers only run kernels (runtime/float_env.h)
      s->pool->worker_loop(s->index);
      return nullptr;
    };
    // A worker that cannot start leaves its share to the threads that did: chunks are claimed,
    // so the pool still finishes every job, only with fewer hands.
    if (pthread_create(&t, &attr, run, &worker_starts_[static_cast<size_t>(i)]) == 0) workers_.push_back(t);
  }
  pthread_attr_destroy(&attr);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (pthread_t t : workers_) pthread_join(t, nullptr);
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

void ThreadPool::run_chunk(Parallel::ChunkFn fn, void* ctx, int64_t n, int chunks, int index) {
  int64_t b, e;
  chunk_bounds(n, chunks, index, &b, &e);
  fn(ctx, b, e);
  if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::lock_guard<std::mutex> lock(mutex_);  // pairs with the caller's wait
    done_.notify_one();
  }
}

void ThreadPool::run(int64_t n, int64_t min_chunk, Parallel::ChunkFn fn, void* fn_ctx) {
  if (n <= 0) return;
  // The workers flush denormals for life; the caller's chunks do too, whether the loop is split
  // or not, so a loop's result never depends on which thread ran a chunk (runtime/float_env.h).
  const ScopedFlushDenormals flush;
  int chunks = static_cast<int>(std::min<int64_t>(threads_, std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk))));
  if (chunks <= 1) {
    fn(fn_ctx, 0, n);
    return;
  }
  uint64_t generation;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    fn_ctx_ = fn_ctx;
    n_ = n;
    chunks_ = chunks;
    remaining_.store(chunks, std::memory_order_relaxed);
    generation = generation_.load(std::memory_order_relaxed) + 1;
    claims_.open(generation);
    generation_.store(generation, std::memory_order_release);
  }
  if (sleepers_.load(std::memory_order_acquire) > 0) wake_.notify_all();
  // The caller works through the chunks itself until none is left unclaimed; it then waits only
  // for chunks a worker is running.
  for (int index; (index = claims_.claim(generation, chunks, /*preferred=*/0)) >= 0;)
    run_chunk(fn, fn_ctx, n, chunks, index);
  for (int spin = 0; spin < kSpinIterations; ++spin) {
    if (remaining_.load(std::memory_order_acquire) == 0) return;
    cpu_relax();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return remaining_.load(std::memory_order_acquire) == 0; });
}

void ThreadPool::worker_loop(int own_chunk) {
  // Jobs count from generation 0: a job posted before this thread got here is still new to it.
  uint64_t seen = 0;
  for (;;) {
    // Spin for the next job first; sleep only when none comes soon.
    uint64_t now = seen;
    for (int spin = 0; spin < kSpinIterations && now == seen; ++spin) {
      cpu_relax();
      now = generation_.load(std::memory_order_acquire);
    }
    Parallel::ChunkFn fn;
    void* ctx;
    int64_t n;
    int chunks;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (generation_.load(std::memory_order_acquire) == seen) {
        sleepers_.fetch_add(1, std::memory_order_acq_rel);
        wake_.wait(lock, [&] { return stopping_ || generation_.load(std::memory_order_acquire) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_acq_rel);
      }
      if (stopping_) return;
      seen = generation_.load(std::memory_order_acquire);
      fn = fn_;
      ctx = fn_ctx_;
      n = n_;
      chunks = chunks_;
    }
    // A job that is already over (the caller ran every chunk) yields no claim.
    for (int index; (index = claims_.claim(seen, chunks, own_chunk)) >= 0;) run_chunk(fn, ctx, n, chunks, index);
  }
}

}  // namespace edgetrain
