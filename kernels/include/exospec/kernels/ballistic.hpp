#pragma once
// The ballistic exosphere of a planet without atmosphere (Mercury), the
// simulator's altitude law and the profile stage's model (docs/PROFILE.md).
//
// Atoms leave the surface (the exobase, radius R) with a Maxwellian velocity
// distribution at temperature T and fly on ballistic orbits; the atoms that
// escape and the satellite orbits are left out (Chamberlain 1963, "Planetary
// coronae and atmospheric evaporation", Planet. Space Sci. 11, 901). With
// lambda(r) = G M m / (k T r) and lambda_c = lambda(R), the number density is
//   n(r) = n0 exp(lambda - lambda_c) zeta(lambda) / zeta(lambda_c),
// zeta the ballistic partition function (the fraction of the local
// Maxwellian that is bound and whose orbit meets the surface):
//   zeta(lambda) = P(3/2, lambda) - sqrt(1 - lambda^2/lambda_c^2) exp(-psi) P(3/2, lambda - psi),
//   psi = lambda^2 / (lambda + lambda_c),
// P the regularised lower incomplete gamma function. At r = R, zeta =
// P(3/2, lambda_c), the bound fraction. Evaluated without cancellation: the
// first difference as an integral of P's density over [lambda - psi,
// lambda] where psi is small, the factor 1 - sqrt(1 - u^2) e^-psi with
// expm1/log1p; far from the planet n ~ r^-5/2.
//
// The column along a line of sight whose tangent point is r_t = R + z,
//   C(z; T) = 2 int_0^inf n(sqrt(r_t^2 + s^2)) ds   (both sides, to infinity),
// converges. It is computed by the exp-sinh rule s = a exp(pi/2 sinh t)
// (trapezoidal in t; Takahasi and Mori 1974), a = r_t min(1, sqrt(2 r_t /
// (R lambda_c))) the width of the dense part: 129 points, relative error
// below 1e-13 over lambda_c in [0.01, 1e4] (tests/kernels/test_ballistic.cpp
// checks it against a brute-force quadrature and zeta against its defining
// integral over the Maxwellian). The emission of an optically thin line is
// proportional to C, so a line's brightness against tangent altitude is
//   B(z) = B_s C(z; T) / C(0; T) + B_bg.
//
// ColumnProfileTable evaluates C(z; T) / C(0; T) fast for the profile fit:
// cubic Lagrange interpolation (4 x 4 nodes) of ln C(z)/C(0) in a table over
// (ln lambda_c, ln(1 + x / 1e-3)), x = (z / R)(lambda_c + 1 / lambda_c), computed
// at build time (kernels/tools/make_column_table: 0.3-0.9 s of quadratures
// that every process spent at start-up before) for lambda_c in [0.01, 1e4];
// error below 1e-6 of C(0) (test), about 60 ns per point.
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace exospec::kernels::exosphere {

// Physical constants (SI; CODATA 2018 exact values) and the planet.
inline constexpr double kBoltzmann = 1.380649e-23;         // J/K
inline constexpr double kAtomicMass = 1.66053906660e-27;   // kg (unified atomic mass unit)
struct Body {
  double gm_m3_s2 = 2.2032e13;  // Mercury
  double radius_km = 2439.7;
};

// lambda_c = G M m / (k T R), the surface escape parameter.
double surface_lambda(double mass_amu, double temperature_K, const Body& body = {}) noexcept;
// k T / (m g(R)) with g(R) = G M / R^2 (km), i.e. R / lambda_c.
double scale_height_km(double mass_amu, double temperature_K, const Body& body = {}) noexcept;

// P(3/2, x), the regularised lower incomplete gamma function (x >= 0).
double gamma_p_3_2(double x) noexcept;
// Its complement Q(3/2, x) = 1 - P(3/2, x), accurate where P is close to 1.
double gamma_q_3_2(double x) noexcept;

// Chamberlain's ballistic partition function at lambda <= lambda_c (r >= R).
double ballistic_zeta(double lambda, double lambda_c) noexcept;
// n(r) / n(R) at r / R = rho >= 1.
double density_ratio(double rho, double lambda_c) noexcept;
// C(z) / (n0 R) for a tangent point at z = xi R above the surface (xi >= 0).
double column(double xi, double lambda_c) noexcept;
// C(z; T) / C(0; T) for a species of mass_amu at temperature_K (z < 0: 1).
double column_ratio(double z_km, double mass_amu, double temperature_K, const Body& body = {}) noexcept;

// The species mass of a catalogue line, from the element that starts its
// name ("Mg II 279.553" -> 24.305): standard atomic weights (IUPAC 2021,
// abridged); an ion's mass is taken as the atom's (the electrons' share,
// < 3e-5, is below the profile's precision). nullopt for an unknown element.
std::optional<double> species_mass_amu(std::string_view line_name) noexcept;

// Fast C(z; T) / C(0; T) for one species (set-up: the shared table, built on
// first use; then const and thread-safe, no allocation).
class ColumnProfileTable {
 public:
  // The temperatures [t_min, t_max] must map into the table's lambda_c range
  // [0.01, 1e4]; else std::invalid_argument.
  ColumnProfileTable(double mass_amu, double t_min_K, double t_max_K, const Body& body = {});
  // out[i] = C(z_i; T) / C(0; T) (1 for z <= 0; T within the range given).
  void ratio(double temperature_K, std::span<const double> z_km, std::span<double> out) const noexcept;

  static constexpr double kLambdaMin = 0.01, kLambdaMax = 1.0e4;

 private:
  double mass_amu_, lambda_per_kelvin_, radius_km_;
};

}  // namespace exospec::kernels::exosphere
