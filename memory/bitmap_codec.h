// Sparse storage of activations saved for backward (BitTrain): a tensor of n floats is kept as a
// bitmap (1 bit per element, set for nonzeros) plus its nonzero values packed in order, n/8 +
// 4*nnz bytes instead of 4n. Unlike BitTrain's push_back code, the packed tensor lives in ONE
// arena slot whose size the planner fixes before the step runs, from a capacity `cap` (the most
// nonzeros the slot can hold, from sparsity measured on a probe batch plus a margin). Packing
// never writes past that slot: when the tensor has more than `cap` nonzeros it sets an overflow
// flag in the header instead of writing values, and the executor falls back.
//
// Layout of a packed slot (every part starts at a multiple of 64 bytes from the slot start):
//   header  PackedHeader (64 bytes): magic, n, cap, nnz, overflow flag
//   counts  uint32 nonzeros per block of kBitmapBlockElems elements, ceil(n / 4096) of them
//   bitmap  uint64 words, ceil(n / 64) of them; bit i%64 of word i/64 is set when x[i] is
//           nonzero; bits past n are 0
//   values  float nonzeros in element order, room for cap of them
// The per-block counts let packing and unpacking run on independent blocks in parallel: a prefix
// sum over the counts gives each block's first value.
//
// What counts as zero: x == 0.0f, so both +0.0 and -0.0 are zero and both come back as +0.0
// (after ReLU every zero is +0.0 anyway). NaN and infinities are nonzero and come back
// bit-identical, as does every other nonzero value.
//
// Also here: the 1-bit mask that is all a ReLU/ReLU6 backward needs (n/8 bytes, 1/32 of dense).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ops/op.h"  // Parallel only
#include "runtime/status.h"

namespace edgetrain {

// Elements per block: 64 bitmap words (512 bytes, whole cache lines) per block.
constexpr int64_t kBitmapBlockElems = 4096;
constexpr uint64_t kPackedMagic = 0x31504d4254494245ull;  // "EBITBMP1" little-endian

struct PackedHeader {
  uint64_t magic;
  int64_t n;         // dense element count
  int64_t capacity;  // room for this many nonzero values
  int64_t nnz;       // nonzeros of the packed tensor (also when it overflowed)
  uint32_t overflow; // 1: nnz > capacity, no values were written, the slot cannot be unpacked
  uint32_t block_elems;
  uint8_t reserved[24];
};
static_assert(sizeof(PackedHeader) == 64, "the header fills one cache line");

// Byte offsets of the parts of a packed slot for n elements and capacity cap.
struct PackedLayout {
  int64_t n = 0;
  int64_t capacity = 0;
  int64_t blocks = 0;         // ceil(n / kBitmapBlockElems)
  int64_t words = 0;          // ceil(n / 64)
  size_t counts_offset = 0;   // uint32[blocks]
  size_t bitmap_offset = 0;   // uint64[words]
  size_t values_offset = 0;   // float[capacity]
  size_t total_bytes = 0;     // a multiple of 64
};

// n >= 0, cap >= 0 (internal invariants: the planner passes shapes it validated).
PackedLayout packed_layout(int64_t n, int64_t cap);
// Size of the arena slot for a packed tensor of n elements with room for cap nonzeros.
size_t packed_bytes(int64_t n, int64_t cap);

// Which implementation runs. kAuto picks AVX-512 when the CPU has it; tests force each path to
// check that they produce identical bytes.
enum class CodecIsa : uint8_t { kAuto, kPortable, kAvx512 };
bool codec_avx512_available();

struct PackResult {
  int64_t nnz = 0;         // nonzeros in x (counted even when they did not fit)
  bool overflowed = false; // nnz > cap: header, counts and bitmap written, values not
};

// Packs x[0, n) into `packed` (packed_bytes(n, cap) bytes, 8-byte aligned; the arena gives 64).
// Writes only inside [packed, packed + packed_bytes(n, cap)); padding bytes between parts are
// left as they were. kAvx512 on a CPU without AVX-512 falls back to the portable path.
PackResult pack_sparse(const float* x, int64_t n, int64_t cap, void* packed, const Parallel& parallel,
                       CodecIsa isa = CodecIsa::kAuto);

// Restores the n = packed_numel(packed) floats into x. Returns false, leaving x untouched, when
// the slot overflowed (the executor checks packed_overflowed() after the forward phase and never
// schedules the unpack of an overflowed slot, so false there is a bug in the caller).
bool unpack_sparse(const void* packed, float* x, const Parallel& parallel,
                   CodecIsa isa = CodecIsa::kAuto);

// Header reads for the executor and the planner (packed is a slot written by pack_sparse).
bool packed_overflowed(const void* packed);
int64_t packed_nnz(const void* packed);
int64_t packed_numel(const void* packed);

// Checks that `packed` (slot_bytes long) holds a consistent packed tensor of n elements: magic,
// sizes, block counts that sum to nnz, no bits set past n. For debugging and for slots read
// from outside the process; pack_sparse's output always passes.
Status validate_packed(const void* packed, size_t slot_bytes, int64_t n);

// The 1-bit mask of a ReLU-family output y: bit i%64 of bits[i/64] is set when lo < y[i] < hi.
// hi = +inf means "no upper bound" (y = +inf then counts as active, as relu_backward does).
// ReLU: lo = 0, hi = +inf; ReLU6: lo = 0, hi = 6. NaN is never active. Writes mask_words(n)
// words; bits past n are 0.
inline int64_t mask_words(int64_t n) { return (n + 63) / 64; }
void pack_mask(const float* y, int64_t n, float lo, float hi, uint64_t* bits, const Parallel& parallel,
               CodecIsa isa = CodecIsa::kAuto);

}  // namespace edgetrain
