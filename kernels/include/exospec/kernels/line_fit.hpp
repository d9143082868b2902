#pragma once
// Emission-line fitting of calibrated spectra: brightness (R) of every line of
// a channel's catalogue, with honest 1-sigma uncertainties.
//
// Model, per fit window: a polynomial background of order 0-2 in wavelength
// plus, for each line, brightness B x its line profile. The profile is the
// instrument's Gaussian line spread (FWHM fixed) *integrated over each pixel*
// and divided by the pixel width, which is exactly what a pixel sees. It is
// the same definition as the simulator's truth (spectrum_model.hpp). Sampling
// the Gaussian at the pixel centre instead would bias every brightness by the
// ratio of the two (about 0.3 % at 10 pixels per FWHM, growing as
// 1/sigma^2 for narrower lines; see docs/FIT.md). A multiplet is one line: its components have fixed
// separations and intensity ratios from the catalogue, B is summed over them,
// and the reported centre is that of the strongest component.
//
// Windows: lines whose components lie within `group_distance_fwhm` x FWHM of
// each other share a window and are fitted together (blends); a window spans
// `window_half_width_fwhm` x FWHM beyond its outermost components.
//
// With centres and widths fixed (the default: the wavelength solution comes
// with the calibration, so a free shift would only fit noise, and on a weak
// line it wanders onto noise and biases the brightness upwards), the model is
// linear in (B, background). The fit is then an exact weighted least-squares
// solve, with no iterations and no initial values. Weights: pixels flagged
// unusable or as particle hits get weight 0.
//
// Variance refinement (the default): given the count model of the spectrum
// (counts = radiance x scale + offset, Calibrator::count_model), the weights
// are recomputed from the fitted model's expected counts, var_p =
// mu_p / scale_p^2, and the fit is repeated. For a model linear in its
// parameters, this iteration is the Poisson maximum-likelihood fit. Weights
// taken from each pixel's own count (Neyman) would bias faint lines low.
// Uncertainties come from the Fisher information (A^T W A)^-1 at the solution.
//
// Non-detections are results: B may be zero or negative, with its sigma. A
// window with fewer good pixels than parameters + 3 gets status kBadInput
// and NaN values; it never throws.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "exospec/kernels/spectrum_model.hpp"

namespace exospec::kernels {

struct FitLineSpec {
  std::string name;
  double wavelength_nm = 0.0;  // strongest component (reported centre)
  std::vector<LineComponent> components;
};

struct LineFitSettings {
  double fwhm_nm = 1.0;                // instrument line spread
  int background_order = 1;            // 0-2
  double window_half_width_fwhm = 3.0;
  double group_distance_fwhm = 4.0;
  int refine_iterations = 2;           // model-variance refits (0: calibrated variance)
  double min_expected_counts = 0.1;    // floor of the model's expected counts
  double line_prior_counts = 1.0;      // counts added per line to the variance model
};

// Status of a line's fit (/fit/<ch>/status).
enum class FitStatus : std::uint8_t {
  kConverged = 0,
  kMaxIterations = 1,
  kStalled = 2,
  kSingular = 3,
  kTooFewPixels = 4,  // too few good pixels in the window
  kInvalidSpectrum = 5,
};

struct LineFitResult {
  std::span<double> brightness, sigma, center_nm, fwhm_nm;
  std::span<float> chi2_reduced;
  std::span<std::uint8_t> status;
};

class LineFitter {
 public:
  LineFitter(std::span<const double> wavelength_coeffs, std::size_t pixels,
             std::vector<FitLineSpec> lines, const LineFitSettings& settings);

  std::size_t pixels() const noexcept { return pixels_; }
  std::size_t lines() const noexcept { return lines_.size(); }
  std::size_t windows() const noexcept { return windows_.size(); }
  const std::vector<FitLineSpec>& line_specs() const noexcept { return lines_; }
  // Pixel range and lines of window w (for tests and docs).
  std::size_t window_first(std::size_t w) const noexcept { return windows_[w].first; }
  std::size_t window_size(std::size_t w) const noexcept { return windows_[w].size; }
  const std::vector<std::size_t>& window_lines(std::size_t w) const noexcept {
    return windows_[w].lines;
  }
  // The unit-brightness profile (R/nm per R) of line j over its window.
  std::span<const double> profile(std::size_t line) const noexcept;

  struct Workspace {
    std::vector<double> weight, model, y, weighted;
  };
  Workspace make_workspace() const;

  // One spectrum (P values each). scale/offset: its count model (empty: no
  // variance refinement). out spans hold lines() values. Allocates nothing.
  template <class T>
  void fit(std::span<const T> radiance, std::span<const T> variance,
           std::span<const std::uint8_t> quality, std::span<const double> scale,
           std::span<const double> offset, const LineFitResult& out, Workspace& work) const;

 private:
  struct Window {
    std::size_t first = 0, size = 0;
    std::vector<std::size_t> lines;
    std::vector<double> basis;  // size x k, column-major: line profiles, then background
    int k = 0;                  // parameters
  };
  std::size_t pixels_;
  std::vector<FitLineSpec> lines_;
  LineFitSettings settings_;
  std::vector<Window> windows_;
  std::vector<std::size_t> line_window_, line_column_;
};

}  // namespace exospec::kernels
