#include "exospec/kernels/line_fit.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/levmar.hpp"
#include "target_clones.hpp"
#include "vmath.hpp"

namespace exospec::kernels {
namespace {

constexpr int kMaxParams = 8;      // linear parameters of a window
using SmallMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kMaxParams, kMaxParams>;
using SmallVec = Eigen::Matrix<double, Eigen::Dynamic, 1, 0, kMaxParams, 1>;
using ParamVec = Eigen::Matrix<double, Eigen::Dynamic, 1>;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::uint8_t kSkip = quality::kUnusable | quality::kParticleHit;
constexpr std::size_t kLanes = 8;  // doubles in an AVX-512 register
constexpr std::size_t padded(std::size_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

std::pair<double, double> extent(const FitLineSpec& l) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& c : l.components) {
    lo = std::min(lo, c.wavelength_nm);
    hi = std::max(hi, c.wavelength_nm);
  }
  return {lo, hi};
}

// In-place factorisation A = L D L^T (L unit lower triangular) of a small
// symmetric matrix (row-major k x k, k <= kMaxParams): L below the
// diagonal, 1/D on it, and L D above it (scratch that saves a product per
// term). Square-root free, and the solves multiply by 1/D: a square root or
// a division is a long dependency in these short serial chains. False
// unless every pivot D_j exceeds 1e-14 of the largest diagonal element (as
// the linear path's LDLT test).
template <int K = 0>  // K > 0: the size at compile time
[[gnu::always_inline]] inline bool small_ldlt(double* a, int k_) {
  const int k = K > 0 ? K : k_;
  double dmax = 0.0;
  for (int i = 0; i < k; ++i) dmax = std::max(dmax, a[i * k + i]);
  for (int j = 0; j < k; ++j) {
    double d = a[j * k + j];
    for (int q = 0; q < j; ++q) d -= a[j * k + q] * a[q * k + j];  // L_jq (L_jq D_q)
    if (!(d > 1e-14 * dmax)) return false;
    const double inv = 1.0 / d;
    a[j * k + j] = inv;
    for (int i = j + 1; i < k; ++i) {
      double s = a[i * k + j];
      for (int q = 0; q < j; ++q) s -= a[i * k + q] * a[q * k + j];
      a[j * k + i] = s;        // L_ij D_j
      a[i * k + j] = s * inv;  // L_ij
    }
  }
  return true;
}

// Solves L D L^T x = b in place (the factor of small_ldlt).
template <int K = 0>
[[gnu::always_inline]] inline void small_ldlt_solve(const double* l, int k_, double* x) {
  const int k = K > 0 ? K : k_;
  for (int i = 0; i < k; ++i) {
    double s = x[i];
    for (int q = 0; q < i; ++q) s -= l[i * k + q] * x[q];
    x[i] = s;
  }
  for (int i = k - 1; i >= 0; --i) {
    double s = x[i] * l[i * k + i];
    for (int q = i + 1; q < k; ++q) s -= l[q * k + i] * x[q];
    x[i] = s;
  }
}

// Element a of the diagonal of (L D L^T)^-1 (the factor of small_ldlt):
// sum_i z_i^2 / D_i with z = L^-1 e_a, by forward substitution from row a
// (z is 0 above it).
template <int K = 0>
[[gnu::always_inline]] inline double inverse_diagonal(const double* l, int k_, int a_) {
  const auto k = static_cast<std::size_t>(K > 0 ? K : k_), a = static_cast<std::size_t>(a_);
  double z[kMaxParams + 1];
  z[a] = 1.0;
  double sum = l[a * k + a];
  for (std::size_t i = a + 1; i < k; ++i) {
    double t = 0.0;
    for (std::size_t q = a; q < i; ++q) t -= l[i * k + q] * z[q];
    z[i] = t;
    sum += t * t * l[i * k + i];
  }
  return sum;
}

// col += f (cdf[i+1] - cdf[i]) / width_i; dcol += g (pdf[i+1] - pdf[i]) / width_i
// (with `first`, = instead of +=: a line's first component).
EXOSPEC_CLONES void add_component(std::size_t n, bool first, double f, double g, const double* cdf,
                                  const double* pdf, const double* iw, double* col, double* dcol) noexcept {
  if (first) {
    for (std::size_t i = 0; i < n; ++i) {
      col[i] = f * (cdf[i + 1] - cdf[i]) * iw[i];
      dcol[i] = g * (pdf[i + 1] - pdf[i]) * iw[i];
    }
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    col[i] += f * (cdf[i + 1] - cdf[i]) * iw[i];
    dcol[i] += g * (pdf[i + 1] - pdf[i]) * iw[i];
  }
}
// d2col += h (xpdf[i+1] - xpdf[i]) / width_i (= with `first`).
EXOSPEC_CLONES void add_component_curvature(std::size_t n, bool first, double h, const double* xpdf,
                                            const double* iw, double* d2col) noexcept {
  if (first) {
    for (std::size_t i = 0; i < n; ++i) d2col[i] = h * (xpdf[i + 1] - xpdf[i]) * iw[i];
    return;
  }
  for (std::size_t i = 0; i < n; ++i) d2col[i] += h * (xpdf[i + 1] - xpdf[i]) * iw[i];
}

// Phi, phi and x phi of a standard normal at x_k = (edge_k - mu) / sigma.
EXOSPEC_CLONES void normal_at_edges(const double* edges, std::size_t m, double mu, double inv_sigma,
                                    double* cdf, double* pdf, double* xpdf) noexcept {
  for (std::size_t k = 0; k < m; ++k) {
    const double x = (edges[k] - mu) * inv_sigma;
    double c, p;
    vmath::normal_cdf_pdf(x, c, p);
    cdf[k] = c;
    pdf[k] = p;
    xpdf[k] = x * p;
  }
}

// A Taylor-series first evaluation of the shift-only fit: each line's
// profile and its shift derivatives at zero shift, kept per window.
constexpr std::size_t kTaylorTerms = 6;  // the profile and its first five derivatives
// Within this many sigma of zero shift (series to s^3; error ~ (s/sigma)^4 / 24).
constexpr double kTaylorReach = 0.5;

// d^j/dmu^j Phi((e - mu)/sigma) for j = 0..5 at x = (e - mu)/sigma:
// Phi(x) (the tail as a small number), then -He_{j-1}(x) phi(x) / sigma^j
// (He: the probabilists' Hermite polynomials, He_{k+1} = x He_k - k He_{k-1}).
void shift_derivatives_at_edge(double x, double inv_sigma, double* d) {
  const double tail = 0.5 * std::erfc(std::fabs(x) * vmath::kInvSqrt2);
  d[0] = x < 0.0 ? tail : 1.0 - tail;
  const double phi = vmath::kInvSqrt2Pi * std::exp(-0.5 * x * x);
  double he_prev = 0.0, he = 1.0, scale = inv_sigma;  // He_{-1} (unused), He_0
  for (std::size_t j = 1; j < kTaylorTerms; ++j) {
    d[j] = -he * phi * scale;
    const double next = x * he - static_cast<double>(j - 1) * he_prev;
    he_prev = he;
    he = next;
    scale *= inv_sigma;
  }
}

// The profiles, first and second shift derivatives at shift s (rows of
// stride np) from the Taylor series at zero shift, terms to s^3 each.
// (__restrict: the rows do not overlap, so that GCC vectorises the loop
// without versioning it.)
EXOSPEC_CLONES void taylor_columns(std::size_t np, std::size_t nl, const double* __restrict T,
                                   double s, double* __restrict col, double* __restrict dcol,
                                   double* __restrict d2col) noexcept {
  const double h = 0.5 * s, t = s * (1.0 / 3.0);
  for (std::size_t a = 0; a < nl; ++a) {
    const double* __restrict C = T + a * kTaylorTerms * np;
    double* __restrict c = col + a * np;
    double* __restrict d = dcol + a * np;
    double* __restrict e = d2col + a * np;
    for (std::size_t i = 0; i < np; ++i) {
      const double c0 = C[i], c1 = C[np + i], c2 = C[2 * np + i], c3 = C[3 * np + i];
      const double c4 = C[4 * np + i], c5 = C[5 * np + i];
      c[i] = c0 + s * (c1 + h * (c2 + t * c3));
      d[i] = c1 + s * (c2 + h * (c3 + t * c4));
      e[i] = c2 + s * (c3 + h * (c4 + t * c5));
    }
  }
}

// Explicit 8-lane vectors (GCC's vector extension): the compiler keeps them
// in registers where it can and splits them for narrower targets; the lanes
// are added up in a fixed order, so the result does not depend on anything
// but the inputs.
using Lanes = double __attribute__((vector_size(kLanes * sizeof(double))));
using UnalignedLanes = double __attribute__((vector_size(kLanes * sizeof(double)), aligned(8), may_alias));
// (A cast, not a function: returning a vector this wide from a function
// would change the ABI between the target clones.)
#define EXOSPEC_LOAD_LANES(p) (*reinterpret_cast<const UnalignedLanes*>(p))

// The horizontal sum of a vector's lanes, in a fixed order.
#define EXOSPEC_SUM_LANES(v) ((((v)[0] + (v)[4]) + ((v)[2] + (v)[6])) + (((v)[1] + (v)[5]) + ((v)[3] + (v)[7])))

// N = A^T W A (K x K, row-major), rhs = A^T W y and (returned) y^T W y for
// the columns A (n x K, column-major) in one pass over the pixels, the
// K (K + 3) / 2 + 1 sums in 8-lane accumulators (K at compile time: they
// stay in registers).
template <std::size_t K>
[[gnu::always_inline]] inline double normal_equations_impl(std::size_t n, const double* A, const double* w,
                                                           const double* y, double* N, double* rhs) noexcept {
  constexpr std::size_t kSums = K * (K + 3) / 2 + 1;  // (the last: y^T W y)
  Lanes acc[kSums];
  for (std::size_t q = 0; q < kSums; ++q) acc[q] = Lanes{};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const Lanes wv = EXOSPEC_LOAD_LANES(w + i), yv = EXOSPEC_LOAD_LANES(y + i);
    std::size_t q = 0;
    // (Unrolled in full: left to itself, GCC keeps the accumulators of
    // K >= 5 on the stack.)
#pragma GCC unroll 8
    for (std::size_t a = 0; a < K; ++a) {
      const Lanes wa = wv * EXOSPEC_LOAD_LANES(A + a * n + i);
#pragma GCC unroll 8
      for (std::size_t b = 0; b <= a; ++b) acc[q++] += wa * EXOSPEC_LOAD_LANES(A + b * n + i);
      acc[q++] += wa * yv;
    }
    acc[q] += wv * yv * yv;
  }
  double tail[kSums] = {};  // the last n % 8 pixels
  for (; i < n; ++i) {
    std::size_t q = 0;
    for (std::size_t a = 0; a < K; ++a) {
      const double wa = w[i] * A[a * n + i];
      for (std::size_t b = 0; b <= a; ++b) tail[q++] += wa * A[b * n + i];
      tail[q++] += wa * y[i];
    }
    tail[q] += w[i] * y[i] * y[i];
  }
  std::size_t q = 0;
  for (std::size_t a = 0; a < K; ++a) {
    for (std::size_t b = 0; b <= a; ++b, ++q) {
      N[a * K + b] = N[b * K + a] = EXOSPEC_SUM_LANES(acc[q]) + tail[q];
    }
    rhs[a] = EXOSPEC_SUM_LANES(acc[q]) + tail[q];
    ++q;
  }
  return EXOSPEC_SUM_LANES(acc[q]) + tail[q];
}
#define EXOSPEC_NORMAL_EQUATIONS(K)                                                                  \
  EXOSPEC_CLONES double normal_equations_##K(std::size_t n, const double* A, const double* w,        \
                                             const double* y, double* N, double* rhs) noexcept {     \
    return normal_equations_impl<K>(n, A, w, y, N, rhs);                                             \
  }
EXOSPEC_NORMAL_EQUATIONS(1)
EXOSPEC_NORMAL_EQUATIONS(2)
EXOSPEC_NORMAL_EQUATIONS(3)
EXOSPEC_NORMAL_EQUATIONS(4)
EXOSPEC_NORMAL_EQUATIONS(5)
EXOSPEC_NORMAL_EQUATIONS(6)
EXOSPEC_NORMAL_EQUATIONS(7)
EXOSPEC_NORMAL_EQUATIONS(8)
#undef EXOSPEC_NORMAL_EQUATIONS
// The clone set compiled for K.
template <int K>
double normal_equations(std::size_t n, const double* A, const double* w, const double* y, double* N,
                        double* rhs) noexcept {
  static_assert(K >= 1 && K <= 8);
  if constexpr (K == 1) return normal_equations_1(n, A, w, y, N, rhs);
  else if constexpr (K == 2) return normal_equations_2(n, A, w, y, N, rhs);
  else if constexpr (K == 3) return normal_equations_3(n, A, w, y, N, rhs);
  else if constexpr (K == 4) return normal_equations_4(n, A, w, y, N, rhs);
  else if constexpr (K == 5) return normal_equations_5(n, A, w, y, N, rhs);
  else if constexpr (K == 6) return normal_equations_6(n, A, w, y, N, rhs);
  else if constexpr (K == 7) return normal_equations_7(n, A, w, y, N, rhs);
  else return normal_equations_8(n, A, w, y, N, rhs);
}

// Weights 1/variance and NaN-free values of n pixels; 0 for unusable pixels
// (flagged, not finite, variance <= 0). Returns the number of usable ones.
// (The outputs never overlap the inputs: without __restrict GCC versions the
// loop for aliasing and turns the selections into masked stores.)
template <class T>
[[gnu::always_inline]] inline std::size_t usable_weights_impl(std::size_t n, const T* __restrict radiance,
                                                             const T* __restrict variance,
                                                             const std::uint8_t* __restrict quality,
                                                             double* __restrict weight,
                                                             double* __restrict y) noexcept {
  constexpr double kMax = std::numeric_limits<double>::max();
  std::size_t good = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double yi = static_cast<double>(radiance[i]), v = static_cast<double>(variance[i]);
    // (Bitwise, not short-circuit: no branches to if-convert; a NaN fails
    // every comparison.)
    const bool ok = ((quality[i] & kSkip) == 0) & (std::fabs(yi) <= kMax) & (v > 0.0) & (v <= kMax);
    weight[i] = ok ? 1.0 / v : 0.0;
    y[i] = ok ? yi : 0.0;
    good += ok ? 1 : 0;
  }
  return good;
}
EXOSPEC_CLONES std::size_t usable_weights(std::size_t n, const float* r, const float* v, const std::uint8_t* q,
                                          double* w, double* y) noexcept {
  return usable_weights_impl(n, r, v, q, w, y);
}
EXOSPEC_CLONES std::size_t usable_weights(std::size_t n, const double* r, const double* v, const std::uint8_t* q,
                                          double* w, double* y) noexcept {
  return usable_weights_impl(n, r, v, q, w, y);
}

// The weights of the usable pixels (weight 0 stays 0) from the model
// m = A beta + prior (n x k columns A, nl lines first): expected counts
// mu = m s + o (at least `floor`), weight s^2 / mu. The prior puts
// `prior_counts` expected counts on each line's profile. m: scratch (n).
EXOSPEC_CLONES void model_weights(std::size_t n, std::size_t nl, std::size_t k, const double* A, const double* beta,
                                  double prior_counts, const double* s, const double* o, double floor, double* wt,
                                  double* m) noexcept {
  std::fill(m, m + n, 0.0);
  for (std::size_t a = 0; a < k; ++a) {
    const double* col = A + a * n;
    double c = beta[a];
    if (a < nl) {
      double counts = 0.0;
      for (std::size_t i = 0; i < n; ++i) counts += wt[i] != 0.0 ? col[i] * s[i] : 0.0;
      c += counts > 0.0 ? prior_counts / counts : 0.0;
    }
    for (std::size_t i = 0; i < n; ++i) m[i] += c * col[i];
  }
  for (std::size_t i = 0; i < n; ++i) {
    const double mu = std::max(m[i] * s[i] + o[i], floor);
    const double updated = s[i] * s[i] / mu;
    wt[i] = (wt[i] != 0.0 && s[i] > 0.0) ? updated : wt[i];
  }
}

// Calls f.template operator()<K>() with K = k (1 <= k <= kMaxParams).
template <class F>
void with_size(int k, F&& f) {
  switch (k) {
    case 1: return f.template operator()<1>();
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    case 5: return f.template operator()<5>();
    case 6: return f.template operator()<6>();
    case 7: return f.template operator()<7>();
    default: return f.template operator()<8>();
  }
}
static_assert(kMaxParams == 8);

FitStatus from_lm(LmStatus s) noexcept {
  switch (s) {
    case LmStatus::kConverged:
      return FitStatus::kConverged;
    case LmStatus::kMaxIterations:
      return FitStatus::kMaxIterations;
    case LmStatus::kStalled:
      return FitStatus::kStalled;
    case LmStatus::kSingular:
      return FitStatus::kSingular;
    case LmStatus::kBadInput:
      return FitStatus::kTooFewPixels;
    case LmStatus::kNotFinite:
      return FitStatus::kNotFinite;
  }
  return FitStatus::kSingular;
}

}  // namespace

std::optional<ShiftMode> parse_shift_mode(std::string_view s) noexcept {
  if (s == "fixed") return ShiftMode::kFixed;
  if (s == "tied") return ShiftMode::kTied;
  if (s == "free") return ShiftMode::kFree;
  return std::nullopt;
}
std::optional<WidthMode> parse_width_mode(std::string_view s) noexcept {
  if (s == "fixed") return WidthMode::kFixed;
  if (s == "free") return WidthMode::kFree;
  return std::nullopt;
}
const char* shift_mode_name(ShiftMode m) noexcept {
  return m == ShiftMode::kFixed ? "fixed" : m == ShiftMode::kTied ? "tied" : "free";
}
const char* width_mode_name(WidthMode m) noexcept {
  return m == WidthMode::kFixed ? "fixed" : "free";
}

// One window's result before it is written out.
struct LineFitter::Solution {
  FitStatus status = FitStatus::kConverged;
  SmallVec beta, sigma;  // linear parameters; sigma of the lines' brightness
  double chi2_reduced = kNaN;
  double shift = 0.0, shift_sigma = kNaN, fwhm = 0.0, fwhm_sigma = kNaN;
  bool nonlinear = false;
  std::size_t good = 0;
};

struct LineFitter::Workspace::Solvers {
  std::vector<LevenbergMarquardt<Eigen::Dynamic>> lm;  // per window: all parameters
  std::vector<LevenbergMarquardt<1>> shift_lm;         // per window: the shift alone
  std::vector<Solution> solution;                       // per window
  std::vector<ParamVec> p;                              // per window: parameters
};

LineFitter::Workspace::Workspace() = default;
LineFitter::Workspace::Workspace(Workspace&&) noexcept = default;
LineFitter::Workspace& LineFitter::Workspace::operator=(Workspace&&) noexcept = default;
LineFitter::Workspace::~Workspace() = default;

LineFitter::LineFitter(std::span<const double> wavelength_coeffs, std::size_t pixels,
                       std::vector<FitLineSpec> lines, const LineFitSettings& settings)
    : pixels_(pixels), lines_(std::move(lines)), settings_(settings) {
  if (settings.background_order < 0 || settings.background_order > 2) {
    throw std::invalid_argument("background order must be 0, 1 or 2");
  }
  if (!(settings.fwhm_nm > 0.0)) throw std::invalid_argument("the line FWHM must be > 0");
  if (!(settings.max_shift_fwhm >= 0.0)) throw std::invalid_argument("max_shift_fwhm must be >= 0");
  if (settings.max_iterations < 1) throw std::invalid_argument("max_iterations must be >= 1");
  const std::size_t L = lines_.size();
  line_window_.assign(L, 0);
  line_column_.assign(L, 0);
  if (L == 0 || pixels < 2) return;
  std::vector<double> wl(pixels), edges(pixels + 1);
  pixel_wavelengths(wavelength_coeffs, wl);
  pixel_edges(wavelength_coeffs, edges);
  // Lines in wavelength order, grouped into windows.
  std::vector<std::size_t> order(L);
  for (std::size_t j = 0; j < L; ++j) order[j] = j;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return extent(lines_[a]).first < extent(lines_[b]).first;
  });
  const double fwhm = settings.fwhm_nm;
  std::vector<std::vector<std::size_t>> groups;
  double group_hi = -std::numeric_limits<double>::infinity();
  for (std::size_t j : order) {
    const auto [lo, hi] = extent(lines_[j]);
    if (groups.empty() || lo - group_hi > settings.group_distance_fwhm * fwhm) {
      groups.push_back({});
      group_hi = hi;
    }
    groups.back().push_back(j);
    group_hi = std::max(group_hi, hi);
  }
  const int nbg = settings.background_order + 1;
  for (const auto& g : groups) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (std::size_t j : g) {
      lo = std::min(lo, extent(lines_[j]).first);
      hi = std::max(hi, extent(lines_[j]).second);
    }
    lo -= settings.window_half_width_fwhm * fwhm;
    hi += settings.window_half_width_fwhm * fwhm;
    // Pixels whose centre lies in [lo, hi] (the solution is monotonic).
    std::size_t first = pixels, last = 0;
    for (std::size_t p = 0; p < pixels; ++p) {
      if (wl[p] >= lo && wl[p] <= hi) {
        first = std::min(first, p);
        last = std::max(last, p);
      }
    }
    Window w;
    w.lines = g;
    w.k = static_cast<int>(g.size()) + nbg;
    if (w.k > kMaxParams) throw std::invalid_argument("too many lines in one fit window");
    if (first <= last) {
      w.first = first;
      w.size = last - first + 1;
    }
    w.basis.assign(w.size * static_cast<std::size_t>(w.k), 0.0);
    w.edges.assign(edges.begin() + static_cast<std::ptrdiff_t>(w.first),
                   edges.begin() + static_cast<std::ptrdiff_t>(w.first + w.size + (w.size > 0 ? 1 : 0)));
    // Padded to a multiple of kLanes with the last edge, so that the
    // vectorised edge loop has no scalar remainder.
    if (!w.edges.empty()) w.edges.resize(padded(w.edges.size()), w.edges.back());
    w.inv_width.resize(w.size);
    for (std::size_t i = 0; i < w.size; ++i) w.inv_width[i] = 1.0 / (w.edges[i + 1] - w.edges[i]);
    w.component_begin.push_back(0);
    for (std::size_t j : g) {
      double total = 0.0;
      for (const auto& c : lines_[j].components) total += c.fraction;
      for (const auto& c : lines_[j].components) {
        w.components.push_back({c.wavelength_nm, total > 0.0 ? c.fraction / total : 0.0});
      }
      w.component_begin.push_back(w.components.size());
    }
    // Line profiles over the window's pixels.
    const auto window_edges = std::span<const double>(edges).subspan(w.first, w.size + 1);
    for (std::size_t c = 0; c < g.size(); ++c) {
      if (w.size == 0) break;
      const LineProfile prof =
          make_line_profile(window_edges, lines_[g[c]].components, fwhm, 12.0);
      for (std::size_t i = 0; i < prof.values.size(); ++i) {
        const std::size_t row = prof.first + i;
        if (row < w.size) w.basis[c * w.size + row] = prof.values[i];
      }
      line_window_[g[c]] = windows_.size();
      line_column_[g[c]] = c;
    }
    // The initial shift's search range of each line.
    const double max_shift = settings.max_shift_fwhm * fwhm;
    for (std::size_t a = 0; a < g.size(); ++a) {
      const LineComponent* strongest = &w.components[w.component_begin[a]];
      for (std::size_t ci = w.component_begin[a]; ci < w.component_begin[a + 1]; ++ci) {
        if (w.components[ci].fraction > strongest->fraction) strongest = &w.components[ci];
      }
      const double l0 = strongest->wavelength_nm;
      std::size_t begin = w.size, end = 0;
      for (std::size_t i = 1; i + 1 < w.size; ++i) {
        if (std::abs(0.5 * (w.edges[i] + w.edges[i + 1]) - l0) <= max_shift) {
          begin = std::min(begin, i);
          end = i + 1;
        }
      }
      w.strongest_nm.push_back(l0);
      w.reach_begin.push_back(begin);
      w.reach_end.push_back(std::max(begin, end));
    }
    // With the width fixed: the Taylor series of the profiles at zero shift.
    if (settings.width == WidthMode::kFixed && w.size > 0) {
      const std::size_t np = padded(w.size);
      const double inv_sigma = kFwhmPerSigma / fwhm;
      w.taylor.assign(g.size() * kTaylorTerms * np, 0.0);
      for (std::size_t a = 0; a < g.size(); ++a) {
        double* T = w.taylor.data() + a * kTaylorTerms * np;
        for (std::size_t ci = w.component_begin[a]; ci < w.component_begin[a + 1]; ++ci) {
          const LineComponent& c = w.components[ci];
          double below[kTaylorTerms], above[kTaylorTerms];
          shift_derivatives_at_edge((w.edges[0] - c.wavelength_nm) * inv_sigma, inv_sigma, below);
          for (std::size_t i = 0; i < w.size; ++i) {
            shift_derivatives_at_edge((w.edges[i + 1] - c.wavelength_nm) * inv_sigma, inv_sigma,
                                      above);
            for (std::size_t j = 0; j < kTaylorTerms; ++j) {
              T[j * np + i] += c.fraction * (above[j] - below[j]) * w.inv_width[i];
              below[j] = above[j];
            }
          }
        }
      }
    }
    // Background: monomials in x = (lambda - centre) / half-span.
    const double centre = 0.5 * (lo + hi), half = std::max(0.5 * (hi - lo), 1e-12);
    for (int b = 0; b < nbg; ++b) {
      for (std::size_t i = 0; i < w.size; ++i) {
        const double x = (wl[w.first + i] - centre) / half;
        w.basis[(g.size() + static_cast<std::size_t>(b)) * w.size + i] = std::pow(x, b);
      }
    }
    windows_.push_back(std::move(w));
  }
}

std::span<const double> LineFitter::profile(std::size_t line) const noexcept {
  const Window& w = windows_[line_window_[line]];
  return std::span<const double>(w.basis).subspan(line_column_[line] * w.size, w.size);
}

LineFitter::Workspace LineFitter::make_workspace() const {
  std::size_t mx = 0;
  for (const auto& w : windows_) mx = std::max(mx, w.size);
  Workspace ws;
  // (Rows of the shift-only fit have the padded stride padded(n).)
  const std::size_t mp = padded(mx);
  for (auto* v : {&ws.model, &ws.y, &ws.dshift, &ws.dsigma, &ws.sqrt_weight}) v->assign(mx, 0.0);
  ws.weight.assign(mp, 0.0);
  for (auto* v : {&ws.cdf, &ws.pdf, &ws.xpdf}) v->assign(padded(mx + 1), 0.0);
  ws.weighted.assign(mp * (kMaxParams + 2), 0.0);
  ws.residual.assign(mx, 0.0);
  ws.columns.assign(mp * kMaxParams, 0.0);
  ws.dcolumns.assign(mp * kMaxParams, 0.0);
  ws.d2columns.assign(mp * kMaxParams, 0.0);
  ws.solvers = std::make_unique<Workspace::Solvers>();
  auto& sv = *ws.solvers;
  sv.solution.resize(windows_.size());
  LmOptions opt;
  opt.use_qr = false;  // small, well-conditioned normal equations: Cholesky
  opt.jacobian_with_trial = true;  // the Jacobian costs little more than the model
  opt.max_iterations = settings_.max_iterations;
  // Tolerances: a step below 1e-6 of the Marquardt-scaled parameter norm
  // moves a line by ~1e-6 FWHM, far below any shift's uncertainty (about 4
  // iterations, 5 evaluations from the linear start); ftol and gtol are
  // MINPACK's usual sqrt(machine epsilon).
  opt.ftol = 1e-8;
  opt.xtol = 1e-6;
  opt.gtol = 1e-8;
  // The shift alone (variable projection): also stop at a step below 1e-3
  // of its standard error (with one parameter, xtol relative to the shift
  // itself would ask for 1e-7 nm near zero shift, a few more iterations).
  // And stop, without evaluating it, before a Newton step below 3e-2 of the
  // standard error; solve_nonlinear takes that step on the quadratic model,
  // which leaves the shift within ~1e-7 and the brightness within ~1e-4 of
  // their standard errors of the minimum (test: FreeShiftIsTheMinimumOf-
  // Chi2OverTheShift), for one evaluation less per window (2.2 instead of 3.7).
  LmOptions shift_opt = opt;
  shift_opt.step_tol = 1e-3;
  shift_opt.newton_tol = 3e-2;
  const double max_shift = settings_.max_shift_fwhm * settings_.fwhm_nm;
  sv.lm.reserve(windows_.size());
  sv.shift_lm.reserve(windows_.size());
  sv.p.reserve(windows_.size());
  for (const auto& w : windows_) {
    const int np = w.k + 2;
    sv.shift_lm.emplace_back(1, static_cast<int>(std::max<std::size_t>(w.size, 1)), shift_opt);
    sv.shift_lm.back().set_bounds(0, -max_shift, max_shift);
    sv.lm.emplace_back(np, static_cast<int>(std::max<std::size_t>(w.size, 1)), opt);
    sv.p.emplace_back(ParamVec::Zero(np));
    auto& lm = sv.lm.back();
    lm.set_bounds(w.k, -max_shift, max_shift);
    lm.set_bounds(w.k + 1, 0.5 * settings_.fwhm_nm, 2.0 * settings_.fwhm_nm);
    if (settings_.width == WidthMode::kFixed) lm.set_fixed(w.k + 1);
    sv.solution[sv.lm.size() - 1].beta.resize(w.k);
    sv.solution[sv.lm.size() - 1].sigma.resize(w.k);
  }
  return ws;
}

void LineFitter::window_profiles(std::size_t wi, double shift_nm, double fwhm_nm, double* columns,
                                 const double* brightness, double* dshift, double* dsigma,
                                 Workspace& work) const {
  const Window& w = windows_[wi];
  const std::size_t n = w.size, nl = w.lines.size();
  if (n == 0) return;
  const double sigma = fwhm_nm / kFwhmPerSigma, inv_sigma = 1.0 / sigma;
  double* cdf = work.cdf.data();
  double* pdf = work.pdf.data();
  double* xpdf = work.xpdf.data();
  const double* iw = w.inv_width.data();
  if (dshift != nullptr) {
    std::fill(dshift, dshift + n, 0.0);
    std::fill(dsigma, dsigma + n, 0.0);
  }
  for (std::size_t a = 0; a < nl; ++a) {
    double* col = columns + a * n;
    std::fill(col, col + n, 0.0);
    for (std::size_t ci = w.component_begin[a]; ci < w.component_begin[a + 1]; ++ci) {
      const LineComponent& c = w.components[ci];
      normal_at_edges(w.edges.data(), w.edges.size(), c.wavelength_nm + shift_nm, inv_sigma, cdf, pdf,
                      xpdf);
      const double f = c.fraction;
      for (std::size_t i = 0; i < n; ++i) col[i] += f * (cdf[i + 1] - cdf[i]) * iw[i];
      if (dshift != nullptr) {
        // d/dmu Phi((e - mu)/s) = -phi/s; d/ds Phi((e - mu)/s) = -x phi/s.
        const double g = -brightness[a] * f * inv_sigma;
        for (std::size_t i = 0; i < n; ++i) {
          dshift[i] += g * (pdf[i + 1] - pdf[i]) * iw[i];
          dsigma[i] += g * (xpdf[i + 1] - xpdf[i]) * iw[i];
        }
      }
    }
  }
}

void LineFitter::profiles_and_shift_derivatives(std::size_t wi, double shift_nm, double fwhm_nm,
                                                double* columns, double* dcolumns, Workspace& work,
                                                double* d2columns, std::size_t stride) const {
  const Window& w = windows_[wi];
  const std::size_t n = w.size, nl = w.lines.size();
  if (n == 0) return;
  if (stride < n) stride = n;
  const double inv_sigma = kFwhmPerSigma / fwhm_nm;
  double* cdf = work.cdf.data();
  double* pdf = work.pdf.data();
  const double* iw = w.inv_width.data();
  for (std::size_t a = 0; a < nl; ++a) {
    double* col = columns + a * stride;
    double* dcol = dcolumns + a * stride;
    double* d2col = d2columns != nullptr ? d2columns + a * stride : nullptr;
    // (Zeros from n to the stride; a line without components is all zeros.)
    const bool empty = w.component_begin[a] == w.component_begin[a + 1];
    std::fill(col + (empty ? 0 : n), col + stride, 0.0);
    std::fill(dcol + (empty ? 0 : n), dcol + stride, 0.0);
    if (d2col != nullptr) std::fill(d2col + (empty ? 0 : n), d2col + stride, 0.0);
    for (std::size_t ci = w.component_begin[a]; ci < w.component_begin[a + 1]; ++ci) {
      const LineComponent& c = w.components[ci];
      const bool first = ci == w.component_begin[a];
      normal_at_edges(w.edges.data(), w.edges.size(), c.wavelength_nm + shift_nm, inv_sigma, cdf, pdf,
                      work.xpdf.data());
      // d/dmu Phi((e - mu)/s) = -phi/s
      add_component(n, first, c.fraction, -c.fraction * inv_sigma, cdf, pdf, iw, col, dcol);
      // d^2/dmu^2 Phi((e - mu)/s) = -x phi / s^2
      if (d2col != nullptr) {
        add_component_curvature(n, first, -c.fraction * inv_sigma * inv_sigma, work.xpdf.data(), iw, d2col);
      }
    }
  }
}

double* LineFitter::window_basis(std::size_t wi, double shift_nm, double fwhm_nm, Workspace& work) const {
  const Window& w = windows_[wi];
  const std::size_t nl = w.lines.size(), n = w.size;
  double* cols = work.columns.data();
  window_profiles(wi, shift_nm, fwhm_nm, cols, nullptr, nullptr, nullptr, work);
  std::copy(w.basis.begin() + static_cast<std::ptrdiff_t>(nl * n),
            w.basis.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(w.k) * n), cols + nl * n);
  return cols;
}

template <class T>
bool LineFitter::prepare_weights(const Window& w, std::span<const T> radiance,
                                 std::span<const T> variance, std::span<const std::uint8_t> quality,
                                 Workspace& work, std::size_t& good) const {
  good = usable_weights(w.size, radiance.data() + w.first, variance.data() + w.first, quality.data() + w.first,
                        work.weight.data(), work.y.data());
  return good >= static_cast<std::size_t>(w.k) + 3;
}

void LineFitter::update_weights(const Window& w, const double* A, const double* beta,
                                std::span<const double> scale, std::span<const double> offset,
                                Workspace& work) const {
  // The variance model is the fitted model itself (negative line brightness
  // included), plus `line_prior_counts` expected counts spread over each
  // line's profile: the Poisson plug-in variance at the fitted counts n is
  // n + 1 under a uniform prior, and without that count the plug-in sigma is
  // correlated with the fit's own noise (pull sd 1.1 at a few counts;
  // docs/FIT.md). Clamping negative lines at zero instead inflates the sigma
  // of lines at zero (pull sd 0.87).
  model_weights(w.size, w.lines.size(), static_cast<std::size_t>(w.k), A, beta, settings_.line_prior_counts,
                scale.data() + w.first, offset.data() + w.first, settings_.min_expected_counts,
                work.weight.data(), work.model.data());
}

bool LineFitter::solve_linear(const Window& w, const double* A, std::span<const double> scale,
                              std::span<const double> offset, std::size_t good, int iterations,
                              Workspace& work, Solution& sol) const {
  const auto k = static_cast<std::size_t>(w.k);
  const std::size_t n = w.size;
  const double* wt = work.weight.data();
  const double* y = work.y.data();
  double N[kMaxParams * kMaxParams], L[kMaxParams * kMaxParams] = {}, rhs[kMaxParams], beta[kMaxParams];
  double yy = 0.0;  // y^T W y
  bool ok = true;
  // (The k x k algebra with k known at compile time: unrolled, no
  // mispredicted short loops.)
  with_size(static_cast<int>(k), [&]<int K>() {
    for (int it = 0; it <= iterations; ++it) {
      yy = normal_equations<K>(n, A, wt, y, N, rhs);
      std::copy(N, N + k * k, L);
      if (!small_ldlt<K>(L, K)) {
        ok = false;
        return;
      }
      std::copy(rhs, rhs + k, beta);
      small_ldlt_solve<K>(L, K, beta);
      if (it < iterations) update_weights(w, A, beta, scale, offset, work);
    }
    // The brightness sigmas from the diagonal of (A^T W A)^-1 (the
    // background's are not used).
    for (std::size_t a = 0; a < w.lines.size(); ++a) {
      sol.sigma(static_cast<Eigen::Index>(a)) = std::sqrt(inverse_diagonal<K>(L, K, static_cast<int>(a)));
    }
  });
  if (!ok) {
    sol.status = FitStatus::kSingular;
    return false;
  }
  // chi2 with the weights of the final solve: y^T W y - beta^T A^T W y at
  // the solution.
  double chi2 = yy;
  for (std::size_t a = 0; a < k; ++a) chi2 -= beta[a] * rhs[a];
  sol.status = FitStatus::kConverged;
  for (std::size_t a = 0; a < k; ++a) sol.beta(static_cast<Eigen::Index>(a)) = beta[a];
  for (std::size_t a = w.lines.size(); a < k; ++a) sol.sigma(static_cast<Eigen::Index>(a)) = kNaN;
  sol.chi2_reduced = std::max(chi2, 0.0) / static_cast<double>(good - k);
  sol.good = good;
  return true;
}

namespace {

// The window's model for Levenberg-Marquardt: residuals sqrt(w) (y - f) over
// the window's pixels and their analytic Jacobian. Parameters: line
// brightness (nl), background (nb), shift (nm), FWHM (nm).
struct WindowModel {
  const LineFitter* fitter;
  std::size_t window, n, nl;
  int k;
  const double* background;  // n x (k - nl), column-major
  LineFitter::Workspace* work;
  int residuals() const { return static_cast<int>(n); }
  bool operator()(const double* p, double* r, double* J) const {
    auto& ws = *work;
    double* cols = ws.columns.data();
    const bool jac = J != nullptr;
    fitter->window_profiles(window, p[k], p[k + 1], cols, p, jac ? ws.dshift.data() : nullptr,
                            jac ? ws.dsigma.data() : nullptr, ws);
    const double* sw = ws.sqrt_weight.data();
    const double* y = ws.y.data();
    const auto nb = static_cast<std::size_t>(k) - nl;
    for (std::size_t i = 0; i < n; ++i) ws.model[i] = 0.0;
    for (std::size_t a = 0; a < nl; ++a) {
      for (std::size_t i = 0; i < n; ++i) ws.model[i] += p[a] * cols[a * n + i];
    }
    for (std::size_t b = 0; b < nb; ++b) {
      for (std::size_t i = 0; i < n; ++i) ws.model[i] += p[nl + b] * background[b * n + i];
    }
    for (std::size_t i = 0; i < n; ++i) r[i] = sw[i] * (y[i] - ws.model[i]);
    if (jac) {
      for (std::size_t a = 0; a < nl; ++a) {
        for (std::size_t i = 0; i < n; ++i) J[a * n + i] = -sw[i] * cols[a * n + i];
      }
      for (std::size_t b = 0; b < nb; ++b) {
        for (std::size_t i = 0; i < n; ++i) J[(nl + b) * n + i] = -sw[i] * background[b * n + i];
      }
      const auto ks = static_cast<std::size_t>(k);
      for (std::size_t i = 0; i < n; ++i) {
        J[ks * n + i] = -sw[i] * ws.dshift[i];
        J[(ks + 1) * n + i] = -sw[i] * ws.dsigma[i] / kFwhmPerSigma;
      }
    }
    return true;
  }
};

// What one variable-projection evaluation leaves behind (the window at one
// shift, with the current weights): the linear solution, the blocks of the
// full J^T J over (linear parameters, shift) and chi2.
struct ProjectedState {
  double shift = std::numeric_limits<double>::quiet_NaN();
  double beta[kMaxParams];
  double N[kMaxParams * kMaxParams];  // A~^T A~ (row-major k x k)
  double L[kMaxParams * kMaxParams];  // its L D L^T factor (small_ldlt)
  double u[kMaxParams];               // A~^T v
  double vv = 0.0, vr = 0.0, chi2 = 0.0;  // v^T v, v^T r, r^T r
  // Per line: (sqrt(w) dA/dshift)^T r (0 for the background); and
  // (sqrt(w) d2A/dshift2 beta)^T r (the exact curvature's residual term).
  double g[kMaxParams], bh = 0.0;
  // N^-1 u and N^-1 g, once solved for (ProjectedWindowModel::derivatives).
  bool solved = false;
  double n_inv_u[kMaxParams], n_inv_g[kMaxParams];
};

// One variable-projection evaluation reads the pixels twice, from the
// profiles C, their first and second shift derivatives D and E (nl rows
// each) and the weighted targets Y (nt rows: w times each background column,
// then w y), all with row stride np (a multiple of kLanes, zero beyond the
// window's pixels), W = diag(w):
//  1. the normal equations of the lines (projected_normal):
//       line a after line a: c_a^T W c_b for b <= a, then c_a^T Y_t for t < nt
//     which with the constant background blocks give the linear solution
//     beta and the residual r = y - A beta (projected_solve);
//  2. at beta, with v = D beta (dA/dshift beta) and z = E beta, the sums of
//     the shift's gradient and curvature (projected_slopes):
//       v^T W v, z^T W r, then d_a^T W r (per line), then c_a^T W v (per
//       line) and B_j^T W v (per background term) = u
//     (projected_finish). Ten sums for a 3-line window on a linear
//     background instead of the 57 products of every pair of columns that
//     one pass would need: both passes keep their sums in registers.
constexpr std::size_t normal_sum_count(std::size_t nl, std::size_t nt) {
  return nl * (nl + 1) / 2 + nl * nt;
}
constexpr std::size_t slope_sum_count(std::size_t nl, std::size_t nt) {
  return 2 + 2 * nl + (nt - 1);
}
constexpr std::size_t kMaxTargets = 4;  // background order <= 2, and w y
constexpr std::size_t kMaxSums = normal_sum_count(kMaxParams - 1, kMaxTargets);
static_assert(slope_sum_count(kMaxParams - 1, kMaxTargets) <= kMaxSums);

// NL, NT > 0: the shape at compile time (accumulators in registers, loops
// unrolled); 0: at run time.
template <std::size_t NL, std::size_t NT>
[[gnu::always_inline]] inline void projected_normal_impl(std::size_t np, std::size_t nl_,
                                                         std::size_t nt_, const double* C,
                                                         const double* w, const double* Y,
                                                         double* sums) noexcept {
  const std::size_t nl = NL > 0 ? NL : nl_, nt = NT > 0 ? NT : nt_;
  constexpr std::size_t kCount = NL > 0 && NT > 0 ? normal_sum_count(NL, NT) : kMaxSums;
  const std::size_t count = normal_sum_count(nl, nt);
  Lanes acc[kCount];
  for (std::size_t q = 0; q < count; ++q) acc[q] = Lanes{};
  for (std::size_t i = 0; i < np; i += kLanes) {
    const Lanes wv = EXOSPEC_LOAD_LANES(w + i);
    std::size_t q = 0;
    for (std::size_t a = 0; a < nl; ++a) {
      const Lanes c = EXOSPEC_LOAD_LANES(C + a * np + i), wc = wv * c;
      for (std::size_t b = 0; b <= a; ++b) acc[q++] += wc * EXOSPEC_LOAD_LANES(C + b * np + i);
      for (std::size_t t = 0; t < nt; ++t) acc[q++] += c * EXOSPEC_LOAD_LANES(Y + t * np + i);
    }
  }
  for (std::size_t q = 0; q < count; ++q) sums[q] = EXOSPEC_SUM_LANES(acc[q]);
}

template <std::size_t NL, std::size_t NT>
[[gnu::always_inline]] inline void projected_slopes_impl(
    std::size_t np, std::size_t nl_, std::size_t nt_, const double* C, const double* D,
    const double* E, const double* w, const double* Y, const double* beta, double* sums) noexcept {
  const std::size_t nl = NL > 0 ? NL : nl_, nt = NT > 0 ? NT : nt_, nb = nt - 1;
  constexpr std::size_t kCount = NL > 0 && NT > 0 ? slope_sum_count(NL, NT) : kMaxSums;
  const std::size_t count = slope_sum_count(nl, nt);
  Lanes acc[kCount];
  for (std::size_t q = 0; q < count; ++q) acc[q] = Lanes{};
  for (std::size_t i = 0; i < np; i += kLanes) {
    const Lanes wv = EXOSPEC_LOAD_LANES(w + i);
    Lanes v = {}, z = {}, m = {};
    for (std::size_t a = 0; a < nl; ++a) {
      v += beta[a] * EXOSPEC_LOAD_LANES(D + a * np + i);
      z += beta[a] * EXOSPEC_LOAD_LANES(E + a * np + i);
      m += beta[a] * EXOSPEC_LOAD_LANES(C + a * np + i);
    }
    Lanes wr = EXOSPEC_LOAD_LANES(Y + nb * np + i) - wv * m;  // w r
    for (std::size_t j = 0; j < nb; ++j) wr -= beta[nl + j] * EXOSPEC_LOAD_LANES(Y + j * np + i);
    const Lanes wvv = wv * v;
    acc[0] += wvv * v;
    acc[1] += z * wr;
    for (std::size_t a = 0; a < nl; ++a) {
      acc[2 + a] += EXOSPEC_LOAD_LANES(D + a * np + i) * wr;
      acc[2 + nl + a] += EXOSPEC_LOAD_LANES(C + a * np + i) * wvv;
    }
    for (std::size_t j = 0; j < nb; ++j)
      acc[2 + 2 * nl + j] += EXOSPEC_LOAD_LANES(Y + j * np + i) * v;
  }
  for (std::size_t q = 0; q < count; ++q) sums[q] = EXOSPEC_SUM_LANES(acc[q]);
}

#define EXOSPEC_PROJECTED_SUMS(NL, NT)                                                             \
  EXOSPEC_CLONES void projected_normal_##NL##_##NT(std::size_t np, std::size_t nl, std::size_t nt, \
                                                   const double* C, const double* w,               \
                                                   const double* Y, double* s) noexcept {          \
    projected_normal_impl<NL, NT>(np, nl, nt, C, w, Y, s);                                         \
  }                                                                                                \
  EXOSPEC_CLONES void projected_slopes_##NL##_##NT(                                                \
      std::size_t np, std::size_t nl, std::size_t nt, const double* C, const double* D,            \
      const double* E, const double* w, const double* Y, const double* beta, double* s) noexcept { \
    projected_slopes_impl<NL, NT>(np, nl, nt, C, D, E, w, Y, beta, s);                             \
  }
EXOSPEC_PROJECTED_SUMS(0, 0)
EXOSPEC_PROJECTED_SUMS(1, 2)
EXOSPEC_PROJECTED_SUMS(1, 3)
EXOSPEC_PROJECTED_SUMS(1, 4)
EXOSPEC_PROJECTED_SUMS(2, 2)
EXOSPEC_PROJECTED_SUMS(2, 3)
EXOSPEC_PROJECTED_SUMS(2, 4)
EXOSPEC_PROJECTED_SUMS(3, 2)
EXOSPEC_PROJECTED_SUMS(3, 3)
EXOSPEC_PROJECTED_SUMS(3, 4)
#undef EXOSPEC_PROJECTED_SUMS
// The clone sets compiled for (NL, NT); (0, 0) and shapes without one: the
// run-time-sized versions.
#define EXOSPEC_SHAPE_DISPATCH(F, ...)   \
  if constexpr (NL == 1 && NT == 2)      \
    F##_1_2(__VA_ARGS__);                \
  else if constexpr (NL == 1 && NT == 3) \
    F##_1_3(__VA_ARGS__);                \
  else if constexpr (NL == 1 && NT == 4) \
    F##_1_4(__VA_ARGS__);                \
  else if constexpr (NL == 2 && NT == 2) \
    F##_2_2(__VA_ARGS__);                \
  else if constexpr (NL == 2 && NT == 3) \
    F##_2_3(__VA_ARGS__);                \
  else if constexpr (NL == 2 && NT == 4) \
    F##_2_4(__VA_ARGS__);                \
  else if constexpr (NL == 3 && NT == 2) \
    F##_3_2(__VA_ARGS__);                \
  else if constexpr (NL == 3 && NT == 3) \
    F##_3_3(__VA_ARGS__);                \
  else if constexpr (NL == 3 && NT == 4) \
    F##_3_4(__VA_ARGS__);                \
  else                                   \
    F##_0_0(__VA_ARGS__);
template <std::size_t NL, std::size_t NT>
void projected_normal(std::size_t np, std::size_t nl, std::size_t nt, const double* C,
                      const double* w, const double* Y, double* s) noexcept {
  EXOSPEC_SHAPE_DISPATCH(projected_normal, np, nl, nt, C, w, Y, s)
}
template <std::size_t NL, std::size_t NT>
void projected_slopes(std::size_t np, std::size_t nl, std::size_t nt, const double* C,
                      const double* D, const double* E, const double* w, const double* Y,
                      const double* beta, double* s) noexcept {
  EXOSPEC_SHAPE_DISPATCH(projected_slopes, np, nl, nt, C, D, E, w, Y, beta, s)
}
#undef EXOSPEC_SHAPE_DISPATCH

// Calls f.template operator()<NL, NB>() with the window's numbers of lines
// and background terms where a specialisation exists (up to 3 lines), with
// <0, 0> (run-time sizes) otherwise.
template <class F>
void with_window_shape(std::size_t nl, std::size_t nb, F&& f) {
  switch (nl * 8 + nb) {
    case 8 + 1: return f.template operator()<1, 1>();
    case 8 + 2: return f.template operator()<1, 2>();
    case 8 + 3: return f.template operator()<1, 3>();
    case 16 + 1: return f.template operator()<2, 1>();
    case 16 + 2: return f.template operator()<2, 2>();
    case 16 + 3: return f.template operator()<2, 3>();
    case 24 + 1: return f.template operator()<3, 1>();
    case 24 + 2: return f.template operator()<3, 2>();
    case 24 + 3: return f.template operator()<3, 3>();
    default: return f.template operator()<0, 0>();
  }
}

// The linear solution of ProjectedState (beta, N, its factor L, chi2) from
// the sums of projected_normal (k = nl + nb parameters, nt = nb + 1) and the
// constant background blocks gbb = B^T W B, gby = B^T W y, yy = y^T W y:
//   chi2 = y^T W y - beta^T (A^T W y)   (at the solution).
// False if A^T W A is singular.
template <std::size_t NL, std::size_t NB>
[[gnu::always_inline]] inline bool projected_solve(const double* s, std::size_t nl_,
                                                   std::size_t nb_, const double* gbb,
                                                   const double* gby, double yy,
                                                   ProjectedState& st) {
  const std::size_t nl = NL > 0 ? NL : nl_, nb = NL > 0 ? NB : nb_;
  constexpr int K = static_cast<int>(NL > 0 ? NL + NB : 0);
  const std::size_t k = nl + nb;
  double rhs[kMaxParams];
  for (std::size_t a = 0; a < nl; ++a) {
    for (std::size_t b = 0; b <= a; ++b) st.N[a * k + b] = st.N[b * k + a] = *s++;
    for (std::size_t j = 0; j < nb; ++j) st.N[a * k + nl + j] = st.N[(nl + j) * k + a] = *s++;
    rhs[a] = *s++;
  }
  for (std::size_t i = 0; i < nb; ++i) {
    for (std::size_t j = 0; j < nb; ++j) st.N[(nl + i) * k + nl + j] = gbb[i * nb + j];
    rhs[nl + i] = gby[i];
  }
  std::copy(st.N, st.N + k * k, st.L);
  if (!small_ldlt<K>(st.L, static_cast<int>(k))) return false;
  std::copy(rhs, rhs + k, st.beta);
  small_ldlt_solve<K>(st.L, static_cast<int>(k), st.beta);
  double chi2 = yy;
  for (std::size_t a = 0; a < k; ++a) chi2 -= st.beta[a] * rhs[a];
  st.chi2 = chi2;
  return true;
}

// The rest of ProjectedState from the sums of projected_slopes at its beta:
//   v^T W v, the residual curvature term z^T W r, g_a = d_a^T W r,
//   u = A^T W v, v^T W r = beta^T g (the background's g is 0).
template <std::size_t NL, std::size_t NB>
[[gnu::always_inline]] inline void projected_finish(const double* s, std::size_t nl_,
                                                    std::size_t nb_, ProjectedState& st) {
  const std::size_t nl = NL > 0 ? NL : nl_, nb = NL > 0 ? NB : nb_;
  st.vv = s[0];
  st.bh = s[1];
  double vr = 0.0;
  for (std::size_t a = 0; a < nl; ++a) {
    st.g[a] = s[2 + a];
    st.u[a] = s[2 + nl + a];
    vr += st.beta[a] * st.g[a];
  }
  for (std::size_t j = 0; j < nb; ++j) {
    st.g[nl + j] = 0.0;
    st.u[nl + j] = s[2 + 2 * nl + j];
  }
  st.vr = vr;
}

// The same window with the width fixed, by variable projection (Golub and
// Pereyra 1973): at each shift the brightnesses and background are the
// weighted linear least-squares solution, so chi2 is a function of the
// shift alone and Levenberg-Marquardt works on one parameter. Its Jacobian
// is Kaufman's (1975), J = -(I - P) v with P the projection onto the span of
// A~ = sqrt(W) A: the LM's normal equations need only
//   J^T J = v^T v - u^T (A~^T A~)^-1 u   (u = A~^T v; the Schur complement of
//                                         the full J^T J over all parameters)
//   J^T r = -v^T r                        (P r = 0 at the linear solution),
// which is the exact gradient of the projected chi2 / 2. Same minimum as
// WindowModel over all parameters, with no n-vector handed to the LM.
// Expects the weights (zero beyond the window's n pixels, up to the padded
// np) and the weighted targets in work.weighted (projected_setup), with
// their constant sums gbb, gby, yy.
template <std::size_t NL, std::size_t NB>  // (0, 0: sizes at run time)
struct ProjectedWindowModel {
  const LineFitter* fitter;
  std::size_t window, n, nl, nb;
  double fwhm;
  LineFitter::Workspace* work;
  const double* gbb;
  const double* gby;
  double yy;
  ProjectedState* state;  // of the last evaluation
  int residuals() const { return static_cast<int>(n); }
  std::size_t stride() const { return padded(n); }
  // The profiles and derivatives at `shift` into work.columns, dcolumns and
  // d2columns (row stride padded(n)).
  void profiles(double shift) const {
    fitter->profiles_and_shift_derivatives(window, shift, fwhm, work->columns.data(), work->dcolumns.data(),
                                           *work, work->d2columns.data(), stride());
  }
  // At the profiles already in the workspace (shift `shift`).
  bool from_profiles(double shift) const {
    auto& ws = *work;
    state->shift = std::numeric_limits<double>::quiet_NaN();
    state->solved = false;
    constexpr std::size_t NT = NL > 0 ? NB + 1 : 0;
    double sums[kMaxSums];
    projected_normal<NL, NT>(stride(), nl, nb + 1, ws.columns.data(), ws.weight.data(),
                             ws.weighted.data(), sums);
    if (!projected_solve<NL, NB>(sums, nl, nb, gbb, gby, yy, *state)) return false;
    projected_slopes<NL, NT>(stride(), nl, nb + 1, ws.columns.data(), ws.dcolumns.data(),
                             ws.d2columns.data(), ws.weight.data(), ws.weighted.data(), state->beta,
                             sums);
    projected_finish<NL, NB>(sums, nl, nb, *state);
    state->shift = shift;
    return std::isfinite(state->chi2) && std::isfinite(state->vv);
  }
  // (At the shift of the last evaluation, its state again.)
  bool normal(const double* p, double& chi2, double* jtj, double* jtr) const {
    if (!(state->shift == p[0])) {
      profiles(p[0]);
      if (!from_profiles(p[0])) return false;
    }
    chi2 = state->chi2;
    if (jtj != nullptr) {
      double exact = 0.0;
      derivatives(*state, jtj[0], exact, jtr[0], nullptr);
      if (std::isfinite(exact) && exact > 0.0) jtj[0] = exact;
    }
    return true;
  }
  // At the state st: Gauss-Newton's and the exact curvature of chi2 / 2 in
  // the shift, its gradient, and (if dbeta is not null) the derivative of the
  // linear solution, beta' = (A~^T A~)^-1 (g - u). Gauss-Newton's (Kaufman's
  // J^T J) misses the residual terms and overshoots by about a quarter per
  // step on noise-dominated windows; the exact one converges quadratically
  // (the LM takes Gauss-Newton's where it is not positive, away from a
  // minimum).
  // (The solves, c = (A~^T A~)^-1 u among them, are kept in st: for the
  // covariance, and for the next call at the same state.)
  void derivatives(ProjectedState& st, double& gauss_newton, double& exact, double& gradient,
                   double* dbeta) const {
    constexpr int K = static_cast<int>(NL > 0 ? NL + NB : 0);
    const std::size_t k = NL > 0 ? NL + NB : nl + nb;
    double* c = st.n_inv_u;
    double* e = st.n_inv_g;
    if (!st.solved) {
      std::copy(st.u, st.u + k, c);
      small_ldlt_solve<K>(st.L, static_cast<int>(k), c);
      std::copy(st.g, st.g + k, e);
      small_ldlt_solve<K>(st.L, static_cast<int>(k), e);
      st.solved = true;
    }
    double uc = 0.0, gc = 0.0, ge = 0.0;
    for (std::size_t a = 0; a < k; ++a) {
      uc += st.u[a] * c[a];
      gc += st.g[a] * c[a];
      ge += st.g[a] * e[a];
      if (dbeta != nullptr) dbeta[a] = e[a] - c[a];
    }
    gauss_newton = st.vv - uc;
    exact = gauss_newton + 2.0 * gc - ge - st.bh;
    gradient = -st.vr;
  }
};

// w times each background column, then w y, as rows of stride np = padded(n)
// with zeros from n (and the weights zeroed from n to np).
EXOSPEC_CLONES void projected_targets(const double* y, const double* background, std::size_t n, std::size_t nb,
                                      double* w, double* Y) noexcept {
  const std::size_t np = padded(n);
  std::fill(w + n, w + np, 0.0);
  for (std::size_t b = 0; b < nb; ++b) {
    double* row = Y + b * np;
    for (std::size_t i = 0; i < n; ++i) row[i] = w[i] * background[b * n + i];
    std::fill(row + n, row + np, 0.0);
  }
  double* wy = Y + nb * np;
  for (std::size_t i = 0; i < n; ++i) wy[i] = w[i] * y[i];
  std::fill(wy + n, wy + np, 0.0);
}

// Sets up a variable-projection solve (after the weights changed): the
// weighted targets in work.weighted (projected_targets) and their constant
// sums gbb = B^T W B (nb x nb), gby = B^T W y and (returned) y^T W y.
double projected_setup(const double* y, const double* background, std::size_t n, std::size_t nb,
                       LineFitter::Workspace& work, double* gbb, double* gby) {
  double* w = work.weight.data();
  projected_targets(y, background, n, nb, w, work.weighted.data());
  double yy = 0.0;
  with_size(static_cast<int>(nb), [&]<int K>() { yy = normal_equations<K>(n, background, w, y, gbb, gby); });
  return yy;
}

#undef EXOSPEC_LOAD_LANES
#undef EXOSPEC_SUM_LANES

}  // namespace

template <class T>
void LineFitter::solve_nonlinear(std::size_t wi, std::span<const double> scale, std::span<const double> offset,
                                 std::span<const T> denoised, std::size_t good, Workspace& work,
                                 Solution& sol) const {
  const Window& w = windows_[wi];
  const std::size_t n = w.size, nl = w.lines.size();
  const int k = w.k;
  const double fwhm0 = settings_.fwhm_nm;
  const double max_shift = settings_.max_shift_fwhm * fwhm0;
  // The denoised spectrum's highest pixel within +-max_shift of line a's
  // strongest component (n if none).
  auto denoised_peak = [&](std::size_t a) {
    std::size_t peak = n;
    double vmax = -std::numeric_limits<double>::infinity();
    for (std::size_t i = w.reach_begin[a]; i < w.reach_end[a]; ++i) {
      const double v = static_cast<double>(denoised[w.first + i]);
      if (v > vmax) {  // (false for NaN)
        vmax = v;
        peak = i;
      }
    }
    return peak;
  };
  const bool search = !denoised.empty() && max_shift > 0.0;
  // The brightest line: by S/N of the linear solution at zero shift, or,
  // without one (free shift, fixed weights: the variable projection needs
  // no linear start), by the denoised peak above the lower of the window's
  // two end pixels, over the peak pixel's noise.
  std::size_t best = 0, peaks[kMaxParams];
  const bool by_peaks = !linear_start(scale) && search && nl > 1;  // (peaks[] then filled)
  if (linear_start(scale)) {
    for (std::size_t a = 1; a < nl; ++a) {
      if (sol.beta(static_cast<Eigen::Index>(a)) / sol.sigma(static_cast<Eigen::Index>(a)) >
          sol.beta(static_cast<Eigen::Index>(best)) / sol.sigma(static_cast<Eigen::Index>(best))) {
        best = a;
      }
    }
  } else if (by_peaks) {
    // (The background from the window's end pixels.)
    const double ends = std::min(static_cast<double>(denoised[w.first]),
                                 static_cast<double>(denoised[w.first + n - 1]));
    const double floor = std::isfinite(ends) ? ends : 0.0;
    double top = -std::numeric_limits<double>::infinity();
    for (std::size_t a = 0; a < nl; ++a) {
      peaks[a] = denoised_peak(a);
      if (peaks[a] >= n) continue;
      const double snr = (static_cast<double>(denoised[w.first + peaks[a]]) - floor) *
                         std::sqrt(work.weight[peaks[a]]);
      if (snr > top) {
        top = snr;
        best = a;
      }
    }
  }
  // Initial shift: where the denoised spectrum peaks near the brightest
  // line (parabolic interpolation).
  double shift0 = 0.0;
  if (search) {
    const double l0 = w.strongest_nm[best];
    const std::size_t peak = by_peaks ? peaks[best] : denoised_peak(best);
    if (peak < n) {
      const double vmax = static_cast<double>(denoised[w.first + peak]);
      const double ym = static_cast<double>(denoised[w.first + peak - 1]);
      const double yp = static_cast<double>(denoised[w.first + peak + 1]);
      const double curv = ym - 2.0 * vmax + yp;
      double frac = 0.0;
      if (std::isfinite(ym) && std::isfinite(yp) && curv < 0.0) frac = std::clamp(0.5 * (ym - yp) / curv, -0.5, 0.5);
      const double c0 = 0.5 * (w.edges[peak] + w.edges[peak + 1]);
      const double step = frac >= 0.0 ? 0.5 * (w.edges[peak + 2] - w.edges[peak])
                                      : 0.5 * (w.edges[peak + 1] - w.edges[peak - 1]);
      shift0 = std::clamp(c0 + frac * step - l0, -max_shift, max_shift);
    }
  }
  const double* background = w.basis.data() + nl * n;
  const Solution linear = sol;  // (kept: tied mode falls back to it)
  // With the width fixed, the shift alone, by variable projection
  // (ProjectedWindowModel); with it free, all parameters (WindowModel),
  // starting from the linear solution at zero shift and this initial shift.
  // Both use the weights of the linear fit (its Poisson refits); then the
  // weights from the fitted model and the linear parameters once more.
  const bool projected_fit = settings_.width == WidthMode::kFixed;
  const std::size_t nb = static_cast<std::size_t>(k) - nl;
  LmResult res;
  // The solver's status into sol; false (and, tied, the linear solution
  // back) unless it converged or ran out of iterations.
  auto solved = [&] {
    sol.status = from_lm(res.status);
    sol.nonlinear = true;
    if (sol.status == FitStatus::kConverged || sol.status == FitStatus::kMaxIterations) return true;
    if (settings_.shift == ShiftMode::kTied) sol = linear;  // then solved at the tied shift
    return false;
  };
  if (projected_fit) {
    with_window_shape(nl, nb, [&]<std::size_t NL, std::size_t NB>() {
      double gbb[kMaxParams * kMaxParams], gby[kMaxParams];
      ProjectedState state;
      ProjectedWindowModel<NL, NB> projected{this, wi, n, nl, nb, fwhm0, &work, gbb, gby, 0.0, &state};
      projected.yy = projected_setup(work.y.data(), background, n, nb, work, gbb, gby);
      Eigen::Matrix<double, 1, 1> s;
      s(0) = shift0;
      // Near zero shift, a first Newton step from the profiles' Taylor
      // series (no evaluation at the pixel edges): the solver starts where
      // it lands if chi2 there (evaluated in full) is no worse than the
      // series' chi2 at the initial shift, within 0.1 (the series' own
      // error; a step that goes uphill by more is left to the solver from
      // the initial shift), so that most windows need one full evaluation
      // instead of two.
      const double sigma = fwhm0 / kFwhmPerSigma;
      if (!w.taylor.empty() && std::abs(shift0) <= kTaylorReach * sigma) {
        taylor_columns(projected.stride(), nl, w.taylor.data(), shift0, work.columns.data(),
                       work.dcolumns.data(), work.d2columns.data());
        const bool ok = projected.from_profiles(shift0);
        state.shift = std::numeric_limits<double>::quiet_NaN();  // (an approximation)
        double gauss_newton = 0.0, curvature = 0.0, gradient = 0.0;
        if (ok) projected.derivatives(state, gauss_newton, curvature, gradient, nullptr);
        if (ok && std::isfinite(curvature) && curvature > 0.0 && std::isfinite(gradient)) {
          const double chi2_taylor = state.chi2;
          const double to = std::clamp(shift0 - gradient / curvature, -max_shift, max_shift);
          double chi2 = 0.0;
          if (projected.normal(&to, chi2, nullptr, nullptr) && chi2 <= chi2_taylor + 0.1) s(0) = to;
        }
      }
      res = work.solvers->shift_lm[wi].solve(projected, s);
      if (!solved()) return;
      // (The last evaluation may have been a rejected trial; if it was not,
      // the model reuses its state.)
      double chi2 = 0.0;
      if (!projected.normal(s.data(), chi2, nullptr, nullptr)) {
        sol.status = FitStatus::kNotFinite;
        return;
      }
      if (refits(scale) > 0) {
        // The basis at s(0) with row stride n (the line profiles, then the
        // background) in work.weighted, whose targets are rewritten next.
        double* basis = work.weighted.data();
        const std::size_t np = padded(n);
        for (std::size_t a = 0; a < nl; ++a) {
          std::copy(work.columns.begin() + static_cast<std::ptrdiff_t>(a * np),
                    work.columns.begin() + static_cast<std::ptrdiff_t>(a * np + n), basis + a * n);
        }
        std::copy(background, background + nb * n, basis + nl * n);
        update_weights(w, basis, state.beta, scale, offset, work);
        projected.yy = projected_setup(work.y.data(), background, n, nb, work, gbb, gby);
        if (!projected.from_profiles(s(0))) {
          sol.status = FitStatus::kSingular;
          return;
        }
      }
      // The solver stops before a Newton step below 3e-2 of the shift's
      // standard error (newton_tol): that step, taken on the quadratic model
      // instead of evaluated, brings the shift, the linear parameters
      // (beta + beta' step) and chi2 to the minimum to second order (with
      // refits, the minimum under the final weights).
      double gauss_newton = 0.0;
      {
        double curvature = 0.0, gradient = 0.0, dbeta[kMaxParams] = {};
        projected.derivatives(state, gauss_newton, curvature, gradient, dbeta);
        if (std::isfinite(curvature) && curvature > 0.0 && std::isfinite(gradient)) {
          const double to = std::clamp(s(0) - gradient / curvature, -max_shift, max_shift), step = to - s(0);
          for (int a = 0; a < k; ++a) state.beta[a] += dbeta[a] * step;
          state.chi2 += (2.0 * gradient + curvature * step) * step;
          s(0) = to;
        }
      }
      // Covariance of (linear parameters, shift): the inverse of the full
      // J^T J = [[N, u], [u^T, v^T v]] (N = A~^T A~) at the solution, from
      // the blocks of the last evaluation (no further evaluation at the
      // pixel edges) and N's factor: with c = N^-1 u (kept in the state by
      // derivatives()) and the Schur
      // complement S = v^T v - u^T c (Gauss-Newton's curvature in the
      // shift), var(shift) = 1 / S and var(beta_a) = (N^-1)_aa + c_a^2 / S.
      // Singular unless S passes the factorisation's pivot test against the
      // full matrix's diagonal.
      constexpr int K = NL > 0 ? static_cast<int>(NL + NB) : 0;
      const std::size_t ku = static_cast<std::size_t>(k), m = ku + 1;
      double dmax = state.vv;
      for (std::size_t a = 0; a < ku; ++a) dmax = std::max(dmax, state.N[a * ku + a]);
      if (!(gauss_newton > 1e-14 * dmax)) {
        sol.status = FitStatus::kSingular;
        return;
      }
      // (Standard errors of the lines and the shift only; the background's
      // are not used.)
      for (std::size_t a = 0; a < ku; ++a) {
        sol.beta(static_cast<Eigen::Index>(a)) = state.beta[a];
        sol.sigma(static_cast<Eigen::Index>(a)) =
            a < nl ? std::sqrt(inverse_diagonal<K>(state.L, k, static_cast<int>(a)) +
                               state.n_inv_u[a] * state.n_inv_u[a] / gauss_newton)
                   : kNaN;
      }
      sol.shift_sigma = std::sqrt(1.0 / gauss_newton);
      const std::size_t dof = sol.good > m ? sol.good - m : 1;
      sol.chi2_reduced = state.chi2 / static_cast<double>(dof);
      sol.shift = s(0);
      sol.fwhm = fwhm0;
      sol.fwhm_sigma = kNaN;
    });
  } else {
    auto& p = work.solvers->p[wi];
    for (int a = 0; a < k; ++a) p(a) = sol.beta(a);
    p(k) = shift0;
    p(k + 1) = fwhm0;
    for (std::size_t i = 0; i < n; ++i) work.sqrt_weight[i] = std::sqrt(work.weight[i]);
    res = work.solvers->lm[wi].solve(WindowModel{this, wi, n, nl, k, background, &work}, p);
    if (!solved()) return;
    if (refits(scale) > 0) {
      const double* cols = window_basis(wi, p(k), p(k + 1), work);
      update_weights(w, cols, p.data(), scale, offset, work);
      Solution lin = sol;
      if (solve_linear(w, cols, scale, offset, good, 0, work, lin)) {
        for (int a = 0; a < k; ++a) p(a) = lin.beta(a);
      }
    }
    nonlinear_covariance(wi, p.data(), work, sol);
  }
  if (sol.status == FitStatus::kConverged && res.status == LmStatus::kMaxIterations) {
    sol.status = FitStatus::kMaxIterations;
  }
}

void LineFitter::nonlinear_covariance(std::size_t wi, const double* p, Workspace& work,
                                      Solution& sol) const {
  const Window& w = windows_[wi];
  const std::size_t n = w.size, nl = w.lines.size();
  const int k = w.k;
  const bool free_width = settings_.width == WidthMode::kFree;
  const int m = k + (free_width ? 2 : 1);
  for (std::size_t i = 0; i < n; ++i) work.sqrt_weight[i] = std::sqrt(work.weight[i]);
  double* J = work.weighted.data();  // n x (k + 2)
  const WindowModel model{this, wi, n, nl, k, w.basis.data() + nl * n, &work};
  std::vector<double>& res = work.residual;
  model(p, res.data(), J);
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kMaxParams + 2, kMaxParams + 2>;
  Mat jtj(m, m);
  const Eigen::Map<const Eigen::MatrixXd> Jm(J, static_cast<Eigen::Index>(n), k + 2);
  for (int a = 0; a < m; ++a) {
    for (int b = 0; b <= a; ++b) jtj(a, b) = jtj(b, a) = Jm.col(a).dot(Jm.col(b));
  }
  Eigen::LDLT<Mat> ldlt(jtj);
  if (ldlt.info() != Eigen::Success || !(ldlt.vectorD().minCoeff() > 1e-14 * ldlt.vectorD().maxCoeff())) {
    sol.status = FitStatus::kSingular;
    return;
  }
  const Mat cov = ldlt.solve(Mat::Identity(m, m));
  const double chi2 = Eigen::Map<const Eigen::VectorXd>(res.data(), static_cast<Eigen::Index>(n)).squaredNorm();
  for (int a = 0; a < k; ++a) {
    sol.beta(a) = p[a];
    sol.sigma(a) = std::sqrt(std::max(cov(a, a), 0.0));
  }
  sol.shift = p[k];
  sol.shift_sigma = std::sqrt(std::max(cov(k, k), 0.0));
  sol.fwhm = p[k + 1];
  sol.fwhm_sigma = free_width ? std::sqrt(std::max(cov(k + 1, k + 1), 0.0)) : kNaN;
  const std::size_t dof = sol.good > static_cast<std::size_t>(m) ? sol.good - static_cast<std::size_t>(m) : 1;
  sol.chi2_reduced = chi2 / static_cast<double>(dof);
}

void LineFitter::write(const Window& w, const Solution& sol, const LineFitResult& out) const {
  const bool ok = sol.status == FitStatus::kConverged || sol.status == FitStatus::kMaxIterations;
  for (std::size_t c = 0; c < w.lines.size(); ++c) {
    const std::size_t j = w.lines[c];
    const auto col = static_cast<Eigen::Index>(c);
    out.brightness[j] = ok ? sol.beta(col) : kNaN;
    out.sigma[j] = ok ? sol.sigma(col) : kNaN;
    out.center_nm[j] = lines_[j].wavelength_nm + (ok ? sol.shift : 0.0);
    out.fwhm_nm[j] = ok ? sol.fwhm : settings_.fwhm_nm;
    out.chi2_reduced[j] = ok ? static_cast<float>(sol.chi2_reduced) : std::numeric_limits<float>::quiet_NaN();
    out.status[j] = static_cast<std::uint8_t>(sol.status);
  }
}

template <class T>
void LineFitter::fit(std::span<const T> radiance, std::span<const T> variance,
                     std::span<const std::uint8_t> quality, std::span<const double> scale,
                     std::span<const double> offset, const LineFitResult& out, Workspace& work,
                     std::span<const T> denoised) const {
  const bool invalid = !quality.empty() &&
                       (quality[0] & (quality::kInvalidExposure | quality::kInvalidTemperature));
  auto& sols = work.solvers->solution;
  const ShiftMode mode = settings_.shift;
  // Shift and width measured by the bright windows (tied mode).
  double sum_w = 0.0, sum_shift = 0.0, sum_wf = 0.0, sum_fwhm = 0.0;
  for (std::size_t wi = 0; wi < windows_.size(); ++wi) {
    const Window& w = windows_[wi];
    Solution& sol = sols[wi];
    sol.shift = 0.0;
    sol.fwhm = settings_.fwhm_nm;
    sol.shift_sigma = sol.fwhm_sigma = kNaN;
    sol.nonlinear = false;
    if (invalid) {
      sol.status = FitStatus::kInvalidSpectrum;
      continue;
    }
    std::size_t good = 0;
    if (!prepare_weights(w, radiance, variance, quality, work, good)) {
      sol.status = FitStatus::kTooFewPixels;
      continue;
    }
    if (!linear_start(scale)) {
      sol.status = FitStatus::kConverged;  // (until the nonlinear fit says otherwise)
      sol.good = good;
      solve_nonlinear(wi, scale, offset, denoised, good, work, sol);
      continue;
    }
    if (!solve_linear(w, w.basis.data(), scale, offset, good, refits(scale), work, sol)) continue;
    if (mode == ShiftMode::kFixed) continue;
    double snr = 0.0;
    for (std::size_t a = 0; a < w.lines.size(); ++a) {
      const auto i = static_cast<Eigen::Index>(a);
      snr = std::max(snr, sol.beta(i) / sol.sigma(i));
    }
    if (mode == ShiftMode::kTied && !(snr >= settings_.shift_min_snr)) continue;
    solve_nonlinear(wi, scale, offset, denoised, good, work, sol);
    if (sol.status == FitStatus::kConverged && sol.shift_sigma > 0.0) {
      const double ws = 1.0 / (sol.shift_sigma * sol.shift_sigma);
      sum_w += ws;
      sum_shift += ws * sol.shift;
      if (settings_.width == WidthMode::kFree && sol.fwhm_sigma > 0.0) {
        const double wf = 1.0 / (sol.fwhm_sigma * sol.fwhm_sigma);
        sum_wf += wf;
        sum_fwhm += wf * sol.fwhm;
      }
    }
  }
  if (mode == ShiftMode::kTied && sum_w > 0.0) {
    // The other windows at the bright windows' shift (and width): linear.
    const double shift = sum_shift / sum_w;
    const double fwhm = sum_wf > 0.0 ? sum_fwhm / sum_wf : settings_.fwhm_nm;
    for (std::size_t wi = 0; wi < windows_.size(); ++wi) {
      const Window& w = windows_[wi];
      Solution& sol = sols[wi];
      if (sol.nonlinear || sol.status != FitStatus::kConverged) continue;
      std::size_t good = 0;
      prepare_weights(w, radiance, variance, quality, work, good);
      solve_linear(w, window_basis(wi, shift, fwhm, work), scale, offset, good, refits(scale), work, sol);
      sol.shift = shift;
      sol.fwhm = fwhm;
    }
  }
  for (std::size_t wi = 0; wi < windows_.size(); ++wi) write(windows_[wi], sols[wi], out);
}

template void LineFitter::fit<float>(std::span<const float>, std::span<const float>,
                                     std::span<const std::uint8_t>, std::span<const double>,
                                     std::span<const double>, const LineFitResult&, Workspace&,
                                     std::span<const float>) const;
template void LineFitter::fit<double>(std::span<const double>, std::span<const double>,
                                      std::span<const std::uint8_t>, std::span<const double>,
                                      std::span<const double>, const LineFitResult&, Workspace&,
                                      std::span<const double>) const;

}  // namespace exospec::kernels
