#pragma once
// An exospec input file (what `simulate` writes and `run` reads), validated
// against the data contract when opened: a missing object, a wrong dtype or
// shape, units that differ from the contract, N that differs between channels
// or geometry, or a file that is not HDF5 or is truncated each raise a
// SchemaError / FileError naming the file and the object.
//
// Reading streams blocks of whole rows into caller-owned buffers; nothing reads
// a whole per-spectrum dataset unless asked to.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "exospec/io/file.hpp"
#include "exospec/io/schema.hpp"

namespace exospec::io {

struct ChannelCalibration {
  std::vector<double> wavelength_coeffs;  // nm; lambda(p) = sum_k c_k p^k
  std::vector<double> dark_rate;          // count/s at the reference temperature
  std::vector<double> flat;               // 1
  std::vector<double> sensitivity;        // count/s/(R/nm)
  std::vector<std::uint8_t> bad_pixel;    // 1 = unusable
  double dead_time_s = 0.0;
  double dark_reference_temperature = 0.0;  // degC
  double dark_temperature_coeff = 0.0;      // 1/degC
};

// Checks a channel's calibration as read_calibration() does (P values per
// table, finite values, wavelengths running one way across the P pixels, 0/1
// bad pixels, positive sensitivity and flat and a non-negative dark on usable
// pixels, dead time >= 0); throws SchemaError naming `file` and `group`'s
// objects (the in-memory tables of library users name what they like).
void check_calibration(const ChannelCalibration& calibration, std::uint64_t pixels,
                       const std::string& file, const std::string& group);

// The largest sizes an input file may claim (its datasets' shapes are only
// claims until read: a few kilobytes of HDF5 can declare 10^12 spectra of 10^9
// pixels). Larger files are refused with one error naming the object, before
// anything is allocated for them. PHEBUS's detectors have 1024 pixels; 65,536
// leaves 64 times that. A file of 10^7 spectra holds ~80 GB of counts per
// channel; the run keeps a few hundred bytes per spectrum for the whole file
// (altitudes, scans, the profile fits' inputs), a few GB at this bound.
inline constexpr std::uint64_t kMaxPixels = 65536;
inline constexpr std::uint64_t kMaxSpectra = 10'000'000;
// The wavelength polynomial's coefficients K (the simulator writes 3): more
// than a dispersion relation needs, and a bound on what the table may claim.
inline constexpr std::uint64_t kMaxWavelengthCoeffs = 16;
// The lines of a channel's /truth (the catalogue has a few dozen).
inline constexpr std::uint64_t kMaxLines = 4096;

class InputFile {
 public:
  static InputFile open(const std::filesystem::path& path);

  const std::string& path() const noexcept { return file_.path(); }
  // Channels present, in contract order (euv before fuv).
  const std::vector<std::string>& channels() const noexcept { return channels_; }
  bool has_channel(std::string_view channel) const noexcept;
  std::uint64_t spectra() const noexcept { return n_; }
  std::uint64_t pixels(std::string_view channel) const;

  // Reads and checks the calibration of a channel (finite values; positive
  // sensitivity and flat on usable pixels; dead time >= 0).
  ChannelCalibration read_calibration(std::string_view channel) const;

  // Row blocks: rows [row0, row0 + out.size() / row_size).
  void read_counts(std::string_view channel, std::uint64_t row0,
                   std::span<std::uint32_t> out) const;
  // The same in two steps (stored_rows.hpp): the stored chunks now, on the
  // HDF5 thread; stored.decode() into `out` later, on any thread.
  void fetch_counts(std::string_view channel, std::uint64_t row0, std::span<std::uint32_t> out,
                    StoredRows& stored) const;
  void read_exposure(std::string_view channel, std::uint64_t row0, std::span<double> out) const;
  void read_temperature(std::string_view channel, std::uint64_t row0, std::span<float> out) const;
  void read_time(std::uint64_t row0, std::span<double> out) const;
  void read_altitude(std::uint64_t row0, std::span<double> out) const;

  // Whether /truth/<ch> is present (it is optional; readers never need it).
  bool has_truth(std::string_view channel) const;
  // Line names of /truth/<ch>, after checking every truth object's shape.
  std::vector<std::string> truth_line_names(std::string_view channel) const;

  const File& file() const noexcept { return file_; }

 private:
  explicit InputFile(File file) : file_(std::move(file)) {}
  File file_;
  std::vector<std::string> channels_;
  std::vector<std::uint64_t> pixels_;
  std::uint64_t n_ = 0;
};

// Checks one object against its contract entry: present, a dataset, the dtype,
// the dims, the `units` and `description` attributes. Throws SchemaError.
void validate_object(const File& file, const schema::ObjectSpec& spec, const Dims& expected);
// The same for each of `specs`, at the dims their extents have for `sizes`.
void validate_objects(const File& file, const std::vector<schema::ObjectSpec>& specs,
                      const schema::Sizes& sizes);

}  // namespace exospec::io
