// FileWriter / File: round trips of every element type in row blocks, with and
// without compression (through HDF5, and as stored chunks decoded outside
// it), and the atomic-output guarantees.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <numeric>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "exospec/error.hpp"
#include "exospec/io/file.hpp"
#include "test_support.hpp"

namespace exospec::io {
namespace {

template <class T>
std::vector<T> ramp(std::size_t n, double scale) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(static_cast<double>(i % 251) * scale);
  return v;
}

class RoundTrip : public ::testing::TestWithParam<int> {};

TEST_P(RoundTrip, EveryTypeInRowBlocks) {
  const auto dir = test::scratch_dir("roundtrip");
  const auto path = dir / "t.h5";
  const std::uint64_t n = 1000, p = 37;
  WriteOptions opt;
  opt.deflate_level = GetParam();
  opt.chunk_bytes = 4096;
  const auto u32 = ramp<std::uint32_t>(n * p, 7.0);
  const auto u8 = ramp<std::uint8_t>(n * p, 1.0);
  const auto f32 = ramp<float>(n * p, 0.37);
  const auto f64 = ramp<double>(n, 1.0 / 3.0);
  const auto i32 = ramp<std::int32_t>(n, -5.0);
  {
    FileWriter w(path, opt, false);
    w.create_dataset("/a/u32", DType::kU32, {n, p}, "count", "counts", true);
    w.create_dataset("/a/u8", DType::kU8, {n, p}, "1", "flags", true);
    w.create_dataset("/b/f32", DType::kF32, {n, p}, "R/nm", "radiance", true);
    w.create_dataset("/b/f64", DType::kF64, {n}, "s", "time", true);
    w.create_dataset("/b/i32", DType::kI32, {n}, "1", "ints", false);
    w.create_dataset("/c/scalar", DType::kF64, {}, "nm", "a scalar", false);
    w.create_dataset("/c/names", DType::kString, {3}, "", "names", false);
    // Uneven blocks that straddle chunk boundaries.
    for (std::uint64_t r0 = 0; r0 < n; r0 += 97) {
      const std::uint64_t rows = std::min<std::uint64_t>(97, n - r0);
      w.write_rows<std::uint32_t>("/a/u32", r0, std::span(u32).subspan(r0 * p, rows * p));
      w.write_rows<std::uint8_t>("/a/u8", r0, std::span(u8).subspan(r0 * p, rows * p));
      w.write_rows<float>("/b/f32", r0, std::span(f32).subspan(r0 * p, rows * p));
      w.write_rows<double>("/b/f64", r0, std::span(f64).subspan(r0, rows));
    }
    w.write<std::int32_t>("/b/i32", i32);
    const double s = 1.5;
    w.write<double>("/c/scalar", std::span<const double>(&s, 1));
    w.write_strings("/c/names", {"H I 121.567", "O I 130.4", "Mg II 279.553 \u00e9"});
    w.set_attribute("/", "schema", std::string_view("exospec"));
    w.set_attribute("/", "schema_version", std::int32_t{1});
    w.set_attribute("/b", "gain", 2.25);
    EXPECT_FALSE(std::filesystem::exists(path)) << "output visible before commit";
    w.commit();
  }
  EXPECT_TRUE(std::filesystem::exists(path));
  // No temporary left beside it.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);

  const File f = File::open(path);
  EXPECT_EQ(f.read_all<std::uint32_t>("/a/u32"), u32);
  EXPECT_EQ(f.read_all<std::uint8_t>("/a/u8"), u8);
  EXPECT_EQ(f.read_all<float>("/b/f32"), f32);
  EXPECT_EQ(f.read_all<double>("/b/f64"), f64);
  EXPECT_EQ(f.read_all<std::int32_t>("/b/i32"), i32);
  EXPECT_EQ(f.read_all<double>("/c/scalar"), std::vector<double>{1.5});
  EXPECT_EQ(f.read_strings("/c/names"),
            (std::vector<std::string>{"H I 121.567", "O I 130.4", "Mg II 279.553 \u00e9"}));
  EXPECT_EQ(f.string_attribute("/", "schema"), "exospec");
  EXPECT_EQ(f.int_attribute("/", "schema_version"), 1);
  EXPECT_EQ(f.attribute_type("/", "schema_version"), "int32");
  EXPECT_EQ(f.double_attribute("/b", "gain"), 2.25);
  EXPECT_EQ(f.string_attribute("/a/u32", "units"), "count");
  EXPECT_EQ(f.string_attribute("/a/u32", "description"), "counts");
  EXPECT_FALSE(f.has_attribute("/c/names", "units"));

  // Row block reads in the middle.
  std::vector<std::uint32_t> block(10 * p);
  f.read_rows<std::uint32_t>("/a/u32", 500, block);
  EXPECT_TRUE(std::equal(block.begin(), block.end(), u32.begin() + 500 * p));

  // The same blocks fetched as stored chunks and decoded outside HDF5
  // (chunks in reverse order, as concurrent decoding may finish them), blocks
  // that straddle chunks and a partial last chunk (1000 rows, 16 per chunk)
  // included. The contiguous dataset is read by HDF5 inside fetch_rows().
  auto fetch_decode = [&](const std::string& name, auto expected, std::uint64_t row_size,
                          bool stored_chunks) {
    using T = typename decltype(expected)::value_type;
    std::vector<T> got(expected.size());
    StoredRows stored;
    for (std::uint64_t r0 = 0; r0 < n; r0 += 97) {
      const std::uint64_t rows = std::min<std::uint64_t>(97, n - r0);
      const auto out = std::span(got).subspan(r0 * row_size, rows * row_size);
      f.fetch_rows<T>(name, r0, out, stored);
      EXPECT_EQ(stored.chunks() > 0, stored_chunks) << name << " at row " << r0;
      for (std::size_t i = stored.chunks(); i-- > 0;) stored.decode(i, out);
    }
    EXPECT_EQ(got, expected) << name;
  };
  fetch_decode("/a/u32", u32, p, true);
  fetch_decode("/a/u8", u8, p, true);
  fetch_decode("/b/f32", f32, p, true);
  fetch_decode("/b/f64", f64, 1, true);
  fetch_decode("/b/i32", i32, 1, false);

  const DatasetInfo info = f.dataset_info("/a/u32");
  EXPECT_EQ(info.dtype, DType::kU32);
  EXPECT_EQ(info.dims, (Dims{n, p}));
  // Largest power of two of rows in 4096 bytes: 37 * 4 = 148 bytes per row -> 16 rows.
  EXPECT_EQ(info.chunk_rows, 16u);
  EXPECT_EQ(f.dataset_info("/b/i32").chunk_rows, 0u);
  EXPECT_EQ(f.children("/"), (std::vector<std::string>{"a", "b", "c"}));
}

INSTANTIATE_TEST_SUITE_P(Compression, RoundTrip, ::testing::Values(0, 4));

TEST(FileWriter, UncommittedWriterLeavesNothing) {
  const auto dir = test::scratch_dir("uncommitted");
  {
    FileWriter w(dir / "out.h5", {}, false);
    w.create_dataset("/x", DType::kF64, {4}, "1", "x", false);
    EXPECT_TRUE(std::filesystem::exists(w.temporary_path()));
  }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 0);
}

TEST(FileWriter, RefusesToReplaceWithoutOverwrite) {
  const auto dir = test::scratch_dir("exists");
  const auto path = dir / "out.h5";
  std::ofstream(path) << "keep me";
  try {
    FileWriter w(path, {}, false);
    FAIL() << "expected FileError";
  } catch (const FileError& e) {
    EXPECT_EQ(e.file(), path.string());
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos);
  }
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  EXPECT_EQ(s, "keep me");
  FileWriter w(path, {}, true);  // overwrite allowed: the old file stays until commit
  w.create_dataset("/x", DType::kF64, {1}, "1", "x", false);
  w.commit();
  EXPECT_TRUE(File::open(path).exists("/x"));
}

TEST(FileWriter, MissingDirectoryIsOneClearError) {
  const auto dir = test::scratch_dir("nodir");
  EXPECT_THROW(FileWriter(dir / "no" / "such" / "out.h5", {}, false), FileError);
}

// ------------------------------------------------ a disk that fills up while writing
//
// The output's descriptor is pointed at /dev/full, where every write fails
// with ENOSPC. Each case runs in a fresh child process (death-test style
// "threadsafe") that exits with 0 only if the writer threw one FileError with
// the system's message on one line and left nothing behind, and if the
// process's exit handlers then ran without a crash: with HDF5 1.10, a file
// that fails to close leaves an ID behind on which HDF5's shutdown at exit
// crashes.

// Points the descriptor that has `path` open at /dev/full.
bool point_at_dev_full(const std::filesystem::path& path) {
  const int full = ::open("/dev/full", O_RDWR | O_CLOEXEC);
  if (full < 0) return false;
  bool done = false;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(entry.path(), ec) == path) {
      done = ::dup2(full, std::stoi(entry.path().filename().string())) >= 0;
      break;
    }
  }
  ::close(full);
  return done;
}

// Writes `rows` rows of 64 doubles (uncompressed) with the disk full from the
// first row on, then commits. Exits 0 if that failed as described above.
[[noreturn]] void write_to_a_full_disk(const std::string& name, std::uint64_t rows,
                                       const std::string& expected_step, int deflate_level = 0) {
  const auto dir = test::scratch_dir(name);
  std::string message;
#if defined(__SANITIZE_ADDRESS__)
  // HDF5 1.10 loses the buffer of a chunk whose write failed (1 MiB here);
  // LeakSanitizer is told to ignore what is allocated while the disk is full.
  __lsan::ScopedDisabler hdf5_loses_failed_chunks;
#endif
  try {
    WriteOptions options;
    options.deflate_level = deflate_level;
    FileWriter w(dir / "out.h5", options, false);
    w.create_dataset("/x", DType::kF64, {rows, 64}, "1", "x", true);
    if (!point_at_dev_full(w.temporary_path())) std::_Exit(10);
    const std::vector<double> block(1024 * 64, 1.0);
    for (std::uint64_t r0 = 0; r0 < rows; r0 += 1024) {
      w.write_rows<double>("/x", r0,
                           std::span(block).first(std::min<std::uint64_t>(1024, rows - r0) * 64));
    }
    w.commit();
  } catch (const FileError& e) {
    message = e.what();
  }
  if (message.find(expected_step) == std::string::npos) std::_Exit(11);
  if (message.find("No space left on device") == std::string::npos) std::_Exit(12);
  if (message.find('\n') != std::string::npos) std::_Exit(13);
  if (std::distance(std::filesystem::directory_iterator(dir), {}) != 0) std::_Exit(14);
  std::exit(0);  // exit handlers, HDF5's shutdown among them
}

TEST(FileWriterDiskFull, AWriteThatFailsBeforeTheCommitClosesTheFileCleanly) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Unfiltered chunks have no cache (they go straight to the file), so a
  // chunk write fails inside write_rows; the abandoned file must then close
  // cleanly, with no help at exit.
  EXPECT_EXIT(write_to_a_full_disk("diskfull_rows", 1 << 14, "cannot write rows"),
              ::testing::ExitedWithCode(0), "");
}

TEST(FileWriterDiskFull, AFlushThatFailsAtTheCommitIsSafeWithTheShutdownSkipped) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // A few rows of a compressed dataset stay in the chunk cache until the
  // commit's flush, which fails. HDF5 1.10 cannot close that file cleanly;
  // skip_hdf5_shutdown_at_exit (what the exospec command does first) keeps
  // the exit from crashing.
  EXPECT_EXIT(
      {
        skip_hdf5_shutdown_at_exit();
        write_to_a_full_disk("diskfull_commit", 16, "cannot flush output file", 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(File, ReadingBeyondTheRowsIsAnError) {
  const auto dir = test::scratch_dir("beyond");
  {
    FileWriter w(dir / "t.h5", {}, false);
    w.create_dataset("/x", DType::kF64, {10, 2}, "1", "x", true);
    w.commit();
  }
  const File f = File::open(dir / "t.h5");
  std::vector<double> buf(6);
  EXPECT_THROW(f.read_rows<double>("/x", 8, buf), FileError);
  std::vector<double> odd(3);
  EXPECT_THROW(f.read_rows<double>("/x", 0, odd), FileError);
  StoredRows stored;
  EXPECT_THROW(f.fetch_rows<double>("/x", 8, buf, stored), FileError);
  EXPECT_THROW(f.fetch_rows<double>("/x", 0, odd, stored), FileError);
  // Chunks never written hold the fill value, which HDF5 supplies.
  std::vector<double> unwritten(4, 7.0);
  f.fetch_rows<double>("/x", 0, unwritten, stored);
  EXPECT_EQ(stored.chunks(), 0u);
  EXPECT_EQ(unwritten, std::vector<double>(4, 0.0));
  try {
    f.read_all<double>("/missing");
    FAIL();
  } catch (const SchemaError& e) {
    EXPECT_EQ(e.object(), "/missing");
  }
}

}  // namespace
}  // namespace exospec::io
