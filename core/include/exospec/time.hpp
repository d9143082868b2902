#pragma once
// Time convention of the data contract: float64 seconds since J2000
// (2000-01-01T12:00:00 UTC), counted like POSIX time (leap seconds ignored).
namespace exospec {
// POSIX time of the J2000 epoch, 2000-01-01T12:00:00Z.
inline constexpr double kJ2000UnixSeconds = 946728000.0;
}  // namespace exospec
