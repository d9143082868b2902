#pragma once
// Collective row writes into one shared output with MPI-IO (parallel HDF5;
// MPI builds only, EXOSPEC_MPI). The output is made by one rank's FileWriter,
// which creates every object and then suspends (FileWriter::suspend); every
// rank then opens the temporary file here and writes its own rows; the first
// rank resumes its FileWriter for the last objects and the commit.
//
// Every call is collective: each rank of the communicator makes the same
// calls, on the same datasets, in the same order. A rank with no rows for a
// call passes an empty span (it then takes part without writing).
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace exospec::io {

class ParallelRowWriter {
 public:
  // Opens `temporary` on every rank of comm; `path` (the final output) names
  // it in errors.
  ParallelRowWriter(const std::string& path, const std::string& temporary, MPI_Comm comm);
  ParallelRowWriter(const ParallelRowWriter&) = delete;
  ParallelRowWriter& operator=(const ParallelRowWriter&) = delete;
  ~ParallelRowWriter();  // closes the file if close() was not called

  // Rows [row0, row0 + data.size() / row_size) of a row-chunked dataset.
  template <class T>
  void write_rows(std::string_view dataset, std::uint64_t row0, std::span<const T> data);

  // Closes the datasets and the file; throws if the close fails.
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace exospec::io
