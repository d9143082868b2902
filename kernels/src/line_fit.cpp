#include "exospec/kernels/line_fit.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "exospec/kernels/calibrate.hpp"

namespace exospec::kernels {
namespace {

constexpr int kMaxParams = 8;
using SmallMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kMaxParams, kMaxParams>;
using SmallVec = Eigen::Matrix<double, Eigen::Dynamic, 1, 0, kMaxParams, 1>;

std::pair<double, double> extent(const FitLineSpec& l) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& c : l.components) {
    lo = std::min(lo, c.wavelength_nm);
    hi = std::max(hi, c.wavelength_nm);
  }
  return {lo, hi};
}

}  // namespace

LineFitter::LineFitter(std::span<const double> wavelength_coeffs, std::size_t pixels,
                       std::vector<FitLineSpec> lines, const LineFitSettings& settings)
    : pixels_(pixels), lines_(std::move(lines)), settings_(settings) {
  if (settings.background_order < 0 || settings.background_order > 2) {
    throw std::invalid_argument("background order must be 0, 1 or 2");
  }
  if (!(settings.fwhm_nm > 0.0)) throw std::invalid_argument("the line FWHM must be > 0");
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
    // Background: Legendre-like monomials in x = (lambda - centre) / half-span.
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
  return {std::vector<double>(mx), std::vector<double>(mx), std::vector<double>(mx),
          std::vector<double>(mx * kMaxParams)};
}

template <class T>
void LineFitter::fit(std::span<const T> radiance, std::span<const T> variance,
                     std::span<const std::uint8_t> quality, std::span<const double> scale,
                     std::span<const double> offset, const LineFitResult& out,
                     Workspace& work) const {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  constexpr std::uint8_t kSkip = quality::kUnusable | quality::kParticleHit;
  const bool invalid = !quality.empty() &&
                       (quality[0] & (quality::kInvalidExposure | quality::kInvalidTemperature));
  const bool refine = !scale.empty() && settings_.refine_iterations > 0;
  for (const Window& w : windows_) {
    auto fail = [&](FitStatus st) {
      for (std::size_t j : w.lines) {
        out.brightness[j] = kNaN;
        out.sigma[j] = kNaN;
        out.center_nm[j] = lines_[j].wavelength_nm;
        out.fwhm_nm[j] = settings_.fwhm_nm;
        out.chi2_reduced[j] = std::numeric_limits<float>::quiet_NaN();
        out.status[j] = static_cast<std::uint8_t>(st);
      }
    };
    if (invalid) {
      fail(FitStatus::kInvalidSpectrum);
      continue;
    }
    const int k = w.k;
    const std::size_t n = w.size;
    std::size_t good = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t p = w.first + i;
      const double y = static_cast<double>(radiance[p]), v = static_cast<double>(variance[p]);
      const bool ok = !(quality[p] & kSkip) && std::isfinite(y) && std::isfinite(v) && v > 0.0;
      work.weight[i] = ok ? 1.0 / v : 0.0;
      good += ok ? 1 : 0;
    }
    if (good < static_cast<std::size_t>(k) + 3) {
      fail(FitStatus::kTooFewPixels);
      continue;
    }
    const double* A = w.basis.data();
    SmallMat ata(k, k);
    SmallVec aty(k), beta(k);
    Eigen::LDLT<SmallMat> ldlt(k);
    bool singular = false;
    for (int it = 0; it <= (refine ? settings_.refine_iterations : 0); ++it) {
      // A^T W A and A^T W y with Eigen products over the window (vectorised).
      const Eigen::Map<const Eigen::MatrixXd> Am(A, static_cast<Eigen::Index>(n), k);
      Eigen::Map<Eigen::MatrixXd> Aw(work.weighted.data(), static_cast<Eigen::Index>(n), k);
      const Eigen::Map<const Eigen::VectorXd> wv(work.weight.data(), static_cast<Eigen::Index>(n));
      Eigen::Map<Eigen::VectorXd> yv(work.y.data(), static_cast<Eigen::Index>(n));
      for (std::size_t i = 0; i < n; ++i) {
        const double y = static_cast<double>(radiance[w.first + i]);
        yv(static_cast<Eigen::Index>(i)) = work.weight[i] != 0.0 ? y : 0.0;  // NaN-free
      }
      Aw.noalias() = wv.asDiagonal() * Am;
      ata.noalias() = Am.transpose() * Aw;
      aty.noalias() = Aw.transpose() * yv;
      ldlt.compute(ata);
      if (ldlt.info() != Eigen::Success || !(ldlt.vectorD().minCoeff() > 1e-14 * ldlt.vectorD().maxCoeff())) {
        singular = true;
        break;
      }
      beta = ldlt.solve(aty);
      // The model, and (before a refit) weights from its expected counts.
      for (std::size_t i = 0; i < n; ++i) {
        double m = 0.0;
        for (int a = 0; a < k; ++a) m += A[static_cast<std::size_t>(a) * n + i] * beta(a);
        work.model[i] = m;
      }
      if (it < (refine ? settings_.refine_iterations : 0)) {
        // The variance model is the fitted model itself (negative line
        // brightness included), plus `line_prior_counts` expected counts
        // spread over each line's profile: the Poisson plug-in variance at
        // the fitted counts n is n + 1 under a uniform prior, and without that
        // count the plug-in sigma is correlated with the fit's own noise
        // (pull sd 1.1 at a few counts; docs/FIT.md). Clamping negative
        // lines at zero instead inflates sigma of lines at zero (pull sd
        // 0.87).
        const auto nl = static_cast<int>(w.lines.size());
        SmallVec prior = SmallVec::Zero(nl);
        for (int a = 0; a < nl; ++a) {
          double counts = 0.0;
          for (std::size_t i = 0; i < n; ++i) {
            if (work.weight[i] == 0.0) continue;
            counts += A[static_cast<std::size_t>(a) * n + i] * scale[w.first + i];
          }
          if (counts > 0.0) prior(a) = settings_.line_prior_counts / counts;
        }
        for (std::size_t i = 0; i < n; ++i) {
          if (work.weight[i] == 0.0) continue;
          const std::size_t p = w.first + i;
          const double s = scale[p];
          if (!(s > 0.0)) continue;
          double m = work.model[i];
          for (int a = 0; a < nl; ++a) m += A[static_cast<std::size_t>(a) * n + i] * prior(a);
          const double mu = std::max(m * s + offset[p], settings_.min_expected_counts);
          work.weight[i] = s * s / mu;
        }
      }
    }
    if (singular) {
      fail(FitStatus::kSingular);
      continue;
    }
    // chi2 with the weights of the final solve; covariance (A^T W A)^-1.
    double chi2 = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      if (work.weight[i] == 0.0) continue;  // (unusable pixels may be NaN)
      const double r = static_cast<double>(radiance[w.first + i]) - work.model[i];
      chi2 += work.weight[i] * r * r;
    }
    const double chi2r = chi2 / static_cast<double>(good - static_cast<std::size_t>(k));
    SmallMat cov = ldlt.solve(SmallMat::Identity(k, k));
    for (std::size_t c = 0; c < w.lines.size(); ++c) {
      const std::size_t j = w.lines[c];
      const auto col = static_cast<Eigen::Index>(c);
      out.brightness[j] = beta(col);
      out.sigma[j] = std::sqrt(std::max(cov(col, col), 0.0));
      out.center_nm[j] = lines_[j].wavelength_nm;
      out.fwhm_nm[j] = settings_.fwhm_nm;
      out.chi2_reduced[j] = static_cast<float>(chi2r);
      out.status[j] = static_cast<std::uint8_t>(FitStatus::kConverged);
    }
  }
}

template void LineFitter::fit<float>(std::span<const float>, std::span<const float>,
                                     std::span<const std::uint8_t>, std::span<const double>,
                                     std::span<const double>, const LineFitResult&,
                                     Workspace&) const;
template void LineFitter::fit<double>(std::span<const double>, std::span<const double>,
                                      std::span<const std::uint8_t>, std::span<const double>,
                                      std::span<const double>, const LineFitResult&,
                                      Workspace&) const;

}  // namespace exospec::kernels
