#include "exospec/io/file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <system_error>

#include "h5.hpp"
#if EXOSPEC_HAVE_MPI
#include "exospec/io/parallel.hpp"
#endif

namespace exospec::io {

std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::kU8:
      return "uint8";
    case DType::kU32:
      return "uint32";
    case DType::kI32:
      return "int32";
    case DType::kI64:
      return "int64";
    case DType::kF32:
      return "float32";
    case DType::kF64:
      return "float64";
    case DType::kString:
      return "string";
  }
  return "?";
}

namespace {

using h5::check;
using h5::Handle;
using h5::Where;

// Chunk cache of a row-chunked dataset: two chunks (at least 1 MiB), prime
// number of slots (HDF5 guidance), w0 = 1: rows are read or written once, in
// order, so the chunk being filled or read stays while finished ones go
// first. A larger cache only fills up with finished chunks, which HDF5 does
// not evict until the cache is full: 16 MiB per dataset made a run's memory
// grow with the number of spectra.
constexpr std::size_t kChunkCacheSlots = 521;
std::size_t chunk_cache_bytes(hid_t dcpl, std::size_t element_size) {
  std::size_t bytes = 0;
  if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
    hsize_t dims[H5S_MAX_RANK];
    const int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, dims);
    bytes = element_size;
    for (int i = 0; i < rank; ++i) bytes *= static_cast<std::size_t>(dims[i]);
  }
  return std::max<std::size_t>(2 * bytes, 1u << 20);
}

Handle open_dataset(hid_t file, const std::string& file_name, std::string_view path) {
  const Where w{file_name, path};
  if (!h5::path_exists(file, path, file_name)) {
    throw SchemaError(file_name, std::string(path), "missing dataset");
  }
  if (H5Oexists_by_name(file, std::string(path).c_str(), H5P_DEFAULT) > 0) {
    H5O_info_t info;
    // (The basic fields only: all of them include the size of a dataset's
    // chunk index, which HDF5 gets by loading every node of it.)
    const herr_t got = H5Oget_info_by_name2(file, std::string(path).c_str(), &info, H5O_INFO_BASIC,
                                            H5P_DEFAULT);
    // (After a failed read HDF5 1.10 may describe the object from what it
    // half-loaded: a read error is reported, not the type it then gives.)
    if (got < 0 && h5::io_error_pending()) h5::fail(w, "cannot read object header");
    if (got >= 0 && info.type != H5O_TYPE_DATASET) {
      throw SchemaError(file_name, std::string(path), "is not a dataset");
    }
  }
  if (h5::io_error_pending()) h5::fail(w, "cannot look up object");
  H5Eclear2(H5E_DEFAULT);
  // Open once to learn the chunk size, then with a cache sized for it.
  std::size_t cache = 1u << 20;
  {
    Handle probe = h5::dataset_handle(H5Dopen2(file, std::string(path).c_str(), H5P_DEFAULT), w,
                                      "cannot open dataset");
    Handle dcpl = h5::plist_handle(H5Dget_create_plist(probe.get()), w, "cannot read properties");
    Handle type = h5::type_handle(H5Dget_type(probe.get()), w, "cannot read type");
    cache = chunk_cache_bytes(dcpl.get(), H5Tget_size(type.get()));
  }
  Handle dapl = h5::plist_handle(H5Pcreate(H5P_DATASET_ACCESS), w, "cannot create property list");
  check(H5Pset_chunk_cache(dapl.get(), kChunkCacheSlots, cache, 1.0), w, "cannot set chunk cache");
  return h5::dataset_handle(H5Dopen2(file, std::string(path).c_str(), dapl.get()), w,
                            "cannot open dataset");
}

Dims space_dims(hid_t space, const Where& w) {
  const int rank = check(H5Sget_simple_extent_ndims(space), w, "cannot read dataspace");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (rank > 0) {
    check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), w, "cannot read dataspace");
  }
  return Dims(dims.begin(), dims.end());
}

Dims dataset_dims(hid_t dset, const Where& w) {
  Handle space = h5::space_handle(H5Dget_space(dset), w, "cannot read dataspace");
  return space_dims(space.get(), w);
}

DatasetInfo describe(hid_t dset, const Where& w) {
  DatasetInfo info;
  Handle type = h5::type_handle(H5Dget_type(dset), w, "cannot read datatype");
  auto [known, dtype] = h5::classify(type.get(), &info.type_text);
  if (known) info.dtype = dtype;
  info.dims = dataset_dims(dset, w);
  Handle dcpl = h5::plist_handle(H5Dget_create_plist(dset), w, "cannot read creation properties");
  if (!info.dims.empty() && H5Pget_layout(dcpl.get()) == H5D_CHUNKED) {
    std::vector<hsize_t> chunk(info.dims.size());
    check(H5Pget_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), w,
          "cannot read chunking");
    info.chunk_rows = chunk[0];
  }
  return info;
}

// Open dataset handles by path, kept open so that consecutive row blocks hit
// the chunk cache.
class DatasetCache {
 public:
  hid_t get(hid_t file, const std::string& file_name, std::string_view name) {
    auto it = handles_.find(name);
    if (it == handles_.end()) {
      it = handles_.emplace(std::string(name), open_dataset(file, file_name, name)).first;
    }
    return it->second.get();
  }
  void put(std::string_view name, Handle handle) {
    handles_.insert_or_assign(std::string(name), std::move(handle));
  }
  void clear() noexcept { handles_.clear(); }

 private:
  std::map<std::string, Handle, std::less<>> handles_;
};

std::uint64_t element_count(const Dims& dims) {
  std::uint64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

struct RowSelection {
  Handle file_space;
  Handle memory_space;
  std::uint64_t rows = 0;
};

// Selects the rows [row0, row0 + n_elements / row_size) of a dataset whose
// first dimension is the row index, after checking that the buffer holds whole
// rows inside the dataset. The memory space has the selection's shape: HDF5
// then copies whole rows (a 1-D memory space of the same size forces a
// general, slower path).
RowSelection select_rows(hid_t dset, std::uint64_t row0, std::size_t n_elements, const Where& w) {
  auto fail = [&](const std::string& message) {
    throw FileError(std::string(w.file), std::string(w.object), message);
  };
  RowSelection sel;
  sel.file_space = h5::space_handle(H5Dget_space(dset), w, "cannot read dataspace");
  const Dims dims = space_dims(sel.file_space.get(), w);
  if (dims.empty()) fail("is a scalar, not an array of rows");
  const std::uint64_t row_size = element_count(Dims(dims.begin() + 1, dims.end()));
  if (row_size == 0 || n_elements % row_size != 0) {
    fail("buffer of " + std::to_string(n_elements) + " elements is not a whole number of rows of " +
         std::to_string(row_size));
  }
  sel.rows = n_elements / row_size;
  if (row0 + sel.rows > dims[0]) {
    fail("rows " + std::to_string(row0) + ".." + std::to_string(row0 + sel.rows) + " beyond its " +
         std::to_string(dims[0]) + " rows");
  }
  if (sel.rows == 0) return sel;
  std::vector<hsize_t> start(dims.size(), 0), count(dims.begin(), dims.end());
  start[0] = row0;
  count[0] = sel.rows;
  check(H5Sselect_hyperslab(sel.file_space.get(), H5S_SELECT_SET, start.data(), nullptr,
                            count.data(), nullptr),
        w, "cannot select rows");
  sel.memory_space =
      h5::space_handle(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), w,
                       "cannot create memory space");
  return sel;
}

// Checks that a dataset holds exactly `n` elements.
void check_size(hid_t dset, std::uint64_t n, const Where& w) {
  const std::uint64_t held = element_count(dataset_dims(dset, w));
  if (held != n) {
    throw FileError(std::string(w.file), std::string(w.object),
                    "holds " + std::to_string(held) + " elements, buffer has " + std::to_string(n));
  }
}

// Reads a single-number attribute of class `cls` (H5T_FLOAT also accepts
// integers) converted to the memory type `mtype`.
template <class T>
T read_number_attribute(hid_t attr, hid_t mtype, H5T_class_t cls, const Where& w,
                        std::string_view name) {
  Handle space = h5::space_handle(H5Aget_space(attr), w, "cannot read attribute");
  Handle type = h5::type_handle(H5Aget_type(attr), w, "cannot read attribute");
  const H5T_class_t got = H5Tget_class(type.get());
  const bool ok = got == cls || (cls == H5T_FLOAT && got == H5T_INTEGER);
  if (!ok || H5Sget_simple_extent_npoints(space.get()) != 1) {
    throw SchemaError(std::string(w.file), std::string(w.object),
                      "attribute '" + std::string(name) + "' is not a single " +
                          (cls == H5T_FLOAT ? "number" : "integer"));
  }
  T value{};
  check(H5Aread(attr, mtype, &value), w, "cannot read attribute '" + std::string(name) + "'");
  return value;
}

Handle open_attribute(hid_t file, const std::string& file_name, std::string_view object,
                      std::string_view name) {
  const std::string obj(object), attr(name);
  const Where w{file_name, object};
  if (!h5::path_exists(file, object, file_name))
    throw SchemaError(file_name, obj, "missing object");
  if (H5Aexists_by_name(file, obj.c_str(), attr.c_str(), H5P_DEFAULT) <= 0) {
    if (h5::io_error_pending()) h5::fail(w, "cannot look up attribute '" + attr + "'");
    H5Eclear2(H5E_DEFAULT);
    throw SchemaError(file_name, obj, "missing attribute '" + attr + "'");
  }
  return h5::attribute_handle(
      H5Aopen_by_name(file, obj.c_str(), attr.c_str(), H5P_DEFAULT, H5P_DEFAULT), w,
      "cannot open attribute '" + attr + "'");
}

std::string read_string_attribute(hid_t attr, const Where& w, std::string_view name) {
  Handle type = h5::type_handle(H5Aget_type(attr), w, "cannot read attribute type");
  const std::string action = "cannot read attribute '" + std::string(name) + "'";
  if (H5Tget_class(type.get()) != H5T_STRING) {
    throw SchemaError(std::string(w.file), std::string(w.object),
                      "attribute '" + std::string(name) + "' is not a string");
  }
  Handle space = h5::space_handle(H5Aget_space(attr), w, action);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) {
    throw SchemaError(std::string(w.file), std::string(w.object),
                      "attribute '" + std::string(name) + "' is not a single string");
  }
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem = h5::vlen_string_type(w);
    char* value = nullptr;
    check(H5Aread(attr, mem.get(), &value), w, action);
    std::string out = value ? value : "";
    H5free_memory(value);
    return out;
  }
  const std::size_t size = H5Tget_size(type.get());
  std::string buf(size, '\0');
  check(H5Aread(attr, type.get(), buf.data()), w, action);
  buf.erase(std::find(buf.begin(), buf.end(), '\0'), buf.end());
  while (!buf.empty() && buf.back() == ' ') buf.pop_back();
  return buf;
}

}  // namespace

// ----------------------------------------------------------------------------- File

struct File::Impl {
  std::string path;
  Handle file;
  mutable DatasetCache datasets;

  hid_t dataset(std::string_view name) const { return datasets.get(file.get(), path, name); }
};

File::File(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::open(const std::filesystem::path& path) {
  h5::initialize();
  auto impl = std::make_unique<Impl>();
  impl->path = path.string();
  const Where w{impl->path, ""};
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw FileError(impl->path, "", "no such file");
  if (std::filesystem::is_directory(status)) throw FileError(impl->path, "", "is a directory");
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw FileError(impl->path, "", "cannot open for reading: permission denied?");
  }
  const htri_t is_hdf5 = H5Fis_hdf5(impl->path.c_str());
  if (is_hdf5 < 0 && h5::io_error_pending()) h5::fail(w, "cannot read");
  if (is_hdf5 <= 0) {
    h5::take_error_stack();
    throw FileError(impl->path, "", "not an HDF5 file (no HDF5 signature found)");
  }
  impl->file = h5::file_handle(H5Fopen(impl->path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), w,
                               "cannot open HDF5 file (truncated or damaged?)");
  return File(std::move(impl));
}

const std::string& File::path() const noexcept { return impl_->path; }

bool File::exists(std::string_view object) const {
  return h5::path_exists(impl_->file.get(), object, impl_->path);
}

bool File::is_group(std::string_view object) const {
  if (!exists(object)) return false;
  H5O_info_t info;
  // (The basic fields only: see open_dataset.)
  if (H5Oget_info_by_name2(impl_->file.get(), std::string(object).c_str(), &info, H5O_INFO_BASIC,
                           H5P_DEFAULT) < 0) {
    if (h5::io_error_pending()) h5::fail(Where{impl_->path, object}, "cannot read object header");
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  return info.type == H5O_TYPE_GROUP;
}

std::vector<std::string> File::children(std::string_view group) const {
  const Where w{impl_->path, group};
  if (!is_group(group)) throw SchemaError(impl_->path, std::string(group), "missing group");
  Handle g = h5::group_handle(H5Gopen2(impl_->file.get(), std::string(group).c_str(), H5P_DEFAULT),
                              w, "cannot open group");
  std::vector<std::string> names;
  auto cb = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  check(H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, cb, &names), w,
        "cannot list group");
  std::sort(names.begin(), names.end());
  return names;
}

DatasetInfo File::dataset_info(std::string_view dataset) const {
  return describe(impl_->dataset(dataset), Where{impl_->path, dataset});
}

template <class T>
void File::read_rows(std::string_view dataset, std::uint64_t row0, std::span<T> out) const {
  const Where w{impl_->path, dataset};
  const hid_t dset = impl_->dataset(dataset);
  const RowSelection sel = select_rows(dset, row0, out.size(), w);
  if (sel.rows == 0) return;
  const Handle dxpl = h5::transfer_plist(out.size(), w);
  check(H5Dread(dset, h5::memory_type(DTypeOf<T>::value), sel.memory_space.get(),
                sel.file_space.get(), dxpl.get(), out.data()),
        w, "cannot read rows");
}

namespace {

// How the chunks of a dataset can be decoded without HDF5, if they can: the
// pipeline's filter positions, and the chunk's rows. False when they cannot.
bool direct_decoding(hid_t dset, DType dtype, const Dims& dims, const Where& w,
                     StoredRows::Layout& layout) {
  if constexpr (std::endian::native != std::endian::little) return false;
  if (dims.empty()) return false;
  Handle type = h5::type_handle(H5Dget_type(dset), w, "cannot read datatype");
  if (H5Tequal(type.get(), h5::file_type(dtype)) <= 0) return false;  // another byte order or type
  Handle dcpl = h5::plist_handle(H5Dget_create_plist(dset), w, "cannot read creation properties");
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED) return false;
  std::vector<hsize_t> chunk(dims.size());
  if (H5Pget_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()) !=
      static_cast<int>(dims.size())) {
    return false;
  }
  for (std::size_t d = 1; d < dims.size(); ++d) {
    if (chunk[d] != dims[d]) return false;  // chunks split rows
  }
  layout.chunk_rows = static_cast<std::size_t>(chunk[0]);
  layout.shuffle_position = layout.deflate_position = -1;
  const int nfilters = check(H5Pget_nfilters(dcpl.get()), w, "cannot read filters");
  for (int k = 0; k < nfilters; ++k) {
    unsigned flags = 0, config = 0;
    std::size_t nvalues = 0;
    const H5Z_filter_t id =
        H5Pget_filter2(dcpl.get(), static_cast<unsigned>(k), &flags, &nvalues, nullptr, 0, nullptr, &config);
    if (id == H5Z_FILTER_SHUFFLE && k == 0) {
      layout.shuffle_position = k;
    } else if (id == H5Z_FILTER_DEFLATE && layout.deflate_position < 0) {
      layout.deflate_position = k;
    } else {
      H5Eclear2(H5E_DEFAULT);
      return false;  // another filter, or an order the decoder does not undo
    }
  }
  return true;
}

}  // namespace

template <class T>
void File::fetch_rows(std::string_view dataset, std::uint64_t row0, std::span<T> out,
                      StoredRows& stored) const {
  stored.clear();
  const Where w{impl_->path, dataset};
  const hid_t dset = impl_->dataset(dataset);
  const Dims dims = dataset_dims(dset, w);
  StoredRows::Layout layout;
  if (!direct_decoding(dset, DTypeOf<T>::value, dims, w, layout)) {
    read_rows(dataset, row0, out);
    return;
  }
  const RowSelection sel = select_rows(dset, row0, out.size(), w);  // (checks the block)
  if (sel.rows == 0) return;
  stored.file_ = impl_->path;
  stored.dataset_ = std::string(dataset);
  stored.dtype_ = DTypeOf<T>::value;
  stored.element_size_ = sizeof(T);
  stored.row_size_ = static_cast<std::size_t>(element_count(Dims(dims.begin() + 1, dims.end())));
  stored.layout_ = layout;
  stored.row0_ = row0;
  stored.rows_ = sel.rows;
  std::vector<hsize_t> offset(dims.size(), 0);
  for (std::uint64_t c = row0 / layout.chunk_rows; c * layout.chunk_rows < row0 + sel.rows; ++c) {
    offset[0] = c * layout.chunk_rows;
    hsize_t size = 0;
    check(H5Dget_chunk_storage_size(dset, offset.data(), &size), w, "cannot locate chunk");
    if (size == 0) {  // never written: HDF5 knows the fill value
      stored.clear();
      read_rows(dataset, row0, out);
      return;
    }
    StoredRows::Chunk chunk;
    chunk.offset = stored.bytes_.size();
    chunk.size = static_cast<std::size_t>(size);
    chunk.first_row = offset[0];
    stored.bytes_.resize(chunk.offset + chunk.size);
    check(H5Dread_chunk(dset, H5P_DEFAULT, offset.data(), &chunk.filter_mask,
                        stored.bytes_.data() + chunk.offset),
          w, "cannot read chunk");
    stored.chunks_.push_back(chunk);
  }
}

template <class T>
void File::read(std::string_view dataset, std::span<T> out) const {
  const Where w{impl_->path, dataset};
  const hid_t dset = impl_->dataset(dataset);
  check_size(dset, out.size(), w);
  if (out.empty()) return;
  const Handle dxpl = h5::transfer_plist(out.size(), w);
  check(H5Dread(dset, h5::memory_type(DTypeOf<T>::value), H5S_ALL, H5S_ALL, dxpl.get(), out.data()),
        w, "cannot read dataset");
}

template <class T>
std::vector<T> File::read_all(std::string_view dataset) const {
  std::vector<T> out(
      element_count(dataset_dims(impl_->dataset(dataset), Where{impl_->path, dataset})));
  read(dataset, std::span<T>(out));
  return out;
}

std::vector<std::string> File::read_strings(std::string_view dataset) const {
  const Where w{impl_->path, dataset};
  const hid_t dset = impl_->dataset(dataset);
  const DatasetInfo info = describe(dset, w);
  if (info.dtype != DType::kString) {
    throw SchemaError(impl_->path, std::string(dataset),
                      "dtype " + info.type_text + ", expected variable-length string");
  }
  std::vector<char*> raw(element_count(info.dims), nullptr);
  if (raw.empty()) return {};
  Handle mem = h5::vlen_string_type(w);
  check(H5Dread(dset, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), w,
        "cannot read strings");
  std::vector<std::string> out;
  out.reserve(raw.size());
  for (char* s : raw) out.emplace_back(s ? s : "");
  Handle space = h5::space_handle(H5Dget_space(dset), w, "cannot read dataspace");
  H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, raw.data());
  return out;
}

bool File::has_attribute(std::string_view object, std::string_view name) const {
  if (!exists(object)) return false;
  const htri_t r = H5Aexists_by_name(impl_->file.get(), std::string(object).c_str(),
                                     std::string(name).c_str(), H5P_DEFAULT);
  if (r < 0 && h5::io_error_pending()) {
    h5::fail(Where{impl_->path, object}, "cannot look up attribute '" + std::string(name) + "'");
  }
  H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

std::string File::string_attribute(std::string_view object, std::string_view name) const {
  Handle attr = open_attribute(impl_->file.get(), impl_->path, object, name);
  return read_string_attribute(attr.get(), Where{impl_->path, object}, name);
}

double File::double_attribute(std::string_view object, std::string_view name) const {
  Handle attr = open_attribute(impl_->file.get(), impl_->path, object, name);
  return read_number_attribute<double>(attr.get(), H5T_NATIVE_DOUBLE, H5T_FLOAT,
                                       Where{impl_->path, object}, name);
}

std::int64_t File::int_attribute(std::string_view object, std::string_view name) const {
  Handle attr = open_attribute(impl_->file.get(), impl_->path, object, name);
  return read_number_attribute<std::int64_t>(attr.get(), H5T_NATIVE_INT64, H5T_INTEGER,
                                             Where{impl_->path, object}, name);
}

std::string File::attribute_type(std::string_view object, std::string_view name) const {
  const Where w{impl_->path, object};
  Handle attr = open_attribute(impl_->file.get(), impl_->path, object, name);
  Handle type = h5::type_handle(H5Aget_type(attr.get()), w, "cannot read attribute");
  std::string text;
  h5::classify(type.get(), &text);
  return text;
}

#define EXOSPEC_INSTANTIATE_READ(T)                                                      \
  template void File::read_rows<T>(std::string_view, std::uint64_t, std::span<T>) const; \
  template void File::fetch_rows<T>(std::string_view, std::uint64_t, std::span<T>, StoredRows&) const; \
  template void File::read<T>(std::string_view, std::span<T>) const;                     \
  template std::vector<T> File::read_all<T>(std::string_view) const;
EXOSPEC_INSTANTIATE_READ(std::uint8_t)
EXOSPEC_INSTANTIATE_READ(std::uint32_t)
EXOSPEC_INSTANTIATE_READ(std::int32_t)
EXOSPEC_INSTANTIATE_READ(std::int64_t)
EXOSPEC_INSTANTIATE_READ(float)
EXOSPEC_INSTANTIATE_READ(double)
#undef EXOSPEC_INSTANTIATE_READ

// ----------------------------------------------------------------------- FileWriter

struct FileWriter::Impl {
  std::string path;
  std::string tmp;
  WriteOptions options;
  bool overwrite = false;
  Handle file;
  DatasetCache datasets;
  bool committed = false;
  // The row-chunked datasets without filters that this writer made, whose
  // stored elements are the memory's (little-endian host): their whole
  // chunks are written as they are (write_rows).
  struct DirectChunks {
    DType dtype;
    std::size_t rank;
    std::uint64_t rows, chunk_rows, row_elements;
  };
  std::map<std::string, DirectChunks, std::less<>> direct;

  Where where(std::string_view object) const { return Where{path, object}; }

  hid_t dataset(std::string_view name) { return datasets.get(file.get(), path, name); }

  void discard() noexcept {
    // Redirect first: closing a dataset flushes its raw-data caches, and a
    // close whose write fails leaks them inside HDF5.
    if (file && !committed) redirect_to_memory();
    datasets.clear();
    file.reset();
    if (!tmp.empty() && !committed) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
    }
  }

  // Before an abandoned output is closed, its descriptor is pointed at an
  // anonymous in-memory file. Closing flushes HDF5's caches, and if that
  // write fails (the error that got us here may be a full disk), HDF5 1.10
  // frees the file but keeps its ID, and its library shutdown at process exit
  // then crashes on it (HDFGroup/hdf5 #2257, fixed in 1.14). The bytes are
  // discarded anyway; in memory the flush succeeds and the close is clean.
  void redirect_to_memory() noexcept {
    const hid_t fapl = H5Fget_access_plist(file.get());
    const bool sec2 = fapl >= 0 && H5Pget_driver(fapl) == H5FD_SEC2;
    if (fapl >= 0) H5Pclose(fapl);
    void* handle = nullptr;
    if (!sec2 || H5Fget_vfd_handle(file.get(), H5P_DEFAULT, &handle) < 0 || handle == nullptr) {
      H5Eclear2(H5E_DEFAULT);
      return;
    }
    const int fd = *static_cast<int*>(handle);  // the sec2 driver's handle is its descriptor
    const int mem = memfd_create("exospec-discarded-output", MFD_CLOEXEC);
    if (mem < 0) return;
    dup2(mem, fd);
    ::close(mem);
  }

  void write_string_attr(hid_t obj, std::string_view object, std::string_view name,
                         std::string_view value) {
    const Where w = where(object);
    const std::string attr_name(name);
    if (H5Aexists(obj, attr_name.c_str()) > 0) H5Adelete(obj, attr_name.c_str());
    H5Eclear2(H5E_DEFAULT);
    Handle type = h5::vlen_string_type(w);
    Handle space = h5::space_handle(H5Screate(H5S_SCALAR), w, "cannot create dataspace");
    Handle attr = h5::attribute_handle(
        H5Acreate2(obj, attr_name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), w,
        "cannot create attribute '" + attr_name + "'");
    const std::string copy(value);
    const char* ptr = copy.c_str();
    check(H5Awrite(attr.get(), type.get(), &ptr), w, "cannot write attribute '" + attr_name + "'");
  }

  template <class T>
  void write_number_attr(std::string_view object, std::string_view name, T value, hid_t ftype,
                         hid_t mtype) {
    const Where w = where(object);
    const std::string obj(object), attr_name(name);
    if (!h5::path_exists(file.get(), object, path)) throw FileError(path, obj, "missing object");
    if (H5Aexists_by_name(file.get(), obj.c_str(), attr_name.c_str(), H5P_DEFAULT) > 0) {
      H5Adelete_by_name(file.get(), obj.c_str(), attr_name.c_str(), H5P_DEFAULT);
    }
    H5Eclear2(H5E_DEFAULT);
    Handle space = h5::space_handle(H5Screate(H5S_SCALAR), w, "cannot create dataspace");
    Handle attr =
        h5::attribute_handle(H5Acreate_by_name(file.get(), obj.c_str(), attr_name.c_str(), ftype,
                                               space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                             w, "cannot create attribute '" + attr_name + "'");
    check(H5Awrite(attr.get(), mtype, &value), w, "cannot write attribute '" + attr_name + "'");
  }
};

namespace {

// Renames the finished temporary file to the target; without `overwrite`,
// never over a file that appeared meanwhile (another run writing the same
// output): renameat2(RENAME_NOREPLACE), or link + unlink where the file
// system lacks it. Returns what went wrong, or an empty string.
std::string rename_into_place(const std::string& tmp, const std::string& target, bool overwrite) {
  const auto dir = std::filesystem::path(target).has_parent_path()
                       ? std::filesystem::path(target).parent_path()
                       : std::filesystem::path(".");
  auto explain = [&](int err) {
    std::error_code ec;
    if (err == EEXIST)
      return std::string("output file already exists (written meanwhile by another program)");
    if (err == ENOENT && !std::filesystem::is_directory(dir, ec)) {
      return "cannot rename temporary file into place: directory " + dir.string() + " was removed";
    }
    if (err == ENOENT) return "cannot rename temporary file into place: " + tmp + " was removed";
    return "cannot rename temporary file into place: " + std::generic_category().message(err);
  };
  if (overwrite) {
    return ::rename(tmp.c_str(), target.c_str()) == 0 ? std::string() : explain(errno);
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) == 0)
    return {};
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return explain(errno);
  if (::link(tmp.c_str(), target.c_str()) == 0) {
    ::unlink(tmp.c_str());
    return {};
  }
  if (errno != EPERM && errno != ENOTSUP) return explain(errno);
  // No hard links either (FAT): check, then rename.
  std::error_code ec;
  if (std::filesystem::exists(target, ec)) return explain(EEXIST);
  return ::rename(tmp.c_str(), target.c_str()) == 0 ? std::string() : explain(errno);
}

}  // namespace

FileWriter::FileWriter(const std::filesystem::path& path, WriteOptions options, bool overwrite)
    : impl_(std::make_unique<Impl>()) {
  h5::initialize();
  impl_->path = path.string();
  impl_->options = options;
  impl_->overwrite = overwrite;
  if (options.deflate_level < 0 || options.deflate_level > 9) {
    throw FileError(impl_->path, "", "deflate level must be 0-9");
  }
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    if (std::filesystem::is_directory(path, ec)) throw FileError(impl_->path, "", "is a directory");
    if (!overwrite) throw FileError(impl_->path, "", "output file already exists");
  }
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(dir, ec)) {
    throw FileError(impl_->path, "",
                    std::filesystem::exists(dir, ec) ? dir.string() + " is not a directory"
                                                     : "directory " + dir.string() + " does not exist");
  }
  std::random_device rd;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".tmp-%d-%08x", static_cast<int>(getpid()), rd());
  impl_->tmp = impl_->path + suffix;
  const Handle fapl = h5::create_access_plist(Where{impl_->path, ""});
  const hid_t id = H5Fcreate(impl_->tmp.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get());
  if (id < 0) {
    // HDF5 leaves the file it created if writing its first bytes failed (a
    // full disk); H5F_ACC_EXCL made sure that it is ours.
    std::filesystem::remove(impl_->tmp, ec);
    h5::fail(Where{impl_->path, ""}, "cannot create output file");
  }
  impl_->file = Handle(id, H5Fclose);
}

FileWriter::FileWriter(FileWriter&&) noexcept = default;
FileWriter& FileWriter::operator=(FileWriter&&) noexcept = default;
FileWriter::~FileWriter() {
  if (impl_) impl_->discard();
}

const std::string& FileWriter::path() const noexcept { return impl_->path; }
const std::string& FileWriter::temporary_path() const noexcept { return impl_->tmp; }

void FileWriter::create_group(std::string_view path) {
  const Where w = impl_->where(path);
  if (h5::path_exists(impl_->file.get(), path, impl_->path)) return;
  Handle lcpl = h5::plist_handle(H5Pcreate(H5P_LINK_CREATE), w, "cannot create property list");
  check(H5Pset_create_intermediate_group(lcpl.get(), 1), w, "cannot set property");
  Handle g = h5::group_handle(H5Gcreate2(impl_->file.get(), std::string(path).c_str(), lcpl.get(),
                                         H5P_DEFAULT, H5P_DEFAULT),
                              w, "cannot create group");
}

void FileWriter::create_dataset(std::string_view path, DType dtype, const Dims& dims,
                                std::string_view units, std::string_view description,
                                bool row_chunked) {
  const Where w = impl_->where(path);
  Handle lcpl = h5::plist_handle(H5Pcreate(H5P_LINK_CREATE), w, "cannot create property list");
  check(H5Pset_create_intermediate_group(lcpl.get(), 1), w, "cannot set property");
  Handle dcpl = h5::plist_handle(H5Pcreate(H5P_DATASET_CREATE), w, "cannot create property list");
  Handle dapl = h5::plist_handle(H5Pcreate(H5P_DATASET_ACCESS), w, "cannot create property list");

  Handle string_type;
  hid_t ftype;
  std::size_t element_size;
  if (dtype == DType::kString) {
    string_type = h5::vlen_string_type(w);
    ftype = string_type.get();
    element_size = sizeof(char*);
  } else {
    ftype = h5::file_type(dtype);
    element_size = H5Tget_size(ftype);
  }

  Handle space;
  if (dims.empty()) {
    space = h5::space_handle(H5Screate(H5S_SCALAR), w, "cannot create dataspace");
  } else {
    const std::vector<hsize_t> d(dims.begin(), dims.end());
    space = h5::space_handle(H5Screate_simple(static_cast<int>(d.size()), d.data(), nullptr), w,
                             "cannot create dataspace");
    if (row_chunked && dims[0] > 0 && element_count(dims) > 0) {
      const std::uint64_t row_bytes =
          element_count(Dims(dims.begin() + 1, dims.end())) * element_size;
      std::uint64_t rows = 1;
      while (rows * 2 * row_bytes <= impl_->options.chunk_bytes && rows * 2 <= dims[0]) rows *= 2;
      std::vector<hsize_t> chunk(d);
      chunk[0] = rows;
      check(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), w,
            "cannot set chunking");
      if (impl_->options.deflate_level > 0) {
        check(H5Pset_shuffle(dcpl.get()), w, "cannot set shuffle filter");
        check(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(impl_->options.deflate_level)), w,
              "cannot set deflate filter");
      }
    }
  }
  // No modification times in object headers: same data, same bytes.
  check(H5Pset_obj_track_times(dcpl.get(), 0), w, "cannot set property");
  // Without filters, no chunk cache: HDF5 then writes a whole chunk straight
  // from the caller's rows (with a cache it copies them into the cache
  // first, and writes them out from there), and a part of a chunk in place.
  const bool filtered = H5Pget_nfilters(dcpl.get()) > 0;
  if (row_chunked && !filtered && H5Pget_layout(dcpl.get()) == H5D_CHUNKED && dtype != DType::kString &&
      H5Tequal(ftype, h5::memory_type(dtype)) > 0) {
    std::vector<hsize_t> chunk(dims.size());
    check(H5Pget_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), w, "cannot read chunking");
    impl_->direct.insert_or_assign(std::string(path), Impl::DirectChunks{dtype, dims.size(), dims[0], chunk[0],
                                                                         element_count(Dims(dims.begin() + 1, dims.end()))});
  }
  check(H5Pset_chunk_cache(dapl.get(), kChunkCacheSlots,
                           filtered ? chunk_cache_bytes(dcpl.get(), element_size) : 0, 1.0),
        w, "cannot set chunk cache");
  Handle dset = h5::dataset_handle(H5Dcreate2(impl_->file.get(), std::string(path).c_str(), ftype,
                                              space.get(), lcpl.get(), dcpl.get(), dapl.get()),
                                   w, "cannot create dataset");
  if (!units.empty()) impl_->write_string_attr(dset.get(), path, "units", units);
  if (!description.empty()) impl_->write_string_attr(dset.get(), path, "description", description);
  impl_->datasets.put(path, std::move(dset));
}

template <class T>
void FileWriter::write_rows(std::string_view dataset, std::uint64_t row0, std::span<const T> data) {
  const Where w = impl_->where(dataset);
  const hid_t dset = impl_->dataset(dataset);
  const RowSelection sel = select_rows(dset, row0, data.size(), w);
  if (sel.rows == 0) return;
  // The whole chunks among the rows, of a dataset without filters, as they
  // are (H5Dwrite_chunk): through H5Dwrite, HDF5 1.10 sends each chunk not
  // yet in the file through a chunk buffer that it fills with the fill value
  // first and copies the rows into. The rows before and after them as usual.
  if (const auto it = impl_->direct.find(dataset);
      it != impl_->direct.end() && it->second.dtype == DTypeOf<T>::value) {
    const Impl::DirectChunks& d = it->second;
    const std::uint64_t cr = d.chunk_rows, end = row0 + sel.rows;
    const std::uint64_t first = (row0 + cr - 1) / cr * cr;
    const std::uint64_t last = std::min(end, d.rows / cr * cr) / cr * cr;  // (full chunks only)
    if (first < last) {
      if (first > row0) write_rows<T>(dataset, row0, data.first((first - row0) * d.row_elements));
      std::vector<hsize_t> offset(d.rank, 0);
      for (std::uint64_t r = first; r < last; r += cr) {
        offset[0] = r;
        check(H5Dwrite_chunk(dset, H5P_DEFAULT, 0, offset.data(), cr * d.row_elements * sizeof(T),
                             data.data() + (r - row0) * d.row_elements),
              w, "cannot write rows");
      }
      if (end > last) write_rows<T>(dataset, last, data.subspan((last - row0) * d.row_elements));
      return;
    }
  }
  const Handle dxpl = h5::transfer_plist(data.size(), w);
  check(H5Dwrite(dset, h5::memory_type(DTypeOf<T>::value), sel.memory_space.get(),
                 sel.file_space.get(), dxpl.get(), data.data()),
        w, "cannot write rows");
}

template <class T>
void FileWriter::write(std::string_view dataset, std::span<const T> data) {
  const Where w = impl_->where(dataset);
  const hid_t dset = impl_->dataset(dataset);
  check_size(dset, data.size(), w);
  const Handle dxpl = h5::transfer_plist(data.size(), w);
  check(H5Dwrite(dset, h5::memory_type(DTypeOf<T>::value), H5S_ALL, H5S_ALL, dxpl.get(),
                 data.data()),
        w, "cannot write dataset");
}

void FileWriter::write_strings(std::string_view dataset, const std::vector<std::string>& values) {
  const Where w = impl_->where(dataset);
  const hid_t dset = impl_->dataset(dataset);
  check_size(dset, values.size(), w);
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const auto& s : values) ptrs.push_back(s.c_str());
  Handle mem = h5::vlen_string_type(w);
  // A type-conversion buffer for these strings only: HDF5's default is 1 MiB,
  // allocated and zeroed at every call (a quarter of a small run's writes).
  Handle dxpl = h5::plist_handle(H5Pcreate(H5P_DATASET_XFER), w, "cannot create property list");
  check(H5Pset_buffer(dxpl.get(), std::max<std::size_t>(values.size(), 1) * 4 * sizeof(char*), nullptr, nullptr), w,
        "cannot set conversion buffer");
  check(H5Dwrite(dset, mem.get(), H5S_ALL, H5S_ALL, dxpl.get(), ptrs.data()), w, "cannot write strings");
}

void FileWriter::set_attribute(std::string_view object, std::string_view name,
                               std::string_view value) {
  const Where w = impl_->where(object);
  if (!h5::path_exists(impl_->file.get(), object, impl_->path)) {
    throw FileError(impl_->path, std::string(object), "missing object");
  }
  Handle obj(check(H5Oopen(impl_->file.get(), std::string(object).c_str(), H5P_DEFAULT), w,
                   "cannot open object"),
             H5Oclose);
  impl_->write_string_attr(obj.get(), object, name, value);
}

void FileWriter::set_attribute(std::string_view object, std::string_view name, double value) {
  impl_->write_number_attr(object, name, value, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE);
}

void FileWriter::set_attribute(std::string_view object, std::string_view name, std::int32_t value) {
  impl_->write_number_attr(object, name, value, H5T_STD_I32LE, H5T_NATIVE_INT32);
}

DatasetInfo FileWriter::dataset_info(std::string_view dataset) const {
  return describe(impl_->dataset(dataset), impl_->where(dataset));
}

void FileWriter::commit() {
  const Where w{impl_->path, ""};
  // Flush while the datasets are open (it flushes their caches too), so that a
  // write that fails here fails once; a failed dataset close leaks its caches.
  check(H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL), w, "cannot flush output file");
  impl_->datasets.clear();
  if (impl_->file.close() < 0) h5::fail(w, "cannot close output file");
  std::string failure = rename_into_place(impl_->tmp, impl_->path, impl_->overwrite);
  if (!failure.empty()) {
    // Removed now, so that the message can say if it cannot be (a folder made
    // read-only meanwhile): then it is at least emptied.
    std::error_code ec, ec_exists;
    if (!std::filesystem::remove(impl_->tmp, ec) && ec &&
        std::filesystem::exists(impl_->tmp, ec_exists)) {
      failure += "; cannot remove the temporary file " + impl_->tmp + ": " + ec.message();
      std::filesystem::resize_file(impl_->tmp, 0, ec);
      if (!ec) failure += " (left empty)";
    }
    impl_->tmp.clear();
    throw FileError(impl_->path, "", failure);
  }
  impl_->committed = true;
}

void FileWriter::suspend() {
  const Where w{impl_->path, ""};
  check(H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL), w, "cannot flush output file");
  impl_->datasets.clear();
  if (impl_->file.close() < 0) h5::fail(w, "cannot close output file");
}

void FileWriter::resume() {
  const Where w{impl_->path, ""};
  if (impl_->file) return;
  const Handle fapl = h5::create_access_plist(w);
  impl_->file = h5::file_handle(H5Fopen(impl_->tmp.c_str(), H5F_ACC_RDWR, fapl.get()), w,
                                "cannot open the temporary output " + impl_->tmp + " again");
}

#define EXOSPEC_INSTANTIATE_WRITE(T)                                                            \
  template void FileWriter::write_rows<T>(std::string_view, std::uint64_t, std::span<const T>); \
  template void FileWriter::write<T>(std::string_view, std::span<const T>);
EXOSPEC_INSTANTIATE_WRITE(std::uint8_t)
EXOSPEC_INSTANTIATE_WRITE(std::uint32_t)
EXOSPEC_INSTANTIATE_WRITE(std::int32_t)
EXOSPEC_INSTANTIATE_WRITE(std::int64_t)
EXOSPEC_INSTANTIATE_WRITE(float)
EXOSPEC_INSTANTIATE_WRITE(double)
#undef EXOSPEC_INSTANTIATE_WRITE

}  // namespace exospec::io

#if EXOSPEC_HAVE_MPI
// ----------------------------------------------------------------------- ParallelRowWriter

namespace exospec::io {

struct ParallelRowWriter::Impl {
  std::string path;
  Handle file;
  DatasetCache datasets;
  // The datasets with filters (deflate), read when they are opened: those
  // are written collectively, as parallel HDF5 requires; the others
  // independently, each rank its own rows, without waiting for the others
  // inside the write.
  std::set<std::string, std::less<>> filtered;
};

ParallelRowWriter::ParallelRowWriter(const std::string& path, const std::string& temporary, MPI_Comm comm)
    : impl_(std::make_unique<Impl>()) {
  h5::initialize();
  impl_->path = path;
  const Where w{impl_->path, ""};
  const Handle fapl = h5::create_access_plist(w);
  check(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL), w, "cannot set the MPI-IO driver");
  // Metadata written collectively; read by each rank as it needs it (the
  // independent row writes below may read the chunk index on one rank only).
  check(H5Pset_coll_metadata_write(fapl.get(), true), w, "cannot set collective metadata writes");
  impl_->file = h5::file_handle(H5Fopen(temporary.c_str(), H5F_ACC_RDWR, fapl.get()), w,
                                "cannot open the temporary output " + temporary + " with MPI-IO");
  // Every dataset opened now, on every rank in the same order: opening one
  // allocates its storage, collectively. Done later, at a dataset's first
  // write, a rank whose earlier write had failed could leave that collective
  // call another way than the others, which would then wait for it forever.
  std::vector<std::string> names;
  auto visit = [](hid_t, const char* name, const H5O_info_t* info, void* op) -> herr_t {
    if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(op)->push_back(std::string("/") + name);
    return 0;
  };
  check(H5Ovisit(impl_->file.get(), H5_INDEX_NAME, H5_ITER_INC, visit, &names), w, "cannot list the datasets");
  for (const auto& n : names) {
    const Where wd{impl_->path, n};
    const hid_t dset = impl_->datasets.get(impl_->file.get(), impl_->path, n);
    const Handle dcpl = h5::plist_handle(H5Dget_create_plist(dset), wd, "cannot read the creation properties");
    const int filters = H5Pget_nfilters(dcpl.get());
    if (filters < 0) h5::fail(wd, "cannot read the filters");
    if (filters > 0) impl_->filtered.insert(n);
  }
}

ParallelRowWriter::~ParallelRowWriter() {
  if (impl_) {
    impl_->datasets.clear();
    impl_->file.reset();
  }
}

template <class T>
void ParallelRowWriter::write_rows(std::string_view dataset, std::uint64_t row0, std::span<const T> data) {
  const Where w{impl_->path, dataset};
  const hid_t dset = impl_->datasets.get(impl_->file.get(), impl_->path, dataset);
  const bool collective = impl_->filtered.contains(dataset);
  if (!collective && data.empty()) return;
  RowSelection sel = select_rows(dset, row0, data.size(), w);
  if (sel.rows == 0) {
    // This rank takes part in the collective write with nothing selected.
    check(H5Sselect_none(sel.file_space.get()), w, "cannot select no rows");
    const hsize_t one = 1;
    sel.memory_space = h5::space_handle(H5Screate_simple(1, &one, nullptr), w, "cannot create memory space");
    check(H5Sselect_none(sel.memory_space.get()), w, "cannot select no rows");
  }
  const Handle dxpl = h5::transfer_plist(std::max<std::size_t>(data.size(), 1), w);
  check(H5Pset_dxpl_mpio(dxpl.get(), collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT), w,
        "cannot set the MPI-IO transfer mode");
  static const T none{};
  check(H5Dwrite(dset, h5::memory_type(DTypeOf<T>::value), sel.memory_space.get(), sel.file_space.get(),
                 dxpl.get(), data.empty() ? &none : data.data()),
        w, collective ? "cannot write rows (collective)" : "cannot write rows (MPI-IO)");
}

void ParallelRowWriter::close() {
  const Where w{impl_->path, ""};
  impl_->datasets.clear();
  if (impl_->file.close() < 0) h5::fail(w, "cannot close output file (MPI-IO)");
}

template void ParallelRowWriter::write_rows<std::uint8_t>(std::string_view, std::uint64_t, std::span<const std::uint8_t>);
template void ParallelRowWriter::write_rows<std::uint32_t>(std::string_view, std::uint64_t, std::span<const std::uint32_t>);
template void ParallelRowWriter::write_rows<float>(std::string_view, std::uint64_t, std::span<const float>);
template void ParallelRowWriter::write_rows<double>(std::string_view, std::uint64_t, std::span<const double>);

}  // namespace exospec::io
#endif  // EXOSPEC_HAVE_MPI
