#include "run_parts.hpp"

#include <omp.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "exospec/error.hpp"
#include "exospec/io/contract_writer.hpp"
#include "exospec/io/hash.hpp"
#include "exospec/io/schema.hpp"
#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/spectrum_model.hpp"

namespace exospec::pipeline::detail {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

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

}  // namespace

// ---- BlockPlan

BlockPlan BlockPlan::make(const RunConfig& config, std::uint64_t spectra, std::uint64_t first,
                          std::uint64_t end, std::uint64_t row_bytes, std::size_t context) {
  BlockPlan p;
  p.spectra = spectra;
  p.first = first;
  p.end = end;
  p.context = context;
  const std::uint64_t rows = end - first;
  // A slot row holds ~45 bytes per pixel (counts as stored and decoded,
  // radiance, variance, quality, denoised, the count model): two slots of
  // blocks stay under kBlockBytes (the results do not depend on the blocks).
  constexpr std::uint64_t kBlockBytes = std::uint64_t{1} << 30;
  const std::uint64_t memory_rows = std::max<std::uint64_t>(1, kBlockBytes / std::max<std::uint64_t>(row_bytes, 1));
  // And no more than needed for 32 blocks (but not under 256 rows): the
  // pipeline fills with the first block's read and drains with the last
  // one's profile fits and write, so a file of a few blocks overlaps little
  // of its I/O with its compute (3,000 FUV spectra, --threads 1: 225 ms with
  // blocks of 1024, 170 with 256; docs/PERFORMANCE.md).
  constexpr std::uint64_t kMinBlockRows = 256, kTargetBlocks = 32;
  const std::uint64_t overlap_rows = std::max(kMinBlockRows, rows / kTargetBlocks);
  p.block = static_cast<std::size_t>(
      std::max<std::uint64_t>(1, std::min<std::uint64_t>({config.block_rows, rows, memory_rows, overlap_rows})));
  p.slot_rows = static_cast<std::size_t>(std::min<std::uint64_t>(p.block + 2 * context, spectra));
  return p;
}

std::size_t BlockPlan::rows(std::uint64_t row0) const noexcept {
  return static_cast<std::size_t>(std::min<std::uint64_t>(block, end - row0));
}

BlockPlan::Extent BlockPlan::extent(std::uint64_t row0) const noexcept {
  const std::uint64_t from = row0 - std::min<std::uint64_t>(context, row0);
  const std::uint64_t to = std::min<std::uint64_t>(spectra, row0 + rows(row0) + context);
  return {from, static_cast<std::size_t>(to - from), static_cast<std::size_t>(row0 - from)};
}

// ---- ChannelWork

void ChannelWork::allocate(const RunConfig& config, std::size_t slot_rows) {
  const std::size_t P = stages.pixels();
  const std::size_t L = stages.lines();
  for (auto& sl : slots) {
    if (config.has_stage(Stage::kDenoise)) {
      sl.denoised.resize(slot_rows * P);
      sl.denoised_variance.resize(slot_rows * P);
    }
    if (stages.needs_count_model_rows()) {
      sl.scale.resize(slot_rows * P);
      sl.offset.resize(slot_rows * P);
    }
    if (stages.has_fit()) {
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

std::uint64_t ChannelWork::slot_row_bytes() const noexcept {
  constexpr std::uint64_t kSlotBytesPerPixel = 45;
  return 2 * kSlotBytesPerPixel * stages.pixels();
}

cpu_set_t usable_core_set() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) == 0) {
    CPU_ZERO(&set);
    for (unsigned c = 0; c < std::max(1u, std::thread::hardware_concurrency()) && c < CPU_SETSIZE; ++c) {
      CPU_SET(c, &set);
    }
  }
  return set;
}

unsigned usable_cores() noexcept {
  const cpu_set_t set = usable_core_set();
  return static_cast<unsigned>(CPU_COUNT(&set));
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

// ---- BlockReader

BlockReader::BlockReader(const io::InputFile& in, std::vector<ChannelWork>& work,
                         const BlockPlan& plan, bool decode_here, RunSummary& summary)
    : in_(in), work_(work), plan_(plan), decode_here_(decode_here), summary_(summary) {
  for (auto& t : time_) t.resize(plan.block);
}

void BlockReader::read(int slot, std::uint64_t row0) {
  const std::size_t rows = plan_.rows(row0);
  const auto ext = plan_.extent(row0);
  const auto t_read = Clock::now();
  in_.read_time(row0, std::span<double>(time_[slot]).first(rows));
  for (auto& cw : work_) {
    auto& sl = cw.slots[slot];
    const std::size_t P = cw.stages.pixels();
    const auto counts = std::span(sl.counts).first(ext.rows * P);
    in_.fetch_counts(cw.stages.channel(), ext.first, counts, sl.stored_counts);
    if (decode_here_) sl.stored_counts.decode_all(counts);
    in_.read_exposure(cw.stages.channel(), ext.first, std::span(sl.exposure).first(ext.rows));
    in_.read_temperature(cw.stages.channel(), ext.first, std::span(sl.temperature_f).first(ext.rows));
    for (std::size_t r = 0; r < ext.rows; ++r) sl.temperature[r] = sl.temperature_f[r];  // (the stages' type)
  }
  summary_.read_seconds += seconds_since(t_read);
}

std::span<const double> BlockReader::time(int slot, std::uint64_t row0) const {
  return std::span<const double>(time_[slot]).first(plan_.rows(row0));
}

// ---- StageRunner

StageRunner::StageRunner(const RunConfig& config, std::vector<ChannelWork>& work,
                         const BlockPlan& plan, std::span<const double> altitudes,
                         const std::vector<kernels::Scan>& scans, int threads, RunSummary& summary)
    : config_(config), work_(work), plan_(plan), altitudes_(altitudes), scans_(scans),
      threads_(threads), summary_(summary) {
  for (auto& s : scan_) s.resize(plan.slot_rows);
}

void StageRunner::add_profiles(int slot, std::uint64_t row0) {
  const std::size_t own = plan_.rows(row0);
  const std::size_t off = plan_.extent(row0).offset;
  for (auto& cw : work_) {
    if (!cw.profiles) continue;
    const std::size_t L = cw.stages.lines();
    const auto& sl = cw.slots[slot];
    cw.profiles->add(row0, altitudes_.subspan(row0, own),
                     std::span<const double>(sl.fit_b).subspan(off * L, own * L),
                     std::span<const double>(sl.fit_s).subspan(off * L, own * L),
                     std::span<const std::uint8_t>(sl.fit_status).subspan(off * L, own * L));
  }
}

void StageRunner::prepare(int slot, std::uint64_t row0) {
  prepared_[slot] = false;
  if (!config_.has_stage(Stage::kCalibrate)) return;
  const std::size_t rows = plan_.extent(row0).rows;
  for (auto& cw : work_) {
    auto& sl = cw.slots[slot];
    const std::size_t P = cw.stages.pixels();
    prepare_seconds_ += cw.stages.calibrate_radiance(
        std::span<const std::uint32_t>(sl.counts).first(rows * P), std::span<const double>(sl.exposure).first(rows),
        std::span<const double>(sl.temperature).first(rows),
        {std::span(sl.radiance).first(rows * P), std::span(sl.variance).first(rows * P),
         std::span(sl.quality).first(rows * P), {}, {}});
  }
  prepared_[slot] = true;
}

void StageRunner::compute(int slot, std::uint64_t row0, bool profiles_here) {
  const std::size_t own = plan_.rows(row0);
  const auto [first, rows, off] = plan_.extent(row0);
  const auto t_decode = Clock::now();
  for (auto& cw : work_) {
    decode_chunks(cw.slots[slot].stored_counts,
                  std::span(cw.slots[slot].counts).first(rows * cw.stages.pixels()), threads_);
  }
  // The scan of each row, from the file's scans.
  {
    auto it = std::upper_bound(scans_.begin(), scans_.end(), static_cast<std::int64_t>(first),
                               [](std::int64_t r, const kernels::Scan& sc) { return r < sc.first; });
    auto s = static_cast<std::int64_t>(it - scans_.begin()) - 1;
    for (std::size_t r = 0; r < rows; ++r) {
      const auto row = static_cast<std::int64_t>(first + r);
      while (row >= scans_[static_cast<std::size_t>(s)].first + scans_[static_cast<std::size_t>(s)].count) ++s;
      scan_[slot][r] = s;
    }
  }
  const RowGeometry geometry{altitudes_.subspan(first, rows),
                             std::span<const std::int64_t>(scan_[slot]).first(rows)};
  const RowRange range{off, own};
  summary_.decode_seconds += seconds_since(t_decode);
  if (!config_.has_stage(Stage::kCalibrate)) return;
  for (auto& cw : work_) {
    auto& sl = cw.slots[slot];
    const std::size_t P = cw.stages.pixels();
    const bool model = cw.stages.needs_count_model_rows();
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
                                             fits, geometry, range, prepared_[slot]);
    const double per_thread = 1.0 / static_cast<double>(threads_);
    summary_.calibrate_seconds += t.calibrate * per_thread;
    summary_.denoise_seconds += t.denoise * per_thread;
    summary_.fit_seconds += t.fit * per_thread;
    for (std::size_t i = off * L; i < (off + own) * L; ++i) {
      const std::size_t st = sl.fit_status[i];
      if (summary_.fit_status.size() <= st) summary_.fit_status.resize(st + 1, 0);
      ++summary_.fit_status[st];
    }
    kernels::quality::count_bits(std::span<const std::uint8_t>(sl.quality).subspan(off * P, own * P),
                                 std::span<std::uint64_t, 8>(summary_.quality_bit_pixels.data(), 8));
  }
  prepared_[slot] = false;
  if (profiles_here) add_profiles(slot, row0);
}

// ---- OutputWriter

void create_outputs(io::FileWriter& w, const RunConfig& config, std::vector<ChannelWork>& work,
                    std::uint64_t N) {
  io::create_objects(w, io::schema::geometry_objects(), {N, 0, 0, 0});
  for (auto& cw : work) {
    const std::size_t P = cw.stages.pixels();
    const std::string& ch = cw.stages.channel();
    const io::schema::Sizes sizes{N, P, cw.stages.calibration().wavelength_coeffs.size(), 0};
    if (config.writes(Stage::kCalibrate)) {
      io::create_objects(w, io::schema::calibrated_objects(ch), sizes);
      std::vector<double> wl(P);
      kernels::pixel_wavelengths(cw.stages.calibration().wavelength_coeffs, wl);
      w.write<double>(io::schema::calibrated_group(ch) + "/wavelength_nm", wl);
    }
    if (config.has_stage(Stage::kDenoise) && config.writes(Stage::kDenoise)) {
      io::create_objects(w, io::schema::denoised_objects(ch), sizes);
    }
    if (cw.stages.has_fit() && config.writes(Stage::kFit)) {
      io::create_objects(w, io::schema::fit_objects(ch), {N, P, 0, cw.stages.lines()});
      std::vector<std::string> names;
      std::vector<double> wls;
      for (const auto& l : cw.stages.line_specs()) {
        names.push_back(l.name);
        wls.push_back(l.wavelength_nm);
      }
      const std::string fg = io::schema::fit_group(ch);
      w.write_strings(fg + "/line_name", names);
      w.write<double>(fg + "/line_wavelength_nm", wls);
    }
  }
}

OutputWriter::OutputWriter(RowSink& sink, const RunConfig& config, std::vector<ChannelWork>& work,
                           const BlockPlan& plan, std::span<const double> altitudes,
                           RunSummary& summary)
    : sink_(sink), config_(config), work_(work), plan_(plan), altitudes_(altitudes), summary_(summary) {}

void OutputWriter::write(int slot, std::uint64_t row0, std::span<const double> time) {
  put(slot, row0, plan_.rows(row0), plan_.extent(row0).offset, time);
}

void OutputWriter::write_nothing() { put(0, 0, 0, 0, {}); }

void OutputWriter::put(int slot, std::uint64_t row0, std::size_t rows, std::size_t off,
                       std::span<const double> time) {
  const auto t_write = Clock::now();
  sink_.rows("/geometry/time", row0, time);
  sink_.rows("/geometry/tangent_altitude_km", row0, altitudes_.subspan(row0, rows));
  for (auto& cw : work_) {
    if (!config_.has_stage(Stage::kCalibrate)) break;
    auto& sl = cw.slots[slot];
    const std::size_t P = cw.stages.pixels();
    if (config_.writes(Stage::kCalibrate)) {
      const std::string grp = io::schema::calibrated_group(cw.stages.channel());
      sink_.rows(grp + "/radiance", row0, std::span<const float>(sl.radiance).subspan(off * P, rows * P));
      sink_.rows(grp + "/variance", row0, std::span<const float>(sl.variance).subspan(off * P, rows * P));
      sink_.rows(grp + "/quality", row0, std::span<const std::uint8_t>(sl.quality).subspan(off * P, rows * P));
    }
    if (cw.stages.has_denoise() && config_.writes(Stage::kDenoise)) {
      const std::string dg = io::schema::denoised_group(cw.stages.channel());
      sink_.rows(dg + "/radiance", row0, std::span<const float>(sl.denoised).subspan(off * P, rows * P));
      sink_.rows(dg + "/variance", row0, std::span<const float>(sl.denoised_variance).subspan(off * P, rows * P));
    }
    if (cw.stages.has_fit() && config_.writes(Stage::kFit)) {
      const std::size_t L = cw.stages.lines();
      const std::string fg = io::schema::fit_group(cw.stages.channel());
      sink_.rows(fg + "/brightness", row0, std::span<const double>(sl.fit_b).subspan(off * L, rows * L));
      sink_.rows(fg + "/brightness_sigma", row0, std::span<const double>(sl.fit_s).subspan(off * L, rows * L));
      sink_.rows(fg + "/center_nm", row0, std::span<const double>(sl.fit_c).subspan(off * L, rows * L));
      sink_.rows(fg + "/fwhm_nm", row0, std::span<const double>(sl.fit_w).subspan(off * L, rows * L));
      sink_.rows(fg + "/chi2_reduced", row0, std::span<const float>(sl.fit_chi2).subspan(off * L, rows * L));
      sink_.rows(fg + "/status", row0, std::span<const std::uint8_t>(sl.fit_status).subspan(off * L, rows * L));
    }
  }
  summary_.write_seconds += seconds_since(t_write);
}

void write_profile_outputs(io::FileWriter& w, const RunConfig& config, std::vector<ChannelWork>& work,
                           RunSummary& summary) {
  const auto t0 = Clock::now();
  for (auto& cw : work) {
    if (!cw.profiles) continue;
    summary.profile_seconds += cw.profiles->seconds();
    if (config.writes(Stage::kProfile)) pipeline::write_profiles(w, *cw.profiles);
    const std::size_t L = cw.profiles->line_names().size();
    for (std::size_t i = 0; i < cw.profiles->scans().size() * L; ++i) {
      const auto st = static_cast<std::size_t>(cw.profiles->result(i / L, i % L).status);
      if (summary.profile_status.size() <= st) summary.profile_status.resize(st + 1, 0);
      ++summary.profile_status[st];
    }
  }
  summary.write_seconds += seconds_since(t0);
}

// ---- Provenance

FileError input_changed(const fs::path& input, const std::string& how) {
  return FileError(input.string(), "", how + " while it was read; no output written");
}

Provenance::Provenance(const fs::path& input, const std::optional<io::FileStamp>& stamp,
                       RunSummary& summary, std::optional<cpu_set_t> hash_cores)
    : input_(input), stamp_(stamp) {
  // The input's hash is computed beside the run, not before it. If the run
  // fails, the destructor stops it early and waits for it.
  hash_ = std::async(std::launch::async, [this, &summary, hash_cores] {
    const auto t = Clock::now();
    if (hash_cores) sched_setaffinity(0, sizeof(cpu_set_t), &*hash_cores);  // (advice: may fail)
    std::string hash = io::sha256_file(input_, &cancel_);
    summary.hash_seconds = seconds_since(t);
    return hash;
  });
}

Provenance::~Provenance() {
  cancel_ = true;
  if (hash_.valid()) hash_.wait();
}

void Provenance::begin(io::FileWriter& w, const RunConfig& config) const {
  io::write_root_attributes(w, config.to_toml());
  w.set_attribute("/", "input_file", fs::absolute(input_).lexically_normal().string());
}

void Provenance::finish(io::FileWriter& w) {
  w.set_attribute("/", "input_sha256", hash_.get());
  // Last before the output appears (and after the hash has been read).
  if (const std::string how = io::describe_change(stamp_, io::file_stamp(input_)); !how.empty()) {
    throw input_changed(input_, how);
  }
}

// ---- the block loop

void run_blocks(const BlockPlan& plan, BlockReader& reader, StageRunner& runner,
                OutputWriter& writer, bool profiles_on_io, const RunProgress& progress,
                BlockAgreement* agreement) {
  const std::uint64_t blocks = plan.blocks();
  const std::uint64_t steps = agreement != nullptr ? std::max(agreement->steps, blocks) : blocks;
  if (steps == 0) {
    if (agreement != nullptr) agreement->agree(nullptr);
    return;
  }
  const std::uint64_t rows = plan.end - plan.first;
  // This part's error, held to the next agreement (with one); else thrown.
  std::exception_ptr error;
  auto guarded = [&](auto&& f) {
    if (agreement == nullptr) return f();
    if (error) return;
    try {
      f();
    } catch (...) {
      error = std::current_exception();
    }
  };
  // Block k's write (a write of nothing past this part's last block).
  auto drain = [&](std::uint64_t k) {
    if (k >= blocks) {
      if (agreement != nullptr) agreement->agree(error);
      writer.write_nothing();
      return;
    }
    const int slot = static_cast<int>(k % 2);
    const std::uint64_t row0 = plan.row0(k);
    guarded([&] {
      if (profiles_on_io) runner.add_profiles(slot, row0);
    });
    // (The writes themselves may be collective in an MPI run: not held.)
    if (agreement != nullptr) agreement->agree(error);
    writer.write(slot, row0, reader.time(slot, row0));
    guarded([&] {
      if (progress) progress(row0 + plan.rows(row0) - plan.first, rows);
    });
  };
  // (With a spare core, each block's radiance is made here after its read.)
  auto read = [&](int slot, std::uint64_t row0) {
    reader.read(slot, row0);
    if (profiles_on_io) runner.prepare(slot, row0);
  };
  guarded([&] { read(0, plan.row0(0)); });
  // (If a read or write throws, ~ComputeThread waits for the running block
  // before the buffers it uses go away.)
  ComputeThread compute;
  for (std::uint64_t k = 0; k < steps; ++k) {
    const int cur = static_cast<int>(k % 2);
    bool started = false;
    if (k < blocks && !error) {
      compute.start([&, cur, k] { runner.compute(cur, plan.row0(k), !profiles_on_io); });
      started = true;
    }
    if (k > 0) drain(k - 1);
    if (k + 1 < blocks) guarded([&] { read(1 - cur, plan.row0(k + 1)); });
    if (started) {
      if (agreement == nullptr) {
        compute.wait();
      } else {
        try {
          compute.wait();
        } catch (...) {
          if (!error) error = std::current_exception();
        }
      }
    }
  }
  drain(steps - 1);
  if (agreement != nullptr) agreement->agree(error);
}

}  // namespace exospec::pipeline::detail
