#include "exospec/kernels/profile.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "exospec/kernels/ballistic.hpp"
#include "exospec/kernels/line_fit.hpp"

namespace exospec::kernels {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kGrid = 33;            // trial temperatures of the first search (log-spaced)
constexpr double kLogTolerance = 1e-7;  // Brent's tolerance in ln T
constexpr int kWeightPasses = 2;       // fits at weights from the model (fit())
constexpr double kDerivativeStep = 1e-3;  // central difference of the shape in ln T

// The weighted linear fit of b ~ B_s g + B_bg (weights w) and its chi2.
struct Linear {
  double bs = kNaN, bg = kNaN, chi2 = std::numeric_limits<double>::infinity();
  bool degenerate = true;
};

Linear solve(std::size_t n, const double* g, const double* b, const double* w) {
  double sw = 0, sg = 0, sgg = 0, sb = 0, sgb = 0, sbb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double wi = w[i], gi = g[i], bi = b[i];
    sw += wi;
    sg += wi * gi;
    sgg += wi * gi * gi;
    sb += wi * bi;
    sgb += wi * gi * bi;
    sbb += wi * bi * bi;
  }
  Linear out;
  // (Centred: the determinant without cancellation.)
  const double gm = sg / sw;
  const double det_c = sgg - sg * gm;  // sum w (g - gmean)^2
  if (!(det_c > 1e-12 * sgg) || !std::isfinite(det_c)) {
    // g is (almost) constant: only the sum B_s g + B_bg is determined.
    out.bg = sb / sw;
    out.chi2 = sbb - sb * out.bg;
    return out;
  }
  out.bs = (sgb - gm * sb) / det_c;
  out.bg = (sb - out.bs * sg) / sw;
  out.chi2 = std::max(sbb - out.bs * sgb - out.bg * sb, 0.0);
  out.degenerate = false;
  return out;
}

}  // namespace

// The species' column shape C(z; T) / C(0; T) (ballistic.hpp's fast table).
struct ProfileFitter::Table {
  exosphere::ColumnProfileTable columns;
  Table(double mass, double t_min, double t_max) : columns(mass, t_min, t_max) {}
  void shape(double t, std::span<const double> z, std::span<double> out) const {
    columns.ratio(t, z, out);
  }
};

ProfileFitter::ProfileFitter(double mass_amu, const ProfileSettings& settings)
    : mass_amu_(mass_amu), settings_(settings) {
  if (!(settings.min_temperature_K > 0.0) || !(settings.max_temperature_K > settings.min_temperature_K) ||
      !std::isfinite(settings.max_temperature_K)) {
    throw std::invalid_argument("the profile's temperature range must satisfy 0 < min < max");
  }
  if (std::isfinite(mass_amu) && mass_amu > 0.0) {
    table_ = std::make_unique<Table>(mass_amu, settings.min_temperature_K, settings.max_temperature_K);
  }
}
ProfileFitter::~ProfileFitter() = default;
ProfileFitter::ProfileFitter(ProfileFitter&&) noexcept = default;
ProfileFitter& ProfileFitter::operator=(ProfileFitter&&) noexcept = default;

ProfileFitter::Workspace ProfileFitter::make_workspace(std::size_t n) const {
  Workspace w;
  for (auto* v : {&w.z, &w.b, &w.w, &w.s2, &w.g, &w.g2}) v->resize(n);
  return w;
}

void ProfileFitter::shape(double temperature_K, std::span<const double> altitude_km, std::span<double> out) const {
  if (!table_) {
    std::fill(out.begin(), out.end(), kNaN);
    return;
  }
  table_->shape(temperature_K, altitude_km, out);
}

ProfileResult ProfileFitter::fit(std::span<const double> altitude_km, std::span<const double> brightness,
                                 std::span<const double> sigma, std::span<const std::uint8_t> status,
                                 Workspace& work) const {
  ProfileResult r{kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, 0, ProfileStatus::kConverged};
  if (!table_) {
    r.status = ProfileStatus::kUnknownMass;
    return r;
  }
  // The usable spectra.
  const std::size_t N = altitude_km.size();
  if (work.z.size() < N) {
    for (auto* v : {&work.z, &work.b, &work.w, &work.s2, &work.g, &work.g2}) v->resize(N);  // (the caller sized it)
  }
  std::size_t n = 0;
  double zmin = std::numeric_limits<double>::infinity(), zmax = -zmin;
  for (std::size_t i = 0; i < N; ++i) {
    const bool converged =
        status.empty() || status[i] == static_cast<std::uint8_t>(FitStatus::kConverged) ||
        status[i] == static_cast<std::uint8_t>(FitStatus::kMaxIterations);
    const double z = altitude_km[i], b = brightness[i], s = sigma[i];
    if (!converged || !std::isfinite(z) || z < 0.0 || !std::isfinite(b) || !std::isfinite(s) || !(s > 0.0)) {
      continue;
    }
    work.z[n] = z;
    work.b[n] = b;
    work.w[n] = 1.0 / (s * s);
    zmin = std::min(zmin, z);
    zmax = std::max(zmax, z);
    ++n;
  }
  r.spectra = n;
  if (n < std::max<std::size_t>(settings_.min_spectra, 4)) {
    r.status = ProfileStatus::kTooFewSpectra;
    return r;
  }
  if (!(zmax - zmin >= 1.0)) {
    r.status = ProfileStatus::kNoAltitudeRange;
    return r;
  }
  const std::span<const double> z(work.z.data(), n);
  const std::span<double> g(work.g.data(), n);
  auto chi2_at = [&](double u) {
    table_->shape(std::exp(u), z, g);
    return solve(n, g.data(), work.b.data(), work.w.data()).chi2;
  };
  const double u_lo = std::log(settings_.min_temperature_K), u_hi = std::log(settings_.max_temperature_K);
  const double du = (u_hi - u_lo) / (kGrid - 1);
  // The best of a grid in ln T, then Brent's method in the bracket around
  // it. With `from` (the minimum at the previous weights, which move it
  // little), the bracket [from - du, from + du] is tried first: when `from`
  // is the lowest of its three points the minimum is inside, and the grid's
  // other 31 points are not needed (else the grid as without it).
  auto minimise = [&](double from) {
    double a = 0.0, b = 0.0, x = 0.0, fx = 0.0;
    bool bracketed = false;
    if (std::isfinite(from)) {
      const double lo = std::max(from - du, u_lo), hi = std::min(from + du, u_hi);
      const double f0 = chi2_at(from);
      if (lo < from && from < hi && f0 < chi2_at(lo) && f0 < chi2_at(hi)) {
        a = lo;
        b = hi;
        x = from;
        fx = f0;
        bracketed = true;
      }
    }
    if (!bracketed) {
      int best = 0;
      double best_chi2 = std::numeric_limits<double>::infinity();
      for (int k = 0; k < kGrid; ++k) {
        const double c = chi2_at(u_lo + du * k);
        if (c < best_chi2) {
          best_chi2 = c;
          best = k;
        }
      }
      a = u_lo + du * std::max(best - 1, 0);
      b = u_lo + du * std::min(best + 1, kGrid - 1);
      x = u_lo + du * best;
      fx = best_chi2;
    }
    // Brent's minimisation (golden sections with parabolic steps).
    constexpr double kGolden = 0.3819660112501051;  // (3 - sqrt 5) / 2
    double wv = x, v = x, fw = fx, fv = fx;
    double d = 0.0, e = 0.0;
    for (int it = 0; it < 100; ++it) {
      const double m = 0.5 * (a + b);
      const double tol1 = kLogTolerance * 0.5 + 1e-12 * std::abs(x), tol2 = 2.0 * tol1;
      if (std::abs(x - m) <= tol2 - 0.5 * (b - a)) break;
      bool golden = true;
      if (std::abs(e) > tol1) {
        // A parabola through x, w and v.
        const double r1 = (x - wv) * (fx - fv), q1 = (x - v) * (fx - fw);
        double p = (x - v) * q1 - (x - wv) * r1, q = 2.0 * (q1 - r1);
        if (q > 0.0) p = -p;
        q = std::abs(q);
        const double e_prev = e;
        e = d;
        if (std::abs(p) < std::abs(0.5 * q * e_prev) && p > q * (a - x) && p < q * (b - x)) {
          d = p / q;
          const double uu = x + d;
          if (uu - a < tol2 || b - uu < tol2) d = x < m ? tol1 : -tol1;
          golden = false;
        }
      }
      if (golden) {
        e = (x < m ? b : a) - x;
        d = kGolden * e;
      }
      const double uu = std::abs(d) >= tol1 ? x + d : x + (d > 0.0 ? tol1 : -tol1);
      const double fu = chi2_at(uu);
      if (fu <= fx) {
        (uu < x ? b : a) = x;
        v = wv;
        fv = fw;
        wv = x;
        fw = fx;
        x = uu;
        fx = fu;
      } else {
        (uu < x ? a : b) = uu;
        if (fu <= fw || wv == x) {
          v = wv;
          fv = fw;
          wv = uu;
          fw = fu;
        } else if (fu <= fv || v == x || v == wv) {
          v = uu;
          fv = fu;
        }
      }
    }
    return x;
  };
  double x = minimise(std::numeric_limits<double>::quiet_NaN());
  // The weights: the level-2 sigma of a spectrum is made from its
  // neighbours' brightness (docs/FIT.md), so it carries their noise, and a
  // fit weighted by it is biased (a spectrum that comes out high raises its
  // neighbours' sigmas and so its own weight). The variance of a
  // photon-counting brightness is linear in the brightness, so the weights
  // are 1 / (a + b B(z_i)), a and b the least-squares line of sigma_i^2
  // against the fitted model, and the fit is made again (twice): each
  // spectrum's own noise then moves its weight by O(1/n).
  for (std::size_t i = 0; i < n; ++i) work.s2[i] = 1.0 / work.w[i];
  for (int pass = 0; pass < kWeightPasses; ++pass) {
    table_->shape(std::exp(x), z, g);
    const Linear m = solve(n, g.data(), work.b.data(), work.w.data());
    if (m.degenerate) break;
    double s1 = 0.0, sm = 0.0, smm = 0.0, sv = 0.0, smv = 0.0, vmin = std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < n; ++i) {
      const double mi = m.bs * g[i] + m.bg, v = work.s2[i];
      s1 += 1.0;
      sm += mi;
      smm += mi * mi;
      sv += v;
      smv += mi * v;
      vmin = std::min(vmin, v);
    }
    const double det = s1 * smm - sm * sm;
    double slope = det > 1e-12 * s1 * smm ? (s1 * smv - sm * sv) / det : 0.0;
    if (!(slope >= 0.0)) slope = 0.0;  // (a variance does not fall with the brightness)
    const double intercept = (sv - slope * sm) / s1;
    for (std::size_t i = 0; i < n; ++i) {
      work.w[i] = 1.0 / std::max(intercept + slope * (m.bs * g[i] + m.bg), vmin);
    }
    x = minimise(x);
  }
  const double t = std::exp(x);
  const bool at_bound = x - u_lo < 10.0 * kLogTolerance || u_hi - x < 10.0 * kLogTolerance;
  table_->shape(t, z, g);
  const Linear lin = solve(n, g.data(), work.b.data(), work.w.data());
  r.surface_brightness_R = lin.bs;
  r.temperature_K = t;
  r.background_R = lin.bg;
  r.scale_height_km = exosphere::scale_height_km(mass_amu_, t);
  r.chi2_reduced = n > 3 ? lin.chi2 / static_cast<double>(n - 3) : kNaN;
  if (lin.degenerate) {
    r.status = ProfileStatus::kSingular;
    return r;
  }
  // The Fisher information of (B_s, T, B_bg): columns g, B_s dg/dT, 1, with
  // dg/dT from the central difference in ln T, (g(T e^h) - g(T e^-h)) / (2 h T)
  // (into g2), then g at T again.
  const std::span<double> g2(work.g2.data(), n);
  table_->shape(t * std::exp(kDerivativeStep), z, g2);
  table_->shape(t * std::exp(-kDerivativeStep), z, g);
  const double inv = 1.0 / (2.0 * kDerivativeStep * t);
  for (std::size_t i = 0; i < n; ++i) g2[i] = (g2[i] - g[i]) * inv;
  table_->shape(t, z, g);
  double F[3][3] = {};
  for (std::size_t i = 0; i < n; ++i) {
    const double c[3] = {g[i], lin.bs * g2[i], 1.0}, wi = work.w[i];
    for (int p = 0; p < 3; ++p) {
      for (int q = 0; q < 3; ++q) F[p][q] += wi * c[p] * c[q];
    }
  }
  if (at_bound) {
    // T fixed at the bound: the 2 x 2 block of B_s and B_bg.
    const double det = F[0][0] * F[2][2] - F[0][2] * F[2][0];
    r.status = ProfileStatus::kTemperatureAtBound;
    if (det > 0.0) {
      r.surface_brightness_sigma = std::sqrt(F[2][2] / det);
      r.background_sigma = std::sqrt(F[0][0] / det);
    }
    return r;
  }
  // The inverse of the 3 x 3 Fisher matrix (cofactors).
  const double c00 = F[1][1] * F[2][2] - F[1][2] * F[2][1];
  const double c01 = F[1][2] * F[2][0] - F[1][0] * F[2][2];
  const double c02 = F[1][0] * F[2][1] - F[1][1] * F[2][0];
  const double det = F[0][0] * c00 + F[0][1] * c01 + F[0][2] * c02;
  const double scale = std::max({F[0][0] * F[1][1] * F[2][2], 1e-300});
  if (!(det > 1e-14 * scale) || !std::isfinite(det)) {
    r.status = ProfileStatus::kSingular;
    return r;
  }
  const double i00 = c00 / det;
  const double i11 = (F[0][0] * F[2][2] - F[0][2] * F[2][0]) / det;
  const double i22 = (F[0][0] * F[1][1] - F[0][1] * F[1][0]) / det;
  const double i12 = (F[0][1] * F[2][0] - F[0][0] * F[2][1]) / det;
  r.surface_brightness_sigma = std::sqrt(i00);
  r.temperature_sigma = std::sqrt(i11);
  r.background_sigma = std::sqrt(i22);
  r.scale_height_sigma = r.scale_height_km * r.temperature_sigma / t;
  r.temperature_background_correlation = i12 / std::sqrt(i11 * i22);
  if (!(lin.bs > settings_.min_surface_snr * r.surface_brightness_sigma)) r.status = ProfileStatus::kNotDetected;
  return r;
}

}  // namespace exospec::kernels
