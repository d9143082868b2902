// The simulator against an independent evaluation of the forward model of
// shared/INSTRUMENT.md, computed here from what the file itself holds
// (calibration, truth radiance, temperatures, exposures).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "exospec/io/input_file.hpp"
#include "exospec/kernels/ballistic.hpp"
#include "exospec/pipeline/simulate.hpp"
#include "test_support.hpp"

namespace exospec::pipeline {
namespace {

struct ChannelData {
  io::ChannelCalibration cal;
  std::uint64_t n = 0, p = 0;
  std::vector<std::uint32_t> counts, hits;
  std::vector<double> radiance, exposure;
  std::vector<float> temperature;
};

ChannelData load(const io::InputFile& in, const std::string& ch) {
  ChannelData d;
  d.cal = in.read_calibration(ch);
  d.n = in.spectra();
  d.p = in.pixels(ch);
  const auto& f = in.file();
  d.counts = f.read_all<std::uint32_t>("/raw/" + ch + "/counts");
  d.hits = f.read_all<std::uint32_t>("/truth/" + ch + "/particle_hit_counts");
  d.radiance = f.read_all<double>("/truth/" + ch + "/radiance");
  d.exposure = f.read_all<double>("/raw/" + ch + "/exposure_s");
  d.temperature = f.read_all<float>("/raw/" + ch + "/detector_temperature");
  return d;
}

// Expected counts of spectrum i, written out from INSTRUMENT.md's steps 1-3.
// Dead pixels (bad and not hot) record nothing; `dead_time` overrides tau when >= 0.
std::vector<double> expected(const ChannelData& d, std::uint64_t i, double dead_time = -1.0) {
  const double tau = dead_time >= 0.0 ? dead_time : d.cal.dead_time_s;
  std::vector<double> rate(d.p);
  double total = 0.0;
  const double dt = static_cast<double>(d.temperature[i]) - d.cal.dark_reference_temperature;
  for (std::uint64_t p = 0; p < d.p; ++p) {
    const bool dead = d.cal.bad_pixel[p] && d.cal.dark_rate[p] < 1.0;
    if (dead) continue;
    rate[p] = d.radiance[i * d.p + p] * d.cal.sensitivity[p] * d.cal.flat[p] +
              d.cal.dark_rate[p] * (1.0 + d.cal.dark_temperature_coeff * dt);
    total += rate[p];
  }
  for (auto& r : rate) r = r / (1.0 + total * tau) * d.exposure[i];
  return rate;
}

double mean(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}
double stddev(const std::vector<double>& v) {
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

TEST(Simulate, MeanCountsPerPixelMatchTheForwardModel) {
  auto config = test::small_config(400, 5);
  for (auto& [ch, m] : config.instrument) m.dead_pixels = 0;
  const auto path = test::simulate_to(config, test::scratch_dir("stats"), "sim.h5");
  const auto in = io::InputFile::open(path);
  for (const auto& ch : in.channels()) {
    const ChannelData d = load(in, ch);
    std::vector<double> sum_obs(d.p, 0.0), sum_exp(d.p, 0.0);
    for (std::uint64_t i = 0; i < d.n; ++i) {
      const auto mu = expected(d, i);
      for (std::uint64_t p = 0; p < d.p; ++p) {
        sum_obs[p] += d.counts[i * d.p + p] - d.hits[i * d.p + p];
        sum_exp[p] += mu[p];
      }
    }
    // Per pixel: (observed - expected) / sqrt(expected) over 400 spectra ~ N(0, 1).
    std::vector<double> z;
    for (std::uint64_t p = 0; p < d.p; ++p) {
      ASSERT_GT(sum_exp[p], 0.0);
      z.push_back((sum_obs[p] - sum_exp[p]) / std::sqrt(sum_exp[p]));
    }
    EXPECT_NEAR(mean(z), 0.0, 5.0 / std::sqrt(static_cast<double>(z.size()))) << ch;
    EXPECT_NEAR(stddev(z), 1.0, 0.08) << ch;
    for (double x : z) EXPECT_LT(std::fabs(x), 5.5) << ch;
  }
}

TEST(Simulate, DeadTimeIsOneFactorFromTheWholeDetectorRate) {
  auto config = test::small_config(200, 6, {"euv"});
  auto& m = config.instrument.at("euv");
  m.dead_time_s = 1e-4;  // Lyman-alpha at kR: 20-50 % losses
  m.particle_hit_rate = 0.0;
  const auto path = test::simulate_to(config, test::scratch_dir("deadtime"), "sim.h5");
  const auto in = io::InputFile::open(path);
  const ChannelData d = load(in, "euv");
  std::vector<double> z, z_no_deadtime, loss;
  for (std::uint64_t i = 0; i < d.n; ++i) {
    const auto mu = expected(d, i);
    const auto mu0 = expected(d, i, 0.0);
    double obs = 0, e = 0, e0 = 0;
    for (std::uint64_t p = 0; p < d.p; ++p) {
      obs += d.counts[i * d.p + p];
      e += mu[p];
      e0 += mu0[p];
    }
    z.push_back((obs - e) / std::sqrt(e));
    z_no_deadtime.push_back((obs - e0) / std::sqrt(e0));
    loss.push_back(1.0 - e / e0);
  }
  EXPECT_GT(*std::max_element(loss.begin(), loss.end()), 0.2);
  EXPECT_NEAR(mean(z), 0.0, 5.0 / std::sqrt(static_cast<double>(z.size())));
  EXPECT_NEAR(stddev(z), 1.0, 0.15);
  EXPECT_LT(mean(z_no_deadtime), -10.0);  // ignoring dead time is grossly wrong
}

TEST(Simulate, DarkFollowsTheDetectorTemperature) {
  auto config = test::small_config(300, 8, {"euv"});
  auto& m = config.instrument.at("euv");
  m.dark_rate = 2.0;
  m.dark_rate_rms = 0.0;
  m.hot_pixels = 0;
  m.dead_pixels = 0;
  m.continuum = 0.0;
  m.particle_hit_rate = 0.0;
  m.dead_time_s = 0.0;
  m.temperature_amplitude = 10.0;
  m.temperature_period_s = 1000.0;
  for (auto& [name, e] : config.exosphere.at("euv")) e = LineEmission{0.0, 100.0, 0.0};
  const auto path = test::simulate_to(config, test::scratch_dir("dark"), "sim.h5");
  const auto in = io::InputFile::open(path);
  const ChannelData d = load(in, "euv");
  // Regress total counts on temperature: counts = a + b (T - T_ref), b/a = coeff.
  double st = 0, sc = 0, stt = 0, stc = 0;
  const double n = static_cast<double>(d.n);
  for (std::uint64_t i = 0; i < d.n; ++i) {
    const double t = static_cast<double>(d.temperature[i]) - d.cal.dark_reference_temperature;
    double c = 0;
    for (std::uint64_t p = 0; p < d.p; ++p) c += d.counts[i * d.p + p];
    st += t;
    sc += c;
    stt += t * t;
    stc += t * c;
  }
  const double b = (n * stc - st * sc) / (n * stt - st * st);
  const double a = (sc - b * st) / n;
  const double expected_a = 2.0 * static_cast<double>(d.p) * 8.0;
  EXPECT_NEAR(a / expected_a, 1.0, 0.002);
  EXPECT_NEAR(b / a, 0.03, 0.0005);
  EXPECT_EQ(d.cal.dark_temperature_coeff, 0.03);
}

TEST(Simulate, HotAndDeadPixelsAndParticleHits) {
  auto config = test::small_config(500, 9, {"fuv"});
  auto& m = config.instrument.at("fuv");
  m.particle_hit_rate = 2.0;
  m.hot_pixels = 5;
  m.dead_pixels = 3;
  const auto path = test::simulate_to(config, test::scratch_dir("hits"), "sim.h5");
  const auto in = io::InputFile::open(path);
  const ChannelData d = load(in, "fuv");
  EXPECT_EQ(std::count(d.cal.bad_pixel.begin(), d.cal.bad_pixel.end(), 1), 8);
  int hot = 0, dead = 0;
  for (std::uint64_t p = 0; p < d.p; ++p) {
    if (!d.cal.bad_pixel[p]) continue;
    if (d.cal.dark_rate[p] >= 2.0) {
      ++hot;
    } else {
      ++dead;
      for (std::uint64_t i = 0; i < d.n; ++i) ASSERT_EQ(d.counts[i * d.p + p], 0u);
    }
  }
  EXPECT_EQ(hot, 5);
  EXPECT_EQ(dead, 3);
  // Hits: Poisson(2) per spectrum, 1-3 pixels each, 10-60 counts per pixel.
  std::uint64_t spectra_with_hits = 0, hit_pixels = 0;
  for (std::uint64_t i = 0; i < d.n; ++i) {
    bool any = false;
    for (std::uint64_t p = 0; p < d.p; ++p) {
      const auto h = d.hits[i * d.p + p];
      ASSERT_LE(h, d.counts[i * d.p + p]);
      if (h) {
        any = true;
        ++hit_pixels;
        EXPECT_GE(h, 10u);
      }
    }
    spectra_with_hits += any;
  }
  const double frac = static_cast<double>(spectra_with_hits) / static_cast<double>(d.n);
  EXPECT_NEAR(frac, 1.0 - std::exp(-2.0), 5 * std::sqrt(0.86 * 0.14 / 500.0));
  // Mean 2 hits of mean width 2 pixels per spectrum (fewer at the edges and on overlaps).
  EXPECT_NEAR(static_cast<double>(hit_pixels) / static_cast<double>(d.n), 4.0, 0.4);
}

TEST(Simulate, SameSeedGivesIdenticalDatasetsForAnyThreadCountAndBlockSize) {
  const auto dir = test::scratch_dir("determinism");
  auto a = test::small_config(300, 11);
  a.block_rows = 256;
  auto b = a;
  b.block_rows = 37;
  auto c = a;
  c.seed = 12;
  const auto pa = test::simulate_to(a, dir, "a.h5", 1);
  const auto pb = test::simulate_to(b, dir, "b.h5", 2);
  const auto pc = test::simulate_to(c, dir, "c.h5", 2);
  const auto fa = io::File::open(pa), fb = io::File::open(pb), fc = io::File::open(pc);
  int compared = 0;
  for (const auto& group : {"/raw/euv", "/raw/fuv", "/calibration/euv", "/calibration/fuv",
                            "/truth/euv", "/truth/fuv", "/geometry"}) {
    for (const auto& name : fa.children(group)) {
      const std::string obj = std::string(group) + "/" + name;
      if (fa.dataset_info(obj).dtype == io::DType::kString) {
        EXPECT_EQ(fa.read_strings(obj), fb.read_strings(obj)) << obj;
      } else {
        // Compare as raw float64/uint32 values, exactly.
        EXPECT_EQ(fa.read_all<double>(obj), fb.read_all<double>(obj)) << obj;
      }
      ++compared;
    }
  }
  EXPECT_EQ(compared, 2 * (3 + 5 + 6 + 3) + 2);  // (truth: 6 datasets and the 3 of the profile)
  EXPECT_NE(fa.read_all<std::uint32_t>("/raw/euv/counts"),
            fc.read_all<std::uint32_t>("/raw/euv/counts"));
}

TEST(Simulate, TruthFollowsTheExosphereAndGeometry) {
  const auto dir = test::scratch_dir("truth");
  for (const Preset preset : {Preset::kLimbScan, Preset::kFlyby}) {
    auto config = test::small_config(120, 3);
    config.preset = preset;
    const auto path = test::simulate_to(config, dir, std::string(preset_name(preset)) + ".h5");
    const auto in = io::InputFile::open(path);
    const auto& f = in.file();
    const auto z = f.read_all<double>("/geometry/tangent_altitude_km");
    const auto t = f.read_all<double>("/geometry/time");
    for (std::size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], 10.0, 1e-6);
    EXPECT_NEAR(t[0], 849355200.0 + 4.0, 1e-6);  // 2026-12-01T00:00:00Z + half the exposure
    if (preset == Preset::kLimbScan) {
      EXPECT_EQ(z[0], 0.0);
      EXPECT_NEAR(z[49], 5000.0, 1e-9);
      EXPECT_EQ(z[50], 0.0);
    } else {
      const double zmin = *std::min_element(z.begin(), z.end());
      EXPECT_NEAR(zmin, 200.0, 2.0);
      // Straight pass: z = sqrt((R + z_ca)^2 + (v dt)^2) - R, dt = 59.5 cadences from closest
      // approach.
      const double r0 = config.mercury_radius_km + config.flyby_closest_approach_km;
      const double d = config.flyby_speed_km_s * 59.5 * config.cadence_s;
      EXPECT_NEAR(z.front(), std::sqrt(r0 * r0 + d * d) - config.mercury_radius_km, 1e-6);
      EXPECT_NEAR(z.back(), z.front(), 1e-6);
    }
    for (const auto& ch : in.channels()) {
      const auto names = in.truth_line_names(ch);
      const auto b = f.read_all<double>("/truth/" + ch + "/line_brightness");
      const auto& ex = config.exosphere.at(ch);
      for (std::size_t i = 0; i < z.size(); ++i) {
        for (std::size_t j = 0; j < names.size(); ++j) {
          const auto& e = ex.at(names[j]);
          // (The column shape C(z; T) / C(0; T) is checked against its defining
          // integrals in test_exosphere.)
          const double mass = kernels::exosphere::species_mass_amu(names[j]).value();
          EXPECT_NEAR(b[i * names.size() + j],
                      e.surface_brightness_R * kernels::exosphere::column_ratio(z[i], mass, e.temperature_K) +
                          e.background_R,
                      1e-9 * (e.surface_brightness_R + e.background_R));
        }
      }
    }
  }
}

TEST(Simulate, TruthRadianceHoldsEachLinesBrightness) {
  auto config = test::small_config(20, 4, {"euv"});
  const auto path = test::simulate_to(config, test::scratch_dir("radiance"), "sim.h5");
  const auto in = io::InputFile::open(path);
  const auto cal = in.read_calibration("euv");
  const auto radiance = in.file().read_all<double>("/truth/euv/radiance");
  const auto brightness = in.file().read_all<double>("/truth/euv/line_brightness");
  const auto& m = config.instrument.at("euv");
  const std::uint64_t P = in.pixels("euv");
  auto lambda = [&](double x) {
    double y = 0, xp = 1;
    for (double c : cal.wavelength_coeffs) {
      y += c * xp;
      xp *= x;
    }
    return y;
  };
  // He I 58.433 (line 0) is alone: integrate radiance minus continuum over +-8 sigma.
  const double sigma = m.lsf_fwhm_nm / 2.3548200450309493;
  const double mid = 0.5 * (m.wavelength_min_nm + m.wavelength_max_nm);
  for (std::uint64_t i = 0; i < in.spectra(); ++i) {
    double integral = 0.0;
    for (std::uint64_t p = 0; p < P; ++p) {
      const double lo = lambda(static_cast<double>(p) - 0.5),
                   hi = lambda(static_cast<double>(p) + 0.5);
      if (hi < 58.433 - 9 * sigma || lo > 58.433 + 9 * sigma) continue;
      const double continuum = m.continuum + m.continuum_slope * (0.5 * (lo + hi) - mid);
      integral += (radiance[i * P + p] - continuum) * (hi - lo);
    }
    EXPECT_NEAR(integral, brightness[i * 4 + 0], 1e-9 * brightness[i * 4 + 0]);
  }
}

}  // namespace
}  // namespace exospec::pipeline
