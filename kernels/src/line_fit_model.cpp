// The line fit's model: each window's pixel-integrated line profiles and their
// derivatives with respect to the shift and the width, from the normal CDF and
// density at the pixel edges (vectorised exp and erfc, vmath.hpp).
#include "line_fit_detail.hpp"
#include "vmath.hpp"

namespace exospec::kernels {
namespace line_fit_detail {

// col += f (cdf[i+1] - cdf[i]) / width_i; dcol += g (pdf[i+1] - pdf[i]) / width_i
// (with `first`, = instead of +=: a line's first component).
EXOSPEC_CLONES void add_component(std::size_t n, bool first, double f, double g, const double* cdf,
                                  const double* pdf, const double* iw, double* col, double* dcol) noexcept {
  if (first) {
    for (std::size_t i = 0; i < n; ++i) {
      col[i] = f * (cdf[i + 1] - cdf[i]) * iw[i];
      dcol[i] = g * (pdf[i + 1] - pdf[i]) * iw[i];
    }
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    col[i] += f * (cdf[i + 1] - cdf[i]) * iw[i];
    dcol[i] += g * (pdf[i + 1] - pdf[i]) * iw[i];
  }
}
// d2col += h (xpdf[i+1] - xpdf[i]) / width_i (= with `first`).
EXOSPEC_CLONES void add_component_curvature(std::size_t n, bool first, double h, const double* xpdf,
                                            const double* iw, double* d2col) noexcept {
  if (first) {
    for (std::size_t i = 0; i < n; ++i) d2col[i] = h * (xpdf[i + 1] - xpdf[i]) * iw[i];
    return;
  }
  for (std::size_t i = 0; i < n; ++i) d2col[i] += h * (xpdf[i + 1] - xpdf[i]) * iw[i];
}

// Phi, phi and x phi of a standard normal at x_k = (edge_k - mu) / sigma.
EXOSPEC_CLONES void normal_at_edges(const double* edges, std::size_t m, double mu, double inv_sigma,
                                    double* cdf, double* pdf, double* xpdf) noexcept {
  for (std::size_t k = 0; k < m; ++k) {
    const double x = (edges[k] - mu) * inv_sigma;
    double c, p;
    vmath::normal_cdf_pdf(x, c, p);
    cdf[k] = c;
    pdf[k] = p;
    xpdf[k] = x * p;
  }
}

// The profiles, first and second shift derivatives at shift s (rows of
// stride np) from the Taylor series at zero shift, terms to s^3 each.
// (__restrict: the rows do not overlap, so that GCC vectorises the loop
// without versioning it.)
EXOSPEC_CLONES void taylor_columns(std::size_t np, std::size_t nl, const double* __restrict T,
                                   double s, double* __restrict col, double* __restrict dcol,
                                   double* __restrict d2col) noexcept {
  const double h = 0.5 * s, t = s * (1.0 / 3.0);
  for (std::size_t a = 0; a < nl; ++a) {
    const double* __restrict C = T + a * kTaylorTerms * np;
    double* __restrict c = col + a * np;
    double* __restrict d = dcol + a * np;
    double* __restrict e = d2col + a * np;
    for (std::size_t i = 0; i < np; ++i) {
      const double c0 = C[i], c1 = C[np + i], c2 = C[2 * np + i], c3 = C[3 * np + i];
      const double c4 = C[4 * np + i], c5 = C[5 * np + i];
      c[i] = c0 + s * (c1 + h * (c2 + t * c3));
      d[i] = c1 + s * (c2 + h * (c3 + t * c4));
      e[i] = c2 + s * (c3 + h * (c4 + t * c5));
    }
  }
}

}  // namespace line_fit_detail
using namespace line_fit_detail;

void LineFitter::window_profiles(std::size_t wi, double shift_nm, double fwhm_nm, double* columns,
                                 const double* brightness, double* dshift, double* dsigma,
                                 Workspace& work) const {
  const Window& w = windows_[wi];
  const std::size_t n = w.size, nl = w.lines.size();
  if (n == 0) return;
  const double sigma = fwhm_nm / kFwhmPerSigma, inv_sigma = 1.0 / sigma;
  double* cdf = work.cdf.data();
  double* pdf = work.pdf.data();
  double* xpdf = work.xpdf.data();
  const double* iw = w.inv_width.data();
  if (dshift != nullptr) {
    std::fill(dshift, dshift + n, 0.0);
    std::fill(dsigma, dsigma + n, 0.0);
  }
  for (std::size_t a = 0; a < nl; ++a) {
    double* col = columns + a * n;
    std::fill(col, col + n, 0.0);
    for (std::size_t ci = w.component_begin[a]; ci < w.component_begin[a + 1]; ++ci) {
      const LineComponent& c = w.components[ci];
      normal_at_edges(w.edges.data(), w.edges.size(), c.wavelength_nm + shift_nm, inv_sigma, cdf, pdf,
                      xpdf);
      const double f = c.fraction;
      for (std::size_t i = 0; i < n; ++i) col[i] += f * (cdf[i + 1] - cdf[i]) * iw[i];
      if (dshift != nullptr) {
        // d/dmu Phi((e - mu)/s) = -phi/s; d/ds Phi((e - mu)/s) = -x phi/s.
        const double g = -brightness[a] * f * inv_sigma;
        for (std::size_t i = 0; i < n; ++i) {
          dshift[i] += g * (pdf[i + 1] - pdf[i]) * iw[i];
          dsigma[i] += g * (xpdf[i + 1] - xpdf[i]) * iw[i];
        }
      }
    }
  }
}

void LineFitter::profiles_and_shift_derivatives(std::size_t wi, double shift_nm, double fwhm_nm,
                                                double* columns, double* dcolumns, Workspace& work,
                                                double* d2columns, std::size_t stride) const {
  const Window& w = windows_[wi];
  const std::size_t n = w.size, nl = w.lines.size();
  if (n == 0) return;
  if (stride < n) stride = n;
  const double inv_sigma = kFwhmPerSigma / fwhm_nm;
  double* cdf = work.cdf.data();
  double* pdf = work.pdf.data();
  const double* iw = w.inv_width.data();
  for (std::size_t a = 0; a < nl; ++a) {
    double* col = columns + a * stride;
    double* dcol = dcolumns + a * stride;
    double* d2col = d2columns != nullptr ? d2columns + a * stride : nullptr;
    // (Zeros from n to the stride; a line without components is all zeros.)
    const bool empty = w.component_begin[a] == w.component_begin[a + 1];
    std::fill(col + (empty ? 0 : n), col + stride, 0.0);
    std::fill(dcol + (empty ? 0 : n), dcol + stride, 0.0);
    if (d2col != nullptr) std::fill(d2col + (empty ? 0 : n), d2col + stride, 0.0);
    for (std::size_t ci = w.component_begin[a]; ci < w.component_begin[a + 1]; ++ci) {
      const LineComponent& c = w.components[ci];
      const bool first = ci == w.component_begin[a];
      normal_at_edges(w.edges.data(), w.edges.size(), c.wavelength_nm + shift_nm, inv_sigma, cdf, pdf,
                      work.xpdf.data());
      // d/dmu Phi((e - mu)/s) = -phi/s
      add_component(n, first, c.fraction, -c.fraction * inv_sigma, cdf, pdf, iw, col, dcol);
      // d^2/dmu^2 Phi((e - mu)/s) = -x phi / s^2
      if (d2col != nullptr) {
        add_component_curvature(n, first, -c.fraction * inv_sigma * inv_sigma, work.xpdf.data(), iw, d2col);
      }
    }
  }
}

double* LineFitter::window_basis(std::size_t wi, double shift_nm, double fwhm_nm, Workspace& work) const {
  const Window& w = windows_[wi];
  const std::size_t nl = w.lines.size(), n = w.size;
  double* cols = work.columns.data();
  window_profiles(wi, shift_nm, fwhm_nm, cols, nullptr, nullptr, nullptr, work);
  std::copy(w.basis.begin() + static_cast<std::ptrdiff_t>(nl * n),
            w.basis.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(w.k) * n), cols + nl * n);
  return cols;
}

}  // namespace exospec::kernels
