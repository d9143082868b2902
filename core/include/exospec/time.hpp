#pragma once
// Time convention of the data contract: float64 seconds since J2000
// (2000-01-01T12:00:00 UTC), counted like POSIX time (leap seconds ignored).
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>

namespace exospec {

// POSIX time of the J2000 epoch, 2000-01-01T12:00:00Z.
inline constexpr double kJ2000UnixSeconds = 946728000.0;

// RFC 3339 UTC text of a J2000 time, e.g. "2026-12-01T00:00:04Z"; with
// `decimals` > 0 a non-zero fraction of a second is kept to that many digits.
inline std::string format_utc(double j2000_s, int decimals = 0) {
  const double unix_s = j2000_s + kJ2000UnixSeconds;
  const double whole = std::floor(unix_s);
  const auto tt = static_cast<std::time_t>(whole);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[48];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  const double frac = unix_s - whole;
  if (decimals > 0 && frac > 0.0) {
    char f[32];
    std::snprintf(f, sizeof f, "%.*f", decimals, frac);
    n += static_cast<std::size_t>(std::snprintf(buf + n, sizeof buf - n, "%s", f + 1));
  }
  return std::string(buf, n) + "Z";
}

// The current time in seconds since J2000.
inline double now_j2000() { return static_cast<double>(std::time(nullptr)) - kJ2000UnixSeconds; }

}  // namespace exospec
