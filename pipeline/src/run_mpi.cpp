// `mpirun exospec run`: the parts of run_parts.hpp, spread over MPI ranks.
// The phases, each ended by an agreement of every rank (so that one rank's
// error stops them all at the same point, never inside a collective call):
//   1. every rank opens the input and sets up its stages for its part of
//      the rows; rank 0 also starts the input's hash, creates the output
//      (a temporary file) with every object, and closes it for now;
//   2. every rank opens that file with MPI-IO and writes its rows block by
//      block (run_blocks, agreeing before each; collective writes where a
//      dataset has deflate, independent ones elsewhere);
//   3. the file is closed by every rank; the profile results of each rank's
//      scans are gathered on rank 0;
//   4. rank 0 opens the file again, adds /profile and the hash, and renames
//      it into place.
#include "exospec/pipeline/run_mpi.hpp"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>
#include <type_traits>

#include "exospec/io/file.hpp"
#include "exospec/io/hash.hpp"
#include "exospec/io/input_file.hpp"
#include "exospec/io/parallel.hpp"
#include "mpi_agreement.hpp"
#include "run_parts.hpp"

namespace exospec::pipeline {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The R parts of the file's N rows: part r is rows [row[r], row[r + 1]). With
// at_scans they start at scan starts (part r: scans [scan[r], scan[r + 1])),
// each as near as it can be to an equal share of the rows.
struct Parts {
  std::vector<std::uint64_t> row;
  std::vector<std::size_t> scan;
};

Parts split_rows(std::uint64_t N, int R, const std::vector<kernels::Scan>& scans, bool at_scans) {
  Parts p;
  p.row.assign(static_cast<std::size_t>(R) + 1, N);
  p.scan.assign(static_cast<std::size_t>(R) + 1, scans.size());
  p.row[0] = 0;
  p.scan[0] = 0;
  for (int r = 1; r < R; ++r) {
    const auto i = static_cast<std::size_t>(r);
    // (N r / R without overflow: N < 2^40 by the input's bounds, R < 2^20.)
    const std::uint64_t target = N / static_cast<std::uint64_t>(R) * static_cast<std::uint64_t>(r) +
                                 N % static_cast<std::uint64_t>(R) * static_cast<std::uint64_t>(r) /
                                     static_cast<std::uint64_t>(R);
    auto it = std::lower_bound(scans.begin(), scans.end(), target, [](const kernels::Scan& s, std::uint64_t t) {
      return static_cast<std::uint64_t>(s.first) < t;
    });
    std::size_t s = static_cast<std::size_t>(it - scans.begin());
    if (!at_scans) {
      p.row[i] = target;
      p.scan[i] = s;
      continue;
    }
    // The nearer of the scan starts either side of the target.
    if (s > 0 && (s == scans.size() ||
                  target - static_cast<std::uint64_t>(scans[s - 1].first) <
                      static_cast<std::uint64_t>(scans[s].first) - target)) {
      --s;
    }
    s = std::max(s, p.scan[i - 1]);
    p.scan[i] = s;
    p.row[i] = s < scans.size() ? static_cast<std::uint64_t>(scans[s].first) : N;
  }
  return p;
}

// The rows of an MPI run's blocks. A write that fails on this rank (a full
// disk, EIO on its node) is held to the next agreement, as a block's compute
// error is, and the rest of the block's writes are made with no rows: every
// rank then still makes the same calls, where a rank that threw out of them
// would leave the others waiting for it forever (inside a collective write,
// or at the next agreement).
class HeldRowSink final : public detail::RowSink {
 public:
  explicit HeldRowSink(io::ParallelRowWriter& w) : w_(w) {}
  void rows(std::string_view d, std::uint64_t row0, std::span<const double> v) override { put(d, row0, v); }
  void rows(std::string_view d, std::uint64_t row0, std::span<const float> v) override { put(d, row0, v); }
  void rows(std::string_view d, std::uint64_t row0, std::span<const std::uint8_t> v) override { put(d, row0, v); }
  std::exception_ptr error;

 private:
  template <class T>
  void put(std::string_view d, std::uint64_t row0, std::span<const T> v) {
    try {
      w_.write_rows<T>(d, row0, error ? std::span<const T>() : v);
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  }
  io::ParallelRowWriter& w_;
};

template <class T>
void allreduce_sum(T& v, MPI_Comm comm) {
  if constexpr (std::is_same_v<T, double>) {
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, comm);
  } else {
    unsigned long long x = v;
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm);
    v = static_cast<T>(x);
  }
}

void allreduce_counts(std::vector<std::uint64_t>& v, MPI_Comm comm) {
  unsigned long long n = v.size();
  MPI_Allreduce(MPI_IN_PLACE, &n, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm);
  v.resize(static_cast<std::size_t>(n), 0);
  std::vector<unsigned long long> x(v.begin(), v.end());
  if (n > 0) MPI_Allreduce(MPI_IN_PLACE, x.data(), static_cast<int>(n), MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm);
  std::copy(x.begin(), x.end(), v.begin());
}

// Rank 0 takes every other rank's profile results, in rank order.
void gather_profiles(std::vector<detail::ChannelWork>& work, const Parts& parts, int rank, int size,
                     MPI_Comm comm) {
  constexpr auto kBytes = sizeof(kernels::ProfileResult);
  static_assert(std::is_trivially_copyable_v<kernels::ProfileResult>);
  for (auto& cw : work) {
    if (!cw.profiles) continue;
    const auto r = static_cast<std::size_t>(rank);
    const auto mine = cw.profiles->results(parts.scan[r], parts.scan[r + 1]);
    const int bytes = static_cast<int>(rank == 0 ? 0 : mine.size() * kBytes);
    std::vector<int> counts(static_cast<std::size_t>(size)), displs(static_cast<std::size_t>(size));
    MPI_Gather(&bytes, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, comm);
    std::vector<kernels::ProfileResult> all;
    if (rank == 0) {
      std::size_t total = 0;
      for (std::size_t i = 0; i < counts.size(); ++i) {
        displs[i] = static_cast<int>(total);
        total += static_cast<std::size_t>(counts[i]);
      }
      all.resize(total / kBytes);
    }
    MPI_Gatherv(mine.data(), bytes, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, 0, comm);
    if (rank == 0) cw.profiles->adopt(all);
  }
}

RunSummary run_parts(const RunConfig& config, const fs::path& input, const fs::path& output, bool overwrite,
                     int threads, const RunProgress& progress, MPI_Comm comm,
                     const std::optional<io::FileStamp>& input_stamp) {
  const auto t_start = Clock::now();
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  detail::Agreement agreement(comm);
  RunSummary summary;
  summary.quality_bit_pixels.assign(8, 0);

  // ---- 1. set-up: the input, the stages, this rank's part; rank 0 the output
  // The cores of this rank: under mpirun's binding its own (its affinity),
  // else a share of its node's. The default threads use them; a core left
  // free takes the inflating, each block's radiance and the profile fits, as
  // in a serial run (run.cpp). The input's hash (rank 0) runs on any core of the node's
  // ranks: the scheduler spreads it over them, where on rank 0's cores alone
  // it would hold the others back at every block's agreement (100,000
  // spectra, R = 2 on 2 cores: 0.07-0.1 s of 3.7, docs/PERFORMANCE.md).
  int node_ranks = 1;
  cpu_set_t node_cores = detail::usable_core_set();
  const auto own_cores = static_cast<unsigned>(CPU_COUNT(&node_cores));
  {
    MPI_Comm node;
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &node_ranks);
    MPI_Allreduce(MPI_IN_PLACE, &node_cores, static_cast<int>(sizeof node_cores), MPI_BYTE, MPI_BOR, node);
    MPI_Comm_free(&node);
  }
  const bool bound = static_cast<int>(own_cores) < CPU_COUNT(&node_cores);
  const int nthreads = threads > 0 ? threads
                                   : std::max(1, bound ? omp_get_max_threads() : omp_get_max_threads() / node_ranks);
  const unsigned cores = bound ? own_cores : own_cores / static_cast<unsigned>(node_ranks);
  const bool spare_core = cores > 0 && static_cast<unsigned>(nthreads) < cores;
  std::optional<io::InputFile> in;
  std::vector<std::string> channels;
  std::vector<detail::ChannelWork> work;
  std::vector<double> altitudes;
  std::vector<kernels::Scan> scans;
  Parts parts;
  std::optional<detail::BlockPlan> plan;
  std::optional<detail::Provenance> provenance;
  std::optional<io::FileWriter> w;
  std::string temporary;
  agreement.phase([&] {
    config.validate();
    in.emplace(io::InputFile::open(input));
    {
      std::error_code ec;
      if (fs::exists(output, ec) && fs::equivalent(input, output, ec)) {
        throw FileError(output.string(), "", "output would replace the input file");
      }
    }
    channels = detail::select_channels(config, *in);
    const std::uint64_t N = in->spectra();
    std::string wisdom;
    if (!config.fftw_wisdom_file.empty() && fs::exists(config.fftw_wisdom_file)) {
      std::ifstream wf(config.fftw_wisdom_file);
      wisdom.assign(std::istreambuf_iterator<char>(wf), {});
    }
    work.reserve(channels.size());
    for (const auto& ch : channels) {
      work.emplace_back(ch, *in, config, nthreads, wisdom);
      if (!config.writes(Stage::kDenoise)) work.back().stages.denoise_for_fit_only();
    }
    altitudes.resize(N);
    in->read_altitude(0, altitudes);
    scans = kernels::find_scans(altitudes, config.scan_mode, config.scan_length);
    bool profiles = false;
    std::size_t context = 0;
    std::uint64_t row_bytes = 0;
    for (auto& cw : work) {
      context = std::max(context, cw.stages.context_rows());
      row_bytes += cw.slot_row_bytes();
      profiles = profiles || (config.has_stage(Stage::kProfile) && cw.stages.has_fit());
    }
    parts = split_rows(N, size, scans, profiles);
    const auto r = static_cast<std::size_t>(rank);
    for (auto& cw : work) {
      if (config.has_stage(Stage::kProfile) && cw.stages.has_fit()) {
        std::vector<std::string> names;
        for (const auto& l : cw.stages.line_specs()) names.push_back(l.name);
        cw.profiles.emplace(config, cw.stages.channel(), std::move(names), scans, spare_core ? 1 : nthreads);
        cw.profiles->start_at(parts.scan[r]);
      }
    }
    plan.emplace(detail::BlockPlan::make(config, N, parts.row[r], parts.row[r + 1], row_bytes, context));
    if (rank == 0) {
      provenance.emplace(input, input_stamp, summary, node_cores);
      io::WriteOptions options;
      options.deflate_level = config.deflate_level;
      w.emplace(output, options, overwrite);
      provenance->begin(*w, config);
      detail::create_outputs(*w, config, work, N);
      w->suspend();
      temporary = w->temporary_path();
    }
  });
  detail::bcast_string(temporary, 0, comm);

  // ---- 2. the rows, written by every rank into the one file
  std::optional<io::ParallelRowWriter> pw;
  agreement.phase([&] { pw.emplace(output.string(), temporary, comm); });
  for (auto& cw : work) cw.allocate(config, plan->slot_rows);
  {
    HeldRowSink sink(*pw);
    agreement.held = &sink.error;
    detail::OutputWriter writer(sink, config, work, *plan, altitudes, summary);
    detail::BlockReader reader(*in, work, *plan, spare_core, summary);
    detail::StageRunner runner(config, work, *plan, altitudes, scans, nthreads, summary);
    unsigned long long steps = plan->blocks();
    MPI_Allreduce(MPI_IN_PLACE, &steps, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm);
    agreement.steps = steps;
    detail::run_blocks(*plan, reader, runner, writer, spare_core, progress, &agreement);
    summary.calibrate_seconds += runner.prepare_seconds();
    agreement.held = nullptr;  // (the sink goes; on a throw, agreement is not used again)
  }

  // ---- 3. closed by every rank; the profiles gathered on rank 0
  agreement.phase([&] { pw->close(); });
  pw.reset();
  agreement.phase([&] {
    if (rank != 0) {
      for (auto& cw : work) {
        if (cw.profiles) summary.profile_seconds += cw.profiles->seconds();
      }
    }
    gather_profiles(work, parts, rank, size, comm);
  });

  // ---- 4. rank 0: /profile, the hash, the commit
  agreement.phase([&] {
    if (rank != 0) return;
    const auto t0 = Clock::now();
    w->resume();
    detail::write_profile_outputs(*w, config, work, summary);
    provenance->finish(*w);
    w->commit();
    if (!config.fftw_wisdom_file.empty() && config.has_stage(Stage::kDenoise)) {
      std::ofstream wf(config.fftw_wisdom_file);  // best effort
      wf << kernels::FourierFilter::export_wisdom();
    }
    summary.write_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  });

  // The whole run's summary, on every rank.
  for (double* v : {&summary.read_seconds, &summary.decode_seconds, &summary.calibrate_seconds,
                    &summary.denoise_seconds, &summary.fit_seconds, &summary.profile_seconds,
                    &summary.write_seconds, &summary.hash_seconds}) {
    allreduce_sum(*v, comm);
  }
  allreduce_counts(summary.fit_status, comm);
  allreduce_counts(summary.profile_status, comm);
  allreduce_counts(summary.quality_bit_pixels, comm);
  summary.spectra = in->spectra();
  summary.channels = channels;
  summary.scans = scans.size();
  summary.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  MPI_Allreduce(MPI_IN_PLACE, &summary.seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
  return summary;
}

}  // namespace

RunSummary run_mpi(const RunConfig& config, const fs::path& input, const fs::path& output, bool overwrite,
                   int threads, const RunProgress& progress, MPI_Comm comm) {
  const std::optional<io::FileStamp> stamp = io::file_stamp(input);  // before the file is opened
  try {
    return run_parts(config, input, output, overwrite, threads, progress, comm, stamp);
  } catch (const FileError& e) {
    // As in run(): a read that failed because the input changed says so.
    if (e.file() == input.string()) {
      if (const std::string how = io::describe_change(stamp, io::file_stamp(input)); !how.empty()) {
        throw detail::input_changed(input, how);
      }
    }
    throw;
  }
}

}  // namespace exospec::pipeline
