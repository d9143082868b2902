// Loading, validating and printing the simulator's configuration.
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "embedded_data.hpp"
#include "exospec/kernels/ballistic.hpp"
#include "exospec/error.hpp"
#include "exospec/pipeline/simulate.hpp"
#include "exospec/time.hpp"
#include "toml_util.hpp"

namespace exospec::pipeline {
namespace {

using detail::TomlReader;

// The range of schedule.start_time (s since J2000): 1900-01-01T00:00:00Z to
// 2200-01-01T00:00:00Z, where float64 seconds still hold microseconds (what
// to_toml() writes) exactly enough to read back the same.
constexpr double kMinStartTime = -3155716800.0;
constexpr double kEndStartTime = 6311390400.0;

// RFC 3339 UTC text of a J2000 time rounded to the microsecond, with six
// decimals where the fraction is not zero (format_utc's text, but the
// rounding carried into the seconds: 59.9999999 is the next minute's 00).
std::string datetime_text(double j2000_s) {
  const double us = std::round(j2000_s * 1e6);
  if (!(std::fabs(us) < 1e17)) return format_utc(j2000_s, 6);  // (not a valid config)
  const auto total = static_cast<std::int64_t>(us);
  std::int64_t whole = total / 1000000, micro = total % 1000000;
  if (micro < 0) {
    micro += 1000000;
    whole -= 1;
  }
  std::string text = format_utc(static_cast<double>(whole));
  if (micro != 0) {
    char frac[16];
    std::snprintf(frac, sizeof frac, ".%06lld", static_cast<long long>(micro));
    text.insert(text.size() - 1, frac);  // before the Z
  }
  return text;
}

using detail::toml_float;
using detail::toml_string;

InstrumentModel read_instrument(const TomlReader& r, const std::string& p) {
  InstrumentModel m;
  auto num = [&](const char* k) { return r.number(p + "." + k); };
  auto cnt = [&](const char* k) {
    return static_cast<std::uint64_t>(r.integer_in(p + "." + k, 0, std::int64_t{1} << 40));
  };
  m.pixels = cnt("pixels");
  m.wavelength_min_nm = num("wavelength_min_nm");
  m.wavelength_max_nm = num("wavelength_max_nm");
  m.dispersion_curvature = num("dispersion_curvature");
  m.lsf_fwhm_nm = num("lsf_fwhm_nm");
  m.line_shift_nm = num("line_shift_nm");
  m.dead_time_s = num("dead_time_s");
  m.sensitivity_peak = num("sensitivity_peak");
  m.sensitivity_edge_ratio = num("sensitivity_edge_ratio");
  m.flat_rms = num("flat_rms");
  m.flat_gradient = num("flat_gradient");
  m.dark_rate = num("dark_rate");
  m.dark_rate_rms = num("dark_rate_rms");
  m.dark_reference_temperature = num("dark_reference_temperature");
  m.dark_temperature_coeff = num("dark_temperature_coeff");
  m.hot_pixels = cnt("hot_pixels");
  m.hot_pixel_rate_min = num("hot_pixel_rate_min");
  m.hot_pixel_rate_max = num("hot_pixel_rate_max");
  m.dead_pixels = cnt("dead_pixels");
  m.temperature_mean = num("temperature_mean");
  m.temperature_amplitude = num("temperature_amplitude");
  m.temperature_period_s = num("temperature_period_s");
  m.temperature_noise = num("temperature_noise");
  m.continuum = num("continuum");
  m.continuum_slope = num("continuum_slope");
  m.particle_hit_rate = num("particle_hit_rate");
  m.particle_hit_counts_min = cnt("particle_hit_counts_min");
  m.particle_hit_counts_max = cnt("particle_hit_counts_max");
  return m;
}

}  // namespace

std::string_view preset_name(Preset p) noexcept {
  return p == Preset::kFlyby ? "flyby" : "limb-scan";
}

Preset parse_preset(std::string_view name) {
  if (name == "limb-scan") return Preset::kLimbScan;
  if (name == "flyby") return Preset::kFlyby;
  throw ConfigError("", "simulate.preset",
                    "unknown preset " + toml_string(name) + " (expected limb-scan or flyby)");
}

std::string_view default_simulation_config_text() { return detail::embedded_simulate_toml(); }

namespace {
constexpr std::string_view kBuiltIn = "<built-in data/simulate.toml>";
SimulationConfig simulation_config_from(const detail::Toml& root, const std::string& source);

// The built-in defaults, parsed once per process (toml11 takes milliseconds
// for them, much more under sanitizers), then copied for each merge.
const detail::Toml& built_in_tree() {
  static const detail::Toml root =
      detail::parse_toml(detail::embedded_simulate_toml(), std::string(kBuiltIn));
  return root;
}
}  // namespace

SimulationConfig load_simulation_config(const std::optional<std::filesystem::path>& user_file) {
  std::string source(kBuiltIn);
  const detail::Toml root = detail::merged_with_file(built_in_tree(), user_file, source);
  return simulation_config_from(root, source);
}

SimulationConfig parse_simulation_config(std::string_view text, const std::string& source) {
  return simulation_config_from(detail::merged_with_text(built_in_tree(), text, source), source);
}

namespace {
// The configuration that a merged TOML tree describes (`source` names it).
SimulationConfig simulation_config_from(const detail::Toml& root, const std::string& source) {
  const TomlReader r(root, source);
  SimulationConfig c;
  try {
    c.preset = parse_preset(r.string("simulate.preset"));
  } catch (const ConfigError& e) {
    r.fail("simulate.preset", e.message());
  }
  c.spectra =
      static_cast<std::uint64_t>(r.integer_in("simulate.spectra", 1, std::int64_t{1} << 40));
  c.seed = static_cast<std::uint64_t>(r.integer_in("simulate.seed", 0, INT64_MAX));
  c.channels = r.strings("simulate.channels");
  c.block_rows = static_cast<std::uint64_t>(r.integer_in("simulate.block_rows", 1, 1 << 20));
  c.deflate_level = static_cast<int>(r.integer_in("simulate.deflate_level", 0, 9));
  c.start_time_j2000_s = r.j2000_seconds("schedule.start_time");
  c.cadence_s = r.positive("schedule.cadence_s");
  c.exposure_s = r.positive("schedule.exposure_s");
  c.limb_altitude_min_km = r.non_negative("limb_scan.altitude_min_km");
  c.limb_altitude_max_km = r.non_negative("limb_scan.altitude_max_km");
  c.limb_spectra_per_scan =
      static_cast<std::uint64_t>(r.integer_in("limb_scan.spectra_per_scan", 1, 1 << 30));
  c.flyby_closest_approach_km = r.non_negative("flyby.closest_approach_km");
  c.flyby_speed_km_s = r.positive("flyby.speed_km_s");
  c.mercury_radius_km = r.positive("mercury.radius_km");
  for (const auto& [ch, table] : r.at("instrument").as_table()) {
    (void)table;
    c.instrument.emplace(ch, read_instrument(r, "instrument." + ch));
  }
  for (const auto& [ch, table] : r.at("exosphere").as_table()) {
    for (const auto& [name, value] : table.as_table()) {
      (void)value;
      const std::string p = "exosphere." + detail::join_key(ch, name);
      LineEmission e;
      e.surface_brightness_R = r.number(p + ".surface_brightness_R");
      e.temperature_K = r.number(p + ".temperature_K");
      e.background_R = r.number(p + ".background_R");
      e.mass_amu = r.number(p + ".mass_amu");
      c.exosphere[ch].emplace(name, e);
    }
  }
  c.source = source;
  return c;
}
}  // namespace

void SimulationConfig::validate(const LineCatalogue& catalogue) const {
  const std::string& src = source;
  auto fail = [&](const std::string& key, const std::string& msg) {
    throw ConfigError(src, key, msg);
  };
  if (spectra < 1) fail("simulate.spectra", "must be >= 1");
  if (channels.empty()) fail("simulate.channels", "must name at least one channel");
  std::set<std::string> seen;
  for (const auto& ch : channels) {
    if (ch != "euv" && ch != "fuv") {
      fail("simulate.channels", "unknown channel " + toml_string(ch) + " (expected euv or fuv)");
    }
    if (!seen.insert(ch).second) fail("simulate.channels", "channel " + toml_string(ch) + " given twice");
  }
  if (block_rows < 1) fail("simulate.block_rows", "must be >= 1");
  if (deflate_level < 0 || deflate_level > 9) fail("simulate.deflate_level", "must be 0-9");
  if (!(start_time_j2000_s >= kMinStartTime && start_time_j2000_s < kEndStartTime)) {
    fail("schedule.start_time", "must be in the years 1900 to 2199");
  }
  if (!(cadence_s > 0.0)) fail("schedule.cadence_s", "must be > 0");
  if (!(exposure_s > 0.0)) fail("schedule.exposure_s", "must be > 0");
  if (!(limb_altitude_max_km >= limb_altitude_min_km) || limb_altitude_min_km < 0.0) {
    fail("limb_scan.altitude_max_km", "must be >= altitude_min_km >= 0");
  }
  if (limb_spectra_per_scan < 1) fail("limb_scan.spectra_per_scan", "must be >= 1");
  if (!(flyby_speed_km_s > 0.0)) fail("flyby.speed_km_s", "must be > 0");
  if (!(flyby_closest_approach_km >= 0.0)) fail("flyby.closest_approach_km", "must be >= 0");
  for (const auto& ch : channels) {
    auto it = instrument.find(ch);
    if (it == instrument.end()) fail("instrument." + ch, "missing table");
    const InstrumentModel& m = it->second;
    const std::string p = "instrument." + ch + ".";
    if (m.pixels < 16 || m.pixels > (1u << 20)) fail(p + "pixels", "must be in [16, 1048576]");
    if (!(m.wavelength_min_nm > 0.0)) fail(p + "wavelength_min_nm", "must be > 0");
    if (!(m.wavelength_max_nm > m.wavelength_min_nm)) {
      fail(p + "wavelength_max_nm", "must be > wavelength_min_nm");
    }
    if (!(std::fabs(m.dispersion_curvature) <= 0.5)) {
      fail(p + "dispersion_curvature", "must be in [-0.5, 0.5] (monotonic dispersion)");
    }
    if (!(m.lsf_fwhm_nm > 0.0)) fail(p + "lsf_fwhm_nm", "must be > 0");
    if (!(std::fabs(m.line_shift_nm) <= 10.0 * m.lsf_fwhm_nm)) {
      fail(p + "line_shift_nm", "must be within +-10 line-spread FWHM");
    }
    if (!(m.dead_time_s >= 0.0 && m.dead_time_s < 1e-2))
      fail(p + "dead_time_s", "must be in [0, 0.01)");
    if (!(m.sensitivity_peak > 0.0)) fail(p + "sensitivity_peak", "must be > 0");
    if (!(m.sensitivity_edge_ratio > 0.0 && m.sensitivity_edge_ratio <= 1.0)) {
      fail(p + "sensitivity_edge_ratio", "must be in (0, 1]");
    }
    if (!(m.flat_rms >= 0.0 && m.flat_rms <= 0.2)) fail(p + "flat_rms", "must be in [0, 0.2]");
    if (!(std::fabs(m.flat_gradient) <= 0.5)) fail(p + "flat_gradient", "must be in [-0.5, 0.5]");
    if (!(m.dark_rate >= 0.0)) fail(p + "dark_rate", "must be >= 0");
    if (!(m.dark_rate_rms >= 0.0)) fail(p + "dark_rate_rms", "must be >= 0");
    if (!(std::fabs(m.dark_temperature_coeff) < 1.0)) {
      fail(p + "dark_temperature_coeff", "must be in (-1, 1) per degC");
    }
    if (m.hot_pixels + m.dead_pixels > m.pixels / 4) {
      fail(p + "hot_pixels", "hot_pixels + dead_pixels must not exceed a quarter of the pixels");
    }
    if (!(m.hot_pixel_rate_min >= 0.0 && m.hot_pixel_rate_max >= m.hot_pixel_rate_min)) {
      fail(p + "hot_pixel_rate_max", "must be >= hot_pixel_rate_min >= 0");
    }
    if (!(m.temperature_period_s > 0.0)) fail(p + "temperature_period_s", "must be > 0");
    if (!(m.temperature_noise >= 0.0)) fail(p + "temperature_noise", "must be >= 0");
    if (!(m.continuum >= 0.0)) fail(p + "continuum", "must be >= 0");
    if (!(m.particle_hit_rate >= 0.0 && m.particle_hit_rate <= 1000.0)) {
      fail(p + "particle_hit_rate", "must be in [0, 1000]");
    }
    if (m.particle_hit_counts_max < m.particle_hit_counts_min ||
        m.particle_hit_counts_max > 1000000) {
      fail(p + "particle_hit_counts_max", "must be in [particle_hit_counts_min, 1000000]");
    }
    auto ex = exosphere.find(ch);
    for (const auto& line : catalogue.channel(ch)) {
      const std::string key = "exosphere." + detail::join_key(ch, line.name);
      if (ex == exosphere.end() || ex->second.find(line.name) == ex->second.end()) {
        fail(key, "missing: every catalogue line needs surface_brightness_R, temperature_K, background_R, "
                  "mass_amu");
      }
      const LineEmission& e = ex->second.find(line.name)->second;
      if (!(e.surface_brightness_R >= 0.0)) fail(key + ".surface_brightness_R", "must be >= 0");
      if (!(e.temperature_K >= 10.0 && e.temperature_K <= 1e7)) {
        fail(key + ".temperature_K", "must be in [10, 1e7] K");
      }
      if (!(e.background_R >= 0.0)) fail(key + ".background_R", "must be >= 0");
      if (!(e.mass_amu >= 0.0 && e.mass_amu <= 1e4)) fail(key + ".mass_amu", "must be in [0, 1e4] (0: from the name)");
      if (e.mass_amu == 0.0 && !kernels::exosphere::species_mass_amu(line.name)) {
        fail(key + ".mass_amu", "the line's name names no known element: give its species mass");
      }
    }
  }
}

std::string SimulationConfig::to_toml() const {
  std::ostringstream s;
  s << "[simulate]\npreset = " << toml_string(preset_name(preset)) << "\nspectra = " << spectra
    << "\nseed = " << seed << "\nchannels = [";
  for (std::size_t i = 0; i < channels.size(); ++i) s << (i ? ", " : "") << toml_string(channels[i]);
  s << "]\nblock_rows = " << block_rows << "\ndeflate_level = " << deflate_level << "\n\n";
  s << "[schedule]\nstart_time = " << datetime_text(start_time_j2000_s)
    << "\ncadence_s = " << toml_float(cadence_s) << "\nexposure_s = " << toml_float(exposure_s) << "\n\n";
  s << "[limb_scan]\naltitude_min_km = " << toml_float(limb_altitude_min_km)
    << "\naltitude_max_km = " << toml_float(limb_altitude_max_km)
    << "\nspectra_per_scan = " << limb_spectra_per_scan << "\n\n";
  s << "[flyby]\nclosest_approach_km = " << toml_float(flyby_closest_approach_km)
    << "\nspeed_km_s = " << toml_float(flyby_speed_km_s) << "\n\n";
  s << "[mercury]\nradius_km = " << toml_float(mercury_radius_km) << "\n";
  for (const auto& [ch, m] : instrument) {
    s << "\n[instrument." << ch << "]\n"
      << "pixels = " << m.pixels << "\nwavelength_min_nm = " << toml_float(m.wavelength_min_nm)
      << "\nwavelength_max_nm = " << toml_float(m.wavelength_max_nm)
      << "\ndispersion_curvature = " << toml_float(m.dispersion_curvature)
      << "\nlsf_fwhm_nm = " << toml_float(m.lsf_fwhm_nm)
      << "\nline_shift_nm = " << toml_float(m.line_shift_nm) << "\ndead_time_s = " << toml_float(m.dead_time_s)
      << "\nsensitivity_peak = " << toml_float(m.sensitivity_peak)
      << "\nsensitivity_edge_ratio = " << toml_float(m.sensitivity_edge_ratio)
      << "\nflat_rms = " << toml_float(m.flat_rms) << "\nflat_gradient = " << toml_float(m.flat_gradient)
      << "\ndark_rate = " << toml_float(m.dark_rate) << "\ndark_rate_rms = " << toml_float(m.dark_rate_rms)
      << "\ndark_reference_temperature = " << toml_float(m.dark_reference_temperature)
      << "\ndark_temperature_coeff = " << toml_float(m.dark_temperature_coeff)
      << "\nhot_pixels = " << m.hot_pixels << "\nhot_pixel_rate_min = " << toml_float(m.hot_pixel_rate_min)
      << "\nhot_pixel_rate_max = " << toml_float(m.hot_pixel_rate_max)
      << "\ndead_pixels = " << m.dead_pixels << "\ntemperature_mean = " << toml_float(m.temperature_mean)
      << "\ntemperature_amplitude = " << toml_float(m.temperature_amplitude)
      << "\ntemperature_period_s = " << toml_float(m.temperature_period_s)
      << "\ntemperature_noise = " << toml_float(m.temperature_noise)
      << "\ncontinuum = " << toml_float(m.continuum) << "\ncontinuum_slope = " << toml_float(m.continuum_slope)
      << "\nparticle_hit_rate = " << toml_float(m.particle_hit_rate)
      << "\nparticle_hit_counts_min = " << m.particle_hit_counts_min
      << "\nparticle_hit_counts_max = " << m.particle_hit_counts_max << "\n";
  }
  for (const auto& [ch, lines] : exosphere) {
    for (const auto& [name, e] : lines) {
      s << "\n[exosphere." << ch << "." << toml_string(name)
        << "]\nsurface_brightness_R = " << toml_float(e.surface_brightness_R)
        << "\ntemperature_K = " << toml_float(e.temperature_K) << "\nbackground_R = " << toml_float(e.background_R)
        << "\nmass_amu = " << toml_float(e.mass_amu) << "\n";
    }
  }
  return s.str();
}

}  // namespace exospec::pipeline
