#pragma once
// A summary of an exospec file (what `exospec info` prints), computed by
// streaming: the per-spectrum arrays are read in blocks, never whole.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace exospec::pipeline {

struct ChannelInfo {
  std::string name;
  std::uint64_t pixels = 0;
  std::vector<double> wavelength_coeffs;
  double wavelength_min_nm = 0.0, wavelength_max_nm = 0.0;
  std::uint64_t bad_pixels = 0;
  double dead_time_s = 0.0;
  double exposure_min_s = 0.0, exposure_max_s = 0.0;
  double temperature_min_c = 0.0, temperature_max_c = 0.0;
  std::vector<std::string> truth_lines;  // empty without /truth/<ch>
  // An output file: the products written for the channel ("calibrated",
  // "denoised", "fit"), the fitted lines and the number of fits per status
  // (index = status code, 0 = converged). Exposure, temperature, bad pixels
  // and dead time are an input's and stay 0 there.
  std::vector<std::string> products;
  std::vector<std::string> fit_lines;
  std::vector<std::uint64_t> fit_status;
};

struct FileInfo {
  std::string path;
  std::string kind;  // "input" (has /raw) or "output" (of `exospec run`)
  std::int64_t schema_version = 0;
  std::uint64_t spectra = 0;
  std::vector<ChannelInfo> channels;
  double time_min_s = 0.0, time_max_s = 0.0;  // since J2000
  double altitude_min_km = 0.0, altitude_max_km = 0.0;
  std::vector<std::string>
      groups;  // present, e.g. /raw/euv, /calibration/euv, /truth/euv, /geometry
  // An output file's provenance attributes (SCHEMA.md), empty for an input.
  std::string software_version, input_file, input_sha256, created_utc;
};

// Opens (and validates) the file and summarises it: an input file (validated
// against the whole input contract) or an output of `exospec run` (its
// geometry and the per-line fit arrays checked against N). Throws
// FileError/SchemaError.
FileInfo inspect(const std::filesystem::path& path);

}  // namespace exospec::pipeline
