#pragma once
// What the translation units of the line fit share (kernels/src/line_fit*.cpp;
// not installed): the small factorisations, the explicit 8-lane vectors, the
// vectorised loops' declarations, and the private types of LineFitter.
//   line_fit_windows.cpp    the windows: grouping, bases, Taylor series, workspaces
//   line_fit_model.cpp      the model: profiles and their derivatives at the pixel edges
//   line_fit_linear.cpp     the linear solve: weights, normal equations, Poisson refits
//   line_fit_projected.cpp  the nonlinear solve: variable projection, LM drivers, covariance
//   line_fit.cpp            the driver of one spectrum's windows (tied / free shift)
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/levmar.hpp"
#include "exospec/kernels/line_fit.hpp"
#include "target_clones.hpp"

namespace exospec::kernels::line_fit_detail {

constexpr int kMaxParams = 8;      // linear parameters of a window
using SmallMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kMaxParams, kMaxParams>;
using SmallVec = Eigen::Matrix<double, Eigen::Dynamic, 1, 0, kMaxParams, 1>;
using ParamVec = Eigen::Matrix<double, Eigen::Dynamic, 1>;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::uint8_t kSkip = quality::kUnusable | quality::kParticleHit;
constexpr std::size_t kLanes = 8;  // doubles in an AVX-512 register
constexpr std::size_t padded(std::size_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

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
void add_component(std::size_t n, bool first, double f, double g, const double* cdf, const double* pdf,
                   const double* iw, double* col, double* dcol) noexcept;
// d2col += h (xpdf[i+1] - xpdf[i]) / width_i (= with `first`).
void add_component_curvature(std::size_t n, bool first, double h, const double* xpdf, const double* iw,
                             double* d2col) noexcept;
// Phi, phi and x phi of a standard normal at x_k = (edge_k - mu) / sigma.
void normal_at_edges(const double* edges, std::size_t m, double mu, double inv_sigma, double* cdf,
                     double* pdf, double* xpdf) noexcept;

// A Taylor-series first evaluation of the shift-only fit: each line's
// profile and its shift derivatives at zero shift, kept per window.
constexpr std::size_t kTaylorTerms = 6;  // the profile and its first five derivatives
// Within this many sigma of zero shift (series to s^3; error ~ (s/sigma)^4 / 24).
constexpr double kTaylorReach = 0.5;
// The profiles, first and second shift derivatives at shift s (rows of
// stride np) from the Taylor series at zero shift, terms to s^3 each.
void taylor_columns(std::size_t np, std::size_t nl, const double* __restrict T, double s,
                    double* __restrict col, double* __restrict dcol, double* __restrict d2col) noexcept;

// Explicit 8-lane vectors (GCC's vector extension): the compiler keeps them
// in registers where it can and splits them for narrower targets; the lanes
// are added up in a fixed order, so the result does not depend on anything
// but the inputs.
using Lanes = double __attribute__((vector_size(kLanes * sizeof(double))));
// An unaligned load of 8 doubles. GCC: a cast to an under-aligned vector
// type (aligned(8), which GCC honours). clang keeps a vector type's natural
// alignment whatever the attribute says (UBSan then reports misaligned
// loads), so there it is a memcpy, which compiles into the same unaligned
// loads. (A cast or a statement expression, not a function: returning a
// vector this wide from a function would change the ABI between the target
// clones.)
#if defined(__clang__)
#define EXOSPEC_LOAD_LANES(p) \
  __extension__({                \
    Lanes lanes_;                \
    __builtin_memcpy(&lanes_, (p), sizeof lanes_); \
    lanes_;                      \
  })
#else
using UnalignedLanes = double __attribute__((vector_size(kLanes * sizeof(double)), aligned(8), may_alias));
#define EXOSPEC_LOAD_LANES(p) (*reinterpret_cast<const UnalignedLanes*>(p))
#endif

// The horizontal sum of a vector's lanes, in a fixed order.
#define EXOSPEC_SUM_LANES(v) ((((v)[0] + (v)[4]) + ((v)[2] + (v)[6])) + (((v)[1] + (v)[5]) + ((v)[3] + (v)[7])))

// N = A^T W A (K x K, row-major), rhs = A^T W y and (returned) y^T W y for
// the columns A (n x K, column-major) in one pass over the pixels (one clone
// set per K: line_fit_linear.cpp).
#define EXOSPEC_NORMAL_EQUATIONS(K)                                                         \
  double normal_equations_##K(std::size_t n, const double* A, const double* w, const double* y, \
                              double* N, double* rhs) noexcept;
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
std::size_t usable_weights(std::size_t n, const float* r, const float* v, const std::uint8_t* q, double* w,
                           double* y) noexcept;
std::size_t usable_weights(std::size_t n, const double* r, const double* v, const std::uint8_t* q, double* w,
                           double* y) noexcept;

// The weights of the usable pixels (weight 0 stays 0) from the model
// m = A beta + prior (n x k columns A, nl lines first): expected counts
// mu = m s + o (at least `floor`), weight s^2 / mu. The prior puts
// `prior_counts` expected counts on each line's profile. m: scratch (n).
void model_weights(std::size_t n, std::size_t nl, std::size_t k, const double* A, const double* beta,
                   double prior_counts, const double* s, const double* o, double floor, double* wt,
                   double* m) noexcept;

// Calls f.template operator()<K>() with K = k (1 <= k <= kMaxParams).
template <class F>
inline void with_size(int k, F&& f) {
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

inline FitStatus from_lm(LmStatus s) noexcept {
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

}  // namespace exospec::kernels::line_fit_detail

namespace exospec::kernels {

// One window's result before it is written out.
struct LineFitter::Solution {
  FitStatus status = FitStatus::kConverged;
  line_fit_detail::SmallVec beta, sigma;  // linear parameters; sigma of the lines' brightness
  double chi2_reduced = line_fit_detail::kNaN;
  double shift = 0.0, shift_sigma = line_fit_detail::kNaN, fwhm = 0.0, fwhm_sigma = line_fit_detail::kNaN;
  bool nonlinear = false;
  std::size_t good = 0;
};

struct LineFitter::Workspace::Solvers {
  std::vector<LevenbergMarquardt<Eigen::Dynamic>> lm;  // per window: all parameters
  std::vector<LevenbergMarquardt<1>> shift_lm;         // per window: the shift alone
  std::vector<Solution> solution;                       // per window
  std::vector<line_fit_detail::ParamVec> p;                              // per window: parameters
};

}  // namespace exospec::kernels
