// exospec: the command-line tool (command.hpp). Every error reaches the user
// as one line on stderr ("exospec: error: <file>: <object>: <message>") and a
// non-zero exit.
#include "command.hpp"

#include <glob.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <string>

#include "exospec/error.hpp"
#include "exospec/pipeline/catalogue.hpp"
#include "exospec/pipeline/info.hpp"
#include "exospec/pipeline/profile.hpp"
#include "exospec/pipeline/report.hpp"
#include "exospec/pipeline/run.hpp"
#include "exospec/pipeline/simulate.hpp"
#include "exospec/time.hpp"
#include "exospec/version.hpp"
#if EXOSPEC_HAVE_MPI
#include <mpi.h>

#include "exospec/pipeline/run_mpi.hpp"
#endif

namespace {

using exospec::pipeline::FileInfo;

// This process's rank and the number of ranks (0 and 1 without MPI, or
// when main() did not start it: the fuzz target).
int mpi_rank() {
#if EXOSPEC_HAVE_MPI
  int started = 0;
  MPI_Initialized(&started);
  if (started != 0) {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
  }
#endif
  return 0;
}
int mpi_size() {
#if EXOSPEC_HAVE_MPI
  int started = 0;
  MPI_Initialized(&started);
  if (started != 0) {
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
  }
#endif
  return 1;
}

constexpr int kExitError = 1;

// The signal that asked us to stop (SIGINT, SIGTERM, SIGHUP), or 0.
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

// Thrown from the progress callback after a signal: the library unwinds, and
// the output writer removes its temporary file on the way out.
struct Interrupted : std::exception {
  const char* what() const noexcept override { return "interrupted"; }
};

// A one-line progress bar on stderr when it is a terminal (spectra done,
// spectra/s, ETA); it also turns a pending signal into Interrupted.
class Progress {
 public:
  Progress(std::string label, bool enabled)
      : label_(std::move(label)),
        enabled_(enabled && isatty(2)),
        start_(std::chrono::steady_clock::now()) {}
  void operator()(std::uint64_t done, std::uint64_t total) const {
    if (g_signal != 0) throw Interrupted();
    if (!enabled_) return;
    const double t =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = t > 0 ? static_cast<double>(done) / t : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0.0;
    const int width = 30;
    const int filled = static_cast<int>(width * static_cast<double>(done) / static_cast<double>(total));
    std::fprintf(stderr, "\r%s [%-*s] %llu/%llu spectra, %.0f/s, ETA %.0f s ", label_.c_str(),
                 width, std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                 rate, eta);
    if (done == total) std::fputc('\n', stderr);
  }

 private:
  std::string label_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
};

// The name of a fit status code (/fit/<ch>/status), as in the JSON report.
std::string fit_status_name(std::size_t status) {
  static constexpr const char* kNames[] = {"converged", "max_iterations", "stalled",
                                           "singular",  "too_few_pixels", "invalid_spectrum",
                                           "not_finite"};
  return status < std::size(kNames) ? kNames[status] : std::to_string(status);
}

void print_info_text(const FileInfo& info) {
  std::printf("file:            %s\n", info.path.c_str());
  std::printf("kind:            exospec %s file, schema version %lld\n", info.kind.c_str(),
              static_cast<long long>(info.schema_version));
  std::printf("spectra (N):     %llu\n", static_cast<unsigned long long>(info.spectra));
  std::printf("time:            %s .. %s (%.3f .. %.3f s since J2000)\n",
              exospec::format_utc(info.time_min_s).c_str(),
              exospec::format_utc(info.time_max_s).c_str(), info.time_min_s, info.time_max_s);
  std::printf("tangent alt.:    %.1f .. %.1f km\n", info.altitude_min_km, info.altitude_max_km);
  if (info.kind == "output") {
    std::printf("input:           %s (sha256 %s)\n", info.input_file.c_str(),
                info.input_sha256.c_str());
    std::printf("written:         %s by exospec %s\n", info.created_utc.c_str(),
                info.software_version.c_str());
    for (const auto& c : info.channels) {
      std::printf("channel %s:     ", c.name.c_str());
      for (std::size_t i = 0; i < c.products.size(); ++i) {
        std::printf("%s%s", i ? ", " : "", c.products[i].c_str());
      }
      if (c.pixels > 0) std::printf("; P = %llu pixels", static_cast<unsigned long long>(c.pixels));
      if (c.wavelength_max_nm > c.wavelength_min_nm) {  // (/calibrated holds the wavelengths)
        std::printf(", %.3f .. %.3f nm", c.wavelength_min_nm, c.wavelength_max_nm);
      }
      std::printf("\n");
      if (!c.fit_lines.empty()) {
        std::printf("                 fitted lines:");
        for (std::size_t i = 0; i < c.fit_lines.size(); ++i) {
          std::printf("%s %s", i ? "," : "", c.fit_lines[i].c_str());
        }
        std::printf("\n                 fits by status:");
        for (std::size_t st = 0; st < c.fit_status.size(); ++st) {
          if (c.fit_status[st] > 0) {
            std::printf(" %s %llu", fit_status_name(st).c_str(),
                        static_cast<unsigned long long>(c.fit_status[st]));
          }
        }
        std::printf("\n");
      }
    }
    std::printf("groups:         ");
    for (const auto& g : info.groups) std::printf(" %s", g.c_str());
    std::printf("\n");
    return;
  }
  for (const auto& c : info.channels) {
    std::printf(
        "channel %s:     P = %llu pixels, %.3f .. %.3f nm, %llu bad pixels, dead time %.3g s\n",
        c.name.c_str(), static_cast<unsigned long long>(c.pixels), c.wavelength_min_nm,
        c.wavelength_max_nm, static_cast<unsigned long long>(c.bad_pixels), c.dead_time_s);
    std::printf("                 exposure %.3f .. %.3f s, detector %.2f .. %.2f degC\n",
                c.exposure_min_s, c.exposure_max_s, c.temperature_min_c, c.temperature_max_c);
    if (!c.truth_lines.empty()) {
      std::printf("                 truth lines:");
      for (std::size_t i = 0; i < c.truth_lines.size(); ++i) {
        std::printf("%s %s", i ? "," : "", c.truth_lines[i].c_str());
      }
      std::printf("\n");
    }
  }
  std::printf("groups:         ");
  for (const auto& g : info.groups) std::printf(" %s", g.c_str());
  std::printf("\n");
}

nlohmann::json info_json(const FileInfo& info) {
  nlohmann::json j;
  j["file"] = info.path;
  j["kind"] = info.kind;
  j["schema_version"] = info.schema_version;
  j["spectra"] = info.spectra;
  j["time_s"] = {info.time_min_s, info.time_max_s};
  j["time_utc"] = {exospec::format_utc(info.time_min_s), exospec::format_utc(info.time_max_s)};
  j["tangent_altitude_km"] = {info.altitude_min_km, info.altitude_max_km};
  j["groups"] = info.groups;
  j["channels"] = nlohmann::json::object();
  if (info.kind == "output") {
    j["software_version"] = info.software_version;
    j["input_file"] = info.input_file;
    j["input_sha256"] = info.input_sha256;
    j["created_utc"] = info.created_utc;
    for (const auto& c : info.channels) {
      nlohmann::json cj;
      cj["products"] = c.products;
      if (c.pixels > 0) cj["pixels"] = c.pixels;
      if (c.wavelength_max_nm > c.wavelength_min_nm) {
        cj["wavelength_nm"] = {c.wavelength_min_nm, c.wavelength_max_nm};
      }
      if (!c.fit_lines.empty()) {
        cj["fit_lines"] = c.fit_lines;
        nlohmann::json f = nlohmann::json::object();
        for (std::size_t st = 0; st < c.fit_status.size(); ++st) {
          if (c.fit_status[st] > 0) f[fit_status_name(st)] = c.fit_status[st];
        }
        cj["fit_status"] = f;
      }
      j["channels"][c.name] = cj;
    }
    return j;
  }
  for (const auto& c : info.channels) {
    nlohmann::json cj;
    cj["pixels"] = c.pixels;
    cj["wavelength_nm"] = {c.wavelength_min_nm, c.wavelength_max_nm};
    cj["wavelength_coeffs"] = c.wavelength_coeffs;
    cj["bad_pixels"] = c.bad_pixels;
    cj["dead_time_s"] = c.dead_time_s;
    cj["exposure_s"] = {c.exposure_min_s, c.exposure_max_s};
    cj["detector_temperature_degC"] = {c.temperature_min_c, c.temperature_max_c};
    cj["truth_lines"] = c.truth_lines;
    j["channels"][c.name] = cj;
  }
  return j;
}

// The name of a profile status code (/profile/<ch>/status), as in the JSON report.
const char* profile_status_name(std::size_t st) {
  static constexpr const char* kNames[] = {"converged",         "not_detected",  "temperature_at_bound",
                                           "too_few_spectra",   "no_altitude_range", "singular",
                                           "unknown_mass"};
  return st < std::size(kNames) ? kNames[st] : "other";
}

nlohmann::json run_report_json(const exospec::pipeline::RunSummary& s, const std::string& in,
                               const std::string& out) {
  static constexpr const char* kBits[] = {"bad_pixel",           "saturated",
                                          "invalid_exposure",    "invalid_temperature",
                                          "particle_hit",        "bit5",
                                          "bit6",                "bit7"};
  nlohmann::json j;
  j["input"] = in;
  j["output"] = out;
  j["spectra"] = s.spectra;
  j["channels"] = s.channels;
  j["seconds"] = {{"total", s.seconds},
                  {"read", s.read_seconds},
                  {"decode", s.decode_seconds},
                  {"calibrate", s.calibrate_seconds},
                  {"denoise", s.denoise_seconds},
                  {"fit", s.fit_seconds},
                  {"write", s.write_seconds},
                  {"hash", s.hash_seconds}};
  j["spectra_per_second"] = s.seconds > 0 ? static_cast<double>(s.spectra) / s.seconds : 0.0;
  nlohmann::json q = nlohmann::json::object();
  for (std::size_t b = 0; b < s.quality_bit_pixels.size(); ++b) {
    if (b < 5 || s.quality_bit_pixels[b] > 0) q[kBits[b]] = s.quality_bit_pixels[b];
  }
  j["flagged_pixels"] = q;
  nlohmann::json f = nlohmann::json::object();
  for (std::size_t st = 0; st < s.fit_status.size(); ++st)
    f[fit_status_name(st)] = s.fit_status[st];
  j["fit_status"] = f;
  if (!s.profile_status.empty()) {
    nlohmann::json p = nlohmann::json::object();
    for (std::size_t st = 0; st < s.profile_status.size(); ++st) p[profile_status_name(st)] = s.profile_status[st];
    j["scans"] = s.scans;
    j["profile_status"] = p;
    j["seconds"]["profile"] = s.profile_seconds;
  }
  return j;
}

// Checked before the run, so that a report that cannot be written does not
// cost the run (nor follow a run's output with an error).
void check_report_path(const std::string& report, const std::string& in, const std::string& out) {
  namespace fs = std::filesystem;
  const fs::path p(report);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw exospec::FileError(report, "",
                             fs::exists(dir, ec) ? dir.string() + " is not a directory"
                                                 : "directory " + dir.string() + " does not exist");
  }
  if (fs::is_directory(p, ec))
    throw exospec::FileError(report, "", "the JSON report is a directory");
  for (const auto& other : {in, out}) {
    if (p.lexically_normal() == fs::path(other).lexically_normal() ||
        (fs::exists(p, ec) && fs::exists(other, ec) && fs::equivalent(p, other, ec))) {
      throw exospec::FileError(report, "", "the JSON report would replace " + other);
    }
  }
}

// Written under a temporary name and renamed, like the HDF5 outputs.
void write_report(const std::string& path, const nlohmann::json& report) {
  const std::string tmp = path + ".tmp-" + std::to_string(getpid());
  std::ofstream f(tmp);
  f << report.dump(2) << '\n';
  f.close();
  std::error_code ec;
  if (!f) {
    std::filesystem::remove(tmp, ec);
    throw exospec::FileError(path, "", "cannot write the JSON report");
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw exospec::FileError(path, "", "cannot write the JSON report: " + ec.message());
  }
}

void print_profile_statuses(const std::vector<std::uint64_t>& status) {
  std::uint64_t total = 0;
  for (auto c : status) total += c;
  std::fprintf(stderr, "     profiles (scans x lines): %llu", static_cast<unsigned long long>(total));
  for (std::size_t st = 0; st < status.size(); ++st) {
    if (status[st]) {
      std::fprintf(stderr, ", %s %llu", profile_status_name(st), static_cast<unsigned long long>(status[st]));
    }
  }
  std::fprintf(stderr, "\n");
}

// The profile part of `exospec report`: each line's fitted T, B_s and B_bg
// (medians over the converged scans, with the median sigma of one scan)
// beside the truth.
void print_profile_report(const std::vector<exospec::pipeline::ProfileReportRow>& rows,
                          const std::vector<std::string>& wanted, bool truth) {
  if (rows.empty()) return;
  std::printf("\nlimb profiles: median over the converged scans (+- the median sigma of one scan)%s\n",
              truth ? ", beside the truth" : "");
  std::printf("%-4s %-14s %9s %24s%s %22s%s %22s%s\n", "ch", "line", "ok/scans", "T (K)", truth ? "     truth" : "",
              "B_s (R)", truth ? "    truth" : "", "B_bg (R)", truth ? "    truth" : "");
  for (const auto& r : rows) {
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), r.line) == wanted.end()) continue;
    std::printf("%-4s %-14s %4zu/%-4zu", r.channel.c_str(), r.line.c_str(), r.converged, r.scans);
    for (const auto* v : {&r.temperature_K, &r.surface_brightness_R, &r.background_R}) {
      const bool t = v == &r.temperature_K;
      std::printf(t ? " %11.0f +- %9.0f" : " %9.2f +- %9.2f", v->median, v->typical_sigma);
      if (truth) std::printf(t ? " %9.0f" : " %8.2f", v->truth);
    }
    std::printf("\n");
  }
}

void print_run_summary(const exospec::pipeline::RunSummary& s, const std::string& out) {
  std::fprintf(stderr, "run: wrote %s: %llu spectra x", out.c_str(),
               static_cast<unsigned long long>(s.spectra));
  for (const auto& c : s.channels) std::fprintf(stderr, " %s", c.c_str());
  std::fprintf(stderr, " in %.2f s (%.0f spectra/s)\n", s.seconds,
               s.seconds > 0 ? static_cast<double>(s.spectra) / s.seconds : 0.0);
  std::fprintf(stderr,
               "     read %.2f s, decode %.2f s, calibrate %.2f s, denoise %.2f s, fit %.2f s, "
               "write %.2f s, input hash %.2f s\n",
               s.read_seconds, s.decode_seconds, s.calibrate_seconds, s.denoise_seconds, s.fit_seconds,
               s.write_seconds, s.hash_seconds);
  if (!s.fit_status.empty()) {
    std::uint64_t total = 0;
    for (auto c : s.fit_status) total += c;
    std::fprintf(stderr, "     line fits: %llu, converged %llu", static_cast<unsigned long long>(total),
                 static_cast<unsigned long long>(s.fit_status[0]));
    for (std::size_t st = 1; st < s.fit_status.size(); ++st) {
      if (s.fit_status[st]) {
        std::fprintf(stderr, ", status %zu: %llu", st,
                     static_cast<unsigned long long>(s.fit_status[st]));
      }
    }
    std::fprintf(stderr, "\n");
  }
  if (!s.profile_status.empty()) {
    std::fprintf(stderr, "     %llu limb scans, profile fits %.2f s\n", static_cast<unsigned long long>(s.scans),
                 s.profile_seconds);
    print_profile_statuses(s.profile_status);
  }
  std::fprintf(stderr, "     flagged pixels: bad %llu, saturated %llu, invalid exposure %llu, "
               "invalid temperature %llu, particle hit %llu\n",
               static_cast<unsigned long long>(s.quality_bit_pixels[0]),
               static_cast<unsigned long long>(s.quality_bit_pixels[1]),
               static_cast<unsigned long long>(s.quality_bit_pixels[2]),
               static_cast<unsigned long long>(s.quality_bit_pixels[3]),
               static_cast<unsigned long long>(s.quality_bit_pixels[4]));
}

// An error message as one line of printable text: control characters that a
// message echoes from the command line (a tab, a newline, an escape sequence)
// written as \t, \n, \x1b.
std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (u < 0x20 || u == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", u);
      out += hex;
    } else {
      out += c;
    }
  }
  return out;
}

// Comma-separated names that may contain spaces ("H I 121.567,Mg I 285.213").
std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const std::size_t comma = std::min(s.find(',', pos), s.size());
    std::string name = s.substr(pos, comma - pos);
    const auto b = name.find_first_not_of(' '), e = name.find_last_not_of(' ');
    if (b != std::string::npos) out.push_back(name.substr(b, e - b + 1));
    pos = comma + 1;
  }
  return out;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}


// ---- many files: `exospec run A.h5 B.h5 ... -O DIR`

namespace fs = std::filesystem;

// The inputs: each argument a file, or a glob pattern (quoted, for the
// command to expand: lists longer than a shell allows) that is not itself a
// file's name; then each line of --inputs-from (blank lines and # comments
// skipped).
std::vector<std::string> expand_inputs(const std::vector<std::string>& args, const std::string& list) {
  std::vector<std::string> out;
  auto add = [&](const std::string& a) {
    std::error_code ec;
    if (a.find_first_of("*?[") == std::string::npos || fs::exists(a, ec)) {
      out.push_back(a);
      return;
    }
    glob_t g{};
    const int rc = glob(a.c_str(), 0, nullptr, &g);
    if (rc == 0) {
      for (std::size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    }
    globfree(&g);
    if (rc == GLOB_NOMATCH) throw exospec::FileError(a, "", "no file matches this pattern");
    if (rc != 0) throw exospec::FileError(a, "", "cannot expand this pattern");
  };
  for (const auto& a : args) add(a);
  if (!list.empty()) {
    std::ifstream f(list);
    if (!f) throw exospec::FileError(list, "", "cannot read the list of inputs");
    std::string line;
    while (std::getline(f, line)) {
      const auto b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
      if (b == std::string::npos || line[b] == '#') continue;
      add(line.substr(b, e - b + 1));
    }
  }
  if (out.empty()) throw exospec::ConfigError("run", "", "no input given");
  return out;
}

struct ManyFiles {
  std::vector<std::string> inputs;
  std::string output_dir, config_file, report;
  exospec::pipeline::RunConfig config;
  std::vector<std::string> passed, passed_values;  // --stages/--channels/--products as given
  int threads = 0, jobs = 1;
  bool force = false, quiet = false;
};

struct FileOutcome {
  bool ran = false, ok = false;
  std::string error;  // the error line's text (without "exospec: error: ")
  std::uint64_t spectra = 0;
  double seconds = 0.0;
};

// One file in this process.
FileOutcome run_one(const ManyFiles& m, const std::string& in, const std::string& out) {
  FileOutcome o;
  o.ran = true;
  try {
    const auto s = exospec::pipeline::run(m.config, in, out, m.force, m.threads,
                                          [](std::uint64_t, std::uint64_t) {
                                            if (g_signal != 0) throw Interrupted();
                                          });
    o.ok = true;
    o.spectra = s.spectra;
    o.seconds = s.seconds;
  } catch (const Interrupted&) {
    o.error = in + ": interrupted by signal " + std::to_string(static_cast<int>(g_signal)) + "; no output written";
  } catch (const std::exception& e) {
    o.error = printable(e.what());
  }
  return o;
}

// One file per child process (--jobs): `exospec run IN -o OUT -q` with the
// same options; each child prints its own error line.
void run_children(const ManyFiles& m, const std::vector<std::string>& outputs, std::vector<FileOutcome>& outcomes) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = m.threads > 0 ? m.threads : std::max(1, cores / m.jobs);
  std::map<pid_t, std::size_t> running;
  std::size_t next = 0;
  // Each child's JSON report (for its spectra), in a folder of our own.
  char folder[] = "/tmp/exospec-jobs-XXXXXX";
  const bool reports = mkdtemp(folder) != nullptr;
  auto report_of = [&](std::size_t i) { return std::string(folder) + "/" + std::to_string(i) + ".json"; };
  auto spawn = [&](std::size_t i) {
    std::vector<std::string> args = {"exospec", "run", m.inputs[i], "-o", outputs[i], "-q", "--threads",
                                     std::to_string(threads)};
    if (!m.config_file.empty()) args.insert(args.end(), {"--config", m.config_file});
    for (std::size_t k = 0; k < m.passed.size(); ++k) args.insert(args.end(), {m.passed[k], m.passed_values[k]});
    if (m.force) args.emplace_back("-f");
    if (reports) args.insert(args.end(), {"--json-report", report_of(i)});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    outcomes[i].ran = true;
    if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) != 0) {
      outcomes[i].error = m.inputs[i] + ": cannot start a process for it";
      return;
    }
    running[pid] = i;
  };
  while (next < m.inputs.size() || !running.empty()) {
    while (g_signal == 0 && next < m.inputs.size() && static_cast<int>(running.size()) < m.jobs) spawn(next++);
    if (running.empty()) break;
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) {
        for (const auto& [p, i] : running) kill(p, g_signal != 0 ? static_cast<int>(g_signal) : SIGTERM);
        continue;
      }
      break;
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    FileOutcome& o = outcomes[it->second];
    o.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!o.ok) {
      o.error = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                    : "exit code " + std::to_string(WEXITSTATUS(status));
    } else if (reports) {
      std::ifstream f(report_of(it->second));
      const auto j = nlohmann::json::parse(f, nullptr, false);
      if (!j.is_discarded() && j.contains("spectra")) o.spectra = j["spectra"].get<std::uint64_t>();
    }
    running.erase(it);
  }
  if (reports) {
    std::error_code ec;
    fs::remove_all(folder, ec);
  }
}

int run_many(const ManyFiles& m) {
  const auto t0 = std::chrono::steady_clock::now();
  const int rank = mpi_rank(), size = mpi_size();
  if (m.jobs > 1 && size > 1) throw exospec::ConfigError("--jobs", "", "is for the serial run; under mpirun the ranks share the files");
  // Each output is named as its input, in the folder.
  std::error_code ec;
  if (rank == 0 && !fs::is_directory(m.output_dir, ec)) {
    if (fs::exists(m.output_dir, ec)) throw exospec::FileError(m.output_dir, "", "is not a directory");
    fs::create_directories(m.output_dir, ec);
    if (ec) throw exospec::FileError(m.output_dir, "", "cannot make the output folder: " + ec.message());
  }
  std::vector<std::string> outputs;
  std::map<std::string, std::string> by_name;
  for (const auto& in : m.inputs) {
    const std::string name = fs::path(in).filename().string();
    if (const auto [it, fresh] = by_name.emplace(name, in); !fresh) {
      throw exospec::FileError(in, "", "its output would have the same name as that of " + it->second + " in " + m.output_dir);
    }
    outputs.push_back((fs::path(m.output_dir) / name).string());
  }
  if (!m.report.empty()) check_report_path(m.report, m.inputs[0], outputs[0]);
#if EXOSPEC_HAVE_MPI
  if (size > 1) MPI_Barrier(MPI_COMM_WORLD);  // (the folder exists)
#endif

  std::vector<FileOutcome> outcomes(m.inputs.size());
  if (m.jobs > 1) {
    run_children(m, outputs, outcomes);
  } else {
    // In this process: file i on rank i mod R (all of them without MPI),
    // one after another, each with every thread of the rank.
    for (std::size_t i = static_cast<std::size_t>(rank); i < m.inputs.size(); i += static_cast<std::size_t>(size)) {
      if (g_signal != 0) break;
      outcomes[i] = run_one(m, m.inputs[i], outputs[i]);
      if (size == 1 && !outcomes[i].ok) std::fprintf(stderr, "exospec: error: %s\n", outcomes[i].error.c_str());
    }
  }
#if EXOSPEC_HAVE_MPI
  if (size > 1) {
    // Every rank's outcomes to rank 0, which prints the error lines.
    std::ostringstream text;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      const auto& o = outcomes[i];
      if (!o.ran) continue;
      text << i << '\t' << o.ok << '\t' << o.spectra << '\t' << o.seconds << '\t' << o.error << '\n';
    }
    const std::string mine = text.str();
    const int n = static_cast<int>(mine.size());
    std::vector<int> counts(static_cast<std::size_t>(size)), displs(static_cast<std::size_t>(size));
    MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::string all;
    if (rank == 0) {
      int total = 0;
      for (std::size_t r = 0; r < counts.size(); ++r) {
        displs[r] = total;
        total += counts[r];
      }
      all.resize(static_cast<std::size_t>(total));
    }
    MPI_Gatherv(mine.data(), n, MPI_CHAR, all.data(), counts.data(), displs.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
    int sig = static_cast<int>(g_signal);
    MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (g_signal == 0) g_signal = sig;
    if (rank == 0) {
      std::istringstream lines(all);
      std::string line;
      while (std::getline(lines, line)) {
        std::istringstream f(line);
        std::string idx, ok, spectra, seconds, error;
        std::getline(f, idx, '\t');
        std::getline(f, ok, '\t');
        std::getline(f, spectra, '\t');
        std::getline(f, seconds, '\t');
        std::getline(f, error);
        auto& o = outcomes[std::stoul(idx)];
        o.ran = true;
        o.ok = ok == "1";
        o.spectra = std::stoull(spectra);
        o.seconds = std::stod(seconds);
        o.error = error;
      }
      for (const auto& o : outcomes) {
        if (o.ran && !o.ok) std::fprintf(stderr, "exospec: error: %s\n", o.error.c_str());
      }
    }
  }
#endif
  std::size_t written = 0, failed = 0, skipped = 0;
  std::uint64_t spectra = 0;
  for (const auto& o : outcomes) {
    written += o.ok;
    failed += o.ran && !o.ok;
    skipped += !o.ran;
    spectra += o.spectra;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (rank == 0 && !m.report.empty()) {
    nlohmann::json j;
    j["output_dir"] = m.output_dir;
    j["written"] = written;
    j["failed"] = failed;
    j["not_run"] = skipped;
    j["spectra"] = spectra;
    j["seconds"] = seconds;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      nlohmann::json f;
      f["input"] = m.inputs[i];
      f["output"] = outputs[i];
      f["status"] = outcomes[i].ok ? "written" : outcomes[i].ran ? "failed" : "not run";
      if (outcomes[i].ran && !outcomes[i].ok) f["error"] = outcomes[i].error;
      if (outcomes[i].ok) f["spectra"] = outcomes[i].spectra;
      j["files"].push_back(f);
    }
    write_report(m.report, j);
  }
  if (rank == 0 && (!m.quiet || failed > 0 || skipped > 0)) {
    std::fprintf(stderr, "run: %zu of %zu files written to %s (%llu spectra) in %.2f s", written, outcomes.size(),
                 m.output_dir.c_str(), static_cast<unsigned long long>(spectra), seconds);
    if (failed > 0) std::fprintf(stderr, "; %zu failed", failed);
    if (skipped > 0) std::fprintf(stderr, "; %zu not run (interrupted)", skipped);
    std::fprintf(stderr, "\n");
  }
  if (g_signal != 0) return 128 + static_cast<int>(g_signal);
  return static_cast<int>(std::min<std::size_t>(failed, 125));
}

}  // namespace

namespace exospec::cli {


int command(int argc, char** argv, Mode mode) {
  const bool parse_only = mode == Mode::kParseOnly;
  // Under mpirun, rank 0 speaks for the job: the other ranks' errors reach
  // it (pipeline::RankFailed), and their output would repeat its own.
  if (mpi_size() > 1 && mpi_rank() != 0) {
    if (std::freopen("/dev/null", "w", stdout) == nullptr || std::freopen("/dev/null", "w", stderr) == nullptr) {
      return kExitError;
    }
  }
  CLI::App app{"exospec: calibrate, denoise and fit Phebus-like UV spectra of an exosphere"};
  app.set_version_flag("--version", std::string(exospec::kVersion));
  app.require_subcommand(1);

  // simulate
  auto* sim =
      app.add_subcommand("simulate", "Write a simulated Phebus-like input file with its truth");
  std::string sim_out, sim_preset, sim_channels, sim_config;
  std::uint64_t sim_spectra = 0, sim_seed = 0;
  int sim_threads = 0;
  bool sim_force = false, sim_quiet = false;
  sim->add_option("-o,--output", sim_out, "Output HDF5 file")->required();
  auto* o_preset =
      sim->add_option("--preset", sim_preset, "limb-scan or flyby (default: limb-scan)")
          ->check(CLI::IsMember({"limb-scan", "flyby"}));
  auto* o_channels = sim->add_option("--channels", sim_channels, "Comma-separated: euv,fuv");
  auto* o_spectra = sim->add_option("--spectra", sim_spectra, "Number of spectra N")
                        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));
  auto* o_seed = sim->add_option("--seed", sim_seed, "Random seed");
  sim->add_option("--config", sim_config,
                  "TOML file overriding the defaults (exospec config --defaults)")
      ->check(CLI::ExistingFile);
  sim->add_option("--threads", sim_threads, "Threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  sim->add_flag("-f,--force", sim_force, "Replace an existing output file");
  sim->add_flag("-q,--quiet", sim_quiet, "No progress or summary");

  // run
  auto* runc = app.add_subcommand("run", "Calibrate, denoise and fit an input file into an output file");
  std::string run_in, run_out, run_stages, run_channels, run_config, run_report, run_outdir, run_list;
  std::vector<std::string> run_inputs;
  int run_threads = 0, run_jobs = 1;
  bool run_force = false, run_quiet = false;
  runc->add_option("input", run_inputs,
                   "Input HDF5 file(s), never modified; with --output-dir, several files or quoted glob "
                   "patterns ('orbit_*.h5')");
  auto* o_out = runc->add_option("-o,--output", run_out, "Output HDF5 file (one input)");
  auto* o_outdir = runc->add_option("-O,--output-dir", run_outdir,
                                    "Folder for one output per input, each named as its input (made if missing)");
  o_out->excludes(o_outdir);
  runc->add_option("--inputs-from", run_list, "A file listing inputs (or patterns), one per line (with -O)")
      ->check(CLI::ExistingFile);
  runc->add_option("--jobs", run_jobs,
                   "With -O: files run at once, each in its own process (serial build; under mpirun the "
                   "ranks share the files)")
      ->check(CLI::Range(1, 1024));
  auto* o_stages = runc->add_option("--stages", run_stages,
                                    "Comma-separated stages, in pipeline order: calibrate,denoise,fit,profile");
  auto* o_run_channels = runc->add_option("--channels", run_channels, "Comma-separated: euv,fuv");
  std::string run_products;
  auto* o_products = runc->add_option(
      "--products", run_products,
      "Groups to write, comma-separated: calibrated,denoised,fit,profile (default: every stage run)");
  runc->add_option("--config", run_config,
                   "TOML file overriding the defaults (exospec config --defaults run)")
      ->check(CLI::ExistingFile);
  runc->add_option("--threads", run_threads, "Threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  runc->add_option("--json-report", run_report, "Write the run summary as JSON to this file");
  runc->add_flag("-f,--force", run_force, "Replace an existing output file");
  runc->add_flag("-q,--quiet", run_quiet, "No progress or summary");

  // report
  auto* rep = app.add_subcommand("report", "Fitted brightness against altitude and limb profiles (and the truth)");
  std::string rep_file, rep_truth, rep_lines;
  std::size_t rep_bins = 5;
  rep->add_option("file", rep_file, "Output file of exospec run")->required();
  rep->add_option("--truth", rep_truth, "The simulated input file, for its /truth");
  rep->add_option("--bins", rep_bins, "Altitude bins")->check(CLI::Range(1, 1000));
  rep->add_option("--lines", rep_lines, "Comma-separated line names (default: all)");

  // profile
  auto* prof = app.add_subcommand(
      "profile", "Fit limb profiles (surface brightness, temperature, background) to an output of run");
  std::string prof_in, prof_out, prof_config, prof_channels;
  int prof_threads = 0;
  bool prof_force = false, prof_quiet = false;
  prof->add_option("input", prof_in, "Output file of exospec run, with /fit (never modified)")->required();
  prof->add_option("-o,--output", prof_out, "Output HDF5 file (/profile)")->required();
  auto* o_prof_channels = prof->add_option("--channels", prof_channels, "Comma-separated: euv,fuv");
  prof->add_option("--config", prof_config,
                   "TOML file overriding the defaults ([scans] and [profile] of exospec config --defaults run)")
      ->check(CLI::ExistingFile);
  prof->add_option("--threads", prof_threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  prof->add_flag("-f,--force", prof_force, "Replace an existing output file");
  prof->add_flag("-q,--quiet", prof_quiet, "No summary");

  // info
  auto* info = app.add_subcommand("info", "Summarise an exospec file");
  std::string info_file;
  bool info_json_flag = false;
  info->add_option("file", info_file, "HDF5 file")->required();
  info->add_flag("--json", info_json_flag, "Machine-readable JSON on stdout");

  // config
  auto* cfg = app.add_subcommand("config", "Print the built-in configuration files");
  std::string cfg_which = "simulate";
  bool cfg_defaults = false;
  cfg->add_flag("--defaults", cfg_defaults, "Print the built-in defaults")->required();
  cfg->add_option("which", cfg_which,
                  "simulate (default), run, or lines (the line catalogue)")
      ->check(CLI::IsMember({"simulate", "run", "lines"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "exospec: error: %s (see exospec --help)\n", printable(e.what()).c_str());
    return e.get_exit_code() != 0 ? e.get_exit_code() : 2;
  }

  if (!parse_only) install_signal_handlers();
  auto dispatch = [&]() -> int {
  try {
    if (*sim) {
      auto config = exospec::pipeline::load_simulation_config(
          sim_config.empty() ? std::nullopt : std::optional<std::filesystem::path>(sim_config));
      if (*o_preset) config.preset = exospec::pipeline::parse_preset(sim_preset);
      if (*o_channels) config.channels = split_list(sim_channels);
      if (*o_spectra) config.spectra = sim_spectra;
      if (*o_seed) config.seed = sim_seed;
      if (*o_preset || *o_channels || *o_spectra || *o_seed) config.source = "command line";
      const auto catalogue = exospec::pipeline::default_catalogue();
      if (parse_only) {
        config.validate(catalogue);
        return 0;
      }
      const Progress progress("simulate", !sim_quiet);
      const auto on_progress = [&](std::uint64_t d, std::uint64_t t) { progress(d, t); };
#if EXOSPEC_HAVE_MPI
      int mpi_started = 0;
      MPI_Initialized(&mpi_started);
      const auto summary =
          mpi_started != 0
              ? exospec::pipeline::simulate_mpi(config, catalogue, sim_out, sim_force, sim_threads, on_progress,
                                                MPI_COMM_WORLD)
              : exospec::pipeline::simulate(config, catalogue, sim_out, sim_force, sim_threads, on_progress);
#else
      const auto summary =
          exospec::pipeline::simulate(config, catalogue, sim_out, sim_force, sim_threads, on_progress);
#endif
      if (!sim_quiet) {
        std::fprintf(stderr, "simulate: wrote %s: %llu spectra x", sim_out.c_str(),
                     static_cast<unsigned long long>(summary.spectra));
        for (const auto& c : summary.channels) std::fprintf(stderr, " %s", c.c_str());
        std::fprintf(stderr, " (%s preset, seed %llu) in %.2f s\n",
                     std::string(exospec::pipeline::preset_name(config.preset)).c_str(),
                     static_cast<unsigned long long>(config.seed), summary.seconds);
      }
    } else if (*runc) {
      auto config = exospec::pipeline::load_run_config(
          run_config.empty() ? std::nullopt : std::optional<std::filesystem::path>(run_config));
      if (*o_stages) config.stages = exospec::pipeline::parse_stages(run_stages, "--stages");
      if (*o_run_channels) {
        config.channels = split_list(run_channels);
        config.source = "--channels";
      }
      if (*o_products) {
        config.products = exospec::pipeline::parse_products(run_products, "--products");
        config.source = "--products";
      }
      config.validate();
      if (!*o_outdir) {
        if (!*o_out) throw exospec::ConfigError("run", "", "give the output: -o OUT (or -O DIR for one output per input)");
        if (run_inputs.size() != 1 || !run_list.empty()) {
          throw exospec::ConfigError("-o", "", "takes one input; for several, give an output folder with -O DIR");
        }
        if (run_jobs != 1) throw exospec::ConfigError("--jobs", "", "is for several inputs (-O DIR)");
        run_in = run_inputs[0];
      }
      if (*o_outdir) {
        ManyFiles many;
        many.inputs = expand_inputs(run_inputs, run_list);
        many.output_dir = run_outdir;
        many.config = config;
        many.threads = run_threads;
        many.jobs = run_jobs;
        many.force = run_force;
        many.quiet = run_quiet;
        many.report = run_report;
        for (auto* o : {o_stages, o_run_channels, o_products}) {
          if (*o) many.passed.push_back(o->get_name(false, true));
        }
        if (*o_stages) many.passed_values.push_back(run_stages);
        if (*o_run_channels) many.passed_values.push_back(run_channels);
        if (*o_products) many.passed_values.push_back(run_products);
        many.config_file = run_config;
        if (parse_only) return 0;
        return run_many(many);
      }
      if (!run_report.empty()) check_report_path(run_report, run_in, run_out);
      if (parse_only) return 0;
      const Progress progress("run", !run_quiet);
      const auto on_progress = [&](std::uint64_t d, std::uint64_t t) { progress(d, t); };
#if EXOSPEC_HAVE_MPI
      int mpi_started = 0;
      MPI_Initialized(&mpi_started);
      const auto s = mpi_started != 0 ? exospec::pipeline::run_mpi(config, run_in, run_out, run_force, run_threads,
                                                                   on_progress, MPI_COMM_WORLD)
                                      : exospec::pipeline::run(config, run_in, run_out, run_force, run_threads,
                                                               on_progress);
#else
      const auto s = exospec::pipeline::run(config, run_in, run_out, run_force, run_threads, on_progress);
#endif
      const nlohmann::json report = run_report_json(s, run_in, run_out);
      if (!run_report.empty() && mpi_rank() == 0) write_report(run_report, report);
      if (!run_quiet) print_run_summary(s, run_out);
    } else if (*rep) {
      if (parse_only) return 0;
      const auto rows = exospec::pipeline::fit_report(
          rep_file,
          rep_truth.empty() ? std::nullopt : std::optional<std::filesystem::path>(rep_truth),
          rep_bins);
      const auto wanted = split_names(rep_lines);
      const bool truth = !rep_truth.empty();  // a truth column only with --truth
      const auto profiles = exospec::pipeline::profile_report(
          rep_file, truth ? std::optional<std::filesystem::path>(rep_truth) : std::nullopt);
      if (rows.empty() && profiles.empty()) {
        throw exospec::FileError(rep_file, "/fit", "no fit or profile group (run the fit stage)");
      }
      if (!rows.empty()) {
        std::printf("%-4s %-14s %17s %6s %22s%s\n", "ch", "line", "altitude (km)", "fits", "fitted (R)",
                    truth ? "  truth (R)" : "");
      }
      for (const auto& r : rows) {
        if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), r.line) == wanted.end()) {
          continue;
        }
        std::printf("%-4s %-14s %7.0f .. %7.0f %6zu %10.2f +- %8.2f", r.channel.c_str(),
                    r.line.c_str(), r.altitude_min_km, r.altitude_max_km, r.spectra, r.fitted_mean,
                    r.fitted_error);
        if (truth) std::printf(" %10.2f", r.truth_mean);
        std::printf("\n");
      }
      print_profile_report(profiles, wanted, truth);
    } else if (*prof) {
      auto config = exospec::pipeline::load_run_config(
          prof_config.empty() ? std::nullopt : std::optional<std::filesystem::path>(prof_config));
      if (*o_prof_channels) {
        config.channels = split_list(prof_channels);
        config.source = "--channels";
      }
      if (parse_only) return 0;
      const auto s = exospec::pipeline::profile(config, prof_in, prof_out, prof_force, prof_threads);
      if (!prof_quiet) {
        std::fprintf(stderr, "profile: wrote %s: %llu scans of %llu spectra x", prof_out.c_str(),
                     static_cast<unsigned long long>(s.scans), static_cast<unsigned long long>(s.spectra));
        for (const auto& c : s.channels) std::fprintf(stderr, " %s", c.c_str());
        std::fprintf(stderr, " in %.2f s\n", s.seconds);
        print_profile_statuses(s.status);
      }
    } else if (*info) {
      if (parse_only) return 0;
      const auto fi = exospec::pipeline::inspect(info_file);
      if (info_json_flag) {
        std::cout << info_json(fi).dump(2) << '\n';
      } else {
        print_info_text(fi);
      }
    } else if (*cfg) {
      const auto text = cfg_which == "lines" ? exospec::pipeline::default_catalogue_text()
                        : cfg_which == "run" ? exospec::pipeline::default_run_config_text()
                                             : exospec::pipeline::default_simulation_config_text();
      std::fwrite(text.data(), 1, text.size(), stdout);
    }
  } catch (const Interrupted&) {
    if (isatty(2)) std::fputc('\n', stderr);
    std::fprintf(stderr, "exospec: error: interrupted by signal %d; no output written\n",
                 static_cast<int>(g_signal));
    return 128 + static_cast<int>(g_signal);
  } catch (const exospec::Error& e) {
    std::fprintf(stderr, "exospec: error: %s\n", printable(e.what()).c_str());
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exospec: error: %s\n", printable(e.what()).c_str());
    return kExitError;
  }
  return 0;
  };
  // Under mpirun, `run` and `simulate` run on every rank (run_mpi,
  // simulate_mpi); the other commands on rank 0 alone, whose exit code every
  // rank returns.
  if (!parse_only && !*runc && !*sim && mpi_size() > 1) {
#if EXOSPEC_HAVE_MPI
    int code = mpi_rank() == 0 ? dispatch() : 0;
    MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return code;
#endif
  }
  return dispatch();
}

}  // namespace exospec::cli
