#pragma once
// A summary of the fitted brightness against altitude, read back from an
// output file of `exospec run` (optionally beside the simulator's truth).
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace exospec::pipeline {

struct FitReportRow {
  std::string channel, line;
  double altitude_min_km = 0, altitude_max_km = 0;
  std::size_t spectra = 0;   // converged fits in the bin
  double fitted_mean = 0;    // mean fitted brightness (R)
  double fitted_error = 0;   // its 1-sigma error from the fits' sigmas (R)
  double truth_mean = 0;     // mean true brightness (NaN without truth)
};

// Bins the spectra by tangent altitude (equal-width bins over the file's
// range) and averages each line's converged fits. `truth_input` is the
// simulated input with /truth (its line names must match /fit's). An empty
// result if the file has no /fit group. Throws FileError / SchemaError.
std::vector<FitReportRow> fit_report(const std::filesystem::path& output,
                                     const std::optional<std::filesystem::path>& truth_input,
                                     std::size_t altitude_bins = 5);

// The profile stage's results of one line over the scans of a file: the
// median fitted value of each parameter over the converged scans (status 0),
// the median of their sigmas (the uncertainty of one scan), and the truth.
struct ProfileReportRow {
  std::string channel, line;
  std::size_t scans = 0, converged = 0;
  struct Value {
    double median = 0, typical_sigma = 0, truth = 0;  // NaN where there is none
  } temperature_K, surface_brightness_R, background_R;
};

// From /profile of an output of `exospec run` or `exospec profile`; the
// truth from /truth/<ch>/profile_* of the simulated input (optional). An
// empty result if the file has no /profile group. Throws FileError /
// SchemaError.
std::vector<ProfileReportRow> profile_report(const std::filesystem::path& output,
                                             const std::optional<std::filesystem::path>& truth_input);

}  // namespace exospec::pipeline
