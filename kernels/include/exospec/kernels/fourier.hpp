#pragma once
// Fourier filtering of spectra with FFTW: a Gaussian low-pass and a Wiener
// filter, on batches of rows, with the propagated variance.
//
// Each row (P pixels; flagged pixels first filled by linear interpolation) is
// extended by its mirror image to N = 2P samples (x_0..x_{P-1}, x_{P-1}..x_0),
// so the periodic transform sees no jump at the ends. Then r2c, a real transfer
// function H(f), c2r, and the first P samples are kept. The result is a linear
// filter y_j = sum_q w_jq x_q with w_jq = h[(j - q) mod N] + h[(j + q + 1) mod N],
// h = IDFT(H). The variance is computed exactly from it,
//   var(y_j) = sum_q w_jq^2 var_q,
// as the circular convolution of the mirrored variance with h^2 (one more FFT
// pair) plus the cross terms 2 h h', which matter only within the support of h
// of the two ends and are summed there directly.
//
// Filters (f in cycles per pixel):
// - low-pass: H(f) = exp(-2 pi^2 s^2 f^2), a Gaussian kernel of standard
//   deviation s pixels. By default s = 0.5 x the line spread's sigma, which
//   widens a line's FWHM by 12 % and keeps its area (H(0) = 1).
// - Wiener: H(f) = S(f) / (S(f) + N0), with N0 = N mean(var) the white-noise
//   power and S(f) = max(|X(f)|^2 - 3 N0, 0) smoothed over 5 frequency bins, per
//   row (over-subtraction: a noise-only bin passes with probability e^-3),
//   then tapered by a Gaussian lag window of sigma 32 pixels on its impulse
//   response (a transfer function that drops to zero where the signal does
//   would otherwise ring across the whole row). This is a data-dependent choice of a linear filter. The variance
//   formula holds for the chosen filter and ignores the noise of that choice.
//
// Set-up builds the FFTW plans once, under a global lock (FFTW's planner is
// not thread-safe), on fftw_malloc'd arrays. Each thread executes them with the
// new-array functions on its own Workspace, whose arrays are also fftw_malloc'd
// and so have the same alignment. Optional wisdom: pass FFTW's wisdom text to
// the constructor, and read it back with export_wisdom().
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace exospec::kernels {

enum class FourierKind : std::uint8_t { kLowpass, kWiener };

struct FourierSettings {
  FourierKind kind = FourierKind::kLowpass;
  double kernel_sigma_px = 2.0;  // low-pass kernel sigma (pixels)
};

class FourierFilter {
 public:
  FourierFilter(std::size_t pixels, const FourierSettings& settings,
                const std::string& wisdom = {});
  ~FourierFilter();
  FourierFilter(FourierFilter&&) noexcept;
  FourierFilter& operator=(FourierFilter&&) noexcept;

  std::size_t pixels() const noexcept;
  const FourierSettings& settings() const noexcept;
  // FFTW's accumulated wisdom (for a wisdom file).
  static std::string export_wisdom();

  // Per-thread buffers (fftw_malloc'd).
  class Workspace {
   public:
    Workspace(Workspace&&) noexcept;
    Workspace& operator=(Workspace&&) noexcept;
    ~Workspace();

   private:
    friend class FourierFilter;
    Workspace() = default;
    struct Buffers;
    std::unique_ptr<Buffers> b_;
  };
  Workspace make_workspace() const;

  // Rows x P. out_variance may be empty (value only). Pixels with
  // quality & (kUnusable | kParticleHit) are interpolated over before
  // filtering; unusable ones are NaN in the output.
  template <class T>
  void run(std::span<const T> radiance, std::span<const T> variance,
           std::span<const std::uint8_t> quality, std::span<T> out, std::span<T> out_variance,
           Workspace& work) const noexcept;

  // The bare transform pair this filter is built on (r2c then c2r of size
  // 2P, in the workspace): the benchmark's yardstick.
  void bare_pair(Workspace& work) const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace exospec::kernels
