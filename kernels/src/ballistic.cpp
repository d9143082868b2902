#include "exospec/kernels/ballistic.hpp"

#include "ballistic_table.hpp"
#include "target_clones.hpp"
#include "vmath.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <span>
#include <string>
#include <vector>

namespace exospec::kernels::exosphere {
namespace {

constexpr double kTwoOverSqrtPi = 1.1283791670955126;  // 2 / sqrt(pi)
constexpr double kHalfPi = 0.5 * std::numbers::pi;

// The density of P(3/2, t): (2 / sqrt(pi)) sqrt(t) e^-t.
double gamma_density(double t) noexcept { return kTwoOverSqrtPi * std::sqrt(t) * std::exp(-t); }

// 8-point Gauss-Legendre nodes and weights on [-1, 1] (half of them).
constexpr std::array<double, 4> kGlNode = {0.1834346424956498, 0.5255324099163290, 0.7966664774136267,
                                           0.9602898564975363};
constexpr std::array<double, 4> kGlWeight = {0.3626837833783620, 0.3137066458778873, 0.2223810344533745,
                                             0.1012285362903763};

// P(3/2, b) - P(3/2, a) for 0 < a <= b <= 2 a, given pa = P(3/2, a). Below 2 both come from the
// series: with a / b = lambda_c / (lambda + lambda_c) the difference loses
// log10(r / R) digits far from the planet, where the density is ~ (r/R)^-5/2
// and its share of any column small. Above, a short interval is integrated
// (8-point Gauss-Legendre), a long one taken as a difference of the
// complements (no cancellation: Q(a) >> Q(b)).
double gamma_p_difference(double a, double b, double pa) noexcept {
  if (b < 2.0) return gamma_p_3_2(b) - pa;
  if (b - a <= 1.0) {
    // (The density is smooth on [a, b]: the callers have b <= 2 a.)
    const double m = 0.5 * (a + b), h = 0.5 * (b - a);
    double s = 0.0;
    for (std::size_t i = 0; i < kGlNode.size(); ++i) {
      s += kGlWeight[i] * (gamma_density(m - h * kGlNode[i]) + gamma_density(m + h * kGlNode[i]));
    }
    return h * s;
  }
  return gamma_q_3_2(a) - gamma_q_3_2(b);
}

// The exp-sinh rule for the column: nodes t_k = kTMin + k h.
constexpr double kTMin = -4.5, kTMax = 3.5;

// The rule's abscissae s_k / a = exp(pi/2 sinh t_k) and weights
// h (pi/2) cosh t_k exp(pi/2 sinh t_k), for steps 1/16 (the accurate column,
// error < 1e-13) and 1/8 (the table's nodes, < 1e-9; every other node).
struct Rule {
  static constexpr int kPerUnit = 16;
  static constexpr int kNodes = static_cast<int>((kTMax - kTMin) * kPerUnit) + 1;
  std::array<double, kNodes> s{}, w{};
  Rule() {
    for (int k = 0; k < kNodes; ++k) {
      const double t = kTMin + static_cast<double>(k) / kPerUnit;
      s[static_cast<std::size_t>(k)] = std::exp(kHalfPi * std::sinh(t));
      w[static_cast<std::size_t>(k)] = s[static_cast<std::size_t>(k)] * kHalfPi * std::cosh(t) / kPerUnit;
    }
  }
};
const Rule& rule() {
  static const Rule r;
  return r;
}

// stride 1: step 1/16; stride 2: step 1/8.
double column_with_stride(double xi, double lambda_c, int stride) noexcept {
  const Rule& r = rule();
  const double rt = 1.0 + xi;
  const double a = rt * std::min(1.0, std::sqrt(2.0 * rt / lambda_c));
  double sum = 0.0;
  for (int k = 0; k < Rule::kNodes; k += stride) {
    const auto i = static_cast<std::size_t>(k);
    const double s = a * r.s[i];
    sum += r.w[i] * density_ratio(std::hypot(rt, s), lambda_c);
  }
  return 2.0 * a * static_cast<double>(stride) * sum;
}

constexpr int kColumnStride = 1;  // the accurate column
constexpr int kTableStride = 2;   // the table's nodes

// The shared table of ln C(z)/C(0) over u = ln lambda_c (rows) and
// t = ln(1 + x / kX0), x = xi (lambda_c + 1/lambda_c) (columns), with one
// node beyond each end for the 4-point stencils.
constexpr double kDu = 0.07, kDt = 0.05, kX0 = 1e-3, kXMax = 2e5, kLogFloor = -700.0;
// The most columns ColumnProfileTable::ratio's row on the stack holds (the
// table has ceil(ln(1 + kXMax / kX0) / kDt) + 4 = 387).
constexpr std::size_t kMaxCols = 512;

struct Table {
  double u0 = 0.0;  // u of row 0 (one row below the range)
  std::size_t rows = 0, cols = 0;
  std::span<const double> v;  // rows x cols, row-major; column 0 is t = -kDt
  std::vector<double> computed;  // (only without the embedded values)
  Table() {
    const detail::ColumnTableShape shape = detail::column_table_shape();
    u0 = shape.u0;
    rows = shape.rows;
    cols = shape.cols;
    if (cols > kMaxCols) throw std::logic_error("the column table is wider than ColumnProfileTable::ratio's row");
    v = detail::embedded_column_table();
    if (v.size() != rows * cols) {
      computed.resize(rows * cols);
      detail::compute_column_table(computed);
      v = computed;
    }
  }
};

const Table& table() {
  static const Table t;  // (on first use; thread-safe)
  return t;
}

// Cubic Lagrange weights of the nodes -1, 0, 1, 2 at p in [0, 1].
inline void lagrange4(double p, double* w) noexcept {
  w[0] = -p * (p - 1.0) * (p - 2.0) / 6.0;
  w[1] = (p + 1.0) * (p - 1.0) * (p - 2.0) / 2.0;
  w[2] = -(p + 1.0) * p * (p - 2.0) / 2.0;
  w[3] = (p + 1.0) * p * (p - 1.0) / 6.0;
}

}  // namespace

namespace detail {

ColumnTableShape column_table_shape() noexcept {
  const double ulo = std::log(ColumnProfileTable::kLambdaMin), uhi = std::log(ColumnProfileTable::kLambdaMax);
  const double tmax = std::log1p(kXMax / kX0);
  return {ulo - kDu, static_cast<std::size_t>(std::ceil((uhi - ulo) / kDu)) + 4,
          static_cast<std::size_t>(std::ceil(tmax / kDt)) + 4};
}

void compute_column_table(std::span<double> out) {
  const ColumnTableShape shape = column_table_shape();
  if (out.size() != shape.rows * shape.cols) throw std::invalid_argument("compute_column_table: rows x cols");
  for (std::size_t i = 0; i < shape.rows; ++i) {
    const double lc = std::exp(shape.u0 + kDu * static_cast<double>(i));
    const double scale = lc + 1.0 / lc;
    const double c0 = column_with_stride(0.0, lc, kTableStride);
    double* row = out.data() + i * shape.cols;
    for (std::size_t j = 1; j < shape.cols; ++j) {
      // (C falls with z: once at the floor, the rest of the row is too.)
      if (j > 1 && row[j - 1] == kLogFloor) {
        row[j] = kLogFloor;
        continue;
      }
      const double x = kX0 * std::expm1(kDt * static_cast<double>(j - 1));
      const double c = j == 1 ? c0 : column_with_stride(x / scale, lc, kTableStride);
      row[j] = c > 0.0 ? std::max(std::log(c / c0), kLogFloor) : kLogFloor;
    }
    // t = -kDt: the cubic through the first four nodes, continued.
    row[0] = 4.0 * row[1] - 6.0 * row[2] + 4.0 * row[3] - row[4];
  }
}

#ifndef EXOSPEC_COLUMN_TABLE_GENERATOR
// column_table_data.cpp, written at build time by kernels/tools/make_column_table.
extern const std::size_t kEmbeddedColumnTableSize;
extern const double kEmbeddedColumnTable[];
std::span<const double> embedded_column_table() noexcept {
  return {kEmbeddedColumnTable, kEmbeddedColumnTableSize};
}
#else
std::span<const double> embedded_column_table() noexcept { return {}; }
#endif

}  // namespace detail

double surface_lambda(double mass_amu, double temperature_K, const Body& body) noexcept {
  return body.gm_m3_s2 * mass_amu * kAtomicMass / (kBoltzmann * temperature_K * body.radius_km * 1e3);
}

double scale_height_km(double mass_amu, double temperature_K, const Body& body) noexcept {
  return body.radius_km / surface_lambda(mass_amu, temperature_K, body);
}

double gamma_p_3_2(double x) noexcept {
  if (!(x > 0.0)) return 0.0;
  if (x < 0.5) {
    // gamma(3/2, x) = x^(3/2) e^-x sum_k x^k / ((3/2)(5/2)...(3/2 + k)),
    // 14 terms to 1e-17 below x = 1/2.
    static constexpr auto kInv = [] {
      std::array<double, 14> c{};
      for (std::size_t k = 0; k < c.size(); ++k) c[k] = 1.0 / (1.5 + static_cast<double>(k));
      return c;
    }();
    double term = kInv[0], sum = term;
    for (std::size_t k = 1; k < kInv.size(); ++k) {
      term *= x * kInv[k];
      sum += term;
    }
    return kTwoOverSqrtPi * x * std::sqrt(x) * std::exp(-x) * sum;
  }
  if (x < 2.0) {
    // (Half a digit of cancellation at x = 1/2.)
    const double r = std::sqrt(x);
    return std::erf(r) - kTwoOverSqrtPi * r * std::exp(-x);
  }
  return 1.0 - gamma_q_3_2(x);
}

double gamma_q_3_2(double x) noexcept {
  if (!(x > 0.0)) return 1.0;
  if (x < 2.0) return 1.0 - gamma_p_3_2(x);
  const double r = std::sqrt(x);
  return std::erfc(r) + kTwoOverSqrtPi * r * std::exp(-x);
}

double ballistic_zeta(double lambda, double lambda_c) noexcept {
  if (!(lambda > 0.0)) return 0.0;
  const double u = std::min(lambda / lambda_c, 1.0);
  const double psi = lambda * lambda / (lambda + lambda_c);
  const double a = lambda * lambda_c / (lambda + lambda_c);  // lambda - psi, without cancellation
  // zeta = [P(lambda) - P(a)] + (1 - sqrt(1 - u^2) e^-psi) P(a).
  const double one_minus_q = -std::expm1(0.5 * std::log1p(-u * u) - psi);
  const double pa = gamma_p_3_2(a);
  return gamma_p_difference(a, lambda, pa) + one_minus_q * pa;
}

double density_ratio(double rho, double lambda_c) noexcept {
  const double lambda = lambda_c / rho;
  if (lambda_c - lambda > 745.0 && lambda_c > 1.0) return 0.0;  // (below the smallest double)
  return std::exp(lambda - lambda_c) * ballistic_zeta(lambda, lambda_c) / gamma_p_3_2(lambda_c);
}

double column(double xi, double lambda_c) noexcept { return column_with_stride(xi, lambda_c, kColumnStride); }

double column_ratio(double z_km, double mass_amu, double temperature_K, const Body& body) noexcept {
  if (!(z_km > 0.0)) return 1.0;
  const double lc = surface_lambda(mass_amu, temperature_K, body);
  return column(z_km / body.radius_km, lc) / column(0.0, lc);
}

std::optional<double> species_mass_amu(std::string_view line_name) noexcept {
  const std::string_view symbol = line_name.substr(0, line_name.find(' '));
  struct Element {
    std::string_view symbol;
    double mass;
  };
  static constexpr Element kElements[] = {
      // (standard atomic weights, IUPAC 2013; conventional values for H, C, N, O, Mg, Si, S)
      {"H", 1.008},       {"He", 4.002602},     {"C", 12.011},      {"N", 14.007},   {"O", 15.999},
      {"Ne", 20.1797},    {"Na", 22.98976928},  {"Mg", 24.305},     {"Al", 26.9815385}, {"Si", 28.085},
      {"S", 32.06},       {"Ar", 39.948},       {"K", 39.0983},     {"Ca", 40.078},  {"Ti", 47.867},
      {"Mn", 54.938044},  {"Fe", 55.845}};
  for (const auto& e : kElements) {
    if (e.symbol == symbol) return e.mass;
  }
  return std::nullopt;
}

ColumnProfileTable::ColumnProfileTable(double mass_amu, double t_min_K, double t_max_K, const Body& body)
    : mass_amu_(mass_amu),
      lambda_per_kelvin_(surface_lambda(mass_amu, 1.0, body)),
      radius_km_(body.radius_km) {
  const double lo = lambda_per_kelvin_ / t_max_K, hi = lambda_per_kelvin_ / t_min_K;
  if (!(t_min_K > 0.0) || !(t_max_K >= t_min_K) || !(lo >= kLambdaMin * (1.0 - 1e-12)) ||
      !(hi <= kLambdaMax * (1.0 + 1e-12))) {
    throw std::invalid_argument("temperatures " + std::to_string(t_min_K) + "-" + std::to_string(t_max_K) +
                                " K of a " + std::to_string(mass_amu) +
                                " amu species give a surface escape parameter outside [0.01, 1e4]");
  }
  (void)table();  // (built here, not in the first fit)
}

namespace {

// The table's log C(z; T) / C(0; T) at the points' t = log1p(z scale / x0)
// in three loops, so that the two transcendental ones vectorise (the
// middle one gathers from the table): ft[i] = the column coordinate of z_i
// (-1 for z_i <= 0, whose ratio is 1), then the interpolated logarithm,
// then its exp.
EXOSPEC_CLONES void column_coordinates(const double* __restrict z, double* __restrict ft, std::size_t n,
                                       double factor) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const double zi = z[i];
    const double t = vmath::log1p_nonnegative(zi > 0.0 ? zi * factor : 0.0) / kDt + 1.0;
    ft[i] = zi > 0.0 ? t : -1.0;
  }
}

// The lowest and highest node j that interpolate_in_place takes for the
// points' coordinates v (1 for none; a point at z <= 0 takes 1 too).
EXOSPEC_CLONES void node_range(const double* __restrict v, std::size_t n, double last, int& lo,
                               int& hi) noexcept {
  double a = last + 1.0, b = 1.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double x = std::min(std::max(v[i], 1.0), last + 1.0);
    a = std::min(a, x);
    b = std::max(b, x);
  }
  const int ilast = static_cast<int>(last);
  lo = std::min(static_cast<int>(std::min(a, b)), ilast);
  hi = std::min(static_cast<int>(b), ilast);
}

// row[c] = sum_a wu[a] rows[a][c] for the columns c in [lo, hi): the table
// interpolated in u once for the trial temperature.
EXOSPEC_CLONES void combine_rows(const double* __restrict r0, std::size_t cols, const double* __restrict wu,
                                 std::size_t lo, std::size_t hi, double* __restrict row) noexcept {
  const double w0 = wu[0], w1 = wu[1], w2 = wu[2], w3 = wu[3];
  const double *__restrict a = r0, *__restrict b = r0 + cols, *__restrict c = r0 + 2 * cols,
                           *__restrict d = r0 + 3 * cols;
  for (std::size_t k = lo; k < hi; ++k) row[k] = w0 * a[k] + w1 * b[k] + w2 * c[k] + w3 * d[k];
}

// v[i] = sum_b wt_b(v[i]) row[j_i - 1 + b] (0 where v[i] < 0), row the
// table interpolated in u (combine_rows), branch-free so that it vectorises
// with gathers.
EXOSPEC_CLONES void interpolate_in_place(double* __restrict v, std::size_t n, const double* __restrict row,
                                         double last) noexcept {
  const int ilast = static_cast<int>(last);
  for (std::size_t i = 0; i < n; ++i) {
    const double ft = v[i];
    // (Column 0 is t = -kDt, so the node of t is j + 1; z <= 0 takes j = 1
    // and is zeroed at the end.)
    // (j = min(floor(x), last) by truncation, x >= 1: a 32-bit conversion
    // vectorises without AVX-512DQ.)
    const double x = std::min(std::max(ft, 1.0), last + 1.0);
    const int j = std::min(static_cast<int>(x), ilast);
    const double p = x - static_cast<double>(j);
    // (Cubic Lagrange weights of the nodes -1, 0, 1, 2 at p, as lagrange4.)
    const double q0 = -p * (p - 1.0) * (p - 2.0) / 6.0, q1 = (p + 1.0) * (p - 1.0) * (p - 2.0) / 2.0;
    const double q2 = -(p + 1.0) * p * (p - 2.0) / 2.0, q3 = (p + 1.0) * p * (p - 1.0) / 6.0;
    const int k = j - 1;
    const double acc = q0 * row[k] + q1 * row[k + 1] + q2 * row[k + 2] + q3 * row[k + 3];
    v[i] = ft < 0.0 ? 0.0 : acc;
  }
}

EXOSPEC_CLONES void exp_in_place(double* __restrict v, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) v[i] = vmath::exp_clamped(v[i]);
}

}  // namespace

void ColumnProfileTable::ratio(double temperature_K, std::span<const double> z_km, std::span<double> out) const noexcept {
  const Table& tb = table();
  const double lc = lambda_per_kelvin_ / temperature_K;
  const double scale = (lc + 1.0 / lc) / radius_km_;  // x per km
  const double fu = (std::log(lc) - tb.u0) / kDu;
  const auto iu = static_cast<std::size_t>(std::clamp(std::floor(fu), 1.0, static_cast<double>(tb.rows - 3)));
  double wu[4];
  lagrange4(fu - static_cast<double>(iu), wu);
  const double* r0 = tb.v.data() + (iu - 1) * tb.cols;
  const double last = static_cast<double>(tb.cols - 3);
  const std::size_t n = z_km.size();
  double* v = out.data();
  column_coordinates(z_km.data(), v, n, scale / kX0);
  // The table in u at this temperature, over the columns the points need
  // (nodes j - 1 .. j + 2), then each point's cubic in t.
  int jlo = 1, jhi = 1;
  node_range(v, n, last, jlo, jhi);
  double row[kMaxCols];  // (tb.cols <= kMaxCols: Table())
  combine_rows(r0, tb.cols, wu, static_cast<std::size_t>(jlo - 1), static_cast<std::size_t>(jhi + 3), row);
  interpolate_in_place(v, n, row, last);
  exp_in_place(v, n);
}

}  // namespace exospec::kernels::exosphere
