// The executor on the small CNN: the arena it really writes equals the planned one, fast kernels
// train like the reference kernels, and frozen parameters stay bit-identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "models/model_zoo.h"
#include "runtime/parameter_store.h"
#include "runtime/trainer.h"

namespace edgetrain {
namespace {

GraphFactory small_cnn(int input = 16) {
  return [input](int64_t batch, bool training) {
    ModelSpec spec;
    spec.arch = Architecture::kSmallCnn;
    spec.input_size = input;
    return build_model(spec, batch, training);
  };
}

void fill_batch(Trainer& t, uint64_t seed) {
  Rng rng(seed);
  const Shape& s = t.input_shape();
  for (int64_t i = 0; i < s.numel(); ++i) t.train_images()[i] = static_cast<float>(rng.normal());
  for (int64_t i = 0; i < t.batch(); ++i) t.train_labels()[i] = static_cast<int32_t>(rng.below(10));
}

std::unique_ptr<Trainer> make(const TrainerOptions& o, GraphFactory f = small_cnn()) {
  Result<std::unique_ptr<Trainer>> t = Trainer::create(f, o);
  EXPECT_TRUE(t.is_ok()) << t.status().to_string();
  return std::move(t).value();
}

TEST(Executor, MeasuredArenaHighWaterEqualsThePlannedArena) {
  TrainerOptions o;
  o.batch = 4;
  o.config.optimizer.attrs.momentum = 0.9f;
  auto t = make(o);
  for (int step = 0; step < 2; ++step) {
    fill_batch(*t, 10 + step);
    ASSERT_TRUE(t->train_step(0.01f).is_ok());
  }
  size_t planned = t->train_executor().arena_bytes();
  size_t measured = t->train_executor().measured_high_water();
  EXPECT_GT(measured, planned - 64) << "planned " << planned << " measured " << measured;
  EXPECT_LE(measured, planned);
}

TEST(Executor, FastKernelsTrainLikeReferenceKernels) {
  TrainerOptions o;
  o.batch = 4;
  o.config.optimizer.attrs.momentum = 0.9f;
  o.config.optimizer.attrs.weight_decay = 1e-4f;
  auto fast = make(o);
  o.reference_kernels = true;
  auto ref = make(o);
  for (int step = 0; step < 3; ++step) {
    fill_batch(*fast, 100 + step);
    fill_batch(*ref, 100 + step);
    Result<StepResult> a = fast->train_step(0.05f), b = ref->train_step(0.05f);
    ASSERT_TRUE(a.is_ok() && b.is_ok());
    EXPECT_NEAR(a->loss, b->loss, 1e-4 * std::max(1.0f, std::fabs(b->loss)));
  }
  for (int i = 0; i < fast->params().size(); ++i) {
    const float* x = fast->params().data(i);
    const float* y = ref->params().data(i);
    double worst = 0;
    for (int64_t k = 0; k < fast->params().spec(i).shape.numel(); ++k)
      worst = std::max(worst, std::fabs(double(x[k]) - y[k]) / std::max(1.0, std::fabs(double(y[k]))));
    EXPECT_LT(worst, 1e-4) << fast->params().spec(i).name;
  }
}

TEST(Executor, FrozenParametersStayBitIdentical) {
  TrainerOptions o;
  o.batch = 4;
  o.config.optimizer.attrs.momentum = 0.9f;
  o.config.optimizer.attrs.weight_decay = 1e-3f;
  o.config.freeze.frozen_prefix_layers = 4;
  auto t = make(o);
  std::vector<std::vector<float>> before;
  for (int i = 0; i < t->params().size(); ++i)
    before.emplace_back(t->params().data(i), t->params().data(i) + t->params().spec(i).shape.numel());
  for (int step = 0; step < 3; ++step) {
    fill_batch(*t, 7 + step);
    ASSERT_TRUE(t->train_step(0.1f).is_ok());
  }
  for (int i = 0; i < t->params().size(); ++i) {
    const ParamSpec& p = t->params().spec(i);
    bool same = std::memcmp(before[static_cast<size_t>(i)].data(), t->params().data(i), p.shape.numel() * 4) == 0;
    if (p.layer_index < 4) {
      EXPECT_TRUE(same) << p.name << " changed although frozen";
    } else if (param_kind_is_trainable(p.kind)) {
      EXPECT_FALSE(same) << p.name << " did not train";
    }
  }
}

TEST(Executor, TrainingLowersTheLossOnAFixedBatch) {
  TrainerOptions o;
  o.batch = 8;
  o.config.optimizer.attrs.momentum = 0.9f;
  auto t = make(o);
  fill_batch(*t, 42);
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    Result<StepResult> r = t->train_step(0.05f);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    if (step == 0) first = r->loss;
    last = r->loss;
  }
  EXPECT_LT(last, 0.5f * first) << "first " << first << " last " << last;
}

TEST(Trainer, RejectsLabelsOutsideTheClassRange) {
  TrainerOptions o;
  o.batch = 2;
  auto t = make(o);
  fill_batch(*t, 1);
  t->train_labels()[1] = 10;
  Result<StepResult> r = t->train_step(0.1f);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("label 10"), std::string::npos);
}

TEST(Trainer, EvalCountsCorrectPredictions) {
  TrainerOptions o;
  o.batch = 4;
  o.eval_batch = 5;
  auto t = make(o);
  Rng rng(5);
  for (int64_t i = 0; i < 5 * 16 * 16 * 3; ++i) t->eval_images()[i] = static_cast<float>(rng.normal());
  for (int i = 0; i < 5; ++i) t->eval_labels()[i] = i;
  Result<EvalResult> r = t->eval_step(3);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->count, 3);
  EXPECT_GE(r->correct, 0);
  EXPECT_LE(r->correct, 3);
  EXPECT_GT(r->loss_sum, 0.0);
  EXPECT_FALSE(t->eval_step(6).is_ok());
}

// Training a caller's parameter store in place: the trainer allocates no parameters (its memory
// says so), trains exactly like a trainer with its own copy, and leaves the result in the store.
TEST(Trainer, TrainsACallersParametersInPlace) {
  TrainerOptions o;
  o.batch = 4;
  o.config.optimizer.attrs.momentum = 0.9f;
  auto own = make(o);
  Result<Graph> g = small_cnn()(o.batch, true);
  ASSERT_TRUE(g.is_ok());
  Result<ParameterStore> store = ParameterStore::create(g->params);
  ASSERT_TRUE(store.is_ok());
  store->initialize(o.init_seed);  // the same starting weights as `own`
  TrainerOptions in_place = o;
  in_place.external_parameters = true;
  Result<std::unique_ptr<Trainer>> t = Trainer::create(small_cnn(), in_place, &*store);
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ((*t)->memory().parameter_bytes, 0u);
  EXPECT_EQ((*t)->memory().total() + own->memory().parameter_bytes, own->memory().total());
  EXPECT_EQ(&(*t)->params(), &*store);
  for (int step = 0; step < 3; ++step) {
    fill_batch(*own, 20 + step);
    fill_batch(**t, 20 + step);
    Result<StepResult> a = own->train_step(0.05f), b = (*t)->train_step(0.05f);
    ASSERT_TRUE(a.is_ok() && b.is_ok());
    EXPECT_EQ(a->loss, b->loss);
  }
  for (int i = 0; i < store->size(); ++i)
    EXPECT_EQ(std::memcmp(own->params().data(i), store->data(i), store->spec(i).shape.numel() * sizeof(float)), 0)
        << store->spec(i).name;
  // The flag and the store go together, and the store must be this model's.
  EXPECT_FALSE(Trainer::create(small_cnn(), in_place).is_ok());
  EXPECT_FALSE(Trainer::create(small_cnn(), o, &*store).is_ok());
  std::vector<ParamSpec> fewer(g->params.begin(), g->params.end() - 1);
  Result<ParameterStore> wrong = ParameterStore::create(fewer);
  ASSERT_TRUE(wrong.is_ok());
  EXPECT_FALSE(Trainer::create(small_cnn(), in_place, &*wrong).is_ok());
}

// Evaluation runs in the training arena's block (one block of the larger size): evaluating
// between training steps changes nothing in training, and the block is what memory() counts.
TEST(Trainer, EvaluationSharesTheTrainingArenaBlock) {
  TrainerOptions o;
  o.batch = 4;
  o.eval_batch = 4;
  o.config.optimizer.attrs.momentum = 0.9f;
  auto a = make(o);
  auto b = make(o);
  const TrainerMemory& m = a->memory();
  EXPECT_GT(m.eval_arena_bytes, 0u);
  EXPECT_EQ(m.total(), m.parameter_bytes + m.optimizer_state_bytes + std::max(m.train_arena_bytes, m.eval_arena_bytes));
  // Both executors point into one block.
  const unsigned char* train_in = reinterpret_cast<const unsigned char*>(a->train_images());
  const unsigned char* eval_in = reinterpret_cast<const unsigned char*>(a->eval_images());
  const unsigned char* lo = std::min(train_in, eval_in);
  const unsigned char* hi = std::max(train_in, eval_in);
  EXPECT_LT(static_cast<size_t>(hi - lo), m.arena_block_bytes());
  Rng rng(3);
  for (int step = 0; step < 3; ++step) {
    // `a` evaluates before every step (the evaluation overwrites the arena); `b` never does.
    for (int64_t i = 0; i < 4 * 16 * 16 * 3; ++i) a->eval_images()[i] = static_cast<float>(rng.normal());
    for (int i = 0; i < 4; ++i) a->eval_labels()[i] = i;
    ASSERT_TRUE(a->eval_step(4).is_ok());
    fill_batch(*a, 30 + step);
    fill_batch(*b, 30 + step);
    Result<StepResult> ra = a->train_step(0.05f), rb = b->train_step(0.05f);
    ASSERT_TRUE(ra.is_ok() && rb.is_ok());
    EXPECT_EQ(ra->loss, rb->loss) << "step " << step;
  }
  for (int i = 0; i < a->params().size(); ++i)
    EXPECT_EQ(std::memcmp(a->params().data(i), b->params().data(i), a->params().spec(i).shape.numel() * sizeof(float)), 0)
        << a->params().spec(i).name;
}

// With eval_within_training_arena the evaluation batch halves until its arena fits in the
// training arena: a classifier-only trainer (no saved activations) with a large evaluation batch.
TEST(Trainer, EvaluationBatchShrinksToStayWithinTheTrainingArena) {
  TrainerOptions o;
  o.batch = 4;
  o.eval_batch = 64;
  o.config.freeze.mode = FreezeMode::kClassifierOnly;
  Result<TrainerBlueprint> wide = design_trainer(small_cnn(), o);
  ASSERT_TRUE(wide.is_ok());
  EXPECT_GT(wide->memory.eval_arena_bytes, wide->memory.train_arena_bytes);  // evaluation would set the block
  o.eval_within_training_arena = true;
  auto t = make(o);
  EXPECT_LT(t->eval_batch(), 64);
  EXPECT_GE(t->eval_batch(), 1);
  EXPECT_LE(t->memory().eval_arena_bytes, t->memory().train_arena_bytes);
  EXPECT_EQ(t->memory().arena_block_bytes(), t->memory().train_arena_bytes);
  // The smaller evaluation schedule is built like the first one: activations fused into their
  // norms, and those into their convs.
  int fused = 0;
  for (const Node& n : t->eval_executor().graph().nodes) {
    EXPECT_NE(n.op, OpKind::kRelu6) << n.layer;  // the small CNN's ReLU6 follows a batch norm
    EXPECT_NE(n.op, OpKind::kBatchNorm) << n.layer;  // ... which follows a conv
    fused += n.op == OpKind::kConv2d && n.attrs.conv_norm && n.attrs.activation != FusedActivation::kNone;
  }
  EXPECT_EQ(fused, 3);
  for (int64_t i = 0; i < t->eval_batch() * 16 * 16 * 3; ++i) t->eval_images()[i] = 0.5f;
  for (int64_t i = 0; i < t->eval_batch(); ++i) t->eval_labels()[i] = 1;
  EXPECT_TRUE(t->eval_step(t->eval_batch()).is_ok());
}

}  // namespace
}  // namespace edgetrain
