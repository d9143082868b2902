// Uses exospec as a library, as an analysis program would: simulate a small
// limb scan, run the whole pipeline on it (calibrate, denoise, fit), and print
// the fitted Lyman-alpha brightness against tangent altitude beside the truth.
// Exits non-zero if a bin's mean disagrees with the truth by more than 5 of
// its standard errors, so the package test checks results, not just linking.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "exospec/error.hpp"
#include "exospec/io/file.hpp"
#include "exospec/io/input_file.hpp"
#include "exospec/pipeline/report.hpp"
#include "exospec/pipeline/run.hpp"
#include "exospec/pipeline/simulate.hpp"
#include "exospec/pipeline/stages.hpp"

int main(int argc, char** argv) {
  exospec::pipeline::skip_hdf5_shutdown_at_exit();  // first (HDF5 1.10 and a full disk)
  const std::filesystem::path scan = argc > 1 ? argv[1] : "consumer_scan.h5";
  std::filesystem::path out = scan;
  out.replace_extension(".out.h5");
  try {
    auto sim = exospec::pipeline::load_simulation_config();
    sim.spectra = 200;
    sim.channels = {"euv"};
    exospec::pipeline::simulate(sim, exospec::pipeline::default_catalogue(), scan, true);

    const auto config = exospec::pipeline::load_run_config();  // the defaults of `exospec run`
    const auto summary = exospec::pipeline::run(config, scan, out, true);
    std::printf("processed %llu spectra in %.2f s\n",
                static_cast<unsigned long long>(summary.spectra), summary.seconds);

    int bad = 0;
    std::printf("%-14s %19s %24s %10s\n", "line", "altitude (km)", "fitted (R)", "truth (R)");
    for (const auto& r : exospec::pipeline::fit_report(out, scan, 5)) {
      if (r.line != "H I 121.567") continue;
      std::printf("%-14s %8.0f .. %7.0f %12.2f +- %8.2f %10.2f\n", r.line.c_str(),
                  r.altitude_min_km, r.altitude_max_km, r.fitted_mean, r.fitted_error,
                  r.truth_mean);
      if (!(std::abs(r.fitted_mean - r.truth_mean) < 5.0 * r.fitted_error)) ++bad;
    }
    if (bad) {
      std::fprintf(stderr, "consumer: %d altitude bins disagree with the truth\n", bad);
      return 1;
    }

    // The same spectra through the stages in memory (the caller's arrays),
    // as an analysis program holding its own data would: Lyman-alpha of the
    // first 50 spectra, which must equal what run() wrote.
    const auto in = exospec::io::InputFile::open(scan);
    exospec::pipeline::ChannelStages euv(config, "euv", in.read_calibration("euv"));
    const std::size_t n = 50, P = euv.pixels(), L = euv.lines();
    std::vector<std::uint32_t> counts(n * P);
    std::vector<double> exposure(n), temperature(n);
    std::vector<float> temperature_f(n), rad(n * P), var(n * P), den(n * P), den_var(n * P), chi(n * L);
    std::vector<std::uint8_t> quality(n * P), status(n * L);
    std::vector<double> scale(n * P), offset(n * P), b(n * L), s(n * L), c(n * L), w(n * L);
    in.read_counts("euv", 0, counts);
    in.read_exposure("euv", 0, exposure);
    in.read_temperature("euv", 0, temperature_f);
    for (std::size_t r = 0; r < n; ++r) temperature[r] = temperature_f[r];
    const exospec::pipeline::CalibratedRows cal{rad, var, quality, scale, offset};
    euv.calibrate(counts, exposure, temperature, cal);
    euv.denoise(cal, {den, den_var});
    // (With the altitudes: the final solve takes its reference from the
    // neighbouring spectra of the same limb scan, as run() does.)
    std::vector<double> altitude(n);
    in.read_altitude(0, altitude);
    euv.fit(cal, den, {b, s, c, w, chi, status}, {altitude});
    const auto file = exospec::io::File::open(out);
    const auto from_run = file.read_all<double>("/fit/euv/brightness");
    std::size_t la = 0;
    while (la < L && euv.line_specs()[la].name != "H I 121.567") ++la;
    int differ = 0;
    for (std::size_t r = 0; r < n; ++r) differ += b[r * L + la] != from_run[r * L + la] ? 1 : 0;
    std::printf("in memory: Lyman-alpha of the first %zu spectra %s run()'s output (first: %.2f +- %.2f R)\n",
                n, differ ? "DIFFERS FROM" : "equals", b[la], s[la]);
    if (differ) return 1;
  } catch (const exospec::Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
  return 0;
}
