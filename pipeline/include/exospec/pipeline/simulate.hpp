#pragma once
// The Phebus-like forward model (shared/INSTRUMENT.md) as a seeded simulator
// that streams an exospec input file with its ground truth.
//
// Per channel and spectrum i (time t_i, tangent altitude z_i):
//  1. radiance L_p (R/nm) = continuum(lambda_p) + sum_j B_j(z_i) * profile_jp,
//     profile = pixel-integrated Gaussian line spread (unit area), B_j(z) =
//     B_s C(z; T) / C(0; T) + B_bg (a ballistic exosphere, kernels/ballistic.hpp),
//     multiplets split by their fixed ratios;
//  2. true rate r_p = L_p sensitivity_p flat_p + dark_p (1 + coeff (T_i - T_ref));
//     dead pixels (bad, dead) record nothing; hot pixels have a large dark rate;
//  3. whole-detector non-paralyzable dead time: every rate scaled by
//     1 / (1 + tau sum_p r_p);
//  4. counts ~ Poisson(rate x exposure) + particle hits (1-3 adjacent pixels of
//     tens of counts, after the dead time).
// Every random draw comes from a stream keyed by (seed, channel, spectrum,
// purpose): the same seed gives byte-identical files for any thread count, and
// spectra are generated in blocks of rows so memory does not grow with N.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "exospec/kernels/spectrum_model.hpp"
#include "exospec/pipeline/catalogue.hpp"

namespace exospec::pipeline {

enum class Preset { kLimbScan, kFlyby };
std::string_view preset_name(Preset p) noexcept;
Preset parse_preset(std::string_view name);  // throws ConfigError

struct InstrumentModel {
  std::uint64_t pixels = 1024;
  double wavelength_min_nm = 0.0, wavelength_max_nm = 0.0, dispersion_curvature = 0.0;
  double lsf_fwhm_nm = 1.0;
  double line_shift_nm = 0.0;  // every line displaced from its rest wavelength
  double dead_time_s = 0.0;
  double sensitivity_peak = 0.0, sensitivity_edge_ratio = 1.0;
  double flat_rms = 0.0, flat_gradient = 0.0;
  double dark_rate = 0.0, dark_rate_rms = 0.0;
  double dark_reference_temperature = 0.0, dark_temperature_coeff = 0.0;
  std::uint64_t hot_pixels = 0;
  double hot_pixel_rate_min = 0.0, hot_pixel_rate_max = 0.0;
  std::uint64_t dead_pixels = 0;
  double temperature_mean = 0.0, temperature_amplitude = 0.0, temperature_period_s = 1.0,
         temperature_noise = 0.0;
  double continuum = 0.0, continuum_slope = 0.0;
  double particle_hit_rate = 0.0;
  std::uint64_t particle_hit_counts_min = 0, particle_hit_counts_max = 0;
};

// A line's emission against tangent altitude z (kernels/ballistic.hpp,
// docs/PROFILE.md): B(z) = B_s C(z; T) / C(0; T) + B_bg, C the line-of-sight
// column of a ballistic exosphere of the species at temperature T.
struct LineEmission {
  double surface_brightness_R = 0.0;  // B_s: at a surface-grazing line of sight
  double temperature_K = 1000.0;      // T
  double background_R = 0.0;          // B_bg (interplanetary emission)
  double mass_amu = 0.0;              // species mass; 0: from the line's element
};

struct SimulationConfig {
  Preset preset = Preset::kLimbScan;
  std::uint64_t spectra = 0;
  std::uint64_t seed = 0;
  std::vector<std::string> channels;
  std::uint64_t block_rows = 256;
  int deflate_level = 0;
  double start_time_j2000_s = 0.0, cadence_s = 10.0, exposure_s = 8.0;
  double limb_altitude_min_km = 0.0, limb_altitude_max_km = 0.0;
  std::uint64_t limb_spectra_per_scan = 1;
  double flyby_closest_approach_km = 0.0, flyby_speed_km_s = 0.0;
  double mercury_radius_km = 2439.7;
  std::map<std::string, InstrumentModel, std::less<>> instrument;
  // Emission per channel and line name (every catalogue line must have one).
  std::map<std::string, std::map<std::string, LineEmission, std::less<>>, std::less<>> exosphere;
  // Where the values came from (the --config file, or the built-in defaults):
  // named by validation errors.
  std::string source = "configuration";

  // Checks ranges and consistency (after command-line overrides); throws
  // ConfigError naming the key.
  void validate(const LineCatalogue& catalogue) const;
  // The configuration as TOML text (what a --config file would hold).
  std::string to_toml() const;
};

// The built-in defaults (data/simulate.toml), optionally overridden by a user
// file with the same layout. Unknown keys, wrong types and bad values are
// ConfigErrors naming the file and the key.
SimulationConfig load_simulation_config(const std::optional<std::filesystem::path>& user_file = {});
// The same from TOML text (merged over the built-in defaults; `source` names it
// in errors). Call validate() on the result, as simulate() does.
SimulationConfig parse_simulation_config(std::string_view text, const std::string& source);
std::string_view default_simulation_config_text();

// Geometry of the preset: mid-exposure time (s since J2000) and tangent
// altitude (km) of spectrum i.
struct Pointing {
  double time_s;
  double tangent_altitude_km;
};
Pointing pointing(const SimulationConfig& config, std::uint64_t i) noexcept;

// Per-channel instrument realisation and per-spectrum generation. Set-up builds
// the calibration (seeded) and the line profiles; generate() draws one spectrum
// and allocates nothing.
class ChannelSimulator {
 public:
  ChannelSimulator(const SimulationConfig& config, std::string_view channel,
                   const std::vector<CatalogueLine>& lines);

  const std::string& channel() const noexcept { return channel_; }
  std::size_t pixels() const noexcept { return pixels_; }
  std::size_t lines() const noexcept { return lines_.size(); }
  const std::vector<double>& wavelength_coeffs() const noexcept { return coeffs_; }
  const std::vector<double>& dark_rate() const noexcept { return dark_rate_; }
  const std::vector<double>& flat() const noexcept { return flat_; }
  const std::vector<double>& sensitivity() const noexcept { return sensitivity_; }
  const std::vector<std::uint8_t>& bad_pixel() const noexcept { return bad_pixel_; }
  const InstrumentModel& model() const noexcept { return model_; }
  std::vector<std::string> line_names() const;
  std::vector<double> line_wavelengths() const;
  // The profile truth of every line: B_s (R), T (K), B_bg (R).
  std::vector<double> line_surface_brightness() const;
  std::vector<double> line_temperature() const;
  std::vector<double> line_background() const;

  struct Spectrum {
    std::span<std::uint32_t> counts;      // P
    std::span<std::uint32_t> hit_counts;  // P
    std::span<double> radiance;           // P, truth (R/nm)
    std::span<double> line_brightness;    // L, truth (R)
    float* temperature;
  };
  // Draws spectrum i. `work` must hold P doubles (expected counts).
  void generate(std::uint64_t i, const Pointing& where, const Spectrum& out,
                std::span<double> work) const;

  // The noise-free expected counts of spectrum i (before Poisson and hits) for
  // a given radiance and temperature: what calibration inverts.
  double expected_counts(std::span<const double> radiance, double temperature_c,
                         std::span<double> out) const;
  double temperature(std::uint64_t i, double time_s) const noexcept;

 private:
  struct Line {
    std::string name;
    double wavelength_nm;
    kernels::LineProfile profile;
    LineEmission emission;  // (its mass resolved from the name where 0)
  };
  std::string channel_;
  std::uint64_t channel_id_;
  std::uint64_t seed_;
  double exposure_s_;
  InstrumentModel model_;
  std::size_t pixels_;
  std::vector<double> coeffs_, dark_rate_, flat_, sensitivity_;
  std::vector<std::uint8_t> bad_pixel_;
  std::vector<double> response_, dark_live_, continuum_;
  std::vector<std::uint8_t> dead_;
  std::vector<Line> lines_;
  // Limb scans: the altitude of each position of a scan and C(z)/C(0) of every
  // line there (positions x L); empty for a flyby.
  std::vector<double> scan_altitude_, scan_shape_;
  double shape(std::size_t line, double altitude_km) const;  // C(z; T)/C(0; T), 0 without B_s
};

struct SimulationSummary {
  std::uint64_t spectra = 0;
  std::vector<std::string> channels;
  double seconds = 0.0;
};

// Called after each block with (spectra done, total); may be empty.
using ProgressCallback = std::function<void(std::uint64_t, std::uint64_t)>;

// Writes the simulated input file atomically (temporary file renamed at the
// end). threads <= 0: OpenMP's default. Throws FileError / ConfigError.
SimulationSummary simulate(const SimulationConfig& config, const LineCatalogue& catalogue,
                           const std::filesystem::path& output, bool overwrite, int threads = 0,
                           const ProgressCallback& progress = {});

}  // namespace exospec::pipeline
