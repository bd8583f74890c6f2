#include "planner/regressors.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>

#include "runtime/parameter_store.h"  // Rng

namespace edgetrain {
namespace {

constexpr const char* kKindNames[] = {"roofline", "log_poly", "boosted_trees", "linear_trees"};
static_assert(sizeof(kKindNames) / sizeof(kKindNames[0]) == kRegressorKindCount, "a name per kind");

// log-space predictions are clamped here before exp(): 1e-12 s .. 1e6 s.
constexpr double kMinLog = -27.6, kMaxLog = 13.8;
// How far log-space predictions may leave the fitted range of log t (a factor of e^3 = 20), and
// how far a feature may be extrapolated beyond its fitted range: twice the range, at least 1 (in
// its log units).
constexpr double kExtrapolationLog = 3.0, kMinFeatureExtrapolation = 1.0;
// Principal axes of the fitted features holding less than this share of their variance are
// nearly fixed combinations of others (the pointwise convs' log FLOPs = log 2 + log rows + log
// C_in + log C_out, off only by a fused norm's pass); a query is kept within the fitted range
// along them. Along the others it may go as far as along a feature (kMinFeatureExtrapolation,
// twice the range).
constexpr double kMinAxisVarianceShare = 1e-3;

// Number of expanded terms of a polynomial in kLogFeatureCount standardised features.
constexpr int terms_for_degree(int degree) {
  return degree == 1 ? 1 + kLogFeatureCount : 1 + kLogFeatureCount + kLogFeatureCount * (kLogFeatureCount + 1) / 2;
}

// Expanded terms of standardised features s: 1, s_i, (degree 2) c_i * c_j for i <= j, where c
// is s clamped to the fitted range. Beyond the sampled shapes the quadratic part stays where the
// data left it and only the linear part extrapolates: a parabola in log space, extended, would
// predict absurd times for a layer a little larger than any sampled one.
void expand(const double* s, const double* c, int degree, double* out) {
  int k = 0;
  out[k++] = 1.0;
  for (int i = 0; i < kLogFeatureCount; ++i) out[k++] = s[i];
  if (degree < 2) return;
  for (int i = 0; i < kLogFeatureCount; ++i)
    for (int j = i; j < kLogFeatureCount; ++j) out[k++] = c[i] * c[j];
}

// Solves the symmetric positive (semi)definite system A x = b (n x n, row-major) by Gaussian
// elimination with partial pivoting. Returns false when A is singular.
bool solve(std::vector<double> a, std::vector<double> b, int n, std::vector<double>* x) {
  for (int col = 0; col < n; ++col) {
    int pivot = col;
    for (int r = col + 1; r < n; ++r)
      if (std::fabs(a[r * n + col]) > std::fabs(a[pivot * n + col])) pivot = r;
    if (std::fabs(a[pivot * n + col]) < 1e-300) return false;
    if (pivot != col) {
      for (int c = 0; c < n; ++c) std::swap(a[col * n + c], a[pivot * n + c]);
      std::swap(b[col], b[pivot]);
    }
    for (int r = col + 1; r < n; ++r) {
      const double f = a[r * n + col] / a[col * n + col];
      if (f == 0.0) continue;
      for (int c = col; c < n; ++c) a[r * n + c] -= f * a[col * n + c];
      b[r] -= f * b[col];
    }
  }
  x->assign(n, 0.0);
  for (int r = n - 1; r >= 0; --r) {
    double s = b[r];
    for (int c = r + 1; c < n; ++c) s -= a[r * n + c] * (*x)[c];
    (*x)[r] = s / a[r * n + r];
  }
  return true;
}

// Eigen-decomposition of a symmetric q x q matrix (row-major) by cyclic Jacobi rotations:
// a = V diag(w) V^T, V's columns the eigenvectors. Plenty for q <= 44.
void symmetric_eigen(std::vector<double> a, int q, std::vector<double>* w, std::vector<double>* v) {
  v->assign(static_cast<size_t>(q * q), 0.0);
  for (int i = 0; i < q; ++i) (*v)[i * q + i] = 1.0;
  for (int sweep = 0; sweep < 60; ++sweep) {
    double off = 0, diag = 0;
    for (int i = 0; i < q; ++i) {
      diag += a[i * q + i] * a[i * q + i];
      for (int j = i + 1; j < q; ++j) off += a[i * q + j] * a[i * q + j];
    }
    if (off <= 1e-30 * (diag + 1e-300)) break;
    for (int p = 0; p < q; ++p)
      for (int r = p + 1; r < q; ++r) {
        const double apr = a[p * q + r];
        if (std::fabs(apr) < 1e-300) continue;
        const double theta = (a[r * q + r] - a[p * q + p]) / (2 * apr);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), sn = t * c;
        for (int k = 0; k < q; ++k) {  // columns p, r
          const double akp = a[k * q + p], akr = a[k * q + r];
          a[k * q + p] = c * akp - sn * akr;
          a[k * q + r] = sn * akp + c * akr;
        }
        for (int k = 0; k < q; ++k) {  // rows p, r
          const double apk = a[p * q + k], ark = a[r * q + k];
          a[p * q + k] = c * apk - sn * ark;
          a[r * q + k] = sn * apk + c * ark;
        }
        for (int k = 0; k < q; ++k) {
          const double vkp = (*v)[k * q + p], vkr = (*v)[k * q + r];
          (*v)[k * q + p] = c * vkp - sn * vkr;
          (*v)[k * q + r] = sn * vkp + c * vkr;
        }
      }
  }
  w->resize(static_cast<size_t>(q));
  for (int i = 0; i < q; ++i) (*w)[i] = std::max(0.0, a[i * q + i]);
}

// Ridge regression of t on the expanded terms (terms[i][0] is the constant 1, not penalised):
// minimises sum (t_i - coef . terms_i)^2 + lambda * n * |coef without intercept|^2, with lambda
// chosen from a grid by exact leave-one-out error. In the eigenbasis of the centred Gram matrix
// every lambda costs O(n q): leverages and LOO residuals come without refitting.
std::vector<double> ridge_fit(const std::vector<std::vector<double>>& terms, const std::vector<double>& t) {
  const int p = static_cast<int>(terms[0].size()), q = p - 1;
  const size_t n = terms.size();
  const double dn = static_cast<double>(n);
  std::vector<double> mean(static_cast<size_t>(p), 0.0);
  double tmean = 0;
  for (size_t i = 0; i < n; ++i) {
    for (int j = 1; j < p; ++j) mean[j] += terms[i][j];
    tmean += t[i];
  }
  for (double& m : mean) m /= dn;
  tmean /= dn;
  // Centred columns X (n x q) and their Gram matrix.
  std::vector<double> x(n * static_cast<size_t>(q)), gram(static_cast<size_t>(q * q), 0.0);
  for (size_t i = 0; i < n; ++i)
    for (int j = 0; j < q; ++j) x[i * q + j] = terms[i][j + 1] - mean[j + 1];
  for (size_t i = 0; i < n; ++i)
    for (int a = 0; a < q; ++a) {
      const double xa = x[i * q + a];
      if (xa == 0) continue;
      for (int b = a; b < q; ++b) gram[a * q + b] += xa * x[i * q + b];
    }
  for (int a = 0; a < q; ++a)
    for (int b = 0; b < a; ++b) gram[a * q + b] = gram[b * q + a];
  std::vector<double> w, v;
  symmetric_eigen(gram, q, &w, &v);
  // U = X V (n x q) and b = U^T (t - mean).
  std::vector<double> u(n * static_cast<size_t>(q), 0.0), b(static_cast<size_t>(q), 0.0);
  for (size_t i = 0; i < n; ++i)
    for (int k = 0; k < q; ++k) {
      double s = 0;
      for (int j = 0; j < q; ++j) s += x[i * q + j] * v[j * q + k];
      u[i * q + k] = s;
      b[k] += s * (t[i] - tmean);
    }
  static constexpr double kLambdas[] = {1e-7, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
  double best_err = INFINITY, best_lambda = 1e-3;
  for (double lambda : kLambdas) {
    const double pen = lambda * dn;
    double err = 0;
    for (size_t i = 0; i < n; ++i) {
      double fit = 0, h = 1.0 / dn;
      for (int k = 0; k < q; ++k) {
        const double d = w[k] + pen;
        if (d <= 0) continue;
        fit += u[i * q + k] * b[k] / d;
        h += u[i * q + k] * u[i * q + k] / d;
      }
      const double e = (t[i] - tmean - fit) / std::max(1e-6, 1.0 - h);
      err += e * e;
    }
    if (err < best_err) best_err = err, best_lambda = lambda;
  }
  const double pen = best_lambda * dn;
  std::vector<double> coef(static_cast<size_t>(p), 0.0);
  for (int j = 0; j < q; ++j) {
    double s = 0;
    for (int k = 0; k < q; ++k)
      if (w[k] + pen > 0) s += v[j * q + k] * b[k] / (w[k] + pen);
    coef[j + 1] = s;
  }
  coef[0] = tmean;
  for (int j = 1; j < p; ++j) coef[0] -= coef[j] * mean[j];
  return coef;
}

// --- trees ---------------------------------------------------------------------------------------

// Regression trees on binned features (as histogram gradient boosting does): each feature's
// values are cut into at most kBins bins once per fit, and a split search sums residuals per bin
// instead of sorting, so a tree costs O(depth * n * features).
constexpr int kBins = 128;

struct TreeBuilder {
  const std::vector<FeatureRow>* x;
  const std::vector<double>* residual;
  const FitOptions* options;
  std::vector<TreeNode>* nodes;
  // edges[f][b]: threshold between bin b and b+1 of feature f; bin[i * F + f]: row i's bin.
  std::vector<std::vector<double>> edges;
  std::vector<uint16_t> bin;

  TreeBuilder(const std::vector<FeatureRow>& rows, const std::vector<double>* r, const FitOptions* o,
              std::vector<TreeNode>* out)
      : x(&rows), residual(r), options(o), nodes(out), edges(kLogFeatureCount), bin(rows.size() * kLogFeatureCount) {
    const std::vector<FeatureRow>& x = rows;
    std::vector<double> v;
    for (int f = 0; f < kLogFeatureCount; ++f) {
      v.resize(x.size());  // the previous feature's unique() shrank it
      for (size_t i = 0; i < x.size(); ++i) v[i] = x[i].z[f];
      std::sort(v.begin(), v.end());
      v.erase(std::unique(v.begin(), v.end()), v.end());
      std::vector<double>& e = edges[static_cast<size_t>(f)];
      if (v.size() <= static_cast<size_t>(kBins)) {
        for (size_t k = 0; k + 1 < v.size(); ++k) e.push_back(0.5 * (v[k] + v[k + 1]));
      } else {
        for (int b = 1; b < kBins; ++b) {
          const size_t k = v.size() * static_cast<size_t>(b) / kBins;
          const double edge = 0.5 * (v[k - 1] + v[k]);
          if (e.empty() || edge > e.back()) e.push_back(edge);
        }
      }
      for (size_t i = 0; i < x.size(); ++i)
        bin[i * kLogFeatureCount + static_cast<size_t>(f)] =
            static_cast<uint16_t>(std::lower_bound(e.begin(), e.end(), x[i].z[f]) - e.begin());
    }
  }

  // Builds the subtree over rows idx at `depth` and returns its index (preorder: children come
  // after their parent, which from_json relies on to rule out cycles).
  int32_t build(std::vector<int>& idx, int depth) {
    const int32_t self = static_cast<int32_t>(nodes->size());
    nodes->push_back(TreeNode{});
    double sum = 0;
    for (int i : idx) sum += (*residual)[i];
    const int n = static_cast<int>(idx.size());
    (*nodes)[self].value = n == 0 ? 0.0 : sum / n * options->shrinkage;
    if (depth >= options->tree_depth || n < 2 * options->min_leaf) return self;

    // Best split: the largest drop in squared error over every feature and bin edge.
    double best_gain = 1e-12;
    int best_feature = -1, best_bin = -1;
    double hsum[kBins];
    int hcount[kBins];
    for (int f = 0; f < kLogFeatureCount; ++f) {
      const int bins = static_cast<int>(edges[static_cast<size_t>(f)].size()) + 1;
      if (bins < 2) continue;
      std::fill(hsum, hsum + bins, 0.0);
      std::fill(hcount, hcount + bins, 0);
      for (int i : idx) {
        const int b = bin[static_cast<size_t>(i) * kLogFeatureCount + static_cast<size_t>(f)];
        hsum[b] += (*residual)[i];
        ++hcount[b];
      }
      double left_sum = 0;
      int nl = 0;
      for (int b = 0; b + 1 < bins; ++b) {
        left_sum += hsum[b];
        nl += hcount[b];
        const int nr = n - nl;
        if (hcount[b] == 0 || nl < options->min_leaf || nr < options->min_leaf) continue;
        const double right_sum = sum - left_sum;
        // SSE drop = nl*ml^2 + nr*mr^2 - n*m^2.
        const double gain = left_sum * left_sum / nl + right_sum * right_sum / nr - sum * sum / n;
        if (gain > best_gain) best_gain = gain, best_feature = f, best_bin = b;
      }
    }
    if (best_feature < 0) return self;
    std::vector<int> left, right;
    // The threshold goes halfway between this node's rows on either side (not at the global bin
    // edge): unseen rows between them split as far from both as possible.
    double left_max = -INFINITY, right_min = INFINITY;
    for (int i : idx) {
      const double z = (*x)[static_cast<size_t>(i)].z[best_feature];
      if (bin[static_cast<size_t>(i) * kLogFeatureCount + static_cast<size_t>(best_feature)] <= best_bin) {
        left.push_back(i);
        left_max = std::max(left_max, z);
      } else {
        right.push_back(i);
        right_min = std::min(right_min, z);
      }
    }
    (*nodes)[self].feature = static_cast<int16_t>(best_feature);
    (*nodes)[self].threshold = 0.5 * (left_max + right_min);
    const int32_t l = build(left, depth + 1);
    const int32_t r = build(right, depth + 1);
    (*nodes)[self].left = l;
    (*nodes)[self].right = r;
    return self;
  }
};

double tree_value(const std::vector<TreeNode>& nodes, int32_t i, const FeatureRow& r) {
  while (nodes[i].feature >= 0) i = r.z[nodes[i].feature] <= nodes[i].threshold ? nodes[i].left : nodes[i].right;
  return nodes[i].value;
}

JsonValue doubles_json(const double* v, size_t n) {
  JsonValue a = JsonValue::array();
  for (size_t i = 0; i < n; ++i) a.push_back(v[i]);
  return a;
}

Status read_doubles(const JsonValue& j, const char* key, size_t expected, double* out) {
  const JsonValue* a = j.get_array(key);
  if (a == nullptr || a->size() != expected)
    return corrupt_data(std::string("regressor: '") + key + "' must be an array of " + std::to_string(expected) +
                        " numbers");
  for (size_t i = 0; i < expected; ++i) {
    if (!a->at(i)->is_number()) return corrupt_data(std::string("regressor: '") + key + "' holds a non-number");
    out[i] = a->at(i)->as_double();
  }
  return Status::ok();
}

}  // namespace

const char* regressor_kind_name(RegressorKind k) {
  const int i = static_cast<int>(k);
  return i >= 0 && i < kRegressorKindCount ? kKindNames[i] : "unknown";
}

Result<Regressor> Regressor::fit(RegressorKind kind, const std::vector<FeatureRow>& x, const std::vector<double>& y,
                                 const FitOptions& options) {
  if (x.empty()) return invalid_argument("regressor fit: no samples");
  if (x.size() != y.size())
    return invalid_argument("regressor fit: " + std::to_string(x.size()) + " rows but " + std::to_string(y.size()) +
                            " times");
  for (double t : y)
    if (!(t > 0) || !std::isfinite(t))
      return invalid_argument("regressor fit: times must be positive and finite, got " + std::to_string(t));
  Regressor m;
  m.kind_ = kind;
  const size_t n = x.size();

  if (kind == RegressorKind::kRoofline) {
    // Weighted least squares on relative error over every active set of {a, b, c} >= 0; the
    // best feasible one is the non-negative least-squares solution. Columns are scaled to unit
    // weighted RMS for conditioning.
    std::vector<std::array<double, 3>> cols(n);
    for (size_t i = 0; i < n; ++i) cols[i] = {x[i].flops / y[i], x[i].bytes / y[i], 1.0 / y[i]};
    double rms[3] = {0, 0, 0};
    for (size_t i = 0; i < n; ++i)
      for (int c = 0; c < 3; ++c) rms[c] += cols[i][c] * cols[i][c];
    for (double& r : rms) r = r > 0 ? std::sqrt(r / static_cast<double>(n)) : 0.0;
    double best_err = INFINITY;
    std::array<double, 3> best{0, 0, 0};
    for (int mask = 1; mask < 8; ++mask) {
      int idx[3], p = 0;
      for (int c = 0; c < 3; ++c)
        if ((mask >> c) & 1 && rms[c] > 0) idx[p++] = c;
      if (p == 0) continue;
      std::vector<double> a(static_cast<size_t>(p * p), 0.0), b(static_cast<size_t>(p), 0.0), s;
      for (size_t i = 0; i < n; ++i)
        for (int r = 0; r < p; ++r) {
          const double xr = cols[i][idx[r]] / rms[idx[r]];
          b[r] += xr;  // target (y / y) = 1
          for (int c = 0; c < p; ++c) a[r * p + c] += xr * cols[i][idx[c]] / rms[idx[c]];
        }
      if (!solve(a, b, p, &s)) continue;
      bool feasible = true;
      std::array<double, 3> coef{0, 0, 0};
      for (int r = 0; r < p; ++r) {
        if (s[r] < 0) feasible = false;
        coef[idx[r]] = s[r] / rms[idx[r]];
      }
      if (!feasible) continue;
      double err = 0;
      for (size_t i = 0; i < n; ++i) {
        const double e = coef[0] * cols[i][0] + coef[1] * cols[i][1] + coef[2] * cols[i][2] - 1.0;
        err += e * e;
      }
      if (err < best_err) best_err = err, best = coef;
    }
    m.coef_.assign(best.begin(), best.end());
    return m;
  }

  // Log-space models: standardise z, expand, ridge.
  for (int f = 0; f < kLogFeatureCount; ++f) {
    double s = 0, s2 = 0;
    for (const FeatureRow& r : x) s += r.z[f], s2 += r.z[f] * r.z[f];
    const double mean = s / static_cast<double>(n);
    const double var = std::max(0.0, s2 / static_cast<double>(n) - mean * mean);
    m.mean_[f] = mean;
    m.scale_[f] = var > 1e-12 ? 1.0 / std::sqrt(var) : 0.0;  // 0: a constant feature, ignored
    m.lo_[f] = m.hi_[f] = x[0].z[f];
    for (const FeatureRow& r : x) m.lo_[f] = std::min(m.lo_[f], r.z[f]), m.hi_[f] = std::max(m.hi_[f], r.z[f]);
  }
  if (kind != RegressorKind::kBoostedTrees) m.fit_axes(x);  // its base is a constant: nothing to clamp
  const int degree = kind == RegressorKind::kLogPoly ? 2 : 1;
  std::vector<std::vector<double>> terms(n, std::vector<double>(static_cast<size_t>(terms_for_degree(degree))));
  std::vector<double> logt(n);
  for (size_t i = 0; i < n; ++i) {
    double s[kLogFeatureCount];
    for (int f = 0; f < kLogFeatureCount; ++f) s[f] = (x[i].z[f] - m.mean_[f]) * m.scale_[f];
    expand(s, s, degree, terms[i].data());
    logt[i] = std::log(y[i]);
  }
  m.log_t_lo_ = *std::min_element(logt.begin(), logt.end());
  m.log_t_hi_ = *std::max_element(logt.begin(), logt.end());
  if (kind == RegressorKind::kBoostedTrees) {
    // Trees alone: the base is the mean.
    m.coef_.assign(static_cast<size_t>(terms_for_degree(1)), 0.0);
    for (double v : logt) m.coef_[0] += v / static_cast<double>(n);
  } else {
    m.coef_ = ridge_fit(terms, logt);
  }
  if (kind == RegressorKind::kLogPoly) return m;

  // Boosted trees on the residuals of the base.
  std::vector<double> residual(n);
  for (size_t i = 0; i < n; ++i) residual[i] = logt[i] - m.linear_log(x[i], 1);
  TreeBuilder builder(x, &residual, &options, &m.nodes_);
  std::vector<int> all(n);
  std::iota(all.begin(), all.end(), 0);
  for (int t = 0; t < options.trees; ++t) {
    std::vector<int> idx = all;
    const int32_t root = builder.build(idx, 0);
    m.roots_.push_back(root);
    for (size_t i = 0; i < n; ++i) residual[i] -= tree_value(m.nodes_, root, x[i]);
  }
  return m;
}

void Regressor::fit_axes(const std::vector<FeatureRow>& x) {
  constexpr int q = kLogFeatureCount;
  const size_t n = x.size();
  std::vector<double> s(n * q), cov(q * q, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (int f = 0; f < q; ++f) s[i * q + f] = (x[i].z[f] - mean_[f]) * scale_[f];
  for (size_t i = 0; i < n; ++i)
    for (int a = 0; a < q; ++a)
      for (int b = 0; b < q; ++b) cov[a * q + b] += s[i * q + a] * s[i * q + b];
  std::vector<double> w;
  symmetric_eigen(cov, q, &w, &axes_);
  double total = 0;
  for (double v : w) total += v;
  axis_lo_.assign(q, 0.0), axis_hi_.assign(q, 0.0), axis_ext_.assign(q, 0.0);
  for (int k = 0; k < q; ++k) {
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; ++i) {
      double p = 0;
      for (int f = 0; f < q; ++f) p += s[i * q + f] * axes_[f * q + k];
      lo = std::min(lo, p), hi = std::max(hi, p);
    }
    axis_lo_[k] = lo, axis_hi_[k] = hi;
    axis_ext_[k] = w[k] >= kMinAxisVarianceShare * total ? std::max(2 * (hi - lo), kMinFeatureExtrapolation) : 0.0;
  }
}

void Regressor::clamp_to_axes(double* s) const {
  constexpr int q = kLogFeatureCount;
  if (axes_.size() != static_cast<size_t>(q * q)) return;
  double p[q];
  bool clamped = false;
  for (int k = 0; k < q; ++k) {
    double v = 0;
    for (int f = 0; f < q; ++f) v += s[f] * axes_[f * q + k];
    p[k] = std::clamp(v, axis_lo_[k] - axis_ext_[k], axis_hi_[k] + axis_ext_[k]);
    clamped |= p[k] != v;
  }
  if (!clamped) return;  // s as it was, not s rounded through the axes
  for (int f = 0; f < q; ++f) {
    double v = 0;
    for (int k = 0; k < q; ++k) v += axes_[f * q + k] * p[k];
    s[f] = v;
  }
}

double Regressor::linear_log(const FeatureRow& r, int degree) const {
  double s[kLogFeatureCount], c[kLogFeatureCount];
  for (int f = 0; f < kLogFeatureCount; ++f) {
    const double ext = std::max(2 * (hi_[f] - lo_[f]), kMinFeatureExtrapolation);
    s[f] = (std::clamp(r.z[f], lo_[f] - ext, hi_[f] + ext) - mean_[f]) * scale_[f];
  }
  // A query off the fitted data's nearly fixed combinations of features is brought back onto
  // them (kMinAxisVarianceShare): a linear model fitted to nearly collinear features weighs
  // their small differences heavily and extrapolates them wildly.
  clamp_to_axes(s);
  for (int f = 0; f < kLogFeatureCount; ++f) {
    const double z = scale_[f] > 0 ? s[f] / scale_[f] + mean_[f] : r.z[f];
    c[f] = (std::clamp(z, lo_[f], hi_[f]) - mean_[f]) * scale_[f];
  }
  double terms[terms_for_degree(2)];
  expand(s, c, degree, terms);
  double v = 0;
  const size_t p = std::min(coef_.size(), static_cast<size_t>(terms_for_degree(degree)));
  for (size_t i = 0; i < p; ++i) v += coef_[i] * terms[i];
  if (degree == 2 && p == static_cast<size_t>(terms_for_degree(2))) {
    // Beyond the fitted range the quadratic part continues along its tangent at the edge, not
    // flat: flat, the linear coefficients alone carried the extrapolation, and where the fit had
    // bent them against a strong quadratic term they were far steeper than the data at the edge
    // (a ResNet stem at twice the largest sampled rows predicted 708 ms against 42 measured).
    double slope[kLogFeatureCount] = {};
    for (int i = 0, k = 1 + kLogFeatureCount; i < kLogFeatureCount; ++i)
      for (int j = i; j < kLogFeatureCount; ++j, ++k) {
        slope[i] += coef_[static_cast<size_t>(k)] * c[j];
        slope[j] += coef_[static_cast<size_t>(k)] * c[i];
      }
    for (int f = 0; f < kLogFeatureCount; ++f) v += slope[f] * (s[f] - c[f]);
  }
  return v;
}

double Regressor::predict(const FeatureRow& r) const {
  if (coef_.empty()) return 0.0;
  if (kind_ == RegressorKind::kRoofline) return std::max(0.0, coef_[0] * r.flops + coef_[1] * r.bytes + coef_[2]);
  double v = linear_log(r, kind_ == RegressorKind::kLogPoly ? 2 : 1);
  for (int32_t root : roots_) v += tree_value(nodes_, root, r);
  v = std::clamp(v, log_t_lo_ - kExtrapolationLog, log_t_hi_ + kExtrapolationLog);
  return std::exp(std::clamp(v, kMinLog, kMaxLog));
}

JsonValue Regressor::to_json() const {
  JsonValue j = JsonValue::object();
  j.set("kind", regressor_kind_name(kind_));
  j.set("coef", doubles_json(coef_.data(), coef_.size()));
  if (kind_ == RegressorKind::kRoofline) return j;
  j.set("mean", doubles_json(mean_.data(), mean_.size()));
  j.set("scale", doubles_json(scale_.data(), scale_.size()));
  j.set("lo", doubles_json(lo_.data(), lo_.size()));
  j.set("hi", doubles_json(hi_.data(), hi_.size()));
  const double log_t[2] = {log_t_lo_, log_t_hi_};
  j.set("log_t_range", doubles_json(log_t, 2));
  if (!axes_.empty()) {
    j.set("axes", doubles_json(axes_.data(), axes_.size()));
    j.set("axis_lo", doubles_json(axis_lo_.data(), axis_lo_.size()));
    j.set("axis_hi", doubles_json(axis_hi_.data(), axis_hi_.size()));
    j.set("axis_ext", doubles_json(axis_ext_.data(), axis_ext_.size()));
  }
  if (kind_ == RegressorKind::kLogPoly) return j;
  JsonValue feature = JsonValue::array(), left = JsonValue::array(), right = JsonValue::array(),
            threshold = JsonValue::array(), value = JsonValue::array(), roots = JsonValue::array();
  for (const TreeNode& t : nodes_) {
    feature.push_back(t.feature);
    left.push_back(t.left);
    right.push_back(t.right);
    threshold.push_back(t.threshold);
    value.push_back(t.value);
  }
  for (int32_t r : roots_) roots.push_back(r);
  JsonValue trees = JsonValue::object();
  trees.set("feature", std::move(feature));
  trees.set("left", std::move(left));
  trees.set("right", std::move(right));
  trees.set("threshold", std::move(threshold));
  trees.set("value", std::move(value));
  trees.set("roots", std::move(roots));
  j.set("trees", std::move(trees));
  return j;
}

Result<Regressor> Regressor::from_json(const JsonValue& j) {
  if (!j.is_object()) return corrupt_data("regressor: expected an object");
  const std::string kind = j.get_string("kind");
  Regressor m;
  int k = 0;
  while (k < kRegressorKindCount && kind != kKindNames[k]) ++k;
  if (k == kRegressorKindCount) return corrupt_data("regressor: unknown kind '" + kind + "'");
  m.kind_ = static_cast<RegressorKind>(k);
  const size_t ncoef = m.kind_ == RegressorKind::kRoofline ? 3
                       : m.kind_ == RegressorKind::kLogPoly ? static_cast<size_t>(terms_for_degree(2))
                                                            : static_cast<size_t>(terms_for_degree(1));
  m.coef_.resize(ncoef);
  ET_RETURN_IF_ERROR(read_doubles(j, "coef", ncoef, m.coef_.data()));
  if (m.kind_ == RegressorKind::kRoofline) return m;
  ET_RETURN_IF_ERROR(read_doubles(j, "mean", kLogFeatureCount, m.mean_.data()));
  ET_RETURN_IF_ERROR(read_doubles(j, "scale", kLogFeatureCount, m.scale_.data()));
  ET_RETURN_IF_ERROR(read_doubles(j, "lo", kLogFeatureCount, m.lo_.data()));
  ET_RETURN_IF_ERROR(read_doubles(j, "hi", kLogFeatureCount, m.hi_.data()));
  for (int f = 0; f < kLogFeatureCount; ++f)
    if (!(m.lo_[f] <= m.hi_[f])) return corrupt_data("regressor: feature range lo > hi");
  double log_t[2];
  ET_RETURN_IF_ERROR(read_doubles(j, "log_t_range", 2, log_t));
  if (!(log_t[0] <= log_t[1])) return corrupt_data("regressor: log_t_range lo > hi");
  m.log_t_lo_ = log_t[0], m.log_t_hi_ = log_t[1];
  if (j.get_array("axes") != nullptr) {
    constexpr size_t q = kLogFeatureCount;
    m.axes_.resize(q * q), m.axis_lo_.resize(q), m.axis_hi_.resize(q), m.axis_ext_.resize(q);
    ET_RETURN_IF_ERROR(read_doubles(j, "axes", q * q, m.axes_.data()));
    ET_RETURN_IF_ERROR(read_doubles(j, "axis_lo", q, m.axis_lo_.data()));
    ET_RETURN_IF_ERROR(read_doubles(j, "axis_hi", q, m.axis_hi_.data()));
    ET_RETURN_IF_ERROR(read_doubles(j, "axis_ext", q, m.axis_ext_.data()));
    for (size_t k = 0; k < q; ++k)
      if (!(m.axis_lo_[k] <= m.axis_hi_[k]) || !(m.axis_ext_[k] >= 0))
        return corrupt_data("regressor: axis range lo > hi or a negative extension");
  }
  if (m.kind_ == RegressorKind::kLogPoly) return m;
  const JsonValue* trees = j.get_object("trees");
  if (trees == nullptr) return corrupt_data("regressor: " + kind + " without 'trees'");
  const JsonValue* feature = trees->get_array("feature");
  const size_t count = feature ? feature->size() : 0;
  std::vector<double> f(count), l(count), r(count);
  m.nodes_.resize(count);
  ET_RETURN_IF_ERROR(read_doubles(*trees, "feature", count, f.data()));
  ET_RETURN_IF_ERROR(read_doubles(*trees, "left", count, l.data()));
  ET_RETURN_IF_ERROR(read_doubles(*trees, "right", count, r.data()));
  std::vector<double> th(count), v(count);
  ET_RETURN_IF_ERROR(read_doubles(*trees, "threshold", count, th.data()));
  ET_RETURN_IF_ERROR(read_doubles(*trees, "value", count, v.data()));
  for (size_t i = 0; i < count; ++i) {
    TreeNode& t = m.nodes_[i];
    t.feature = static_cast<int16_t>(f[i]);
    t.left = static_cast<int32_t>(l[i]);
    t.right = static_cast<int32_t>(r[i]);
    t.threshold = th[i];
    t.value = v[i];
    // Children come after their parent (preorder), so a walk always ends at a leaf.
    const bool leaf = t.feature == -1;
    const bool split_ok = t.feature >= 0 && t.feature < kLogFeatureCount && t.left > static_cast<int32_t>(i) &&
                          t.right > static_cast<int32_t>(i) && t.left < static_cast<int32_t>(count) &&
                          t.right < static_cast<int32_t>(count);
    if (!leaf && !split_ok) return corrupt_data("regressor: tree node " + std::to_string(i) + " is malformed");
  }
  const JsonValue* roots = trees->get_array("roots");
  if (roots == nullptr) return corrupt_data("regressor: " + kind + " without 'roots'");
  for (const JsonValue& rv : roots->items()) {
    const int64_t root = rv.as_int(-1);
    if (root < 0 || root >= static_cast<int64_t>(count)) return corrupt_data("regressor: tree root out of range");
    m.roots_.push_back(static_cast<int32_t>(root));
  }
  return m;
}

double within_share(const std::vector<double>& predicted, const std::vector<double>& measured, double tol) {
  if (predicted.empty() || predicted.size() != measured.size()) return 0.0;
  size_t hits = 0;
  for (size_t i = 0; i < predicted.size(); ++i)
    if (std::fabs(predicted[i] - measured[i]) <= tol * std::fabs(measured[i])) ++hits;
  return static_cast<double>(hits) / static_cast<double>(predicted.size());
}

double r_squared(const std::vector<double>& predicted, const std::vector<double>& measured) {
  if (predicted.empty() || predicted.size() != measured.size()) return 0.0;
  double mean = 0;
  for (double m : measured) mean += m;
  mean /= static_cast<double>(measured.size());
  double ss_res = 0, ss_tot = 0;
  for (size_t i = 0; i < measured.size(); ++i) {
    ss_res += (predicted[i] - measured[i]) * (predicted[i] - measured[i]);
    ss_tot += (measured[i] - mean) * (measured[i] - mean);
  }
  if (ss_tot == 0) return ss_res == 0 ? 1.0 : 0.0;
  return 1.0 - ss_res / ss_tot;
}

int choose_candidate(const std::vector<CandidateScore>& candidates) {
  int best = -1;
  for (size_t k = 0; k < candidates.size(); ++k) {
    const CandidateScore& c = candidates[k];
    if (!c.within_cost_limit) continue;
    if (best < 0) {
      best = static_cast<int>(k);
      continue;
    }
    const CandidateScore& b = candidates[static_cast<size_t>(best)];
    if (c.cv_within > b.cv_within + 1e-12 || (c.cv_within > b.cv_within - 1e-12 && c.cv_r2 > b.cv_r2))
      best = static_cast<int>(k);
  }
  if (best >= 0) return best;
  // Nothing is cheap enough: the cheapest one.
  best = 0;
  for (size_t k = 1; k < candidates.size(); ++k)
    if (candidates[k].predict_ns < candidates[static_cast<size_t>(best)].predict_ns) best = static_cast<int>(k);
  return best;
}

Result<Selection> select_regressor(const std::vector<FeatureRow>& x, const std::vector<double>& y,
                                   const SelectOptions& options) {
  return select_regressor(x, y, std::vector<int>(), options);
}

Result<Selection> select_regressor(const std::vector<FeatureRow>& x, const std::vector<double>& y,
                                   const std::vector<int>& groups, const SelectOptions& options) {
  if (x.empty()) return invalid_argument("select_regressor: no samples");
  if (!groups.empty() && groups.size() != x.size()) return invalid_argument("select_regressor: one group per row");
  const size_t n = x.size();
  // Deterministic fold assignment: a seeded shuffle of the rows (or of the distinct groups)
  // dealt round-robin; all rows of a group share its fold.
  // One group alone cannot be held out from itself: its rows are then folded one by one.
  auto distinct = [](std::vector<int> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
  };
  std::vector<int> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  if (distinct(groups).size() >= 2) ids = groups;
  std::vector<int> units = distinct(ids);
  const int folds =
      static_cast<int>(std::min<size_t>(units.size(), static_cast<size_t>(std::max(2, options.folds))));
  Rng rng(options.seed);
  for (size_t i = units.size(); i > 1; --i) std::swap(units[i - 1], units[rng.below(i)]);
  std::map<int, int> unit_fold;
  for (size_t i = 0; i < units.size(); ++i) unit_fold[units[i]] = static_cast<int>(i % static_cast<size_t>(folds));
  std::vector<int> fold(n);
  for (size_t i = 0; i < n; ++i) fold[i] = unit_fold[ids[i]];

  Selection sel;
  std::vector<Regressor> fulls;
  std::vector<std::vector<double>> oof(kRegressorKindCount, std::vector<double>(n, 0.0));
  for (int k = 0; k < kRegressorKindCount; ++k) {
    const RegressorKind kind = static_cast<RegressorKind>(k);
    CandidateScore score;
    score.kind = kind;
    if (n >= 2) {
      for (int f = 0; f < folds; ++f) {
        std::vector<FeatureRow> tx;
        std::vector<double> ty;
        for (size_t i = 0; i < n; ++i)
          if (fold[i] != f) tx.push_back(x[i]), ty.push_back(y[i]);
        ET_ASSIGN_OR_RETURN(Regressor m, Regressor::fit(kind, tx, ty, options.fit));
        for (size_t i = 0; i < n; ++i)
          if (fold[i] == f) oof[k][i] = m.predict(x[i]);
      }
      score.cv_within = within_share(oof[k], y);
      score.cv_r2 = r_squared(oof[k], y);
    }
    // Prediction cost, measured on a model fitted to everything: the best of three rounds of
    // ~1000 predictions, so a preempted round does not count.
    ET_ASSIGN_OR_RETURN(Regressor full, Regressor::fit(kind, x, y, options.fit));
    const int passes = std::max<int>(1, static_cast<int>(1000 / n));
    volatile double sink = 0;
    score.predict_ns = INFINITY;
    for (int round = 0; round < 3; ++round) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int p = 0; p < passes; ++p)
        for (const FeatureRow& r : x) sink = sink + full.predict(r);
      const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
      score.predict_ns = std::min(score.predict_ns, ns / static_cast<double>(passes * n));
    }
    score.within_cost_limit = score.predict_ns <= options.max_predict_ns;
    sel.candidates.push_back(score);
    fulls.push_back(std::move(full));
  }
  sel.chosen = choose_candidate(sel.candidates);
  sel.model = fulls[static_cast<size_t>(sel.chosen)];
  sel.out_of_fold = oof[static_cast<size_t>(sel.chosen)];
  return sel;
}

}  // namespace edgetrain
