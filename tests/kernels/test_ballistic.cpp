// The ballistic exosphere (kernels/ballistic.hpp) against independent
// derivations written here: zeta's closed form against its defining
// integral over the Maxwellian at r (bound speeds, directions whose orbit
// meets the surface), the column against a brute-force quadrature of the
// density along the line of sight, its limits (plane-parallel exponential
// for a cold heavy species; slower than exp(-z/H) for a hot light one), the
// fast table against the accurate column, and the species masses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numbers>
#include <vector>

#include "exospec/kernels/ballistic.hpp"
#include "exospec/kernels/random.hpp"
#include "ballistic_table.hpp"  // (kernels/src: the build-time table)

namespace exospec::kernels::exosphere {
namespace {

// Tanh-sinh quadrature of f over [a, b] (Takahasi-Mori), written for the
// test: endpoint singularities (sqrt, kinks) cost it nothing. Step halved
// until two results agree to `tol` relative.
double tanh_sinh(const std::function<double(double)>& f, double a, double b, double tol = 1e-14) {
  const double d = 0.5 * (b - a);
  auto sum_at = [&](double h, int offset, int stride) {
    double s = 0.0;
    for (int k = offset;; k += stride) {
      const double t = k * h;
      const double u = 0.5 * std::numbers::pi * std::sinh(t);
      const double w = 0.5 * std::numbers::pi * std::cosh(t) / (std::cosh(u) * std::cosh(u));
      if (w < 1e-300 || t > 6.0) break;
      // (x = tanh u; 1 - x from the exponential, without rounding near the ends.)
      const double e = std::exp(-2.0 * u);
      const double one_minus = 2.0 * e / (1.0 + e);
      double v = f(b - d * one_minus) * w;
      if (k != 0) v += f(a + d * one_minus) * w;
      s += v;
    }
    return s;
  };
  double h = 0.5;
  double total = sum_at(h, 0, 1);
  double prev = d * h * total;
  for (int level = 0; level < 10; ++level) {
    h *= 0.5;
    total += sum_at(h, 1, 2);  // the new (odd) nodes
    const double now = d * h * total;
    if (std::abs(now - prev) <= tol * std::abs(now)) return now;
    prev = now;
  }
  return prev;
}

// zeta(lambda) from its definition: the fraction of the Maxwellian at r that
// is bound (x = m v^2 / 2kT < lambda) and whose orbit meets the surface
// (angular momentum r v sin(theta) at most R sqrt(v^2 + 2GM/R - 2GM/r), a
// fraction 1 - sqrt(1 - s) of the directions with s = sin^2 theta_max), in
// x: (2 / sqrt(pi)) int_0^lambda sqrt(x) e^-x (1 - sqrt(1 - min(1, s(x)))) dx,
// s(x) = (lambda / lambda_c)^2 (x + lambda_c - lambda) / x.
double zeta_by_definition(double lambda, double lambda_c) {
  const double u2 = (lambda / lambda_c) * (lambda / lambda_c);
  auto f = [&](double x) {
    if (x <= 0.0) return 0.0;
    // (As u2 (1 + (lambda_c - lambda) / x): x + lambda_c - lambda would round.)
    const double s = std::min(1.0, u2 * (1.0 + (lambda_c - lambda) / x));
    return 2.0 / std::sqrt(std::numbers::pi) * std::sqrt(x) * std::exp(-x) * (1.0 - std::sqrt(1.0 - s));
  };
  // s = 1 (every direction allowed) below the kink x_k; pieces split there
  // and at 1, 4, 16, 64 (e^-x spans many decades over [0, lambda]).
  const double xk = u2 < 1.0 ? u2 * (lambda_c - lambda) / (1.0 - u2) : lambda;
  std::vector<double> cuts = {0.0, lambda};
  for (double c : {xk, 1.0, 4.0, 16.0, 64.0}) {
    if (c > 0.0 && c < lambda) cuts.push_back(c);
  }
  std::sort(cuts.begin(), cuts.end());
  double total = 0.0;
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i) total += tanh_sinh(f, cuts[i], cuts[i + 1]);
  return total;
}

TEST(Ballistic, ZetaClosedFormEqualsItsDefiningIntegral) {
  double worst = 0.0;
  for (double lc : {0.05, 0.3, 1.0, 2.17, 7.56, 30.0, 100.0, 400.0, 1000.0}) {
    for (double rho : {1.0, 1.0001, 1.01, 1.1, 1.5, 2.0, 3.0, 10.0, 30.0, 100.0}) {
      const double lambda = lc / rho;
      const double def = zeta_by_definition(lambda, lc), closed = ballistic_zeta(lambda, lc);
      // 1e-8 absolute, and relative where zeta is small.
      EXPECT_NEAR(closed, def, 1e-8 * std::min(1.0, def) + 1e-300) << "lambda_c " << lc << " r/R " << rho;
      worst = std::max(worst, std::abs(closed - def) / def);
    }
  }
  std::printf("zeta: worst relative difference from the defining integral %.1e\n", worst);
  // At the surface every bound atom is on a ballistic orbit: zeta = P(3/2, lambda_c).
  EXPECT_NEAR(ballistic_zeta(5.0, 5.0), std::erf(std::sqrt(5.0)) - 2.0 * std::sqrt(5.0 / std::numbers::pi) * std::exp(-5.0),
              1e-15);
}

TEST(Ballistic, IncompleteGammaAgainstItsSeriesAndErf) {
  for (double x : {1e-8, 1e-3, 0.1, 0.49, 0.5, 1.0, 1.99, 2.0, 5.0, 30.0}) {
    // P(3/2, x) = erf(sqrt x) - 2 sqrt(x / pi) e^-x, here by its defining integral.
    const double p = tanh_sinh([](double t) { return 2.0 / std::sqrt(std::numbers::pi) * std::sqrt(t) * std::exp(-t); },
                               0.0, x);
    EXPECT_NEAR(gamma_p_3_2(x) / p, 1.0, 1e-13) << x;
    EXPECT_NEAR(gamma_p_3_2(x) + gamma_q_3_2(x), 1.0, 1e-15) << x;
  }
}

// The column by brute force: the line-of-sight integral of the density,
// 2 int_0^inf n(sqrt(r_t^2 + s^2)) ds, by tanh-sinh on decades of s and the
// analytic tail of n ~ s^-5/2 beyond 1e7 R.
double column_by_brute_force(double xi, double lc) {
  const double rt = 1.0 + xi;
  auto n = [&](double s) { return density_ratio(std::hypot(rt, s), lc); };
  double total = 0.0, lo = 0.0;
  for (double hi = 1e-4; hi <= 1e7; hi *= 10.0) {
    total += tanh_sinh(n, lo, hi, 1e-13);
    lo = hi;
  }
  total += n(lo) * lo / 1.5;  // int_S^inf n(S) (S/s)^2.5 ds
  return 2.0 * total;
}

TEST(Ballistic, ColumnEqualsABruteForceQuadrature) {
  struct Species {
    double mass, t;
  } species[] = {{1.008, 420.0}, {4.0026, 575.0}, {22.990, 1200.0}, {24.305, 6000.0},
                 {40.078, 50000.0}, {15.999, 1000.0}, {1.008, 100000.0}};
  double worst = 0.0;
  for (const auto& sp : species) {
    const double lc = surface_lambda(sp.mass, sp.t);
    for (double z : {0.0, 10.0, 100.0, 500.0, 2000.0, 5000.0, 10000.0}) {
      const double xi = z / Body{}.radius_km;
      const double brute = column_by_brute_force(xi, lc), fast = column(xi, lc);
      if (brute < 1e-250) continue;  // (underflow: beyond any emission)
      EXPECT_NEAR(fast / brute, 1.0, 1e-8) << "mass " << sp.mass << " T " << sp.t << " z " << z;
      worst = std::max(worst, std::abs(fast / brute - 1.0));
    }
  }
  std::printf("column: worst relative difference from the brute-force quadrature %.1e\n", worst);
}

TEST(Ballistic, ColdHeavySpeciesIsPlaneParallelHotLightOneIsNot) {
  // Na at 200 K (lambda_c ~ 125): near the surface the column falls as
  // exp(-z/H) sqrt(R/(R+z)) to first order in H/R: with n ~ exp(-(lambda_c -
  // lambda)) and the Chapman grazing integral, C(z)/C(0) = exp(-z/H')
  // (r_t/R)^(1/2) (1 + O(1/lambda)), H' the scale height at r_t. Within
  // 5 / lambda_c of it at z <= 3 H.
  const double m = 22.990, t = 200.0, lc = surface_lambda(m, t), h = scale_height_km(m, t);
  for (double k : {0.5, 1.0, 2.0, 3.0}) {
    const double z = k * h, rt = 1.0 + z / Body{}.radius_km;
    // The exponent lambda(r_t) - lambda_c exactly: -lambda_c (1 - 1/rt).
    const double chapman = std::exp(-lc * (1.0 - 1.0 / rt)) * std::pow(rt, 1.5);
    EXPECT_NEAR(column_ratio(z, m, t) / chapman, 1.0, 5.0 / lc) << k;
  }
  // H at 420 K (lambda_c ~ 2.6): at 2000 km (1.8 H) the column is far above
  // the exponential's exp(-1.8) = 0.165 and above 0.3.
  const double hh = scale_height_km(1.008, 420.0);
  const double r = column_ratio(2000.0, 1.008, 420.0);
  EXPECT_GT(r, 1.8 * std::exp(-2000.0 / hh));
  EXPECT_GT(r, 0.3);
  std::printf("H 420 K: scale height %.0f km, C(2000 km)/C(0) %.3f against exp(-z/H) %.3f\n", hh, r,
              std::exp(-2000.0 / hh));
}

TEST(Ballistic, TableAgreesWithTheColumn) {
  struct Species {
    double mass;
  } species[] = {{1.008}, {4.0026}, {15.999}, {24.305}, {40.078}};
  auto rng = Rng::stream(11, 0, 0, 0);
  double worst = 0.0;
  for (const auto& sp : species) {
    const ColumnProfileTable tab(sp.mass, 50.0, 1.0e5);
    std::vector<double> z(1), out(1);
    for (int k = 0; k < 400; ++k) {
      const double t = std::exp(rng.uniform(std::log(50.0), std::log(1.0e5)));
      // Altitudes log-uniform from 1 m to 20,000 km, and some exactly 0.
      z[0] = k % 10 == 0 ? 0.0 : std::exp(rng.uniform(std::log(1e-3), std::log(2e4)));
      tab.ratio(t, z, out);
      const double exact = column_ratio(z[0], sp.mass, t);
      EXPECT_NEAR(out[0], exact, 1e-6) << "mass " << sp.mass << " T " << t << " z " << z[0];
      worst = std::max(worst, std::abs(out[0] - exact));
    }
  }
  std::printf("table: worst absolute error (of C(0)) %.1e\n", worst);
  EXPECT_THROW(ColumnProfileTable(40.078, 1.0, 1e5), std::invalid_argument);  // lambda_c > 1e4 at 1 K
}

// The table compiled into the library (kernels/tools/make_column_table at
// build time) is the one this code computes now, node for node: a stale or
// truncated generated file fails here, not as a slightly wrong temperature.
TEST(Ballistic, EmbeddedTableIsTheComputedOne) {
  namespace d = exospec::kernels::exosphere::detail;
  const d::ColumnTableShape shape = d::column_table_shape();
  const auto embedded = d::embedded_column_table();
  ASSERT_EQ(embedded.size(), shape.rows * shape.cols);
  std::vector<double> fresh(shape.rows * shape.cols);
  d::compute_column_table(fresh);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < fresh.size(); ++i) differ += !(embedded[i] == fresh[i]);
  EXPECT_EQ(differ, 0u) << "of " << fresh.size() << " nodes";
  // Not a constant: C(z)/C(0) falls from 1 (ln 0) along every row.
  EXPECT_EQ(embedded[1], 0.0);
  EXPECT_LT(embedded[shape.cols - 1], -10.0);
}

TEST(Ballistic, ScaleHeightAndSpeciesMasses) {
  // H = k T / (m g), g = GM / R^2: Mg at 6000 K, about 555 km.
  const double g = 2.2032e13 / (2439.7e3 * 2439.7e3);
  EXPECT_NEAR(scale_height_km(24.305, 6000.0), 1.380649e-23 * 6000.0 / (24.305 * 1.66053906660e-27 * g) / 1e3,
              1e-9);
  EXPECT_NEAR(surface_lambda(24.305, 6000.0) * scale_height_km(24.305, 6000.0), 2439.7, 1e-9);
  EXPECT_DOUBLE_EQ(*species_mass_amu("H I 121.567"), 1.008);
  EXPECT_DOUBLE_EQ(*species_mass_amu("He I 58.433"), 4.002602);
  EXPECT_DOUBLE_EQ(*species_mass_amu("Mg II 279.553"), 24.305);
  EXPECT_DOUBLE_EQ(*species_mass_amu("Al I 308.22"), 26.9815385);
  EXPECT_DOUBLE_EQ(*species_mass_amu("O I 130.4"), 15.999);
  EXPECT_FALSE(species_mass_amu("Xx I 100.0").has_value());
  EXPECT_FALSE(species_mass_amu("").has_value());
}

}  // namespace
}  // namespace exospec::kernels::exosphere
