// Particle-hit removal (the despike step of kernels::Calibrator::run) against
// a plain scalar reference written here from the rule in docs/DENOISE.md and
// the comment above despike_row (kernels/src/calibrate.cpp), with the
// documented constants (threshold 3.5, grow threshold 2, line tolerance 0.2,
// expectation floor 0.1 counts) written into the reference, not read from
// the settings:
//   ref_p  = mean radiance of the usable, not yet flagged pixels at p +- 2
//            and p +- 3 (fewer than 2 of them: no reference, no hit);
//   mu_p   = max(ref_p k_p + d_p, 0.1) counts, k_p = S F t g, d_p = s D t g;
//   tol_p  = 0.2 k_p max(0, ref_p - B_p), B_p the lowest mean of the usable
//            pixels among q - 1..q + 1 over q within +-10 pixels;
//   z_p    = 2 (sqrt(c_p + 3/8) - sqrt(mu_p + 3/8)) / sqrt(1 + 1/4 + tol_p^2 / (mu_p + 3/8));
//   pass 1 in pixel order: z_p > 3.5 flags p; then two rounds in pixel
//   order in which unflagged pixels within 2 of a flagged one with z_p > 2
//   join (their reference without the flagged pixels); every flagged pixel is replaced
//   by linear interpolation (in pixel index) between the nearest unflagged
//   usable pixels (one side only: its value), and its variance is that of
//   the interpolation, (1 - w)^2 V_left + w^2 V_right.
// Rows come from a generator of this file (its own detector, continuum,
// Gaussian lines up to 20 kR, Poisson counts, particle hits of 1-3 pixels
// of 5-60 counts with their truth), and the calibrator runs with the
// despike settings that `exospec run` uses (pipeline::load_run_config()).
// Asserted: every flag equal, float and double rows; the replaced
// radiance and variance and every other pixel's radiance; and, from the
// hits' truth, a detection rate and a false-flag rate with bounds from the
// sample sizes (a threshold of 5.0 instead of 3.5 fails both the flag
// comparison and the detection rate).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numbers>
#include <span>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/random.hpp"
#include "exospec/pipeline/run.hpp"

namespace exospec::kernels {
namespace {

constexpr std::size_t kP = 1024;
constexpr double kThreshold = 3.5, kGrow = 2.0, kLineTolerance = 0.2, kFloor = 0.1;  // docs/DENOISE.md

double phi_cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

struct Detector {
  std::vector<double> sensitivity, flat, dark;
  std::vector<std::uint8_t> bad, dead;
  double tau = 0.5e-6, t_ref = 0.0, coeff = 0.03;
};

Detector make_detector() {
  auto rng = Rng::stream(77, 1);
  Detector d;
  d.sensitivity.resize(kP);
  d.flat.resize(kP);
  d.dark.resize(kP);
  d.bad.assign(kP, 0);
  d.dead.assign(kP, 0);
  for (std::size_t p = 0; p < kP; ++p) {
    const double u = (static_cast<double>(p) - 511.5) / 511.5;
    d.sensitivity[p] = 0.2 * (0.1 + 0.9 * (1.0 - u * u));
    d.flat[p] = 1.0 + 0.03 * rng.normal();
    d.dark[p] = std::max(0.0, 0.02 + 0.005 * rng.normal());
  }
  for (std::size_t p : {17u, 333u, 501u, 777u}) {  // hot (one of them on a line's wing)
    d.bad[p] = 1;
    d.dark[p] = 8.0;
  }
  for (std::size_t p : {3u, 210u, 1020u}) {  // dead, recording nothing
    d.bad[p] = 1;
    d.dead[p] = 1;
  }
  return d;
}

struct Rows {
  std::size_t n = 0;
  std::vector<std::uint32_t> counts, hit;  // n x P; hit: counts added by particle hits
  std::vector<double> exposure, temperature;
  std::vector<double> line_radiance, continuum;  // n x P truth (R/nm): lines only; per row
  std::vector<std::uint8_t> single;  // n x P: 1 where a 1-pixel hit with no other hit within 5 pixels
};

// Rows of continuum (0.2-5 R/nm) and three Gaussian lines (sigma 4.2
// pixels, pixel-integrated, 0.1 nm per pixel) of 0-200 R, one of them at
// 2-20 kR in a third of the rows; whole-detector dead time; Poisson counts;
// Poisson(4) hits per row of 1-3 adjacent pixels of 5-60 counts each.
// Two rows have an invalid exposure (no despike there).
Rows make_rows(const Detector& det, std::size_t n, std::uint64_t seed) {
  Rows r;
  r.n = n;
  r.counts.assign(n * kP, 0);
  r.hit.assign(n * kP, 0);
  r.line_radiance.assign(n * kP, 0.0);
  r.single.assign(n * kP, 0);
  r.exposure.assign(n, 8.0);
  r.temperature.assign(n, 5.0);
  r.continuum.assign(n, 0.0);
  const double centres[3] = {200.3, 499.8, 800.55}, sigma = 4.2, nm_per_pixel = 0.1;
  std::vector<double> expected(kP);
  for (std::size_t i = 0; i < n; ++i) {
    auto rng = Rng::stream(seed, i);
    r.temperature[i] = 5.0 + 3.0 * std::sin(static_cast<double>(i) / 40.0);
    if (i == 5 || i == 6) r.exposure[i] = i == 5 ? 0.0 : std::numeric_limits<double>::quiet_NaN();
    const double c0 = std::pow(10.0, rng.uniform(-0.7, 0.7));
    r.continuum[i] = c0;
    double b[3];
    for (double& bj : b) bj = rng.uniform(0.0, 200.0);
    if (i % 3 == 0) b[rng.below(3)] = rng.uniform(2000.0, 20000.0);
    double* line = r.line_radiance.data() + i * kP;
    for (int j = 0; j < 3; ++j) {
      for (std::size_t p = 0; p < kP; ++p) {
        const double x = static_cast<double>(p) - centres[j];
        if (std::abs(x) > 12.0 * sigma) continue;
        line[p] += b[j] * (phi_cdf((x + 0.5) / sigma) - phi_cdf((x - 0.5) / sigma)) / nm_per_pixel;
      }
    }
    const double ds = 1.0 + det.coeff * (r.temperature[i] - det.t_ref);
    double total = 0.0;
    for (std::size_t p = 0; p < kP; ++p) {
      expected[p] = det.dead[p] ? 0.0 : (c0 + line[p]) * det.sensitivity[p] * det.flat[p] + det.dark[p] * ds;
      total += expected[p];
    }
    const double scale = 8.0 / (1.0 + det.tau * total);
    std::uint32_t* c = r.counts.data() + i * kP;
    std::uint32_t* h = r.hit.data() + i * kP;
    for (std::size_t p = 0; p < kP; ++p) c[p] = static_cast<std::uint32_t>(rng.poisson(expected[p] * scale));
    const std::uint64_t hits = rng.poisson(4.0);
    std::vector<std::pair<std::size_t, std::size_t>> spans;
    for (std::uint64_t k = 0; k < hits; ++k) {
      const std::size_t start = rng.below(kP), width = 1 + rng.below(3);
      spans.push_back({start, std::min(kP, start + width)});
      for (std::size_t p = start; p < std::min(kP, start + width); ++p) {
        const auto add = static_cast<std::uint32_t>(5 + rng.below(56));
        if (det.dead[p]) continue;
        c[p] += add;
        h[p] += add;
      }
    }
    for (const auto& [a, e] : spans) {
      if (e - a != 1) continue;
      bool alone = true;
      for (const auto& [a2, e2] : spans) {
        if (a2 == a && e2 == e) continue;
        alone &= e2 + 5 <= a || a2 >= e + 5;
      }
      if (alone) r.single[i * kP + a] = 1;
    }
  }
  return r;
}

struct Reference {
  std::vector<double> radiance;  // n x P (NaN where not computed)
  std::vector<std::uint8_t> flag;
  std::vector<std::int32_t> left, right;  // interpolation partners of flagged pixels (-1: none)
  std::vector<double> k;                  // counts per R/nm, n x P
  std::vector<double> d;                  // dark counts, n x P
  std::size_t rows_needing_third_round = 0;
};

// The reference, row by row in plain loops and doubles.
Reference reference_despike(const Detector& det, const Rows& rows) {
  Reference ref;
  const std::size_t n = rows.n;
  ref.radiance.assign(n * kP, std::numeric_limits<double>::quiet_NaN());
  ref.flag.assign(n * kP, 0);
  ref.left.assign(n * kP, -1);
  ref.right.assign(n * kP, -1);
  ref.k.assign(n * kP, 0.0);
  ref.d.assign(n * kP, 0.0);
  std::vector<std::uint8_t> usable(kP);
  for (std::size_t p = 0; p < kP; ++p) {
    const double resp = det.sensitivity[p] * det.flat[p];
    usable[p] = det.bad[p] == 0 && resp > 0.0 && std::isfinite(resp) && std::isfinite(det.dark[p]);
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t* c = rows.counts.data() + i * kP;
    const double t = rows.exposure[i];
    if (!(t > 0.0) || !std::isfinite(t)) continue;
    double total = 0.0;
    for (std::size_t p = 0; p < kP; ++p) total += c[p];
    const double g = 1.0 - det.tau * total / t, tg = t * g;
    const double ds = 1.0 + det.coeff * (rows.temperature[i] - det.t_ref);
    double* L = ref.radiance.data() + i * kP;
    double* K = ref.k.data() + i * kP;
    double* D = ref.d.data() + i * kP;
    for (std::size_t p = 0; p < kP; ++p) {
      if (!usable[p]) continue;
      const double resp = det.sensitivity[p] * det.flat[p];
      L[p] = (c[p] / tg - ds * det.dark[p]) / resp;
      K[p] = resp * tg;
      D[p] = ds * det.dark[p] * tg;
    }
    std::vector<bool> flagged(kP, false);
    auto z_of = [&](std::size_t p) {
      double sum = 0.0;
      int m = 0;
      for (int off : {-3, -2, 2, 3}) {
        const long q = static_cast<long>(p) + off;
        if (q < 0 || q >= static_cast<long>(kP)) continue;
        const auto uq = static_cast<std::size_t>(q);
        if (!usable[uq] || flagged[uq]) continue;
        sum += L[uq];
        ++m;
      }
      if (m < 2) return 0.0;
      const double reference = sum / m;
      double base = std::numeric_limits<double>::infinity();
      for (long q = static_cast<long>(p) - 10; q <= static_cast<long>(p) + 10; ++q) {
        if (q < 0 || q >= static_cast<long>(kP)) continue;
        double s3 = 0.0;
        int m3 = 0;
        for (long e = q - 1; e <= q + 1; ++e) {
          if (e < 0 || e >= static_cast<long>(kP) || !usable[static_cast<std::size_t>(e)]) continue;
          s3 += L[static_cast<std::size_t>(e)];
          ++m3;
        }
        if (m3 > 0) base = std::min(base, s3 / m3);
      }
      const double mu = std::max(reference * K[p] + D[p], kFloor);
      const double tol = kLineTolerance * K[p] * std::max(0.0, reference - base);
      return 2.0 * (std::sqrt(c[p] + 0.375) - std::sqrt(mu + 0.375)) /
             std::sqrt(1.0 + 0.25 + tol * tol / (mu + 0.375));
    };
    for (std::size_t p = 0; p < kP; ++p) {
      if (usable[p] && z_of(p) > kThreshold) flagged[p] = true;
    }
    // Growth: two rounds in pixel order (despike_row: "in at most 2 rounds
    // ... the growth stops there by design"). A third round is evaluated
    // without being applied, to count the rows where it would flag more
    // (printed; docs/DENOISE.md).
    for (int round = 0; round < 3; ++round) {
      bool grew = false;
      for (std::size_t p = 0; p < kP; ++p) {
        if (!usable[p] || flagged[p]) continue;
        bool near = false;
        for (std::size_t q = p >= 2 ? p - 2 : 0; q <= std::min(kP - 1, p + 2); ++q) near = near || flagged[q];
        if (near && z_of(p) > kGrow) {
          grew = true;
          if (round == 2) break;
          flagged[p] = true;
        }
      }
      if (!grew) break;
      if (round == 2) ++ref.rows_needing_third_round;
    }
    // Replacement by linear interpolation between the nearest clean usable pixels.
    std::vector<double> replaced(L, L + kP);
    for (std::size_t p = 0; p < kP; ++p) {
      if (!flagged[p]) continue;
      ref.flag[i * kP + p] = 1;
      long a = static_cast<long>(p) - 1, b = static_cast<long>(p) + 1;
      while (a >= 0 && (!usable[static_cast<std::size_t>(a)] || flagged[static_cast<std::size_t>(a)])) --a;
      while (b < static_cast<long>(kP) && (!usable[static_cast<std::size_t>(b)] || flagged[static_cast<std::size_t>(b)])) ++b;
      const bool has_a = a >= 0, has_b = b < static_cast<long>(kP);
      ref.left[i * kP + p] = has_a ? static_cast<std::int32_t>(a) : -1;
      ref.right[i * kP + p] = has_b ? static_cast<std::int32_t>(b) : -1;
      if (has_a && has_b) {
        const double w = static_cast<double>(static_cast<long>(p) - a) / static_cast<double>(b - a);
        replaced[p] = (1.0 - w) * L[a] + w * L[b];
      } else if (has_a) {
        replaced[p] = L[a];
      } else if (has_b) {
        replaced[p] = L[b];
      } else {
        replaced[p] = 0.0;
      }
    }
    std::copy(replaced.begin(), replaced.end(), L);
  }
  return ref;
}

pipeline::RunConfig run_config() { return pipeline::load_run_config(); }

TEST(DespikeReference, RunConfigurationUsesTheDocumentedRule) {
  // The settings that `exospec run` uses for both channels, and the
  // kernel's defaults, are the documented ones (docs/DENOISE.md).
  const auto config = run_config();
  for (const char* ch : {"euv", "fuv"}) {
    const auto& ds = config.denoise.at(ch).despike;
    EXPECT_TRUE(ds.enabled) << ch;
    EXPECT_EQ(ds.threshold, kThreshold) << ch;
    EXPECT_EQ(ds.grow_threshold, kGrow) << ch;
    EXPECT_EQ(ds.line_tolerance, kLineTolerance) << ch;
  }
  EXPECT_EQ(config.calibrate.min_expected_counts, kFloor);
  const DespikeSettings defaults;
  EXPECT_EQ(defaults.threshold, kThreshold);
  EXPECT_EQ(defaults.grow_threshold, kGrow);
  EXPECT_EQ(defaults.line_tolerance, kLineTolerance);
}

// The calibrator with the calibrate and despike settings that `exospec run`
// uses (the EUV channel's despike table; both are checked above).
template <class Real>
struct Calibrated {
  std::vector<Real> L, V;
  std::vector<std::uint8_t> Q;
};
template <class Real>
Calibrated<Real> calibrate(const Detector& det, const Rows& rows) {
  const auto config = run_config();
  CalibrateSettings settings = config.calibrate;
  settings.despike = config.denoise.at("euv").despike;
  settings.despike.enabled = true;
  DetectorCalibration cal{det.dark, det.flat, det.sensitivity, det.bad, det.tau, det.t_ref, det.coeff};
  const Calibrator calibrator(cal, settings);
  Calibrated<Real> out;
  out.L.resize(rows.n * kP);
  out.V.resize(rows.n * kP);
  out.Q.resize(rows.n * kP);
  calibrator.run<std::uint32_t, Real>(rows.counts, rows.exposure, rows.temperature, out.L, out.V, out.Q);
  return out;
}

template <class Real>
void compare(const Detector& det, const Rows& rows, const Reference& ref, double rel_tol, const char* type) {
  const Calibrated<Real> out = calibrate<Real>(det, rows);
  const std::vector<Real>& L = out.L;
  const std::vector<Real>& V = out.V;
  const std::vector<std::uint8_t>& Q = out.Q;
  const std::size_t n = rows.n;
  std::size_t mismatches = 0, flagged = 0, replaced_checked = 0;
  double worst_replaced = 0.0, worst_other = 0.0, worst_variance = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t p = 0; p < kP; ++p) {
      const std::size_t x = i * kP + p;
      const bool got = (Q[x] & quality::kParticleHit) != 0;
      const bool want = ref.flag[x] != 0;
      if (got != want) {
        if (++mismatches <= 10) {
          ADD_FAILURE() << type << " row " << i << " pixel " << p << ": calibrator flag " << got << ", reference "
                        << want << " (counts " << rows.counts[x] << ", hit counts " << rows.hit[x] << ")";
        }
        continue;
      }
      const double r = ref.radiance[x];
      if (!std::isfinite(r)) continue;
      if (want) {
        ++flagged;
        // Relative to the larger of the value and the interpolation's
        // endpoints (a value between -1 and +1 R/nm can be near 0).
        double scale = std::abs(r);
        if (ref.left[x] >= 0) scale = std::max(scale, std::abs(ref.radiance[i * kP + static_cast<std::size_t>(ref.left[x])]));
        if (ref.right[x] >= 0) scale = std::max(scale, std::abs(ref.radiance[i * kP + static_cast<std::size_t>(ref.right[x])]));
        const double dev = std::abs(static_cast<double>(L[x]) - r) / std::max(scale, 1e-300);
        worst_replaced = std::max(worst_replaced, dev);
        EXPECT_LT(dev, rel_tol) << type << " row " << i << " pixel " << p << ": replaced radiance " << L[x]
                                << ", reference " << r;
        // The variance of the interpolation, from the calibrator's own
        // variances of the two clean pixels.
        const long a = ref.left[x], b = ref.right[x];
        double want_v = 0.0;
        if (a >= 0 && b >= 0) {
          const double w = static_cast<double>(static_cast<long>(p) - a) / static_cast<double>(b - a);
          want_v = (1 - w) * (1 - w) * static_cast<double>(V[i * kP + static_cast<std::size_t>(a)]) +
                   w * w * static_cast<double>(V[i * kP + static_cast<std::size_t>(b)]);
        } else if (a >= 0) {
          want_v = static_cast<double>(V[i * kP + static_cast<std::size_t>(a)]);
        } else if (b >= 0) {
          want_v = static_cast<double>(V[i * kP + static_cast<std::size_t>(b)]);
        }
        const double dv = std::abs(static_cast<double>(V[x]) - want_v) / std::max(want_v, 1e-300);
        worst_variance = std::max(worst_variance, dv);
        EXPECT_LT(dv, rel_tol) << type << " row " << i << " pixel " << p << ": variance " << V[x] << ", expected "
                               << want_v;
        ++replaced_checked;
      } else {
        const double dev = std::abs(static_cast<double>(L[x]) - r) / std::max(std::abs(r), 1e-3);
        worst_other = std::max(worst_other, dev);
        EXPECT_LT(dev, rel_tol) << type << " row " << i << " pixel " << p << ": radiance " << L[x] << ", reference "
                                << r;
      }
    }
  }
  std::printf("%s rows: %zu flag mismatches, %zu flagged pixels; worst replaced radiance %.2e, variance %.2e, "
              "other radiance %.2e (relative)\n",
              type, mismatches, flagged, worst_replaced, worst_variance, worst_other);
  EXPECT_EQ(mismatches, 0u);
  EXPECT_GT(replaced_checked, 1000u);
}

class DespikeRows : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    det_ = new Detector(make_detector());
    rows_ = new Rows(make_rows(*det_, 3000, 1234));
    ref_ = new Reference(reference_despike(*det_, *rows_));
  }
  static void TearDownTestSuite() {
    delete ref_;
    delete rows_;
    delete det_;
  }
  static Detector* det_;
  static Rows* rows_;
  static Reference* ref_;
};
Detector* DespikeRows::det_ = nullptr;
Rows* DespikeRows::rows_ = nullptr;
Reference* DespikeRows::ref_ = nullptr;

TEST_F(DespikeRows, DoubleRowsMatchTheReferenceFlagForFlag) {
  // Double rows: the same arithmetic in another order, 1e-12 relative.
  compare<double>(*det_, *rows_, *ref_, 1e-12, "double");
}

TEST_F(DespikeRows, FloatRowsMatchTheReferenceFlagForFlag) {
  // Float rows: the calibrator's radiance is float (6e-8 relative), so the
  // replaced values and the rest agree to 1e-6 relative; a flag could
  // differ only for a statistic within ~1e-6 of a threshold (expected
  // number over these rows ~1e-2).
  compare<float>(*det_, *rows_, *ref_, 1e-6, "float");
}

TEST_F(DespikeRows, DetectionAndFalseFlagRatesFollowTheThreshold) {
  // From the hits' truth, on the calibrator's flags (double rows; they are
  // the reference's, above, when that test passes). For a hit pixel on a usable pixel with expected
  // counts mu (continuum, lines, dark) and h hit counts, the noise-free
  // statistic is z0 = 2 (sqrt(mu + h + 3/8) - sqrt(mu + 3/8)) / sqrt(5/4)
  // (no line tolerance off the lines); the Anscombe-scale noise of the pixel
  // and its reference makes z ~ N(z0, 1) (counts >= 5 there, where the
  // transform's sd is 1 within a few %), so a threshold T flags it with
  // probability Phi(z0 - T).
  //  - moderate hits: isolated single-pixel hits (no growth) off the lines
  //    (the line part below 1 % of the continuum) with z0 in [4, 8]: the
  //    expected rate is the mean of Phi(z0 - 3.5) (0.961 here); asserted
  //    within 4 binomial SE (0.02) + 0.05 of it, 0.05 being an allowance
  //    for the normal model (it underestimates the rate by 0.028 here, at
  //    thresholds 3.5, 4 and 5 alike). Measured 0.989. At T = 5 the model
  //    gives 0.770 and the rate is 0.796: 10 SE below the bound (0.890).
  //  - clean pixels: no hit within 3 pixels, off the lines: flagged at most
  //    at the normal tail P(z > 3.5) = 2.3e-4 (measured well below: the
  //    Anscombe tails of low counts are lighter) + 4 SE; and clean pixels
  //    ON bright lines (the line part above 5 sigma of the pixel's noise)
  //    at most the same (the line tolerance; docs/DENOISE.md: 0 of 29003).
  const Detector& det = *det_;
  const Rows& rows = *rows_;
  const Reference& ref = *ref_;
  const Calibrated<double> got = calibrate<double>(det, rows);
  auto flag = [&](std::size_t x) -> std::size_t { return (got.Q[x] & quality::kParticleHit) ? 1 : 0; };
  double expected_35 = 0.0, var_35 = 0.0, expected_50 = 0.0;
  std::size_t moderate = 0, moderate_flagged = 0, clean = 0, clean_flagged = 0, on_line = 0, on_line_flagged = 0;
  std::size_t hit_pixels = 0, hit_flagged = 0;
  for (std::size_t i = 0; i < rows.n; ++i) {
    if (!(rows.exposure[i] > 0.0)) continue;
    for (std::size_t p = 0; p < kP; ++p) {
      const std::size_t x = i * kP + p;
      if (det.bad[p] || !std::isfinite(ref.radiance[x])) continue;
      const double line = rows.line_radiance[x];
      const double mu = (rows.continuum[i] + line) * ref.k[x] + ref.d[x];
      const bool off_line = line < 0.01 * rows.continuum[i];
      bool hit_near = false;
      for (std::size_t q = p >= 3 ? p - 3 : 0; q <= std::min(kP - 1, p + 3); ++q) hit_near = hit_near || rows.hit[i * kP + q] > 0;
      if (rows.hit[x] > 0) {
        ++hit_pixels;
        hit_flagged += flag(x);
      }
      if (rows.hit[x] > 0 && rows.single[x] && off_line) {
        const double z0 = 2.0 * (std::sqrt(mu + rows.hit[x] + 0.375) - std::sqrt(mu + 0.375)) / std::sqrt(1.25);
        if (z0 >= 4.0 && z0 <= 8.0) {
          const double p35 = phi_cdf(z0 - kThreshold);
          expected_35 += p35;
          var_35 += p35 * (1.0 - p35);
          expected_50 += phi_cdf(z0 - 5.0);
          ++moderate;
          moderate_flagged += flag(x);
        }
      }
      if (!hit_near) {
        if (off_line) {
          ++clean;
          clean_flagged += flag(x);
        } else if (line * ref.k[x] > 5.0 * std::sqrt(mu)) {
          ++on_line;
          on_line_flagged += flag(x);
        }
      }
    }
  }
  ASSERT_GT(moderate, 500u);
  const double rate = static_cast<double>(moderate_flagged) / static_cast<double>(moderate);
  const double want = expected_35 / static_cast<double>(moderate);
  const double se = std::sqrt(var_35) / static_cast<double>(moderate);
  const double lower = want - 4.0 * se - 0.05;
  const double p_null = 1.0 - phi_cdf(kThreshold);
  const double clean_rate = static_cast<double>(clean_flagged) / static_cast<double>(clean);
  const double clean_bound = p_null + 4.0 * std::sqrt(p_null / static_cast<double>(clean));
  const double line_rate = static_cast<double>(on_line_flagged) / static_cast<double>(std::max<std::size_t>(on_line, 1));
  const double line_bound = p_null + 4.0 * std::sqrt(p_null / static_cast<double>(std::max<std::size_t>(on_line, 1)));
  std::printf("hit pixels flagged: %zu of %zu (%.2f %%); moderate single hits (z0 in [4, 8]): %zu of %zu = %.4f, "
              "expected %.4f +- %.4f at threshold 3.5 (%.4f at 5.0), bound >= %.4f\n",
              hit_flagged, hit_pixels, 100.0 * static_cast<double>(hit_flagged) / static_cast<double>(hit_pixels),
              moderate_flagged, moderate, rate, want, se, expected_50 / static_cast<double>(moderate), lower);
  std::printf("clean pixels flagged: %zu of %zu (%.2e, bound %.2e); clean pixels on bright lines flagged: %zu of %zu "
              "(bound %.2e)\n",
              clean_flagged, clean, clean_rate, clean_bound, on_line_flagged, on_line, line_bound);
  std::printf("rows where a third growth round would flag more pixels: %zu of %zu\n", ref.rows_needing_third_round,
              rows.n);
  EXPECT_GE(rate, lower);
  EXPECT_LE(rate, want + 4.0 * se + 0.05);
  EXPECT_LE(clean_rate, clean_bound);
  EXPECT_GT(on_line, 10000u);
  EXPECT_LE(line_rate, line_bound);
}

}  // namespace
}  // namespace exospec::kernels
