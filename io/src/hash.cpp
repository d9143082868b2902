#include "exospec/io/hash.hpp"

#include <openssl/evp.h>

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
      if (std::ferror(f.get())) throw FileError(name, "", "read error while hashing");
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

}  // namespace exospec::io
