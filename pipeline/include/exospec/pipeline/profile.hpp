#pragma once
// The profile stage (level 3): every limb scan's fitted line brightness
// against tangent altitude, fitted with the ballistic-exosphere model
// (kernels/profile.hpp, docs/PROFILE.md) for the surface brightness B_s,
// the temperature T and the background B_bg of each line, written to
// /profile/<ch> (shared/SCHEMA.md).
//
// In `exospec run` the stage takes the fits of each block as they are made
// and fits a scan as soon as its last spectrum is in (memory: the spectra of
// the scans not yet complete). `exospec profile RUN_OUTPUT -o OUT` runs it on
// the /fit group of an existing output (profile()).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "exospec/kernels/profile.hpp"
#include "exospec/kernels/scans.hpp"
#include "exospec/pipeline/run.hpp"

namespace exospec::io {
class FileWriter;
}

namespace exospec::pipeline {

// The species mass of a line (amu): [profile.mass_amu] of the configuration
// if it names the line, else the mass of the element that starts its name
// (kernels::exosphere::species_mass_amu); NaN if neither knows it.
double line_mass_amu(const RunConfig& config, const std::string& line_name);

// One channel's profiles, S scans x L lines.
class ChannelProfiles {
 public:
  ChannelProfiles(const RunConfig& config, std::string channel, std::vector<std::string> line_names,
                  std::vector<kernels::Scan> scans, int threads);
  ~ChannelProfiles();
  ChannelProfiles(ChannelProfiles&&) noexcept;
  ChannelProfiles& operator=(ChannelProfiles&&) noexcept;

  const std::string& channel() const noexcept;
  const std::vector<std::string>& line_names() const noexcept;
  const std::vector<double>& masses_amu() const noexcept;
  const std::vector<kernels::Scan>& scans() const noexcept;

  // The fits of spectra [row0, row0 + n), n = altitude_km.size(), in order
  // (each call continues where the last one ended): brightness, sigma and
  // status are n x L. Every scan whose spectra are all in is fitted (on the
  // configured threads). Throws std::invalid_argument for rows out of order.
  void add(std::uint64_t row0, std::span<const double> altitude_km, std::span<const double> brightness,
           std::span<const double> sigma, std::span<const std::uint8_t> status);
  // Scans fitted so far, in order; all of them once every row was added.
  std::size_t fitted() const noexcept;
  // Result of scan s, line j (s < fitted()).
  const kernels::ProfileResult& result(std::size_t s, std::size_t j) const noexcept;
  double seconds() const noexcept;  // time spent fitting

  // A run over a part of the file (the ranks of an MPI run, each with whole
  // scans): this part starts at scan `s`, whose first row the first add()
  // starts at; the scans before it are taken from their parts by adopt().
  void start_at(std::size_t s);
  // The results of the fitted scans [s0, s1), S x L in order.
  std::span<const kernels::ProfileResult> results(std::size_t s0, std::size_t s1) const;
  // Another part's results of scans [fitted(), fitted() + r.size() / L),
  // as it fitted them (in part order; the last part's own scans come last
  // from its add()). Throws std::invalid_argument if they do not follow on.
  void adopt(std::span<const kernels::ProfileResult> r);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Creates and writes /profile/<ch> for p (every scan must be fitted).
void write_profiles(io::FileWriter& w, const ChannelProfiles& p);

struct ProfileSummary {
  std::uint64_t spectra = 0, scans = 0;
  std::vector<std::string> channels;
  double seconds = 0.0;
  // Profiles (scans x lines, all channels) per status code (kernels::ProfileStatus).
  std::vector<std::uint64_t> status;
};

// `exospec profile`: the profile stage on an output of `exospec run` (its
// /geometry and /fit groups), written atomically to `output` with the
// provenance of the run's output. Throws FileError / SchemaError / ConfigError.
ProfileSummary profile(const RunConfig& config, const std::filesystem::path& run_output,
                       const std::filesystem::path& output, bool overwrite, int threads = 0);

}  // namespace exospec::pipeline
