// The HDF5 layer alone: write and read blocks of whole rows of an N x P
// dataset through exospec::io, uncompressed and shuffle+deflate, in MB/s of
// uncompressed data. Inputs are built outside the timed loops: realistic
// photon-counting data (Poisson counts, mean 3/pixel) and float32 radiance.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <vector>

#include "exospec/io/file.hpp"
#include "exospec/kernels/random.hpp"

namespace {

using exospec::io::DType;
using exospec::io::File;
using exospec::io::FileWriter;
using exospec::io::WriteOptions;

constexpr std::uint64_t kRows = 8192, kPixels = 1024, kBlock = 256;

const std::vector<std::uint32_t>& counts_data() {
  static const std::vector<std::uint32_t> data = [] {
    std::vector<std::uint32_t> v(kRows * kPixels);
    auto rng = exospec::kernels::Rng::stream(1);
    for (auto& x : v) x = static_cast<std::uint32_t>(rng.poisson(3.0));
    return v;
  }();
  return data;
}

const std::vector<float>& radiance_data() {
  static const std::vector<float> data = [] {
    std::vector<float> v(kRows * kPixels);
    auto rng = exospec::kernels::Rng::stream(2);
    for (auto& x : v) x = static_cast<float>(20.0 + 5.0 * rng.normal());
    return v;
  }();
  return data;
}

std::filesystem::path bench_file(const char* name) {
  const auto dir = std::filesystem::temp_directory_path() / "exospec_bench_io";
  std::filesystem::create_directories(dir);
  return dir / name;
}

template <class T>
void write_file(const std::filesystem::path& path, const std::vector<T>& data, int level) {
  WriteOptions opt;
  opt.deflate_level = level;
  FileWriter w(path, opt, true);
  w.create_dataset("/d", exospec::io::DTypeOf<T>::value, {kRows, kPixels}, "1", "bench", true);
  for (std::uint64_t r0 = 0; r0 < kRows; r0 += kBlock) {
    w.write_rows<T>("/d", r0, std::span<const T>(data).subspan(r0 * kPixels, kBlock * kPixels));
  }
  w.commit();
}

template <class T>
const std::vector<T>& data_for();
template <>
const std::vector<std::uint32_t>& data_for<std::uint32_t>() {
  return counts_data();
}
template <>
const std::vector<float>& data_for<float>() {
  return radiance_data();
}

template <class T>
void BM_WriteRows(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const auto& data = data_for<T>();
  const auto path = bench_file("write.h5");
  for (auto _ : state) write_file(path, data, level);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size() * sizeof(T)));
  state.counters["file_MB"] = static_cast<double>(std::filesystem::file_size(path)) / 1e6;
}

template <class T>
void BM_ReadRows(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const auto& data = data_for<T>();
  const auto path = bench_file(level ? "read_z.h5" : "read.h5");
  write_file(path, data, level);  // set-up, not timed
  std::vector<T> block(kBlock * kPixels);
  for (auto _ : state) {
    const File f = File::open(path);
    for (std::uint64_t r0 = 0; r0 < kRows; r0 += kBlock) {
      f.read_rows<T>("/d", r0, std::span<T>(block));
      benchmark::DoNotOptimize(block.data());
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size() * sizeof(T)));
}

// The two halves of a read with the decompression moved off the HDF5 thread
// (io/stored_rows.hpp): fetching the stored chunks (the HDF5 thread's part)...
template <class T>
void BM_FetchRows(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const auto& data = data_for<T>();
  const auto path = bench_file(level ? "read_z.h5" : "read.h5");
  write_file(path, data, level);
  std::vector<T> block(kBlock * kPixels);
  exospec::io::StoredRows stored;
  for (auto _ : state) {
    const File f = File::open(path);
    for (std::uint64_t r0 = 0; r0 < kRows; r0 += kBlock) {
      f.fetch_rows<T>("/d", r0, std::span<T>(block), stored);
      benchmark::DoNotOptimize(stored.chunks());
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size() * sizeof(T)));
}

// ...and decoding them (any thread); the fetch is set-up, not timed.
template <class T>
void BM_DecodeRows(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const auto& data = data_for<T>();
  const auto path = bench_file(level ? "read_z.h5" : "read.h5");
  write_file(path, data, level);
  std::vector<T> out(data.size());
  std::vector<exospec::io::StoredRows> stored(kRows / kBlock);
  {
    const File f = File::open(path);
    for (std::uint64_t b = 0; b < kRows / kBlock; ++b) {
      f.fetch_rows<T>("/d", b * kBlock, std::span<T>(out).subspan(b * kBlock * kPixels, kBlock * kPixels),
                      stored[b]);
    }
  }
  for (auto _ : state) {
    for (std::uint64_t b = 0; b < kRows / kBlock; ++b) {
      const auto block = std::span<T>(out).subspan(b * kBlock * kPixels, kBlock * kPixels);
      for (std::size_t i = 0; i < stored[b].chunks(); ++i) stored[b].decode(i, block);
    }
    benchmark::DoNotOptimize(out.data());
  }
  if (out != data) state.SkipWithError("decoded values differ from those written");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size() * sizeof(T)));
}

BENCHMARK_TEMPLATE(BM_WriteRows, std::uint32_t)
    ->Arg(0)
    ->Arg(4)
    ->ArgName("deflate")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_WriteRows, float)
    ->Arg(0)
    ->Arg(4)
    ->ArgName("deflate")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_ReadRows, std::uint32_t)
    ->Arg(0)
    ->Arg(4)
    ->ArgName("deflate")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_ReadRows, float)
    ->Arg(0)
    ->Arg(4)
    ->ArgName("deflate")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_TEMPLATE(BM_FetchRows, std::uint32_t)
    ->Arg(0)
    ->Arg(4)
    ->ArgName("deflate")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_DecodeRows, std::uint32_t)
    ->Arg(0)
    ->Arg(4)
    ->ArgName("deflate")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
