#include "exospec/io/input_file.hpp"

#include <algorithm>
#include <cmath>

#include "exospec/error.hpp"
#include "exospec/io/schema.hpp"
#include "exospec/wavelength.hpp"

namespace exospec::io {
namespace {

std::string dims_text(const Dims& d) {
  if (d.empty()) return "scalar";
  std::string s = "(";
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(d[i]);
  }
  return s + ")";
}

[[noreturn]] void schema_fail(const File& f, const std::string& object, const std::string& msg) {
  throw SchemaError(f.path(), object, msg);
}

// Checks presence, dataset-ness, dtype and rank; returns the dims.
Dims check_dataset(const File& file, const schema::ObjectSpec& spec) {
  if (!file.exists(spec.path)) schema_fail(file, spec.path, "missing dataset");
  if (file.is_group(spec.path)) schema_fail(file, spec.path, "is a group, expected a dataset");
  const DatasetInfo info = file.dataset_info(spec.path);
  if (info.dtype != spec.dtype) {
    schema_fail(file, spec.path,
                "dtype " + info.type_text + ", expected " + std::string(dtype_name(spec.dtype)));
  }
  const std::size_t rank = schema::dims_of(spec.extent, schema::Sizes{1, 1, 1, 1}).size();
  if (info.dims.size() != rank) {
    schema_fail(file, spec.path,
                "shape " + dims_text(info.dims) + ", expected " +
                    std::string(schema::extent_name(spec.extent)));
  }
  return info.dims;
}

void check_attributes(const File& file, const schema::ObjectSpec& spec) {
  if (!spec.units.empty()) {
    if (!file.has_attribute(spec.path, "units")) {
      schema_fail(file, spec.path,
                  "missing attribute 'units' (expected \"" + std::string(spec.units) + "\")");
    }
    const std::string units = file.string_attribute(spec.path, "units");
    if (units != spec.units) {
      schema_fail(file, spec.path,
                  "units \"" + units + "\", expected \"" + std::string(spec.units) + "\"");
    }
  }
  if (!file.has_attribute(spec.path, "description")) {
    schema_fail(file, spec.path, "missing attribute 'description'");
  }
}

}  // namespace

void validate_object(const File& file, const schema::ObjectSpec& spec, const Dims& expected) {
  const Dims dims = check_dataset(file, spec);
  if (dims != expected) {
    schema_fail(file, spec.path,
                "shape " + dims_text(dims) + ", expected " + dims_text(expected) + " (" +
                    std::string(schema::extent_name(spec.extent)) + ")");
  }
  check_attributes(file, spec);
}

void validate_objects(const File& file, const std::vector<schema::ObjectSpec>& specs,
                      const schema::Sizes& sizes) {
  for (const auto& spec : specs) validate_object(file, spec, schema::dims_of(spec.extent, sizes));
}

InputFile InputFile::open(const std::filesystem::path& path) {
  InputFile in(File::open(path));
  const File& f = in.file_;

  // Root attributes.
  if (!f.has_attribute("/", "schema")) schema_fail(f, "/", "missing root attribute 'schema'");
  if (f.attribute_type("/", "schema") != "string" ||
      f.string_attribute("/", "schema") != schema::kSchemaName) {
    schema_fail(f, "/", "root attribute 'schema' is not \"exospec\"");
  }
  if (!f.has_attribute("/", "schema_version")) {
    schema_fail(f, "/", "missing root attribute 'schema_version'");
  }
  if (f.attribute_type("/", "schema_version") != "int32") {
    schema_fail(f, "/",
                "root attribute 'schema_version' is " + f.attribute_type("/", "schema_version") +
                    ", expected int32");
  }
  const auto version = f.int_attribute("/", "schema_version");
  if (version != schema::kSchemaVersion) {
    schema_fail(
        f, "/",
        "schema_version " + std::to_string(version) + " is not supported (this reader supports 1)");
  }

  // Channels.
  if (!f.is_group("/raw")) schema_fail(f, "/raw", "missing group");
  for (const auto& name : f.children("/raw")) {
    if (!schema::is_channel(name)) {
      schema_fail(f, "/raw/" + name, "unknown channel (expected euv or fuv)");
    }
  }
  for (auto ch : schema::kChannels) {
    if (f.exists(schema::raw_group(ch))) in.channels_.emplace_back(ch);
  }
  if (in.channels_.empty()) schema_fail(f, "/raw", "holds no channel (expected euv and/or fuv)");

  // N from the first channel's counts; everything else must agree.
  std::string n_source;
  for (const auto& ch : in.channels_) {
    const auto raw = schema::raw_objects(ch);
    const Dims counts = check_dataset(f, raw[0]);
    if (counts[1] == 0) schema_fail(f, raw[0].path, "has zero pixels");
    if (counts[1] > kMaxPixels) {
      schema_fail(f, raw[0].path,
                  std::to_string(counts[1]) + " pixels per spectrum; exospec takes at most " +
                      std::to_string(kMaxPixels));
    }
    if (counts[0] > kMaxSpectra) {
      schema_fail(f, raw[0].path,
                  std::to_string(counts[0]) + " spectra; exospec takes at most " +
                      std::to_string(kMaxSpectra) + " per file (split it along the spectra)");
    }
    if (n_source.empty()) {
      in.n_ = counts[0];
      n_source = raw[0].path;
      if (in.n_ == 0) schema_fail(f, raw[0].path, "holds no spectra (N = 0)");
    } else if (counts[0] != in.n_) {
      schema_fail(f, raw[0].path,
                  "N = " + std::to_string(counts[0]) +
                      " differs from N = " + std::to_string(in.n_) + " of " + n_source);
    }
    schema::Sizes sizes{in.n_, counts[1], 0, 0};
    validate_objects(f, raw, sizes);

    const std::string cal = schema::calibration_group(ch);
    if (!f.is_group(cal)) schema_fail(f, cal, "missing group");
    const auto cal_objects = schema::calibration_objects(ch);
    const Dims k = check_dataset(f, cal_objects[0]);
    if (k[0] == 0) schema_fail(f, cal_objects[0].path, "holds no coefficient");
    if (k[0] > kMaxWavelengthCoeffs) {
      schema_fail(f, cal_objects[0].path,
                  std::to_string(k[0]) + " coefficients; exospec takes at most " +
                      std::to_string(kMaxWavelengthCoeffs) + " (a polynomial of degree " +
                      std::to_string(kMaxWavelengthCoeffs - 1) + ")");
    }
    sizes.k = k[0];
    validate_objects(f, cal_objects, sizes);
    for (auto attr : schema::kCalibrationAttributes) {
      if (!f.has_attribute(cal, attr)) {
        schema_fail(f, cal, "missing attribute '" + std::string(attr) + "'");
      }
      const std::string type = f.attribute_type(cal, attr);
      if (type != "float64") {
        schema_fail(f, cal,
                    "attribute '" + std::string(attr) + "' is " + type + ", expected float64");
      }
    }
    in.pixels_.push_back(counts[1]);
  }

  validate_objects(f, schema::geometry_objects(), schema::Sizes{in.n_, 0, 0, 0});
  return in;
}

bool InputFile::has_channel(std::string_view channel) const noexcept {
  return std::find(channels_.begin(), channels_.end(), channel) != channels_.end();
}

std::uint64_t InputFile::pixels(std::string_view channel) const {
  for (std::size_t i = 0; i < channels_.size(); ++i) {
    if (channels_[i] == channel) return pixels_[i];
  }
  throw SchemaError(path(), schema::raw_group(channel), "channel not in file");
}

void check_calibration(const ChannelCalibration& c, std::uint64_t p, const std::string& file,
                       const std::string& g) {
  auto fail = [&](const std::string& object, const std::string& msg) {
    throw SchemaError(file, object, msg);
  };
  const std::pair<const char*, std::size_t> tables[] = {{"/dark_rate", c.dark_rate.size()},
                                                        {"/flat", c.flat.size()},
                                                        {"/sensitivity", c.sensitivity.size()},
                                                        {"/bad_pixel", c.bad_pixel.size()}};
  for (const auto& [name, n] : tables) {
    if (n != p)
      fail(g + name,
           "has " + std::to_string(n) + " values, expected " + std::to_string(p) + " (pixels)");
  }
  if (c.wavelength_coeffs.empty()) fail(g + "/wavelength_coeffs", "is empty");
  if (c.wavelength_coeffs.size() > kMaxWavelengthCoeffs) {
    fail(g + "/wavelength_coeffs", std::to_string(c.wavelength_coeffs.size()) +
                                       " coefficients; exospec takes at most " +
                                       std::to_string(kMaxWavelengthCoeffs));
  }
  for (double v : c.wavelength_coeffs) {
    if (!std::isfinite(v)) fail(g + "/wavelength_coeffs", "holds a non-finite value");
  }
  // The wavelengths must run one way across the detector (either way: a
  // detector may be read out from its red end), at the pixel edges p - 1/2
  // that the line fit integrates between; a solution that turns back would
  // put one wavelength on two pixels.
  auto wavelength = [&](double x) { return eval_polynomial(c.wavelength_coeffs, x); };
  double previous = wavelength(-0.5), direction = 0.0;
  for (std::uint64_t e = 1; e <= p; ++e) {
    const double next = wavelength(static_cast<double>(e) - 0.5);
    const double step = next - previous;
    if (e == 1) direction = step;
    if (!std::isfinite(next) || !(step * direction > 0.0)) {
      fail(g + "/wavelength_coeffs",
           "wavelengths do not run one way across the detector (they turn or stop at pixel " +
               std::to_string(e - 1) + ")");
    }
    previous = next;
  }
  for (std::uint64_t i = 0; i < p; ++i) {
    if (c.bad_pixel[i] > 1) {
      fail(g + "/bad_pixel", "value " + std::to_string(c.bad_pixel[i]) + " at pixel " +
                                 std::to_string(i) + " (expected 0 or 1)");
    }
    if (c.bad_pixel[i]) continue;
    if (!std::isfinite(c.dark_rate[i]) || c.dark_rate[i] < 0.0) {
      fail(g + "/dark_rate", "negative or non-finite value at usable pixel " + std::to_string(i));
    }
    if (!std::isfinite(c.flat[i]) || c.flat[i] <= 0.0) {
      fail(g + "/flat", "non-positive or non-finite value at usable pixel " + std::to_string(i));
    }
    if (!std::isfinite(c.sensitivity[i]) || c.sensitivity[i] <= 0.0) {
      fail(g + "/sensitivity",
           "non-positive or non-finite value at usable pixel " + std::to_string(i));
    }
  }
  if (!std::isfinite(c.dead_time_s) || c.dead_time_s < 0.0) {
    fail(g, "attribute 'dead_time_s' is negative or not finite");
  }
  if (!std::isfinite(c.dark_reference_temperature) || !std::isfinite(c.dark_temperature_coeff)) {
    fail(g, "dark temperature attributes are not finite");
  }
}

ChannelCalibration InputFile::read_calibration(std::string_view channel) const {
  const std::uint64_t p = pixels(channel);
  const std::string g = schema::calibration_group(channel);
  ChannelCalibration c;
  c.wavelength_coeffs = file_.read_all<double>(g + "/wavelength_coeffs");
  c.dark_rate = file_.read_all<double>(g + "/dark_rate");
  c.flat = file_.read_all<double>(g + "/flat");
  c.sensitivity = file_.read_all<double>(g + "/sensitivity");
  c.bad_pixel = file_.read_all<std::uint8_t>(g + "/bad_pixel");
  c.dead_time_s = file_.double_attribute(g, "dead_time_s");
  c.dark_reference_temperature = file_.double_attribute(g, "dark_reference_temperature");
  c.dark_temperature_coeff = file_.double_attribute(g, "dark_temperature_coeff");

  check_calibration(c, p, file_.path(), g);
  return c;
}

void InputFile::read_counts(std::string_view channel, std::uint64_t row0,
                            std::span<std::uint32_t> out) const {
  file_.read_rows(schema::raw_group(channel) + "/counts", row0, out);
}

void InputFile::fetch_counts(std::string_view channel, std::uint64_t row0,
                             std::span<std::uint32_t> out, StoredRows& stored) const {
  file_.fetch_rows(schema::raw_group(channel) + "/counts", row0, out, stored);
}

void InputFile::read_exposure(std::string_view channel, std::uint64_t row0,
                              std::span<double> out) const {
  file_.read_rows(schema::raw_group(channel) + "/exposure_s", row0, out);
}

void InputFile::read_temperature(std::string_view channel, std::uint64_t row0,
                                 std::span<float> out) const {
  file_.read_rows(schema::raw_group(channel) + "/detector_temperature", row0, out);
}

void InputFile::read_time(std::uint64_t row0, std::span<double> out) const {
  file_.read_rows("/geometry/time", row0, out);
}

void InputFile::read_altitude(std::uint64_t row0, std::span<double> out) const {
  file_.read_rows("/geometry/tangent_altitude_km", row0, out);
}

bool InputFile::has_truth(std::string_view channel) const {
  return file_.is_group(schema::truth_group(channel));
}

std::vector<std::string> InputFile::truth_line_names(std::string_view channel) const {
  const auto specs = schema::truth_objects(channel);
  const Dims names = check_dataset(file_, specs[0]);
  if (names[0] > kMaxLines) {
    schema_fail(file_, specs[0].path,
                std::to_string(names[0]) + " lines; exospec takes at most " + std::to_string(kMaxLines));
  }
  const schema::Sizes sizes{n_, pixels(channel), 0, names[0]};
  validate_objects(file_, specs, sizes);
  return file_.read_strings(specs[0].path);
}

}  // namespace exospec::io
