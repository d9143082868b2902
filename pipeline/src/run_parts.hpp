#pragma once
// The pieces of `run` (pipeline/run.hpp), each with one job:
//   BlockPlan     which rows are processed, and how they are cut into blocks;
//   ChannelWork   one channel's stages and its two slots of block buffers;
//   BlockReader   reads a block's inputs into a slot (HDF5: the I/O thread);
//   StageRunner   runs the stages on a slot (the compute thread) and feeds
//                 the profile stage;
//   OutputWriter  writes a slot's rows (create_outputs makes the objects
//                 first, write_profile_outputs adds /profile at the end;
//                 HDF5: the I/O thread);
//   Provenance    the root attributes, the input's SHA-256 computed beside
//                 the run, and the last check that the input did not change;
//   run_blocks    the double-buffered loop that drives the three: block k is
//                 computed in one slot while block k - 1 is written from the
//                 other and block k + 1 read into it.
// A run over a part of the file's rows (BlockPlan::first/end) reads the
// context rows either side of it from the file like any other block, so the
// results of its rows do not depend on where the part starts.
#include <sched.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <future>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "exospec/error.hpp"
#include "exospec/io/file.hpp"
#include "exospec/io/hash.hpp"
#include "exospec/io/input_file.hpp"
#include "exospec/kernels/scans.hpp"
#include "exospec/pipeline/profile.hpp"
#include "exospec/pipeline/run.hpp"
#include "exospec/pipeline/stages.hpp"

#include "block_buffer.hpp"

namespace exospec::pipeline::detail {

struct BlockPlan {
  std::uint64_t spectra = 0;          // N, the rows of the file
  std::uint64_t first = 0, end = 0;   // the rows computed and written
  std::size_t block = 1;              // rows per block
  std::size_t context = 0;            // rows read each side of a block
  std::size_t slot_rows = 0;          // a slot's rows: a block and its context

  // A plan for rows [first, end) of a file of `spectra` rows. The block is
  // config.block_rows, fewer where two slots of rows of `row_bytes` would
  // pass the block memory bound, and no more than 1/32 of the rows (but not
  // under 256), so that small files still overlap their I/O with compute.
  static BlockPlan make(const RunConfig& config, std::uint64_t spectra, std::uint64_t first,
                        std::uint64_t end, std::uint64_t row_bytes, std::size_t context);

  std::uint64_t blocks() const noexcept { return (end - first + block - 1) / block; }
  std::uint64_t row0(std::uint64_t k) const noexcept { return first + k * block; }
  // The block's own rows (those it writes).
  std::size_t rows(std::uint64_t row0) const noexcept;
  // The rows read and processed for the block at row0: its own and `context`
  // each side (within the file); `offset` is where its own rows start.
  struct Extent {
    std::uint64_t first;
    std::size_t rows, offset;
  };
  Extent extent(std::uint64_t row0) const noexcept;
};

// One channel's stages and its per-block buffers.
struct ChannelWork {
  ChannelStages stages;  // (its channel() and pixels() name the channel)
  std::optional<ChannelProfiles> profiles;  // the profile stage
  // Two sets of block buffers: the I/O thread reads the next block into one
  // and writes the previous one from it while the compute threads work on
  // the other.
  // (Sized once by allocate(): block_buffer.hpp.)
  struct Slot {
    BlockBuffer<double> fit_b, fit_s, fit_c, fit_w;
    BlockBuffer<float> fit_chi2;
    BlockBuffer<std::uint8_t> fit_status;
    BlockBuffer<std::uint32_t> counts;
    io::StoredRows stored_counts;  // counts as stored, until decoded into `counts`
    BlockBuffer<double> exposure, temperature;
    BlockBuffer<float> temperature_f, radiance, variance, denoised, denoised_variance;
    BlockBuffer<double> scale, offset;  // count model rows (anscombe, fit)
    BlockBuffer<std::uint8_t> quality;
  };
  std::array<Slot, 2> slots;

  ChannelWork(const std::string& ch, const io::InputFile& in, const RunConfig& config, int threads,
              const std::string& wisdom)
      : stages(config, ch, in.read_calibration(ch), threads, wisdom) {}
  // Sizes both slots for `slot_rows` rows of what the stages use.
  void allocate(const RunConfig& config, std::size_t slot_rows);
  // Bytes per row of both slots, about (for the block memory bound).
  std::uint64_t slot_row_bytes() const noexcept;
};

// The cores this process may run on (its affinity: under mpirun, its
// binding), or every core of the machine if that cannot be read; and their
// number.
cpu_set_t usable_core_set() noexcept;
unsigned usable_cores() noexcept;

// The channels a run processes: the configuration's, or every one in the file.
std::vector<std::string> select_channels(const RunConfig& config, const io::InputFile& in);

class BlockReader {
 public:
  // decode_here: inflate the counts on this (the I/O) thread, else leave
  // them stored for the compute threads (StageRunner::compute).
  BlockReader(const io::InputFile& in, std::vector<ChannelWork>& work, const BlockPlan& plan,
              bool decode_here, RunSummary& summary);
  void read(int slot, std::uint64_t row0);
  // The block's own rows of /geometry/time, read into the slot.
  std::span<const double> time(int slot, std::uint64_t row0) const;

 private:
  const io::InputFile& in_;
  std::vector<ChannelWork>& work_;
  const BlockPlan& plan_;
  bool decode_here_;
  RunSummary& summary_;
  std::array<std::vector<double>, 2> time_;
};

class StageRunner {
 public:
  // altitudes: the file's, all N; scans: the file's scans from them.
  StageRunner(const RunConfig& config, std::vector<ChannelWork>& work, const BlockPlan& plan,
              std::span<const double> altitudes, const std::vector<kernels::Scan>& scans,
              int threads, RunSummary& summary);
  // Decodes the counts left stored, then runs every stage on the slot's rows
  // (from their radiance on, after prepare()). With profiles_here, also gives
  // the block's fits to the profile stage.
  void compute(int slot, std::uint64_t row0, bool profiles_here);
  // The calibrate stage's first pass on a slot just read (radiance and
  // quality, despike included: ChannelStages::calibrate_radiance), on the
  // calling thread: the I/O thread's, beside compute() on the other slot,
  // when the compute threads leave it a core. Its thread time is kept apart
  // from the summary's (which compute() writes meanwhile):
  // prepare_seconds(), for the summary after the block loop.
  void prepare(int slot, std::uint64_t row0);
  double prepare_seconds() const noexcept { return prepare_seconds_; }
  // The profile stage: a block's fits, and every scan they complete.
  void add_profiles(int slot, std::uint64_t row0);

 private:
  const RunConfig& config_;
  std::vector<ChannelWork>& work_;
  const BlockPlan& plan_;
  std::span<const double> altitudes_;
  const std::vector<kernels::Scan>& scans_;
  int threads_;
  RunSummary& summary_;
  std::array<std::vector<std::int64_t>, 2> scan_;
  std::array<bool, 2> prepared_{};  // prepare() made the slot's radiance
  double prepare_seconds_ = 0.0;
};

// Where OutputWriter's rows go: the run's FileWriter, or (MPI) the
// io::ParallelRowWriter of every rank.
class RowSink {
 public:
  virtual ~RowSink() = default;
  virtual void rows(std::string_view dataset, std::uint64_t row0, std::span<const double> data) = 0;
  virtual void rows(std::string_view dataset, std::uint64_t row0, std::span<const float> data) = 0;
  virtual void rows(std::string_view dataset, std::uint64_t row0, std::span<const std::uint8_t> data) = 0;
};

template <class Writer>
class RowSinkOf final : public RowSink {
 public:
  explicit RowSinkOf(Writer& w) : w_(w) {}
  void rows(std::string_view d, std::uint64_t row0, std::span<const double> v) override { put(d, row0, v); }
  void rows(std::string_view d, std::uint64_t row0, std::span<const float> v) override { put(d, row0, v); }
  void rows(std::string_view d, std::uint64_t row0, std::span<const std::uint8_t> v) override { put(d, row0, v); }

 private:
  template <class T>
  void put(std::string_view d, std::uint64_t row0, std::span<const T> v) {
    w_.template write_rows<T>(d, row0, v);
  }
  Writer& w_;
};

// Creates every object of the output that the configured products need
// (geometry, and per channel calibrated, denoised, fit) for N spectra, and
// writes the per-channel constants. (The profile objects come at the end,
// write_profile_outputs.)
void create_outputs(io::FileWriter& w, const RunConfig& config, std::vector<ChannelWork>& work,
                    std::uint64_t spectra);

// Writes a slot's own rows into the objects create_outputs made.
class OutputWriter {
 public:
  OutputWriter(RowSink& sink, const RunConfig& config, std::vector<ChannelWork>& work,
               const BlockPlan& plan, std::span<const double> altitudes, RunSummary& summary);
  void write(int slot, std::uint64_t row0, std::span<const double> time);
  // The same calls with no rows (an MPI rank past its last block, which
  // still takes part in the collective writes).
  void write_nothing();

 private:
  void put(int slot, std::uint64_t row0, std::size_t rows, std::size_t off, std::span<const double> time);
  RowSink& sink_;
  const RunConfig& config_;
  std::vector<ChannelWork>& work_;
  const BlockPlan& plan_;
  std::span<const double> altitudes_;
  RunSummary& summary_;
};

// After the last block: /profile (when written) and the profile statuses
// (every scan of each channel's profiles must be fitted).
void write_profile_outputs(io::FileWriter& w, const RunConfig& config, std::vector<ChannelWork>& work,
                           RunSummary& summary);

class Provenance {
 public:
  // Starts hashing the input (on its own thread). `stamp` is the input's,
  // taken before it was opened. With hash_cores, the hashing thread runs on
  // those cores (an MPI run: every core of the node's ranks, so that the
  // scheduler spreads it over them rather than slowing one rank).
  Provenance(const std::filesystem::path& input, const std::optional<io::FileStamp>& stamp,
             RunSummary& summary, std::optional<cpu_set_t> hash_cores = std::nullopt);
  Provenance(const Provenance&) = delete;
  Provenance& operator=(const Provenance&) = delete;
  // Stops the hash early if it is still running (a failed run), and waits.
  ~Provenance();
  // The root attributes: schema, the effective configuration, the input path.
  void begin(io::FileWriter& w, const RunConfig& config) const;
  // The input's SHA-256; then throws if the input changed while it was read.
  void finish(io::FileWriter& w);

 private:
  std::filesystem::path input_;
  std::optional<io::FileStamp> stamp_;
  std::atomic<bool> cancel_{false};
  std::future<std::string> hash_;
};

// The input changed while it was read (a rename over it, a truncation, a write
// or its removal, seen in its stamp).
FileError input_changed(const std::filesystem::path& input, const std::string& how);

// The parts of an MPI run agree before every block's write whether any
// of them failed (run_mpi.cpp). agree(error) takes this part's error (or
// none) and returns if no part failed; otherwise it throws on every part:
// its own error where it failed, the first failing part's on the others.
class BlockAgreement {
 public:
  virtual ~BlockAgreement() = default;
  virtual void agree(std::exception_ptr error) = 0;
  // The blocks that every part steps through (the most of any part): a
  // part past its own last block takes part in the writes with no rows.
  std::uint64_t steps = 0;
};

// The block loop. With profiles_on_io, the profile stage is fed on this (the
// I/O) thread before each block is written, and each block's radiance made
// here after it is read (StageRunner::prepare), else both by the compute
// thread.
// Without an agreement, an error is thrown where it happens; with one (the
// parts of an MPI run), it is held to the next agreement, where every part
// stops together, and the loop ends with one more agreement.
void run_blocks(const BlockPlan& plan, BlockReader& reader, StageRunner& runner,
                OutputWriter& writer, bool profiles_on_io, const RunProgress& progress,
                BlockAgreement* agreement = nullptr);

}  // namespace exospec::pipeline::detail
