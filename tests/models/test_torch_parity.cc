// Whole-model check against PyTorch: the loss, logits and every parameter gradient of one
// training step, then the losses and weights over 3 SGD steps, for the small CNN and
// MobileNetV2 (width 0.35, 32x32), from the fixture tests/fixtures/make_torch_fixture.py writes.
// Exit codes: 0 pass, 1 mismatch, 77 (meson: skipped) when the fixture is absent.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "models/model_zoo.h"
#include "models/safetensors.h"
#include "models/weights.h"
#include "runtime/trainer.h"

namespace edgetrain {
namespace {

int g_failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++g_failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

// max |a - b| / max |b| over the tensor: relative to the tensor's scale, as the fixture's noise.
double tensor_error(const float* a, const std::vector<float>& b, double min_scale = 1e-30) {
  double diff = 0, scale = min_scale;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return std::isfinite(diff) ? diff / scale : INFINITY;
}

// torch layout -> edgetrain layout (conv weights OIHW -> OHWI).
std::vector<float> to_edgetrain(const ParamSpec& spec, const std::vector<float>& torch) {
  if (!spec.is_conv_weight) return torch;
  int64_t o = spec.shape[0], kh = spec.shape[1], kw = spec.shape[2], i = spec.shape[3];
  std::vector<float> out(torch.size());
  for (int64_t a = 0; a < o; ++a)
    for (int64_t c = 0; c < i; ++c)
      for (int64_t y = 0; y < kh; ++y)
        for (int64_t x = 0; x < kw; ++x) out[((a * kh + y) * kw + x) * i + c] = torch[((a * i + c) * kh + y) * kw + x];
  return out;
}

ValueId grad_value(const Graph& g, ValueId param) {
  for (size_t i = 0; i < g.values.size(); ++i)
    if (g.values[i].role == ValueRole::kGradient && g.values[i].grad_of == param) return static_cast<ValueId>(i);
  return kNoValue;
}

bool run_case(const std::string& dir, const ModelSpec& spec, int64_t batch, bool check_later_steps) {
  std::printf("== %s\n", dir.c_str());
  auto die = [&](const Status& s) {
    std::printf("FAIL %s: %s\n", dir.c_str(), s.to_string().c_str());
    ++g_failures;
    return false;
  };
  Result<SafetensorsReader> input = SafetensorsReader::open(dir + "/input.safetensors");
  if (!input.is_ok()) return die(input.status());
  Result<SafetensorsReader> expected = SafetensorsReader::open(dir + "/expected.safetensors");
  if (!expected.is_ok()) return die(expected.status());

  TrainerOptions o;
  o.batch = batch;
  o.threads = 2;
  o.config.optimizer.attrs.momentum = 0.9f;
  o.config.optimizer.attrs.weight_decay = 1e-4f;
  o.config.retain_parameter_gradients = true;
  GraphFactory factory = [spec](int64_t b, bool training) { return build_model(spec, b, training); };
  Result<std::unique_ptr<Trainer>> tr = Trainer::create(factory, o);
  if (!tr.is_ok()) return die(tr.status());
  Trainer& t = **tr;
  if (Status s = load_weights(dir + "/weights.safetensors", t.params()); !s.is_ok()) return die(s);

  Result<std::vector<float>> x = input->read_f32("input");
  if (!x.is_ok()) return die(x.status());
  if (static_cast<int64_t>(x->size()) != t.input_shape().numel())
    return die(invalid_argument("input has " + std::to_string(x->size()) + " floats, model wants " + t.input_shape().to_string()));
  const SafetensorsTensorInfo* labels_info = input->find("labels");
  if (labels_info == nullptr) return die(not_found("labels"));
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  if (Status s = input->read_i64(*labels_info, labels.data(), batch); !s.is_ok()) return die(s);

  auto noise = [&](const char* group) {
    Result<std::vector<float>> n = expected->read_f32(std::string("noise.") + group);
    return n.is_ok() ? static_cast<double>((*n)[0]) : 0.0;
  };
  // Tolerance: 1e-4 relative, or 20x what float32 rounding alone moves torch's own results.
  auto tol = [&](const char* group) { return std::max(1e-4, 20 * noise(group)); };

  Result<std::vector<float>> step_loss = expected->read_f32("step_loss");
  if (!step_loss.is_ok()) return die(step_loss.status());
  int steps = check_later_steps ? 3 : 1;
  for (int step = 0; step < steps; ++step) {
    std::memcpy(t.train_images(), x->data(), x->size() * sizeof(float));
    for (int64_t i = 0; i < batch; ++i) t.train_labels()[i] = static_cast<int32_t>(labels[static_cast<size_t>(i)]);
    Result<StepResult> r = t.train_step(0.1f);
    if (!r.is_ok()) return die(r.status());
    double want = (*step_loss)[static_cast<size_t>(step)];
    double err = std::fabs(r->loss - want) / std::max(1e-30, std::fabs(want));
    std::printf("step %d loss %.7f torch %.7f rel error %.2e\n", step + 1, r->loss, want, err);
    check(err <= tol("step_loss"), dir + ": loss of step " + std::to_string(step + 1));
    if (step > 0) continue;
    // Logits and gradients of the first step.
    Result<std::vector<float>> logits = expected->read_f32("logits");
    if (!logits.is_ok()) return die(logits.status());
    double le = tensor_error(t.train_executor().logits(), *logits);
    std::printf("logits rel error %.2e\n", le);
    check(le <= tol("logits"), dir + ": logits");
    const Graph& g = t.train_executor().graph();
    double worst = 0;
    std::string worst_name;
    // Some gradients are zero in exact arithmetic (the bias of a batch norm whose output feeds
    // another batch norm through a linear layer: the next mean subtraction cancels it), so their
    // float values are pure rounding noise. Errors are therefore measured against the larger of
    // the tensor's own scale and 1e-3 of the largest gradient of the model.
    double group_scale = 0;
    for (int i = 0; i < t.params().size(); ++i) {
      const ParamSpec& p = t.params().spec(i);
      if (!param_kind_is_trainable(p.kind)) continue;
      Result<std::vector<float>> w = expected->read_f32("grad." + p.name);
      if (w.is_ok())
        for (float v : *w) group_scale = std::max(group_scale, std::fabs(double(v)));
    }
    for (int i = 0; i < t.params().size(); ++i) {
      const ParamSpec& p = t.params().spec(i);
      if (!param_kind_is_trainable(p.kind)) continue;
      Result<std::vector<float>> want_grad = expected->read_f32("grad." + p.name);
      if (!want_grad.is_ok()) return die(want_grad.status());
      ValueId gv = grad_value(g, p.value);
      check(gv != kNoValue, dir + ": no gradient for " + p.name);
      if (gv == kNoValue) continue;
      double e = tensor_error(static_cast<const float*>(t.train_executor().ptr(gv)), to_edgetrain(p, *want_grad),
                              1e-3 * group_scale);
      check(e <= tol("grad"), dir + ": gradient of " + p.name + " rel error " + std::to_string(e));
      if (e > worst) worst = e, worst_name = p.name;
    }
    std::printf("gradients: worst rel error %.2e (%s), tolerance %.1e\n", worst, worst_name.c_str(), tol("grad"));
  }
  if (check_later_steps) {
    double worst = 0;
    std::string worst_name;
    for (int i = 0; i < t.params().size(); ++i) {
      const ParamSpec& p = t.params().spec(i);
      Result<std::vector<float>> after = expected->read_f32("after." + p.name);
      if (!after.is_ok()) return die(after.status());
      double e = tensor_error(t.params().data(i), to_edgetrain(p, *after));
      check(e <= tol("after"), dir + ": " + p.name + " after 3 steps, rel error " + std::to_string(e));
      if (e > worst) worst = e, worst_name = p.name;
    }
    std::printf("weights and running statistics after 3 SGD steps: worst rel error %.2e (%s)\n", worst, worst_name.c_str());
  }
  return true;
}

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace
}  // namespace edgetrain

int main(int argc, char** argv) {
  using namespace edgetrain;
  std::string root = argc > 1 ? argv[1] : "tests/fixtures/torch";
  if (!is_dir(root + "/small_cnn") || !is_dir(root + "/mobilenet_v2_w0.35")) {
    std::printf("SKIP: no PyTorch fixture under %s (regenerate: ./dev fixture)\n", root.c_str());
    return 77;
  }
  ModelSpec small;
  small.arch = Architecture::kSmallCnn;
  small.input_size = 16;
  run_case(root + "/small_cnn", small, 4, /*check_later_steps=*/true);
  ModelSpec mnv2;
  mnv2.arch = Architecture::kMobileNetV2;
  mnv2.width_mult = 0.35f;
  mnv2.dropout = 0.0f;  // the fixture replaces Dropout by identity (randomness differs from torch's)
  mnv2.input_size = 32;
  run_case(root + "/mobilenet_v2_w0.35", mnv2, 8, /*check_later_steps=*/false);
  std::printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "PASSED", g_failures);
  return g_failures ? 1 : 0;
}
