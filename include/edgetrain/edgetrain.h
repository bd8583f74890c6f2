/*
 * edgetrain C API: retrain an image classifier on the device, inside a fixed memory budget.
 *
 * Plain C99, stable ABI. Everything is reached through opaque handles (et_trainer, et_dataset)
 * and every fallible function returns an et_status; nothing ever throws, aborts or exits on bad
 * input. include/edgetrain/README.md is the guide (lifetimes, threading, errors, OpenBLAS).
 *
 * Errors. A function that returns et_status also sets this thread's last-error message:
 * et_last_error() names what was wrong ("et_trainer_step: label 12 at batch row 3 is outside
 * [0, 10)") after a failure, and is "" after a success. The text stays valid until the next
 * et_* call that returns et_status on the same thread.
 *
 * Lifetimes. Every handle is created by an et_*_create / et_*_load function and released by
 * its et_*_destroy (NULL is accepted and ignored). On failure the output handle is set to NULL.
 * Pointers passed in (images, labels, paths, config strings) are read during the call only;
 * the library keeps no reference to caller memory.
 *
 * Threads. A handle may be used by one thread at a time; different handles may be used from
 * different threads at once. A trainer runs its kernels on its own pool of `threads` workers.
 *
 * OpenBLAS. Debian's OpenBLAS chooses its kernels once, when the process starts, from a CPU
 * table; on CPUs missing from it (many recent server and desktop parts) it silently runs its
 * slowest kernels, several times slower. Only the environment variable OPENBLAS_CORETYPE,
 * set BEFORE the process starts (in the service file, the init script or the shell), can fix
 * that: setenv() from main() is too late. et_blas_warning() says whether this process is
 * affected and what to set ("Haswell" on AVX2 CPUs, "SkylakeX" on AVX-512 CPUs).
 *
 * Data layout. Images are float32 NHWC (batch, height, width, channels), already normalised as
 * the model expects; labels are int32 class indices in [0, classes).
 */
#ifndef EDGETRAIN_EDGETRAIN_H_
#define EDGETRAIN_EDGETRAIN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------- */
/* Status, errors, library information                                                      */
/* ---------------------------------------------------------------------------------------- */

/* Mirrors edgetrain::StatusCode (runtime/status.h), value for value. */
typedef enum et_status {
  ET_OK = 0,
  ET_INVALID_ARGUMENT = 1, /* a bad argument, option, shape or label given by the caller */
  ET_NOT_FOUND = 2,        /* a missing file or tensor */
  ET_CORRUPT_DATA = 3,     /* a file that exists but is truncated or malformed */
  ET_OUT_OF_MEMORY = 4,    /* an allocation failed */
  ET_IO_ERROR = 5,         /* reading or writing failed at the OS level */
  ET_UNSUPPORTED = 6,      /* valid, but not implemented (or a newer struct than this library) */
  ET_INTERNAL = 7          /* a bug inside edgetrain */
} et_status;

/* "ok", "invalid argument", ...; "unknown status" for values outside the enum. Static text. */
const char* et_status_name(et_status status);

/* This thread's message for the last et_status-returning call ("" after a success). Never NULL. */
const char* et_last_error(void);

/* "0.1.0". Static text. */
const char* et_version(void);

/* One line about the BLAS this process runs: "OpenBLAS core Haswell (OPENBLAS_CORETYPE=Haswell),
 * 1 thread". Valid until the next et_blas_summary() call on the same thread. Never NULL. */
const char* et_blas_summary(void);

/* A warning naming the OPENBLAS_CORETYPE value to set when OpenBLAS runs degraded kernels on
 * this CPU, "" otherwise. Valid until the next et_blas_warning() call on the same thread.
 * Never NULL. */
const char* et_blas_warning(void);

/* ---------------------------------------------------------------------------------------- */
/* Trainer                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* A model, its parameters, a training schedule (forward, backward and optimizer update for a
 * batch of `batch` images) and an evaluation schedule (forward only, `eval_batch` images).
 * All memory is allocated by et_trainer_create: stepping allocates nothing. */
typedef struct et_trainer et_trainer;

/* What et_trainer_create builds. Call et_trainer_config_init first, then change fields: a
 * later library version may add fields at the end, and struct_size tells it which exist.
 * Strings are read during et_trainer_create only. */
typedef struct et_trainer_config {
  size_t struct_size;        /* sizeof(et_trainer_config), set by et_trainer_config_init */
  const char* model;         /* "small_cnn" (default), "mobilenet_v2", "resnet18", "resnet34", "resnet50" */
  float width;               /* MobileNetV2 width multiplier in (0, 4]; must be 1.0 for the others. 1.0 */
  int32_t classes;           /* number of classes. 10 */
  int32_t input_size;        /* square input side in pixels. 32 */
  int32_t channels;          /* input channels. 3 */
  int32_t batch;             /* images per training step. 32 */
  int32_t eval_batch;        /* most images per et_trainer_predict/evaluate call; 0: batch. 0 */
  int32_t threads;           /* kernel threads, [1, 256]. 2 */
  const char* optimizer;     /* "sgd" (default) or "adamw"; NULL: "sgd" */
  float momentum;            /* SGD momentum in [0, 1); ignored by AdamW. 0.9 */
  int32_t nesterov;          /* nonzero: Nesterov momentum (needs momentum > 0). 0 */
  float weight_decay;        /* L2 (SGD) or decoupled (AdamW) weight decay, >= 0. 0 */
  const char* freeze;        /* "none" (default), "bias-only", "norm-only", "norm-and-bias", "classifier-only"; NULL: "none" */
  int32_t freeze_layers;     /* freeze the first K layers (conv, batch norm, linear), >= 0. 0 */
  const char* freeze_patterns; /* comma-separated parameter-name globs to freeze
                                  ("features.1*,*.bias"); NULL or "": none */
  uint64_t seed;             /* parameter initialisation before any weights are loaded. 1 */
} et_trainer_config;

/* Fills *config with the defaults listed above. NULL is ignored. */
void et_trainer_config_init(et_trainer_config* config);

/* Builds a trainer. On success *out is a new trainer (release it with et_trainer_destroy); on
 * failure *out is NULL. ET_INVALID_ARGUMENT names the bad field (unknown model, batch 0, an
 * input too small for the model, ...); ET_OUT_OF_MEMORY when the arenas cannot be allocated;
 * ET_UNSUPPORTED when struct_size is larger than this library knows and the extra fields are
 * not zero (a program built against a newer header). */
et_status et_trainer_create(const et_trainer_config* config, et_trainer** out);

/* Releases the trainer and all its memory. NULL is ignored. */
void et_trainer_destroy(et_trainer* trainer);

/* Loads weights from a safetensors file with torchvision's tensor names (a torchvision
 * state_dict saved with safetensors, or a file et_trainer_save_weights wrote). skip_classifier
 * nonzero: the last layer keeps its current values (retraining for a different class count).
 * Everything is validated before the first parameter changes, so a missing, corrupt or
 * mismatching file leaves the trainer unchanged (ET_NOT_FOUND, ET_CORRUPT_DATA,
 * ET_INVALID_ARGUMENT). Resets nothing else: optimizer state (momentum) is kept. */
et_status et_trainer_load_weights(et_trainer* trainer, const char* path, int skip_classifier);

/* Saves every parameter and batch-norm statistic as float32 safetensors (torchvision names,
 * conv weights OIHW), atomically: a file already at `path` is replaced only once the new one is
 * complete and synced to disk, so a power cut leaves either the old or the new file. */
et_status et_trainer_save_weights(et_trainer* trainer, const char* path);

/* One optimizer step on a batch: images_nhwc holds exactly `batch` images (shape from
 * et_trainer_input_shape), labels `batch` class indices. The batch is copied into the trainer;
 * lr is the learning rate, finite and >= 0. loss_out (may be NULL) receives the batch's mean
 * cross-entropy before the update. A label outside [0, classes) fails before anything runs
 * (ET_INVALID_ARGUMENT naming the row). A non-finite loss (too high a learning rate) fails with
 * ET_INVALID_ARGUMENT after the update: reload weights before training on. */
et_status et_trainer_step(et_trainer* trainer, const float* images_nhwc, const int32_t* labels,
                          float lr, float* loss_out);

/* The most likely class of each of `count` images, count in [1, eval_batch]. Uses the
 * evaluation schedule (batch norm on its running statistics); the parameters do not change.
 * classes_out receives `count` values. */
et_status et_trainer_predict(et_trainer* trainer, const float* images_nhwc, int32_t count,
                             int32_t* classes_out);

/* The same, returning the raw logits: logits_out receives count * classes floats, row-major. */
et_status et_trainer_predict_logits(et_trainer* trainer, const float* images_nhwc, int32_t count,
                                    float* logits_out);

/* Evaluates `count` labelled images, count in [1, eval_batch]: *correct_out (may be NULL)
 * receives how many were classified correctly, *loss_sum_out (may be NULL) the sum of their
 * cross-entropy losses. Divide by count (over all calls) for accuracy and mean loss. */
et_status et_trainer_evaluate(et_trainer* trainer, const float* images_nhwc, const int32_t* labels,
                              int32_t count, int64_t* correct_out, double* loss_sum_out);

/* The training batch's shape: shape_out[0..4) = {batch, height, width, channels}. The images
 * of predict/evaluate have the same height, width and channels. */
et_status et_trainer_input_shape(const et_trainer* trainer, int32_t shape_out[4]);

/* Number of classes (the logits per image) and the evaluation batch. Either may be NULL. */
et_status et_trainer_outputs(const et_trainer* trainer, int32_t* classes_out, int32_t* eval_batch_out);

/* Memory the trainer holds. The byte counts are what et_trainer_create allocated (planned
 * before allocating, from the schedules' exact layouts); the peak comes from the training
 * schedule's memory simulation, which the executor follows byte for byte. Set struct_size first:
 *   et_memory_info m = { sizeof(m) };  et_trainer_memory(t, &m);
 * The library writes only the fields that fit in struct_size. */
typedef struct et_memory_info {
  size_t struct_size;
  uint64_t arena_bytes;           /* the training arena (activations, gradients, workspace, batch) */
  uint64_t eval_arena_bytes;      /* what evaluation needs of the arena (it runs in the training
                                     arena's block, which has the larger of the two sizes) */
  uint64_t parameter_bytes;       /* parameters and batch-norm statistics */
  uint64_t optimizer_state_bytes; /* momentum or Adam moments of the trainable parameters */
  uint64_t total_bytes;           /* parameters + optimizer state + the larger of the two arenas:
                                     the trainer's memory besides small bookkeeping */
  uint64_t simulated_peak_bytes;  /* most bytes live during a training step: parameters,
                                     optimizer state and the arena values live at that moment */
  /* The arena values live at that peak, by kind: */
  uint64_t peak_activation_bytes;        /* forward values kept for backward or in use */
  uint64_t peak_packed_activation_bytes; /* activations stored compressed (bitmaps, ReLU masks) */
  uint64_t peak_gradient_bytes;
  uint64_t peak_workspace_bytes;
  int64_t parameters;             /* floats in parameters and batch-norm statistics */
  int64_t trainable_parameters;   /* floats that the optimizer updates */
  int64_t steps;                  /* optimizer steps taken so far */
} et_memory_info;

et_status et_trainer_memory(const et_trainer* trainer, et_memory_info* info);

/* ---------------------------------------------------------------------------------------- */
/* Datasets: IDX (MNIST / Fashion-MNIST) loading and batch preprocessing                    */
/* ---------------------------------------------------------------------------------------- */

/* Labelled images held in memory as loaded (8-bit pixels for IDX). */
typedef struct et_dataset et_dataset;

/* Reads an IDX images file and its labels file (gzip-compressed or raw). limit >= 0 keeps only
 * the first `limit` images; -1 keeps all. Every label must be below `classes`. On failure *out
 * is NULL and the message names the file and what is wrong with it. */
et_status et_dataset_load_idx(const char* images_path, const char* labels_path, int32_t classes,
                              int64_t limit, et_dataset** out);

/* Fashion-MNIST (or MNIST) from a directory holding train-images-idx3-ubyte.gz,
 * train-labels-idx1-ubyte.gz, t10k-*: train nonzero reads the training split, zero the test
 * split. dir NULL: /usr/share/datasets/fashion-mnist/ (Debian's dataset-fashion-mnist). */
et_status et_dataset_load_fashion_mnist(const char* dir, int train, int64_t limit, et_dataset** out);

void et_dataset_destroy(et_dataset* dataset);

typedef struct et_dataset_info {
  int64_t count;     /* images */
  int32_t height;    /* as stored, before preprocessing */
  int32_t width;
  int32_t channels;
  int32_t classes;
} et_dataset_info;

et_status et_dataset_info_get(const et_dataset* dataset, et_dataset_info* info);

/* How stored images become a model's input, per pixel in this order: x in [0, 1] -> zero-pad
 * `pad` pixels each side -> [random crop / flip] -> gray replicated to out_channels ->
 * (x - mean[c]) / std[c]. Fill with et_preprocess_init, then change fields. */
typedef struct et_preprocess {
  size_t struct_size;      /* sizeof(et_preprocess), set by et_preprocess_init */
  int32_t pad;             /* zero pixels added on each side (Fashion-MNIST 28 -> 32: 2) */
  int32_t out_channels;    /* 1 or 3 */
  float mean[3];           /* per output channel, in [0, 1] units */
  float std[3];            /* per output channel, > 0 */
  int32_t random_flip;     /* nonzero: random horizontal flip (augmentation) */
  int32_t random_crop_pad; /* > 0: random shift by up to this many pixels, zero fill */
} et_preprocess;

/* preset: "none" or NULL (no padding, 3 channels, mean 0, std 1), "fashion-mnist" (pad 2, 3
 * channels, mean 0.2860, std 0.3530: 28x28 gray -> 32x32x3) or "imagenet" (3 channels,
 * ImageNet mean and std). */
et_status et_preprocess_init(et_preprocess* pre, const char* preset);

/* The shape one preprocessed image has: shape_out[0..3) = {height, width, channels}. */
et_status et_dataset_image_shape(const et_dataset* dataset, const et_preprocess* pre,
                                 int32_t shape_out[3]);

/* Writes images indices[0..count) of the dataset, preprocessed, into images_nhwc (count *
 * height * width * channels floats of et_dataset_image_shape; images_capacity is the buffer's
 * size in floats and must hold them) and their labels into labels_out (count values; may be
 * NULL). aug_seed drives the random crop and flip: pass a different value per step. */
et_status et_dataset_fill_batch(const et_dataset* dataset, const et_preprocess* pre,
                                const int64_t* indices, int32_t count, uint64_t aug_seed,
                                float* images_nhwc, size_t images_capacity, int32_t* labels_out);

/* A permutation of [0, n) into out[0..n) that depends only on (seed, epoch): a shuffled epoch
 * order that a resumed run reproduces. */
et_status et_epoch_permutation(int64_t n, uint64_t seed, int64_t epoch, int64_t* out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EDGETRAIN_EDGETRAIN_H_ */
