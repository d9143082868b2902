#include "exospec/kernels/spectrum_model.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numbers>

namespace exospec::kernels {

void pixel_wavelengths(std::span<const double> coeffs, std::span<double> out) noexcept {
  for (std::size_t p = 0; p < out.size(); ++p) {
    out[p] = eval_polynomial(coeffs, static_cast<double>(p));
  }
}

void pixel_edges(std::span<const double> coeffs, std::span<double> out) noexcept {
  for (std::size_t p = 0; p < out.size(); ++p) {
    out[p] = eval_polynomial(coeffs, static_cast<double>(p) - 0.5);
  }
}

double gaussian_pixel_average(double lo, double hi, double centre, double sigma) noexcept {
  assert(hi > lo && sigma > 0.0);
  const double scale = 1.0 / (sigma * std::numbers::sqrt2);
  const double a = (lo - centre) * scale;
  const double b = (hi - centre) * scale;
  // Integral = (erf(b) - erf(a)) / 2, written with erfc on the side of the tail
  // so that far-wing pixels keep their relative precision.
  double integral;
  if (a >= 0.0) {
    integral = 0.5 * (std::erfc(a) - std::erfc(b));
  } else if (b <= 0.0) {
    integral = 0.5 * (std::erfc(-b) - std::erfc(-a));
  } else {
    integral = 0.5 * (std::erf(b) - std::erf(a));
  }
  return integral / (hi - lo);
}

LineProfile make_line_profile(std::span<const double> edges,
                              std::span<const LineComponent> components, double fwhm_nm,
                              double half_width_sigmas) {
  assert(edges.size() >= 2 && fwhm_nm > 0.0);
  const double sigma = fwhm_nm / kFwhmPerSigma;
  double lo_nm = components.empty() ? 0.0 : components.front().wavelength_nm;
  double hi_nm = lo_nm;
  for (const auto& c : components) {
    lo_nm = std::min(lo_nm, c.wavelength_nm);
    hi_nm = std::max(hi_nm, c.wavelength_nm);
  }
  lo_nm -= half_width_sigmas * sigma;
  hi_nm += half_width_sigmas * sigma;
  const std::size_t pixels = edges.size() - 1;
  // First pixel whose upper edge is above lo_nm; last pixel whose lower edge is below hi_nm.
  const auto first_it = std::upper_bound(edges.begin() + 1, edges.end(), lo_nm);
  const auto end_it = std::lower_bound(edges.begin(), edges.end() - 1, hi_nm);
  LineProfile profile;
  const auto first = static_cast<std::size_t>(first_it - (edges.begin() + 1));
  const auto end = std::min(pixels, static_cast<std::size_t>(end_it - edges.begin()));
  if (components.empty() || first >= end) {
    profile.first = std::min(first, pixels);
    return profile;
  }
  profile.first = first;
  profile.values.assign(end - first, 0.0);
  for (std::size_t p = first; p < end; ++p) {
    double v = 0.0;
    for (const auto& c : components) {
      v += c.fraction * gaussian_pixel_average(edges[p], edges[p + 1], c.wavelength_nm, sigma);
    }
    profile.values[p - first] = v;
  }
  return profile;
}

void add_line(const LineProfile& profile, double brightness, std::span<double> radiance) noexcept {
  assert(profile.first + profile.values.size() <= radiance.size());
  double* out = radiance.data() + profile.first;
  const double* v = profile.values.data();
  for (std::size_t i = 0; i < profile.values.size(); ++i) out[i] += brightness * v[i];
}

double expected_counts(std::span<const double> radiance, std::span<const double> response,
                       std::span<const double> dark, double dark_scale, double dead_time_s,
                       double exposure_s, std::span<double> out) noexcept {
  const std::size_t n = radiance.size();
  assert(response.size() == n && dark.size() == n && out.size() == n);
  double total = 0.0;
  for (std::size_t p = 0; p < n; ++p) {
    const double r = radiance[p] * response[p] + dark[p] * dark_scale;
    out[p] = r;
    total += r;
  }
  const double factor = 1.0 / (1.0 + dead_time_s * total);
  const double scale = factor * exposure_s;
  for (std::size_t p = 0; p < n; ++p) out[p] *= scale;
  return factor;
}

}  // namespace exospec::kernels
