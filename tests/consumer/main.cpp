// Uses exospec as a library: simulate a small limb scan into a file, open it
// through the data contract, and print the mean counts against altitude.
#include <cstdio>
#include <filesystem>
#include <vector>

#include "exospec/error.hpp"
#include "exospec/io/input_file.hpp"
#include "exospec/pipeline/simulate.hpp"

int main(int argc, char** argv) {
  const std::filesystem::path out = argc > 1 ? argv[1] : "consumer_scan.h5";
  try {
    auto config = exospec::pipeline::load_simulation_config();
    config.spectra = 50;
    config.channels = {"euv"};
    exospec::pipeline::simulate(config, exospec::pipeline::default_catalogue(), out, true);
    const auto in = exospec::io::InputFile::open(out);
    const auto P = in.pixels("euv");
    std::vector<std::uint32_t> counts(10 * P);
    std::vector<double> altitude(10);
    for (std::uint64_t row0 = 0; row0 < in.spectra(); row0 += 10) {
      in.read_counts("euv", row0, counts);
      in.read_altitude(row0, altitude);
      double total = 0;
      for (auto c : counts) total += c;
      std::printf("rows %3llu-%3llu  altitude %7.1f km  mean counts/spectrum %9.1f\n",
                  static_cast<unsigned long long>(row0), static_cast<unsigned long long>(row0 + 9),
                  altitude[0], total / 10.0);
    }
  } catch (const exospec::Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
  return 0;
}
