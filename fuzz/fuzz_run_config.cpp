// Fuzz target: the configuration of `exospec run` (a --config file), parsed as
// the command does (merged over the built-in data/run.toml, then validated).
// Oracles: only exospec::Error escapes (fuzz_common.hpp), and an accepted
// configuration's to_toml() (what the output files record) reads back to the
// same configuration.
#include <string>

#include "exospec/pipeline/run.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr const char* kTarget = "fuzz_run_config";
  using exospec::pipeline::parse_run_config;
  using exospec::pipeline::RunConfig;
  RunConfig config;
  const bool ok = exospec_fuzz::accepted(kTarget, [&] {
    config = parse_run_config(exospec_fuzz::as_text(data, size), "fuzz.toml");
    config.validate();
  });
  if (!ok) return 0;
  const std::string text = config.to_toml();
  RunConfig back;
  try {
    back = parse_run_config(text, "to_toml");
    back.validate();
  } catch (const exospec::Error& e) {
    exospec_fuzz::bug(kTarget, std::string("to_toml() does not read back: ") + e.what(), text);
  }
  if (back.to_toml() != text) {
    exospec_fuzz::bug(kTarget, "to_toml() reads back to another configuration", text);
  }
  return 0;
}
