#include "toml_util.hpp"

#include <charconv>
#include <algorithm>
#include <chrono>
#include <cstdio>
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
    // (the quoted line of a file may be long: minified TOML; cut it at a
    // character boundary)
    if (line.size() > 160) {
      std::size_t cut = 160;
      while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
      line = line.substr(0, cut) + "...";
    }
    if (!out.empty()) out += "; ";
    out += line;
    if (out.size() > 300) break;
  }
  // toml11 quotes the offending line of the file as it is: escape its control
  // characters (a carriage return, an escape sequence) to keep one line.
  return printable(out);
}

// Appends code point cp as UTF-8.
void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The parts of a dotted key path as join_key() writes them: bare keys, or
// basic-string keys ("...", with TOML's escapes) holding dots, spaces or any
// other character.
std::vector<std::string> split_key(std::string_view key) {
  std::vector<std::string> parts;
  std::string cur;
  bool quoted = false;
  for (std::size_t i = 0; i < key.size(); ++i) {
    const char c = key[i];
    if (c == '"') {
      quoted = !quoted;
    } else if (c == '\\' && quoted && i + 1 < key.size()) {
      const char e = key[++i];
      switch (e) {
        case 'b': cur += '\b'; break;
        case 't': cur += '\t'; break;
        case 'n': cur += '\n'; break;
        case 'f': cur += '\f'; break;
        case 'r': cur += '\r'; break;
        case 'u':
        case 'U': {
          const std::size_t digits = e == 'u' ? 4 : 8;
          std::uint32_t cp = 0;
          const auto* first = key.data() + i + 1;
          const auto* last = first + std::min(digits, key.size() - i - 1);
          const auto [end, ec] = std::from_chars(first, last, cp, 16);
          if (ec == std::errc() && end == first + digits) {
            append_utf8(cur, cp);
            i += digits;
          } else {
            cur += e;
          }
          break;
        }
        default: cur += e; break;  // \" and \\ (and anything else: the character)
      }
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

// Appends c as in a TOML basic string (quote, backslash and control
// characters escaped) when `quotes`, else only control characters escaped.
void append_escaped(std::string& out, char c, bool quotes) {
  const auto u = static_cast<unsigned char>(c);
  switch (c) {
    case '"': out += quotes ? "\\\"" : "\""; return;
    case '\\': out += quotes ? "\\\\" : "\\"; return;
    case '\b': out += "\\b"; return;
    case '\t': out += "\\t"; return;
    case '\n': out += "\\n"; return;
    case '\f': out += "\\f"; return;
    case '\r': out += "\\r"; return;
    default: break;
  }
  if (u < 0x20 || u == 0x7F) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(u));
    out += buf;
  } else {
    out += c;
  }
}

// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
// (month 1-12); H. Hinnant's days_from_civil.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);       // [0, 399]
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;  // [0, 146096]
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool is_bare_key(std::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
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
  const std::string k = is_bare_key(key) ? std::string(key) : toml_string(key);
  return prefix.empty() ? k : std::string(prefix) + "." + k;
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) append_escaped(out, c, false);
  return out;
}

namespace {

// The offset of the first byte of `text` that is not part of well-formed UTF-8
// (RFC 3629: no overlong form, no surrogate, at most U+10FFFF), or npos.
std::size_t invalid_utf8_at(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (n - i < len) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

std::size_t line_of(std::string_view text, std::size_t offset) {
  return 1 + static_cast<std::size_t>(
                 std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
}

// A number of a TOML text that toml11 (3.7) would not read right: it ignores
// the stream's overflow flag (99999999999999999999 reads as INT64_MAX, 1e999
// as DBL_MAX, a finite number) and reads a binary integer with a signed
// doubling that overflows (undefined behaviour) from its 63rd digit on.
// Returns what is wrong with `token` (a run of characters between delimiters,
// outside strings and comments), or nullptr for a number it reads right and
// for what is no number (a key, a date, a boolean: toml11 judges those).
const char* bad_number(std::string_view token) {
  std::string digits;  // the token without its underscores
  for (char c : token) {
    if (c != '_') digits += c;
  }
  constexpr std::uint64_t kMaxInt = 9223372036854775807ULL;
  // 0x, 0o, 0b: unsigned digits.
  if (digits.size() > 2 && digits[0] == '0' &&
      (digits[1] == 'x' || digits[1] == 'o' || digits[1] == 'b')) {
    // toml11's lexer takes the longest run of the base's digits after the
    // prefix and converts it before it looks at what follows (0b0...0x: the
    // zeros are converted, then the x is a syntax error), so the run is
    // judged alone.
    const std::uint64_t base = digits[1] == 'x' ? 16 : digits[1] == 'o' ? 8 : 2;
    std::uint64_t value = 0;
    std::size_t count = 0;
    bool overflow = false;
    for (std::size_t k = 2; k < digits.size(); ++k) {
      const char c = digits[k];
      std::uint64_t d = 99;
      if (c >= '0' && c <= '9') d = static_cast<std::uint64_t>(c - '0');
      if (c >= 'a' && c <= 'f') d = static_cast<std::uint64_t>(c - 'a' + 10);
      if (c >= 'A' && c <= 'F') d = static_cast<std::uint64_t>(c - 'A' + 10);
      if (d >= base) break;  // the end of the run
      ++count;
      if (value > (kMaxInt - d) / base) overflow = true;
      if (!overflow) value = value * base + d;
    }
    if (base == 2 && count > 62) return "binary integer of more than 62 digits";
    if (overflow) return "integer out of the 64-bit range";
    return nullptr;
  }
  const bool signed_ = !digits.empty() && (digits[0] == '-' || digits[0] == '+');
  const bool negative = signed_ && digits[0] == '-';
  const std::string_view body = std::string_view(digits).substr(signed_ ? 1 : 0);
  if (body.empty()) return nullptr;
  if (body.find_first_not_of("0123456789") == std::string_view::npos) {
    const std::uint64_t limit = negative ? kMaxInt + 1 : kMaxInt;
    std::uint64_t value = 0;
    for (char c : body) {
      const auto d = static_cast<std::uint64_t>(c - '0');
      if (value > (limit - d) / 10) return "integer out of the 64-bit range";
      value = value * 10 + d;
    }
    return nullptr;
  }
  // A float: digits [. digits] [e [+-] digits], with a point or an exponent.
  std::size_t k = 0;
  auto skip_digits = [&] {
    const std::size_t from = k;
    while (k < body.size() && body[k] >= '0' && body[k] <= '9') ++k;
    return k > from;
  };
  if (!skip_digits()) return nullptr;
  const std::size_t int_digits = k;
  if (k < body.size() && body[k] == '.') {
    ++k;
    if (!skip_digits()) return nullptr;
  }
  const std::size_t mantissa_end = k;
  long exponent = 0;
  if (k < body.size() && (body[k] == 'e' || body[k] == 'E')) {
    ++k;
    const bool minus = k < body.size() && body[k] == '-';
    if (k < body.size() && (body[k] == '+' || body[k] == '-')) ++k;
    const std::size_t from = k;
    if (!skip_digits()) return nullptr;
    // (an exponent of more than 9 digits: beyond any double either way)
    const auto e = body.substr(from, k - from);
    exponent = e.size() > 9 ? 1000000000L : std::stol(std::string(e));
    if (minus) exponent = -exponent;
  }
  if (k != body.size()) return nullptr;  // a date, a time, a key: not a float
  // The decimal exponent of the first significant digit: above 308 the value
  // is out of range (or at 308, from 1.8 on); below, too small (it reads as 0
  // or a subnormal, harmlessly) or fine.
  const auto mantissa = body.substr(0, mantissa_end);
  const std::size_t first = mantissa.find_first_not_of("0.");
  if (first == std::string_view::npos) return nullptr;  // zero
  const long magnitude =
      (first < int_digits ? static_cast<long>(int_digits - first) - 1
                          : -static_cast<long>(first - int_digits)) + exponent;
  if (magnitude > 308) return "number out of range (beyond 1.8e308)";
  if (magnitude == 308) {
    double x = 0.0;
    const auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), x);
    if (ec == std::errc::result_out_of_range) return "number out of range (beyond 1.8e308)";
  }
  return nullptr;
}

// What toml11 (3.7) cannot take safely, checked before it sees the text: it
// recurses once per level of nested arrays and inline tables (a stack
// overflow at about a thousand levels), takes time and memory quadratic in
// the parts of a dotted key (3,000 parts: 0.4 GB), reads out of bounds on a
// literal string that is not UTF-8, and misreads numbers out of range
// (bad_number). The TOML specification wants UTF-8 and errors on such numbers
// anyway; exospec's files nest at most 3 levels and dot keys 4 parts deep.
void check_toml_text(std::string_view text, const std::string& name) {
  auto fail = [&](std::size_t at, const std::string& what) {
    throw ConfigError(name, "", "invalid TOML: line " + std::to_string(line_of(text, at)) + ": " + what);
  };
  if (text.size() > kMaxTomlBytes) {
    throw ConfigError(name, "", "larger than " + std::to_string(kMaxTomlBytes >> 20) +
                                    " MiB: not a configuration file");
  }
  if (const auto bad = invalid_utf8_at(text); bad != std::string_view::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned>(static_cast<unsigned char>(text[bad])));
    fail(bad, std::string("not UTF-8 text (byte ") + byte + ")");
  }
  // Outside strings and comments: brackets and braces (nesting), dots between
  // two of = , [ ] { } and newline (a dotted key's, or a number's), and the
  // runs of characters between delimiters (numbers among them).
  std::size_t depth = 0, dots = 0;
  const std::size_t n = text.size();
  std::size_t run = n;  // start of the current run; n: none
  auto end_run = [&](std::size_t at) {
    if (run < at) {
      if (const char* why = bad_number(text.substr(run, at - run))) fail(run, why);
    }
    run = n;
  };
  for (std::size_t i = 0; i < n; ++i) {
    const char c = text[i];
    switch (c) {
      case '#':
        end_run(i);
        while (i < n && text[i] != '\n') ++i;
        dots = 0;
        break;
      case '"':
      case '\'': {
        // A string (a quoted key or a value): skip to its end.
        end_run(i);
        const std::string_view delimiter = c == '"' ? "\"\"\"" : "'''";
        const bool multi = text.substr(i, 3) == delimiter;
        i += multi ? 3 : 1;
        while (i < n) {
          if (c == '"' && text[i] == '\\') {
            i += 2;  // an escape (or a line-ending backslash)
            continue;
          }
          if (!multi && text[i] == '\n') break;  // unterminated: toml11 says so
          if (!multi && text[i] == c) break;
          if (multi && text.substr(i, 3) == delimiter) {
            // Up to two more quotes before the delimiter belong to the string.
            std::size_t quotes = 3;
            while (quotes < 5 && i + quotes < n && text[i + quotes] == c) ++quotes;
            i += quotes - 1;
            break;
          }
          ++i;
        }
        break;  // (a quoted part of a dotted key: its dots still count)
      }
      case '[':
      case '{':
        end_run(i);
        if (++depth > kMaxTomlDepth) {
          fail(i, "arrays and tables nested more than " + std::to_string(kMaxTomlDepth) + " levels deep");
        }
        dots = 0;
        break;
      case ']':
      case '}':
        end_run(i);
        if (depth > 0) --depth;
        dots = 0;
        break;
      case '=':
      case ',':
      case '\n':
        end_run(i);
        dots = 0;
        break;
      case ' ':
      case '\t':
      case '\r':
        end_run(i);
        break;
      case '.':
        if (++dots >= kMaxTomlKeyParts) {
          fail(i, "a dotted key of more than " + std::to_string(kMaxTomlKeyParts) + " parts");
        }
        if (run == n) run = i;
        break;
      default:
        if (run == n) run = i;
        break;
    }
  }
  end_run(n);
}

}  // namespace

Toml parse_toml(std::string_view text, const std::string& name) {
  check_toml_text(text, name);
  std::istringstream in{std::string(text)};
  try {
    return toml::parse<toml::discard_comments, std::map, std::vector>(in, name);
  } catch (const std::exception& e) {
    throw ConfigError(name, "", "invalid TOML: " + one_line(e.what()));
  }
}

std::string read_toml_file(const std::filesystem::path& path, const std::string& cannot_open) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path.string(), "", cannot_open);
  // Not more than the bound (parse_toml says so), whatever the file's size.
  std::string text(kMaxTomlBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) throw ConfigError(path.string(), "", "read error");
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

Toml parse_toml_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw ConfigError(path.string(), "", "no such file");
  return parse_toml(read_toml_file(path, "cannot open for reading"), path.string());
}

Toml merged_with_file(const Toml& defaults, const std::optional<std::filesystem::path>& user_file,
                      std::string& source) {
  Toml root = defaults;
  if (user_file) {
    source = user_file->string();
    merge_toml(root, parse_toml_file(*user_file), source);
  }
  return root;
}

Toml merged_with_text(const Toml& defaults, std::string_view text, const std::string& source) {
  Toml root = defaults;
  merge_toml(root, parse_toml(text, source), source);
  return root;
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
  // From the fields, not toml11's conversion to a system_clock time point: that
  // one goes through mktime() in the local time zone (an hour off in a
  // daylight-saving gap: 2027-03-14T02:30:00Z with TZ=America/New_York) and
  // overflows the clock's 64-bit nanoseconds outside the years 1678-2261.
  const toml::offset_datetime& dt = v.as_offset_datetime();
  const std::int64_t days = days_from_civil(dt.date.year, dt.date.month + 1u, dt.date.day);
  const std::int64_t seconds = days * 86400 + dt.time.hour * 3600 + dt.time.minute * 60 +
                               dt.time.second - (dt.offset.hour * 60 + dt.offset.minute) * 60;
  const double fraction = dt.time.millisecond * 1e-3 + dt.time.microsecond * 1e-6 +
                          dt.time.nanosecond * 1e-9;
  return static_cast<double>(seconds - static_cast<std::int64_t>(kJ2000UnixSeconds)) + fraction;
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
  for (char c : s) append_escaped(out, c, true);
  return out + '"';
}

}  // namespace exospec::pipeline::detail
