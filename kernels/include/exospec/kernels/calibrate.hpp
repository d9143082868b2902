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
// floored at `min_expected_counts`, where Lhat_p is an estimate of the
// radiance at p from its neighbours only, in pixels and in spectra. The
// neighbouring spectra are the valid rows within +-`variance_spectra` of the
// row in the same scan (the row itself included; m of them); then
//   W_p  the wide mean: the mean radiance over those rows and the usable
//        pixels within +-`variance_wide_half_width` of p (truncated at the
//        edges), leaving out the pixel itself (p of this row);
//   N_p  the pooled quadratic: the leave-one-out local quadratic fit, over the
//        usable pixels within +-`variance_half_width` of p, p excluded (the
//        window shifted inwards at the edges; fewer than 5 usable neighbours
//        lower the order), of the m rows' mean radiance per pixel; its noise
//        is sd_N^2 = sum_k w_k^2 mu_W / (m (S_p F_p t g)^2), with w the fit's
//        weights and mu_W the expected counts of W.
//   Lhat_p = N_p where |N_p - W_p| > `variance_structure_sigma` sd_N (a line
//        or an edge the wide mean would smear), W_p elsewhere.
// Both estimates leave c_p out, so (c_p - mu_p) / sqrt(mu_p) has mean zero
// exactly; the wide mean's own noise is small enough that the pull sd is
// within ~1 % of 1 down to a fraction of a count per pixel (docs/
// CALIBRATION.md), where the narrow quadratic alone gave 1.16-1.21. The
// variance is the delta-method diagonal, including the dead-time factor's
// dependence on every count (beta = tau / (t g), M = sum_q mu_q estimated by
// sum_q c_q):
//   var_p = (1 / (t g S_p F_p))^2 mu_p [(1 + beta mu_p)^2 + beta^2 mu_p (M - mu_p)].
// The off-diagonal part (all pixels share g) is not stored; it is below 1e-4
// of a pixel's variance at Phebus rates (docs/CALIBRATION.md).
//
// Quality: bit flags of quality::*. A pixel that is bad in the calibration, or
// any pixel of a spectrum whose exposure or temperature is invalid, has NaN
// radiance and variance; a saturated spectrum (dead-time correction 1/g above
// `max_dead_time_correction`) keeps its values and is flagged (NaN if g <= 0).
// One bad spectrum never affects another.
#include "exospec/kernels/pixel_range.hpp"

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

inline constexpr int kMaxVarianceSpectra = 64;  // the most variance_spectra allowed

struct CalibrateSettings {
  double max_dead_time_correction = 1.25;  // 1/g above this flags the spectrum saturated
  int variance_half_width = 4;  // pixels each side of the pooled quadratic (<= (P - 1) / 2)
  int variance_wide_half_width = 10;  // pixels each side of the wide mean
  int variance_spectra = 2;           // neighbouring spectra each side (same scan), <= kMaxVarianceSpectra
  double variance_structure_sigma = 3.0;  // |N - W| beyond this many sd_N: structure, use N
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

  // Calibrates rows = exposure_s.size() spectra, all of one scan (consecutive
  // rows are neighbours): radiance() then variance() on every row. counts,
  // radiance, variance and quality are row-major rows x P; temperature_c has
  // one value per row. No aliasing between inputs and outputs. Count is
  // std::uint32_t (telemetry) or double (expected counts); Real is float (the
  // file) or double. Allocates one scratch row.
  template <class Count, class Real>
  void run(std::span<const Count> counts, std::span<const double> exposure_s,
           std::span<const double> temperature_c, std::span<Real> radiance,
           std::span<Real> variance, std::span<std::uint8_t> quality) const;

  // The two passes of run(), for callers that split rows among threads: the
  // radiance and quality of every row (with particle hits removed when
  // despike is enabled) must be known before the variance of any row that
  // has it among its neighbours. radiance() works row by row.
  template <class Count, class Real>
  void radiance(std::span<const Count> counts, std::span<const double> exposure_s,
                std::span<const double> temperature_c, std::span<Real> radiance,
                std::span<std::uint8_t> quality) const noexcept;
  // The variance of rows [first, first + count) of all rows given (counts,
  // radiance and quality as radiance() left them, rows x P; variance rows x P,
  // only those rows written). scan: each row's scan (any numbering), or empty
  // for one scan. scratch is resized to 5 P on first use (then allocates
  // nothing: one per thread).
  template <class Count, class Real>
  void variance(std::span<const Count> counts, std::span<const double> exposure_s,
                std::span<const double> temperature_c, std::span<const Real> radiance,
                std::span<const std::uint8_t> quality, std::span<const std::int64_t> scan,
                std::size_t first, std::size_t count, std::span<Real> variance,
                std::vector<Real>& scratch) const;

  // The count model of one spectrum: expected counts = radiance x scale_p +
  // offset_p (scale = S F t g, offset = s D t g; 0 on unusable pixels), from
  // the spectrum's counts (P values, for the dead-time total). Returns false
  // for an invalid or saturated-beyond-inversion spectrum (then both are 0).
  // pixels: only these ranges (sorted or not, within P) are written, for a
  // caller that reads no others (the fit's windows); empty: all P.
  bool count_model(std::span<const std::uint32_t> counts, double exposure_s,
                   double temperature_c, std::span<double> scale,
                   std::span<double> offset, std::span<const PixelRange> pixels = {}) const noexcept;

  // Plain scalar reference of run(): the same definition computed directly
  // (direct sums over each pixel's neighbourhood and a normal-equation fit per
  // pixel instead of running sums and precomputed weights). Slow; for tests.
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
  // Tables::irregular, tap-major: weight k of pixel i at k * count + i).
  std::vector<std::uint32_t> irregular_pixel_, irregular_lo_;
  std::vector<std::uint32_t> bad_list_;  // unusable pixels
  std::vector<std::uint32_t> wide_usable_;  // usable pixels within the wide window of each pixel
  std::size_t first_usable_ = 0;            // (P if none): a row's radiance there is finite iff it is valid
  // Per-pixel tables and smoother weights, in double (also the reference's)
  // and in float (the fast path's compute type for float output):
  // response S F and 1 / (S F) (0 where unusable), dark radiance D / (S F),
  // the regular window's 2h + 1 weights (centre 0) and the irregular pixels',
  // the sum of squares of each set of weights (regular_w2 has one entry), and
  // 1 / the wide mean's count of values per pixel, for each number m of
  // spectra pooled (row m - 1 of (2 variance_spectra + 1) x P).
  template <class T>
  struct Tables {
    std::vector<T> response, inv_response, dark_radiance, regular, irregular, regular_w2, irregular_w2,
        inv_wide;
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
