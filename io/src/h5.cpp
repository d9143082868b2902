#include "h5.hpp"

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "exospec/io/file.hpp"

namespace exospec::io {

void skip_hdf5_shutdown_at_exit() noexcept { H5dont_atexit(); }

}  // namespace exospec::io

namespace exospec::io::h5 {

void initialize() {
  static std::once_flag once;
  std::call_once(once, [] {
    H5open();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    // HDF5 keeps freed blocks on its own free lists (16 MiB per kind by
    // default) and reuses them only for same-sized requests: a long run with
    // many chunk sizes then holds more and more of them. 1 MiB per kind is
    // plenty for exospec's few, repeated request sizes.
    H5set_free_list_limits(1 << 20, 1 << 18, 1 << 20, 1 << 18, 1 << 20, 1 << 18);
  });
}

namespace {
// One line from an HDF5 error description. The file drivers describe a failed
// system call over several lines with the time, buffer address and sizes
// ("file write failed: time = ...\n, filename = ..., errno = 28, error message
// = 'No space left on device', buf = ..."); that becomes "file write failed:
// No space left on device" (what comes before the first ':' or ',', then the
// system's message).
std::string one_line(std::string desc) {
  const std::string key = "error message = '";
  const auto m = desc.find(key);
  const auto head = desc.find_first_of(":,");
  if (m != std::string::npos && head < m) {
    const auto begin = m + key.size();
    const auto end = desc.find('\'', begin);
    if (end != std::string::npos)
      desc = desc.substr(0, head) + ": " + desc.substr(begin, end - begin);
  }
  for (char& c : desc) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return desc;
}

herr_t collect(unsigned n, const H5E_error2_t* err, void* data) {
  auto* parts = static_cast<std::pair<std::string, std::string>*>(data);
  const std::string desc = one_line((err->desc != nullptr && *err->desc != '\0')
                                        ? std::string(err->desc)
                                        : std::string(err->func_name ? err->func_name : ""));
  if (n == 0) parts->first = desc;
  parts->second = desc;
  return 0;
}
}  // namespace

std::string take_error_stack() {
  std::pair<std::string, std::string> parts;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &parts);
  H5Eclear2(H5E_DEFAULT);
  if (parts.first.empty()) return parts.second;
  if (parts.second.empty() || parts.second == parts.first) return parts.first;
  return parts.first + " (" + parts.second + ")";
}

void fail(const Where& where, std::string_view action) {
  std::string message(action);
  const std::string stack = take_error_stack();
  if (!stack.empty()) message += ": HDF5: " + stack;
  throw FileError(std::string(where.file), std::string(where.object), message);
}

namespace {
herr_t find_io_error(unsigned, const H5E_error2_t* err, void* data) {
  if (err->maj_num == H5E_IO) *static_cast<bool*>(data) = true;
  return 0;
}
}  // namespace

bool io_error_pending() {
  bool found = false;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, find_io_error, &found);
  return found;
}

Handle create_access_plist(const Where& w) {
  Handle fapl = plist_handle(H5Pcreate(H5P_FILE_ACCESS), w, "cannot create property list");
  check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110), w,
        "cannot set the file format");
  return fapl;
}

Handle transfer_plist(std::uint64_t elements, const Where& w) {
  constexpr std::uint64_t kDefault = std::uint64_t{1} << 20;
  const std::uint64_t bytes = std::clamp<std::uint64_t>(elements, 1, kDefault / 16) * 16;
  Handle dxpl = plist_handle(H5Pcreate(H5P_DATASET_XFER), w, "cannot create property list");
  check(H5Pset_buffer(dxpl.get(), static_cast<std::size_t>(bytes), nullptr, nullptr), w,
        "cannot set the conversion buffer");
  return dxpl;
}

Handle vlen_string_type(const Where& w) {
  Handle t = type_handle(H5Tcopy(H5T_C_S1), w, "cannot create string type");
  check(H5Tset_size(t.get(), H5T_VARIABLE), w, "cannot create string type");
  check(H5Tset_cset(t.get(), H5T_CSET_UTF8), w, "cannot create string type");
  return t;
}

hid_t file_type(DType t) noexcept {
  switch (t) {
    case DType::kU8:
      return H5T_STD_U8LE;
    case DType::kU32:
      return H5T_STD_U32LE;
    case DType::kI32:
      return H5T_STD_I32LE;
    case DType::kI64:
      return H5T_STD_I64LE;
    case DType::kF32:
      return H5T_IEEE_F32LE;
    case DType::kF64:
      return H5T_IEEE_F64LE;
    case DType::kString:
      break;
  }
  return H5I_INVALID_HID;
}

hid_t memory_type(DType t) noexcept {
  switch (t) {
    case DType::kU8:
      return H5T_NATIVE_UINT8;
    case DType::kU32:
      return H5T_NATIVE_UINT32;
    case DType::kI32:
      return H5T_NATIVE_INT32;
    case DType::kI64:
      return H5T_NATIVE_INT64;
    case DType::kF32:
      return H5T_NATIVE_FLOAT;
    case DType::kF64:
      return H5T_NATIVE_DOUBLE;
    case DType::kString:
      break;
  }
  return H5I_INVALID_HID;
}

std::pair<bool, DType> classify(hid_t type, std::string* text) {
  const H5T_class_t cls = H5Tget_class(type);
  const std::size_t size = H5Tget_size(type);
  auto set = [&](std::string s) {
    if (text != nullptr) *text = std::move(s);
  };
  switch (cls) {
    case H5T_INTEGER: {
      const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
      set(std::string(is_signed ? "int" : "uint") + std::to_string(8 * size));
      if (!is_signed && size == 1) return {true, DType::kU8};
      if (!is_signed && size == 4) return {true, DType::kU32};
      if (is_signed && size == 4) return {true, DType::kI32};
      if (is_signed && size == 8) return {true, DType::kI64};
      return {false, DType::kU8};
    }
    case H5T_FLOAT:
      set("float" + std::to_string(8 * size));
      if (size == 4) return {true, DType::kF32};
      if (size == 8) return {true, DType::kF64};
      return {false, DType::kU8};
    case H5T_STRING:
      if (H5Tis_variable_str(type) > 0) {
        set("string");
        return {true, DType::kString};
      }
      set("fixed-length string");
      return {false, DType::kU8};
    case H5T_COMPOUND:
      set("compound");
      break;
    case H5T_ENUM:
      set("enum");
      break;
    case H5T_ARRAY:
      set("array");
      break;
    case H5T_VLEN:
      set("variable-length sequence");
      break;
    default:
      set("unsupported type");
      break;
  }
  H5Eclear2(H5E_DEFAULT);
  return {false, DType::kU8};
}

bool path_exists(hid_t file, std::string_view path, std::string_view file_name) {
  if (path.empty() || path.front() != '/') return false;
  if (path == "/") return true;
  std::size_t pos = 1;
  while (pos <= path.size()) {
    std::size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    const std::string prefix(path.substr(0, next));
    if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0 ||
        H5Oexists_by_name(file, prefix.c_str(), H5P_DEFAULT) <= 0) {
      if (io_error_pending()) fail(Where{file_name, prefix}, "cannot look up object");
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    pos = next + 1;
  }
  return true;
}

}  // namespace exospec::io::h5
