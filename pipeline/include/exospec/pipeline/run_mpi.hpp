#pragma once
// `mpirun -np R exospec run IN -o OUT`: the run of run.hpp spread over the
// ranks of an MPI communicator, writing one shared output with parallel
// HDF5 (MPI builds only: EXOSPEC_MPI, README "MPI").
//
// The file's rows are cut into R contiguous parts (at limb-scan starts when
// the profile stage runs, so that every scan is one rank's); each rank reads,
// calibrates, denoises and fits its part, with its own threads as in a serial
// run, and writes its rows with collective MPI-IO writes. Rank 0 creates the
// output's objects and writes the provenance and /profile (the profiles of
// every rank's scans, gathered). The output's datasets and attributes are
// those of a serial run for any R (created_utc aside).
#include <mpi.h>

#include <filesystem>
#include <string>

#include "exospec/error.hpp"
#include "exospec/pipeline/run.hpp"

namespace exospec::pipeline {

// What the other ranks throw when one rank failed: the first failing rank's
// message. (The failing rank throws its own error.)
class RankFailed : public Error {
 public:
  RankFailed(int rank, const std::string& message)
      : Error("rank " + std::to_string(rank) + " failed: " + message), rank_(rank) {}
  int rank() const noexcept { return rank_; }

 private:
  int rank_;
};

// Every rank of comm calls it with the same arguments (collective). `progress`
// sees this rank's rows. Returns the whole run's summary on every rank (counts
// and stage times summed over the ranks; `seconds`: the longest rank's wall
// time). On any rank's error every rank throws (its own error, or RankFailed)
// and the output does not appear.
RunSummary run_mpi(const RunConfig& config, const std::filesystem::path& input,
                   const std::filesystem::path& output, bool overwrite, int threads,
                   const RunProgress& progress, MPI_Comm comm);

}  // namespace exospec::pipeline
