// The line fit's windows: grouping of the catalogue's lines into fit windows,
// their pixel ranges, bases, initial-shift search ranges and Taylor series,
// and the per-thread workspaces (set-up; allocates).
#include <stdexcept>

#include "exospec/kernels/spectrum_model.hpp"
#include "line_fit_detail.hpp"
#include "vmath.hpp"

namespace exospec::kernels {
using namespace line_fit_detail;
namespace {

std::pair<double, double> extent(const FitLineSpec& l) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& c : l.components) {
    lo = std::min(lo, c.wavelength_nm);
    hi = std::max(hi, c.wavelength_nm);
  }
  return {lo, hi};
}

// d^j/dmu^j Phi((e - mu)/sigma) for j = 0..5 at x = (e - mu)/sigma:
// Phi(x) (the tail as a small number), then -He_{j-1}(x) phi(x) / sigma^j
// (He: the probabilists' Hermite polynomials, He_{k+1} = x He_k - k He_{k-1}).
void shift_derivatives_at_edge(double x, double inv_sigma, double* d) {
  const double tail = 0.5 * std::erfc(std::fabs(x) * vmath::kInvSqrt2);
  d[0] = x < 0.0 ? tail : 1.0 - tail;
  const double phi = vmath::kInvSqrt2Pi * std::exp(-0.5 * x * x);
  double he_prev = 0.0, he = 1.0, scale = inv_sigma;  // He_{-1} (unused), He_0
  for (std::size_t j = 1; j < kTaylorTerms; ++j) {
    d[j] = -he * phi * scale;
    const double next = x * he - static_cast<double>(j - 1) * he_prev;
    he_prev = he;
    he = next;
    scale *= inv_sigma;
  }
}

}  // namespace

LineFitter::LineFitter(std::span<const double> wavelength_coeffs, std::size_t pixels,
                       std::vector<FitLineSpec> lines, const LineFitSettings& settings)
    : pixels_(pixels), lines_(std::move(lines)), settings_(settings) {
  if (settings.background_order < 0 || settings.background_order > 2) {
    throw std::invalid_argument("background order must be 0, 1 or 2");
  }
  if (!(settings.fwhm_nm > 0.0)) throw std::invalid_argument("the line FWHM must be > 0");
  if (!(settings.max_shift_fwhm >= 0.0)) throw std::invalid_argument("max_shift_fwhm must be >= 0");
  if (settings.max_iterations < 1) throw std::invalid_argument("max_iterations must be >= 1");
  const std::size_t L = lines_.size();
  line_window_.assign(L, 0);
  line_column_.assign(L, 0);
  if (L == 0 || pixels < 2) return;
  std::vector<double> wl(pixels), edges(pixels + 1);
  pixel_wavelengths(wavelength_coeffs, wl);
  pixel_edges(wavelength_coeffs, edges);
  // Lines in wavelength order, grouped into windows.
  std::vector<std::size_t> order(L);
  for (std::size_t j = 0; j < L; ++j) order[j] = j;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return extent(lines_[a]).first < extent(lines_[b]).first;
  });
  const double fwhm = settings.fwhm_nm;
  std::vector<std::vector<std::size_t>> groups;
  double group_hi = -std::numeric_limits<double>::infinity();
  for (std::size_t j : order) {
    const auto [lo, hi] = extent(lines_[j]);
    if (groups.empty() || lo - group_hi > settings.group_distance_fwhm * fwhm) {
      groups.push_back({});
      group_hi = hi;
    }
    groups.back().push_back(j);
    group_hi = std::max(group_hi, hi);
  }
  const int nbg = settings.background_order + 1;
  for (const auto& g : groups) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (std::size_t j : g) {
      lo = std::min(lo, extent(lines_[j]).first);
      hi = std::max(hi, extent(lines_[j]).second);
    }
    lo -= settings.window_half_width_fwhm * fwhm;
    hi += settings.window_half_width_fwhm * fwhm;
    // Pixels whose centre lies in [lo, hi] (the solution is monotonic).
    std::size_t first = pixels, last = 0;
    for (std::size_t p = 0; p < pixels; ++p) {
      if (wl[p] >= lo && wl[p] <= hi) {
        first = std::min(first, p);
        last = std::max(last, p);
      }
    }
    Window w;
    w.lines = g;
    w.k = static_cast<int>(g.size()) + nbg;
    if (w.k > kMaxParams) throw std::invalid_argument("too many lines in one fit window");
    if (first <= last) {
      w.first = first;
      w.size = last - first + 1;
    }
    w.basis.assign(w.size * static_cast<std::size_t>(w.k), 0.0);
    w.edges.assign(edges.begin() + static_cast<std::ptrdiff_t>(w.first),
                   edges.begin() + static_cast<std::ptrdiff_t>(w.first + w.size + (w.size > 0 ? 1 : 0)));
    // Padded to a multiple of kLanes with the last edge, so that the
    // vectorised edge loop has no scalar remainder.
    if (!w.edges.empty()) w.edges.resize(padded(w.edges.size()), w.edges.back());
    w.inv_width.resize(w.size);
    for (std::size_t i = 0; i < w.size; ++i) w.inv_width[i] = 1.0 / (w.edges[i + 1] - w.edges[i]);
    w.component_begin.push_back(0);
    for (std::size_t j : g) {
      double total = 0.0;
      for (const auto& c : lines_[j].components) total += c.fraction;
      for (const auto& c : lines_[j].components) {
        w.components.push_back({c.wavelength_nm, total > 0.0 ? c.fraction / total : 0.0});
      }
      w.component_begin.push_back(w.components.size());
    }
    // Line profiles over the window's pixels.
    const auto window_edges = std::span<const double>(edges).subspan(w.first, w.size + 1);
    for (std::size_t c = 0; c < g.size(); ++c) {
      if (w.size == 0) break;
      // (The window's normalised fractions: a caller's 2:1 is 2/3:1/3, as in
      // window_profiles, so that the fixed and the nonlinear paths agree.)
      const auto comps = std::span<const LineComponent>(w.components)
                             .subspan(w.component_begin[c], w.component_begin[c + 1] - w.component_begin[c]);
      const LineProfile prof = make_line_profile(window_edges, comps, fwhm, 12.0);
      for (std::size_t i = 0; i < prof.values.size(); ++i) {
        const std::size_t row = prof.first + i;
        if (row < w.size) w.basis[c * w.size + row] = prof.values[i];
      }
      line_window_[g[c]] = windows_.size();
      line_column_[g[c]] = c;
    }
    // The initial shift's search range of each line.
    const double max_shift = settings.max_shift_fwhm * fwhm;
    for (std::size_t a = 0; a < g.size(); ++a) {
      const LineComponent* strongest = &w.components[w.component_begin[a]];
      for (std::size_t ci = w.component_begin[a]; ci < w.component_begin[a + 1]; ++ci) {
        if (w.components[ci].fraction > strongest->fraction) strongest = &w.components[ci];
      }
      const double l0 = strongest->wavelength_nm;
      std::size_t begin = w.size, end = 0;
      for (std::size_t i = 1; i + 1 < w.size; ++i) {
        if (std::abs(0.5 * (w.edges[i] + w.edges[i + 1]) - l0) <= max_shift) {
          begin = std::min(begin, i);
          end = i + 1;
        }
      }
      w.strongest_nm.push_back(l0);
      w.reach_begin.push_back(begin);
      w.reach_end.push_back(std::max(begin, end));
    }
    // With the width fixed: the Taylor series of the profiles at zero shift.
    if (settings.width == WidthMode::kFixed && w.size > 0) {
      const std::size_t np = padded(w.size);
      const double inv_sigma = kFwhmPerSigma / fwhm;
      w.taylor.assign(g.size() * kTaylorTerms * np, 0.0);
      for (std::size_t a = 0; a < g.size(); ++a) {
        double* T = w.taylor.data() + a * kTaylorTerms * np;
        for (std::size_t ci = w.component_begin[a]; ci < w.component_begin[a + 1]; ++ci) {
          const LineComponent& c = w.components[ci];
          double below[kTaylorTerms], above[kTaylorTerms];
          shift_derivatives_at_edge((w.edges[0] - c.wavelength_nm) * inv_sigma, inv_sigma, below);
          for (std::size_t i = 0; i < w.size; ++i) {
            shift_derivatives_at_edge((w.edges[i + 1] - c.wavelength_nm) * inv_sigma, inv_sigma,
                                      above);
            for (std::size_t j = 0; j < kTaylorTerms; ++j) {
              T[j * np + i] += c.fraction * (above[j] - below[j]) * w.inv_width[i];
              below[j] = above[j];
            }
          }
        }
      }
    }
    // Background: monomials in x = (lambda - centre) / half-span.
    const double centre = 0.5 * (lo + hi), half = std::max(0.5 * (hi - lo), 1e-12);
    for (int b = 0; b < nbg; ++b) {
      for (std::size_t i = 0; i < w.size; ++i) {
        const double x = (wl[w.first + i] - centre) / half;
        w.basis[(g.size() + static_cast<std::size_t>(b)) * w.size + i] = std::pow(x, b);
      }
    }
    w.state = state_size_;
    state_size_ += static_cast<std::size_t>(w.k) + 3;
    windows_.push_back(std::move(w));
  }
}

std::span<const double> LineFitter::profile(std::size_t line) const noexcept {
  const Window& w = windows_[line_window_[line]];
  return std::span<const double>(w.basis).subspan(line_column_[line] * w.size, w.size);
}

LineFitter::Workspace LineFitter::make_workspace() const {
  std::size_t mx = 0;
  for (const auto& w : windows_) mx = std::max(mx, w.size);
  Workspace ws;
  // (Rows of the shift-only fit have the padded stride padded(n).)
  const std::size_t mp = padded(mx);
  for (auto* v : {&ws.model, &ws.y, &ws.dshift, &ws.dsigma, &ws.sqrt_weight}) v->assign(mx, 0.0);
  ws.weight.assign(mp, 0.0);
  for (auto* v : {&ws.cdf, &ws.pdf, &ws.xpdf}) v->assign(padded(mx + 1), 0.0);
  ws.weighted.assign(mp * (kMaxParams + 2), 0.0);
  ws.residual.assign(mx, 0.0);
  ws.columns.assign(mp * kMaxParams, 0.0);
  ws.dcolumns.assign(mp * kMaxParams, 0.0);
  ws.d2columns.assign(mp * kMaxParams, 0.0);
  ws.solvers = std::make_unique<Workspace::Solvers>();
  auto& sv = *ws.solvers;
  sv.solution.resize(windows_.size());
  LmOptions opt;
  opt.use_qr = false;  // small, well-conditioned normal equations: Cholesky
  opt.jacobian_with_trial = true;  // the Jacobian costs little more than the model
  opt.max_iterations = settings_.max_iterations;
  // Tolerances: a step below 1e-6 of the Marquardt-scaled parameter norm
  // moves a line by ~1e-6 FWHM, far below any shift's uncertainty (about 4
  // iterations, 5 evaluations from the linear start); ftol and gtol are
  // MINPACK's usual sqrt(machine epsilon).
  opt.ftol = 1e-8;
  opt.xtol = 1e-6;
  opt.gtol = 1e-8;
  // The shift alone (variable projection): also stop at a step below 1e-3
  // of its standard error (with one parameter, xtol relative to the shift
  // itself would ask for 1e-7 nm near zero shift, a few more iterations).
  // And stop, without evaluating it, before a Newton step below 3e-2 of the
  // standard error; solve_nonlinear takes that step on the quadratic model,
  // which leaves the shift within ~1e-7 and the brightness within ~1e-4 of
  // their standard errors of the minimum (test: FreeShiftIsTheMinimumOf-
  // Chi2OverTheShift), for one evaluation less per window (2.2 instead of 3.7).
  LmOptions shift_opt = opt;
  shift_opt.step_tol = 1e-3;
  shift_opt.newton_tol = 3e-2;
  const double max_shift = settings_.max_shift_fwhm * settings_.fwhm_nm;
  sv.lm.reserve(windows_.size());
  sv.shift_lm.reserve(windows_.size());
  sv.p.reserve(windows_.size());
  for (const auto& w : windows_) {
    const int np = w.k + 2;
    sv.shift_lm.emplace_back(1, static_cast<int>(std::max<std::size_t>(w.size, 1)), shift_opt);
    sv.shift_lm.back().set_bounds(0, -max_shift, max_shift);
    sv.lm.emplace_back(np, static_cast<int>(std::max<std::size_t>(w.size, 1)), opt);
    sv.p.emplace_back(ParamVec::Zero(np));
    auto& lm = sv.lm.back();
    lm.set_bounds(w.k, -max_shift, max_shift);
    lm.set_bounds(w.k + 1, 0.5 * settings_.fwhm_nm, 2.0 * settings_.fwhm_nm);
    if (settings_.width == WidthMode::kFixed) lm.set_fixed(w.k + 1);
    sv.solution[sv.lm.size() - 1].beta.resize(w.k);
    sv.solution[sv.lm.size() - 1].sigma.resize(w.k);
  }
  return ws;
}

}  // namespace exospec::kernels
