// IDX reader: synthetic gzipped and raw files written here with zlib, one corrupt or truncated
// file per error path, and the real Fashion-MNIST test set when the Debian package is installed.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/idx.h"

namespace edgetrain {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

void put_u32(Bytes* b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b->push_back(static_cast<uint8_t>(v >> s));
}

// An IDX images file of n images rows x cols; pixel (i, y, x) = (i * 31 + y * 7 + x) % 256.
Bytes images_idx(uint32_t n, uint32_t rows, uint32_t cols) {
  Bytes b;
  put_u32(&b, 0x00000803);
  put_u32(&b, n);
  put_u32(&b, rows);
  put_u32(&b, cols);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t y = 0; y < rows; ++y)
      for (uint32_t x = 0; x < cols; ++x) b.push_back(static_cast<uint8_t>((i * 31 + y * 7 + x) % 256));
  return b;
}

// An IDX labels file with labels[i] = i % 10.
Bytes labels_idx(uint32_t n) {
  Bytes b;
  put_u32(&b, 0x00000801);
  put_u32(&b, n);
  for (uint32_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(i % 10));
  return b;
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("edgetrain_idx_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write_gz(const std::string& name, const Bytes& b) {
    const std::string p = (dir_ / name).string();
    gzFile f = gzopen(p.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    if (!b.empty()) {
      EXPECT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
    }
    gzclose(f);
    return p;
  }
  std::string write_raw(const std::string& name, const Bytes& b) {
    const std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                              static_cast<std::streamsize>(b.size()));
    return p;
  }
  Bytes read_raw(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(f), {});
  }

  fs::path dir_;
};

void expect_error(const Result<Dataset>& r, StatusCode code, const std::vector<std::string>& parts) {
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), code) << r.status().to_string();
  for (const std::string& part : parts)
    EXPECT_NE(r.status().message().find(part), std::string::npos)
        << "message \"" << r.status().message() << "\" lacks \"" << part << "\"";
}

TEST_F(IdxTest, ReadsGzippedImagesAndLabelsExactly) {
  const auto img = write_gz("img.gz", images_idx(5, 3, 4));
  const auto lab = write_gz("lab.gz", labels_idx(5));
  auto r = load_idx(img, lab, 10);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Dataset& d = *r;
  EXPECT_EQ(d.size(), 5);
  EXPECT_EQ(d.height(), 3);
  EXPECT_EQ(d.width(), 4);
  EXPECT_EQ(d.channels(), 1);
  EXPECT_EQ(d.pixel_type(), PixelType::kU8);
  EXPECT_EQ(d.num_classes(), 10);
  EXPECT_EQ(d.bytes(), 5u * 12u + 5u * 4u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(d.label(i), i % 10);
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 4; ++x)
        ASSERT_EQ(d.image_u8(i)[y * 4 + x], (i * 31 + y * 7 + x) % 256) << i << " " << y << " " << x;
  }
}

TEST_F(IdxTest, ReadsUncompressedFilesToo) {
  const auto img = write_raw("img", images_idx(4, 2, 2));
  const auto lab = write_raw("lab", labels_idx(4));
  auto r = load_idx(img, lab, 10);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->size(), 4);
  EXPECT_EQ(r->image_u8(3)[3], (3 * 31 + 7 + 1) % 256);
  EXPECT_EQ(r->label(3), 3);
}

TEST_F(IdxTest, LimitReadsOnlyTheFirstImages) {
  const auto img = write_gz("img.gz", images_idx(20, 2, 3));
  const auto lab = write_gz("lab.gz", labels_idx(20));
  auto r = load_idx(img, lab, 10, 7);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->size(), 7);
  EXPECT_EQ(r->image_u8(6)[5], (6 * 31 + 7 + 2) % 256);
  auto all = load_idx(img, lab, 10, 1000);  // a limit above the count reads everything
  ASSERT_TRUE(all.is_ok());
  EXPECT_EQ(all->size(), 20);
}

TEST_F(IdxTest, FashionMnistLoaderUsesStandardNamesAndClassNames) {
  write_gz("train-images-idx3-ubyte.gz", images_idx(6, 28, 28));
  write_gz("train-labels-idx1-ubyte.gz", labels_idx(6));
  write_gz("t10k-images-idx3-ubyte.gz", images_idx(3, 28, 28));
  // An unpacked labels file (no .gz) is picked up when the .gz is absent.
  write_raw("t10k-labels-idx1-ubyte", labels_idx(3));
  auto train = load_fashion_mnist(dir_.string(), Split::kTrain);
  ASSERT_TRUE(train.is_ok()) << train.status().to_string();
  EXPECT_EQ(train->size(), 6);
  ASSERT_EQ(train->class_names().size(), 10u);
  EXPECT_EQ(train->class_names()[9], "Ankle boot");
  auto test = load_fashion_mnist(dir_.string() + "/", Split::kTest);
  ASSERT_TRUE(test.is_ok()) << test.status().to_string();
  EXPECT_EQ(test->size(), 3);
  EXPECT_EQ(test->height(), 28);
}

TEST_F(IdxTest, MissingFileIsNotFoundAndNamesIt) {
  const auto lab = write_gz("lab.gz", labels_idx(2));
  const std::string missing = (dir_ / "nope.gz").string();
  expect_error(load_idx(missing, lab, 10), StatusCode::kNotFound, {missing, "cannot open"});
  expect_error(load_fashion_mnist(dir_.string(), Split::kTest), StatusCode::kNotFound,
               {"t10k-images-idx3-ubyte.gz"});
}

TEST_F(IdxTest, BadMagicNamesFileAndNumbers) {
  Bytes b = images_idx(2, 2, 2);
  b[2] = 0x0D;  // float type, not unsigned bytes
  const auto img = write_gz("img.gz", b);
  const auto lab = write_gz("lab.gz", labels_idx(2));
  expect_error(load_idx(img, lab, 10), StatusCode::kCorruptData,
               {img, "bad magic number 0x00000d03, expected 0x00000803"});
}

TEST_F(IdxTest, SwappedImagesAndLabelsFilesAreRejected) {
  const auto img = write_gz("img.gz", images_idx(2, 2, 2));
  const auto lab = write_gz("lab.gz", labels_idx(2));
  expect_error(load_idx(lab, img, 10), StatusCode::kCorruptData,
               {lab, "expected 0x00000803", "this file has 1 dimensions"});
}

TEST_F(IdxTest, ImageAndLabelCountMismatchNamesBothFiles) {
  const auto img = write_gz("img.gz", images_idx(5, 2, 2));
  const auto lab = write_gz("lab.gz", labels_idx(4));
  expect_error(load_idx(img, lab, 10), StatusCode::kCorruptData,
               {img, lab, "holds 5 images", "holds 4 labels"});
}

TEST_F(IdxTest, TruncatedPixelsSayHowManyBytesArrived) {
  Bytes b = images_idx(5, 3, 4);  // 60 bytes of pixels after a 16-byte header
  b.resize(16 + 10);
  const auto img = write_gz("img.gz", b);
  const auto lab = write_gz("lab.gz", labels_idx(5));
  expect_error(load_idx(img, lab, 10), StatusCode::kCorruptData,
               {img, "truncated: expected 60 bytes of pixels, got 10"});
}

TEST_F(IdxTest, TruncatedHeaderAndEmptyFileAreErrors) {
  Bytes b = images_idx(1, 2, 2);
  b.resize(9);
  const auto img = write_gz("img.gz", b);
  const auto lab = write_gz("lab.gz", labels_idx(1));
  expect_error(load_idx(img, lab, 10), StatusCode::kCorruptData,
               {img, "truncated: expected 12 bytes of header, got 5"});
  const auto empty = write_raw("empty", {});
  expect_error(load_idx(empty, lab, 10), StatusCode::kCorruptData,
               {empty, "expected 4 bytes of header, got 0"});
}

TEST_F(IdxTest, TruncatedLabelsAreAnError) {
  Bytes l = labels_idx(5);
  l.resize(8 + 3);
  const auto img = write_gz("img.gz", images_idx(5, 2, 2));
  const auto lab = write_gz("lab.gz", l);
  expect_error(load_idx(img, lab, 10), StatusCode::kCorruptData,
               {lab, "expected 5 bytes of labels, got 3"});
}

TEST_F(IdxTest, LabelOutOfRangeNamesLabelAndImage) {
  Bytes l = labels_idx(5);
  l[8 + 3] = 12;
  const auto img = write_gz("img.gz", images_idx(5, 2, 2));
  const auto lab = write_gz("lab.gz", l);
  expect_error(load_idx(img, lab, 10), StatusCode::kCorruptData,
               {lab, "label 12 of image 3 is outside 0..9"});
}

TEST_F(IdxTest, ZeroSizedImagesInHeaderAreRejected) {
  Bytes b;
  put_u32(&b, 0x00000803);
  put_u32(&b, 1);
  put_u32(&b, 0);
  put_u32(&b, 28);
  const auto img = write_gz("img.gz", b);
  const auto lab = write_gz("lab.gz", labels_idx(1));
  expect_error(load_idx(img, lab, 10), StatusCode::kCorruptData, {img, "bad image size 0x28"});
}

TEST_F(IdxTest, CutGzipStreamIsReportedAsTruncated) {
  const auto full = write_gz("full.gz", images_idx(50, 28, 28));
  Bytes z = read_raw(full);
  z.resize(z.size() / 2);
  const auto img = write_raw("cut.gz", z);
  const auto lab = write_gz("lab.gz", labels_idx(50));
  expect_error(load_idx(img, lab, 10), StatusCode::kCorruptData,
               {img, "truncated: expected 39200 bytes of pixels", "(unexpected end of file)"});
}

TEST_F(IdxTest, CorruptDeflateDataIsAnErrorNotACrash) {
  const auto full = write_gz("full.gz", images_idx(50, 28, 28));
  Bytes z = read_raw(full);
  for (size_t i = 12; i < z.size() - 8; i += 3) z[i] ^= 0x5A;  // keep the 10-byte gzip header
  const auto img = write_raw("bad.gz", z);
  const auto lab = write_gz("lab.gz", labels_idx(50));
  auto r = load_idx(img, lab, 10);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruptData) << r.status().to_string();
  EXPECT_NE(r.status().message().find(img), std::string::npos) << r.status().message();
}

TEST_F(IdxTest, DirectoryInsteadOfFileIsAnError) {
  const auto lab = write_gz("lab.gz", labels_idx(1));
  auto r = load_idx(dir_.string(), lab, 10);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find(dir_.string()), std::string::npos) << r.status().message();
}

TEST_F(IdxTest, BadNumClassesIsInvalidArgument) {
  const auto img = write_gz("img.gz", images_idx(1, 2, 2));
  const auto lab = write_gz("lab.gz", labels_idx(1));
  expect_error(load_idx(img, lab, 0), StatusCode::kInvalidArgument, {"num_classes"});
}

// The Debian package dataset-fashion-mnist; skipped where it is not installed.
TEST(FashionMnistReal, TestSetHas10000BalancedImagesWithKnownMean) {
  const std::string dir = kDefaultFashionMnistDir;
  if (!fs::exists(dir + "t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << dir << " not installed";
  auto r = load_fashion_mnist(dir, Split::kTest);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Dataset& d = *r;
  ASSERT_EQ(d.size(), 10000);
  EXPECT_EQ(d.height(), 28);
  EXPECT_EQ(d.width(), 28);
  EXPECT_EQ(d.bytes(), 10000u * 784u + 10000u * 4u);
  int per_class[10] = {};
  double sum = 0;
  for (int64_t i = 0; i < d.size(); ++i) {
    ASSERT_GE(d.label(i), 0);
    ASSERT_LT(d.label(i), 10);
    ++per_class[d.label(i)];
    for (int k = 0; k < 784; ++k) sum += d.image_u8(i)[k];
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[c], 1000) << "class " << c;
  const double mean = sum / 255.0 / (10000.0 * 784.0);
  EXPECT_NEAR(mean, 0.286, 0.003);
}

}  // namespace
}  // namespace edgetrain
