// Fuzz target: the command line of `exospec` (cli/command.cpp), parsed as the
// program parses it, its configuration files read and checked, and stopped
// before any HDF5 file is read or written (exospec::cli::Mode::kParseOnly).
// The input is the arguments after the program name, separated by NUL bytes.
// Files the arguments name are looked up in a scratch directory made the
// working directory, which holds a few: run.toml, simulate.toml (valid),
// bad.toml (not TOML), in.h5 (empty), dir/ (a folder).
//
// Oracles: the command returns (no crash, no escaping exception, no
// sanitizer report); its exit code is 0, 1, or CLI11's for a bad command
// line (2 and up, below 128); when it is not 0 (and it was not a request for
// help), stderr holds exactly one line, "exospec: error: ...", of printable
// text; nothing but the scratch files is left in the working directory.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "command.hpp"
#include "fuzz_common.hpp"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define EXOSPEC_FUZZ_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define EXOSPEC_FUZZ_SANITIZED 1
#endif
#ifdef EXOSPEC_FUZZ_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

namespace {

namespace fs = std::filesystem;
constexpr const char* kTarget = "fuzz_cli";

struct Scratch {
  fs::path dir;
  int stderr_fd = -1;  // the process's own stderr, kept for reports
  int capture_fd = -1;  // where the command's stderr goes (a memfd)
  std::set<std::string> files;
};

Scratch make_scratch() {
  Scratch s;
  char tmpl[] = "/tmp/exospec-fuzz-cli.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) exospec_fuzz::bug(kTarget, "cannot make a work directory");
  s.dir = tmpl;
  std::ofstream(s.dir / "run.toml") << "[run]\nblock_rows = 64\n";
  std::ofstream(s.dir / "simulate.toml") << "[simulate]\nspectra = 10\n";
  std::ofstream(s.dir / "bad.toml") << "[run\nblock_rows = = 1\n";
  std::ofstream(s.dir / "in.h5") << "";
  fs::create_directory(s.dir / "dir");
  for (const auto& e : fs::directory_iterator(s.dir)) s.files.insert(e.path().filename().string());
  fs::current_path(s.dir);
  static fs::path to_remove;
  to_remove = s.dir;
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(to_remove, ec);
  });
  // Help and --version go to stdout: not looked at.
  if (std::freopen("/dev/null", "w", stdout) == nullptr) exospec_fuzz::bug(kTarget, "no /dev/null");
  s.stderr_fd = dup(2);
#ifdef EXOSPEC_FUZZ_SANITIZED
  // Sanitizer reports to the real stderr, not into the captured one.
  __sanitizer_set_report_fd(reinterpret_cast<void*>(static_cast<std::intptr_t>(s.stderr_fd)));
#endif
  s.capture_fd = memfd_create("exospec-fuzz-cli-stderr", 0);
  if (s.capture_fd < 0 || s.stderr_fd < 0) exospec_fuzz::bug(kTarget, "cannot capture stderr");
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Scratch scratch = make_scratch();
  // The arguments: NUL-separated (a trailing NUL adds no empty argument).
  std::vector<std::string> args{"exospec"};
  std::string cur;
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += static_cast<char>(data[i]);
    }
  }
  if (!cur.empty()) args.push_back(cur);
  if (args.size() > 64) return 0;  // (not a command line anyone types)
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::fflush(stderr);
  ftruncate(scratch.capture_fd, 0);
  lseek(scratch.capture_fd, 0, SEEK_SET);
  dup2(scratch.capture_fd, 2);
  int code = -1;
  std::string escaped;
  try {
    code = exospec::cli::command(static_cast<int>(args.size()), argv.data(),
                                 exospec::cli::Mode::kParseOnly);
  } catch (const std::exception& e) {
    escaped = e.what();
  } catch (...) {
    escaped = "(not a std::exception)";
  }
  std::fflush(stderr);
  dup2(scratch.stderr_fd, 2);
  std::string err;
  {
    const off_t n = lseek(scratch.capture_fd, 0, SEEK_END);
    err.resize(static_cast<std::size_t>(n > 0 ? n : 0));
    if (n > 0) pread(scratch.capture_fd, err.data(), err.size(), 0);
  }
  std::string line;
  for (std::size_t i = 1; i < args.size(); ++i) line += (i > 1 ? " | " : "") + args[i];
  if (!escaped.empty()) exospec_fuzz::bug(kTarget, "exception escaped the command: " + escaped, line);
  if (code < 0 || code >= 128) {
    exospec_fuzz::bug(kTarget, "exit code " + std::to_string(code), line + "\n" + err);
  }
  if (code != 0) {
    const std::string prefix = "exospec: error: ";
    bool ok = err.size() > prefix.size() + 1 && err.compare(0, prefix.size(), prefix) == 0 &&
              err.back() == '\n';
    for (std::size_t i = 0; ok && i + 1 < err.size(); ++i) {
      const auto u = static_cast<unsigned char>(err[i]);
      ok = u >= 0x20 && u != 0x7f;
    }
    if (!ok) {
      exospec_fuzz::bug(kTarget, "exit code " + std::to_string(code) + " without one error line",
                        line + "\n--- stderr ---\n" + err);
    }
  }
  for (const auto& e : fs::directory_iterator(scratch.dir)) {
    const auto name = e.path().filename().string();
    if (!scratch.files.count(name)) {
      exospec_fuzz::bug(kTarget, "a file left in the working directory: " + name, line);
    }
  }
  return 0;
}
