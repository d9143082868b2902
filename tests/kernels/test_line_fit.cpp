// The line fitter against exact answers: noise-free spectra recovered to
// rounding (blends included), windows grouped as the catalogue's spacing
// says, Gaussian-noise pulls against the reported sigma, and statuses for
// windows without data.
#include <gtest/gtest.h>

#include <Eigen/Dense>

#include <cmath>
#include <span>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/line_fit.hpp"
#include "exospec/kernels/random.hpp"

namespace exospec::kernels {
namespace {

// An FUV-like wavelength solution and a few lines, one of them a 2:1 doublet.
const std::vector<double> kCoeffs = {145.0, 0.1662, 3.2e-7};
constexpr std::size_t kP = 1024;

std::vector<FitLineSpec> lines() {
  return {{"A 180.73", 180.73, {{180.73, 1.0}}},
          {"B 182.62", 182.62, {{182.62, 1.0}}},  // 1.3 FWHM from A: a blend
          {"Mg II 279.553", 279.553, {{279.553, 2.0 / 3.0}, {280.271, 1.0 / 3.0}}},
          {"C 250.0", 250.0, {{250.0, 1.0}}}};
}

// Truth: lines of given brightness on a linear background, pixel-integrated.
std::vector<double> spectrum(const std::vector<double>& b, double bg0, double bg1) {
  std::vector<double> edges(kP + 1), wl(kP), out(kP);
  pixel_edges(kCoeffs, edges);
  pixel_wavelengths(kCoeffs, wl);
  for (std::size_t p = 0; p < kP; ++p) out[p] = bg0 + bg1 * (wl[p] - 200.0);
  const auto ls = lines();
  for (std::size_t j = 0; j < ls.size(); ++j) {
    add_line(make_line_profile(edges, ls[j].components, 1.5), b[j], out);
  }
  return out;
}

struct Out {
  std::vector<double> b, s, c, w;
  std::vector<float> chi;
  std::vector<std::uint8_t> st;
  explicit Out(std::size_t n) : b(n), s(n), c(n), w(n), chi(n), st(n) {}
  LineFitResult view() { return {b, s, c, w, chi, st}; }
};

// FWHM 1.5 nm, the other settings as given (or the defaults).
LineFitSettings settings(ShiftMode shift = LineFitSettings{}.shift, WidthMode width = LineFitSettings{}.width) {
  LineFitSettings set;
  set.fwhm_nm = 1.5;
  set.shift = shift;
  set.width = width;
  return set;
}

// One fit of a whole spectrum with the catalogue's lines, no count model.
Out fit_once(const LineFitSettings& set, std::span<const double> y, std::span<const double> v,
             std::span<const std::uint8_t> q, std::span<const double> denoised = {}) {
  const LineFitter fit(kCoeffs, kP, lines(), set);
  auto work = fit.make_workspace();
  Out out(4);
  fit.fit<double>(y, v, q, {}, {}, out.view(), work, denoised);
  return out;
}

TEST(LineFit, WindowsFollowTheLineSpacing) {
  LineFitSettings set;
  set.fwhm_nm = 1.5;
  const LineFitter fit(kCoeffs, kP, lines(), set);
  ASSERT_EQ(fit.windows(), 3u);  // {A, B}, {C}, {Mg II}
  EXPECT_EQ(fit.window_lines(0).size(), 2u);
  // Every unit profile integrates to 1 R over its window (to the truncation).
  std::vector<double> wl(kP);
  pixel_wavelengths(kCoeffs, wl);
  for (std::size_t j = 0; j < fit.lines(); ++j) {
    const auto prof = fit.profile(j);
    std::size_t w = 0;
    for (std::size_t k = 0; k < fit.windows(); ++k) {
      for (std::size_t l : fit.window_lines(k)) {
        if (l == j) w = k;
      }
    }
    double area = 0;
    for (std::size_t i = 0; i < prof.size(); ++i) {
      const std::size_t p = fit.window_first(w) + i;
      area += prof[i] * (p + 1 < kP ? wl[p + 1] - wl[p] : wl[p] - wl[p - 1]);
    }
    EXPECT_NEAR(area, 1.0, 2e-3) << j;
  }
}

TEST(LineFit, NoiseFreeSpectraAreRecoveredExactly) {
  LineFitSettings set;
  set.fwhm_nm = 1.5;
  const LineFitter fit(kCoeffs, kP, lines(), set);
  auto work = fit.make_workspace();
  const std::vector<double> truth_b = {12.0, 7.0, 30.0, -2.0};  // negative: allowed
  const auto y = spectrum(truth_b, 3.0, 0.01);
  const std::vector<double> v(kP, 1.0);
  const std::vector<std::uint8_t> q(kP, 0);
  Out out(4);
  fit.fit<double>(y, v, q, {}, {}, out.view(), work);
  for (std::size_t j = 0; j < 4; ++j) {
    EXPECT_EQ(out.st[j], 0);
    EXPECT_NEAR(out.b[j], truth_b[j], 1e-9 * std::abs(truth_b[j]) + 1e-10) << j;
    EXPECT_GT(out.s[j], 0.0);
    EXPECT_NEAR(out.chi[j], 0.0, 1e-12);
  }
  EXPECT_DOUBLE_EQ(out.c[2], 279.553);  // a multiplet reports its strongest component
}

TEST(LineFit, TiedMultipletFractionsAreNormalisedInEveryMode) {
  // The doublet given as 2:1 instead of 2/3:1/3: the same line, so every
  // shift mode recovers the same brightness from the same noise-free
  // spectrum (the fixed path's basis once took the raw fractions: 1.5x).
  auto raw = lines();
  raw[2].components = {{279.553, 2.0}, {280.271, 1.0}};
  const std::vector<double> truth_b = {12.0, 7.0, 30.0, 5.0};
  const auto y = spectrum(truth_b, 3.0, 0.01);
  const std::vector<double> v(kP, 1.0);
  const std::vector<std::uint8_t> q(kP, 0);
  for (const ShiftMode mode : {ShiftMode::kFixed, ShiftMode::kTied, ShiftMode::kFree}) {
    const LineFitter fit(kCoeffs, kP, raw, settings(mode));
    auto work = fit.make_workspace();
    Out out(4);
    fit.fit<double>(y, v, q, {}, {}, out.view(), work, y);
    EXPECT_EQ(out.st[2], 0) << shift_mode_name(mode);
    EXPECT_NEAR(out.b[2], 30.0, 1e-6) << shift_mode_name(mode);
  }
}

TEST(LineFit, GaussianNoisePullsMatchTheReportedSigma) {
  LineFitSettings set;
  set.fwhm_nm = 1.5;
  set.refine_iterations = 0;  // Gaussian noise of known variance
  const LineFitter fit(kCoeffs, kP, lines(), set);
  auto work = fit.make_workspace();
  const std::vector<double> truth_b = {12.0, 7.0, 30.0, 0.0};
  const auto y0 = spectrum(truth_b, 3.0, 0.01);
  const std::vector<std::uint8_t> q(kP, 0);
  std::vector<double> v(kP), y(kP);
  for (std::size_t p = 0; p < kP; ++p) v[p] = 0.5 + 0.1 * y0[p];
  auto rng = Rng::stream(99);
  // Bounds from the sample size: 4 standard errors of a mean (1 / sqrt(n))
  // and of an sd (1 / sqrt(2 n)) per line, and of the sd pooled over the 4
  // lines (1 / sqrt(8 n)): with n = 20,000, 0.028 / 0.020 / 0.010, so a
  // sigma 2 % off in every line fails the pooled bound twice over.
  const int trials = 20000;
  std::vector<double> s1(4, 0.0), s2(4, 0.0);
  Out out(4);
  for (int t = 0; t < trials; ++t) {
    for (std::size_t p = 0; p < kP; ++p) y[p] = y0[p] + std::sqrt(v[p]) * rng.normal();
    fit.fit<double>(y, v, q, {}, {}, out.view(), work);
    for (std::size_t j = 0; j < 4; ++j) {
      const double z = (out.b[j] - truth_b[j]) / out.s[j];
      s1[j] += z;
      s2[j] += z * z;
    }
  }
  const double n = trials;
  double pooled = 0.0;
  for (std::size_t j = 0; j < 4; ++j) {
    const double mean = s1[j] / n, sd = std::sqrt(s2[j] / n - mean * mean);
    std::printf("linear, line %zu: pull mean %+.4f sd %.4f\n", j, mean, sd);
    EXPECT_NEAR(mean, 0.0, 4.0 / std::sqrt(n)) << j;
    EXPECT_NEAR(sd, 1.0, 4.0 / std::sqrt(2.0 * n)) << j;
    pooled += s2[j];
  }
  EXPECT_NEAR(std::sqrt(pooled / (4.0 * n)), 1.0, 4.0 / std::sqrt(8.0 * n)) << "pooled over the lines";
}

// Truth with every line displaced by `shift` and a line spread of `fwhm`.
std::vector<double> shifted_spectrum(const std::vector<double>& b, double bg0, double bg1,
                                     double shift, double fwhm) {
  std::vector<double> edges(kP + 1), wl(kP), out(kP);
  pixel_edges(kCoeffs, edges);
  pixel_wavelengths(kCoeffs, wl);
  for (std::size_t p = 0; p < kP; ++p) out[p] = bg0 + bg1 * (wl[p] - 200.0);
  const auto ls = lines();
  for (std::size_t j = 0; j < ls.size(); ++j) {
    auto comps = ls[j].components;
    for (auto& c : comps) c.wavelength_nm += shift;
    add_line(make_line_profile(edges, comps, fwhm), b[j], out);
  }
  return out;
}

TEST(LineFit, ProfilesAndTheirDerivativesMatchTheReferenceAndFiniteDifferences) {
  LineFitSettings set;
  set.fwhm_nm = 1.5;
  const LineFitter fit(kCoeffs, kP, lines(), set);
  auto work = fit.make_workspace();
  const std::size_t w = 0;  // the {A, B} blend
  const std::size_t n = fit.window_size(w), nl = fit.window_lines(w).size();
  std::vector<double> cols(n * nl), dsh(n), dsg(n), up(n * nl), dn(n * nl);
  const std::vector<double> b = {7.0, 3.0};
  // At zero shift the vectorised profiles equal the erfc-based basis.
  fit.window_profiles(w, 0.0, 1.5, cols.data(), nullptr, nullptr, nullptr, work);
  for (std::size_t a = 0; a < nl; ++a) {
    const auto ref = fit.profile(fit.window_lines(w)[a]);
    for (std::size_t i = 0; i < n; ++i) EXPECT_NEAR(cols[a * n + i], ref[i], 1e-13) << a << " " << i;
  }
  // d/dshift and d/dsigma of sum_a b_a P_a against central differences.
  const double shift = 0.07, fwhm = 1.6, h = 1e-6;
  fit.window_profiles(w, shift, fwhm, cols.data(), b.data(), dsh.data(), dsg.data(), work);
  auto sum = [&](const std::vector<double>& c, std::size_t i) { return b[0] * c[i] + b[1] * c[n + i]; };
  fit.window_profiles(w, shift + h, fwhm, up.data(), nullptr, nullptr, nullptr, work);
  fit.window_profiles(w, shift - h, fwhm, dn.data(), nullptr, nullptr, nullptr, work);
  double worst = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::abs(dsh[i] - (sum(up, i) - sum(dn, i)) / (2 * h)));
    scale = std::max(scale, std::abs(dsh[i]));
  }
  EXPECT_LT(worst, 1e-7 * scale);
  const double hs = h * kFwhmPerSigma;  // sigma step h <-> FWHM step h * 2.355
  fit.window_profiles(w, shift, fwhm + hs, up.data(), nullptr, nullptr, nullptr, work);
  fit.window_profiles(w, shift, fwhm - hs, dn.data(), nullptr, nullptr, nullptr, work);
  worst = scale = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::abs(dsg[i] - (sum(up, i) - sum(dn, i)) / (2 * h)));
    scale = std::max(scale, std::abs(dsg[i]));
  }
  EXPECT_LT(worst, 1e-7 * scale);
  // The per-line shift derivatives of the shift-only fit (variable
  // projection): the same profiles, and columns that sum with b to dsh.
  std::vector<double> cols2(n * nl), dcols(n * nl);
  fit.profiles_and_shift_derivatives(w, shift, fwhm, cols2.data(), dcols.data(), work);
  for (std::size_t i = 0; i < n * nl; ++i) EXPECT_NEAR(cols2[i], cols[i], 1e-15) << i;
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(b[0] * dcols[i] + b[1] * dcols[n + i], dsh[i], 1e-12 * scale) << i;
  }
  // Their second derivatives (the exact curvature of the shift-only fit)
  // against central differences of the first.
  std::vector<double> d2cols(n * nl), dup(n * nl), ddn(n * nl);
  fit.profiles_and_shift_derivatives(w, shift, fwhm, cols2.data(), dcols.data(), work, d2cols.data());
  fit.profiles_and_shift_derivatives(w, shift + h, fwhm, cols2.data(), dup.data(), work);
  fit.profiles_and_shift_derivatives(w, shift - h, fwhm, cols2.data(), ddn.data(), work);
  worst = scale = 0.0;
  for (std::size_t i = 0; i < n * nl; ++i) {
    worst = std::max(worst, std::abs(d2cols[i] - (dup[i] - ddn[i]) / (2 * h)));
    scale = std::max(scale, std::abs(d2cols[i]));
  }
  EXPECT_GT(scale, 0.0);
  EXPECT_LT(worst, 1e-6 * scale);
}

TEST(LineFit, TiedAndFreeShiftsRecoverADisplacedSpectrumExactly) {
  // Every line 0.2 nm (1.2 pixels) off its catalogue wavelength. Mg II is
  // bright (S/N >> 20) and measures the shift; tied, the faint windows take it.
  const std::vector<double> truth_b = {12.0, 7.0, 300.0, 2.0};
  const auto y = shifted_spectrum(truth_b, 3.0, 0.01, 0.2, 1.5);
  std::vector<double> v(kP);
  for (std::size_t p = 0; p < kP; ++p) v[p] = 0.05 + 0.01 * y[p];
  const std::vector<std::uint8_t> q(kP, 0);
  for (auto mode : {ShiftMode::kTied, ShiftMode::kFree}) {
    const Out out = fit_once(settings(mode), y, v, q, y);  // the truth as "denoised"
    for (std::size_t j = 0; j < 4; ++j) {
      EXPECT_EQ(out.st[j], 0) << shift_mode_name(mode) << " " << j;
      EXPECT_NEAR(out.b[j], truth_b[j], 1e-6 * truth_b[j]) << shift_mode_name(mode) << " " << j;
      EXPECT_NEAR(out.c[j], lines()[j].wavelength_nm + 0.2, 1e-7) << shift_mode_name(mode) << " " << j;
      EXPECT_NEAR(out.chi[j], 0.0, 1e-9);
    }
  }
  // Fixed at the catalogue, the same spectrum is fitted badly: the shift is
  // real, and the fit cannot absorb it.
  EXPECT_GT(fit_once(settings(ShiftMode::kFixed), y, v, q).chi[2], 100.0);
}

TEST(LineFit, TiedModeWithoutABrightWindowKeepsTheCatalogue) {
  const std::vector<double> truth_b = {12.0, 7.0, 30.0, 2.0};
  const auto y = shifted_spectrum(truth_b, 3.0, 0.01, 0.0, 1.5);
  const std::vector<double> v(kP, 1.0);  // S/N of Mg II ~ 10 < 20
  const std::vector<std::uint8_t> q(kP, 0);
  const Out out = fit_once(settings(), y, v, q);
  for (std::size_t j = 0; j < 4; ++j) {
    EXPECT_EQ(out.c[j], lines()[j].wavelength_nm);
    EXPECT_EQ(out.w[j], 1.5);
  }
}

TEST(LineFit, FreeWidthRecoversABroaderLineSpread) {
  const std::vector<double> truth_b = {12.0, 7.0, 300.0, 2.0};
  const auto y = shifted_spectrum(truth_b, 3.0, 0.01, -0.1, 1.8);  // LSF 20 % broader
  std::vector<double> v(kP);
  for (std::size_t p = 0; p < kP; ++p) v[p] = 0.05 + 0.01 * y[p];
  const std::vector<std::uint8_t> q(kP, 0);
  const Out out = fit_once(settings(LineFitSettings{}.shift, WidthMode::kFree), y, v, q);
  for (std::size_t j = 0; j < 4; ++j) {
    EXPECT_EQ(out.st[j], 0) << j;
    EXPECT_NEAR(out.w[j], 1.8, 1e-7) << j;  // tied windows take the measured width
    EXPECT_NEAR(out.b[j], truth_b[j], 1e-6 * truth_b[j]) << j;
  }
}

// A free shift on every window, weights fixed at the given variance.
LineFitSettings free_shift_without_refits() {
  LineFitSettings set;
  set.fwhm_nm = 1.5;
  set.shift = ShiftMode::kFree;
  set.refine_iterations = 0;
  return set;
}

TEST(LineFit, NonlinearGaussianPullsMatchTheReportedSigma) {
  // A free shift on a bright doublet (Mg II) and its neighbours, Gaussian
  // noise of known variance: pulls of brightness and of the shift.
  const LineFitSettings set = free_shift_without_refits();
  const LineFitter fit(kCoeffs, kP, lines(), set);
  auto work = fit.make_workspace();
  const std::vector<double> truth_b = {60.0, 40.0, 200.0, 50.0};
  const auto y0 = shifted_spectrum(truth_b, 3.0, 0.01, 0.1, 1.5);
  const std::vector<std::uint8_t> q(kP, 0);
  std::vector<double> v(kP), y(kP);
  for (std::size_t p = 0; p < kP; ++p) v[p] = 0.5 + 0.1 * y0[p];
  auto rng = Rng::stream(5);
  // Bounds from the sample size, as in the linear test: with n = 12,000,
  // 4 SE = 0.037 (mean), 0.026 (sd) per line and 0.013 for the sd pooled
  // over the 4 lines.
  const int trials = 12000;
  std::vector<double> s1(4, 0.0), s2(4, 0.0);
  Out out(4);
  int converged = 0;
  for (int t = 0; t < trials; ++t) {
    for (std::size_t p = 0; p < kP; ++p) y[p] = y0[p] + std::sqrt(v[p]) * rng.normal();
    fit.fit<double>(y, v, q, {}, {}, out.view(), work);
    for (std::size_t j = 0; j < 4; ++j) {
      converged += out.st[j] == 0 ? 1 : 0;
      const double z = (out.b[j] - truth_b[j]) / out.s[j];
      s1[j] += z;
      s2[j] += z * z;
    }
  }
  EXPECT_EQ(converged, 4 * trials);
  const double n = trials;
  double pooled = 0.0;
  for (std::size_t j = 0; j < 4; ++j) {
    const double mean = s1[j] / n, sd = std::sqrt(s2[j] / n - mean * mean);
    std::printf("free shift, line %zu: pull mean %+.4f sd %.4f\n", j, mean, sd);
    EXPECT_NEAR(mean, 0.0, 4.0 / std::sqrt(n)) << j;
    EXPECT_NEAR(sd, 1.0, 4.0 / std::sqrt(2.0 * n)) << j;
    pooled += s2[j];
  }
  EXPECT_NEAR(std::sqrt(pooled / (4.0 * n)), 1.0, 4.0 / std::sqrt(8.0 * n)) << "pooled over the lines";
}

TEST(LineFit, FreeShiftIsTheMinimumOfChi2OverTheShift) {
  // The nonlinear fit (variable projection on the shift) against chi2(s)
  // computed here with Eigen's QR: at each shift s, the window's profiles
  // and a linear background fitted by weighted least squares. The parabola
  // through s* - h, s*, s* + h must have its vertex at s* (to far below the
  // shift's sigma, which the parabola's curvature gives: the solver stops
  // within a few hundredths of a sigma and takes the last Newton step on
  // the quadratic model), and the brightness at s* must be the fit's, with
  // the sigma of (J^T J)^-1 over all four parameters there. Mg II
  // (alone in its window) from bright to below the detection limit, 20
  // noise draws each.
  const std::vector<std::uint8_t> q(kP, 0);
  std::vector<double> wl(kP);
  pixel_wavelengths(kCoeffs, wl);
  const LineFitSettings set = free_shift_without_refits();
  const LineFitter fit(kCoeffs, kP, lines(), set);
  auto work = fit.make_workspace();
  const std::size_t j = 2;
  std::size_t wi = 0;
  while (fit.window_lines(wi) != std::vector<std::size_t>{j}) ++wi;
  const std::size_t first = fit.window_first(wi), n = fit.window_size(wi);
  double worst_shift = 0.0, worst_brightness = 0.0, worst_sigma = 0.0;
  int fits = 0;
  for (const double mg : {200.0, 30.0, 8.0, 3.0}) {
    const auto y0 = shifted_spectrum({60.0, 40.0, mg, 50.0}, 3.0, 0.01, 0.1, 1.5);
    std::vector<double> v(kP), y(kP);
    for (std::size_t p = 0; p < kP; ++p) v[p] = 0.5 + 0.1 * y0[p];
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
      auto rng = Rng::stream(11 + seed);
      for (std::size_t p = 0; p < kP; ++p) y[p] = y0[p] + std::sqrt(v[p]) * rng.normal();
      Out out(4);
      fit.fit<double>(y, v, q, {}, {}, out.view(), work);
      if (out.st[j] != 0) continue;  // (a shift at its bound on the faintest)
      const double s_star = out.c[j] - lines()[j].wavelength_nm;
      if (std::abs(s_star) > 0.7) continue;  // (near the +-0.75 nm bound: no parabola there)
      // sqrt(w) [profile, 1, x] at a shift, and with `brightness`, the
      // column sqrt(w) brightness dprofile/dshift too.
      auto design = [&](double shift, const double* brightness) {
        std::vector<double> col(n), dshift(n), dsigma(n);
        fit.window_profiles(wi, shift, 1.5, col.data(), brightness,
                            brightness ? dshift.data() : nullptr,
                            brightness ? dsigma.data() : nullptr, work);
        Eigen::MatrixXd A(n, brightness ? 4 : 3);
        for (std::size_t i = 0; i < n; ++i) {
          const double sw = 1.0 / std::sqrt(v[first + i]);
          const auto r = static_cast<Eigen::Index>(i);
          A(r, 0) = sw * col[i];
          A(r, 1) = sw;
          A(r, 2) = sw * (wl[first + i] - wl[first]);
          if (brightness) A(r, 3) = sw * dshift[i];
        }
        return A;
      };
      auto chi2_at = [&](double shift, double& brightness) {
        const Eigen::MatrixXd A = design(shift, nullptr);
        Eigen::VectorXd b(n);
        for (std::size_t i = 0; i < n; ++i)
          b(static_cast<Eigen::Index>(i)) = y[first + i] / std::sqrt(v[first + i]);
        const Eigen::VectorXd beta = A.colPivHouseholderQr().solve(b);
        brightness = beta(0);
        return (A * beta - b).squaredNorm();
      };
      {
        // The brightness sigma against (J^T J)^-1 over (brightness,
        // background, shift) at s*.
        const Eigen::MatrixXd J = design(s_star, &out.b[j]);
        const Eigen::MatrixXd cov = (J.transpose() * J).inverse();
        worst_sigma = std::max(worst_sigma, std::abs(out.s[j] / std::sqrt(cov(0, 0)) - 1.0));
      }
      const double h = 0.002;
      double chi2[3], bright[3];
      for (int m = -1; m <= 1; ++m) chi2[m + 1] = chi2_at(s_star + m * h, bright[m + 1]);
      const double curvature = (chi2[0] - 2.0 * chi2[1] + chi2[2]) / (h * h);
      ASSERT_GT(curvature, 0.0) << mg << " R, draw " << seed;
      const double vertex = 0.5 * h * h * (chi2[0] - chi2[2]) / (h * h * curvature);
      const double shift_sigma = std::sqrt(2.0 / curvature);
      worst_shift = std::max(worst_shift, std::abs(vertex) / shift_sigma);
      worst_brightness = std::max(worst_brightness, std::abs(bright[1] - out.b[j]) / out.s[j]);
      if (mg == 200.0 && seed == 0) {
        EXPECT_NEAR(s_star, 0.1, 0.02);  // (sanity: near the truth)
      }
      ++fits;
    }
  }
  std::printf(
      "%d fits: chi2 minimum within %.1e sigma of the fitted shift, brightness within %.1e sigma, "
      "its sigma within %.1e of Eigen's (J^T J)^-1\n",
      fits, worst_shift, worst_brightness, worst_sigma);
  EXPECT_GE(fits, 70);
  EXPECT_LT(worst_shift, 1e-3);
  EXPECT_LT(worst_brightness, 3e-4);
  // (s* is the extrapolated minimum; the fit's covariance is at its last
  // evaluation: measured 2.9e-5, docs/FIT.md quotes this bound.)
  EXPECT_LT(worst_sigma, 5e-5);
}

TEST(LineFit, WindowsWithoutDataGetAStatusAndNaN) {
  LineFitSettings set;
  set.fwhm_nm = 1.5;
  const LineFitter fit(kCoeffs, kP, lines(), set);
  auto work = fit.make_workspace();
  const auto y = spectrum({1, 1, 1, 1}, 1.0, 0.0);
  const std::vector<double> v(kP, 1.0);
  std::vector<std::uint8_t> q(kP, 0);
  // Flag the whole first window's pixels bad.
  for (std::size_t i = 0; i < fit.window_size(0); ++i) q[fit.window_first(0) + i] = quality::kBadPixel;
  Out out(4);
  fit.fit<double>(y, v, q, {}, {}, out.view(), work);
  EXPECT_EQ(out.st[0], static_cast<std::uint8_t>(FitStatus::kTooFewPixels));
  EXPECT_TRUE(std::isnan(out.b[0]) && std::isnan(out.s[0]));
  EXPECT_EQ(out.st[2], 0);
  std::fill(q.begin(), q.end(), quality::kInvalidExposure);
  fit.fit<double>(y, v, q, {}, {}, out.view(), work);
  for (std::size_t j = 0; j < 4; ++j) {
    EXPECT_EQ(out.st[j], static_cast<std::uint8_t>(FitStatus::kInvalidSpectrum));
  }
}

}  // namespace
}  // namespace exospec::kernels
