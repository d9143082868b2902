// Random streams and the Poisson sampler against exact moments and the
// Poisson probability mass function.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "exospec/kernels/random.hpp"

namespace exospec::kernels {
namespace {

TEST(Rng, SameKeySameStreamDifferentKeyDifferentStream) {
  auto a = Rng::stream(42, 1, 2, 3), b = Rng::stream(42, 1, 2, 3), c = Rng::stream(42, 1, 2, 4);
  int same_c = 0;
  for (int i = 0; i < 1000; ++i) {
    const auto x = a.next();
    EXPECT_EQ(x, b.next());
    same_c += (x == c.next());
  }
  EXPECT_EQ(same_c, 0);
}

TEST(Rng, UniformMomentsAndRange) {
  auto r = Rng::stream(7);
  const int n = 400000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum2 += u * u;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(var, 1.0 / 12, 0.002);
}

TEST(Rng, BelowIsUniform) {
  auto r = Rng::stream(9);
  std::vector<int> hist(3, 0);
  const int n = 300000;
  for (int i = 0; i < n; ++i) ++hist[r.below(3)];
  for (int h : hist) EXPECT_NEAR(h, n / 3.0, 5 * std::sqrt(n * (1.0 / 3) * (2.0 / 3)));
}

TEST(Rng, NormalMoments) {
  auto r = Rng::stream(11);
  const int n = 400000;
  double s1 = 0, s2 = 0, s4 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = r.normal();
    s1 += x;
    s2 += x * x;
    s4 += x * x * x * x;
  }
  EXPECT_NEAR(s1 / n, 0.0, 5 / std::sqrt(n));
  EXPECT_NEAR(s2 / n, 1.0, 5 * std::sqrt(2.0 / n));
  EXPECT_NEAR(s4 / n, 3.0, 5 * std::sqrt(96.0 / n));
}

TEST(LogFactorial, MatchesLgamma) {
  for (std::uint64_t k = 0; k < 2000; ++k) {
    EXPECT_NEAR(log_factorial(k), std::lgamma(static_cast<double>(k) + 1.0),
                1e-12 * std::max(1.0, std::lgamma(static_cast<double>(k) + 1.0)))
        << k;
  }
}

class PoissonMoments : public ::testing::TestWithParam<double> {};

// Mean and variance of 200000 draws agree with mu within 5 standard errors
// (var of the sample variance ~ (mu + 2 mu^2) / n).
TEST_P(PoissonMoments, MeanAndVarianceEqualMu) {
  const double mu = GetParam();
  auto r = Rng::stream(2024, static_cast<std::uint64_t>(mu * 1000));
  const int n = 200000;
  double s1 = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const auto k = static_cast<double>(r.poisson(mu));
    s1 += k;
    s2 += k * k;
  }
  const double mean = s1 / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, mu, 5 * std::sqrt(mu / n));
  EXPECT_NEAR(var, mu, 5 * std::sqrt((mu + 2 * mu * mu) / n));
}

INSTANTIATE_TEST_SUITE_P(Means, PoissonMoments,
                         ::testing::Values(0.01, 0.5, 3.0, 9.99, 10.0, 25.0, 300.0, 1e5));

// The histogram of draws follows the exact pmf (chi-square over bins with an
// expectation of at least 5), on both sides of the algorithm switch at mu = 10.
class PoissonPmf : public ::testing::TestWithParam<double> {};

TEST_P(PoissonPmf, ChiSquareAgainstPmf) {
  const double mu = GetParam();
  auto r = Rng::stream(77, static_cast<std::uint64_t>(mu * 100));
  const int n = 200000;
  const int kmax = static_cast<int>(mu + 12 * std::sqrt(mu) + 10);
  std::vector<double> hist(kmax + 1, 0.0);
  for (int i = 0; i < n; ++i) {
    const auto k = r.poisson(mu);
    hist[std::min<std::uint64_t>(k, kmax)] += 1;
  }
  double chi2 = 0.0;
  int dof = -1;
  double obs_acc = 0, exp_acc = 0;
  for (int k = 0; k <= kmax; ++k) {
    const double p = std::exp(k * std::log(mu) - mu - std::lgamma(k + 1.0));
    obs_acc += hist[k];
    exp_acc += n * p;
    if (exp_acc >= 5.0) {
      chi2 += (obs_acc - exp_acc) * (obs_acc - exp_acc) / exp_acc;
      ++dof;
      obs_acc = exp_acc = 0;
    }
  }
  ASSERT_GT(dof, 3);
  // chi2 ~ dof +- sqrt(2 dof); allow 5 sigma.
  EXPECT_LT(chi2, dof + 5 * std::sqrt(2.0 * dof)) << "dof " << dof;
}

INSTANTIATE_TEST_SUITE_P(Means, PoissonPmf, ::testing::Values(0.7, 4.0, 9.5, 10.5, 40.0, 200.0));

TEST(Poisson, NonPositiveMeanGivesZero) {
  auto r = Rng::stream(1);
  EXPECT_EQ(r.poisson(0.0), 0u);
  EXPECT_EQ(r.poisson(-3.0), 0u);
  EXPECT_EQ(r.poisson(std::nan("")), 0u);
}

}  // namespace
}  // namespace exospec::kernels
