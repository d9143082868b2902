#pragma once
// Row writes into one shared output with MPI-IO (parallel HDF5;
// MPI builds only, EXOSPEC_MPI). The output is made by one rank's FileWriter,
// which creates every object and then suspends (FileWriter::suspend); every
// rank then opens the temporary file here and writes its own rows; the first
// rank resumes its FileWriter for the last objects and the commit.
//
// Every rank of the communicator makes the same calls, on the same datasets,
// in the same order (the first call on a dataset opens it on every rank, and
// a dataset with filters is written collectively). A rank with no rows for a
// call passes an empty span: it takes part in a collective write without
// writing, and skips an independent one. Datasets without filters are written
// independently (H5FD_MPIO_INDEPENDENT: each rank its own rows, without
// waiting for the others inside the write; their storage is allocated when
// the file is opened with MPI-IO).
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
