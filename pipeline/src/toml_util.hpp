#pragma once
// TOML configuration helpers (private to exospec_pipeline): parse with one-line
// errors, merge user overrides onto defaults with unknown-key detection, and
// typed, range-checked access by dotted key path.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <map>
#include <string>
#include <string_view>
#include <toml.hpp>
#include <vector>

namespace exospec::pipeline::detail {

using Toml = toml::basic_value<toml::discard_comments, std::map, std::vector>;

// Bounds of a TOML text (configurations and the line catalogue): its size,
// the nesting of arrays and inline tables, the parts of a dotted key.
inline constexpr std::size_t kMaxTomlBytes = std::size_t{1} << 20;
inline constexpr std::size_t kMaxTomlDepth = 32;
inline constexpr std::size_t kMaxTomlKeyParts = 32;

// Parses TOML text; a syntax error (or text beyond the bounds above, or not
// UTF-8) becomes one ConfigError line naming `name`.
Toml parse_toml(std::string_view text, const std::string& name);
Toml parse_toml_file(const std::filesystem::path& path);
// The text of a TOML file, at most kMaxTomlBytes + 1 bytes of it (no more is
// read: parse_toml rejects that); ConfigError(path, "", cannot_open) if it
// cannot be opened.
std::string read_toml_file(const std::filesystem::path& path, const std::string& cannot_open);

// Overlays `user` onto `base`. Every key of `user` must exist in `base` with a
// compatible type (a table for a table; integer and float are both numbers,
// except that an integer key stays an integer). Errors name `source` and the key.
void merge_toml(Toml& base, const Toml& user, const std::string& source);
// `defaults` overlaid with a user file (none: the defaults alone). `source`
// is set to the file's name, or left as it is (the defaults' name).
Toml merged_with_file(const Toml& defaults, const std::optional<std::filesystem::path>& user_file,
                      std::string& source);
// `defaults` overlaid with TOML text (`source` names it in errors).
Toml merged_with_text(const Toml& defaults, std::string_view text, const std::string& source);

// Typed access with ConfigError(source, key, message) on a missing key or a
// wrong type.
class TomlReader {
 public:
  TomlReader(const Toml& root, std::string source) : root_(root), source_(std::move(source)) {}
  const Toml& at(std::string_view key) const;
  double number(std::string_view key) const;
  std::int64_t integer(std::string_view key) const;
  std::string string(std::string_view key) const;
  bool boolean(std::string_view key) const;
  std::vector<std::string> strings(std::string_view key) const;
  std::vector<std::int64_t> integers(std::string_view key) const;
  // Seconds since J2000 (2000-01-01T12:00:00 UTC, leap seconds ignored) of an
  // offset date-time value.
  double j2000_seconds(std::string_view key) const;
  // Checked ranges.
  double positive(std::string_view key) const;
  double non_negative(std::string_view key) const;
  double in_range(std::string_view key, double lo, double hi) const;
  std::int64_t integer_in(std::string_view key, std::int64_t lo, std::int64_t hi) const;
  [[noreturn]] void fail(std::string_view key, const std::string& message) const;
  const std::string& source() const noexcept { return source_; }

 private:
  const Toml& root_;
  std::string source_;
};

// TOML text of a float (always with a decimal point or exponent, so that it
// reads back as a float) and of a string (quoted, with quotes, backslashes
// and control characters escaped: it reads back to the same bytes).
std::string toml_float(double x);
std::string toml_string(std::string_view s);

// Dotted key path of a nested key: "a" + "b" -> "a.b" (a key that is not bare,
// [A-Za-z0-9_-]+, quoted and escaped as TOML does: a."H I 121.567"). What
// TomlReader takes, and what errors name.
std::string join_key(std::string_view prefix, std::string_view key);

// Text of the input for an error message: control characters escaped (\r,
// \u001B, ...), so that the message stays one line of plain text.
std::string printable(std::string_view text);

}  // namespace exospec::pipeline::detail
