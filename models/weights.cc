// load_weights / save_weights: check a safetensors file against the model's ParamSpecs, then
// copy tensors in or out, transposing conv weights between OIHW (disk) and OHWI (memory).
#include "models/weights.h"

#include <memory>
#include <new>
#include <unordered_set>

#include "models/safetensors.h"

namespace edgetrain {

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// "a, b, c, d, e and 3 more": enough names to act on without flooding the terminal.
std::string list_names(const std::vector<std::string>& names) {
  constexpr size_t kShown = 5;
  std::string s;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > kShown) s += " and " + std::to_string(names.size() - kShown) + " more";
  return s;
}

bool has_prefix(const std::string& name, const std::vector<std::string>& prefixes) {
  for (const std::string& p : prefixes)
    if (name.compare(0, p.size(), p) == 0) return true;
  return false;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Conv weight dimensions: O output channels, I input channels per group, KH x KW kernel.
struct ConvDims {
  int64_t o, i, kh, kw;
};
ConvDims conv_dims(const ParamSpec& spec) {  // spec.shape is OHWI
  return {spec.shape[0], spec.shape[3], spec.shape[1], spec.shape[2]};
}

void oihw_to_ohwi(const float* src, float* dst, ConvDims d) {
  for (int64_t o = 0; o < d.o; ++o)
    for (int64_t i = 0; i < d.i; ++i)
      for (int64_t h = 0; h < d.kh; ++h)
        for (int64_t w = 0; w < d.kw; ++w)
          dst[((o * d.kh + h) * d.kw + w) * d.i + i] = src[((o * d.i + i) * d.kh + h) * d.kw + w];
}

void ohwi_to_oihw(const float* src, float* dst, ConvDims d) {
  for (int64_t o = 0; o < d.o; ++o)
    for (int64_t i = 0; i < d.i; ++i)
      for (int64_t h = 0; h < d.kh; ++h)
        for (int64_t w = 0; w < d.kw; ++w)
          dst[((o * d.i + i) * d.kh + h) * d.kw + w] = src[((o * d.kh + h) * d.kw + w) * d.i + i];
}

Status check_conv_spec(const ParamSpec& spec) {
  if (spec.shape.rank != 4)
    return internal_error("parameter '" + spec.name + "' is marked as a conv weight but has shape " +
                          spec.shape.to_string());
  return Status::ok();
}

// Scratch for one conv weight at a time: the largest one decides the size (a few MB at most).
Result<std::unique_ptr<float[]>> allocate_scratch(int64_t floats, const std::string& path) {
  std::unique_ptr<float[]> p(new (std::nothrow) float[static_cast<size_t>(std::max<int64_t>(floats, 1))]);
  if (p == nullptr)
    return out_of_memory("weights '" + path + "': cannot allocate " + std::to_string(floats * 4) +
                         " bytes to transpose conv weights");
  return p;
}

}  // namespace

std::vector<int64_t> torch_shape(const ParamSpec& spec) {
  if (spec.is_conv_weight && spec.shape.rank == 4) {
    ConvDims d = conv_dims(spec);
    return {d.o, d.i, d.kh, d.kw};
  }
  return std::vector<int64_t>(spec.shape.dims.begin(), spec.shape.dims.begin() + spec.shape.rank);
}

Status load_weights(const std::string& path, ParameterStore& store, const WeightsLoadOptions& options,
                    WeightsLoadReport* report) {
  WeightsLoadReport local;
  WeightsLoadReport& rep = report != nullptr ? *report : local;
  rep = WeightsLoadReport{};
  const std::string where = "weights '" + path + "'";

  ET_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::open(path));
  rep.metadata = file.metadata();

  // 1. Match every parameter of the model with a tensor of the file and check it. Nothing is
  //    written to the store until all checks have passed.
  struct Copy {
    int param;
    const SafetensorsTensorInfo* tensor;
  };
  std::vector<Copy> copies;
  int64_t scratch_floats = 0;
  std::unordered_set<std::string> model_names;
  for (int p = 0; p < store.size(); ++p) {
    const ParamSpec& spec = store.spec(p);
    model_names.insert(spec.name);
    if (spec.is_conv_weight) ET_RETURN_IF_ERROR(check_conv_spec(spec));
    if (has_prefix(spec.name, options.skip_prefixes)) {
      rep.skipped.push_back(spec.name);
      continue;
    }
    const SafetensorsTensorInfo* t = file.find(spec.name);
    if (t == nullptr) {
      rep.missing.push_back(spec.name);
      continue;
    }
    std::vector<int64_t> want = torch_shape(spec);
    if (t->shape != want) {
      if (options.skip_shape_mismatch) {
        rep.skipped.push_back(spec.name);
        continue;
      }
      return invalid_argument(where + ": tensor '" + spec.name + "' has shape " + shape_string(t->shape) +
                              " in the file but the model expects " + shape_string(want) +
                              (spec.is_conv_weight ? " (OIHW)" : ""));
    }
    if (t->dtype != SafetensorsDType::kF32 && t->dtype != SafetensorsDType::kF16 &&
        t->dtype != SafetensorsDType::kBF16)
      return invalid_argument(where + ": tensor '" + spec.name + "' has dtype " + safetensors_dtype_name(t->dtype) +
                              "; parameters load from F32, F16 or BF16");
    if (spec.is_conv_weight) scratch_floats = std::max(scratch_floats, spec.shape.numel());
    copies.push_back({p, t});
  }

  // 2. Tensors of the file the model does not have.
  for (const SafetensorsTensorInfo& t : file.tensors()) {
    if (model_names.count(t.name) != 0) continue;
    // torchvision's batch-norm step counters: edgetrain has no use for them.
    if (ends_with(t.name, ".num_batches_tracked")) continue;
    if (has_prefix(t.name, options.skip_prefixes)) continue;
    rep.unexpected.push_back(t.name);
  }

  if (!rep.missing.empty() && !options.allow_missing)
    return not_found(where + ": " + std::to_string(rep.missing.size()) + " tensor(s) the model needs are missing: " +
                     list_names(rep.missing));
  if (!rep.unexpected.empty() && !options.allow_unexpected)
    return invalid_argument(where + ": " + std::to_string(rep.unexpected.size()) +
                            " tensor(s) in the file are not in the model: " + list_names(rep.unexpected));

  // 3. Copy, transposing conv weights from OIHW to OHWI through one scratch buffer.
  std::unique_ptr<float[]> scratch;
  if (scratch_floats > 0) {
    ET_ASSIGN_OR_RETURN(scratch, allocate_scratch(scratch_floats, path));
  }
  for (const Copy& c : copies) {
    const ParamSpec& spec = store.spec(c.param);
    const int64_t n = spec.shape.numel();
    if (spec.is_conv_weight) {
      ET_RETURN_IF_ERROR(file.read_f32(*c.tensor, scratch.get(), n));
      oihw_to_ohwi(scratch.get(), store.data(c.param), conv_dims(spec));
    } else {
      ET_RETURN_IF_ERROR(file.read_f32(*c.tensor, store.data(c.param), n));
    }
    rep.loaded.push_back(spec.name);
  }
  return Status::ok();
}

Status save_weights(const std::string& path, const ParameterStore& store,
                    const std::map<std::string, std::string>& metadata) {
  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");  // keeps a caller's own "format"

  std::vector<SafetensorsTensorDecl> decls;
  decls.reserve(static_cast<size_t>(store.size()));
  int64_t scratch_floats = 0;
  for (const ParamSpec& spec : store.specs()) {
    if (spec.is_conv_weight) {
      ET_RETURN_IF_ERROR(check_conv_spec(spec));
      scratch_floats = std::max(scratch_floats, spec.shape.numel());
    }
    decls.push_back({spec.name, torch_shape(spec)});
  }
  std::unique_ptr<float[]> scratch;
  if (scratch_floats > 0) {
    ET_ASSIGN_OR_RETURN(scratch, allocate_scratch(scratch_floats, path));
  }

  ET_ASSIGN_OR_RETURN(SafetensorsWriter writer, SafetensorsWriter::create(path, std::move(decls), meta));
  for (int p = 0; p < store.size(); ++p) {
    const ParamSpec& spec = store.spec(p);
    if (spec.is_conv_weight) {
      ohwi_to_oihw(store.data(p), scratch.get(), conv_dims(spec));
      ET_RETURN_IF_ERROR(writer.write(scratch.get(), spec.shape.numel()));
    } else {
      ET_RETURN_IF_ERROR(writer.write(store.data(p), spec.shape.numel()));
    }
  }
  return writer.commit();
}

}  // namespace edgetrain
