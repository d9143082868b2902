#include "exospec/kernels/fourier.hpp"
#include "target_clones.hpp"

#include <fftw3.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <numbers>
#include <stdexcept>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/denoise.hpp"

namespace exospec::kernels {
namespace {

// FFTW's planner (and wisdom) is not thread-safe: every call to it takes this.
std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
}

struct RealArray {
  double* p = nullptr;
  explicit RealArray(std::size_t n) : p(fftw_alloc_real(n)) {
    if (!p) throw std::bad_alloc();
  }
  ~RealArray() { fftw_free(p); }
  RealArray(const RealArray&) = delete;
  RealArray& operator=(const RealArray&) = delete;
};
struct ComplexArray {
  fftw_complex* p = nullptr;
  explicit ComplexArray(std::size_t n) : p(fftw_alloc_complex(n)) {
    if (!p) throw std::bad_alloc();
  }
  ~ComplexArray() { fftw_free(p); }
  ComplexArray(const ComplexArray&) = delete;
  ComplexArray& operator=(const ComplexArray&) = delete;
};

// Half-width beyond which |h| < rel max |h| (circularly), at most n / 2.
std::size_t support_of(const double* h, std::size_t n, double rel) {
  double peak = 0.0;
  for (std::size_t i = 0; i < n; ++i) peak = std::max(peak, std::abs(h[i]));
  std::size_t e = 0;
  for (std::size_t i = 0; i <= n / 2; ++i) {
    if (std::abs(h[i]) > rel * peak || std::abs(h[(n - i) % n]) > rel * peak) e = i + 1;
  }
  return e;
}


// The per-row loops around the transforms, compiled for AVX2 / AVX-512 too.
template <class T>
inline void mirror_in_kernel(const T* __restrict in, double* __restrict re, std::size_t P) noexcept {
  for (std::size_t p = 0; p < P; ++p) re[p] = static_cast<double>(in[p]);
  for (std::size_t p = 0; p < P; ++p) re[2 * P - 1 - p] = re[p];
}
template <class T>
inline void copy_out_kernel(const double* __restrict re, T* __restrict out, std::size_t P) noexcept {
  for (std::size_t p = 0; p < P; ++p) out[p] = static_cast<T>(re[p]);
}
EXOSPEC_CLONES void mirror_in(const float* in, double* re, std::size_t P) noexcept {
  mirror_in_kernel(in, re, P);
}
EXOSPEC_CLONES void mirror_in(const double* in, double* re, std::size_t P) noexcept {
  mirror_in_kernel(in, re, P);
}
EXOSPEC_CLONES void copy_out(const double* re, float* out, std::size_t P) noexcept {
  copy_out_kernel(re, out, P);
}
EXOSPEC_CLONES void copy_out(const double* re, double* out, std::size_t P) noexcept {
  copy_out_kernel(re, out, P);
}
EXOSPEC_CLONES void scale_spectrum(double* __restrict sp, const double* __restrict g,
                                   std::size_t bins) noexcept {
  for (std::size_t k = 0; k < bins; ++k) {
    sp[2 * k] *= g[k];
    sp[2 * k + 1] *= g[k];
  }
}
EXOSPEC_CLONES bool any_flagged(const std::uint8_t* __restrict q, std::size_t P,
                                std::uint8_t bits) noexcept {
  std::uint8_t acc = 0;
  for (std::size_t p = 0; p < P; ++p) acc |= q[p];
  return (acc & bits) != 0;
}

// Lag window of the Wiener filter's impulse response (pixels).
constexpr double kWienerLag = 32.0;

}  // namespace

struct FourierFilter::Workspace::Buffers {
  RealArray real, real2;
  ComplexArray spec, spec2;
  std::vector<double> value, variance, h, H;
  explicit Buffers(std::size_t P)
      : real(2 * P), real2(2 * P), spec(P + 1), spec2(P + 1), value(P), variance(P), h(2 * P),
        H(P + 1) {}
};

FourierFilter::Workspace::Workspace(Workspace&&) noexcept = default;
FourierFilter::Workspace& FourierFilter::Workspace::operator=(Workspace&&) noexcept = default;
FourierFilter::Workspace::~Workspace() = default;

struct FourierFilter::Impl {
  std::size_t P, N;
  FourierSettings settings;
  fftw_plan r2c = nullptr, c2r = nullptr;
  // Low-pass: transfer function, impulse response, DFT of h^2, support.
  std::vector<double> H, Hn, h;  // Hn = H / N
  std::vector<double> h2hat_re, h2hat_im;
  std::size_t support = 0;

  ~Impl() {
    std::lock_guard lock(planner_mutex());
    if (r2c) fftw_destroy_plan(r2c);
    if (c2r) fftw_destroy_plan(c2r);
  }

  // Given H (P + 1 values) in b.H: h = IDFT(H) in b.h, DFT(h^2) in b.spec2,
  // and the support of h. rel: where h is cut for the edge cross terms (the
  // terms dropped are below ~rel of the variance there): 1e-5 for the fixed
  // low-pass, 1e-3 for the per-row Wiener filter, whose transfer function
  // (zero wherever no signal power is left) rings with long faint tails.
  std::size_t impulse(Workspace::Buffers& b, double rel) const noexcept {
    for (std::size_t k = 0; k <= P; ++k) {
      b.spec2.p[k][0] = b.H[k];
      b.spec2.p[k][1] = 0.0;
    }
    fftw_execute_dft_c2r(c2r, b.spec2.p, b.real2.p);
    const double inv = 1.0 / static_cast<double>(N);
    for (std::size_t i = 0; i < N; ++i) b.h[i] = b.real2.p[i] * inv;
    for (std::size_t i = 0; i < N; ++i) b.real2.p[i] = b.h[i] * b.h[i];
    fftw_execute_dft_r2c(r2c, b.real2.p, b.spec2.p);
    return support_of(b.h.data(), N, rel);
  }
};

FourierFilter::FourierFilter(std::size_t pixels, const FourierSettings& settings,
                             const std::string& wisdom)
    : impl_(std::make_unique<Impl>()) {
  if (pixels < 2) throw std::invalid_argument("the Fourier filter needs at least 2 pixels");
  if (settings.kind == FourierKind::kLowpass && !(settings.kernel_sigma_px > 0.0)) {
    throw std::invalid_argument("the low-pass kernel sigma must be > 0");
  }
  Impl& m = *impl_;
  m.P = pixels;
  m.N = 2 * pixels;
  m.settings = settings;
  {
    std::lock_guard lock(planner_mutex());
    if (!wisdom.empty()) fftw_import_wisdom_from_string(wisdom.c_str());
    RealArray real(m.N);
    ComplexArray spec(m.P + 1);
    const int n = static_cast<int>(m.N);
    m.r2c = fftw_plan_dft_r2c_1d(n, real.p, spec.p, FFTW_MEASURE);
    m.c2r = fftw_plan_dft_c2r_1d(n, spec.p, real.p, FFTW_MEASURE);
    if (!m.r2c || !m.c2r) throw std::runtime_error("FFTW could not plan a transform of size 2P");
  }
  if (settings.kind == FourierKind::kLowpass) {
    Workspace::Buffers b(m.P);
    const double s = settings.kernel_sigma_px;
    for (std::size_t k = 0; k <= m.P; ++k) {
      const double f = static_cast<double>(k) / static_cast<double>(m.N);
      b.H[k] = std::exp(-2.0 * std::numbers::pi * std::numbers::pi * s * s * f * f);
    }
    m.support = m.impulse(b, 1e-5);
    m.H = b.H;
    m.Hn.resize(m.P + 1);
    for (std::size_t k = 0; k <= m.P; ++k) m.Hn[k] = m.H[k] / static_cast<double>(m.N);
    m.h = b.h;
    m.h2hat_re.resize(m.P + 1);
    m.h2hat_im.resize(m.P + 1);
    for (std::size_t k = 0; k <= m.P; ++k) {
      m.h2hat_re[k] = b.spec2.p[k][0];
      m.h2hat_im[k] = b.spec2.p[k][1];
    }
  }
}

FourierFilter::~FourierFilter() = default;
FourierFilter::FourierFilter(FourierFilter&&) noexcept = default;
FourierFilter& FourierFilter::operator=(FourierFilter&&) noexcept = default;

std::size_t FourierFilter::pixels() const noexcept { return impl_->P; }
const FourierSettings& FourierFilter::settings() const noexcept { return impl_->settings; }

std::string FourierFilter::export_wisdom() {
  std::lock_guard lock(planner_mutex());
  char* text = fftw_export_wisdom_to_string();
  std::string out = text ? text : "";
  std::free(text);
  return out;
}

FourierFilter::Workspace FourierFilter::make_workspace() const {
  Workspace w;
  w.b_ = std::make_unique<Workspace::Buffers>(impl_->P);
  return w;
}

void FourierFilter::bare_pair(Workspace& work) const noexcept {
  fftw_execute_dft_r2c(impl_->r2c, work.b_->real.p, work.b_->spec.p);
  fftw_execute_dft_c2r(impl_->c2r, work.b_->spec.p, work.b_->real.p);
}

template <class T>
void FourierFilter::run(std::span<const T> radiance, std::span<const T> variance,
                        std::span<const std::uint8_t> quality, std::span<T> out,
                        std::span<T> out_variance, Workspace& work) const noexcept {
  const Impl& m = *impl_;
  auto& b = *work.b_;
  const std::size_t P = m.P, N = m.N, rows = radiance.size() / P;
  const bool want_var = !out_variance.empty();
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  constexpr std::uint8_t kFill = quality::kUnusable | quality::kParticleHit;
  const double inv_n = 1.0 / static_cast<double>(N);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t o = r * P;
    const auto q = quality.subspan(o, P);
    const bool any_flag = any_flagged(q.data(), P, kFill);
    double* __restrict re = b.real.p;
    if (!any_flag) {
      // Fast path: straight into the mirrored transform buffer.
      mirror_in(radiance.data() + o, re, P);
      if (want_var || m.settings.kind == FourierKind::kWiener) {
        for (std::size_t p = 0; p < P; ++p) b.variance[p] = static_cast<double>(variance[o + p]);
      }
    } else {
      for (std::size_t p = 0; p < P; ++p) {
        b.value[p] = static_cast<double>(radiance[o + p]);
        b.variance[p] = static_cast<double>(variance[o + p]);
      }
      if (!fill_flagged<double>(b.value, b.variance, q, kFill)) {
        std::fill_n(out.begin() + static_cast<std::ptrdiff_t>(o), P, kNaN);
        if (want_var) std::fill_n(out_variance.begin() + static_cast<std::ptrdiff_t>(o), P, kNaN);
        continue;
      }
      mirror_in(b.value.data(), re, P);
    }
    fftw_execute_dft_r2c(m.r2c, b.real.p, b.spec.p);
    // The transfer function of this row.
    const double* H = m.H.data();
    std::size_t support = m.support;
    if (m.settings.kind == FourierKind::kWiener) {
      // White noise in the mirrored row: E|X_k|^2 averages 2 sum var = N mean(var).
      double noise = 0.0;
      for (std::size_t p = 0; p < P; ++p) noise += 2.0 * b.variance[p];
      // Signal power: |X|^2 - 3 N0 (over-subtraction: a noise-only bin, |X|^2
      // exponential with mean N0, passes with probability e^-3), smoothed over
      // +-2 bins.
      for (std::size_t k = 0; k <= P; ++k) {
        const double pw = b.spec.p[k][0] * b.spec.p[k][0] + b.spec.p[k][1] * b.spec.p[k][1];
        b.real2.p[k] = std::max(pw - 3.0 * noise, 0.0);
      }
      for (std::size_t k = 0; k <= P; ++k) {
        double s = 0.0;
        int n = 0;
        for (std::size_t j = k >= 2 ? k - 2 : 0; j <= std::min(P, k + 2); ++j, ++n) {
          s += b.real2.p[j];
        }
        s /= n;
        b.H[k] = s / (s + noise);
      }
      b.H[0] = 1.0;  // the mean level is always signal
      // Taper the impulse response with a Gaussian lag window (sigma kWienerLag
      // pixels), i.e. smooth H over frequency: a transfer function that drops to
      // zero wherever the signal power does rings over the whole row otherwise.
      for (std::size_t k = 0; k <= P; ++k) {
        b.spec2.p[k][0] = b.H[k];
        b.spec2.p[k][1] = 0.0;
      }
      fftw_execute_dft_c2r(m.c2r, b.spec2.p, b.real2.p);
      for (std::size_t n = 0; n < N; ++n) {
        const double lag = static_cast<double>(std::min(n, N - n));
        b.real2.p[n] *= inv_n * std::exp(-0.5 * lag * lag / (kWienerLag * kWienerLag));
      }
      fftw_execute_dft_r2c(m.r2c, b.real2.p, b.spec2.p);
      // Keep the area (H(0) = 1).
      const double h0 = b.spec2.p[0][0];
      for (std::size_t k = 0; k <= P; ++k) b.H[k] = b.spec2.p[k][0] / h0;
      if (want_var) support = m.impulse(b, 1e-3);
      H = b.H.data();
    }
    {
      double* __restrict sp = &b.spec.p[0][0];
      if (m.settings.kind == FourierKind::kLowpass) {
        scale_spectrum(sp, m.Hn.data(), P + 1);
      } else {
        for (std::size_t k = 0; k <= P; ++k) {
          const double g = H[k] * inv_n;
          sp[2 * k] *= g;
          sp[2 * k + 1] *= g;
        }
      }
    }
    fftw_execute_dft_c2r(m.c2r, b.spec.p, b.real.p);
    copy_out(b.real.p, out.data() + o, P);
    if (any_flag) {
      for (std::size_t p = 0; p < P; ++p) {
        if (q[p] & quality::kUnusable) out[o + p] = kNaN;
      }
    }
    if (!want_var) continue;
    // var = (mirrored variance) (*) h^2, plus the edge cross terms.
    for (std::size_t p = 0; p < P; ++p) {
      b.real.p[p] = b.variance[p];
      b.real.p[N - 1 - p] = b.variance[p];
    }
    fftw_execute_dft_r2c(m.r2c, b.real.p, b.spec.p);
    const bool own = m.settings.kind == FourierKind::kWiener;
    for (std::size_t k = 0; k <= P; ++k) {
      const double hr = (own ? b.spec2.p[k][0] : m.h2hat_re[k]) * inv_n;
      const double hi = (own ? b.spec2.p[k][1] : m.h2hat_im[k]) * inv_n;
      const double xr = b.spec.p[k][0], xi = b.spec.p[k][1];
      b.spec.p[k][0] = xr * hr - xi * hi;
      b.spec.p[k][1] = xr * hi + xi * hr;
    }
    fftw_execute_dft_c2r(m.c2r, b.spec.p, b.real.p);
    const double* h = own ? b.h.data() : m.h.data();
    // Cross terms 2 sum_q var_q h[(j - q) mod N] h[(j + q + 1) mod N]: both
    // factors are non-zero only for j, q < E (left end) or j, q >= P - E (right).
    const std::size_t E = support;
    auto cross = [&](std::size_t j, std::size_t q0, std::size_t q1) {
      double c = 0.0;
      for (std::size_t qq = q0; qq < q1; ++qq) {
        const std::size_t d = j >= qq ? j - qq : j + N - qq;  // (j - q) mod N
        c += b.variance[qq] * h[d] * h[j + qq + 1];            // j + q + 1 < N
      }
      return 2.0 * c;
    };
    for (std::size_t p = 0; p < P; ++p) {
      double v = b.real.p[p];
      if (P < 2 * E) {
        v += cross(p, 0, P);
      } else if (p < E) {
        v += cross(p, 0, E);
      } else if (p >= P - E) {
        v += cross(p, P - E, P);
      }
      out_variance[o + p] = (q[p] & quality::kUnusable) ? kNaN : static_cast<T>(v);
    }
  }
}

template void FourierFilter::run<float>(std::span<const float>, std::span<const float>,
                                        std::span<const std::uint8_t>, std::span<float>,
                                        std::span<float>, Workspace&) const noexcept;
template void FourierFilter::run<double>(std::span<const double>, std::span<const double>,
                                         std::span<const std::uint8_t>, std::span<double>,
                                         std::span<double>, Workspace&) const noexcept;

}  // namespace exospec::kernels
