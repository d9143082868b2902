#pragma once
// Calibration: raw counts to spectral radiance (R/nm) with a propagated
// variance and quality flags, inverting steps 3-1 of the forward model of
// shared/INSTRUMENT.md (spectrum_model.hpp writes it forwards).
//
// For one spectrum of P pixels with counts c_p, exposure t (s) and detector
// temperature T (degC):
//   measured total rate   m = sum_p c_p / t            (every pixel, bad ones too:
//                                                       the detector counted them)
//   dead-time factor      g = 1 - m tau                (non-paralyzable, whole
//                                                       detector: r = m / (1 - m tau))
//   dark scale            s = 1 + k (T - T_ref)
//   radiance              L_p = (c_p / (t g) - s D_p) / (S_p F_p)
// with D the dark rate at T_ref (count/s), S the sensitivity (count/s/(R/nm))
// and F the flat field. For noise-free expected counts this returns the
// radiance exactly (to rounding): see the round-trip test.
//
// Variance. Counts are Poisson with an expectation mu_p that is not known; the
// pixel's own count c_p is NOT used for it (Neyman's chi-square bias: a
// variance that rises and falls with the pixel's own fluctuation gives
// downward-fluctuating pixels too much weight, biasing pulls and fits). Instead
//   mu_p = (max(Lhat_p, 0) + s D_p / (S_p F_p)) (S_p F_p) t g,
// floored at `min_expected_counts`, where Lhat_p is a leave-one-out local
// quadratic fit of the radiance of the usable pixels within
// +-`variance_half_width` pixels of p, p itself excluded (the window is shifted
// inwards at the detector edges; fewer than 5 usable neighbours lower the
// order). mu_p is then independent of c_p, so (c_p - mu_p) / sqrt(mu_p) has mean
// zero exactly and unit variance up to the relative noise of mu_p (about
// 0.34 / mu_p in variance for the default half width 4, i.e. under 1 % of the
// standard deviation from about 20 counts up), and the quadratic follows a
// Gaussian line spread of sigma >= 4 pixels to ~1 % at the peak. The variance
// is the delta-method diagonal, including the dead-time factor's dependence on
// every count (beta = tau / (t g), M = sum_q mu_q estimated by sum_q c_q):
//   var_p = (1 / (t g S_p F_p))^2 mu_p [(1 + beta mu_p)^2 + beta^2 mu_p (M - mu_p)].
// The off-diagonal part (all pixels share g) is not stored; it is below 1e-4
// of a pixel's variance at Phebus rates (docs/CALIBRATION.md).
//
// Quality: bit flags of quality::*. A pixel that is bad in the calibration, or
// any pixel of a spectrum whose exposure or temperature is invalid, has NaN
// radiance and variance; a saturated spectrum (dead-time correction 1/g above
// `max_dead_time_correction`) keeps its values and is flagged (NaN if g <= 0).
// One bad spectrum never affects another.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace exospec::kernels {

// Quality bits of /calibrated/<ch>/quality (0 = good).
namespace quality {
inline constexpr std::uint8_t kBadPixel = 1u << 0;  // bad in the calibration (dead, hot), or no response
inline constexpr std::uint8_t kSaturated = 1u << 1;  // dead-time correction beyond the limit
inline constexpr std::uint8_t kInvalidExposure = 1u << 2;     // exposure <= 0 or not finite
inline constexpr std::uint8_t kInvalidTemperature = 1u << 3;  // not finite, out of limits, dark < 0
inline constexpr std::uint8_t kParticleHit = 1u << 4;  // spike from a particle hit (set by denoise)
// Bits whose pixels carry no usable value (NaN radiance and variance).
inline constexpr std::uint8_t kUnusable = kBadPixel | kInvalidExposure | kInvalidTemperature;

// Adds to pixels[b] the number of entries of `quality` that have bit b set.
void count_bits(std::span<const std::uint8_t> quality, std::span<std::uint64_t, 8> pixels) noexcept;
}  // namespace quality

// The calibration of one channel, as non-owning views (all of P elements).
struct DetectorCalibration {
  std::span<const double> dark_rate;    // count/s at the reference temperature
  std::span<const double> flat;         // 1
  std::span<const double> sensitivity;  // count/s/(R/nm)
  std::span<const std::uint8_t> bad_pixel;
  double dead_time_s = 0.0;
  double dark_reference_temperature = 0.0;  // degC
  double dark_temperature_coeff = 0.0;      // 1/degC
};

// Particle-hit removal (the denoise stage turns it on): see despike_row in
// calibrate.cpp and docs/DENOISE.md. Off by default in the calibrate stage.
struct DespikeSettings {
  bool enabled = false;
  double threshold = 3.5;       // Anscombe-scale sigma for a hit
  double grow_threshold = 2.0;  // for the neighbours of a hit (2-3 pixel hits)
  double line_tolerance = 0.2;  // share of a line's height the reference may miss
};

struct CalibrateSettings {
  double max_dead_time_correction = 1.25;  // 1/g above this flags the spectrum saturated
  int variance_half_width = 4;  // pixels each side of the variance smoother (<= (P - 1) / 2)
  double min_expected_counts = 0.1;        // floor of mu_p (counts)
  // Detector temperatures outside these limits (degC) are telemetry errors:
  // the spectrum is flagged kInvalidTemperature, as it is when the linear dark
  // model 1 + k (T - T_ref) would give a negative dark.
  double min_detector_temperature_c = -100.0;
  double max_detector_temperature_c = 100.0;
  DespikeSettings despike;
};

// Set-up copies the calibration into per-pixel tables and precomputes the
// smoother's weights (allocates); run() allocates nothing and may be called
// from many threads at once on different rows.
class Calibrator {
 public:
  Calibrator(const DetectorCalibration& calibration, const CalibrateSettings& settings);

  std::size_t pixels() const noexcept { return pixels_; }
  const CalibrateSettings& settings() const noexcept { return settings_; }

  // Calibrates rows = exposure_s.size() spectra. counts, radiance, variance and
  // quality are row-major rows x P; temperature_c has one value per row. No
  // aliasing between inputs and outputs. Count is std::uint32_t (telemetry) or
  // double (expected counts); Real is float (the file) or double.
  template <class Count, class Real>
  void run(std::span<const Count> counts, std::span<const double> exposure_s,
           std::span<const double> temperature_c, std::span<Real> radiance,
           std::span<Real> variance, std::span<std::uint8_t> quality) const noexcept;

  // The count model of one spectrum: expected counts = radiance x scale_p +
  // offset_p (scale = S F t g, offset = s D t g; 0 on unusable pixels), from
  // the spectrum's counts (P values, for the dead-time total). Returns false
  // for an invalid or saturated-beyond-inversion spectrum (then both are 0).
  bool count_model(std::span<const std::uint32_t> counts, double exposure_s,
                   double temperature_c, std::span<double> scale,
                   std::span<double> offset) const noexcept;

  // Plain scalar reference of run(): the same definition computed directly
  // (a normal-equation fit per pixel instead of precomputed weights). Slow;
  // for tests.
  template <class Count, class Real>
  void run_reference(std::span<const Count> counts, std::span<const double> exposure_s,
                     std::span<const double> temperature_c, std::span<Real> radiance,
                     std::span<Real> variance, std::span<std::uint8_t> quality) const;

 private:
  std::size_t pixels_;
  CalibrateSettings settings_;
  double dead_time_s_, t_ref_, temp_coeff_;
  std::vector<std::uint8_t> bad_;     // quality::kBadPixel or 0
  std::vector<std::uint8_t> usable_;
  std::size_t interior_begin_ = 0, interior_end_ = 0;
  // Pixels whose smoother window is not the regular one (near the edges or a bad
  // pixel): window start (their 2h + 1 weights, 0 for excluded pixels, are
  // Tables::irregular).
  std::vector<std::uint32_t> irregular_pixel_, irregular_lo_;
  std::vector<std::uint32_t> bad_list_;  // unusable pixels
  // Per-pixel tables and smoother weights, in double (also the reference's)
  // and in float (the fast path's compute type for float output):
  // response S F and 1 / (S F) (0 where unusable), dark radiance D / (S F),
  // the regular window's 2h + 1 weights (centre 0) and the irregular pixels'.
  template <class T>
  struct Tables {
    std::vector<T> response, inv_response, dark_radiance, regular, irregular;
  };
  Tables<float> tables_f32_;
  Tables<double> tables_f64_;
  template <class T>
  const Tables<T>& tables() const noexcept {
    if constexpr (sizeof(T) == sizeof(float)) {
      return tables_f32_;
    } else {
      return tables_f64_;
    }
  }
};

// The leave-one-out local polynomial weights used by the variance smoother:
// the value at x = 0 of the least-squares polynomial through the points xs
// (weights out, same size). Order 2 with >= 5 points, 1 with 3-4, 0 with 1-2.
void leave_one_out_weights(std::span<const double> xs, std::span<double> out);

}  // namespace exospec::kernels
