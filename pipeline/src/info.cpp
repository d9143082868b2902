#include "exospec/pipeline/info.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "exospec/io/input_file.hpp"
#include "exospec/io/schema.hpp"
#include "exospec/kernels/spectrum_model.hpp"

namespace exospec::pipeline {
namespace {

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  template <class T>
  void add(std::span<const T> v) {
    for (T x : v) {
      const auto d = static_cast<double>(x);
      if (std::isnan(d)) continue;
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
  }
};

// Streams a per-spectrum 1-D array in blocks and returns its range.
template <class T, class Read>
Range stream_range(std::uint64_t n, Read read) {
  constexpr std::uint64_t kBlock = 65536;
  std::vector<T> buf(static_cast<std::size_t>(std::min(n, kBlock)));
  Range r;
  for (std::uint64_t row0 = 0; row0 < n; row0 += kBlock) {
    const auto rows = static_cast<std::size_t>(std::min(kBlock, n - row0));
    read(row0, std::span<T>(buf).first(rows));
    r.add(std::span<const T>(buf).first(rows));
  }
  return r;
}

}  // namespace

FileInfo inspect(const std::filesystem::path& path) {
  const auto in = io::InputFile::open(path);
  FileInfo info;
  info.path = in.path();
  info.kind = "input";
  info.schema_version = in.file().int_attribute("/", "schema_version");
  info.spectra = in.spectra();
  const std::uint64_t n = in.spectra();
  for (const auto& ch : in.channels()) {
    ChannelInfo c;
    c.name = ch;
    c.pixels = in.pixels(ch);
    const auto cal = in.read_calibration(ch);
    c.wavelength_coeffs = cal.wavelength_coeffs;
    std::vector<double> wl(c.pixels);
    kernels::pixel_wavelengths(cal.wavelength_coeffs, wl);
    c.wavelength_min_nm = *std::min_element(wl.begin(), wl.end());
    c.wavelength_max_nm = *std::max_element(wl.begin(), wl.end());
    c.bad_pixels =
        static_cast<std::uint64_t>(std::count(cal.bad_pixel.begin(), cal.bad_pixel.end(), 1));
    c.dead_time_s = cal.dead_time_s;
    const Range e = stream_range<double>(
        n, [&](std::uint64_t r0, std::span<double> out) { in.read_exposure(ch, r0, out); });
    c.exposure_min_s = e.lo;
    c.exposure_max_s = e.hi;
    const Range t = stream_range<float>(
        n, [&](std::uint64_t r0, std::span<float> out) { in.read_temperature(ch, r0, out); });
    c.temperature_min_c = t.lo;
    c.temperature_max_c = t.hi;
    if (in.has_truth(ch)) c.truth_lines = in.truth_line_names(ch);
    info.channels.push_back(std::move(c));
  }
  const Range time = stream_range<double>(
      n, [&](std::uint64_t r0, std::span<double> out) { in.read_time(r0, out); });
  const Range alt = stream_range<double>(
      n, [&](std::uint64_t r0, std::span<double> out) { in.read_altitude(r0, out); });
  info.time_min_s = time.lo;
  info.time_max_s = time.hi;
  info.altitude_min_km = alt.lo;
  info.altitude_max_km = alt.hi;
  for (const auto& top : in.file().children("/")) {
    const std::string g = "/" + top;
    if (!in.file().is_group(g)) continue;
    bool has_channel_groups = false;
    for (const auto& sub : in.file().children(g)) {
      if (io::schema::is_channel(sub) && in.file().is_group(g + "/" + sub)) {
        info.groups.push_back(g + "/" + sub);
        has_channel_groups = true;
      }
    }
    if (!has_channel_groups) info.groups.push_back(g);
  }
  return info;
}

}  // namespace exospec::pipeline
