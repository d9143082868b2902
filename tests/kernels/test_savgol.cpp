// Savitzky-Golay against shared/reference/savgol: the exact rational
// coefficients (Savitzky & Golay 1964 as corrected by Steinier et al. 1972) and
// scipy 1.10.1's savgol_coeffs / savgol_filter outputs for every edge mode.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "exospec/kernels/random.hpp"
#include "exospec/kernels/savgol.hpp"
#include "test_support.hpp"

namespace exospec::kernels {
namespace {

const auto kRef = test::reference_dir() / "savgol";

TEST(Savgol, ExactRationalCoefficients) {
  std::ifstream f(kRef / "sg_exact_coefficients.txt");
  ASSERT_TRUE(f) << "missing " << (kRef / "sg_exact_coefficients.txt");
  std::string line;
  int checked = 0;
  double worst = 0.0;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    int window = 0, order = 0, deriv = 0;
    char bar = 0;
    double norm = 0;
    in >> window >> order >> deriv >> bar >> norm >> bar;
    std::vector<double> exact;
    double num = 0;
    while (in >> num) exact.push_back(num / norm);
    ASSERT_EQ(exact.size(), static_cast<std::size_t>(window)) << line;
    const auto dot = savgol_coeffs(window, order, deriv, 1.0, std::nullopt, false);
    const auto conv = savgol_coeffs(window, order, deriv);
    for (std::size_t i = 0; i < exact.size(); ++i) {
      worst = std::max(worst, std::abs(dot[i] - exact[i]));
      ASSERT_NEAR(dot[i], exact[i], 1e-12) << window << " " << order << " " << deriv << " i " << i;
      // "conv" is the same array reversed.
      ASSERT_EQ(conv[exact.size() - 1 - i], dot[i]);
    }
    ++checked;
  }
  EXPECT_EQ(checked, 265);
  std::printf("%d coefficient sets, largest difference %.2e\n", checked, worst);
  EXPECT_LT(worst, 1e-16);  // docs/DENOISE.md: measured 2.8e-17
}

nlohmann::json golden() {
  std::ifstream f(kRef / "sg_scipy_golden.json");
  EXPECT_TRUE(f);
  return nlohmann::json::parse(f);
}

// Exact values of the scipy golden sets (tests/data/make_savgol_exact.py).
std::vector<std::vector<double>> exact_extra() {
  std::ifstream f(std::filesystem::path(EXOSPEC_SOURCE_DIR) / "tests/data/savgol_exact_extra.txt");
  EXPECT_TRUE(f);
  std::vector<std::vector<double>> out;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line.substr(line.find('|') + 1));
    std::vector<double> v;
    double x = 0;
    while (in >> x) v.push_back(x);
    out.push_back(v);
  }
  return out;
}

TEST(Savgol, ScipyCoefficients) {
  const auto g = golden();
  const auto exact = exact_extra();
  ASSERT_EQ(exact.size(), g["coeffs"].size());
  int checked = 0, scipy_inexact = 0;
  for (std::size_t k = 0; k < exact.size(); ++k) {
    const auto& c = g["coeffs"][k];
    std::optional<double> pos;
    if (!c["pos"].is_null()) pos = c["pos"].get<double>();
    const auto got = savgol_coeffs(c["window_length"].get<int>(), c["polyorder"].get<int>(),
                                   c["deriv"].get<int>(), c["delta"].get<double>(), pos,
                                   c["use"].get<std::string>() == "conv");
    const auto want = c["coeffs"].get<std::vector<double>>();
    ASSERT_EQ(got.size(), want.size());
    ASSERT_EQ(got.size(), exact[k].size());
    bool inexact = false;
    for (std::size_t i = 0; i < want.size(); ++i) {
      // Against the exact value: always within 1e-12.
      EXPECT_NEAR(got[i], exact[k][i], 1e-12) << c.dump();
      // Against scipy: within 1e-12 wherever scipy itself is exact to 1e-12.
      if (std::abs(want[i] - exact[k][i]) > 1e-12) {
        inexact = true;
        EXPECT_NEAR(got[i], want[i], 1e-8);  // scipy's own error
      } else {
        EXPECT_NEAR(got[i], want[i], 1e-12) << c.dump();
      }
    }
    if (inexact) {
      ++scipy_inexact;
      // Only the ill-conditioned window 31, polyorder 9 set.
      EXPECT_EQ(c["window_length"].get<int>(), 31);
    }
    ++checked;
  }
  EXPECT_EQ(checked, 14);
  EXPECT_EQ(scipy_inexact, 1);
}

TEST(Savgol, ScipyFilterEveryEdgeMode) {
  const auto g = golden();
  int checked = 0;
  double worst = 0.0;
  for (const auto& r : g["filter"]) {
    const auto x = r["input"].get<std::vector<double>>();
    const auto want = r["output"].get<std::vector<double>>();
    SavgolSettings s;
    s.window = r["window_length"].get<int>();
    s.polyorder = r["polyorder"].get<int>();
    s.deriv = r["deriv"].get<int>();
    s.delta = r["delta"].get<double>();
    s.cval = r["cval"].get<double>();
    s.mode = *parse_savgol_mode(r["mode"].get<std::string>());
    const SavgolFilter filter(x.size(), s);
    std::vector<double> y(x.size());
    filter.apply<double>(x, y);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double tol = 1e-12 * std::max(1.0, std::abs(want[i]));
      worst = std::max(worst, std::abs(y[i] - want[i]) / std::max(1.0, std::abs(want[i])));
      ASSERT_NEAR(y[i], want[i], tol) << r["signal"] << " " << r["mode"] << " i " << i;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 45);
  std::printf("%d scipy filter runs, largest (relative) difference %.2e\n", checked, worst);
  EXPECT_LT(worst, 2e-13);  // docs/DENOISE.md: measured 4.6e-14
}

TEST(Savgol, VarianceIsTheSumOfSquaredWeightsPerSource) {
  // Monte Carlo check of apply_variance, edges included: filter many noise
  // realisations with a known per-sample variance and compare.
  const std::size_t n = 30, trials = 40000;
  for (auto mode : {SavgolMode::kInterp, SavgolMode::kMirror, SavgolMode::kNearest,
                    SavgolMode::kConstant, SavgolMode::kWrap}) {
    SavgolSettings s;
    s.window = 7;
    s.polyorder = 2;
    s.mode = mode;
    const SavgolFilter filter(n, s);
    std::vector<double> var(n), predicted(n), x(n), y(n), sum2(n, 0.0);
    for (std::size_t i = 0; i < n; ++i) var[i] = 1.0 + static_cast<double>(i % 5);
    filter.apply_variance<double>(var, predicted);
    auto rng = Rng::stream(77, static_cast<std::uint64_t>(mode));
    for (std::size_t t = 0; t < trials; ++t) {
      for (std::size_t i = 0; i < n; ++i) x[i] = std::sqrt(var[i]) * rng.normal();
      filter.apply<double>(x, y);
      for (std::size_t i = 0; i < n; ++i) sum2[i] += y[i] * y[i];
    }
    for (std::size_t i = 0; i < n; ++i) {
      const double mc = sum2[i] / static_cast<double>(trials);
      // Relative standard error of a variance from 40000 samples: 0.7 %.
      EXPECT_NEAR(mc, predicted[i], 0.04 * predicted[i])
          << savgol_mode_name(mode) << " sample " << i;
    }
  }
}

TEST(Savgol, FloatMatchesDoubleAndRowsAreIndependent) {
  const std::size_t n = 200, rows = 3;
  SavgolSettings s;
  s.window = 21;
  s.polyorder = 4;
  s.mode = SavgolMode::kMirror;
  const SavgolFilter filter(n, s);
  auto rng = Rng::stream(5);
  std::vector<double> x(rows * n), y(rows * n);
  for (auto& v : x) v = 10.0 + rng.normal();
  std::vector<float> xf(x.begin(), x.end()), yf(rows * n);
  filter.apply_rows<double>(x, y);
  filter.apply_rows<float>(xf, yf);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(yf[i], y[i], 1e-5 * std::abs(y[i]));
  std::vector<double> one(n);
  filter.apply<double>(std::span<const double>(x).subspan(n, n), one);
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(one[i], y[n + i]);
}

TEST(Savgol, InterpEdgesAreTheFitAtEachPosition) {
  // Mode interp's edge outputs come from one factorisation per filter; each
  // must equal savgol_coeffs at that position (checked against scipy above),
  // for windows wider than the scipy golden sets. The filter's weights are its
  // responses to unit impulses.
  for (const auto& [window, order, deriv] : {std::tuple{21, 4, 0}, std::tuple{31, 5, 1},
                                            std::tuple{15, 2, 2}, std::tuple{41, 3, 0}}) {
    SavgolSettings s;
    s.window = window;
    s.polyorder = order;
    s.deriv = deriv;
    s.delta = 0.5;
    const std::size_t n = 2 * static_cast<std::size_t>(window) + 3;
    const auto h = static_cast<std::size_t>(window / 2);
    const SavgolFilter filter(n, s);
    double worst = 0.0, largest = 0.0;
    for (std::size_t src = 0; src < n; ++src) {
      std::vector<double> e(n, 0.0), y(n);
      e[src] = 1.0;
      filter.apply<double>(e, y);
      for (std::size_t j = 0; j < n; ++j) {
        if (j >= h && j < n - h) continue;
        const std::size_t start = j < h ? 0 : n - static_cast<std::size_t>(window);
        const auto c = savgol_coeffs(window, order, deriv, 0.5, static_cast<double>(j - start),
                                     /*use_conv=*/false);
        const double want =
            src >= start && src < start + static_cast<std::size_t>(window) ? c[src - start] : 0.0;
        worst = std::max(worst, std::abs(y[j] - want));
        largest = std::max(largest, std::abs(want));
      }
    }
    EXPECT_LT(worst, 1e-13 * largest) << window << " " << order << " " << deriv;
  }
}

TEST(Savgol, RejectsBadSettings) {
  EXPECT_THROW(savgol_coeffs(5, 5), std::invalid_argument);
  EXPECT_THROW(savgol_coeffs(5, 2, 0, 1.0, 5.0), std::invalid_argument);
  SavgolSettings s;
  s.window = 11;
  EXPECT_THROW(SavgolFilter(8, s), std::invalid_argument);  // interp needs n >= window
  s.window = 10;
  EXPECT_THROW(SavgolFilter(100, s), std::invalid_argument);  // even window
  EXPECT_EQ(savgol_coeffs(7, 2, 3), std::vector<double>(7, 0.0));  // deriv > polyorder
}

}  // namespace
}  // namespace exospec::kernels
