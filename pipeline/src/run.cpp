#include "exospec/pipeline/run.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>

#include "exospec/error.hpp"
#include "exospec/io/contract_writer.hpp"
#include "exospec/io/file.hpp"
#include "exospec/io/hash.hpp"
#include "exospec/io/input_file.hpp"
#include "exospec/io/schema.hpp"
#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/spectrum_model.hpp"
#include "exospec/pipeline/profile.hpp"
#include "exospec/pipeline/stages.hpp"

namespace exospec::pipeline {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One channel's stages and its per-block buffers.
struct ChannelWork {
  ChannelStages stages;  // (its channel() and pixels() name the channel)
  std::optional<ChannelProfiles> profiles;  // the profile stage
  // Two sets of block buffers: the I/O thread reads the next block into one
  // and writes the previous one from it while the compute threads work on
  // the other.
  struct Slot {
    std::vector<double> fit_b, fit_s, fit_c, fit_w;
    std::vector<float> fit_chi2;
    std::vector<std::uint8_t> fit_status;
    std::vector<std::uint32_t> counts;
    io::StoredRows stored_counts;  // counts as stored, until decoded into `counts`
    std::vector<double> exposure, temperature;
    std::vector<float> temperature_f, radiance, variance, denoised, denoised_variance;
    std::vector<double> scale, offset;  // count model rows (anscombe, fit)
    std::vector<std::uint8_t> quality;
  };
  std::array<Slot, 2> slots;

  ChannelWork(const std::string& ch, const io::InputFile& in, const RunConfig& config, int threads,
              const std::string& wisdom)
      : stages(config, ch, in.read_calibration(ch), threads, wisdom) {}
};

// One long-lived thread that runs the stages of a block while the calling
// thread does HDF5 I/O. (A thread per block would also work, but each new
// thread costs a malloc arena and an OpenMP team of its own.) The destructor
// lets a running job finish before it returns, so buffers declared before
// the ComputeThread outlive every job.
class ComputeThread {
 public:
  ComputeThread() : thread_([this] { loop(); }) {}
  ComputeThread(const ComputeThread&) = delete;
  ComputeThread& operator=(const ComputeThread&) = delete;
  ~ComputeThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void start(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = std::move(job);
      done_ = false;
    }
    cv_.notify_all();
  }
  // Waits for the job; rethrows what it threw.
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return done_; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || job_; });
      if (!job_) return;  // stop, and nothing left to run
      auto job = std::move(job_);
      job_ = nullptr;
      lock.unlock();
      std::exception_ptr error;
      try {
        job();
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      error_ = error;
      done_ = true;
      cv_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::function<void()> job_;
  std::exception_ptr error_;
  bool done_ = true, stop_ = false;
  std::thread thread_;  // last: starts after the members above exist
};

// Decodes the stored chunks of a block on `threads` OpenMP threads, then
// forgets them. The first error is rethrown after the loop.
void decode_chunks(io::StoredRows& stored, std::span<std::uint32_t> out, int threads) {
  const auto n = static_cast<std::int64_t>(stored.chunks());
  if (n == 0) return;
  std::exception_ptr error;
#pragma omp parallel for num_threads(threads) schedule(dynamic)
  for (std::int64_t i = 0; i < n; ++i) {
    try {
      stored.decode(static_cast<std::size_t>(i), out);
    } catch (...) {
#pragma omp critical(exospec_decode_error)
      if (!error) error = std::current_exception();
    }
  }
  stored.clear();
  if (error) std::rethrow_exception(error);
}

std::vector<std::string> select_channels(const RunConfig& config, const io::InputFile& in) {
  if (config.channels.empty()) return in.channels();
  std::vector<std::string> out;
  for (auto ch : io::schema::kChannels) {
    if (std::find(config.channels.begin(), config.channels.end(), ch) == config.channels.end()) {
      continue;
    }
    if (!in.has_channel(ch)) {
      throw FileError(in.path(), io::schema::raw_group(ch),
                      "channel " + std::string(ch) + " was asked for but is not in the file");
    }
    out.emplace_back(ch);
  }
  return out;
}

}  // namespace

namespace {

// The input must stay as it was while it is read: its data, its hash (read
// separately, on another thread) and the path recorded in the output's
// provenance must describe one file. A rename over it, a truncation, a write
// or its removal (seen in its stamp, io::file_stamp) fails the run.
FileError input_changed(const fs::path& input, const std::string& how) {
  return FileError(input.string(), "", how + " while it was read; no output written");
}

RunSummary run_streamed(const RunConfig& config, const fs::path& input, const fs::path& output,
                        bool overwrite, int threads, const RunProgress& progress,
                        const std::optional<io::FileStamp>& input_stamp) {
  const auto t_start = Clock::now();
  RunSummary summary;
  summary.quality_bit_pixels.assign(8, 0);

  const io::InputFile in = io::InputFile::open(input);
  {
    std::error_code ec;
    if (fs::exists(output, ec) && fs::equivalent(input, output, ec)) {
      throw FileError(output.string(), "", "output would replace the input file");
    }
  }
  const std::vector<std::string> channels = select_channels(config, in);
  const std::uint64_t N = in.spectra();

  const int nthreads = threads > 0 ? threads : omp_get_max_threads();
  std::vector<ChannelWork> work;
  work.reserve(channels.size());
  std::string wisdom;
  if (!config.fftw_wisdom_file.empty() && fs::exists(config.fftw_wisdom_file)) {
    std::ifstream wf(config.fftw_wisdom_file);
    wisdom.assign(std::istreambuf_iterator<char>(wf), {});
  }
  for (const auto& ch : channels) {
    work.emplace_back(ch, in, config, nthreads, wisdom);
    // Not written, the denoised rows are only the fit's initial guesses.
    if (!config.writes(Stage::kDenoise)) work.back().stages.denoise_for_fit_only();
  }

  // The input's hash (provenance) is computed beside the run, not before it.
  // If the run fails, the hash stops early; the future's destructor waits for
  // it (`summary` and `input` outlive the future).
  std::atomic<bool> cancel_hash{false};
  struct CancelHash {
    std::atomic<bool>& flag;
    ~CancelHash() { flag = true; }
  };
  auto input_hash = std::async(std::launch::async, [&input, &summary, &cancel_hash] {
    const auto t = Clock::now();
    std::string hash = io::sha256_file(input, &cancel_hash);
    summary.hash_seconds = seconds_since(t);
    return hash;
  });
  const CancelHash cancel_on_exit{cancel_hash};  // (destroyed before input_hash)

  io::WriteOptions options;
  options.deflate_level = config.deflate_level;
  io::FileWriter w(output, options, overwrite);
  io::write_root_attributes(w, config.to_toml());
  w.set_attribute("/", "input_file", fs::absolute(input).lexically_normal().string());
  io::create_objects(w, io::schema::geometry_objects(), {N, 0, 0, 0});
  // Rows per block: block_rows, fewer where the spectra are so wide that two
  // slots of them would pass kBlockBytes (the results do not depend on the
  // blocks). A slot row holds ~45 bytes per pixel (counts as stored and
  // decoded, radiance, variance, quality, denoised, the count model).
  constexpr std::uint64_t kBlockBytes = std::uint64_t{1} << 30;
  constexpr std::uint64_t kSlotBytesPerPixel = 45;
  std::uint64_t row_bytes = 0;
  for (const auto& cw : work) row_bytes += 2 * kSlotBytesPerPixel * cw.stages.pixels();
  const std::uint64_t memory_rows = std::max<std::uint64_t>(1, kBlockBytes / std::max<std::uint64_t>(row_bytes, 1));
  // And no more than needed for 32 blocks (but not under 256 rows): the
  // pipeline fills with the first block's read and drains with the last
  // one's profile fits and write, so a file of a few blocks overlaps little
  // of its I/O with its compute (3,000 FUV spectra, --threads 1: 225 ms with
  // blocks of 1024, 170 with 256; docs/PERFORMANCE.md).
  constexpr std::uint64_t kMinBlockRows = 256, kTargetBlocks = 32;
  const std::uint64_t overlap_rows = std::max(kMinBlockRows, N / kTargetBlocks);
  const std::size_t block = static_cast<std::size_t>(
      std::min<std::uint64_t>({config.block_rows, N, memory_rows, overlap_rows}));
  // The scans (for the stages that use neighbouring spectra, and the
  // profiles), from the whole file's altitudes, so that they do not depend on
  // the blocks. Each block is read and processed with `context` rows each
  // side, which those stages read; only its own rows are written.
  std::vector<double> altitudes(N);
  in.read_altitude(0, altitudes);
  const std::vector<kernels::Scan> scans = kernels::find_scans(altitudes, config.scan_mode, config.scan_length);
  // When the compute threads leave a core free, the I/O thread, which
  // mostly waits, does the inflating of the counts (below) and the profile
  // fits (each block's, while the next block is computed), on one thread;
  // else the compute threads do both. Either way gives the same values.
  const unsigned cores = std::thread::hardware_concurrency();
  const bool spare_core = cores > 0 && static_cast<unsigned>(nthreads) < cores;
  std::size_t context = 0;
  for (auto& cw : work) {
    context = std::max(context, cw.stages.context_rows());
    if (config.has_stage(Stage::kProfile) && cw.stages.has_fit()) {
      std::vector<std::string> names;
      for (const auto& l : cw.stages.line_specs()) names.push_back(l.name);
      cw.profiles.emplace(config, cw.stages.channel(), std::move(names), scans, spare_core ? 1 : nthreads);
    }
  }
  const std::size_t slot_rows = static_cast<std::size_t>(std::min<std::uint64_t>(block + 2 * context, N));
  for (auto& cw : work) {
    const std::size_t P = cw.stages.pixels();
    const io::schema::Sizes sizes{N, P, cw.stages.calibration().wavelength_coeffs.size(), 0};
    if (config.writes(Stage::kCalibrate)) {
      io::create_objects(w, io::schema::calibrated_objects(cw.stages.channel()), sizes);
      std::vector<double> wl(P);
      kernels::pixel_wavelengths(cw.stages.calibration().wavelength_coeffs, wl);
      w.write<double>(io::schema::calibrated_group(cw.stages.channel()) + "/wavelength_nm", wl);
    }
    if (config.has_stage(Stage::kDenoise)) {
      if (config.writes(Stage::kDenoise)) {
        io::create_objects(w, io::schema::denoised_objects(cw.stages.channel()), sizes);
      }
      for (auto& sl : cw.slots) {
        sl.denoised.resize(slot_rows * P);
        sl.denoised_variance.resize(slot_rows * P);
      }
    }
    if (cw.stages.needs_count_model()) {
      for (auto& sl : cw.slots) {
        sl.scale.resize(slot_rows * P);
        sl.offset.resize(slot_rows * P);
      }
    }
    if (cw.stages.has_fit() && config.writes(Stage::kFit)) {
      const std::size_t L = cw.stages.lines();
      io::create_objects(w, io::schema::fit_objects(cw.stages.channel()), {N, P, 0, L});
      std::vector<std::string> names;
      std::vector<double> wls;
      for (const auto& l : cw.stages.line_specs()) {
        names.push_back(l.name);
        wls.push_back(l.wavelength_nm);
      }
      const std::string fg = io::schema::fit_group(cw.stages.channel());
      w.write_strings(fg + "/line_name", names);
      w.write<double>(fg + "/line_wavelength_nm", wls);
    }
    for (auto& sl : cw.slots) {
      if (cw.stages.has_fit()) {
        const std::size_t L = cw.stages.lines();
        for (auto* v : {&sl.fit_b, &sl.fit_s, &sl.fit_c, &sl.fit_w}) v->resize(slot_rows * L);
        sl.fit_chi2.resize(slot_rows * L);
        sl.fit_status.resize(slot_rows * L);
      }
      sl.counts.resize(slot_rows * P);
      sl.exposure.resize(slot_rows);
      sl.temperature.resize(slot_rows);
      sl.temperature_f.resize(slot_rows);
      sl.radiance.resize(slot_rows * P);
      sl.variance.resize(slot_rows * P);
      sl.quality.resize(slot_rows * P);
    }
  }

  // HDF5 serialises its calls, so all of them stay on this thread (the I/O
  // thread); the stages run on a second thread with their own OpenMP team.
  // While block k is computed in one slot, block k - 1 is written from the
  // other slot and then block k + 1 read into it.
  //
  // Counts are fetched as stored (compressed) and inflated outside HDF5:
  // on this thread when the compute threads leave a core free for it, and
  // otherwise shared among the compute threads, so that every core does the
  // same kind of work and the run scales with --threads. Either way gives
  // the same values.
  const bool decode_on_io = spare_core;
  std::array<std::vector<double>, 2> time_buf;
  std::array<std::vector<std::int64_t>, 2> scan_buf;
  for (int k = 0; k < 2; ++k) {
    time_buf[k].resize(block);
    scan_buf[k].resize(slot_rows);
  }
  auto rows_of = [&](std::uint64_t row0) {
    return static_cast<std::size_t>(std::min<std::uint64_t>(block, N - row0));
  };
  // The rows read and processed for the block at row0: its own and `context`
  // each side (within the file).
  auto extent_of = [&](std::uint64_t row0) {
    const std::uint64_t first = row0 - std::min<std::uint64_t>(context, row0);
    const std::uint64_t end = std::min<std::uint64_t>(N, row0 + rows_of(row0) + context);
    return std::pair{first, static_cast<std::size_t>(end - first)};
  };
  auto read_block = [&](int slot, std::uint64_t row0) {
    const std::size_t rows = rows_of(row0);
    const auto [first, ext] = extent_of(row0);
    const auto t_read = Clock::now();
    in.read_time(row0, std::span<double>(time_buf[slot]).first(rows));
    for (auto& cw : work) {
      auto& sl = cw.slots[slot];
      const std::size_t P = cw.stages.pixels();
      const auto counts = std::span(sl.counts).first(ext * P);
      in.fetch_counts(cw.stages.channel(), first, counts, sl.stored_counts);
      if (decode_on_io) sl.stored_counts.decode_all(counts);
      in.read_exposure(cw.stages.channel(), first, std::span(sl.exposure).first(ext));
      in.read_temperature(cw.stages.channel(), first, std::span(sl.temperature_f).first(ext));
    }
    summary.read_seconds += seconds_since(t_read);
  };
  // The profile stage: a block's fits, and every scan they complete.
  auto add_profiles = [&](ChannelWork& cw, int slot, std::uint64_t row0) {
    if (!cw.profiles) return;
    const std::size_t own = rows_of(row0), L = cw.stages.lines();
    const std::size_t off = static_cast<std::size_t>(row0 - extent_of(row0).first);
    const auto& sl = cw.slots[slot];
    cw.profiles->add(row0, std::span<const double>(altitudes).subspan(row0, own),
                     std::span<const double>(sl.fit_b).subspan(off * L, own * L),
                     std::span<const double>(sl.fit_s).subspan(off * L, own * L),
                     std::span<const std::uint8_t>(sl.fit_status).subspan(off * L, own * L));
  };
  auto compute_block = [&](int slot, std::uint64_t row0) {
    const std::size_t own = rows_of(row0);
    const auto [first, rows] = extent_of(row0);
    const std::size_t off = static_cast<std::size_t>(row0 - first);
    const auto t_decode = Clock::now();
    for (auto& cw : work) decode_chunks(cw.slots[slot].stored_counts,
                                        std::span(cw.slots[slot].counts).first(rows * cw.stages.pixels()),
                                        nthreads);
    // The scan of each row, from the file's scans.
    {
      auto it = std::upper_bound(scans.begin(), scans.end(), static_cast<std::int64_t>(first),
                                 [](std::int64_t r, const kernels::Scan& sc) { return r < sc.first; });
      auto s = static_cast<std::int64_t>(it - scans.begin()) - 1;
      for (std::size_t r = 0; r < rows; ++r) {
        const auto row = static_cast<std::int64_t>(first + r);
        while (row >= scans[static_cast<std::size_t>(s)].first + scans[static_cast<std::size_t>(s)].count) ++s;
        scan_buf[slot][r] = s;
      }
    }
    const RowGeometry geometry{std::span<const double>(altitudes).subspan(first, rows),
                               std::span<const std::int64_t>(scan_buf[slot]).first(rows)};
    const RowRange range{off, own};
    summary.decode_seconds += seconds_since(t_decode);
    for (auto& cw : work) {
      auto& sl = cw.slots[slot];
      const std::size_t P = cw.stages.pixels();
      if (!config.has_stage(Stage::kCalibrate)) continue;
      for (std::size_t r = 0; r < rows; ++r) sl.temperature[r] = sl.temperature_f[r];
      const bool model = cw.stages.needs_count_model();
      const CalibratedRows cal{std::span(sl.radiance).first(rows * P), std::span(sl.variance).first(rows * P),
                               std::span(sl.quality).first(rows * P),
                               model ? std::span(sl.scale).first(rows * P) : std::span<double>(),
                               model ? std::span(sl.offset).first(rows * P) : std::span<double>()};
      const std::size_t L = cw.stages.lines();
      DenoisedRows den;
      if (cw.stages.has_denoise()) {
        den = {std::span(sl.denoised).first(rows * P), std::span(sl.denoised_variance).first(rows * P)};
      }
      FitRows fits;
      if (cw.stages.has_fit()) {
        fits = {std::span(sl.fit_b).first(rows * L), std::span(sl.fit_s).first(rows * L),
                std::span(sl.fit_c).first(rows * L), std::span(sl.fit_w).first(rows * L),
                std::span(sl.fit_chi2).first(rows * L), std::span(sl.fit_status).first(rows * L)};
      }
      // All stages in one pass over tasks of rows (ChannelStages::process).
      const StageSeconds t = cw.stages.process(std::span<const std::uint32_t>(sl.counts).first(rows * P),
                                               std::span<const double>(sl.exposure).first(rows),
                                               std::span<const double>(sl.temperature).first(rows), cal, den,
                                               fits, geometry, range);
      const double per_thread = 1.0 / static_cast<double>(nthreads);
      summary.calibrate_seconds += t.calibrate * per_thread;
      summary.denoise_seconds += t.denoise * per_thread;
      summary.fit_seconds += t.fit * per_thread;
      for (std::size_t i = off * L; i < (off + own) * L; ++i) {
        const std::size_t st = sl.fit_status[i];
        if (summary.fit_status.size() <= st) summary.fit_status.resize(st + 1, 0);
        ++summary.fit_status[st];
      }
      if (!spare_core) add_profiles(cw, slot, row0);
      kernels::quality::count_bits(
          std::span<const std::uint8_t>(sl.quality).subspan(off * P, own * P),
          std::span<std::uint64_t, 8>(summary.quality_bit_pixels.data(), 8));
    }
  };
  auto write_block = [&](int slot, std::uint64_t row0) {
    const std::size_t rows = rows_of(row0);
    const std::size_t off = static_cast<std::size_t>(row0 - extent_of(row0).first);
    const auto t_write = Clock::now();
    w.write_rows<double>("/geometry/time", row0, std::span<const double>(time_buf[slot]).first(rows));
    w.write_rows<double>("/geometry/tangent_altitude_km", row0,
                         std::span<const double>(altitudes).subspan(row0, rows));
    for (auto& cw : work) {
      auto& sl = cw.slots[slot];
      const std::size_t P = cw.stages.pixels();
      if (config.has_stage(Stage::kCalibrate)) {
        if (config.writes(Stage::kCalibrate)) {
          const std::string grp = io::schema::calibrated_group(cw.stages.channel());
          w.write_rows<float>(grp + "/radiance", row0,
                              std::span<const float>(sl.radiance).subspan(off * P, rows * P));
          w.write_rows<float>(grp + "/variance", row0,
                              std::span<const float>(sl.variance).subspan(off * P, rows * P));
          w.write_rows<std::uint8_t>(grp + "/quality", row0,
                                     std::span<const std::uint8_t>(sl.quality).subspan(off * P, rows * P));
        }
        if (cw.stages.has_denoise() && config.writes(Stage::kDenoise)) {
          const std::string dg = io::schema::denoised_group(cw.stages.channel());
          w.write_rows<float>(dg + "/radiance", row0,
                              std::span<const float>(sl.denoised).subspan(off * P, rows * P));
          w.write_rows<float>(dg + "/variance", row0,
                              std::span<const float>(sl.denoised_variance).subspan(off * P, rows * P));
        }
        if (cw.stages.has_fit() && config.writes(Stage::kFit)) {
          const std::size_t L = cw.stages.lines();
          const std::string fg = io::schema::fit_group(cw.stages.channel());
          w.write_rows<double>(fg + "/brightness", row0, std::span<const double>(sl.fit_b).subspan(off * L, rows * L));
          w.write_rows<double>(fg + "/brightness_sigma", row0,
                               std::span<const double>(sl.fit_s).subspan(off * L, rows * L));
          w.write_rows<double>(fg + "/center_nm", row0, std::span<const double>(sl.fit_c).subspan(off * L, rows * L));
          w.write_rows<double>(fg + "/fwhm_nm", row0, std::span<const double>(sl.fit_w).subspan(off * L, rows * L));
          w.write_rows<float>(fg + "/chi2_reduced", row0,
                              std::span<const float>(sl.fit_chi2).subspan(off * L, rows * L));
          w.write_rows<std::uint8_t>(fg + "/status", row0,
                                     std::span<const std::uint8_t>(sl.fit_status).subspan(off * L, rows * L));
        }
      }
    }
    summary.write_seconds += seconds_since(t_write);
  };
  const std::uint64_t blocks = (N + block - 1) / block;
  if (blocks > 0) read_block(0, 0);
  // (If a read or write throws, ~ComputeThread waits for the running block
  // before the buffers it uses go away.)
  ComputeThread compute;
  for (std::uint64_t k = 0; k < blocks; ++k) {
    const int cur = static_cast<int>(k % 2);
    compute.start([&, cur, k] { compute_block(cur, k * block); });
    if (k > 0) {
      if (spare_core) {
        for (auto& cw : work) add_profiles(cw, 1 - cur, (k - 1) * block);
      }
      write_block(1 - cur, (k - 1) * block);
      if (progress) progress((k - 1) * block + rows_of((k - 1) * block), N);
    }
    if (k + 1 < blocks) read_block(1 - cur, (k + 1) * block);
    compute.wait();
  }
  if (blocks > 0) {
    if (spare_core) {
      for (auto& cw : work) add_profiles(cw, static_cast<int>((blocks - 1) % 2), (blocks - 1) * block);
    }
    write_block(static_cast<int>((blocks - 1) % 2), (blocks - 1) * block);
    if (progress) progress(N, N);
  }
  auto t0 = Clock::now();
  for (auto& cw : work) {
    if (!cw.profiles) continue;
    summary.profile_seconds += cw.profiles->seconds();
    if (config.writes(Stage::kProfile)) write_profiles(w, *cw.profiles);
    const std::size_t L = cw.profiles->line_names().size();
    for (std::size_t i = 0; i < cw.profiles->scans().size() * L; ++i) {
      const auto st = static_cast<std::size_t>(cw.profiles->result(i / L, i % L).status);
      if (summary.profile_status.size() <= st) summary.profile_status.resize(st + 1, 0);
      ++summary.profile_status[st];
    }
  }
  summary.scans = scans.size();
  w.set_attribute("/", "input_sha256", input_hash.get());
  // Last before the output appears (and after the hash has been read).
  if (const std::string how = io::describe_change(input_stamp, io::file_stamp(input));
      !how.empty()) {
    throw input_changed(input, how);
  }
  w.commit();
  if (!config.fftw_wisdom_file.empty() && config.has_stage(Stage::kDenoise)) {
    // Best effort: wisdom only speeds up planning next time.
    std::ofstream wf(config.fftw_wisdom_file);
    wf << kernels::FourierFilter::export_wisdom();
  }
  summary.write_seconds += seconds_since(t0);

  summary.spectra = N;
  summary.channels = channels;
  summary.seconds = seconds_since(t_start);
  return summary;
}

}  // namespace

RunSummary run(const RunConfig& config, const fs::path& input, const fs::path& output,
               bool overwrite, int threads, const RunProgress& progress) {
  config.validate();
  const std::optional<io::FileStamp> stamp = io::file_stamp(input);  // before the file is opened
  try {
    return run_streamed(config, input, output, overwrite, threads, progress, stamp);
  } catch (const FileError& e) {
    // A read that failed because the input changed (HDF5 reads zeros past
    // the end of a truncated file, which then fail to inflate) says so.
    if (e.file() == input.string()) {
      if (const std::string how = io::describe_change(stamp, io::file_stamp(input)); !how.empty()) {
        throw input_changed(input, how);
      }
    }
    throw;
  }
}

void skip_hdf5_shutdown_at_exit() noexcept { io::skip_hdf5_shutdown_at_exit(); }

}  // namespace exospec::pipeline
