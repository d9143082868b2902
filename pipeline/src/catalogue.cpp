#include "exospec/pipeline/catalogue.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "embedded_data.hpp"
#include "exospec/error.hpp"
#include "toml_util.hpp"

namespace exospec::pipeline {
namespace {
// The weakest component of a multiplet, relative to its strongest (below
// this, its fraction would underflow or be meaningless).
constexpr double kMinRelativeRatio = 1e-12;
}  // namespace

const std::vector<CatalogueLine>& LineCatalogue::channel(std::string_view name) const {
  if (name == "euv") return euv;
  if (name == "fuv") return fuv;
  throw ConfigError("", detail::join_key("", name), "unknown channel (expected euv or fuv)");
}

LineCatalogue parse_catalogue(std::string_view text, const std::string& source) {
  const detail::Toml root = detail::parse_toml(text, source);
  LineCatalogue cat;
  for (const auto& [key, value] : root.as_table()) {
    if (key != "euv" && key != "fuv") {
      throw ConfigError(source, detail::join_key("", key), "unknown channel (expected euv or fuv)");
    }
    if (!value.is_array())
      throw ConfigError(source, key, "must be an array of tables [[" + key + "]]");
    auto& lines = key == "euv" ? cat.euv : cat.fuv;
    std::set<std::string> names;
    for (std::size_t i = 0; i < value.as_array().size(); ++i) {
      const auto& entry = value.as_array()[i];
      const std::string where = key + "[" + std::to_string(i) + "]";
      if (!entry.is_table()) throw ConfigError(source, where, "must be a table");
      for (const auto& [k, v] : entry.as_table()) {
        (void)v;
        if (k != "name" && k != "components")
          throw ConfigError(source, detail::join_key(where, k), "unknown key");
      }
      detail::TomlReader r(entry, source);
      CatalogueLine line;
      try {
        line.name = r.string("name");
      } catch (const ConfigError&) {
        throw ConfigError(source, where + ".name", "missing or not a string");
      }
      if (line.name.empty()) throw ConfigError(source, where + ".name", "is empty");
      if (!names.insert(line.name).second) {
        throw ConfigError(source, where + ".name", "duplicate line " + detail::toml_string(line.name));
      }
      const auto& comps = r.at("components");
      if (!comps.is_array() || comps.as_array().empty()) {
        throw ConfigError(source, where + ".components", "must be a non-empty array of tables");
      }
      double strongest = -1.0;
      for (std::size_t j = 0; j < comps.as_array().size(); ++j) {
        const auto& c = comps.as_array()[j];
        const std::string cw = where + ".components[" + std::to_string(j) + "]";
        if (!c.is_table()) throw ConfigError(source, cw, "must be a table");
        detail::TomlReader cr(c, source);
        double wl, ratio;
        try {
          wl = cr.number("wavelength_nm");
          ratio = cr.number("ratio");
        } catch (const ConfigError& e) {
          throw ConfigError(source, cw + "." + e.object(), e.message());
        }
        if (!(wl > 0.0)) throw ConfigError(source, cw + ".wavelength_nm", "must be > 0");
        if (!(ratio > 0.0)) throw ConfigError(source, cw + ".ratio", "must be > 0");
        line.components.push_back({wl, ratio});
        if (ratio > strongest) {
          strongest = ratio;
          line.wavelength_nm = wl;
        }
      }
      // Ratios to the strongest component first (their plain sum can overflow
      // to infinity: 1e308 + 1e308), then fractions of their sum (in [1, n]).
      double sum = 0.0;
      for (std::size_t j = 0; j < line.components.size(); ++j) {
        auto& c = line.components[j];
        c.fraction /= strongest;
        if (!(c.fraction >= kMinRelativeRatio)) {
          throw ConfigError(source, where + ".components[" + std::to_string(j) + "].ratio",
                            "must be at least 1e-12 of the strongest component's");
        }
        sum += c.fraction;
      }
      for (auto& c : line.components) c.fraction /= sum;
      lines.push_back(std::move(line));
    }
  }
  return cat;
}

LineCatalogue default_catalogue() {
  // Parsed once per process (each channel's stages ask for it; toml11 takes
  // about a millisecond for it), then copied out.
  static const LineCatalogue parsed =
      parse_catalogue(detail::embedded_lines_toml(), "<built-in data/lines.toml>");
  return parsed;
}

std::string_view default_catalogue_text() { return detail::embedded_lines_toml(); }

LineCatalogue load_catalogue(const std::filesystem::path& path) {
  return parse_catalogue(detail::read_toml_file(path, "cannot open line catalogue"), path.string());
}

}  // namespace exospec::pipeline
