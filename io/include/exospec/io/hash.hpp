#pragma once
// Content hash of a file (provenance of outputs: the `input_sha256` attribute).
#include <filesystem>
#include <string>

namespace exospec::io {

// Lower-case hexadecimal SHA-256 of the file's bytes, read in 1 MiB pieces.
// Throws FileError naming the file when it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace exospec::io
