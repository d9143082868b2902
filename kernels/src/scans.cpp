#include "exospec/kernels/scans.hpp"

#include <algorithm>
#include <cmath>

namespace exospec::kernels {

std::optional<ScanMode> parse_scan_mode(std::string_view s) noexcept {
  if (s == "monotonic") return ScanMode::kMonotonic;
  if (s == "fixed") return ScanMode::kFixed;
  if (s == "file") return ScanMode::kFile;
  return std::nullopt;
}

const char* scan_mode_name(ScanMode m) noexcept {
  return m == ScanMode::kMonotonic ? "monotonic" : m == ScanMode::kFixed ? "fixed" : "file";
}

std::vector<Scan> find_scans(std::span<const double> z, ScanMode mode, std::int64_t length) {
  const auto n = static_cast<std::int64_t>(z.size());
  std::vector<Scan> out;
  if (n == 0) return out;
  if (mode == ScanMode::kFile) return {{0, n}};
  if (mode == ScanMode::kFixed) {
    const std::int64_t len = std::max<std::int64_t>(length, 1);
    for (std::int64_t first = 0; first < n; first += len) out.push_back({first, std::min(len, n - first)});
    return out;
  }
  std::int64_t first = 0;
  int direction = 0;  // of the current scan: 0 until its first non-zero step
  for (std::int64_t i = 1; i < n; ++i) {
    const double a = z[static_cast<std::size_t>(i - 1)], b = z[static_cast<std::size_t>(i)];
    bool split = !std::isfinite(a) || !std::isfinite(b);
    if (!split && b != a) {
      const int step = b > a ? 1 : -1;
      if (direction == 0) {
        direction = step;
      } else if (step != direction) {
        split = true;
      }
    }
    if (split) {
      out.push_back({first, i - first});
      first = i;
      direction = 0;
    }
  }
  out.push_back({first, n - first});
  return out;
}

void scan_index(std::span<const Scan> scans, std::span<std::int64_t> out) noexcept {
  for (std::size_t s = 0; s < scans.size(); ++s) {
    for (std::int64_t i = 0; i < scans[s].count; ++i) {
      out[static_cast<std::size_t>(scans[s].first + i)] = static_cast<std::int64_t>(s);
    }
  }
}

}  // namespace exospec::kernels
