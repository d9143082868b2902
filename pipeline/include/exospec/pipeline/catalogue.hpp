#pragma once
// The line catalogue (data/lines.toml): per channel, the lines the simulator
// puts in and the fit takes out, with the components of tied multiplets.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "exospec/kernels/spectrum_model.hpp"

namespace exospec::pipeline {

struct CatalogueLine {
  std::string name;
  // Components with fractions summing to 1 (ratios normalised on load).
  std::vector<kernels::LineComponent> components;
  // Rest wavelength reported for the line: its strongest component.
  double wavelength_nm = 0.0;
};

struct LineCatalogue {
  std::vector<CatalogueLine> euv;
  std::vector<CatalogueLine> fuv;
  // Lines of a channel ("euv" or "fuv"); throws ConfigError for another name.
  const std::vector<CatalogueLine>& channel(std::string_view name) const;
};

// The catalogue shipped with exospec (data/lines.toml, compiled in).
LineCatalogue default_catalogue();
std::string_view default_catalogue_text();
// Parses a catalogue file with the same layout; errors name the file and key.
LineCatalogue load_catalogue(const std::filesystem::path& path);
LineCatalogue parse_catalogue(std::string_view text, const std::string& source);

}  // namespace exospec::pipeline
