// Soak through the library API (issue 20, point 4): N consecutive
// exospec::pipeline::run() calls in one process on a small simulated input
// (both channels, every stage), each to a fresh output that is compared
// with the first run's output and then deleted.
//
//   soak_inprocess_runs [N=1000] [WORKDIR=./soak_inprocess] [SPECTRA=48]
//
// What it checks:
// - every run's output holds the same datasets and attributes, byte for
//   byte, as the first run's (every object of the file; of the root's
//   attributes `created_utc` is left out, and of `config` its block_rows
//   line, which the runs vary on purpose). The runs cycle through threads
//   1 and 2 and block_rows 1024, 16 and 25 (blocks of 16 and 25 rows with
//   context rows each side; 1024: the whole file in one block), so the same
//   check also covers the block and thread invariance;
// - resident memory does not grow: VmRSS (/proc/self/status) after the
//   first 10 runs and after the last is printed, and without sanitizers the
//   last may exceed it by at most 10 % + 4 MiB. (Under AddressSanitizer RSS
//   grows with its quarantine of freed memory, so it is printed only.)
// - leaks: under the ASan build LeakSanitizer checks at exit (the test
//   fails on any leak; no suppression file is used).
// Exit code 0 when everything holds, 1 otherwise.
#include <hdf5.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "exospec/pipeline/catalogue.hpp"
#include "exospec/pipeline/run.hpp"
#include "exospec/pipeline/simulate.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define SOAK_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_SANITIZED 1
#endif
#endif
#ifndef SOAK_SANITIZED
#define SOAK_SANITIZED 0
#endif

namespace {

namespace fs = std::filesystem;

// VmRSS of this process, KiB (0 if unreadable).
long vm_rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

// HDF5 handles closed on scope exit.
struct Hid {
  hid_t id;
  herr_t (*close)(hid_t);
  Hid(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {
    if (id < 0) throw std::runtime_error("HDF5 call failed");
  }
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;
  ~Hid() {
    if (id >= 0) close(id);
  }
};

// The bytes of a dataset or attribute: its shape, its type's class and
// size, then its values (variable-length strings as their characters).
struct Reader {
  virtual ~Reader() = default;
  virtual hid_t type() const = 0;
  virtual hid_t space() const = 0;
  virtual herr_t read(hid_t mem_type, void* buf) const = 0;
};
struct DatasetReader final : Reader {
  hid_t d;
  explicit DatasetReader(hid_t id) : d(id) {}
  hid_t type() const override { return H5Dget_type(d); }
  hid_t space() const override { return H5Dget_space(d); }
  herr_t read(hid_t mem_type, void* buf) const override {
    return H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  }
};
struct AttributeReader final : Reader {
  hid_t a;
  explicit AttributeReader(hid_t id) : a(id) {}
  hid_t type() const override { return H5Aget_type(a); }
  hid_t space() const override { return H5Aget_space(a); }
  herr_t read(hid_t mem_type, void* buf) const override { return H5Aread(a, mem_type, buf); }
};

std::string content_of(const Reader& r) {
  Hid ftype(r.type(), H5Tclose);
  Hid space(r.space(), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.id);
  if (rank < 0) throw std::runtime_error("cannot read a dataspace");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  const auto n = static_cast<std::size_t>(H5Sget_simple_extent_npoints(space.id));
  const H5T_class_t cls = H5Tget_class(ftype.id);
  std::string out = "rank ";
  out += std::to_string(rank);
  for (auto d : dims) {
    out += ' ';
    out += std::to_string(d);
  }
  out += " class ";
  out += std::to_string(static_cast<int>(cls));
  out += " size ";
  out += std::to_string(H5Tget_size(ftype.id));
  out += '\n';
  if (cls == H5T_STRING && H5Tis_variable_str(ftype.id) > 0) {
    Hid mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.id, H5T_VARIABLE);
    H5Tset_cset(mem.id, H5Tget_cset(ftype.id));
    std::vector<char*> strings(n, nullptr);
    if (r.read(mem.id, strings.data()) < 0) throw std::runtime_error("cannot read strings");
    for (char* s : strings) {
      out += s != nullptr ? s : "(null)";
      out.push_back('\0');
    }
    // (HDF5 allocated the strings for the caller.)
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem.id, space.id, H5P_DEFAULT, strings.data());
#else
    H5Dvlen_reclaim(mem.id, space.id, H5P_DEFAULT, strings.data());
#endif
    return out;
  }
  Hid mem(cls == H5T_STRING ? H5Tcopy(ftype.id) : H5Tget_native_type(ftype.id, H5T_DIR_ASCEND), H5Tclose);
  std::string bytes(n * H5Tget_size(mem.id), '\0');
  if (n > 0 && r.read(mem.id, bytes.data()) < 0) throw std::runtime_error("cannot read values");
  return out + bytes;
}

using Contents = std::map<std::string, std::string>;  // object/attribute path -> content

#if H5_VERSION_GE(1, 12, 0)
using ObjectInfo = H5O_info2_t;
#else
using ObjectInfo = H5O_info_t;
#endif

void add_attributes(hid_t obj, const std::string& path, Contents& out) {
  ObjectInfo info;
#if H5_VERSION_GE(1, 12, 0)
  if (H5Oget_info3(obj, &info, H5O_INFO_NUM_ATTRS) < 0) throw std::runtime_error("cannot read object info");
#else
  if (H5Oget_info2(obj, &info, H5O_INFO_NUM_ATTRS) < 0) throw std::runtime_error("cannot read object info");
#endif
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    Hid a(H5Aopen_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    const ssize_t len = H5Aget_name(a.id, 0, nullptr);
    std::string name(static_cast<std::size_t>(len), '\0');
    H5Aget_name(a.id, name.size() + 1, name.data());
    if (path == "/" && name == "created_utc") continue;  // the run's clock time
    std::string value = content_of(AttributeReader(a.id));
    if (path == "/" && name == "config") {
      // The runs differ in block_rows on purpose: leave that line out.
      const auto at = value.find("\nblock_rows = ");
      if (at != std::string::npos) value.erase(at + 1, value.find('\n', at + 1) - at);
    }
    out[path + "@" + name] = std::move(value);
  }
}

struct VisitState {
  hid_t file;
  Contents* out;
  std::exception_ptr error;
};

herr_t visit(hid_t file, const char* name, const ObjectInfo* info, void* data) {
  auto& st = *static_cast<VisitState*>(data);
  try {
    std::string path = "/";
    if (std::strcmp(name, ".") != 0) path += name;
    Hid obj(H5Oopen(file, name, H5P_DEFAULT), H5Oclose);
    add_attributes(obj.id, path, *st.out);
    if (info->type == H5O_TYPE_DATASET) (*st.out)[path] = content_of(DatasetReader(obj.id));
  } catch (...) {
    st.error = std::current_exception();
    return -1;
  }
  return 0;
}

// Every object of the file, its attributes and, for a dataset, its values.
Contents read_contents(const fs::path& path) {
  Hid file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  Contents out;
  VisitState st{file.id, &out, nullptr};
#if H5_VERSION_GE(1, 12, 0)
  const herr_t rc = H5Ovisit3(file.id, H5_INDEX_NAME, H5_ITER_INC, visit, &st, H5O_INFO_BASIC);
#else
  const herr_t rc = H5Ovisit2(file.id, H5_INDEX_NAME, H5_ITER_INC, visit, &st, H5O_INFO_BASIC);
#endif
  if (st.error) std::rethrow_exception(st.error);
  if (rc < 0) throw std::runtime_error("cannot visit " + path.string());
  return out;
}

// The first difference between two contents, or "" if they are equal.
std::string first_difference(const Contents& a, const Contents& b) {
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end()) return k + " is missing";
    if (it->second != v) return k + " differs";
  }
  for (const auto& [k, v] : b) {
    if (a.find(k) == a.end()) return k + " is extra";
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  exospec::pipeline::skip_hdf5_shutdown_at_exit();  // as the README asks of programs that write files
  try {
    const long n_runs = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 1000;
    const fs::path dir = argc > 2 ? fs::path(argv[2]) : fs::current_path() / "soak_inprocess";
    const long spectra = argc > 3 ? std::strtol(argv[3], nullptr, 10) : 48;
    if (n_runs < 1 || spectra < 1) {
      std::fprintf(stderr, "usage: %s [N>=1] [WORKDIR] [SPECTRA>=1]\n", argv[0]);
      return 2;
    }
    fs::remove_all(dir);
    fs::create_directories(dir);

    auto sim = exospec::pipeline::load_simulation_config();
    sim.spectra = static_cast<std::uint64_t>(spectra);
    sim.seed = 20;
    sim.channels = {"euv", "fuv"};
    sim.limb_spectra_per_scan = 12;  // a few scans for the profile stage
    const fs::path input = dir / "in.h5";
    exospec::pipeline::simulate(sim, exospec::pipeline::default_catalogue(), input, true, 1);

    const auto t0 = std::chrono::steady_clock::now();
    Contents first;
    long rss_warm = 0, rss_first = 0, rss_max = 0;
    double run_seconds = 0.0;  // inside run()
    const std::uint64_t blocks[] = {1024, 16, 25};
    for (long i = 0; i < n_runs; ++i) {
      auto config = exospec::pipeline::load_run_config();  // `exospec run`'s configuration, every stage
      config.block_rows = blocks[i % 3];
      const int threads = 1 + static_cast<int>(i % 2);
      const fs::path output = dir / ("out_" + std::to_string(i) + ".h5");
      const auto t_run = std::chrono::steady_clock::now();
      const auto summary = exospec::pipeline::run(config, input, output, false, threads);
      run_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
      if (summary.spectra != static_cast<std::uint64_t>(spectra) || summary.channels.size() != 2) {
        std::fprintf(stderr, "run %ld: summary has %llu spectra, %zu channels\n", i,
                     static_cast<unsigned long long>(summary.spectra), summary.channels.size());
        return 1;
      }
      Contents c = read_contents(output);
      if (i == 0) {
        first = std::move(c);
      } else if (const std::string d = first_difference(first, c); !d.empty()) {
        std::fprintf(stderr, "run %ld (threads %d, block_rows %llu): output differs from run 0's: %s\n", i,
                     threads, static_cast<unsigned long long>(config.block_rows), d.c_str());
        return 1;
      }
      fs::remove(output);
      const long rss = vm_rss_kib();
      if (i == 0) rss_first = rss;
      if (i == std::min<long>(9, n_runs - 1)) rss_warm = rss;
      rss_max = std::max(rss_max, rss);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const long rss_last = vm_rss_kib();
    std::printf("in-process runs: %ld x exospec::pipeline::run on %ld spectra (euv, fuv; every stage), %.1f s "
                "(%.1f ms per run, %.1f of them in run())\n",
                n_runs, spectra, seconds, 1e3 * seconds / static_cast<double>(n_runs),
                1e3 * run_seconds / static_cast<double>(n_runs));
    std::printf("outputs: all equal to the first run's (%zu datasets and attributes)\n", first.size());
    std::printf("VmRSS: %ld KiB after run 1, %ld KiB after run %ld, %ld KiB after the last, max %ld KiB%s\n",
                rss_first, rss_warm, std::min<long>(10, n_runs), rss_last, rss_max,
                SOAK_SANITIZED ? " (AddressSanitizer: not checked)" : "");
    fs::remove_all(dir);
    if (!SOAK_SANITIZED && n_runs > 10 && static_cast<double>(rss_last) > 1.10 * static_cast<double>(rss_warm) + 4096) {
      std::fprintf(stderr, "VmRSS grew from %ld to %ld KiB over the runs\n", rss_warm, rss_last);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "soak_inprocess_runs: %s\n", e.what());
    return 1;
  }
}
