#pragma once
// Helpers shared by the tests: scratch directories, small simulator set-ups.
#include <cstdint>
#include <filesystem>
#include <string>

#include "exospec/pipeline/simulate.hpp"

namespace exospec::test {

// A fresh, empty directory for one test (under the build tree).
std::filesystem::path scratch_dir(const std::string& name);

// The built-in simulator configuration with N spectra, a seed, uncompressed
// output and the given channels.
pipeline::SimulationConfig small_config(std::uint64_t spectra, std::uint64_t seed,
                                        std::vector<std::string> channels = {"euv", "fuv"});

// Simulates `config` into dir/name and returns the path.
std::filesystem::path simulate_to(const pipeline::SimulationConfig& config,
                                  const std::filesystem::path& dir, const std::string& name,
                                  int threads = 0);

// tests/data/reference: the reference data of shared/reference (NIST StRD,
// Savitzky-Golay tables and scipy outputs), kept in the repository so that the
// tests need nothing outside it.
std::filesystem::path reference_dir();

}  // namespace exospec::test
