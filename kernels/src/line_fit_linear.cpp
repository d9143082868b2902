// The line fit's linear solve: usable pixels and their weights, the normal
// equations in one pass (8-lane accumulators, one clone set per size), and the
// Poisson refits with the fitted model's variance.
#include "line_fit_detail.hpp"

namespace exospec::kernels {
namespace line_fit_detail {

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

}  // namespace line_fit_detail
using namespace line_fit_detail;

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

template bool LineFitter::prepare_weights<float>(const Window&, std::span<const float>, std::span<const float>,
                                                 std::span<const std::uint8_t>, Workspace&, std::size_t&) const;
template bool LineFitter::prepare_weights<double>(const Window&, std::span<const double>, std::span<const double>,
                                                  std::span<const std::uint8_t>, Workspace&, std::size_t&) const;

}  // namespace exospec::kernels
