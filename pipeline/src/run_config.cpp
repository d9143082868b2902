// Loading, validating and printing the configuration of `exospec run`.
#include <algorithm>
#include <cmath>

#include "embedded_data.hpp"
#include "exospec/error.hpp"
#include "exospec/io/schema.hpp"
#include "exospec/pipeline/run.hpp"
#include "toml_util.hpp"

namespace exospec::pipeline {
namespace {

constexpr Stage kAllStages[] = {Stage::kCalibrate, Stage::kDenoise, Stage::kFit, Stage::kProfile};
constexpr std::string_view kBuiltIn = "<built-in data/run.toml>";

using detail::toml_float;
using detail::toml_string;

std::string known_stages() {
  std::string s;
  for (Stage st : kAllStages) s += (s.empty() ? "" : ", ") + std::string(stage_name(st));
  return s;
}

}  // namespace

std::string_view stage_name(Stage s) noexcept {
  switch (s) {
    case Stage::kCalibrate:
      return "calibrate";
    case Stage::kDenoise:
      return "denoise";
    case Stage::kFit:
      return "fit";
    case Stage::kProfile:
      return "profile";
  }
  return "?";
}

std::string_view product_name(Stage s) noexcept {
  switch (s) {
    case Stage::kCalibrate:
      return "calibrated";
    case Stage::kDenoise:
      return "denoised";
    case Stage::kFit:
      return "fit";
    case Stage::kProfile:
      return "profile";
  }
  return "?";
}

namespace {

// A comma-separated list of stage names (name_of: stage_name or product_name)
// in pipeline order; `kind` names them in errors.
std::vector<Stage> parse_stage_list(std::string_view list, const std::string& where,
                                    std::string_view (*name_of)(Stage) noexcept,
                                    const std::string& kind) {
  std::string known;
  for (Stage st : kAllStages) known += (known.empty() ? "" : ", ") + std::string(name_of(st));
  std::vector<Stage> out;
  std::size_t pos = 0;
  while (pos <= list.size()) {
    const std::size_t comma = std::min(list.find(',', pos), list.size());
    const std::string_view name = list.substr(pos, comma - pos);
    const auto* it = std::find_if(std::begin(kAllStages), std::end(kAllStages),
                                  [&](Stage s) { return name_of(s) == name; });
    if (it == std::end(kAllStages)) {
      throw ConfigError(where, "", "unknown " + kind + " " + toml_string(name) + " (" +
                                       kind + "s: " + known + ")");
    }
    if (std::find(out.begin(), out.end(), *it) != out.end()) {
      throw ConfigError(where, "", kind + " " + toml_string(name) + " given twice");
    }
    out.push_back(*it);
    pos = comma + 1;
  }
  // Pipeline order, whatever order they were given in.
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<Stage> parse_stages(std::string_view list, const std::string& where) {
  return parse_stage_list(list, where, &stage_name, "stage");
}

std::vector<Stage> parse_products(std::string_view list, const std::string& where) {
  return parse_stage_list(list, where, &product_name, "product");
}

bool RunConfig::writes(Stage s) const noexcept {
  if (!has_stage(s)) return false;
  return products.empty() || std::find(products.begin(), products.end(), s) != products.end();
}

bool RunConfig::has_stage(Stage s) const noexcept {
  return std::find(stages.begin(), stages.end(), s) != stages.end();
}

std::string_view default_run_config_text() { return detail::embedded_run_toml(); }

namespace {
RunConfig run_config_from(const detail::Toml& root, const std::string& source);

// The built-in defaults, parsed once per process (toml11 takes milliseconds
// for them, much more under sanitizers), then copied for each merge.
const detail::Toml& built_in_tree() {
  static const detail::Toml root =
      detail::parse_toml(detail::embedded_run_toml(), std::string(kBuiltIn));
  return root;
}
}  // namespace

RunConfig load_run_config(const std::optional<std::filesystem::path>& user_file) {
  std::string source(kBuiltIn);
  const detail::Toml root = detail::merged_with_file(built_in_tree(), user_file, source);
  return run_config_from(root, source);
}

RunConfig parse_run_config(std::string_view text, const std::string& source) {
  return run_config_from(detail::merged_with_text(built_in_tree(), text, source), source);
}

namespace {
// The configuration that a merged TOML tree describes (`source` names it).
RunConfig run_config_from(const detail::Toml& root, const std::string& source) {
  const detail::TomlReader r(root, source);
  RunConfig c;
  c.source = source;
  {
    std::string joined;
    for (const auto& s : r.strings("run.stages")) joined += (joined.empty() ? "" : ",") + s;
    if (joined.empty()) r.fail("run.stages", "no stage given (stages: " + known_stages() + ")");
    try {
      c.stages = parse_stages(joined, source);
    } catch (const ConfigError& e) {
      r.fail("run.stages", e.message());
    }
  }
  c.channels = r.strings("run.channels");
  {
    std::string joined;
    for (const auto& p : r.strings("run.products")) joined += (joined.empty() ? "" : ",") + p;
    if (!joined.empty()) {
      try {
        c.products = parse_products(joined, source);
      } catch (const ConfigError& e) {
        r.fail("run.products", e.message());
      }
    }
  }
  c.block_rows = static_cast<std::uint64_t>(r.integer_in("run.block_rows", 1, 1 << 20));
  c.deflate_level = static_cast<int>(r.integer_in("run.deflate_level", 0, 9));
  c.calibrate.max_dead_time_correction =
      r.in_range("calibrate.max_dead_time_correction", 1.0, 1e6);
  c.calibrate.variance_half_width =
      static_cast<int>(r.integer_in("calibrate.variance_half_width", 2, 64));
  c.calibrate.variance_wide_half_width =
      static_cast<int>(r.integer_in("calibrate.variance_wide_half_width", 1, 1024));
  c.calibrate.variance_spectra = static_cast<int>(r.integer_in("calibrate.variance_spectra", 0, 64));
  c.calibrate.variance_structure_sigma = r.in_range("calibrate.variance_structure_sigma", 0.0, 1e6);
  c.calibrate.min_expected_counts = r.in_range("calibrate.min_expected_counts", 1e-6, 1e6);
  c.calibrate.min_detector_temperature_c =
      r.in_range("calibrate.min_detector_temperature_c", -273.15, 1e4);
  c.calibrate.max_detector_temperature_c =
      r.in_range("calibrate.max_detector_temperature_c", -273.15, 1e4);
  c.fftw_wisdom_file = r.string("run.fftw_wisdom_file");
  c.profile.settings.min_temperature_K = r.in_range("profile.min_temperature_K", 1.0, 1e7);
  c.profile.settings.max_temperature_K = r.in_range("profile.max_temperature_K", 1.0, 1e7);
  c.profile.settings.min_spectra = static_cast<std::size_t>(r.integer_in("profile.min_spectra", 4, 1 << 30));
  c.profile.settings.min_surface_snr = r.in_range("profile.min_surface_snr", 0.0, 1e6);
  for (const auto& [name, value] : r.at("profile.mass_amu").as_table()) {
    (void)value;
    c.profile.mass_amu[name] = r.in_range(detail::join_key("profile.mass_amu", name), 1e-3, 1e4);
  }
  {
    const std::string mode = r.string("scans.mode");
    const auto m = kernels::parse_scan_mode(mode);
    if (!m) r.fail("scans.mode", "unknown mode " + toml_string(mode) + " (monotonic, fixed, file)");
    c.scan_mode = *m;
    c.scan_length = r.integer_in("scans.length", 1, std::int64_t{1} << 40);
  }
  for (const auto& [ch, table] : r.at("denoise").as_table()) {
    (void)table;
    const std::string k = "denoise." + ch;
    if (!io::schema::is_channel(ch)) r.fail(k, "unknown channel " + toml_string(ch));
    DenoiseConfig d;
    const std::string method = r.string(k + ".method");
    if (!parse_denoise_method(method, d.method)) {
      r.fail(k + ".method", "unknown method " + toml_string(method) +
                                " (adaptive, savgol, lowpass, wiener, anscombe)");
    }
    d.lsf_fwhm_nm = r.in_range("instrument." + ch + ".lsf_fwhm_nm", 1e-6, 1e3);
    d.lowpass_sigma_lsf = r.in_range(k + ".lowpass.sigma_lsf", 1e-3, 100.0);
    d.despike.enabled = true;
    d.despike.threshold = r.in_range(k + ".despike.threshold", 1.0, 1e3);
    d.despike.grow_threshold = r.in_range(k + ".despike.grow_threshold", 0.0, 1e3);
    d.despike.line_tolerance = r.in_range(k + ".despike.line_tolerance", 0.0, 10.0);
    d.adaptive.polyorder = static_cast<int>(r.integer_in(k + ".adaptive.polyorder", 0, 6));
    d.adaptive.windows.clear();
    for (auto w : r.integers(k + ".adaptive.windows")) {
      if (w < 3 || w > 1001 || w % 2 == 0) {
        r.fail(k + ".adaptive.windows", "windows must be odd, between 3 and 1001");
      }
      d.adaptive.windows.push_back(static_cast<int>(w));
    }
    d.adaptive.gamma = r.in_range(k + ".adaptive.gamma", 0.1, 100.0);
    d.savgol.window = static_cast<int>(r.integer_in(k + ".savgol.window", 3, 1001));
    d.savgol.polyorder = static_cast<int>(r.integer_in(k + ".savgol.polyorder", 0, 10));
    const std::string mode = r.string(k + ".savgol.mode");
    const auto m = kernels::parse_savgol_mode(mode);
    if (!m) r.fail(k + ".savgol.mode", "unknown mode " + toml_string(mode) + " (interp, mirror, nearest, constant, wrap)");
    d.savgol.mode = *m;
    c.denoise[ch] = d;
  }
  for (auto ch : io::schema::kChannels) {
    const std::string k = "fit." + std::string(ch);
    kernels::LineFitSettings f;
    f.fwhm_nm = r.in_range("instrument." + std::string(ch) + ".lsf_fwhm_nm", 1e-6, 1e3);
    f.background_order = static_cast<int>(r.integer_in(k + ".background_order", 0, 2));
    f.window_half_width_fwhm = r.in_range(k + ".window_half_width_fwhm", 0.5, 50.0);
    f.group_distance_fwhm = r.in_range(k + ".group_distance_fwhm", 0.0, 50.0);
    f.refine_iterations = static_cast<int>(r.integer_in(k + ".refine_iterations", 0, 20));
    f.line_prior_counts = r.in_range(k + ".line_prior_counts", 0.0, 100.0);
    const std::string shift = r.string(k + ".shift");
    const auto sm = kernels::parse_shift_mode(shift);
    if (!sm) r.fail(k + ".shift", "unknown mode " + toml_string(shift) + " (fixed, tied, free)");
    f.shift = *sm;
    const std::string width = r.string(k + ".width");
    const auto wm = kernels::parse_width_mode(width);
    if (!wm) r.fail(k + ".width", "unknown mode " + toml_string(width) + " (fixed, free)");
    f.width = *wm;
    f.shift_min_snr = r.in_range(k + ".shift_min_snr", 0.0, 1e6);
    f.max_shift_fwhm = r.in_range(k + ".max_shift_fwhm", 0.0, 5.0);
    f.max_iterations = static_cast<int>(r.integer_in(k + ".max_iterations", 1, 100000));
    const std::string reference = r.string(k + ".sigma_reference");
    const auto sr = kernels::parse_sigma_reference(reference);
    if (!sr) r.fail(k + ".sigma_reference", "unknown reference " + toml_string(reference) + " (neighbours, self)");
    f.sigma_reference = *sr;
    f.reference_half_width = static_cast<int>(r.integer_in(k + ".reference_half_width", 1, 50));
    f.min_expected_counts = c.calibrate.min_expected_counts;
    c.fit[std::string(ch)] = f;
  }
  c.validate();
  return c;
}
}  // namespace

void RunConfig::validate() const {
  auto fail = [&](const std::string& key, const std::string& msg) {
    throw ConfigError(source, key, msg);
  };
  if (stages.empty()) fail("run.stages", "no stage given (stages: " + known_stages() + ")");
  for (const auto& ch : channels) {
    if (!io::schema::is_channel(ch)) fail("run.channels", "unknown channel " + toml_string(ch));
  }
  if (block_rows < 1) fail("run.block_rows", "must be at least 1");
  if (deflate_level < 0 || deflate_level > 9) fail("run.deflate_level", "must be in [0, 9]");
  if (!(calibrate.max_dead_time_correction >= 1.0)) {
    fail("calibrate.max_dead_time_correction", "must be at least 1");
  }
  if (calibrate.variance_half_width < 2) fail("calibrate.variance_half_width", "must be >= 2");
  if (calibrate.variance_wide_half_width < 1) fail("calibrate.variance_wide_half_width", "must be >= 1");
  if (calibrate.variance_spectra < 0) fail("calibrate.variance_spectra", "must be >= 0");
  if (!(calibrate.variance_structure_sigma >= 0.0) || !std::isfinite(calibrate.variance_structure_sigma)) {
    fail("calibrate.variance_structure_sigma", "must be >= 0");
  }
  if (!(calibrate.min_expected_counts > 0.0) || !std::isfinite(calibrate.min_expected_counts)) {
    fail("calibrate.min_expected_counts", "must be positive");
  }
  if (!(calibrate.min_detector_temperature_c < calibrate.max_detector_temperature_c)) {
    fail("calibrate.max_detector_temperature_c", "must be above min_detector_temperature_c");
  }
  for (const auto& [ch, d] : denoise) {
    const std::string k = "denoise." + ch;
    const auto& w = d.adaptive.windows;
    if (w.empty()) fail(k + ".adaptive.windows", "needs at least one window");
    for (std::size_t i = 0; i < w.size(); ++i) {
      if (w[i] % 2 == 0 || w[i] < 3) fail(k + ".adaptive.windows", "windows must be odd and >= 3");
      if (i > 0 && w[i] <= w[i - 1]) fail(k + ".adaptive.windows", "windows must increase");
      if (w[i] <= d.adaptive.polyorder) {
        fail(k + ".adaptive.windows", "every window must exceed adaptive.polyorder");
      }
    }
    if (d.savgol.window % 2 == 0) fail(k + ".savgol.window", "must be odd");
    if (d.savgol.polyorder >= d.savgol.window) {
      fail(k + ".savgol.polyorder", "must be less than savgol.window");
    }
    if (!(d.despike.grow_threshold <= d.despike.threshold)) {
      fail(k + ".despike.grow_threshold", "must not exceed despike.threshold");
    }
  }
  for (Stage p : products) {
    if (!has_stage(p)) {
      fail("run.products", "product " + toml_string(product_name(p)) + " needs stage " +
                               std::string(stage_name(p)) + ", which does not run");
    }
  }
  if (has_stage(Stage::kDenoise) && !has_stage(Stage::kCalibrate)) {
    fail("run.stages", "stage denoise needs calibrate (stages: calibrate,denoise)");
  }
  if (has_stage(Stage::kFit) && !has_stage(Stage::kCalibrate)) {
    fail("run.stages", "stage fit needs calibrate (stages: calibrate,denoise,fit)");
  }
  if (has_stage(Stage::kProfile) && !has_stage(Stage::kFit)) {
    fail("run.stages", "stage profile needs fit (stages: calibrate,denoise,fit,profile)");
  }
  if (!(profile.settings.min_temperature_K < profile.settings.max_temperature_K)) {
    fail("profile.max_temperature_K", "must be above min_temperature_K");
  }
  if (has_stage(Stage::kFit)) {
    for (auto ch : io::schema::kChannels) {
      if (fit.find(ch) == fit.end()) fail("fit." + std::string(ch), "missing");
    }
  }
  if (has_stage(Stage::kDenoise)) {
    for (auto ch : io::schema::kChannels) {
      if (denoise.find(ch) == denoise.end()) {
        fail("denoise." + std::string(ch), "missing (the denoise stage needs one table per channel)");
      }
    }
  }
}

std::string RunConfig::to_toml() const {
  std::string s = "[run]\nstages = [";
  for (std::size_t i = 0; i < stages.size(); ++i) {
    s += (i ? ", " : "") + toml_string(stage_name(stages[i]));
  }
  s += "]\nchannels = [";
  for (std::size_t i = 0; i < channels.size(); ++i) s += (i ? ", " : "") + toml_string(channels[i]);
  s += "]\nproducts = [";
  for (std::size_t i = 0; i < products.size(); ++i) {
    s += (i ? ", " : "") + toml_string(product_name(products[i]));
  }
  s += "]\nblock_rows = " + std::to_string(block_rows) + "\n";
  s += "deflate_level = " + std::to_string(deflate_level) + "\n";
  s += "fftw_wisdom_file = " + toml_string(fftw_wisdom_file) + "\n";
  s += "\n[scans]\nmode = " + toml_string(kernels::scan_mode_name(scan_mode)) + "\n";
  s += "length = " + std::to_string(scan_length) + "\n";
  s += "\n[profile]\nmin_temperature_K = " + toml_float(profile.settings.min_temperature_K) + "\n";
  s += "max_temperature_K = " + toml_float(profile.settings.max_temperature_K) + "\n";
  s += "min_spectra = " + std::to_string(profile.settings.min_spectra) + "\n";
  s += "min_surface_snr = " + toml_float(profile.settings.min_surface_snr) + "\n";
  s += "\n[profile.mass_amu]\n";
  for (const auto& [name, m] : profile.mass_amu) s += toml_string(name) + " = " + toml_float(m) + "\n";
  s += "\n[calibrate]\n";
  s += "max_dead_time_correction = " + toml_float(calibrate.max_dead_time_correction) + "\n";
  s += "variance_half_width = " + std::to_string(calibrate.variance_half_width) + "\n";
  s += "variance_wide_half_width = " + std::to_string(calibrate.variance_wide_half_width) + "\n";
  s += "variance_spectra = " + std::to_string(calibrate.variance_spectra) + "\n";
  s += "variance_structure_sigma = " + toml_float(calibrate.variance_structure_sigma) + "\n";
  s += "min_expected_counts = " + toml_float(calibrate.min_expected_counts) + "\n";
  s += "min_detector_temperature_c = " + toml_float(calibrate.min_detector_temperature_c) + "\n";
  s += "max_detector_temperature_c = " + toml_float(calibrate.max_detector_temperature_c) + "\n";
  for (const auto& [ch, f] : fit) {
    s += "\n[fit." + ch + "]\nbackground_order = " + std::to_string(f.background_order) + "\n";
    s += "window_half_width_fwhm = " + toml_float(f.window_half_width_fwhm) + "\n";
    s += "group_distance_fwhm = " + toml_float(f.group_distance_fwhm) + "\n";
    s += "refine_iterations = " + std::to_string(f.refine_iterations) + "\n";
    s += "line_prior_counts = " + toml_float(f.line_prior_counts) + "\n";
    s += "shift = " + toml_string(kernels::shift_mode_name(f.shift)) + "\n";
    s += "width = " + toml_string(kernels::width_mode_name(f.width)) + "\n";
    s += "shift_min_snr = " + toml_float(f.shift_min_snr) + "\n";
    s += "max_shift_fwhm = " + toml_float(f.max_shift_fwhm) + "\n";
    s += "max_iterations = " + std::to_string(f.max_iterations) + "\n";
    s += "sigma_reference = " + toml_string(kernels::sigma_reference_name(f.sigma_reference)) + "\n";
    s += "reference_half_width = " + std::to_string(f.reference_half_width) + "\n";
  }
  for (const auto& [ch, d] : denoise) {
    s += "\n[denoise." + ch + "]\nmethod = " + toml_string(denoise_method_name(d.method)) + "\n";
    s += "\n[instrument." + ch + "]\nlsf_fwhm_nm = " + toml_float(d.lsf_fwhm_nm) + "\n";
    s += "\n[denoise." + ch + ".lowpass]\nsigma_lsf = " + toml_float(d.lowpass_sigma_lsf) + "\n";
    s += "\n[denoise." + ch + ".despike]\n";
    s += "threshold = " + toml_float(d.despike.threshold) + "\n";
    s += "grow_threshold = " + toml_float(d.despike.grow_threshold) + "\n";
    s += "line_tolerance = " + toml_float(d.despike.line_tolerance) + "\n";
    s += "\n[denoise." + ch + ".adaptive]\npolyorder = " + std::to_string(d.adaptive.polyorder) +
         "\nwindows = [";
    for (std::size_t i = 0; i < d.adaptive.windows.size(); ++i) {
      s += (i ? ", " : "") + std::to_string(d.adaptive.windows[i]);
    }
    s += "]\ngamma = " + toml_float(d.adaptive.gamma) + "\n";
    s += "\n[denoise." + ch + ".savgol]\nwindow = " + std::to_string(d.savgol.window) +
         "\npolyorder = " + std::to_string(d.savgol.polyorder) +
         "\nmode = " + toml_string(kernels::savgol_mode_name(d.savgol.mode)) + "\n";
  }
  return s;
}

}  // namespace exospec::pipeline
