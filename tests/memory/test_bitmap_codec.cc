// The sparse bitmap codec (memory/bitmap_codec) and its kernels (ops/bitmap_storage): exact
// round trips across sizes, sparsities, threads and instruction sets; overflow that never writes
// past the slot; masks for ReLU/ReLU6 that give the same backward as y itself; every op-table
// kernel against its naive reference.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "memory/bitmap_codec.h"
#include "ops/activation.h"
#include "ops/bitmap_storage.h"
#include "ops/op.h"
#include "runtime/float_env.h"
#include "runtime/thread_pool.h"

namespace edgetrain {
namespace {

constexpr uint64_t kFill = 0xA5A5A5A5A5A5A5A5ull;  // what untouched slot bytes hold
constexpr size_t kGuardWords = 16;                 // 128 guard bytes after each slot
const float kInf = std::numeric_limits<float>::infinity();

// A packed slot followed by guard words, all filled with kFill (8-byte aligned, as the arena's
// 64-byte alignment implies).
struct GuardedSlot {
  std::vector<uint64_t> words;
  size_t bytes;
  GuardedSlot(int64_t n, int64_t cap) : bytes(packed_bytes(n, cap)) {
    words.assign(bytes / 8 + kGuardWords, kFill);
  }
  void* data() { return words.data(); }
  bool guard_intact() const {
    for (size_t i = bytes / 8; i < words.size(); ++i)
      if (words[i] != kFill) return false;
    return true;
  }
};

// n floats, each zero (+0.0 or -0.0 at random) with probability `sparsity`, else in [-1, 1]
// and nonzero.
std::vector<float> sparse_data(int64_t n, double sparsity, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_real_distribution<float> val(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) {
    if (u(rng) < sparsity) {
      v = (rng() & 1u) ? 0.0f : -0.0f;
    } else {
      v = val(rng);
      if (v == 0.0f) v = 0.5f;
    }
  }
  return x;
}

// What a round trip must give back: x with -0.0 turned into +0.0.
std::vector<float> canonical(std::vector<float> x) {
  for (float& v : x)
    if (v == 0.0f) v = 0.0f;
  return x;
}

int64_t count_nonzero(const std::vector<float>& x) {
  int64_t c = 0;
  for (float v : x) c += v != 0.0f;
  return c;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<CodecIsa> isas() {
  std::vector<CodecIsa> v{CodecIsa::kPortable};
  if (codec_avx512_available()) v.push_back(CodecIsa::kAvx512);
  return v;
}

const char* isa_name(CodecIsa isa) { return isa == CodecIsa::kAvx512 ? "avx512" : "portable"; }

const int64_t kSizes[] = {1, 63, 64, 65, 4095, 4096, 4097, 1000000};
const double kSparsities[] = {0.0, 0.5, 0.9, 1.0};

TEST(PackedLayout, PartsAre64ByteAlignedAndSizedFromNAndCap) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{65}, int64_t{4097}, int64_t{1000000}}) {
    for (int64_t cap : {int64_t{0}, int64_t{1}, n / 2, n}) {
      PackedLayout l = packed_layout(n, cap);
      EXPECT_EQ(l.counts_offset, 64u);
      EXPECT_EQ(l.bitmap_offset % 64, 0u);
      EXPECT_EQ(l.values_offset % 64, 0u);
      EXPECT_EQ(l.total_bytes % 64, 0u);
      EXPECT_GE(l.bitmap_offset - l.counts_offset, static_cast<size_t>(l.blocks) * 4);
      EXPECT_GE(l.values_offset - l.bitmap_offset, static_cast<size_t>((n + 63) / 64) * 8);
      EXPECT_GE(l.total_bytes - l.values_offset, static_cast<size_t>(cap) * 4);
      EXPECT_LT(l.total_bytes - l.values_offset, static_cast<size_t>(cap) * 4 + 64);
      EXPECT_EQ(packed_bytes(n, cap), l.total_bytes);
    }
  }
}

// BitTrain's n/8 + 4*nnz: at 50% sparsity 17/32 = 0.53125 of dense, plus the header and the
// per-block counts (4 bytes per 4096 elements) and at most 3 x 63 bytes of alignment.
TEST(PackedLayout, HalfSparseSlotIsAbout53PercentOfDense) {
  for (int64_t n : {int64_t{32 * 16 * 16 * 96}, int64_t{8 * 112 * 112 * 96}, int64_t{1000001}}) {
    const double dense = 4.0 * static_cast<double>(n);
    const double slot = static_cast<double>(packed_bytes(n, n / 2));
    EXPECT_LE(slot, 0.5316 * dense + 64 + 3 * 63) << n;
    EXPECT_GE(slot, 0.53125 * dense - 8) << n;
  }
}

TEST(BitmapCodec, RoundTripIsBitIdenticalAcrossSizesSparsitiesThreadsAndIsas) {
  ThreadPool pool(2);
  for (int64_t n : kSizes) {
    for (double sparsity : kSparsities) {
      const std::vector<float> x = sparse_data(n, sparsity, static_cast<uint32_t>(n) + 7);
      const std::vector<float> expected = canonical(x);
      const int64_t nnz = count_nonzero(x);
      for (CodecIsa isa : isas()) {
        for (int threads : {1, 2}) {
          SCOPED_TRACE(testing::Message() << "n=" << n << " sparsity=" << sparsity << " "
                                          << isa_name(isa) << " threads=" << threads);
          Parallel par = threads == 1 ? Parallel{} : pool.parallel();
          // Nonzero sentinels after x: reading past n would count them.
          std::vector<float> xs = x;
          xs.resize(x.size() + 16, 5.0f);
          // The tightest slot: capacity exactly nnz, so values end right at the slot's end.
          GuardedSlot slot(n, nnz);
          PackResult r = pack_sparse(xs.data(), n, nnz, slot.data(), par, isa);
          EXPECT_FALSE(r.overflowed);
          EXPECT_EQ(r.nnz, nnz);
          EXPECT_FALSE(packed_overflowed(slot.data()));
          EXPECT_EQ(packed_nnz(slot.data()), nnz);
          EXPECT_EQ(packed_numel(slot.data()), n);
          EXPECT_TRUE(slot.guard_intact());
          Status v = validate_packed(slot.data(), slot.bytes, n);
          EXPECT_TRUE(v.is_ok()) << v.to_string();
          std::vector<float> y(static_cast<size_t>(n) + 16, 42.0f);  // 16 sentinels after n
          ASSERT_TRUE(unpack_sparse(slot.data(), y.data(), par, isa));
          EXPECT_EQ(std::vector<float>(y.begin() + n, y.end()), std::vector<float>(16, 42.0f));
          y.resize(static_cast<size_t>(n));
          EXPECT_TRUE(same_bits(y, expected));
        }
      }
    }
  }
}

TEST(BitmapCodec, EmptyTensorPacksAndUnpacks) {
  GuardedSlot slot(0, 0);
  PackResult r = pack_sparse(nullptr, 0, 0, slot.data(), Parallel{});
  EXPECT_EQ(r.nnz, 0);
  EXPECT_FALSE(r.overflowed);
  EXPECT_TRUE(unpack_sparse(slot.data(), nullptr, Parallel{}));
  EXPECT_TRUE(validate_packed(slot.data(), slot.bytes, 0).is_ok());
  EXPECT_TRUE(slot.guard_intact());
}

// NaN (with its payload), infinities and subnormals are nonzero and come back bit for bit;
// -0.0 is a zero and comes back as +0.0.
TEST(BitmapCodec, SpecialValuesSurviveAndNegativeZeroBecomesPositiveZero) {
  uint32_t nan_bits = 0x7fc01234u, snan_bits = 0x7f800001u;
  float nan, snan;
  std::memcpy(&nan, &nan_bits, 4);
  std::memcpy(&snan, &snan_bits, 4);
  std::vector<float> x = {0.0f, -0.0f, nan, kInf, -kInf, 1e-45f, -1e-40f, snan, 3.0f, -0.0f};
  x.resize(100, -0.0f);
  x[77] = nan;
  const int64_t n = static_cast<int64_t>(x.size());
  for (CodecIsa isa : isas()) {
    SCOPED_TRACE(isa_name(isa));
    GuardedSlot slot(n, n);
    PackResult r = pack_sparse(x.data(), n, n, slot.data(), Parallel{}, isa);
    EXPECT_EQ(r.nnz, 8);
    std::vector<float> y(x.size(), 1.0f);
    ASSERT_TRUE(unpack_sparse(slot.data(), y.data(), Parallel{}, isa));
    for (size_t i = 0; i < x.size(); ++i) {
      uint32_t a, b;
      std::memcpy(&a, &x[i], 4);
      std::memcpy(&b, &y[i], 4);
      if (x[i] == 0.0f) EXPECT_EQ(b, 0u) << i;  // +0.0
      else EXPECT_EQ(a, b) << i;
    }
  }
}

TEST(BitmapCodec, OverflowSetsTheFlagWritesNoValuesAndNothingPastTheSlot) {
  ThreadPool pool(2);
  for (int64_t n : {int64_t{65}, int64_t{4097}, int64_t{100000}}) {
    const std::vector<float> x = sparse_data(n, 0.5, 11);
    const int64_t nnz = count_nonzero(x);
    for (int64_t cap : {int64_t{0}, nnz / 2, nnz - 1}) {
      for (CodecIsa isa : isas()) {
        SCOPED_TRACE(testing::Message() << "n=" << n << " cap=" << cap << " " << isa_name(isa));
        GuardedSlot slot(n, cap);
        PackResult r = pack_sparse(x.data(), n, cap, slot.data(), pool.parallel(), isa);
        EXPECT_TRUE(r.overflowed);
        EXPECT_EQ(r.nnz, nnz);  // the executor learns how much room it would have needed
        EXPECT_TRUE(packed_overflowed(slot.data()));
        EXPECT_EQ(packed_nnz(slot.data()), nnz);
        EXPECT_TRUE(slot.guard_intact());
        // The values part is exactly as it was: nothing written.
        const size_t values_word = packed_layout(n, cap).values_offset / 8;
        for (size_t i = values_word; i < slot.bytes / 8; ++i) ASSERT_EQ(slot.words[i], kFill) << i;
        EXPECT_TRUE(validate_packed(slot.data(), slot.bytes, n).is_ok());
        std::vector<float> y(static_cast<size_t>(n), 42.0f);
        EXPECT_FALSE(unpack_sparse(slot.data(), y.data(), pool.parallel(), isa));
        EXPECT_EQ(y, std::vector<float>(static_cast<size_t>(n), 42.0f));
      }
    }
    // One more value of room and it fits.
    GuardedSlot slot(n, nnz);
    EXPECT_FALSE(pack_sparse(x.data(), n, nnz, slot.data(), pool.parallel()).overflowed);
  }
}

TEST(BitmapCodec, Avx512AndPortablePathsWriteIdenticalBytes) {
  if (!codec_avx512_available()) GTEST_SKIP() << "CPU without AVX-512F";
  ThreadPool pool(2);
  for (int64_t n : kSizes) {
    for (double sparsity : kSparsities) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " sparsity=" << sparsity);
      const std::vector<float> x = sparse_data(n, sparsity, 99);
      const int64_t nnz = count_nonzero(x);
      for (int64_t cap : {n, nnz / 2}) {  // a roomy slot, and an overflowing one (unless nnz = 0)
        GuardedSlot a(n, cap), b(n, cap);
        PackResult ra = pack_sparse(x.data(), n, cap, a.data(), pool.parallel(), CodecIsa::kPortable);
        PackResult rb = pack_sparse(x.data(), n, cap, b.data(), pool.parallel(), CodecIsa::kAvx512);
        EXPECT_EQ(ra.nnz, rb.nnz);
        EXPECT_EQ(ra.overflowed, rb.overflowed);
        EXPECT_EQ(a.words, b.words);
      }
    }
  }
}

TEST(BitmapCodec, OneAndTwoThreadsWriteIdenticalBytes) {
  ThreadPool pool(2);
  const int64_t n = 1000003;
  const std::vector<float> x = sparse_data(n, 0.6, 5);
  GuardedSlot a(n, n), b(n, n);
  pack_sparse(x.data(), n, n, a.data(), Parallel{});
  pack_sparse(x.data(), n, n, b.data(), pool.parallel());
  EXPECT_EQ(a.words, b.words);
}

TEST(BitmapCodec, NaiveReferenceWritesTheSameBytesAsTheCodec) {
  for (int64_t n : {int64_t{1}, int64_t{65}, int64_t{4097}, int64_t{20000}}) {
    for (double sparsity : kSparsities) {
      const std::vector<float> x = sparse_data(n, sparsity, 3);
      const int64_t nnz = count_nonzero(x);
      for (int64_t cap : {n, nnz > 0 ? nnz - 1 : int64_t{0}}) {
        SCOPED_TRACE(testing::Message() << "n=" << n << " sparsity=" << sparsity << " cap=" << cap);
        GuardedSlot a(n, cap), b(n, cap);
        pack_sparse(x.data(), n, cap, a.data(), Parallel{});
        pack_sparse_naive(x.data(), n, cap, b.data());
        EXPECT_EQ(a.words, b.words);
        if (cap >= nnz) {
          std::vector<float> y(static_cast<size_t>(n), 7.0f);
          ASSERT_TRUE(unpack_sparse_naive(a.data(), y.data()));
          EXPECT_TRUE(same_bits(y, canonical(x)));
        }
      }
    }
  }
}

TEST(BitmapCodec, ValidateRejectsCorruptSlots) {
  const int64_t n = 5000;  // two blocks, ragged last word
  const std::vector<float> x = sparse_data(n, 0.5, 8);
  const int64_t nnz = count_nonzero(x);
  const int64_t cap = nnz + 16;  // room for the edits below to stay within capacity
  GuardedSlot good(n, cap);
  pack_sparse(x.data(), n, cap, good.data(), Parallel{});
  ASSERT_TRUE(validate_packed(good.data(), good.bytes, n).is_ok());
  const PackedLayout l = packed_layout(n, cap);
  auto corrupt = [&](auto&& edit) {
    GuardedSlot s = good;
    edit(reinterpret_cast<unsigned char*>(s.data()));
    return validate_packed(s.data(), s.bytes, n);
  };
  EXPECT_EQ(corrupt([](unsigned char* p) { p[0] ^= 1; }).code(), StatusCode::kCorruptData);
  EXPECT_FALSE(validate_packed(good.data(), good.bytes, n + 1).is_ok());
  EXPECT_FALSE(validate_packed(good.data(), good.bytes - 64, n).is_ok());
  Status count = corrupt([&](unsigned char* p) { reinterpret_cast<uint32_t*>(p + l.counts_offset)[1] += 1; });
  EXPECT_NE(count.message().find("block 1"), std::string::npos) << count.message();
  // A bit past n = 5000 (bit 8 of the last word) and a matching count: still caught.
  Status tail = corrupt([&](unsigned char* p) {
    reinterpret_cast<uint64_t*>(p + l.bitmap_offset)[l.words - 1] |= uint64_t{1} << 63;
    reinterpret_cast<uint32_t*>(p + l.counts_offset)[1] += 1;
    reinterpret_cast<int64_t*>(p)[3] += 1;  // header nnz
  });
  EXPECT_FALSE(tail.is_ok());
  EXPECT_NE(tail.message().find("past the last element"), std::string::npos) << tail.message();
}

// ---- masks -------------------------------------------------------------------------------

std::vector<uint64_t> expected_mask(const std::vector<float>& y, float lo, float hi, bool unbounded) {
  std::vector<uint64_t> bits(static_cast<size_t>(mask_words(static_cast<int64_t>(y.size()))), 0);
  for (size_t i = 0; i < y.size(); ++i)
    if (y[i] > lo && (unbounded || y[i] < hi)) bits[i / 64] |= uint64_t{1} << (i % 64);
  return bits;
}

// Post-activation values with many exact zeros, values at and around the ReLU6 cap, +inf, NaN.
std::vector<float> activation_like(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> val(-2.0f, 8.0f);
  const float specials[] = {0.0f, -0.0f, 6.0f, std::nextafter(6.0f, 0.0f), std::nextafter(6.0f, 7.0f),
                            kInf, -kInf, std::nanf(""), 1e-45f, -1.0f};
  std::vector<float> y(static_cast<size_t>(n));
  for (float& v : y) {
    uint32_t r = rng() % 10;
    if (r < 4) v = 0.0f;
    else if (r < 5) v = specials[rng() % 10];
    else v = val(rng);
  }
  return y;
}

TEST(PackMask, ReluAndRelu6RangesMatchTheDefinitionOnEveryPath) {
  // Kernels read denormals as zero (the pool's threads, every step: runtime/float_env.h), so
  // 1e-45 is outside (0, hi) here too.
  const ScopedFlushDenormals flush;
  ThreadPool pool(2);
  for (int64_t n : kSizes) {
    const std::vector<float> y = activation_like(n, 21);
    struct Range { float lo, hi; bool unbounded; };
    for (Range r : {Range{0.0f, kInf, true}, Range{0.0f, 6.0f, false}}) {
      const std::vector<uint64_t> want = expected_mask(y, r.lo, r.hi, r.unbounded);
      for (CodecIsa isa : isas()) {
        SCOPED_TRACE(testing::Message() << "n=" << n << " hi=" << r.hi << " " << isa_name(isa));
        std::vector<uint64_t> got(want.size() + 2, kFill);
        pack_mask(y.data(), n, r.lo, r.hi, got.data(), pool.parallel(), isa);
        EXPECT_EQ(got[want.size()], kFill);  // writes exactly mask_words(n) words
        got.resize(want.size());
        EXPECT_EQ(got, want);
      }
      std::vector<uint64_t> naive(want.size(), kFill);
      pack_mask_naive(y.data(), n, r.lo, r.hi, naive.data());
      EXPECT_EQ(naive, want);
    }
  }
}

TEST(PackMask, InfinityIsActiveForReluButNotForRelu6AndNanNeverIs) {
  const std::vector<float> y = {kInf, std::nanf(""), 6.0f, 5.5f, 0.0f, -0.0f, 1e-45f};
  for (CodecIsa isa : isas()) {
    uint64_t relu = 0, relu6 = 0;
    pack_mask(y.data(), 7, 0.0f, kInf, &relu, Parallel{}, isa);
    pack_mask(y.data(), 7, 0.0f, 6.0f, &relu6, Parallel{}, isa);
    EXPECT_EQ(relu, 0b1001101u) << isa_name(isa);
    EXPECT_EQ(relu6, 0b1001000u) << isa_name(isa);
  }
}

// ---- kernels through the op table ---------------------------------------------------------

// Runs op_info(op).fast or .reference on raw buffers (the packed and mask values are u64, which
// the float-only test harness cannot size).
void run_kernel(OpKind op, const Attrs& attrs, std::vector<void*> in, std::vector<Shape> in_shape,
                std::vector<void*> out, std::vector<Shape> out_shape, bool reference,
                ThreadPool& pool) {
  KernelCall call;
  call.attrs = &attrs;
  call.in = in.data();
  call.in_shape = in_shape.data();
  call.n_in = static_cast<int>(in.size());
  call.out = out.data();
  call.out_shape = out_shape.data();
  call.n_out = static_cast<int>(out.size());
  call.parallel = pool.parallel();
  const OpInfo& info = op_info(op);
  (reference ? info.reference : info.fast)(call);
}

TEST(BitmapOps, TableRowsNameTheNewKernels) {
  EXPECT_STREQ(op_name(OpKind::kPackSparse), "pack_sparse");
  EXPECT_STREQ(op_name(OpKind::kUnpackSparse), "unpack_sparse");
  EXPECT_STREQ(op_name(OpKind::kPackMask), "pack_mask");
  EXPECT_STREQ(op_name(OpKind::kReluBackwardMask), "relu_backward_mask");
  EXPECT_FALSE(op_info(OpKind::kPackSparse).is_forward);
}

TEST(BitmapOps, PackAndUnpackKernelsMatchReferencesAndRoundTrip) {
  ThreadPool pool(2);
  for (int64_t n : {int64_t{65}, int64_t{4097}, int64_t{200000}}) {
    const std::vector<float> x = sparse_data(n, 0.5, 13);
    const int64_t nnz = count_nonzero(x);
    for (int64_t cap : {nnz + 100, nnz - 1}) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " cap=" << cap);
      Attrs a;
      a.sparse.capacity = cap;
      const Shape xs{n}, ps = packed_shape(n, cap);
      ASSERT_EQ(static_cast<size_t>(ps.numel()) * 8, packed_bytes(n, cap));
      GuardedSlot fast(n, cap), ref(n, cap);
      run_kernel(OpKind::kPackSparse, a, {const_cast<float*>(x.data())}, {xs}, {fast.data()}, {ps},
                 false, pool);
      run_kernel(OpKind::kPackSparse, a, {const_cast<float*>(x.data())}, {xs}, {ref.data()}, {ps},
                 true, pool);
      EXPECT_EQ(fast.words, ref.words);
      EXPECT_EQ(packed_overflowed(fast.data()), cap < nnz);
      if (cap < nnz) continue;
      std::vector<float> yf(x.size(), 3.0f), yr(x.size(), 4.0f);
      run_kernel(OpKind::kUnpackSparse, a, {fast.data()}, {ps}, {yf.data()}, {xs}, false, pool);
      run_kernel(OpKind::kUnpackSparse, a, {fast.data()}, {ps}, {yr.data()}, {xs}, true, pool);
      EXPECT_TRUE(same_bits(yf, canonical(x)));
      EXPECT_TRUE(same_bits(yr, canonical(x)));
    }
  }
}

TEST(BitmapOps, PackMaskKernelMatchesReference) {
  const ScopedFlushDenormals flush;  // as kernels run (see PackMask above): 1e-45 reads as 0
  ThreadPool pool(2);
  const int64_t n = 100001;
  const std::vector<float> y = activation_like(n, 4);
  for (float hi : {kInf, 6.0f}) {
    Attrs a;
    a.sparse.lo = 0.0f;
    a.sparse.hi = hi;
    std::vector<uint64_t> fast(static_cast<size_t>(mask_words(n)), kFill), ref = fast;
    run_kernel(OpKind::kPackMask, a, {const_cast<float*>(y.data())}, {Shape{n}}, {fast.data()},
               {mask_shape(n)}, false, pool);
    run_kernel(OpKind::kPackMask, a, {const_cast<float*>(y.data())}, {Shape{n}}, {ref.data()},
               {mask_shape(n)}, true, pool);
    EXPECT_EQ(fast, ref);
    EXPECT_EQ(fast, expected_mask(y, 0.0f, hi, std::isinf(hi)));
  }
}

// The point of the mask: ReLU/ReLU6 backward from 1 bit per element gives exactly the result of
// relu_backward / relu6_backward from the saved y, overwriting and accumulating, fast kernel,
// reference kernel and both instruction-set paths.
TEST(BitmapOps, ReluBackwardMaskEqualsReluAndRelu6BackwardExactly) {
  ThreadPool pool(2);
  for (int64_t n : {int64_t{1}, int64_t{63}, int64_t{65}, int64_t{4097}, int64_t{300001}}) {
    const std::vector<float> pre = activation_like(n, 31);
    const std::vector<float> dy = sparse_data(n, 0.1, 32);      // includes -0.0
    const std::vector<float> dx0 = sparse_data(n, 0.3, 33);     // accumulation target
    struct Case { OpKind forward, backward; float hi; };
    for (Case c : {Case{OpKind::kRelu, OpKind::kReluBackward, kInf},
                   Case{OpKind::kRelu6, OpKind::kRelu6Backward, 6.0f}}) {
      const Shape s{n};
      Attrs fa;
      std::vector<float> y(pre.size());
      run_kernel(c.forward, fa, {const_cast<float*>(pre.data())}, {s}, {y.data()}, {s}, false, pool);
      Attrs ma;
      ma.sparse.lo = 0.0f;
      ma.sparse.hi = c.hi;
      std::vector<uint64_t> bits(static_cast<size_t>(mask_words(n)));
      run_kernel(OpKind::kPackMask, ma, {y.data()}, {s}, {bits.data()}, {mask_shape(n)}, false, pool);
      for (bool acc : {false, true}) {
        SCOPED_TRACE(testing::Message() << "n=" << n << " " << op_name(c.forward) << " acc=" << acc);
        Attrs ba;
        ba.accumulate_mask = acc ? 1u : 0u;
        std::vector<float> want = dx0;
        run_kernel(c.backward, ba, {const_cast<float*>(dy.data()), y.data()}, {s, s}, {want.data()},
                   {s}, false, pool);
        for (bool reference : {false, true}) {
          std::vector<float> got = dx0;
          run_kernel(OpKind::kReluBackwardMask, ba, {const_cast<float*>(dy.data()), bits.data()},
                     {s, mask_shape(n)}, {got.data()}, {s}, reference, pool);
          EXPECT_TRUE(same_bits(got, want)) << (reference ? "reference" : "fast");
        }
        for (CodecIsa isa : isas()) {
          std::vector<float> got = dx0;
          relu_backward_masked(n, dy.data(), bits.data(), got.data(), acc, pool.parallel(), isa);
          EXPECT_TRUE(same_bits(got, want)) << isa_name(isa);
        }
        // In place (dx aliases dy), as a schedule may run it.
        if (!acc) {
          std::vector<float> inplace = dy;
          relu_backward_masked(n, inplace.data(), bits.data(), inplace.data(), false, pool.parallel());
          EXPECT_TRUE(same_bits(inplace, want));
        }
      }
    }
  }
}

TEST(BitmapOpsDeathTest, UnpackKernelOfAnOverflowedSlotStopsWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::vector<float> x = sparse_data(100, 0.5, 1);
  GuardedSlot slot(100, 1);
  pack_sparse(x.data(), 100, 1, slot.data(), Parallel{});
  ASSERT_TRUE(packed_overflowed(slot.data()));
  EXPECT_DEATH(
      {
        ThreadPool pool(1);
        std::vector<float> y(100);
        Attrs a;
        run_kernel(OpKind::kUnpackSparse, a, {slot.data()}, {packed_shape(100, 1)}, {y.data()},
                   {Shape{100}}, false, pool);
      },
      "overflowed slot");
}

}  // namespace
}  // namespace edgetrain
