#pragma once
// The instrument's forward model, pure compute on caller-owned buffers.
//
// Conventions (shared/INSTRUMENT.md):
// - Wavelength solution lambda(x) = sum_k c_k x^k in nm, x the pixel coordinate;
//   pixel p covers x in [p - 1/2, p + 1/2] and its centre is x = p.
// - Spectral radiance L in R/nm. The radiance "seen by a pixel" is the average of
//   the spectral radiance over the pixel's wavelength interval; for a line of
//   brightness B (R) with a unit-area Gaussian line spread it is
//     B * [Phi((hi - l0)/s) - Phi((lo - l0)/s)] / (hi - lo),
//   the pixel-integrated profile (not the profile sampled at the pixel centre).
// - Detector: true count rate r_p = L_p * response_p + dark_p * dark_scale
//   (count/s). The whole detector is non-paralyzable with dead time tau: for the
//   total true rate R = sum_p r_p it records M = R / (1 + R tau), and every
//   pixel's expected rate is scaled by M / R = 1 / (1 + R tau).
#include <cstddef>
#include <span>
#include <vector>

#include "exospec/wavelength.hpp"

namespace exospec::kernels {

// sum_k c[k] x^k by Horner's rule (the contract's wavelength polynomial).
using exospec::eval_polynomial;

// Pixel-centre wavelengths lambda(p), p = 0..out.size()-1.
void pixel_wavelengths(std::span<const double> coeffs, std::span<double> out) noexcept;

// Pixel edges lambda(p - 1/2), p = 0..out.size()-1 (out has P + 1 elements).
void pixel_edges(std::span<const double> coeffs, std::span<double> out) noexcept;

// Mean over [lo, hi] of a unit-area Gaussian (centre, sigma), in 1/nm.
// lo < hi and sigma > 0. Accurate in the far tails (uses erfc).
double gaussian_pixel_average(double lo, double hi, double centre, double sigma) noexcept;

// FWHM of a Gaussian from its standard deviation and back.
inline constexpr double kFwhmPerSigma = 2.3548200450309493;  // 2 sqrt(2 ln 2)

// One component of a (possibly multiplet) line: rest wavelength and the
// fraction of the line's brightness it carries.
struct LineComponent {
  double wavelength_nm;
  double fraction;
};

// The radiance (R/nm) a line of 1 R puts in each pixel, on the pixels where it
// is not negligible: values[i] belongs to pixel first + i.
struct LineProfile {
  std::size_t first = 0;
  std::vector<double> values;
};

// Set-up (allocates): the pixel-integrated profile of a line made of the given
// components with a Gaussian line spread of the given FWHM, over the pixels
// whose edges are given (P + 1 values, increasing), truncated at
// `half_width_sigmas` standard deviations from the outermost components.
LineProfile make_line_profile(std::span<const double> edges,
                              std::span<const LineComponent> components, double fwhm_nm,
                              double half_width_sigmas = 8.0);

// radiance[first + i] += brightness * profile.values[i]. Does not allocate.
void add_line(const LineProfile& profile, double brightness, std::span<double> radiance) noexcept;

// Expected counts of one spectrum (before Poisson noise) for exposure t:
//   r_p = radiance_p * response_p + dark_p * dark_scale,
//   out_p = r_p * t / (1 + tau * sum_q r_q).
// response_p is counts/s per R/nm (sensitivity x flat, 0 for a dead pixel),
// dark_p the dark rate at the reference temperature (0 for a dead pixel).
// Returns the dead-time factor 1 / (1 + tau R). All spans have the same size;
// out may alias radiance. O(P), no allocation.
double expected_counts(std::span<const double> radiance, std::span<const double> response,
                       std::span<const double> dark, double dark_scale, double dead_time_s,
                       double exposure_s, std::span<double> out) noexcept;

}  // namespace exospec::kernels
