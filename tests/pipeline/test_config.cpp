// Simulator configuration: defaults, overrides, and one clear error per problem.
#include <gtest/gtest.h>

#include <fstream>

#include "exospec/error.hpp"
#include "exospec/pipeline/catalogue.hpp"
#include "exospec/pipeline/simulate.hpp"
#include "test_support.hpp"

namespace exospec::pipeline {
namespace {

std::filesystem::path write(const std::filesystem::path& dir, const std::string& text) {
  const auto p = dir / "config.toml";
  std::ofstream(p) << text;
  return p;
}

void expect_config_error(const std::filesystem::path& file, const std::string& key,
                         const std::string& words) {
  try {
    auto c = load_simulation_config(file);
    c.validate(default_catalogue());
    FAIL() << "accepted; expected an error on " << key;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.file(), file.string());
    EXPECT_EQ(e.object(), key) << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
}

TEST(SimulationConfig, DefaultsMatchTheShippedFile) {
  const auto c = load_simulation_config();
  EXPECT_EQ(c.preset, Preset::kLimbScan);
  EXPECT_EQ(c.spectra, 1000u);
  EXPECT_EQ(c.channels, (std::vector<std::string>{"euv", "fuv"}));
  EXPECT_DOUBLE_EQ(c.instrument.at("euv").lsf_fwhm_nm, 1.0);
  EXPECT_DOUBLE_EQ(c.instrument.at("fuv").lsf_fwhm_nm, 1.5);
  EXPECT_DOUBLE_EQ(c.instrument.at("fuv").sensitivity_peak, 0.3);
  EXPECT_DOUBLE_EQ(c.instrument.at("euv").dead_time_s, 0.5e-6);
  EXPECT_DOUBLE_EQ(c.start_time_j2000_s, 849355200.0);
  EXPECT_DOUBLE_EQ(c.exosphere.at("euv").at("H I 121.567").temperature_K, 420.0);
  EXPECT_NO_THROW(c.validate(default_catalogue()));
}

TEST(SimulationConfig, UserFileOverridesOnlyWhatItSets) {
  const auto dir = test::scratch_dir("override");
  const auto p = write(dir, R"([simulate]
preset = "flyby"
spectra = 77
[instrument.fuv]
dead_time_s = 1e-6
pixels = 512
[exosphere.euv."H I 121.567"]
surface_brightness_R = 3000
)");
  const auto c = load_simulation_config(p);
  EXPECT_EQ(c.preset, Preset::kFlyby);
  EXPECT_EQ(c.spectra, 77u);
  EXPECT_EQ(c.seed, 1u);
  EXPECT_DOUBLE_EQ(c.instrument.at("fuv").dead_time_s, 1e-6);
  EXPECT_EQ(c.instrument.at("fuv").pixels, 512u);
  EXPECT_EQ(c.instrument.at("euv").pixels, 1024u);
  EXPECT_DOUBLE_EQ(c.exosphere.at("euv").at("H I 121.567").surface_brightness_R, 3000.0);
  EXPECT_DOUBLE_EQ(c.exosphere.at("euv").at("H I 121.567").background_R, 600.0);
}

TEST(SimulationConfig, ToTomlRoundTrips) {
  const auto dir = test::scratch_dir("roundtrip");
  auto c = load_simulation_config();
  c.spectra = 12;
  c.instrument.at("euv").dead_time_s = 3.25e-6;
  c.exosphere.at("fuv").at("Mg I 285.213").surface_brightness_R = 123.5;
  const auto p = write(dir, c.to_toml());
  const auto back = load_simulation_config(p);
  EXPECT_EQ(back.to_toml(), c.to_toml());
  EXPECT_DOUBLE_EQ(back.instrument.at("euv").dead_time_s, 3.25e-6);
  EXPECT_DOUBLE_EQ(back.start_time_j2000_s, c.start_time_j2000_s);
}

TEST(SimulationConfig, UnknownKey) {
  const auto dir = test::scratch_dir("unknown");
  expect_config_error(write(dir, "[instrument.euv]\ndeadtime = 1.0\n"), "instrument.euv.deadtime",
                      "unknown key");
}

TEST(SimulationConfig, UnknownLine) {
  const auto dir = test::scratch_dir("unknown_line");
  expect_config_error(write(dir, "[exosphere.euv.\"Na I 589.0\"]\nsurface_brightness_R = 1.0\n"),
                      "exosphere.euv.\"Na I 589.0\"", "unknown key");
}

TEST(SimulationConfig, WrongType) {
  const auto dir = test::scratch_dir("type");
  expect_config_error(write(dir, "[simulate]\nspectra = \"many\"\n"), "simulate.spectra",
                      "must be an integer, not a string");
}

TEST(SimulationConfig, BadValues) {
  const auto dir = test::scratch_dir("values");
  expect_config_error(write(dir, "[schedule]\nexposure_s = -8.0\n"), "schedule.exposure_s",
                      "must be > 0");
  expect_config_error(write(dir, "[simulate]\npreset = \"orbit\"\n"), "simulate.preset",
                      "unknown preset");
  expect_config_error(write(dir, "[simulate]\nchannels = [\"euv\", \"xuv\"]\n"),
                      "simulate.channels", "unknown channel \"xuv\"");
  expect_config_error(write(dir, "[instrument.fuv]\nwavelength_max_nm = 100.0\n"),
                      "instrument.fuv.wavelength_max_nm", "must be > wavelength_min_nm");
  expect_config_error(write(dir, "[exosphere.fuv.\"Mg I 285.213\"]\ntemperature_K = 0\n"),
                      "exosphere.fuv.\"Mg I 285.213\".temperature_K", "must be in [10, 1e7] K");
}

TEST(SimulationConfig, SyntaxErrorIsOneLine) {
  const auto dir = test::scratch_dir("syntax");
  expect_config_error(write(dir, "[simulate\nspectra = 3\n"), "", "invalid TOML");
}

TEST(Catalogue, MultipletsAreTiedWithTheirRatios) {
  const auto cat = default_catalogue();
  ASSERT_EQ(cat.euv.size(), 4u);
  ASSERT_EQ(cat.fuv.size(), 8u);
  const auto& oi = cat.euv[3];
  EXPECT_EQ(oi.name, "O I 130.4");
  EXPECT_DOUBLE_EQ(oi.wavelength_nm, 130.217);
  ASSERT_EQ(oi.components.size(), 3u);
  EXPECT_DOUBLE_EQ(oi.components[0].fraction, 5.0 / 9.0);
  EXPECT_DOUBLE_EQ(oi.components[1].fraction, 3.0 / 9.0);
  EXPECT_DOUBLE_EQ(oi.components[2].fraction, 1.0 / 9.0);
  const auto& mg = cat.fuv[4];
  EXPECT_EQ(mg.name, "Mg II 279.553");
  EXPECT_DOUBLE_EQ(mg.components[1].wavelength_nm, 280.271);
  EXPECT_DOUBLE_EQ(mg.components[0].fraction, 2.0 / 3.0);
  EXPECT_EQ(cat.fuv[6].name, "Al I 308.22");
  EXPECT_EQ(cat.fuv[6].components.size(), 1u);  // the Al pair is not tied
}

TEST(Catalogue, BadCatalogueNamesTheEntry) {
  try {
    parse_catalogue("[[euv]]\nname = \"X\"\ncomponents = [{ wavelength_nm = -1.0, ratio = 1.0 }]\n",
                    "cat.toml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.object(), "euv[0].components[0].wavelength_nm");
  }
}

}  // namespace
}  // namespace exospec::pipeline
