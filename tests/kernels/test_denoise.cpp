// Denoising kernels against analytic answers: the adaptive smoother on exact
// polynomials and on a sharp line, its variance against the linear-filter
// formula, interpolation over flagged pixels, and particle-hit removal on a
// synthetic row with known spikes and a bright line.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/denoise.hpp"
#include "exospec/kernels/random.hpp"

namespace exospec::kernels {
namespace {

TEST(AdaptiveSmoother, ReproducesAQuadraticWithTheWidestWindow) {
  const std::size_t P = 200;
  const AdaptiveSmoother sm(P, {});
  std::vector<double> x(P), v(P, 4.0), y(P), yv(P);
  std::vector<std::uint8_t> q(P, 0), chosen(P);
  for (std::size_t p = 0; p < P; ++p) {
    const double t = static_cast<double>(p);
    x[p] = 5.0 + 0.1 * t - 2e-4 * t * t;
  }
  auto work = sm.make_workspace<double>();
  sm.run<double>(x, v, q, y, yv, work, chosen);
  // The widest window's variance in the interior: 4 * sum c^2 = 4 * c_0 for SG.
  SavgolSettings s;
  s.window = 41;
  s.polyorder = 2;
  const SavgolFilter widest(P, s);
  std::vector<double> wv(P);
  widest.apply_variance<double>(v, wv);
  for (std::size_t p = 0; p < P; ++p) {
    EXPECT_NEAR(y[p], x[p], 1e-10) << p;
    EXPECT_EQ(chosen[p], sm.windows() - 1) << p;
    EXPECT_NEAR(yv[p], wv[p], 1e-12) << p;
  }
  EXPECT_NEAR(yv[100], 4.0 * widest.coefficients()[20], 1e-12);
}

// run_ranges() (what the fit's initial guesses need) gives each pixel asked
// for run()'s value to the bit, and NaN elsewhere: ranges at both edges, one
// pixel wide, across flagged pixels, and empty; float and double.
template <class T>
void ranges_equal_whole() {
  const std::size_t P = 300, rows = 6;
  const AdaptiveSmoother sm(P, {});
  auto rng = Rng::stream(5);
  std::vector<T> x(rows * P), v(rows * P), y(rows * P), yv(rows * P), z(rows * P), zv(rows * P);
  std::vector<std::uint8_t> q(rows * P, 0), chosen(rows * P), chosen2(rows * P);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double p = static_cast<double>(i % P), d = (p - 150.0) / 5.0;
    const double mu = 3.0 + 400.0 * std::exp(-0.5 * d * d);
    x[i] = static_cast<T>(mu + std::sqrt(mu) * rng.normal());
    v[i] = static_cast<T>(mu);
  }
  q[P + 40] = quality::kBadPixel;
  q[P + 41] = quality::kParticleHit;
  q[2 * P + 0] = quality::kBadPixel;
  for (std::size_t p = 0; p < P; ++p) q[4 * P + p] = quality::kInvalidExposure | quality::kBadPixel;
  auto work = sm.make_workspace<T>();
  sm.run<T>(x, v, q, y, yv, work, chosen);
  const std::vector<PixelRange> ranges = {{0, 7}, {35, 60}, {149, 150}, {152, 152}, {280, 300}};
  sm.run_ranges<T>(x, v, q, ranges, z, zv, work, chosen2);
  std::size_t compared = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t p = 0; p < P; ++p) {
      const std::size_t i = r * P + p;
      bool in = false;
      for (const auto& pr : ranges) in |= p >= pr.begin && p < pr.end;
      if (!in) {
        EXPECT_TRUE(std::isnan(z[i]) && std::isnan(zv[i])) << r << " " << p;
        EXPECT_EQ(chosen2[i], 0);
        continue;
      }
      ++compared;
      EXPECT_EQ(0, std::memcmp(&z[i], &y[i], sizeof(T))) << r << " " << p << ": " << z[i] << " " << y[i];
      EXPECT_EQ(0, std::memcmp(&zv[i], &yv[i], sizeof(T))) << r << " " << p;
      EXPECT_EQ(chosen2[i], chosen[i]) << r << " " << p;
    }
  }
  EXPECT_EQ(compared, rows * 53);
  // (Not a row of NaN: the comparison saw values.)
  EXPECT_TRUE(std::isfinite(z[P * 3 + 149]));
  EXPECT_GT(z[P * 3 + 149], T(100));
}

TEST(AdaptiveSmoother, RangesGiveTheWholeRunsValuesToTheBit) {
  ranges_equal_whole<float>();
  ranges_equal_whole<double>();
}

TEST(AdaptiveSmoother, KeepsABrightLineNarrowAndLowersNoiseOnTheContinuum) {
  const std::size_t P = 400, rows = 200;
  const AdaptiveSmoother sm(P, {});
  auto rng = Rng::stream(3);
  std::vector<double> truth(P), x(rows * P), v(rows * P), y(rows * P), yv(rows * P);
  std::vector<std::uint8_t> q(rows * P, 0), chosen(rows * P);
  for (std::size_t p = 0; p < P; ++p) {
    const double d = (static_cast<double>(p) - 200.0) / 4.0;  // sigma 4 pixels
    truth[p] = 10.0 + 5000.0 * std::exp(-0.5 * d * d);
  }
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t p = 0; p < P; ++p) {
      v[r * P + p] = truth[p];  // Poisson-like variance, known exactly
      x[r * P + p] = truth[p] + std::sqrt(truth[p]) * rng.normal();
    }
  }
  auto work = sm.make_workspace<double>();
  sm.run<double>(x, v, q, y, yv, work, chosen);
  double e_raw = 0, e_out = 0, area_in = 0, area_out = 0;
  std::size_t n = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    EXPECT_LE(chosen[r * P + 200], 1) << "the peak keeps a narrow window";
    for (std::size_t p = 20; p < 120; ++p) {  // continuum
      const double s = std::sqrt(truth[p]);
      e_raw += std::pow((x[r * P + p] - truth[p]) / s, 2);
      e_out += std::pow((y[r * P + p] - truth[p]) / s, 2);
      ++n;
    }
    for (std::size_t p = 180; p < 221; ++p) {
      area_in += x[r * P + p];
      area_out += y[r * P + p];
    }
  }
  // The widest window alone would give sqrt(c_0) = 0.23; the rule stops earlier
  // now and then on noise (gamma = 1), which costs some of that.
  EXPECT_LT(std::sqrt(e_out / static_cast<double>(n)),
            0.45 * std::sqrt(e_raw / static_cast<double>(n)));
  EXPECT_NEAR(area_out / area_in, 1.0, 2e-3);
}

TEST(FillFlagged, LinearInterpolationWithItsVariance) {
  std::vector<double> x = {1, 2, 99, 99, 5, 6}, v = {1, 1, 50, 50, 4, 1};
  std::vector<std::uint8_t> q = {0, 0, quality::kParticleHit, quality::kBadPixel, 0, 0};
  ASSERT_TRUE(fill_flagged<double>(x, v, q, quality::kParticleHit | quality::kBadPixel));
  EXPECT_DOUBLE_EQ(x[2], 2.0 + (5.0 - 2.0) / 3.0);
  EXPECT_DOUBLE_EQ(x[3], 2.0 + 2.0 * (5.0 - 2.0) / 3.0);
  EXPECT_DOUBLE_EQ(v[2], (2.0 / 3) * (2.0 / 3) * 1.0 + (1.0 / 3) * (1.0 / 3) * 4.0);
  std::vector<std::uint8_t> all(6, quality::kBadPixel);
  EXPECT_FALSE(fill_flagged<double>(x, v, all, quality::kBadPixel));
}

TEST(Despike, FindsSpikesOfOneToThreePixelsAndLeavesABrightLineAlone) {
  const std::size_t P = 300, rows = 400;
  std::vector<double> dark(P, 0.02), flat(P, 1.0), sens(P, 0.25);
  std::vector<std::uint8_t> bad(P, 0);
  CalibrateSettings settings;
  settings.despike.enabled = true;
  const Calibrator cal({dark, flat, sens, bad, 0.0, 0.0, 0.0}, settings);
  CalibrateSettings plain_settings;
  const Calibrator plain({dark, flat, sens, bad, 0.0, 0.0, 0.0}, plain_settings);
  auto rng = Rng::stream(21);
  std::vector<std::uint32_t> counts(rows * P), hits(rows * P, 0);
  const std::vector<double> exposure(rows, 8.0), temperature(rows, 0.0);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t p = 0; p < P; ++p) {
      const double d = (static_cast<double>(p) - 150.0) / 4.0;
      const double radiance = 5.0 + 3000.0 * std::exp(-0.5 * d * d);  // R/nm
      counts[r * P + p] = static_cast<std::uint32_t>(rng.poisson((radiance * 0.25 + 0.02) * 8.0));
    }
    // One hit per row away from the line, 1-3 pixels of 25-60 counts (8-19
    // sigma over the 10-count background).
    const std::size_t width = 1 + r % 3;
    const std::size_t start = 10 + rng.below(100) + (r % 2 ? 170 : 0);
    for (std::size_t p = start; p < start + width; ++p) {
      hits[r * P + p] = static_cast<std::uint32_t>(25 + rng.below(36));
      counts[r * P + p] += hits[r * P + p];
    }
  }
  std::vector<double> L(rows * P), V(rows * P), L0(rows * P), V0(rows * P);
  std::vector<std::uint8_t> Q(rows * P), Q0(rows * P);
  cal.run<std::uint32_t, double>(counts, exposure, temperature, L, V, Q);
  plain.run<std::uint32_t, double>(counts, exposure, temperature, L0, V0, Q0);
  std::size_t hit_pixels = 0, found = 0, false_flags = 0, line_flags = 0;
  for (std::size_t i = 0; i < rows * P; ++i) {
    const bool flagged = (Q[i] & quality::kParticleHit) != 0;
    const std::size_t p = i % P;
    if (hits[i] > 0) {
      ++hit_pixels;
      found += flagged;
      if (flagged) {
        // Replaced by an interpolation: the background (5 R/nm) within 5
        // sigma of one pixel (1.6 R/nm), not the spike (12-30 R/nm above it).
        EXPECT_NEAR(L[i], 5.0, 8.0) << "row " << i / P << " pixel " << p;
        EXPECT_GT(V[i], 0.0);
        EXPECT_LT(V[i], V0[i]);  // the interpolation is better determined than the spike
      }
    } else if (flagged) {
      // Neighbours within 2 pixels of a hit may join it (grow threshold 2).
      bool near_hit = false;
      for (std::size_t j = i >= 2 ? i - 2 : 0; j <= std::min(rows * P - 1, i + 2); ++j) {
        near_hit |= hits[j] > 0;
      }
      if (!near_hit) ++false_flags;
      if (p > 130 && p < 170) ++line_flags;
    } else {
      EXPECT_EQ(L[i], L0[i]);  // untouched pixels keep their radiance exactly
    }
  }
  // Rates from counts: the spikes are 8-19 sigma, so every one is expected
  // to be found; a miss count m (expected 0) is held to 4 sqrt(max(m, 1)) = 4
  // (Poisson), and the false flags (measured 3 of ~120,000 background pixels)
  // to 3 + 4 sqrt(3) = 10.
  std::printf("despike: %zu of %zu hit pixels found, %zu false flags, %zu on the line\n", found, hit_pixels,
              false_flags, line_flags);
  EXPECT_LE(hit_pixels - found, 4u);
  EXPECT_LE(false_flags, 10u);
  EXPECT_EQ(line_flags, 0u);
}

}  // namespace
}  // namespace exospec::kernels

namespace exospec::kernels {
namespace {

// E[A(X)] for X ~ Poisson(mu), summed over the probability mass function.
double expected_anscombe(double mu) {
  double sum = 0.0;
  const auto kmax = static_cast<int>(mu + 20.0 * std::sqrt(mu) + 40.0);
  for (int k = 0; k <= kmax; ++k) {
    const double logp = -mu + k * std::log(mu) - std::lgamma(k + 1.0);
    sum += std::exp(logp) * anscombe(k);
  }
  return sum;
}

TEST(Anscombe, ClosedFormInverseIsUnbiasedWhereTheAlgebraicOneIsNot) {
  for (double mu : {0.1, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 200.0}) {
    const double d = expected_anscombe(mu);
    // Makitalo & Foi's closed form: within 0.4 % (scipy-free check: the pmf sum).
    EXPECT_NEAR(anscombe_inverse(d), mu, 0.004 * mu + 1e-4) << mu;
    // Its derivative against a central difference.
    const double h = 1e-5;
    EXPECT_NEAR(anscombe_inverse_derivative(d),
                (anscombe_inverse(d + h) - anscombe_inverse(d - h)) / (2 * h), 1e-5);
    if (mu >= 1.0) {
      // The algebraic inverse D^2/4 - 3/8 is low by about 1/4 count.
      EXPECT_LT(d * d / 4.0 - 0.375, mu - 0.15) << mu;
    }
  }
  EXPECT_EQ(anscombe_inverse(0.5), 0.0);
}

TEST(Anscombe, SmootherReturnsTheMeanOfLowCountPoissonData) {
  // A flat field of 0.8 counts per pixel (radiance 0.4 R/nm, 2 counts per R/nm,
  // 0 dark): the Anscombe-domain smoother must return 0.4 on average.
  const std::size_t P = 300, rows = 300;
  const AnscombeSmoother sm(P, {});
  auto work = sm.make_workspace();
  auto rng = Rng::stream(12);
  std::vector<double> L(rows * P), scale(rows * P, 2.0), offset(rows * P, 0.0), y(rows * P),
      yv(rows * P);
  std::vector<std::uint8_t> q(rows * P, 0);
  for (auto& l : L) l = static_cast<double>(rng.poisson(0.8)) / 2.0;
  sm.run<double>(L, q, scale, offset, y, yv, work);
  double mean = 0, raw = 0, var_pred = 0;
  for (std::size_t i = 0; i < rows * P; ++i) {
    mean += y[i];
    raw += std::pow(y[i] - 0.4, 2);
    var_pred += yv[i];
  }
  const auto n = static_cast<double>(rows * P);
  // Within 2 % (the window choice depends on the data); the algebraic inverse
  // would be 22 % low here.
  EXPECT_NEAR(mean / n, 0.4, 0.008);
  const double d08 = expected_anscombe(0.8);
  const double algebraic = (d08 * d08 / 4.0 - 0.375) / 2.0;
  EXPECT_LT(algebraic, 0.4 * 0.85);
  // Variance of a raw pixel is 0.8 / 4 = 0.2 (R/nm)^2: the smoothing removes most
  // of it. At 0.8 counts var(A) is below 1, so the unit-variance assumption
  // overestimates the remaining scatter (conservative), by less than 60 %.
  EXPECT_LT(raw / n, 0.02);
  EXPECT_GT(var_pred / raw, 0.9);
  EXPECT_LT(var_pred / raw, 1.6);
}

}  // namespace
}  // namespace exospec::kernels
