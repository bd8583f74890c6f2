// Dataset storage, the data-side random generator, fixed-seed subsets, epoch permutations and
// the batch iterator.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "data/dataset.h"

namespace edgetrain {
namespace {

Dataset numbered(int64_t n, PixelType type = PixelType::kU8) {
  auto r = Dataset::allocate(type, n, 2, 2, 1, 10);
  EXPECT_TRUE(r.is_ok());
  Dataset d = std::move(r).value();
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) {
      if (type == PixelType::kU8)
        d.mutable_image_u8(i)[k] = static_cast<uint8_t>(i);
      else
        d.mutable_image_f32(i)[k] = static_cast<float>(i) / 1000.f;
    }
    d.mutable_labels()[i] = static_cast<int32_t>(i % 10);
  }
  return d;
}

TEST(Dataset, AllocateIsZeroedCompactAndValidatesSizes) {
  auto r = Dataset::allocate(PixelType::kU8, 60000, 28, 28, 1, 10);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->bytes(), 60000u * 784u + 60000u * 4u);  // 47 MB of pixels + labels
  EXPECT_EQ(r->image_u8(59999)[783], 0);
  EXPECT_EQ(r->label(59999), 0);
  auto f = Dataset::allocate(PixelType::kF32, 10, 28, 28, 1, 10);
  ASSERT_TRUE(f.is_ok());
  EXPECT_EQ(f->bytes(), 10u * 784u * 4u + 40u);
  EXPECT_EQ(Dataset::allocate(PixelType::kU8, 1, 0, 28, 1, 10).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Dataset::allocate(PixelType::kU8, 1, 28, 28, 1, 0).status().code(),
            StatusCode::kInvalidArgument);
  // A header claiming 2^32 x 2^16 x 2^16 pixels is refused before any allocation.
  auto huge = Dataset::allocate(PixelType::kU8, int64_t{1} << 32, 65535, 65535, 1, 10);
  ASSERT_FALSE(huge.is_ok());
  EXPECT_NE(huge.status().message().find("64 GiB"), std::string::npos);
}

TEST(Dataset, ReadPixels01ScalesUint8) {
  Dataset d = numbered(3);
  float px[4];
  d.read_pixels01(2, px);
  EXPECT_EQ(px[0], 2.f / 255.f);
}

TEST(DataRng, SameSeedSameStreamAndSaneMoments) {
  DataRng a(7), b(7), c(8);
  EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_NE(a.next_u64(), c.next_u64());
  DataRng r(1);
  double s = 0, sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double v = r.normal();
    s += v;
    sq += v * v;
  }
  EXPECT_NEAR(s / n, 0.0, 0.01);
  EXPECT_NEAR(sq / n, 1.0, 0.01);
  int counts[3] = {};
  for (int i = 0; i < 30000; ++i) ++counts[r.below(3)];
  for (int c3 : counts) EXPECT_NEAR(c3, 10000, 400);
  for (int i = 0; i < 1000; ++i) {
    const float u = r.uniform01();
    ASSERT_GE(u, 0.f);
    ASSERT_LT(u, 1.f);
  }
}

TEST(Subset, DistinctSeededAndCopiesImagesWithLabels) {
  Dataset d = numbered(100);
  d.set_class_names({"a", "b"});
  auto s = subset(d, 20, 42);
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(s->size(), 20);
  EXPECT_EQ(s->class_names(), d.class_names());
  std::set<int> seen;
  for (int64_t k = 0; k < 20; ++k) {
    const int src = s->image_u8(k)[0];  // the source index is the pixel value
    EXPECT_EQ(s->label(k), src % 10);
    seen.insert(src);
  }
  EXPECT_EQ(seen.size(), 20u);
  auto again = random_subset_indices(100, 20, 42);
  auto other = random_subset_indices(100, 20, 43);
  ASSERT_TRUE(again.is_ok() && other.is_ok());
  for (int64_t k = 0; k < 20; ++k) EXPECT_EQ(s->image_u8(k)[0], (*again)[static_cast<size_t>(k)]);
  EXPECT_NE(*again, *other);
  // Not just the first indices in order.
  std::vector<int64_t> first20(20);
  for (int k = 0; k < 20; ++k) first20[static_cast<size_t>(k)] = k;
  EXPECT_NE(*again, first20);
}

TEST(Subset, FloatDatasetsAndAllIndices) {
  Dataset d = numbered(10, PixelType::kF32);
  auto s = subset(d, 10, 1);
  ASSERT_TRUE(s.is_ok());
  std::set<float> seen;
  for (int64_t k = 0; k < 10; ++k) seen.insert(s->image_f32(k)[3]);
  EXPECT_EQ(seen.size(), 10u);
}

TEST(Subset, TooManyOrBadIndicesAreErrors) {
  Dataset d = numbered(5);
  EXPECT_EQ(subset(d, 6, 0).status().code(), StatusCode::kInvalidArgument);
  auto r = select(d, {0, 5});
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("index 5 at position 1"), std::string::npos);
}

TEST(EpochPermutation, IsAPermutationFixedBySeedAndEpoch) {
  std::vector<int64_t> a(1000), b(1000), c(1000), e(1000);
  epoch_permutation(1000, 9, 3, a.data());
  epoch_permutation(1000, 9, 3, b.data());
  epoch_permutation(1000, 9, 4, c.data());
  epoch_permutation(1000, 10, 3, e.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, e);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t k = 0; k < 1000; ++k) ASSERT_EQ(sorted[static_cast<size_t>(k)], k);
}

TEST(BatchIterator, KeepsOrDropsTheLastPartialBatch) {
  auto keep = BatchIterator::create(10, 3, false, false, 0);
  ASSERT_TRUE(keep.is_ok());
  EXPECT_EQ(keep->batches_per_epoch(), 4);
  std::vector<int64_t> counts, order;
  for (BatchIterator::Batch b; keep->next(&b);) {
    counts.push_back(b.count);
    order.insert(order.end(), b.indices, b.indices + b.count);
  }
  EXPECT_EQ(counts, (std::vector<int64_t>{3, 3, 3, 1}));
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));

  auto drop = BatchIterator::create(10, 3, false, true, 0);
  ASSERT_TRUE(drop.is_ok());
  EXPECT_EQ(drop->batches_per_epoch(), 3);
  int n = 0;
  for (BatchIterator::Batch b; drop->next(&b);) {
    EXPECT_EQ(b.count, 3);
    ++n;
  }
  EXPECT_EQ(n, 3);
}

TEST(BatchIterator, ShuffledEpochsVisitEveryIndexOnceInNewOrders) {
  auto it = BatchIterator::create(50, 8, true, false, 5);
  ASSERT_TRUE(it.is_ok());
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t ep = 0; ep < 3; ++ep) {
    it->start_epoch(ep);
    std::vector<int64_t> order;
    for (BatchIterator::Batch b; it->next(&b);) order.insert(order.end(), b.indices, b.indices + b.count);
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_EQ(sorted.size(), 50u);
    for (int64_t k = 0; k < 50; ++k) ASSERT_EQ(sorted[static_cast<size_t>(k)], k);
    epochs.push_back(order);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  // Re-starting an epoch replays it exactly (resumable runs).
  it->start_epoch(1);
  std::vector<int64_t> replay;
  for (BatchIterator::Batch b; it->next(&b);) replay.insert(replay.end(), b.indices, b.indices + b.count);
  EXPECT_EQ(replay, epochs[1]);
}

TEST(BatchIterator, BadSizesAreInvalidArgument) {
  EXPECT_EQ(BatchIterator::create(10, 0, false, false, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchIterator::create(-1, 4, false, false, 0).status().code(),
            StatusCode::kInvalidArgument);
  auto empty = BatchIterator::create(0, 4, true, false, 0);
  ASSERT_TRUE(empty.is_ok());
  BatchIterator::Batch b;
  EXPECT_FALSE(empty->next(&b));
}

}  // namespace
}  // namespace edgetrain
