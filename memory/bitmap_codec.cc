// The sparse bitmap codec (layout in bitmap_codec.h). Packing is two passes over independent
// blocks of 4096 elements: pass 1 writes each block's bitmap words and nonzero count, a prefix
// sum over the counts gives the total (and each block's first value), and pass 2, run only when
// the total fits the capacity, copies each block's nonzeros to its place. Unpacking is one pass
// over the same blocks. Every block is written by exactly one thread, so the passes parallelise
// without synchronisation beyond the parallel-for itself.
//
// Two implementations of each pass give identical bytes: a portable one and an AVX-512 one
// (compress-store / expand-load 16 floats under a 16-bit slice of a bitmap word). The AVX-512
// functions carry target("avx512f") so the library also builds without -march=native; they run
// only when the CPU reports AVX-512F.
#include "memory/bitmap_codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ET_CODEC_X86 1
#endif

namespace edgetrain {
namespace {

// A parallel chunk covers at least 8 blocks (32K floats, 128 KiB dense): below that a dispatch
// to the pool costs more than the work.
constexpr int64_t kMinBlocksPerChunk = 8;
// pack_mask splits its output words the same way: 512 words = 32K elements.
constexpr int64_t kMinMaskWordsPerChunk = 512;
constexpr int64_t kWordsPerBlock = kBitmapBlockElems / 64;
static_assert(kBitmapBlockElems % 64 == 0, "blocks hold whole bitmap words");

size_t align64(size_t bytes) { return (bytes + 63) & ~size_t{63}; }

// Typed views of the parts of a slot.
struct Slot {
  PackedHeader* header;
  uint32_t* counts;
  uint64_t* bitmap;
  float* values;
};

Slot slot_of(void* packed, const PackedLayout& l) {
  auto* base = static_cast<unsigned char*>(packed);
  return {reinterpret_cast<PackedHeader*>(base), reinterpret_cast<uint32_t*>(base + l.counts_offset),
          reinterpret_cast<uint64_t*>(base + l.bitmap_offset),
          reinterpret_cast<float*>(base + l.values_offset)};
}

const PackedHeader* header_of(const void* packed) {
  ET_CHECK(packed != nullptr);
  const auto* h = static_cast<const PackedHeader*>(packed);
  ET_CHECK(h->magic == kPackedMagic);
  return h;
}

bool use_avx512(CodecIsa isa) {
  if (isa == CodecIsa::kPortable) return false;
  return codec_avx512_available();
}

// Element range [begin, end) of block `block` of an n-element tensor.
int64_t block_begin(int64_t block) { return block * kBitmapBlockElems; }
int64_t block_end(int64_t block, int64_t n) { return std::min(n, (block + 1) * kBitmapBlockElems); }

// ---- portable path -------------------------------------------------------------------------

// One bitmap word from 64 elements: bit j = on(x[j]). The predicate goes into bytes first (a
// loop compilers vectorise), then 8 bytes of 0/1 become 8 bits with one multiply: byte k times
// 2^(7-i) for every i lands on bit 56 + k of the product when k + i = 7, and no two terms share
// a bit, so no carries disturb the top byte.
template <typename On>
inline uint64_t word_of_64(const float* x, On on) {
  uint8_t flags[64];
  for (int j = 0; j < 64; ++j) flags[j] = on(x[j]) ? 1 : 0;
  uint64_t word = 0;
  for (int k = 0; k < 8; ++k) {
    uint64_t bytes;
    std::memcpy(&bytes, flags + 8 * k, sizeof(bytes));
    word |= ((bytes * 0x0102040810204080ull) >> 56) << (8 * k);
  }
  return word;
}

// The same for the m < 64 elements of a ragged last word (bits past m stay 0).
template <typename On>
inline uint64_t word_of_tail(const float* x, int64_t m, On on) {
  uint64_t word = 0;
  for (int64_t j = 0; j < m; ++j) word |= static_cast<uint64_t>(on(x[j])) << j;
  return word;
}

// `x != 0.0f` is true for NaN and false for both zeros.
inline bool nonzero(float v) { return v != 0.0f; }

// Pass 1 for one block: bitmap words of elements [begin, end) (begin a multiple of 64) and the
// number of nonzeros.
uint32_t bitmap_block_portable(const float* x, int64_t begin, int64_t end, uint64_t* bitmap) {
  uint32_t count = 0;
  for (int64_t base = begin; base < end; base += 64) {
    const uint64_t word = end - base >= 64 ? word_of_64(x + base, nonzero)
                                           : word_of_tail(x + base, end - base, nonzero);
    bitmap[base / 64] = word;
    count += static_cast<uint32_t>(std::popcount(word));
  }
  return count;
}

// Pass 2 for one block: copy the nonzeros flagged in the bitmap to dst, one set bit at a time.
// Copies are bit copies (memcpy), so NaN payloads survive.
void compress_block_portable(const float* x, int64_t begin, int64_t end, const uint64_t* bitmap,
                             float* dst) {
  for (int64_t base = begin; base < end; base += 64) {
    for (uint64_t word = bitmap[base / 64]; word != 0; word &= word - 1) {
      std::memcpy(dst++, x + base + std::countr_zero(word), sizeof(float));
    }
  }
}

// Unpack of one block: zero the word's 64 elements, then drop each value on its set bit (a loop
// over set bits, not a branch per element: random zero patterns mispredict).
void expand_block_portable(const float* src, int64_t begin, int64_t end, const uint64_t* bitmap,
                           float* x) {
  for (int64_t base = begin; base < end; base += 64) {
    std::fill(x + base, x + std::min<int64_t>(base + 64, end), 0.0f);
    for (uint64_t word = bitmap[base / 64]; word != 0; word &= word - 1) {
      std::memcpy(x + base + std::countr_zero(word), src++, sizeof(float));
    }
  }
}

// Mask words [wb, we) of y: bit set when lo < y < hi (no upper test when has_hi is false).
void mask_words_portable(const float* y, int64_t n, float lo, float hi, bool has_hi, int64_t wb,
                         int64_t we, uint64_t* bits) {
  // '&' and '|', not '&&' and '||': no branches, so the byte loop vectorises. NaN is never on.
  auto on = [=](float v) -> bool { return (v > lo) & (!has_hi | (v < hi)); };
  for (int64_t w = wb; w < we; ++w) {
    const int64_t base = w * 64;
    bits[w] = n - base >= 64 ? word_of_64(y + base, on) : word_of_tail(y + base, n - base, on);
  }
}

// ---- AVX-512 path --------------------------------------------------------------------------
#ifdef ET_CODEC_X86

// Lanes [0, count) of a 16-lane mask (count in [0, 16]).
__attribute__((target("avx512f"))) inline __mmask16 low_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u);
}

__attribute__((target("avx512f"))) uint32_t bitmap_block_avx512(const float* x, int64_t begin,
                                                                 int64_t end, uint64_t* bitmap) {
  const __m512 zero = _mm512_setzero_ps();
  uint32_t count = 0;
  for (int64_t base = begin; base < end; base += 64) {
    uint64_t word = 0;
    if (end - base >= 64) {
      for (int g = 0; g < 4; ++g) {
        const __m512 v = _mm512_loadu_ps(x + base + 16 * g);
        // NEQ_UQ: "not equal or unordered", so NaN is nonzero like `x != 0.0f`.
        word |= uint64_t{_mm512_cmp_ps_mask(v, zero, _CMP_NEQ_UQ)} << (16 * g);
      }
    } else {  // the ragged tail: masked loads never touch memory past n
      for (int g = 0; g < 4 && base + 16 * g < end; ++g) {
        const __mmask16 lanes = low_lanes(end - base - 16 * g);
        const __m512 v = _mm512_maskz_loadu_ps(lanes, x + base + 16 * g);
        word |= uint64_t{_mm512_mask_cmp_ps_mask(lanes, v, zero, _CMP_NEQ_UQ)} << (16 * g);
      }
    }
    bitmap[base / 64] = word;
    count += static_cast<uint32_t>(std::popcount(word));
  }
  return count;
}

__attribute__((target("avx512f"))) void compress_block_avx512(const float* x, int64_t begin,
                                                              int64_t end, const uint64_t* bitmap,
                                                              float* dst) {
  for (int64_t base = begin; base < end; base += 64) {
    const uint64_t word = bitmap[base / 64];
    if (word == 0) continue;
    for (int g = 0; g < 4; ++g) {
      const __mmask16 m = static_cast<__mmask16>(word >> (16 * g));
      // The masked load reads only flagged lanes, and no lane past n is flagged: tail-safe.
      const __m512 v = _mm512_maskz_loadu_ps(m, x + base + 16 * g);
      _mm512_mask_compressstoreu_ps(dst, m, v);
      dst += std::popcount(static_cast<unsigned>(m));
    }
  }
}

__attribute__((target("avx512f"))) void expand_block_avx512(const float* src, int64_t begin,
                                                            int64_t end, const uint64_t* bitmap,
                                                            float* x) {
  for (int64_t base = begin; base < end; base += 64) {
    const uint64_t word = bitmap[base / 64];
    if (end - base >= 64) {
      for (int g = 0; g < 4; ++g) {
        const __mmask16 m = static_cast<__mmask16>(word >> (16 * g));
        _mm512_storeu_ps(x + base + 16 * g, _mm512_maskz_expandloadu_ps(m, src));
        src += std::popcount(static_cast<unsigned>(m));
      }
    } else {
      for (int g = 0; g < 4 && base + 16 * g < end; ++g) {
        const __mmask16 m = static_cast<__mmask16>(word >> (16 * g));
        const __mmask16 lanes = low_lanes(end - base - 16 * g);
        _mm512_mask_storeu_ps(x + base + 16 * g, lanes, _mm512_maskz_expandloadu_ps(m, src));
        src += std::popcount(static_cast<unsigned>(m));
      }
    }
  }
}

__attribute__((target("avx512f"))) void mask_words_avx512(const float* y, int64_t n, float lo,
                                                          float hi, bool has_hi, int64_t wb,
                                                          int64_t we, uint64_t* bits) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  for (int64_t w = wb; w < we; ++w) {
    const int64_t base = w * 64;
    uint64_t word = 0;
    for (int g = 0; g < 4 && base + 16 * g < n; ++g) {
      const __mmask16 lanes = low_lanes(n - base - 16 * g);
      const __m512 v = _mm512_maskz_loadu_ps(lanes, y + base + 16 * g);
      // Ordered comparisons: NaN is never active.
      __mmask16 on = _mm512_mask_cmp_ps_mask(lanes, v, vlo, _CMP_GT_OQ);
      if (has_hi) on = _mm512_mask_cmp_ps_mask(on, v, vhi, _CMP_LT_OQ);
      word |= uint64_t{on} << (16 * g);
    }
    bits[w] = word;
  }
}

#endif  // ET_CODEC_X86

// Dispatch of one pass over one block.
uint32_t bitmap_block(bool avx512, const float* x, int64_t b, int64_t e, uint64_t* bitmap) {
#ifdef ET_CODEC_X86
  if (avx512) return bitmap_block_avx512(x, b, e, bitmap);
#endif
  return bitmap_block_portable(x, b, e, bitmap);
}

void compress_block(bool avx512, const float* x, int64_t b, int64_t e, const uint64_t* bitmap,
                    float* dst) {
#ifdef ET_CODEC_X86
  if (avx512) return compress_block_avx512(x, b, e, bitmap, dst);
#endif
  compress_block_portable(x, b, e, bitmap, dst);
}

void expand_block(bool avx512, const float* src, int64_t b, int64_t e, const uint64_t* bitmap,
                  float* x) {
#ifdef ET_CODEC_X86
  if (avx512) return expand_block_avx512(src, b, e, bitmap, x);
#endif
  expand_block_portable(src, b, e, bitmap, x);
}

// Index of the first value of block `block`: the sum of the counts before it. Each parallel
// chunk computes it once for its first block (a few thousand additions at most).
int64_t first_value_of(const uint32_t* counts, int64_t block) {
  int64_t offset = 0;
  for (int64_t k = 0; k < block; ++k) offset += counts[k];
  return offset;
}

}  // namespace

PackedLayout packed_layout(int64_t n, int64_t cap) {
  ET_CHECK(n >= 0 && cap >= 0);
  PackedLayout l;
  l.n = n;
  l.capacity = cap;
  l.blocks = (n + kBitmapBlockElems - 1) / kBitmapBlockElems;
  l.words = (n + 63) / 64;
  l.counts_offset = sizeof(PackedHeader);
  l.bitmap_offset = l.counts_offset + align64(static_cast<size_t>(l.blocks) * sizeof(uint32_t));
  l.values_offset = l.bitmap_offset + align64(static_cast<size_t>(l.words) * sizeof(uint64_t));
  l.total_bytes = l.values_offset + align64(static_cast<size_t>(cap) * sizeof(float));
  return l;
}

size_t packed_bytes(int64_t n, int64_t cap) { return packed_layout(n, cap).total_bytes; }

bool codec_avx512_available() {
#ifdef ET_CODEC_X86
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
#else
  return false;
#endif
}

PackResult pack_sparse(const float* x, int64_t n, int64_t cap, void* packed, const Parallel& parallel,
                       CodecIsa isa) {
  ET_CHECK(packed != nullptr && (n == 0 || x != nullptr));
  ET_CHECK(reinterpret_cast<uintptr_t>(packed) % alignof(uint64_t) == 0);
  const PackedLayout l = packed_layout(n, cap);
  const Slot s = slot_of(packed, l);
  const bool avx512 = use_avx512(isa);

  PackedHeader h{};
  h.magic = kPackedMagic;
  h.n = n;
  h.capacity = cap;
  h.block_elems = static_cast<uint32_t>(kBitmapBlockElems);

  parallel.for_each(l.blocks, kMinBlocksPerChunk, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k)
      s.counts[k] = bitmap_block(avx512, x, block_begin(k), block_end(k, n), s.bitmap);
  });
  const int64_t nnz = first_value_of(s.counts, l.blocks);
  h.nnz = nnz;
  h.overflow = nnz > cap ? 1u : 0u;
  std::memcpy(s.header, &h, sizeof(h));
  if (h.overflow) return {nnz, true};

  parallel.for_each(l.blocks, kMinBlocksPerChunk, [&](int64_t b, int64_t e) {
    float* dst = s.values + first_value_of(s.counts, b);
    for (int64_t k = b; k < e; ++k) {
      compress_block(avx512, x, block_begin(k), block_end(k, n), s.bitmap, dst);
      dst += s.counts[k];
    }
  });
  return {nnz, false};
}

bool unpack_sparse(const void* packed, float* x, const Parallel& parallel, CodecIsa isa) {
  const PackedHeader* h = header_of(packed);
  if (h->overflow) return false;
  ET_CHECK(h->nnz <= h->capacity && (h->n == 0 || x != nullptr));
  const int64_t n = h->n;
  const PackedLayout l = packed_layout(n, h->capacity);
  const Slot s = slot_of(const_cast<void*>(packed), l);  // read only below
  const bool avx512 = use_avx512(isa);
  parallel.for_each(l.blocks, kMinBlocksPerChunk, [&](int64_t b, int64_t e) {
    const float* src = s.values + first_value_of(s.counts, b);
    for (int64_t k = b; k < e; ++k) {
      expand_block(avx512, src, block_begin(k), block_end(k, n), s.bitmap, x);
      src += s.counts[k];
    }
  });
  return true;
}

bool packed_overflowed(const void* packed) { return header_of(packed)->overflow != 0; }
int64_t packed_nnz(const void* packed) { return header_of(packed)->nnz; }
int64_t packed_numel(const void* packed) { return header_of(packed)->n; }

Status validate_packed(const void* packed, size_t slot_bytes, int64_t n) {
  const std::string where = "packed tensor of " + std::to_string(n) + " elements: ";
  if (packed == nullptr || slot_bytes < sizeof(PackedHeader))
    return corrupt_data(where + "slot of " + std::to_string(slot_bytes) + " bytes has no header");
  PackedHeader h;
  std::memcpy(&h, packed, sizeof(h));
  if (h.magic != kPackedMagic) return corrupt_data(where + "bad magic number");
  if (h.n != n) return corrupt_data(where + "header says " + std::to_string(h.n) + " elements");
  if (h.block_elems != kBitmapBlockElems)
    return corrupt_data(where + "block size " + std::to_string(h.block_elems) + ", expected " +
                        std::to_string(kBitmapBlockElems));
  if (h.capacity < 0 || h.nnz < 0 || h.overflow > 1)
    return corrupt_data(where + "negative capacity or nnz, or bad overflow flag");
  const PackedLayout l = packed_layout(n, h.capacity);
  if (slot_bytes < l.total_bytes)
    return corrupt_data(where + "slot of " + std::to_string(slot_bytes) + " bytes, capacity " +
                        std::to_string(h.capacity) + " needs " + std::to_string(l.total_bytes));
  if (!h.overflow && h.nnz > h.capacity)
    return corrupt_data(where + "nnz " + std::to_string(h.nnz) + " exceeds capacity " +
                        std::to_string(h.capacity) + " without the overflow flag");
  const Slot s = slot_of(const_cast<void*>(packed), l);  // read only
  int64_t total = 0;
  for (int64_t k = 0; k < l.blocks; ++k) {
    int64_t bits = 0;
    for (int64_t w = k * kWordsPerBlock; w < std::min(l.words, (k + 1) * kWordsPerBlock); ++w)
      bits += std::popcount(s.bitmap[w]);
    if (bits != static_cast<int64_t>(s.counts[k]))
      return corrupt_data(where + "block " + std::to_string(k) + " count " +
                          std::to_string(s.counts[k]) + " disagrees with its bitmap (" +
                          std::to_string(bits) + " bits)");
    total += bits;
  }
  if (total != h.nnz)
    return corrupt_data(where + "block counts sum to " + std::to_string(total) + ", header nnz is " +
                        std::to_string(h.nnz));
  if (n % 64 != 0 && (s.bitmap[l.words - 1] >> (n % 64)) != 0)
    return corrupt_data(where + "bits set past the last element");
  return Status::ok();
}

void pack_mask(const float* y, int64_t n, float lo, float hi, uint64_t* bits, const Parallel& parallel,
               CodecIsa isa) {
  ET_CHECK(n >= 0 && (n == 0 || (y != nullptr && bits != nullptr)));
  const bool has_hi = !(std::isinf(hi) && hi > 0);
  const bool avx512 = use_avx512(isa);
  parallel.for_each(mask_words(n), kMinMaskWordsPerChunk, [&](int64_t wb, int64_t we) {
#ifdef ET_CODEC_X86
    if (avx512) return mask_words_avx512(y, n, lo, hi, has_hi, wb, we, bits);
#endif
    mask_words_portable(y, n, lo, hi, has_hi, wb, we, bits);
  });
}

}  // namespace edgetrain
