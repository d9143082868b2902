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
// Line positions and widths (`shift` and `width` of the settings):
// - shift kFixed: centres at the catalogue wavelengths (the calibration's
//   wavelength solution). The model is then linear in (B, background) and the
//   fit is an exact weighted least-squares solve: no iterations, no initial
//   values (the linear fast path).
// - shift kTied (the default): a window whose brightest line reaches
//   `shift_min_snr` in the linear fit measures its own wavelength shift with
//   Levenberg-Marquardt (levmar.hpp; B, background, shift and, optionally,
//   width). Every other window of the spectrum takes the inverse-variance
//   mean of those shifts (and widths) and is solved linearly there. With no
//   bright window the shift is 0. A free position on a weak line wanders onto
//   noise and biases its brightness upwards; tied, it cannot.
// - shift kFree: every window fits its own shift, bounded by
//   +-`max_shift_fwhm` x FWHM. For bright lines only (documented bias).
// - width kFree: the FWHM is a parameter of the nonlinear windows, bounded to
//   [0.5, 2] x the line spread; tied windows take the bright windows' mean.
// The nonlinear fit starts from the linear solution at the shift where the
// denoised spectrum (if given) peaks near the window's brightest line.
// Model and Jacobian are evaluated with vectorised exp and erfc
// (kernels/src/vmath.hpp) at the pixel edges: Phi and phi at n + 1 edges give
// the pixel-integrated profile and its exact derivatives for n pixels.
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
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "exospec/kernels/spectrum_model.hpp"

namespace exospec::kernels {

struct FitLineSpec {
  std::string name;
  double wavelength_nm = 0.0;  // strongest component (reported centre)
  std::vector<LineComponent> components;
};

enum class ShiftMode : std::uint8_t { kFixed, kTied, kFree };
enum class WidthMode : std::uint8_t { kFixed, kFree };
std::optional<ShiftMode> parse_shift_mode(std::string_view s) noexcept;
std::optional<WidthMode> parse_width_mode(std::string_view s) noexcept;
const char* shift_mode_name(ShiftMode m) noexcept;
const char* width_mode_name(WidthMode m) noexcept;

// How refit() takes the variance of the final solve (docs/FIT.md, "What
// brightness_sigma means"):
//   kNeighbours  the expected counts of a reference model made from the
//                neighbouring spectra of the same scan, this one left out
//                (reference()), so that neither the weights nor the sigma
//                contain this spectrum's own noise;
//   kSelf        the fitted model's own expected counts (the Poisson refits
//                of fit(); no refit()).
enum class SigmaReference : std::uint8_t { kNeighbours, kSelf };
std::optional<SigmaReference> parse_sigma_reference(std::string_view s) noexcept;
const char* sigma_reference_name(SigmaReference r) noexcept;

struct LineFitSettings {
  double fwhm_nm = 1.0;                // instrument line spread
  int background_order = 1;            // 0-2
  double window_half_width_fwhm = 3.0;
  double group_distance_fwhm = 4.0;
  int refine_iterations = 2;           // model-variance refits (0: calibrated variance)
  double min_expected_counts = 0.1;    // floor of the model's expected counts
  double line_prior_counts = 1.0;      // counts added per line to the variance model
  ShiftMode shift = ShiftMode::kTied;
  WidthMode width = WidthMode::kFixed;
  double shift_min_snr = 20.0;         // tied: S/N at which a window measures the shift
  double max_shift_fwhm = 0.5;         // bound of |shift| in FWHM
  int max_iterations = 100;            // Levenberg-Marquardt iterations per window
  // The final solve's variance (the stage's refit(); fit() does not use these).
  SigmaReference sigma_reference = SigmaReference::kNeighbours;
  int reference_half_width = 5;        // neighbouring spectra each side (reference())
};

// Status of a line's fit (/fit/<ch>/status).
enum class FitStatus : std::uint8_t {
  kConverged = 0,
  kMaxIterations = 1,
  kStalled = 2,
  kSingular = 3,
  kTooFewPixels = 4,  // too few good pixels in the window
  kInvalidSpectrum = 5,
  kNotFinite = 6,     // the model could not be evaluated (nonlinear path)
};

struct LineFitResult {
  std::span<double> brightness, sigma, center_nm, fwhm_nm;
  std::span<float> chi2_reduced;
  std::span<std::uint8_t> status;
  // Optional (empty: not written): every window's state, state_size()
  // values, window after window: its linear parameters (the lines'
  // brightness, then the background coefficients), its shift (nm), the
  // shift's sigma (nm; NaN unless the window measured its own shift) and its
  // FWHM (nm); all NaN where the window's fit failed. What reference()
  // reads from the neighbouring spectra and refit() from the spectrum itself.
  std::span<double> window_state = {};
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

  // Values of LineFitResult::window_state.
  std::size_t state_size() const noexcept { return state_size_; }

  // Per-thread scratch (make_workspace; move-only).
  struct Workspace {
    Workspace();
    Workspace(Workspace&&) noexcept;
    Workspace& operator=(Workspace&&) noexcept;
    ~Workspace();
    std::vector<double> weight, model, y, weighted;
    std::vector<double> cdf, pdf, xpdf, columns, dshift, dsigma, sqrt_weight, residual;
    std::vector<double> dcolumns, d2columns;  // (the shift-only fit)
    struct Solvers;
    std::unique_ptr<Solvers> solvers;  // Levenberg-Marquardt solvers per window
  };
  Workspace make_workspace() const;

  // The reference state of spectrum `row` for refit(), from the states of the
  // other spectra (states: rows x state_size(), as fit() wrote them): for
  // each window, every linear parameter, the shift and the FWHM predicted at
  // this spectrum's tangent altitude by an unweighted least-squares
  // polynomial in altitude through the windows of the 2 half_width nearest
  // spectra of the same scan whose fit succeeded (half_width each side, more
  // on one side where the scan ends on the other), this spectrum left out:
  // quadratic with 5 or more of them (and 3 distinct altitudes), linear with
  // 3-4, their mean with 1-2 or when all share one altitude; NaN with none.
  // Where the intercept is an extrapolation whose variance exceeds half a
  // neighbour's (a scan's ends), the order drops unless the neighbours show
  // the higher order to be needed (the two intercepts differ by more than 2
  // standard errors of their difference). A shift or FWHM that every
  // neighbour shares is copied; the shift's sigma is NaN (not measured in
  // this spectrum). altitude_km: one per row (empty: the row index stands
  // for it); scan: the scan of each row (empty: one scan). Allocates nothing.
  void reference(std::span<const double> states, std::span<const double> altitude_km,
                 std::span<const std::int64_t> scan, std::size_t row, int half_width,
                 std::span<double> out) const noexcept;

  // The final solve of one spectrum at a reference model (reference()):
  // every window whose fit() succeeded and that has a reference is solved
  // again at fit()'s shift and FWHM, by weighted linear least squares with
  // the weights s^2 / mu of the reference model's expected counts mu (count
  // model scale and offset, at least min_expected_counts; no prior counts).
  // Weights that do not depend on this spectrum's counts make the
  // brightness unbiased for a linear model and its sigma independent of its
  // own fluctuation, so that inverse-variance weighted averages are
  // unbiased. The sigma is the Fisher information at those weights, with the
  // shift (and free width) among the parameters where the window measured its
  // own shift. out holds fit()'s results for this spectrum; brightness,
  // sigma and chi2_reduced are replaced, the rest kept; windows without a
  // reference keep fit()'s values. Without a count model (scale empty) it
  // changes nothing. Allocates nothing.
  template <class T>
  void refit(std::span<const T> radiance, std::span<const T> variance,
             std::span<const std::uint8_t> quality, std::span<const double> scale,
             std::span<const double> offset, std::span<const double> reference,
             const LineFitResult& out, Workspace& work) const;

  // One spectrum (P values each). scale/offset: its count model (empty: no
  // variance refinement). denoised: the denoised radiance, for the
  // nonlinear fit's initial shift (empty: start at 0). out spans hold
  // lines() values. Allocates nothing.
  template <class T>
  void fit(std::span<const T> radiance, std::span<const T> variance,
           std::span<const std::uint8_t> quality, std::span<const double> scale,
           std::span<const double> offset, const LineFitResult& out, Workspace& work,
           std::span<const T> denoised = {}) const;

  // The unit-brightness profiles of window w's lines (n x lines, column-major)
  // at a shift and FWHM, with (if not null) their derivatives with respect to
  // the shift and to sigma, weighted by `brightness` and summed over lines.
  // Exposed for tests of the analytic Jacobian.
  void window_profiles(std::size_t w, double shift_nm, double fwhm_nm, double* columns,
                       const double* brightness, double* dshift, double* dsigma,
                       Workspace& work) const;
  // The same profiles and, line by line, their first and (if d2columns is
  // not null) second derivatives with respect to the shift (n x lines each,
  // column-major; the shift-only fit). With a row stride above n (at least
  // n), each line's values are followed by zeros up to the stride.
  void profiles_and_shift_derivatives(std::size_t w, double shift_nm, double fwhm_nm, double* columns,
                                      double* dcolumns, Workspace& work, double* d2columns = nullptr,
                                      std::size_t stride = 0) const;

 private:
  struct Window {
    std::size_t first = 0, size = 0;
    std::vector<std::size_t> lines;
    std::vector<double> basis;  // size x k, column-major: line profiles, then background
    std::vector<double> edges;  // size + 1 pixel edges (nm)
    std::vector<double> inv_width;  // 1 / pixel width (1/nm)
    // Components of each line: wavelength and fraction, line after line.
    std::vector<LineComponent> components;
    std::vector<std::size_t> component_begin;  // lines + 1 offsets into components
    // With the width fixed: each line's profile and its first five shift
    // derivatives at zero shift (row stride padded to the vector width, zero
    // beyond the window's pixels), for a Taylor-series first evaluation.
    std::vector<double> taylor;
    // Per line: its strongest component's wavelength and the pixels whose
    // centres lie within the largest shift of it (the search for the
    // initial shift; the first and last pixel of the window excluded).
    std::vector<double> strongest_nm;
    std::vector<std::size_t> reach_begin, reach_end;
    int k = 0;                  // linear parameters (lines + background)
    std::size_t state = 0;      // offset of its k + 3 values in LineFitResult::window_state
  };
  struct Solution;
  template <class T>
  bool prepare_weights(const Window& w, std::span<const T> radiance, std::span<const T> variance,
                       std::span<const std::uint8_t> quality, Workspace& work,
                       std::size_t& good) const;
  // Weighted least squares for the linear parameters with the columns A
  // (n x k), then `iterations` refits with the model's Poisson variance.
  bool solve_linear(const Window& w, const double* A, std::span<const double> scale,
                    std::span<const double> offset, std::size_t good, int iterations,
                    Workspace& work, Solution& sol) const;
  int refits(std::span<const double> scale) const noexcept {
    return scale.empty() ? 0 : settings_.refine_iterations;
  }
  // Whether a window's fit starts from the linear solution at zero shift:
  // always but with a free shift, a fixed width and fixed weights (no
  // refits), where the variable projection needs no linear start.
  bool linear_start(std::span<const double> scale) const noexcept {
    return !(settings_.shift == ShiftMode::kFree && settings_.width == WidthMode::kFixed &&
             refits(scale) == 0);
  }
  // Covariance, chi2 and results of the nonlinear solution p, with the
  // current weights.
  void nonlinear_covariance(std::size_t wi, const double* p, Workspace& work, Solution& sol) const;
  template <class T>
  void solve_nonlinear(std::size_t wi, std::span<const double> scale,
                       std::span<const double> offset, std::span<const T> denoised,
                       std::size_t good, Workspace& work, Solution& sol) const;
  // Window wi's linear basis at a shift and FWHM (line profiles, then the
  // background), built in work.columns.
  double* window_basis(std::size_t wi, double shift_nm, double fwhm_nm, Workspace& work) const;
  void update_weights(const Window& w, const double* A, const double* beta,
                      std::span<const double> scale, std::span<const double> offset,
                      Workspace& work) const;
  void write(const Window& w, const Solution& sol, const LineFitResult& out) const;
  std::size_t pixels_;
  std::vector<FitLineSpec> lines_;
  LineFitSettings settings_;
  std::vector<Window> windows_;
  std::vector<std::size_t> line_window_, line_column_;
  std::size_t state_size_ = 0;
};

}  // namespace exospec::kernels
