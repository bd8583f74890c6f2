// Model weights on disk <-> a ParameterStore, with torchvision's conventions: tensors named as
// torchvision names them (ParamSpec::name, "features.0.0.weight", "layer1.0.bn1.running_mean"),
// conv weights OIHW on disk and OHWI in memory (transposed here, once, at load and at save),
// linear weights [out][in] in both, and torchvision's `*.num_batches_tracked` counters ignored
// (edgetrain does not track them). A torchvision state_dict saved with safetensors loads as is.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runtime/parameter_store.h"
#include "runtime/status.h"

namespace edgetrain {

struct WeightsLoadOptions {
  // Parameters absent from the file keep their current values instead of failing the load.
  bool allow_missing = false;
  // Tensors in the file that the model does not have are ignored instead of failing the load.
  bool allow_unexpected = false;
  // Parameters whose name starts with one of these prefixes are not loaded (they keep their
  // current values) and file tensors with these prefixes are ignored: {"fc."} for ResNet or
  // {"classifier."} for MobileNetV2 retrains a classifier with a different number of classes.
  std::vector<std::string> skip_prefixes;
  // A tensor whose shape differs from the model's is skipped (keeps its value) instead of
  // failing the load: the same effect as skip_prefixes without knowing the classifier's name.
  bool skip_shape_mismatch = false;
};

struct WeightsLoadReport {
  std::vector<std::string> loaded;      // parameters overwritten from the file
  std::vector<std::string> missing;     // not in the file; kept their values (allow_missing)
  std::vector<std::string> unexpected;  // in the file, not in the model; ignored (allow_unexpected)
  std::vector<std::string> skipped;     // by skip_prefixes or skip_shape_mismatch; kept their values
  std::map<std::string, std::string> metadata;  // the file's "__metadata__"
};

// Loads a safetensors file into `store`. Everything is validated (names, shapes in PyTorch
// order, dtypes F32/F16/BF16) before the first parameter is overwritten, so a load that fails
// for any of those reasons leaves the store unchanged; only an I/O error while reading the data
// can leave it partly loaded. Errors name the file and the tensors: missing tensors (up to 5
// listed) are kNotFound, unexpected ones and shape or dtype mismatches kInvalidArgument.
// `report` (optional) is filled also on failure, as far as the check got.
Status load_weights(const std::string& path, ParameterStore& store,
                    const WeightsLoadOptions& options = {}, WeightsLoadReport* report = nullptr);

// Saves every parameter and buffer of `store` as F32 in PyTorch layout (conv weights OIHW),
// atomically: an existing file at `path` is replaced only once the new one is complete and
// synced. `metadata` goes into "__metadata__", with "format": "pt" added unless given (the
// Hugging Face loaders look for it).
Status save_weights(const std::string& path, const ParameterStore& store,
                    const std::map<std::string, std::string>& metadata = {});

// A parameter's shape as stored on disk (PyTorch order): OHWI [O, kh, kw, I/g] becomes OIHW
// [O, I/g, kh, kw] for conv weights; any other shape is unchanged.
std::vector<int64_t> torch_shape(const ParamSpec& spec);

}  // namespace edgetrain
