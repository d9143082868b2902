// exospec._core: the pipeline's stages on numpy arrays, and the command's
// run, simulate and info, for Python (the package python/exospec wraps it).
//
// Arrays: C-contiguous numpy arrays are used where they are, without a copy,
// when their dtype is the one the stage computes in (uint32 counts, float64
// exposure, temperature and altitude, float32 radiance and variance, uint8
// quality); other real or integer dtypes are converted (a copy), and a
// non-contiguous array, a wrong shape or an unusable dtype raises. The GIL is
// released while the stages compute. Errors of the library (exospec::Error)
// become the exception types of exospec.errors with the command's one-line
// message; nothing here prints or exits.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "exospec/error.hpp"
#include "exospec/io/input_file.hpp"
#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/profile.hpp"
#include "exospec/kernels/scans.hpp"
#include "exospec/kernels/spectrum_model.hpp"
#include "exospec/pipeline/catalogue.hpp"
#include "exospec/pipeline/info.hpp"
#include "exospec/pipeline/profile.hpp"
#include "exospec/pipeline/run.hpp"
#include "exospec/pipeline/simulate.hpp"
#include "exospec/pipeline/stages.hpp"
#include "exospec/time.hpp"
#include "exospec/version.hpp"

namespace py = pybind11;
namespace fs = std::filesystem;
namespace ep = exospec::pipeline;
namespace ek = exospec::kernels;
namespace eio = exospec::io;

namespace {

// ---------------------------------------------------------------- errors

void set_error(const char* type, const char* message) {
  const py::object cls = py::module_::import("exospec.errors").attr(type);
  PyErr_SetString(cls.ptr(), message);
}

void translate(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const exospec::ConfigError& e) {
    set_error("ConfigError", e.what());
  } catch (const exospec::SchemaError& e) {
    set_error("SchemaError", e.what());
  } catch (const exospec::FileError& e) {
    std::error_code ec;
    const bool missing = !e.file().empty() && e.object().empty() && !fs::exists(e.file(), ec);
    set_error(missing ? "FileNotFound" : "FileError", e.what());
  } catch (const exospec::Error& e) {
    set_error("Error", e.what());
  }
}

// Thrown by a progress callback once Python has a pending signal
// (KeyboardInterrupt): the library unwinds (no output is left), and the
// binding re-raises the Python error.
struct PythonSignal : std::exception {
  const char* what() const noexcept override { return "interrupted"; }
};

// ---------------------------------------------------------------- arrays

enum class Kind { kCount, kReal, kFlag, kIndex };

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// `obj` as a C-contiguous array of T: itself when it already is one (no
// copy), else a converted copy (see the file comment). `name` names the
// argument in errors.
template <class T>
py::array_t<T, py::array::c_style> take(py::handle obj, const std::string& name, Kind kind) {
  if (obj.is_none()) throw py::type_error(name + ": expected an array, got None");
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(name + ": expected a numpy array (or a sequence of numbers)");
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(name + ": the array is not C-contiguous (numpy.ascontiguousarray(" +
                          name + ") makes a contiguous copy)");
  }
  if (py::isinstance<py::array_t<T>>(a))
    return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
  const char k = a.dtype().kind();
  const bool integer = k == 'i' || k == 'u';
  const bool real = integer || k == 'f';
  if (kind == Kind::kCount || kind == Kind::kFlag || kind == Kind::kIndex) {
    if (!integer) {
      throw py::type_error(name + ": expected integers (" + dtype_str(py::array_t<T>(0)) +
                           "), got " + dtype_str(a));
    }
    if (a.size() > 0 && kind != Kind::kIndex) {
      const double lo = a.attr("min")().cast<double>(), hi = a.attr("max")().cast<double>();
      const double top = kind == Kind::kCount ? 4294967295.0 : 255.0;
      if (lo < 0.0 || hi > top) {
        throw py::value_error(name + ": values outside 0.." +
                              std::to_string(static_cast<std::uint64_t>(top)) + " cannot be " +
                              dtype_str(py::array_t<T>(0)));
      }
    }
  } else if (!real) {
    throw py::type_error(name + ": expected real numbers, got " + dtype_str(a));
  }
  py::array c = a.attr("astype")(py::dtype::of<T>());
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(c);
}

template <class T>
std::span<const T> span_of(const py::array_t<T, py::array::c_style>& a) {
  return {a.data(), static_cast<std::size_t>(a.size())};
}
template <class T>
std::span<T> mutable_span(py::array_t<T, py::array::c_style>& a) {
  return {a.mutable_data(), static_cast<std::size_t>(a.size())};
}

// Rows of a per-pixel array: 1-D (one spectrum of P) or 2-D (N x P).
struct Rows {
  std::size_t n = 0;
  bool single = false;
};
Rows rows_of(const py::array& a, const std::string& name, std::size_t pixels) {
  if (a.ndim() == 1) {
    if (static_cast<std::size_t>(a.shape(0)) != pixels) {
      throw py::value_error(name + ": " + std::to_string(a.shape(0)) +
                            " pixels, the calibration has " + std::to_string(pixels));
    }
    return {1, true};
  }
  if (a.ndim() == 2) {
    if (static_cast<std::size_t>(a.shape(1)) != pixels) {
      throw py::value_error(name + ": " + std::to_string(a.shape(1)) +
                            " pixels per spectrum, the calibration has " + std::to_string(pixels));
    }
    return {static_cast<std::size_t>(a.shape(0)), false};
  }
  throw py::value_error(name + ": expected 1-D (one spectrum) or 2-D (spectra x pixels), got " +
                        std::to_string(a.ndim()) + "-D");
}

// The same shape as `like` (rows x cols, or cols alone for one spectrum).
template <class T>
py::array_t<T, py::array::c_style> shaped(const Rows& r, std::size_t cols) {
  if (r.single)
    return py::array_t<T, py::array::c_style>(
        std::vector<py::ssize_t>{static_cast<py::ssize_t>(cols)});
  return py::array_t<T, py::array::c_style>(
      std::vector<py::ssize_t>{static_cast<py::ssize_t>(r.n), static_cast<py::ssize_t>(cols)});
}

// One value per spectrum: a number (for every spectrum) or n values.
py::array_t<double, py::array::c_style> per_row(py::handle obj, const std::string& name,
                                                std::size_t n) {
  auto a = take<double>(obj, name, Kind::kReal);
  if (a.ndim() == 0) {
    py::array_t<double, py::array::c_style> full(static_cast<py::ssize_t>(n));
    std::fill_n(full.mutable_data(), n, *a.data());
    return full;
  }
  if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != n) {
    throw py::value_error(name + ": expected one value per spectrum (" + std::to_string(n) +
                          "), got shape " + py::str(a.attr("shape")).cast<std::string>());
  }
  return a;
}

template <class T>
void same_shape(const py::array& a, const py::array& like, const std::string& name,
                const std::string& like_name) {
  if (a.ndim() != like.ndim() || !std::equal(a.shape(), a.shape() + a.ndim(), like.shape())) {
    throw py::value_error(name + ": shape " + py::str(a.attr("shape")).cast<std::string>() +
                          " differs from " + like_name + "'s " +
                          py::str(like.attr("shape")).cast<std::string>());
  }
}

std::vector<double> vector_of(py::handle obj, const std::string& name) {
  const auto a = take<double>(obj, name, Kind::kReal);
  if (a.ndim() > 1) throw py::value_error(name + ": expected a 1-D array");
  return {a.data(), a.data() + a.size()};
}

template <class T>
py::array_t<T> array_of(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

// ---------------------------------------------------------------- configuration

std::optional<fs::path> optional_path(const py::object& p) {
  if (p.is_none()) return std::nullopt;
  return fs::path(py::str(py::module_::import("os").attr("fspath")(p)).cast<std::string>());
}

// A run configuration: None (the defaults), a path to a TOML file of the
// layout of `exospec config --defaults run`, or that TOML text itself (a
// string of more than one line, e.g. an output's `config` attribute).
ep::RunConfig run_config_of(const py::object& config) {
  if (py::isinstance<py::str>(config)) {
    const std::string text = config.cast<std::string>();
    if (text.find('\n') != std::string::npos) return ep::parse_run_config(text, "<config text>");
  }
  return ep::load_run_config(optional_path(config));
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

std::vector<std::string> names_of(const py::object& obj) {
  if (py::isinstance<py::str>(obj)) return {obj.cast<std::string>()};
  return obj.cast<std::vector<std::string>>();
}

// ---------------------------------------------------------------- results

struct Calibrated {
  py::object radiance, variance, quality, scale, offset;
};
struct Denoised {
  py::object radiance, variance;
};
struct Fits {
  py::object brightness, brightness_sigma, center_nm, fwhm_nm, chi2_reduced, status,
      line_wavelength_nm;
  std::vector<std::string> line_names;
};
struct Profiles {
  std::vector<std::string> line_names;
  py::object mass_amu, scan_first, scan_count, surface_brightness_R, surface_brightness_R_sigma,
      temperature_K, temperature_K_sigma, background_R, background_R_sigma, scale_height_km,
      scale_height_km_sigma, temperature_background_correlation, chi2_reduced, status, spectra;
};

// ---------------------------------------------------------------- lines

ek::FitLineSpec line_from(const py::handle& obj, const std::string& channel) {
  if (py::isinstance<py::str>(obj)) {
    const std::string name = obj.cast<std::string>();
    std::string known;
    const ep::LineCatalogue catalogue = ep::default_catalogue();  // (outlives the loop)
    for (const auto& l : catalogue.channel(channel)) {
      if (l.name == name) return {l.name, l.wavelength_nm, l.components};
      known += (known.empty() ? "" : ", ") + l.name;
    }
    throw py::value_error("lines: '" + name + "' is not a " + channel + " line of the catalogue (" +
                          known + ")");
  }
  return obj.cast<ek::FitLineSpec>();
}

void check_line(const ek::FitLineSpec& l) {
  if (l.name.empty()) throw py::value_error("lines: a line without a name");
  if (!std::isfinite(l.wavelength_nm))
    throw py::value_error("lines: " + l.name + ": wavelength_nm is not finite");
  if (l.components.empty()) throw py::value_error("lines: " + l.name + ": no components");
  double total = 0.0;
  for (const auto& c : l.components) {
    if (!std::isfinite(c.wavelength_nm) || !(c.fraction > 0.0) || !std::isfinite(c.fraction)) {
      throw py::value_error("lines: " + l.name +
                            ": a component needs a finite wavelength and a fraction > 0");
    }
    total += c.fraction;
  }
  if (std::abs(total - 1.0) > 1e-9) {
    throw py::value_error("lines: " + l.name + ": the fractions of the components sum to " +
                          std::to_string(total) + ", not 1");
  }
}

// ---------------------------------------------------------------- Channel

class Channel {
 public:
  Channel(std::string channel, const eio::ChannelCalibration& calibration, const py::object& config,
          int threads, const py::object& lines, const py::object& stages)
      : config_(run_config_of(config)) {
    if (channel != "euv" && channel != "fuv") {
      throw py::value_error("channel: '" + channel + "' is not a channel (euv or fuv)");
    }
    if (threads < 0) throw py::value_error("threads: must be >= 0 (0: all cores)");
    if (stages.is_none()) {
      std::vector<ep::Stage> s;
      for (auto st : config_.stages) {
        if (st != ep::Stage::kProfile) s.push_back(st);
      }
      config_.stages = s;
    } else {
      config_.stages = ep::parse_stages(join(names_of(stages)), "stages");
      for (auto st : config_.stages) {
        if (st == ep::Stage::kProfile)
          throw py::value_error("stages: 'profile' runs on fits: use exospec.profile()");
      }
    }
    if (!config_.has_stage(ep::Stage::kCalibrate))
      config_.stages.insert(config_.stages.begin(), ep::Stage::kCalibrate);
    config_.validate();
    const std::size_t P = calibration.dark_rate.size();
    try {
      eio::check_calibration(calibration, P, "calibration", "");
    } catch (const exospec::SchemaError& e) {
      throw py::value_error(std::string("calibration") + e.object() + ": " + e.message());
    }
    std::vector<ek::FitLineSpec> specs;
    if (!lines.is_none()) {
      for (const auto& l : lines) {
        specs.push_back(line_from(l, channel));
        check_line(specs.back());
      }
      if (specs.empty())
        throw py::value_error("lines: an empty list (None: every line of the catalogue)");
    }
    stages_ = std::make_unique<ep::ChannelStages>(config_, std::move(channel), calibration, threads,
                                                  "", std::move(specs));
  }

  const ep::ChannelStages& stages() const { return *stages_; }
  const ep::RunConfig& config() const { return config_; }

  std::vector<std::string> line_names() const {
    std::vector<std::string> v;
    if (stages_->has_fit()) {
      for (const auto& l : stages_->line_specs()) v.push_back(l.name);
    }
    return v;
  }

  Calibrated calibrate(const py::object& counts_obj, const py::object& exposure_obj,
                       const py::object& temperature_obj, const py::object& altitude_obj,
                       const py::object& scan_obj) {
    const std::size_t P = stages_->pixels();
    const auto counts = take<std::uint32_t>(counts_obj, "counts", Kind::kCount);
    const Rows r = rows_of(counts, "counts", P);
    const auto exposure = per_row(exposure_obj, "exposure_s", r.n);
    const auto temperature = per_row(temperature_obj, "temperature_c", r.n);
    const Geometry geo(altitude_obj, scan_obj, r.n);
    Calibrated out;
    auto radiance = shaped<float>(r, P), variance = shaped<float>(r, P);
    auto quality = shaped<std::uint8_t>(r, P);
    py::array_t<double, py::array::c_style> scale, offset;
    const bool model = stages_->needs_count_model();
    if (model) {
      scale = shaped<double>(r, P);
      offset = shaped<double>(r, P);
    }
    {
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      stages_->calibrate(span_of(counts), span_of(exposure), span_of(temperature),
                         {mutable_span(radiance), mutable_span(variance), mutable_span(quality),
                          model ? mutable_span(scale) : std::span<double>(),
                          model ? mutable_span(offset) : std::span<double>()},
                         geo.view());
    }
    out.radiance = radiance;
    out.variance = variance;
    out.quality = quality;
    out.scale = model ? py::object(scale) : py::none();
    out.offset = model ? py::object(offset) : py::none();
    return out;
  }

  Denoised denoise(const py::object& first, const py::object& variance_obj,
                   const py::object& quality_obj, const py::object& scale_obj,
                   const py::object& offset_obj) {
    if (!stages_->has_denoise())
      throw py::value_error("denoise: the denoise stage is not among this Channel's stages");
    const Input in(*this, first, variance_obj, quality_obj, scale_obj, offset_obj, "denoise");
    const std::size_t P = stages_->pixels();
    auto radiance = shaped<float>(in.rows, P), variance = shaped<float>(in.rows, P);
    {
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      stages_->denoise(in.view(), {mutable_span(radiance), mutable_span(variance)});
    }
    return {radiance, variance};
  }

  Fits fit(const py::object& first, const py::object& variance_obj, const py::object& quality_obj,
           const py::object& denoised_obj, const py::object& scale_obj,
           const py::object& offset_obj, const py::object& altitude_obj,
           const py::object& scan_obj) {
    if (!stages_->has_fit())
      throw py::value_error("fit: the fit stage is not among this Channel's stages");
    const Input in(*this, first, variance_obj, quality_obj, scale_obj, offset_obj, "fit");
    py::array_t<float, py::array::c_style> denoised;
    if (!denoised_obj.is_none()) {
      py::object d = denoised_obj;
      if (py::hasattr(d, "radiance") && !py::isinstance<py::array>(d)) d = d.attr("radiance");
      denoised = take<float>(d, "denoised", Kind::kReal);
      same_shape<float>(denoised, in.radiance, "denoised", "radiance");
    }
    const Geometry geo(altitude_obj, scan_obj, in.rows.n);
    Fits out = make_fits(in.rows);
    {
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      stages_->fit(in.view(), denoised_obj.is_none() ? std::span<const float>() : span_of(denoised),
                   fits_view(out), geo.view());
    }
    return out;
  }

  // The time of `repeats` calls of the C++ fit alone on these rows (the
  // binding's benchmark, bench/python_binding.py): the same call as fit()
  // with the arrays already converted and the results allocated.
  double time_fit(const py::object& first, const py::object& denoised_obj,
                  const py::object& altitude_obj, int repeats) {
    if (!stages_->has_fit())
      throw py::value_error("fit: the fit stage is not among this Channel's stages");
    if (repeats < 1) throw py::value_error("repeats: must be >= 1");
    const Input in(*this, first, py::none(), py::none(), py::none(), py::none(), "fit");
    const auto denoised = take<float>(denoised_obj, "denoised", Kind::kReal);
    same_shape<float>(denoised, in.radiance, "denoised", "radiance");
    const Geometry geo(altitude_obj, py::none(), in.rows.n);
    Fits out = make_fits(in.rows);
    const ep::FitRows view = fits_view(out);
    py::gil_scoped_release release;
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < repeats; ++k) stages_->fit(in.view(), span_of(denoised), view, geo.view());
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
  }

  // calibrate, denoise and fit in one pass, as `exospec run` does.
  py::tuple process(const py::object& counts_obj, const py::object& exposure_obj,
                    const py::object& temperature_obj, const py::object& altitude_obj,
                    const py::object& scan_obj) {
    const std::size_t P = stages_->pixels();
    const auto counts = take<std::uint32_t>(counts_obj, "counts", Kind::kCount);
    const Rows r = rows_of(counts, "counts", P);
    const auto exposure = per_row(exposure_obj, "exposure_s", r.n);
    const auto temperature = per_row(temperature_obj, "temperature_c", r.n);
    const Geometry geo(altitude_obj, scan_obj, r.n);
    auto radiance = shaped<float>(r, P), variance = shaped<float>(r, P);
    auto quality = shaped<std::uint8_t>(r, P);
    const bool model = stages_->needs_count_model();
    py::array_t<double, py::array::c_style> scale, offset;
    if (model) {
      scale = shaped<double>(r, P);
      offset = shaped<double>(r, P);
    }
    py::array_t<float, py::array::c_style> dr, dv;
    if (stages_->has_denoise()) {
      dr = shaped<float>(r, P);
      dv = shaped<float>(r, P);
    }
    Fits fits;
    if (stages_->has_fit()) fits = make_fits(r);
    {
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      const ep::DenoisedRows den = stages_->has_denoise()
                                       ? ep::DenoisedRows{mutable_span(dr), mutable_span(dv)}
                                       : ep::DenoisedRows{};
      stages_->process(span_of(counts), span_of(exposure), span_of(temperature),
                       {mutable_span(radiance), mutable_span(variance), mutable_span(quality),
                        model ? mutable_span(scale) : std::span<double>(),
                        model ? mutable_span(offset) : std::span<double>()},
                       den, stages_->has_fit() ? fits_view(fits) : ep::FitRows{}, geo.view());
    }
    Calibrated c{radiance, variance, quality, model ? py::object(scale) : py::none(),
                 model ? py::object(offset) : py::none()};
    return py::make_tuple(c, stages_->has_denoise() ? py::cast(Denoised{dr, dv}) : py::none(),
                          stages_->has_fit() ? py::cast(fits) : py::none());
  }

 private:
  // Altitudes and scans of the rows (optional).
  struct Geometry {
    py::array_t<double, py::array::c_style> altitude;
    py::array_t<std::int64_t, py::array::c_style> scan;
    Geometry(const py::object& alt, const py::object& sc, std::size_t n) {
      if (!alt.is_none()) altitude = per_row(alt, "altitude_km", n);
      if (!sc.is_none()) {
        scan = take<std::int64_t>(sc, "scan", Kind::kIndex);
        if (scan.ndim() != 1 || static_cast<std::size_t>(scan.shape(0)) != n) {
          throw py::value_error("scan: expected one scan number per spectrum (" +
                                std::to_string(n) + ")");
        }
      }
    }
    ep::RowGeometry view() const {
      ep::RowGeometry g;
      if (altitude) g.altitude_km = span_of(altitude);
      if (scan) g.scan = span_of(scan);
      return g;
    }
  };

  // Calibrated rows given to denoise() or fit(): a Calibrated, or arrays.
  struct Input {
    py::array_t<float, py::array::c_style> radiance, variance;
    py::array_t<std::uint8_t, py::array::c_style> quality;
    py::array_t<double, py::array::c_style> scale, offset;
    Rows rows;
    Input(const Channel& ch, const py::object& first, py::object variance_obj,
          py::object quality_obj, py::object scale_obj, py::object offset_obj, const char* what) {
      py::object radiance_obj = first;
      if (py::isinstance<Calibrated>(first)) {
        const auto& c = first.cast<const Calibrated&>();
        radiance_obj = c.radiance;
        if (variance_obj.is_none()) variance_obj = c.variance;
        if (quality_obj.is_none()) quality_obj = c.quality;
        if (scale_obj.is_none()) scale_obj = c.scale;
        if (offset_obj.is_none()) offset_obj = c.offset;
      }
      if (variance_obj.is_none() || quality_obj.is_none()) {
        throw py::type_error(
            std::string(what) +
            ": give a Calibrated (exospec.calibrate's result) or radiance, variance and quality");
      }
      const std::size_t P = ch.stages_->pixels();
      radiance = take<float>(radiance_obj, "radiance", Kind::kReal);
      rows = rows_of(radiance, "radiance", P);
      variance = take<float>(variance_obj, "variance", Kind::kReal);
      same_shape<float>(variance, radiance, "variance", "radiance");
      quality = take<std::uint8_t>(quality_obj, "quality", Kind::kFlag);
      same_shape<std::uint8_t>(quality, radiance, "quality", "radiance");
      if (scale_obj.is_none() != offset_obj.is_none())
        throw py::value_error("scale and offset: give both or neither");
      if (!scale_obj.is_none()) {
        scale = take<double>(scale_obj, "scale", Kind::kReal);
        offset = take<double>(offset_obj, "offset", Kind::kReal);
        same_shape<double>(scale, radiance, "scale", "radiance");
        same_shape<double>(offset, radiance, "offset", "radiance");
      } else if (std::string(what) == "denoise" &&
                 ch.config_.denoise.at(ch.stages_->channel()).method ==
                     ep::DenoiseMethod::kAnscombe) {
        // (The fit without a count model weights by the variance alone.)
        throw py::value_error(
            "denoise: the anscombe method needs the count model (scale and offset of calibrate())");
      }
      // A usable pixel (quality 0) needs a value: NaN there is an error of
      // the caller, not a result.
      const float* rv = radiance.data();
      const float* vv = variance.data();
      const std::uint8_t* q = quality.data();
      for (py::ssize_t i = 0; i < radiance.size(); ++i) {
        if (q[i] == 0 && !(std::isfinite(rv[i]) && std::isfinite(vv[i]) && vv[i] > 0.0f)) {
          const auto p = static_cast<std::size_t>(i) % P, row = static_cast<std::size_t>(i) / P;
          throw py::value_error(std::string(std::isfinite(rv[i]) ? "variance" : "radiance") +
                                ": not a finite value (variance > 0) at spectrum " +
                                std::to_string(row) + ", pixel " + std::to_string(p) +
                                ", whose quality is 0 (flag unusable pixels in quality)");
        }
      }
    }
    ep::CalibratedInput view() const {
      return {span_of(radiance), span_of(variance), span_of(quality),
              scale ? span_of(scale) : std::span<const double>(),
              offset ? span_of(offset) : std::span<const double>()};
    }
  };

  Fits make_fits(const Rows& r) const {
    const std::size_t L = stages_->lines();
    Fits f;
    f.brightness = shaped<double>(r, L);
    f.brightness_sigma = shaped<double>(r, L);
    f.center_nm = shaped<double>(r, L);
    f.fwhm_nm = shaped<double>(r, L);
    f.chi2_reduced = shaped<float>(r, L);
    f.status = shaped<std::uint8_t>(r, L);
    f.line_names = line_names();
    std::vector<double> wl;
    for (const auto& l : stages_->line_specs()) wl.push_back(l.wavelength_nm);
    f.line_wavelength_nm = array_of(wl);
    return f;
  }
  static ep::FitRows fits_view(Fits& f) {
    auto d = [](py::object& o) {
      auto a = o.cast<py::array_t<double, py::array::c_style>>();
      return std::span<double>(a.mutable_data(), static_cast<std::size_t>(a.size()));
    };
    auto chi = f.chi2_reduced.cast<py::array_t<float, py::array::c_style>>();
    auto st = f.status.cast<py::array_t<std::uint8_t, py::array::c_style>>();
    return {d(f.brightness),
            d(f.brightness_sigma),
            d(f.center_nm),
            d(f.fwhm_nm),
            std::span<float>(chi.mutable_data(), static_cast<std::size_t>(chi.size())),
            std::span<std::uint8_t>(st.mutable_data(), static_cast<std::size_t>(st.size()))};
  }

  ep::RunConfig config_;
  std::unique_ptr<ep::ChannelStages> stages_;
  std::mutex mutex_;  // ChannelStages: one call at a time
};

// ---------------------------------------------------------------- profile

Profiles profile(const py::object& altitude_obj, py::object brightness_obj, py::object sigma_obj,
                 py::object status_obj, const py::object& lines_obj, const std::string& channel,
                 const py::object& config_obj, const py::object& scan_obj, int threads) {
  ep::RunConfig config = run_config_of(config_obj);
  if (threads < 0) throw py::value_error("threads: must be >= 0 (0: all cores)");
  const auto altitude = take<double>(altitude_obj, "altitude_km", Kind::kReal);
  if (altitude.ndim() != 1)
    throw py::value_error("altitude_km: expected one altitude per spectrum (1-D)");
  const std::size_t n = static_cast<std::size_t>(altitude.shape(0));
  if (n == 0) throw py::value_error("altitude_km: no spectra");
  std::vector<std::string> names;
  if (py::isinstance<Fits>(brightness_obj)) {
    const auto& f = brightness_obj.cast<const Fits&>();
    names = f.line_names;
    if (sigma_obj.is_none()) sigma_obj = f.brightness_sigma;
    if (status_obj.is_none()) status_obj = f.status;
    brightness_obj = f.brightness;
  }
  if (!lines_obj.is_none()) {
    names.clear();
    for (const auto& l : lines_obj) {
      names.push_back(py::isinstance<py::str>(l) ? l.cast<std::string>()
                                                 : l.cast<ek::FitLineSpec>().name);
    }
  }
  if (sigma_obj.is_none())
    throw py::type_error("brightness_sigma: give the fits' sigmas (or a Fits as brightness)");
  const std::size_t L = names.size();
  if (L == 0) throw py::value_error("lines: no line names (give lines, or a Fits as brightness)");
  auto matrix = [&](const py::object& o, const char* name) {
    auto a = take<double>(o, name, Kind::kReal);
    if (L == 1 && a.ndim() == 1) a = a.reshape({static_cast<py::ssize_t>(n), py::ssize_t{1}});
    if (a.ndim() != 2 || static_cast<std::size_t>(a.shape(0)) != n ||
        static_cast<std::size_t>(a.shape(1)) != L) {
      throw py::value_error(std::string(name) + ": expected spectra x lines (" + std::to_string(n) +
                            " x " + std::to_string(L) + "), got shape " +
                            py::str(a.attr("shape")).cast<std::string>());
    }
    return a;
  };
  const auto brightness = matrix(brightness_obj, "brightness"),
             sigma = matrix(sigma_obj, "brightness_sigma");
  py::array_t<std::uint8_t, py::array::c_style> status;
  if (status_obj.is_none()) {
    status = py::array_t<std::uint8_t, py::array::c_style>(
        std::vector<py::ssize_t>{static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(L)});
    std::fill_n(status.mutable_data(), n * L, std::uint8_t{0});
  } else {
    status = take<std::uint8_t>(status_obj, "status", Kind::kFlag);
    if (L == 1 && status.ndim() == 1)
      status = status.reshape({static_cast<py::ssize_t>(n), py::ssize_t{1}});
    same_shape<double>(status, brightness, "status", "brightness");
  }
  std::vector<ek::Scan> scans;
  if (scan_obj.is_none()) {
    scans = ek::find_scans(span_of(altitude), config.scan_mode, config.scan_length);
  } else {
    const auto scan = take<std::int64_t>(scan_obj, "scan", Kind::kIndex);
    if (scan.ndim() != 1 || static_cast<std::size_t>(scan.shape(0)) != n) {
      throw py::value_error("scan: expected one scan number per spectrum (" + std::to_string(n) +
                            ")");
    }
    const std::int64_t* s = scan.data();
    for (std::size_t i = 0; i < n; ++i) {
      if (i == 0 || s[i] != s[i - 1]) {
        scans.push_back({static_cast<std::int64_t>(i), 0});
      }
      ++scans.back().count;
    }
  }
  std::optional<ep::ChannelProfiles> p;
  {
    py::gil_scoped_release release;
    p.emplace(config, channel, names, scans, threads);
    p->add(0, span_of(altitude), span_of(brightness), span_of(sigma), span_of(status));
  }
  const std::size_t S = scans.size();
  Profiles out;
  out.line_names = names;
  out.mass_amu = array_of(p->masses_amu());
  std::vector<std::int64_t> first(S), count(S);
  for (std::size_t s = 0; s < S; ++s) {
    first[s] = scans[s].first;
    count[s] = scans[s].count;
  }
  out.scan_first = array_of(first);
  out.scan_count = array_of(count);
  auto put = [&](double ek::ProfileResult::*field) {
    py::array_t<double, py::array::c_style> a(
        std::vector<py::ssize_t>{static_cast<py::ssize_t>(S), static_cast<py::ssize_t>(L)});
    for (std::size_t i = 0; i < S * L; ++i) a.mutable_data()[i] = p->result(i / L, i % L).*field;
    return py::object(a);
  };
  out.surface_brightness_R = put(&ek::ProfileResult::surface_brightness_R);
  out.surface_brightness_R_sigma = put(&ek::ProfileResult::surface_brightness_sigma);
  out.temperature_K = put(&ek::ProfileResult::temperature_K);
  out.temperature_K_sigma = put(&ek::ProfileResult::temperature_sigma);
  out.background_R = put(&ek::ProfileResult::background_R);
  out.background_R_sigma = put(&ek::ProfileResult::background_sigma);
  out.scale_height_km = put(&ek::ProfileResult::scale_height_km);
  out.scale_height_km_sigma = put(&ek::ProfileResult::scale_height_sigma);
  out.temperature_background_correlation =
      put(&ek::ProfileResult::temperature_background_correlation);
  const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(S), static_cast<py::ssize_t>(L)};
  py::array_t<float> chi2(shape);
  py::array_t<std::uint8_t> st(shape);
  py::array_t<std::int64_t> spectra(shape);
  for (std::size_t i = 0; i < S * L; ++i) {
    const auto& r = p->result(i / L, i % L);
    chi2.mutable_data()[i] = static_cast<float>(r.chi2_reduced);
    st.mutable_data()[i] = static_cast<std::uint8_t>(r.status);
    spectra.mutable_data()[i] = static_cast<std::int64_t>(r.spectra);
  }
  out.chi2_reduced = chi2;
  out.status = st;
  out.spectra = spectra;
  return out;
}

// ---------------------------------------------------------------- files

py::dict run_summary(const ep::RunSummary& s, const std::string& in, const std::string& out) {
  static constexpr const char* kBits[] = {
      "bad_pixel", "saturated", "invalid_exposure", "invalid_temperature", "particle_hit", "bit5",
      "bit6",      "bit7"};
  static constexpr const char* kFit[] = {"converged", "max_iterations", "stalled",
                                         "singular",  "too_few_pixels", "invalid_spectrum",
                                         "not_finite"};
  static constexpr const char* kProfile[] = {
      "converged",         "not_detected", "temperature_at_bound", "too_few_spectra",
      "no_altitude_range", "singular",     "unknown_mass"};
  py::dict d;
  d["input"] = in;
  d["output"] = out;
  d["spectra"] = s.spectra;
  d["channels"] = s.channels;
  py::dict sec;
  sec["total"] = s.seconds;
  sec["read"] = s.read_seconds;
  sec["decode"] = s.decode_seconds;
  sec["calibrate"] = s.calibrate_seconds;
  sec["denoise"] = s.denoise_seconds;
  sec["fit"] = s.fit_seconds;
  sec["write"] = s.write_seconds;
  sec["hash"] = s.hash_seconds;
  d["spectra_per_second"] = s.seconds > 0 ? static_cast<double>(s.spectra) / s.seconds : 0.0;
  py::dict q;
  for (std::size_t b = 0; b < s.quality_bit_pixels.size(); ++b) {
    if (b < 5 || s.quality_bit_pixels[b] > 0) q[kBits[b]] = s.quality_bit_pixels[b];
  }
  d["flagged_pixels"] = q;
  py::dict f;
  for (std::size_t st = 0; st < s.fit_status.size(); ++st) {
    f[st < std::size(kFit) ? kFit[st] : std::to_string(st).c_str()] = s.fit_status[st];
  }
  d["fit_status"] = f;
  if (!s.profile_status.empty()) {
    py::dict p;
    for (std::size_t st = 0; st < s.profile_status.size(); ++st) {
      p[st < std::size(kProfile) ? kProfile[st] : "other"] = s.profile_status[st];
    }
    d["scans"] = s.scans;
    d["profile_status"] = p;
    sec["profile"] = s.profile_seconds;
  }
  d["seconds"] = sec;
  return d;
}

// A progress callback for run() and simulate(): `progress(done, total)` in
// Python (if given), and Ctrl-C turned into an unwinding of the library.
std::function<void(std::uint64_t, std::uint64_t)> progress_of(const py::object& progress) {
  return [progress](std::uint64_t done, std::uint64_t total) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw PythonSignal();
    if (!progress.is_none()) {
      try {
        progress(done, total);
      } catch (py::error_already_set& e) {
        e.restore();  // raised again once the run has unwound
        throw PythonSignal();
      }
    }
  };
}

py::dict run(const py::object& input, const py::object& output, const py::object& config_obj,
             int threads, const py::object& stages, const py::object& products,
             const py::object& channels, bool overwrite, const py::object& progress) {
  ep::RunConfig config = run_config_of(config_obj);
  if (!stages.is_none()) config.stages = ep::parse_stages(join(names_of(stages)), "stages");
  if (!channels.is_none()) {
    config.channels = names_of(channels);
    config.source = "channels";
  }
  if (!products.is_none()) {
    config.products = ep::parse_products(join(names_of(products)), "products");
    config.source = "products";
  }
  if (threads < 0) throw py::value_error("threads: must be >= 0 (0: all cores)");
  config.validate();
  const fs::path in = *optional_path(input), out = *optional_path(output);
  const auto callback = progress_of(progress);
  ep::RunSummary s;
  try {
    py::gil_scoped_release release;
    s = ep::run(config, in, out, overwrite, threads, callback);
  } catch (const PythonSignal&) {
    throw py::error_already_set();
  }
  return run_summary(s, in.string(), out.string());
}

py::dict simulate(const py::object& output, const py::object& config_obj, const py::object& spectra,
                  const py::object& seed, const py::object& preset, const py::object& channels,
                  int threads, bool overwrite, const py::object& progress) {
  ep::SimulationConfig config = ep::load_simulation_config(optional_path(config_obj));
  bool overridden = false;
  if (!preset.is_none()) {
    config.preset = ep::parse_preset(preset.cast<std::string>());
    overridden = true;
  }
  if (!channels.is_none()) {
    config.channels = names_of(channels);
    overridden = true;
  }
  if (!spectra.is_none()) {
    const auto n = spectra.cast<std::int64_t>();
    if (n < 1) throw py::value_error("spectra: must be >= 1");
    config.spectra = static_cast<std::uint64_t>(n);
    overridden = true;
  }
  if (!seed.is_none()) {
    const auto s = seed.cast<std::int64_t>();
    if (s < 0) throw py::value_error("seed: must be >= 0");
    config.seed = static_cast<std::uint64_t>(s);
    overridden = true;
  }
  if (overridden) config.source = "arguments";
  if (threads < 0) throw py::value_error("threads: must be >= 0 (0: all cores)");
  const auto catalogue = ep::default_catalogue();
  const fs::path out = *optional_path(output);
  const auto callback = progress_of(progress);
  ep::SimulationSummary s;
  try {
    py::gil_scoped_release release;
    s = ep::simulate(config, catalogue, out, overwrite, threads, callback);
  } catch (const PythonSignal&) {
    throw py::error_already_set();
  }
  py::dict d;
  d["output"] = out.string();
  d["spectra"] = s.spectra;
  d["channels"] = s.channels;
  d["preset"] = std::string(ep::preset_name(config.preset));
  d["seed"] = config.seed;
  d["seconds"] = s.seconds;
  return d;
}

// `exospec info --json`, as a dict.
py::list pair(double a, double b) {
  py::list l;
  l.append(a);
  l.append(b);
  return l;
}

py::dict info(const py::object& path) {
  static constexpr const char* kFit[] = {"converged", "max_iterations", "stalled",
                                         "singular",  "too_few_pixels", "invalid_spectrum",
                                         "not_finite"};
  ep::FileInfo fi;
  {
    const fs::path p = *optional_path(path);
    py::gil_scoped_release release;
    fi = ep::inspect(p);
  }
  py::dict j;
  j["file"] = fi.path;
  j["kind"] = fi.kind;
  j["schema_version"] = fi.schema_version;
  j["spectra"] = fi.spectra;
  j["time_s"] = pair(fi.time_min_s, fi.time_max_s);
  j["time_utc"] = std::vector<std::string>{exospec::format_utc(fi.time_min_s),
                                           exospec::format_utc(fi.time_max_s)};
  j["tangent_altitude_km"] = pair(fi.altitude_min_km, fi.altitude_max_km);
  j["groups"] = fi.groups;
  py::dict channels;
  for (const auto& c : fi.channels) {
    py::dict cj;
    if (fi.kind == "output") {
      cj["products"] = c.products;
      if (c.pixels > 0) cj["pixels"] = c.pixels;
      if (c.wavelength_max_nm > c.wavelength_min_nm) {
        cj["wavelength_nm"] = pair(c.wavelength_min_nm, c.wavelength_max_nm);
      }
      if (!c.fit_lines.empty()) {
        cj["fit_lines"] = c.fit_lines;
        py::dict f;
        for (std::size_t st = 0; st < c.fit_status.size(); ++st) {
          if (c.fit_status[st] > 0)
            f[st < std::size(kFit) ? kFit[st] : std::to_string(st).c_str()] = c.fit_status[st];
        }
        cj["fit_status"] = f;
      }
    } else {
      cj["pixels"] = c.pixels;
      cj["wavelength_nm"] = pair(c.wavelength_min_nm, c.wavelength_max_nm);
      cj["wavelength_coeffs"] = c.wavelength_coeffs;
      cj["bad_pixels"] = c.bad_pixels;
      cj["dead_time_s"] = c.dead_time_s;
      cj["exposure_s"] = pair(c.exposure_min_s, c.exposure_max_s);
      cj["detector_temperature_degC"] = pair(c.temperature_min_c, c.temperature_max_c);
      cj["truth_lines"] = c.truth_lines;
    }
    channels[c.name.c_str()] = cj;
  }
  j["channels"] = channels;
  if (fi.kind == "output") {
    j["software_version"] = fi.software_version;
    j["input_file"] = fi.input_file;
    j["input_sha256"] = fi.input_sha256;
    j["created_utc"] = fi.created_utc;
  }
  return j;
}

// Rows [first, first + count) of an input file's channel: counts,
// exposure, detector temperature, and the geometry.
py::dict read_input(const py::object& path, const std::string& channel, std::int64_t first,
                    const py::object& count_obj) {
  const auto in = eio::InputFile::open(*optional_path(path));
  if (!in.has_channel(channel)) {
    throw exospec::FileError(in.path(), "/raw/" + channel,
                             "channel " + channel + " is not in the file");
  }
  const std::uint64_t N = in.spectra(), P = in.pixels(channel);
  if (first < 0 || static_cast<std::uint64_t>(first) > N) {
    throw py::value_error("first: " + std::to_string(first) + " is outside 0.." +
                          std::to_string(N));
  }
  std::uint64_t count = N - static_cast<std::uint64_t>(first);
  if (!count_obj.is_none()) {
    const auto c = count_obj.cast<std::int64_t>();
    if (c < 0) throw py::value_error("count: must be >= 0");
    count = std::min<std::uint64_t>(count, static_cast<std::uint64_t>(c));
  }
  const auto r0 = static_cast<std::uint64_t>(first);
  py::array_t<std::uint32_t> counts(
      std::vector<py::ssize_t>{static_cast<py::ssize_t>(count), static_cast<py::ssize_t>(P)});
  py::array_t<double> exposure(static_cast<py::ssize_t>(count)),
      temperature(static_cast<py::ssize_t>(count)), time(static_cast<py::ssize_t>(count)),
      altitude(static_cast<py::ssize_t>(count));
  eio::ChannelCalibration cal;
  {
    std::span<std::uint32_t> c(counts.mutable_data(), count * P);
    std::span<double> e(exposure.mutable_data(), count), t(temperature.mutable_data(), count),
        tm(time.mutable_data(), count), a(altitude.mutable_data(), count);
    py::gil_scoped_release release;
    cal = in.read_calibration(channel);
    if (count > 0) {
      in.read_counts(channel, r0, c);
      in.read_exposure(channel, r0, e);
      std::vector<float> tf(count);
      in.read_temperature(channel, r0, tf);
      std::copy(tf.begin(), tf.end(), t.begin());
      in.read_time(r0, tm);
      in.read_altitude(r0, a);
    }
  }
  py::dict d;
  d["counts"] = counts;
  d["exposure_s"] = exposure;
  d["temperature_c"] = temperature;
  d["time_s"] = time;
  d["altitude_km"] = altitude;
  d["calibration"] = cal;
  return d;
}

// ---------------------------------------------------------------- models

// Each line's radiance (L x P, R/nm) at its fitted centre, FWHM and brightness.
py::array_t<double> line_model(const py::object& wavelength, std::size_t P,
                               const py::object& lines_obj, const py::object& brightness_obj,
                               const py::object& center_obj, const py::object& fwhm_obj,
                               const std::string& channel) {
  eio::ChannelCalibration cal;
  if (py::isinstance<eio::ChannelCalibration>(wavelength)) {
    cal = wavelength.cast<eio::ChannelCalibration>();
    if (P == 0) P = cal.dark_rate.size();
  } else {
    cal.wavelength_coeffs = vector_of(wavelength, "wavelength_coeffs");
  }
  if (P == 0) throw py::value_error("pixels: give the number of pixels (or a Calibration)");
  std::vector<ek::FitLineSpec> lines;
  for (const auto& l : lines_obj) lines.push_back(line_from(l, channel));
  const std::size_t L = lines.size();
  const auto b = vector_of(brightness_obj, "brightness"), c = vector_of(center_obj, "center_nm"),
             w = vector_of(fwhm_obj, "fwhm_nm");
  if (b.size() != L || c.size() != L || w.size() != L) {
    throw py::value_error("brightness, center_nm, fwhm_nm: expected one value per line (" +
                          std::to_string(L) + ")");
  }
  if (cal.wavelength_coeffs.empty()) throw py::value_error("calibration: no wavelength_coeffs");
  std::vector<double> edges(P + 1);
  ek::pixel_edges(cal.wavelength_coeffs, edges);
  if (edges.front() > edges.back()) std::reverse(edges.begin(), edges.end());
  const bool reversed = ek::eval_polynomial(cal.wavelength_coeffs, 0.0) >
                        ek::eval_polynomial(cal.wavelength_coeffs, 1.0);
  py::array_t<double> out(
      std::vector<py::ssize_t>{static_cast<py::ssize_t>(L), static_cast<py::ssize_t>(P)});
  std::fill_n(out.mutable_data(), L * P, 0.0);
  for (std::size_t j = 0; j < L; ++j) {
    if (!std::isfinite(b[j]) || !std::isfinite(c[j]) || !(w[j] > 0.0)) continue;
    check_line(lines[j]);
    std::vector<ek::LineComponent> comps = lines[j].components;
    for (auto& k : comps) k.wavelength_nm += c[j] - lines[j].wavelength_nm;
    const auto prof = ek::make_line_profile(edges, comps, w[j]);
    std::vector<double> row(P, 0.0);
    ek::add_line(prof, b[j], row);
    double* o = out.mutable_data() + j * P;
    for (std::size_t p = 0; p < P; ++p) o[p] = reversed ? row[P - 1 - p] : row[p];
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "exospec's stages on numpy arrays (the compiled part of the exospec package).";
  m.attr("__version__") = exospec::kVersion;
  m.attr("SCHEMA_VERSION") = exospec::kSchemaVersion;
  py::register_exception_translator(&translate);

  py::class_<ek::LineComponent>(m, "LineComponent",
                                "One component of a line: rest wavelength (nm) and share of B.")
      .def(py::init([](double wavelength_nm, double fraction) {
             return ek::LineComponent{wavelength_nm, fraction};
           }),
           py::arg("wavelength_nm"), py::arg("fraction") = 1.0)
      .def_readwrite("wavelength_nm", &ek::LineComponent::wavelength_nm, "rest wavelength (nm)")
      .def_readwrite("fraction", &ek::LineComponent::fraction,
                     "share of the line's brightness (sums to 1)")
      .def("__repr__", [](const ek::LineComponent& c) {
        return "LineComponent(wavelength_nm=" +
               py::repr(py::float_(c.wavelength_nm)).cast<std::string>() +
               ", fraction=" + py::repr(py::float_(c.fraction)).cast<std::string>() + ")";
      });

  py::class_<ek::FitLineSpec>(
      m, "Line",
      "An emission line to fit: its name, the wavelength reported as its centre (nm; the "
      "strongest component) and its components (a multiplet is one line with fixed "
      "separations and ratios). Line('X', 130.0) is a single line.")
      .def(py::init([](std::string name, double wavelength_nm,
                       std::optional<std::vector<ek::LineComponent>> comps) {
             ek::FitLineSpec l{std::move(name), wavelength_nm, {}};
             l.components = comps ? *comps : std::vector<ek::LineComponent>{{wavelength_nm, 1.0}};
             check_line(l);
             return l;
           }),
           py::arg("name"), py::arg("wavelength_nm"), py::arg("components") = py::none())
      .def_readonly("name", &ek::FitLineSpec::name)
      .def_readonly("wavelength_nm", &ek::FitLineSpec::wavelength_nm, "reported centre (nm)")
      .def_readonly("components", &ek::FitLineSpec::components)
      .def("__repr__", [](const ek::FitLineSpec& l) {
        return "Line(" + py::repr(py::str(l.name)).cast<std::string>() + ", " +
               py::repr(py::float_(l.wavelength_nm)).cast<std::string>() + ", " +
               std::to_string(l.components.size()) + " component" +
               (l.components.size() == 1 ? "" : "s") + ")";
      });

  m.def(
      "catalogue",
      [](const std::string& channel) {
        std::vector<ek::FitLineSpec> out;
        const ep::LineCatalogue catalogue = ep::default_catalogue();  // (outlives the loop)
        for (const auto& l : catalogue.channel(channel))
          out.push_back({l.name, l.wavelength_nm, l.components});
        return out;
      },
      py::arg("channel"),
      "The lines of a channel ('euv' or 'fuv') in the catalogue shipped with exospec "
      "(data/lines.toml), in the "
      "order of the fit's output.");

  py::class_<eio::ChannelCalibration>(
      m, "Calibration",
      "A channel's calibration tables (the input file's /calibration/<ch>, shared/SCHEMA.md): P "
      "values each of "
      "dark_rate (count/s at the reference temperature), flat (1), sensitivity (count/s per R/nm) "
      "and bad_pixel "
      "(0/1), the wavelength polynomial (nm, lambda(p) = sum_k c_k p^k), the dead time (s), the "
      "dark's reference "
      "temperature (degC) and temperature coefficient (1/degC). Checked when a Channel is made.")
      .def(py::init([](const py::object& wavelength_coeffs, const py::object& dark_rate,
                       const py::object& flat, const py::object& sensitivity,
                       const py::object& bad_pixel, double dead_time_s,
                       double dark_reference_temperature, double dark_temperature_coeff) {
             eio::ChannelCalibration c;
             c.wavelength_coeffs = vector_of(wavelength_coeffs, "wavelength_coeffs");
             c.dark_rate = vector_of(dark_rate, "dark_rate");
             c.flat = vector_of(flat, "flat");
             c.sensitivity = vector_of(sensitivity, "sensitivity");
             const auto bp = take<std::uint8_t>(bad_pixel, "bad_pixel", Kind::kFlag);
             c.bad_pixel.assign(bp.data(), bp.data() + bp.size());
             c.dead_time_s = dead_time_s;
             c.dark_reference_temperature = dark_reference_temperature;
             c.dark_temperature_coeff = dark_temperature_coeff;
             return c;
           }),
           py::kw_only(), py::arg("wavelength_coeffs"), py::arg("dark_rate"), py::arg("flat"),
           py::arg("sensitivity"), py::arg("bad_pixel"), py::arg("dead_time_s") = 0.0,
           py::arg("dark_reference_temperature") = 0.0, py::arg("dark_temperature_coeff") = 0.0)
      .def_property_readonly("pixels",
                             [](const eio::ChannelCalibration& c) { return c.dark_rate.size(); })
      .def_property_readonly(
          "wavelength_coeffs",
          [](const eio::ChannelCalibration& c) { return array_of(c.wavelength_coeffs); })
      .def_property_readonly("dark_rate",
                             [](const eio::ChannelCalibration& c) { return array_of(c.dark_rate); })
      .def_property_readonly("flat",
                             [](const eio::ChannelCalibration& c) { return array_of(c.flat); })
      .def_property_readonly(
          "sensitivity", [](const eio::ChannelCalibration& c) { return array_of(c.sensitivity); })
      .def_property_readonly("bad_pixel",
                             [](const eio::ChannelCalibration& c) { return array_of(c.bad_pixel); })
      .def_readonly("dead_time_s", &eio::ChannelCalibration::dead_time_s)
      .def_readonly("dark_reference_temperature",
                    &eio::ChannelCalibration::dark_reference_temperature)
      .def_readonly("dark_temperature_coeff", &eio::ChannelCalibration::dark_temperature_coeff)
      .def_property_readonly(
          "wavelength_nm",
          [](const eio::ChannelCalibration& c) {
            std::vector<double> w(c.dark_rate.size());
            ek::pixel_wavelengths(c.wavelength_coeffs, w);
            return array_of(w);
          },
          "pixel-centre wavelengths (nm)")
      .def("__repr__", [](const eio::ChannelCalibration& c) {
        return "Calibration(" + std::to_string(c.dark_rate.size()) + " pixels)";
      });

  m.def(
      "read_calibration",
      [](const py::object& path, const std::string& channel) {
        const auto in = eio::InputFile::open(*optional_path(path));
        if (!in.has_channel(channel)) {
          throw exospec::FileError(in.path(), "/raw/" + channel,
                                   "channel " + channel + " is not in the file");
        }
        return in.read_calibration(channel);
      },
      py::arg("path"), py::arg("channel"),
      "The calibration of a channel of an exospec input file, checked as `exospec run` checks it.");
  m.def("read_input", &read_input, py::arg("path"), py::arg("channel"), py::arg("first") = 0,
        py::arg("count") = py::none(),
        "Spectra [first, first + count) of an input file's channel: a dict of counts (N x P, "
        "uint32), exposure_s "
        "(s), temperature_c (detector, degC), time_s (s since J2000), altitude_km (tangent "
        "altitude, km) and "
        "calibration (Calibration).");

  py::class_<Calibrated>(
      m, "Calibrated",
      "Calibrated spectra: radiance (R/nm, float32), variance ((R/nm)^2, float32), quality "
      "(uint8 bit flags, 0 = good; docs/CALIBRATION.md), and the count model of each pixel "
      "(expected counts = radiance x scale + offset; float64, or None when the configuration "
      "does not use it).")
      .def_readonly("radiance", &Calibrated::radiance)
      .def_readonly("variance", &Calibrated::variance)
      .def_readonly("quality", &Calibrated::quality)
      .def_readonly("scale", &Calibrated::scale)
      .def_readonly("offset", &Calibrated::offset)
      .def("__repr__", [](const Calibrated& c) {
        return "Calibrated(radiance shape " +
               py::str(c.radiance.attr("shape")).cast<std::string>() + ")";
      });
  py::class_<Denoised>(m, "Denoised",
                       "Denoised spectra: radiance (R/nm) and variance ((R/nm)^2), float32.")
      .def_readonly("radiance", &Denoised::radiance)
      .def_readonly("variance", &Denoised::variance)
      .def("__repr__", [](const Denoised& d) {
        return "Denoised(radiance shape " + py::str(d.radiance.attr("shape")).cast<std::string>() +
               ")";
      });
  py::class_<Fits>(
      m, "Fits",
      "Line fits, spectra x lines (one row for one spectrum), in line_names order (the /fit/<ch> "
      "datasets of shared/SCHEMA.md): brightness (R), brightness_sigma (R, 1-sigma), center_nm and "
      "fwhm_nm (nm), chi2_reduced (float32) and status (uint8: 0 "
      "converged, 1 max iterations, 2 stalled, 3 singular, 4 too few pixels, 5 invalid spectrum, 6 "
      "not finite).")
      .def_readonly("brightness", &Fits::brightness)
      .def_readonly("brightness_sigma", &Fits::brightness_sigma)
      .def_readonly("line_wavelength_nm", &Fits::line_wavelength_nm)
      .def_readonly("center_nm", &Fits::center_nm)
      .def_readonly("fwhm_nm", &Fits::fwhm_nm)
      .def_readonly("chi2_reduced", &Fits::chi2_reduced)
      .def_readonly("status", &Fits::status)
      .def_readonly("line_names", &Fits::line_names)
      .def("__repr__", [](const Fits& f) {
        return "Fits(" + std::to_string(f.line_names.size()) + " lines, brightness shape " +
               py::str(f.brightness.attr("shape")).cast<std::string>() + ")";
      });
  auto prof = py::class_<Profiles>(m, "Profiles",
                                   "Limb profiles, scans x lines (the /profile/<ch> datasets of "
                                   "shared/SCHEMA.md): surface_brightness_R (B_s, "
                                   "R), temperature_K (T, K), background_R (B_bg, R), "
                                   "scale_height_km (km), each with its *_sigma, "
                                   "temperature_background_correlation, chi2_reduced, status (0 "
                                   "converged, 1 not detected, 2 T at a bound, 3 "
                                   "too few spectra, 4 no altitude range, 5 singular, 6 unknown "
                                   "mass) and spectra (usable per fit); "
                                   "scan_first and scan_count per scan, mass_amu per line.");
  prof.def_readonly("line_names", &Profiles::line_names);
  for (auto [name, field] : std::initializer_list<std::pair<const char*, py::object Profiles::*>>{
           {"mass_amu", &Profiles::mass_amu},
           {"scan_first", &Profiles::scan_first},
           {"scan_count", &Profiles::scan_count},
           {"surface_brightness_R", &Profiles::surface_brightness_R},
           {"surface_brightness_R_sigma", &Profiles::surface_brightness_R_sigma},
           {"temperature_K", &Profiles::temperature_K},
           {"temperature_K_sigma", &Profiles::temperature_K_sigma},
           {"background_R", &Profiles::background_R},
           {"background_R_sigma", &Profiles::background_R_sigma},
           {"scale_height_km", &Profiles::scale_height_km},
           {"scale_height_km_sigma", &Profiles::scale_height_km_sigma},
           {"temperature_background_correlation", &Profiles::temperature_background_correlation},
           {"chi2_reduced", &Profiles::chi2_reduced},
           {"status", &Profiles::status},
           {"spectra", &Profiles::spectra}}) {
    prof.def_readonly(name, field);
  }
  prof.def("__repr__", [](const Profiles& p) {
    return "Profiles(" + std::to_string(py::len(p.scan_first)) + " scans x " +
           std::to_string(p.line_names.size()) + " lines)";
  });

  py::class_<Channel>(m, "Channel",
                      "The stages of one channel ('euv' or 'fuv') set up once for its calibration, "
                      "to be called on batches of "
                      "spectra: what `exospec run` does to each block of rows, with the same "
                      "configuration (a TOML file of the "
                      "layout of `exospec config --defaults run`, or None for the defaults) and "
                      "the same results to the bit. "
                      "stages: the in-memory stages (calibrate, denoise, fit; default: the "
                      "configuration's). lines: the lines to "
                      "fit (names from exospec.catalogue(channel), or Line objects; default: every "
                      "catalogue line). threads: 0 "
                      "for every core; results do not depend on it. A Channel may be shared "
                      "between Python threads (calls are "
                      "serialised); the GIL is released while it computes.")
      .def(py::init<std::string, const eio::ChannelCalibration&, const py::object&, int,
                    const py::object&, const py::object&>(),
           py::arg("channel"), py::arg("calibration"), py::kw_only(),
           py::arg("config") = py::none(), py::arg("threads") = 0, py::arg("lines") = py::none(),
           py::arg("stages") = py::none())
      .def_property_readonly("channel", [](const Channel& c) { return c.stages().channel(); })
      .def_property_readonly("pixels", [](const Channel& c) { return c.stages().pixels(); })
      .def_property_readonly("threads", [](const Channel& c) { return c.stages().threads(); })
      .def_property_readonly("stages",
                             [](const Channel& c) {
                               std::vector<std::string> v;
                               for (auto s : c.config().stages) v.emplace_back(ep::stage_name(s));
                               return v;
                             })
      .def_property_readonly("line_names", &Channel::line_names)
      .def_property_readonly("lines",
                             [](const Channel& c) {
                               return c.stages().has_fit() ? c.stages().line_specs()
                                                           : std::vector<ek::FitLineSpec>{};
                             })
      .def_property_readonly("calibration",
                             [](const Channel& c) { return c.stages().calibration(); })
      .def_property_readonly(
          "windows",
          [](const Channel& c) {
            py::list out;
            for (const auto& w : c.stages().fit_windows())
              out.append(py::make_tuple(w.first, w.size, w.lines));
            return out;
          },
          "The fit's windows: (first pixel, pixels, indices of the lines fitted together there).")
      .def("calibrate", &Channel::calibrate, py::arg("counts"), py::arg("exposure_s"),
           py::arg("temperature_c"), py::kw_only(), py::arg("altitude_km") = py::none(),
           py::arg("scan") = py::none(),
           "Counts (P or N x P, uint32) to a Calibrated: radiance (R/nm), variance and quality. "
           "exposure_s (s) "
           "and temperature_c (detector, degC): one per spectrum, or one number for all. A "
           "spectrum's variance "
           "pools its neighbouring spectra of the same limb scan: give altitude_km (tangent "
           "altitude, km; scans "
           "found as the configuration's [scans] says) or scan (a scan number per spectrum); with "
           "neither, the "
           "rows are one scan. A NaN exposure or temperature flags its spectrum, as in a file.")
      .def("denoise", &Channel::denoise, py::arg("calibrated"), py::arg("variance") = py::none(),
           py::arg("quality") = py::none(), py::kw_only(), py::arg("scale") = py::none(),
           py::arg("offset") = py::none(),
           "A Calibrated (or radiance, variance and quality arrays) to a Denoised (R/nm), with the "
           "configured "
           "method.")
      .def("fit", &Channel::fit, py::arg("calibrated"), py::arg("variance") = py::none(),
           py::arg("quality") = py::none(), py::kw_only(), py::arg("denoised") = py::none(),
           py::arg("scale") = py::none(), py::arg("offset") = py::none(),
           py::arg("altitude_km") = py::none(), py::arg("scan") = py::none(),
           "A Calibrated (or radiance, variance and quality arrays, with scale and offset for the "
           "count model) to "
           "Fits: brightness (R) with 1-sigma, centre, FWHM, reduced chi2 and status of every "
           "line. denoised (a "
           "Denoised or its radiance) gives the initial shift guesses, as in `exospec run`. The "
           "final sigma takes "
           "its reference from the neighbouring spectra of the scan (altitude_km or scan as for "
           "calibrate).")
      .def("_time_fit", &Channel::time_fit, py::arg("calibrated"), py::arg("denoised"),
           py::arg("altitude_km"), py::arg("repeats") = 1,
           "Seconds per call of the C++ fit alone on these rows (for the binding's benchmark).")
      .def("process", &Channel::process, py::arg("counts"), py::arg("exposure_s"),
           py::arg("temperature_c"), py::kw_only(), py::arg("altitude_km") = py::none(),
           py::arg("scan") = py::none(),
           "calibrate, denoise and fit in one pass over the rows, as `exospec run` does: "
           "(Calibrated, Denoised "
           "or None, Fits or None).")
      .def("__repr__", [](const Channel& c) {
        return "Channel(" + py::repr(py::str(c.stages().channel())).cast<std::string>() + ", " +
               std::to_string(c.stages().pixels()) + " pixels, " +
               std::to_string(c.stages().lines()) + " lines)";
      });

  m.def("profile", &profile, py::arg("altitude_km"), py::arg("brightness"),
        py::arg("brightness_sigma") = py::none(), py::arg("status") = py::none(), py::kw_only(),
        py::arg("lines") = py::none(), py::arg("channel") = "fuv", py::arg("config") = py::none(),
        py::arg("scan") = py::none(), py::arg("threads") = 0,
        "The profile stage: each limb scan's fitted brightness (R, spectra x lines) against "
        "tangent altitude "
        "(km) fitted with the ballistic-exosphere model for B_s, T and B_bg (docs/PROFILE.md), as "
        "`exospec run` "
        "writes /profile. brightness: a Fits (Channel.fit's result), or arrays with "
        "brightness_sigma, status "
        "(None: all converged) and lines (the line names). "
        "Scans: from the altitudes as the configuration's [scans] says, or scan (a number per "
        "spectrum).");
  m.def(
      "profile_shape",
      [](double temperature_K, const py::object& altitude_obj, double mass_amu,
         const py::object& config_obj) {
        const ep::RunConfig config = run_config_of(config_obj);
        const auto alt = take<double>(altitude_obj, "altitude_km", Kind::kReal);
        if (!(mass_amu > 0.0)) throw py::value_error("mass_amu: must be > 0");
        const ek::ProfileFitter f(mass_amu, config.profile.settings);
        py::array_t<double> out(alt.size());
        f.shape(temperature_K, span_of(alt),
                std::span<double>(out.mutable_data(), static_cast<std::size_t>(out.size())));
        return out;
      },
      py::arg("temperature_K"), py::arg("altitude_km"), py::kw_only(), py::arg("mass_amu"),
      py::arg("config") = py::none(),
      "The profile model's shape C(z; T) / C(0; T) at the given tangent altitudes (km) for a "
      "species of mass_amu "
      "at temperature_K: B(z) = B_s shape + B_bg.");
  m.def(
      "line_mass_amu",
      [](const std::string& line, const py::object& config_obj) {
        return ep::line_mass_amu(run_config_of(config_obj), line);
      },
      py::arg("line"), py::kw_only(), py::arg("config") = py::none(),
      "The species mass (amu) the profile stage uses for a line: [profile.mass_amu] of the "
      "configuration, else "
      "the element that starts its name; NaN if neither knows it.");
  m.def("line_model", &line_model, py::arg("wavelength"), py::arg("pixels") = 0, py::kw_only(),
        py::arg("lines"), py::arg("brightness"), py::arg("center_nm"), py::arg("fwhm_nm"),
        py::arg("channel") = "fuv",
        "Each line's radiance (lines x P, R/nm): the pixel-integrated Gaussian line spread of its "
        "components, "
        "shifted to center_nm (nm), with fwhm_nm (nm) and brightness (R), as the fit models it "
        "(NaN values give "
        "a row of zeros). wavelength: a Calibration, or the wavelength polynomial's coefficients "
        "(nm) with "
        "pixels. lines: names of the channel's catalogue lines, or Line objects.");

  m.def("run", &run, py::arg("input"), py::arg("output"), py::kw_only(),
        py::arg("config") = py::none(), py::arg("threads") = 0, py::arg("stages") = py::none(),
        py::arg("products") = py::none(), py::arg("channels") = py::none(),
        py::arg("overwrite") = false, py::arg("progress") = py::none(),
        "`exospec run INPUT -o OUTPUT`: the whole pipeline on a file, written atomically. Returns "
        "the summary "
        "of `--json-report` as a dict. stages, products, channels: lists (or comma-separated "
        "strings) as the "
        "command's options; progress(done, total) is called after each block. Ctrl-C stops the run "
        "and leaves no "
        "output.");
  m.def("simulate", &simulate, py::arg("output"), py::kw_only(), py::arg("config") = py::none(),
        py::arg("spectra") = py::none(), py::arg("seed") = py::none(),
        py::arg("preset") = py::none(), py::arg("channels") = py::none(), py::arg("threads") = 0,
        py::arg("overwrite") = false, py::arg("progress") = py::none(),
        "`exospec simulate -o OUTPUT`: a simulated Phebus-like input file with its truth (preset "
        "'limb-scan' or "
        "'flyby'); the same seed gives the same bytes.");
  m.def(
      "_stage_array",
      [](const py::object& obj, const std::string& kind) -> py::array {
        if (kind == "counts") return take<std::uint32_t>(obj, kind, Kind::kCount);
        if (kind == "radiance") return take<float>(obj, kind, Kind::kReal);
        if (kind == "quality") return take<std::uint8_t>(obj, kind, Kind::kFlag);
        if (kind == "per_row") return take<double>(obj, kind, Kind::kReal);
        throw py::value_error("kind: counts, radiance, quality or per_row");
      },
      py::arg("array"), py::arg("kind"),
      "The array a stage computes on for an argument of this kind (for tests of what is copied).");
  m.def("info", &info, py::arg("path"), "`exospec info --json PATH` as a dict.");
  m.def(
      "default_config",
      [](const std::string& which) {
        if (which == "run") return std::string(ep::default_run_config_text());
        if (which == "simulate") return std::string(ep::default_simulation_config_text());
        if (which == "lines") return std::string(ep::default_catalogue_text());
        throw py::value_error("which: '" + which + "' is not run, simulate or lines");
      },
      py::arg("which") = "run", "`exospec config --defaults WHICH`: the built-in TOML text.");
}
