// Loading, validating and printing the configuration of `exospec run`.
#include <algorithm>
#include <charconv>
#include <cmath>

#include "embedded_data.hpp"
#include "exospec/error.hpp"
#include "exospec/io/schema.hpp"
#include "exospec/pipeline/run.hpp"
#include "toml_util.hpp"

namespace exospec::pipeline {
namespace {

constexpr Stage kAllStages[] = {Stage::kCalibrate};
constexpr std::string_view kBuiltIn = "<built-in data/run.toml>";

std::string fmt(double x) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x);
  std::string s(buf, end);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string known_stages() {
  std::string s;
  for (Stage st : kAllStages) s += (s.empty() ? "" : ", ") + std::string(stage_name(st));
  return s;
}

}  // namespace

std::string_view stage_name(Stage s) noexcept {
  switch (s) {
    case Stage::kCalibrate:
      return "calibrate";
  }
  return "?";
}

std::vector<Stage> parse_stages(std::string_view list, const std::string& where) {
  std::vector<Stage> out;
  std::size_t pos = 0;
  while (pos <= list.size()) {
    const std::size_t comma = std::min(list.find(',', pos), list.size());
    const std::string_view name = list.substr(pos, comma - pos);
    const auto* it = std::find_if(std::begin(kAllStages), std::end(kAllStages),
                                  [&](Stage s) { return stage_name(s) == name; });
    if (it == std::end(kAllStages)) {
      throw ConfigError(where, "", "unknown stage \"" + std::string(name) +
                                       "\" (stages: " + known_stages() + ")");
    }
    if (std::find(out.begin(), out.end(), *it) != out.end()) {
      throw ConfigError(where, "", "stage \"" + std::string(name) + "\" given twice");
    }
    out.push_back(*it);
    pos = comma + 1;
  }
  // Pipeline order, whatever order they were given in.
  std::sort(out.begin(), out.end());
  return out;
}

bool RunConfig::has_stage(Stage s) const noexcept {
  return std::find(stages.begin(), stages.end(), s) != stages.end();
}

std::string_view default_run_config_text() { return detail::embedded_run_toml(); }

RunConfig load_run_config(const std::optional<std::filesystem::path>& user_file) {
  detail::Toml root = detail::parse_toml(detail::embedded_run_toml(), std::string(kBuiltIn));
  std::string source(kBuiltIn);
  if (user_file) {
    source = user_file->string();
    detail::merge_toml(root, detail::parse_toml_file(*user_file), source);
  }
  const detail::TomlReader r(root, source);
  RunConfig c;
  c.source = source;
  {
    std::string joined;
    for (const auto& s : r.strings("run.stages")) joined += (joined.empty() ? "" : ",") + s;
    if (joined.empty()) r.fail("run.stages", "no stage given (stages: " + known_stages() + ")");
    try {
      c.stages = parse_stages(joined, source);
    } catch (const ConfigError& e) {
      r.fail("run.stages", e.message());
    }
  }
  c.channels = r.strings("run.channels");
  c.block_rows = static_cast<std::uint64_t>(r.integer_in("run.block_rows", 1, 1 << 20));
  c.deflate_level = static_cast<int>(r.integer_in("run.deflate_level", 0, 9));
  c.calibrate.max_dead_time_correction =
      r.in_range("calibrate.max_dead_time_correction", 1.0, 1e6);
  c.calibrate.variance_half_width =
      static_cast<int>(r.integer_in("calibrate.variance_half_width", 2, 64));
  c.calibrate.min_expected_counts = r.in_range("calibrate.min_expected_counts", 1e-6, 1e6);
  c.validate();
  return c;
}

void RunConfig::validate() const {
  auto fail = [&](const std::string& key, const std::string& msg) {
    throw ConfigError(source, key, msg);
  };
  if (stages.empty()) fail("run.stages", "no stage given (stages: " + known_stages() + ")");
  for (const auto& ch : channels) {
    if (!io::schema::is_channel(ch)) fail("run.channels", "unknown channel \"" + ch + "\"");
  }
  if (block_rows < 1) fail("run.block_rows", "must be at least 1");
  if (deflate_level < 0 || deflate_level > 9) fail("run.deflate_level", "must be in [0, 9]");
  if (!(calibrate.max_dead_time_correction >= 1.0)) {
    fail("calibrate.max_dead_time_correction", "must be at least 1");
  }
  if (calibrate.variance_half_width < 2) fail("calibrate.variance_half_width", "must be >= 2");
  if (!(calibrate.min_expected_counts > 0.0) || !std::isfinite(calibrate.min_expected_counts)) {
    fail("calibrate.min_expected_counts", "must be positive");
  }
}

std::string RunConfig::to_toml() const {
  std::string s = "[run]\nstages = [";
  for (std::size_t i = 0; i < stages.size(); ++i) {
    s += (i ? ", \"" : "\"") + std::string(stage_name(stages[i])) + "\"";
  }
  s += "]\nchannels = [";
  for (std::size_t i = 0; i < channels.size(); ++i) s += (i ? ", \"" : "\"") + channels[i] + "\"";
  s += "]\nblock_rows = " + std::to_string(block_rows) + "\n";
  s += "deflate_level = " + std::to_string(deflate_level) + "\n";
  s += "\n[calibrate]\n";
  s += "max_dead_time_correction = " + fmt(calibrate.max_dead_time_correction) + "\n";
  s += "variance_half_width = " + std::to_string(calibrate.variance_half_width) + "\n";
  s += "min_expected_counts = " + fmt(calibrate.min_expected_counts) + "\n";
  return s;
}

}  // namespace exospec::pipeline
