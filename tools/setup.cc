#include "tools/setup.h"

#include <sys/stat.h>

#include "data/idx.h"
#include "data/image_folder.h"
#include "models/weights.h"
#include "runtime/text.h"
#include "runtime/blas_env.h"
#include "runtime/freezing.h"

namespace edgetrain::cli {

namespace {
bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}
bool has_idx_files(const std::string& dir) {
  return exists(dir + "/train-images-idx3-ubyte.gz") || exists(dir + "/train-images-idx3-ubyte");
}
}  // namespace

void add_model_options(ArgParser& p) {
  p.option("model", "NAME", "mobilenet_v2", "small_cnn, mobilenet_v2, resnet18, resnet34 or resnet50");
  p.option("width", "W", "1.0", "MobileNetV2 width multiplier");
  p.option("weights", "FILE", "", "initial weights (safetensors, torchvision names)");
  p.flag("skip-classifier", "do not load the last layer from --weights (a different class count)");
  p.option("threads", "N", "2", "threads for kernels and OpenBLAS");
  p.option("seed", "N", "1", "seed for initialisation, shuffling and augmentation");
}

void add_data_options(ArgParser& p) {
  p.option("data", "SRC", "fashion-mnist",
           "fashion-mnist[:DIR] (IDX files, default dir /usr/share/datasets/fashion-mnist), a directory of "
           "IDX files, or an image folder (DIR/train and DIR/val, or DIR/<class>/<image>)");
  p.option("limit", "N", "-1", "use only the first N training images");
  p.option("test-limit", "N", "-1", "use only the first N test images");
  p.option("image-size", "PX", "224", "image folders: side of the center crop the model sees");
  p.flag("augment", "random crop (padding 4) and horizontal flip while training");
  p.option("subset", "N", "-1", "train on a fixed random subset of N training images (seed 42, as the PyTorch peer)");
  p.option("shift", "SPEC", "none",
           "apply a domain shift to training and test images: 'fmnist' = rotate 90 ccw, invert, Gaussian noise 0.2 "
           "(the peer's retraining task; train noise seed 1234, test 5678), or 'noise=S' for noise only");
}

void add_training_options(ArgParser& p) {
  p.option("epochs", "N", "1", "passes over the training set");
  p.option("batch", "N", "32", "batch size");
  p.option("optimizer", "NAME", "sgd", "sgd or adamw");
  p.option("lr", "X", "0.01", "peak learning rate");
  p.option("schedule", "SPEC", "cosine", "learning-rate schedule: constant, cosine[:warmup=N,min_lr=X], step:every=N[,gamma=X]");
  p.option("momentum", "X", "0.9", "SGD momentum");
  p.flag("nesterov", "Nesterov momentum");
  p.option("weight-decay", "X", "0", "L2 (SGD) or decoupled (AdamW) weight decay");
  p.option("freeze", "MODE", "none", "none, bias-only, norm-only, norm-and-bias or classifier-only");
  p.option("freeze-layers", "K", "0", "freeze the first K layers (conv, batch norm and linear layers count)");
  p.option("freeze-suffix", "K", "0", "freeze the K layers before the classifier (the early layers and the classifier train)");
  p.option("freeze-pattern", "GLOBS", "", "comma-separated parameter-name globs to freeze, e.g. 'features.1*,*.bias'");
  p.option("micro-batches", "K", "1", "run each batch as K micro-batches with gradient accumulation");
  p.option("checkpoint", "SPEC", "none",
           "gradient checkpointing: none, sqrt (about sqrt(n) segments of equal activation bytes), sqrt:S "
           "(S segments), manual:C1,C2,... (cut-point indices), budget:BYTES (see edgetrain memory)");
  p.flag("relu-masks", "ReLU/ReLU6 backward reads a 1-bit mask instead of the saved float output");
  p.flag("keep-norm-outputs",
         "keep batch-norm outputs for backward instead of recomputing them from the norm's input (the default: one pass each)");
  p.flag("sparse-activations", "store saved post-ReLU activations as bitmap + nonzeros (BitTrain)");
  p.option("capacity", "X", "0.6",
           "packed slots hold X of the elements as nonzeros; a denser batch re-runs on a fallback schedule");
}

Result<CheckpointConfig> parse_checkpoint(const std::string& spec) {
  CheckpointConfig c;
  std::string kind = spec.substr(0, spec.find(':'));
  std::string arg = spec.find(':') == std::string::npos ? "" : spec.substr(spec.find(':') + 1);
  auto to_int = [&](const std::string& t) -> Result<int> {
    char* end = nullptr;
    long v = std::strtol(t.c_str(), &end, 10);
    if (t.empty() || *end != '\0' || v < 0) return invalid_argument("--checkpoint '" + spec + "': '" + t + "' is not a count");
    return static_cast<int>(v);
  };
  if (kind == "none" && arg.empty()) return c;
  if (kind == "sqrt") {
    c.mode = CheckpointMode::kSqrtBytes;
    if (!arg.empty()) {
      ET_ASSIGN_OR_RETURN(c.segments, to_int(arg));
    }
    return c;
  }
  if (kind == "manual") {
    c.mode = CheckpointMode::kManual;
    for (const std::string& t : split_list(arg)) {
      ET_ASSIGN_OR_RETURN(int b, to_int(t));
      c.boundaries.push_back(b);
    }
    if (c.boundaries.empty()) return invalid_argument("--checkpoint manual: needs cut-point indices, e.g. manual:3,8,12");
    return c;
  }
  if (kind == "budget") {
    c.mode = CheckpointMode::kBudget;
    ET_ASSIGN_OR_RETURN(uint64_t b, parse_bytes(arg));
    c.budget_bytes = static_cast<int64_t>(b);
    return c;
  }
  return invalid_argument("--checkpoint '" + spec + "': use none, sqrt, sqrt:S, manual:C1,C2,... or budget:BYTES");
}

Result<DataChoice> load_data(const ArgParser& p, bool need_train) {
  DataChoice d;
  std::string src = p.str("data");
  ET_ASSIGN_OR_RETURN(int64_t limit, p.integer("limit"));
  ET_ASSIGN_OR_RETURN(int64_t test_limit, p.integer("test-limit"));
  bool augment = p.has("augment");
  std::string idx_dir;
  if (src == "fashion-mnist") idx_dir = kDefaultFashionMnistDir;
  else if (src.rfind("fashion-mnist:", 0) == 0) idx_dir = src.substr(14);
  else if (is_dir(src) && has_idx_files(src)) idx_dir = src;
  if (!idx_dir.empty()) {
    if (need_train) {
      ET_ASSIGN_OR_RETURN(d.train, load_fashion_mnist(idx_dir, Split::kTrain, limit));
    }
    ET_ASSIGN_OR_RETURN(d.test, load_fashion_mnist(idx_dir, Split::kTest, test_limit));
    d.eval_pre = fashion_mnist_preprocess();
    d.description = "Fashion-MNIST (" + idx_dir + ")";
  } else {
    if (!is_dir(src))
      return not_found("--data '" + src + "': not 'fashion-mnist', not a directory of IDX files, not an image folder");
    ET_ASSIGN_OR_RETURN(int64_t size, p.integer("image-size"));
    if (size < 8 || size > 1024) return invalid_argument("--image-size must be in [8, 1024], got " + std::to_string(size));
    ImageFolderOptions o;
    o.crop_size = static_cast<int>(size);
    o.resize_shorter_side = static_cast<int>(size * 256 / 224);
    std::string train_dir = is_dir(src + "/train") ? src + "/train" : src;
    std::string test_dir = is_dir(src + "/val") ? src + "/val" : is_dir(src + "/test") ? src + "/test" : "";
    if (need_train) {
      ET_ASSIGN_OR_RETURN(d.train, load_image_folder(train_dir, o));
      if (limit >= 0 && limit < d.train.size()) d.train.truncate(limit);
    }
    if (!test_dir.empty()) {
      ET_ASSIGN_OR_RETURN(d.test, load_image_folder(test_dir, o));
      if (test_limit >= 0 && test_limit < d.test.size()) d.test.truncate(test_limit);
    }
    d.eval_pre = imagenet_preprocess();
    d.description = "image folder " + src;
  }
  ET_ASSIGN_OR_RETURN(int64_t subset_n, p.integer("subset"));
  if (subset_n > 0 && need_train) {
    if (subset_n > d.train.size())
      return invalid_argument("--subset " + std::to_string(subset_n) + " is larger than the training set (" +
                              std::to_string(d.train.size()) + " images)");
    ET_ASSIGN_OR_RETURN(d.train, subset(d.train, subset_n, 42));
  }
  std::string shift = p.str("shift");
  if (shift != "none") {
    DomainShift ds;
    if (shift == "fmnist") {
      // defaults: rotate, invert, noise 0.2
    } else if (shift.rfind("noise=", 0) == 0) {
      ds.rotate90_ccw = false;
      ds.invert = false;
      char* end = nullptr;
      ds.noise_sigma = std::strtof(shift.c_str() + 6, &end);
      if (*end != '\0' || ds.noise_sigma < 0) return invalid_argument("--shift '" + shift + "': noise=S needs S >= 0");
    } else {
      return invalid_argument("--shift '" + shift + "': use none, fmnist or noise=S");
    }
    if (need_train) {
      ds.seed = 1234;
      ET_ASSIGN_OR_RETURN(d.train, apply_domain_shift(d.train, ds));
    }
    if (d.test.size() > 0) {
      ds.seed = 5678;
      ET_ASSIGN_OR_RETURN(d.test, apply_domain_shift(d.test, ds));
    }
    d.description += ", shifted (" + shift + ")";
  }
  d.train_pre = d.eval_pre;
  if (augment) {
    d.train_pre.random_flip = true;
    d.train_pre.random_crop_pad = 4;
  }
  return d;
}

Result<ModelSpec> model_spec(const ArgParser& p, int classes, int input_size, int channels) {
  ET_ASSIGN_OR_RETURN(double width, p.number("width"));
  ET_ASSIGN_OR_RETURN(ModelSpec spec, parse_model_spec(p.str("model"), static_cast<float>(width), classes, input_size));
  spec.in_channels = channels;
  return spec;
}

GraphFactory graph_factory(const ModelSpec& spec) {
  return [spec](int64_t batch, bool training) { return build_model(spec, batch, training); };
}

Result<TrainerOptions> trainer_options(const ArgParser& p) {
  TrainerOptions o;
  ET_ASSIGN_OR_RETURN(o.batch, p.integer("batch"));
  if (o.batch <= 0) return invalid_argument("--batch must be positive");
  ET_ASSIGN_OR_RETURN(int64_t threads, p.integer("threads"));
  if (threads <= 0 || threads > 256) return invalid_argument("--threads must be in [1, 256]");
  o.threads = static_cast<int>(threads);
  o.eval_batch = std::max<int64_t>(o.batch, 64);
  ET_ASSIGN_OR_RETURN(int64_t seed, p.integer("seed"));
  o.init_seed = static_cast<uint64_t>(seed);
  std::string opt = p.str("optimizer");
  if (opt == "sgd") o.config.optimizer.kind = OptimizerKind::kSgd;
  else if (opt == "adamw") o.config.optimizer.kind = OptimizerKind::kAdamW;
  else return invalid_argument("--optimizer '" + opt + "': use sgd or adamw");
  ET_ASSIGN_OR_RETURN(double momentum, p.number("momentum"));
  ET_ASSIGN_OR_RETURN(double wd, p.number("weight-decay"));
  if (momentum < 0 || momentum >= 1) return invalid_argument("--momentum must be in [0, 1)");
  if (wd < 0) return invalid_argument("--weight-decay must be >= 0");
  o.config.optimizer.attrs.momentum = o.config.optimizer.kind == OptimizerKind::kSgd ? static_cast<float>(momentum) : 0.0f;
  o.config.optimizer.attrs.nesterov = p.has("nesterov");
  if (o.config.optimizer.attrs.nesterov && momentum == 0) return invalid_argument("--nesterov needs a momentum > 0");
  o.config.optimizer.attrs.weight_decay = static_cast<float>(wd);
  ET_ASSIGN_OR_RETURN(o.config.freeze.mode, parse_freeze_mode(p.str("freeze")));
  ET_ASSIGN_OR_RETURN(int64_t layers, p.integer("freeze-layers"));
  o.config.freeze.frozen_prefix_layers = static_cast<int>(layers);
  ET_ASSIGN_OR_RETURN(int64_t suffix, p.integer("freeze-suffix"));
  o.config.freeze.frozen_suffix_layers = static_cast<int>(suffix);
  o.config.freeze.frozen_patterns = split_list(p.str("freeze-pattern"));
  ET_ASSIGN_OR_RETURN(int64_t micro, p.integer("micro-batches"));
  if (micro < 1 || micro > o.batch) return invalid_argument("--micro-batches must be in [1, batch]");
  if (o.batch % micro != 0)
    return invalid_argument("--batch " + std::to_string(o.batch) + " does not split into " + std::to_string(micro) +
                            " equal micro-batches");
  o.config.micro_batches = static_cast<int>(micro);
  ET_ASSIGN_OR_RETURN(o.config.checkpoint, parse_checkpoint(p.str("checkpoint")));
  o.config.compression.relu_masks = p.has("relu-masks");
  o.config.compression.recompute_norm_outputs = !p.has("keep-norm-outputs");
  o.config.compression.sparse_activations = p.has("sparse-activations");
  ET_ASSIGN_OR_RETURN(double capacity, p.number("capacity"));
  if (capacity <= 0 || capacity > 1) return invalid_argument("--capacity must be in (0, 1]");
  o.config.compression.capacity = static_cast<float>(capacity);
  return o;
}

Result<LrSchedule> lr_schedule(const ArgParser& p) {
  ET_ASSIGN_OR_RETURN(LrSchedule s, parse_lr_schedule(p.str("schedule")));
  ET_ASSIGN_OR_RETURN(double lr, p.number("lr"));
  if (lr <= 0) return invalid_argument("--lr must be positive");
  s.base_lr = static_cast<float>(lr);
  ET_RETURN_IF_ERROR(validate_lr_schedule(s));
  return s;
}

Status load_initial_weights(const ArgParser& p, ParameterStore& params) {
  std::string path = p.str("weights");
  if (path.empty()) return Status::ok();
  WeightsLoadOptions o;
  if (p.has("skip-classifier")) {
    // The classifier is the last layer: skip every tensor of it.
    int last = -1;
    for (const ParamSpec& s : params.specs()) last = std::max(last, s.layer_index);
    for (const ParamSpec& s : params.specs())
      if (s.layer_index == last) o.skip_prefixes.push_back(s.name);
  }
  return load_weights(path, params, o, nullptr);
}

Status load_initial_weights(const ArgParser& p, Trainer& t) { return load_initial_weights(p, t.params()); }

Status reset_model_parameters(const ArgParser& p, ParameterStore& params) {
  ET_ASSIGN_OR_RETURN(int64_t seed, p.integer("seed"));
  params.initialize(static_cast<uint64_t>(seed));
  return load_initial_weights(p, params);
}

Result<ParameterStore> load_model_parameters(const ArgParser& p, const GraphFactory& factory, int64_t batch) {
  ET_ASSIGN_OR_RETURN(Graph g, factory(batch, /*training=*/true));
  ET_ASSIGN_OR_RETURN(ParameterStore params, ParameterStore::create(g.params));
  ET_RETURN_IF_ERROR(reset_model_parameters(p, params));
  return params;
}

JsonValue memory_json(const Trainer& t) {
  MemoryTimeline tl = t.memory_timeline();
  JsonValue m = JsonValue::object();
  m.set("arena_bytes", static_cast<int64_t>(tl.arena_bytes));
  m.set("parameter_bytes", static_cast<int64_t>(tl.parameter_bytes));
  m.set("simulated_peak_bytes", static_cast<int64_t>(tl.peak_bytes));
  JsonValue at_peak = JsonValue::object();
  for (int c = 0; c < kMemoryCategoryCount; ++c)
    at_peak.set(memory_category_name(static_cast<MemoryCategory>(c)), static_cast<int64_t>(tl.at_peak[static_cast<size_t>(c)]));
  m.set("at_peak", std::move(at_peak));
  return m;
}

}  // namespace edgetrain::cli
