#include "exospec/io/stored_rows.hpp"

#include <libdeflate.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>

#include "exospec/error.hpp"

namespace exospec::io {
namespace {

// HDF5's shuffle filter stores byte k of every element together (plane k).
// Undoes it for elements [e0, e1) of a chunk of n elements.
void unshuffle(const unsigned char* in, std::size_t n, std::size_t element_size, std::size_t e0,
               std::size_t e1, unsigned char* out) {
  const std::size_t m = e1 - e0;
  if (element_size == 4) {
    const unsigned char* p0 = in + e0;
    const unsigned char* p1 = p0 + n;
    const unsigned char* p2 = p1 + n;
    const unsigned char* p3 = p2 + n;
    for (std::size_t e = 0; e < m; ++e) {  // (little-endian host: checked by fetch_rows)
      const std::uint32_t v = std::uint32_t{p0[e]} | std::uint32_t{p1[e]} << 8 |
                              std::uint32_t{p2[e]} << 16 | std::uint32_t{p3[e]} << 24;
      std::memcpy(out + 4 * e, &v, 4);
    }
    return;
  }
  for (std::size_t k = 0; k < element_size; ++k) {
    const unsigned char* plane = in + k * n + e0;
    for (std::size_t e = 0; e < m; ++e) out[e * element_size + k] = plane[e];
  }
}

// What one thread needs to inflate chunks: a decompressor (libdeflate's are
// not shared between threads) and room for an inflated chunk.
struct Inflater {
  std::unique_ptr<libdeflate_decompressor, void (*)(libdeflate_decompressor*)> decompressor{
      libdeflate_alloc_decompressor(), &libdeflate_free_decompressor};
  std::vector<unsigned char> buffer;
};
Inflater& inflater() {
  thread_local Inflater state;
  if (!state.decompressor) throw std::bad_alloc();
  return state;
}

std::string_view result_text(libdeflate_result r) {
  switch (r) {
    case LIBDEFLATE_SUCCESS:
      return "success";
    case LIBDEFLATE_BAD_DATA:
      return "invalid compressed data";
    case LIBDEFLATE_SHORT_OUTPUT:
      return "inflates to fewer bytes than the chunk holds";
    case LIBDEFLATE_INSUFFICIENT_SPACE:
      return "inflates to more bytes than the chunk holds";
  }
  return "unknown error";
}

}  // namespace

void StoredRows::decode_bytes(std::size_t i, unsigned char* out) const {
  const Chunk& c = chunks_.at(i);
  const std::size_t n = layout_.chunk_rows * row_size_;  // elements of a chunk (edge chunks too)
  const std::size_t bytes = n * element_size_;
  // This chunk's rows inside the block.
  const std::uint64_t r0 = std::max<std::uint64_t>(c.first_row, row0_);
  const std::uint64_t r1 = std::min<std::uint64_t>(c.first_row + layout_.chunk_rows, row0_ + rows_);
  const std::size_t e0 = static_cast<std::size_t>(r0 - c.first_row) * row_size_;
  const std::size_t e1 = static_cast<std::size_t>(r1 - c.first_row) * row_size_;
  unsigned char* dst = out + static_cast<std::size_t>(r0 - row0_) * row_size_ * element_size_;
  auto applied = [&](int position) {
    return position >= 0 && ((c.filter_mask >> position) & 1u) == 0;
  };
  auto fail = [&](const std::string& what) {
    throw FileError(file_, dataset_,
                    "chunk at row " + std::to_string(c.first_row) + ": " + what + " (damaged file?)");
  };

  const unsigned char* data = bytes_.data() + c.offset;
  if (applied(layout_.deflate_position)) {
    // (HDF5's deflate filter writes the zlib format; its Adler-32 checksum
    // is verified.)
    Inflater& z = inflater();
    if (z.buffer.size() < bytes) z.buffer.resize(bytes);
    const libdeflate_result r =
        libdeflate_zlib_decompress(z.decompressor.get(), data, c.size, z.buffer.data(), bytes, nullptr);
    if (r != LIBDEFLATE_SUCCESS) fail(std::string(result_text(r)));
    data = z.buffer.data();
  } else if (c.size != bytes) {
    fail("stored size " + std::to_string(c.size) + " bytes, expected " + std::to_string(bytes));
  }
  if (applied(layout_.shuffle_position) && element_size_ > 1) {
    unshuffle(data, n, element_size_, e0, e1, dst);
  } else {
    std::memcpy(dst, data + e0 * element_size_, (e1 - e0) * element_size_);
  }
}

template <class T>
void StoredRows::decode(std::size_t i, std::span<T> out) const {
  if (DTypeOf<T>::value != dtype_ || out.size() != rows_ * row_size_) {
    throw std::invalid_argument("StoredRows::decode: not the buffer given to fetch_rows");
  }
  decode_bytes(i, reinterpret_cast<unsigned char*>(out.data()));
}

template <class T>
void StoredRows::decode_all(std::span<T> out) {
  for (std::size_t i = 0; i < chunks(); ++i) decode(i, out);
  clear();
}

#define EXOSPEC_INSTANTIATE_DECODE(T)                                     \
  template void StoredRows::decode<T>(std::size_t, std::span<T>) const; \
  template void StoredRows::decode_all<T>(std::span<T>);
EXOSPEC_INSTANTIATE_DECODE(std::uint8_t)
EXOSPEC_INSTANTIATE_DECODE(std::uint32_t)
EXOSPEC_INSTANTIATE_DECODE(std::int32_t)
EXOSPEC_INSTANTIATE_DECODE(float)
EXOSPEC_INSTANTIATE_DECODE(double)
#undef EXOSPEC_INSTANTIATE_DECODE

}  // namespace exospec::io
