// Image folders: PNG/JPEG/BMP files written here with stb_image_write, the class layout, the
// conversions to RGB, the resize + center crop numbers, and every error path.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/image_folder.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#pragma GCC diagnostic pop

namespace edgetrain {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// A w x h image with c channels, every pixel `value` (c entries).
Bytes solid(int w, int h, std::vector<uint8_t> value) {
  Bytes b;
  for (int i = 0; i < w * h; ++i) b.insert(b.end(), value.begin(), value.end());
  return b;
}

class ImageFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("edgetrain_imgf_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string path(const std::string& rel) {
    const fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    return p.string();
  }
  std::string png(const std::string& rel, int w, int h, int c, const Bytes& px) {
    const std::string p = path(rel);
    EXPECT_NE(stbi_write_png(p.c_str(), w, h, c, px.data(), w * c), 0);
    return p;
  }
  std::string jpg(const std::string& rel, int w, int h, int c, const Bytes& px) {
    const std::string p = path(rel);
    EXPECT_NE(stbi_write_jpg(p.c_str(), w, h, c, px.data(), 95), 0);
    return p;
  }
  std::string bmp(const std::string& rel, int w, int h, int c, const Bytes& px) {
    const std::string p = path(rel);
    EXPECT_NE(stbi_write_bmp(p.c_str(), w, h, c, px.data()), 0);
    return p;
  }
  std::string raw(const std::string& rel, const Bytes& b) {
    const std::string p = path(rel);
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                              static_cast<std::streamsize>(b.size()));
    return p;
  }
  static Bytes read(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(f), {});
  }

  ImageFolderOptions small(int crop = 4, int shorter = 4) {
    ImageFolderOptions o;
    o.crop_size = crop;
    o.resize_shorter_side = shorter;
    return o;
  }

  fs::path root_;
};

void expect_pixel(const Dataset& d, int64_t i, int y, int x, int r, int g, int b, int tol = 0) {
  const uint8_t* p = d.image_u8(i) + (y * d.width() + x) * 3;
  EXPECT_NEAR(p[0], r, tol) << "image " << i << " (" << y << "," << x << ")";
  EXPECT_NEAR(p[1], g, tol) << "image " << i << " (" << y << "," << x << ")";
  EXPECT_NEAR(p[2], b, tol) << "image " << i << " (" << y << "," << x << ")";
}

TEST_F(ImageFolderTest, SortedClassesLabelsAndRgbConversions) {
  png("dog/c.png", 8, 6, 4, solid(8, 6, {10, 200, 30, 128}));  // RGBA: alpha dropped
  png("cat/b.png", 5, 5, 1, solid(5, 5, {77}));                 // gray: replicated
  jpg("cat/a.jpg", 16, 16, 3, solid(16, 16, {40, 120, 220}));   // lossy: near
  bmp("bird/nested/d.bmp", 6, 9, 3, solid(6, 9, {1, 2, 3}));    // sub-folders are walked
  raw("dog/notes.txt", {'h', 'i'});                              // not an image: ignored
  png(".hidden/e.png", 4, 4, 1, solid(4, 4, {0}));               // hidden folder: not a class
  ImageFolderReport report;
  auto r = load_image_folder(root_.string(), small(), &report);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Dataset& d = *r;
  ASSERT_EQ(d.size(), 4);
  EXPECT_EQ(d.num_classes(), 3);
  EXPECT_EQ(d.class_names(), (std::vector<std::string>{"bird", "cat", "dog"}));
  EXPECT_EQ(d.height(), 4);
  EXPECT_EQ(d.width(), 4);
  EXPECT_EQ(d.channels(), 3);
  EXPECT_EQ(d.pixel_type(), PixelType::kU8);
  EXPECT_EQ(report.skipped, 0);
  // Order: classes sorted, files sorted within a class.
  EXPECT_EQ(d.label(0), 0);
  EXPECT_EQ(d.label(1), 1);
  EXPECT_EQ(d.label(2), 1);
  EXPECT_EQ(d.label(3), 2);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) {
      expect_pixel(d, 0, y, x, 1, 2, 3);           // a solid image stays exact through resize
      expect_pixel(d, 1, y, x, 40, 120, 220, 3);   // cat/a.jpg
      expect_pixel(d, 2, y, x, 77, 77, 77);        // cat/b.png
      expect_pixel(d, 3, y, x, 10, 200, 30);       // dog/c.png
    }
  }
}

TEST_F(ImageFolderTest, MaxPerClassTakesTheFirstSortedFiles) {
  for (int k = 0; k < 5; ++k)
    png("a/" + std::to_string(k) + ".png", 4, 4, 1, solid(4, 4, {static_cast<uint8_t>(10 * k)}));
  ImageFolderOptions o = small();
  o.max_per_class = 2;
  auto r = load_image_folder(root_.string(), o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 2);
  expect_pixel(*r, 1, 0, 0, 10, 10, 10);
}

TEST(ResizeCenterCrop, SameSizeIsTheIdentity) {
  Bytes src(5 * 5 * 3);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7);
  Bytes dst(src.size());
  std::vector<float> scratch;
  resize_center_crop(src.data(), 5, 5, 3, 5, 5, dst.data(), &scratch);
  EXPECT_EQ(dst, src);
}

TEST(ResizeCenterCrop, CropOffsetsRoundHalfToEvenLikeTorchvision) {
  // 1 x 7 gray rows: the shorter side (height 4) stays, width 7 is cropped to 4 with offset
  // round(3 / 2) = 2 (Python rounds 1.5 to 2); width 6 gives offset 1.
  Bytes src7, src6;
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 7; ++x) src7.push_back(static_cast<uint8_t>(10 * x + y));
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 6; ++x) src6.push_back(static_cast<uint8_t>(10 * x + y));
  Bytes dst(16);
  std::vector<float> scratch;
  resize_center_crop(src7.data(), 4, 7, 1, 4, 4, dst.data(), &scratch);
  EXPECT_EQ(dst[0], 20);
  EXPECT_EQ(dst[3], 50);
  EXPECT_EQ(dst[3 * 4 + 3], 53);
  resize_center_crop(src6.data(), 4, 6, 1, 4, 4, dst.data(), &scratch);
  EXPECT_EQ(dst[0], 10);
  EXPECT_EQ(dst[3], 40);
}

TEST(ResizeCenterCrop, UpscaleIsBilinearWithHalfPixelCenters) {
  // [0 100] per row, 2x2 -> 4x4: samples at input x = -0.25 (edge), 0.25, 0.75, 1.25 (edge).
  const Bytes src = {0, 100, 0, 100};
  Bytes dst(16);
  std::vector<float> scratch;
  resize_center_crop(src.data(), 2, 2, 1, 4, 4, dst.data(), &scratch);
  for (int y = 0; y < 4; ++y) {
    EXPECT_EQ(dst[y * 4 + 0], 0);
    EXPECT_EQ(dst[y * 4 + 1], 25);
    EXPECT_EQ(dst[y * 4 + 2], 75);
    EXPECT_EQ(dst[y * 4 + 3], 100);
  }
}

TEST(ResizeCenterCrop, DownscaleWidensTheTriangleFilter) {
  // [0 40 80 120] -> 2 samples; the filter spans 2 input pixels each side (PIL's antialias):
  // (0*.75 + 40*.75 + 80*.25) / 1.75 = 28.57 and (40*.25 + 80*.75 + 120*.75) / 1.75 = 91.43.
  const Bytes src = {0, 40, 80, 120, 0, 40, 80, 120, 0, 40, 80, 120, 0, 40, 80, 120};
  Bytes dst(4);
  std::vector<float> scratch;
  resize_center_crop(src.data(), 4, 4, 1, 2, 2, dst.data(), &scratch);
  EXPECT_EQ(dst[0], 29);
  EXPECT_EQ(dst[1], 91);
  EXPECT_EQ(dst[2], 29);
  EXPECT_EQ(dst[3], 91);
}

TEST(ResizeCenterCrop, ShorterSideSetsScaleAndLongerSideKeepsRatio) {
  // 10 x 20 (h x w), shorter 5 -> 5 x 10, crop 5 -> columns 2.5 -> offset 2 (half to even).
  // A horizontal ramp x*10 keeps being a ramp; the crop's first column is resized column 2,
  // whose triangle filter covers input columns 3..6 around center 5: value 45.
  Bytes src;
  for (int y = 0; y < 10; ++y)
    for (int x = 0; x < 20; ++x) src.push_back(static_cast<uint8_t>(x * 10));
  Bytes dst(25);
  std::vector<float> scratch;
  resize_center_crop(src.data(), 10, 20, 1, 5, 5, dst.data(), &scratch);
  for (int y = 0; y < 5; ++y) {
    EXPECT_EQ(dst[y * 5 + 0], 45);
    EXPECT_EQ(dst[y * 5 + 4], 125);
  }
}

TEST_F(ImageFolderTest, CorruptImageNamesFileAndStbReason) {
  png("a/good.png", 4, 4, 3, solid(4, 4, {1, 2, 3}));
  const auto bad = raw("a/bad.png", {'n', 'o', 't', ' ', 'a', ' ', 'p', 'n', 'g'});
  auto r = load_image_folder(root_.string(), small());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(r.status().message().find(bad + ": cannot decode image: "), std::string::npos)
      << r.status().message();
  // stb's reason follows the colon.
  EXPECT_GT(r.status().message().size(), (bad + ": cannot decode image: ").size() + 3);
}

TEST_F(ImageFolderTest, TruncatedPngIsAnError) {
  const auto p = png("a/img.png", 32, 32, 3, solid(32, 32, {9, 9, 9}));
  Bytes b = read(p);
  b.resize(b.size() / 2);
  raw("a/img.png", b);
  auto r = load_image_folder(root_.string(), small());
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find(p), std::string::npos) << r.status().message();
}

TEST_F(ImageFolderTest, SkipBadFilesCountsAndNamesThem) {
  png("a/1.png", 4, 4, 3, solid(4, 4, {1, 2, 3}));
  raw("a/2.png", {0, 1, 2});
  raw("b/3.jpg", {0xFF, 0xD8, 0xFF, 0});
  png("b/4.png", 4, 4, 3, solid(4, 4, {4, 5, 6}));
  ImageFolderOptions o = small();
  o.skip_bad_files = true;
  ImageFolderReport report;
  auto r = load_image_folder(root_.string(), o, &report);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->size(), 2);
  EXPECT_EQ(r->label(0), 0);
  EXPECT_EQ(r->label(1), 1);
  expect_pixel(*r, 1, 0, 0, 4, 5, 6);
  EXPECT_EQ(report.skipped, 2);
  ASSERT_EQ(report.skipped_files.size(), 2u);
  EXPECT_NE(report.skipped_files[0].find("2.png"), std::string::npos);
}

TEST_F(ImageFolderTest, AllFilesBadIsAnErrorEvenWhenSkipping) {
  raw("a/1.png", {0, 1, 2});
  ImageFolderOptions o = small();
  o.skip_bad_files = true;
  auto r = load_image_folder(root_.string(), o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("none of the 1 image files"), std::string::npos);
}

TEST_F(ImageFolderTest, LayoutErrorsNameTheFolder) {
  const std::string missing = (root_ / "missing").string();
  auto r1 = load_image_folder(missing, small());
  ASSERT_FALSE(r1.is_ok());
  EXPECT_EQ(r1.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r1.status().message().find(missing), std::string::npos);

  auto r2 = load_image_folder(root_.string(), small());  // empty root
  ASSERT_FALSE(r2.is_ok());
  EXPECT_NE(r2.status().message().find("no class sub-folders"), std::string::npos);

  raw("a/readme.txt", {'x'});  // a class folder without images
  auto r3 = load_image_folder(root_.string(), small());
  ASSERT_FALSE(r3.is_ok());
  EXPECT_NE(r3.status().message().find("no image files"), std::string::npos);

  const auto file = raw("plain_file", {'x'});
  auto r4 = load_image_folder(file, small());
  ASSERT_FALSE(r4.is_ok());
  EXPECT_NE(r4.status().message().find("not a directory"), std::string::npos);
}

TEST_F(ImageFolderTest, CropLargerThanResizeIsInvalidArgument) {
  png("a/1.png", 4, 4, 3, solid(4, 4, {1, 2, 3}));
  auto r = load_image_folder(root_.string(), small(8, 4));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("smaller than crop_size 8"), std::string::npos);
}

TEST(ImageExtensions, CaseInsensitiveKnownFormatsOnly) {
  EXPECT_TRUE(has_image_extension("a/b.JPG"));
  EXPECT_TRUE(has_image_extension("x.jpeg"));
  EXPECT_TRUE(has_image_extension("x.Png"));
  EXPECT_FALSE(has_image_extension("x.txt"));
  EXPECT_FALSE(has_image_extension("png"));
}

}  // namespace
}  // namespace edgetrain
