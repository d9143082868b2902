#include "exospec/pipeline/run.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>

#include "exospec/error.hpp"
#include "exospec/io/file.hpp"
#include "exospec/io/hash.hpp"
#include "exospec/io/input_file.hpp"
#include "run_parts.hpp"

namespace exospec::pipeline {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The run, assembled from its parts (run_parts.hpp). The input must stay as
// it was while it is read: its data, its hash (read separately, on another
// thread) and the path recorded in the output's provenance must describe one
// file. A rename over it, a truncation, a write or its removal (seen in its
// stamp, io::file_stamp) fails the run (detail::Provenance::finish, run()).
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
  const std::vector<std::string> channels = detail::select_channels(config, in);
  const std::uint64_t N = in.spectra();

  const int nthreads = threads > 0 ? threads : omp_get_max_threads();
  std::vector<detail::ChannelWork> work;
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

  detail::Provenance provenance(input, input_stamp, summary);
  io::WriteOptions options;
  options.deflate_level = config.deflate_level;
  io::FileWriter w(output, options, overwrite);
  provenance.begin(w, config);

  // The scans (for the stages that use neighbouring spectra, and the
  // profiles), from the whole file's altitudes, so that they do not depend on
  // the blocks. Each block is read and processed with `context` rows each
  // side, which those stages read; only its own rows are written.
  std::vector<double> altitudes(N);
  in.read_altitude(0, altitudes);
  const std::vector<kernels::Scan> scans = kernels::find_scans(altitudes, config.scan_mode, config.scan_length);
  // When the compute threads leave a core free, the I/O thread, which
  // mostly waits, does the inflating of the counts and the profile fits
  // (each block's, while the next block is computed), on one thread; else
  // the compute threads do both. Either way gives the same values.
  const unsigned cores = detail::usable_cores();
  const bool spare_core = cores > 0 && static_cast<unsigned>(nthreads) < cores;
  std::size_t context = 0;
  std::uint64_t row_bytes = 0;
  for (auto& cw : work) {
    context = std::max(context, cw.stages.context_rows());
    row_bytes += cw.slot_row_bytes();
    if (config.has_stage(Stage::kProfile) && cw.stages.has_fit()) {
      std::vector<std::string> names;
      for (const auto& l : cw.stages.line_specs()) names.push_back(l.name);
      cw.profiles.emplace(config, cw.stages.channel(), std::move(names), scans, spare_core ? 1 : nthreads);
    }
  }
  const detail::BlockPlan plan = detail::BlockPlan::make(config, N, 0, N, row_bytes, context);
  detail::create_outputs(w, config, work, N);
  detail::RowSinkOf<io::FileWriter> sink(w);
  detail::OutputWriter writer(sink, config, work, plan, altitudes, summary);
  for (auto& cw : work) cw.allocate(config, plan.slot_rows);

  // HDF5 serialises its calls, so all of them stay on this thread (the I/O
  // thread); the stages run on a second thread with their own OpenMP team.
  // Counts are fetched as stored (compressed) and inflated outside HDF5:
  // on this thread when the compute threads leave a core free for it, and
  // otherwise shared among the compute threads, so that every core does the
  // same kind of work and the run scales with --threads.
  detail::BlockReader reader(in, work, plan, spare_core, summary);
  detail::StageRunner runner(config, work, plan, altitudes, scans, nthreads, summary);
  detail::run_blocks(plan, reader, runner, writer, spare_core, progress);
  summary.calibrate_seconds += runner.prepare_seconds();
  detail::write_profile_outputs(w, config, work, summary);
  summary.scans = scans.size();

  const auto t0 = Clock::now();
  provenance.finish(w);
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
        throw detail::input_changed(input, how);
      }
    }
    throw;
  }
}

void skip_hdf5_shutdown_at_exit() noexcept { io::skip_hdf5_shutdown_at_exit(); }

}  // namespace exospec::pipeline
