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

