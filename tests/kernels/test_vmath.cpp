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

TEST(Vmath, ExpClampedMatchesTheLibraryAbove0) {
  double worst = 0.0;
  for (int i = 0; i <= 700000; ++i) {
    const double x = 700.0 * i / 700000.0 + 1e-7 * (i % 7);
    if (x > 700.0) continue;
    const long double ref = std::exp(static_cast<long double>(x));
    worst = std::max(worst, static_cast<double>(std::fabs((vm::exp_clamped(x) - ref) / ref)));
  }
  EXPECT_LT(worst, 4e-16);
  EXPECT_EQ(vm::exp_clamped(0.0), 1.0);
  EXPECT_EQ(vm::exp_clamped(800.0), vm::exp_clamped(700.0));
}

TEST(Vmath, Log1pMatchesTheLibraryFromTinyToHuge) {
  // Log-spaced over 1e-300 .. 1e300 (where log1p(x) = x to rounding, through
  // the switch of m at sqrt 2, to where 1 + x is x), plus 0, sqrt 2 - 1 and
  // the powers of two minus one (e changes there).
  std::vector<double> xs = {0.0, 0.41421356237309503, 0.41421356237309515, 1e-300, 5e-324};
  for (int i = 0; i <= 600000; ++i) xs.push_back(std::pow(10.0, -300.0 + 600.0 * i / 600000.0) * (1.0 + 1e-9 * (i % 11)));
  for (int k = 1; k < 1000; ++k) {
    const double p = std::ldexp(1.0, k);
    xs.push_back(p - 1.0);
    xs.push_back(std::nextafter(p - 1.0, 0.0));
  }
  double worst = 0.0, at = 0.0;
  for (const double x : xs) {
    const long double ref = std::log1p(static_cast<long double>(x));
    const double got = vm::log1p_nonnegative(x);
    const double rel = x == 0.0 ? std::fabs(got) : static_cast<double>(std::fabs((got - ref) / ref));
    if (rel > worst) {
      worst = rel;
      at = x;
    }
  }
  EXPECT_LT(worst, 4e-16) << "at x = " << at;
  EXPECT_EQ(vm::log1p_nonnegative(0.0), 0.0);
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
