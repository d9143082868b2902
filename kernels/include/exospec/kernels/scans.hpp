#pragma once
// Limb scans: the runs of consecutive spectra that the profile stage fits one
// altitude profile to, and within which the stages that use neighbouring
// spectra (the fit's sigma reference, the calibrated variance) take their
// neighbours.
//
// kMonotonic (the default): maximal runs of consecutive spectra whose tangent
// altitude changes in one direction. A scan's direction is set by its first
// non-zero step; a step of the other sign starts a new scan at that spectrum;
// equal altitudes continue the current scan (so a file at one altitude is one
// scan). A non-finite altitude is a scan of its own, and ends the one before.
// kFixed: consecutive blocks of `length` spectra (the last may be shorter).
// kFile: the whole file is one scan.
//
// Each scan is (first, count); together they cover 0..N-1 in order. Cost O(N);
// allocates the result only.
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace exospec::kernels {

enum class ScanMode : std::uint8_t { kMonotonic, kFixed, kFile };
std::optional<ScanMode> parse_scan_mode(std::string_view s) noexcept;
const char* scan_mode_name(ScanMode m) noexcept;

struct Scan {
  std::int64_t first = 0, count = 0;
};

// The scans of N = altitude_km.size() spectra (length: kFixed only, >= 1).
std::vector<Scan> find_scans(std::span<const double> altitude_km, ScanMode mode, std::int64_t length = 1);

// The scan index of each spectrum (out: N values).
void scan_index(std::span<const Scan> scans, std::span<std::int64_t> out) noexcept;

}  // namespace exospec::kernels
