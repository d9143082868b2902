// The fit's vectorisable exp and Gaussian tail (kernels/src/vmath.hpp)
// against the C library in long double.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "vmath.hpp"

namespace vm = exospec::kernels::vmath;

TEST(Vmath, ExpMatchesTheLibraryOnTheWholeRange) {
  double worst = 0.0;
  for (int i = 0; i <= 700000; ++i) {
    const double x = -700.0 * i / 700000.0 - 1e-7 * (i % 7);
    const long double ref = std::exp(static_cast<long double>(x));
    const double rel = static_cast<double>(std::fabs((vm::exp_nonpositive(x) - ref) / ref));
    worst = std::max(worst, rel);
  }
  EXPECT_LT(worst, 4e-16);
  EXPECT_EQ(vm::exp_nonpositive(0.0), 1.0);
  EXPECT_EQ(vm::exp_nonpositive(1.0), 1.0);  // x > 0 is clamped to 0 by contract
}

TEST(Vmath, NormalCdfAndPdfMatchTheLibrary) {
  double worst_tail = 0.0, worst_pdf = 0.0, worst_abs = 0.0;
  for (int i = -127000; i <= 127000; ++i) {
    const double x = i * 1e-4;
    double cdf = 0.0, pdf = 0.0;
    vm::normal_cdf_pdf(x, cdf, pdf);
    const long double lx = x;
    const long double ref_cdf = 0.5L * std::erfc(-lx / std::sqrt(2.0L));
    const long double ref_tail = 0.5L * std::erfc(std::fabs(lx) / std::sqrt(2.0L));
    const long double ref_pdf = std::exp(-0.5L * lx * lx) / std::sqrt(2.0L * 3.14159265358979323846264L);
    const double tail = x < 0 ? cdf : 1.0 - cdf;
    if (x < 0) {  // the tail itself, relative (below 0 the cdf is the tail)
      worst_tail = std::max(worst_tail, static_cast<double>(std::fabs((tail - ref_tail) / ref_tail)));
    }
    worst_abs = std::max(worst_abs, static_cast<double>(std::fabs(cdf - ref_cdf)));
    worst_pdf = std::max(worst_pdf, static_cast<double>(std::fabs((pdf - ref_pdf) / ref_pdf)));
  }
  EXPECT_LT(worst_tail, 3e-13);
  EXPECT_LT(worst_abs, 2e-14);
  EXPECT_LT(worst_pdf, 1e-14);  // rounding of x^2/2 (up to 80) itself
}
