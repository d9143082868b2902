#include "exospec/kernels/fourier.hpp"

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

// Half-width beyond which |h| < 1e-5 max |h| (circularly), at most n / 2: the
// cross terms h h' neglected beyond it are below 1e-10 of the variance.
std::size_t support_of(const double* h, std::size_t n) {
  double peak = 0.0;
  for (std::size_t i = 0; i < n; ++i) peak = std::max(peak, std::abs(h[i]));
  std::size_t e = 0;
  for (std::size_t i = 0; i <= n / 2; ++i) {
    if (std::abs(h[i]) > 1e-5 * peak || std::abs(h[(n - i) % n]) > 1e-5 * peak) e = i + 1;
  }
  return e;
}

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
  std::vector<double> H, h;
  std::vector<double> h2hat_re, h2hat_im;
  std::size_t support = 0;

  ~Impl() {
    std::lock_guard lock(planner_mutex());
    if (r2c) fftw_destroy_plan(r2c);
    if (c2r) fftw_destroy_plan(c2r);
  }

  // Given H (P + 1 values) in b.H: h = IDFT(H) in b.h, DFT(h^2) in b.spec2,
  // and the support of h.
  std::size_t impulse(Workspace::Buffers& b) const noexcept {
    for (std::size_t k = 0; k <= P; ++k) {
      b.spec2.p[k][0] = b.H[k];
      b.spec2.p[k][1] = 0.0;
    }
    fftw_execute_dft_c2r(c2r, b.spec2.p, b.real2.p);
    const double inv = 1.0 / static_cast<double>(N);
    for (std::size_t i = 0; i < N; ++i) b.h[i] = b.real2.p[i] * inv;
    for (std::size_t i = 0; i < N; ++i) b.real2.p[i] = b.h[i] * b.h[i];
    fftw_execute_dft_r2c(r2c, b.real2.p, b.spec2.p);
    return support_of(b.h.data(), N);
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
    m.support = m.impulse(b);
    m.H = b.H;
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
    for (std::size_t p = 0; p < P; ++p) {
      b.value[p] = static_cast<double>(radiance[o + p]);
      b.variance[p] = static_cast<double>(variance[o + p]);
    }
    if (!fill_flagged<double>(b.value, b.variance, q, kFill)) {
      std::fill_n(out.begin() + static_cast<std::ptrdiff_t>(o), P, kNaN);
      if (want_var) std::fill_n(out_variance.begin() + static_cast<std::ptrdiff_t>(o), P, kNaN);
      continue;
    }
    for (std::size_t p = 0; p < P; ++p) {
      b.real.p[p] = b.value[p];
      b.real.p[N - 1 - p] = b.value[p];
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
      if (want_var) support = m.impulse(b);
      H = b.H.data();
    }
    for (std::size_t k = 0; k <= P; ++k) {
      const double g = H[k] * inv_n;
      b.spec.p[k][0] *= g;
      b.spec.p[k][1] *= g;
    }
    fftw_execute_dft_c2r(m.c2r, b.spec.p, b.real.p);
    for (std::size_t p = 0; p < P; ++p) {
      out[o + p] = (q[p] & quality::kUnusable) ? kNaN : static_cast<T>(b.real.p[p]);
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
