// The line fit's nonlinear solve: Levenberg-Marquardt over all parameters
// (WindowModel), and the shift alone by variable projection
// (ProjectedWindowModel, two passes over the pixels per evaluation), with the
// drivers that start, finish and take the covariance of each window's fit.
#include "line_fit_detail.hpp"

namespace exospec::kernels {
using namespace line_fit_detail;

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

template void LineFitter::solve_nonlinear<float>(std::size_t, std::span<const double>, std::span<const double>,
                                                 std::span<const float>, std::size_t, Workspace&,
                                                 Solution&) const;
template void LineFitter::solve_nonlinear<double>(std::size_t, std::span<const double>, std::span<const double>,
                                                  std::span<const double>, std::size_t, Workspace&,
                                                  Solution&) const;

}  // namespace exospec::kernels
