// Scalar references for the line fit's vectorised paths, written from
// docs/FIT.md and line_fit.hpp without any of the fast path's helpers (no
// make_line_profile, no window_profiles, no kFwhmPerSigma, no normal
// equations): erfc profiles and their analytic shift derivative written
// here, Eigen's ColPivHouseholderQR on the sqrt-weighted design.
//
// (a) shift = "fixed": weighted least squares with the calibrated variance,
//     then refine_iterations (2) Poisson refits: the weights from the fitted
//     model's expected counts through the count model (counts = radiance x
//     scale + offset), floored at min_expected_counts, the model being the
//     fit (negative lines included) plus line_prior_counts expected counts
//     spread over each line's profile; sigma from (A^T W A)^-1 at the final
//     weights; chi2_reduced = chi2 / (good - k).
// (b) shift = "free", width fixed: at the linear fit's final weights, the
//     shift s1 that minimises the projected chi2 (the brightnesses and the
//     background solved at each shift), found by a dense scan and Brent's
//     method; the weights from the model at s1; the shift s2 that minimises
//     the projected chi2 under those weights; brightness there, sigma from
//     (J^T J)^-1 over all parameters (lines, background, shift), chi2_reduced
//     = chi2 / (good - k - 1).
// Both against LineFitter::fit on random noisy windows of 1, 2 and 3 lines
// (some of them doublets), Poisson counts, float and double inputs, flagged
// pixels (bad, particle hits, zero variance, NaN radiance) and windows at the
// detector's ends.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/line_fit.hpp"
#include "exospec/kernels/random.hpp"

namespace exospec::kernels {
namespace {

constexpr std::size_t kP = 1024;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double sigma_of(double fwhm) { return fwhm / (2.0 * std::sqrt(2.0 * std::log(2.0))); }
double upper_tail(double x) { return 0.5 * std::erfc(x / std::numbers::sqrt2); }
// P(a < X < b), a < b, standard normal.
double normal_mass(double a, double b) {
  if (a >= 0.0) return upper_tail(a) - upper_tail(b);
  if (b <= 0.0) return upper_tail(-b) - upper_tail(-a);
  return 1.0 - upper_tail(-a) - upper_tail(b);
}
double density(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2.0 * std::numbers::pi); }

double poly(const std::vector<double>& c, double x) {
  double v = 0.0, xp = 1.0;
  for (double ck : c) {
    v += ck * xp;
    xp *= x;
  }
  return v;
}

// One test case: a spectrum of P pixels with the lines of one window.
struct Case {
  std::vector<double> coeffs;
  double fwhm = 1.0;
  int background_order = 1;
  std::vector<FitLineSpec> lines;
  std::vector<double> truth;  // brightness per line
  std::vector<double> y, v, scale, offset, denoised;
  std::vector<std::uint8_t> q;
  bool single = false;  // float inputs
  bool with_denoised = false;
  std::string label;
};

// The reference's view of the window: its usable pixels only.
struct RefWindow {
  std::size_t first = 0, n = 0;
  std::vector<double> lo, hi, centre;  // pixel edges and mid-wavelength (nm), window pixels
  std::vector<std::vector<LineComponent>> comps;  // per line, fractions normalised
  std::vector<std::size_t> rows;  // usable pixels (window index)
  std::vector<double> y, v, s, o;  // at the usable pixels
  int nl = 0, nb = 0, k = 0;
  double sigma = 0.0, bg_mid = 0.0, bg_half = 1.0;
};

RefWindow reference_window(const Case& c) {
  RefWindow w;
  double lo = 1e300, hi = -1e300;
  for (const auto& l : c.lines) {
    double total = 0.0;
    for (const auto& comp : l.components) total += comp.fraction;
    std::vector<LineComponent> norm;
    for (const auto& comp : l.components) {
      norm.push_back({comp.wavelength_nm, comp.fraction / total});
      lo = std::min(lo, comp.wavelength_nm);
      hi = std::max(hi, comp.wavelength_nm);
    }
    w.comps.push_back(norm);
  }
  // The window: pixels whose centre lies within 3 FWHM of the outermost components.
  const double wlo = lo - 3.0 * c.fwhm, whi = hi + 3.0 * c.fwhm;
  std::size_t f = kP, l = 0;
  for (std::size_t p = 0; p < kP; ++p) {
    const double x = poly(c.coeffs, static_cast<double>(p));
    if (x >= wlo && x <= whi) {
      f = std::min(f, p);
      l = std::max(l, p);
    }
  }
  w.first = f;
  w.n = f <= l ? l - f + 1 : 0;
  for (std::size_t i = 0; i < w.n; ++i) {
    const double p = static_cast<double>(f + i);
    w.lo.push_back(poly(c.coeffs, p - 0.5));
    w.hi.push_back(poly(c.coeffs, p + 0.5));
    w.centre.push_back(poly(c.coeffs, p));
  }
  // Usable: no bad/invalid/particle-hit bit, finite radiance, 0 < variance < inf.
  constexpr std::uint8_t skip = quality::kUnusable | quality::kParticleHit;
  for (std::size_t i = 0; i < w.n; ++i) {
    const std::size_t p = f + i;
    double yi = c.y[p], vi = c.v[p];
    if (c.single) {
      yi = static_cast<double>(static_cast<float>(yi));
      vi = static_cast<double>(static_cast<float>(vi));
    }
    if ((c.q[p] & skip) || !std::isfinite(yi) || !(vi > 0.0) || !std::isfinite(vi)) continue;
    w.rows.push_back(i);
    w.y.push_back(yi);
    w.v.push_back(vi);
    w.s.push_back(c.scale[p]);
    w.o.push_back(c.offset[p]);
  }
  w.nl = static_cast<int>(c.lines.size());
  w.nb = c.background_order + 1;
  w.k = w.nl + w.nb;
  w.sigma = sigma_of(c.fwhm);
  w.bg_mid = 0.5 * (w.centre.front() + w.centre.back());
  w.bg_half = 0.5 * (w.centre.back() - w.centre.front());
  return w;
}

// Design matrix over the usable pixels at a shift: line profiles (R/nm per
// R, pixel averages of the unit-area Gaussian), then the background
// monomials in the centred wavelength. With `dshift`, also d(profile)/d(shift).
Eigen::MatrixXd design(const RefWindow& w, double shift, Eigen::MatrixXd* dshift = nullptr) {
  const auto m = static_cast<Eigen::Index>(w.rows.size());
  Eigen::MatrixXd A(m, w.k);
  if (dshift) dshift->resize(m, w.nl);
  for (Eigen::Index r = 0; r < m; ++r) {
    const std::size_t i = w.rows[static_cast<std::size_t>(r)];
    const double width = w.hi[i] - w.lo[i];
    for (int a = 0; a < w.nl; ++a) {
      double v = 0.0, d = 0.0;
      for (const auto& comp : w.comps[static_cast<std::size_t>(a)]) {
        const double xa = (w.lo[i] - comp.wavelength_nm - shift) / w.sigma;
        const double xb = (w.hi[i] - comp.wavelength_nm - shift) / w.sigma;
        v += comp.fraction * normal_mass(xa, xb) / width;
        // d/dmu [Phi(xb) - Phi(xa)] = -(phi(xb) - phi(xa)) / sigma
        d -= comp.fraction * (density(xb) - density(xa)) / (w.sigma * width);
      }
      A(r, a) = v;
      if (dshift) (*dshift)(r, a) = d;
    }
    const double x = (w.centre[i] - w.bg_mid) / w.bg_half;
    for (int b = 0; b < w.nb; ++b) A(r, w.nl + b) = std::pow(x, b);
  }
  return A;
}

struct Wls {
  Eigen::VectorXd beta;
  Eigen::MatrixXd cov;  // (J^T J)^-1
  double chi2 = kNaN;
  bool ok = false;
};

// Weighted least squares by a column-pivoting QR of sqrt(W) J; the
// covariance P R^-1 R^-T P^T.
Wls weighted_fit(const Eigen::MatrixXd& J, const Eigen::VectorXd& y, const Eigen::VectorXd& w) {
  const Eigen::VectorXd sw = w.cwiseSqrt();
  const Eigen::MatrixXd As = sw.asDiagonal() * J;
  const Eigen::VectorXd ys = sw.cwiseProduct(y);
  Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(As);
  Wls out;
  if (qr.rank() < J.cols()) return out;
  out.beta = qr.solve(ys);
  out.chi2 = (As * out.beta - ys).squaredNorm();
  const auto k = J.cols();
  const Eigen::MatrixXd R = qr.matrixR().topLeftCorner(k, k).triangularView<Eigen::Upper>();
  const Eigen::MatrixXd Rinv =
      R.triangularView<Eigen::Upper>().solve(Eigen::MatrixXd::Identity(k, k));
  const Eigen::MatrixXd inner = Rinv * Rinv.transpose();
  out.cov = qr.colsPermutation() * inner * qr.colsPermutation().transpose();
  out.ok = true;
  return out;
}

Eigen::VectorXd to_eigen(const std::vector<double>& v) {
  return Eigen::Map<const Eigen::VectorXd>(v.data(), static_cast<Eigen::Index>(v.size()));
}

// The Poisson refit's weights (docs/FIT.md): model m = A beta plus, per
// line, prior_counts expected counts spread over its profile (its profile
// scaled by prior / sum_p profile_p scale_p over the usable pixels); mu =
// max(m scale + offset, floor); weight scale^2 / mu.
Eigen::VectorXd poisson_weights(const RefWindow& w, const Eigen::MatrixXd& A, const Eigen::VectorXd& beta,
                                const Eigen::VectorXd& previous, double prior, double floor) {
  Eigen::VectorXd coef = beta;
  const Eigen::VectorXd s = to_eigen(w.s), o = to_eigen(w.o);
  for (int a = 0; a < w.nl; ++a) {
    const double counts = A.col(a).dot(s);
    if (counts > 0.0) coef(a) += prior / counts;
  }
  const Eigen::VectorXd m = A * coef;
  Eigen::VectorXd out = previous;
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    if (!(s(i) > 0.0)) continue;
    out(i) = s(i) * s(i) / std::max(m(i) * s(i) + o(i), floor);
  }
  return out;
}

struct RefResult {
  bool ok = false;
  std::vector<double> brightness, sigma;
  double chi2_reduced = kNaN, shift = 0.0, shift_sigma = kNaN;
  Eigen::VectorXd weights;  // the final weights
  std::size_t good = 0;
};

// (a) The fixed-shift linear fit with its Poisson refits.
RefResult linear_reference(const RefWindow& w, const LineFitSettings& set, double shift = 0.0) {
  RefResult r;
  r.good = w.rows.size();
  if (r.good < static_cast<std::size_t>(w.k) + 3) return r;
  const Eigen::MatrixXd A = design(w, shift);
  const Eigen::VectorXd y = to_eigen(w.y);
  Eigen::VectorXd wt = to_eigen(w.v).cwiseInverse();
  Wls fit;
  for (int it = 0; it <= set.refine_iterations; ++it) {
    fit = weighted_fit(A, y, wt);
    if (!fit.ok) return r;
    if (it < set.refine_iterations) {
      wt = poisson_weights(w, A, fit.beta, wt, set.line_prior_counts, set.min_expected_counts);
    }
  }
  r.ok = true;
  for (int a = 0; a < w.nl; ++a) {
    r.brightness.push_back(fit.beta(a));
    r.sigma.push_back(std::sqrt(fit.cov(a, a)));
  }
  r.chi2_reduced = fit.chi2 / static_cast<double>(r.good - static_cast<std::size_t>(w.k));
  r.weights = wt;
  return r;
}

// The projected chi2 at a shift under fixed weights.
double projected_chi2(const RefWindow& w, double shift, const Eigen::VectorXd& wt) {
  const Wls f = weighted_fit(design(w, shift), to_eigen(w.y), wt);
  return f.ok ? f.chi2 : std::numeric_limits<double>::infinity();
}

// Minimum of f on [a, b]: the best of a dense scan, then Brent's method
// (golden section with parabolic steps) on its two neighbours, to 1e-12 of
// the interval.
template <class F>
double minimise(F&& f, double a, double b, int scan = 161) {
  std::size_t best = 0;
  double fbest = std::numeric_limits<double>::infinity();
  std::vector<double> xs(static_cast<std::size_t>(scan));
  for (int i = 0; i < scan; ++i) {
    xs[static_cast<std::size_t>(i)] = a + (b - a) * i / (scan - 1);
    const double fx = f(xs[static_cast<std::size_t>(i)]);
    if (fx < fbest) {
      fbest = fx;
      best = static_cast<std::size_t>(i);
    }
  }
  double lo = xs[best > 0 ? best - 1 : 0], hi = xs[std::min(best + 1, xs.size() - 1)];
  // Brent (1973), "localmin".
  const double golden = 0.5 * (3.0 - std::sqrt(5.0)), tol = 1e-12 * (b - a);
  double x = xs[best], wv = x, v = x, fx = fbest, fw = fx, fv = fx, d = 0.0, e = 0.0;
  for (int it = 0; it < 200; ++it) {
    const double m = 0.5 * (lo + hi), t2 = 2.0 * tol;
    if (std::abs(x - m) <= t2 - 0.5 * (hi - lo)) break;
    bool golden_step = true;
    if (std::abs(e) > tol) {
      double r = (x - wv) * (fx - fv), q = (x - v) * (fx - fw), p = (x - v) * q - (x - wv) * r;
      q = 2.0 * (q - r);
      if (q > 0.0) p = -p;
      q = std::abs(q);
      r = e;
      e = d;
      if (std::abs(p) < std::abs(0.5 * q * r) && p > q * (lo - x) && p < q * (hi - x)) {
        d = p / q;
        const double u = x + d;
        if (u - lo < t2 || hi - u < t2) d = x < m ? tol : -tol;
        golden_step = false;
      }
    }
    if (golden_step) {
      e = (x < m ? hi : lo) - x;
      d = golden * e;
    }
    const double u = std::abs(d) >= tol ? x + d : x + (d > 0.0 ? tol : -tol);
    const double fu = f(u);
    if (fu <= fx) {
      (u < x ? hi : lo) = x;
      v = wv;
      fv = fw;
      wv = x;
      fw = fx;
      x = u;
      fx = fu;
    } else {
      (u < x ? lo : hi) = u;
      if (fu <= fw || wv == x) {
        v = wv;
        fv = fw;
        wv = u;
        fw = fu;
      } else if (fu <= fv || v == x || v == wv) {
        v = u;
        fv = fu;
      }
    }
  }
  return x;
}

// (b) The free-shift fit with the width fixed (and its refits).
RefResult free_shift_reference(const RefWindow& w, const LineFitSettings& set) {
  RefResult lin = linear_reference(w, set);
  if (!lin.ok) return lin;
  const double bound = set.max_shift_fwhm * set.fwhm_nm;
  const Eigen::VectorXd y = to_eigen(w.y);
  const Eigen::VectorXd w1 = lin.weights;
  const double s1 = minimise([&](double s) { return projected_chi2(w, s, w1); }, -bound, bound);
  const Eigen::MatrixXd A1 = design(w, s1);
  const Wls f1 = weighted_fit(A1, y, w1);
  // (Without refits, the weights stay and s2 = s1.)
  const Eigen::VectorXd w2 = set.refine_iterations > 0
                                 ? poisson_weights(w, A1, f1.beta, w1, set.line_prior_counts, set.min_expected_counts)
                                 : w1;
  const double s2 =
      set.refine_iterations > 0 ? minimise([&](double s) { return projected_chi2(w, s, w2); }, -bound, bound) : s1;
  Eigen::MatrixXd D;
  const Eigen::MatrixXd A2 = design(w, s2, &D);
  const Wls f2 = weighted_fit(A2, y, w2);
  RefResult r;
  r.good = lin.good;
  if (!f2.ok) return r;
  // J over (lines, background, shift): the shift column is dA/ds beta.
  Eigen::MatrixXd J(A2.rows(), w.k + 1);
  J.leftCols(w.k) = A2;
  J.col(w.k) = D * f2.beta.head(w.nl);
  const Wls full = weighted_fit(J, y - A2 * f2.beta, w2);  // (only its covariance is used)
  if (!full.ok) return r;
  r.ok = true;
  for (int a = 0; a < w.nl; ++a) {
    r.brightness.push_back(f2.beta(a));
    r.sigma.push_back(std::sqrt(full.cov(a, a)));
  }
  r.shift = s2;
  r.shift_sigma = std::sqrt(full.cov(w.k, w.k));
  r.chi2_reduced = f2.chi2 / static_cast<double>(r.good - static_cast<std::size_t>(w.k) - 1);
  r.weights = w2;
  return r;
}

// ---------------------------------------------------------------- cases

std::vector<double> solution(double min_nm, double max_nm, double curvature) {
  const double last = static_cast<double>(kP - 1), span = max_nm - min_nm;
  const double c2 = curvature * span / (last * last);
  return {min_nm, (span - c2 * last * last) / last, c2};
}

// A random window of `nl` lines (spacing 0.8-3.5 FWHM, so one window; a line
// may be a 2:1 doublet 0.48 FWHM apart), Poisson counts of a Phebus-like
// count model, and flagged pixels. `bright`: the brightest line 40-1000 R (the
// free shift is for bright lines), else 0-300 R. Every fifth case sits at the
// detector's low end, every fifth at its high end (the window clipped).
Case make_case(std::uint64_t index, int nl, bool bright) {
  auto rng = Rng::stream(2024, index, static_cast<std::uint64_t>(nl), bright ? 1 : 0);
  Case c;
  const bool euv = rng.uniform() < 0.5;
  c.fwhm = euv ? 1.0 : 1.5;
  c.coeffs = euv ? solution(55.0, 155.0, rng.uniform(-0.03, 0.03)) : solution(145.0, 315.0, rng.uniform(-0.03, 0.03));
  c.background_order = static_cast<int>(rng.below(3));
  c.single = (index % 2) == 1;
  c.with_denoised = (index % 3) != 0;
  const double first_nm = poly(c.coeffs, 0.0), last_nm = poly(c.coeffs, static_cast<double>(kP - 1));
  std::vector<double> centres(static_cast<std::size_t>(nl));
  centres[0] = 0.0;
  for (int a = 1; a < nl; ++a) centres[static_cast<std::size_t>(a)] = centres[static_cast<std::size_t>(a - 1)] + rng.uniform(0.8, 3.5) * c.fwhm;
  double start;
  const auto where = index % 5;
  if (where == 0) {
    start = first_nm + rng.uniform(-0.5, 2.5) * c.fwhm;
  } else if (where == 1) {
    start = last_nm - rng.uniform(-0.5, 2.5) * c.fwhm - centres.back();
  } else {
    start = rng.uniform(first_nm + 5.0 * c.fwhm, last_nm - 15.0 * c.fwhm);
  }
  for (int a = 0; a < nl; ++a) {
    const double l0 = start + centres[static_cast<std::size_t>(a)];
    FitLineSpec spec;
    spec.name = std::string(1, static_cast<char>('A' + a));
    spec.wavelength_nm = l0;
    if (rng.uniform() < 0.3) {
      spec.components = {{l0, 2.0 / 3.0}, {l0 + 0.48 * c.fwhm, 1.0 / 3.0}};
    } else {
      spec.components = {{l0, 1.0}};
    }
    c.lines.push_back(spec);
    const double b = bright ? (a == 0 ? std::exp(rng.uniform(std::log(40.0), std::log(1000.0)))
                                      : std::exp(rng.uniform(std::log(0.5), std::log(300.0))))
                            : (rng.uniform() < 0.2 ? 0.0 : std::exp(rng.uniform(std::log(0.3), std::log(300.0))));
    c.truth.push_back(b);
  }
  if (bright && nl > 1) std::swap(c.truth[0], c.truth[rng.below(static_cast<std::uint64_t>(nl))]);
  // Truth: lines displaced by a shift (free-shift cases), on a continuum.
  const double shift = bright ? rng.uniform(-0.25, 0.25) * c.fwhm : 0.0;
  const double bg0 = rng.uniform(0.1, 3.0), bg1 = rng.uniform(-0.02, 0.02), bg2 = rng.uniform(-2e-4, 2e-4);
  const double sig = sigma_of(c.fwhm), mid = start + 0.5 * centres.back();
  std::vector<double> truth_radiance(kP);
  c.y.assign(kP, 0.0);
  c.v.assign(kP, 0.0);
  c.scale.assign(kP, 0.0);
  c.offset.assign(kP, 0.0);
  c.q.assign(kP, 0);
  std::vector<double> counts(kP);
  for (std::size_t p = 0; p < kP; ++p) {
    const double x = static_cast<double>(p), lo = poly(c.coeffs, x - 0.5), hi = poly(c.coeffs, x + 0.5);
    const double lc = poly(c.coeffs, x) - mid;
    double L = std::max(0.0, bg0 + bg1 * lc + (c.background_order == 2 ? bg2 * lc * lc : 0.0));
    for (int a = 0; a < nl; ++a) {
      for (const auto& comp : c.lines[static_cast<std::size_t>(a)].components) {
        L += c.truth[static_cast<std::size_t>(a)] * comp.fraction *
             normal_mass((lo - comp.wavelength_nm - shift) / sig, (hi - comp.wavelength_nm - shift) / sig) / (hi - lo);
      }
    }
    truth_radiance[p] = L;
    c.scale[p] = 1.6 * (1.0 + 0.3 * std::sin(x / 150.0)) * (1.0 + 0.03 * rng.normal());
    c.offset[p] = std::max(0.01, 0.16 * (1.0 + 0.2 * rng.normal()));
    counts[p] = static_cast<double>(rng.poisson(L * c.scale[p] + c.offset[p]));
    c.y[p] = (counts[p] - c.offset[p]) / c.scale[p];
  }
  for (std::size_t p = 0; p < kP; ++p) {
    const double m3 = (counts[p > 0 ? p - 1 : p] + counts[p] + counts[std::min(p + 1, kP - 1)]) / 3.0;
    c.v[p] = std::max(m3, 0.1) / (c.scale[p] * c.scale[p]);
  }
  c.denoised = truth_radiance;
  // Flagged pixels near the lines: bad (NaN), a particle hit (a spike that
  // must carry no weight), zero variance, NaN radiance with quality 0.
  const int flagged = static_cast<int>(rng.below(4));
  for (int f = 0; f < flagged; ++f) {
    const double at = start + rng.uniform(-2.5, centres.back() / c.fwhm + 2.5) * c.fwhm;
    std::size_t p = 0;
    double best = 1e300;
    for (std::size_t i = 0; i < kP; ++i) {
      const double d = std::abs(poly(c.coeffs, static_cast<double>(i)) - at);
      if (d < best) {
        best = d;
        p = i;
      }
    }
    switch (rng.below(4)) {
      case 0:
        c.q[p] |= quality::kBadPixel;
        c.y[p] = c.v[p] = kNaN;
        break;
      case 1:
        c.q[p] |= quality::kParticleHit;
        c.y[p] += 40.0 / c.scale[p];
        break;
      case 2:
        c.v[p] = 0.0;
        break;
      default:
        c.y[p] = kNaN;
        break;
    }
  }
  char label[160];
  std::snprintf(label, sizeof label, "%s case %llu, %d line(s) from %.3f nm, background order %d, %s, %d flagged",
                euv ? "euv" : "fuv", static_cast<unsigned long long>(index), nl, start, c.background_order,
                c.single ? "float" : "double", flagged);
  c.label = label;
  return c;
}

struct FitOut {
  std::vector<double> b, s, c, w;
  std::vector<float> chi;
  std::vector<std::uint8_t> st;
  std::vector<double> state;  // LineFitResult::window_state (the shift's sigma is there)
  explicit FitOut(std::size_t n) : b(n), s(n), c(n), w(n), chi(n), st(n) {}
  LineFitResult view() { return {b, s, c, w, chi, st, state}; }
};

FitOut run_fitter(const Case& c, const LineFitSettings& set, std::size_t& window_first, std::size_t& window_size,
                  std::size_t& windows) {
  const LineFitter fitter(c.coeffs, kP, c.lines, set);
  auto work = fitter.make_workspace();
  FitOut out(c.lines.size());
  out.state.assign(fitter.state_size(), kNaN);
  windows = fitter.windows();
  window_first = fitter.window_first(0);
  window_size = fitter.window_size(0);
  if (c.single) {
    std::vector<float> y(kP), v(kP), d(kP);
    for (std::size_t p = 0; p < kP; ++p) {
      y[p] = static_cast<float>(c.y[p]);
      v[p] = static_cast<float>(c.v[p]);
      d[p] = static_cast<float>(c.denoised[p]);
    }
    fitter.fit<float>(y, v, c.q, c.scale, c.offset, out.view(), work,
                      c.with_denoised ? std::span<const float>(d) : std::span<const float>());
  } else {
    fitter.fit<double>(c.y, c.v, c.q, c.scale, c.offset, out.view(), work,
                       c.with_denoised ? std::span<const double>(c.denoised) : std::span<const double>());
  }
  return out;
}

LineFitSettings settings_for(const Case& c, ShiftMode mode) {
  LineFitSettings set;
  set.fwhm_nm = c.fwhm;
  set.background_order = c.background_order;
  set.shift = mode;
  set.width = WidthMode::kFixed;
  // (The documented defaults: refine_iterations 2, min_expected_counts 0.1,
  // line_prior_counts 1, window 3 FWHM, group distance 4 FWHM, bound 0.5 FWHM.)
  return set;
}

// ---------------------------------------------------------------- tests

TEST(LineFitReference, FixedShiftLinearFitWithPoissonRefits) {
  // Tolerances: the two are the same least-squares problem solved in
  // different ways (normal equations with L D L^T in the fast path, a QR
  // here), so they differ by rounding only: brightness within 1e-6 of its
  // sigma, sigma within 1e-8 relative, reduced chi2 within 2e-7 relative
  // (chi2_reduced is stored as float: 6e-8). A sigma 3.5 % off fails by
  // 6 orders of magnitude.
  double worst_b = 0.0, worst_s = 0.0, worst_chi = 0.0;
  int windows = 0, lines = 0, edge = 0, single = 0, flagged_windows = 0;
  for (std::uint64_t i = 0; i < 300; ++i) {
    const int nl = 1 + static_cast<int>(i % 3);
    const Case c = make_case(i, nl, false);
    const LineFitSettings set = settings_for(c, ShiftMode::kFixed);
    const RefWindow rw = reference_window(c);
    std::size_t first = 0, size = 0, nw = 0;
    FitOut out = run_fitter(c, set, first, size, nw);
    ASSERT_EQ(nw, 1u) << c.label;
    ASSERT_EQ(first, rw.first) << c.label;
    ASSERT_EQ(size, rw.n) << c.label;
    const RefResult ref = linear_reference(rw, set);
    ASSERT_TRUE(ref.ok) << c.label;
    ++windows;
    edge += (i % 5) < 2 ? 1 : 0;
    single += c.single ? 1 : 0;
    flagged_windows += rw.rows.size() < rw.n ? 1 : 0;
    for (int a = 0; a < nl; ++a) {
      const auto j = static_cast<std::size_t>(a);
      ASSERT_EQ(out.st[j], 0) << c.label << " line " << a;
      const double db = std::abs(out.b[j] - ref.brightness[j]) / ref.sigma[j];
      const double ds = std::abs(out.s[j] / ref.sigma[j] - 1.0);
      const double dchi = std::abs(static_cast<double>(out.chi[j]) / ref.chi2_reduced - 1.0);
      EXPECT_LT(db, 1e-6) << c.label << " line " << a << ": brightness " << out.b[j] << " against "
                          << ref.brightness[j] << " (sigma " << ref.sigma[j] << ")";
      EXPECT_LT(ds, 1e-8) << c.label << " line " << a << ": sigma " << out.s[j] << " against " << ref.sigma[j];
      EXPECT_LT(dchi, 2e-7) << c.label << " line " << a << ": chi2_reduced " << out.chi[j] << " against "
                            << ref.chi2_reduced;
      EXPECT_EQ(out.c[j], c.lines[j].wavelength_nm) << c.label;
      worst_b = std::max(worst_b, db);
      worst_s = std::max(worst_s, ds);
      worst_chi = std::max(worst_chi, dchi);
      ++lines;
    }
  }
  std::printf("fixed shift: %d windows (%d at the detector's ends, %d float, %d with flagged pixels), %d lines: "
              "worst brightness %.2e sigma, sigma %.2e relative, chi2_reduced %.2e relative\n",
              windows, edge, single, flagged_windows, lines, worst_b, worst_s, worst_chi);
  EXPECT_GE(windows, 200);
}

// The free-shift comparison over 240 random bright windows (1-3 lines, the
// brightest 40-1000 R, displaced by up to 0.25 FWHM), with `refits` Poisson
// refits. Per line: the shift (in units of the reference's shift sigma),
// the brightness (in units of its sigma), the brightness sigma and the
// shift sigma (window_state) relative to the reference's, and chi2_reduced
// relative; each against its worst-case bound, and the median of each over
// all lines against `median` (a scale error of a sigma moves every line,
// the median with it). Windows whose reference shift is at the +-0.5 FWHM
// bound are counted, not compared (none are expected).
struct FreeTolerance {
  double shift, brightness, sigma_interior, sigma_edge, chi2, median;
};

void check_free_shift(int refits, const FreeTolerance& tol, const char* name) {
  std::vector<double> d_shift, d_b, d_s, d_ss, d_chi;
  double worst[5] = {};
  int windows = 0, at_bound = 0, edge = 0, single = 0, flagged_windows = 0;
  for (std::uint64_t i = 0; i < 240; ++i) {
    const int nl = 1 + static_cast<int>(i % 3);
    const Case c = make_case(i, nl, true);
    LineFitSettings set = settings_for(c, ShiftMode::kFree);
    set.refine_iterations = refits;
    const RefWindow rw = reference_window(c);
    std::size_t first = 0, size = 0, nw = 0;
    FitOut out = run_fitter(c, set, first, size, nw);
    ASSERT_EQ(nw, 1u) << c.label;
    ASSERT_EQ(first, rw.first) << c.label;
    ASSERT_EQ(size, rw.n) << c.label;
    const RefResult ref = free_shift_reference(rw, set);
    ASSERT_TRUE(ref.ok) << c.label;
    const double bound = set.max_shift_fwhm * set.fwhm_nm;
    if (std::abs(ref.shift) > bound - 1e-6 * bound) {
      ++at_bound;
      continue;
    }
    const bool at_end = (i % 5) < 2;
    ++windows;
    edge += at_end ? 1 : 0;
    single += c.single ? 1 : 0;
    flagged_windows += rw.rows.size() < rw.n ? 1 : 0;
    const double sigma_tol = at_end ? tol.sigma_edge : tol.sigma_interior;
    // window_state: k linear parameters, the shift, its sigma, the FWHM.
    const auto k = static_cast<std::size_t>(rw.k);
    ASSERT_EQ(out.state.size(), k + 3);
    const double dss = std::abs(out.state[k + 1] / ref.shift_sigma - 1.0);
    EXPECT_LT(dss, sigma_tol) << name << ", " << c.label << ": shift sigma " << out.state[k + 1] << " against "
                              << ref.shift_sigma;
    d_ss.push_back(dss);
    for (int a = 0; a < nl; ++a) {
      const auto j = static_cast<std::size_t>(a);
      ASSERT_EQ(out.st[j], 0) << c.label << " line " << a;
      const double shift = out.c[j] - c.lines[j].wavelength_nm;
      const double dshift = std::abs(shift - ref.shift) / ref.shift_sigma;
      const double db = std::abs(out.b[j] - ref.brightness[j]) / ref.sigma[j];
      const double ds = std::abs(out.s[j] / ref.sigma[j] - 1.0);
      const double dchi = std::abs(static_cast<double>(out.chi[j]) / ref.chi2_reduced - 1.0);
      EXPECT_LT(dshift, tol.shift) << name << ", " << c.label << ": shift " << shift << " against " << ref.shift
                                   << " (sigma " << ref.shift_sigma << ")";
      EXPECT_LT(db, tol.brightness) << name << ", " << c.label << " line " << a << ": brightness " << out.b[j]
                                    << " against " << ref.brightness[j] << " (sigma " << ref.sigma[j] << ")";
      EXPECT_LT(ds, sigma_tol) << name << ", " << c.label << " line " << a << ": sigma " << out.s[j] << " against "
                               << ref.sigma[j];
      EXPECT_LT(dchi, tol.chi2) << name << ", " << c.label << " line " << a << ": chi2_reduced " << out.chi[j]
                                << " against " << ref.chi2_reduced;
      EXPECT_EQ(out.w[j], set.fwhm_nm);
      d_shift.push_back(dshift);
      d_b.push_back(db);
      d_s.push_back(ds);
      d_chi.push_back(dchi);
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? kNaN : v[v.size() / 2];
  };
  std::vector<double>* all[5] = {&d_shift, &d_ss, &d_b, &d_s, &d_chi};
  const char* what[5] = {"shift (its sigma)", "shift sigma (rel.)", "brightness (sigma)", "sigma (rel.)",
                         "chi2_reduced (rel.)"};
  std::printf("%s: %d windows (%d at the detector's ends, %d float, %d with flagged pixels; %d at the bound, not "
              "compared), %zu lines; worst / median:\n",
              name, windows, edge, single, flagged_windows, at_bound, d_b.size());
  for (int m = 0; m < 5; ++m) {
    worst[m] = all[m]->empty() ? 0.0 : *std::max_element(all[m]->begin(), all[m]->end());
    const double med = median(*all[m]);
    std::printf("  %-20s %.2e / %.2e\n", what[m], worst[m], med);
    EXPECT_LT(med, tol.median) << name << ": median deviation of the " << what[m];
  }
  EXPECT_GE(windows, 200);
}

TEST(LineFitReference, FreeShiftWithoutRefitsIsTheProjectedChi2Minimum) {
  // refine_iterations = 0: the weights are the calibrated variance's, and the
  // fit is the minimum of the projected chi2 over the shift (what docs/FIT.md
  // states for the shift-only fit). The solver stops at steps of 1e-3 of the
  // shift's sigma, or before a Newton step of 3e-2 of it which it takes on
  // the quadratic model (second-order accurate): shift and brightness
  // within 1e-3 of their sigmas (measured 5e-5 and 1e-4). Its covariance is
  // that of the last evaluation, within 3e-2 shift sigma of the minimum:
  // sigmas within 1e-3 relative in the detector's interior (measured 3e-4);
  // for windows at the detector's ends, where part of a line is off the
  // detector and a line's sigma changes by up to ~0.2 per shift sigma,
  // within 1e-2 (measured 5e-3). chi2_reduced within 1e-6 (float storage,
  // measured 9e-8). Medians within 1e-4 (measured 1e-6). A sigma 3.5 %
  // off fails every one of the sigma bounds.
  check_free_shift(0, {1e-3, 1e-3, 1e-3, 1e-2, 1e-6, 1e-4}, "free shift, no refits");
}

TEST(LineFitReference, FreeShiftWithRefitsIsTheMinimumUnderTheFinalWeights) {
  // The default (refine_iterations = 2). The reference: the shift s1 that
  // minimises the projected chi2 under the linear fit's final weights, the
  // weights from the model at s1, the shift s2 that minimises the projected
  // chi2 under those, brightness and (J^T J)^-1 over all parameters at s2.
  // The fast path reaches s2 by ONE Newton step from s1 under the new
  // weights (a step of up to ~1.2 shift sigma here) and takes its
  // covariance at s1, before that step. Measured against the reference:
  // median deviations ~1e-4 (asserted <= 1e-3: a sigma scaled by 1.035
  // gives a median of 3.5e-2), but worst cases of 6.9e-3 shift sigma,
  // 4.2e-2 brightness sigma (growing with the Newton step), and 1.1e-2
  // (interior) / 2.5e-2 (detector's ends) in the sigmas (growing with how
  // fast the sigma changes with the shift). The 1e-3 precision holds
  // without refits (above); with them, docs/FIT.md states these bounds
  // (shift 1e-2, brightness 6e-2, sigma 2e-2 / 4e-2, chi2 5e-3, medians
  // 1e-3), asserted here. (In a default run the sigma that is written comes
  // from the final solve at the neighbours' reference, LineFitter::refit,
  // not from this covariance: it matters for sigma_reference = "self".)
  check_free_shift(2, {1e-2, 6e-2, 2e-2, 4e-2, 5e-3, 1e-3}, "free shift, 2 refits");
}

}  // namespace
}  // namespace exospec::kernels
