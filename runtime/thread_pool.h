// A fixed pool of worker threads for kernels' parallel loops. The calling thread takes part, so
// a pool of T threads starts T-1 workers. Dispatch allocates nothing: the chunk function and its
// context are plain pointers (see Parallel in ops/op.h). Workers spin briefly between jobs
// before sleeping, because kernels arrive back to back (see thread_pool.cc). Every thread of a
// parallel loop, the caller's chunks included, reads and writes denormal floats as zero
// (runtime/float_env.h).
//
// Chunks are claimed, not assigned: each thread takes its own chunk if it is still unclaimed,
// then any other unclaimed one, so a worker that the OS has descheduled (another program busy on
// the cores, common on an edge device) costs nothing unless it already holds a chunk. With fixed assignment the
// caller waited for the descheduled worker at every parallel loop: on a busy 2-core machine a
// 2-thread ResNet-18 step took 10x the 1-thread time. A chunk's bounds depend only on n and the
// chunk count, never on the thread that runs it, so results do not change.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <pthread.h>
#include <vector>

#include "ops/op.h"

namespace edgetrain {

// The chunks of the job in flight, claimed one at a time by whichever thread asks. Each thread
// first asks for its own chunk (thread t for chunk t), then for any left: so chunk t runs on
// thread t unless that thread is late, and a kernel finds the rows its predecessor wrote in the
// same core's L2 (with first-come claims the worker took chunk 0 in a third of the 15 us jobs of
// a depthwise benchmark, and the next job's rows then came from the other core). The job's
// generation (high 32 bits) and the set of claimed chunks (low 32 bits, one per chunk) share one
// atomic word, so a thread still holding a finished job's generation can never claim a newer
// job's chunk (generations would have to wrap past 2^32 jobs while it slept).
class ChunkClaims {
 public:
  static constexpr int kMaxChunks = 32;
  // Opens job `generation` (larger than every earlier one) with chunks 0..chunks-1 unclaimed.
  void open(uint64_t generation) { word_.store(generation << kChunkBits, std::memory_order_release); }
  // The index of a chunk of job `generation` (of `chunks`), now the caller's: `preferred` if it
  // is still unclaimed, else the lowest unclaimed one; -1 when every chunk is taken or a newer
  // job has been opened.
  int claim(uint64_t generation, int chunks, int preferred = 0) {
    const uint64_t all = chunks >= kMaxChunks ? kChunkMask : (uint64_t{1} << chunks) - 1;
    uint64_t word = word_.load(std::memory_order_acquire);
    for (;;) {
      if ((word >> kChunkBits) != (generation & kGenerationMask)) return -1;
      const uint64_t free = ~word & all;
      if (free == 0) return -1;
      const int index = preferred >= 0 && preferred < chunks && ((free >> preferred) & 1) != 0
                            ? preferred
                            : __builtin_ctzll(free);
      if (word_.compare_exchange_weak(word, word | (uint64_t{1} << index), std::memory_order_acq_rel,
                                      std::memory_order_acquire))
        return index;
    }
  }

 private:
  static constexpr int kChunkBits = 32;
  static constexpr uint64_t kChunkMask = (uint64_t{1} << kChunkBits) - 1;
  static constexpr uint64_t kGenerationMask = (uint64_t{1} << (64 - kChunkBits)) - 1;
  std::atomic<uint64_t> word_{0};
};

// Kernels keep up to ~210 KiB of scratch on the stack of the thread that runs a chunk (packed
// GEMM operands in ops/gemm.cc, of fixed size, so that a step allocates nothing; the most: the
// short-GEMM path's 128 KiB of packed A^T and 16 KiB tile beside gemm()'s own 64 KiB). glibc gives
// threads 8 MiB by default but musl only 128 KiB, so the workers ask for this much, and a thread
// that calls into edgetrain needs at least kMinCallerStackBytes (include/edgetrain/README.md).
constexpr size_t kWorkerStackBytes = size_t{2} << 20;
constexpr size_t kMinCallerStackBytes = size_t{512} << 10;

class ThreadPool {
 public:
  // threads is clamped to [1, ChunkClaims::kMaxChunks].
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
  void worker_loop(int index);  // index: the chunk this worker asks for first (1..threads-1)
  // Runs chunk `index` of the job and counts it done.
  void run_chunk(Parallel::ChunkFn fn, void* ctx, int64_t n, int chunks, int index);

  int threads_;
  // pthreads, not std::thread: the workers need a stack size of our choosing (kWorkerStackBytes).
  std::vector<pthread_t> workers_;
  // What each worker thread starts with (index 0 unused: the caller); sized before any starts.
  struct WorkerStart {
    ThreadPool* pool = nullptr;
    int index = 0;
  };
  std::vector<WorkerStart> worker_starts_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::atomic<uint64_t> generation_{0};  // bumped (under mutex_) for every job
  ChunkClaims claims_;
  std::atomic<int> remaining_{0};        // chunks of the current job not yet done
  std::atomic<int> sleepers_{0};         // workers blocked on wake_
  bool stopping_ = false;
  // The job being run.
  Parallel::ChunkFn fn_ = nullptr;
  void* fn_ctx_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0;
};

}  // namespace edgetrain
