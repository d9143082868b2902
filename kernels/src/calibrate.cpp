#include "exospec/kernels/calibrate.hpp"
#include "target_clones.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

namespace exospec::kernels {
namespace {

int fit_order(std::size_t n) noexcept { return n >= 5 ? 2 : n >= 3 ? 1 : 0; }

// The smoother window of pixel p: [lo, lo + width), shifted inwards at the edges.
struct Window {
  std::size_t lo, hi;  // inclusive
};
Window window_of(std::size_t p, std::size_t pixels, std::size_t h) noexcept {
  if (pixels < 2 * h + 1) return {0, pixels - 1};
  const std::size_t lo = std::min(p > h ? p - h : 0, pixels - 1 - 2 * h);
  return {lo, lo + 2 * h};
}

// Per-spectrum scalars shared by run() and run_reference().
struct SpectrumTerms {
  std::uint8_t flags = 0;
  bool values = false;    // whether radiance and variance are computed
  double total = 0.0;     // M, counts
  double g = 1.0;         // dead-time factor
  double a = 0.0;         // 1 / (t g)
  double tg = 0.0;        // t g
  double dark_scale = 1.0;
  double beta = 0.0;      // tau / (t g)
};

SpectrumTerms spectrum_terms(double total, double t, double temp, double tau, double t_ref,
                             double coeff, const CalibrateSettings& settings) noexcept {
  SpectrumTerms s;
  s.total = total;
  if (!(std::isfinite(t) && t > 0.0)) s.flags |= quality::kInvalidExposure;
  // (The comparisons are false for NaN.)
  const double dark_scale = 1.0 + coeff * (temp - t_ref);
  if (!(temp >= settings.min_detector_temperature_c &&
        temp <= settings.max_detector_temperature_c && dark_scale >= 0.0)) {
    s.flags |= quality::kInvalidTemperature;
  }
  if (s.flags) return s;
  s.g = 1.0 - tau * total / t;
  if (!(s.g > 0.0)) {
    s.flags |= quality::kSaturated;
    return s;
  }
  if (1.0 / s.g > settings.max_dead_time_correction) s.flags |= quality::kSaturated;
  s.values = true;
  s.tg = t * s.g;
  s.a = 1.0 / s.tg;
  s.dark_scale = dark_scale;
  s.beta = tau * s.a;
  return s;
}

// The variance of one pixel from its smoothed radiance (see the header).
inline double pixel_variance(double smoothed, double dark_radiance, double response,
                             double inv_response, const SpectrumTerms& s,
                             double min_counts) noexcept {
  const double expected = std::max(smoothed, 0.0) + s.dark_scale * dark_radiance;
  const double mu = std::max(expected * response * s.tg, min_counts);
  const double base = s.a * inv_response;
  const double one = 1.0 + s.beta * mu;
  return base * base * mu * (one * one + s.beta * s.beta * mu * std::max(s.total - mu, 0.0));
}

template <class Count>
double row_total(const Count* c, std::size_t n) noexcept {
  if constexpr (std::is_integral_v<Count>) {
    std::uint64_t sum = 0;
    for (std::size_t p = 0; p < n; ++p) sum += c[p];
    return static_cast<double>(sum);
  } else {
    double sum = 0.0;
    for (std::size_t p = 0; p < n; ++p) sum += static_cast<double>(c[p]);
    return sum;
  }
}

}  // namespace

void leave_one_out_weights(std::span<const double> xs, std::span<double> out) {
  assert(xs.size() == out.size());
  const auto n = static_cast<Eigen::Index>(xs.size());
  if (n == 0) return;
  const int order = fit_order(xs.size());
  Eigen::MatrixXd a(n, order + 1);
  for (Eigen::Index i = 0; i < n; ++i) {
    double v = 1.0;
    for (int k = 0; k <= order; ++k, v *= xs[static_cast<std::size_t>(i)]) a(i, k) = v;
  }
  // Row 0 of (A^T A)^-1 A^T: the fitted polynomial's value at x = 0.
  const Eigen::MatrixXd w = (a.transpose() * a).ldlt().solve(a.transpose());
  for (Eigen::Index i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = w(0, i);
}

Calibrator::Calibrator(const DetectorCalibration& cal, const CalibrateSettings& settings)
    : pixels_(cal.sensitivity.size()),
      settings_(settings),
      dead_time_s_(cal.dead_time_s),
      t_ref_(cal.dark_reference_temperature),
      temp_coeff_(cal.dark_temperature_coeff) {
  const std::size_t P = pixels_;
  assert(cal.flat.size() == P && cal.dark_rate.size() == P && cal.bad_pixel.size() == P);
  assert(settings.variance_half_width >= 1 && settings.variance_wide_half_width >= 1 &&
         settings.variance_spectra >= 0 && settings.variance_spectra <= kMaxVarianceSpectra &&
         settings.variance_structure_sigma >= 0.0);
  // A detector narrower than one window: the window shrinks to the detector.
  settings_.variance_half_width =
      static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(settings.variance_half_width),
                                             P > 0 ? (P - 1) / 2 : 0));
  // The double tables are filled here; the float ones are converted from them.
  auto& t64 = tables_f64_;
  t64.response.assign(P, 0.0);
  t64.inv_response.assign(P, 0.0);
  t64.dark_radiance.assign(P, 0.0);
  bad_.assign(P, 0);
  usable_.assign(P, 0);
  for (std::size_t p = 0; p < P; ++p) {
    const double r = cal.sensitivity[p] * cal.flat[p];
    const bool ok = cal.bad_pixel[p] == 0 && std::isfinite(r) && r > 0.0 &&
                    std::isfinite(cal.dark_rate[p]);
    usable_[p] = ok ? 1 : 0;
    bad_[p] = ok ? 0 : quality::kBadPixel;
    if (ok) {
      t64.response[p] = r;
      t64.inv_response[p] = 1.0 / r;
      t64.dark_radiance[p] = cal.dark_rate[p] / r;
    }
  }
  for (std::size_t p = 0; p < P; ++p) {
    if (!usable_[p]) bad_list_.push_back(static_cast<std::uint32_t>(p));
  }
  first_usable_ = static_cast<std::size_t>(std::find(usable_.begin(), usable_.end(), 1) - usable_.begin());
  // The usable pixels of each pixel's wide window [p - hw, p + hw] (truncated).
  {
    const auto hw = static_cast<std::size_t>(settings_.variance_wide_half_width);
    wide_usable_.assign(P, 0);
    std::uint32_t n = 0;
    for (std::size_t q = 0; q < std::min(P, hw + 1); ++q) n += usable_[q];
    for (std::size_t p = 0; p < P; ++p) {
      wide_usable_[p] = n;
      if (p + hw + 1 < P) n += usable_[p + hw + 1];
      if (p >= hw) n -= usable_[p - hw];
    }
    // 1 / (the wide mean's count) for m = 1 .. 2 variance_spectra + 1 spectra
    // pooled: m U_p, less the pixel itself if usable (0 if none are left).
    const auto ms = 2 * static_cast<std::size_t>(settings_.variance_spectra) + 1;
    tables_f64_.inv_wide.assign(ms * P, 0.0);
    for (std::size_t m = 1; m <= ms; ++m) {
      for (std::size_t p = 0; p < P; ++p) {
        const double count = static_cast<double>(m * wide_usable_[p]) - (usable_[p] ? 1.0 : 0.0);
        tables_f64_.inv_wide[(m - 1) * P + p] = count > 0.0 ? 1.0 / count : 0.0;
      }
    }
  }
  const auto h = static_cast<std::size_t>(settings_.variance_half_width);
  // Regular weights: the full window, centre excluded.
  {
    std::vector<double> xs, w(2 * h);
    for (std::size_t k = 0; k <= 2 * h; ++k) {
      if (k != h) xs.push_back(static_cast<double>(k) - static_cast<double>(h));
    }
    leave_one_out_weights(xs, w);
    t64.regular.assign(2 * h + 1, 0.0);
    for (std::size_t k = 0, j = 0; k <= 2 * h; ++k) {
      if (k != h) t64.regular[k] = w[j++];
    }
    double w2 = 0.0;
    for (const double v : w) w2 += v * v;
    t64.regular_w2.assign(1, w2);
  }
  if (P >= 2 * h + 1) {
    interior_begin_ = h;
    interior_end_ = P - h;
  }
  // Every usable pixel whose window is not the full regular one gets its own
  // weights over its window (0 for itself and for unusable pixels).
  std::vector<double> xs, w;
  std::vector<std::size_t> idx;
  for (std::size_t p = 0; p < P; ++p) {
    if (!usable_[p]) continue;
    const Window win = window_of(p, P, h);
    bool regular = p >= interior_begin_ && p < interior_end_;
    xs.clear();
    idx.clear();
    for (std::size_t q = win.lo; q <= win.hi; ++q) {
      if (q == p) continue;
      if (!usable_[q]) {
        regular = false;
        continue;
      }
      xs.push_back(static_cast<double>(q) - static_cast<double>(p));
      idx.push_back(q - win.lo);
    }
    if (regular) continue;
    w.assign(xs.size(), 0.0);
    leave_one_out_weights(xs, w);
    irregular_pixel_.push_back(static_cast<std::uint32_t>(p));
    irregular_lo_.push_back(static_cast<std::uint32_t>(win.lo));
    const std::size_t base = t64.irregular.size();
    t64.irregular.resize(base + 2 * h + 1, 0.0);
    double w2 = 0.0;
    for (std::size_t k = 0; k < xs.size(); ++k) {
      t64.irregular[base + idx[k]] = w[k];
      w2 += w[k] * w[k];
    }
    t64.irregular_w2.push_back(w2);
  }
  // Stored tap-major (weight k of irregular pixel i at k * count + i), so
  // that the variance kernel's loop over the irregular pixels vectorises.
  {
    const std::size_t width = 2 * h + 1, count = irregular_pixel_.size();
    std::vector<double> by_tap(width * count);
    for (std::size_t i = 0; i < count; ++i) {
      for (std::size_t k = 0; k < width; ++k) by_tap[k * count + i] = t64.irregular[i * width + k];
    }
    t64.irregular = std::move(by_tap);
  }
  // A window narrower than 2h + 1 (P < 2h + 1) is padded with zero weights.
  auto to_float = [](const std::vector<double>& v) {
    std::vector<float> f(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) f[i] = static_cast<float>(v[i]);
    return f;
  };
  tables_f32_ = {to_float(t64.response), to_float(t64.inv_response), to_float(t64.dark_radiance),
                 to_float(t64.regular),  to_float(t64.irregular),    to_float(t64.regular_w2),
                 to_float(t64.irregular_w2), to_float(t64.inv_wide)};
}

namespace {

// One row of the fast path, in compute type T (float for float output: the
// output's precision; double for double). Tables are the Calibrator's, in T.
template <class T>
struct RowTables {
  const T* inv_response;
  const T* response;
  const T* dark_radiance;
  const std::uint8_t* bad;
  const T* regular;  // 2h + 1 weights, centre 0
  std::size_t pixels, half_width, interior_begin, interior_end;
  const std::uint32_t* irregular_pixel;
  const std::uint32_t* irregular_lo;
  const T* irregular;  // 2h + 1 weights per irregular pixel
  std::size_t irregular_count;
  T regular_w2;           // sum of the squared regular weights
  const T* irregular_w2;  // and of each irregular pixel's
};

// The variance of one pixel from its smoothed radiance, in T (see the header).
template <class T>
struct VarianceTerms {
  T tg, a, ds, beta, total, min_counts;
  VarianceTerms(const SpectrumTerms& s, double min_counts_)
      : tg(static_cast<T>(s.tg)),
        a(static_cast<T>(s.a)),
        ds(static_cast<T>(s.dark_scale)),
        beta(static_cast<T>(s.beta)),
        total(static_cast<T>(s.total)),
        min_counts(static_cast<T>(min_counts_)) {}
  T operator()(T smoothed, T dark, T resp, T inv_resp) const noexcept {
    smoothed = smoothed > T(0) ? smoothed : T(0);
    const T mu0 = (smoothed + ds * dark) * resp * tg;
    const T mu = mu0 > min_counts ? mu0 : min_counts;
    const T base = a * inv_resp;
    const T one = T(1) + beta * mu;
    const T rest = total - mu > T(0) ? total - mu : T(0);
    return base * base * mu * (one * one + beta * beta * mu * rest);
  }
};

// The estimate of a pixel's radiance behind its variance (see the header):
// the pooled quadratic n where it differs from the wide mean w by more than
// the structure threshold (c2_over_m = c^2 / m, w2 its weights' sum of
// squares), the wide mean elsewhere.
template <class T>
[[gnu::always_inline]] inline T choose_estimate(const VarianceTerms<T>& vt, T n, T w, T w2_c2_over_m, T dark, T resp) noexcept {
  const T ws = w > T(0) ? w : T(0);
  const T k = resp * vt.tg;
  const T mu0 = (ws + vt.ds * dark) * k;
  const T mu_w = mu0 > vt.min_counts ? mu0 : vt.min_counts;
  const T d = (n - w) * k;
  return d * d > w2_c2_over_m * mu_w ? n : w;
}

// The pooled quadratic of the interior pixels on the rows' mean radiance cm,
// the choice against the wide mean W and the variance, in one pass; H > 0 is
// the half width known at compile time (the taps unroll and p vectorises),
// H = 0 reads it from the tables.
template <int H, class T>
[[gnu::always_inline]] inline void interior_variance(const RowTables<T>& tb, const VarianceTerms<T>& vt, T c2_over_m,
                              const T* __restrict cm, const T* __restrict W, T* __restrict V) noexcept {
  const std::size_t h = H > 0 ? static_cast<std::size_t>(H) : tb.half_width;
  const T* __restrict w = tb.regular;
  const T* __restrict inv_resp = tb.inv_response;
  const T* __restrict resp = tb.response;
  const T* __restrict dark = tb.dark_radiance;
  const T w2c = tb.regular_w2 * c2_over_m;
  for (std::size_t p = tb.interior_begin; p < tb.interior_end; ++p) {
    T acc = T(0);
    if constexpr (H > 0) {
      for (int k = 0; k < 2 * H + 1; ++k) acc += w[k] * cm[p + static_cast<std::size_t>(k) - h];
    } else {
      for (std::size_t k = 0; k <= 2 * h; ++k) acc += w[k] * cm[p + k - h];
    }
    V[p] = vt(choose_estimate(vt, acc, W[p], w2c, dark[p], resp[p]), dark[p], resp[p], inv_resp[p]);
  }
}

template <class Count, class T>
inline void radiance_kernel(const RowTables<T>& tb, const SpectrumTerms& s,
                            const Count* __restrict c, T* __restrict L,
                            std::uint8_t* __restrict Q) noexcept {
  const std::size_t P = tb.pixels;
  const T* __restrict inv_resp = tb.inv_response;
  const T* __restrict dark = tb.dark_radiance;
  const std::uint8_t* __restrict bad = tb.bad;
  const std::uint8_t flags = s.flags;
  // Radiance (0 on unusable pixels for now: their tables are 0) and quality.
  const T a = static_cast<T>(s.a), ds = static_cast<T>(s.dark_scale);
  for (std::size_t p = 0; p < P; ++p) {
    L[p] = a * inv_resp[p] * static_cast<T>(c[p]) - ds * dark[p];
    Q[p] = static_cast<std::uint8_t>(bad[p] | flags);
  }
}

// The irregular pixels' variance (their own weights, tap-major: see the
// constructor), one vectorised pass over them into tmp (the window's values
// gathered), then stored at their pixels.
template <int H, class T>
[[gnu::always_inline]] inline void irregular_variance(const RowTables<T>& tb, const VarianceTerms<T>& vt,
                                                      T c2_over_m, const T* __restrict cm, const T* __restrict W,
                                                      T* __restrict V, T* __restrict tmp) noexcept {
  const std::size_t n = tb.irregular_count;
  const std::size_t width = 2 * (H > 0 ? static_cast<std::size_t>(H) : tb.half_width) + 1;
  const T* __restrict w = tb.irregular;
  const std::uint32_t* __restrict lo = tb.irregular_lo;
  const std::uint32_t* __restrict pixel = tb.irregular_pixel;
  const T* __restrict w2 = tb.irregular_w2;
  const T* __restrict inv_resp = tb.inv_response;
  const T* __restrict resp = tb.response;
  const T* __restrict dark = tb.dark_radiance;
  for (std::size_t i = 0; i < n; ++i) {
    const T* __restrict src = cm + lo[i];
    T acc = T(0);
    if constexpr (H > 0) {
      for (int k = 0; k < 2 * H + 1; ++k) acc += w[static_cast<std::size_t>(k) * n + i] * src[k];
    } else {
      for (std::size_t k = 0; k < width; ++k) acc += w[k * n + i] * src[k];
    }
    const std::uint32_t p = pixel[i];
    tmp[i] = vt(choose_estimate(vt, acc, W[p], w2[i] * c2_over_m, dark[p], resp[p]), dark[p], resp[p], inv_resp[p]);
  }
  for (std::size_t i = 0; i < n; ++i) V[pixel[i]] = tmp[i];
}

// tmp: scratch of at least the irregular pixels' count.
template <class T>
[[gnu::always_inline]] inline void variance_kernel(const RowTables<T>& tb, const SpectrumTerms& s, double min_counts,
                            T c2_over_m, const T* __restrict cm, const T* __restrict W,
                            T* __restrict V, T* __restrict tmp) noexcept {
  const VarianceTerms<T> vt(s, min_counts);
  if (tb.half_width == 4) {
    interior_variance<4>(tb, vt, c2_over_m, cm, W, V);
  } else {
    interior_variance<0>(tb, vt, c2_over_m, cm, W, V);
  }
  // The pixels near edges and bad pixels, with their own weights.
  if (tb.half_width == 4) {
    irregular_variance<4>(tb, vt, c2_over_m, cm, W, V, tmp);
  } else {
    irregular_variance<0>(tb, vt, c2_over_m, cm, W, V, tmp);
  }
}

// The column sums of m rows, in the rows' order (vectorised; unusable pixels
// are fixed by the caller). Five rows, the default, in one pass.
template <class T>
[[gnu::always_inline]] inline void sum_rows(std::size_t P, const T* const* rows, std::size_t m,
                                            T* __restrict sum) noexcept {
  if (m == 5) {
    const T *__restrict a = rows[0], *__restrict b = rows[1], *__restrict c = rows[2],
                        *__restrict d = rows[3], *__restrict e = rows[4];
    for (std::size_t p = 0; p < P; ++p) sum[p] = (((a[p] + b[p]) + c[p]) + d[p]) + e[p];
    return;
  }
  for (std::size_t p = 0; p < P; ++p) sum[p] = rows[0][p];
  for (std::size_t j = 1; j < m; ++j) {
    const T* __restrict L = rows[j];
    for (std::size_t p = 0; p < P; ++p) sum[p] += L[p];
  }
}

// The wide mean of every pixel: W_p = (sum of the column sums cs over
// [p - hw, p + hw], truncated at the edges, less this row's own L_p) times
// inv_n_p (1 / the count of values). Shifted adds, not a running sum: the
// interior vectorises over p (HW > 0: the half width at compile time).
template <int HW, class T>
[[gnu::always_inline]] inline void wide_mean(std::size_t P, std::size_t hw_run, const T* __restrict cs, const T* __restrict L,
                      const T* __restrict inv_n, T* __restrict W) noexcept {
  const std::size_t hw = HW > 0 ? static_cast<std::size_t>(HW) : hw_run;
  const std::size_t lo = std::min(hw, P), hi = P > hw ? std::max(P - hw, lo) : lo;
  if constexpr (HW == 10) {
    // 21 = 3 x 7, the 7 as 2 + 2 + 2 + 1: four passes instead of 21 (t2,
    // t4 and t7 in W's scratch after it: 3 P more). Sums starting at q.
    T* __restrict t2 = W + P;
    T* __restrict t4 = t2 + P;
    T* __restrict t7 = t4 + P;
    for (std::size_t q = 0; q + 1 < P; ++q) t2[q] = cs[q] + cs[q + 1];
    for (std::size_t q = 0; q + 3 < P; ++q) t4[q] = t2[q] + t2[q + 2];
    for (std::size_t q = 0; q + 6 < P; ++q) t7[q] = t4[q] + t2[q + 4] + cs[q + 6];
    for (std::size_t p = lo; p < hi; ++p) {
      W[p] = ((t7[p - 10] + t7[p - 3] + t7[p + 4]) - L[p]) * inv_n[p];
    }
  } else {
    // One pass per tap (k outermost: each pass vectorises; the same order of
    // the sum for every pixel).
    for (std::size_t p = lo; p < hi; ++p) W[p] = T(0);
    for (std::size_t k = 0; k <= 2 * hw; ++k) {
      const T* __restrict src = cs + k - hw;
      for (std::size_t p = lo; p < hi; ++p) W[p] += src[p];
    }
    for (std::size_t p = lo; p < hi; ++p) W[p] = (W[p] - L[p]) * inv_n[p];
  }
  auto edge = [&](std::size_t p) {
    T acc = T(0);
    for (std::size_t q = p > hw ? p - hw : 0; q <= std::min(P - 1, p + hw); ++q) acc += cs[q];
    W[p] = (acc - L[p]) * inv_n[p];
  };
  for (std::size_t p = 0; p < lo; ++p) edge(p);
  for (std::size_t p = hi; p < P; ++p) edge(p);
}

// An upper bound of the despike statistic (despike_row's z_of before its
// line tolerance, which only lowers it) for the pixels [b, e), 3 <= b,
// e <= P - 3, with the reference from the pixels usable and not yet flagged
// when it is called (open_from: 1 or 0 for the pixels [b - 3, e + 3), made by
// the caller in a pass of its own so that this loop is on floats only):
// out[p - b], minus infinity where fewer than two pixels are open. In float (16 pixels per AVX-512
// vector) plus a slack of more than ten times the rounding of the float
// terms (each sqrt within ~1e-6 relative, mu within ~4 ulp of the sum of
// its terms' sizes, however they cancel), so that it bounds the double
// statistic; NaN where a term is not finite. Branch-
// free, so that it vectorises; despike_row computes z_of itself wherever
// this bound reaches the threshold or a neighbour was flagged in its pass,
// so the screen only skips work.
template <class Count, class T>
[[gnu::always_inline]] inline void despike_bound(std::size_t b, std::size_t e, const float* __restrict open_from,
                                                 const T* __restrict L,
                                                 const Count* __restrict c, const T* __restrict response,
                                                 const T* __restrict dark, double tg_d, double dark_scale_d,
                                                 double min_counts_d, float* __restrict out) noexcept {
  constexpr float kInvRefNoise = static_cast<float>(1.0 / 1.1180339887498949);  // 1 / sqrt(1 + 1/4)
  const auto tg = static_cast<float>(tg_d), dark_scale = static_cast<float>(dark_scale_d);
  const auto min_counts = static_cast<float>(min_counts_d);
  // (open_from[q - (b - 3)]: 1 where pixel q is usable and not flagged, else 0.)
  const float* __restrict open = open_from + 3 - b;
  for (std::size_t p = b; p < e; ++p) {
    // (In z_of's order: p - 3, p - 2, p + 2, p + 3.)
    const bool o0 = open[p - 3] != 0.0f;
    const bool o1 = open[p - 2] != 0.0f;
    const bool o2 = open[p + 2] != 0.0f;
    const bool o3 = open[p + 3] != 0.0f;
    const auto l0 = static_cast<float>(L[p - 3]), l1 = static_cast<float>(L[p - 2]);
    const auto l2 = static_cast<float>(L[p + 2]), l3 = static_cast<float>(L[p + 3]);
    const float ref = (((o0 ? l0 : 0.0f) + (o1 ? l1 : 0.0f)) + (o2 ? l2 : 0.0f)) + (o3 ? l3 : 0.0f);
    const float n = (((o0 ? 1.0f : 0.0f) + (o1 ? 1.0f : 0.0f)) + (o2 ? 1.0f : 0.0f)) + (o3 ? 1.0f : 0.0f);
    const float k = static_cast<float>(response[p]) * tg;
    const float d = dark_scale * static_cast<float>(dark[p]) * k;
    // (The scale of the terms of mu, for its rounding when they cancel.)
    const float size = (((o0 ? std::fabs(l0) : 0.0f) + (o1 ? std::fabs(l1) : 0.0f)) + (o2 ? std::fabs(l2) : 0.0f)) +
                       (o3 ? std::fabs(l3) : 0.0f);
    const float inv_n = 1.0f / (n > 0.0f ? n : 1.0f);
    const float m0 = (ref * inv_n) * k + d;
    const float mu = m0 > min_counts ? m0 : min_counts;
    const float sc = std::sqrt(static_cast<float>(c[p]) + 0.375f), sm = std::sqrt(mu + 0.375f);
    const float slack = 1e-5f * (sc + sm) + 1e-6f * (size * inv_n * std::fabs(k) + std::fabs(d)) / sm + 1e-6f;
    const float z = 2.0f * (sc - sm) * kInvRefNoise + slack;
    out[p - b] = n < 2.0f ? -std::numeric_limits<float>::infinity() : z;
  }
}
#define EXOSPEC_DESPIKE_BOUND(Count, T)                                                                         \
  EXOSPEC_CLONES void despike_bound_dispatch(std::size_t b, std::size_t e, const std::uint8_t* __restrict usable, \
                                             const std::uint8_t* __restrict Q, float* __restrict open,         \
                                             float* __restrict bound,                                          \
                                             const T* __restrict L,                                            \
                                             const Count* __restrict c, const T* __restrict response,          \
                                             const T* __restrict dark, double tg, double dark_scale,           \
                                             double min_counts, double threshold,                              \
                                             std::uint8_t* __restrict out) noexcept {                          \
    for (std::size_t q = b - 3; q < e + 3; ++q) {                                                            \
      open[q - (b - 3)] = (usable[q] != 0) & ((Q[q] & quality::kParticleHit) == 0) ? 1.0f : 0.0f;             \
    }                                                                                                          \
    despike_bound<Count, T>(b, e, open, L, c, response, dark, tg, dark_scale, min_counts, bound);             \
    /* (The threshold in float, rounded down: z <= thr then implies z <= threshold; NaN is not below.) */     \
    float thr = static_cast<float>(threshold);                                                                 \
    if (static_cast<double>(thr) > threshold) thr = std::nextafter(thr, -std::numeric_limits<float>::infinity()); \
    for (std::size_t p = b; p < e; ++p) {                                                                      \
      out[p - b] = static_cast<std::uint8_t>((open[p + 3 - b] != 0.0f) & !(bound[p - b] <= thr));              \
    }                                                                                                          \
  }
EXOSPEC_DESPIKE_BOUND(std::uint32_t, float)
EXOSPEC_DESPIKE_BOUND(std::uint32_t, double)
EXOSPEC_DESPIKE_BOUND(double, float)
EXOSPEC_DESPIKE_BOUND(double, double)
#undef EXOSPEC_DESPIKE_BOUND

// Particle hits (spikes of 1-3 pixels) in one row, after the radiance and
// before the variance. For each usable pixel p:
//   reference   ref_p = mean radiance of the usable pixels at p +- 2 and p +- 3
//               (a spike up to 3 pixels wide never covers both sides);
//   expectation mu_p = ref_p k_p + d_p counts (k_p = S F t g counts per R/nm,
//               d_p = s D t g dark counts), floored at min_counts;
//   tolerance   tol_p = line_tolerance k_p max(0, ref_p - B_p), B_p the lowest
//               3-pixel mean within +-10 pixels: a Gaussian line spread of
//               sigma >= 4 pixels makes L_p exceed ref_p by at most ~20 % of its
//               height above the local baseline, a spike by all of it;
//   statistic   z_p = 2 (sqrt(c_p + 3/8) - sqrt(mu_p + 3/8)) /
//                     sqrt(1 + 1/4 + tol_p^2 / (mu_p + 3/8))
//               (Anscombe's transform keeps low-count Poisson tails honest; the
//               1/4 is the reference's own noise).
// z_p > threshold flags p; its neighbours are flagged too when z > grow
// threshold (the sides of 2-3 pixel hits). Each run of flagged pixels is
// replaced by linear interpolation between the nearest unflagged usable pixels.
// Returns the number of flagged pixels.
template <class Count, class T>
std::size_t despike_row(const RowTables<T>& tb, const SpectrumTerms& s, double min_counts,
                        const DespikeSettings& ds_settings, const std::uint8_t* usable,
                        const Count* c, T* L, std::uint8_t* Q) noexcept {
  const std::size_t P = tb.pixels;
  if (P < 7) return 0;
  const double tg = s.tg, dark_scale = s.dark_scale;
  // 3-pixel means (NaN-free: unusable pixels are 0 here, so skip them).
  // Mean of the usable pixels among q - 1, q, q + 1 (infinity if none).
  auto mean3 = [&](std::size_t q) {
    double acc = 0;
    int m = 0;
    for (std::size_t i = q > 0 ? q - 1 : 0; i <= std::min(P - 1, q + 1); ++i) {
      if (usable[i]) {
        acc += static_cast<double>(L[i]);
        ++m;
      }
    }
    return m ? acc / m : std::numeric_limits<double>::infinity();
  };
  constexpr std::size_t kMean3Max = 4096;
  double mean3_row[kMean3Max];
  bool mean3_ready = false;
  // The statistic of pixel p, exact whenever it exceeds `at_least` (the
  // line tolerance only lowers it, so it is skipped when the bound without it
  // does not reach the threshold: most pixels).
  auto z_of = [&](std::size_t p, double at_least) -> double {
    double ref = 0;
    int n = 0;
    for (std::ptrdiff_t off : {-3, -2, 2, 3}) {
      const std::ptrdiff_t q = static_cast<std::ptrdiff_t>(p) + off;
      if (q < 0 || q >= static_cast<std::ptrdiff_t>(P) || !usable[q]) continue;
      if (Q[q] & quality::kParticleHit) continue;  // already a hit
      ref += static_cast<double>(L[q]);
      ++n;
    }
    if (n < 2) return 0.0;
    ref /= n;
    const double k = static_cast<double>(tb.response[p]) * tg;
    const double d = dark_scale * static_cast<double>(tb.dark_radiance[p]) * k;
    const double mu = std::max(ref * k + d, min_counts);
    const double a = mu + 0.375;
    const double diff = 2.0 * (std::sqrt(static_cast<double>(c[p]) + 0.375) - std::sqrt(a));
    constexpr double kRefNoise = 1.1180339887498949;  // sqrt(1 + 1/4)
    if (diff / kRefNoise <= at_least) return diff / kRefNoise;
    const std::size_t lo = p >= 10 ? p - 10 : 0, hi = std::min(P - 1, p + 10);
    double base = std::numeric_limits<double>::infinity();
    if (P <= kMean3Max) {
      // (Each 3-pixel mean once per row: next to a bright line tens of
      // neighbouring pixels take this path, each reading 21 of them. NaN:
      // not computed yet; a mean is never NaN.)
      if (!mean3_ready) {
        std::fill_n(mean3_row, P, std::numeric_limits<double>::quiet_NaN());
        mean3_ready = true;
      }
      for (std::size_t q = lo; q <= hi; ++q) {
        if (std::isnan(mean3_row[q])) mean3_row[q] = mean3(q);
        base = std::min(base, mean3_row[q]);
      }
    } else {
      for (std::size_t q = lo; q <= hi; ++q) base = std::min(base, mean3(q));
    }
    const double tol = ds_settings.line_tolerance * k * std::max(0.0, ref - base);
    return diff / std::sqrt(1.25 + tol * tol / a);
  };
  const auto hit = [&](std::size_t q) { return (Q[q] & quality::kParticleHit) != 0; };
  std::size_t n = 0;
  // The first pass, in chunks: `need` marks the pixels whose statistic must
  // be computed: usable, not yet flagged, and with the bound above the
  // threshold (or not a number; the bound's reference leaves out the pixels
  // flagged before it is computed, earlier chunks' among them), or at the
  // row's edges. A pixel flagged in the chunk changes the reference of
  // p + 2 and p + 3: they are marked then. The others' z_of is below the
  // bound, so below the threshold: the same flags as z_of everywhere.
  constexpr std::size_t kChunk = 256;
  std::uint8_t need[kChunk + 8];
  float open_scratch[kChunk + 6], bound_scratch[kChunk];  // (despike_bound's open pixels and bounds)
  const double thr = ds_settings.threshold;
  for (std::size_t c0 = 0; c0 < P; c0 += kChunk) {
    const std::size_t c1 = std::min(P, c0 + kChunk);
    const std::size_t b = std::max<std::size_t>(c0, 3), e = std::min(c1, P - 3);
    std::fill_n(need, kChunk + 8, std::uint8_t{0});
    auto open = [&](std::size_t q) { return usable[q] && !hit(q); };
    // (The row's first and last 3 pixels: [c0, b) and [max(e, c0), c1).)
    for (std::size_t p = c0; p < std::min(b, c1); ++p) need[p - c0] = open(p) ? 1 : 0;
    for (std::size_t p = std::max(e, c0); p < c1; ++p) need[p - c0] = open(p) ? 1 : 0;
    if (b < e) {
      despike_bound_dispatch(b, e, usable, Q, open_scratch, bound_scratch, L, c, tb.response, tb.dark_radiance, tg, dark_scale,
                             min_counts, thr, need + (b - c0));
    }
    for (std::size_t i = 0; i < c1 - c0;) {
      // (Eight marks at a time: most are 0.)
      std::uint64_t word;
      std::memcpy(&word, need + i, sizeof word);
      if (word == 0) {
        i += 8;
        continue;
      }
      if (!need[i]) {
        ++i;
        continue;
      }
      const std::size_t p = c0 + i++;
      if (z_of(p, thr) <= thr) continue;
      Q[p] |= quality::kParticleHit;
      ++n;
      for (const std::size_t q : {p + 2, p + 3}) {
        if (q < c1 && open(q)) need[q - c0] = 1;
      }
    }
  }
  if (n == 0) return 0;
  // Grow: the unflagged pixels within 2 of a hit join it above the lower
  // threshold, their reference now excluding the hit, in at most 2 rounds
  // (hits are at most 3 pixels wide: 2 rounds reach 4 pixels from the pixel
  // that was found). The growth stops there by design, not when nothing
  // changes: a third round would flag more pixels in a few rows (8 of 3000
  // in ctest -R DespikeReference), pixels beyond any hit's width.
  const double grow = ds_settings.grow_threshold;
  if (P <= kMean3Max) {
    // The same rounds, visiting only the pixels within 2 of a hit, in
    // increasing order as above: those of the round's first hits (`hits`,
    // sorted), and those after a pixel flagged in the round (before it, the
    // pixels were visited when it was not yet flagged, as above).
    std::uint32_t hits[kMean3Max], grown[kMean3Max], merged[kMean3Max];
    std::size_t nh = 0;
    for (std::size_t p = 0; p < P; ++p) {
      if (hit(p)) hits[nh++] = static_cast<std::uint32_t>(p);
    }
    for (int round = 0; round < 2; ++round) {
      std::size_t ng = 0, next = 0;
      for (std::size_t i = 0; i < nh; ++i) {
        const std::size_t h = hits[i];
        std::size_t reach = std::min(P - 1, h + 2);
        std::size_t q = std::max(next, h >= 2 ? h - 2 : 0);
        for (; q <= reach; ++q) {
          if (!usable[q] || hit(q) || z_of(q, grow) <= grow) continue;
          Q[q] |= quality::kParticleHit;
          grown[ng++] = static_cast<std::uint32_t>(q);
          reach = std::min(P - 1, std::max(reach, q + 2));
        }
        next = std::max(next, q);
      }
      if (ng == 0) break;
      n += ng;
      nh = static_cast<std::size_t>(std::merge(hits, hits + nh, grown, grown + ng, merged) - merged);
      std::copy_n(merged, nh, hits);
    }
  } else {
    for (int round = 0; round < 2; ++round) {
      bool grew = false;
      for (std::size_t p = 0; p < P; ++p) {
        if (!usable[p] || hit(p)) continue;
        bool near = false;
        for (std::size_t q = p >= 2 ? p - 2 : 0; q <= std::min(P - 1, p + 2); ++q) near |= hit(q);
        if (!near || z_of(p, grow) <= grow) continue;
        Q[p] |= quality::kParticleHit;
        ++n;
        grew = true;
      }
      if (!grew) break;
    }
  }
  // Linear interpolation across each run of flagged pixels.
  for (std::size_t a = 0; a < P;) {
    if (!hit(a)) {
      ++a;
      continue;
    }
    std::size_t b = a;
    while (b + 1 < P && hit(b + 1)) ++b;
    std::ptrdiff_t left = static_cast<std::ptrdiff_t>(a) - 1, right = static_cast<std::ptrdiff_t>(b) + 1;
    while (left >= 0 && (!usable[left] || (Q[left] & quality::kParticleHit))) --left;
    while (right < static_cast<std::ptrdiff_t>(P) &&
           (!usable[right] || (Q[right] & quality::kParticleHit))) {
      ++right;
    }
    for (std::size_t p = a; p <= b; ++p) {
      double v;
      if (left >= 0 && right < static_cast<std::ptrdiff_t>(P)) {
        const double w = static_cast<double>(static_cast<std::ptrdiff_t>(p) - left) /
                         static_cast<double>(right - left);
        v = (1 - w) * static_cast<double>(L[left]) + w * static_cast<double>(L[right]);
      } else if (left >= 0) {
        v = static_cast<double>(L[left]);
      } else if (right < static_cast<std::ptrdiff_t>(P)) {
        v = static_cast<double>(L[right]);
      } else {
        v = 0.0;
      }
      L[p] = static_cast<T>(v);
    }
    a = b + 1;
  }
  return n;
}

// The variance of a replaced pixel: that of the interpolation between its
// nearest unflagged usable neighbours.
template <class T>
void replaced_variance(std::size_t P, const std::uint8_t* usable, const std::uint8_t* Q,
                       T* V) noexcept {
  for (std::size_t i = 0; i < P; ++i) {
    if (!(Q[i] & quality::kParticleHit) || !usable[i]) continue;
    const auto p = static_cast<std::ptrdiff_t>(i);
    std::ptrdiff_t left = p - 1, right = p + 1;
    auto clean = [&](std::ptrdiff_t q) { return usable[q] && !(Q[q] & quality::kParticleHit); };
    while (left >= 0 && !clean(left)) --left;
    while (right < static_cast<std::ptrdiff_t>(P) && !clean(right)) ++right;
    double v = 0.0;
    if (left >= 0 && right < static_cast<std::ptrdiff_t>(P)) {
      const double w = static_cast<double>(p - left) / static_cast<double>(right - left);
      v = (1 - w) * (1 - w) * static_cast<double>(V[left]) + w * w * static_cast<double>(V[right]);
    } else if (left >= 0) {
      v = static_cast<double>(V[left]);
    } else if (right < static_cast<std::ptrdiff_t>(P)) {
      v = static_cast<double>(V[right]);
    }
    V[p] = static_cast<T>(v);
  }
}

// Runtime dispatch on the instruction set (target_clones.hpp).
#define EXOSPEC_RADIANCE_KERNEL(Count, T, name)                                                \
  EXOSPEC_CLONES void name(const RowTables<T>& tb, const SpectrumTerms& s, const Count* c, T* L, \
                           std::uint8_t* Q) noexcept {                                            \
    radiance_kernel<Count, T>(tb, s, c, L, Q);                                                   \
  }                                                                                              \
  inline void radiance_dispatch(const RowTables<T>& tb, const SpectrumTerms& s, const Count* c,  \
                                T* L, std::uint8_t* Q) noexcept {                                \
    name(tb, s, c, L, Q);                                                                        \
  }
EXOSPEC_RADIANCE_KERNEL(std::uint32_t, float, radiance_u32_f32)
EXOSPEC_RADIANCE_KERNEL(std::uint32_t, double, radiance_u32_f64)
EXOSPEC_RADIANCE_KERNEL(double, float, radiance_f64_f32)
EXOSPEC_RADIANCE_KERNEL(double, double, radiance_f64_f64)
#undef EXOSPEC_RADIANCE_KERNEL
EXOSPEC_CLONES void variance_dispatch(const RowTables<float>& tb, const SpectrumTerms& s,
                                      double min_counts, float c2_over_m, const float* cm,
                                      const float* W, float* V, float* tmp) noexcept {
  variance_kernel<float>(tb, s, min_counts, c2_over_m, cm, W, V, tmp);
}
EXOSPEC_CLONES void variance_dispatch(const RowTables<double>& tb, const SpectrumTerms& s,
                                      double min_counts, double c2_over_m, const double* cm,
                                      const double* W, double* V, double* tmp) noexcept {
  variance_kernel<double>(tb, s, min_counts, c2_over_m, cm, W, V, tmp);
}
EXOSPEC_CLONES void sum_rows_dispatch(std::size_t P, const float* const* rows, std::size_t m,
                                      float* sum) noexcept {
  sum_rows(P, rows, m, sum);
}
EXOSPEC_CLONES void sum_rows_dispatch(std::size_t P, const double* const* rows, std::size_t m,
                                      double* sum) noexcept {
  sum_rows(P, rows, m, sum);
}
#define EXOSPEC_WIDE_MEAN(T)                                                                     \
  EXOSPEC_CLONES void wide_mean_dispatch(std::size_t P, std::size_t hw, const T* cs, const T* L,  \
                                         const T* inv_n, T* W) noexcept {                         \
    if (hw == 10) {                                                                              \
      wide_mean<10, T>(P, hw, cs, L, inv_n, W);                                                  \
    } else {                                                                                     \
      wide_mean<0, T>(P, hw, cs, L, inv_n, W);                                                   \
    }                                                                                            \
  }
EXOSPEC_WIDE_MEAN(float)
EXOSPEC_WIDE_MEAN(double)
#undef EXOSPEC_WIDE_MEAN
EXOSPEC_CLONES double sum_dispatch(const std::uint32_t* c, std::size_t n) noexcept {
  return row_total(c, n);
}
EXOSPEC_CLONES double sum_dispatch(const double* c, std::size_t n) noexcept {
  return row_total(c, n);
}

// The fast path's view of a Calibrator's tables, in T.
template <class T, class Tables>
RowTables<T> row_tables(const Tables& t, const std::vector<std::uint8_t>& bad, std::size_t pixels,
                        int half_width, std::size_t interior_begin, std::size_t interior_end,
                        const std::vector<std::uint32_t>& irregular_pixel,
                        const std::vector<std::uint32_t>& irregular_lo) noexcept {
  return RowTables<T>{t.inv_response.data(),
                      t.response.data(),
                      t.dark_radiance.data(),
                      bad.data(),
                      t.regular.data(),
                      pixels,
                      static_cast<std::size_t>(half_width),
                      interior_begin,
                      interior_end,
                      irregular_pixel.data(),
                      irregular_lo.data(),
                      t.irregular.data(),
                      irregular_pixel.size(),
                      t.regular_w2.empty() ? T(0) : t.regular_w2[0],
                      t.irregular_w2.data()};
}

}  // namespace

template <class Count, class Real>
void Calibrator::run(std::span<const Count> counts, std::span<const double> exposure_s,
                     std::span<const double> temperature_c, std::span<Real> radiance,
                     std::span<Real> variance, std::span<std::uint8_t> quality) const {
  // In tiles of rows, the radiance running variance_spectra rows ahead of the
  // variance, so that a tile's rows are still in cache for their variance
  // (each row's values are the same as from the two whole passes).
  constexpr std::size_t kTile = 8;
  const std::size_t P = pixels_, rows = exposure_s.size();
  const auto hs = static_cast<std::size_t>(settings_.variance_spectra);
  std::vector<Real> scratch;
  std::size_t done = 0;
  for (std::size_t r = 0; r < rows; r += kTile) {
    const std::size_t n = std::min(kTile, rows - r), need = std::min(rows, r + n + hs);
    if (need > done) {
      this->radiance<Count, Real>(counts.subspan(done * P, (need - done) * P), exposure_s.subspan(done, need - done),
                                  temperature_c.subspan(done, need - done), radiance.subspan(done * P, (need - done) * P),
                                  quality.subspan(done * P, (need - done) * P));
      done = need;
    }
    this->variance<Count, Real>(counts, exposure_s, temperature_c, radiance, quality, {}, r, n, variance, scratch);
  }
}

template <class Count, class Real>
void Calibrator::radiance(std::span<const Count> counts, std::span<const double> exposure_s,
                          std::span<const double> temperature_c, std::span<Real> radiance,
                          std::span<std::uint8_t> quality) const noexcept {
  const std::size_t P = pixels_, rows = exposure_s.size();
  assert(counts.size() == rows * P && temperature_c.size() == rows);
  assert(radiance.size() == rows * P && quality.size() == rows * P);
  constexpr Real kNaN = std::numeric_limits<Real>::quiet_NaN();
  const RowTables<Real> tb = row_tables<Real>(tables<Real>(), bad_, pixels_, settings_.variance_half_width,
                                              interior_begin_, interior_end_, irregular_pixel_,
                                              irregular_lo_);
  for (std::size_t r = 0; r < rows; ++r) {
    const Count* c = counts.data() + r * P;
    Real* L = radiance.data() + r * P;
    std::uint8_t* Q = quality.data() + r * P;
    const SpectrumTerms s = spectrum_terms(sum_dispatch(c, P), exposure_s[r], temperature_c[r],
                                           dead_time_s_, t_ref_, temp_coeff_, settings_);
    if (!s.values) {
      for (std::size_t p = 0; p < P; ++p) Q[p] = static_cast<std::uint8_t>(bad_[p] | s.flags);
      std::fill(L, L + P, kNaN);
      continue;
    }
    radiance_dispatch(tb, s, c, L, Q);
    if (settings_.despike.enabled) {
      despike_row<Count, Real>(tb, s, settings_.min_expected_counts, settings_.despike,
                               usable_.data(), c, L, Q);
    }
    for (const std::uint32_t p : bad_list_) L[p] = kNaN;
  }
}

template <class Count, class Real>
void Calibrator::variance(std::span<const Count> counts, std::span<const double> exposure_s,
                          std::span<const double> temperature_c, std::span<const Real> radiance,
                          std::span<const std::uint8_t> quality, std::span<const std::int64_t> scan,
                          std::size_t first, std::size_t count, std::span<Real> variance,
                          std::vector<Real>& scratch) const {
  const std::size_t P = pixels_, rows = exposure_s.size();
  assert(counts.size() == rows * P && temperature_c.size() == rows);
  assert(radiance.size() == rows * P && variance.size() == rows * P && quality.size() == rows * P);
  assert(scan.empty() || scan.size() == rows);
  assert(first + count <= rows);
  constexpr Real kNaN = std::numeric_limits<Real>::quiet_NaN();
  if (scratch.size() < 5 * P) scratch.resize(5 * P);
  Real* cm = scratch.data();
  Real* W = cm + P;
  const RowTables<Real> tb = row_tables<Real>(tables<Real>(), bad_, pixels_, settings_.variance_half_width,
                                              interior_begin_, interior_end_, irregular_pixel_,
                                              irregular_lo_);
  const auto hs = static_cast<std::size_t>(settings_.variance_spectra);
  const auto hw = static_cast<std::size_t>(settings_.variance_wide_half_width);
  const double c = settings_.variance_structure_sigma;
  // A row's radiance is finite at its first usable pixel iff it has values.
  auto valid = [&](std::size_t q) {
    return first_usable_ < P && std::isfinite(static_cast<double>(radiance[q * P + first_usable_]));
  };
  for (std::size_t r = first; r < first + count; ++r) {
    const Count* cr = counts.data() + r * P;
    const Real* L = radiance.data() + r * P;
    const std::uint8_t* Q = quality.data() + r * P;
    Real* V = variance.data() + r * P;
    const SpectrumTerms s = spectrum_terms(sum_dispatch(cr, P), exposure_s[r], temperature_c[r],
                                           dead_time_s_, t_ref_, temp_coeff_, settings_);
    if (!s.values) {
      std::fill(V, V + P, kNaN);
      continue;
    }
    // Column sums over the valid rows of the scan within +-hs (this one too).
    std::array<const Real*, 2 * kMaxVarianceSpectra + 1> pooled;
    std::size_t m = 0;
    for (std::size_t q = r >= hs ? r - hs : 0; q <= std::min(rows - 1, r + hs); ++q) {
      if (!scan.empty() && scan[q] != scan[r]) continue;
      if (q != r && !valid(q)) continue;
      pooled[m++] = radiance.data() + q * P;
    }
    sum_rows_dispatch(P, pooled.data(), m, cm);
    for (const std::uint32_t p : bad_list_) cm[p] = Real(0);
    // The wide mean (bad pixels get NaN from their own L; never used).
    wide_mean_dispatch(P, hw, cm, L, tables<Real>().inv_wide.data() + (m - 1) * P, W);
    const Real inv_m = static_cast<Real>(1.0 / static_cast<double>(m));
    for (std::size_t p = 0; p < P; ++p) cm[p] *= inv_m;
    // (W's scratch after it is free once the wide mean is known.)
    variance_dispatch(tb, s, settings_.min_expected_counts,
                      static_cast<Real>(c * c / static_cast<double>(m)), cm, W, V, W + P);
    std::uint8_t any = 0;
    for (std::size_t p = 0; p < P; ++p) any |= Q[p];
    if (any & quality::kParticleHit) replaced_variance(P, usable_.data(), Q, V);
    for (const std::uint32_t p : bad_list_) V[p] = kNaN;
  }
}

bool Calibrator::count_model(std::span<const std::uint32_t> counts, double exposure_s,
                             double temperature_c, std::span<double> scale,
                             std::span<double> offset, std::span<const PixelRange> pixels) const noexcept {
  assert(counts.size() == pixels_);
  const SpectrumTerms s =
      spectrum_terms(sum_dispatch(counts.data(), pixels_), exposure_s, temperature_c, dead_time_s_,
                     t_ref_, temp_coeff_, settings_);
  const PixelRange all{0, pixels_};
  if (pixels.empty()) pixels = std::span(&all, 1);
  const auto& t = tables_f64_;
  for (const PixelRange& r : pixels) {
    assert(r.begin <= r.end && r.end <= pixels_);
    if (!s.values) {
      std::fill(scale.begin() + r.begin, scale.begin() + r.end, 0.0);
      std::fill(offset.begin() + r.begin, offset.begin() + r.end, 0.0);
      continue;
    }
    for (std::size_t p = r.begin; p < r.end; ++p) {
      scale[p] = t.response[p] * s.tg;
      offset[p] = s.dark_scale * t.dark_radiance[p] * t.response[p] * s.tg;
    }
  }
  return s.values;
}

template <class Count, class Real>
void Calibrator::run_reference(std::span<const Count> counts, std::span<const double> exposure_s,
                               std::span<const double> temperature_c, std::span<Real> radiance,
                               std::span<Real> variance, std::span<std::uint8_t> quality) const {
  const std::size_t P = pixels_, rows = exposure_s.size();
  const auto h = static_cast<std::ptrdiff_t>(settings_.variance_half_width);
  const auto hw = static_cast<std::ptrdiff_t>(settings_.variance_wide_half_width);
  const auto hs = static_cast<std::ptrdiff_t>(settings_.variance_spectra);
  constexpr Real kNaN = std::numeric_limits<Real>::quiet_NaN();
  const auto& tb = tables_f64_;
  std::vector<SpectrumTerms> terms(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t o = r * P;
    double total = 0.0;
    for (std::size_t p = 0; p < P; ++p) total += static_cast<double>(counts[o + p]);
    const double t = exposure_s[r], temp = temperature_c[r];
    const SpectrumTerms s =
        spectrum_terms(total, t, temp, dead_time_s_, t_ref_, temp_coeff_, settings_);
    terms[r] = s;
    for (std::size_t p = 0; p < P; ++p) {
      quality[o + p] = static_cast<std::uint8_t>((usable_[p] ? 0 : quality::kBadPixel) | s.flags);
      if (!s.values || !usable_[p]) {
        radiance[o + p] = kNaN;
        continue;
      }
      // L = (c / (t g) - s D) / (S F), written out as in the forward model.
      const double rate = static_cast<double>(counts[o + p]) / (t * s.g);
      radiance[o + p] = static_cast<Real>(
          (rate - s.dark_scale * tb.dark_radiance[p] * tb.response[p]) / tb.response[p]);
    }
  }
  const auto rad = [&](std::ptrdiff_t q, std::ptrdiff_t p) {
    return static_cast<double>(radiance[static_cast<std::size_t>(q) * P + static_cast<std::size_t>(p)]);
  };
  const auto P_ = static_cast<std::ptrdiff_t>(P);
  for (std::size_t r = 0; r < rows; ++r) {
    const SpectrumTerms& s = terms[r];
    // The neighbouring rows: valid, within +-hs (all rows are one scan here).
    std::vector<std::ptrdiff_t> near;
    for (std::ptrdiff_t q = static_cast<std::ptrdiff_t>(r) - hs; q <= static_cast<std::ptrdiff_t>(r) + hs; ++q) {
      if (q >= 0 && q < static_cast<std::ptrdiff_t>(rows) && terms[static_cast<std::size_t>(q)].values) near.push_back(q);
    }
    const auto m = static_cast<double>(near.size());
    for (std::size_t pu = 0; pu < P; ++pu) {
      const std::size_t o = r * P;
      if (!s.values || !usable_[pu]) {
        variance[o + pu] = kNaN;
        continue;
      }
      const auto p = static_cast<std::ptrdiff_t>(pu);
      // The wide mean: every usable (row, pixel) of the neighbourhood but this one.
      double wsum = 0.0;
      std::size_t wn = 0;
      for (const std::ptrdiff_t q : near) {
        for (std::ptrdiff_t x = std::max<std::ptrdiff_t>(0, p - hw); x <= std::min(P_ - 1, p + hw); ++x) {
          if (!usable_[static_cast<std::size_t>(x)] || (q == static_cast<std::ptrdiff_t>(r) && x == p)) continue;
          wsum += rad(q, x);
          ++wn;
        }
      }
      const double wide = wn > 0 ? wsum / static_cast<double>(wn) : 0.0;
      // The pooled quadratic: least squares through the rows' mean radiance
      // of the usable neighbours, by normal equations; the squared norm of its
      // weights at x = 0 is [(A^T A)^-1]_00.
      const Window win = window_of(pu, P, static_cast<std::size_t>(h));
      std::size_t n = 0;
      for (std::size_t q = win.lo; q <= win.hi; ++q) n += (q != pu && usable_[q]) ? 1 : 0;
      double pooled = 0.0, w2 = 0.0;
      if (n > 0) {
        const int order = fit_order(n);
        Eigen::Matrix3d ata = Eigen::Matrix3d::Zero();
        Eigen::Vector3d aty = Eigen::Vector3d::Zero();
        for (std::size_t q = win.lo; q <= win.hi; ++q) {
          if (q == pu || !usable_[q]) continue;
          const double x = static_cast<double>(q) - static_cast<double>(pu);
          double y = 0.0;
          for (const std::ptrdiff_t row : near) y += rad(row, static_cast<std::ptrdiff_t>(q));
          y /= m;
          const double pw[3] = {1.0, x, x * x};
          for (int i = 0; i <= order; ++i) {
            aty(i) += pw[i] * y;
            for (int j = 0; j <= order; ++j) ata(i, j) += pw[i] * pw[j];
          }
        }
        const auto k = order + 1;
        const Eigen::MatrixXd inv = ata.topLeftCorner(k, k).inverse();
        pooled = (inv * aty.head(k))(0);
        w2 = inv(0, 0);
      }
      // N where it differs from W by more than c sd_N, sd_N from W's counts.
      const double resp = tb.response[pu], kk = resp * s.tg;
      const double mu_w = std::max((std::max(wide, 0.0) + s.dark_scale * tb.dark_radiance[pu]) * kk,
                                   settings_.min_expected_counts);
      const double sd_n = std::sqrt(w2 * mu_w / m) / kk;
      const double est =
          std::abs(pooled - wide) > settings_.variance_structure_sigma * sd_n ? pooled : wide;
      variance[o + pu] = static_cast<Real>(pixel_variance(
          est, tb.dark_radiance[pu], tb.response[pu], tb.inv_response[pu], s,
          settings_.min_expected_counts));
    }
  }
}

#define EXOSPEC_CALIBRATE_INSTANTIATE(Count, Real)                                             \
  template void Calibrator::run<Count, Real>(                                                \
      std::span<const Count>, std::span<const double>, std::span<const double>,              \
      std::span<Real>, std::span<Real>, std::span<std::uint8_t>) const;                      \
  template void Calibrator::radiance<Count, Real>(                                           \
      std::span<const Count>, std::span<const double>, std::span<const double>,              \
      std::span<Real>, std::span<std::uint8_t>) const noexcept;                              \
  template void Calibrator::variance<Count, Real>(                                           \
      std::span<const Count>, std::span<const double>, std::span<const double>,              \
      std::span<const Real>, std::span<const std::uint8_t>, std::span<const std::int64_t>,   \
      std::size_t, std::size_t, std::span<Real>, std::vector<Real>&) const;                  \
  template void Calibrator::run_reference<Count, Real>(                                      \
      std::span<const Count>, std::span<const double>, std::span<const double>,              \
      std::span<Real>, std::span<Real>, std::span<std::uint8_t>) const;
EXOSPEC_CALIBRATE_INSTANTIATE(std::uint32_t, float)
EXOSPEC_CALIBRATE_INSTANTIATE(std::uint32_t, double)
EXOSPEC_CALIBRATE_INSTANTIATE(double, float)
EXOSPEC_CALIBRATE_INSTANTIATE(double, double)
#undef EXOSPEC_CALIBRATE_INSTANTIATE

// Eight pixels per 64-bit word, 32 per test for zero: nearly all of a quality
// array is zero. In a word, bit b of the eight bytes is masked to the bytes'
// lowest bits and summed by one multiplication into the top byte (at most
// 8, so no carry crosses a byte). A loop per pixel took 2 % of a two-thread
// `exospec run`, serial, with the other thread idle; this is 7-10x faster.
void quality::count_bits(std::span<const std::uint8_t> quality,
                         std::span<std::uint64_t, 8> pixels) noexcept {
  constexpr std::uint64_t kLowBits = 0x0101010101010101ULL;  // bit 0 of each byte
  constexpr std::size_t kWords = 4;
  std::size_t i = 0;
  for (; i + 8 * kWords <= quality.size(); i += 8 * kWords) {
    std::uint64_t words[kWords];
    std::memcpy(words, quality.data() + i, sizeof words);
    if ((words[0] | words[1] | words[2] | words[3]) == 0) continue;
    for (const std::uint64_t word : words) {
      if (word == 0) continue;
      for (unsigned b = 0; b < 8; ++b) pixels[b] += (((word >> b) & kLowBits) * kLowBits) >> 56;
    }
  }
  for (; i < quality.size(); ++i) {
    for (unsigned b = 0; b < 8; ++b) pixels[b] += (quality[i] >> b) & 1u;
  }
}

}  // namespace exospec::kernels
