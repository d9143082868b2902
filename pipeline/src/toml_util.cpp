#include "toml_util.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "exospec/error.hpp"
#include "exospec/time.hpp"

namespace exospec::pipeline::detail {
namespace {

// toml11 errors span several lines (message, location, caret); keep the message
// and the "--> file" location on one line.
std::string one_line(const std::string& text) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line)) {
    const auto first = line.find_first_not_of(" \t|");
    if (first == std::string::npos) continue;
    line = line.substr(first);
    if (line.rfind("[error]", 0) == 0) line = line.substr(7);
    const auto start = line.find_first_not_of(' ');
    if (start == std::string::npos) continue;
    line = line.substr(start);
    if (line.find('^') != std::string::npos && line.find_first_not_of("^~- ") == std::string::npos)
      continue;
    if (!out.empty()) out += "; ";
    out += line;
    if (out.size() > 300) break;
  }
  return out;
}

std::vector<std::string> split_key(std::string_view key) {
  std::vector<std::string> parts;
  std::string cur;
  bool quoted = false;
  for (char c : key) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == '.' && !quoted) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

std::string_view type_name(toml::value_t t) {
  switch (t) {
    case toml::value_t::boolean:
      return "a boolean";
    case toml::value_t::integer:
      return "an integer";
    case toml::value_t::floating:
      return "a number";
    case toml::value_t::string:
      return "a string";
    case toml::value_t::offset_datetime:
      return "a date-time with offset";
    case toml::value_t::local_datetime:
      return "a local date-time";
    case toml::value_t::local_date:
      return "a date";
    case toml::value_t::local_time:
      return "a time";
    case toml::value_t::array:
      return "an array";
    case toml::value_t::table:
      return "a table";
    default:
      return "empty";
  }
}

}  // namespace

std::string join_key(std::string_view prefix, std::string_view key) {
  std::string k(key);
  if (k.find_first_of(" .") != std::string::npos) k = '"' + k + '"';
  return prefix.empty() ? k : std::string(prefix) + "." + k;
}

Toml parse_toml(std::string_view text, const std::string& name) {
  std::istringstream in{std::string(text)};
  try {
    return toml::parse<toml::discard_comments, std::map, std::vector>(in, name);
  } catch (const std::exception& e) {
    throw ConfigError(name, "", "invalid TOML: " + one_line(e.what()));
  }
}

Toml parse_toml_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw ConfigError(path.string(), "", "no such file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path.string(), "", "cannot open for reading");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_toml(text.str(), path.string());
}

namespace {
void merge_at(Toml& base, const Toml& user, const std::string& source, const std::string& prefix) {
  for (const auto& [key, value] : user.as_table()) {
    const std::string path = join_key(prefix, key);
    auto& table = base.as_table();
    auto it = table.find(key);
    if (it == table.end()) throw ConfigError(source, path, "unknown key");
    Toml& target = it->second;
    if (target.is_table()) {
      if (!value.is_table()) {
        throw ConfigError(source, path,
                          "must be a table, not " + std::string(type_name(value.type())));
      }
      // A table that is empty in the defaults is open: its keys are the
      // user's (e.g. [profile.mass_amu], by line name); their values are
      // checked where they are read.
      if (target.as_table().empty()) {
        target = value;
        continue;
      }
      merge_at(target, value, source, path);
      continue;
    }
    const auto want = target.type();
    const auto got = value.type();
    const bool ok =
        want == got || (want == toml::value_t::floating && got == toml::value_t::integer);
    if (!ok) {
      throw ConfigError(
          source, path,
          "must be " + std::string(type_name(want)) + ", not " + std::string(type_name(got)));
    }
    target = value;
  }
}
}  // namespace

void merge_toml(Toml& base, const Toml& user, const std::string& source) {
  merge_at(base, user, source, "");
}

const Toml& TomlReader::at(std::string_view key) const {
  const Toml* v = &root_;
  for (const auto& part : split_key(key)) {
    if (!v->is_table()) fail(key, "missing key");
    const auto& table = v->as_table();
    auto it = table.find(part);
    if (it == table.end()) fail(key, "missing key");
    v = &it->second;
  }
  return *v;
}

void TomlReader::fail(std::string_view key, const std::string& message) const {
  throw ConfigError(source_, std::string(key), message);
}

double TomlReader::number(std::string_view key) const {
  const Toml& v = at(key);
  double x;
  if (v.is_floating()) {
    x = v.as_floating();
  } else if (v.is_integer()) {
    x = static_cast<double>(v.as_integer());
  } else {
    fail(key, "must be a number, not " + std::string(type_name(v.type())));
  }
  if (!std::isfinite(x)) fail(key, "must be finite");
  return x;
}

std::int64_t TomlReader::integer(std::string_view key) const {
  const Toml& v = at(key);
  if (!v.is_integer()) fail(key, "must be an integer, not " + std::string(type_name(v.type())));
  return v.as_integer();
}

std::string TomlReader::string(std::string_view key) const {
  const Toml& v = at(key);
  if (!v.is_string()) fail(key, "must be a string, not " + std::string(type_name(v.type())));
  return v.as_string().str;
}

bool TomlReader::boolean(std::string_view key) const {
  const Toml& v = at(key);
  if (!v.is_boolean()) fail(key, "must be true or false, not " + std::string(type_name(v.type())));
  return v.as_boolean();
}

std::vector<std::string> TomlReader::strings(std::string_view key) const {
  const Toml& v = at(key);
  if (!v.is_array()) fail(key, "must be an array of strings");
  std::vector<std::string> out;
  for (const auto& e : v.as_array()) {
    if (!e.is_string()) fail(key, "must be an array of strings");
    out.push_back(e.as_string().str);
  }
  return out;
}

std::vector<std::int64_t> TomlReader::integers(std::string_view key) const {
  const Toml& v = at(key);
  if (!v.is_array()) fail(key, "must be an array of integers");
  std::vector<std::int64_t> out;
  for (const auto& e : v.as_array()) {
    if (!e.is_integer()) fail(key, "must be an array of integers");
    out.push_back(e.as_integer());
  }
  return out;
}

double TomlReader::j2000_seconds(std::string_view key) const {
  const Toml& v = at(key);
  if (!v.is_offset_datetime()) {
    fail(key, "must be a date-time with offset, e.g. 2026-12-01T00:00:00Z, not " +
                  std::string(type_name(v.type())));
  }
  const std::chrono::system_clock::time_point tp = v.as_offset_datetime();
  const double unix_s = std::chrono::duration<double>(tp.time_since_epoch()).count();
  return unix_s - kJ2000UnixSeconds;
}

double TomlReader::positive(std::string_view key) const {
  const double x = number(key);
  if (!(x > 0.0)) fail(key, "must be > 0 (got " + toml::format(at(key)) + ")");
  return x;
}

double TomlReader::non_negative(std::string_view key) const {
  const double x = number(key);
  if (!(x >= 0.0)) fail(key, "must be >= 0 (got " + toml::format(at(key)) + ")");
  return x;
}

double TomlReader::in_range(std::string_view key, double lo, double hi) const {
  const double x = number(key);
  if (!(x >= lo && x <= hi)) {
    std::ostringstream s;
    s << "must be in [" << lo << ", " << hi << "] (got " << x << ")";
    fail(key, s.str());
  }
  return x;
}

std::int64_t TomlReader::integer_in(std::string_view key, std::int64_t lo, std::int64_t hi) const {
  const std::int64_t x = integer(key);
  if (x < lo || x > hi) {
    fail(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "] (got " +
                  std::to_string(x) + ")");
  }
  return x;
}

std::string toml_float(double x) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x);
  std::string s(buf, end);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // keep it a TOML float
  return s;
}

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + '"';
}

}  // namespace exospec::pipeline::detail
