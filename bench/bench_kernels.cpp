// The compute kernels alone (no HDF5): inputs are built outside the timed loops
// and the batches are larger than the last-level cache, so that the numbers
// are memory-system numbers, not cache numbers. Beside them, a STREAM-like
// triad a[i] = b[i] + s c[i] on double arrays gives this machine's single-core
// memory bandwidth in the same binary (24 bytes per element, STREAM's count).
//
//   ./build/bench/bench_kernels --benchmark_filter='Triad|Calibrate'
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/random.hpp"

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
  // Bytes of input (the uint32 counts), as the issue asks; items = spectra.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(rows * kPixels * sizeof(std::uint32_t)));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rows));
  // Total memory traffic per pixel: 4 read + 4 + 4 + 1 written (+ write-allocate).
  state.counters["traffic_bytes_per_pixel"] = 4.0 + 2.0 * sizeof(Out) + 1.0;
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

}  // namespace

BENCHMARK_MAIN();
