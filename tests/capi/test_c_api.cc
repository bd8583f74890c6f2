// The C API (include/edgetrain/edgetrain.h) as a C program sees it: every function's error
// paths return the documented status with a message naming the problem, training through the
// API learns, weights round-trip bit for bit, the structs evolve by struct_size, and errors are
// per thread.
#include "edgetrain/edgetrain.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/status.h"

namespace {

using TrainerPtr = std::unique_ptr<et_trainer, decltype(&et_trainer_destroy)>;
using DatasetPtr = std::unique_ptr<et_dataset, decltype(&et_dataset_destroy)>;

constexpr int kClasses = 4;
constexpr int kSize = 8;
constexpr int kChannels = 3;
constexpr int kBatch = 8;
constexpr int kImageFloats = kSize * kSize * kChannels;

// small_cnn at 8x8: a few thousand parameters, milliseconds per step.
et_trainer_config small_config() {
  et_trainer_config c;
  et_trainer_config_init(&c);
  c.model = "small_cnn";
  c.classes = kClasses;
  c.input_size = kSize;
  c.channels = kChannels;
  c.batch = kBatch;
  c.threads = 1;
  return c;
}

TrainerPtr make_trainer(const et_trainer_config& c) {
  et_trainer* t = nullptr;
  et_status s = et_trainer_create(&c, &t);
  EXPECT_EQ(s, ET_OK) << et_last_error();
  return TrainerPtr(t, &et_trainer_destroy);
}

// A separable task: class k lights up quadrant k of every channel; noise on top.
struct Batch {
  std::vector<float> images;
  std::vector<int32_t> labels;
};

Batch make_batch(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> noise(-0.3f, 0.3f);
  Batch b;
  b.images.resize(static_cast<size_t>(count) * kImageFloats);
  b.labels.resize(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    const int k = static_cast<int>(rng() % kClasses);
    b.labels[static_cast<size_t>(i)] = k;
    for (int y = 0; y < kSize; ++y)
      for (int x = 0; x < kSize; ++x) {
        const int quadrant = (y >= kSize / 2 ? 2 : 0) + (x >= kSize / 2 ? 1 : 0);
        for (int c = 0; c < kChannels; ++c)
          b.images[static_cast<size_t>(((i * kSize + y) * kSize + x) * kChannels + c)] =
              (quadrant == k ? 1.0f : -1.0f) + noise(rng);
      }
  }
  return b;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Expects `status` == want and a last-error message that starts with the function's name and
// contains `needle`.
void expect_error(et_status status, et_status want, const std::string& function, const std::string& needle) {
  const std::string msg = et_last_error();
  EXPECT_EQ(status, want) << msg;
  EXPECT_EQ(msg.rfind(function + ": ", 0), 0u) << msg;
  EXPECT_TRUE(contains(msg, needle)) << "message '" << msg << "' does not mention '" << needle << "'";
}

std::string temp_path(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/edgetrain_capi_" + std::to_string(getpid()) + "_" + name;
}

std::vector<float> logits_of(et_trainer* t, const Batch& b, int count) {
  std::vector<float> logits(static_cast<size_t>(count) * kClasses);
  EXPECT_EQ(et_trainer_predict_logits(t, b.images.data(), count, logits.data()), ET_OK) << et_last_error();
  return logits;
}

// ---- library information ----------------------------------------------------------------------

TEST(CApiInfo, StatusValuesMirrorStatusCodeAndHaveNames) {
  using edgetrain::StatusCode;
  EXPECT_EQ(ET_OK, static_cast<int>(StatusCode::kOk));
  EXPECT_EQ(ET_INVALID_ARGUMENT, static_cast<int>(StatusCode::kInvalidArgument));
  EXPECT_EQ(ET_NOT_FOUND, static_cast<int>(StatusCode::kNotFound));
  EXPECT_EQ(ET_CORRUPT_DATA, static_cast<int>(StatusCode::kCorruptData));
  EXPECT_EQ(ET_OUT_OF_MEMORY, static_cast<int>(StatusCode::kOutOfMemory));
  EXPECT_EQ(ET_IO_ERROR, static_cast<int>(StatusCode::kIoError));
  EXPECT_EQ(ET_UNSUPPORTED, static_cast<int>(StatusCode::kUnsupported));
  EXPECT_EQ(ET_INTERNAL, static_cast<int>(StatusCode::kInternal));
  EXPECT_STREQ(et_status_name(ET_OK), "ok");
  EXPECT_STREQ(et_status_name(ET_NOT_FOUND), "not found");
  EXPECT_STREQ(et_status_name(ET_OUT_OF_MEMORY), "out of memory");
  EXPECT_STREQ(et_status_name(static_cast<et_status>(99)), "unknown status");
  EXPECT_STREQ(et_status_name(static_cast<et_status>(-1)), "unknown status");
}

TEST(CApiInfo, VersionAndBlasTextAreNeverNull) {
  ASSERT_NE(et_version(), nullptr);
  EXPECT_STREQ(et_version(), "0.1.0");
  ASSERT_NE(et_blas_summary(), nullptr);
  EXPECT_TRUE(contains(et_blas_summary(), "OpenBLAS core")) << et_blas_summary();
  ASSERT_NE(et_blas_warning(), nullptr);
  // The test environment sets OPENBLAS_CORETYPE (tests/meson.build), so nothing to warn about.
  if (std::getenv("OPENBLAS_CORETYPE")) {
    EXPECT_STREQ(et_blas_warning(), "");
  }
}

// ---- configuration and creation ------------------------------------------------------------

TEST(CApiConfig, InitFillsTheDocumentedDefaults) {
  et_trainer_config c;
  std::memset(&c, 0xAB, sizeof c);
  et_trainer_config_init(&c);
  EXPECT_EQ(c.struct_size, sizeof c);
  EXPECT_STREQ(c.model, "small_cnn");
  EXPECT_EQ(c.width, 1.0f);
  EXPECT_EQ(c.classes, 10);
  EXPECT_EQ(c.input_size, 32);
  EXPECT_EQ(c.channels, 3);
  EXPECT_EQ(c.batch, 32);
  EXPECT_EQ(c.eval_batch, 0);
  EXPECT_EQ(c.threads, 2);
  EXPECT_STREQ(c.optimizer, "sgd");
  EXPECT_FLOAT_EQ(c.momentum, 0.9f);
  EXPECT_EQ(c.nesterov, 0);
  EXPECT_EQ(c.weight_decay, 0.0f);
  EXPECT_STREQ(c.freeze, "none");
  EXPECT_EQ(c.freeze_layers, 0);
  EXPECT_EQ(c.freeze_patterns, nullptr);
  EXPECT_EQ(c.seed, 1u);
  et_trainer_config_init(nullptr);  // ignored, no crash
}

TEST(CApiCreate, NullArgumentsAreNamed) {
  et_trainer_config c = small_config();
  et_trainer* t = reinterpret_cast<et_trainer*>(&c);
  expect_error(et_trainer_create(nullptr, &t), ET_INVALID_ARGUMENT, "et_trainer_create", "config is NULL");
  EXPECT_EQ(t, nullptr);
  expect_error(et_trainer_create(&c, nullptr), ET_INVALID_ARGUMENT, "et_trainer_create", "out is NULL");
  c.model = nullptr;
  t = reinterpret_cast<et_trainer*>(&c);
  expect_error(et_trainer_create(&c, &t), ET_INVALID_ARGUMENT, "et_trainer_create", "config.model is NULL");
  EXPECT_EQ(t, nullptr);
}

TEST(CApiCreate, UnknownModelFailsListingTheValidNames) {
  et_trainer_config c = small_config();
  c.model = "lenet";
  et_trainer* t = reinterpret_cast<et_trainer*>(&c);
  expect_error(et_trainer_create(&c, &t), ET_INVALID_ARGUMENT, "et_trainer_create", "unknown model 'lenet'");
  EXPECT_TRUE(contains(et_last_error(), "mobilenet_v2")) << et_last_error();
  EXPECT_EQ(t, nullptr);
}

TEST(CApiCreate, EachBadFieldIsRejectedByName) {
  struct Case {
    const char* what;
    std::function<void(et_trainer_config&)> change;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {"batch 0", [](et_trainer_config& c) { c.batch = 0; }, "batch must be at least 1"},
      {"negative eval batch", [](et_trainer_config& c) { c.eval_batch = -1; }, "eval_batch"},
      {"threads 0", [](et_trainer_config& c) { c.threads = 0; }, "threads must be in [1, 256]"},
      {"threads 1000", [](et_trainer_config& c) { c.threads = 1000; }, "threads must be in [1, 256]"},
      {"optimizer", [](et_trainer_config& c) { c.optimizer = "adam"; }, "unknown optimizer 'adam'"},
      {"momentum 1", [](et_trainer_config& c) { c.momentum = 1.0f; }, "momentum must be in [0, 1)"},
      {"momentum NaN", [](et_trainer_config& c) { c.momentum = NAN; }, "momentum"},
      {"nesterov without momentum", [](et_trainer_config& c) { c.nesterov = 1, c.momentum = 0; }, "nesterov"},
      {"weight decay", [](et_trainer_config& c) { c.weight_decay = -0.1f; }, "weight_decay"},
      {"freeze mode", [](et_trainer_config& c) { c.freeze = "most"; }, "unknown freeze mode 'most'"},
      {"freeze layers negative", [](et_trainer_config& c) { c.freeze_layers = -1; }, "freeze_layers"},
      {"freeze every layer", [](et_trainer_config& c) { c.freeze_layers = 100; }, "cannot freeze 100 layers"},
      {"freeze pattern", [](et_trainer_config& c) { c.freeze_patterns = "nosuch*"; }, "'nosuch*' matches no parameter"},
      {"width on small_cnn", [](et_trainer_config& c) { c.width = 0.5f; }, "width 0.5 applies only to mobilenet_v2"},
      {"mobilenet width", [](et_trainer_config& c) { c.model = "mobilenet_v2", c.width = 5.0f; }, "width_mult 5"},
      {"classes 0", [](et_trainer_config& c) { c.classes = 0; }, "num_classes 0"},
      {"channels 0", [](et_trainer_config& c) { c.channels = 0; }, "in_channels 0"},
      {"input too small", [](et_trainer_config& c) { c.input_size = 2; }, "small_cnn"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    et_trainer_config c = small_config();
    k.change(c);
    et_trainer* t = reinterpret_cast<et_trainer*>(&c);
    expect_error(et_trainer_create(&c, &t), ET_INVALID_ARGUMENT, "et_trainer_create", k.needle);
    EXPECT_EQ(t, nullptr);
  }
}

TEST(CApiCreate, StructSizeGuardsTheAbi) {
  // Too small: the caller did not call et_trainer_config_init.
  et_trainer_config c = small_config();
  c.struct_size = 0;
  et_trainer* t = nullptr;
  expect_error(et_trainer_create(&c, &t), ET_INVALID_ARGUMENT, "et_trainer_create", "struct_size is 0");

  // Larger, as from a newer header: fine while the unknown tail is zero, refused otherwise.
  struct Newer {
    et_trainer_config base;
    uint64_t future_field;
  } newer{};
  newer.base = small_config();
  newer.base.struct_size = sizeof newer;
  newer.future_field = 0;
  ASSERT_EQ(et_trainer_create(&newer.base, &t), ET_OK) << et_last_error();
  et_trainer_destroy(t);
  newer.future_field = 7;
  t = reinterpret_cast<et_trainer*>(&c);
  expect_error(et_trainer_create(&newer.base, &t), ET_UNSUPPORTED, "et_trainer_create", "newer header");
  EXPECT_EQ(t, nullptr);
}

TEST(CApiCreate, AnArenaLargerThanTheAddressSpaceIsOutOfMemory) {
  // small_cnn at 4096x4096 with 100000 images per step: hundreds of terabytes of activations.
  et_trainer_config c = small_config();
  c.input_size = 4096;
  c.batch = 100000;
  c.eval_batch = 1;
  et_trainer* t = reinterpret_cast<et_trainer*>(&c);
  expect_error(et_trainer_create(&c, &t), ET_OUT_OF_MEMORY, "et_trainer_create", "arena");
  EXPECT_EQ(t, nullptr);
}

TEST(CApiCreate, DestroyAcceptsNull) {
  et_trainer_destroy(nullptr);
  et_dataset_destroy(nullptr);
}

// ---- last error ---------------------------------------------------------------------------------

TEST(CApiErrors, SuccessClearsTheLastError) {
  et_trainer_config c = small_config();
  c.batch = 0;
  et_trainer* t = nullptr;
  ASSERT_EQ(et_trainer_create(&c, &t), ET_INVALID_ARGUMENT);
  EXPECT_STRNE(et_last_error(), "");
  TrainerPtr ok = make_trainer(small_config());
  EXPECT_STREQ(et_last_error(), "");
}

TEST(CApiErrors, TheLastErrorIsPerThread) {
  et_trainer_config c = small_config();
  c.model = "main-thread-model";
  et_trainer* t = nullptr;
  ASSERT_EQ(et_trainer_create(&c, &t), ET_INVALID_ARGUMENT);
  std::string before_thread = et_last_error();
  std::string seen_in_thread, thread_error;
  std::thread other([&] {
    seen_in_thread = et_last_error();
    et_trainer_config d = small_config();
    d.model = "other-thread-model";
    et_trainer* u = nullptr;
    (void)et_trainer_create(&d, &u);
    thread_error = et_last_error();
  });
  other.join();
  EXPECT_EQ(seen_in_thread, "");
  EXPECT_TRUE(contains(thread_error, "other-thread-model")) << thread_error;
  EXPECT_EQ(std::string(et_last_error()), before_thread);
  EXPECT_TRUE(contains(et_last_error(), "main-thread-model"));
}

// ---- training --------------------------------------------------------------------------------

TEST(CApiStep, RejectsNullsBadLabelsAndLearningRatesWithoutStepping) {
  TrainerPtr t = make_trainer(small_config());
  Batch b = make_batch(kBatch, 1);
  float loss = -1;
  expect_error(et_trainer_step(nullptr, b.images.data(), b.labels.data(), 0.1f, &loss), ET_INVALID_ARGUMENT,
               "et_trainer_step", "trainer is NULL");
  expect_error(et_trainer_step(t.get(), nullptr, b.labels.data(), 0.1f, &loss), ET_INVALID_ARGUMENT,
               "et_trainer_step", "images_nhwc is NULL");
  expect_error(et_trainer_step(t.get(), b.images.data(), nullptr, 0.1f, &loss), ET_INVALID_ARGUMENT,
               "et_trainer_step", "labels is NULL");
  for (float lr : {-0.1f, NAN, INFINITY}) {
    SCOPED_TRACE(lr);
    expect_error(et_trainer_step(t.get(), b.images.data(), b.labels.data(), lr, &loss), ET_INVALID_ARGUMENT,
                 "et_trainer_step", "learning rate");
  }
  b.labels[3] = kClasses;
  expect_error(et_trainer_step(t.get(), b.images.data(), b.labels.data(), 0.1f, &loss), ET_INVALID_ARGUMENT,
               "et_trainer_step", "label 4 at batch row 3 is outside [0, 4)");
  b.labels[3] = 0;
  b.labels[7] = -1;
  expect_error(et_trainer_step(t.get(), b.images.data(), b.labels.data(), 0.1f, &loss), ET_INVALID_ARGUMENT,
               "et_trainer_step", "label -1 at batch row 7");
  EXPECT_EQ(loss, -1.0f);  // untouched on failure
  et_memory_info m{};
  m.struct_size = sizeof m;
  ASSERT_EQ(et_trainer_memory(t.get(), &m), ET_OK);
  EXPECT_EQ(m.steps, 0);  // no failed call ran a step
}

TEST(CApiStep, LossOutMayBeNull) {
  TrainerPtr t = make_trainer(small_config());
  Batch b = make_batch(kBatch, 2);
  EXPECT_EQ(et_trainer_step(t.get(), b.images.data(), b.labels.data(), 0.05f, nullptr), ET_OK) << et_last_error();
}

// Trains 60 steps on a fixed set of 64 images; the loss must fall well below where it started
// and the images must then be classified mostly right.
void expect_learns(const et_trainer_config& c, float lr) {
  TrainerPtr t = make_trainer(c);
  ASSERT_NE(t, nullptr);
  Batch data = make_batch(64, 3);
  std::vector<float> losses;
  for (int step = 0; step < 60; ++step) {
    const size_t first = static_cast<size_t>(step % 8) * kBatch;
    float loss = 0;
    ASSERT_EQ(et_trainer_step(t.get(), data.images.data() + first * kImageFloats, data.labels.data() + first, lr, &loss),
              ET_OK)
        << et_last_error();
    losses.push_back(loss);
  }
  const double first8 = std::accumulate(losses.begin(), losses.begin() + 8, 0.0) / 8;
  const double last8 = std::accumulate(losses.end() - 8, losses.end(), 0.0) / 8;
  EXPECT_LT(last8, 0.5 * first8) << "first 8 steps " << first8 << ", last 8 " << last8;
  int64_t correct = 0;
  for (int chunk = 0; chunk < 8; ++chunk) {
    int64_t c8 = 0;
    ASSERT_EQ(et_trainer_evaluate(t.get(), data.images.data() + static_cast<size_t>(chunk) * kBatch * kImageFloats,
                                  data.labels.data() + chunk * kBatch, kBatch, &c8, nullptr),
              ET_OK)
        << et_last_error();
    correct += c8;
  }
  EXPECT_GE(correct, 56) << "of 64";
}

TEST(CApiStep, SgdTrainingLowersTheLoss) { expect_learns(small_config(), 0.05f); }

TEST(CApiStep, AdamWTrainingLowersTheLoss) {
  et_trainer_config c = small_config();
  c.optimizer = "adamw";
  c.weight_decay = 0.01f;
  expect_learns(c, 0.01f);
}

TEST(CApiStep, SgdNesterovWithFrozenFirstLayerLowersTheLoss) {
  et_trainer_config c = small_config();
  c.nesterov = 1;
  c.freeze_layers = 1;
  expect_learns(c, 0.05f);
}

// ---- prediction and evaluation -------------------------------------------------------------

TEST(CApiPredict, CountMustBeWithinTheEvalBatch) {
  et_trainer_config c = small_config();
  c.eval_batch = 5;
  TrainerPtr t = make_trainer(c);
  Batch b = make_batch(6, 4);
  std::vector<int32_t> classes(6, -1);
  expect_error(et_trainer_predict(t.get(), b.images.data(), 0, classes.data()), ET_INVALID_ARGUMENT,
               "et_trainer_predict", "count 0 is outside [1, 5]");
  expect_error(et_trainer_predict(t.get(), b.images.data(), 6, classes.data()), ET_INVALID_ARGUMENT,
               "et_trainer_predict", "count 6 is outside [1, 5]");
  expect_error(et_trainer_predict(t.get(), b.images.data(), 3, nullptr), ET_INVALID_ARGUMENT, "et_trainer_predict",
               "classes_out is NULL");
  expect_error(et_trainer_predict(t.get(), nullptr, 3, classes.data()), ET_INVALID_ARGUMENT, "et_trainer_predict",
               "images_nhwc is NULL");
  expect_error(et_trainer_predict(nullptr, b.images.data(), 3, classes.data()), ET_INVALID_ARGUMENT,
               "et_trainer_predict", "trainer is NULL");
  expect_error(et_trainer_predict_logits(t.get(), b.images.data(), 3, nullptr), ET_INVALID_ARGUMENT,
               "et_trainer_predict_logits", "logits_out is NULL");
  EXPECT_EQ(classes[0], -1);
  EXPECT_EQ(et_trainer_predict(t.get(), b.images.data(), 5, classes.data()), ET_OK) << et_last_error();
  EXPECT_EQ(classes[5], -1);  // only `count` values are written
}

TEST(CApiPredict, ClassesAreTheArgmaxOfTheLogitsAndRowsAreIndependent) {
  TrainerPtr t = make_trainer(small_config());
  Batch train = make_batch(kBatch, 5);
  for (int i = 0; i < 10; ++i)
    ASSERT_EQ(et_trainer_step(t.get(), train.images.data(), train.labels.data(), 0.05f, nullptr), ET_OK);
  Batch b = make_batch(kBatch, 6);
  std::vector<float> logits = logits_of(t.get(), b, kBatch);
  std::vector<int32_t> classes(kBatch);
  ASSERT_EQ(et_trainer_predict(t.get(), b.images.data(), kBatch, classes.data()), ET_OK);
  for (int i = 0; i < kBatch; ++i) {
    const float* row = logits.data() + i * kClasses;
    EXPECT_EQ(classes[static_cast<size_t>(i)], std::max_element(row, row + kClasses) - row) << "row " << i;
  }
  // Image 5 alone gives the same logits as in the full batch: the padding rows do not leak in.
  Batch one;
  one.images.assign(b.images.begin() + 5 * kImageFloats, b.images.begin() + 6 * kImageFloats);
  std::vector<float> alone = logits_of(t.get(), one, 1);
  for (int k = 0; k < kClasses; ++k) EXPECT_NEAR(alone[static_cast<size_t>(k)], logits[static_cast<size_t>(5 * kClasses + k)], 1e-5f);
  // Prediction changes nothing: asking again gives the same logits.
  EXPECT_EQ(logits_of(t.get(), b, kBatch), logits);
}

TEST(CApiEvaluate, CountsAndLossesAgreeWithTheLogits) {
  TrainerPtr t = make_trainer(small_config());
  Batch train = make_batch(kBatch, 7);
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(et_trainer_step(t.get(), train.images.data(), train.labels.data(), 0.05f, nullptr), ET_OK);
  Batch b = make_batch(6, 8);
  std::vector<float> logits = logits_of(t.get(), b, 6);
  int64_t want_correct = 0;
  double want_loss = 0;
  for (int i = 0; i < 6; ++i) {
    const float* row = logits.data() + i * kClasses;
    const int label = b.labels[static_cast<size_t>(i)];
    if (std::max_element(row, row + kClasses) - row == label) ++want_correct;
    double sum = 0;
    for (int k = 0; k < kClasses; ++k) sum += std::exp(static_cast<double>(row[k]));
    want_loss += std::log(sum) - row[label];
  }
  int64_t correct = -1;
  double loss = -1;
  ASSERT_EQ(et_trainer_evaluate(t.get(), b.images.data(), b.labels.data(), 6, &correct, &loss), ET_OK) << et_last_error();
  EXPECT_EQ(correct, want_correct);
  EXPECT_NEAR(loss, want_loss, 1e-4 * std::max(1.0, want_loss));
  EXPECT_EQ(et_trainer_evaluate(t.get(), b.images.data(), b.labels.data(), 6, nullptr, nullptr), ET_OK);
}

TEST(CApiEvaluate, RejectsBadLabelsCountsAndNulls) {
  TrainerPtr t = make_trainer(small_config());
  Batch b = make_batch(kBatch, 9);
  int64_t correct = -1;
  b.labels[2] = 9;
  expect_error(et_trainer_evaluate(t.get(), b.images.data(), b.labels.data(), 4, &correct, nullptr),
               ET_INVALID_ARGUMENT, "et_trainer_evaluate", "label 9 at batch row 2");
  // Rows beyond count are not read: the bad label at row 2 is outside a count of 2.
  EXPECT_EQ(et_trainer_evaluate(t.get(), b.images.data(), b.labels.data(), 2, &correct, nullptr), ET_OK);
  expect_error(et_trainer_evaluate(t.get(), b.images.data(), b.labels.data(), kBatch + 1, &correct, nullptr),
               ET_INVALID_ARGUMENT, "et_trainer_evaluate", "count 9 is outside [1, 8]");
  expect_error(et_trainer_evaluate(t.get(), b.images.data(), nullptr, 2, &correct, nullptr), ET_INVALID_ARGUMENT,
               "et_trainer_evaluate", "labels is NULL");
  expect_error(et_trainer_evaluate(t.get(), nullptr, b.labels.data(), 2, &correct, nullptr), ET_INVALID_ARGUMENT,
               "et_trainer_evaluate", "images_nhwc is NULL");
  expect_error(et_trainer_evaluate(nullptr, b.images.data(), b.labels.data(), 2, &correct, nullptr),
               ET_INVALID_ARGUMENT, "et_trainer_evaluate", "trainer is NULL");
}

// ---- weights ----------------------------------------------------------------------------------

TEST(CApiWeights, SaveThenLoadGivesBitIdenticalLogits) {
  const std::string path = temp_path("roundtrip.safetensors");
  TrainerPtr a = make_trainer(small_config());
  Batch train = make_batch(kBatch, 10);
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(et_trainer_step(a.get(), train.images.data(), train.labels.data(), 0.05f, nullptr), ET_OK);
  ASSERT_EQ(et_trainer_save_weights(a.get(), path.c_str()), ET_OK) << et_last_error();

  et_trainer_config c = small_config();
  c.seed = 99;  // different initial weights
  TrainerPtr b = make_trainer(c);
  Batch probe = make_batch(kBatch, 11);
  const std::vector<float> want = logits_of(a.get(), probe, kBatch);
  ASSERT_NE(logits_of(b.get(), probe, kBatch), want);
  ASSERT_EQ(et_trainer_load_weights(b.get(), path.c_str(), 0), ET_OK) << et_last_error();
  const std::vector<float> got = logits_of(b.get(), probe, kBatch);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * want.size()), 0);

  // Saving again over the file replaces it (atomically): the newer weights load.
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(et_trainer_step(a.get(), train.images.data(), train.labels.data(), 0.05f, nullptr), ET_OK);
  ASSERT_EQ(et_trainer_save_weights(a.get(), path.c_str()), ET_OK) << et_last_error();
  ASSERT_EQ(et_trainer_load_weights(b.get(), path.c_str(), 0), ET_OK) << et_last_error();
  EXPECT_EQ(logits_of(b.get(), probe, kBatch), logits_of(a.get(), probe, kBatch));
  std::remove(path.c_str());
}

TEST(CApiWeights, MissingFileIsNotFoundAndNamesThePath) {
  TrainerPtr t = make_trainer(small_config());
  const std::string path = temp_path("does_not_exist.safetensors");
  expect_error(et_trainer_load_weights(t.get(), path.c_str(), 0), ET_NOT_FOUND, "et_trainer_load_weights", path);
}

TEST(CApiWeights, CorruptFileIsCorruptDataAndLeavesTheTrainerUnchanged) {
  TrainerPtr t = make_trainer(small_config());
  const std::string path = temp_path("corrupt.safetensors");
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("this is not a safetensors file at all", f);
  std::fclose(f);
  Batch probe = make_batch(kBatch, 12);
  const std::vector<float> before = logits_of(t.get(), probe, kBatch);
  expect_error(et_trainer_load_weights(t.get(), path.c_str(), 0), ET_CORRUPT_DATA, "et_trainer_load_weights", path);
  EXPECT_EQ(logits_of(t.get(), probe, kBatch), before);
  std::remove(path.c_str());
}

TEST(CApiWeights, SaveIntoAMissingDirectoryIsAnIoError) {
  TrainerPtr t = make_trainer(small_config());
  const std::string path = temp_path("no_such_dir") + "/weights.safetensors";
  expect_error(et_trainer_save_weights(t.get(), path.c_str()), ET_IO_ERROR, "et_trainer_save_weights", path);
}

TEST(CApiWeights, SkipClassifierLoadsIntoADifferentClassCount) {
  const std::string path = temp_path("four_classes.safetensors");
  TrainerPtr four = make_trainer(small_config());
  ASSERT_EQ(et_trainer_save_weights(four.get(), path.c_str()), ET_OK) << et_last_error();
  et_trainer_config c = small_config();
  c.classes = 3;
  c.seed = 5;
  TrainerPtr three = make_trainer(c);
  Batch probe = make_batch(kBatch, 13);
  std::vector<float> before(static_cast<size_t>(kBatch) * 3), after(before.size());
  ASSERT_EQ(et_trainer_predict_logits(three.get(), probe.images.data(), kBatch, before.data()), ET_OK);
  // Without skipping, the classifier's shape does not match: refused, nothing loaded.
  expect_error(et_trainer_load_weights(three.get(), path.c_str(), 0), ET_INVALID_ARGUMENT, "et_trainer_load_weights",
               "fc");
  ASSERT_EQ(et_trainer_predict_logits(three.get(), probe.images.data(), kBatch, after.data()), ET_OK);
  EXPECT_EQ(after, before);
  // Skipping it, the features load and the outputs change.
  ASSERT_EQ(et_trainer_load_weights(three.get(), path.c_str(), 1), ET_OK) << et_last_error();
  ASSERT_EQ(et_trainer_predict_logits(three.get(), probe.images.data(), kBatch, after.data()), ET_OK);
  EXPECT_NE(after, before);
  std::remove(path.c_str());
}

TEST(CApiWeights, NullArgumentsAreNamed) {
  TrainerPtr t = make_trainer(small_config());
  expect_error(et_trainer_load_weights(nullptr, "x", 0), ET_INVALID_ARGUMENT, "et_trainer_load_weights",
               "trainer is NULL");
  expect_error(et_trainer_load_weights(t.get(), nullptr, 0), ET_INVALID_ARGUMENT, "et_trainer_load_weights",
               "path is NULL");
  expect_error(et_trainer_save_weights(nullptr, "x"), ET_INVALID_ARGUMENT, "et_trainer_save_weights",
               "trainer is NULL");
  expect_error(et_trainer_save_weights(t.get(), nullptr), ET_INVALID_ARGUMENT, "et_trainer_save_weights",
               "path is NULL");
}

// ---- shapes and memory ----------------------------------------------------------------------

TEST(CApiShape, InputShapeAndOutputsDescribeTheSchedules) {
  et_trainer_config c = small_config();
  c.eval_batch = 5;
  TrainerPtr t = make_trainer(c);
  int32_t shape[4] = {0, 0, 0, 0};
  ASSERT_EQ(et_trainer_input_shape(t.get(), shape), ET_OK);
  EXPECT_EQ(shape[0], kBatch);
  EXPECT_EQ(shape[1], kSize);
  EXPECT_EQ(shape[2], kSize);
  EXPECT_EQ(shape[3], kChannels);
  int32_t classes = 0, eval_batch = 0;
  ASSERT_EQ(et_trainer_outputs(t.get(), &classes, &eval_batch), ET_OK);
  EXPECT_EQ(classes, kClasses);
  EXPECT_EQ(eval_batch, 5);
  EXPECT_EQ(et_trainer_outputs(t.get(), nullptr, nullptr), ET_OK);
  TrainerPtr d = make_trainer(small_config());  // eval_batch 0: the training batch
  ASSERT_EQ(et_trainer_outputs(d.get(), nullptr, &eval_batch), ET_OK);
  EXPECT_EQ(eval_batch, kBatch);
  expect_error(et_trainer_input_shape(t.get(), nullptr), ET_INVALID_ARGUMENT, "et_trainer_input_shape",
               "shape_out is NULL");
  expect_error(et_trainer_input_shape(nullptr, shape), ET_INVALID_ARGUMENT, "et_trainer_input_shape",
               "trainer is NULL");
  expect_error(et_trainer_outputs(nullptr, &classes, nullptr), ET_INVALID_ARGUMENT, "et_trainer_outputs",
               "trainer is NULL");
}

TEST(CApiMemory, ReportsArenasParametersPeakAndSteps) {
  TrainerPtr t = make_trainer(small_config());
  et_memory_info m{};
  m.struct_size = sizeof m;
  ASSERT_EQ(et_trainer_memory(t.get(), &m), ET_OK) << et_last_error();
  EXPECT_EQ(m.struct_size, sizeof m);
  EXPECT_GT(m.arena_bytes, 0u);
  EXPECT_GT(m.eval_arena_bytes, 0u);
  EXPECT_LT(m.eval_arena_bytes, m.arena_bytes);  // no gradients, a forward only
  EXPECT_GT(m.parameters, 0);
  EXPECT_TRUE(m.trainable_parameters > 0 && m.trainable_parameters <= m.parameters);
  EXPECT_GE(m.parameter_bytes, static_cast<uint64_t>(m.parameters) * sizeof(float));
  // SGD with momentum: one state float per trainable parameter (blocks may be padded).
  EXPECT_GE(m.optimizer_state_bytes, static_cast<uint64_t>(m.trainable_parameters) * sizeof(float));
  EXPECT_EQ(m.total_bytes, std::max(m.arena_bytes, m.eval_arena_bytes) + m.parameter_bytes + m.optimizer_state_bytes);
  // The peak holds parameters and state all step long, plus at most the training arena.
  EXPECT_GT(m.simulated_peak_bytes, m.parameter_bytes + m.optimizer_state_bytes);
  EXPECT_LE(m.simulated_peak_bytes, m.parameter_bytes + m.optimizer_state_bytes + m.arena_bytes);
  EXPECT_GT(m.peak_activation_bytes + m.peak_gradient_bytes, 0u);
  EXPECT_LE(m.peak_activation_bytes + m.peak_packed_activation_bytes + m.peak_gradient_bytes + m.peak_workspace_bytes,
            m.arena_bytes);
  EXPECT_EQ(m.peak_packed_activation_bytes, 0u);  // no compression configured
  EXPECT_EQ(m.steps, 0);
  Batch b = make_batch(kBatch, 14);
  ASSERT_EQ(et_trainer_step(t.get(), b.images.data(), b.labels.data(), 0.05f, nullptr), ET_OK);
  ASSERT_EQ(et_trainer_step(t.get(), b.images.data(), b.labels.data(), 0.05f, nullptr), ET_OK);
  ASSERT_EQ(et_trainer_memory(t.get(), &m), ET_OK);
  EXPECT_EQ(m.steps, 2);
}

TEST(CApiMemory, FreezingLeavesFewerTrainableParametersAndLessOptimizerState) {
  TrainerPtr all = make_trainer(small_config());
  et_trainer_config c = small_config();
  c.freeze = "bias-only";
  TrainerPtr bias = make_trainer(c);
  et_memory_info a{}, b{};
  a.struct_size = b.struct_size = sizeof a;
  ASSERT_EQ(et_trainer_memory(all.get(), &a), ET_OK);
  ASSERT_EQ(et_trainer_memory(bias.get(), &b), ET_OK);
  EXPECT_EQ(a.parameters, b.parameters);
  EXPECT_EQ(a.parameter_bytes, b.parameter_bytes);
  EXPECT_LT(b.trainable_parameters, a.trainable_parameters);
  EXPECT_LT(b.optimizer_state_bytes, a.optimizer_state_bytes);
  EXPECT_LT(b.total_bytes, a.total_bytes);
}

TEST(CApiMemory, AnOlderStructSizeGetsOnlyTheFieldsItHas) {
  TrainerPtr t = make_trainer(small_config());
  et_memory_info m;
  std::memset(&m, 0x5A, sizeof m);
  m.struct_size = offsetof(et_memory_info, eval_arena_bytes);  // a header that ended after arena_bytes
  ASSERT_EQ(et_trainer_memory(t.get(), &m), ET_OK) << et_last_error();
  EXPECT_EQ(m.struct_size, offsetof(et_memory_info, eval_arena_bytes));
  EXPECT_GT(m.arena_bytes, 0u);
  EXPECT_NE(m.arena_bytes, 0x5A5A5A5A5A5A5A5Aull);
  EXPECT_EQ(m.eval_arena_bytes, 0x5A5A5A5A5A5A5A5Aull);
  EXPECT_EQ(m.steps, 0x5A5A5A5A5A5A5A5All);
}

TEST(CApiMemory, RejectsNullsAndAMissingStructSize) {
  TrainerPtr t = make_trainer(small_config());
  et_memory_info m{};
  expect_error(et_trainer_memory(t.get(), &m), ET_INVALID_ARGUMENT, "et_trainer_memory", "struct_size is 0");
  m.struct_size = sizeof m;
  expect_error(et_trainer_memory(nullptr, &m), ET_INVALID_ARGUMENT, "et_trainer_memory", "trainer is NULL");
  expect_error(et_trainer_memory(t.get(), nullptr), ET_INVALID_ARGUMENT, "et_trainer_memory", "info is NULL");
}

// ---- threads ------------------------------------------------------------------------------------

TEST(CApiThreads, TwoTrainersOnTwoThreadsMatchARunAlone) {
  Batch b = make_batch(kBatch, 15);
  auto run = [&b](std::vector<float>* losses) {
    TrainerPtr t = make_trainer(small_config());
    for (int i = 0; i < 10; ++i) {
      float loss = 0;
      if (et_trainer_step(t.get(), b.images.data(), b.labels.data(), 0.05f, &loss) != ET_OK) return;
      losses->push_back(loss);
    }
  };
  std::vector<float> alone, first, second;
  run(&alone);
  ASSERT_EQ(alone.size(), 10u);
  std::thread x(run, &first), y(run, &second);
  x.join();
  y.join();
  EXPECT_EQ(first, alone);
  EXPECT_EQ(second, alone);
}

// ---- datasets -----------------------------------------------------------------------------------

void put_u32(FILE* f, uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                              static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  std::fwrite(b, 1, 4, f);
}

// A raw (uncompressed) IDX pair of `count` rows x cols images with pixel (i, y, x) = 10 i + y * cols + x
// and labels i % 3.
struct IdxFiles {
  std::string images, labels;
  IdxFiles(const std::string& name, int count, int rows, int cols, uint32_t image_magic = 0x803)
      : images(temp_path(name + "-images-idx3-ubyte")), labels(temp_path(name + "-labels-idx1-ubyte")) {
    FILE* f = std::fopen(images.c_str(), "wb");
    put_u32(f, image_magic);
    put_u32(f, static_cast<uint32_t>(count));
    put_u32(f, static_cast<uint32_t>(rows));
    put_u32(f, static_cast<uint32_t>(cols));
    for (int i = 0; i < count; ++i)
      for (int p = 0; p < rows * cols; ++p) std::fputc(10 * i + p, f);
    std::fclose(f);
    f = std::fopen(labels.c_str(), "wb");
    put_u32(f, 0x801);
    put_u32(f, static_cast<uint32_t>(count));
    for (int i = 0; i < count; ++i) std::fputc(i % 3, f);
    std::fclose(f);
  }
  ~IdxFiles() {
    std::remove(images.c_str());
    std::remove(labels.c_str());
  }
};

TEST(CApiDataset, LoadsIdxAndFillsPreprocessedBatches) {
  IdxFiles files("fill", 6, 4, 5);
  et_dataset* raw = nullptr;
  ASSERT_EQ(et_dataset_load_idx(files.images.c_str(), files.labels.c_str(), 3, -1, &raw), ET_OK) << et_last_error();
  DatasetPtr d(raw, &et_dataset_destroy);
  et_dataset_info info{};
  ASSERT_EQ(et_dataset_info_get(d.get(), &info), ET_OK);
  EXPECT_EQ(info.count, 6);
  EXPECT_EQ(info.height, 4);
  EXPECT_EQ(info.width, 5);
  EXPECT_EQ(info.channels, 1);
  EXPECT_EQ(info.classes, 3);

  et_preprocess pre;
  ASSERT_EQ(et_preprocess_init(&pre, nullptr), ET_OK);
  EXPECT_EQ(pre.struct_size, sizeof pre);
  int32_t shape[3];
  ASSERT_EQ(et_dataset_image_shape(d.get(), &pre, shape), ET_OK) << et_last_error();
  EXPECT_EQ(shape[0], 4);
  EXPECT_EQ(shape[1], 5);
  EXPECT_EQ(shape[2], 3);  // gray replicated to 3 channels

  const int64_t indices[2] = {5, 1};
  std::vector<float> images(2 * 4 * 5 * 3, -7.0f);
  int32_t labels[2] = {-1, -1};
  ASSERT_EQ(et_dataset_fill_batch(d.get(), &pre, indices, 2, 0, images.data(), images.size(), labels), ET_OK)
      << et_last_error();
  EXPECT_EQ(labels[0], 2);
  EXPECT_EQ(labels[1], 1);
  // Image 5, pixel (y 1, x 2) = 50 + 7, every channel, scaled to [0, 1].
  for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(images[static_cast<size_t>((1 * 5 + 2) * 3 + c)], 57.0f / 255.0f);
  EXPECT_FLOAT_EQ(images[static_cast<size_t>(60 + 0)], 10.0f / 255.0f);  // image 1, pixel (0, 0)
  // Labels may be NULL.
  EXPECT_EQ(et_dataset_fill_batch(d.get(), &pre, indices, 2, 0, images.data(), images.size(), nullptr), ET_OK);
  // The Fashion-MNIST preset pads 2 pixels each side.
  ASSERT_EQ(et_preprocess_init(&pre, "fashion-mnist"), ET_OK);
  EXPECT_EQ(pre.pad, 2);
  EXPECT_FLOAT_EQ(pre.mean[0], 0.2860f);
  ASSERT_EQ(et_dataset_image_shape(d.get(), &pre, shape), ET_OK);
  EXPECT_EQ(shape[0], 8);
  EXPECT_EQ(shape[1], 9);
  ASSERT_EQ(et_preprocess_init(&pre, "imagenet"), ET_OK);
  EXPECT_FLOAT_EQ(pre.std[2], 0.225f);
}

TEST(CApiDataset, LimitKeepsTheFirstImages) {
  IdxFiles files("limit", 6, 2, 2);
  et_dataset* raw = nullptr;
  ASSERT_EQ(et_dataset_load_idx(files.images.c_str(), files.labels.c_str(), 3, 4, &raw), ET_OK) << et_last_error();
  DatasetPtr d(raw, &et_dataset_destroy);
  et_dataset_info info{};
  ASSERT_EQ(et_dataset_info_get(d.get(), &info), ET_OK);
  EXPECT_EQ(info.count, 4);
}

TEST(CApiDataset, LoadErrorsNameTheFile) {
  et_dataset* d = reinterpret_cast<et_dataset*>(&d);
  const std::string missing = temp_path("missing-images");
  IdxFiles good("good", 3, 2, 2);
  expect_error(et_dataset_load_idx(missing.c_str(), good.labels.c_str(), 3, -1, &d), ET_NOT_FOUND,
               "et_dataset_load_idx", missing);
  EXPECT_EQ(d, nullptr);
  IdxFiles bad_magic("badmagic", 3, 2, 2, 0x1234);
  expect_error(et_dataset_load_idx(bad_magic.images.c_str(), bad_magic.labels.c_str(), 3, -1, &d), ET_CORRUPT_DATA,
               "et_dataset_load_idx", "bad magic number");
  // Labels 0, 1, 2 with only 2 classes.
  expect_error(et_dataset_load_idx(good.images.c_str(), good.labels.c_str(), 2, -1, &d), ET_CORRUPT_DATA,
               "et_dataset_load_idx", "label 2 of image 2");
  expect_error(et_dataset_load_idx(good.images.c_str(), good.labels.c_str(), 0, -1, &d), ET_INVALID_ARGUMENT,
               "et_dataset_load_idx", "classes must be at least 1");
  expect_error(et_dataset_load_idx(good.images.c_str(), good.labels.c_str(), 3, -5, &d), ET_INVALID_ARGUMENT,
               "et_dataset_load_idx", "limit");
  expect_error(et_dataset_load_idx(nullptr, good.labels.c_str(), 3, -1, &d), ET_INVALID_ARGUMENT,
               "et_dataset_load_idx", "images_path is NULL");
  expect_error(et_dataset_load_idx(good.images.c_str(), good.labels.c_str(), 3, -1, nullptr), ET_INVALID_ARGUMENT,
               "et_dataset_load_idx", "out is NULL");
  const std::string dir = temp_path("no_fmnist_here");
  expect_error(et_dataset_load_fashion_mnist(dir.c_str(), 1, -1, &d), ET_NOT_FOUND, "et_dataset_load_fashion_mnist",
               dir);
  EXPECT_EQ(d, nullptr);
}

TEST(CApiDataset, FillBatchChecksIndicesCapacityAndPreprocess) {
  IdxFiles files("checks", 4, 3, 3);
  et_dataset* raw = nullptr;
  ASSERT_EQ(et_dataset_load_idx(files.images.c_str(), files.labels.c_str(), 3, -1, &raw), ET_OK) << et_last_error();
  DatasetPtr d(raw, &et_dataset_destroy);
  et_preprocess pre;
  ASSERT_EQ(et_preprocess_init(&pre, "none"), ET_OK);
  std::vector<float> images(2 * 27);
  int64_t indices[2] = {0, 4};
  expect_error(et_dataset_fill_batch(d.get(), &pre, indices, 2, 0, images.data(), images.size(), nullptr),
               ET_INVALID_ARGUMENT, "et_dataset_fill_batch", "indices[1] = 4 is outside the dataset [0, 4)");
  indices[1] = 1;
  expect_error(et_dataset_fill_batch(d.get(), &pre, indices, 2, 0, images.data(), images.size() - 1, nullptr),
               ET_INVALID_ARGUMENT, "et_dataset_fill_batch", "holds 53 floats; 2 images need 54");
  expect_error(et_dataset_fill_batch(d.get(), &pre, indices, 0, 0, images.data(), images.size(), nullptr),
               ET_INVALID_ARGUMENT, "et_dataset_fill_batch", "count must be at least 1");
  expect_error(et_dataset_fill_batch(d.get(), &pre, nullptr, 2, 0, images.data(), images.size(), nullptr),
               ET_INVALID_ARGUMENT, "et_dataset_fill_batch", "indices is NULL");
  expect_error(et_dataset_fill_batch(d.get(), nullptr, indices, 2, 0, images.data(), images.size(), nullptr),
               ET_INVALID_ARGUMENT, "et_dataset_fill_batch", "pre is NULL");
  expect_error(et_dataset_fill_batch(nullptr, &pre, indices, 2, 0, images.data(), images.size(), nullptr),
               ET_INVALID_ARGUMENT, "et_dataset_fill_batch", "dataset is NULL");
  et_preprocess bad = pre;
  bad.out_channels = 2;
  expect_error(et_dataset_fill_batch(d.get(), &bad, indices, 2, 0, images.data(), images.size(), nullptr),
               ET_INVALID_ARGUMENT, "et_dataset_fill_batch", "out_channels must be 1 or 3");
  bad = pre;
  bad.std[1] = 0;
  expect_error(et_dataset_image_shape(d.get(), &bad, nullptr), ET_INVALID_ARGUMENT, "et_dataset_image_shape",
               "shape_out is NULL");
  int32_t shape[3];
  expect_error(et_dataset_image_shape(d.get(), &bad, shape), ET_INVALID_ARGUMENT, "et_dataset_image_shape",
               "channel 1");
  bad = pre;
  bad.pad = 5000;
  expect_error(et_dataset_image_shape(d.get(), &bad, shape), ET_INVALID_ARGUMENT, "et_dataset_image_shape",
               "pad 5000");
  bad = pre;
  bad.struct_size = 4;
  expect_error(et_dataset_image_shape(d.get(), &bad, shape), ET_INVALID_ARGUMENT, "et_dataset_image_shape",
               "et_preprocess.struct_size is 4");
  expect_error(et_preprocess_init(&pre, "cifar"), ET_INVALID_ARGUMENT, "et_preprocess_init",
               "unknown preprocess preset 'cifar'");
  expect_error(et_preprocess_init(nullptr, "none"), ET_INVALID_ARGUMENT, "et_preprocess_init", "pre is NULL");
  expect_error(et_dataset_info_get(nullptr, nullptr), ET_INVALID_ARGUMENT, "et_dataset_info_get", "dataset is NULL");
}

TEST(CApiDataset, EpochPermutationIsAReproduciblePermutation) {
  std::vector<int64_t> a(50), b(50), c(50);
  ASSERT_EQ(et_epoch_permutation(50, 7, 0, a.data()), ET_OK);
  ASSERT_EQ(et_epoch_permutation(50, 7, 0, b.data()), ET_OK);
  ASSERT_EQ(et_epoch_permutation(50, 7, 1, c.data()), ET_OK);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::sort(c.begin(), c.end());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(c[static_cast<size_t>(i)], i);
  EXPECT_EQ(et_epoch_permutation(0, 7, 0, nullptr), ET_OK);
  expect_error(et_epoch_permutation(-1, 7, 0, a.data()), ET_INVALID_ARGUMENT, "et_epoch_permutation", "n must be >= 0");
  expect_error(et_epoch_permutation(5, 7, 0, nullptr), ET_INVALID_ARGUMENT, "et_epoch_permutation", "out is NULL");
}

// The whole path a C program takes with real files: IDX -> fill_batch -> step -> evaluate.
TEST(CApiDataset, TrainsFromIdxThroughTheApi) {
  IdxFiles files("train", 16, 8, 8);
  et_dataset* raw = nullptr;
  ASSERT_EQ(et_dataset_load_idx(files.images.c_str(), files.labels.c_str(), 3, -1, &raw), ET_OK) << et_last_error();
  DatasetPtr d(raw, &et_dataset_destroy);
  et_preprocess pre;
  ASSERT_EQ(et_preprocess_init(&pre, "none"), ET_OK);
  pre.random_flip = 1;
  et_trainer_config c = small_config();
  c.classes = 3;
  TrainerPtr t = make_trainer(c);
  std::vector<float> images(static_cast<size_t>(kBatch) * kImageFloats);
  std::vector<int32_t> labels(kBatch);
  std::vector<int64_t> order(16);
  for (int epoch = 0; epoch < 2; ++epoch) {
    ASSERT_EQ(et_epoch_permutation(16, 3, epoch, order.data()), ET_OK);
    for (int b = 0; b < 2; ++b) {
      ASSERT_EQ(et_dataset_fill_batch(d.get(), &pre, order.data() + b * kBatch, kBatch, static_cast<uint64_t>(epoch * 2 + b),
                                      images.data(), images.size(), labels.data()),
                ET_OK)
          << et_last_error();
      float loss = 0;
      ASSERT_EQ(et_trainer_step(t.get(), images.data(), labels.data(), 0.05f, &loss), ET_OK) << et_last_error();
      EXPECT_TRUE(std::isfinite(loss));
    }
  }
}

}  // namespace
