// The profile fit (kernels/profile.hpp) and the scans (kernels/scans.hpp):
// noise-free profiles recovered exactly, Gaussian-noise pulls of B_s, T and
// B_bg against the truth with bounds from the sample size, and every status
// for the cases a scan can bring (one spectrum, one altitude, a line that is
// not there, a temperature beyond the search range, an unknown species).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <numeric>
#include <vector>

#include "exospec/kernels/ballistic.hpp"
#include "exospec/kernels/profile.hpp"
#include "exospec/kernels/random.hpp"
#include "exospec/kernels/scans.hpp"

namespace exospec::kernels {
namespace {

constexpr double kMg = 24.305;

// A scan of n spectra from 0 to zmax km.
std::vector<double> altitudes(std::size_t n, double zmax = 5000.0) {
  std::vector<double> z(n);
  for (std::size_t i = 0; i < n; ++i) z[i] = zmax * static_cast<double>(i) / static_cast<double>(n - 1);
  return z;
}

std::vector<double> model(std::span<const double> z, double bs, double mass, double t, double bg) {
  std::vector<double> b(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) b[i] = bs * exosphere::column_ratio(z[i], mass, t) + bg;
  return b;
}

TEST(Scans, MonotonicRunsFixedLengthAndFile) {
  // Two rising limb scans, a falling one, a plateau that continues it, and a
  // non-finite altitude that stands alone.
  const std::vector<double> z = {0, 100, 200, 0, 100, 200, 150, 150, 50, NAN, 10, 20};
  const auto s = find_scans(z, ScanMode::kMonotonic);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0].first, 0);
  EXPECT_EQ(s[0].count, 3);
  EXPECT_EQ(s[1].first, 3);
  EXPECT_EQ(s[1].count, 3);
  EXPECT_EQ(s[2].first, 6);  // 150, 150, 50: falling, the equal step continues it
  EXPECT_EQ(s[2].count, 3);
  EXPECT_EQ(s[3].first, 9);  // NaN
  EXPECT_EQ(s[3].count, 1);
  EXPECT_EQ(s[4].first, 10);
  EXPECT_EQ(s[4].count, 2);
  const auto f = find_scans(z, ScanMode::kFixed, 5);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[2].first, 10);
  EXPECT_EQ(f[2].count, 2);
  const auto all = find_scans(z, ScanMode::kFile);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].count, 12);
  const std::vector<double> flat(7, 300.0);
  EXPECT_EQ(find_scans(flat, ScanMode::kMonotonic).size(), 1u);
  std::vector<std::int64_t> idx(z.size());
  scan_index(s, idx);
  EXPECT_EQ(idx[5], 1);
  EXPECT_EQ(idx[9], 3);
  EXPECT_EQ(idx[11], 4);
}

TEST(ProfileFit, NoiseFreeProfilesAreRecovered) {
  const ProfileSettings set;
  struct Case {
    double mass, t, bs, bg;
  } cases[] = {{kMg, 6000.0, 150.0, 0.0}, {4.0026, 575.0, 40.0, 5.0}, {1.008, 420.0, 2000.0, 600.0},
               {26.982, 3000.0, 15.0, 2.0}};
  for (const auto& c : cases) {
    const ProfileFitter fit(c.mass, set);
    auto ws = fit.make_workspace(50);
    const auto z = altitudes(50);
    const auto b = model(z, c.bs, c.mass, c.t, c.bg);
    const std::vector<double> sigma(50, 0.01 * c.bs);
    const auto r = fit.fit(z, b, sigma, {}, ws);
    ASSERT_EQ(r.status, ProfileStatus::kConverged) << c.mass;
    // (The table's 1e-6 error of C(0) limits the recovery.)
    EXPECT_NEAR(r.temperature_K / c.t, 1.0, 1e-5) << c.mass;
    EXPECT_NEAR(r.surface_brightness_R / c.bs, 1.0, 1e-5) << c.mass;
    EXPECT_NEAR(r.background_R, c.bg, 1e-5 * c.bs) << c.mass;
    EXPECT_LT(r.chi2_reduced, 1e-6);
    EXPECT_EQ(r.spectra, 50u);
    EXPECT_NEAR(r.scale_height_km, exosphere::scale_height_km(c.mass, r.temperature_K), 1e-12 * r.scale_height_km);
    EXPECT_NEAR(r.scale_height_sigma / r.scale_height_km, r.temperature_sigma / r.temperature_K, 1e-12);
    EXPECT_LT(std::abs(r.temperature_background_correlation), 1.0);
  }
}

// The Fisher sigmas against the scatter of the fits over noisy scans, in two
// regimes of the same Mg profile (150 R at the surface, 6000 K, 3 R background):
// per-spectrum sigma 1.5 R (sigma_T / T about 3 %) and 6 R (about 12 %).
// High S/N: pulls of B_s, T and B_bg have mean and median 0 and sd 1 within
// 4 standard errors (a sigma off by 3 % fails). Moderate S/N: the
// likelihood of T is skewed (mean pull of T -0.12 while its median is
// -0.03; B_s median +0.08), so the bounds hold there: |median| <= 0.1
// and sd 1 within 4 standard errors.
TEST(ProfileFit, PullsOfNoisyScansFollowTheirSigmas) {
  const ProfileSettings set;
  const ProfileFitter fit(kMg, set);
  auto ws = fit.make_workspace(50);
  const auto z = altitudes(50);
  const double bs = 150.0, t = 6000.0, bg = 3.0;
  const auto truth = model(z, bs, kMg, t, bg);
  constexpr int kScans = 4000;
  for (const double s : {1.5, 6.0}) {
    std::vector<double> pt, pb, pg, corr;
    auto rng = Rng::stream(7, 1, 2, static_cast<std::uint64_t>(s * 10));
    std::vector<double> b(z.size()), sg(z.size(), s);
    for (int k = 0; k < kScans; ++k) {
      for (std::size_t i = 0; i < z.size(); ++i) b[i] = truth[i] + s * rng.normal();
      const auto r = fit.fit(z, b, sg, {}, ws);
      ASSERT_TRUE(r.status == ProfileStatus::kConverged) << static_cast<int>(r.status);
      pt.push_back((r.temperature_K - t) / r.temperature_sigma);
      pb.push_back((r.surface_brightness_R - bs) / r.surface_brightness_sigma);
      pg.push_back((r.background_R - bg) / r.background_sigma);
      corr.push_back(r.temperature_background_correlation);
    }
    for (const auto* p : {&pt, &pb, &pg}) {
      const double n = static_cast<double>(p->size());
      const double mean = std::accumulate(p->begin(), p->end(), 0.0) / n;
      double var = 0.0;
      for (double v : *p) var += (v - mean) * (v - mean);
      const double sd = std::sqrt(var / (n - 1));
      std::vector<double> sorted = *p;
      std::sort(sorted.begin(), sorted.end());
      const double median = sorted[sorted.size() / 2];
      std::printf("sigma %.1f R, pulls of %s: mean %+.3f median %+.3f sd %.3f\n", s,
                  p == &pt ? "T" : p == &pb ? "B_s" : "B_bg", mean, median, sd);
      // Standard errors for n unit normals: mean 1/sqrt(n), median 1.25/sqrt(n),
      // sd 1/sqrt(2n).
      EXPECT_NEAR(sd, 1.0, 4.0 / std::sqrt(2.0 * n));
      if (s < 2.0) {
        EXPECT_NEAR(mean, 0.0, 4.0 / std::sqrt(n) + 0.02);
        EXPECT_NEAR(median, 0.0, 5.0 / std::sqrt(n) + 0.02);
      } else {
        EXPECT_LE(std::abs(median), 0.1);
      }
    }
    std::sort(corr.begin(), corr.end());
    EXPECT_LT(corr[corr.size() / 2], -0.5);  // T and B_bg anti-correlated over 0-5000 km
  }
}

TEST(ProfileFit, StatusesOfDegenerateScans) {
  ProfileSettings set;
  const ProfileFitter fit(kMg, set);
  auto ws = fit.make_workspace(50);
  const auto z = altitudes(50);
  const std::vector<double> sigma(50, 1.0);
  // One spectrum: too few.
  {
    const std::vector<double> z1 = {0.0}, b1 = {100.0}, s1 = {1.0};
    const auto r = fit.fit(z1, b1, s1, {}, ws);
    EXPECT_EQ(r.status, ProfileStatus::kTooFewSpectra);
    EXPECT_TRUE(std::isnan(r.temperature_K));
  }
  // Every spectrum at one altitude.
  {
    const std::vector<double> zc(50, 800.0), bc(50, 10.0);
    const auto r = fit.fit(zc, bc, sigma, {}, ws);
    EXPECT_EQ(r.status, ProfileStatus::kNoAltitudeRange);
    EXPECT_TRUE(std::isnan(r.surface_brightness_R));
  }
  // A line that is not there: pure noise around a background.
  {
    auto rng = Rng::stream(3, 1, 1, 1);
    std::vector<double> b(50);
    for (auto& v : b) v = 2.0 + rng.normal();
    const auto r = fit.fit(z, b, sigma, {}, ws);
    EXPECT_TRUE(r.status == ProfileStatus::kNotDetected || r.status == ProfileStatus::kTemperatureAtBound)
        << static_cast<int>(r.status);
    EXPECT_TRUE(std::isfinite(r.background_R));
  }
  // A temperature beyond the search range: at the bound, flagged.
  {
    ProfileSettings narrow;
    narrow.max_temperature_K = 2000.0;
    const ProfileFitter hot(kMg, narrow);
    const auto b = model(z, 150.0, kMg, 6000.0, 0.0);
    const auto r = hot.fit(z, b, sigma, {}, ws);
    EXPECT_EQ(r.status, ProfileStatus::kTemperatureAtBound);
    EXPECT_NEAR(r.temperature_K, 2000.0, 1e-3);
    EXPECT_TRUE(std::isnan(r.temperature_sigma));
    EXPECT_TRUE(std::isfinite(r.surface_brightness_sigma));
  }
  // Spectra whose fit failed (status 3) or lies below the surface are left out.
  {
    const auto b = model(z, 150.0, kMg, 6000.0, 0.0);
    std::vector<std::uint8_t> st(50, 0);
    std::vector<double> zz = z;
    for (std::size_t i = 0; i < 50; i += 5) st[i] = 3;
    zz[1] = -10.0;
    const auto r = fit.fit(zz, b, sigma, st, ws);
    EXPECT_EQ(r.spectra, 39u);
    EXPECT_NEAR(r.temperature_K, 6000.0, 0.1);
  }
  // An unknown species.
  {
    const ProfileFitter unknown(std::nan(""), set);
    const auto r = unknown.fit(z, std::vector<double>(50, 1.0), sigma, {}, ws);
    EXPECT_EQ(r.status, ProfileStatus::kUnknownMass);
  }
}

}  // namespace
}  // namespace exospec::kernels
