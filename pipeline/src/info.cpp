#include "exospec/pipeline/info.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "exospec/error.hpp"
#include "exospec/io/file.hpp"
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

// The groups of a file, with channel subgroups listed as /group/<ch>.
std::vector<std::string> list_groups(const io::File& f) {
  std::vector<std::string> groups;
  for (const auto& top : f.children("/")) {
    const std::string g = "/" + top;
    if (!f.is_group(g)) continue;
    bool has_channel_groups = false;
    for (const auto& sub : f.children(g)) {
      if (io::schema::is_channel(sub) && f.is_group(g + "/" + sub)) {
        groups.push_back(g + "/" + sub);
        has_channel_groups = true;
      }
    }
    if (!has_channel_groups) groups.push_back(g);
  }
  return groups;
}

// A dataset's dims, or none if it is missing (the contract check then says so).
io::Dims dims_if_present(const io::File& f, const std::string& name) {
  return f.exists(name) ? f.dataset_info(name).dims : io::Dims{};
}

// An output of `exospec run`: no /raw; /geometry and the products written.
FileInfo inspect_output(const io::File& f) {
  FileInfo info;
  info.path = f.path();
  info.kind = "output";
  info.schema_version = f.int_attribute("/", "schema_version");
  const auto text = [&](const char* name) {
    return f.has_attribute("/", name) ? f.string_attribute("/", name) : std::string();
  };
  info.software_version = text("software_version");
  info.input_file = text("input_file");
  info.input_sha256 = text("input_sha256");
  info.created_utc = text("created_utc");
  const io::Dims time_dims = dims_if_present(f, "/geometry/time");
  const std::uint64_t n = time_dims.empty() ? 0 : time_dims[0];
  io::validate_objects(f, io::schema::geometry_objects(), {n, 0, 0, 0});
  info.spectra = n;
  const Range time = stream_range<double>(n, [&](std::uint64_t r0, std::span<double> out) {
    f.read_rows<double>("/geometry/time", r0, out);
  });
  const Range alt = stream_range<double>(n, [&](std::uint64_t r0, std::span<double> out) {
    f.read_rows<double>("/geometry/tangent_altitude_km", r0, out);
  });
  info.time_min_s = time.lo;
  info.time_max_s = time.hi;
  info.altitude_min_km = alt.lo;
  info.altitude_max_km = alt.hi;
  for (auto ch : io::schema::kChannels) {
    ChannelInfo c;
    c.name = ch;
    const std::string cg = io::schema::calibrated_group(ch), dg = io::schema::denoised_group(ch),
                      fg = io::schema::fit_group(ch);
    if (f.exists(cg)) {
      c.products.emplace_back("calibrated");
      const io::Dims wl_dims = dims_if_present(f, cg + "/wavelength_nm");
      c.pixels = wl_dims.empty() ? 0 : wl_dims[0];
      if (c.pixels > io::kMaxPixels) {
        throw exospec::SchemaError(f.path(), cg + "/wavelength_nm",
                          std::to_string(c.pixels) + " pixels; exospec takes at most " +
                              std::to_string(io::kMaxPixels));
      }
      io::validate_objects(f, io::schema::calibrated_objects(ch), {n, c.pixels, 0, 0});
      const auto wl = f.read_all<double>(cg + "/wavelength_nm");
      if (!wl.empty()) {
        c.wavelength_min_nm = *std::min_element(wl.begin(), wl.end());
        c.wavelength_max_nm = *std::max_element(wl.begin(), wl.end());
      }
    }
    if (f.exists(dg)) {
      c.products.emplace_back("denoised");
      if (c.pixels == 0) {  // (no /calibrated: P from here)
        const io::Dims d = dims_if_present(f, dg + "/radiance");
        if (!d.empty()) c.pixels = d.back();
      }
      io::validate_objects(f, io::schema::denoised_objects(ch), {n, c.pixels, 0, 0});
    }
    if (f.exists(fg)) {
      c.products.emplace_back("fit");
      const io::Dims names = dims_if_present(f, fg + "/line_name");
      const std::uint64_t lines = names.empty() ? 0 : names[0];
      io::validate_objects(f, io::schema::fit_objects(ch), {n, 0, 0, lines});
      c.fit_lines = f.read_strings(fg + "/line_name");
      constexpr std::uint64_t kBlock = 65536;
      std::vector<std::uint8_t> status(static_cast<std::size_t>(std::min(n, kBlock) * lines));
      for (std::uint64_t r0 = 0; r0 < n; r0 += kBlock) {
        const auto rows = std::min(kBlock, n - r0);
        const auto block = std::span(status).first(static_cast<std::size_t>(rows * lines));
        f.read_rows<std::uint8_t>(fg + "/status", r0, block);
        for (const auto st : block) {
          if (c.fit_status.size() <= st) c.fit_status.resize(st + 1u, 0);
          ++c.fit_status[st];
        }
      }
    }
    if (!c.products.empty()) info.channels.push_back(std::move(c));
  }
  info.groups = list_groups(f);
  return info;
}

}  // namespace

FileInfo inspect(const std::filesystem::path& path) {
  {
    const auto f = io::File::open(path);
    if (!f.exists("/raw") &&
        (f.exists("/fit") || f.exists("/calibrated") || f.exists("/denoised"))) {
      return inspect_output(f);
    }
  }
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
  info.groups = list_groups(in.file());
  return info;
}

}  // namespace exospec::pipeline
