#include "exospec/io/schema.hpp"

#include <algorithm>

namespace exospec::io::schema {

bool is_channel(std::string_view name) noexcept {
  return std::find(kChannels.begin(), kChannels.end(), name) != kChannels.end();
}

Dims dims_of(Extent e, const Sizes& s) {
  switch (e) {
    case Extent::kScalar:
      return {};
    case Extent::kN:
      return {s.n};
    case Extent::kP:
      return {s.p};
    case Extent::kK:
      return {s.k};
    case Extent::kL:
      return {s.l};
    case Extent::kNxP:
      return {s.n, s.p};
    case Extent::kNxL:
      return {s.n, s.l};
    case Extent::kS:
      return {s.s};
    case Extent::kSxL:
      return {s.s, s.l};
  }
  return {};
}

std::string_view extent_name(Extent e) noexcept {
  switch (e) {
    case Extent::kScalar:
      return "scalar";
    case Extent::kN:
      return "N";
    case Extent::kP:
      return "P";
    case Extent::kK:
      return "K";
    case Extent::kL:
      return "L";
    case Extent::kNxP:
      return "N x P";
    case Extent::kNxL:
      return "N x L";
    case Extent::kS:
      return "S";
    case Extent::kSxL:
      return "S x L";
  }
  return "?";
}

bool per_spectrum(Extent e) noexcept {
  return e == Extent::kN || e == Extent::kNxP || e == Extent::kNxL;
}

std::string raw_group(std::string_view ch) { return "/raw/" + std::string(ch); }
std::string calibration_group(std::string_view ch) { return "/calibration/" + std::string(ch); }
std::string truth_group(std::string_view ch) { return "/truth/" + std::string(ch); }

std::vector<ObjectSpec> raw_objects(std::string_view ch) {
  const std::string g = raw_group(ch);
  return {
      {g + "/counts", DType::kU32, Extent::kNxP, "count",
       "photon counts per pixel, as telemetered"},
      {g + "/exposure_s", DType::kF64, Extent::kN, "s", "integration time of each spectrum"},
      {g + "/detector_temperature", DType::kF32, Extent::kN, "degC",
       "detector temperature during the acquisition"},
  };
}

std::vector<ObjectSpec> calibration_objects(std::string_view ch) {
  const std::string g = calibration_group(ch);
  return {
      {g + "/wavelength_coeffs", DType::kF64, Extent::kK, "nm",
       "lambda(p) = sum_k c_k p^k, p = pixel index 0..P-1"},
      {g + "/dark_rate", DType::kF64, Extent::kP, "count/s",
       "dark rate per pixel at the reference temperature"},
      {g + "/flat", DType::kF64, Extent::kP, "1", "relative pixel response (mean 1)"},
      {g + "/sensitivity", DType::kF64, Extent::kP, "count/s/(R/nm)",
       "counts per second per unit spectral radiance, flat excluded"},
      {g + "/bad_pixel", DType::kU8, Extent::kP, "1", "1 = pixel unusable (dead or hot)"},
  };
}

std::vector<ObjectSpec> geometry_objects() {
  return {
      {"/geometry/time", DType::kF64, Extent::kN, "s",
       "mid-exposure time, seconds since 2000-01-01T12:00:00 UTC (J2000)"},
      {"/geometry/tangent_altitude_km", DType::kF64, Extent::kN, "km",
       "minimum altitude of the line of sight above the surface"},
  };
}

std::vector<ObjectSpec> truth_objects(std::string_view ch) {
  const std::string g = truth_group(ch);
  return {
      {g + "/line_name", DType::kString, Extent::kL, "", "line name, e.g. H I 121.567"},
      {g + "/line_wavelength_nm", DType::kF64, Extent::kL, "nm",
       "rest wavelength (strongest component of a multiplet)"},
      {g + "/line_brightness", DType::kF64, Extent::kNxL, "R",
       "true brightness of each line in each spectrum (summed over a multiplet)"},
      {g + "/radiance", DType::kF64, Extent::kNxP, "R/nm",
       "noise-free spectral radiance (lines + continuum) averaged over each pixel"},
      {g + "/lsf_fwhm_nm", DType::kF64, Extent::kScalar, "nm", "instrument line-spread FWHM used"},
      {g + "/particle_hit_counts", DType::kU32, Extent::kNxP, "count",
       "counts added by particle hits (0 where none)"},
  };
}

std::vector<ObjectSpec> profile_truth_objects(std::string_view ch) {
  const std::string g = truth_group(ch);
  return {
      {g + "/profile_surface_brightness_R", DType::kF64, Extent::kL, "R",
       "exospheric brightness B_s of each line at a surface-grazing line of sight"},
      {g + "/profile_temperature_K", DType::kF64, Extent::kL, "K",
       "exospheric temperature T of the line's species"},
      {g + "/profile_background_R", DType::kF64, Extent::kL, "R", "constant background B_bg of the line"},
  };
}

}  // namespace exospec::io::schema

namespace exospec::io::schema {

std::string calibrated_group(std::string_view ch) { return "/calibrated/" + std::string(ch); }
std::string denoised_group(std::string_view ch) { return "/denoised/" + std::string(ch); }
std::string fit_group(std::string_view ch) { return "/fit/" + std::string(ch); }
std::string profile_group(std::string_view ch) { return "/profile/" + std::string(ch); }

std::vector<ObjectSpec> calibrated_objects(std::string_view ch) {
  const std::string g = calibrated_group(ch);
  return {
      {g + "/wavelength_nm", DType::kF64, Extent::kP, "nm", "pixel-centre wavelength"},
      {g + "/radiance", DType::kF32, Extent::kNxP, "R/nm",
       "calibrated spectral radiance (NaN where unusable)"},
      {g + "/variance", DType::kF32, Extent::kNxP, "(R/nm)^2",
       "its propagated variance (Poisson, from a model-based expected count)"},
      {g + "/quality", DType::kU8, Extent::kNxP, "1",
       "bit flags; 0 = good. 1 bad pixel, 2 saturated (dead-time correction beyond the "
       "limit), 4 invalid exposure, 8 invalid temperature, 16 particle hit"},
  };
}

std::vector<ObjectSpec> denoised_objects(std::string_view ch) {
  const std::string g = denoised_group(ch);
  return {
      {g + "/radiance", DType::kF32, Extent::kNxP, "R/nm", "spectral radiance after denoising"},
      {g + "/variance", DType::kF32, Extent::kNxP, "(R/nm)^2", "propagated variance"},
  };
}

std::vector<ObjectSpec> fit_objects(std::string_view ch) {
  const std::string g = fit_group(ch);
  return {
      {g + "/line_name", DType::kString, Extent::kL, "", "lines fitted, in output column order"},
      {g + "/line_wavelength_nm", DType::kF64, Extent::kL, "nm",
       "rest wavelength (strongest component of a multiplet)"},
      {g + "/brightness", DType::kF64, Extent::kNxL, "R",
       "fitted line brightness (integrated over the line)"},
      {g + "/brightness_sigma", DType::kF64, Extent::kNxL, "R", "its 1-sigma uncertainty"},
      {g + "/center_nm", DType::kF64, Extent::kNxL, "nm", "fitted line centre"},
      {g + "/fwhm_nm", DType::kF64, Extent::kNxL, "nm", "fitted line FWHM"},
      {g + "/chi2_reduced", DType::kF32, Extent::kNxL, "1",
       "reduced chi-square of the fit window holding the line"},
      {g + "/status", DType::kU8, Extent::kNxL, "1",
       "0 = converged; 1 maximum iterations, 2 stalled, 3 singular, 4 too few good pixels "
       "in the window, 5 invalid spectrum, 6 model not finite (values NaN unless 0 or 1)"},
  };
}

std::vector<ObjectSpec> profile_objects(std::string_view ch) {
  const std::string g = profile_group(ch);
  return {
      {g + "/line_name", DType::kString, Extent::kL, "", "lines profiled (same names as /fit)"},
      {g + "/scan_first", DType::kI64, Extent::kS, "1", "index of the first spectrum of each scan"},
      {g + "/scan_count", DType::kI64, Extent::kS, "1", "number of spectra in each scan"},
      {g + "/surface_brightness_R", DType::kF64, Extent::kSxL, "R",
       "fitted B_s: exospheric brightness at a surface-grazing line of sight"},
      {g + "/surface_brightness_R_sigma", DType::kF64, Extent::kSxL, "R", "1-sigma uncertainty of B_s"},
      {g + "/temperature_K", DType::kF64, Extent::kSxL, "K", "fitted exospheric temperature T"},
      {g + "/temperature_K_sigma", DType::kF64, Extent::kSxL, "K", "1-sigma uncertainty of T"},
      {g + "/background_R", DType::kF64, Extent::kSxL, "R", "fitted constant background B_bg"},
      {g + "/background_R_sigma", DType::kF64, Extent::kSxL, "R", "1-sigma uncertainty of B_bg"},
      {g + "/scale_height_km", DType::kF64, Extent::kSxL, "km", "k T / (m g(R)) at the surface"},
      {g + "/scale_height_km_sigma", DType::kF64, Extent::kSxL, "km", "1-sigma uncertainty of the scale height"},
      {g + "/chi2_reduced", DType::kF32, Extent::kSxL, "1", "reduced chi-square of the profile fit"},
      {g + "/status", DType::kU8, Extent::kSxL, "1",
       "0 = converged; 1 not detected (B_s below min_surface_snr sigma; values kept), 2 temperature at "
       "a bound of the search range, 3 too few spectra, 4 no altitude range, 5 singular, 6 unknown "
       "species mass (values NaN for 3, 4 and 6)"},
      // (Additions of the project.)
      {g + "/temperature_background_correlation", DType::kF64, Extent::kSxL, "1",
       "correlation coefficient of T and B_bg in the fit"},
      {g + "/spectra", DType::kI64, Extent::kSxL, "1", "spectra of the scan used in the fit"},
      {g + "/mass_amu", DType::kF64, Extent::kL, "u", "species mass of each line (unified atomic mass units)"},
  };
}

}  // namespace exospec::io::schema
