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
  const std::size_t lo = row >= hw ? row - hw : 0, hi = std::min(rows - 1, row + hw);
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
    for (std::size_t a = k; a < k + 3; ++a) o[a] = own[a];
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
      for (std::size_t a = 0; a < k; ++a) o[a] = kNaN;
      continue;
    }
    const double inv_scale = scale > 0.0 ? 1.0 / scale : 0.0;
    // Moments sum x^m (m <= 4) and sum x^m y_a (m <= 2) of the neighbours.
    double mx[5] = {}, my[kMaxParams][3] = {};
    for (std::size_t q = lo; q <= hi; ++q) {
      if (!usable(q)) continue;
      const double x = offset_of(q) * inv_scale, x2 = x * x;
      const double pw[5] = {1.0, x, x2, x2 * x, x2 * x2};
      for (int m = 0; m < 5; ++m) mx[m] += pw[m];
      const double* y = states.data() + q * S + w.state;
      for (std::size_t a = 0; a < k; ++a) {
        for (int m = 0; m < 3; ++m) my[a][m] += pw[m] * y[a];
      }
    }
    // The intercept of the highest order the neighbours support: z = G^-1 e_0
    // for the Gram matrix G of 1, x (, x^2), then a = z . (sum x^m y).
    double z[3] = {1.0 / mx[0], 0.0, 0.0};
    for (int order = count >= 5 ? 2 : count >= 3 ? 1 : 0; order > 0; --order) {
      const int m = order + 1;
      double G[9];
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < m; ++j) G[i * m + j] = mx[i + j];
      }
      double e[3] = {1.0, 0.0, 0.0};
      const bool ok = m == 3 ? small_ldlt<3>(G, 3) : small_ldlt<2>(G, 2);
      // (Pivots above 1e-14 of the largest diagonal element are not enough
      // here: distinct altitudes are needed, i.e. a well-conditioned G.)
      bool conditioned = ok;
      for (int i = 0; ok && i < m; ++i) conditioned &= 1.0 / G[i * m + i] > 1e-9 * mx[0];
      if (!conditioned) continue;
      if (m == 3) {
        small_ldlt_solve<3>(G, 3, e);
      } else {
        small_ldlt_solve<2>(G, 2, e);
      }
      for (int i = 0; i < 3; ++i) z[i] = i < m ? e[i] : 0.0;
      break;
    }
    for (std::size_t a = 0; a < k; ++a) o[a] = z[0] * my[a][0] + z[1] * my[a][1] + z[2] * my[a][2];
  }
}

template <class T>
void LineFitter::refit(std::span<const T> radiance, std::span<const T> variance,
                       std::span<const std::uint8_t> quality, std::span<const double> scale,
                       std::span<const double> offset, std::span<const double> reference,
                       const LineFitResult& out, Workspace& work) const {
  if (scale.empty()) return;
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kMaxParams + 2, kMaxParams + 2>;
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
    const double shift = ref[k], shift_sigma = ref[k + 1], fwhm = ref[k + 2];
    const bool measured = std::isfinite(shift_sigma);
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
    if (measured) {
      // The Fisher information over the linear parameters and the shift (and
      // the width, where it is free) at these weights.
      const bool free_width = settings_.width == WidthMode::kFree;
      const std::size_t m = k + (free_width ? 2 : 1);
      if (good <= m) continue;
      double beta[kMaxParams];
      for (std::size_t a = 0; a < k; ++a) beta[a] = sol.beta(static_cast<Eigen::Index>(a));
      double* cols = work.columns.data();
      window_profiles(wi, shift, fwhm, cols, beta, work.dshift.data(), work.dsigma.data(), work);
      const double* background = w.basis.data() + nl * n;
      auto column = [&](std::size_t a) -> const double* {
        return a < nl ? cols + a * n : a < k ? background + (a - nl) * n : a == k ? work.dshift.data()
                                                                                  : work.dsigma.data();
      };
      Mat F(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(m));
      const double* wt = work.weight.data();
      for (std::size_t a = 0; a < m; ++a) {
        const double* ca = column(a);
        for (std::size_t b = 0; b <= a; ++b) {
          const double* cb = column(b);
          double acc = 0.0;
          for (std::size_t i = 0; i < n; ++i) acc += wt[i] * ca[i] * cb[i];
          F(static_cast<Eigen::Index>(a), static_cast<Eigen::Index>(b)) = acc;
          F(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(a)) = acc;
        }
      }
      Eigen::LDLT<Mat> ldlt(F);
      if (ldlt.info() != Eigen::Success || !(ldlt.vectorD().minCoeff() > 1e-14 * ldlt.vectorD().maxCoeff())) {
        continue;  // (fit()'s values stay)
      }
      const Mat cov = ldlt.solve(Mat::Identity(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(m)));
      for (std::size_t a = 0; a < nl; ++a) {
        const auto i = static_cast<Eigen::Index>(a);
        sol.sigma(i) = std::sqrt(std::max(cov(i, i), 0.0));
      }
      sol.chi2_reduced *= static_cast<double>(good - k) / static_cast<double>(good - m);
    }
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

