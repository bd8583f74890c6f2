// Batch-norm recalibration (runtime/norm_recalibration.h): the running statistics it leaves are
// the exact mean and unbiased variance over every image, whatever the passes' size; the pass's
// arena respects its limit; a source with no images leaves the model alone.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "models/model_zoo.h"
#include "runtime/norm_recalibration.h"
#include "runtime/parameter_store.h"

namespace edgetrain {
namespace {

GraphFactory small_cnn() {
  return [](int64_t b, bool training) {
    ModelSpec s;
    s.arch = Architecture::kSmallCnn;
    s.input_size = 16;
    return build_model(s, b, training);
  };
}

struct Model {
  std::vector<ParamSpec> specs;
  int64_t image_floats = 0;
};

Model model() {
  Result<Graph> g = small_cnn()(1, true);
  EXPECT_TRUE(g.is_ok());
  return {g->params, g->value(g->input).shape.numel()};
}

int find(const std::vector<ParamSpec>& specs, const std::string& name) {
  for (size_t i = 0; i < specs.size(); ++i)
    if (specs[i].name == name) return static_cast<int>(i);
  ADD_FAILURE() << "no parameter " << name;
  return 0;
}

// `images` images of a shifted, scaled distribution (running statistics at their defaults, 0 and
// 1, would be far off), recalibrated in passes of `batch`.
ParameterStore recalibrated(int64_t images, int64_t batch, RecalibrationReport* report, bool tell_count = false) {
  Model m = model();
  Result<ParameterStore> ps = ParameterStore::create(m.specs);
  EXPECT_TRUE(ps.is_ok());
  ParameterStore params = std::move(*ps);
  params.initialize(3);
  Rng rng(11);
  std::vector<float> data(static_cast<size_t>(images * m.image_floats));
  for (float& x : data) x = static_cast<float>(3.0 + 2.0 * rng.normal());
  int64_t at = 0;
  RecalibrationOptions o;
  o.batch = batch;
  o.threads = 1;
  if (tell_count) o.images = images;
  Result<RecalibrationReport> r = recalibrate_batch_norms(small_cnn(), params, o, [&](float* out, int64_t n) {
    if (at + n > images) return false;
    std::copy(data.begin() + at * m.image_floats, data.begin() + (at + n) * m.image_floats, out);
    at += n;
    return true;
  });
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (r.is_ok()) *report = *r;
  return params;
}

TEST(NormRecalibration, ExactOverAllImagesWhateverThePassSize) {
  RecalibrationReport one, many;
  ParameterStore a = recalibrated(32, 32, &one);  // one pass: the kernel's own statistics of all 32 images
  ParameterStore b = recalibrated(32, 4, &many);  // eight passes combined
  EXPECT_EQ(one.images, 32);
  EXPECT_EQ(many.images, 32);
  EXPECT_EQ(many.batch, 4);
  EXPECT_EQ(many.norms, 3);
  // bn1 normalises the first convolution's output, which no other norm changes: the combined
  // passes must give the same mean and unbiased variance as one pass over everything.
  Model m = model();
  for (const char* name : {"bn1.running_mean", "bn1.running_var"}) {
    int i = find(m.specs, name);
    int64_t n = m.specs[static_cast<size_t>(i)].shape.numel();
    double moved = 0;
    for (int64_t c = 0; c < n; ++c) {
      EXPECT_NEAR(b.data(i)[c], a.data(i)[c], 2e-5 * std::max(1.0f, std::fabs(a.data(i)[c]))) << name << " channel " << c;
      moved += std::fabs(a.data(i)[c] - (std::string(name).find("var") != std::string::npos ? 1.0 : 0.0));
    }
    EXPECT_GT(moved, 0.1 * n) << name << " kept its initial values";
  }
  // Later norms see inputs normalised with each pass's own statistics: close, not equal.
  int var3 = find(m.specs, "bn3.running_var");
  for (int64_t c = 0; c < m.specs[static_cast<size_t>(var3)].shape.numel(); ++c)
    EXPECT_NEAR(b.data(var3)[c], a.data(var3)[c], 0.25 * a.data(var3)[c]) << "bn3 channel " << c;
}

// bn1's statistics over every image equal one pass over all of them (see above).
void expect_bn1_equal(const ParameterStore& a, const ParameterStore& b) {
  Model m = model();
  for (const char* name : {"bn1.running_mean", "bn1.running_var"}) {
    int i = find(m.specs, name);
    for (int64_t c = 0; c < m.specs[static_cast<size_t>(i)].shape.numel(); ++c)
      EXPECT_NEAR(b.data(i)[c], a.data(i)[c], 2e-5 * std::max(1.0f, std::fabs(a.data(i)[c]))) << name << " channel " << c;
  }
}

TEST(NormRecalibration, ImagesAfterTheLastFullPassTakeAShorterPass) {
  RecalibrationReport all, split, unknown;
  ParameterStore a = recalibrated(38, 38, &all);
  ParameterStore b = recalibrated(38, 8, &split, /*tell_count=*/true);  // 4 passes of 8, then one of 6
  EXPECT_EQ(split.images, 38);
  EXPECT_EQ(split.tail, 6);
  expect_bn1_equal(a, b);
  // Without the count only full passes run (the 6 images after them are left out).
  recalibrated(38, 8, &unknown);
  EXPECT_EQ(unknown.images, 32);
  EXPECT_EQ(unknown.tail, 0);
  // Fewer images than one pass: the one shorter pass is all of them.
  RecalibrationReport few;
  ParameterStore c = recalibrated(6, 8, &few, true);
  EXPECT_EQ(few.images, 6);
  EXPECT_EQ(few.tail, 6);
  ParameterStore d = recalibrated(6, 6, &few);
  expect_bn1_equal(d, c);
  // A single image left over has no variance where the maps are 1x1: left out.
  RecalibrationReport one_left;
  recalibrated(33, 8, &one_left, true);
  EXPECT_EQ(one_left.images, 32);
  EXPECT_EQ(one_left.tail, 0);
}

TEST(NormRecalibration, PassesShrinkToTheArenaLimit) {
  RecalibrationOptions o;
  o.batch = 32;
  size_t block32 = 0, block4 = 0;
  Result<int64_t> b = recalibration_batch(small_cnn(), o, &block32);
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(*b, 32);
  o.batch = 4;
  ASSERT_TRUE(recalibration_batch(small_cnn(), o, &block4).is_ok());
  EXPECT_LT(block4, block32);
  o.batch = 32;
  o.max_arena_bytes = block4;
  b = recalibration_batch(small_cnn(), o, nullptr);
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(*b, 4);
  o.max_arena_bytes = 64;  // not even two images fit
  b = recalibration_batch(small_cnn(), o, nullptr);
  EXPECT_FALSE(b.is_ok());
  EXPECT_EQ(b.status().code(), StatusCode::kOutOfMemory);
}

TEST(NormRecalibration, NoImagesLeavesTheModelAlone) {
  Model m = model();
  Result<ParameterStore> ps = ParameterStore::create(m.specs);
  ASSERT_TRUE(ps.is_ok());
  ps->initialize(3);
  std::vector<float> before(ps->data(0), ps->data(0) + ps->total_floats());
  RecalibrationOptions o;
  o.batch = 8;
  Result<RecalibrationReport> r = recalibrate_batch_norms(small_cnn(), *ps, o, [](float*, int64_t) { return false; });
  EXPECT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("no batch"), std::string::npos) << r.status().message();
  EXPECT_TRUE(std::equal(before.begin(), before.end(), ps->data(0)));
}

}  // namespace
}  // namespace edgetrain
