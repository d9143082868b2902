// The Levenberg-Marquardt core against NIST StRD nonlinear regression: all 27
// problems from both starting points, with the log relative error (LRE) of the
// parameters and of the certified standard deviations. The models are written
// once as templates and differentiated exactly by forward-mode automatic
// differentiation (the small dual-number type below), so the Jacobians are
// analytic, not finite differences.
#include <gtest/gtest.h>

#include <array>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <numbers>
#include <sstream>
#include <string>
#include <vector>

#include "exospec/kernels/levmar.hpp"
#include "test_support.hpp"

namespace exospec::kernels {
namespace {

// Forward-mode dual numbers with up to 9 partial derivatives.
struct AD {
  double v = 0.0;
  std::array<double, 9> d{};
  AD() = default;
  AD(double value) : v(value) {}  // NOLINT: constants promote implicitly
  AD(double value, int, int j) : v(value) { d[static_cast<std::size_t>(j)] = 1.0; }
  double value() const { return v; }
};
AD chain(const AD& a, double value, double slope) {
  AD r(value);
  for (std::size_t j = 0; j < 9; ++j) r.d[j] = slope * a.d[j];
  return r;
}
AD operator+(const AD& a, const AD& b) {
  AD r(a.v + b.v);
  for (std::size_t j = 0; j < 9; ++j) r.d[j] = a.d[j] + b.d[j];
  return r;
}
AD operator-(const AD& a, const AD& b) {
  AD r(a.v - b.v);
  for (std::size_t j = 0; j < 9; ++j) r.d[j] = a.d[j] - b.d[j];
  return r;
}
AD operator-(const AD& a) { return chain(a, -a.v, -1.0); }
AD operator*(const AD& a, const AD& b) {
  AD r(a.v * b.v);
  for (std::size_t j = 0; j < 9; ++j) r.d[j] = a.d[j] * b.v + a.v * b.d[j];
  return r;
}
AD operator/(const AD& a, const AD& b) {
  AD r(a.v / b.v);
  for (std::size_t j = 0; j < 9; ++j) r.d[j] = (a.d[j] * b.v - a.v * b.d[j]) / (b.v * b.v);
  return r;
}
AD operator+(const AD& a, double b) { return a + AD(b); }
AD operator+(double a, const AD& b) { return AD(a) + b; }
AD operator-(double a, const AD& b) { return AD(a) - b; }
AD operator*(const AD& a, double b) { return chain(a, a.v * b, b); }
AD operator*(double a, const AD& b) { return chain(b, a * b.v, a); }
AD operator/(const AD& a, double b) { return chain(a, a.v / b, 1.0 / b); }
AD operator/(double a, const AD& b) { return AD(a) / b; }
AD exp(const AD& a) { return chain(a, std::exp(a.v), std::exp(a.v)); }
AD log(const AD& a) { return chain(a, std::log(a.v), 1.0 / a.v); }
AD sin(const AD& a) { return chain(a, std::sin(a.v), std::cos(a.v)); }
AD cos(const AD& a) { return chain(a, std::cos(a.v), -std::sin(a.v)); }
AD atan(const AD& a) { return chain(a, std::atan(a.v), 1.0 / (1.0 + a.v * a.v)); }
AD pow(const AD& a, double e) { return chain(a, std::pow(a.v, e), e * std::pow(a.v, e - 1.0)); }
AD pow(const AD& a, const AD& e) { return exp(e * log(a)); }

// y (or log y for Nelson) as a function of b and one observation's x values.
template <class T>
using Fn = std::function<T(const std::vector<T>& b, const double* x)>;

template <class T>
T f_eval(const std::string& name, const std::vector<T>& b, const double* x) {
  const double pi = std::numbers::pi;
  const double t = x[0];
  if (name == "Misra1a" || name == "BoxBOD") return b[0] * (1.0 - exp(-b[1] * t));
  if (name == "Chwirut1" || name == "Chwirut2") return exp(-b[0] * t) / (b[1] + b[2] * t);
  if (name.rfind("Lanczos", 0) == 0)
    return b[0] * exp(-b[1] * t) + b[2] * exp(-b[3] * t) + b[4] * exp(-b[5] * t);
  if (name.rfind("Gauss", 0) == 0)
    return b[0] * exp(-b[1] * t) + b[2] * exp(-(t - b[3]) * (t - b[3]) / (b[4] * b[4])) +
           b[5] * exp(-(t - b[6]) * (t - b[6]) / (b[7] * b[7]));
  if (name == "DanWood") return b[0] * exp(b[1] * std::log(t));
  if (name == "Misra1b") return b[0] * (1.0 - pow(1.0 + b[1] * t / 2.0, -2.0));
  if (name == "Kirby2") return (b[0] + b[1] * t + b[2] * t * t) / (1.0 + b[3] * t + b[4] * t * t);
  if (name == "Hahn1" || name == "Thurber")
    return (b[0] + b[1] * t + b[2] * t * t + b[3] * t * t * t) /
           (1.0 + b[4] * t + b[5] * t * t + b[6] * t * t * t);
  if (name == "Nelson") return b[0] - b[1] * t * exp(-b[2] * x[1]);
  if (name == "MGH17") return b[0] + b[1] * exp(-t * b[3]) + b[2] * exp(-t * b[4]);
  if (name == "Misra1c") return b[0] * (1.0 - pow(1.0 + 2.0 * b[1] * t, -0.5));
  if (name == "Misra1d") return b[0] * b[1] * t * pow(1.0 + b[1] * t, -1.0);
  if (name == "Roszman1") return b[0] - b[1] * t - atan(b[2] / (t - b[3])) / pi;
  if (name == "ENSO")
    return b[0] + b[1] * cos(2 * pi * t / 12) + b[2] * sin(2 * pi * t / 12) +
           b[4] * cos(2 * pi * t / b[3]) + b[5] * sin(2 * pi * t / b[3]) +
           b[7] * cos(2 * pi * t / b[6]) + b[8] * sin(2 * pi * t / b[6]);
  if (name == "MGH09") return b[0] * (t * t + t * b[1]) / (t * t + t * b[2] + b[3]);
  if (name == "Rat42") return b[0] / (1.0 + exp(b[1] - b[2] * t));
  if (name == "MGH10") return b[0] * exp(b[1] / (t + b[2]));
  if (name == "Eckerle4") return (b[0] / b[1]) * exp(-0.5 * ((t - b[2]) / b[1]) * ((t - b[2]) / b[1]));
  if (name == "Rat43") return b[0] / pow(1.0 + exp(b[1] - b[2] * t), 1.0 / b[3]);
  if (name == "Bennett5") return b[0] * pow(b[1] + t, -1.0 / b[2]);
  ADD_FAILURE() << "no model for " << name;
  return T(0);
}

struct Problem {
  std::string name;
  int n_obs = 0;
  std::vector<double> start1, start2, certified, certified_sd;
  double rss = 0;
  std::vector<double> y;
  std::vector<std::vector<double>> x;  // per observation
};

std::map<std::string, Problem> load() {
  const auto dir = test::reference_dir() / "nist";
  std::map<std::string, Problem> out;
  std::ifstream tsv(dir / "certified_values.tsv");
  EXPECT_TRUE(tsv) << dir;
  std::string line;
  std::getline(tsv, line);
  while (std::getline(tsv, line)) {
    std::istringstream in(line);
    std::string name, difficulty, param;
    int n = 0;
    double s1, s2, c, sd, rss, rsd;
    in >> name >> difficulty >> n >> param >> s1 >> s2 >> c >> sd >> rss >> rsd;
    Problem& p = out[name];
    p.name = name;
    p.n_obs = n;
    p.start1.push_back(s1);
    p.start2.push_back(s2);
    p.certified.push_back(c);
    p.certified_sd.push_back(sd);
    p.rss = rss;
  }
  for (auto& [name, p] : out) {
    std::ifstream dat(dir / (name + ".dat"));
    EXPECT_TRUE(dat) << name;
    bool data = false;
    while (std::getline(dat, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!data) {
        data = line.find("Data:") != std::string::npos;
        continue;
      }
      std::istringstream in(line);
      std::vector<double> v;
      double d;
      while (in >> d) v.push_back(d);
      if (v.size() < 2) continue;
      p.y.push_back(v[0]);
      p.x.emplace_back(v.begin() + 1, v.end());
    }
    EXPECT_EQ(static_cast<int>(p.y.size()), p.n_obs) << name;
  }
  return out;
}

// Residual r_i = y_i - f(b, x_i) (Nelson: log y_i - f) with the Jacobian by AD.
struct NistModel {
  const Problem& pr;
  int residuals() const { return static_cast<int>(pr.y.size()); }
  bool operator()(const double* b, double* r, double* J) const {
    const int np = static_cast<int>(pr.certified.size()), n = residuals();
    std::vector<AD> bb(static_cast<std::size_t>(np));
    for (int j = 0; j < np; ++j) bb[static_cast<std::size_t>(j)] = AD(b[j], np, j);
    for (int i = 0; i < n; ++i) {
      const AD f = f_eval<AD>(pr.name, bb, pr.x[i].data());
      const double y = pr.name == "Nelson" ? std::log(pr.y[i]) : pr.y[i];
      r[i] = y - f.value();
      if (J) {
        for (int j = 0; j < np; ++j) {
          J[static_cast<std::size_t>(j) * n + i] = -f.d[static_cast<std::size_t>(j)];
        }
      }
    }
    return true;
  }
};

// The same problem as a normal-equation model (levmar.hpp): chi2, J^T J and
// J^T r instead of the residuals, the form the line fit's variable
// projection uses. The LM must reach the same certified values.
struct NistNormalModel {
  const Problem& pr;
  int residuals() const { return static_cast<int>(pr.y.size()); }
  bool normal(const double* b, double& chi2, double* jtj, double* jtr) const {
    const int np = static_cast<int>(pr.certified.size()), n = residuals();
    Eigen::VectorXd r(n);
    Eigen::MatrixXd J(n, np);
    if (!NistModel{pr}(b, r.data(), J.data())) return false;
    chi2 = r.squaredNorm();
    if (jtj != nullptr) {
      Eigen::Map<Eigen::MatrixXd>(jtj, np, np) = J.transpose() * J;
      Eigen::Map<Eigen::VectorXd>(jtr, np) = J.transpose() * r;
    }
    return true;
  }
};
static_assert(NormalEquationModel<NistNormalModel>);
static_assert(!NormalEquationModel<NistModel>);

double lre(double got, double want) {
  if (got == want) return 11.0;
  const double e = want != 0.0 ? std::abs(got - want) / std::abs(want) : std::abs(got);
  return std::min(11.0, std::max(0.0, -std::log10(e)));
}

TEST(LevenbergMarquardtNist, AllProblemsFromBothStarts) {
  const auto problems = load();
  ASSERT_EQ(problems.size(), 27u);
  int pairs = 0, solved = 0;
  std::vector<std::string> unsolved;
  std::printf("%-9s %-5s %6s %6s %5s %-18s\n", "problem", "start", "LRE_b", "LRE_sd", "iter",
              "status");
  for (const auto& [name, pr] : problems) {
    for (int start = 1; start <= 2; ++start) {
      const int np = static_cast<int>(pr.certified.size());
      LmOptions opt;
      opt.max_iterations = 20000;
      opt.ftol = 1e-15;
      opt.xtol = 1e-15;
      opt.gtol = 1e-15;
      LevenbergMarquardt<> lm(np, pr.n_obs, opt);
      Eigen::VectorXd b = Eigen::Map<const Eigen::VectorXd>(
          (start == 1 ? pr.start1 : pr.start2).data(), np);
      const auto res = lm.solve(NistModel{pr}, b);
      double lre_b = 11.0, lre_sd = 11.0;
      // Lanczos1's certified RSS (1.4e-25) is below what double arithmetic on
      // its 13-digit data can reproduce (shared/reference/README.md): check the
      // RSS absolutely and take s^2 from the certified RSS, so that the sd test
      // checks (J^T J)^-1.
      const bool tiny_rss = pr.rss < 1e-20;
      if (tiny_rss) {
        EXPECT_LT(res.chi2, 1e-20) << name;
      }
      const double s2 = (tiny_rss ? pr.rss : res.chi2) / (pr.n_obs - np);
      for (int j = 0; j < np; ++j) {
        lre_b = std::min(lre_b, lre(b(j), pr.certified[j]));
        lre_sd = std::min(lre_sd, lre(std::sqrt(lm.covariance()(j, j) * s2), pr.certified_sd[j]));
      }
      std::printf("%-9s %-5d %6.1f %6.1f %5d %-18s\n", name.c_str(), start, lre_b, lre_sd,
                  res.iterations, lm_status_name(res.status));
      ++pairs;
      if (lre_b >= 6.0) {
        ++solved;
        EXPECT_GE(lre_sd, 4.0) << name << " start " << start << ": certified sd";
      } else {
        unsolved.push_back(name + "/" + std::to_string(start));
      }
      if (name.rfind("Gauss", 0) == 0) {
        EXPECT_GE(lre_b, 6.0) << name << " start " << start;
      }
    }
  }
  std::printf("LRE >= 6 on %d of %d (problem, start) pairs", solved, pairs);
  for (const auto& u : unsolved) std::printf(" [not: %s]", u.c_str());
  std::printf("\n");
  EXPECT_EQ(pairs, 54);
  EXPECT_EQ(solved, 53);
  // docs/FIT.md: the one failure is BoxBOD from start 1.
  EXPECT_EQ(unsolved, std::vector<std::string>{"BoxBOD/1"});
}

// The fast mode the fit stage uses (Cholesky of the normal equations, the
// Jacobian evaluated with each trial point) on the same problems. It squares
// the condition number, so it is held to the same 53 of 54 overall, and by
// name to the average-difficulty and Gaussian-peak problems it is built for.
TEST(LevenbergMarquardtNist, NormalEquationModeOnTheWellConditionedProblems) {
  const auto problems = load();
  const std::vector<std::string> expected = {"Gauss1", "Gauss2", "Gauss3", "Misra1a", "Misra1b",
                                             "Misra1c", "Misra1d", "Chwirut1", "Chwirut2",
                                             "DanWood", "Kirby2", "Lanczos3", "Roszman1", "ENSO"};
  int solved = 0, solved_normal_model = 0, pairs = 0;
  for (const auto& [name, pr] : problems) {
    for (int start = 1; start <= 2; ++start) {
      const int np = static_cast<int>(pr.certified.size());
      LmOptions opt;
      opt.max_iterations = 20000;
      opt.ftol = opt.xtol = opt.gtol = 1e-15;
      opt.use_qr = false;
      opt.jacobian_with_trial = true;
      LevenbergMarquardt<> lm(np, pr.n_obs, opt);
      const Eigen::VectorXd b0 = Eigen::Map<const Eigen::VectorXd>(
          (start == 1 ? pr.start1 : pr.start2).data(), np);
      Eigen::VectorXd b = b0, bn = b0;
      lm.solve(NistModel{pr}, b);
      const LmResult rn = lm.solve(NistNormalModel{pr}, bn);
      double lre_b = 11.0, lre_n = 11.0;
      for (int j = 0; j < np; ++j) {
        lre_b = std::min(lre_b, lre(b(j), pr.certified[j]));
        lre_n = std::min(lre_n, lre(bn(j), pr.certified[j]));
      }
      ++pairs;
      solved += lre_b >= 6.0 ? 1 : 0;
      solved_normal_model += lre_n >= 6.0 ? 1 : 0;
      if (std::find(expected.begin(), expected.end(), name) != expected.end()) {
        EXPECT_GE(lre_b, 6.0) << name << " start " << start;
        EXPECT_GE(lre_n, 6.0) << name << " start " << start << " (normal-equation model)";
        EXPECT_EQ(rn.status, LmStatus::kConverged) << name << " start " << start;
      }
    }
  }
  std::printf("normal-equation mode: LRE >= 6 on %d of %d pairs (residual model), %d (normal model)\n",
              solved, pairs, solved_normal_model);
  EXPECT_GE(solved, 53);
  EXPECT_GE(solved_normal_model, 53);
}


// LevenbergMarquardt<1> with a normal-equation model runs a scalar copy of
// the general loop (solve_scalar, the shift-only line fit's solver). Each
// parameter of each NIST problem alone, the others held at their certified
// values (so that its certified value is the one-dimensional minimum), from
// start 1 and start 2, with and without LmOptions::newton_tol: the scalar path takes the same iterations and
// evaluations as the general loop on the same one-parameter problem, ends at
// the same value and standard error (to 1e-12: the compiler may fuse
// multiply-adds differently), and reaches the certified value.
struct OneParameter {
  const Problem& pr;
  std::size_t j;
  int residuals() const { return static_cast<int>(pr.y.size()); }
  bool normal(const double* b, double& chi2, double* jtj, double* jtr) const {
    const int np = static_cast<int>(pr.certified.size()), n = residuals();
    std::vector<double> full = pr.certified;
    full[j] = b[0];
    Eigen::VectorXd r(n);
    Eigen::MatrixXd J(n, np);
    if (!NistModel{pr}(full.data(), r.data(), J.data())) return false;
    chi2 = r.squaredNorm();
    if (jtj != nullptr) {
      jtj[0] = J.col(static_cast<Eigen::Index>(j)).squaredNorm();
      jtr[0] = J.col(static_cast<Eigen::Index>(j)).dot(r);
    }
    return true;
  }
};

TEST(LevenbergMarquardtScalar, SameStepsAsTheGeneralLoopOnEveryNistParameter) {
  const auto problems = load();
  int cases = 0, certified = 0;
  for (const auto& [name, pr] : problems) {
    for (std::size_t j = 0; j < pr.certified.size(); ++j) {
      for (int start = 1; start <= 4; ++start) {
        LmOptions opt;
        opt.max_iterations = 20000;
        opt.ftol = opt.xtol = opt.gtol = 1e-15;
        opt.use_qr = false;
        opt.jacobian_with_trial = true;
        if (start > 2) opt.newton_tol = 1e-6;  // starts 1 and 2 again, with this rule
        LevenbergMarquardt<1> scalar(1, pr.n_obs, opt);
        LevenbergMarquardt<> general(1, pr.n_obs, opt);
        const double b0 = (start % 2 == 1 ? pr.start1 : pr.start2)[j];
        Eigen::Matrix<double, 1, 1> bs;
        Eigen::VectorXd bg(1);
        bs(0) = bg(0) = b0;
        const OneParameter model{pr, j};
        const LmResult rs = scalar.solve(model, bs), rg = general.solve(model, bg);
        const std::string what = name + " b" + std::to_string(j + 1) + " start " + std::to_string(start);
        ++cases;
        EXPECT_EQ(rs.status, rg.status) << what;
        EXPECT_EQ(rs.iterations, rg.iterations) << what;
        EXPECT_EQ(rs.evaluations, rg.evaluations) << what;
        EXPECT_NEAR(bs(0), bg(0), 1e-12 * std::abs(bg(0)) + 1e-300) << what;
        EXPECT_NEAR(rs.chi2, rg.chi2, 1e-12 * rg.chi2 + 1e-300) << what;
        EXPECT_NEAR(scalar.covariance()(0, 0), general.covariance()(0, 0),
                    1e-12 * std::abs(general.covariance()(0, 0))) << what;
        certified += lre(bs(0), pr.certified[j]) >= 6.0 ? 1 : 0;
      }
    }
  }
  std::printf("one-parameter NIST problems: %d of %d at LRE >= 6\n", certified, cases);
  EXPECT_GE(certified, cases * 9 / 10);
}

}  // namespace
}  // namespace exospec::kernels
