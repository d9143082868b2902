#include "test_support.hpp"

#include <gtest/gtest.h>

namespace exospec::test {

std::filesystem::path scratch_dir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string tag = name;
  if (info != nullptr) tag += std::string("_") + info->test_suite_name() + "_" + info->name();
  for (auto& c : tag) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  const auto dir = std::filesystem::current_path() / "scratch" / tag;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

pipeline::SimulationConfig small_config(std::uint64_t spectra, std::uint64_t seed,
                                        std::vector<std::string> channels) {
  auto c = pipeline::load_simulation_config();
  c.spectra = spectra;
  c.seed = seed;
  c.deflate_level = 0;
  c.channels = std::move(channels);
  return c;
}

std::filesystem::path simulate_to(const pipeline::SimulationConfig& config,
                                  const std::filesystem::path& dir, const std::string& name,
                                  int threads) {
  const auto path = dir / name;
  pipeline::simulate(config, pipeline::default_catalogue(), path, true, threads);
  return path;
}

std::filesystem::path reference_dir() { return std::filesystem::path(EXOSPEC_REFERENCE_DIR); }

}  // namespace exospec::test
