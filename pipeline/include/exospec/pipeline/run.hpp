#pragma once
// `exospec run`: stream an input file through the pipeline's stages and write
// an output file (shared/SCHEMA.md) atomically.
//
// Stages, in pipeline order: calibrate (counts to R/nm with variance and
// quality, kernels/calibrate.hpp); denoise (particle hits flagged in the
// calibrated quality and interpolated over in the calibrated radiance, then a
// smoothing into /denoised, pipeline/denoise.hpp); fit (line brightness with
// uncertainties into /fit, kernels/line_fit.hpp, on the spike-cleaned
// calibrated radiance). The input file is only ever opened
// read-only; the output is written under a temporary name beside it and
// renamed at the end. Rows are processed in blocks, so memory does not grow
// with the number of spectra, and results do not depend on the thread count.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/line_fit.hpp"
#include "exospec/kernels/profile.hpp"
#include "exospec/kernels/scans.hpp"
#include "exospec/pipeline/denoise.hpp"

namespace exospec::pipeline {

enum class Stage : std::uint8_t { kCalibrate, kDenoise, kFit, kProfile };
std::string_view stage_name(Stage s) noexcept;
// "calibrate" or a comma-separated list; throws ConfigError naming `where`.
std::vector<Stage> parse_stages(std::string_view list, const std::string& where = "--stages");

// The group a stage writes: "calibrated", "denoised", "fit".
std::string_view product_name(Stage s) noexcept;
// A comma-separated list of products; throws ConfigError naming `where`.
std::vector<Stage> parse_products(std::string_view list, const std::string& where = "--products");

struct RunConfig {
  std::vector<Stage> stages = {Stage::kCalibrate};
  // Which stages' groups are written (empty: every stage run). A stage that
  // runs but is not written still feeds the next one.
  std::vector<Stage> products;
  std::vector<std::string> channels;  // empty: every channel of the input
  std::uint64_t block_rows = 1024;
  int deflate_level = 0;
  // Limb scans (kernels/scans.hpp): the profile stage fits one profile per
  // scan, and neighbouring spectra are taken within a scan only.
  kernels::ScanMode scan_mode = kernels::ScanMode::kMonotonic;
  std::int64_t scan_length = 50;  // kFixed
  kernels::CalibrateSettings calibrate;
  // Per channel ("euv", "fuv").
  std::map<std::string, DenoiseConfig, std::less<>> denoise;
  // Per channel: the line fit (its fwhm_nm comes from [instrument.<ch>]).
  std::map<std::string, kernels::LineFitSettings, std::less<>> fit;
  // The profile stage (pipeline/profile.hpp): the fit's settings, and the
  // species mass (amu) of lines whose name does not say it, by line name.
  struct Profile {
    kernels::ProfileSettings settings;
    std::map<std::string, double, std::less<>> mass_amu;
  } profile;
  // FFTW wisdom file for the Fourier methods (read if it exists; empty: none).
  std::string fftw_wisdom_file;
  std::string source = "configuration";  // where the values came from

  bool has_stage(Stage s) const noexcept;
  bool writes(Stage s) const noexcept;
  // Checks ranges and consistency; throws ConfigError naming the key.
  void validate() const;
  // The effective configuration as TOML text (stored in the output's `config`).
  std::string to_toml() const;
};

// The built-in defaults (data/run.toml), optionally overridden by a user file of
// the same layout; errors name the file and the key.
RunConfig load_run_config(const std::optional<std::filesystem::path>& user_file = {});
std::string_view default_run_config_text();
// The same from a file's text (`source` names it in errors): e.g. the
// effective configuration an output stores in its `config` attribute.
RunConfig parse_run_config(std::string_view text, const std::string& source);

struct RunSummary {
  std::uint64_t spectra = 0;
  std::vector<std::string> channels;
  double seconds = 0.0;            // wall time of the whole run
  double read_seconds = 0.0;       // HDF5 reads (the I/O thread)
  double decode_seconds = 0.0;     // inflating stored chunks on the compute threads (wall)
  // Time per stage: thread time summed over the compute threads, divided by
  // their number (the stages run interleaved, task by task, in one pass).
  double calibrate_seconds = 0.0;  // calibrate kernel, spike removal included
  double denoise_seconds = 0.0;    // smoothing
  double fit_seconds = 0.0;        // line fits
  // Fits per status code (index = kernels::FitStatus), over lines and spectra.
  std::vector<std::uint64_t> fit_status;
  double profile_seconds = 0.0;    // profile fits (wall, on the compute threads)
  std::uint64_t scans = 0;         // limb scans found in the file
  // Profiles (scans x lines, over channels) per status code (kernels::ProfileStatus).
  std::vector<std::uint64_t> profile_status;
  double write_seconds = 0.0;      // HDF5 writes
  double hash_seconds = 0.0;       // input SHA-256 (on a thread of its own, beside the run)
  // Pixels (over all channels) with each quality bit set; index = bit number.
  std::vector<std::uint64_t> quality_bit_pixels;
};

using RunProgress = std::function<void(std::uint64_t done, std::uint64_t total)>;

// Runs the configured stages on `input`, writing `output`. threads <= 0: OpenMP's
// default. Throws FileError / SchemaError / ConfigError; on any error the output
// does not appear. The input must not change while it is read (a FileError
// naming it when it was replaced, truncated, written to or removed meanwhile);
// without `overwrite`, an output that another program created meanwhile is
// not replaced either (a FileError: already exists).
RunSummary run(const RunConfig& config, const std::filesystem::path& input,
               const std::filesystem::path& output, bool overwrite, int threads = 0,
               const RunProgress& progress = {});

// For a program's main(), before any exospec call: HDF5 skips its library
// shutdown at exit, which with HDF5 1.10 can crash after an output's last
// flush failed (a full disk). See io::skip_hdf5_shutdown_at_exit.
void skip_hdf5_shutdown_at_exit() noexcept;

}  // namespace exospec::pipeline
