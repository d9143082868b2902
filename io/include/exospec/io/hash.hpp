#pragma once
// Content hash of a file (provenance of outputs: the `input_sha256` attribute).
#include <atomic>
#include <filesystem>
#include <string>

namespace exospec::io {

// Lower-case hexadecimal SHA-256 of the file's bytes, read in 1 MiB pieces.
// Throws FileError naming the file when it cannot be read. When `cancel` is
// given and becomes true, returns an empty string early (for a hash computed
// beside other work that has failed).
std::string sha256_file(const std::filesystem::path& path, const std::atomic<bool>* cancel = nullptr);

}  // namespace exospec::io
