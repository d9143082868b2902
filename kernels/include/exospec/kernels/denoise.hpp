#pragma once
// Denoising of calibrated spectra with honest variance.
//
// AdaptiveSmoother (the default): local polynomial approximation with the
// window chosen per pixel by the intersection-of-confidence-intervals rule
// (LPA-ICI: Goldenshluger & Nemirovski, Math. Methods Stat. 6, 135, 1997;
// Katkovnik, Opt. Eng. 38, 1999). For windows W_0 < W_1 < ... every pixel
// gets the Savitzky-Golay estimate y_k and its standard deviation
// s_k = sqrt(sum_i c_ki^2 var_i). Starting from W_0, the window grows while the
// intervals [y_k - gamma s_k, y_k + gamma s_k] still share a point; the last
// such window is used. The ladder starts at a small window, not at the pixel
// itself: with Poisson counts an upward fluctuation of one pixel is larger than
// a downward one, and a rule that may stop at the raw pixel keeps the upward
// ones, biasing faint regions upwards by several per cent (measured). Where the spectrum is flat compared with its noise (the
// continuum, faint lines), the window grows to the widest; on a bright line
// the bias of a wide window soon exceeds the noise and the window stays
// narrow. A fixed window cannot do both: it either leaves the continuum noisy
// or broadens bright lines by many sigma.
//
// Variance: the output is a linear combination of the input pixels (for the
// chosen window), var = sum_i c_i^2 var_i for independent pixels. Pixels flagged
// unusable or as particle hits are first filled by linear interpolation (with
// the variance of that interpolation), so their neighbours smooth across them.
// The filled values are correlated with their neighbours, which this formula
// ignores. Smoothing correlates neighbouring output pixels over the chosen
// window: the output variance is the diagonal only, and a fit to denoised data
// with it would understate uncertainties (the fit stage fits the calibrated,
// spike-cleaned radiance by default and uses the denoised spectrum to detect
// lines and seed initial values).
//
// Edges: each window's Savitzky-Golay filter uses mode interp (the polynomial
// through the first / last window samples), as scipy does.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "exospec/kernels/pixel_range.hpp"
#include "exospec/kernels/savgol.hpp"

namespace exospec::kernels {

struct AdaptiveSettings {
  int polyorder = 2;
  std::vector<int> windows = {5, 9, 15, 25, 41};  // odd, > 1, increasing
  double gamma = 1.0;                              // ICI interval half-width in sigma
};

class AdaptiveSmoother {
 public:
  // Set-up (allocates): one Savitzky-Golay filter per window. Windows longer
  // than the spectrum are dropped. Throws std::invalid_argument for bad settings.
  AdaptiveSmoother(std::size_t pixels, const AdaptiveSettings& settings);

  std::size_t pixels() const noexcept { return pixels_; }
  std::size_t windows() const noexcept { return filters_.size(); }

  // Per-thread scratch (allocate once, reuse).
  template <class T>
  struct Workspace {
    std::vector<T> value, variance, estimate, sigma;
    std::vector<T> lo, hi;               // the intersection of the intervals so far, per pixel
    std::vector<std::int32_t> used;      // the window chosen so far, per pixel
  };
  template <class T>
  Workspace<T> make_workspace() const;

  // Rows of radiance (R/nm), variance and quality (rows x P, row-major) to the
  // denoised radiance and variance. Pixels with quality & kUnusable (and whole
  // invalid spectra) are NaN in the output. `chosen` (optional, rows x P)
  // receives the index of the window used (0 = the narrowest).
  template <class T>
  void run(std::span<const T> radiance, std::span<const T> variance,
           std::span<const std::uint8_t> quality, std::span<T> out, std::span<T> out_variance,
           Workspace<T>& work, std::span<std::uint8_t> chosen = {}) const noexcept;
  // As run(), for the pixels in `ranges` only (sorted, disjoint, within the
  // spectrum): each gets run()'s value to the bit, every other pixel NaN (and
  // chosen 0). The cost falls with the share of the pixels asked for: the
  // fit reads its initial guesses only inside its windows.
  template <class T>
  void run_ranges(std::span<const T> radiance, std::span<const T> variance,
                  std::span<const std::uint8_t> quality, std::span<const PixelRange> ranges,
                  std::span<T> out, std::span<T> out_variance, Workspace<T>& work,
                  std::span<std::uint8_t> chosen = {}) const noexcept;

 private:
  template <class T>
  void run_impl(std::span<const T> radiance, std::span<const T> variance,
                std::span<const std::uint8_t> quality, std::span<const PixelRange> ranges, bool whole,
                std::span<T> out, std::span<T> out_variance, Workspace<T>& work,
                std::span<std::uint8_t> chosen) const noexcept;

  std::size_t pixels_;
  AdaptiveSettings settings_;
  std::vector<SavgolFilter> filters_;
};

// Anscombe's variance-stabilising transform of Poisson counts, A = 2 sqrt(c + 3/8)
// (Anscombe, Biometrika 35, 246, 1948): var(A) ~ 1 for any mean above ~1.
double anscombe(double counts) noexcept;
// The closed-form approximation of the exact unbiased inverse (Makitalo & Foi,
// IEEE Trans. Image Process. 20, 99, 2011): the mean mu whose E[A] is D,
//   I(D) = D^2/4 + sqrt(3/2)/(4 D) - 11/(8 D^2) + 5 sqrt(3/2)/(8 D^3) - 1/8,
// accurate to 0.4 % for mu >= 0.1 (the algebraic inverse D^2/4 - 3/8 is biased
// low by ~1/4 count). Clamped at 0 below D = 2 sqrt(3/8).
double anscombe_inverse(double d) noexcept;
// dI/dD (for the variance by the delta method).
double anscombe_inverse_derivative(double d) noexcept;

// Anscombe mode for low counts: the spike-cleaned radiance is turned back into
// counts with the calibration's count model (counts = L scale + offset, from
// Calibrator::count_model), transformed, smoothed with the adaptive smoother
// at unit variance (the transform makes the noise homoscedastic, which suits
// the ICI rule), and returned with the unbiased inverse. Variance by the delta
// method: var(L) = (I'(D))^2 var(D) / scale^2, var(D) = sum_i c_i^2.
class AnscombeSmoother {
 public:
  AnscombeSmoother(std::size_t pixels, const AdaptiveSettings& settings);
  std::size_t pixels() const noexcept { return smoother_.pixels(); }

  struct Workspace {
    AdaptiveSmoother::Workspace<double> adaptive;
    std::vector<double> a, ones, d, dv;
    std::vector<std::uint8_t> q;
  };
  Workspace make_workspace() const;

  // Rows x P; scale and offset are the count model of each row (rows x P).
  template <class T>
  void run(std::span<const T> radiance, std::span<const std::uint8_t> quality,
           std::span<const double> scale, std::span<const double> offset, std::span<T> out,
           std::span<T> out_variance, Workspace& work) const noexcept;

 private:
  AdaptiveSmoother smoother_;
};

// Fills the pixels flagged in `mask_bits` of one row by linear interpolation
// between the nearest unflagged pixels (constant beyond the ends), with the
// variance of that interpolation. Returns false if no pixel is unflagged.
template <class T>
bool fill_flagged(std::span<T> value, std::span<T> variance, std::span<const std::uint8_t> quality,
                  std::uint8_t mask_bits) noexcept;

}  // namespace exospec::kernels
