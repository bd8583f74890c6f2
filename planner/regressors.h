// Small regression models that predict a kernel's run time from a FeatureRow, written here (no
// libraries) so that predictions are a few hundred nanoseconds and a fitted model is a short list
// of numbers in the profile file.
//
//   roofline      t = a*FLOPs + b*bytes + c with a, b, c >= 0, fitted by least squares on
//                 relative error (weights 1/t^2), exactly over the 8 active sets.
//   log_poly      log t = a degree-2 polynomial of the log features z, ridge-regularised on
//                 standardised features: power laws (t ~ N^a C^b) are linear here. Outside the
//                 fitted range only the linear part extrapolates.
//   (Log-space models extrapolate each feature at most by twice its fitted range (at least 1) beyond
//   it, and predict within a factor e^3 of the fitted times: a feature nearly constant in the
//   data, e.g. one odd channel count, gets a huge standardised value elsewhere, which once made
//   a pooling backward predict 10^6 s.)
//   boosted_trees log t = gradient-boosted depth-3 regression trees on z: steps and kinks that
//                 no smooth model follows (cache sizes, GEMM blocking, thread splits), but
//                 constant beyond the sampled shapes.
//   linear_trees  log t = a ridge-linear base on z plus boosted trees on its residuals: the
//                 base extrapolates, the trees correct it inside the sampled range.
//
// All fits are deterministic. select_regressor() fits every kind, scores each by k-fold
// cross-validation (share within +/-10%, then R^2) and keeps the best one whose prediction
// cost is inside a limit.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/json.h"
#include "runtime/status.h"

namespace edgetrain {

constexpr int kLogFeatureCount = 10;

// What a regressor sees of one kernel call.
struct FeatureRow {
  double flops = 0;  // floating-point operations (a multiply-add counts 2)
  double bytes = 0;  // bytes the kernel must move at least once (inputs, outputs, im2col columns)
  // log(flops + 1), log(bytes + 1), log batch, log pixels per image, log input channels (per
  // group), log output channels (per group), log kernel taps, stride, log multiply-adds of one
  // GEMM call (0 for ops without one), the kernel variant within the class (convs: the im2col
  // plan 0 plain / 1 global / 2 classes, the Winograd tile 2 / 4; batch norm and add: 1 with a
  // fused activation; 0 otherwise). See planner/features.cc.
  std::array<double, kLogFeatureCount> z{};
};

enum class RegressorKind : uint8_t { kRoofline, kLogPoly, kBoostedTrees, kLinearTrees, kCount };
constexpr int kRegressorKindCount = static_cast<int>(RegressorKind::kCount);
// "roofline", "log_poly", "boosted_trees", "linear_trees"
const char* regressor_kind_name(RegressorKind k);

// Trees of depth 5 (was 3; 100 trees at shrinkage 0.1, was 60 at 0.2): refitting five stored
// profiles, held-out per-op predictions within 10% went 70.7% -> 72.1% on average, and 75.2% ->
// 78.4% on the 20-minute profile's 56K fitting samples, where depth 3 left structure unfitted;
// whole steps unchanged (73.3%). Depth 4 gave 71.7% / 77.3%, depth 6 71.9%.
struct FitOptions {
  int trees = 100;           // boosted_trees, linear_trees
  int tree_depth = 5;
  double shrinkage = 0.1;
  int min_leaf = 3;          // samples per leaf at least
};

// One tree node, flattened. A leaf has feature == -1 and its value in `value`.
struct TreeNode {
  int16_t feature = -1;
  int32_t left = -1, right = -1;  // indices into the model's node list
  double threshold = 0;           // go left when z[feature] <= threshold
  double value = 0;
};

class Regressor {
 public:
  Regressor() = default;
  // Fits a model of `kind` to times y (seconds, > 0) of rows x. Fails on an empty or
  // mismatched data set or a non-positive time.
  static Result<Regressor> fit(RegressorKind kind, const std::vector<FeatureRow>& x,
                               const std::vector<double>& y, const FitOptions& options = {});

  RegressorKind kind() const { return kind_; }
  // Predicted seconds (never negative; a model fitted on nothing predicts 0).
  double predict(const FeatureRow& r) const;

  JsonValue to_json() const;
  static Result<Regressor> from_json(const JsonValue& j);

 private:
  double linear_log(const FeatureRow& r, int degree) const;
  void fit_axes(const std::vector<FeatureRow>& x);  // after mean_ and scale_
  void clamp_to_axes(double* s) const;               // s: standardised z

  RegressorKind kind_ = RegressorKind::kRoofline;
  // roofline: {a, b, c}. log_poly and the tree base: coefficients over the expanded terms of
  // the standardised z (intercept first).
  std::vector<double> coef_;
  std::array<double, kLogFeatureCount> mean_{}, scale_{};  // standardisation of z
  std::array<double, kLogFeatureCount> lo_{}, hi_{};        // range of z in the fitted data
  // Principal axes of the standardised z in the fitted data (column k of axes_, row-major) and
  // the range of each axis's scores, with how far a query may leave it (axis_ext_). Empty in
  // models from before it was stored (no clamp). See linear_log().
  std::vector<double> axes_;
  std::vector<double> axis_lo_, axis_hi_, axis_ext_;
  // Range of log t in the fitted data: log-space predictions stay within kExtrapolationLog of it.
  double log_t_lo_ = -1e300, log_t_hi_ = 1e300;
  std::vector<TreeNode> nodes_;
  std::vector<int32_t> roots_;
};

// Metrics over paired predictions and measurements.
// Share of predictions within +/-tol of the measurement: |p - m| <= tol * m.
double within_share(const std::vector<double>& predicted, const std::vector<double>& measured,
                    double tol = 0.10);
// Coefficient of determination of predicted vs measured (1 - SSres/SStot); 0 when SStot is 0
// and the predictions are not exact.
double r_squared(const std::vector<double>& predicted, const std::vector<double>& measured);

struct CandidateScore {
  RegressorKind kind = RegressorKind::kRoofline;
  double cv_within = 0;        // cross-validated share within +/-10%
  double cv_r2 = 0;            // cross-validated R^2
  double predict_ns = 0;       // measured cost of one prediction
  bool within_cost_limit = true;
};

struct SelectOptions {
  int folds = 4;
  double max_predict_ns = 5000;  // a model slower than this is not chosen
  uint64_t seed = 1;             // fold assignment
  FitOptions fit;
};

struct Selection {
  Regressor model;                       // the chosen kind, refitted on all rows
  std::vector<CandidateScore> candidates;
  int chosen = 0;                        // index into candidates
  // Out-of-fold predictions of the chosen kind for every row (each from a model not fitted on
  // that row): what error-driven resampling looks at.
  std::vector<double> out_of_fold;
};

// The index of the best candidate within the cost limit: the highest cv_within, then the
// highest cv_r2 (earlier kinds win exact ties: they are the simpler ones). When none is within
// the limit, the cheapest. candidates must not be empty.
int choose_candidate(const std::vector<CandidateScore>& candidates);

// Fits every kind, scores it by k-fold cross-validation, and keeps the best (highest cv_within,
// then cv_r2) among those within the prediction-cost limit. With fewer rows than folds every
// row is its own fold.
Result<Selection> select_regressor(const std::vector<FeatureRow>& x, const std::vector<double>& y,
                                   const SelectOptions& options = {});
// The same with rows in groups (groups[i] for row i): a group's rows are never split between
// folds, so the score is that of a model predicting groups it has not seen (e.g. the nodes of a
// training step the model was not fitted on).
Result<Selection> select_regressor(const std::vector<FeatureRow>& x, const std::vector<double>& y,
                                   const std::vector<int>& groups, const SelectOptions& options = {});

}  // namespace edgetrain
