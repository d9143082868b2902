#include "exospec/pipeline/denoise.hpp"

#include "exospec/kernels/spectrum_model.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <stdexcept>
#include <vector>

namespace exospec::pipeline {

std::string_view denoise_method_name(DenoiseMethod m) noexcept {
  switch (m) {
    case DenoiseMethod::kAdaptive:
      return "adaptive";
    case DenoiseMethod::kSavgol:
      return "savgol";
    case DenoiseMethod::kLowpass:
      return "lowpass";
    case DenoiseMethod::kWiener:
      return "wiener";
    case DenoiseMethod::kAnscombe:
      return "anscombe";
  }
  return "?";
}

bool parse_denoise_method(std::string_view name, DenoiseMethod& out) noexcept {
  for (auto m : {DenoiseMethod::kAdaptive, DenoiseMethod::kSavgol, DenoiseMethod::kLowpass,
                 DenoiseMethod::kWiener, DenoiseMethod::kAnscombe}) {
    if (denoise_method_name(m) == name) {
      out = m;
      return true;
    }
  }
  return false;
}

struct DenoiseStage::Impl {
  std::size_t pixels;
  std::optional<kernels::AdaptiveSmoother> adaptive;
  std::vector<kernels::AdaptiveSmoother::Workspace<float>> adaptive_work;
  std::optional<kernels::SavgolFilter> savgol;
  std::vector<std::vector<float>> scratch;
  std::optional<kernels::FourierFilter> fourier;
  std::vector<kernels::FourierFilter::Workspace> fourier_work;
  std::optional<kernels::AnscombeSmoother> anscombe;
  std::vector<kernels::AnscombeSmoother::Workspace> anscombe_work;
  bool restricted = false;
  std::vector<kernels::PixelRange> ranges;
};

DenoiseStage::DenoiseStage(std::size_t pixels, double nm_per_pixel, const DenoiseConfig& config,
                           int threads, const std::string& fftw_wisdom)
    : config_(config), impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.pixels = pixels;
  const auto n = static_cast<std::size_t>(std::max(threads, 1));
  switch (config.method) {
    case DenoiseMethod::kAdaptive:
      m.adaptive.emplace(pixels, config.adaptive);
      for (std::size_t t = 0; t < n; ++t) m.adaptive_work.push_back(m.adaptive->make_workspace<float>());
      break;
    case DenoiseMethod::kSavgol:
      m.savgol.emplace(pixels, config.savgol);
      for (std::size_t t = 0; t < n; ++t) m.scratch.emplace_back(2 * pixels);
      break;
    case DenoiseMethod::kLowpass:
    case DenoiseMethod::kWiener: {
      kernels::FourierSettings s;
      s.kind = config.method == DenoiseMethod::kWiener ? kernels::FourierKind::kWiener
                                                       : kernels::FourierKind::kLowpass;
      const double lsf_sigma_px = config.lsf_fwhm_nm / kernels::kFwhmPerSigma / nm_per_pixel;
      s.kernel_sigma_px = config.lowpass_sigma_lsf * lsf_sigma_px;
      m.fourier.emplace(pixels, s, fftw_wisdom);
      for (std::size_t t = 0; t < n; ++t) m.fourier_work.push_back(m.fourier->make_workspace());
      break;
    }
    case DenoiseMethod::kAnscombe:
      m.anscombe.emplace(pixels, config.adaptive);
      for (std::size_t t = 0; t < n; ++t) m.anscombe_work.push_back(m.anscombe->make_workspace());
      break;
  }
}

void DenoiseStage::restrict_to(std::vector<kernels::PixelRange> ranges) {
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].begin > ranges[i].end || ranges[i].end > impl_->pixels ||
        (i > 0 && ranges[i].begin < ranges[i - 1].end)) {
      throw std::invalid_argument("denoise: pixel ranges must be sorted, disjoint and within the spectrum");
    }
  }
  impl_->ranges = std::move(ranges);
  impl_->restricted = true;
}

DenoiseStage::~DenoiseStage() = default;
DenoiseStage::DenoiseStage(DenoiseStage&&) noexcept = default;

void DenoiseStage::run(std::span<const float> radiance, std::span<const float> variance,
                       std::span<const std::uint8_t> quality, std::span<const double> scale,
                       std::span<const double> offset, std::span<float> out,
                       std::span<float> out_variance, int thread) {
  Impl& m = *impl_;
  const auto t = static_cast<std::size_t>(thread);
  switch (config_.method) {
    case DenoiseMethod::kAdaptive:
      if (m.restricted) {
        m.adaptive->run_ranges<float>(radiance, variance, quality, m.ranges, out, out_variance,
                                      m.adaptive_work[t]);
      } else {
        m.adaptive->run<float>(radiance, variance, quality, out, out_variance, m.adaptive_work[t]);
      }
      return;
    case DenoiseMethod::kLowpass:
    case DenoiseMethod::kWiener:
      m.fourier->run<float>(radiance, variance, quality, out, out_variance, m.fourier_work[t]);
      return;
    case DenoiseMethod::kAnscombe:
      m.anscombe->run<float>(radiance, quality, scale, offset, out, out_variance,
                             m.anscombe_work[t]);
      return;
    case DenoiseMethod::kSavgol:
      break;
  }
  const std::size_t P = m.pixels;
  auto& scratch = m.scratch[t];
  const auto value = std::span<float>(scratch).first(P);
  const auto var = std::span<float>(scratch).subspan(P, P);
  constexpr std::uint8_t kFill = kernels::quality::kUnusable | kernels::quality::kParticleHit;
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t r = 0; r < radiance.size() / P; ++r) {
    const std::size_t o = r * P;
    std::copy_n(radiance.begin() + static_cast<std::ptrdiff_t>(o), P, value.begin());
    std::copy_n(variance.begin() + static_cast<std::ptrdiff_t>(o), P, var.begin());
    const auto q = quality.subspan(o, P);
    auto y = out.subspan(o, P), yv = out_variance.subspan(o, P);
    if (!kernels::fill_flagged<float>(value, var, q, kFill)) {
      std::fill(y.begin(), y.end(), kNaN);
      std::fill(yv.begin(), yv.end(), kNaN);
      continue;
    }
    if (m.restricted) {
      std::fill(y.begin(), y.end(), kNaN);
      std::fill(yv.begin(), yv.end(), kNaN);
      for (const kernels::PixelRange& pr : m.ranges) {
        m.savgol->apply_range<float>(value, y, pr.begin, pr.end);
        m.savgol->apply_variance_range<float>(var, yv, pr.begin, pr.end);
      }
    } else {
      m.savgol->apply<float>(value, y);
      m.savgol->apply_variance<float>(var, yv);
    }
    for (std::size_t p = 0; p < P; ++p) {
      if (q[p] & kernels::quality::kUnusable) {
        y[p] = kNaN;
        yv[p] = kNaN;
      }
    }
  }
}

}  // namespace exospec::pipeline
