#include "runtime/float_env.h"

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace edgetrain {

namespace {
#if defined(__SSE__)
constexpr uint64_t kFlushBits = 0x8000 | 0x0040;  // MXCSR FTZ | DAZ
uint64_t read_mode() { return _mm_getcsr(); }
void write_mode(uint64_t m) { _mm_setcsr(static_cast<unsigned>(m)); }
#elif defined(__aarch64__)
constexpr uint64_t kFlushBits = uint64_t{1} << 24;  // FPCR.FZ
uint64_t read_mode() {
  uint64_t m;
  asm volatile("mrs %0, fpcr" : "=r"(m));
  return m;
}
void write_mode(uint64_t m) { asm volatile("msr fpcr, %0" : : "r"(m)); }
#else
constexpr uint64_t kFlushBits = 0;
uint64_t read_mode() { return 0; }
void write_mode(uint64_t) {}
#endif
}  // namespace

bool denormals_flushed() { return kFlushBits != 0 && (read_mode() & kFlushBits) == kFlushBits; }

void flush_denormals_on_this_thread() {
  if (kFlushBits != 0) write_mode(read_mode() | kFlushBits);
}

ScopedFlushDenormals::ScopedFlushDenormals() : saved_(read_mode()) {
  if (kFlushBits != 0 && (saved_ & kFlushBits) != kFlushBits) write_mode(saved_ | kFlushBits);
}

ScopedFlushDenormals::~ScopedFlushDenormals() {
  if (kFlushBits != 0 && (saved_ & kFlushBits) != kFlushBits) write_mode(saved_);
}

}  // namespace edgetrain
