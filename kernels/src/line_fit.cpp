#include "exospec/kernels/line_fit.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/levmar.hpp"
#include "line_fit_detail.hpp"

namespace exospec::kernels {
using namespace line_fit_detail;

namespace {
// The largest variance of reference()'s intercept, in units of one
// neighbour's variance (a quadratic through +-5 spectra: 0.26).
constexpr double kMaxReferenceVariance = 0.5;
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
std::optional<SigmaReference> parse_sigma_reference(std::string_view s) noexcept {
  if (s == "neighbours") return SigmaReference::kNeighbours;
  if (s == "self") return SigmaReference::kSelf;
  return std::nullopt;
}
const char* sigma_reference_name(SigmaReference r) noexcept {
  return r == SigmaReference::kNeighbours ? "neighbours" : "self";
}
const char* width_mode_name(WidthMode m) noexcept {
  return m == WidthMode::kFixed ? "fixed" : "free";
}

LineFitter::Workspace::Workspace() = default;
LineFitter::Workspace::Workspace(Workspace&&) noexcept = default;
LineFitter::Workspace& LineFitter::Workspace::operator=(Workspace&&) noexcept = default;
LineFitter::Workspace::~Workspace() = default;

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
  if (!out.window_state.empty()) {
    double* st = out.window_state.data() + w.state;
    const auto k = static_cast<std::size_t>(w.k);
    for (std::size_t a = 0; a < k; ++a) st[a] = ok ? sol.beta(static_cast<Eigen::Index>(a)) : kNaN;
    st[k] = ok ? sol.shift : kNaN;
    st[k + 1] = ok && sol.nonlinear ? sol.shift_sigma : kNaN;
    st[k + 2] = ok ? sol.fwhm : kNaN;
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

void LineFitter::reference(std::span<const double> states, std::span<const double> altitude_km,
                           std::span<const std::int64_t> scan, std::size_t row, int half_width,
                           std::span<double> out) const noexcept {
  const std::size_t S = state_size_;
  if (S == 0) return;
  const std::size_t rows = states.size() / S;
  const auto hw = static_cast<std::size_t>(std::max(half_width, 0));
  // The 2 hw nearest spectra of the scan: hw each side, or more on one side
  // where the scan (or the array) ends on the other.
  auto same_scan = [&](std::size_t q) { return scan.empty() || scan[q] == scan[row]; };
  std::size_t below = 0, above = 0;
  while (below < 2 * hw && below < row && same_scan(row - below - 1)) ++below;
  while (above < 2 * hw && row + above + 1 < rows && same_scan(row + above + 1)) ++above;
  const std::size_t take_below = std::min(below, 2 * hw - std::min(above, hw));
  const std::size_t take_above = std::min(above, 2 * hw - std::min(below, hw));
  const std::size_t lo = row - take_below, hi = row + take_above;
  const bool by_altitude = !altitude_km.empty() && std::isfinite(altitude_km[row]);
  // The abscissa of neighbour q (NaN: not usable), and the scale that maps
  // the neighbourhood to [-1, 1] (for the conditioning of the fit).
  auto offset_of = [&](std::size_t q) {
    return by_altitude ? altitude_km[q] - altitude_km[row]
                       : static_cast<double>(q) - static_cast<double>(row);
  };
  for (const Window& w : windows_) {
    const auto k = static_cast<std::size_t>(w.k);
    double* o = out.data() + w.state;
    const double* own = states.data() + row * S + w.state;
    // (The shift's sigma: NaN, the reference's shift is not measured in
    // this spectrum.)
    for (std::size_t a = k; a < k + 3; ++a) o[a] = own[a];
    o[k + 1] = kNaN;
    auto usable = [&](std::size_t q) {
      return q != row && (scan.empty() || scan[q] == scan[row]) && std::isfinite(states[q * S + w.state]) &&
             std::isfinite(offset_of(q));
    };
    std::size_t count = 0;
    double scale = 0.0;
    for (std::size_t q = lo; q <= hi; ++q) {
      if (!usable(q)) continue;
      ++count;
      scale = std::max(scale, std::abs(offset_of(q)));
    }
    if (count == 0) {
      for (std::size_t a = 0; a < k + 3; ++a) o[a] = kNaN;
      continue;
    }
    // The parameters predicted: the linear ones, the shift and the FWHM
    // (indices of the window's state); a shift or width that every
    // neighbour shares (fixed, or tied to one value) is copied exactly.
    std::size_t param[kMaxParams + 2];
    std::size_t np = 0;
    for (std::size_t a = 0; a < k; ++a) param[np++] = a;
    for (const std::size_t a : {k, k + 2}) {
      bool shared = true;
      for (std::size_t q = lo; q <= hi && shared; ++q) {
        if (usable(q)) shared = states[q * S + w.state + a] == own[a];
      }
      if (!shared) param[np++] = a;
    }
    const double inv_scale = scale > 0.0 ? 1.0 / scale : 0.0;
    // Moments sum x^m (m <= 4), sum x^m y_a (m <= 2) and sum y_a^2 of the
    // neighbours.
    double mx[5] = {}, my[kMaxParams + 2][3] = {}, yy[kMaxParams + 2] = {};
    for (std::size_t q = lo; q <= hi; ++q) {
      if (!usable(q)) continue;
      const double x = offset_of(q) * inv_scale, x2 = x * x;
      const double pw[5] = {1.0, x, x2, x2 * x, x2 * x2};
      for (int m = 0; m < 5; ++m) mx[m] += pw[m];
      const double* y = states.data() + q * S + w.state;
      for (std::size_t c = 0; c < np; ++c) {
        const double v = y[param[c]];
        for (int m = 0; m < 3; ++m) my[c][m] += pw[m] * v;
        yy[c] += v * v;
      }
    }
    // The polynomial fits of order 0, 1, 2 that the neighbours support
    // (distinct altitudes: a well-conditioned Gram matrix G of 1, x, x^2):
    // per order, the Cholesky factor and the intercept's variance in units
    // of one neighbour's, var = (G^-1)_00.
    const int top = count >= 5 ? 2 : count >= 3 ? 1 : 0;
    double factor[3][9];
    double var[3] = {1.0 / mx[0], kNaN, kNaN};
    bool have[3] = {true, false, false};
    for (int order = 1; order <= top; ++order) {
      const int m = order + 1;
      double* G = factor[order];
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < m; ++j) G[i * m + j] = mx[i + j];
      }
      const bool ok = m == 3 ? small_ldlt<3>(G, 3) : small_ldlt<2>(G, 2);
      // (Pivots above 1e-14 of the largest diagonal element are not enough
      // here: distinct altitudes are needed.)
      bool conditioned = ok;
      for (int i = 0; ok && i < m; ++i) conditioned &= 1.0 / G[i * m + i] > 1e-9 * mx[0];
      if (!conditioned) break;
      double e[3] = {1.0, 0.0, 0.0};
      if (m == 3) {
        small_ldlt_solve<3>(G, 3, e);
      } else {
        small_ldlt_solve<2>(G, 2, e);
      }
      have[order] = true;
      var[order] = e[0];
    }
    const auto n = static_cast<double>(count);
    for (std::size_t a = 0; a < np; ++a) {
      // Intercept and residual sum of squares of each order's fit.
      double intercept[3], rss[3];
      intercept[0] = my[a][0] / n;
      rss[0] = yy[a] - n * intercept[0] * intercept[0];
      for (int order = 1; order <= 2; ++order) {
        if (!have[order]) break;
        const int m = order + 1;
        double beta[3] = {my[a][0], my[a][1], my[a][2]};
        if (m == 3) {
          small_ldlt_solve<3>(factor[order], 3, beta);
        } else {
          small_ldlt_solve<2>(factor[order], 2, beta);
        }
        intercept[order] = beta[0];
        rss[order] = yy[a];
        for (int i = 0; i < m; ++i) rss[order] -= beta[i] * my[a][i];
      }
      // The highest order, unless its intercept is an extrapolation
      // (variance above kMaxReferenceVariance; a scan's ends) that the
      // neighbours do not show to be needed: then the next lower order,
      // when the two intercepts differ by less than 2 standard errors of
      // their difference, (var_o - var_{o-1}) s_o^2 for nested fits.
      int order = 2;
      while (order > 0 && !have[order]) --order;
      while (order > 0 && var[order] > kMaxReferenceVariance) {
        const double dof = n - static_cast<double>(order + 1);
        const double s2 = dof > 0.0 ? std::max(rss[order], 0.0) / dof : std::numeric_limits<double>::infinity();
        const double d = intercept[order] - intercept[order - 1];
        if (d * d > 4.0 * (var[order] - var[order - 1]) * s2) break;
        --order;
      }
      o[param[a]] = intercept[order];
    }
  }
}

template <class T>
void LineFitter::refit(std::span<const T> radiance, std::span<const T> variance,
                       std::span<const std::uint8_t> quality, std::span<const double> scale,
                       std::span<const double> offset, std::span<const double> reference,
                       const LineFitResult& out, Workspace& work) const {
  if (scale.empty()) return;
  for (std::size_t wi = 0; wi < windows_.size(); ++wi) {
    const Window& w = windows_[wi];
    const std::size_t nl = w.lines.size(), n = w.size, k = static_cast<std::size_t>(w.k);
    if (nl == 0 || n == 0) continue;
    const std::uint8_t status = out.status[w.lines[0]];
    if (status != static_cast<std::uint8_t>(FitStatus::kConverged) &&
        status != static_cast<std::uint8_t>(FitStatus::kMaxIterations)) {
      continue;
    }
    const double* ref = reference.data() + w.state;
    bool have = true;
    for (std::size_t a = 0; a < k + 3; ++a) have &= a == k + 1 || std::isfinite(ref[a]);
    if (!have) continue;
    // At the reference's shift and width: a brightness solved at this
    // spectrum's own fitted shift (or width) is biased up, by the fit of the
    // position to the noise; the neighbours' shift is independent of it and,
    // for a smoothly varying shift, off by far less than its own sigma (a
    // shift error enters the brightness only at second order).
    const double shift = ref[k], fwhm = ref[k + 2];
    std::size_t good = 0;
    if (!prepare_weights(w, radiance, variance, quality, work, good)) continue;
    const double* A = shift == 0.0 && fwhm == settings_.fwhm_nm ? w.basis.data()
                                                                 : window_basis(wi, shift, fwhm, work);
    // Weights of the reference model's expected counts (no prior counts: the
    // reference does not follow this spectrum's noise).
    model_weights(n, nl, k, A, ref, 0.0, scale.data() + w.first, offset.data() + w.first,
                  settings_.min_expected_counts, work.weight.data(), work.model.data());
    Solution& sol = work.solvers->solution[wi];
    if (!solve_linear(w, A, scale, offset, good, 0, work, sol)) continue;
    for (std::size_t c = 0; c < nl; ++c) {
      const std::size_t j = w.lines[c];
      const auto i = static_cast<Eigen::Index>(c);
      out.brightness[j] = sol.beta(i);
      out.sigma[j] = sol.sigma(i);
      out.chi2_reduced[j] = static_cast<float>(sol.chi2_reduced);
    }
  }
}

template void LineFitter::refit<float>(std::span<const float>, std::span<const float>,
                                       std::span<const std::uint8_t>, std::span<const double>,
                                       std::span<const double>, std::span<const double>,
                                       const LineFitResult&, Workspace&) const;
template void LineFitter::refit<double>(std::span<const double>, std::span<const double>,
                                        std::span<const std::uint8_t>, std::span<const double>,
                                        std::span<const double>, std::span<const double>,
                                        const LineFitResult&, Workspace&) const;

template void LineFitter::fit<float>(std::span<const float>, std::span<const float>,
                                     std::span<const std::uint8_t>, std::span<const double>,
                                     std::span<const double>, const LineFitResult&, Workspace&,
                                     std::span<const float>) const;
template void LineFitter::fit<double>(std::span<const double>, std::span<const double>,
                                      std::span<const std::uint8_t>, std::span<const double>,
                                      std::span<const double>, const LineFitResult&, Workspace&,
                                      std::span<const double>) const;

}  // namespace exospec::kernels

