// fill_batch (padding, channel replication, normalisation, augmentation) and the domain-shift
// generator (rot90 direction, inversion, seeded noise, clipping), on tiny hand-made datasets.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "data/idx.h"
#include "data/transforms.h"

namespace edgetrain {
namespace {

// A uint8 dataset of `n` images h x w x c with pixel k of image i = (i * 50 + k * 13) % 256.
Dataset make_u8(int64_t n, int h, int w, int c) {
  auto r = Dataset::allocate(PixelType::kU8, n, h, w, c, 10);
  EXPECT_TRUE(r.is_ok());
  Dataset d = std::move(r).value();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < d.pixels_per_image(); ++k)
      d.mutable_image_u8(i)[k] = static_cast<uint8_t>((i * 50 + k * 13) % 256);
    d.mutable_labels()[i] = static_cast<int32_t>(i % 10);
  }
  return d;
}

TEST(FillBatch, PadsReplicatesAndNormalisesGray) {
  // One 2x2 gray image {0, 51, 102, 255}, pad 1 -> 4x4, 3 channels, mean .5 std .25.
  auto r = Dataset::allocate(PixelType::kU8, 1, 2, 2, 1, 10);
  ASSERT_TRUE(r.is_ok());
  Dataset d = std::move(r).value();
  const uint8_t px[4] = {0, 51, 102, 255};
  for (int k = 0; k < 4; ++k) d.mutable_image_u8(0)[k] = px[k];
  d.mutable_labels()[0] = 7;
  Preprocess p;
  p.pad = 1;
  p.mean = {0.5f, 0.5f, 0.5f};
  p.std = {0.25f, 0.25f, 0.25f};
  ASSERT_TRUE(check_preprocess(d, p).is_ok());
  EXPECT_EQ(batch_shape(d, p, 8), (Shape{8, 4, 4, 3}));
  EXPECT_EQ(floats_per_image(d, p), 48);
  std::vector<float> out(48, 99.f);
  int32_t label = -1;
  const int64_t idx = 0;
  fill_batch(d, &idx, 1, p, out.data(), &label, 0);
  EXPECT_EQ(label, 7);
  auto at = [&](int y, int x, int c) { return out[(y * 4 + x) * 3 + c]; };
  for (int c = 0; c < 3; ++c) {
    for (int k = 0; k < 4; ++k) {  // the 1-pixel border: (0 - .5) / .25
      EXPECT_FLOAT_EQ(at(0, k, c), -2.f);
      EXPECT_FLOAT_EQ(at(3, k, c), -2.f);
      EXPECT_FLOAT_EQ(at(k, 0, c), -2.f);
      EXPECT_FLOAT_EQ(at(k, 3, c), -2.f);
    }
    EXPECT_FLOAT_EQ(at(1, 1, c), -2.f);               // 0
    EXPECT_FLOAT_EQ(at(1, 2, c), (0.2f - 0.5f) * 4);  // 51 / 255 = 0.2
    EXPECT_FLOAT_EQ(at(2, 1, c), (0.4f - 0.5f) * 4);  // 102 / 255 = 0.4
    EXPECT_FLOAT_EQ(at(2, 2, c), 2.f);                // 255
  }
}

TEST(FillBatch, FashionMnistPreprocessMatchesThePeersNumbers) {
  Dataset d = make_u8(3, 28, 28, 1);
  const Preprocess p = fashion_mnist_preprocess();
  EXPECT_EQ(batch_shape(d, p, 3), (Shape{3, 32, 32, 3}));
  std::vector<float> out(3 * 32 * 32 * 3);
  std::vector<int32_t> labels(3);
  const int64_t idx[3] = {2, 0, 1};
  fill_batch(d, idx, 3, p, out.data(), labels.data(), 0);
  EXPECT_EQ(labels, (std::vector<int32_t>{2, 0, 1}));
  const float mean = kFashionMnistMean, sd = kFashionMnistStd;
  for (int b = 0; b < 3; ++b) {
    const float* img = out.data() + b * 32 * 32 * 3;
    EXPECT_EQ(img[0], (0.f - mean) / sd);                        // padding corner
    EXPECT_EQ(img[(1 * 32 + 31) * 3 + 2], (0.f - mean) / sd);    // right border
    for (int y = 0; y < 28; ++y) {
      for (int x = 0; x < 28; ++x) {
        // numpy: (u8.astype(float32) / 255 - 0.2860) / 0.3530 in float32.
        const float v = static_cast<float>(d.image_u8(idx[b])[y * 28 + x]) / 255.0f;
        const float want = (v - mean) / sd;
        const float* o = img + ((y + 2) * 32 + (x + 2)) * 3;
        ASSERT_EQ(o[0], want);
        ASSERT_EQ(o[1], want);
        ASSERT_EQ(o[2], want);
      }
    }
  }
}

TEST(FillBatch, FloatStorageGivesTheSameBatchAsUint8) {
  Dataset u8 = make_u8(2, 5, 4, 3);
  auto r = Dataset::allocate(PixelType::kF32, 2, 5, 4, 3, 10);
  ASSERT_TRUE(r.is_ok());
  Dataset f = std::move(r).value();
  for (int64_t i = 0; i < 2; ++i) {
    u8.read_pixels01(i, f.mutable_image_f32(i));
    f.mutable_labels()[i] = u8.label(i);
  }
  const Preprocess p = imagenet_preprocess();
  std::vector<float> a(2 * 60), b(2 * 60);
  const int64_t idx[2] = {1, 0};
  fill_batch(u8, idx, 2, p, a.data(), nullptr, 0);
  fill_batch(f, idx, 2, p, b.data(), nullptr, 0);
  EXPECT_EQ(a, b);
  // RGB channels keep their own mean/std.
  const float v = static_cast<float>(u8.image_u8(1)[2]) / 255.f;
  EXPECT_EQ(a[2], (v - 0.406f) / 0.225f);
}

TEST(FillBatch, PreprocessThatDoesNotFitIsRejected) {
  Dataset rgb = make_u8(1, 2, 2, 3);
  Preprocess p;
  p.out_channels = 1;
  EXPECT_EQ(check_preprocess(rgb, p).code(), StatusCode::kInvalidArgument);
  p = Preprocess{};
  p.std[1] = 0.f;
  const Status s = check_preprocess(rgb, p);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("channel 1"), std::string::npos) << s.message();
  p = Preprocess{};
  p.random_crop_pad = -1;
  EXPECT_FALSE(check_preprocess(rgb, p).is_ok());
}

// Un-normalised view of one output image for the augmentation tests (mean 0, std 1).
std::vector<float> fill_one(const Dataset& d, const Preprocess& p, int64_t i, uint64_t seed,
                            int64_t position = 0) {
  std::vector<int64_t> idx(static_cast<size_t>(position + 1), i);
  std::vector<float> out(static_cast<size_t>(floats_per_image(d, p) * (position + 1)));
  fill_batch(d, idx.data(), position + 1, p, out.data(), nullptr, seed);
  return std::vector<float>(out.end() - floats_per_image(d, p), out.end());
}

TEST(FillBatch, RandomFlipMirrorsSomeSamplesAndIsSeeded) {
  Dataset d = make_u8(1, 3, 5, 1);
  Preprocess plain;
  plain.out_channels = 1;
  Preprocess flip = plain;
  flip.random_flip = true;
  const std::vector<float> orig = fill_one(d, plain, 0, 0);
  std::vector<float> mirrored(orig.size());
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 5; ++x) mirrored[y * 5 + x] = orig[y * 5 + 4 - x];
  int n_flipped = 0;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    const std::vector<float> o = fill_one(d, flip, 0, seed);
    ASSERT_TRUE(o == orig || o == mirrored) << "seed " << seed;
    n_flipped += o == mirrored;
    EXPECT_EQ(o, fill_one(d, flip, 0, seed)) << "same seed, same sample";
  }
  EXPECT_GT(n_flipped, 16);
  EXPECT_LT(n_flipped, 48);
}

TEST(FillBatch, RandomCropIsAShiftOfThePaddedImageWithinThePadding) {
  Dataset d = make_u8(1, 6, 6, 1);
  Preprocess plain;
  plain.out_channels = 1;
  plain.pad = 1;  // 8x8 output
  Preprocess crop = plain;
  crop.random_crop_pad = 2;
  // The padded image on a larger zero canvas, to look shifted windows up in.
  const std::vector<float> base = fill_one(d, plain, 0, 0);
  auto shifted = [&](int dy, int dx) {
    std::vector<float> s(64, 0.f);
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x) {
        const int sy = y + dy, sx = x + dx;
        if (sy >= 0 && sy < 8 && sx >= 0 && sx < 8) s[y * 8 + x] = base[sy * 8 + sx];
      }
    return s;
  };
  std::vector<int> seen(25, 0);
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const std::vector<float> o = fill_one(d, crop, 0, seed, static_cast<int64_t>(seed % 3));
    int match = -1;
    for (int dy = -2; dy <= 2 && match < 0; ++dy)
      for (int dx = -2; dx <= 2 && match < 0; ++dx)
        if (o == shifted(dy, dx)) match = (dy + 2) * 5 + (dx + 2);
    ASSERT_GE(match, 0) << "seed " << seed << " is no shift within the padding";
    ++seen[static_cast<size_t>(match)];
  }
  int distinct = 0;
  for (int s : seen) distinct += s > 0;
  EXPECT_GE(distinct, 20) << "offsets should cover most of the 5x5 range";
}

// --------------------------------------------------------------------------- domain shift

// The 2x3 image [[1 2 3] [4 5 6]] / 10 (an asymmetric probe).
Dataset probe_2x3() {
  auto r = Dataset::allocate(PixelType::kF32, 1, 2, 3, 1, 10);
  EXPECT_TRUE(r.is_ok());
  Dataset d = std::move(r).value();
  for (int k = 0; k < 6; ++k) d.mutable_image_f32(0)[k] = static_cast<float>(k + 1) / 10.f;
  d.mutable_labels()[0] = 4;
  return d;
}

TEST(DomainShift, Rot90IsCounterClockwiseLikeNumpy) {
  // np.rot90([[[1,2,3],[4,5,6]]], k=1, axes=(1,2)) == [[[3,6],[2,5],[1,4]]].
  DomainShift s;
  s.invert = false;
  s.noise_sigma = 0.f;
  auto r = apply_domain_shift(probe_2x3(), s);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->height(), 3);
  ASSERT_EQ(r->width(), 2);
  EXPECT_EQ(r->pixel_type(), PixelType::kF32);
  EXPECT_EQ(r->label(0), 4);
  const float want[6] = {3, 6, 2, 5, 1, 4};
  for (int k = 0; k < 6; ++k) EXPECT_FLOAT_EQ(r->image_f32(0)[k], want[k] / 10.f) << k;
}

TEST(DomainShift, InvertAfterRotation) {
  DomainShift s;
  s.noise_sigma = 0.f;
  auto r = apply_domain_shift(probe_2x3(), s);
  ASSERT_TRUE(r.is_ok());
  const float want[6] = {3, 6, 2, 5, 1, 4};
  for (int k = 0; k < 6; ++k) EXPECT_FLOAT_EQ(r->image_f32(0)[k], 1.f - want[k] / 10.f) << k;
}

TEST(DomainShift, Uint8SourceIsScaledTo01First) {
  auto r0 = Dataset::allocate(PixelType::kU8, 1, 1, 2, 1, 10);
  ASSERT_TRUE(r0.is_ok());
  Dataset d = std::move(r0).value();
  d.mutable_image_u8(0)[0] = 0;
  d.mutable_image_u8(0)[1] = 255;
  DomainShift s;
  s.noise_sigma = 0.f;
  auto r = apply_domain_shift(d, s);  // 1x2 [0 1] -> rot -> 2x1 [1; 0] -> invert [0; 1]
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->image_f32(0)[0], 0.f);
  EXPECT_EQ(r->image_f32(0)[1], 1.f);
}

TEST(DomainShift, NoiseIsSeededGaussianAndClipped) {
  // A mid-gray 28x28 set: after inversion still 0.5; sigma 0.1 rarely clips.
  auto r0 = Dataset::allocate(PixelType::kF32, 50, 28, 28, 1, 10);
  ASSERT_TRUE(r0.is_ok());
  Dataset d = std::move(r0).value();
  for (int64_t i = 0; i < d.size(); ++i)
    for (int k = 0; k < 784; ++k) d.mutable_image_f32(i)[k] = 0.5f;
  DomainShift s;
  s.noise_sigma = 0.1f;
  s.seed = 1234;
  auto a = apply_domain_shift(d, s);
  auto b = apply_domain_shift(d, s);
  s.seed = 5678;
  auto c = apply_domain_shift(d, s);
  ASSERT_TRUE(a.is_ok() && b.is_ok() && c.is_ok());
  double sum = 0, sq = 0;
  const int64_t n = 50 * 784;
  bool same_ab = true, same_ac = true;
  for (int64_t i = 0; i < 50; ++i)
    for (int k = 0; k < 784; ++k) {
      const float v = a->image_f32(i)[k];
      sum += v - 0.5;
      sq += (v - 0.5) * (v - 0.5);
      same_ab &= v == b->image_f32(i)[k];
      same_ac &= v == c->image_f32(i)[k];
    }
  EXPECT_TRUE(same_ab) << "same seed must give the same noise";
  EXPECT_FALSE(same_ac) << "another seed must give other noise";
  EXPECT_NEAR(sum / n, 0.0, 0.003);
  EXPECT_NEAR(std::sqrt(sq / n), 0.1, 0.003);

  s.noise_sigma = 2.f;  // large noise: everything clipped into [0,1], both ends reached
  auto big = apply_domain_shift(d, s);
  ASSERT_TRUE(big.is_ok());
  int zeros = 0, ones = 0;
  for (int k = 0; k < 784; ++k) {
    const float v = big->image_f32(0)[k];
    ASSERT_GE(v, 0.f);
    ASSERT_LE(v, 1.f);
    zeros += v == 0.f;
    ones += v == 1.f;
  }
  EXPECT_GT(zeros, 100);
  EXPECT_GT(ones, 100);
}

TEST(DomainShift, NegativeSigmaIsInvalidArgument) {
  DomainShift s;
  s.noise_sigma = -1.f;
  auto r = apply_domain_shift(probe_2x3(), s);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgetrain
