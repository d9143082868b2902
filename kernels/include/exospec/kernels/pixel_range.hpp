#pragma once
#include <cstddef>

namespace exospec::kernels {

// Pixels [begin, end) of a spectrum.
struct PixelRange {
  std::size_t begin = 0, end = 0;
};

}  // namespace exospec::kernels
