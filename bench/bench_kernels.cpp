// The compute kernels alone (no HDF5): inputs are built outside the timed loops
// and the batches are larger than the last-level cache, so that the numbers
// are memory-system numbers, not cache numbers. Beside them, a STREAM-like
// triad a[i] = b[i] + s c[i] on double arrays gives this machine's single-core
// memory bandwidth in the same binary (24 bytes per element, STREAM's count).
//
//   ./build/bench/bench_kernels --benchmark_filter='Triad|Calibrate'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/denoise.hpp"
#include "exospec/kernels/fourier.hpp"
#include "exospec/kernels/random.hpp"
#include "exospec/kernels/line_fit.hpp"
#include "exospec/kernels/savgol.hpp"
#include "exospec/kernels/spectrum_model.hpp"
#include "exospec/pipeline/catalogue.hpp"
#include "exospec/pipeline/simulate.hpp"

namespace {

using exospec::kernels::Calibrator;
using exospec::kernels::Rng;

// ------------------------------------------------------------------ triad
void BM_Triad(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<double> a(n, 0.0), b(n, 1.0), c(n, 2.0);
  const double s = 3.0;
  for (auto _ : state) {
    double* __restrict pa = a.data();
    const double* __restrict pb = b.data();
    const double* __restrict pc = c.data();
    for (std::size_t i = 0; i < n; ++i) pa[i] = pb[i] + s * pc[i];
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(3 * n * sizeof(double)));
}
// 3 x 128 MiB: far beyond any cache.
BENCHMARK(BM_Triad)->Arg(std::int64_t{1} << 24)->Unit(benchmark::kMillisecond)->UseRealTime();

// The triad's bytes per second in this process (the best of 5 passes over 3 x
// 128 MiB, measured once, at the first call), for the kernels' share of it.
double triad_bytes_per_second() {
  static const double bps = [] {
    const std::size_t n = std::size_t{1} << 24;
    std::vector<double> a(n, 0.0), b(n, 1.0), c(n, 2.0);
    double best = 0.0;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      double* __restrict pa = a.data();
      const double* __restrict pb = b.data();
      const double* __restrict pc = c.data();
      for (std::size_t i = 0; i < n; ++i) pa[i] = pb[i] + 3.0 * pc[i];
      benchmark::DoNotOptimize(a.data());
      benchmark::ClobberMemory();
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, 3.0 * static_cast<double>(n * sizeof(double)) / sec);
    }
    return best;
  }();
  return bps;
}

// ------------------------------------------------------------ calibrate
constexpr std::size_t kPixels = 1024;

struct CalibrateInputs {
  std::vector<double> dark, flat, sens;
  std::vector<std::uint8_t> bad;
  std::vector<std::uint32_t> counts;
  std::vector<double> exposure, temperature;
};

const CalibrateInputs& calibrate_inputs(std::size_t rows) {
  static CalibrateInputs in;
  if (in.exposure.size() == rows) return in;
  auto rng = Rng::stream(7);
  in.dark.resize(kPixels);
  in.flat.resize(kPixels);
  in.sens.resize(kPixels);
  in.bad.assign(kPixels, 0);
  for (std::size_t p = 0; p < kPixels; ++p) {
    const double u = (static_cast<double>(p) - 511.5) / 511.5;
    in.sens[p] = 0.2 * std::pow(0.1, u * u);
    in.flat[p] = 1.0 + 0.03 * rng.normal();
    in.dark[p] = 0.02;
  }
  for (std::size_t k = 0; k < 6; ++k) in.bad[rng.below(kPixels)] = 1;
  in.counts.resize(rows * kPixels);
  for (auto& c : in.counts) c = static_cast<std::uint32_t>(rng.poisson(30.0));
  in.exposure.assign(rows, 8.0);
  in.temperature.assign(rows, 5.0);
  return in;
}

template <class Out>
void BM_Calibrate(benchmark::State& state) {
  const auto rows = static_cast<std::size_t>(state.range(0));
  const auto& in = calibrate_inputs(rows);
  const Calibrator cal({in.dark, in.flat, in.sens, in.bad, 0.5e-6, 0.0, 0.03}, {});
  std::vector<Out> radiance(rows * kPixels), variance(rows * kPixels);
  std::vector<std::uint8_t> quality(rows * kPixels);
  for (auto _ : state) {
    cal.run<std::uint32_t, Out>(in.counts, in.exposure, in.temperature, radiance, variance,
                                quality);
    benchmark::DoNotOptimize(radiance.data());
    benchmark::DoNotOptimize(variance.data());
    benchmark::ClobberMemory();
  }
  // Bytes moved: every byte read from and written to the per-spectrum
  // streams (4 of counts in; radiance, variance and quality out: 13 per
  // pixel in float); items = spectra. of_triad: that rate over the single-
  // core triad's, measured in the same process (triad_bytes_per_second).
  const double bytes_per_pixel = 4.0 + 2.0 * sizeof(Out) + 1.0;
  const double bytes = static_cast<double>(state.iterations()) * static_cast<double>(rows * kPixels) * bytes_per_pixel;
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rows));
  state.counters["traffic_bytes_per_pixel"] = bytes_per_pixel;
  state.counters["triad_GBps"] = triad_bytes_per_second() * 1e-9;
  state.counters["of_triad"] = benchmark::Counter(bytes / triad_bytes_per_second(), benchmark::Counter::kIsRate);
}
// 16384 spectra: 64 MiB of counts in, 144 MiB out.
BENCHMARK(BM_Calibrate<float>)->Arg(16384)->Unit(benchmark::kMillisecond)->UseRealTime();
// A block that fits in L2: the kernel's compute speed.
BENCHMARK(BM_Calibrate<float>)->Arg(16)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_CalibrateReference(benchmark::State& state) {
  const auto rows = static_cast<std::size_t>(state.range(0));
  const auto& in = calibrate_inputs(rows);
  const Calibrator cal({in.dark, in.flat, in.sens, in.bad, 0.5e-6, 0.0, 0.03}, {});
  std::vector<float> radiance(rows * kPixels), variance(rows * kPixels);
  std::vector<std::uint8_t> quality(rows * kPixels);
  for (auto _ : state) {
    cal.run_reference<std::uint32_t, float>(in.counts, in.exposure, in.temperature, radiance,
                                            variance, quality);
    benchmark::DoNotOptimize(radiance.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(rows * kPixels * sizeof(std::uint32_t)));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rows));
}
BENCHMARK(BM_CalibrateReference)->Arg(16)->Unit(benchmark::kMicrosecond)->UseRealTime();

// ------------------------------------------------------------ denoise
constexpr std::size_t kBatch = 4096;  // spectra per batch (16 MiB of float32)

// A batch of rows x 1024 spectra: Poisson-like radiance with a line. If the
// environment names a file (EXOSPEC_BENCH_BATCH, raw float64, written by
// bench/compare_scipy.py), that batch is used instead, so that scipy and this
// program filter the very same numbers.
template <class T>
const std::vector<T>& batch() {
  static const std::vector<T> data = [] {
    std::vector<T> v(kBatch * kPixels);
    if (const char* path = std::getenv("EXOSPEC_BENCH_BATCH")) {
      std::ifstream f(path, std::ios::binary);
      std::vector<double> d(v.size());
      f.read(reinterpret_cast<char*>(d.data()), static_cast<std::streamsize>(d.size() * 8));
      if (f) {
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(d[i]);
        return v;
      }
    }
    auto rng = Rng::stream(11);
    for (std::size_t r = 0; r < kBatch; ++r) {
      for (std::size_t p = 0; p < kPixels; ++p) {
        const double d = (static_cast<double>(p) - 500.0) / 4.0;
        const double mu = 20.0 + 3000.0 * std::exp(-0.5 * d * d);
        v[r * kPixels + p] = static_cast<T>(rng.poisson(mu));
      }
    }
    return v;
  }();
  return data;
}

template <class T>
const std::vector<T>& batch_variance() {
  static const std::vector<T> data = [] {
    std::vector<T> v(batch<T>());
    for (auto& x : v) x = std::max(x, T(1));
    return v;
  }();
  return data;
}

// Savitzky-Golay (window 11, order 3, mode interp) on the batch: compare with
// scipy.signal.savgol_filter(x, 11, 3, axis=-1) via bench/compare_scipy.py.
template <class T>
void BM_Savgol(benchmark::State& state) {
  exospec::kernels::SavgolSettings s;
  s.window = 11;
  s.polyorder = 3;
  const exospec::kernels::SavgolFilter f(kPixels, s);
  const auto& x = batch<T>();
  std::vector<T> y(x.size());
  for (auto _ : state) {
    f.apply_rows<T>(x, y);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
}
BENCHMARK(BM_Savgol<double>)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Savgol<float>)->Unit(benchmark::kMillisecond)->UseRealTime();

// The Fourier filter against a bare FFTW r2c + c2r pair of the same size (2P).
void BM_FftwBarePair(benchmark::State& state) {
  const exospec::kernels::FourierFilter f(kPixels, {});
  auto w = f.make_workspace();
  for (auto _ : state) {
    for (std::size_t r = 0; r < 256; ++r) f.bare_pair(w);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * 256));
}
BENCHMARK(BM_FftwBarePair)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_FourierLowpass(benchmark::State& state) {
  const bool with_variance = state.range(0) != 0;
  const exospec::kernels::FourierFilter f(kPixels, {exospec::kernels::FourierKind::kLowpass, 2.0});
  auto w = f.make_workspace();
  const std::size_t rows = 256;
  const auto x = std::span<const float>(batch<float>()).first(rows * kPixels);
  const auto v = std::span<const float>(batch_variance<float>()).first(rows * kPixels);
  const std::vector<std::uint8_t> q(rows * kPixels, 0);
  std::vector<float> y(rows * kPixels), yv(with_variance ? rows * kPixels : 0);
  for (auto _ : state) {
    f.run<float>(x, v, q, y, yv, w);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rows));
}
BENCHMARK(BM_FourierLowpass)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_FourierWiener(benchmark::State& state) {
  const exospec::kernels::FourierFilter f(kPixels, {exospec::kernels::FourierKind::kWiener, 0.0});
  auto w = f.make_workspace();
  const std::size_t rows = 64;
  const auto x = std::span<const float>(batch<float>()).first(rows * kPixels);
  const auto v = std::span<const float>(batch_variance<float>()).first(rows * kPixels);
  const std::vector<std::uint8_t> q(rows * kPixels, 0);
  std::vector<float> y(rows * kPixels), yv(rows * kPixels);
  for (auto _ : state) {
    f.run<float>(x, v, q, y, yv, w);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rows));
}
BENCHMARK(BM_FourierWiener)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Adaptive(benchmark::State& state) {
  const exospec::kernels::AdaptiveSmoother sm(kPixels, {});
  auto w = sm.make_workspace<float>();
  const std::size_t rows = 256;
  const auto x = std::span<const float>(batch<float>()).first(rows * kPixels);
  const auto v = std::span<const float>(batch_variance<float>()).first(rows * kPixels);
  const std::vector<std::uint8_t> q(rows * kPixels, 0);
  std::vector<float> y(rows * kPixels), yv(rows * kPixels);
  for (auto _ : state) {
    sm.run<float>(x, v, q, y, yv, w);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rows));
}
BENCHMARK(BM_Adaptive)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Anscombe(benchmark::State& state) {
  const exospec::kernels::AnscombeSmoother sm(kPixels, {});
  auto w = sm.make_workspace();
  const std::size_t rows = 256;
  const auto x = std::span<const float>(batch<float>()).first(rows * kPixels);
  const std::vector<std::uint8_t> q(rows * kPixels, 0);
  const std::vector<double> scale(rows * kPixels, 1.0), offset(rows * kPixels, 0.0);
  std::vector<float> y(rows * kPixels), yv(rows * kPixels);
  for (auto _ : state) {
    sm.run<float>(x, q, scale, offset, y, yv, w);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rows));
}
BENCHMARK(BM_Anscombe)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Calibrate with particle-hit removal on (what the denoise stage runs).
void BM_CalibrateDespike(benchmark::State& state) {
  const std::size_t rows = 16;
  const auto& in = calibrate_inputs(rows);
  exospec::kernels::CalibrateSettings settings;
  settings.despike.enabled = true;
  const Calibrator cal({in.dark, in.flat, in.sens, in.bad, 0.5e-6, 0.0, 0.03}, settings);
  std::vector<float> radiance(rows * kPixels), variance(rows * kPixels);
  std::vector<std::uint8_t> quality(rows * kPixels);
  for (auto _ : state) {
    cal.run<std::uint32_t, float>(in.counts, in.exposure, in.temperature, radiance, variance,
                                  quality);
    benchmark::DoNotOptimize(radiance.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rows));
}
BENCHMARK(BM_CalibrateDespike)->Unit(benchmark::kMicrosecond)->UseRealTime();

// ------------------------------------------------------------ fit
// The fit stage on simulated limb-scan spectra of one channel (calibrated in
// double from the simulator's expected counts plus Poisson noise): spectra per
// second through every window of the channel, linear path with two Poisson
// model-variance refits.
struct FitInputs {
  std::vector<float> radiance, variance;
  std::vector<std::uint8_t> quality;
  std::vector<double> scale, offset;
  std::vector<double> coeffs;
  std::vector<exospec::kernels::FitLineSpec> lines;
  double fwhm = 0;
  std::size_t rows = 0;
};

const FitInputs& fit_inputs(const std::string& ch) {
  static std::map<std::string, FitInputs> cache;
  auto it = cache.find(ch);
  if (it != cache.end()) return it->second;
  FitInputs in;
  auto config = exospec::pipeline::load_simulation_config();
  const auto catalogue = exospec::pipeline::default_catalogue();
  const exospec::pipeline::ChannelSimulator sim(config, ch, catalogue.channel(ch));
  const std::size_t P = sim.pixels(), L = sim.lines();
  in.rows = 512;
  in.coeffs = sim.wavelength_coeffs();
  in.fwhm = sim.model().lsf_fwhm_nm;
  for (const auto& l : catalogue.channel(ch)) in.lines.push_back({l.name, l.wavelength_nm, l.components});
  const Calibrator cal({sim.dark_rate(), sim.flat(), sim.sensitivity(), sim.bad_pixel(),
                        sim.model().dead_time_s, sim.model().dark_reference_temperature,
                        sim.model().dark_temperature_coeff},
                       {});
  in.radiance.resize(in.rows * P);
  in.variance.resize(in.rows * P);
  in.quality.resize(in.rows * P);
  in.scale.resize(in.rows * P);
  in.offset.resize(in.rows * P);
  std::vector<std::uint32_t> counts(P), hits(P);
  std::vector<double> truth(P), b(L), work(P);
  for (std::size_t r = 0; r < in.rows; ++r) {
    float temp = 0;
    const auto where = exospec::pipeline::pointing(config, r);
    sim.generate(r, where, {counts, hits, truth, b, &temp}, work);
    const std::vector<double> exposure = {config.exposure_s}, temperature = {temp};
    cal.run<std::uint32_t, float>(counts, exposure, temperature,
                                  std::span(in.radiance).subspan(r * P, P),
                                  std::span(in.variance).subspan(r * P, P),
                                  std::span(in.quality).subspan(r * P, P));
    cal.count_model(counts, config.exposure_s, temp, std::span(in.scale).subspan(r * P, P),
                    std::span(in.offset).subspan(r * P, P));
  }
  return cache.emplace(ch, std::move(in)).first->second;
}

// One spectrum per benchmark iteration, cycling through the inputs' rows;
// sets the "converged" counter (fraction of line fits with status 0).
template <class Inputs>
void fit_rows(benchmark::State& state, const exospec::kernels::LineFitter& fit, const Inputs& in,
              std::span<const float> denoised) {
  auto work = fit.make_workspace();
  const std::size_t L = fit.lines();
  std::vector<double> b(L), s(L), c(L), w(L);
  std::vector<float> chi(L);
  std::vector<std::uint8_t> st(L);
  const exospec::kernels::LineFitResult res{b, s, c, w, chi, st};
  std::size_t r = 0, converged = 0, fits = 0;
  for (auto _ : state) {
    const std::size_t o = r * kPixels;
    fit.fit<float>(std::span<const float>(in.radiance).subspan(o, kPixels),
                   std::span<const float>(in.variance).subspan(o, kPixels),
                   std::span<const std::uint8_t>(in.quality).subspan(o, kPixels),
                   std::span<const double>(in.scale).subspan(o, kPixels),
                   std::span<const double>(in.offset).subspan(o, kPixels), res, work,
                   denoised.empty() ? denoised : denoised.subspan(o, kPixels));
    benchmark::DoNotOptimize(b.data());
    for (auto v : st) converged += v == 0 ? 1 : 0;
    fits += L;
    r = (r + 1) % in.rows;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["converged"] = static_cast<double>(converged) / static_cast<double>(std::max<std::size_t>(fits, 1));
}

void BM_FitStage(benchmark::State& state, const std::string& ch, exospec::kernels::ShiftMode mode) {
  const auto& in = fit_inputs(ch);
  exospec::kernels::LineFitSettings set;
  set.fwhm_nm = in.fwhm;
  set.shift = mode;
  const exospec::kernels::LineFitter fit(in.coeffs, kPixels, in.lines, set);
  fit_rows(state, fit, in, {});
  state.counters["windows"] = static_cast<double>(fit.windows());
}
using exospec::kernels::ShiftMode;

// One fit window of 1, 2 or 3 lines (1.3 FWHM apart, a blend), linear path
// (centres fixed) or nonlinear (Levenberg-Marquardt with a free shift), with
// two Poisson model-variance refits: fits per second per core. FUV-like
// dispersion (0.166 nm/pixel, FWHM 1.5 nm: 9 pixels per FWHM), 20 R lines on
// 0.5 R/nm, 2.4 counts per R/nm per pixel; 256 spectra of Poisson counts.
struct WindowInputs {
  std::vector<float> radiance, variance, denoised;
  std::vector<std::uint8_t> quality;
  std::vector<double> scale, offset, coeffs;
  std::vector<exospec::kernels::FitLineSpec> lines;
  std::size_t rows = 256;
};

WindowInputs window_inputs(int nlines, double shift_nm) {
  WindowInputs in;
  in.coeffs = {145.0, 0.1662, 3.2e-7};
  const double fwhm = 1.5;
  for (int j = 0; j < nlines; ++j) {
    const double l0 = 200.0 + 1.3 * fwhm * j;
    std::string name = "line ";
    name += static_cast<char>('a' + j);
    in.lines.push_back({name, l0, {{l0, 1.0}}});
  }
  std::vector<double> edges(kPixels + 1), truth(kPixels, 0.5);
  exospec::kernels::pixel_edges(in.coeffs, edges);
  for (const auto& l : in.lines) {
    std::vector<exospec::kernels::LineComponent> c = {{l.wavelength_nm + shift_nm, 1.0}};
    exospec::kernels::add_line(exospec::kernels::make_line_profile(edges, c, fwhm), 20.0, truth);
  }
  auto rng = Rng::stream(7, static_cast<std::uint64_t>(nlines));
  const double scale = 2.4, offset = 0.16;
  for (auto* v : {&in.radiance, &in.variance, &in.denoised}) v->resize(in.rows * kPixels);
  in.quality.assign(in.rows * kPixels, 0);
  in.scale.assign(in.rows * kPixels, scale);
  in.offset.assign(in.rows * kPixels, offset);
  for (std::size_t r = 0; r < in.rows; ++r) {
    for (std::size_t p = 0; p < kPixels; ++p) {
      const double c = static_cast<double>(rng.poisson(truth[p] * scale + offset));
      in.radiance[r * kPixels + p] = static_cast<float>((c - offset) / scale);
      in.variance[r * kPixels + p] = static_cast<float>(std::max(c, 1.0) / (scale * scale));
      in.denoised[r * kPixels + p] = static_cast<float>(truth[p]);
    }
  }
  // bench/compare_curve_fit.py fits the same spectra with scipy: it asks for
  // them with EXOSPEC_BENCH_DUMP (a directory): radiance then variance, float32.
  if (const char* dir = std::getenv("EXOSPEC_BENCH_DUMP")) {
    std::ofstream f(std::string(dir) + "/fit_window_" + std::to_string(nlines) + ".f32", std::ios::binary);
    f.write(reinterpret_cast<const char*>(in.radiance.data()),
            static_cast<std::streamsize>(in.radiance.size() * sizeof(float)));
    f.write(reinterpret_cast<const char*>(in.variance.data()),
            static_cast<std::streamsize>(in.variance.size() * sizeof(float)));
  }
  return in;
}

void BM_FitWindow(benchmark::State& state) {
  const int nlines = static_cast<int>(state.range(0));
  const bool nonlinear = state.range(1) != 0;
  // refits:0 is the work scipy's curve_fit does (weights fixed at the
  // calibrated variance, one fit); refits:2 is exospec's default.
  const int refits = static_cast<int>(state.range(2));
  static std::map<int, WindowInputs> cache;
  if (!cache.count(nlines)) cache.emplace(nlines, window_inputs(nlines, 0.1));
  const auto& in = cache.at(nlines);
  exospec::kernels::LineFitSettings set;
  set.fwhm_nm = 1.5;
  set.shift = nonlinear ? ShiftMode::kFree : ShiftMode::kFixed;
  set.refine_iterations = refits;
  const exospec::kernels::LineFitter fit(in.coeffs, kPixels, in.lines, set);
  fit_rows(state, fit, in, in.denoised);
  state.counters["pixels"] = static_cast<double>(fit.window_size(0));
}
BENCHMARK(BM_FitWindow)
    ->ArgsProduct({{1, 2, 3}, {0, 1}, {2, 0}})
    ->ArgNames({"lines", "nonlinear", "refits"})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_FitStage, fuv_linear, std::string("fuv"), ShiftMode::kFixed)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_FitStage, fuv_tied, std::string("fuv"), ShiftMode::kTied)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_FitStage, fuv_free, std::string("fuv"), ShiftMode::kFree)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_FitStage, euv_linear, std::string("euv"), ShiftMode::kFixed)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_FitStage, euv_tied, std::string("euv"), ShiftMode::kTied)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_FitStage, euv_free, std::string("euv"), ShiftMode::kFree)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
