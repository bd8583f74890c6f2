// Denormal (subnormal) floats flushed to zero while edgetrain's kernels run.
//
// Why: arithmetic on denormals takes a microcode assist on x86 (~100 cycles per instruction
// instead of ~4), and a long training run produces them. SGD momentum decays a parameter's buffer
// by 0.9 per step; where the gradient is exactly zero (a channel whose ReLU never fires) the
// buffer passes 1.2e-38 after ~840 steps, and every update and any product with it then runs on
// the slow path. Measured (ResNet-34 56px batch 6, 2 threads, the same batch every step): steps
// went from 93 to 130-138 ms between steps 700 and 900 and stayed there; with denormals flushed,
// 94 ms at step 1,100. Values below 1.2e-38 change nothing a training run can see.
//
// x86 (SSE): MXCSR flush-to-zero (results) and denormals-are-zero (inputs); AArch64: FPCR.FZ
// (both); elsewhere nothing. The pool's workers set it for their lifetime (they only ever run
// kernels); a parallel loop's caller sets it for the loop (runtime/thread_pool.cc: a loop's result
// never depends on which thread ran a chunk), and the thread that runs a step for the step
// (runtime/executor.cc); both restore their own mode after, so an embedding application's
// floating-point environment is left as it was.
#pragma once

#include <cstdint>

namespace edgetrain {

// Whether this thread flushes denormals now.
bool denormals_flushed();
// Flushes denormals on this thread from now on.
void flush_denormals_on_this_thread();

// Flushes denormals on this thread until destroyed, then restores the previous mode.
class ScopedFlushDenormals {
 public:
  ScopedFlushDenormals();
  ~ScopedFlushDenormals();
  ScopedFlushDenormals(const ScopedFlushDenormals&) = delete;
  ScopedFlushDenormals& operator=(const ScopedFlushDenormals&) = delete;

 private:
  uint64_t saved_ = 0;
};

}  // namespace edgetrain
