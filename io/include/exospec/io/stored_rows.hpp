#pragma once
// A block of rows as the file stores them: the compressed chunks of a
// row-chunked dataset, fetched by File::fetch_rows() without HDF5's filter
// pipeline, and decoded afterwards by decode(), which calls no HDF5 function
// and so may run on any thread, several chunks at once.
//
// This takes decompression off the thread that makes the HDF5 calls (HDF5
// serialises them), so that it can be shared among the compute threads.
// Decoded values are the bytes HDF5 would have produced.
//
// The decoder knows what exospec and h5py write: chunks of whole rows,
// stored in the machine's byte order, with no filter, deflate, or shuffle
// then deflate. Any other storage (another filter such as Fletcher32 or
// SZIP, another byte order, chunks that split rows, a contiguous or compact
// dataset, a chunk never written) is read and decoded by HDF5 inside
// fetch_rows(), and then nothing is left to decode.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "exospec/io/types.hpp"

namespace exospec::io {

class StoredRows {
 public:
  // How a dataset's chunks are stored (found by File::fetch_rows()).
  struct Layout {
    std::size_t chunk_rows = 0;
    int shuffle_position = -1, deflate_position = -1;  // in the filter pipeline; -1: none
  };

  // Chunks fetched and not decoded yet (0 after HDF5 read the block itself,
  // and after clear()).
  std::size_t chunks() const noexcept { return chunks_.size(); }

  // Decodes chunk i into its rows of `out`, which must be the span given to
  // the fetch_rows() that filled this object. Different chunks write
  // different rows, so they may be decoded concurrently. A chunk that does
  // not decode to its size throws FileError naming the file, the dataset and
  // the chunk's first row.
  template <class T>
  void decode(std::size_t i, std::span<T> out) const;

  // Decodes every chunk on the calling thread, then clear().
  template <class T>
  void decode_all(std::span<T> out);

  // Forgets the fetched chunks (their memory is kept for the next block).
  void clear() noexcept {
    chunks_.clear();
    bytes_.clear();
  }

 private:
  friend class File;
  struct Chunk {
    std::size_t offset = 0, size = 0;  // in bytes_
    std::uint64_t first_row = 0;       // of the chunk in the dataset
    std::uint32_t filter_mask = 0;     // bit k: filter k was skipped
  };
  void decode_bytes(std::size_t i, unsigned char* out) const;

  std::string file_, dataset_;
  DType dtype_ = DType::kU8;
  std::size_t element_size_ = 0, row_size_ = 0;
  Layout layout_;
  std::uint64_t row0_ = 0, rows_ = 0;                   // the block
  std::vector<unsigned char> bytes_;
  std::vector<Chunk> chunks_;
};

}  // namespace exospec::io
