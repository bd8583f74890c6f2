// Kernels of sparse activation storage (BitTrain), for the pack/unpack nodes the compression
// transform inserts into the training schedule:
//   kPackSparse        in {x}          out {packed}  bitmap + packed nonzeros (memory/bitmap_codec.h)
//   kUnpackSparse      in {packed}     out {x}       the exact dense tensor again
//   kPackMask          in {y}          out {bits}    1 bit per element: attrs.sparse.lo < y < hi
//   kReluBackwardMask  in {dy, bits}   out {dx}      dx = bit ? dy : 0 (ReLU and ReLU6 backward)
//
// Value types in the graph: `packed` is a kU64 tensor of shape packed_shape(n, capacity) (its
// bytes are exactly packed_bytes(n, capacity)); `bits` is a kU64 tensor of shape mask_shape(n).
// The capacity is attrs.sparse.capacity, chosen by the planner before the step. A pack kernel
// cannot return an error: when x has more nonzeros than the capacity it sets the overflow flag in
// the packed header and writes no values. The executor checks packed_overflowed(slot) after the
// forward phase and falls back; an unpack kernel given an overflowed slot stops the process
// (a schedule bug, not an input error).
//
// kReluBackwardMask gives bit-identical results to kReluBackward / kRelu6Backward on the y the
// mask was packed from (with lo = 0 and hi = +inf or 6).
#pragma once

#include <cstdint>

#include "memory/bitmap_codec.h"
#include "ops/op.h"

namespace edgetrain {

inline Shape packed_shape(int64_t n, int64_t capacity) {
  return Shape{static_cast<int64_t>(packed_bytes(n, capacity) / sizeof(uint64_t))};
}
inline Shape mask_shape(int64_t n) { return Shape{mask_words(n)}; }

// Naive references: one element at a time, one thread, writing the same bytes as the codec.
void pack_sparse_naive(const float* x, int64_t n, int64_t capacity, void* packed);
bool unpack_sparse_naive(const void* packed, float* x);  // false: overflowed, x untouched
void pack_mask_naive(const float* y, int64_t n, float lo, float hi, uint64_t* bits);
template <typename T>
void relu_backward_mask_naive(int64_t n, const T* dy, const uint64_t* bits, T* dx, bool accumulate);

// The fast ReLU/ReLU6 backward from a mask: dx = bit ? dy : 0 (dx += that when accumulating).
// dx may alias dy. isa as in the codec (tests force each path).
void relu_backward_masked(int64_t n, const float* dy, const uint64_t* bits, float* dx, bool accumulate,
                          const Parallel& parallel, CodecIsa isa = CodecIsa::kAuto);

void pack_sparse_kernel(const KernelCall& call);
void pack_sparse_reference(const KernelCall& call);
void unpack_sparse_kernel(const KernelCall& call);
void unpack_sparse_reference(const KernelCall& call);
void pack_mask_kernel(const KernelCall& call);
void pack_mask_reference(const KernelCall& call);
void relu_backward_mask(const KernelCall& call);
void relu_backward_mask_reference(const KernelCall& call);

}  // namespace edgetrain
