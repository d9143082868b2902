// InputFile::open rejects every class of malformed file with an error that
// names the file and the object.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <type_traits>

#include "exospec/error.hpp"
#include "exospec/io/input_file.hpp"
#include "exospec/io/schema.hpp"
#include "test_support.hpp"

namespace exospec::io {
namespace {

constexpr std::uint64_t kN = 20, kP = 64;

struct Mutations {
  // Called for every contract object; change dtype/dims/units or return false to leave it out.
  std::function<bool(schema::ObjectSpec&, Dims&)> object = [](schema::ObjectSpec&, Dims&) {
    return true;
  };
  std::string skip_calibration_attribute;
  std::string schema_name = "exospec";
  std::string extra_channel;
  bool skip_description_of_counts = false;
  // Called on the float64 values of each calibration array before they are written.
  std::function<void(const std::string&, std::vector<double>&)> edit_values =
      [](const std::string&, std::vector<double>&) {};
};

template <class T>
void fill(FileWriter& w, const schema::ObjectSpec& spec, const Dims& dims, T value,
          const Mutations& m) {
  std::uint64_t n = 1;
  for (auto d : dims) n *= d;
  std::vector<T> v(n, value);
  if constexpr (std::is_same_v<T, double>) m.edit_values(spec.path, v);
  w.write<T>(spec.path, v);
}

void write_input(const std::filesystem::path& path, const Mutations& m = {}) {
  FileWriter w(path, {}, true);
  w.set_attribute("/", "schema", std::string_view(m.schema_name));
  w.set_attribute("/", "schema_version", std::int32_t{1});
  auto emit = [&](std::vector<schema::ObjectSpec> specs, const schema::Sizes& sizes) {
    for (auto spec : specs) {
      Dims dims = schema::dims_of(spec.extent, sizes);
      const DType original = spec.dtype;
      const Dims original_dims = dims;
      if (!m.object(spec, dims)) continue;
      const std::string description =
          (m.skip_description_of_counts && spec.path.ends_with("/counts")) ? "" : "d";
      w.create_dataset(spec.path, spec.dtype, dims, spec.units, description,
                       schema::per_spectrum(spec.extent));
      if (spec.path.ends_with("/wavelength_coeffs") && spec.dtype == DType::kF64) {
        std::vector<double> v{55.0, 0.1};
        m.edit_values(spec.path, v);  // (which may also give it another length)
        if (dims.size() == 1 && v.size() == dims[0]) w.write<double>(spec.path, v);
        continue;
      }
      if (spec.dtype != original || dims != original_dims) continue;
      const std::string leaf = spec.path.substr(spec.path.rfind('/') + 1);
      if (leaf == "flat") {
        fill(w, spec, dims, 1.0, m);
      } else if (leaf == "sensitivity") {
        fill(w, spec, dims, 0.2, m);
      } else if (leaf == "dark_rate") {
        fill(w, spec, dims, 0.02, m);
      } else if (leaf == "exposure_s") {
        fill(w, spec, dims, 8.0, m);
      } else if (leaf == "detector_temperature") {
        fill(w, spec, dims, 5.0f, m);
      }
    }
  };
  for (auto ch : schema::kChannels) {
    const schema::Sizes sizes{kN, kP, 2, 0};
    emit(schema::raw_objects(ch), sizes);
    emit(schema::calibration_objects(ch), sizes);
    for (auto attr : schema::kCalibrationAttributes) {
      if (attr != m.skip_calibration_attribute) {
        w.set_attribute(schema::calibration_group(ch), attr, 0.5e-6);
      }
    }
  }
  emit(schema::geometry_objects(), schema::Sizes{kN, 0, 0, 0});
  if (!m.extra_channel.empty()) w.create_group("/raw/" + m.extra_channel);
  w.commit();
}

// Opens and expects a FileError (or subclass) naming `object`, whose message holds `words`.
void expect_rejected(const std::filesystem::path& path, const std::string& object,
                     const std::string& words) {
  try {
    InputFile::open(path);
    FAIL() << "accepted a malformed file; expected an error on " << object;
  } catch (const FileError& e) {
    EXPECT_EQ(e.file(), path.string());
    EXPECT_EQ(e.object(), object) << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
}

TEST(InputValidation, ValidFileOpensAndReads) {
  const auto path = test::scratch_dir("valid") / "in.h5";
  write_input(path);
  const auto in = InputFile::open(path);
  EXPECT_EQ(in.channels(), (std::vector<std::string>{"euv", "fuv"}));
  EXPECT_EQ(in.spectra(), kN);
  EXPECT_EQ(in.pixels("fuv"), kP);
  const auto cal = in.read_calibration("euv");
  EXPECT_EQ(cal.wavelength_coeffs, (std::vector<double>{55.0, 0.1}));
  EXPECT_EQ(cal.flat.size(), kP);
  EXPECT_EQ(cal.dead_time_s, 0.5e-6);
  std::vector<double> exposure(5);
  in.read_exposure("fuv", 15, exposure);
  EXPECT_EQ(exposure, std::vector<double>(5, 8.0));
  EXPECT_FALSE(in.has_truth("euv"));
}

TEST(InputValidation, MissingDataset) {
  const auto path = test::scratch_dir("missing") / "in.h5";
  Mutations m;
  m.object = [](schema::ObjectSpec& s, Dims&) { return s.path != "/raw/fuv/exposure_s"; };
  write_input(path, m);
  expect_rejected(path, "/raw/fuv/exposure_s", "missing dataset");
}

TEST(InputValidation, MissingGeometry) {
  const auto path = test::scratch_dir("missing_geo") / "in.h5";
  Mutations m;
  m.object = [](schema::ObjectSpec& s, Dims&) { return s.path != "/geometry/tangent_altitude_km"; };
  write_input(path, m);
  expect_rejected(path, "/geometry/tangent_altitude_km", "missing dataset");
}

TEST(InputValidation, WrongDtype) {
  const auto path = test::scratch_dir("dtype") / "in.h5";
  Mutations m;
  m.object = [](schema::ObjectSpec& s, Dims&) {
    if (s.path == "/raw/euv/counts") s.dtype = DType::kF64;
    return true;
  };
  write_input(path, m);
  expect_rejected(path, "/raw/euv/counts", "dtype float64, expected uint32");
}

TEST(InputValidation, WrongDtypeOfTemperature) {
  const auto path = test::scratch_dir("dtype_t") / "in.h5";
  Mutations m;
  m.object = [](schema::ObjectSpec& s, Dims&) {
    if (s.path == "/raw/fuv/detector_temperature") s.dtype = DType::kF64;
    return true;
  };
  write_input(path, m);
  expect_rejected(path, "/raw/fuv/detector_temperature", "expected float32");
}

TEST(InputValidation, WrongShape) {
  const auto path = test::scratch_dir("shape") / "in.h5";
  Mutations m;
  m.object = [](schema::ObjectSpec& s, Dims& d) {
    if (s.path == "/calibration/euv/flat") d = {kP - 1};
    return true;
  };
  write_input(path, m);
  expect_rejected(path, "/calibration/euv/flat", "shape (63), expected (64)");
}

// Found by fuzz_contract: a wavelength polynomial that claims 10^12
// coefficients (a chunked dataset with no chunk written) was read whole.
TEST(InputValidation, TooManyWavelengthCoefficients) {
  const auto path = test::scratch_dir("coeffs") / "in.h5";
  Mutations m;
  m.object = [](schema::ObjectSpec& s, Dims& d) {
    if (s.path == "/calibration/fuv/wavelength_coeffs") d = {kMaxWavelengthCoeffs + 1};
    return true;
  };
  m.edit_values = [](const std::string& object, std::vector<double>& v) {
    if (object == "/calibration/fuv/wavelength_coeffs") v.resize(kMaxWavelengthCoeffs + 1, 0.0);
  };
  write_input(path, m);
  expect_rejected(path, "/calibration/fuv/wavelength_coeffs", "17 coefficients; exospec takes at most 16");
}

TEST(InputValidation, WrongRank) {
  const auto path = test::scratch_dir("rank") / "in.h5";
  Mutations m;
  m.object = [](schema::ObjectSpec& s, Dims& d) {
    if (s.path == "/raw/euv/counts") d = {kN * kP};
    return true;
  };
  write_input(path, m);
  expect_rejected(path, "/raw/euv/counts", "expected N x P");
}

TEST(InputValidation, NDiffersBetweenChannels) {
  const auto path = test::scratch_dir("n_differs") / "in.h5";
  Mutations m;
  m.object = [](schema::ObjectSpec& s, Dims& d) {
    if (s.path.starts_with("/raw/fuv/")) d[0] = kN + 1;
    return true;
  };
  write_input(path, m);
  expect_rejected(path, "/raw/fuv/counts", "differs from N = 20 of /raw/euv/counts");
}

TEST(InputValidation, NDiffersForGeometry) {
  const auto path = test::scratch_dir("n_geo") / "in.h5";
  Mutations m;
  m.object = [](schema::ObjectSpec& s, Dims& d) {
    if (s.path == "/geometry/time") d[0] = kN - 2;
    return true;
  };
  write_input(path, m);
  expect_rejected(path, "/geometry/time", "shape (18), expected (20)");
}

TEST(InputValidation, WrongUnits) {
  const auto path = test::scratch_dir("units") / "in.h5";
  Mutations m;
  m.object = [](schema::ObjectSpec& s, Dims&) {
    if (s.path == "/raw/euv/exposure_s") s.units = "ms";
    return true;
  };
  write_input(path, m);
  expect_rejected(path, "/raw/euv/exposure_s", "units \"ms\", expected \"s\"");
}

TEST(InputValidation, MissingDescription) {
  const auto path = test::scratch_dir("descr") / "in.h5";
  Mutations m;
  m.skip_description_of_counts = true;
  write_input(path, m);
  expect_rejected(path, "/raw/euv/counts", "missing attribute 'description'");
}

TEST(InputValidation, MissingCalibrationAttribute) {
  const auto path = test::scratch_dir("attr") / "in.h5";
  Mutations m;
  m.skip_calibration_attribute = "dead_time_s";
  write_input(path, m);
  expect_rejected(path, "/calibration/euv", "missing attribute 'dead_time_s'");
}

TEST(InputValidation, WrongSchemaName) {
  const auto path = test::scratch_dir("schema") / "in.h5";
  Mutations m;
  m.schema_name = "something-else";
  write_input(path, m);
  expect_rejected(path, "/", "root attribute 'schema'");
}

TEST(InputValidation, UnknownChannel) {
  const auto path = test::scratch_dir("channel") / "in.h5";
  Mutations m;
  m.extra_channel = "xuv";
  write_input(path, m);
  expect_rejected(path, "/raw/xuv", "unknown channel");
}

TEST(InputValidation, NotHdf5) {
  const auto path = test::scratch_dir("text") / "in.h5";
  std::ofstream(path) << "this is not an HDF5 file\n";
  expect_rejected(path, "", "not an HDF5 file");
}

TEST(InputValidation, TruncatedFile) {
  const auto dir = test::scratch_dir("truncated");
  const auto good = dir / "good.h5", cut = dir / "cut.h5";
  write_input(good);
  std::filesystem::copy_file(good, cut);
  std::filesystem::resize_file(cut, std::filesystem::file_size(good) / 2);
  expect_rejected(cut, "", "truncated");
}

TEST(InputValidation, MissingFile) {
  const auto path = test::scratch_dir("nofile") / "absent.h5";
  expect_rejected(path, "", "no such file");
}

TEST(InputValidation, NonFiniteCalibrationValue) {
  const auto dir = test::scratch_dir("nan");
  const auto nanfile = dir / "flatnan.h5";
  Mutations m;
  m.edit_values = [](const std::string& path, std::vector<double>& v) {
    if (path == "/calibration/euv/flat") v[7] = std::nan("");
  };
  write_input(nanfile, m);
  const auto in = InputFile::open(nanfile);
  try {
    in.read_calibration("euv");
    FAIL() << "NaN flat accepted";
  } catch (const SchemaError& e) {
    EXPECT_EQ(e.object(), "/calibration/euv/flat");
    EXPECT_NE(std::string(e.what()).find("pixel 7"), std::string::npos) << e.what();
  }
}

TEST(InputValidation, WavelengthsThatTurnBackAcrossTheDetector) {
  const auto dir = test::scratch_dir("turning");
  auto with_coeffs = [&](const std::string& name, std::vector<double> coeffs) {
    Mutations m;
    m.object = [n = coeffs.size()](schema::ObjectSpec& s, Dims& d) {
      if (s.path == "/calibration/fuv/wavelength_coeffs") d = {n};
      return true;
    };
    m.edit_values = [coeffs](const std::string& path, std::vector<double>& v) {
      if (path == "/calibration/fuv/wavelength_coeffs") v = coeffs;
    };
    write_input(dir / name, m);
    return InputFile::open(dir / name);
  };
  // 100 + p - p^2 / 64 rises to pixel 32 and falls after it.
  const auto turning = with_coeffs("turning.h5", {100.0, 1.0, -1.0 / 64.0});
  try {
    turning.read_calibration("fuv");
    FAIL() << "a wavelength solution that turns back was accepted";
  } catch (const SchemaError& e) {
    EXPECT_EQ(e.object(), "/calibration/fuv/wavelength_coeffs");
    EXPECT_NE(std::string(e.what()).find("pixel 32"), std::string::npos) << e.what();
  }
  // Constant wavelengths are refused too; falling ones (a detector read from
  // its red end) and a curvature that turns only beyond the last pixel are not.
  EXPECT_THROW(with_coeffs("flat.h5", {100.0, 0.0}).read_calibration("fuv"), SchemaError);
  EXPECT_NO_THROW(with_coeffs("falling.h5", {200.0, -1.0}).read_calibration("fuv"));
  EXPECT_NO_THROW(with_coeffs("bends.h5", {100.0, 1.0, -1.0 / 140.0}).read_calibration("fuv"));
}

}  // namespace
}  // namespace exospec::io

namespace exospec::io {
namespace {

// Every input, truth and geometry object of the contract, written from the
// schema tables with distinct values and read back exactly, with its units and
// description.
TEST(ContractRoundTrip, EveryInputAndTruthObject) {
  const auto path = test::scratch_dir("contract") / "in.h5";
  const schema::Sizes sizes{kN, kP, 3, 4};
  std::vector<schema::ObjectSpec> specs = schema::geometry_objects();
  for (auto ch : schema::kChannels) {
    for (auto group :
         {schema::raw_objects(ch), schema::calibration_objects(ch), schema::truth_objects(ch)}) {
      specs.insert(specs.end(), group.begin(), group.end());
    }
  }
  auto values = [&](std::size_t k, std::uint64_t n) {
    std::vector<double> v(n);
    for (std::uint64_t i = 0; i < n; ++i) v[i] = static_cast<double>((k * 131 + i * 7) % 200) + 0.5;
    return v;
  };
  {
    FileWriter w(path, {}, false);
    w.set_attribute("/", "schema", std::string_view("exospec"));
    w.set_attribute("/", "schema_version", std::int32_t{1});
    for (std::size_t k = 0; k < specs.size(); ++k) {
      const auto& s = specs[k];
      const Dims dims = schema::dims_of(s.extent, sizes);
      w.create_dataset(s.path, s.dtype, dims, s.units, s.description,
                       schema::per_spectrum(s.extent));
      std::uint64_t n = 1;
      for (auto d : dims) n *= d;
      const auto v = values(k, n);
      switch (s.dtype) {
        case DType::kU8: {
          std::vector<std::uint8_t> b(n);
          for (std::uint64_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(v[i]) % 2;
          w.write<std::uint8_t>(s.path, b);
          break;
        }
        case DType::kU32: {
          std::vector<std::uint32_t> b(v.begin(), v.end());
          w.write<std::uint32_t>(s.path, b);
          break;
        }
        case DType::kF32: {
          std::vector<float> b(v.begin(), v.end());
          w.write<float>(s.path, b);
          break;
        }
        case DType::kF64:
          w.write<double>(s.path, v);
          break;
        case DType::kString: {
          std::vector<std::string> b;
          for (std::uint64_t i = 0; i < n; ++i) b.push_back("line " + std::to_string(v[i]));
          w.write_strings(s.path, b);
          break;
        }
        default:
          FAIL();
      }
    }
    for (auto ch : schema::kChannels) {
      w.set_attribute(schema::calibration_group(ch), "dead_time_s", 0.5e-6);
      w.set_attribute(schema::calibration_group(ch), "dark_reference_temperature", -2.5);
      w.set_attribute(schema::calibration_group(ch), "dark_temperature_coeff", 0.03);
    }
    w.commit();
  }
  const auto in = InputFile::open(path);
  const File& f = in.file();
  for (std::size_t k = 0; k < specs.size(); ++k) {
    const auto& s = specs[k];
    const Dims dims = schema::dims_of(s.extent, sizes);
    EXPECT_NO_THROW(validate_object(f, s, dims)) << s.path;
    std::uint64_t n = 1;
    for (auto d : dims) n *= d;
    const auto v = values(k, n);
    if (s.dtype == DType::kString) {
      const auto got = f.read_strings(s.path);
      ASSERT_EQ(got.size(), n);
      for (std::uint64_t i = 0; i < n; ++i) EXPECT_EQ(got[i], "line " + std::to_string(v[i]));
    } else if (s.dtype == DType::kU8) {
      const auto got = f.read_all<std::uint8_t>(s.path);
      for (std::uint64_t i = 0; i < n; ++i) EXPECT_EQ(got[i], static_cast<std::uint8_t>(v[i]) % 2);
    } else if (s.dtype == DType::kU32) {
      EXPECT_EQ(f.read_all<std::uint32_t>(s.path), std::vector<std::uint32_t>(v.begin(), v.end()))
          << s.path;
    } else if (s.dtype == DType::kF32) {
      EXPECT_EQ(f.read_all<float>(s.path), std::vector<float>(v.begin(), v.end())) << s.path;
    } else {
      EXPECT_EQ(f.read_all<double>(s.path), v) << s.path;
    }
    if (!s.units.empty()) {
      EXPECT_EQ(f.string_attribute(s.path, "units"), s.units);
    }
    EXPECT_EQ(f.string_attribute(s.path, "description"), s.description);
  }
  const auto cal = in.read_calibration("fuv");
  EXPECT_EQ(cal.dark_reference_temperature, -2.5);
  EXPECT_EQ(cal.dark_temperature_coeff, 0.03);
  EXPECT_EQ(in.truth_line_names("euv").size(), 4u);
  EXPECT_EQ(specs.size(), 2u + 2u * (3u + 5u + 6u));
}

}  // namespace
}  // namespace exospec::io
