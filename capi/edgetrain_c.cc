// The C API (include/edgetrain/edgetrain.h) over Trainer, the model zoo, weights and the data
// loaders. Every entry point that can fail runs its body through guarded(): a Status becomes an
// et_status plus this thread's last-error text, and no exception (std::bad_alloc from the STL,
// or anything else) ever crosses into C. The last-error text lives in a fixed thread-local
// buffer, so reporting an out-of-memory error never needs memory.
#include "edgetrain/edgetrain.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/idx.h"
#include "data/transforms.h"
#include "models/model_zoo.h"
#include "models/weights.h"
#include "runtime/text.h"
#include "runtime/blas_env.h"
#include "runtime/freezing.h"
#include "runtime/status.h"
#include "runtime/trainer.h"

#ifndef EDGETRAIN_VERSION
#error "capi/meson.build defines EDGETRAIN_VERSION from the project version"
#endif

using edgetrain::Status;
using edgetrain::StatusCode;

// The C enum mirrors StatusCode value for value: a new code must be added to both.
static_assert(ET_OK == static_cast<int>(StatusCode::kOk));
static_assert(ET_INVALID_ARGUMENT == static_cast<int>(StatusCode::kInvalidArgument));
static_assert(ET_NOT_FOUND == static_cast<int>(StatusCode::kNotFound));
static_assert(ET_CORRUPT_DATA == static_cast<int>(StatusCode::kCorruptData));
static_assert(ET_OUT_OF_MEMORY == static_cast<int>(StatusCode::kOutOfMemory));
static_assert(ET_IO_ERROR == static_cast<int>(StatusCode::kIoError));
static_assert(ET_UNSUPPORTED == static_cast<int>(StatusCode::kUnsupported));
static_assert(ET_INTERNAL == static_cast<int>(StatusCode::kInternal));

struct et_trainer {
  std::unique_ptr<edgetrain::Trainer> trainer;
  edgetrain::ModelSpec spec;
  int64_t image_floats = 0;  // height * width * channels of one input image
};

struct et_dataset {
  edgetrain::Dataset data;
};

namespace {

using namespace edgetrain;

// ---- errors ---------------------------------------------------------------------------------

thread_local char t_last_error[2048];
thread_local char t_blas_summary[1024];
thread_local char t_blas_warning[1024];

void set_error(const char* function, const char* message) {
  std::snprintf(t_last_error, sizeof t_last_error, "%s: %s", function, message);
}

// Runs `body` (returning Status) for the C function `function`: the status becomes an
// et_status and the last-error text; exceptions become ET_OUT_OF_MEMORY or ET_INTERNAL.
template <typename Body>
et_status guarded(const char* function, Body&& body) noexcept {
  try {
    Status s = body();
    if (s.is_ok()) {
      t_last_error[0] = '\0';
      return ET_OK;
    }
    set_error(function, s.message().c_str());
    return static_cast<et_status>(s.code());
  } catch (const std::bad_alloc&) {
    set_error(function, "out of memory");
    return ET_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_error(function, e.what());
    return ET_INTERNAL;
  } catch (...) {
    set_error(function, "unknown exception (a bug in edgetrain)");
    return ET_INTERNAL;
  }
}

Status null_argument(const char* name) { return invalid_argument(std::string(name) + " is NULL"); }
#define ET_C_REQUIRE(ptr) \
  do {                    \
    if ((ptr) == nullptr) return null_argument(#ptr); \
  } while (0)

// ---- extensible structs ---------------------------------------------------------------------

// A struct the caller sized with struct_size: the first `known_size` bytes are what this
// library knows. A smaller struct comes from a caller that did not call the init function (the
// first version of every struct is the smallest there will ever be); a larger one comes from a
// newer header and is accepted only when the fields this library does not know are all zero,
// i.e. left at what a newer init function would call "not used" (as Linux's
// copy_struct_from_user). Copies min(size, known) bytes over `out`, which holds the defaults.
Status read_extensible(const char* what, const void* in, size_t size, size_t min_size, void* out,
                       size_t known_size) {
  if (size < min_size)
    return invalid_argument(std::string(what) + ".struct_size is " + std::to_string(size) + ", at least " +
                            std::to_string(min_size) + " expected: call the init function before setting fields");
  if (size > known_size) {
    const auto* bytes = static_cast<const unsigned char*>(in);
    for (size_t i = known_size; i < size; ++i)
      if (bytes[i] != 0)
        return unsupported(std::string(what) + " has fields this library (edgetrain " EDGETRAIN_VERSION
                           ") does not know, set to nonzero values (struct_size " + std::to_string(size) + " > " +
                           std::to_string(known_size) + "): the program was built against a newer header");
  }
  std::memcpy(out, in, size < known_size ? size : known_size);
  return Status::ok();
}

constexpr size_t kTrainerConfigV1Size = offsetof(et_trainer_config, seed) + sizeof(uint64_t);
constexpr size_t kPreprocessV1Size = offsetof(et_preprocess, random_crop_pad) + sizeof(int32_t);


// ---- trainer --------------------------------------------------------------------------------

Result<TrainerOptions> trainer_options(const et_trainer_config& c) {
  TrainerOptions o;
  if (c.batch < 1) return invalid_argument("batch must be at least 1, got " + std::to_string(c.batch));
  if (c.eval_batch < 0) return invalid_argument("eval_batch must be >= 0 (0: batch), got " + std::to_string(c.eval_batch));
  if (c.threads < 1 || c.threads > 256) return invalid_argument("threads must be in [1, 256], got " + std::to_string(c.threads));
  o.batch = c.batch;
  o.eval_batch = c.eval_batch;
  o.threads = c.threads;
  o.init_seed = c.seed;
  const std::string opt = c.optimizer ? c.optimizer : "sgd";
  if (opt == "sgd") o.config.optimizer.kind = OptimizerKind::kSgd;
  else if (opt == "adamw") o.config.optimizer.kind = OptimizerKind::kAdamW;
  else return invalid_argument("unknown optimizer '" + opt + "' (valid: sgd, adamw)");
  const bool sgd = o.config.optimizer.kind == OptimizerKind::kSgd;
  if (sgd && !(c.momentum >= 0.0f && c.momentum < 1.0f))
    return invalid_argument("momentum must be in [0, 1), got " + std::to_string(c.momentum));
  if (sgd && c.nesterov && c.momentum == 0.0f) return invalid_argument("nesterov needs a momentum > 0");
  if (!(c.weight_decay >= 0.0f) || !std::isfinite(c.weight_decay))
    return invalid_argument("weight_decay must be finite and >= 0, got " + std::to_string(c.weight_decay));
  o.config.optimizer.attrs.momentum = sgd ? c.momentum : 0.0f;
  o.config.optimizer.attrs.nesterov = sgd && c.nesterov != 0;
  o.config.optimizer.attrs.weight_decay = c.weight_decay;
  ET_ASSIGN_OR_RETURN(o.config.freeze.mode, parse_freeze_mode(c.freeze ? c.freeze : "none"));
  if (c.freeze_layers < 0) return invalid_argument("freeze_layers must be >= 0, got " + std::to_string(c.freeze_layers));
  o.config.freeze.frozen_prefix_layers = c.freeze_layers;
  if (c.freeze_patterns) o.config.freeze.frozen_patterns = split_list(c.freeze_patterns);
  return o;
}

Status create_trainer(const et_trainer_config* config, et_trainer** out) {
  ET_C_REQUIRE(out);
  *out = nullptr;
  ET_C_REQUIRE(config);
  et_trainer_config c;
  et_trainer_config_init(&c);
  ET_RETURN_IF_ERROR(read_extensible("et_trainer_config", config, config->struct_size, kTrainerConfigV1Size, &c,
                                     sizeof c));
  if (c.model == nullptr) return invalid_argument("config.model is NULL (valid: " + valid_model_names() + ")");
  ET_ASSIGN_OR_RETURN(ModelSpec spec, parse_model_spec(c.model, c.width, c.classes, c.input_size));
  spec.in_channels = c.channels;
  ET_RETURN_IF_ERROR(validate_model_spec(spec));
  ET_ASSIGN_OR_RETURN(TrainerOptions options, trainer_options(c));

  auto handle = std::make_unique<et_trainer>();
  handle->spec = spec;
  handle->image_floats = int64_t{spec.input_size} * spec.input_size * spec.in_channels;
  GraphFactory factory = [spec](int64_t batch, bool training) { return build_model(spec, batch, training); };
  ET_ASSIGN_OR_RETURN(handle->trainer, Trainer::create(factory, options));
  *out = handle.release();
  return Status::ok();
}

Status check_labels(const int32_t* labels, int64_t n, int classes) {
  for (int64_t i = 0; i < n; ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      return invalid_argument("label " + std::to_string(labels[i]) + " at batch row " + std::to_string(i) +
                              " is outside [0, " + std::to_string(classes) + ")");
  return Status::ok();
}

Status check_count(int32_t count, int64_t eval_batch) {
  if (count < 1 || count > eval_batch)
    return invalid_argument("count " + std::to_string(count) + " is outside [1, " + std::to_string(eval_batch) +
                            "] (eval_batch)");
  return Status::ok();
}

// Copies `count` images (and labels, or 0 when labels is null) into the evaluation slots and
// pads the static batch by repeating row 0: evaluation rows are independent (batch norm uses its
// running statistics), so the padding only keeps the unused rows finite and deterministic.
Result<EvalResult> run_eval(et_trainer* t, const float* images, const int32_t* labels, int32_t count) {
  Trainer& tr = *t->trainer;
  const int64_t n = tr.eval_batch();
  const size_t image_bytes = static_cast<size_t>(t->image_floats) * sizeof(float);
  float* slot = tr.eval_images();
  int32_t* label_slot = tr.eval_labels();
  std::memcpy(slot, images, image_bytes * static_cast<size_t>(count));
  for (int64_t i = count; i < n; ++i) std::memcpy(slot + i * t->image_floats, images, image_bytes);
  for (int64_t i = 0; i < n; ++i) label_slot[i] = labels ? labels[i < count ? i : 0] : 0;
  return tr.eval_step(count);
}

Status predict(et_trainer* trainer, const float* images_nhwc, int32_t count, int32_t* classes_out,
               float* logits_out) {
  ET_C_REQUIRE(trainer);
  ET_C_REQUIRE(images_nhwc);
  ET_RETURN_IF_ERROR(check_count(count, trainer->trainer->eval_batch()));
  ET_RETURN_IF_ERROR(run_eval(trainer, images_nhwc, nullptr, count).status());
  const int classes = trainer->trainer->classes();
  const float* logits = trainer->trainer->eval_executor().logits();
  if (logits_out) std::memcpy(logits_out, logits, sizeof(float) * static_cast<size_t>(count) * static_cast<size_t>(classes));
  if (classes_out) {
    for (int32_t i = 0; i < count; ++i) {
      const float* row = logits + static_cast<int64_t>(i) * classes;
      int best = 0;  // the first maximum, as Trainer::eval_step counts a correct answer
      for (int k = 1; k < classes; ++k)
        if (row[k] > row[best]) best = k;
      classes_out[i] = best;
    }
  }
  return Status::ok();
}

// The tensors of the last layer (the classifier) by name: what skip_classifier leaves alone.
std::vector<std::string> classifier_names(const ParameterStore& store) {
  int last = -1;
  for (const ParamSpec& s : store.specs()) last = std::max(last, s.layer_index);
  std::vector<std::string> names;
  for (const ParamSpec& s : store.specs())
    if (s.layer_index == last) names.push_back(s.name);
  return names;
}

// ---- datasets -------------------------------------------------------------------------------

void from_preprocess(const Preprocess& p, et_preprocess* out) {
  std::memset(out, 0, sizeof *out);
  out->struct_size = sizeof *out;
  out->pad = p.pad;
  out->out_channels = p.out_channels;
  for (int c = 0; c < 3; ++c) {
    out->mean[c] = p.mean[static_cast<size_t>(c)];
    out->std[c] = p.std[static_cast<size_t>(c)];
  }
  out->random_flip = p.random_flip ? 1 : 0;
  out->random_crop_pad = p.random_crop_pad;
}

Status to_preprocess(const et_dataset* d, const et_preprocess* in, Preprocess* out) {
  et_preprocess p;
  from_preprocess(Preprocess{}, &p);
  ET_RETURN_IF_ERROR(read_extensible("et_preprocess", in, in->struct_size, kPreprocessV1Size, &p, sizeof p));
  // Bounds that keep padded sizes far from overflow; real paddings are a few pixels.
  if (p.pad < 0 || p.pad > 1024 || p.random_crop_pad < 0 || p.random_crop_pad > 1024)
    return invalid_argument("preprocess: pad " + std::to_string(p.pad) + " and random_crop_pad " +
                            std::to_string(p.random_crop_pad) + " must be in [0, 1024]");
  out->pad = p.pad;
  out->out_channels = p.out_channels;
  for (int c = 0; c < 3; ++c) {
    out->mean[static_cast<size_t>(c)] = p.mean[c];
    out->std[static_cast<size_t>(c)] = p.std[c];
  }
  out->random_flip = p.random_flip != 0;
  out->random_crop_pad = p.random_crop_pad;
  return check_preprocess(d->data, *out);
}

Status load_dataset(Result<Dataset> loaded, et_dataset** out) {
  if (!loaded.is_ok()) return loaded.status();
  auto handle = std::make_unique<et_dataset>();
  handle->data = std::move(loaded).value();
  *out = handle.release();
  return Status::ok();
}

}  // namespace

// ---- status, errors, library information ----------------------------------------------------

extern "C" {

const char* et_status_name(et_status status) {
  if (status < ET_OK || status > ET_INTERNAL) return "unknown status";
  return status_code_name(static_cast<StatusCode>(status));
}

const char* et_last_error(void) { return t_last_error; }

const char* et_version(void) { return EDGETRAIN_VERSION; }

const char* et_blas_summary(void) {
  try {
    std::snprintf(t_blas_summary, sizeof t_blas_summary, "%s", blas_summary().c_str());
  } catch (...) {
    std::snprintf(t_blas_summary, sizeof t_blas_summary, "OpenBLAS (summary unavailable: out of memory)");
  }
  return t_blas_summary;
}

const char* et_blas_warning(void) {
  try {
    std::snprintf(t_blas_warning, sizeof t_blas_warning, "%s", blas_warning().c_str());
  } catch (...) {
    t_blas_warning[0] = '\0';
  }
  return t_blas_warning;
}

// ---- trainer --------------------------------------------------------------------------------

void et_trainer_config_init(et_trainer_config* config) {
  if (config == nullptr) return;
  std::memset(config, 0, sizeof *config);
  config->struct_size = sizeof *config;
  config->model = "small_cnn";
  config->width = 1.0f;
  config->classes = 10;
  config->input_size = 32;
  config->channels = 3;
  config->batch = 32;
  config->eval_batch = 0;
  config->threads = 2;
  config->optimizer = "sgd";
  config->momentum = 0.9f;
  config->nesterov = 0;
  config->weight_decay = 0.0f;
  config->freeze = "none";
  config->freeze_layers = 0;
  config->freeze_patterns = nullptr;
  config->seed = 1;
}

et_status et_trainer_create(const et_trainer_config* config, et_trainer** out) {
  return guarded("et_trainer_create", [&] { return create_trainer(config, out); });
}

void et_trainer_destroy(et_trainer* trainer) { delete trainer; }

et_status et_trainer_load_weights(et_trainer* trainer, const char* path, int skip_classifier) {
  return guarded("et_trainer_load_weights", [&]() -> Status {
    ET_C_REQUIRE(trainer);
    ET_C_REQUIRE(path);
    WeightsLoadOptions o;
    if (skip_classifier) o.skip_prefixes = classifier_names(trainer->trainer->params());
    return load_weights(path, trainer->trainer->params(), o, nullptr);
  });
}

et_status et_trainer_save_weights(et_trainer* trainer, const char* path) {
  return guarded("et_trainer_save_weights", [&]() -> Status {
    ET_C_REQUIRE(trainer);
    ET_C_REQUIRE(path);
    std::map<std::string, std::string> meta{{"model", describe_model(trainer->spec)},
                                            {"producer", "edgetrain C API " EDGETRAIN_VERSION}};
    return save_weights(path, trainer->trainer->params(), meta);
  });
}

et_status et_trainer_step(et_trainer* trainer, const float* images_nhwc, const int32_t* labels, float lr,
                          float* loss_out) {
  return guarded("et_trainer_step", [&]() -> Status {
    ET_C_REQUIRE(trainer);
    ET_C_REQUIRE(images_nhwc);
    ET_C_REQUIRE(labels);
    if (!std::isfinite(lr) || lr < 0.0f) return invalid_argument("learning rate " + std::to_string(lr) + " must be finite and >= 0");
    Trainer& t = *trainer->trainer;
    // Labels are checked in the caller's buffer, before anything in the trainer changes.
    ET_RETURN_IF_ERROR(check_labels(labels, t.batch(), t.classes()));
    std::memcpy(t.train_images(), images_nhwc, sizeof(float) * static_cast<size_t>(t.batch() * trainer->image_floats));
    std::memcpy(t.train_labels(), labels, sizeof(int32_t) * static_cast<size_t>(t.batch()));
    ET_ASSIGN_OR_RETURN(StepResult r, t.train_step(lr));
    if (loss_out) *loss_out = r.loss;
    return Status::ok();
  });
}

et_status et_trainer_predict(et_trainer* trainer, const float* images_nhwc, int32_t count, int32_t* classes_out) {
  return guarded("et_trainer_predict", [&]() -> Status {
    ET_C_REQUIRE(classes_out);
    return predict(trainer, images_nhwc, count, classes_out, nullptr);
  });
}

et_status et_trainer_predict_logits(et_trainer* trainer, const float* images_nhwc, int32_t count, float* logits_out) {
  return guarded("et_trainer_predict_logits", [&]() -> Status {
    ET_C_REQUIRE(logits_out);
    return predict(trainer, images_nhwc, count, nullptr, logits_out);
  });
}

et_status et_trainer_evaluate(et_trainer* trainer, const float* images_nhwc, const int32_t* labels, int32_t count,
                              int64_t* correct_out, double* loss_sum_out) {
  return guarded("et_trainer_evaluate", [&]() -> Status {
    ET_C_REQUIRE(trainer);
    ET_C_REQUIRE(images_nhwc);
    ET_C_REQUIRE(labels);
    ET_RETURN_IF_ERROR(check_count(count, trainer->trainer->eval_batch()));
    ET_RETURN_IF_ERROR(check_labels(labels, count, trainer->trainer->classes()));
    ET_ASSIGN_OR_RETURN(EvalResult r, run_eval(trainer, images_nhwc, labels, count));
    if (correct_out) *correct_out = r.correct;
    if (loss_sum_out) *loss_sum_out = r.loss_sum;
    return Status::ok();
  });
}

et_status et_trainer_input_shape(const et_trainer* trainer, int32_t shape_out[4]) {
  return guarded("et_trainer_input_shape", [&]() -> Status {
    ET_C_REQUIRE(trainer);
    ET_C_REQUIRE(shape_out);
    const Shape& s = trainer->trainer->input_shape();
    if (s.rank != 4) return internal_error("input shape " + s.to_string() + " is not NHWC");
    for (int i = 0; i < 4; ++i) shape_out[i] = static_cast<int32_t>(s[i]);
    return Status::ok();
  });
}

et_status et_trainer_outputs(const et_trainer* trainer, int32_t* classes_out, int32_t* eval_batch_out) {
  return guarded("et_trainer_outputs", [&]() -> Status {
    ET_C_REQUIRE(trainer);
    if (classes_out) *classes_out = trainer->trainer->classes();
    if (eval_batch_out) *eval_batch_out = static_cast<int32_t>(trainer->trainer->eval_batch());
    return Status::ok();
  });
}

et_status et_trainer_memory(const et_trainer* trainer, et_memory_info* info) {
  return guarded("et_trainer_memory", [&]() -> Status {
    ET_C_REQUIRE(trainer);
    ET_C_REQUIRE(info);
    if (info->struct_size < sizeof(size_t) + sizeof(uint64_t))
      return invalid_argument("et_memory_info.struct_size is " + std::to_string(info->struct_size) +
                              ": set it to sizeof(et_memory_info)");
    const Trainer& t = *trainer->trainer;
    const TrainerMemory& mem = t.memory();
    const MemoryTimeline tl = t.memory_timeline();
    et_memory_info m{};
    m.struct_size = info->struct_size;
    m.arena_bytes = mem.train_arena_bytes;
    m.eval_arena_bytes = mem.eval_arena_bytes;
    m.parameter_bytes = mem.parameter_bytes;
    m.optimizer_state_bytes = mem.optimizer_state_bytes;
    m.total_bytes = mem.total();
    m.simulated_peak_bytes = tl.peak_bytes;
    auto at_peak = [&](MemoryCategory c) { return static_cast<uint64_t>(tl.at_peak[static_cast<size_t>(c)]); };
    m.peak_activation_bytes = at_peak(MemoryCategory::kActivations);
    m.peak_packed_activation_bytes = at_peak(MemoryCategory::kPackedActivations);
    m.peak_gradient_bytes = at_peak(MemoryCategory::kGradients);
    m.peak_workspace_bytes = at_peak(MemoryCategory::kWorkspace);
    m.parameters = const_cast<Trainer&>(t).params().total_floats();  // params() has no const overload
    m.trainable_parameters = t.trainable_param_count();
    m.steps = t.optimizer_steps();
    // A caller built against an older header has a shorter struct: write only what it has.
    std::memcpy(info, &m, info->struct_size < sizeof m ? info->struct_size : sizeof m);
    return Status::ok();
  });
}

// ---- datasets -------------------------------------------------------------------------------

et_status et_dataset_load_idx(const char* images_path, const char* labels_path, int32_t classes, int64_t limit,
                              et_dataset** out) {
  return guarded("et_dataset_load_idx", [&]() -> Status {
    ET_C_REQUIRE(out);
    *out = nullptr;
    ET_C_REQUIRE(images_path);
    ET_C_REQUIRE(labels_path);
    if (classes < 1) return invalid_argument("classes must be at least 1, got " + std::to_string(classes));
    if (limit < -1) return invalid_argument("limit must be -1 (all) or >= 0, got " + std::to_string(limit));
    return load_dataset(load_idx(images_path, labels_path, classes, limit), out);
  });
}

et_status et_dataset_load_fashion_mnist(const char* dir, int train, int64_t limit, et_dataset** out) {
  return guarded("et_dataset_load_fashion_mnist", [&]() -> Status {
    ET_C_REQUIRE(out);
    *out = nullptr;
    if (limit < -1) return invalid_argument("limit must be -1 (all) or >= 0, got " + std::to_string(limit));
    return load_dataset(load_fashion_mnist(dir ? dir : kDefaultFashionMnistDir, train ? Split::kTrain : Split::kTest,
                                           limit),
                        out);
  });
}

void et_dataset_destroy(et_dataset* dataset) { delete dataset; }

et_status et_dataset_info_get(const et_dataset* dataset, et_dataset_info* info) {
  return guarded("et_dataset_info_get", [&]() -> Status {
    ET_C_REQUIRE(dataset);
    ET_C_REQUIRE(info);
    const Dataset& d = dataset->data;
    info->count = d.size();
    info->height = d.height();
    info->width = d.width();
    info->channels = d.channels();
    info->classes = d.num_classes();
    return Status::ok();
  });
}

et_status et_preprocess_init(et_preprocess* pre, const char* preset) {
  return guarded("et_preprocess_init", [&]() -> Status {
    ET_C_REQUIRE(pre);
    const std::string name = preset ? preset : "none";
    Preprocess p;
    if (name == "none") p = Preprocess{};
    else if (name == "fashion-mnist") p = fashion_mnist_preprocess();
    else if (name == "imagenet") p = imagenet_preprocess();
    else return invalid_argument("unknown preprocess preset '" + name + "' (valid: none, fashion-mnist, imagenet)");
    from_preprocess(p, pre);
    return Status::ok();
  });
}

et_status et_dataset_image_shape(const et_dataset* dataset, const et_preprocess* pre, int32_t shape_out[3]) {
  return guarded("et_dataset_image_shape", [&]() -> Status {
    ET_C_REQUIRE(dataset);
    ET_C_REQUIRE(pre);
    ET_C_REQUIRE(shape_out);
    Preprocess p;
    ET_RETURN_IF_ERROR(to_preprocess(dataset, pre, &p));
    shape_out[0] = static_cast<int32_t>(output_height(dataset->data, p));
    shape_out[1] = static_cast<int32_t>(output_width(dataset->data, p));
    shape_out[2] = p.out_channels;
    return Status::ok();
  });
}

et_status et_dataset_fill_batch(const et_dataset* dataset, const et_preprocess* pre, const int64_t* indices,
                                int32_t count, uint64_t aug_seed, float* images_nhwc, size_t images_capacity,
                                int32_t* labels_out) {
  return guarded("et_dataset_fill_batch", [&]() -> Status {
    ET_C_REQUIRE(dataset);
    ET_C_REQUIRE(pre);
    ET_C_REQUIRE(indices);
    ET_C_REQUIRE(images_nhwc);
    const Dataset& d = dataset->data;
    Preprocess p;
    ET_RETURN_IF_ERROR(to_preprocess(dataset, pre, &p));
    if (count < 1) return invalid_argument("count must be at least 1, got " + std::to_string(count));
    const uint64_t need = static_cast<uint64_t>(count) * static_cast<uint64_t>(floats_per_image(d, p));
    if (images_capacity < need)
      return invalid_argument("images buffer holds " + std::to_string(images_capacity) + " floats; " +
                              std::to_string(count) + " images need " + std::to_string(need));
    for (int32_t k = 0; k < count; ++k)
      if (indices[k] < 0 || indices[k] >= d.size())
        return invalid_argument("indices[" + std::to_string(k) + "] = " + std::to_string(indices[k]) +
                                " is outside the dataset [0, " + std::to_string(d.size()) + ")");
    fill_batch(d, indices, count, p, images_nhwc, labels_out, aug_seed);
    return Status::ok();
  });
}

et_status et_epoch_permutation(int64_t n, uint64_t seed, int64_t epoch, int64_t* out) {
  return guarded("et_epoch_permutation", [&]() -> Status {
    if (n < 0) return invalid_argument("n must be >= 0, got " + std::to_string(n));
    if (n > 0) ET_C_REQUIRE(out);
    if (n > 0) epoch_permutation(n, seed, epoch, out);
    return Status::ok();
  });
}

}  // extern "C"
