#pragma once
// The denoise stage of one channel: the configured smoothing method with its
// per-thread workspaces, on rows of calibrated (spike-cleaned) radiance.
// Particle hits are removed earlier, inside the calibrate kernel
// (kernels::DespikeSettings), when the denoise stage is on.
//
// Methods (docs/DENOISE.md):
//   adaptive  LPA-ICI Savitzky-Golay (default; kernels::AdaptiveSmoother)
//   savgol    one fixed Savitzky-Golay filter (kernels::SavgolFilter)
//   lowpass   Gaussian low-pass by FFT, kernel sigma a fraction of the line
//             spread's (kernels::FourierFilter)
//   wiener    Wiener filter by FFT (kernels::FourierFilter)
//   anscombe  the adaptive smoother in the Anscombe domain, with the exact
//             unbiased inverse (kernels::AnscombeSmoother), for low counts
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/denoise.hpp"
#include "exospec/kernels/fourier.hpp"
#include "exospec/kernels/savgol.hpp"

namespace exospec::pipeline {

enum class DenoiseMethod : std::uint8_t { kAdaptive, kSavgol, kLowpass, kWiener, kAnscombe };
std::string_view denoise_method_name(DenoiseMethod m) noexcept;
bool parse_denoise_method(std::string_view name, DenoiseMethod& out) noexcept;

struct DenoiseConfig {
  DenoiseMethod method = DenoiseMethod::kAdaptive;
  kernels::DespikeSettings despike{true, 3.5, 2.0, 0.2};
  kernels::AdaptiveSettings adaptive;
  kernels::SavgolSettings savgol;
  double lowpass_sigma_lsf = 0.5;  // low-pass kernel sigma / line-spread sigma
  double lsf_fwhm_nm = 1.0;        // the channel's line-spread FWHM
};

class DenoiseStage {
 public:
  // nm_per_pixel: the mean dispersion (turns the line spread into pixels).
  // Throws std::invalid_argument for settings that do not fit the pixels.
  DenoiseStage(std::size_t pixels, double nm_per_pixel, const DenoiseConfig& config,
               int threads, const std::string& fftw_wisdom = {});
  ~DenoiseStage();
  DenoiseStage(DenoiseStage&&) noexcept;

  const DenoiseConfig& config() const noexcept { return config_; }
  // Whether run() needs the count model (scale, offset) of each row.
  bool needs_count_model() const noexcept { return config_.method == DenoiseMethod::kAnscombe; }

  // Only the pixels in `ranges` (sorted, disjoint) are wanted from now on:
  // adaptive and savgol compute those alone (each to the bit as in a whole
  // spectrum) and write NaN elsewhere; the FFT methods and anscombe, whose
  // every output pixel depends on the whole spectrum or which are cheap
  // anyway, still compute every pixel.
  void restrict_to(std::vector<kernels::PixelRange> ranges);

  // Rows x P. `thread` in [0, threads) selects the workspace; scale/offset
  // (rows x P) only for anscombe.
  void run(std::span<const float> radiance, std::span<const float> variance,
           std::span<const std::uint8_t> quality, std::span<const double> scale,
           std::span<const double> offset, std::span<float> out, std::span<float> out_variance,
           int thread);

 private:
  struct Impl;
  DenoiseConfig config_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace exospec::pipeline
