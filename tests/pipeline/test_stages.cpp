// The in-memory stage API (pipeline/stages.hpp) against `run` on the same
// data: calibrate, denoise and fit rows held in the caller's arrays give the
// very bytes run() writes, for 1 and 2 threads; wrong shapes and stages that
// are not configured are errors, not crashes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "exospec/io/file.hpp"
#include "exospec/io/input_file.hpp"
#include "exospec/pipeline/run.hpp"
#include "exospec/pipeline/stages.hpp"
#include "test_support.hpp"

namespace exospec {
namespace {

template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

TEST(ChannelStages, InMemoryStagesEqualTheRunOutput) {
  const auto dir = test::scratch_dir("stages");
  const auto in_path = test::simulate_to(test::small_config(90, 17), dir, "in.h5");
  const auto config = pipeline::load_run_config();
  pipeline::run(config, in_path, dir / "out.h5", true, 2);
  const auto in = io::InputFile::open(in_path);
  const auto out = io::File::open(dir / "out.h5");
  const std::size_t N = in.spectra();
  for (const std::string ch : {"euv", "fuv"}) {
    for (int threads : {1, 2}) {
      pipeline::ChannelStages st(config, ch, in.read_calibration(ch), threads);
      const std::size_t P = st.pixels(), L = st.lines();
      ASSERT_EQ(P, in.pixels(ch));
      std::vector<std::uint32_t> counts(N * P);
      std::vector<double> exposure(N), temperature(N);
      std::vector<float> temperature_f(N);
      in.read_counts(ch, 0, counts);
      in.read_exposure(ch, 0, exposure);
      in.read_temperature(ch, 0, temperature_f);
      for (std::size_t r = 0; r < N; ++r) temperature[r] = temperature_f[r];
      std::vector<float> rad(N * P), var(N * P), drad(N * P), dvar(N * P);
      std::vector<std::uint8_t> q(N * P);
      std::vector<double> scale(N * P), offset(N * P);
      ASSERT_TRUE(st.needs_count_model());
      // (The altitudes: the calibrated variance pools the neighbouring
      // spectra of each scan, and the fit's final solve takes its reference
      // from them, the scans found from the altitudes as run() does.)
      std::vector<double> altitude(N);
      in.read_altitude(0, altitude);
      const pipeline::RowGeometry geometry{altitude};
      const pipeline::CalibratedRows cal{rad, var, q, scale, offset};
      st.calibrate(counts, exposure, temperature, cal, geometry);
      st.denoise(cal, {drad, dvar});
      std::vector<double> b(N * L), s(N * L), c(N * L), w(N * L);
      std::vector<float> chi(N * L);
      std::vector<std::uint8_t> status(N * L);
      st.fit(cal, drad, {b, s, c, w, chi, status}, geometry);
      const std::string g = "/" + ch;
      EXPECT_TRUE(same_bytes(rad, out.read_all<float>("/calibrated" + g + "/radiance"))) << ch << threads;
      EXPECT_TRUE(same_bytes(var, out.read_all<float>("/calibrated" + g + "/variance"))) << ch << threads;
      EXPECT_TRUE(same_bytes(q, out.read_all<std::uint8_t>("/calibrated" + g + "/quality"))) << ch;
      EXPECT_TRUE(same_bytes(drad, out.read_all<float>("/denoised" + g + "/radiance"))) << ch << threads;
      EXPECT_TRUE(same_bytes(b, out.read_all<double>("/fit" + g + "/brightness"))) << ch << threads;
      EXPECT_TRUE(same_bytes(s, out.read_all<double>("/fit" + g + "/brightness_sigma"))) << ch << threads;
      EXPECT_TRUE(same_bytes(c, out.read_all<double>("/fit" + g + "/center_nm"))) << ch << threads;
      EXPECT_TRUE(same_bytes(status, out.read_all<std::uint8_t>("/fit" + g + "/status"))) << ch;
      // All stages in one pass (what run() calls): the same bytes again.
      std::vector<float> rad1(N * P), var1(N * P), drad1(N * P), dvar1(N * P), chi1(N * L);
      std::vector<std::uint8_t> q1(N * P), status1(N * L);
      std::vector<double> scale1(N * P), offset1(N * P), b1(N * L), s1(N * L), c1(N * L), w1(N * L);
      const auto secs = st.process(counts, exposure, temperature, {rad1, var1, q1, scale1, offset1},
                                   {drad1, dvar1}, {b1, s1, c1, w1, chi1, status1}, geometry);
      EXPECT_TRUE(same_bytes(rad1, rad) && same_bytes(var1, var) && same_bytes(q1, q)) << ch << threads;
      EXPECT_TRUE(same_bytes(drad1, drad) && same_bytes(dvar1, dvar)) << ch << threads;
      EXPECT_TRUE(same_bytes(b1, b) && same_bytes(s1, s) && same_bytes(c1, c) && same_bytes(w1, w) &&
                  same_bytes(chi1, chi) && same_bytes(status1, status))
          << ch << threads;
      EXPECT_GT(secs.calibrate, 0.0);
      EXPECT_GT(secs.denoise, 0.0);
      EXPECT_GT(secs.fit, 0.0);
      // Without count model rows (only the fit uses it: process() makes each
      // row's where the fit reads it), and with the radiance made first on
      // its own (what run()'s I/O thread does): the same bytes again.
      ASSERT_FALSE(st.needs_count_model_rows());
      {
        std::vector<float> rad3(N * P), var3(N * P), drad3(N * P), dvar3(N * P), chi3(N * L);
        std::vector<std::uint8_t> q3(N * P), status3(N * L);
        std::vector<double> b3(N * L), s3(N * L), c3(N * L), w3(N * L);
        for (const bool ready : {false, true}) {
          const pipeline::CalibratedRows cal3{rad3, var3, q3, {}, {}};
          if (ready) {
            std::fill(rad3.begin(), rad3.end(), 0.0f);
            std::fill(q3.begin(), q3.end(), std::uint8_t{0});
            EXPECT_GT(st.calibrate_radiance(counts, exposure, temperature, cal3), 0.0);
            EXPECT_TRUE(same_bytes(rad3, rad) && same_bytes(q3, q)) << ch << threads;
          }
          st.process(counts, exposure, temperature, cal3, {drad3, dvar3}, {b3, s3, c3, w3, chi3, status3}, geometry,
                     {}, ready);
          EXPECT_TRUE(same_bytes(rad3, rad) && same_bytes(var3, var) && same_bytes(q3, q)) << ch << threads << ready;
          EXPECT_TRUE(same_bytes(drad3, drad) && same_bytes(dvar3, dvar)) << ch << threads << ready;
          EXPECT_TRUE(same_bytes(b3, b) && same_bytes(s3, s) && same_bytes(c3, c) && same_bytes(w3, w) &&
                      same_bytes(chi3, chi) && same_bytes(status3, status))
              << ch << threads << ready;
        }
      }
      // The denoised rows as the fit's initial guesses only (run() without
      // /denoised): the same fits to the bit; the denoised values the same
      // where computed (the fit windows), NaN elsewhere.
      st.denoise_for_fit_only();
      std::vector<float> drad2(N * P), dvar2(N * P);
      st.process(counts, exposure, temperature, {rad1, var1, q1, scale1, offset1}, {drad2, dvar2},
                 {b1, s1, c1, w1, chi1, status1}, geometry);
      EXPECT_TRUE(same_bytes(b1, b) && same_bytes(s1, s) && same_bytes(c1, c) && same_bytes(w1, w) &&
                  same_bytes(chi1, chi) && same_bytes(status1, status))
          << ch << threads;
      std::size_t computed = 0, skipped = 0;
      for (std::size_t i = 0; i < drad.size(); ++i) {
        if (std::isnan(drad2[i])) {
          skipped += !std::isnan(drad[i]);
          continue;
        }
        ++computed;
        EXPECT_EQ(0, std::memcmp(&drad2[i], &drad[i], sizeof(float))) << ch << " " << i;
      }
      std::printf("%s, %d threads: denoised for the fit only: %.1f %% of the pixels\n", ch.c_str(), threads,
                  100.0 * static_cast<double>(computed) / static_cast<double>(drad.size()));
      EXPECT_GT(computed, N * 10);
      EXPECT_GT(skipped, drad.size() / 4);
    }
  }
}

// exospec run without /denoised among the products computes the denoised
// spectrum only where the fit reads it: /fit and /profile are the bytes of a
// run that writes every product.
TEST(RunStages, FitsDoNotDependOnWhetherDenoisedIsWritten) {
  const auto dir = test::scratch_dir("products");
  const auto in = test::simulate_to(test::small_config(120, 23), dir, "in.h5");
  auto config = pipeline::load_run_config();
  pipeline::run(config, in, dir / "all.h5", true, 2);
  config.products = {pipeline::Stage::kFit, pipeline::Stage::kProfile};
  pipeline::run(config, in, dir / "fit.h5", true, 2);
  const auto a = io::File::open(dir / "all.h5"), b = io::File::open(dir / "fit.h5");
  EXPECT_TRUE(a.exists("/denoised"));
  EXPECT_FALSE(b.exists("/denoised"));
  for (const std::string ch : {"euv", "fuv"}) {
    for (const std::string& obj : {"/fit/" + ch + "/brightness", "/fit/" + ch + "/brightness_sigma",
                                  "/fit/" + ch + "/center_nm", "/fit/" + ch + "/fwhm_nm",
                                  "/profile/" + ch + "/temperature_K", "/profile/" + ch + "/surface_brightness_R"}) {
      EXPECT_TRUE(same_bytes(a.read_all<double>(obj), b.read_all<double>(obj))) << obj;
    }
    EXPECT_TRUE(same_bytes(a.read_all<std::uint8_t>("/fit/" + ch + "/status"),
                           b.read_all<std::uint8_t>("/fit/" + ch + "/status")));
  }
}

TEST(ChannelStages, WrongShapesAndMissingStagesAreErrors) {
  const auto dir = test::scratch_dir("stages_errors");
  const auto in_path = test::simulate_to(test::small_config(4, 3), dir, "in.h5");
  const auto in = io::InputFile::open(in_path);
  auto config = pipeline::load_run_config();
  pipeline::ChannelStages st(config, "euv", in.read_calibration("euv"), 1);
  const std::size_t P = st.pixels();
  std::vector<std::uint32_t> counts(2 * P + 1);
  std::vector<double> exposure(2, 8.0), temperature(2, 5.0);
  std::vector<float> rad(2 * P), var(2 * P);
  std::vector<std::uint8_t> q(2 * P);
  EXPECT_THROW(st.calibrate(counts, exposure, temperature, {rad, var, q, {}, {}}), std::invalid_argument);
  counts.resize(2 * P);
  EXPECT_THROW(st.calibrate(counts, std::span<const double>(exposure).first(1), temperature,
                            {rad, var, q, {}, {}}),
               std::invalid_argument);
  st.calibrate(counts, exposure, temperature, {rad, var, q, {}, {}});  // no count model: fine
  std::vector<double> b(1);
  std::vector<float> chi(1);
  std::vector<std::uint8_t> status(1);
  EXPECT_THROW(st.fit({rad, var, q}, {}, {b, b, b, b, chi, status}), std::invalid_argument);

  config.stages = {pipeline::Stage::kCalibrate};
  pipeline::ChannelStages cal_only(config, "euv", in.read_calibration("euv"), 1);
  EXPECT_FALSE(cal_only.has_fit());
  EXPECT_EQ(cal_only.lines(), 0u);
  EXPECT_THROW(cal_only.denoise({rad, var, q}, {rad, var}), std::logic_error);
  EXPECT_THROW(cal_only.fit({rad, var, q}, {}, {b, b, b, b, chi, status}), std::logic_error);
}

}  // namespace
}  // namespace exospec
