#include "planner/cost_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>

#include "memory/liveness.h"

namespace edgetrain {

namespace {

// Whether a step sample's per-node times belong to g's nodes: measured on a schedule with the
// same node order (a schedule change, e.g. the fused SGD applies moved to the end, would pair
// every time after the first moved node with another node), one time per node.
bool node_times_match(const StepSample& s, const Graph& g) {
  return s.node_seconds.size() == g.nodes.size() && s.schedule_hash != 0 && s.schedule_hash == schedule_hash(g);
}
// The q quantile of a non-empty v, nearest rank (element round(q * (n - 1)) in order; at q = 0.5
// the upper of two middle elements, v[n / 2]).
double quantile(std::vector<double> v, double q) {
  const auto at = v.begin() + std::lround(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), at, v.end());
  return *at;
}
}  // namespace

Result<std::vector<GroupFit>> fit_groups(const std::vector<KernelSample>& kernels, const SelectOptions& options,
                                         double drop_slower_than) {
  std::map<std::pair<int, int>, std::vector<size_t>> groups;  // (class, threads) -> samples
  for (size_t i = 0; i < kernels.size(); ++i)
    if (!kernels[i].holdout) groups[{static_cast<int>(kernels[i].op_class), kernels[i].threads}].push_back(i);
  std::vector<GroupFit> fits;
  for (auto& [key, idx] : groups) {
    GroupFit gf;
    gf.op_class = static_cast<OpClass>(key.first);
    gf.threads = key.second;
    gf.samples = idx;
    std::vector<FeatureRow> x;
    std::vector<double> y;
    for (size_t i : idx) x.push_back(kernels[i].row), y.push_back(kernels[i].seconds);
    auto failed = [&](const Status& st) {
      return Status(st.code(), std::string("fitting ") + op_class_name(gf.op_class) + " at " +
                                   std::to_string(gf.threads) + " threads: " + st.message());
    };
    Result<Selection> sel = select_regressor(x, y, options);
    if (!sel.is_ok()) return failed(sel.status());
    gf.selection = std::move(*sel);
    if (drop_slower_than > 0 && idx.size() >= static_cast<size_t>(kDropMinSamples)) {
      std::vector<size_t> kept;
      std::vector<FeatureRow> kept_x;
      std::vector<double> kept_y;
      for (size_t k = 0; k < idx.size(); ++k)
        if (!(y[k] > drop_slower_than * gf.selection.out_of_fold[k]))
          kept.push_back(idx[k]), kept_x.push_back(x[k]), kept_y.push_back(y[k]);
      if (kept.size() < idx.size() && kept.size() >= 8) {
        Result<Selection> again = select_regressor(kept_x, kept_y, options);
        if (!again.is_ok()) return failed(again.status());
        gf.dropped_slow = static_cast<int>(idx.size() - kept.size());
        gf.samples = std::move(kept);
        gf.selection = std::move(*again);
      }
    }
    fits.push_back(std::move(gf));
  }
  return fits;
}

// ---------------------------------------------------------------------------------------------
// Report

namespace {

JsonValue candidate_json(const CandidateScore& c) {
  JsonValue j = JsonValue::object();
  j.set("kind", regressor_kind_name(c.kind));
  j.set("cv_within_10pct", c.cv_within);
  j.set("cv_r2", c.cv_r2);
  j.set("predict_ns", c.predict_ns);
  j.set("within_cost_limit", c.within_cost_limit);
  return j;
}

std::string pct(double share) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%.1f%%", 100.0 * share);
  return buf;
}

std::string fmt(const char* f, double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

}  // namespace

JsonValue FitReport::to_json() const {
  JsonValue j = JsonValue::object();
  JsonValue summary = JsonValue::object();
  summary.set("calibration_steps", calibration_steps);
  summary.set("calibration_steps_dropped", calibration_steps_dropped);
  summary.set("calibration_steps_other_schedule", calibration_steps_other_schedule);
  summary.set("op_holdout_count", op_holdout_count);
  summary.set("fit_samples_dropped_slow", fit_samples_dropped_slow);
  summary.set("op_holdout_within_10pct", op_holdout_within);
  summary.set("op_holdout_r2", op_holdout_r2);
  summary.set("op_instep_count", op_instep_count);
  summary.set("op_instep_within_10pct", op_instep_within);
  summary.set("op_instep_r2", op_instep_r2);
  summary.set("step_count", step_count);
  summary.set("step_within_10pct", step_within);
  summary.set("step_r2", step_r2);
  auto repeat_json = [](const std::vector<Repeatability>& list) {
    JsonValue repeat = JsonValue::array();
    for (const Repeatability& r : list) {
      JsonValue k = JsonValue::object();
      k.set("threads", r.threads);
      k.set("count", r.count);
      k.set("within_10pct", r.within);
      repeat.push_back(std::move(k));
    }
    return repeat;
  };
  summary.set("repeatability", repeat_json(repeatability));
  summary.set("step_repeatability", repeat_json(step_repeatability));
  j.set("summary", std::move(summary));
  JsonValue classes = JsonValue::array();
  for (const ClassReport& c : this->classes) {
    JsonValue k = JsonValue::object();
    k.set("class", op_class_name(c.op_class));
    k.set("threads", c.threads);
    k.set("fit_samples", c.fit_samples);
    k.set("holdout_samples", c.holdout_samples);
    k.set("chosen", regressor_kind_name(c.chosen));
    JsonValue cands = JsonValue::array();
    for (const CandidateScore& s : c.candidates) cands.push_back(candidate_json(s));
    k.set("candidates", std::move(cands));
    k.set("holdout_within_10pct", c.holdout_within);
    k.set("holdout_r2", c.holdout_r2);
    k.set("calibration_samples", c.calibration_samples);
    if (c.calibration_samples > 0) {
      k.set("correction", regressor_kind_name(c.correction));
      k.set("correction_cv_within_10pct", c.correction_cv_within);
    }
    k.set("instep_count", c.instep_count);
    k.set("instep_within_10pct", c.instep_within);
    classes.push_back(std::move(k));
  }
  j.set("classes", std::move(classes));
  JsonValue steps = JsonValue::array();
  for (const StepReport& s : this->steps) {
    JsonValue k = JsonValue::object();
    k.set("config", s.config);
    k.set("threads", s.threads);
    k.set("validation", s.validation);
    k.set("measured_seconds", s.measured);
    k.set("predicted_seconds", s.predicted);
    steps.push_back(std::move(k));
  }
  j.set("steps", std::move(steps));
  return j;
}

std::string report_text(const JsonValue& report) {
  std::string s;
  char line[256];
  s += "Kernel alone: samples fitted (fit) and held out (held), the chosen model, its cross-validated\n"
       "and held-out share within +/-10% and held-out R2. In a step: calibration nodes (calib) and\n"
       "the cross-validated share of in-step times within 10%, then nodes of validation steps.\n\n";
  std::snprintf(line, sizeof(line), "%-26s %3s %5s %5s  %-13s %7s %8s %8s %6s %7s %14s\n", "op class", "thr", "fit",
                "held", "model", "cv<10%", "held<10%", "held R2", "calib", "cv<10%", "valid<10% (n)");
  s += line;
  if (const JsonValue* classes = report.get_array("classes")) {
    for (const JsonValue& c : classes->items()) {
      double cv = 0;
      if (const JsonValue* cands = c.get_array("candidates"))
        for (const JsonValue& k : cands->items())
          if (k.get_string("kind") == c.get_string("chosen")) cv = k.get_double("cv_within_10pct");
      const int64_t held = c.get_int("holdout_samples"), instep = c.get_int("instep_count");
      const int64_t calib = c.get_int("calibration_samples");
      std::snprintf(line, sizeof(line), "%-26s %3lld %5lld %5lld  %-13s %7s %8s %8s %6lld %7s %14s\n",
                    c.get_string("class").c_str(), static_cast<long long>(c.get_int("threads")),
                    static_cast<long long>(c.get_int("fit_samples")), static_cast<long long>(held),
                    c.get_string("chosen").c_str(), pct(cv).c_str(),
                    held ? pct(c.get_double("holdout_within_10pct")).c_str() : "-",
                    held ? fmt("%.4f", c.get_double("holdout_r2")).c_str() : "-", static_cast<long long>(calib),
                    calib ? pct(c.get_double("correction_cv_within_10pct")).c_str() : "-",
                    instep ? (pct(c.get_double("instep_within_10pct")) + " (" + std::to_string(instep) + ")").c_str()
                           : "-");
      s += line;
    }
  }
  if (const JsonValue* steps = report.get_array("steps"); steps && steps->size() > 0) {
    // Validation steps first (configurations no kernel sample or correction was fitted on), then
    // the calibration steps the in-step corrections were fitted to.
    for (const bool validation : {true, false}) {
      s += validation ? "\nwhole training steps, validation configurations (not used in fitting; measured: the faster of "
                               "two timings where timed twice):\n"
                      : "\nwhole training steps, calibration configurations (the in-step corrections are fitted to them):\n";
      std::snprintf(line, sizeof(line), "  %-44s %3s %11s %11s %7s\n", "configuration", "thr", "measured", "predicted",
                    "error");
      s += line;
      for (const JsonValue& st : steps->items()) {
        if (st.get_bool("validation") != validation) continue;
        const double m = st.get_double("measured_seconds"), p = st.get_double("predicted_seconds");
        std::snprintf(line, sizeof(line), "  %-44s %3lld %9.1fms %9.1fms %+6.1f%%\n", st.get_string("config").c_str(),
                      static_cast<long long>(st.get_int("threads")), 1e3 * m, 1e3 * p, m > 0 ? 100.0 * (p - m) / m : 0.0);
        s += line;
      }
    }
  }
  const JsonValue* sum = report.get_object("summary");
  if (sum != nullptr) {
    s += "\ncalibration: " + std::to_string(sum->get_int("calibration_steps")) + " steps used, " +
         std::to_string(sum->get_int("calibration_steps_dropped")) + " left out as slowed by interference";
    if (const int64_t other = sum->get_int("calibration_steps_other_schedule"); other > 0)
      s += ", " + std::to_string(other) + " measured on another schedule (whole-step times only)";
    s += "\n";
    if (const int64_t slow = sum->get_int("fit_samples_dropped_slow"); slow > 0)
      s += "kernel models: " + std::to_string(slow) + " fitting samples left out as measured over " +
           fmt("%.2f", kDropSlowerThan) + "x their out-of-fold prediction (interference only slows a timing)\n";
    s += "per-op, held-out kernel samples:     " + pct(sum->get_double("op_holdout_within_10pct")) +
         " within +/-10%, R2 " + fmt("%.4f", sum->get_double("op_holdout_r2")) + " (n=" +
         std::to_string(sum->get_int("op_holdout_count")) + ")\n";
    s += "per-op, nodes inside validation steps: " + pct(sum->get_double("op_instep_within_10pct")) +
         " within +/-10%, R2 " + fmt("%.4f", sum->get_double("op_instep_r2")) + " (n=" +
         std::to_string(sum->get_int("op_instep_count")) + ")\n";
    if (const JsonValue* rep = sum->get_array("repeatability"))
      for (const JsonValue& r : rep->items())
        s += "noise floor, " + std::to_string(r.get_int("threads")) + " thread(s): " +
             pct(r.get_double("within_10pct")) + " of kernel timings repeated later were within 10% (n=" +
             std::to_string(r.get_int("count")) + ")\n";
    if (const JsonValue* rep = sum->get_array("step_repeatability"))
      for (const JsonValue& r : rep->items())
        s += "noise floor, whole steps, " + std::to_string(r.get_int("threads")) + " thread(s): " +
             pct(r.get_double("within_10pct")) + " of validation steps timed again were within 10% (n=" +
             std::to_string(r.get_int("count")) + ")\n";
    // Per thread count, from the per-class and per-step rows.
    std::map<int64_t, std::pair<double, int64_t>> held, steps_in;  // threads -> (hits, count)
    if (const JsonValue* classes = report.get_array("classes"))
      for (const JsonValue& c : classes->items()) {
        auto& [hits, count] = held[c.get_int("threads")];
        hits += c.get_double("holdout_within_10pct") * static_cast<double>(c.get_int("holdout_samples"));
        count += c.get_int("holdout_samples");
      }
    if (const JsonValue* steps = report.get_array("steps"))
      for (const JsonValue& st : steps->items()) {
        if (!st.get_bool("validation")) continue;
        const double m = st.get_double("measured_seconds"), pr = st.get_double("predicted_seconds");
        auto& [hits, count] = steps_in[st.get_int("threads")];
        hits += std::fabs(pr - m) <= 0.10 * m ? 1 : 0;
        ++count;
      }
    for (const auto& [t, hc] : held)
      if (hc.second > 0)
        s += "  " + std::to_string(t) + " thread(s): per-op held-out " + pct(hc.first / static_cast<double>(hc.second)) +
             " (n=" + std::to_string(hc.second) + ")" +
             (steps_in.count(t) && steps_in[t].second > 0
                  ? ", whole steps " + pct(steps_in[t].first / static_cast<double>(steps_in[t].second)) + " (n=" +
                        std::to_string(steps_in[t].second) + ")"
                  : std::string()) +
             "\n";
    s += "whole steps, validation configurations: " + pct(sum->get_double("step_within_10pct")) +
         " within +/-10%, R2 " + fmt("%.4f", sum->get_double("step_r2")) + " (n=" +
         std::to_string(sum->get_int("step_count")) + ")\n";
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// CostModel

Result<CostModel> CostModel::fit(const Profile& p, const SelectOptions& options, FitReport* report) {
  ET_ASSIGN_OR_RETURN(std::vector<GroupFit> fits, fit_groups(p.kernels, options, kDropSlowerThan));
  return fit(p, fits, options, report);
}

Result<CostModel> CostModel::fit(const Profile& p, const std::vector<GroupFit>& fits, const SelectOptions& options,
                                 FitReport* report) {
  CostModel m;
  for (const KernelSample& s : p.kernels)
    if (std::find(m.threads_.begin(), m.threads_.end(), s.threads) == m.threads_.end()) m.threads_.push_back(s.threads);
  if (m.threads_.empty()) return invalid_argument("cost model: the profile has no kernel samples");
  std::sort(m.threads_.begin(), m.threads_.end());
  m.per_threads_.resize(m.threads_.size());
  for (size_t t = 0; t < m.threads_.size(); ++t) {
    PerThreads& pt = m.per_threads_[t];
    pt.models.resize(kOpClassCount);
    pt.present.assign(kOpClassCount, false);
    pt.corrections.resize(kOpClassCount);
    pt.corrected.assign(kOpClassCount, false);
    pt.corrections_see_reuse = true;
    pt.correction_bounds.assign(kOpClassCount, {kMinCorrection, kMaxCorrection});
    std::vector<FeatureRow> x;
    std::vector<double> y;
    for (const KernelSample& s : p.kernels)
      if (!s.holdout && s.threads == m.threads_[t]) x.push_back(s.row), y.push_back(s.seconds);
    if (!x.empty()) {
      ET_ASSIGN_OR_RETURN(pt.fallback, Regressor::fit(RegressorKind::kRoofline, x, y));
    }
  }
  for (const GroupFit& gf : fits) {
    const size_t t = static_cast<size_t>(std::find(m.threads_.begin(), m.threads_.end(), gf.threads) - m.threads_.begin());
    m.per_threads_[t].models[static_cast<size_t>(gf.op_class)] = gf.selection.model;
    m.per_threads_[t].present[static_cast<size_t>(gf.op_class)] = true;
  }

  // Stage 2: in-step corrections from the calibration steps' per-node times.
  struct Calibration {
    std::vector<FeatureRow> x;
    std::vector<double> ratio;
    std::vector<int> step;  // index into csteps: the folds of the selection keep a step together
  };
  std::map<std::pair<int, int>, Calibration> calib;  // (class, threads)
  // Per calibration step: its nodes' features and times, and the ratio of its summed in-step
  // times to its summed isolated predictions. A step that another process slowed down shows a
  // ratio far above its thread count's median; it is left out (interference is transient, the
  // cache effects this stage learns are not).
  struct CalibrationStep {
    int threads;
    std::vector<NodeFeatures> f;
    std::vector<double> alone, inside;
    std::vector<double> reuse;  // input_reuse_bytes of each kept node
    double ratio;
    double footprint;  // step_footprint_bytes
  };
  std::vector<CalibrationStep> csteps;
  int other_schedule = 0;
  for (const StepSample& s : p.steps) {
    if (s.validation) continue;
    Result<Graph> g = build_step_graph(s.config);
    if (!g.is_ok()) continue;
    if (!node_times_match(s, *g)) {
      other_schedule += !s.node_seconds.empty();
      continue;
    }
    CalibrationStep cs{s.threads, {}, {}, {}, {}, 0, step_footprint_bytes(*g)};
    const std::vector<NodeFeatures> features = node_features(*g);
    const std::vector<double> reuse = input_reuse_bytes(*g, features);
    double sum_alone = 0, sum_inside = 0;
    const std::vector<int> repeats = node_repeats(*g);
    for (size_t i = 0; i < g->nodes.size(); ++i) {
      const NodeFeatures& f = features[i];
      if (!m.has_class(f.op_class, s.threads)) continue;
      // run_profiled sums a node's repetitions: one call's time is the share.
      const double alone = m.predict_isolated_seconds(f, s.threads), inside = s.node_seconds[i] / repeats[i];
      // Nodes that return at once (nothing to compute) say nothing about caches.
      if (!(alone > 0) || !(inside > 2e-8)) continue;
      cs.f.push_back(f);
      cs.alone.push_back(alone);
      cs.inside.push_back(inside);
      cs.reuse.push_back(reuse[i]);
      sum_alone += alone;
      sum_inside += inside;
    }
    if (cs.f.empty()) continue;
    cs.ratio = sum_inside / sum_alone;
    csteps.push_back(std::move(cs));
  }
  // Stage 2a: per thread count, the footprint factor (FootprintFactor) from the calibration
  // steps' ratios. A step whose ratio is more than 1.3x off the fitted line (another process
  // slowed it, or its node timings were lost) is left out of it and of the corrections. (The
  // line replaces a median over all steps: small steps, whose tensors stay in cache, ran 1.1x
  // their kernels alone against 1.6x for the median step and were left out as disturbed.)
  int dropped_steps = 0;
  for (size_t ti = 0; ti < m.threads_.size(); ++ti) {
    const int t = m.threads_[ti];
    std::vector<double> lf, lr;
    for (const CalibrationStep& cs : csteps)
      if (cs.threads == t && cs.footprint > 0) lf.push_back(std::log(cs.footprint)), lr.push_back(std::log(cs.ratio));
    std::vector<bool> kept_fit;
    FootprintFactor& ff = m.per_threads_[ti].footprint;
    ff = fit_footprint_factor(lf, lr, kKeepStepRatio, &kept_fit);
    for (size_t k = 0, si = 0; si < csteps.size(); ++si) {
      const CalibrationStep& cs = csteps[si];
      if (cs.threads != t) continue;
      const bool kept = cs.footprint > 0 && kept_fit[k++];
      if (!kept) {
        ++dropped_steps;
        continue;
      }
      for (size_t i = 0; i < cs.f.size(); ++i) {
        Calibration& c = calib[{static_cast<int>(cs.f[i].op_class), t}];
        c.x.push_back(correction_row(cs.f[i].row, cs.reuse[i]));
        // What the footprint factor leaves to the class: the node's ratio over its step's.
        c.ratio.push_back(std::clamp(cs.inside[i] / cs.alone[i] / ff.factor(cs.footprint), kMinCorrection, kMaxCorrection));
        c.step.push_back(static_cast<int>(si));
      }
    }
  }
  std::map<std::pair<int, int>, std::pair<int, CandidateScore>> calib_report;
  // (stage 3 follows the corrections below)
  for (auto& [key, c] : calib) {
    if (c.x.size() < 8) continue;  // too few to say more than noise
    Result<Selection> sel = select_regressor(c.x, c.ratio, c.step, options);
    if (!sel.is_ok()) return sel.status();
    const size_t t = static_cast<size_t>(std::find(m.threads_.begin(), m.threads_.end(), key.second) - m.threads_.begin());
    if (t >= m.threads_.size()) continue;
    m.per_threads_[t].corrections[static_cast<size_t>(key.first)] = sel->model;
    m.per_threads_[t].corrected[static_cast<size_t>(key.first)] = true;
    m.per_threads_[t].correction_bounds[static_cast<size_t>(key.first)] = {quantile(c.ratio, kCorrectionQuantile),
                                                                          quantile(c.ratio, 1.0 - kCorrectionQuantile)};
    calib_report[key] = {static_cast<int>(c.x.size()), sel->candidates[static_cast<size_t>(sel->chosen)]};
  }
  // Stage 3: one scale per thread count from whole calibration steps (median: a step slowed by
  // another process does not move it).
  for (size_t t = 0; t < m.threads_.size(); ++t) {
    std::vector<double> ratios;
    for (const StepSample& s : p.steps) {
      if (s.validation || s.threads != m.threads_[t] || !(s.seconds > 0)) continue;
      Result<Graph> g = build_step_graph(s.config);
      if (!g.is_ok()) continue;
      const double predicted = m.predict_step_seconds(*g, s.threads);
      if (predicted > 0) ratios.push_back(s.seconds / predicted);
    }
    if (ratios.size() < 4) continue;
    m.per_threads_[t].step_scale = std::clamp(quantile(ratios, 0.5), 0.5, 2.0);
  }
  if (report == nullptr) return m;

  // Held-out kernel samples, per group and pooled.
  *report = FitReport{};
  report->calibration_steps = static_cast<int>(csteps.size()) - dropped_steps;
  report->calibration_steps_dropped = dropped_steps;
  report->calibration_steps_other_schedule = other_schedule;
  std::vector<double> all_pred, all_meas;
  for (const GroupFit& gf : fits) {
    ClassReport c;
    c.op_class = gf.op_class;
    c.threads = gf.threads;
    c.fit_samples = static_cast<int>(gf.samples.size());
    report->fit_samples_dropped_slow += gf.dropped_slow;
    c.candidates = gf.selection.candidates;
    c.chosen = gf.selection.candidates[static_cast<size_t>(gf.selection.chosen)].kind;
    std::vector<double> pred, meas;
    for (const KernelSample& s : p.kernels)
      if (s.holdout && s.op_class == gf.op_class && s.threads == gf.threads) {
        pred.push_back(gf.selection.model.predict(s.row));
        meas.push_back(s.seconds);
      }
    if (auto it = calib_report.find({static_cast<int>(gf.op_class), gf.threads}); it != calib_report.end()) {
      c.calibration_samples = it->second.first;
      c.correction = it->second.second.kind;
      c.correction_cv_within = it->second.second.cv_within;
    }
    c.holdout_samples = static_cast<int>(pred.size());
    c.holdout_within = within_share(pred, meas);
    c.holdout_r2 = r_squared(pred, meas);
    all_pred.insert(all_pred.end(), pred.begin(), pred.end());
    all_meas.insert(all_meas.end(), meas.begin(), meas.end());
    report->classes.push_back(std::move(c));
  }
  // Per thread count, how often a second timing lands within 10% of the first.
  auto add_repeatability = [&](const std::vector<RepeatSample>& samples, std::vector<FitReport::Repeatability>* out) {
    for (int t : m.threads_) {
      std::vector<double> second, first;
      for (const RepeatSample& r : samples)
        if (r.threads == t) second.push_back(r.second), first.push_back(r.first);
      if (!first.empty()) out->push_back({t, static_cast<int>(first.size()), within_share(second, first)});
    }
  };
  add_repeatability(p.repeats, &report->repeatability);
  add_repeatability(p.step_repeats, &report->step_repeatability);
  report->op_holdout_count = static_cast<int>(all_pred.size());
  report->op_holdout_within = within_share(all_pred, all_meas);
  report->op_holdout_r2 = r_squared(all_pred, all_meas);

  // Whole steps and their nodes.
  std::vector<double> step_pred, step_meas, node_pred, node_meas;
  std::map<std::pair<int, int>, std::pair<int, int>> instep;  // (class, threads) -> (hits, count)
  for (const StepSample& s : p.steps) {
    Result<Graph> g = build_step_graph(s.config);
    if (!g.is_ok()) return Status(g.status().code(), "rebuilding step " + s.config.describe() + ": " + g.status().message());
    StepReport r;
    r.config = s.config.describe();
    r.threads = s.threads;
    r.validation = s.validation;
    r.measured = s.seconds;
    r.predicted = m.predict_step_seconds(*g, s.threads);
    report->steps.push_back(r);
    if (!s.validation) continue;
    step_pred.push_back(r.predicted);
    step_meas.push_back(r.measured);
    if (!node_times_match(s, *g)) continue;
    const std::vector<int> repeats = node_repeats(*g);
    const double footprint = step_footprint_bytes(*g);
    const std::vector<NodeFeatures> features = node_features(*g);
    const std::vector<double> reuse = input_reuse_bytes(*g, features);
    for (size_t i = 0; i < g->nodes.size(); ++i) {
      const NodeFeatures& f = features[i];
      const double pr = m.predict_seconds(f, s.threads, footprint, reuse[i]), me = s.node_seconds[i] / repeats[i];
      node_pred.push_back(pr);
      node_meas.push_back(me);
      auto& [hits, count] = instep[{static_cast<int>(f.op_class), s.threads}];
      ++count;
      if (std::fabs(pr - me) <= 0.10 * me) ++hits;
    }
  }
  for (ClassReport& c : report->classes) {
    auto it = instep.find({static_cast<int>(c.op_class), c.threads});
    if (it == instep.end()) continue;
    c.instep_count = it->second.second;
    c.instep_within = static_cast<double>(it->second.first) / it->second.second;
  }
  report->step_count = static_cast<int>(step_pred.size());
  report->step_within = within_share(step_pred, step_meas);
  report->step_r2 = r_squared(step_pred, step_meas);
  report->op_instep_count = static_cast<int>(node_pred.size());
  report->op_instep_within = within_share(node_pred, node_meas);
  report->op_instep_r2 = r_squared(node_pred, node_meas);
  return m;
}

JsonValue CostModel::to_json() const {
  JsonValue j = JsonValue::array();
  for (size_t t = 0; t < threads_.size(); ++t) {
    const PerThreads& pt = per_threads_[t];
    JsonValue e = JsonValue::object();
    e.set("threads", threads_[t]);
    JsonValue classes = JsonValue::object();
    for (int c = 0; c < kOpClassCount; ++c)
      if (pt.present[static_cast<size_t>(c)])
        classes.set(op_class_name(static_cast<OpClass>(c)), pt.models[static_cast<size_t>(c)].to_json());
    e.set("classes", std::move(classes));
    JsonValue corrections = JsonValue::object();
    for (int c = 0; c < kOpClassCount; ++c)
      if (pt.corrected[static_cast<size_t>(c)])
        corrections.set(op_class_name(static_cast<OpClass>(c)), pt.corrections[static_cast<size_t>(c)].to_json());
    e.set("corrections", std::move(corrections));
    JsonValue bounds = JsonValue::object();
    for (int c = 0; c < kOpClassCount; ++c)
      if (pt.corrected[static_cast<size_t>(c)]) {
        JsonValue b = JsonValue::array();
        b.push_back(pt.correction_bounds[static_cast<size_t>(c)].first);
        b.push_back(pt.correction_bounds[static_cast<size_t>(c)].second);
        bounds.set(op_class_name(static_cast<OpClass>(c)), std::move(b));
      }
    e.set("correction_bounds", std::move(bounds));
    e.set("fallback", pt.fallback.to_json());
    e.set("step_scale", pt.step_scale);
    JsonValue fp = JsonValue::object();
    fp.set("intercept", pt.footprint.intercept);
    fp.set("slope", pt.footprint.slope);
    fp.set("log_lo", pt.footprint.log_lo);
    fp.set("log_hi", pt.footprint.log_hi);
    fp.set("typical", pt.footprint.typical);
    e.set("footprint", std::move(fp));
    j.push_back(std::move(e));
  }
  JsonValue root = JsonValue::object();
  root.set("fit_version", kCostModelFitVersion);
  root.set("per_threads", std::move(j));
  return root;
}

int cost_model_fit_version(const JsonValue& models) { return static_cast<int>(models.get_int("fit_version", 0)); }

Result<CostModel> CostModel::from_json(const JsonValue& models) {
  const JsonValue* list = models.get_array("per_threads");
  if (list == nullptr || list->size() == 0) return corrupt_data("cost model: no 'per_threads' models");
  const int fit_version = cost_model_fit_version(models);
  if (fit_version < 0 || fit_version > kCostModelFitVersion)
    return corrupt_data("cost model: fitted by a newer edgetrain (fit version " + std::to_string(fit_version) +
                        ", this one reads up to " + std::to_string(kCostModelFitVersion) + ")");
  std::vector<std::pair<int, PerThreads>> entries;
  for (const JsonValue& e : list->items()) {
    const int threads = static_cast<int>(e.get_int("threads", 0));
    if (threads < 1) return corrupt_data("cost model: a model set without a thread count");
    PerThreads pt;
    pt.models.resize(kOpClassCount);
    pt.present.assign(kOpClassCount, false);
    pt.corrections.resize(kOpClassCount);
    pt.corrected.assign(kOpClassCount, false);
    pt.correction_bounds.assign(kOpClassCount, {kMinCorrection, kMaxCorrection});
    pt.step_scale = e.get_double("step_scale", 1.0);  // absent in profiles from before stage 3
    pt.corrections_see_reuse = fit_version >= 1;
    if (const JsonValue* fp = e.get_object("footprint")) {  // absent before the footprint factor
      pt.footprint.intercept = fp->get_double("intercept", 0.0);
      pt.footprint.slope = fp->get_double("slope", 0.0);
      pt.footprint.log_lo = fp->get_double("log_lo", 0.0);
      pt.footprint.log_hi = fp->get_double("log_hi", 0.0);
      pt.footprint.typical = fp->get_double("typical", 1.0);
      if (!(pt.footprint.typical > 0) || pt.footprint.log_lo > pt.footprint.log_hi)
        return corrupt_data("cost model: a malformed footprint factor");
    }
    if (!(pt.step_scale > 0)) return corrupt_data("cost model: step_scale must be positive");
    if (const JsonValue* corrections = e.get_object("corrections")) {
      for (const JsonMember& mem : corrections->members()) {
        OpClass c;
        if (!parse_op_class(mem.key, &c)) return corrupt_data("cost model: unknown op class '" + mem.key + "'");
        Result<Regressor> r = Regressor::from_json(mem.value);
        if (!r.is_ok()) return corrupt_data("cost model: correction " + mem.key + ": " + r.status().message());
        pt.corrections[static_cast<size_t>(c)] = std::move(*r);
        pt.corrected[static_cast<size_t>(c)] = true;
      }
    }
    // Absent in profiles from before the bounds: the fixed limits.
    if (const JsonValue* bounds = e.get_object("correction_bounds")) {
      for (const JsonMember& mem : bounds->members()) {
        OpClass c;
        if (!parse_op_class(mem.key, &c)) return corrupt_data("cost model: unknown op class '" + mem.key + "'");
        const JsonValue *lo = mem.value.at(0), *hi = mem.value.at(1);
        if (lo == nullptr || hi == nullptr || !(lo->as_double() > 0) || !(hi->as_double() >= lo->as_double()))
          return corrupt_data("cost model: correction bounds of " + mem.key + " must be [lo, hi] with 0 < lo <= hi");
        pt.correction_bounds[static_cast<size_t>(c)] = {lo->as_double(), hi->as_double()};
      }
    }
    if (const JsonValue* classes = e.get_object("classes")) {
      for (const JsonMember& mem : classes->members()) {
        OpClass c;
        if (!parse_op_class(mem.key, &c)) return corrupt_data("cost model: unknown op class '" + mem.key + "'");
        Result<Regressor> r = Regressor::from_json(mem.value);
        if (!r.is_ok()) return corrupt_data("cost model: class " + mem.key + ": " + r.status().message());
        pt.models[static_cast<size_t>(c)] = std::move(*r);
        pt.present[static_cast<size_t>(c)] = true;
      }
    }
    if (const JsonValue* fb = e.find("fallback")) {
      Result<Regressor> r = Regressor::from_json(*fb);
      if (!r.is_ok()) return corrupt_data("cost model: fallback: " + r.status().message());
      pt.fallback = std::move(*r);
    }
    entries.emplace_back(threads, std::move(pt));
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  CostModel m;
  for (auto& [t, pt] : entries) {
    if (!m.threads_.empty() && m.threads_.back() == t)
      return corrupt_data("cost model: two model sets for " + std::to_string(t) + " threads");
    m.threads_.push_back(t);
    m.per_threads_.push_back(std::move(pt));
  }
  return m;
}

Result<CostModel> CostModel::load(const std::string& path, bool allow_other_machine) {
  ET_ASSIGN_OR_RETURN(Profile p, load_profile(path));
  return from_profile(p, path, allow_other_machine);
}

Result<CostModel> CostModel::from_profile(const Profile& p, const std::string& path, bool allow_other_machine) {
  Status machine = check_machine(p.machine, current_machine());
  if (!machine.is_ok() && !allow_other_machine) return Status(machine.code(), "profile '" + path + "': " + machine.message());
  Result<CostModel> m = from_json(p.models);
  if (!m.is_ok()) return Status(m.status().code(), "profile '" + path + "': " + m.status().message());
  if (!machine.is_ok()) m->warning_ = "warning: " + machine.message();
  return m;
}

const CostModel::PerThreads& CostModel::for_threads(int threads) const {
  size_t best = 0;
  for (size_t i = 0; i < threads_.size(); ++i)
    if (threads_[i] <= threads) best = i;
  return per_threads_[best];
}

bool CostModel::has_class(OpClass c, int threads) const {
  if (per_threads_.empty() || c == OpClass::kCount) return false;
  return for_threads(threads).present[static_cast<size_t>(c)];
}

double CostModel::predict_isolated_seconds(const NodeFeatures& f, int threads) const {
  if (per_threads_.empty()) return 0.0;
  const PerThreads& pt = for_threads(threads);
  if (f.op_class != OpClass::kCount && pt.present[static_cast<size_t>(f.op_class)])
    return pt.models[static_cast<size_t>(f.op_class)].predict(f.row);
  return pt.fallback.predict(f.row);
}

double CostModel::predict_seconds(const NodeFeatures& f, int threads, double footprint_bytes, double reuse_bytes) const {
  const double alone = predict_isolated_seconds(f, threads);
  if (per_threads_.empty()) return alone;
  const PerThreads& pt = for_threads(threads);
  const double scale = pt.footprint.factor(footprint_bytes) * pt.step_scale;
  if (f.op_class == OpClass::kCount) return alone * scale;
  const size_t c = static_cast<size_t>(f.op_class);
  if (!pt.corrected[c]) return alone * scale;
  const auto [lo, hi] = pt.correction_bounds[c];
  // Corrections of stored models from before the reuse feature read the node's own row.
  const double corr = pt.corrections[c].predict(pt.corrections_see_reuse ? correction_row(f.row, reuse_bytes) : f.row);
  return alone * std::clamp(corr, lo, hi) * scale;
}

double CostModel::predict_node_seconds(const Graph& g, const Node& n, int threads) const {
  const std::vector<NodeFeatures> features = node_features(g);
  const size_t i = static_cast<size_t>(&n - g.nodes.data());
  return predict_seconds(features[i], threads, step_footprint_bytes(g), input_reuse_bytes(g, features)[i]);
}

std::function<double(const Graph&, const Node&)> CostModel::node_predictor(int threads) const {
  auto self = std::make_shared<const CostModel>(*this);
  // The graph's footprint, its nodes' features and their input reuse are computed once per
  // graph: again whenever its first node is asked for (a step's nodes are scored in order) or
  // another graph object comes.
  struct Cache {
    const Graph* graph = nullptr;
    const Node* nodes = nullptr;
    double footprint = 0;
    std::vector<NodeFeatures> features;
    std::vector<double> reuse;
  };
  auto cache = std::make_shared<Cache>();
  return [self, threads, cache](const Graph& g, const Node& n) {
    if (cache->graph != &g || cache->nodes != g.nodes.data() || &n == g.nodes.data()) {
      cache->graph = &g;
      cache->nodes = g.nodes.data();
      cache->footprint = step_footprint_bytes(g);
      cache->features = node_features(g);
      cache->reuse = input_reuse_bytes(g, cache->features);
    }
    const size_t i = static_cast<size_t>(&n - g.nodes.data());
    if (i >= cache->features.size()) return self->predict_seconds(node_features(g, n), threads, cache->footprint, -1.0);
    return self->predict_seconds(cache->features[i], threads, cache->footprint, cache->reuse[i]);
  };
}

double CostModel::predict_step_seconds(const Graph& g, int threads) const {
  // A micro-batched schedule runs its body once per micro-batch (node_repeats).
  std::vector<int> repeats = node_repeats(g);
  const double footprint = step_footprint_bytes(g);
  const std::vector<NodeFeatures> features = node_features(g);
  const std::vector<double> reuse = input_reuse_bytes(g, features);
  double s = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) s += repeats[i] * predict_seconds(features[i], threads, footprint, reuse[i]);
  return s;
}

CostModel::ThreadChoice CostModel::fastest_threads(const Graph& g, int max_threads, double min_gain) const {
  ThreadChoice c;
  c.threads = 0;
  for (int t : threads_)
    if (t <= max_threads) c.threads = t;  // threads_ ascends: the largest up to max_threads
  if (c.threads == 0) c.threads = std::max(1, max_threads);  // none profiled that low: as asked
  const int most = c.threads;
  c.predicted_at_most = c.predicted_seconds = predict_step_seconds(g, most);
  for (int t : threads_) {
    if (t >= most) continue;
    const double p = predict_step_seconds(g, t);
    if (p < c.predicted_seconds && p < (1.0 - min_gain) * c.predicted_at_most) c.threads = t, c.predicted_seconds = p;
  }
  return c;
}

std::vector<double> input_reuse_bytes(const Graph& g) { return input_reuse_bytes(g, node_features(g)); }

std::vector<double> input_reuse_bytes(const Graph& g, const std::vector<NodeFeatures>& features) {
  const size_t n = g.nodes.size();
  std::vector<double> moved(n + 1, 0.0);  // prefix sums of the nodes' bytes
  for (size_t i = 0; i < n; ++i) moved[i + 1] = moved[i] + (features[i].op_class == OpClass::kCount ? 0.0 : features[i].row.bytes);
  std::vector<long> last(g.values.size(), -1);  // the last node that read or wrote each value
  std::vector<double> reuse(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const Node& node = g.nodes[i];
    double largest = 0;
    for (ValueId v : node.inputs)
      if (v != kNoValue) largest = std::max(largest, static_cast<double>(g.value(v).shape.numel()));
    for (ValueId v : node.inputs) {
      if (v == kNoValue || static_cast<double>(g.value(v).shape.numel()) < 0.25 * largest) continue;
      const long at = last[static_cast<size_t>(v)];
      reuse[i] = std::max(reuse[i], at < 0 ? kNeverTouchedReuse : moved[i] - moved[static_cast<size_t>(at) + 1]);
    }
    for (ValueId v : node.inputs)
      if (v != kNoValue) last[static_cast<size_t>(v)] = static_cast<long>(i);
    for (ValueId v : node.outputs)
      if (v != kNoValue) last[static_cast<size_t>(v)] = static_cast<long>(i);
  }
  return reuse;
}

FeatureRow correction_row(const FeatureRow& row, double reuse_bytes) {
  FeatureRow r = row;
  for (int k = kFirstShapeFeature; k <= kLastShapeFeature; ++k) r.z[static_cast<size_t>(k)] = 0;
  r.z[kReuseFeature] = std::log1p(reuse_bytes < 0 ? kNeverTouchedReuse : std::min(reuse_bytes, kNeverTouchedReuse));
  return r;
}

double step_footprint_bytes(const Graph& g) {
  Result<ArenaLayout> layout = layout_arena(g);
  if (!layout.is_ok()) return 0.0;
  double outside = 0;
  for (const Value& v : g.values)
    if (!value_in_arena(v) && v.alias_of == kNoValue) outside += static_cast<double>(v.bytes());
  return static_cast<double>(layout->arena_bytes) + outside;
}

double FootprintFactor::factor(double footprint_bytes) const {
  if (!(footprint_bytes > 0)) return typical;
  return std::exp(intercept + slope * std::clamp(std::log(footprint_bytes), log_lo, log_hi));
}

FootprintFactor fit_footprint_factor(const std::vector<double>& log_footprint, const std::vector<double>& log_ratio,
                                     double keep_ratio, std::vector<bool>* kept) {
  const size_t n = log_footprint.size();
  if (kept) kept->assign(n, true);
  FootprintFactor ff;
  if (log_ratio.size() != n || n == 0) return ff;
  // A start that outliers do not move: Theil-Sen (the median of the pairwise slopes).
  std::vector<double> slopes;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j)
      if (std::fabs(log_footprint[j] - log_footprint[i]) > 1e-9)
        slopes.push_back((log_ratio[j] - log_ratio[i]) / (log_footprint[j] - log_footprint[i]));
  double slope = n >= 4 && !slopes.empty() ? std::max(0.0, quantile(slopes, 0.5)) : 0.0;
  std::vector<double> resid(n);
  for (size_t i = 0; i < n; ++i) resid[i] = log_ratio[i] - slope * log_footprint[i];
  double intercept = quantile(resid, 0.5);
  // Keep the steps near that line, then least squares on them.
  std::vector<double> x, y;
  for (size_t i = 0; i < n; ++i) {
    const bool keep = std::fabs(log_ratio[i] - intercept - slope * log_footprint[i]) <= std::log(keep_ratio);
    if (kept) (*kept)[i] = keep;
    if (keep) x.push_back(log_footprint[i]), y.push_back(log_ratio[i]);
  }
  if (x.empty()) return ff;
  // log factor = intercept + slope * clamp(log footprint, lo, hi): flat below lo (the step fits
  // in the cache), flat above hi (its tensors come from memory), with the knees lo <= hi chosen
  // among the kept footprints by least squares (both at the ends: a straight line).
  std::vector<double> knots = x;
  std::sort(knots.begin(), knots.end());
  knots.erase(std::unique(knots.begin(), knots.end()), knots.end());
  const bool knees = x.size() >= 8;  // four parameters want more than a handful of steps
  double best = INFINITY;
  for (size_t a = 0; a < knots.size(); ++a) {
    for (size_t b = knots.size(); b-- > a;) {
      if (!knees && (a != 0 || b != knots.size() - 1)) continue;
      const double lo = knots[a], hi = knots[b];
      double mx = 0, my = 0;
      for (size_t i = 0; i < x.size(); ++i) mx += std::clamp(x[i], lo, hi), my += y[i];
      mx /= static_cast<double>(x.size());
      my /= static_cast<double>(x.size());
      double sxx = 0, sxy = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        const double cx = std::clamp(x[i], lo, hi) - mx;
        sxx += cx * cx, sxy += cx * (y[i] - my);
      }
      // Fewer than 4 steps or one footprint: a constant. Only a slowdown that grows with the
      // footprint is a cache effect; a negative slope is noise.
      const double sl = x.size() >= 4 && sxx > 0 ? std::max(0.0, sxy / sxx) : 0.0;
      const double ic = my - sl * mx;
      double sse = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        const double e = y[i] - ic - sl * std::clamp(x[i], lo, hi);
        sse += e * e;
      }
      if (sse < best - 1e-12) best = sse, ff.intercept = ic, ff.slope = sl, ff.log_lo = lo, ff.log_hi = hi;
    }
  }
  ff.typical = std::exp(ff.intercept + ff.slope * std::clamp(quantile(x, 0.5), ff.log_lo, ff.log_hi));
  return ff;
}

}  // namespace edgetrain
