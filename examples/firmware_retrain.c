/*
 * firmware_retrain: retrain an image classifier on the device, the way a firmware-like C
 * program embeds edgetrain. Only the public C API is used (include/edgetrain/edgetrain.h).
 *
 *   firmware_retrain [options]
 *     --data synthetic|DIR  training data: generated patterns (default), or a directory with
 *                           Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, t10k-*)
 *     --model NAME          small_cnn (default) or mobilenet_v2, resnet18, ...
 *     --width W             MobileNetV2 width multiplier (0.35 is a good device size)
 *     --weights FILE        start from these weights (safetensors, torchvision names)
 *     --skip-classifier     do not load the last layer from --weights (other class count)
 *     --out FILE            save the retrained weights here, atomically, then verify them
 *     --epochs N  --batch N  --lr X  --threads N  --freeze MODE
 *     --limit N             training images (synthetic: generated count)
 *     --test-limit N        test images
 *     --size PX             synthetic image side (default 16; mobilenet_v2 needs 32)
 *     --min-accuracy X      exit 3 when the test accuracy ends below X (a self-check)
 *
 * Exit status: 0 on success, 1 when edgetrain reports an error (the message comes from
 * et_last_error()), 2 for a bad command line, 3 when the accuracy is below --min-accuracy.
 *
 * Set OPENBLAS_CORETYPE before starting this program (see et_blas_warning()).
 */
#define _POSIX_C_SOURCE 199309L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgetrain/edgetrain.h"

/* Reports a failed call with the library's message and leaves main() through its cleanup. */
#define CHECK(call)                                                                      \
  do {                                                                                   \
    et_status check_status_ = (call);                                                    \
    if (check_status_ != ET_OK) {                                                        \
      fprintf(stderr, "firmware_retrain: %s (%s)\n", et_last_error(),                    \
              et_status_name(check_status_));                                            \
      goto fail;                                                                         \
    }                                                                                    \
  } while (0)

typedef struct options {
  const char* data;
  const char* model;
  float width;
  const char* weights;
  int skip_classifier;
  const char* out;
  const char* freeze;
  int epochs, batch, threads, size;
  long limit, test_limit;
  float lr;
  double min_accuracy;
} options;

/* ---- data: either an et_dataset (IDX) or generated images ------------------------------- */

enum { kSyntheticClasses = 4 };

typedef struct source {
  et_dataset* dataset;   /* IDX data, or NULL for synthetic */
  et_preprocess pre;
  float* images;         /* synthetic: count images of `floats` floats */
  int32_t* labels;
  int64_t count;
  int32_t shape[3];      /* height, width, channels the model sees */
  int32_t classes;
} source;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float uniform01(void) { /* xorshift64*: deterministic, no libm needed */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (float)((rng_state * 2685821657736338717ull) >> 40) / 16777216.0f;
}

/* Class 0: a bright horizontal bar; 1: a vertical bar; 2: the main diagonal; 3: a centre
 * square. Each with noise and a random offset, so the model must learn the shape. */
static void synthetic_image(int cls, int size, float* out) {
  int shift = (int)(uniform01() * (float)(size / 4));
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      int on = 0;
      int yy = (y + shift) % size, xx = (x + shift) % size;
      switch (cls) {
        case 0: on = yy >= size / 4 && yy < size / 4 + 3; break;
        case 1: on = xx >= size / 4 && xx < size / 4 + 3; break;
        case 2: on = x - y <= 1 && y - x <= 1; break;
        default: on = x >= size / 3 && x < 2 * size / 3 && y >= size / 3 && y < 2 * size / 3; break;
      }
      for (int c = 0; c < 3; ++c)
        out[(y * size + x) * 3 + c] = (on ? 1.0f : -1.0f) + 0.6f * (uniform01() - 0.5f);
    }
}

static int make_synthetic(source* s, long count, int size) {
  memset(s, 0, sizeof *s);
  s->count = count;
  s->shape[0] = s->shape[1] = size;
  s->shape[2] = 3;
  s->classes = kSyntheticClasses;
  size_t floats = (size_t)size * (size_t)size * 3;
  s->images = malloc(sizeof(float) * floats * (size_t)count);
  s->labels = malloc(sizeof(int32_t) * (size_t)count);
  if (!s->images || !s->labels) return 0;
  for (long i = 0; i < count; ++i) {
    s->labels[i] = (int32_t)(i % kSyntheticClasses);
    synthetic_image(s->labels[i], size, s->images + (size_t)i * floats);
  }
  return 1;
}

/* Writes images indices[0..count) into images/labels (the model's layout). */
static et_status get_batch(const source* s, const int64_t* indices, int count, uint64_t seed,
                           float* images, size_t capacity, int32_t* labels) {
  if (s->dataset)
    return et_dataset_fill_batch(s->dataset, &s->pre, indices, count, seed, images, capacity, labels);
  size_t floats = (size_t)s->shape[0] * (size_t)s->shape[1] * (size_t)s->shape[2];
  for (int k = 0; k < count; ++k) {
    memcpy(images + (size_t)k * floats, s->images + (size_t)indices[k] * floats, sizeof(float) * floats);
    labels[k] = s->labels[indices[k]];
  }
  return ET_OK;
}

static void free_source(source* s) {
  et_dataset_destroy(s->dataset);
  free(s->images);
  free(s->labels);
  memset(s, 0, sizeof *s);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double mib(uint64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* Accuracy and mean loss over the whole test source, in chunks of the evaluation batch. */
static et_status evaluate_all(et_trainer* t, const source* test, float* images, size_t capacity,
                              int32_t* labels, int64_t* index, double* accuracy, double* mean_loss) {
  int32_t eval_batch = 0;
  int64_t correct = 0, done = 0;
  double loss = 0;
  et_status st = et_trainer_outputs(t, NULL, &eval_batch);
  if (st != ET_OK) return st;
  while (done < test->count) {
    int n = (int)(test->count - done < eval_batch ? test->count - done : eval_batch);
    int64_t c = 0;
    double l = 0;
    for (int k = 0; k < n; ++k) index[k] = done + k;
    if ((st = get_batch(test, index, n, 0, images, capacity, labels)) != ET_OK) return st;
    if ((st = et_trainer_evaluate(t, images, labels, n, &c, &l)) != ET_OK) return st;
    correct += c;
    loss += l;
    done += n;
  }
  *accuracy = done ? (double)correct / (double)done : 0;
  *mean_loss = done ? loss / (double)done : 0;
  return ET_OK;
}

static int parse_args(int argc, char** argv, options* o) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    int takes_value = 1;
    if (!strcmp(a, "--skip-classifier")) o->skip_classifier = 1, takes_value = 0;
    else if (!v) { fprintf(stderr, "firmware_retrain: %s needs a value\n", a); return 0; }
    else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--width")) o->width = strtof(v, NULL);
    else if (!strcmp(a, "--weights")) o->weights = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--freeze")) o->freeze = v;
    else if (!strcmp(a, "--epochs")) o->epochs = atoi(v);
    else if (!strcmp(a, "--batch")) o->batch = atoi(v);
    else if (!strcmp(a, "--threads")) o->threads = atoi(v);
    else if (!strcmp(a, "--size")) o->size = atoi(v);
    else if (!strcmp(a, "--limit")) o->limit = atol(v);
    else if (!strcmp(a, "--test-limit")) o->test_limit = atol(v);
    else if (!strcmp(a, "--lr")) o->lr = strtof(v, NULL);
    else if (!strcmp(a, "--min-accuracy")) o->min_accuracy = strtod(v, NULL);
    else { fprintf(stderr, "firmware_retrain: unknown option %s (see the comment at the top of firmware_retrain.c)\n", a); return 0; }
    i += takes_value;
  }
  if (o->epochs < 1 || o->limit < 1 || o->test_limit < 1 || o->size < 1) {
    fprintf(stderr, "firmware_retrain: --epochs, --limit, --test-limit and --size must be positive\n");
    return 0;
  }
  return 1;
}

int main(int argc, char** argv) {
  options o = {"synthetic", "small_cnn", 1.0f, NULL, 0, NULL, "none", 3, 32, 2, 16, 512, 256, 0.05f, 0.0};
  source train, test;
  et_trainer* trainer = NULL;
  et_trainer* verify = NULL;
  float* images = NULL;
  int32_t* labels = NULL;
  int64_t* order = NULL;
  int64_t* index = NULL;
  int rc = 1;
  memset(&train, 0, sizeof train);
  memset(&test, 0, sizeof test);

  if (!parse_args(argc, argv, &o)) return 2;
  printf("edgetrain %s, %s\n", et_version(), et_blas_summary());
  if (et_blas_warning()[0]) fprintf(stderr, "%s\n", et_blas_warning());

  /* Data. */
  if (!strcmp(o.data, "synthetic")) {
    if (!make_synthetic(&train, o.limit, o.size) || !make_synthetic(&test, o.test_limit, o.size)) {
      fprintf(stderr, "firmware_retrain: out of memory for the synthetic data\n");
      goto fail;
    }
  } else {
    et_dataset_info info;
    CHECK(et_dataset_load_fashion_mnist(o.data, 1, o.limit, &train.dataset));
    CHECK(et_dataset_load_fashion_mnist(o.data, 0, o.test_limit, &test.dataset));
    CHECK(et_preprocess_init(&train.pre, "fashion-mnist"));
    test.pre = train.pre;
    CHECK(et_dataset_image_shape(train.dataset, &train.pre, train.shape));
    memcpy(test.shape, train.shape, sizeof train.shape);
    CHECK(et_dataset_info_get(train.dataset, &info));
    train.count = info.count;
    train.classes = test.classes = info.classes;
    CHECK(et_dataset_info_get(test.dataset, &info));
    test.count = info.count;
  }

  /* The trainer: every byte it will use is allocated here, none while stepping. */
  et_trainer_config cfg;
  et_trainer_config_init(&cfg);
  cfg.model = o.model;
  cfg.width = o.width;
  cfg.classes = train.classes;
  cfg.input_size = train.shape[0];
  cfg.channels = train.shape[2];
  cfg.batch = o.batch;
  cfg.eval_batch = o.batch;
  cfg.threads = o.threads;
  cfg.freeze = o.freeze;
  CHECK(et_trainer_create(&cfg, &trainer));
  if (o.weights) {
    CHECK(et_trainer_load_weights(trainer, o.weights, o.skip_classifier));
    printf("loaded weights from %s\n", o.weights);
  }

  int32_t shape[4];
  CHECK(et_trainer_input_shape(trainer, shape));
  size_t capacity = (size_t)shape[0] * (size_t)shape[1] * (size_t)shape[2] * (size_t)shape[3];
  images = malloc(sizeof(float) * capacity);
  labels = malloc(sizeof(int32_t) * (size_t)o.batch);
  order = malloc(sizeof(int64_t) * (size_t)(train.count > 0 ? train.count : 1));
  index = malloc(sizeof(int64_t) * (size_t)o.batch);
  if (!images || !labels || !order || !index) {
    fprintf(stderr, "firmware_retrain: out of memory for the batch buffers\n");
    goto fail;
  }
  if (train.count < o.batch) {
    fprintf(stderr, "firmware_retrain: %lld training images, fewer than one batch of %d\n",
            (long long)train.count, o.batch);
    rc = 2;
    goto fail;
  }

  et_memory_info mem;
  memset(&mem, 0, sizeof mem);
  mem.struct_size = sizeof mem;
  CHECK(et_trainer_memory(trainer, &mem));
  printf("%s: %lld training images %dx%dx%d, batch %d, %lld of %lld parameter floats train\n", o.model,
         (long long)train.count, shape[1], shape[2], shape[3], shape[0],
         (long long)mem.trainable_parameters, (long long)mem.parameters);
  printf("memory: %.2f MiB in all: training arena %.2f MiB, eval arena %.2f MiB, parameters %.2f MiB, "
         "optimizer state %.2f MiB; simulated training peak %.2f MiB\n",
         mib(mem.total_bytes), mib(mem.arena_bytes), mib(mem.eval_arena_bytes), mib(mem.parameter_bytes),
         mib(mem.optimizer_state_bytes), mib(mem.simulated_peak_bytes));

  double accuracy = 0, mean_loss = 0;
  CHECK(evaluate_all(trainer, &test, images, capacity, labels, index, &accuracy, &mean_loss));
  printf("before: test accuracy %.4f, mean loss %.4f\n", accuracy, mean_loss);

  /* Retraining: shuffled full batches, learning rate decaying linearly to 10%. */
  int64_t steps_per_epoch = train.count / o.batch, step = 0, total = steps_per_epoch * o.epochs;
  double start = now_seconds();
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    double loss_sum = 0;
    CHECK(et_epoch_permutation(train.count, 42, epoch, order));
    for (int64_t b = 0; b < steps_per_epoch; ++b, ++step) {
      float lr = o.lr * (1.0f - 0.9f * (float)step / (float)total);
      float loss = 0;
      CHECK(get_batch(&train, order + b * o.batch, o.batch, (uint64_t)step, images, capacity, labels));
      CHECK(et_trainer_step(trainer, images, labels, lr, &loss));
      loss_sum += loss;
    }
    printf("epoch %d/%d: mean training loss %.4f\n", epoch + 1, o.epochs, loss_sum / (double)steps_per_epoch);
  }
  double seconds = now_seconds() - start;
  printf("trained %lld steps in %.2f s (%.0f images/s)\n", (long long)total, seconds,
         (double)(total * o.batch) / (seconds > 1e-9 ? seconds : 1e-9));

  CHECK(evaluate_all(trainer, &test, images, capacity, labels, index, &accuracy, &mean_loss));
  printf("after: test accuracy %.4f, mean loss %.4f\n", accuracy, mean_loss);

  if (o.out) {
    /* Atomic: a power cut during the save leaves the previous file intact. Then verify what
     * was written by loading it into a second trainer, as firmware verifies a new image. */
    double verify_accuracy = 0, verify_loss = 0;
    CHECK(et_trainer_save_weights(trainer, o.out));
    CHECK(et_trainer_create(&cfg, &verify));
    CHECK(et_trainer_load_weights(verify, o.out, 0));
    CHECK(evaluate_all(verify, &test, images, capacity, labels, index, &verify_accuracy, &verify_loss));
    if (verify_accuracy != accuracy || verify_loss != mean_loss) {
      fprintf(stderr, "firmware_retrain: %s reloads with accuracy %.4f (loss %.6f), not %.4f (loss %.6f)\n", o.out,
              verify_accuracy, verify_loss, accuracy, mean_loss);
      goto fail;
    }
    printf("saved and verified %s\n", o.out);
  }

  rc = 0;
  if (accuracy < o.min_accuracy) {
    fprintf(stderr, "firmware_retrain: test accuracy %.4f is below --min-accuracy %.4f\n", accuracy, o.min_accuracy);
    rc = 3;
  }

fail:
  et_trainer_destroy(verify);
  et_trainer_destroy(trainer);
  free(images);
  free(labels);
  free(order);
  free(index);
  free_source(&train);
  free_source(&test);
  return rc;
}
