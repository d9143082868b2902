// Fuzz target: the configuration of `exospec simulate` (a --config file),
// parsed as the command does (merged over the built-in data/simulate.toml) and
// validated against the built-in line catalogue, as simulate() does.
// Oracles: only exospec::Error escapes (fuzz_common.hpp), and an accepted
// configuration's to_toml() (what the simulated file records) reads back to
// the same configuration.
#include <string>

#include "exospec/pipeline/catalogue.hpp"
#include "exospec/pipeline/simulate.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr const char* kTarget = "fuzz_simulate_config";
  using exospec::pipeline::parse_simulation_config;
  using exospec::pipeline::SimulationConfig;
  static const exospec::pipeline::LineCatalogue catalogue = exospec::pipeline::default_catalogue();
  SimulationConfig config;
  const bool ok = exospec_fuzz::accepted(kTarget, [&] {
    config = parse_simulation_config(exospec_fuzz::as_text(data, size), "fuzz.toml");
    config.validate(catalogue);
  });
  if (!ok) return 0;
  const std::string text = config.to_toml();
  SimulationConfig back;
  try {
    back = parse_simulation_config(text, "to_toml");
    back.validate(catalogue);
  } catch (const exospec::Error& e) {
    exospec_fuzz::bug(kTarget, std::string("to_toml() does not read back: ") + e.what(), text);
  }
  if (back.to_toml() != text) {
    exospec_fuzz::bug(kTarget, "to_toml() reads back to another configuration",
                      text + "\n--- read back as ---\n" + back.to_toml());
  }
  return 0;
}
