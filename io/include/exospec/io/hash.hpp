#pragma once
// Content hash of a file (provenance of outputs: the `input_sha256` attribute),
// and a stamp that tells whether a file changed while it was read.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace exospec::io {

// Lower-case hexadecimal SHA-256 of the file's bytes, read in 1 MiB pieces.
// Throws FileError naming the file when it cannot be read. When `cancel` is
// given and becomes true, returns an empty string early (for a hash computed
// beside other work that has failed).
std::string sha256_file(const std::filesystem::path& path, const std::atomic<bool>* cancel = nullptr);

// Which file a path names and its state: device and inode (replaced by a
// rename or removed), size (truncated, appended to) and modification time in
// nanoseconds (written to). Empty when the path cannot be examined.
struct FileStamp {
  std::uint64_t device = 0, inode = 0, size = 0;
  std::int64_t modified_ns = 0;
  bool operator==(const FileStamp&) const = default;
};
std::optional<FileStamp> file_stamp(const std::filesystem::path& path);
// What changed from `before` to `after`, in words ("was replaced", ...), or
// an empty string when nothing did.
std::string describe_change(const std::optional<FileStamp>& before,
                            const std::optional<FileStamp>& after);

}  // namespace exospec::io
