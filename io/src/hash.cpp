#include "exospec/io/hash.hpp"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "exospec/error.hpp"

namespace exospec::io {

std::string sha256_file(const std::filesystem::path& path, const std::atomic<bool>* cancel) {
  const std::string name = path.string();
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(name.c_str(), "rb"), &std::fclose);
  if (!f) throw FileError(name, "", std::string("cannot read: ") + std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw FileError(name, "", "cannot initialise SHA-256");
  }
  std::vector<unsigned char> buf(1 << 20);
  for (;;) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) return {};
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), n) != 1) {
      throw FileError(name, "", "SHA-256 update failed");
    }
    if (n < buf.size()) {
      if (std::ferror(f.get())) {
        throw FileError(name, "", std::string("read error while hashing: ") + std::strerror(errno));
      }
      break;
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest, &len) != 1) {
    throw FileError(name, "", "SHA-256 final failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

std::optional<FileStamp> file_stamp(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  FileStamp s;
  s.device = static_cast<std::uint64_t>(st.st_dev);
  s.inode = static_cast<std::uint64_t>(st.st_ino);
  s.size = static_cast<std::uint64_t>(st.st_size);
  s.modified_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  return s;
}

std::string describe_change(const std::optional<FileStamp>& before,
                            const std::optional<FileStamp>& after) {
  if (before == after) return {};
  if (!before) return "appeared";
  if (!after) return "was removed";
  if (before->device != after->device || before->inode != after->inode)
    return "was replaced by another file";
  if (before->size != after->size) {
    return "changed size from " + std::to_string(before->size) + " to " +
           std::to_string(after->size) + " bytes";
  }
  return "was written to";
}

}  // namespace exospec::io
