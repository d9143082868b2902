#include "exospec/kernels/random.hpp"

#include <cmath>
#include <initializer_list>
#include <numbers>

namespace exospec::kernels {
namespace {

constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

constexpr std::uint64_t splitmix64(std::uint64_t& x) noexcept {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t poisson_inversion(Rng& rng, double mu) noexcept {
  // Sequential search from 0; the expected number of steps is mu + 1.
  const double u = rng.uniform();
  double p = std::exp(-mu);
  double cdf = p;
  std::uint64_t k = 0;
  while (u > cdf) {
    ++k;
    p *= mu / static_cast<double>(k);
    const double next = cdf + p;
    if (next == cdf) break;  // tail below rounding: stop (probability < 1e-16)
    cdf = next;
  }
  return k;
}

std::uint64_t poisson_ptrs(Rng& rng, double mu) noexcept {
  const double slam = std::sqrt(mu);
  const double loglam = std::log(mu);
  const double b = 0.931 + 2.53 * slam;
  const double a = -0.059 + 0.02483 * b;
  const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
  const double vr = 0.9277 - 3.6224 / (b - 2.0);
  for (;;) {
    const double u = rng.uniform() - 0.5;
    const double v = rng.uniform();
    const double us = 0.5 - std::fabs(u);
    const double kf = std::floor((2.0 * a / us + b) * u + mu + 0.43);
    if (us >= 0.07 && v <= vr) return static_cast<std::uint64_t>(kf);
    if (kf < 0.0 || (us < 0.013 && v > us)) continue;
    const auto k = static_cast<std::uint64_t>(kf);
    if (std::log(v) + std::log(inv_alpha) - std::log(a / (us * us) + b) <=
        -mu + kf * loglam - log_factorial(k)) {
      return k;
    }
  }
}

}  // namespace

Rng Rng::stream(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c) noexcept {
  // Absorb the key words one after the other, each through a full SplitMix64
  // round, then expand into the 256-bit state.
  std::uint64_t x = seed;
  std::uint64_t h = splitmix64(x);
  for (std::uint64_t word : {a, b, c}) {
    x = h ^ (word * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL);
    h = splitmix64(x);
  }
  Rng r{};
  x = h;
  for (auto& s : r.s_) s = splitmix64(x);
  if ((r.s_[0] | r.s_[1] | r.s_[2] | r.s_[3]) == 0) r.s_[0] = 1;  // never all zero
  return r;
}

std::uint64_t Rng::next() noexcept {
  const std::uint64_t result = rotl(s_[0] + s_[3], 23) + s_[0];
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

std::uint64_t Rng::below(std::uint64_t n) noexcept {
  // Rejection of the lowest (2^64 mod n) values makes x mod n exactly uniform.
  const std::uint64_t threshold = (0 - n) % n;
  std::uint64_t x = next();
  while (x < threshold) x = next();
  return x % n;
}

double Rng::normal() noexcept {
  // 1 - uniform() is in (0, 1]: the logarithm is finite.
  const double u1 = 1.0 - uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

std::uint64_t Rng::poisson(double mu) noexcept {
  if (!(mu > 0.0)) return 0;
  return mu < 10.0 ? poisson_inversion(*this, mu) : poisson_ptrs(*this, mu);
}

double log_factorial(std::uint64_t k) noexcept {
  static constexpr double kTable[16] = {0.0,
                                        0.0,
                                        0.69314718055994530942,
                                        1.79175946922805500081,
                                        3.17805383034794561964,
                                        4.78749174278204599425,
                                        6.57925121201010099506,
                                        8.52516136106541430017,
                                        10.60460290274525022842,
                                        12.80182748008146961121,
                                        15.10441257307551529523,
                                        17.50230784587388583929,
                                        19.98721449566188614952,
                                        22.55216385312342288557,
                                        25.19122118273868150009,
                                        27.89927138384089156609};
  if (k < 16) return kTable[k];
  const double n = static_cast<double>(k);
  const double inv = 1.0 / n;
  const double inv2 = inv * inv;
  // Stirling: n log n - n + log(2 pi n)/2 + 1/(12n) - 1/(360n^3) + 1/(1260n^5)
  return n * std::log(n) - n + 0.5 * std::log(2.0 * std::numbers::pi * n) +
         inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 / 1260.0));
}

}  // namespace exospec::kernels
