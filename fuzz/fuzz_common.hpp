#pragma once
// Shared by the fuzz targets (fuzz/README in docs/RELIABILITY.md): the input
// contract of exospec's text parsers. A bad input raises exospec::Error (a
// FileError, SchemaError or ConfigError) with one non-empty line of message;
// any other exception type is a bug, reported by aborting (libFuzzer and the
// replay program both record an abort as a crash).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <typeinfo>

#include "exospec/error.hpp"

namespace exospec_fuzz {

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return size == 0 ? std::string_view() : std::string_view(reinterpret_cast<const char*>(data), size);
}

// A bug: print what and why, then abort.
[[noreturn]] inline void bug(const char* target, const std::string& what,
                             std::string_view detail = {}) {
  std::fprintf(stderr, "%s: BUG: %s\n", target, what.c_str());
  if (!detail.empty()) {
    std::fprintf(stderr, "---\n%.*s\n---\n", static_cast<int>(detail.size()), detail.data());
  }
  std::fflush(stderr);
  std::abort();
}

// Checks an expected error's message: not empty, one line of text (no
// control character: input echoed in a message must come escaped, or a
// carriage return, escape sequence or NUL from the file reaches the terminal).
inline void check_message(const char* target, const exospec::Error& e) {
  const std::string_view m = e.what();
  if (m.empty()) bug(target, "exospec::Error with an empty message");
  for (const char c : m) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      bug(target, "exospec::Error message holds control character " + std::to_string(u) +
                      (u == '\n' || u == '\r' ? " (not one line)" : ""), m);
    }
  }
}

// Runs f(): returns normally or with an exospec::Error (true: f returned, the
// input was accepted); aborts on any other exception.
template <class F>
bool accepted(const char* target, F&& f) {
  // EXOSPEC_FUZZ_VERBOSE=1 (for the replay program): print each outcome.
  static const bool verbose = std::getenv("EXOSPEC_FUZZ_VERBOSE") != nullptr;
  try {
    f();
    if (verbose) std::fprintf(stderr, "%s: accepted\n", target);
    return true;
  } catch (const exospec::Error& e) {
    check_message(target, e);
    if (verbose) std::fprintf(stderr, "%s: error: %s\n", target, e.what());
    return false;
  } catch (const std::exception& e) {
    bug(target, std::string("unexpected exception ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    bug(target, "unexpected exception of a non-std type");
  }
}

}  // namespace exospec_fuzz
