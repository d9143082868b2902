#pragma once
// Wavelength convention of the data contract (shared/SCHEMA.md):
// lambda(p) = sum_k c_k p^k over pixel indices p = 0..P-1, with the pixel
// edges at p -+ 1/2. Shared by the input validation (io) and the kernels.
#include <cstddef>
#include <span>

namespace exospec {

// sum_k c[k] x^k by Horner's rule; an empty c gives 0.
inline double eval_polynomial(std::span<const double> c, double x) noexcept {
  double y = 0.0;
  for (std::size_t k = c.size(); k-- > 0;) y = y * x + c[k];
  return y;
}

}  // namespace exospec
