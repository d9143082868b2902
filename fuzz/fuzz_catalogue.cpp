// Fuzz target: a line catalogue file (the layout of data/lines.toml).
// Oracles: only exospec::Error escapes (fuzz_common.hpp), and an accepted
// catalogue holds what its users assume: named lines, finite positive
// wavelengths, component fractions in (0, 1] summing to 1, the reported
// wavelength that of a component.
#include <cmath>
#include <string>

#include "exospec/pipeline/catalogue.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr const char* kTarget = "fuzz_catalogue";
  exospec::pipeline::LineCatalogue cat;
  const bool ok = exospec_fuzz::accepted(kTarget, [&] {
    cat = exospec::pipeline::parse_catalogue(exospec_fuzz::as_text(data, size), "fuzz.toml");
  });
  if (!ok) return 0;
  for (const auto* lines : {&cat.euv, &cat.fuv}) {
    for (const auto& line : *lines) {
      if (line.name.empty()) exospec_fuzz::bug(kTarget, "a line without a name");
      if (line.components.empty()) exospec_fuzz::bug(kTarget, "line \"" + line.name + "\" has no component");
      if (!(std::isfinite(line.wavelength_nm) && line.wavelength_nm > 0.0)) {
        exospec_fuzz::bug(kTarget, "line \"" + line.name + "\": wavelength not finite and positive");
      }
      double sum = 0.0;
      bool found = false;
      for (const auto& c : line.components) {
        if (!(std::isfinite(c.wavelength_nm) && c.wavelength_nm > 0.0)) {
          exospec_fuzz::bug(kTarget, "line \"" + line.name + "\": a component's wavelength not finite and positive");
        }
        if (!(c.fraction > 0.0 && c.fraction <= 1.0)) {
          exospec_fuzz::bug(kTarget, "line \"" + line.name + "\": a component's fraction " +
                                         std::to_string(c.fraction) + " outside (0, 1]");
        }
        sum += c.fraction;
        found = found || c.wavelength_nm == line.wavelength_nm;
      }
      if (!(std::fabs(sum - 1.0) <= 1e-9)) {
        exospec_fuzz::bug(kTarget, "line \"" + line.name + "\": fractions sum to " + std::to_string(sum));
      }
      if (!found) exospec_fuzz::bug(kTarget, "line \"" + line.name + "\": wavelength of no component");
    }
  }
  return 0;
}
