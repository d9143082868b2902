// Fuzz target, structure-aware: input files of the data contract
// (shared/SCHEMA.md) built from a real simulated file, whose objects the
// fuzzer's bytes make present or absent, of another dtype, shape, layout
// (contiguous, chunked, compressed, chunked with no chunk written), with
// missing or wrong attributes, and with values poked to NaN, infinities,
// negatives, zeros and extremes; each file then goes through `run` end to end
// (calibrate, denoise, fit, profile) on its few rows. The HDF5 files are valid
// HDF5 written by libhdf5: byte-level corruption of the format tests libhdf5,
// not exospec (docs/RELIABILITY.md).
//
// Oracles: only exospec::Error escapes, with one line of message
// (fuzz_common.hpp); a failed run leaves no output and no temporary file; a
// run that succeeds leaves its output; the input file is never modified.
//
// The bytes are read with a byte-stream decoder whose zero (and the empty
// input) means "as the real file has it", so the empty input is the real
// file, and the seed corpus (fuzz/corpus/fuzz_contract) a few hand-picked
// variations of it.
#include <hdf5.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "exospec/io/input_file.hpp"
#include "exospec/io/schema.hpp"
#include "exospec/pipeline/catalogue.hpp"
#include "exospec/pipeline/run.hpp"
#include "exospec/pipeline/simulate.hpp"
#include "fuzz_common.hpp"

namespace {

namespace fs = std::filesystem;
namespace schema = exospec::io::schema;
using exospec::io::DType;
constexpr const char* kTarget = "fuzz_contract";

// The fuzzer's bytes, one decision at a time; 0 once they run out.
class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | byte();
    return v;
  }
  double f64() {
    std::uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits = (bits << 8) | byte();
    double x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_, pos_ = 0;
};

// One object of the real file: its contract entry, values (as float64; the
// uint32 counts and uint8 flags are exact in it) and dims.
struct Object {
  schema::ObjectSpec spec;
  std::vector<double> values;
  std::vector<hsize_t> dims;  // {N}, {P}, {K} or {N, P}
};

struct Base {
  fs::path dir, input, output;
  std::vector<Object> objects;
  std::vector<std::string> channels;
  exospec::pipeline::RunConfig config;
  std::vector<exospec::io::ChannelCalibration> calibration;  // per channel
};

Base make_base() {
  Base b;
  char tmpl[] = "/dev/shm/exospec-fuzz-contract.XXXXXX";
  const char* made = mkdtemp(tmpl);
  if (made == nullptr) {
    char fallback[] = "/tmp/exospec-fuzz-contract.XXXXXX";
    made = mkdtemp(fallback);
    if (made == nullptr) exospec_fuzz::bug(kTarget, "cannot make a work directory");
  }
  b.dir = made;
  b.input = b.dir / "in.h5";
  b.output = b.dir / "out.h5";
  // A small real file: 12 spectra of 128 pixels per channel, limb scans of 4.
  const fs::path real = b.dir / "real.h5";
  auto sim = exospec::pipeline::parse_simulation_config(
      "[simulate]\nspectra = 12\nseed = 7\ndeflate_level = 0\n"
      "[limb_scan]\nspectra_per_scan = 4\n"
      "[instrument.euv]\npixels = 128\nhot_pixels = 1\ndead_pixels = 1\n"
      "[instrument.fuv]\npixels = 128\nhot_pixels = 1\ndead_pixels = 1\n",
      "fuzz_contract base");
  const auto catalogue = exospec::pipeline::default_catalogue();
  exospec::pipeline::simulate(sim, catalogue, real, true, 1);
  const auto in = exospec::io::InputFile::open(real);
  b.channels = in.channels();
  const std::uint64_t n = in.spectra();
  auto add = [&](const schema::ObjectSpec& spec, std::vector<double> v, std::vector<hsize_t> dims) {
    b.objects.push_back({spec, std::move(v), std::move(dims)});
  };
  for (const auto& ch : b.channels) {
    const std::uint64_t p = in.pixels(ch);
    const auto cal = in.read_calibration(ch);
    b.calibration.push_back(cal);
    for (const auto& spec : schema::raw_objects(ch)) {
      const auto name = spec.path.substr(spec.path.rfind('/') + 1);
      if (name == "counts") {
        std::vector<std::uint32_t> c(n * p);
        in.read_counts(ch, 0, c);
        add(spec, std::vector<double>(c.begin(), c.end()), {n, p});
      } else if (name == "exposure_s") {
        std::vector<double> e(n);
        in.read_exposure(ch, 0, e);
        add(spec, e, {n});
      } else {
        std::vector<float> t(n);
        in.read_temperature(ch, 0, t);
        add(spec, std::vector<double>(t.begin(), t.end()), {n});
      }
    }
    for (const auto& spec : schema::calibration_objects(ch)) {
      const auto name = spec.path.substr(spec.path.rfind('/') + 1);
      std::vector<double> v;
      if (name == "wavelength_coeffs") v = cal.wavelength_coeffs;
      if (name == "dark_rate") v = cal.dark_rate;
      if (name == "flat") v = cal.flat;
      if (name == "sensitivity") v = cal.sensitivity;
      if (name == "bad_pixel") v.assign(cal.bad_pixel.begin(), cal.bad_pixel.end());
      if (v.empty()) exospec_fuzz::bug(kTarget, "unknown calibration object " + spec.path);
      add(spec, v, {v.size()});
    }
  }
  for (const auto& spec : schema::geometry_objects()) {
    std::vector<double> v(n);
    if (spec.path.find("time") != std::string::npos) {
      in.read_time(0, v);
    } else {
      in.read_altitude(0, v);
    }
    add(spec, v, {n});
  }
  fs::remove(real);
  static fs::path dir_to_remove;
  dir_to_remove = b.dir;
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(dir_to_remove, ec);
  });
  b.config = exospec::pipeline::parse_run_config(
      "[run]\nstages = [\"calibrate\", \"denoise\", \"fit\", \"profile\"]\n", "fuzz_contract run");
  return b;
}

hid_t native_type(DType t) {
  switch (t) {
    case DType::kU8: return H5T_NATIVE_UINT8;
    case DType::kU32: return H5T_NATIVE_UINT32;
    case DType::kI32: return H5T_NATIVE_INT32;
    case DType::kI64: return H5T_NATIVE_INT64;
    case DType::kF32: return H5T_NATIVE_FLOAT;
    case DType::kF64: return H5T_NATIVE_DOUBLE;
    case DType::kString: break;
  }
  return H5T_NATIVE_DOUBLE;
}

// Values to poke into a dataset or attribute.
double special_value(Bytes& in) {
  switch (in.byte() % 12) {
    case 0: return std::numeric_limits<double>::quiet_NaN();
    case 1: return std::numeric_limits<double>::infinity();
    case 2: return -std::numeric_limits<double>::infinity();
    case 3: return -1.0;
    case 4: return 0.0;
    case 5: return 1e300;
    case 6: return -1e300;
    case 7: return 4294967295.0;
    case 8: return std::numeric_limits<double>::denorm_min();
    case 9: return 2.0;
    case 10: return 1e-12;
    default: return in.f64();
  }
}

// Writes `v` (float64) into the dataset: converted by HDF5 to its dtype
// (clamped to the type's range; NaN to an integer type as HDF5 does).
// The conversion buffer sized to the values (HDF5's default zeroes 1 MiB per
// write, most of this target's time).
void write_values(hid_t ds, const std::vector<double>& v) {
  if (v.empty()) return;
  const hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
  H5Pset_buffer(dxpl, std::min<std::size_t>(v.size(), 65536) * 16, nullptr, nullptr);
  H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, dxpl, v.data());
  H5Pclose(dxpl);
}

void string_attribute(hid_t obj, const char* name, const std::string& value) {
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  const char* p = value.c_str();
  H5Awrite(a, type, &p);
  H5Aclose(a);
  H5Sclose(space);
  H5Tclose(type);
}

void numeric_attribute(hid_t obj, const char* name, hid_t type, const std::vector<double>& v,
                       bool scalar) {
  const hsize_t n = v.size();
  const hid_t space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr);
  const hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_DOUBLE, v.data());
  H5Aclose(a);
  H5Sclose(space);
}

// An attribute decided by the bytes: as it should be, missing, another type
// (string, integer, an array), or another value.
void fuzzed_attribute(hid_t obj, const char* name, Bytes& in, double value) {
  switch (in.byte() % 16) {
    case 1: return;  // missing
    case 2: string_attribute(obj, name, "1.0"); return;
    case 3: numeric_attribute(obj, name, H5T_NATIVE_INT32, {value}, true); return;
    case 4: numeric_attribute(obj, name, H5T_NATIVE_DOUBLE, {value, value}, false); return;
    case 5: numeric_attribute(obj, name, H5T_NATIVE_DOUBLE, {special_value(in)}, true); return;
    case 6: numeric_attribute(obj, name, H5T_NATIVE_FLOAT, {value}, true); return;
    default: numeric_attribute(obj, name, H5T_NATIVE_DOUBLE, {value}, true); return;
  }
}

// Creates the groups of `path` (an absolute object path) below the root.
hid_t parent_group(hid_t file, const std::string& path) {
  hid_t g = H5Gopen2(file, "/", H5P_DEFAULT);
  std::size_t start = 1;
  for (;;) {
    const std::size_t slash = path.find('/', start);
    if (slash == std::string::npos) break;
    const std::string part = path.substr(start, slash - start);
    const hid_t next = H5Lexists(g, part.c_str(), H5P_DEFAULT) > 0
                           ? H5Gopen2(g, part.c_str(), H5P_DEFAULT)
                           : H5Gcreate2(g, part.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    g = next;
    if (g < 0) return g;
    start = slash + 1;
  }
  return g;
}

// Writes one object, as the bytes decide.
void write_object(hid_t file, const Object& obj, std::uint64_t rows, Bytes& in) {
  const std::string name = obj.spec.path.substr(obj.spec.path.rfind('/') + 1);
  const hid_t g = parent_group(file, obj.spec.path);
  if (g < 0) return;
  std::vector<hsize_t> dims = obj.dims;
  const bool per_spectrum = schema::per_spectrum(obj.spec.extent);
  std::vector<double> values = obj.values;
  const std::uint64_t row_size = dims.size() == 2 ? dims[1] : 1;
  if (per_spectrum) {
    dims[0] = rows;
    values.resize(rows * row_size);
  }
  DType dtype = obj.spec.dtype;
  bool huge = false, as_string = false, as_group = false;
  int layout = 0;  // 0 contiguous or the contract's chunks, 1 chunk of 1 row, 2 deflate, 3 odd chunks
  const std::uint8_t op = in.byte();
  switch (op % 20) {
    case 1: H5Gclose(g); return;  // missing
    case 2: dtype = static_cast<DType>(in.byte() % 6); break;
    case 3: dims[0] += 1 + in.byte() % 3; break;
    case 4: dims[0] = dims[0] > 0 ? dims[0] - 1 : 0; break;
    case 5: dims.push_back(1 + in.byte() % 3); break;
    case 6: dims.clear(); break;  // scalar
    case 7: huge = true; break;
    case 8: dims[0] = 0; break;
    case 9: as_string = true; break;
    case 10: as_group = true; break;
    case 11: layout = 1 + in.byte() % 3; break;
    case 12: if (dims.size() == 2) dims[1] += 1; break;
    case 13: if (dims.size() == 2) dims[1] = dims[1] / 2; else dims[0] = dims[0] * 2; break;
    default: break;
  }
  // Value pokes (any op): count, then index and value each.
  const unsigned pokes = (op >> 5) & 7u;
  for (unsigned i = 0; i < pokes && !values.empty(); ++i) {
    const std::size_t at = in.u32() % values.size();
    values[at] = special_value(in);
  }
  if (as_group) {
    H5Gclose(H5Gcreate2(g, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Gclose(g);
    return;
  }
  if (huge) {
    // A claim of far more spectra or pixels than exist: chunked, no chunk written.
    const std::uint8_t which = in.byte();
    const hsize_t big = (which & 1) ? hsize_t{1000000000000} : hsize_t{exospec::io::kMaxSpectra + 1};
    if (dims.empty()) dims.push_back(1);
    if (dims.size() == 2 && (which & 2)) {
      dims[1] = (which & 4) ? hsize_t{1000000000} : hsize_t{exospec::io::kMaxPixels + 1};
    } else {
      dims[0] = big;
    }
    layout = 1;
  }
  std::size_t total = 1;
  for (auto d : dims) total *= d;
  const bool write_data = !huge && total <= (std::size_t{1} << 22);
  if (write_data) values.resize(total, values.empty() ? 0.0 : values.back());
  hid_t space = dims.empty() ? H5Screate(H5S_SCALAR)
                             : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  bool any_zero = dims.empty();
  for (auto d : dims) any_zero = any_zero || d == 0;
  if (!dims.empty() && (per_spectrum || layout != 0 || any_zero)) {
    std::vector<hsize_t> chunk = dims;
    for (auto& c : chunk) c = std::max<hsize_t>(1, std::min<hsize_t>(c, 64));
    if (layout == 1) chunk[0] = 1;
    if (layout == 3) chunk[0] = 3;
    if (dims.size() == 2 && dims[1] > 4096) chunk[1] = 4096;
    H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    if (layout == 2 && !as_string) {
      H5Pset_shuffle(dcpl);
      H5Pset_deflate(dcpl, 1);
    }
    if (huge) H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
  }
  hid_t type = -1;
  if (as_string) {
    type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
  } else {
    // Stored little-endian (as the writers do), or big-endian now and then.
    const hid_t native = native_type(dtype);
    type = H5Tcopy(native);
    if (layout == 3) H5Tset_order(type, H5T_ORDER_BE);
  }
  const hid_t ds = H5Dcreate2(g, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (ds >= 0) {
    if (as_string) {
      std::vector<std::string> text(std::min<std::size_t>(total, 4096), "12.5");
      if (total <= text.size()) {
        std::vector<const char*> ptrs;
        for (const auto& t : text) ptrs.push_back(t.c_str());
        if (!ptrs.empty()) H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data());
      }
    } else if (write_data) {
      write_values(ds, values);
    }
    // Attributes: units and description, as the bytes decide.
    const std::uint8_t a = in.byte();
    switch (a % 8) {
      case 1: break;  // no units
      case 2: string_attribute(ds, "units", "furlong"); break;
      case 3: numeric_attribute(ds, "units", H5T_NATIVE_INT32, {1.0}, true); break;
      default: string_attribute(ds, "units", std::string(obj.spec.units)); break;
    }
    if ((a >> 3) % 8 != 1) string_attribute(ds, "description", std::string(obj.spec.description));
    H5Dclose(ds);
  }
  H5Tclose(type);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Gclose(g);
}

bool write_input(const Base& b, Bytes& in) {
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_LATEST);
  // Built in memory, written to the file in one piece when closed.
  H5Pset_fapl_core(fapl, std::size_t{1} << 20, 1);
  const hid_t file = H5Fcreate(b.input.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (file < 0) return false;
  // Rows 1-12 (0: all 12).
  const std::uint64_t all = b.objects.front().dims[0];
  const std::uint8_t r = in.byte();
  const std::uint64_t rows = r == 0 ? all : 1 + (r - 1) % all;
  // Root attributes.
  const hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
  switch (in.byte() % 8) {
    case 1: break;
    case 2: string_attribute(root, "schema", "exospec-2"); break;
    case 3: numeric_attribute(root, "schema", H5T_NATIVE_INT32, {1.0}, true); break;
    default: string_attribute(root, "schema", std::string(schema::kSchemaName)); break;
  }
  switch (in.byte() % 8) {
    case 1: break;
    case 2: numeric_attribute(root, "schema_version", H5T_NATIVE_INT32, {2.0}, true); break;
    case 3: string_attribute(root, "schema_version", "1"); break;
    case 4: numeric_attribute(root, "schema_version", H5T_NATIVE_DOUBLE, {1.0}, true); break;
    default: numeric_attribute(root, "schema_version", H5T_NATIVE_INT32, {1.0}, true); break;
  }
  H5Gclose(root);
  // Channels: both (0), or one of them.
  const std::uint8_t which = in.byte() % 4;
  for (const auto& obj : b.objects) {
    const bool euv = obj.spec.path.find("/euv/") != std::string::npos;
    const bool fuv = obj.spec.path.find("/fuv/") != std::string::npos;
    if ((which == 1 && euv) || (which == 2 && fuv)) continue;
    write_object(file, obj, rows, in);
  }
  // The calibration groups' attributes.
  for (std::size_t c = 0; c < b.channels.size(); ++c) {
    const std::string group = schema::calibration_group(b.channels[c]);
    if (H5Lexists(file, group.substr(1, group.find('/', 1) - 1).c_str(), H5P_DEFAULT) <= 0) continue;
    if (H5Lexists(file, group.c_str(), H5P_DEFAULT) <= 0) continue;
    const hid_t g = H5Gopen2(file, group.c_str(), H5P_DEFAULT);
    if (g < 0) continue;
    const auto& cal = b.calibration[c];
    fuzzed_attribute(g, "dead_time_s", in, cal.dead_time_s);
    fuzzed_attribute(g, "dark_reference_temperature", in, cal.dark_reference_temperature);
    fuzzed_attribute(g, "dark_temperature_coeff", in, cal.dark_temperature_coeff);
    H5Gclose(g);
  }
  return H5Fclose(file) >= 0;
}

std::vector<char> file_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::error_code ec;
  std::vector<char> bytes(static_cast<std::size_t>(fs::file_size(p, ec)));
  if (ec) return {};
  f.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Base base = make_base();
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  Bytes in(data, size);
  fs::remove(base.input);
  if (!write_input(base, in)) exospec_fuzz::bug(kTarget, "cannot write the input file");
  exospec::pipeline::RunConfig config = base.config;
  const std::uint8_t block = in.byte();
  if (block != 0) config.block_rows = 1 + block % 16;
  const auto before = file_bytes(base.input);
  const bool ok = exospec_fuzz::accepted(kTarget, [&] {
    exospec::pipeline::run(config, base.input, base.output, true, 1);
  });
  if (file_bytes(base.input) != before) exospec_fuzz::bug(kTarget, "the input file was modified");
  std::error_code ec;
  const bool out_exists = fs::exists(base.output, ec);
  if (ok && !out_exists) exospec_fuzz::bug(kTarget, "run succeeded without an output");
  if (!ok && out_exists) exospec_fuzz::bug(kTarget, "run failed and left an output");
  for (const auto& entry : fs::directory_iterator(base.dir)) {
    const auto name = entry.path().filename().string();
    if (name != "in.h5" && name != "out.h5") {
      exospec_fuzz::bug(kTarget, "a file left behind: " + name);
    }
  }
  fs::remove(base.output, ec);
  return 0;
}
