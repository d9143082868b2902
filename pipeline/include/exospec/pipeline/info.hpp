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
};

struct FileInfo {
  std::string path;
  std::string kind;  // "input"
  std::int64_t schema_version = 0;
  std::uint64_t spectra = 0;
  std::vector<ChannelInfo> channels;
  double time_min_s = 0.0, time_max_s = 0.0;  // since J2000
  double altitude_min_km = 0.0, altitude_max_km = 0.0;
  std::vector<std::string>
      groups;  // present, e.g. /raw/euv, /calibration/euv, /truth/euv, /geometry
};

// Opens (and validates) the file and summarises it. Throws FileError/SchemaError.
FileInfo inspect(const std::filesystem::path& path);

}  // namespace exospec::pipeline
