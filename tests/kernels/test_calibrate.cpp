// The calibrate kernel against analytic answers, a finite-difference Jacobian
// and its own scalar reference.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/random.hpp"

namespace exospec::kernels {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TEST(QualityCountBits, AgreesWithAPixelByPixelCountAtAnyLength) {
  // Sparse arrays (as in a run: mostly zero) and dense ones, of lengths that
  // leave every remainder modulo the 8-pixel words, against testing each bit
  // of each pixel.
  auto rng = Rng::stream(17);
  for (const double density : {0.01, 0.5, 1.0}) {
    for (const std::size_t n : {0u, 1u, 7u, 8u, 9u, 15u, 1021u, 4096u, 100003u}) {
      std::vector<std::uint8_t> q(n);
      for (auto& v : q)
        v = rng.uniform() < density ? static_cast<std::uint8_t>(rng.uniform(0, 256)) : 0;
      std::array<std::uint64_t, 8> expected{}, counted{};
      for (const auto v : q) {
        for (unsigned b = 0; b < 8; ++b) expected[b] += (v >> b) & 1u;
      }
      counted[3] = 5;  // counts are added to what is there
      expected[3] += 5;
      quality::count_bits(q, counted);
      EXPECT_EQ(counted, expected) << "n " << n << ", density " << density;
    }
  }
}

TEST(LeaveOneOutWeights, ReproducePolynomialsUpToTheirOrder) {
  // Symmetric window of +-4 without the centre: a quadratic is reproduced exactly.
  const std::vector<double> xs = {-4, -3, -2, -1, 1, 2, 3, 4};
  std::vector<double> w(xs.size());
  leave_one_out_weights(xs, w);
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    s0 += w[i];
    s1 += w[i] * xs[i];
    s2 += w[i] * xs[i] * xs[i];
    s3 += w[i] * xs[i] * xs[i] * xs[i];
  }
  EXPECT_NEAR(s0, 1.0, 1e-14);
  EXPECT_NEAR(s1, 0.0, 1e-14);
  EXPECT_NEAR(s2, 0.0, 1e-13);
  EXPECT_NEAR(s3, 0.0, 1e-12);  // odd moments vanish by symmetry
  // Hand-computed: the +-1 weights of the quadratic through {-4..4}\{0} are
  // (sum x^4 - x^2 sum x^2) / (n sum x^4 - (sum x^2)^2) = (708 - 60) / (8 * 708 - 3600).
  EXPECT_NEAR(w[3], 648.0 / 2064.0, 1e-14);
  // One-sided (edge) window: extrapolation of a quadratic is still exact.
  const std::vector<double> edge = {1, 2, 3, 4, 5, 6, 7, 8};
  leave_one_out_weights(edge, w);
  double y0 = 0;
  for (std::size_t i = 0; i < edge.size(); ++i) y0 += w[i] * (3.0 - 2.0 * edge[i] + 0.5 * edge[i] * edge[i]);
  EXPECT_NEAR(y0, 3.0, 1e-11);
  // Two points: the mean (order 0).
  std::vector<double> two = {-1, 2}, w2(2);
  leave_one_out_weights(two, w2);
  EXPECT_DOUBLE_EQ(w2[0], 0.5);
  EXPECT_DOUBLE_EQ(w2[1], 0.5);
}

struct Detector {
  std::vector<double> dark, flat, sens;
  std::vector<std::uint8_t> bad;
  double tau = 0.0, t_ref = 0.0, coeff = 0.03;
  DetectorCalibration view() const { return {dark, flat, sens, bad, tau, t_ref, coeff}; }
};

Detector make_detector(std::size_t P, std::uint64_t seed, double tau) {
  Detector d;
  auto rng = Rng::stream(seed);
  d.dark.resize(P);
  d.flat.resize(P);
  d.sens.resize(P);
  d.bad.assign(P, 0);
  for (std::size_t p = 0; p < P; ++p) {
    d.dark[p] = 0.02 + 0.005 * rng.uniform();
    d.flat[p] = 1.0 + 0.03 * rng.normal();
    d.sens[p] = 0.05 + 0.25 * rng.uniform();
  }
  d.tau = tau;
  return d;
}

TEST(Calibrate, NoiseFreeQuadraticRadianceGivesTheAnalyticVariance) {
  // Expected counts of a quadratic radiance: the leave-one-out quadratic
  // recovers each pixel's expectation exactly, so the variance must equal the
  // delta-method variance computed here from the true expectations, with the
  // Jacobian dL_p/dc_q taken by finite differences of the kernel itself.
  // (Structure threshold 0: the quadratic everywhere; the wide mean would
  // smear the curvature. One spectrum: no neighbours to pool.)
  const std::size_t P = 60;
  Detector d = make_detector(P, 3, 2e-5);
  const double t = 8.0, temp = 4.0, ds = 1.0 + 0.03 * temp;
  std::vector<double> truth(P), mu(P), rate(P);
  double R = 0;
  for (std::size_t p = 0; p < P; ++p) {
    const double x = static_cast<double>(p);
    truth[p] = 50.0 + 3.0 * x - 0.04 * x * x;
    rate[p] = truth[p] * d.sens[p] * d.flat[p] + ds * d.dark[p];
    R += rate[p];
  }
  const double factor = 1.0 / (1.0 + d.tau * R);
  for (std::size_t p = 0; p < P; ++p) mu[p] = rate[p] * t * factor;
  ASSERT_GT(1.0 / factor, 1.02);  // a dead-time correction of a few per cent

  CalibrateSettings settings;
  settings.variance_structure_sigma = 0.0;
  const Calibrator cal(d.view(), settings);
  std::vector<double> L(P), V(P);
  std::vector<std::uint8_t> Q(P);
  const std::vector<double> exposure = {t}, temperature = {temp};
  cal.run<double, double>(mu, exposure, temperature, L, V, Q);
  for (std::size_t p = 0; p < P; ++p) {
    EXPECT_EQ(Q[p], 0);
    EXPECT_NEAR(L[p], truth[p], 1e-10 * truth[p]) << p;
  }
  // Jacobian by central differences of the radiance the kernel returns.
  std::vector<std::vector<double>> J(P, std::vector<double>(P));
  std::vector<double> Lp(P), Lm(P), Vd(P);
  for (std::size_t q = 0; q < P; ++q) {
    std::vector<double> cp = mu, cm = mu;
    const double h = 1e-3 * std::max(mu[q], 1.0);
    cp[q] += h;
    cm[q] -= h;
    cal.run<double, double>(cp, exposure, temperature, Lp, Vd, Q);
    cal.run<double, double>(cm, exposure, temperature, Lm, Vd, Q);
    for (std::size_t p = 0; p < P; ++p) J[p][q] = (Lp[p] - Lm[p]) / (2 * h);
  }
  for (std::size_t p = 0; p < P; ++p) {
    double var = 0;
    for (std::size_t q = 0; q < P; ++q) var += J[p][q] * J[p][q] * mu[q];
    EXPECT_NEAR(V[p], var, 1e-6 * var) << "pixel " << p;
  }
}

TEST(Calibrate, FastPathMatchesTheScalarReference) {
  const std::size_t P = 300, rows = 40;
  Detector d = make_detector(P, 5, 1e-6);
  // Bad pixels at the edge, adjacent pairs, and isolated.
  for (std::size_t p : {0u, 1u, 57u, 58u, 59u, 150u, 297u}) d.bad[p] = 1;
  d.sens[200] = 0.0;  // no response: unusable without a bad flag
  d.bad[201] = 0;
  auto rng = Rng::stream(9);
  std::vector<std::uint32_t> counts(rows * P);
  std::vector<double> exposure(rows, 8.0), temperature(rows, 3.0);
  for (std::size_t r = 0; r < rows; ++r) {
    const double level = std::pow(10.0, -1.0 + 4.0 * static_cast<double>(r) / static_cast<double>(rows));
    for (std::size_t p = 0; p < P; ++p) {
      counts[r * P + p] = static_cast<std::uint32_t>(rng.poisson(level * (1.0 + 0.5 * std::sin(0.1 * static_cast<double>(p)))));
    }
    temperature[r] = -5.0 + 0.3 * static_cast<double>(r);
  }
  exposure[3] = 0.0;
  exposure[4] = -1.0;
  exposure[5] = kNaN;
  temperature[6] = kNaN;
  for (std::size_t p = 0; p < P; ++p) counts[7 * P + p] = 5000;  // dead-time limit exceeded

  // The defaults, other half widths, no neighbouring spectra, a narrow wide
  // mean, the quadratic everywhere, and the wide mean almost everywhere.
  struct Case {
    int half_width, wide, spectra;
    double structure;
  };
  for (const Case k : {Case{4, 10, 2, 3.0}, Case{3, 10, 2, 3.0}, Case{6, 10, 2, 3.0}, Case{4, 10, 0, 3.0},
                       Case{4, 3, 3, 3.0}, Case{4, 10, 2, 0.0}, Case{4, 25, 1, 50.0}}) {
    SCOPED_TRACE(testing::Message() << "half width " << k.half_width << ", wide " << k.wide << ", spectra "
                                    << k.spectra << ", structure " << k.structure);
    CalibrateSettings settings;
    settings.variance_half_width = k.half_width;
    settings.variance_wide_half_width = k.wide;
    settings.variance_spectra = k.spectra;
    settings.variance_structure_sigma = k.structure;
    const Calibrator cal(d.view(), settings);
    std::vector<double> L(rows * P), V(rows * P), Lr(rows * P), Vr(rows * P);
    std::vector<std::uint8_t> Q(rows * P), Qr(rows * P);
    cal.run<std::uint32_t, double>(counts, exposure, temperature, L, V, Q);
    cal.run_reference<std::uint32_t, double>(counts, exposure, temperature, Lr, Vr, Qr);
    std::size_t finite = 0;
    for (std::size_t i = 0; i < rows * P; ++i) {
      ASSERT_EQ(Q[i], Qr[i]) << i;
      ASSERT_EQ(std::isnan(L[i]), std::isnan(Lr[i])) << i;
      ASSERT_EQ(std::isnan(V[i]), std::isnan(Vr[i])) << i;
      if (std::isnan(L[i])) continue;
      ++finite;
      EXPECT_NEAR(L[i], Lr[i], 1e-12 * (std::abs(Lr[i]) + 1.0)) << i;
      EXPECT_NEAR(V[i], Vr[i], 1e-10 * Vr[i]) << i;
    }
    EXPECT_GT(finite, rows * P / 2);
    // float output: the same within float precision.
    std::vector<float> Lf(rows * P), Vf(rows * P);
    cal.run<std::uint32_t, float>(counts, exposure, temperature, Lf, Vf, Q);
    for (std::size_t i = 0; i < rows * P; ++i) {
      ASSERT_EQ(Q[i], Qr[i]);
      if (std::isnan(Lr[i])) {
        ASSERT_TRUE(std::isnan(Lf[i]));
        continue;
      }
      EXPECT_NEAR(Lf[i], Lr[i], 1e-5 * (std::abs(Lr[i]) + 1.0)) << i;
      EXPECT_NEAR(Vf[i], Vr[i], 1e-4 * Vr[i]) << i;
    }
  }
}

TEST(Calibrate, VariancePoolsOnlyTheSpectraOfTheSameScan) {
  // Rows of three scans (numbered out of order, one of a single spectrum):
  // variance() with the scans, row by row and in uneven ranges, equals run()
  // on each scan alone; and it differs from treating them as one scan.
  const std::size_t P = 120, rows = 17;
  Detector d = make_detector(P, 8, 1e-6);
  d.bad[30] = 1;
  auto rng = Rng::stream(21);
  std::vector<std::uint32_t> counts(rows * P);
  std::vector<double> exposure(rows, 4.0), temperature(rows, 2.0);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t p = 0; p < P; ++p) {
      counts[r * P + p] = static_cast<std::uint32_t>(rng.poisson(0.5 + 3.0 * static_cast<double>(r % 5)));
    }
  }
  const std::vector<std::int64_t> scan = {7, 7, 7, 7, 7, 7, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
  const Calibrator cal(d.view(), {});
  std::vector<float> L(rows * P), V(rows * P, -1.0f), Vone(rows * P);
  std::vector<std::uint8_t> Q(rows * P);
  std::vector<float> scratch;
  cal.radiance<std::uint32_t, float>(counts, exposure, temperature, L, Q);
  for (const auto& [first, count] : {std::pair<std::size_t, std::size_t>{0, 5}, {5, 1}, {6, 4}, {10, 7}}) {
    cal.variance<std::uint32_t, float>(counts, exposure, temperature, L, Q, scan, first, count, V, scratch);
  }
  cal.variance<std::uint32_t, float>(counts, exposure, temperature, L, Q, {}, 0, rows, Vone, scratch);
  std::size_t differ = 0;
  for (const auto& [first, count] : {std::pair<std::size_t, std::size_t>{0, 6}, {6, 1}, {7, 10}}) {
    const auto sub = [&](auto& v) { return std::span(v).subspan(first * P, count * P); };
    std::vector<float> Ls(count * P), Vs(count * P);
    std::vector<std::uint8_t> Qs(count * P);
    cal.run<std::uint32_t, float>(std::span<const std::uint32_t>(counts).subspan(first * P, count * P),
                                  std::span<const double>(exposure).subspan(first, count),
                                  std::span<const double>(temperature).subspan(first, count), Ls, Vs, Qs);
    const auto Vsub = sub(V), Vo = sub(Vone);
    for (std::size_t i = 0; i < count * P; ++i) {
      if (std::isnan(Vs[i])) {
        ASSERT_TRUE(std::isnan(Vsub[i])) << first << " " << i;
        continue;
      }
      ASSERT_EQ(Vsub[i], Vs[i]) << "scan from row " << first << ", element " << i;
      differ += Vo[i] != Vs[i];
    }
  }
  EXPECT_GT(differ, P);  // the scans matter
}

TEST(Calibrate, QualityFlagsAndIsolationOfBadSpectra) {
  const std::size_t P = 64, rows = 6;
  Detector d = make_detector(P, 11, 1e-6);
  d.bad[10] = 1;
  CalibrateSettings settings;
  settings.max_dead_time_correction = 1.25;
  const Calibrator cal(d.view(), settings);
  std::vector<std::uint32_t> counts(rows * P, 3);
  std::vector<double> exposure = {8.0, 0.0, 8.0, 8.0, 8.0, -2.0};
  std::vector<double> temperature = {1.0, 1.0, kNaN, 1.0, 1.0, 1.0};
  // Row 3: measured rate m with 1 / (1 - m tau) = 1.3 > 1.25 (saturated, values kept).
  // Row 4: m tau >= 1 (no inversion possible: NaN).
  const double m3 = (1.0 - 1.0 / 1.3) / d.tau, m4 = 1.1 / d.tau, per_pixel = 8.0 / static_cast<double>(P);
  for (std::size_t p = 0; p < P; ++p) {
    counts[3 * P + p] = static_cast<std::uint32_t>(m3 * per_pixel);
    counts[4 * P + p] = static_cast<std::uint32_t>(m4 * per_pixel);
  }
  std::vector<float> L(rows * P), V(rows * P);
  std::vector<std::uint8_t> Q(rows * P);
  cal.run<std::uint32_t, float>(counts, exposure, temperature, L, V, Q);
  auto at = [&](std::size_t r, std::size_t p) { return r * P + p; };
  EXPECT_EQ(Q[at(0, 0)], 0);
  EXPECT_EQ(Q[at(0, 10)], quality::kBadPixel);
  EXPECT_TRUE(std::isnan(L[at(0, 10)]) && std::isnan(V[at(0, 10)]));
  EXPECT_EQ(Q[at(1, 0)], quality::kInvalidExposure);
  EXPECT_EQ(Q[at(5, 3)], quality::kInvalidExposure);
  EXPECT_EQ(Q[at(2, 0)], quality::kInvalidTemperature);
  EXPECT_EQ(Q[at(2, 10)], quality::kInvalidTemperature | quality::kBadPixel);
  EXPECT_EQ(Q[at(3, 0)], quality::kSaturated);
  EXPECT_TRUE(std::isfinite(L[at(3, 0)]) && V[at(3, 0)] > 0);
  EXPECT_EQ(Q[at(4, 0)], quality::kSaturated);
  EXPECT_TRUE(std::isnan(L[at(4, 0)]));
  for (std::size_t r : {1u, 2u, 4u, 5u}) {
    for (std::size_t p = 0; p < P; ++p) EXPECT_TRUE(std::isnan(L[at(r, p)]) && std::isnan(V[at(r, p)]));
  }
  // Row 0 is unaffected by its bad neighbours in the batch.
  std::vector<float> L0(P), V0(P);
  std::vector<std::uint8_t> Q0(P);
  cal.run<std::uint32_t, float>(std::span(counts).first(P), std::span(exposure).first(1),
                                std::span(temperature).first(1), L0, V0, Q0);
  for (std::size_t p = 0; p < P; ++p) {
    if (p == 10) continue;
    EXPECT_EQ(L0[p], L[p]);
    EXPECT_EQ(V0[p], V[p]);
  }
}

TEST(Calibrate, TemperaturesBeyondTheLimitsOrANegativeDarkFlagTheSpectrum) {
  // Limits -100 .. 100 degC (the defaults); k = 0.03/degC and T_ref = 0 give
  // a negative dark below -33.3 degC. A telemetry glitch of 1e30 degC gave
  // radiance -3e28 with quality 0 before the limits.
  const std::size_t P = 32;
  Detector d = make_detector(P, 5, 1e-6);
  const Calibrator cal(d.view(), CalibrateSettings{});
  const std::vector<double> temperature = {1e30, 100.5, 100.0, -33.0, -33.5, -1e30, 20.0};
  const std::size_t rows = temperature.size();
  std::vector<std::uint32_t> counts(rows * P, 40);
  const std::vector<double> exposure(rows, 8.0);
  std::vector<double> L(rows * P), V(rows * P);
  std::vector<std::uint8_t> Q(rows * P);
  cal.run<std::uint32_t, double>(counts, exposure, temperature, L, V, Q);
  const std::vector<bool> invalid = {true, true, false, false, true, true, false};
  for (std::size_t r = 0; r < rows; ++r) {
    EXPECT_EQ(Q[r * P + 3], invalid[r] ? quality::kInvalidTemperature : 0)
        << "T " << temperature[r];
    EXPECT_EQ(std::isnan(L[r * P + 3]), invalid[r]) << "T " << temperature[r];
  }
  // Narrower limits from the settings.
  CalibrateSettings narrow;
  narrow.min_detector_temperature_c = 0.0;
  narrow.max_detector_temperature_c = 10.0;
  const Calibrator cal_narrow(d.view(), narrow);
  cal_narrow.run<std::uint32_t, double>(std::span(counts).first(P), std::span(exposure).first(1),
                                        std::vector<double>{20.0}, std::span(L).first(P),
                                        std::span(V).first(P), std::span(Q).first(P));
  EXPECT_EQ(Q[3], quality::kInvalidTemperature);
  // The count model used by the fit's refits agrees.
  std::vector<double> scale(P), offset(P);
  EXPECT_FALSE(cal.count_model(std::span(counts).first(P), 8.0, 1e30, scale, offset));
  EXPECT_TRUE(cal.count_model(std::span(counts).first(P), 8.0, 20.0, scale, offset));
}

TEST(Calibrate, CountModelOverPixelRangesWritesThoseOnlyWithTheAnalyticValues) {
  // scale_p = S_p F_p t g and offset_p = (1 + k (T - T_ref)) D_p t g, with
  // g = 1 - tau M / t (M the spectrum's total counts): the whole row, and
  // over ranges only those pixels (the fit's windows), the others untouched.
  const std::size_t P = 64;
  Detector d = make_detector(P, 7, 2e-6);
  const Calibrator cal(d.view(), CalibrateSettings{});
  std::vector<std::uint32_t> counts(P);
  for (std::size_t p = 0; p < P; ++p) counts[p] = static_cast<std::uint32_t>(30 + 7 * (p % 5));
  double M = 0.0;
  for (const auto c : counts) M += c;
  const double t = 8.0, temp = 20.0, g = 1.0 - d.tau * M / t, ds = 1.0 + d.coeff * (temp - d.t_ref);
  std::vector<double> s_all(P), o_all(P);
  ASSERT_TRUE(cal.count_model(counts, t, temp, s_all, o_all));
  for (std::size_t p = 0; p < P; ++p) {
    EXPECT_NEAR(s_all[p], d.sens[p] * d.flat[p] * t * g, 1e-12 * s_all[p]) << p;
    EXPECT_NEAR(o_all[p], ds * d.dark[p] * t * g, 1e-12 * o_all[p]) << p;
  }
  const std::vector<PixelRange> ranges = {{3, 9}, {40, 41}, {60, 64}};
  auto inside = [&](std::size_t p) {
    for (const auto& r : ranges) {
      if (p >= r.begin && p < r.end) return true;
    }
    return false;
  };
  std::vector<double> s(P, -1.0), o(P, -1.0);
  ASSERT_TRUE(cal.count_model(counts, t, temp, s, o, ranges));
  for (std::size_t p = 0; p < P; ++p) {
    EXPECT_EQ(s[p], inside(p) ? s_all[p] : -1.0) << p;
    EXPECT_EQ(o[p], inside(p) ? o_all[p] : -1.0) << p;
  }
  // An invalid spectrum: zero over the ranges, the rest still untouched.
  std::fill(s.begin(), s.end(), -1.0);
  std::fill(o.begin(), o.end(), -1.0);
  EXPECT_FALSE(cal.count_model(counts, t, 1e30, s, o, ranges));
  for (std::size_t p = 0; p < P; ++p) {
    EXPECT_EQ(s[p], inside(p) ? 0.0 : -1.0) << p;
    EXPECT_EQ(o[p], inside(p) ? 0.0 : -1.0) << p;
  }
}

TEST(Calibrate, ZeroCountsNeverGetZeroVariance) {
  const std::size_t P = 100;
  Detector d = make_detector(P, 13, 0.0);
  std::fill(d.dark.begin(), d.dark.end(), 0.0);
  CalibrateSettings settings;
  settings.min_expected_counts = 0.1;
  const Calibrator cal(d.view(), settings);
  std::vector<std::uint32_t> counts(P, 0);
  std::vector<double> L(P), V(P);
  std::vector<std::uint8_t> Q(P);
  const std::vector<double> exposure = {8.0}, temperature = {0.0};
  cal.run<std::uint32_t, double>(counts, exposure, temperature, L, V, Q);
  for (std::size_t p = 0; p < P; ++p) {
    EXPECT_EQ(L[p], 0.0);
    // The floor: 0.1 expected counts through the pixel's response.
    const double k = 1.0 / (8.0 * d.sens[p] * d.flat[p]);
    EXPECT_NEAR(V[p], 0.1 * k * k, 1e-12 * k * k) << p;
  }
}

TEST(Calibrate, VarianceDoesNotFollowThePixelsOwnCount) {
  // Neyman's bias: a pixel's variance must not move with its own count.
  const std::size_t P = 50;
  Detector d = make_detector(P, 17, 1e-7);
  const Calibrator cal(d.view(), {});
  std::vector<std::uint32_t> counts(P, 20);
  std::vector<double> L(P), V(P), V2(P);
  std::vector<std::uint8_t> Q(P);
  const std::vector<double> exposure = {8.0}, temperature = {0.0};
  cal.run<std::uint32_t, double>(counts, exposure, temperature, L, V, Q);
  counts[25] = 0;
  cal.run<std::uint32_t, double>(counts, exposure, temperature, L, V2, Q);
  // Only through the dead-time total (a part in 1e6 here).
  EXPECT_NEAR(V2[25], V[25], 1e-5 * V[25]);
}

}  // namespace
}  // namespace exospec::kernels

namespace exospec::kernels {
namespace {

TEST(Calibrate, DetectorNarrowerThanTheWindowShrinksIt) {
  for (std::size_t P : {1u, 2u, 5u, 8u}) {
    Detector d = make_detector(P, 19, 1e-6);
    const Calibrator cal(d.view(), {});
    EXPECT_EQ(cal.settings().variance_half_width, static_cast<int>((P - 1) / 2));
    std::vector<std::uint32_t> counts(P, 7);
    const std::vector<double> exposure = {8.0}, temperature = {1.0};
    std::vector<double> L(P), V(P), Lr(P), Vr(P);
    std::vector<std::uint8_t> Q(P), Qr(P);
    cal.run<std::uint32_t, double>(counts, exposure, temperature, L, V, Q);
    cal.run_reference<std::uint32_t, double>(counts, exposure, temperature, Lr, Vr, Qr);
    for (std::size_t p = 0; p < P; ++p) {
      EXPECT_NEAR(L[p], Lr[p], 1e-12 * std::abs(Lr[p]));
      EXPECT_NEAR(V[p], Vr[p], 1e-10 * Vr[p]) << "P " << P << " pixel " << p;
      EXPECT_GT(V[p], 0.0);
    }
  }
}

}  // namespace
}  // namespace exospec::kernels
