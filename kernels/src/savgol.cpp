#include "exospec/kernels/savgol.hpp"
#include "target_clones.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cassert>
#include <cmath>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>

namespace exospec::kernels {
namespace {

// Interior samples: y_j = sum_i c_i x_{j - h + i} (interior_kernel below).
// Every output gets the same operations wherever it is computed, so a part
// of a row is simply the interior outputs within it.
inline std::pair<std::size_t, std::size_t> interior_part(std::size_t begin, std::size_t end, std::size_t lo,
                                                          std::size_t hi) noexcept {
  lo = std::max(lo, begin);
  hi = std::min(hi, end);
  if (lo >= hi) return {0, 0};
  return {lo, hi};
}

// 64 bytes of T as one GCC vector (one AVX-512 register, two AVX2 or four
// SSE ones; the compiler splits it), loaded and stored unaligned.
typedef float Vec64f __attribute__((vector_size(64)));
typedef double Vec64d __attribute__((vector_size(64)));
template <class T>
struct Vec64Of;
template <>
struct Vec64Of<float> {
  using type = Vec64f;
};
template <>
struct Vec64Of<double> {
  using type = Vec64d;
};
template <class T>
using Vec64 = typename Vec64Of<T>::type;
// (Through references: a 64-byte vector by value would change the ABI
// between the clones.)
template <class T>
[[gnu::always_inline]] inline void fma64(Vec64<T>& acc, T c, const T* p) noexcept {
  Vec64<T> v;
  __builtin_memcpy(&v, p, sizeof v);
  acc += c * v;
}
template <class T>
[[gnu::always_inline]] inline void store64(T* p, const Vec64<T>& v) noexcept {
  __builtin_memcpy(p, &v, sizeof v);
}

// kGroups vectors of outputs at [j, j + kGroups x lanes), each output summed
// over the taps in order (acc + c_i x), lane by lane: every output gets the
// same operations whichever group or position computes it.
template <class T, int kGroups>
[[gnu::always_inline]] inline void interior_group(const T* __restrict x, T* __restrict y, const T* __restrict c, std::size_t width,
                           std::size_t j) noexcept {
  constexpr std::size_t L = 64 / sizeof(T);
  const std::size_t h = width / 2;
  Vec64<T> acc[kGroups] = {};
  for (std::size_t i = 0; i < width; ++i) {
    const T ci = c[i];
    const T* src = x + j - h + i;
    for (int g = 0; g < kGroups; ++g) fma64<T>(acc[g], ci, src + g * L);
  }
  for (int g = 0; g < kGroups; ++g) store64(y + j + g * L, acc[g]);
}

// The interior outputs [begin, end) (lowest: the first interior output of
// the row, so that x[lowest - h] is the first sample). Eight vectors at a
// time (eight independent sums: the adds' latency, not their number, bounds
// one), then one; the last part vector ends at `end`, recomputing a few
// outputs to the same bits; a row's interior shorter than one vector, one
// output at a time.
template <class T>
[[gnu::always_inline]] inline void interior_kernel(const T* __restrict x, T* __restrict y, const T* __restrict c,
                                                   std::size_t width, std::size_t lowest, std::size_t begin, std::size_t end) noexcept {
  constexpr std::size_t L = 64 / sizeof(T);
  std::size_t j = begin;
  for (; j + 8 * L <= end; j += 8 * L) interior_group<T, 8>(x, y, c, width, j);
  for (; j + L <= end; j += L) interior_group<T, 1>(x, y, c, width, j);
  if (j == end) return;
  if (end >= lowest + L) {
    interior_group<T, 1>(x, y, c, width, end - L);
    return;
  }
  const std::size_t h = width / 2;
  for (; j < end; ++j) {
    T acc = T(0);
    for (std::size_t i = 0; i < width; ++i) acc += c[i] * x[j - h + i];
    y[j] = acc;
  }
}

// y[r] = sum_t w[t * hp + r] x[t] for r < h (the interp edges; hp: h
// rounded up to 8, the padding weights 0), in double, t ascending for every
// output as in the per-row loop; vectorised across the outputs, 8 at a time.
template <class T>
inline void dense_side_kernel(const T* __restrict x, T* __restrict y, const double* __restrict w,
                              std::size_t width, std::size_t h) noexcept {
  constexpr std::size_t kLanes = 8;
  const std::size_t hp = (h + kLanes - 1) / kLanes * kLanes;
  for (std::size_t r0 = 0; r0 < hp; r0 += kLanes) {
    double acc[kLanes] = {};
    for (std::size_t t = 0; t < width; ++t) {
      const double xt = static_cast<double>(x[t]);
      const double* __restrict wt = w + t * hp + r0;
      for (std::size_t k = 0; k < kLanes; ++k) acc[k] += wt[k] * xt;
    }
    const std::size_t m = std::min(kLanes, h - r0);
    for (std::size_t k = 0; k < m; ++k) y[r0 + k] = static_cast<T>(acc[k]);
  }
}
EXOSPEC_CLONES void dense_side(const float* x, float* y, const double* w, std::size_t width, std::size_t h) noexcept {
  dense_side_kernel(x, y, w, width, h);
}
EXOSPEC_CLONES void dense_side(const double* x, double* y, const double* w, std::size_t width,
                               std::size_t h) noexcept {
  dense_side_kernel(x, y, w, width, h);
}

EXOSPEC_CLONES void interior(const float* x, float* y, const float* c, std::size_t width, std::size_t lowest,
                             std::size_t begin, std::size_t end) noexcept {
  interior_kernel(x, y, c, width, lowest, begin, end);
}
EXOSPEC_CLONES void interior(const double* x, double* y, const double* c, std::size_t width, std::size_t lowest,
                             std::size_t begin, std::size_t end) noexcept {
  interior_kernel(x, y, c, width, lowest, begin, end);
}

}  // namespace

std::optional<SavgolMode> parse_savgol_mode(std::string_view name) noexcept {
  if (name == "interp") return SavgolMode::kInterp;
  if (name == "mirror") return SavgolMode::kMirror;
  if (name == "nearest") return SavgolMode::kNearest;
  if (name == "constant") return SavgolMode::kConstant;
  if (name == "wrap") return SavgolMode::kWrap;
  return std::nullopt;
}

std::string_view savgol_mode_name(SavgolMode m) noexcept {
  switch (m) {
    case SavgolMode::kInterp:
      return "interp";
    case SavgolMode::kMirror:
      return "mirror";
    case SavgolMode::kNearest:
      return "nearest";
    case SavgolMode::kConstant:
      return "constant";
    case SavgolMode::kWrap:
      return "wrap";
  }
  return "?";
}

std::vector<double> savgol_coeffs(int window, int polyorder, int deriv, double delta,
                                  std::optional<double> pos, bool use_conv) {
  if (window < 1) throw std::invalid_argument("window must be at least 1");
  if (polyorder < 0 || polyorder >= window) {
    throw std::invalid_argument("polyorder must be in [0, window)");
  }
  if (deriv < 0) throw std::invalid_argument("deriv must be >= 0");
  if (!(delta > 0.0)) throw std::invalid_argument("delta must be > 0");
  const int half = window / 2;
  const double p = pos ? *pos : (window % 2 == 0 ? half - 0.5 : static_cast<double>(half));
  if (!(p >= 0.0 && p < window)) throw std::invalid_argument("pos must be in [0, window)");
  const auto W = static_cast<std::size_t>(window);
  std::vector<double> out(W, 0.0);
  if (deriv > polyorder) return out;

  // Minimum-norm solution of A c = y, A_ki = x_i^k (k = 0..polyorder), y =
  // deriv! / delta^deriv e_deriv: the weights of the deriv-th derivative of the
  // least-squares polynomial at x = 0. Abscissae are scaled by s (x' = x / s,
  // y'_deriv = y_deriv / s^deriv) for conditioning; long double throughout.
  using Mat = Eigen::Matrix<long double, Eigen::Dynamic, Eigen::Dynamic>;
  using Vec = Eigen::Matrix<long double, Eigen::Dynamic, 1>;
  const auto m = static_cast<Eigen::Index>(polyorder + 1);
  const auto n = static_cast<Eigen::Index>(W);
  long double s = 0.0L;
  for (std::size_t i = 0; i < W; ++i) {
    s = std::max(s, std::abs(static_cast<long double>(i) - static_cast<long double>(p)));
  }
  if (s == 0.0L) s = 1.0L;
  Mat a(m, n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const long double x = (static_cast<long double>(i) - static_cast<long double>(p)) / s;
    long double v = 1.0L;
    for (Eigen::Index k = 0; k < m; ++k, v *= x) a(k, i) = v;
  }
  Vec y = Vec::Zero(m);
  long double fact = 1.0L;
  for (int k = 2; k <= deriv; ++k) fact *= static_cast<long double>(k);
  y(deriv) = fact / std::pow(static_cast<long double>(delta) * s, static_cast<long double>(deriv));
  const Vec c = a.completeOrthogonalDecomposition().solve(y);
  for (Eigen::Index i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = static_cast<double>(c(i));
  if (use_conv) std::reverse(out.begin(), out.end());  // scipy's use="conv"
  return out;
}

namespace {

// Weights of the deriv-th derivative, at each of the window's sample positions
// t = 0..W-1, of the least-squares polynomial through W samples: the same
// minimum-norm solutions as savgol_coeffs(window, polyorder, deriv, delta, t),
// from one factorisation (abscissae centred on the window and scaled to
// [-1, 1]; long double throughout). Row t of the result holds position t's W
// weights.
std::vector<std::vector<double>> savgol_fit_weights(int window, int polyorder, int deriv,
                                                    double delta) {
  using Mat = Eigen::Matrix<long double, Eigen::Dynamic, Eigen::Dynamic>;
  const auto m = static_cast<Eigen::Index>(polyorder + 1);
  const auto n = static_cast<Eigen::Index>(window);
  std::vector<std::vector<double>> out(static_cast<std::size_t>(window),
                                       std::vector<double>(static_cast<std::size_t>(window), 0.0));
  if (deriv > polyorder) return out;
  const long double c = static_cast<long double>(window - 1) / 2.0L;
  const long double s = c > 0.0L ? c : 1.0L;
  Mat a(m, n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const long double x = (static_cast<long double>(i) - c) / s;
    long double v = 1.0L;
    for (Eigen::Index k = 0; k < m; ++k, v *= x) a(k, i) = v;
  }
  // Right-hand sides: d^deriv/dx^deriv x^k at each position, in sample units.
  Mat y = Mat::Zero(m, n);
  const long double scale =
      std::pow(static_cast<long double>(delta) * s, static_cast<long double>(deriv));
  for (Eigen::Index t = 0; t < n; ++t) {
    const long double x = (static_cast<long double>(t) - c) / s;
    for (Eigen::Index k = deriv; k < m; ++k) {
      long double f = 1.0L;  // k! / (k - deriv)!
      for (Eigen::Index q = k - deriv + 1; q <= k; ++q) f *= static_cast<long double>(q);
      long double p = 1.0L;
      for (Eigen::Index q = 0; q < k - deriv; ++q) p *= x;
      y(k, t) = f * p / scale;
    }
  }
  const Mat w = a.completeOrthogonalDecomposition().solve(y);
  for (Eigen::Index t = 0; t < n; ++t) {
    for (Eigen::Index i = 0; i < n; ++i) {
      out[static_cast<std::size_t>(t)][static_cast<std::size_t>(i)] = static_cast<double>(w(i, t));
    }
  }
  return out;
}

}  // namespace

SavgolFilter::SavgolFilter(std::size_t length, const SavgolSettings& settings)
    : n_(length), s_(settings) {
  if (s_.window % 2 == 0) throw std::invalid_argument("the filter needs an odd window");
  centre_ = savgol_coeffs(s_.window, s_.polyorder, s_.deriv, s_.delta, std::nullopt, false);
  for (double c : centre_) {
    centre_f32_.push_back(static_cast<float>(c));
    centre2_f32_.push_back(static_cast<float>(c * c));
    centre2_f64_.push_back(c * c);
  }
  const auto W = static_cast<std::size_t>(s_.window);
  const std::size_t h = W / 2;
  if (s_.mode == SavgolMode::kInterp && n_ < W) {
    throw std::invalid_argument("mode interp needs a signal at least as long as the window (" +
                                std::to_string(n_) + " < " + std::to_string(W) + ")");
  }
  if (n_ == 0) return;
  if (n_ >= W) {
    interior_begin_ = h;
    interior_end_ = n_ - h;
  }
  auto add_row = [&](std::size_t j, const std::map<std::size_t, double>& w, double constant) {
    edges_.push_back({static_cast<std::uint32_t>(j), static_cast<std::uint32_t>(taps_.size()),
                      static_cast<std::uint32_t>(w.size()), constant});
    for (const auto& [q, v] : w) taps_.push_back({static_cast<std::uint32_t>(q), v});
  };
  const auto N = static_cast<std::int64_t>(n_);
  const std::vector<std::vector<double>> fit_weights =
      s_.mode == SavgolMode::kInterp
          ? savgol_fit_weights(s_.window, s_.polyorder, s_.deriv, s_.delta)
          : std::vector<std::vector<double>>{};
  for (std::size_t j = 0; j < n_; ++j) {
    if (j >= interior_begin_ && j < interior_end_) continue;
    std::map<std::size_t, double> w;
    double constant = 0.0;
    if (s_.mode == SavgolMode::kInterp) {
      // Polynomial through the first (last) W samples, evaluated at j.
      const std::size_t start = j < h ? 0 : n_ - W;
      const std::vector<double>& c = fit_weights[j - start];
      for (std::size_t i = 0; i < W; ++i) w[start + i] += c[i];
    } else {
      for (std::size_t i = 0; i < W; ++i) {
        std::int64_t k = static_cast<std::int64_t>(j + i) - static_cast<std::int64_t>(h);
        if (k < 0 || k >= N) {
          switch (s_.mode) {
            case SavgolMode::kConstant:
              constant += centre_[i] * s_.cval;
              continue;
            case SavgolMode::kNearest:
              k = std::clamp<std::int64_t>(k, 0, N - 1);
              break;
            case SavgolMode::kWrap:
              k = ((k % N) + N) % N;
              break;
            case SavgolMode::kMirror: {
              if (N == 1) {
                k = 0;
                break;
              }
              const std::int64_t period = 2 * (N - 1);
              k = ((k % period) + period) % period;
              if (k >= N) k = period - k;
              break;
            }
            case SavgolMode::kInterp:
              break;
          }
        }
        w[static_cast<std::size_t>(k)] += centre_[i];
      }
    }
    add_row(j, w, constant);
  }
  if (s_.mode == SavgolMode::kInterp && n_ >= W && h > 0) {
    // (The rows above, as matrices: outputs [0, h) from samples [0, W),
    // outputs [n - h, n) from samples [n - W, n).)
    for (const std::size_t first : {std::size_t{0}, n_ - h}) {
      DenseSide d;
      d.first_output = first;
      d.first_source = first == 0 ? 0 : n_ - W;
      const std::size_t hp = (h + 7) / 8 * 8;  // (dense_side_kernel's lanes)
      d.weight.assign(W * hp, 0.0);
      for (const EdgeRow& r : edges_) {
        if (r.output < first || r.output >= first + h) continue;
        for (std::uint32_t t = r.first; t < r.first + r.count; ++t) {
          d.weight[(taps_[t].source - d.first_source) * hp + (r.output - first)] = taps_[t].weight;
        }
      }
      d.weight2.resize(W * hp);
      for (std::size_t i = 0; i < W * hp; ++i) d.weight2[i] = d.weight[i] * d.weight[i];
      dense_.push_back(std::move(d));
    }
  }
}

template <class T>
bool SavgolFilter::dense_edges(std::span<const T> x, std::span<T> y, std::size_t lo, std::size_t hi,
                               bool variance) const noexcept {
  if (dense_.empty()) return false;
  const std::size_t W = static_cast<std::size_t>(s_.window), h = W / 2;
  for (const DenseSide& d : dense_) {
    if (hi <= d.first_output || lo >= d.first_output + h) continue;
    dense_side(x.data() + d.first_source, y.data() + d.first_output,
               (variance ? d.weight2 : d.weight).data(), W, h);
  }
  return true;
}

template <class T>
void SavgolFilter::apply(std::span<const T> x, std::span<T> y) const noexcept {
  apply_range<T>(x, y, 0, n_);
}

template <class T>
void SavgolFilter::apply_variance(std::span<const T> var, std::span<T> out) const noexcept {
  apply_variance_range<T>(var, out, 0, n_);
}

template <class T>
void SavgolFilter::apply_range(std::span<const T> x, std::span<T> y, std::size_t lo,
                               std::size_t hi) const noexcept {
  assert(x.size() == n_ && y.size() == n_ && lo <= hi && hi <= n_);
  const auto& c = centre<T>();
  const auto [b, e] = interior_part(interior_begin_, interior_end_, lo, hi);
  if (b < e) interior(x.data(), y.data(), c.data(), c.size(), interior_begin_, b, e);
  if (dense_edges<T>(x, y, lo, hi, false)) return;
  for (const EdgeRow& r : edges_) {
    if (r.output < lo || r.output >= hi) continue;
    double acc = r.constant;
    for (std::uint32_t t = r.first; t < r.first + r.count; ++t) {
      acc += taps_[t].weight * static_cast<double>(x[taps_[t].source]);
    }
    y[r.output] = static_cast<T>(acc);
  }
}

template <class T>
void SavgolFilter::apply_variance_range(std::span<const T> var, std::span<T> out, std::size_t lo,
                                        std::size_t hi) const noexcept {
  assert(var.size() == n_ && out.size() == n_ && lo <= hi && hi <= n_);
  const auto& c2 = centre_squared<T>();
  const auto [b, e] = interior_part(interior_begin_, interior_end_, lo, hi);
  if (b < e) interior(var.data(), out.data(), c2.data(), c2.size(), interior_begin_, b, e);
  if (dense_edges<T>(var, out, lo, hi, true)) return;
  for (const EdgeRow& r : edges_) {
    if (r.output < lo || r.output >= hi) continue;
    double acc = 0.0;
    for (std::uint32_t t = r.first; t < r.first + r.count; ++t) {
      acc += taps_[t].weight * taps_[t].weight * static_cast<double>(var[taps_[t].source]);
    }
    out[r.output] = static_cast<T>(acc);
  }
}

template <class T>
void SavgolFilter::apply_rows(std::span<const T> x, std::span<T> y) const noexcept {
  assert(n_ > 0 && x.size() % n_ == 0 && y.size() == x.size());
  for (std::size_t r = 0; r < x.size() / n_; ++r) {
    apply<T>(x.subspan(r * n_, n_), y.subspan(r * n_, n_));
  }
}

template void SavgolFilter::apply<float>(std::span<const float>, std::span<float>) const noexcept;
template void SavgolFilter::apply<double>(std::span<const double>, std::span<double>) const noexcept;
template void SavgolFilter::apply_variance<float>(std::span<const float>,
                                                  std::span<float>) const noexcept;
template void SavgolFilter::apply_variance<double>(std::span<const double>,
                                                   std::span<double>) const noexcept;
template void SavgolFilter::apply_range<float>(std::span<const float>, std::span<float>, std::size_t,
                                               std::size_t) const noexcept;
template void SavgolFilter::apply_range<double>(std::span<const double>, std::span<double>, std::size_t,
                                                std::size_t) const noexcept;
template void SavgolFilter::apply_variance_range<float>(std::span<const float>, std::span<float>, std::size_t,
                                                        std::size_t) const noexcept;
template void SavgolFilter::apply_variance_range<double>(std::span<const double>, std::span<double>,
                                                         std::size_t, std::size_t) const noexcept;
template void SavgolFilter::apply_rows<float>(std::span<const float>,
                                              std::span<float>) const noexcept;
template void SavgolFilter::apply_rows<double>(std::span<const double>,
                                               std::span<double>) const noexcept;

}  // namespace exospec::kernels
