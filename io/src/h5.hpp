#pragma once
// The one checked wrapper around the HDF5 C API (private to exospec_io).
//
// check(result, where, action) returns the result of an HDF5 call or throws a
// FileError naming the file and the object, with HDF5's own error stack
// captured into the message. Handle owns an hid_t and closes it with the
// matching H5?close function.
#include <hdf5.h>

#include <string>
#include <string_view>
#include <utility>

#include "exospec/error.hpp"
#include "exospec/io/types.hpp"

namespace exospec::io::h5 {

// Switches off HDF5's automatic error printing (once per process).
void initialize();

// The current HDF5 error stack as one line (innermost cause last); clears it.
std::string take_error_stack();

struct Where {
  std::string_view file;
  std::string_view object;
};

[[noreturn]] void fail(const Where& where, std::string_view action);

// Whether the current error stack holds a failed read or write of the file
// itself (major H5E_IO: the driver's system call failed, e.g. EIO). The
// functions that ask whether something exists or is of a kind use it to tell
// "no" from "could not read": the latter throws (via fail) instead of being
// reported as a missing object. Leaves the stack as it is.
bool io_error_pending();

template <class R>
R check(R result, const Where& where, std::string_view action) {
  if (result < 0) fail(where, action);
  return result;
}

class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) noexcept : id_(id), closer_(closer) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), closer_(o.closer_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      closer_ = o.closer_;
    }
    return *this;
  }
  ~Handle() { reset(); }
  hid_t get() const noexcept { return id_; }
  explicit operator bool() const noexcept { return id_ >= 0; }
  // Closes now and reports failure (used where a failed close matters: files).
  herr_t close() noexcept {
    herr_t status = 0;
    if (id_ >= 0 && closer_ != nullptr) status = closer_(id_);
    id_ = H5I_INVALID_HID;
    return status;
  }
  void reset() noexcept {
    if (id_ >= 0 && closer_ != nullptr) {
      closer_(id_);
      H5Eclear2(H5E_DEFAULT);
    }
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Checked constructors of owned handles.
inline Handle file_handle(hid_t id, const Where& w, std::string_view action) {
  return {check(id, w, action), H5Fclose};
}
inline Handle dataset_handle(hid_t id, const Where& w, std::string_view action) {
  return {check(id, w, action), H5Dclose};
}
inline Handle group_handle(hid_t id, const Where& w, std::string_view action) {
  return {check(id, w, action), H5Gclose};
}
inline Handle space_handle(hid_t id, const Where& w, std::string_view action) {
  return {check(id, w, action), H5Sclose};
}
inline Handle type_handle(hid_t id, const Where& w, std::string_view action) {
  return {check(id, w, action), H5Tclose};
}
inline Handle plist_handle(hid_t id, const Where& w, std::string_view action) {
  return {check(id, w, action), H5Pclose};
}
inline Handle attribute_handle(hid_t id, const Where& w, std::string_view action) {
  return {check(id, w, action), H5Aclose};
}

// Variable-length UTF-8 string type (caller owns the handle).
Handle vlen_string_type(const Where& w);
// The file access properties of the files exospec writes: the HDF5 1.10
// format (superblock 3, readable by HDF5 >= 1.10.0). Its chunk index for
// datasets of fixed size is a fixed array, 8 or 16 bytes a chunk and made
// once; the 1.8 format's version-1 B-tree grows a node every 64 chunks,
// each node held in the metadata cache with its unpacked keys (about 9 KiB),
// so a long run's memory grew with the file (docs/RELIABILITY.md, "Soak").
Handle create_access_plist(const Where& w);
// A transfer property list whose type-conversion buffer fits `elements`
// values of up to 16 bytes (at most HDF5's default 1 MiB). HDF5 allocates
// and zeroes that buffer on every read or write that converts types, so the
// default costs 256 page faults even for a few values.
Handle transfer_plist(std::uint64_t elements, const Where& w);
// The little-endian file type and the native memory type of a DType.
hid_t file_type(DType t) noexcept;
hid_t memory_type(DType t) noexcept;
// Classifies a stored type: the DType if it is one, and a readable name.
std::pair<bool, DType> classify(hid_t type, std::string* text);

// Whether every component of an absolute path exists (links and objects).
// A read error on the way throws a FileError naming file_name and the path.
bool path_exists(hid_t file, std::string_view path, std::string_view file_name);

}  // namespace exospec::io::h5
