// Fourier filters (FFTW) against analytic answers: the low-pass on the
// eigenfunctions of the mirrored transform, its variance against the explicit
// weight matrix, area preservation, the Wiener filter on noise and on signal,
// and identical results from many threads.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <thread>
#include <vector>

#include "exospec/kernels/fourier.hpp"
#include "exospec/kernels/random.hpp"

namespace exospec::kernels {
namespace {

TEST(FourierLowpass, CosinesOfTheMirroredBasisAreScaledByTheTransferFunction) {
  const std::size_t P = 128;
  const double s = 2.0;
  const FourierFilter f(P, {FourierKind::kLowpass, s});
  auto work = f.make_workspace();
  const std::vector<std::uint8_t> q(P, 0);
  const std::vector<double> v(P, 1.0);
  for (int k : {0, 1, 5, 20, 60}) {
    std::vector<double> x(P), y(P);
    for (std::size_t p = 0; p < P; ++p) {
      x[p] = std::cos(std::numbers::pi * k * (static_cast<double>(p) + 0.5) / P);
    }
    f.run<double>(x, v, q, y, {}, work);
    const double freq = static_cast<double>(k) / (2.0 * P);
    const double H = std::exp(-2.0 * std::numbers::pi * std::numbers::pi * s * s * freq * freq);
    for (std::size_t p = 0; p < P; ++p) EXPECT_NEAR(y[p], H * x[p], 1e-12) << k << " " << p;
  }
}

TEST(FourierLowpass, VarianceMatchesTheExplicitWeightsAndAreaIsKept) {
  const std::size_t P = 60;
  const FourierFilter f(P, {FourierKind::kLowpass, 3.0});
  auto work = f.make_workspace();
  const std::vector<std::uint8_t> q(P, 0);
  std::vector<double> var(P), ones(P, 1.0);
  for (std::size_t p = 0; p < P; ++p) var[p] = 1.0 + static_cast<double>(p % 7);
  // Column q of the weight matrix: the response to a unit impulse at q.
  std::vector<std::vector<double>> w(P, std::vector<double>(P));
  for (std::size_t j = 0; j < P; ++j) {
    std::vector<double> e(P, 0.0), y(P);
    e[j] = 1.0;
    f.run<double>(e, ones, q, y, {}, work);
    double area = 0;
    for (std::size_t i = 0; i < P; ++i) {
      w[i][j] = y[i];
      area += y[i];
    }
    EXPECT_NEAR(area, 1.0, 1e-12);  // H(0) = 1: every input's weight sums to one
  }
  std::vector<double> x(P, 0.0), y(P), yv(P);
  f.run<double>(x, var, q, y, yv, work);
  for (std::size_t i = 0; i < P; ++i) {
    double expect = 0;
    for (std::size_t j = 0; j < P; ++j) expect += w[i][j] * w[i][j] * var[j];
    EXPECT_NEAR(yv[i], expect, 1e-10 * expect) << i;  // h truncated at 1e-5 of its peak
  }
}

TEST(FourierWiener, SuppressesNoiseAndKeepsStrongSmoothSignal) {
  const std::size_t P = 512, rows = 50;
  const FourierFilter f(P, {FourierKind::kWiener, 0.0});
  auto work = f.make_workspace();
  auto rng = Rng::stream(4);
  std::vector<double> truth(P);
  for (std::size_t p = 0; p < P; ++p) {
    const double d = (static_cast<double>(p) - 256.0) / 6.0;
    truth[p] = 100.0 + 2000.0 * std::exp(-0.5 * d * d);
  }
  double raw = 0, filtered = 0, var_ratio = 0;
  std::size_t n = 0;
  const std::vector<std::uint8_t> q(P, 0);
  const std::vector<double> var(P, 25.0);
  for (std::size_t r = 0; r < rows; ++r) {
    std::vector<double> x(P), y(P), yv(P);
    for (std::size_t p = 0; p < P; ++p) x[p] = truth[p] + 5.0 * rng.normal();
    f.run<double>(x, var, q, y, yv, work);
    for (std::size_t p = 10; p + 10 < P; ++p) {
      raw += std::pow(x[p] - truth[p], 2);
      filtered += std::pow(y[p] - truth[p], 2);
      var_ratio += yv[p] / var[p];
      ++n;
      ASSERT_GT(yv[p], 0.0);
    }
  }
  EXPECT_LT(filtered, 0.25 * raw);  // most of the white noise is outside the line's band
  EXPECT_LT(var_ratio / static_cast<double>(n), 0.25);
}

TEST(FourierFilter, ManyThreadsGiveIdenticalResults) {
  const std::size_t P = 1024, rows = 64;
  const FourierFilter f(P, {FourierKind::kLowpass, 2.0});
  auto rng = Rng::stream(8);
  std::vector<float> x(rows * P), v(rows * P, 3.0f), y1(rows * P), v1(rows * P), y4(rows * P),
      v4(rows * P);
  std::vector<std::uint8_t> q(rows * P, 0);
  for (auto& e : x) e = static_cast<float>(10.0 + rng.normal());
  auto w = f.make_workspace();
  f.run<float>(x, v, q, y1, v1, w);
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < 4; ++t) {
    pool.emplace_back([&, t] {
      auto ws = f.make_workspace();
      const std::size_t r0 = t * rows / 4, n = rows / 4;
      f.run<float>(std::span<const float>(x).subspan(r0 * P, n * P),
                   std::span<const float>(v).subspan(r0 * P, n * P),
                   std::span<const std::uint8_t>(q).subspan(r0 * P, n * P),
                   std::span<float>(y4).subspan(r0 * P, n * P),
                   std::span<float>(v4).subspan(r0 * P, n * P), ws);
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(y1, y4);
  EXPECT_EQ(v1, v4);
}

}  // namespace
}  // namespace exospec::kernels
