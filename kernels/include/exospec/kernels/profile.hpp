#pragma once
// Level 3: one limb scan's line brightness against tangent altitude, fitted
// with the ballistic-exosphere profile (ballistic.hpp, docs/PROFILE.md):
//
//   B(z) = B_s C(z; T) / C(0; T) + B_bg
//
// B_s (R) is the exospheric brightness at a surface-grazing line of sight, T
// (K) the temperature of the line's species (its mass fixed), B_bg (R) a
// constant background (interplanetary emission). The data are the level-2
// brightness B_i and sigma_i of the scan's spectra at altitudes z_i; the fit
// minimises chi2 = sum_i w_i (B_i - B(z_i))^2, first with w_i = 1/sigma_i^2,
// then twice with w_i = 1 / (a + b B(z_i)), a + b B the least-squares line
// of sigma_i^2 against the fitted model: a level-2 sigma is made from the
// neighbouring spectra's brightness (line_fit.hpp, reference()), so it
// carries their noise, and weights that follow it bias B_s (by about +0.1
// sigma on the default scan); a photon-counting variance is linear in the
// brightness, and the line through all spectra moves with one spectrum's
// noise by O(1/n) only.
//
// Method: B_s and B_bg enter linearly, so for each trial T they are the
// weighted least-squares solution and chi2 is a function of T alone
// (variable projection). That function is searched on a grid in ln T over
// [min_temperature_K, max_temperature_K] and refined by Brent's method
// around the best grid point (to 1e-7 in ln T); a fit at new weights
// starts from the previous minimum's bracket when that still brackets it
// (no grid). Uncertainties are the
// Fisher information of (B_s, T, B_bg) at the minimum, (J^T W J)^-1 with
// J = [g_i, B_s dg_i/dT, 1]; the scale height H = k T / (m g(R)) has
// sigma_H = H sigma_T / T. Over a 0-5000 km scan T and B_bg are strongly
// correlated (about -0.9 for Mg and Al), so their correlation coefficient
// is returned as well.
//
// Statuses (/profile/<ch>/status):
//   0 converged;
//   1 not detected: B_s / sigma(B_s) below min_surface_snr (values are
//     still reported; T is then poorly constrained and its pulls are skewed);
//   2 temperature at a bound of the search range (T is the bound; the
//     sigmas of B_s and B_bg are those at that T, the sigmas of T and H NaN);
//   3 too few spectra (fewer than min_spectra usable ones): NaN;
//   4 no altitude range (the usable spectra span less than 1 km): NaN;
//   5 singular Fisher information: values, NaN sigmas;
//   6 unknown species mass: NaN.
// A spectrum is usable when its fit converged (status 0 or 1), its brightness
// and sigma are finite, sigma > 0, and its altitude is finite and >= 0.
//
// Set-up (the constructor) builds the species' column table and allocates;
// fit() allocates nothing beyond its workspace and is const and thread-safe
// with one Workspace per thread.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace exospec::kernels {

struct ProfileSettings {
  double min_temperature_K = 50.0;
  double max_temperature_K = 1.0e5;
  std::size_t min_spectra = 5;     // usable spectra of a scan
  double min_surface_snr = 5.0;    // B_s / sigma(B_s) below: status 1
};

enum class ProfileStatus : std::uint8_t {
  kConverged = 0,
  kNotDetected = 1,
  kTemperatureAtBound = 2,
  kTooFewSpectra = 3,
  kNoAltitudeRange = 4,
  kSingular = 5,
  kUnknownMass = 6,
};

struct ProfileResult {
  double surface_brightness_R, surface_brightness_sigma;
  double temperature_K, temperature_sigma;
  double background_R, background_sigma;
  double scale_height_km, scale_height_sigma;
  double temperature_background_correlation;
  double chi2_reduced;
  std::size_t spectra;  // usable spectra
  ProfileStatus status;
};

class ProfileFitter {
 public:
  // mass_amu <= 0 or not finite: every fit has status kUnknownMass. Throws
  // std::invalid_argument for a bad temperature range.
  ProfileFitter(double mass_amu, const ProfileSettings& settings);
  ~ProfileFitter();
  ProfileFitter(ProfileFitter&&) noexcept;
  ProfileFitter& operator=(ProfileFitter&&) noexcept;

  double mass_amu() const noexcept { return mass_amu_; }
  const ProfileSettings& settings() const noexcept { return settings_; }

  struct Workspace {
    std::vector<double> z, b, w, s2, g, g2;
  };
  Workspace make_workspace(std::size_t max_spectra) const;

  // One scan of n spectra: altitude (km), level-2 brightness and sigma (R),
  // fit status (kernels::FitStatus; may be empty: all converged).
  ProfileResult fit(std::span<const double> altitude_km, std::span<const double> brightness,
                    std::span<const double> sigma, std::span<const std::uint8_t> status,
                    Workspace& work) const;

  // The model's shape C(z; T) / C(0; T) at the given altitudes (for reports
  // and plots).
  void shape(double temperature_K, std::span<const double> altitude_km, std::span<double> out) const;

 private:
  struct Table;
  double mass_amu_;
  ProfileSettings settings_;
  std::unique_ptr<Table> table_;
};

}  // namespace exospec::kernels
