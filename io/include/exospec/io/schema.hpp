#pragma once
// The exospec HDF5 data contract (shared/SCHEMA.md, version 1) as data: every
// object's path, dtype, extent, units and description. The reader validates
// against these tables and the writers create objects from them, so the two
// cannot drift apart.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "exospec/io/types.hpp"

namespace exospec::io::schema {

inline constexpr std::string_view kSchemaName = "exospec";
inline constexpr std::int32_t kSchemaVersion = 1;
inline constexpr std::array<std::string_view, 2> kChannels = {"euv", "fuv"};

bool is_channel(std::string_view name) noexcept;

// Shape of an object in terms of N (spectra), P (pixels of the channel),
// K (wavelength polynomial coefficients), L (lines of the channel) and S
// (limb scans, the profile stage).
enum class Extent : std::uint8_t { kScalar, kN, kP, kK, kL, kNxP, kNxL, kS, kSxL };

struct Sizes {
  std::uint64_t n = 0, p = 0, k = 0, l = 0, s = 0;
};

Dims dims_of(Extent e, const Sizes& s);
// "scalar", "N", "P", "N x P", ...
std::string_view extent_name(Extent e) noexcept;
// Whether arrays of this extent are per spectrum (chunked along N).
bool per_spectrum(Extent e) noexcept;

struct ObjectSpec {
  std::string path;
  DType dtype;
  Extent extent;
  std::string_view units;  // empty for strings
  std::string_view description;
};

// Input file objects.
std::vector<ObjectSpec> raw_objects(std::string_view channel);
std::vector<ObjectSpec> calibration_objects(std::string_view channel);
std::vector<ObjectSpec> geometry_objects();
std::vector<ObjectSpec> truth_objects(std::string_view channel);
// The profile truth of /truth/<ch> (the simulator's altitude law; optional for
// readers: a file whose lines follow another law leaves them out).
std::vector<ObjectSpec> profile_truth_objects(std::string_view channel);

// float64 attributes of /calibration/<ch>.
inline constexpr std::array<std::string_view, 3> kCalibrationAttributes = {
    "dead_time_s", "dark_reference_temperature", "dark_temperature_coeff"};

std::string raw_group(std::string_view channel);
std::string calibration_group(std::string_view channel);
std::string truth_group(std::string_view channel);

// Output file objects (what `run` writes).
std::vector<ObjectSpec> calibrated_objects(std::string_view channel);
std::vector<ObjectSpec> denoised_objects(std::string_view channel);
std::vector<ObjectSpec> fit_objects(std::string_view channel);
// Level 3 (the profile stage): the contract's objects, then the project's
// additions (temperature_background_correlation, spectra, mass_amu).
std::vector<ObjectSpec> profile_objects(std::string_view channel);
std::string calibrated_group(std::string_view channel);
std::string denoised_group(std::string_view channel);
std::string fit_group(std::string_view channel);
std::string profile_group(std::string_view channel);

}  // namespace exospec::io::schema
