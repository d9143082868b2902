// The forward-model kernels against analytic answers.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "exospec/kernels/spectrum_model.hpp"

namespace exospec::kernels {
namespace {

TEST(Polynomial, HornerMatchesDirectSum) {
  const std::vector<double> c = {55.0, 0.0957, 2e-6, -1e-10};
  for (double x : {0.0, 1.0, 511.5, 1023.0}) {
    EXPECT_DOUBLE_EQ(eval_polynomial(c, x), c[0] + c[1] * x + c[2] * x * x + c[3] * x * x * x);
  }
  EXPECT_EQ(eval_polynomial({}, 3.0), 0.0);
  std::vector<double> wl(4), edges(5);
  pixel_wavelengths(c, wl);
  pixel_edges(c, edges);
  EXPECT_DOUBLE_EQ(wl[2], eval_polynomial(c, 2.0));
  EXPECT_DOUBLE_EQ(edges[0], eval_polynomial(c, -0.5));
  EXPECT_DOUBLE_EQ(edges[4], eval_polynomial(c, 3.5));
}

TEST(GaussianPixelAverage, KnownIntegrals) {
  // One sigma either side of the centre holds erf(1/sqrt 2) = 0.682689492137.
  EXPECT_NEAR(gaussian_pixel_average(-1.0, 1.0, 0.0, 1.0) * 2.0, 0.682689492137086, 1e-14);
  // Far tail: [5, 6] sigma holds (erfc(5/sqrt2) - erfc(6/sqrt2))/2 (scipy: 2.856649842341568e-07).
  EXPECT_NEAR(gaussian_pixel_average(5.0, 6.0, 0.0, 1.0), 2.856649842341568e-07, 1e-20);
  // Symmetry.
  EXPECT_DOUBLE_EQ(gaussian_pixel_average(-3.0, -2.0, 0.0, 1.0),
                   gaussian_pixel_average(2.0, 3.0, 0.0, 1.0));
}

TEST(LineProfile, IntegratesToOneAndKeepsTheCentroid) {
  // Non-linear dispersion, like the EUV channel.
  const std::vector<double> c = {55.0, 0.0957, 2e-6};
  std::vector<double> edges(1025);
  pixel_edges(c, edges);
  const std::vector<LineComponent> comps = {{121.567, 1.0}};
  const LineProfile prof = make_line_profile(edges, comps, 1.0);
  double area = 0.0, moment = 0.0;
  for (std::size_t i = 0; i < prof.values.size(); ++i) {
    const std::size_t p = prof.first + i;
    const double width = edges[p + 1] - edges[p];
    area += prof.values[i] * width;
    // Centroid of the exact Gaussian mass in this pixel, to first order.
    moment += prof.values[i] * width * 0.5 * (edges[p] + edges[p + 1]);
  }
  EXPECT_NEAR(area, 1.0, 1e-12);  // truncated at 8 sigma: missing mass 1e-15
  EXPECT_NEAR(moment / area, 121.567, 2e-3);
}

TEST(LineProfile, MultipletSplitsByFraction) {
  const std::vector<double> c = {145.0, 0.16, 0.0};
  std::vector<double> edges(1025);
  pixel_edges(c, edges);
  const std::vector<LineComponent> doublet = {{279.553, 2.0 / 3.0}, {280.271, 1.0 / 3.0}};
  const LineProfile prof = make_line_profile(edges, doublet, 1.5);
  const std::vector<LineComponent> k_only = {{279.553, 1.0}};
  const LineProfile k = make_line_profile(edges, k_only, 1.5);
  double area = 0.0;
  for (std::size_t i = 0; i < prof.values.size(); ++i) {
    area += prof.values[i] * (edges[prof.first + i + 1] - edges[prof.first + i]);
  }
  EXPECT_NEAR(area, 1.0, 1e-12);
  // Far on the blue side only the k component contributes, with 2/3 of its weight.
  const std::size_t p = k.first + 1;
  EXPECT_NEAR(prof.values[p - prof.first], 2.0 / 3.0 * k.values[1],
              1e-3 * k.values[1]);  // the h component adds ~4e-5 there
}

TEST(ExpectedCounts, DeadTimeIsWholeDetectorNonParalyzable) {
  const std::vector<double> radiance = {10.0, 20.0, 0.0, 5.0};
  const std::vector<double> response = {0.2, 0.1, 0.3, 0.0};  // last pixel dead
  const std::vector<double> dark = {0.02, 0.5, 0.02, 0.0};
  const double scale = 1.15, tau = 1e-3, t = 8.0;
  std::vector<double> out(4);
  const double f = expected_counts(radiance, response, dark, scale, tau, t, out);
  double total = 0.0;
  std::vector<double> r(4);
  for (int p = 0; p < 4; ++p) {
    r[p] = radiance[p] * response[p] + dark[p] * scale;
    total += r[p];
  }
  // Recorded total M = R / (1 + R tau).
  EXPECT_NEAR(f, 1.0 / (1.0 + total * tau), 1e-15);
  double recorded = 0.0;
  for (int p = 0; p < 4; ++p) {
    EXPECT_NEAR(out[p], r[p] * t / (1.0 + total * tau), 1e-13);
    recorded += out[p] / t;
  }
  EXPECT_NEAR(recorded, total / (1.0 + total * tau), 1e-13);
  EXPECT_EQ(out[3], 0.0);
}

}  // namespace
}  // namespace exospec::kernels
