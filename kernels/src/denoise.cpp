#include "exospec/kernels/denoise.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "exospec/kernels/calibrate.hpp"
#include "target_clones.hpp"

namespace exospec::kernels {

template <class T>
bool fill_flagged(std::span<T> value, std::span<T> variance, std::span<const std::uint8_t> quality,
                  std::uint8_t mask_bits) noexcept {
  const std::size_t P = value.size();
  auto bad = [&](std::size_t q) { return (quality[q] & mask_bits) != 0; };
  std::size_t first_good = P;
  for (std::size_t q = 0; q < P; ++q) {
    if (!bad(q)) {
      first_good = q;
      break;
    }
  }
  if (first_good == P) return false;
  for (std::size_t a = 0; a < P;) {
    if (!bad(a)) {
      ++a;
      continue;
    }
    std::size_t b = a;
    while (b + 1 < P && bad(b + 1)) ++b;
    const bool has_left = a > 0, has_right = b + 1 < P;
    for (std::size_t p = a; p <= b; ++p) {
      if (has_left && has_right) {
        const double w = static_cast<double>(p - a + 1) / static_cast<double>(b - a + 2);
        value[p] = static_cast<T>((1 - w) * static_cast<double>(value[a - 1]) +
                                  w * static_cast<double>(value[b + 1]));
        variance[p] = static_cast<T>((1 - w) * (1 - w) * static_cast<double>(variance[a - 1]) +
                                     w * w * static_cast<double>(variance[b + 1]));
      } else {
        const std::size_t src = has_left ? a - 1 : b + 1;
        value[p] = value[src];
        variance[p] = variance[src];
      }
    }
    a = b + 1;
  }
  return true;
}

template bool fill_flagged<float>(std::span<float>, std::span<float>, std::span<const std::uint8_t>,
                                  std::uint8_t) noexcept;
template bool fill_flagged<double>(std::span<double>, std::span<double>,
                                   std::span<const std::uint8_t>, std::uint8_t) noexcept;

namespace {

// One step of the intersection of confidence intervals, for pixels [b, e):
// window k's interval [est - gamma sd, est + gamma sd] meets the running
// intersection [lo, hi] of windows 0..k-1 of a pixel still growing (used ==
// k - 1): its estimate is taken (best, best_var, used = k); otherwise the
// pixel stays with its last window. Branch-free over the pixels, so that it
// vectorises; the same operations as one pixel's loop over k with a break.
template <class T>
inline void ici_step(std::size_t b, std::size_t e, std::int32_t k, T gamma, const T* __restrict est,
                     const T* __restrict var, T* __restrict lo, T* __restrict hi, T* __restrict best,
                     T* __restrict best_var, std::int32_t* __restrict used) noexcept {
  for (std::size_t p = b; p < e; ++p) {
    // (std::max and std::min written out on values: GCC does not vectorise
    // a load through the reference they return.)
    const T v = var[p], x = est[p], l = lo[p], h = hi[p], bx = best[p], bv = best_var[p];
    const T s = std::sqrt(v < T(0) ? T(0) : v);
    const T a = x - gamma * s, c = x + gamma * s;
    const T nlo = l < a ? a : l;  // std::max(l, a)
    const T nhi = c < h ? c : h;  // std::min(h, c)
    // (Every load first, and used written before the other stores: in
    // another order GCC 12 does not vectorise the loop.)
    const std::int32_t u = used[p];
    const bool grow = u == k - 1 && !(nlo > nhi);
    used[p] = grow ? k : u;
    lo[p] = grow ? nlo : l;
    hi[p] = grow ? nhi : h;
    best[p] = grow ? x : bx;
    best_var[p] = grow ? v : bv;
  }
}
// (__restrict again here: GCC does not carry it from the inlined template's
// parameters, and without it does not vectorise.)
#define EXOSPEC_ICI_STEP(T)                                                                                  \
  EXOSPEC_CLONES void ici_step_dispatch(std::size_t b, std::size_t e, std::int32_t k, T gamma,               \
                                        const T* __restrict est, const T* __restrict var, T* __restrict lo,  \
                                        T* __restrict hi, T* __restrict best, T* __restrict best_var,        \
                                        std::int32_t* __restrict used) noexcept {                            \
    ici_step<T>(b, e, k, gamma, est, var, lo, hi, best, best_var, used);                                     \
  }
EXOSPEC_ICI_STEP(float)
EXOSPEC_ICI_STEP(double)
#undef EXOSPEC_ICI_STEP

// Window 0's interval and estimate for pixels [b, e) (the start of the
// intersection), and at the end the unusable pixels set to NaN and the
// windows chosen; vectorised like ici_step.
template <class T>
inline void ici_start(std::size_t b, std::size_t e, T gamma, const T* __restrict est, const T* __restrict var,
                      T* __restrict lo, T* __restrict hi, T* __restrict best, T* __restrict best_var,
                      std::int32_t* __restrict used) noexcept {
  for (std::size_t p = b; p < e; ++p) {
    const T x = est[p], v = var[p];
    const T sd = std::sqrt(v < T(0) ? T(0) : v);  // (std::max(v, 0))
    best[p] = x;
    best_var[p] = v;
    lo[p] = x - gamma * sd;
    hi[p] = x + gamma * sd;
    used[p] = 0;
  }
}
template <class T>
inline void ici_finish(std::size_t b, std::size_t e, const std::uint8_t* __restrict q, T* __restrict best,
                       T* __restrict best_var) noexcept {
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  for (std::size_t p = b; p < e; ++p) {
    const bool unusable = (q[p] & quality::kUnusable) != 0;
    const T x = best[p], v = best_var[p];
    best[p] = unusable ? kNaN : x;
    best_var[p] = unusable ? kNaN : v;
  }
}
#define EXOSPEC_ICI_ENDS(T)                                                                                    \
  EXOSPEC_CLONES void ici_start_dispatch(std::size_t b, std::size_t e, T gamma, const T* __restrict est,     \
                                         const T* __restrict var, T* __restrict lo, T* __restrict hi,        \
                                         T* __restrict best, T* __restrict best_var,                         \
                                         std::int32_t* __restrict used) noexcept {                           \
    ici_start<T>(b, e, gamma, est, var, lo, hi, best, best_var, used);                                       \
  }                                                                                                          \
  EXOSPEC_CLONES void ici_finish_dispatch(std::size_t b, std::size_t e, const std::uint8_t* __restrict q,    \
                                          T* __restrict best, T* __restrict best_var) noexcept {             \
    ici_finish<T>(b, e, q, best, best_var);                                                                  \
  }
EXOSPEC_ICI_ENDS(float)
EXOSPEC_ICI_ENDS(double)
#undef EXOSPEC_ICI_ENDS

}  // namespace

AdaptiveSmoother::AdaptiveSmoother(std::size_t pixels, const AdaptiveSettings& settings)
    : pixels_(pixels), settings_(settings) {
  if (!(settings.gamma > 0.0)) throw std::invalid_argument("gamma must be > 0");
  if (settings.windows.empty()) throw std::invalid_argument("needs at least one window");
  int previous = 1;
  for (int w : settings.windows) {
    if (w % 2 == 0 || w <= previous) {
      throw std::invalid_argument("windows must be odd, > 1 and increasing");
    }
    if (w <= settings.polyorder) throw std::invalid_argument("each window must exceed polyorder");
    previous = w;
    if (static_cast<std::size_t>(w) > pixels) {
      if (filters_.empty()) throw std::invalid_argument("the narrowest window exceeds the spectrum");
      break;
    }
    SavgolSettings s;
    s.window = w;
    s.polyorder = settings.polyorder;
    s.mode = SavgolMode::kInterp;
    filters_.emplace_back(pixels, s);
  }
}

template <class T>
AdaptiveSmoother::Workspace<T> AdaptiveSmoother::make_workspace() const {
  Workspace<T> w;
  w.value.resize(pixels_);
  w.variance.resize(pixels_);
  w.estimate.resize(filters_.size() * pixels_);
  w.sigma.resize(filters_.size() * pixels_);
  w.lo.resize(pixels_);
  w.hi.resize(pixels_);
  w.used.resize(pixels_);
  return w;
}

template <class T>
void AdaptiveSmoother::run(std::span<const T> radiance, std::span<const T> variance,
                           std::span<const std::uint8_t> quality, std::span<T> out,
                           std::span<T> out_variance, Workspace<T>& work,
                           std::span<std::uint8_t> chosen) const noexcept {
  const PixelRange all{0, pixels_};
  run_impl<T>(radiance, variance, quality, std::span<const PixelRange>(&all, 1), true, out, out_variance, work,
              chosen);
}

template <class T>
void AdaptiveSmoother::run_ranges(std::span<const T> radiance, std::span<const T> variance,
                                  std::span<const std::uint8_t> quality, std::span<const PixelRange> ranges,
                                  std::span<T> out, std::span<T> out_variance, Workspace<T>& work,
                                  std::span<std::uint8_t> chosen) const noexcept {
  run_impl<T>(radiance, variance, quality, ranges, false, out, out_variance, work, chosen);
}

template <class T>
void AdaptiveSmoother::run_impl(std::span<const T> radiance, std::span<const T> variance,
                                std::span<const std::uint8_t> quality, std::span<const PixelRange> ranges,
                                bool whole, std::span<T> out, std::span<T> out_variance, Workspace<T>& work,
                                std::span<std::uint8_t> chosen) const noexcept {
  const std::size_t P = pixels_, K = filters_.size();
  assert(P > 0 && radiance.size() % P == 0);
  const std::size_t rows = radiance.size() / P;
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  const T gamma = static_cast<T>(settings_.gamma);
  constexpr std::uint8_t kFill = quality::kUnusable | quality::kParticleHit;
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t o = r * P;
    const auto q = quality.subspan(o, P);
    auto y = out.subspan(o, P);
    auto yv = out_variance.subspan(o, P);
    std::copy_n(radiance.begin() + static_cast<std::ptrdiff_t>(o), P, work.value.begin());
    std::copy_n(variance.begin() + static_cast<std::ptrdiff_t>(o), P, work.variance.begin());
    if (!whole) {
      std::fill(y.begin(), y.end(), kNaN);
      std::fill(yv.begin(), yv.end(), kNaN);
      if (!chosen.empty()) std::fill_n(chosen.begin() + static_cast<std::ptrdiff_t>(o), P, 0);
    }
    if (!fill_flagged<T>(work.value, work.variance, q, kFill)) {
      std::fill(y.begin(), y.end(), kNaN);
      std::fill(yv.begin(), yv.end(), kNaN);
      if (!chosen.empty()) std::fill_n(chosen.begin() + static_cast<std::ptrdiff_t>(o), P, 0);
      continue;
    }
    for (std::size_t k = 0; k < K; ++k) {
      auto est = std::span<T>(work.estimate).subspan(k * P, P);
      auto sig = std::span<T>(work.sigma).subspan(k * P, P);
      for (const PixelRange& pr : ranges) {
        filters_[k].apply_range<T>(work.value, est, pr.begin, pr.end);
        filters_[k].apply_variance_range<T>(work.variance, sig, pr.begin, pr.end);
      }
    }
    // Window 0 (the narrowest) always; then grow while the intervals meet.
    T* best = y.data();
    T* best_var = yv.data();
    for (const PixelRange& pr : ranges) {
      ici_start_dispatch(pr.begin, pr.end, gamma, work.estimate.data(), work.sigma.data(), work.lo.data(),
                         work.hi.data(), best, best_var, work.used.data());
      for (std::size_t k = 1; k < K; ++k) {
        ici_step_dispatch(pr.begin, pr.end, static_cast<std::int32_t>(k), gamma, work.estimate.data() + k * P,
                          work.sigma.data() + k * P, work.lo.data(), work.hi.data(), best, best_var,
                          work.used.data());
      }
      ici_finish_dispatch(pr.begin, pr.end, q.data(), best, best_var);
      if (!chosen.empty()) {
        for (std::size_t p = pr.begin; p < pr.end; ++p) chosen[o + p] = static_cast<std::uint8_t>(work.used[p]);
      }
    }
  }
}

template AdaptiveSmoother::Workspace<float> AdaptiveSmoother::make_workspace<float>() const;
template AdaptiveSmoother::Workspace<double> AdaptiveSmoother::make_workspace<double>() const;
template void AdaptiveSmoother::run_ranges<float>(std::span<const float>, std::span<const float>,
                                                  std::span<const std::uint8_t>, std::span<const PixelRange>,
                                                  std::span<float>, std::span<float>, Workspace<float>&,
                                                  std::span<std::uint8_t>) const noexcept;
template void AdaptiveSmoother::run_ranges<double>(std::span<const double>, std::span<const double>,
                                                   std::span<const std::uint8_t>, std::span<const PixelRange>,
                                                   std::span<double>, std::span<double>, Workspace<double>&,
                                                   std::span<std::uint8_t>) const noexcept;
template void AdaptiveSmoother::run<float>(std::span<const float>, std::span<const float>,
                                           std::span<const std::uint8_t>, std::span<float>,
                                           std::span<float>, Workspace<float>&,
                                           std::span<std::uint8_t>) const noexcept;
template void AdaptiveSmoother::run<double>(std::span<const double>, std::span<const double>,
                                            std::span<const std::uint8_t>, std::span<double>,
                                            std::span<double>, Workspace<double>&,
                                            std::span<std::uint8_t>) const noexcept;

double anscombe(double counts) noexcept { return 2.0 * std::sqrt(std::max(counts, 0.0) + 0.375); }

double anscombe_inverse(double d) noexcept {
  constexpr double kRoot = 1.2247448713915890;  // sqrt(3/2)
  if (d < 1.2247448713915890) return 0.0;      // 2 sqrt(3/8): A of zero counts
  const double i = 1.0 / d;
  const double v = 0.25 * d * d + 0.25 * kRoot * i - 1.375 * i * i + 0.625 * kRoot * i * i * i -
                   0.125;
  return std::max(v, 0.0);
}

double anscombe_inverse_derivative(double d) noexcept {
  constexpr double kRoot = 1.2247448713915890;
  if (d < 1.2247448713915890) return 0.5 * d;
  const double i = 1.0 / d;
  return 0.5 * d - 0.25 * kRoot * i * i + 2.75 * i * i * i - 1.875 * kRoot * i * i * i * i;
}

AnscombeSmoother::AnscombeSmoother(std::size_t pixels, const AdaptiveSettings& settings)
    : smoother_(pixels, settings) {}

AnscombeSmoother::Workspace AnscombeSmoother::make_workspace() const {
  const std::size_t P = smoother_.pixels();
  Workspace w{smoother_.make_workspace<double>(), std::vector<double>(P), std::vector<double>(P, 1.0),
              std::vector<double>(P), std::vector<double>(P), std::vector<std::uint8_t>(P)};
  return w;
}

template <class T>
void AnscombeSmoother::run(std::span<const T> radiance, std::span<const std::uint8_t> quality,
                           std::span<const double> scale, std::span<const double> offset,
                           std::span<T> out, std::span<T> out_variance,
                           Workspace& work) const noexcept {
  const std::size_t P = smoother_.pixels(), rows = radiance.size() / P;
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t o = r * P;
    for (std::size_t p = 0; p < P; ++p) {
      const double l = static_cast<double>(radiance[o + p]);
      work.q[p] = quality[o + p];
      // Spike pixels were interpolated over by calibrate: their value is a fair
      // estimate, so they are transformed like the others.
      work.a[p] = std::isfinite(l) ? anscombe(l * scale[o + p] + offset[o + p]) : 0.0;
    }
    smoother_.run<double>(work.a, work.ones, work.q, work.d, work.dv, work.adaptive);
    for (std::size_t p = 0; p < P; ++p) {
      if ((quality[o + p] & quality::kUnusable) || !(scale[o + p] > 0.0)) {
        out[o + p] = kNaN;
        out_variance[o + p] = kNaN;
        continue;
      }
      const double d = work.d[p];
      const double c = anscombe_inverse(d), g = anscombe_inverse_derivative(d);
      out[o + p] = static_cast<T>((c - offset[o + p]) / scale[o + p]);
      out_variance[o + p] = static_cast<T>(g * g * work.dv[p] / (scale[o + p] * scale[o + p]));
    }
  }
}

template void AnscombeSmoother::run<float>(std::span<const float>, std::span<const std::uint8_t>,
                                           std::span<const double>, std::span<const double>,
                                           std::span<float>, std::span<float>,
                                           Workspace&) const noexcept;
template void AnscombeSmoother::run<double>(std::span<const double>, std::span<const std::uint8_t>,
                                            std::span<const double>, std::span<const double>,
                                            std::span<double>, std::span<double>,
                                            Workspace&) const noexcept;

}  // namespace exospec::kernels
