#pragma once
// The exospec command as a function, for its main() (cli/main.cpp) and for
// the command-line fuzz target (fuzz/fuzz_cli.cpp). Not part of the library:
// it prints (help on stdout, one error line on stderr) and returns the exit
// code: 0, 1 for an error, CLI11's codes (2 and up) for a bad command line,
// 128 + the signal for an interrupted run.
namespace exospec::cli {

enum class Mode {
  kRun,        // do what the command line asks
  kParseOnly,  // parse it and read and check its configuration files and
               // options, then stop before any HDF5 file is read or written
};

int command(int argc, char** argv, Mode mode = Mode::kRun);

}  // namespace exospec::cli
