#pragma once
// Branch-free exp, log1p and Gaussian tail functions that the compiler
// vectorises across a loop (plain arithmetic and bit casts, no library
// calls), for the fit's model and Jacobian evaluation and the profile's
// column table. Internal to kernels/.
//
// Accuracy (tests/kernels/test_vmath.cpp, against std::exp and std::erfc):
// exp_clamped within 2 ulp-scale (4e-16 relative) on [-700, 700];
// log1p_nonnegative within 4e-16 relative on [0, 1e300];
// gaussian_upper_tail within 2e-13 relative for |x| up to 12.7 (erfc of up
// to 9), which is far below anything a spectrum can resolve.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace exospec::kernels::vmath {

inline constexpr double kLn2Hi = 6.93147180369123816490e-01;  // leading bits of ln 2
inline constexpr double kLn2Lo = 1.90821492927058770002e-10;  // ln 2 - kLn2Hi

// exp(x) for |x| <= 700 (outside, x is clamped to +-700).
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, exp(r) by its Taylor
// series to degree 13 (truncation < 2e-17 relative), times 2^n built in the
// exponent bits.
inline double exp_clamped(double x) noexcept {
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52: round to integer
  x = std::min(std::max(x, -700.0), 700.0);
  const double shifted = x * kLog2e + kRound;
  const double n = shifted - kRound;
  const double r = (x - n * kLn2Hi) - n * kLn2Lo;
  // Estrin's scheme (depth 4 instead of Horner's 13: the loop is bound by
  // latency, not throughput).
  const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
  const double q0 = 1.0 + r, q1 = 1.0 / 2 + r * (1.0 / 6), q2 = 1.0 / 24 + r * (1.0 / 120);
  const double q3 = 1.0 / 720 + r * (1.0 / 5040), q4 = 1.0 / 40320 + r * (1.0 / 362880);
  const double q5 = 1.0 / 3628800 + r * (1.0 / 39916800);
  const double q6 = 1.0 / 479001600 + r * (1.0 / 6227020800);
  const double s0 = q0 + q1 * r2, s1 = q2 + q3 * r2, s2 = q4 + q5 * r2;
  const double p = (s0 + s1 * r4) + (s2 + q6 * r4) * r8;
  // n is in the low bits of `shifted` (two's complement); add it to p's exponent.
  const auto bits = std::bit_cast<std::uint64_t>(shifted);
  const auto scale = std::bit_cast<std::uint64_t>(p) + (bits << 52);
  return std::bit_cast<double>(scale);
}

// exp(x) for x <= 0 (x < -700 is treated as -700, giving ~1e-304; x > 0 as 0).
inline double exp_nonpositive(double x) noexcept { return exp_clamped(std::min(x, 0.0)); }

// log1p(x) for x >= 0 (finite). y = 1 + x rounded, with the rounding error
// restored to first order (log1p x = log y + (x - (y - 1)) / y); log y =
// e ln2 + log m, m in [sqrt(1/2), sqrt 2), and log m = 2 atanh s,
// s = (m - 1) / (m + 1), |s| <= 0.172, by its series to s^23 (truncation
// < 1e-18 relative). The exponent is read from the bits and converted with
// the 2^52 trick (integer operations only, so that it vectorises without
// AVX-512DQ).
inline double log1p_nonnegative(double x) noexcept {
  constexpr double kSqrt2 = 1.41421356237309504880;
  constexpr double kTwo52 = 4503599627370496.0;
  const double y = 1.0 + x;
  const double c = (x - (y - 1.0)) / y;
  const auto bits = std::bit_cast<std::uint64_t>(y);
  double m = std::bit_cast<double>((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);
  double e = std::bit_cast<double>((bits >> 52) | 0x4330000000000000ull) - (kTwo52 + 1023.0);
  const bool high = m > kSqrt2;
  m = high ? 0.5 * m : m;
  e = high ? e + 1.0 : e;
  const double f = m - 1.0;
  const double s = f / (2.0 + f);
  const double s2 = s * s, s4 = s2 * s2, s8 = s4 * s4;
  // 2 atanh(s) / s - 2 = sum_k 2 s^2k / (2k + 1), k = 1..11 (Estrin's scheme).
  const double a0 = 2.0 / 3 + s2 * (2.0 / 5), a1 = 2.0 / 7 + s2 * (2.0 / 9), a2 = 2.0 / 11 + s2 * (2.0 / 13);
  const double a3 = 2.0 / 15 + s2 * (2.0 / 17), a4 = 2.0 / 19 + s2 * (2.0 / 21), a5 = 2.0 / 23;
  const double b0 = a0 + a1 * s4, b1 = a2 + a3 * s4, b2 = a4 + a5 * s4;
  const double tail = s2 * ((b0 + b1 * s8) + b2 * (s8 * s8));
  const double logm = 2.0 * s + s * tail;
  return (e * kLn2Hi + (logm + (e * kLn2Lo + c)));
}

// The scaled complementary error function erfcx(z) = exp(z^2) erfc(z) for
// 0 <= z <= 9 (larger z is treated as 9), as a polynomial of degree 17 in
// t = 1 / (1 + z/4) mapped onto u in [-1, 1]: a Chebyshev series fitted to
// scipy.special.erfcx at 3000 Chebyshev nodes, converted to powers of u (max
// relative error 2.5e-13 on [0, 9]).
inline double erfcx_nonnegative(double z) noexcept {
  constexpr double kTmin = 0.30769230769230771;  // t at z = 9
  // The Chebyshev series converted to powers of u (relative error 2.5e-13),
  // evaluated by Estrin's scheme.
  constexpr double c[18] = {
      2.43385798933991343e-01, 3.16001128651615448e-01, 2.18401892571944284e-01,
      1.26441897003161857e-01, 6.11992873628562500e-02, 2.44760188516684289e-02,
      7.87492985572386950e-03, 1.92151520667962453e-03, 3.01606480957117772e-04,
      7.50889121486766657e-06, -9.78007644103491825e-06, -2.03355488713579657e-06,
      1.23129204347320688e-07, 1.07788900482731086e-07, 4.11385502061117009e-09,
      -5.08417473846013779e-09, -3.53185105431957033e-10, 2.26940216681810614e-10};
  z = std::min(z, 9.0);
  const double t = 1.0 / (1.0 + 0.25 * z);
  constexpr double kScale = 2.0 / (1.0 - kTmin);  // (a multiplication, not a division)
  const double u = (t - kTmin) * kScale - 1.0;
  const double u2 = u * u, u4 = u2 * u2, u8 = u4 * u4, u16 = u8 * u8;
  const double q0 = c[0] + c[1] * u, q1 = c[2] + c[3] * u, q2 = c[4] + c[5] * u;
  const double q3 = c[6] + c[7] * u, q4 = c[8] + c[9] * u, q5 = c[10] + c[11] * u;
  const double q6 = c[12] + c[13] * u, q7 = c[14] + c[15] * u, q8 = c[16] + c[17] * u;
  const double r0 = q0 + q1 * u2, r1 = q2 + q3 * u2, r2 = q4 + q5 * u2, r3 = q6 + q7 * u2;
  return ((r0 + r1 * u4) + (r2 + r3 * u4) * u8) + q8 * u16;
}

inline constexpr double kInvSqrt2 = 0.70710678118654752440;
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// For a standard normal at x: the cumulative distribution Phi(x) (with the
// tail computed as a small number, so that differences of nearby values in
// either tail keep their precision to ~1e-16 absolute), and the density
// phi(x).
inline void normal_cdf_pdf(double x, double& cdf, double& pdf) noexcept {
  const double e = exp_nonpositive(-0.5 * x * x);
  const double tail = 0.5 * e * erfcx_nonnegative(std::fabs(x) * kInvSqrt2);
  const double upper = 1.0 - tail;
  cdf = x < 0.0 ? tail : upper;
  pdf = kInvSqrt2Pi * e;
}

}  // namespace exospec::kernels::vmath
