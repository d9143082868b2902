#pragma once
// Reading and writing HDF5 files through one checked layer.
//
// Every HDF5 call of exospec goes through the checked wrapper in io/src/h5.hpp:
// a failure becomes an exospec::FileError naming the file and the object, with
// HDF5's own message (its error stack, otherwise printed to stderr) captured into
// the error. HDF5's automatic error printing is switched off by this library.
//
// HDF5 (serial build) is not thread-safe: a File or FileWriter must be used by
// one thread at a time, and exospec keeps all HDF5 calls on one thread.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "exospec/io/stored_rows.hpp"
#include "exospec/io/types.hpp"

namespace exospec::io {

// For a program's main(), before any exospec or HDF5 call: HDF5 then does not
// run its library shutdown at process exit. With HDF5 1.10 that shutdown
// crashes if a file failed to close because its last flush failed (a disk
// that fills up during FileWriter::commit: HDF5 frees the file but keeps its
// ID, HDFGroup/hdf5 #2257, fixed in 1.14). exospec closes every file it opens,
// so nothing is left for the shutdown to do. The exospec command calls this;
// once HDF5 is in use it changes nothing. (A failed write before the commit
// needs none of this: FileWriter then closes the abandoned file cleanly.)
void skip_hdf5_shutdown_at_exit() noexcept;

struct DatasetInfo {
  std::optional<DType> dtype;    // empty when the type is none of DType
  std::string type_text;         // e.g. "uint32", "float64", "int16", "fixed-length string"
  Dims dims;                     // empty for a scalar
  std::uint64_t chunk_rows = 0;  // rows (first dimension) per chunk; 0 if not chunked
};

// A read-only HDF5 file. Opening checks that the file exists, is HDF5 and is not
// damaged; dataset handles stay open (with a large chunk cache) so that reading
// consecutive row blocks hits the cache.
class File {
 public:
  static File open(const std::filesystem::path& path);
  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  const std::string& path() const noexcept;

  // Whether the object (group or dataset) at an absolute path exists.
  bool exists(std::string_view object) const;
  bool is_group(std::string_view object) const;
  // Names of the members of a group, sorted.
  std::vector<std::string> children(std::string_view group) const;

  DatasetInfo dataset_info(std::string_view dataset) const;

  // Reads rows [row0, row0 + out.size() / row_size) of a dataset whose first
  // dimension is the row index (row_size = product of the other dimensions;
  // a 1-D dataset has rows of one element). HDF5 converts the stored type.
  template <class T>
  void read_rows(std::string_view dataset, std::uint64_t row0, std::span<T> out) const;
  // The same rows in two steps (see stored_rows.hpp): fetches the stored
  // chunks that hold them into `stored`, for stored.decode() to fill `out`
  // later, on any thread. Storage that the decoder does not know is read
  // into `out` here, by HDF5, and leaves stored.chunks() == 0.
  template <class T>
  void fetch_rows(std::string_view dataset, std::uint64_t row0, std::span<T> out,
                  StoredRows& stored) const;
  // Reads a whole dataset (out.size() must equal its element count).
  template <class T>
  void read(std::string_view dataset, std::span<T> out) const;
  template <class T>
  std::vector<T> read_all(std::string_view dataset) const;
  std::vector<std::string> read_strings(std::string_view dataset) const;

  bool has_attribute(std::string_view object, std::string_view name) const;
  std::string string_attribute(std::string_view object, std::string_view name) const;
  double double_attribute(std::string_view object, std::string_view name) const;
  std::int64_t int_attribute(std::string_view object, std::string_view name) const;
  // Type of an attribute: "string", "float64", "int32", ...
  std::string attribute_type(std::string_view object, std::string_view name) const;

 private:
  struct Impl;
  explicit File(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct WriteOptions {
  // 0: no compression; 1-9: shuffle + deflate at that level.
  int deflate_level = 0;
  // Target size of one chunk of a row-chunked dataset. Rows per chunk is the
  // largest power of two whose chunk fits (at least 1), so that row blocks of
  // power-of-two sizes are whole chunks.
  std::size_t chunk_bytes = 512 * 1024;
};

// Writes a new HDF5 file atomically: everything goes to a temporary file beside
// the target ("<name>.tmp-<random>"), renamed over the target by commit(). A
// writer destroyed without commit() removes its temporary file, so an error
// leaves nothing behind.
class FileWriter {
 public:
  FileWriter(const std::filesystem::path& path, WriteOptions options, bool overwrite);
  FileWriter(FileWriter&&) noexcept;
  FileWriter& operator=(FileWriter&&) noexcept;
  ~FileWriter();

  const std::string& path() const noexcept;            // the final path
  const std::string& temporary_path() const noexcept;  // where it is being written

  // Creates a dataset with `units` and `description` attributes. With
  // row_chunked, it is chunked along its first dimension (and compressed if
  // the options say so); otherwise contiguous (a scalar when dims is empty).
  // Intermediate groups are created as needed. An empty units or description
  // writes no such attribute (strings have no units).
  void create_dataset(std::string_view path, DType dtype, const Dims& dims, std::string_view units,
                      std::string_view description, bool row_chunked);
  void create_group(std::string_view path);

  template <class T>
  void write_rows(std::string_view dataset, std::uint64_t row0, std::span<const T> data);
  template <class T>
  void write(std::string_view dataset, std::span<const T> data);
  void write_strings(std::string_view dataset, const std::vector<std::string>& values);

  void set_attribute(std::string_view object, std::string_view name, std::string_view value);
  void set_attribute(std::string_view object, std::string_view name, double value);
  void set_attribute(std::string_view object, std::string_view name, std::int32_t value);

  DatasetInfo dataset_info(std::string_view dataset) const;

  // Flushes, closes and renames the temporary file to the target path.
  void commit();

  // For another writer of the same temporary file (the MPI run's collective
  // row writes, io/parallel.hpp): suspend() flushes and closes it, keeping it
  // (this writer still removes it if destroyed without commit()); resume()
  // opens it again for this writer's further writes and the commit().
  void suspend();
  void resume();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace exospec::io
