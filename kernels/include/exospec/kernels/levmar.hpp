#pragma once
// Levenberg-Marquardt for weighted nonlinear least squares, header-only so
// that small fixed sizes specialise (template parameter NP: the number of
// model parameters, or Eigen::Dynamic).
//
// Minimises 1/2 sum_i r_i(p)^2, r_i = (y_i - f_i(p)) / sigma_i, given a model
// functor that returns the residuals and their analytic Jacobian dr/dp:
//
//   struct Model {
//     int residuals() const;                       // n
//     // Fills r (n) and, if J is not null, J (n x np, column-major, leading
//     // dimension n). Returns false if the model cannot be evaluated there.
//     bool operator()(const double* p, double* r, double* J) const;
//   };
//
// In the normal-equation mode (LmOptions::use_qr = false) a model may instead
// give what that mode uses, without the n-vectors (a NormalEquationModel):
//
//   struct Model {
//     int residuals() const;
//     // chi2 = r^T r and, if jtj is not null, J^T J (np x np, column-major)
//     // and J^T r (np). Returns false if the model cannot be evaluated there.
//     bool normal(const double* p, double& chi2, double* jtj, double* jtr) const;
//   };
//
// (for models whose residuals are cheaper to summarise than to write out:
// variable projection, line_fit.cpp). Its free parameters must come first,
// with no ties; the result is the same as for residuals with that J^T J.
//
// Parameters may be free, fixed, or tied (p_j = ratio x p_k, k free), and free
// ones may have box bounds (the trial point is projected onto the box). The
// step solves min ||J d + r||^2 + lambda ||D d||^2 with Marquardt's scaling
// D = the largest column norms of J seen so far (More, "The Levenberg-Marquardt
// algorithm: implementation and theory", 1978), either by a QR factorisation
// of the stacked system (accurate: the default) or by Cholesky of the normal
// equations (fast, for well-conditioned small problems). lambda follows
// Nielsen's rule (Nielsen, IMM-REP-1999-05): on success lambda *= max(1/3,
// 1 - (2 rho - 1)^3), on failure lambda *= nu, nu *= 2.
//
// Stopping rules (MINPACK's): ftol, both the actual and the predicted relative
// reduction of the cost are below ftol; xtol, ||D d|| <= xtol ||D p|| (or, if
// LmOptions::step_tol is set, ||D d|| <= step_tol); gtol, the
// largest cosine between r and a column of J is below gtol; if
// LmOptions::newton_tol is set, the undamped step from the current point
// would be at most newton_tol (||D d||, without evaluating it). Status: kConverged
// for any of them; kMaxIterations; kStalled when lambda exceeds 1e16 without
// reducing the cost (a minimum the arithmetic cannot improve on, or a bad
// model); kSingular when J^T J is rank-deficient at the solution (the
// parameters are not all determined); kBadInput for too few residuals or
// non-finite starting values; kNotFinite when the model fails at the start.
//
// After solve(): covariance() = (J^T J)^-1 over all parameters (tied rows
// follow their parent, fixed ones are 0), from the QR factor of J (more
// accurate than inverting J^T J). For residuals weighted by true sigmas this
// is the parameter covariance; scale by chi2 / (n - m) for unknown sigma (as
// NIST's certified standard deviations are).
//
// All workspaces are allocated by the constructor (for up to max_residuals);
// solve() allocates nothing.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace exospec::kernels {

template <class M>
concept NormalEquationModel = requires(const M& m, const double* p, double& chi2, double* a) {
  { m.normal(p, chi2, a, a) } -> std::convertible_to<bool>;
};

enum class LmStatus : std::uint8_t {
  kConverged = 0,
  kMaxIterations = 1,
  kStalled = 2,
  kSingular = 3,
  kBadInput = 4,
  kNotFinite = 5,
};
inline const char* lm_status_name(LmStatus s) noexcept {
  switch (s) {
    case LmStatus::kConverged:
      return "converged";
    case LmStatus::kMaxIterations:
      return "maximum iterations";
    case LmStatus::kStalled:
      return "stalled";
    case LmStatus::kSingular:
      return "singular";
    case LmStatus::kBadInput:
      return "bad input";
    case LmStatus::kNotFinite:
      return "not finite";
  }
  return "?";
}

struct LmOptions {
  int max_iterations = 500;
  double ftol = 1e-14;
  double xtol = 1e-14;
  double gtol = 1e-14;
  double initial_lambda = 1e-3;
  bool use_qr = true;  // false: Cholesky of the normal equations (faster)
  // Evaluate the Jacobian with every trial point, so that an accepted step
  // needs no second evaluation (for models whose Jacobian costs little more
  // than their residuals).
  bool jacobian_with_trial = false;
  // Also converged when an accepted step's Marquardt-scaled length ||D d||
  // is at most step_tol (0: off). D holds the column norms of J, so for
  // residuals weighted by their sigmas ||D d|| is the step in standard
  // errors of the parameters (exactly, for one parameter): a step of 1e-3
  // sigma changes nothing that can be measured, whatever the parameter's
  // size (xtol, relative to ||D p||, never stops a parameter near 0).
  double step_tol = 0.0;
  // Also converged, before any trial, when the undamped (Gauss-Newton or,
  // with a model's exact curvature, Newton) step from the current point has
  // ||D d|| <= newton_tol (0: off): the point is then within about that many
  // standard errors of the minimum, and the evaluation that would confirm
  // the step is saved.
  double newton_tol = 0.0;
};

struct LmResult {
  LmStatus status = LmStatus::kBadInput;
  int iterations = 0;
  int evaluations = 0;
  double chi2 = 0.0;  // sum r^2 at the solution
  int dof = 0;        // n - free parameters
  double reduced_chi2() const noexcept {
    return dof > 0 ? chi2 / dof : std::numeric_limits<double>::quiet_NaN();
  }
};

template <int NP = Eigen::Dynamic>
class LevenbergMarquardt {
 public:
  using Vec = Eigen::Matrix<double, NP, 1>;
  using Mat = Eigen::Matrix<double, NP, NP>;

  LevenbergMarquardt(int parameters, int max_residuals, LmOptions options = {})
      : np_(parameters), nmax_(max_residuals), options_(options) {
    kind_.assign(static_cast<std::size_t>(np_), Kind::kFree);
    parent_.assign(static_cast<std::size_t>(np_), -1);
    ratio_.assign(static_cast<std::size_t>(np_), 1.0);
    lower_ = Vec::Constant(np_, -std::numeric_limits<double>::infinity());
    upper_ = Vec::Constant(np_, std::numeric_limits<double>::infinity());
    r_.resize(nmax_);
    r_trial_.resize(nmax_);
    jp_.resize(nmax_, np_);
    ju_.resize(nmax_, np_);
    aug_.resize(nmax_ + np_, np_);
    rhs_.resize(nmax_ + np_);
    qr_ = Eigen::HouseholderQR<Eigen::MatrixXd>(nmax_ + np_, np_);
    jqr_ = Eigen::ColPivHouseholderQR<Eigen::MatrixXd>(nmax_, np_);
    cov_ = Mat::Zero(np_, np_);
    free_index_.assign(static_cast<std::size_t>(np_), -1);
    trial_.resize(np_);
    delta_.resize(np_);
    diag_.resize(np_);
    grad_.resize(np_);
    normal_.resize(np_, np_);
    rinv_.resize(np_, np_);
    cfree_.resize(np_, np_);
    jtj_.resize(np_, np_);
    jtr_.resize(np_);
    jtj_trial_.resize(np_, np_);
    jtr_trial_.resize(np_);
    jd_.resize(nmax_);
    jp_trial_.resize(nmax_, np_);
    // Eigen's LLT leaves its status unset until the first compute(); set it,
    // so that moving a solver (into a std::vector, say) copies a valid value.
    llt_.compute(Mat::Identity(np_, np_));
  }

  int parameters() const noexcept { return np_; }
  LmOptions& options() noexcept { return options_; }

  void set_bounds(int j, double lower, double upper) {
    lower_(j) = lower;
    upper_(j) = upper;
  }
  void clear_bounds() {
    lower_.setConstant(-std::numeric_limits<double>::infinity());
    upper_.setConstant(std::numeric_limits<double>::infinity());
  }
  void set_free(int j) {
    kind_[j] = Kind::kFree;
    parent_[j] = -1;
  }
  void set_fixed(int j) { kind_[j] = Kind::kFixed; }
  // p_j = ratio * p_k (k must be free).
  void set_tied(int j, int k, double ratio) {
    kind_[j] = Kind::kTied;
    parent_[j] = k;
    ratio_[j] = ratio;
  }

  const Mat& covariance() const noexcept { return cov_; }

  template <class Model>
  LmResult solve(const Model& model, Vec& p) {
    LmResult res;
    const int n = model.residuals();
    // Free parameters.
    int m = 0;
    for (int j = 0; j < np_; ++j) free_index_[j] = kind_[j] == Kind::kFree ? m++ : -1;
    m_ = m;
    // Free parameters first, then fixed ones, no ties: the free Jacobian is a
    // prefix of the model's, and the normal equations need no copy of it.
    prefix_free_ = true;
    for (int j = 0; j < np_; ++j) {
      if (kind_[j] == Kind::kTied || (kind_[j] == Kind::kFree && j >= m)) prefix_free_ = false;
    }
    cov_.setZero();
    if (n > nmax_ || n < m || m == 0 || !p.allFinite()) return res;
    if constexpr (NormalEquationModel<Model>) {
      if (options_.use_qr || !prefix_free_) return res;  // (see the header comment)
    }
    res.dof = n - m;
    for (int j = 0; j < np_; ++j) {
      if (kind_[j] == Kind::kFree) p(j) = std::clamp(p(j), lower_(j), upper_(j));
    }
    apply_ties(p);
    if constexpr (NP == 1 && NormalEquationModel<Model>) return solve_scalar(model, p, res);
    auto r = r_.head(n);
    auto rt = r_trial_.head(n);
    if (!evaluate(model, p, n, true)) {
      res.status = LmStatus::kNotFinite;
      return res;
    }
    ++res.evaluations;
    double cost = cost_;
    diag_.setZero();
    double lambda = options_.initial_lambda, nu = 2.0;
    bool first = true;
    res.status = LmStatus::kMaxIterations;
    for (int it = 0; it < options_.max_iterations; ++it) {
      res.iterations = it + 1;
      auto J = ju_.topLeftCorner(n, m);
      // Scaling and gradient test (from J^T J and J^T r in the normal-equation
      // mode, where evaluate() formed them once per Jacobian).
      double gmax = 0.0;
      const double rnorm = std::sqrt(2.0 * cost);
      for (int f = 0; f < m; ++f) {
        const double cn = options_.use_qr ? J.col(f).norm() : std::sqrt(jtj_(f, f));
        const double g = options_.use_qr ? J.col(f).dot(r) : jtr_(f);
        diag_(f) = std::max(diag_(f), cn);
        if (cn > 0.0 && rnorm > 0.0) gmax = std::max(gmax, std::abs(g) / (cn * rnorm));
      }
      for (int f = 0; f < m; ++f) {
        if (diag_(f) == 0.0) diag_(f) = 1.0;
      }
      if (first && options_.initial_lambda > 0.0) {
        // lambda relative to the scaled J^T J.
        double mx = 0.0;
        for (int f = 0; f < m; ++f) {
          const double c2 = options_.use_qr ? J.col(f).squaredNorm() : jtj_(f, f);
          mx = std::max(mx, c2 / (diag_(f) * diag_(f)));
        }
        lambda = options_.initial_lambda * std::max(mx, 1e-300);
        first = false;
      }
      if (gmax <= options_.gtol || rnorm == 0.0) {
        res.status = LmStatus::kConverged;
        break;
      }
      if (options_.newton_tol > 0.0 && step(n, m, 0.0) &&
          (diag_.head(m).array() * delta_.head(m).array()).matrix().norm() <= options_.newton_tol) {
        res.status = LmStatus::kConverged;
        break;
      }
      // Inner loop: find a step that lowers the cost.
      bool accepted = false;
      while (!accepted) {
        if (!step(n, m, lambda)) {
          if (!raise_damping(lambda, nu)) break;
          continue;
        }
        // Trial point (projected onto the box).
        trial_ = p;
        for (int j = 0; j < np_; ++j) {
          if (kind_[j] != Kind::kFree) continue;
          trial_(j) = std::clamp(p(j) + delta_(free_index_[j]), lower_(j), upper_(j));
        }
        apply_ties(trial_);
        // The step actually taken (after projection).
        for (int j = 0; j < np_; ++j) {
          if (kind_[j] == Kind::kFree) delta_(free_index_[j]) = trial_(j) - p(j);
        }
        // Predicted reduction: 1/2 (|r|^2 - |r + J d|^2) = -d.J^T r - 1/2 |J d|^2.
        double pred;
        if (options_.use_qr) {
          jd_.head(n).noalias() = J * delta_.head(m);
          pred = -(r.dot(jd_.head(n))) - 0.5 * jd_.head(n).squaredNorm();
        } else {
          const auto d = delta_.head(m);
          pred = -d.dot(jtr_.head(m)) -
                 0.5 * d.dot(jtj_.topLeftCorner(m, m).template selfadjointView<Eigen::Lower>() * d);
        }
        ++res.evaluations;
        bool ok;
        double cost_new;
        if constexpr (NormalEquationModel<Model>) {
          double chi2 = 0.0;
          ok = model.normal(trial_.data(), chi2, options_.jacobian_with_trial ? jtj_trial_.data() : nullptr,
                            options_.jacobian_with_trial ? jtr_trial_.data() : nullptr);
          cost_new = 0.5 * chi2;
        } else {
          ok = model(trial_.data(), rt.data(), options_.jacobian_with_trial ? jp_trial_.data() : nullptr);
          cost_new = 0.5 * rt.squaredNorm();
        }
        // (A non-finite residual makes the cost non-finite.)
        if (!ok) cost_new = std::numeric_limits<double>::infinity();
        if (!std::isfinite(cost_new)) cost_new = std::numeric_limits<double>::infinity();
        const double actual = cost - cost_new;
        const double rho = pred > 0.0 ? actual / pred : -1.0;
        double dnorm = 0.0, pnorm = 0.0;
        for (int j = 0; j < np_; ++j) {
          if (kind_[j] != Kind::kFree) continue;
          const int f = free_index_[j];
          dnorm += diag_(f) * diag_(f) * delta_(f) * delta_(f);
          pnorm += diag_(f) * diag_(f) * p(j) * p(j);
        }
        dnorm = std::sqrt(dnorm);
        pnorm = std::sqrt(pnorm);
        if (ok && actual > 0.0 && rho > 0.0) {
          accepted = true;
          p = trial_;
          const double old_cost = cost;
          cost = cost_new;
          cost_ = cost;
          lambda = lambda_after_success(lambda, rho);
          nu = 2.0;
          if (options_.jacobian_with_trial) {
            bool finite;
            if constexpr (NormalEquationModel<Model>) {
              std::swap(jtj_, jtj_trial_);
              std::swap(jtr_, jtr_trial_);
              finite = jtj_.topLeftCorner(m, m).allFinite() && jtr_.head(m).allFinite();
            } else {
              r_.head(n) = rt;
              jp_.swap(jp_trial_);
              finite = absorb_jacobian(n);
            }
            if (!finite) {
              res.status = LmStatus::kNotFinite;
              return finish(res, n, m);
            }
          } else {
            if (!evaluate(model, p, n, true)) {
              res.status = LmStatus::kNotFinite;
              return finish(res, n, m);
            }
            ++res.evaluations;
          }
          if (converged_after_success(actual, pred, old_cost, rho, dnorm, pnorm)) {
            res.status = LmStatus::kConverged;
            return finish(res, n, m);
          }
        } else {
          // Converged already if even the predicted gain is negligible.
          if (converged_after_failure(pred, cost, dnorm, pnorm)) {
            res.status = LmStatus::kConverged;
            return finish(res, n, m);
          }
          if (!raise_damping(lambda, nu)) break;
        }
      }
      if (!accepted) {
        res.status = LmStatus::kStalled;
        break;
      }
    }
    return finish(res, n, m);
  }

 private:
  enum class Kind : std::uint8_t { kFree, kFixed, kTied };

  // The rules both loops (solve's and solve_scalar's) share.
  // Nielsen's damping increase after a failed or rejected step; false when
  // lambda has grown past 1e16 (the solve has stalled).
  static bool raise_damping(double& lambda, double& nu) {
    lambda *= nu;
    nu *= 2.0;
    return lambda <= 1e16;
  }
  // Nielsen's damping update after an accepted step.
  static double lambda_after_success(double lambda, double rho) {
    const double t = 2.0 * rho - 1.0;
    return lambda * std::max(1.0 / 3.0, 1.0 - t * t * t);
  }
  // MINPACK's ftol and xtol tests (and step_tol) after an accepted step.
  bool converged_after_success(double actual, double pred, double old_cost, double rho, double dnorm,
                               double pnorm) const {
    const bool ftol_met = actual <= options_.ftol * old_cost && pred <= options_.ftol * old_cost && rho <= 2.0;
    const bool xtol_met = dnorm <= options_.xtol * pnorm || dnorm <= options_.step_tol;
    return ftol_met || xtol_met;
  }
  // After a rejected step: converged already if even the predicted gain is
  // negligible.
  bool converged_after_failure(double pred, double cost, double dnorm, double pnorm) const {
    return pred <= options_.ftol * cost && dnorm <= 1e3 * options_.xtol * pnorm + 1e-300;
  }

  void apply_ties(Vec& p) const {
    for (int j = 0; j < np_; ++j) {
      if (kind_[j] == Kind::kTied) p(j) = ratio_[j] * p(parent_[j]);
    }
  }

  // r_ and the free-parameter Jacobian ju_ at p.
  template <class Model>
  bool evaluate(const Model& model, const Vec& p, int n, bool jac) {
    if constexpr (NormalEquationModel<Model>) {
      double chi2 = 0.0;
      if (!model.normal(p.data(), chi2, jac ? jtj_.data() : nullptr, jac ? jtr_.data() : nullptr)) return false;
      cost_ = 0.5 * chi2;
      if (!std::isfinite(cost_)) return false;
      return !jac || (jtj_.topLeftCorner(m_, m_).allFinite() && jtr_.head(m_).allFinite());
    } else {
      auto r = r_.head(n);
      if (!model(p.data(), r.data(), jac ? jp_.data() : nullptr)) return false;
      if (!r.allFinite()) return false;
      cost_ = 0.5 * r.squaredNorm();
      if (!jac) return true;
      return absorb_jacobian(n);
    }
  }

  // The free-parameter Jacobian ju_ (and, for the normal equations, J^T J and
  // J^T r) from the model's Jacobian jp_ and residuals r_.
  // One free parameter and a normal-equation model: the iteration of
  // solve() (same damping, steps, stopping rules and covariance) in scalars,
  // without Eigen blocks or factorisations, for problems solved millions of
  // times (the shift-only line fit). tests/kernels/test_levmar.cpp checks it
  // against the general loop step for step.
  template <class Model>
  LmResult solve_scalar(const Model& model, Vec& p, LmResult res) {
    const double lo = lower_(0), hi = upper_(0);
    const bool with_trial = options_.jacobian_with_trial;
    double x = p(0), chi2 = 0.0, a = 0.0, g = 0.0;  // a = J^T J, g = J^T r
    auto finite = [](double u, double v) { return std::isfinite(u) && std::isfinite(v); };
    auto evaluate_at = [&](double at) {
      if (!model.normal(&at, chi2, &a, &g)) return false;
      cost_ = 0.5 * chi2;
      return std::isfinite(cost_) && finite(a, g);
    };
    auto done = [&](LmResult out) {
      p(0) = x;
      out.chi2 = 2.0 * cost_;
      jtj_(0, 0) = a;
      jtr_(0) = g;
      if (!(a > 0.0)) return singular(out);  // (1 x 1 LLT: the pivot test is a > 0)
      const double root = std::sqrt(a);
      cov_(0, 0) = 1.0 / root / root;
      return out;
    };
    if (!evaluate_at(x)) {
      res.status = LmStatus::kNotFinite;
      return res;
    }
    ++res.evaluations;
    double cost = cost_, diag = 0.0, lambda = options_.initial_lambda, nu = 2.0;
    bool first = true;
    res.status = LmStatus::kMaxIterations;
    for (int it = 0; it < options_.max_iterations; ++it) {
      res.iterations = it + 1;
      const double rnorm = std::sqrt(2.0 * cost), cn = std::sqrt(a);
      diag = std::max(diag, cn);
      const double gmax = cn > 0.0 && rnorm > 0.0 ? std::abs(g) / (cn * rnorm) : 0.0;
      if (diag == 0.0) diag = 1.0;
      if (first && options_.initial_lambda > 0.0) {
        lambda = options_.initial_lambda * std::max(a / (diag * diag), 1e-300);
        first = false;
      }
      if (gmax <= options_.gtol || rnorm == 0.0) {
        res.status = LmStatus::kConverged;
        break;
      }
      if (options_.newton_tol > 0.0 && a > 0.0) {
        const double root = std::sqrt(a), newton = -g / root / root;
        if (std::isfinite(newton) && std::sqrt(diag * diag * newton * newton) <= options_.newton_tol) {
          res.status = LmStatus::kConverged;
          break;
        }
      }
      bool accepted = false;
      while (!accepted) {
        // (As the general loop's 1 x 1 Cholesky solve, to the last bit.)
        const double damped = a + lambda * diag * diag, root = std::sqrt(damped);
        double delta = -g / root / root;
        if (!(damped > 0.0) || !std::isfinite(delta)) {
          if (!raise_damping(lambda, nu)) break;
          continue;
        }
        const double trial = std::clamp(x + delta, lo, hi);
        delta = trial - x;
        const double pred = -(delta * g) - 0.5 * (delta * (a * delta));
        ++res.evaluations;
        double chi2_new = 0.0, a_new = 0.0, g_new = 0.0;
        const bool ok = model.normal(&trial, chi2_new, with_trial ? &a_new : nullptr,
                                     with_trial ? &g_new : nullptr);
        double cost_new = 0.5 * chi2_new;
        if (!ok || !std::isfinite(cost_new)) cost_new = std::numeric_limits<double>::infinity();
        const double actual = cost - cost_new;
        const double rho = pred > 0.0 ? actual / pred : -1.0;
        const double dnorm = std::sqrt(diag * diag * delta * delta), pnorm = std::sqrt(diag * diag * x * x);
        if (ok && actual > 0.0 && rho > 0.0) {
          accepted = true;
          x = trial;
          const double old_cost = cost;
          cost = cost_ = cost_new;
          lambda = lambda_after_success(lambda, rho);
          nu = 2.0;
          if (with_trial) {
            a = a_new;
            g = g_new;
            if (!finite(a, g)) {
              res.status = LmStatus::kNotFinite;
              return done(res);
            }
          } else {
            if (!evaluate_at(x)) {
              res.status = LmStatus::kNotFinite;
              return done(res);
            }
            ++res.evaluations;
            cost = cost_;
          }
          if (converged_after_success(actual, pred, old_cost, rho, dnorm, pnorm)) {
            res.status = LmStatus::kConverged;
            return done(res);
          }
        } else {
          if (converged_after_failure(pred, cost, dnorm, pnorm)) {
            res.status = LmStatus::kConverged;
            return done(res);
          }
          if (!raise_damping(lambda, nu)) break;
        }
      }
      if (!accepted) {
        res.status = LmStatus::kStalled;
        break;
      }
    }
    return done(res);
  }

  bool absorb_jacobian(int n) {
    auto r = r_.head(n);
    // jp_ is n x np with leading dimension nmax_: the model wrote it with
    // leading dimension n, so view it that way.
    Eigen::Map<Eigen::MatrixXd> jp(jp_.data(), n, np_);
    // (With the normal equations, a non-finite J shows in J^T J below.)
    if (options_.use_qr && !jp.allFinite()) return false;
    // J^T J (lower triangle, then mirrored) and J^T r, once per Jacobian:
    // column dot products, which beat a general matrix product at these sizes.
    auto normal_equations = [&](const auto& J) {
      for (int a = 0; a < m_; ++a) {
        for (int b = 0; b <= a; ++b) jtj_(a, b) = jtj_(b, a) = J.col(a).dot(J.col(b));
        jtr_(a) = J.col(a).dot(r);
      }
      return jtj_.topLeftCorner(m_, m_).allFinite();
    };
    if (!options_.use_qr && prefix_free_) return normal_equations(jp.leftCols(m_));
    for (int j = 0; j < np_; ++j) {
      if (kind_[j] == Kind::kFree) ju_.col(free_index_[j]).head(n) = jp.col(j);
    }
    for (int j = 0; j < np_; ++j) {
      if (kind_[j] == Kind::kTied) ju_.col(free_index_[parent_[j]]).head(n) += ratio_[j] * jp.col(j);
    }
    return options_.use_qr || normal_equations(ju_.topLeftCorner(n, m_));
  }


  // delta_ = argmin |J d + r|^2 + lambda |D d|^2.
  bool step(int n, int m, double lambda) {
    auto J = ju_.topLeftCorner(n, m);
    auto r = r_.head(n);
    if (options_.use_qr) {
      auto A = aug_.topLeftCorner(n + m, m);
      A.topRows(n) = J;
      A.bottomRows(m).setZero();
      const double sl = std::sqrt(lambda);
      for (int f = 0; f < m; ++f) A(n + f, f) = sl * diag_(f);
      auto b = rhs_.head(n + m);
      b.head(n) = -r;
      b.tail(m).setZero();
      qr_.compute(A);
      // R d = Q^T b (R is m x m upper triangular).
      auto qtb = rhs_.head(n + m);
      qtb.applyOnTheLeft(qr_.householderQ().transpose());
      const auto R = qr_.matrixQR().topLeftCorner(m, m).template triangularView<Eigen::Upper>();
      for (int f = 0; f < m; ++f) {
        if (!(std::abs(qr_.matrixQR()(f, f)) > 0.0)) return false;
      }
      delta_.head(m) = R.solve(qtb.head(m));
    } else {
      (void)J;
      (void)r;
      normal_.topLeftCorner(m, m) = jtj_.topLeftCorner(m, m);
      for (int f = 0; f < m; ++f) normal_(f, f) += lambda * diag_(f) * diag_(f);
      llt_.compute(normal_.topLeftCorner(m, m));
      if (llt_.info() != Eigen::Success) return false;
      delta_.head(m) = -jtr_.head(m);
      llt_.solveInPlace(delta_.head(m));
    }
    return delta_.head(m).allFinite();
  }

  LmResult finish(LmResult res, int n, int m) {
    res.chi2 = 2.0 * cost_;
    auto cf = cfree_.topLeftCorner(m, m);
    auto J = ju_.topLeftCorner(n, m);
    if (options_.use_qr) {
      // Rank-revealing QR of J: (J^T J)^-1 = P R^-1 R^-T P^T.
      jqr_.compute(J);
      if (jqr_.rank() < m) return singular(res);
      auto rinv = rinv_.topLeftCorner(m, m);
      rinv.setIdentity();
      jqr_.matrixQR().topLeftCorner(m, m).template triangularView<Eigen::Upper>().solveInPlace(rinv);
      normal_.topLeftCorner(m, m).noalias() = rinv * rinv.transpose();
      cf.noalias() = jqr_.colsPermutation() * normal_.topLeftCorner(m, m) *
                     jqr_.colsPermutation().transpose();
    } else {
      // Normal equations (no allocation; fine when J is well conditioned).
      normal_.topLeftCorner(m, m) = jtj_.topLeftCorner(m, m);
      llt_.compute(normal_.topLeftCorner(m, m));
      if (llt_.info() != Eigen::Success) return singular(res);
      // A tiny pivot: the parameters are not all determined.
      const double mx = normal_.topLeftCorner(m, m).diagonal().maxCoeff();
      double pivot = std::numeric_limits<double>::infinity();
      for (int f = 0; f < m; ++f) pivot = std::min(pivot, llt_.matrixLLT()(f, f));
      if (!(pivot > 1e-12 * std::sqrt(mx))) return singular(res);
      cf.setIdentity();
      llt_.solveInPlace(cf);
    }
    // Map to all parameters: p = T u.
    cov_.setZero();
    auto col_of = [&](int j) { return kind_[j] == Kind::kFree ? free_index_[j]
                                      : kind_[j] == Kind::kTied ? free_index_[parent_[j]] : -1; };
    auto factor = [&](int j) { return kind_[j] == Kind::kTied ? ratio_[j] : 1.0; };
    for (int a = 0; a < np_; ++a) {
      const int fa = col_of(a);
      if (fa < 0) continue;
      for (int b = 0; b < np_; ++b) {
        const int fb = col_of(b);
        if (fb < 0) continue;
        cov_(a, b) = factor(a) * factor(b) * cf(fa, fb);
      }
    }
    return res;
  }

  LmResult singular(LmResult res) {
    if (res.status == LmStatus::kConverged) res.status = LmStatus::kSingular;
    cov_.setConstant(std::numeric_limits<double>::quiet_NaN());
    return res;
  }

  int np_, nmax_;
  LmOptions options_;
  std::vector<Kind> kind_;
  std::vector<int> parent_, free_index_;
  std::vector<double> ratio_;
  Vec lower_, upper_, trial_;
  Eigen::VectorXd r_, r_trial_, rhs_, jd_;
  int m_ = 0;  // free parameters of the current solve
  bool prefix_free_ = false;
  Eigen::MatrixXd jp_, jp_trial_, ju_, aug_;
  Eigen::HouseholderQR<Eigen::MatrixXd> qr_;
  Eigen::ColPivHouseholderQR<Eigen::MatrixXd> jqr_;
  Eigen::Matrix<double, NP, 1> delta_, diag_, grad_;
  Eigen::Matrix<double, NP, NP> normal_, rinv_, cfree_, jtj_;
  Eigen::Matrix<double, NP, 1> jtr_;
  Eigen::Matrix<double, NP, NP> jtj_trial_;  // (normal-equation models, Jacobian with the trial)
  Eigen::Matrix<double, NP, 1> jtr_trial_;
  double cost_ = 0.0;  // 1/2 r^T r at p
  Eigen::LLT<Eigen::Matrix<double, NP, NP>> llt_;
  Mat cov_;
};

}  // namespace exospec::kernels
