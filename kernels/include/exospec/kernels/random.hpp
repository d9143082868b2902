#pragma once
// Counter-keyed random streams, so that simulated data depend on the seed only,
// never on the number of threads or the order in which spectra are generated.
//
// Rng::stream(seed, a, b, c) derives an independent generator for one unit of
// work (for example seed, channel, spectrum index, purpose) by hashing the key
// with SplitMix64 (Steele, Lea & Flood 2014) into the state of xoshiro256++
// (Blackman & Vigna 2021). Each stream has period 2^256 - 1; streams with
// different keys start at statistically unrelated states.
//
// Poisson variates: inversion by sequential search for mu < 10, and Hormann's
// transformed rejection with squeeze, PTRS (Insurance: Math. and Econ. 12, 1993),
// for mu >= 10. Both are exact (no normal approximation). Nothing allocates.
#include <cstdint>

namespace exospec::kernels {

class Rng {
 public:
  // A generator for the stream identified by (seed, a, b, c).
  static Rng stream(std::uint64_t seed, std::uint64_t a = 0, std::uint64_t b = 0,
                    std::uint64_t c = 0) noexcept;

  std::uint64_t next() noexcept;
  // Uniform on [0, 1), 53 random bits.
  double uniform() noexcept;
  // Uniform on [lo, hi).
  double uniform(double lo, double hi) noexcept { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), n > 0 (unbiased: rejection then modulo).
  std::uint64_t below(std::uint64_t n) noexcept;
  // Standard normal (Box-Muller, one value per call).
  double normal() noexcept;
  // Poisson with mean mu >= 0 (mu <= 0 or NaN gives 0).
  std::uint64_t poisson(double mu) noexcept;

 private:
  std::uint64_t s_[4];
};

// log(k!) for k >= 0: exact table below 16, Stirling series above (|error| < 1e-13).
double log_factorial(std::uint64_t k) noexcept;

}  // namespace exospec::kernels
