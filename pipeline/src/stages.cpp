#include "exospec/pipeline/stages.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <stdexcept>

#include "exospec/error.hpp"
#include "exospec/kernels/calibrate.hpp"
#include "exospec/kernels/spectrum_model.hpp"
#include "exospec/pipeline/catalogue.hpp"
#include "exospec/pipeline/denoise.hpp"

namespace exospec::pipeline {
namespace {

// Rows per parallel task: small enough to balance, large enough to amortise.
constexpr std::size_t kTaskRows = 16;

kernels::CalibrateSettings calibrate_settings(const RunConfig& config, const std::string& ch) {
  kernels::CalibrateSettings s = config.calibrate;
  s.despike.enabled = false;
  if (config.has_stage(Stage::kDenoise)) {
    s.despike = config.denoise.at(ch).despike;
    s.despike.enabled = true;
  }
  return s;
}

void expect(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("ChannelStages: ") + what);
}

// Rows of calibrated input, with every span checked against them (scale and
// offset may be empty unless `need_model`).
std::size_t input_rows(const CalibratedInput& in, std::size_t P, bool need_model) {
  expect(in.radiance.size() % P == 0, "radiance is not a whole number of rows");
  const std::size_t rows = in.radiance.size() / P;
  expect(in.variance.size() == rows * P && in.quality.size() == rows * P, "calibrated input: rows x pixels");
  const bool model = need_model || !in.scale.empty();
  expect(!model || (in.scale.size() == rows * P && in.offset.size() == rows * P),
         need_model ? "this denoise method needs scale/offset (rows x pixels)"
                    : "scale/offset: rows x pixels or empty");
  return rows;
}

}  // namespace

struct ChannelStages::Impl {
  std::string name;
  std::size_t pixels;
  int threads;
  io::ChannelCalibration calibration;
  kernels::Calibrator calibrator;
  std::optional<DenoiseStage> smoother;
  std::optional<kernels::LineFitter> fitter;
  std::vector<kernels::LineFitter::Workspace> fit_work;  // per thread
  bool fit_count_model = false;  // the fit uses the count model (refine_iterations > 0)
  // The pixels whose count model the fit reads (its windows): where
  // process() makes each row's when the count model is the fit's alone
  // (calibrate() gives every pixel's).
  std::vector<kernels::PixelRange> model_pixels;
  // Per thread: one row's count model (scale, then offset: 2 P), when
  // process() computes it for the fit row by row.
  std::vector<std::vector<double>> model_scratch;
  bool neighbour_reference = false;  // the fit's final solve at its neighbours' reference
  int reference_half_width = 0;
  std::vector<double> states;                  // rows x state_size: fit()'s window states
  std::vector<std::vector<double>> reference;  // per thread: one row's reference state
  kernels::ScanMode scan_mode = kernels::ScanMode::kMonotonic;
  std::int64_t scan_length = 1;
  std::vector<std::int64_t> scan_ids;  // found from the altitudes when the caller gives none
  // The geometry with every row's scan (found from the altitudes if need be).
  RowGeometry with_scans(const RowGeometry& g) {
    if (!g.scan.empty() || g.altitude_km.empty()) return g;
    const auto scans = kernels::find_scans(g.altitude_km, scan_mode, scan_length);
    scan_ids.resize(g.altitude_km.size());
    kernels::scan_index(scans, scan_ids);
    return {g.altitude_km, scan_ids};
  }

  std::vector<std::vector<float>> calibrate_scratch;  // per thread: the variance pass's
  // The calibrate stage's two passes: radiance and quality (with despike) of
  // rows [r0, r0 + n), then their variance and count model, which read the
  // radiance of the neighbouring rows of their scan (all rows' radiance first).
  void radiance_task(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                     std::span<const double> temperature_c, const CalibratedRows& out, std::size_t r0,
                     std::size_t n);
  void variance_task(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                     std::span<const double> temperature_c, const CalibratedRows& out,
                     std::span<const std::int64_t> scan, std::size_t r0, std::size_t n, int thread);
  void denoise_task(const CalibratedInput& in, const DenoisedRows& out, std::size_t r0, std::size_t n,
                    int thread);
  // The inputs of each row's count model, for the fit tasks when the
  // calibrated rows come without one (process()).
  struct ModelInputs {
    std::span<const std::uint32_t> counts;
    std::span<const double> exposure_s, temperature_c;
  };
  // Row r's count model: the calibrated rows' if they have one, else (with
  // `model`) computed into this thread's scratch, else none (empty spans).
  std::pair<std::span<const double>, std::span<const double>> row_model(const CalibratedInput& in,
                                                                        const ModelInputs* model, std::size_t r,
                                                                        int thread);
  void fit_task(const CalibratedInput& in, std::span<const float> denoised, const FitRows& out,
                std::size_t r0, std::size_t n, int thread, const ModelInputs* model = nullptr);
  void refit_task(const CalibratedInput& in, const FitRows& out, const RowGeometry& geometry, std::size_t r0,
                  std::size_t n, int thread, const ModelInputs* model = nullptr);
  // Sizes the window states for `rows` (fit()'s, the references' input).
  void prepare_states(std::size_t rows) {
    if (neighbour_reference) states.resize(rows * fitter->state_size());
  }

  Impl(const RunConfig& config, std::string ch, io::ChannelCalibration cal, int nthreads,
       const std::string& wisdom, std::vector<kernels::FitLineSpec> lines)
      : name(std::move(ch)),
        pixels(cal.dark_rate.size()),
        threads(nthreads > 0 ? nthreads : omp_get_max_threads()),
        calibration(std::move(cal)),
        calibrator(kernels::DetectorCalibration{calibration.dark_rate, calibration.flat,
                                                calibration.sensitivity, calibration.bad_pixel,
                                                calibration.dead_time_s,
                                                calibration.dark_reference_temperature,
                                                calibration.dark_temperature_coeff},
                   calibrate_settings(config, name)) {
    scan_mode = config.scan_mode;
    scan_length = config.scan_length;
    calibrate_scratch.resize(static_cast<std::size_t>(threads));
    if (config.has_stage(Stage::kDenoise)) {
      try {
        const auto& c = calibration.wavelength_coeffs;
        const double span_nm = std::abs(kernels::eval_polynomial(c, static_cast<double>(pixels - 1)) -
                                        kernels::eval_polynomial(c, 0.0));
        const double nm_per_pixel = span_nm / static_cast<double>(std::max<std::size_t>(pixels - 1, 1));
        smoother.emplace(pixels, nm_per_pixel, config.denoise.at(name), threads, wisdom);
      } catch (const std::invalid_argument& e) {
        throw ConfigError(config.source, "denoise." + name,
                          std::string(e.what()) + " (" + std::to_string(pixels) + " pixels)");
      }
    }
    if (config.has_stage(Stage::kFit)) {
      if (lines.empty()) {
        const LineCatalogue catalogue = default_catalogue();  // (outlives the loop)
        for (const auto& l : catalogue.channel(name)) {
          lines.push_back({l.name, l.wavelength_nm, l.components});
        }
      }
      try {
        fitter.emplace(calibration.wavelength_coeffs, pixels, std::move(lines), config.fit.at(name));
      } catch (const std::invalid_argument& e) {
        throw ConfigError(config.source, "fit." + name, e.what());
      }
      for (int t = 0; t < threads; ++t) fit_work.push_back(fitter->make_workspace());
      const auto& f = config.fit.at(name);
      fit_count_model = f.refine_iterations > 0;
      if (fit_count_model) model_scratch.assign(static_cast<std::size_t>(threads), std::vector<double>(2 * pixels));
      neighbour_reference = f.refine_iterations > 0 && f.sigma_reference == kernels::SigmaReference::kNeighbours;
      reference_half_width = f.reference_half_width;
      for (std::size_t w = 0; w < fitter->windows(); ++w) {
        model_pixels.push_back({fitter->window_first(w), fitter->window_first(w) + fitter->window_size(w)});
      }
      if (neighbour_reference) reference.assign(static_cast<std::size_t>(threads), std::vector<double>(fitter->state_size()));
    }
  }
};

ChannelStages::ChannelStages(const RunConfig& config, std::string channel,
                             io::ChannelCalibration calibration, int threads,
                             const std::string& fftw_wisdom, std::vector<kernels::FitLineSpec> lines)
    : impl_(std::make_unique<Impl>(config, std::move(channel), std::move(calibration), threads,
                                   fftw_wisdom, std::move(lines))) {}
ChannelStages::~ChannelStages() = default;
ChannelStages::ChannelStages(ChannelStages&&) noexcept = default;
ChannelStages& ChannelStages::operator=(ChannelStages&&) noexcept = default;

const std::string& ChannelStages::channel() const noexcept { return impl_->name; }
const io::ChannelCalibration& ChannelStages::calibration() const noexcept { return impl_->calibration; }
std::size_t ChannelStages::pixels() const noexcept { return impl_->pixels; }
int ChannelStages::threads() const noexcept { return impl_->threads; }
bool ChannelStages::has_denoise() const noexcept { return impl_->smoother.has_value(); }

void ChannelStages::denoise_for_fit_only() {
  Impl& m = *impl_;
  if (!m.smoother || !m.fitter) return;
  std::vector<kernels::PixelRange> spans;
  for (std::size_t w = 0; w < m.fitter->windows(); ++w) {
    const std::size_t first = m.fitter->window_first(w), n = m.fitter->window_size(w);
    spans.push_back({first > 0 ? first - 1 : 0, std::min(first + n + 1, m.pixels)});
  }
  std::sort(spans.begin(), spans.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
  std::vector<kernels::PixelRange> merged;
  for (const auto& r : spans) {
    if (!merged.empty() && r.begin <= merged.back().end) {
      merged.back().end = std::max(merged.back().end, r.end);
    } else {
      merged.push_back(r);
    }
  }
  m.smoother->restrict_to(std::move(merged));
}
bool ChannelStages::has_fit() const noexcept { return impl_->fitter.has_value(); }
bool ChannelStages::needs_count_model() const noexcept { return needs_count_model_rows() || impl_->fit_count_model; }
bool ChannelStages::needs_count_model_rows() const noexcept {
  return impl_->smoother && impl_->smoother->needs_count_model();
}
std::size_t ChannelStages::context_rows() const noexcept {
  // A row's variance reads the radiance of its neighbouring spectra; the
  // neighbours' reference reads the first fits of rows up to 2 half widths
  // away, and so their variance.
  const auto spectra = static_cast<std::size_t>(impl_->calibrator.settings().variance_spectra);
  return spectra + (impl_->neighbour_reference ? 2 * static_cast<std::size_t>(impl_->reference_half_width) : 0);
}
std::size_t ChannelStages::lines() const noexcept { return impl_->fitter ? impl_->fitter->lines() : 0; }
const std::vector<kernels::FitLineSpec>& ChannelStages::line_specs() const {
  if (!impl_->fitter) throw std::logic_error("ChannelStages: the fit stage is not configured");
  return impl_->fitter->line_specs();
}
std::vector<ChannelStages::FitWindow> ChannelStages::fit_windows() const {
  if (!impl_->fitter) throw std::logic_error("ChannelStages: the fit stage is not configured");
  const auto& f = *impl_->fitter;
  std::vector<FitWindow> out;
  for (std::size_t w = 0; w < f.windows(); ++w) {
    out.push_back({f.window_first(w), f.window_size(w), f.window_lines(w)});
  }
  return out;
}

namespace {

std::size_t tasks_of(std::size_t rows) { return (rows + kTaskRows - 1) / kTaskRows; }

// Checks the calibrate stage's spans; returns the rows.
std::size_t calibrate_rows(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                           std::span<const double> temperature_c, const CalibratedRows& out, std::size_t P) {
  expect(counts.size() % P == 0, "counts is not a whole number of rows");
  const std::size_t rows = counts.size() / P;
  expect(exposure_s.size() == rows && temperature_c.size() == rows, "exposure/temperature: one per row");
  expect(out.radiance.size() == rows * P && out.variance.size() == rows * P &&
             out.quality.size() == rows * P,
         "calibrated output: rows x pixels");
  expect(out.scale.empty() || (out.scale.size() == rows * P && out.offset.size() == rows * P),
         "scale/offset: rows x pixels or empty");
  return rows;
}

void check_geometry(const RowGeometry& g, std::size_t rows) {
  expect(g.altitude_km.empty() || g.altitude_km.size() == rows, "geometry: one altitude per row or none");
  expect(g.scan.empty() || g.scan.size() == rows, "geometry: one scan per row or none");
}

// The rows [first, end) of a range over `rows`.
std::pair<std::size_t, std::size_t> range_of(const RowRange& r, std::size_t rows) {
  const std::size_t first = std::min(r.first, rows);
  return {first, first + std::min(r.count, rows - first)};
}

void check_fit_rows(const FitRows& out, std::size_t rows, std::size_t L) {
  for (auto n : {out.brightness.size(), out.sigma.size(), out.center_nm.size(), out.fwhm_nm.size(),
                 out.chi2_reduced.size(), out.status.size()}) {
    expect(n == rows * L, "fit output: rows x lines");
  }
}

}  // namespace

// One task's rows [r0, r0 + n) of each stage. `thread` picks the per-thread
// scratch space (the OpenMP thread number in the loop that calls them).
void ChannelStages::Impl::radiance_task(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                                        std::span<const double> temperature_c, const CalibratedRows& out,
                                        std::size_t r0, std::size_t n) {
  const std::size_t P = pixels;
  calibrator.radiance<std::uint32_t, float>(counts.subspan(r0 * P, n * P), exposure_s.subspan(r0, n),
                                            temperature_c.subspan(r0, n), out.radiance.subspan(r0 * P, n * P),
                                            out.quality.subspan(r0 * P, n * P));
}

void ChannelStages::Impl::variance_task(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                                        std::span<const double> temperature_c, const CalibratedRows& out,
                                        std::span<const std::int64_t> scan, std::size_t r0, std::size_t n,
                                        int thread) {
  const std::size_t P = pixels;
  calibrator.variance<std::uint32_t, float>(counts, exposure_s, temperature_c, out.radiance, out.quality, scan, r0,
                                            n, out.variance, calibrate_scratch[static_cast<std::size_t>(thread)]);
  if (!out.scale.empty()) {
    // Counts = radiance x scale + offset, per row.
    for (std::size_t r = r0; r < r0 + n; ++r) {
      calibrator.count_model(counts.subspan(r * P, P), exposure_s[r], temperature_c[r],
                             out.scale.subspan(r * P, P), out.offset.subspan(r * P, P));
    }
  }
}

void ChannelStages::Impl::denoise_task(const CalibratedInput& in, const DenoisedRows& out, std::size_t r0,
                                       std::size_t n, int thread) {
  const std::size_t P = pixels;
  std::span<const double> scale, offset;
  if (smoother->needs_count_model()) {
    scale = in.scale.subspan(r0 * P, n * P);
    offset = in.offset.subspan(r0 * P, n * P);
  }
  smoother->run(in.radiance.subspan(r0 * P, n * P), in.variance.subspan(r0 * P, n * P),
                in.quality.subspan(r0 * P, n * P), scale, offset, out.radiance.subspan(r0 * P, n * P),
                out.variance.subspan(r0 * P, n * P), thread);
}

std::pair<std::span<const double>, std::span<const double>> ChannelStages::Impl::row_model(
    const CalibratedInput& in, const ModelInputs* model, std::size_t r, int thread) {
  const std::size_t P = pixels;
  if (!in.scale.empty()) return {in.scale.subspan(r * P, P), in.offset.subspan(r * P, P)};
  if (model == nullptr) return {};
  auto& s = model_scratch[static_cast<std::size_t>(thread)];
  const auto scale = std::span(s).first(P), offset = std::span(s).subspan(P, P);
  calibrator.count_model(model->counts.subspan(r * P, P), model->exposure_s[r], model->temperature_c[r], scale, offset,
                         model_pixels);
  return {scale, offset};
}

void ChannelStages::Impl::fit_task(const CalibratedInput& in, std::span<const float> denoised, const FitRows& out,
                                   std::size_t r0, std::size_t n, int thread, const ModelInputs* model) {
  const std::size_t P = pixels, L = fitter->lines();
  for (std::size_t r = r0; r < r0 + n; ++r) {
    const auto [scale, offset] = row_model(in, model, r, thread);
    const std::size_t S = fitter->state_size();
    const kernels::LineFitResult res{out.brightness.subspan(r * L, L), out.sigma.subspan(r * L, L),
                                     out.center_nm.subspan(r * L, L),  out.fwhm_nm.subspan(r * L, L),
                                     out.chi2_reduced.subspan(r * L, L), out.status.subspan(r * L, L),
                                     neighbour_reference ? std::span<double>(states).subspan(r * S, S)
                                                         : std::span<double>()};
    fitter->fit<float>(in.radiance.subspan(r * P, P), in.variance.subspan(r * P, P), in.quality.subspan(r * P, P),
                       scale, offset, res, fit_work[static_cast<std::size_t>(thread)],
                       denoised.empty() ? std::span<const float>() : denoised.subspan(r * P, P));
  }
}

void ChannelStages::Impl::refit_task(const CalibratedInput& in, const FitRows& out, const RowGeometry& geometry,
                                     std::size_t r0, std::size_t n, int thread, const ModelInputs* model) {
  const std::size_t P = pixels, L = fitter->lines();
  auto& ref = reference[static_cast<std::size_t>(thread)];
  for (std::size_t r = r0; r < r0 + n; ++r) {
    fitter->reference(states, geometry.altitude_km, geometry.scan, r, reference_half_width, ref);
    const kernels::LineFitResult res{out.brightness.subspan(r * L, L), out.sigma.subspan(r * L, L),
                                     out.center_nm.subspan(r * L, L),  out.fwhm_nm.subspan(r * L, L),
                                     out.chi2_reduced.subspan(r * L, L), out.status.subspan(r * L, L)};
    const auto [scale, offset] = row_model(in, model, r, thread);
    fitter->refit<float>(in.radiance.subspan(r * P, P), in.variance.subspan(r * P, P),
                         in.quality.subspan(r * P, P), scale, offset, ref, res,
                         fit_work[static_cast<std::size_t>(thread)]);
  }
}

void ChannelStages::calibrate(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                              std::span<const double> temperature_c, const CalibratedRows& out,
                              const RowGeometry& geometry) {
  Impl& m = *impl_;
  const std::size_t rows = calibrate_rows(counts, exposure_s, temperature_c, out, m.pixels);
  check_geometry(geometry, rows);
  const RowGeometry geo = m.with_scans(geometry);
  const auto tasks = static_cast<std::int64_t>(tasks_of(rows));
#pragma omp parallel num_threads(m.threads)
  {
#pragma omp for schedule(dynamic)
    for (std::int64_t task = 0; task < tasks; ++task) {
      const std::size_t r0 = static_cast<std::size_t>(task) * kTaskRows;
      m.radiance_task(counts, exposure_s, temperature_c, out, r0, std::min(kTaskRows, rows - r0));
    }
#pragma omp for schedule(dynamic)
    for (std::int64_t task = 0; task < tasks; ++task) {
      const std::size_t r0 = static_cast<std::size_t>(task) * kTaskRows;
      m.variance_task(counts, exposure_s, temperature_c, out, geo.scan, r0, std::min(kTaskRows, rows - r0),
                      omp_get_thread_num());
    }
  }
}

void ChannelStages::denoise(const CalibratedInput& in, const DenoisedRows& out) {
  Impl& m = *impl_;
  if (!m.smoother) throw std::logic_error("ChannelStages: the denoise stage is not configured");
  const std::size_t P = m.pixels;
  const std::size_t rows = input_rows(in, P, m.smoother->needs_count_model());
  expect(out.radiance.size() == rows * P && out.variance.size() == rows * P, "denoised output: rows x pixels");
  const auto tasks = static_cast<std::int64_t>(tasks_of(rows));
#pragma omp parallel for num_threads(m.threads) schedule(dynamic)
  for (std::int64_t task = 0; task < tasks; ++task) {
    const std::size_t r0 = static_cast<std::size_t>(task) * kTaskRows;
    m.denoise_task(in, out, r0, std::min(kTaskRows, rows - r0), omp_get_thread_num());
  }
}

void ChannelStages::fit(const CalibratedInput& in, std::span<const float> denoised, const FitRows& out,
                        const RowGeometry& geometry, const RowRange& range) {
  Impl& m = *impl_;
  if (!m.fitter) throw std::logic_error("ChannelStages: the fit stage is not configured");
  const std::size_t P = m.pixels;
  const std::size_t rows = input_rows(in, P, false);
  expect(denoised.empty() || denoised.size() == rows * P, "denoised: rows x pixels or empty");
  check_fit_rows(out, rows, m.fitter->lines());
  check_geometry(geometry, rows);
  const RowGeometry geo = m.with_scans(geometry);
  m.prepare_states(rows);
  // (Plain variables, not a structured binding: clang before 16 cannot refer
  // to bindings inside an OpenMP region.)
  const auto row_range = range_of(range, rows);
  const std::size_t first = row_range.first, end = row_range.second;
  const bool refit = m.neighbour_reference && !in.scale.empty();
  // (Tasks of one row: fit times vary from row to row.)
#pragma omp parallel num_threads(m.threads)
  {
#pragma omp for schedule(dynamic)
    for (std::int64_t ri = 0; ri < static_cast<std::int64_t>(rows); ++ri) {
      m.fit_task(in, denoised, out, static_cast<std::size_t>(ri), 1, omp_get_thread_num());
    }
    if (refit) {
#pragma omp for schedule(dynamic)
      for (std::int64_t ri = static_cast<std::int64_t>(first); ri < static_cast<std::int64_t>(end); ++ri) {
        m.refit_task(in, out, geo, static_cast<std::size_t>(ri), 1, omp_get_thread_num());
      }
    }
  }
}

double ChannelStages::calibrate_radiance(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                                         std::span<const double> temperature_c, const CalibratedRows& calibrated) {
  Impl& m = *impl_;
  const auto t = std::chrono::steady_clock::now();
  const std::size_t rows = calibrate_rows(counts, exposure_s, temperature_c, calibrated, m.pixels);
  m.radiance_task(counts, exposure_s, temperature_c, calibrated, 0, rows);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

StageSeconds ChannelStages::process(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                                    std::span<const double> temperature_c, const CalibratedRows& calibrated,
                                    const DenoisedRows& denoised, const FitRows& fits,
                                    const RowGeometry& geometry, const RowRange& range, bool radiance_ready) {
  Impl& m = *impl_;
  const std::size_t P = m.pixels;
  const std::size_t rows = calibrate_rows(counts, exposure_s, temperature_c, calibrated, P);
  const CalibratedInput in(calibrated);
  if (m.smoother) {
    input_rows(in, P, m.smoother->needs_count_model());
    expect(denoised.radiance.size() == rows * P && denoised.variance.size() == rows * P,
           "denoised output: rows x pixels");
  }
  if (m.fitter) {
    check_fit_rows(fits, rows, m.fitter->lines());
    m.prepare_states(rows);
  }
  check_geometry(geometry, rows);
  const RowGeometry geo = m.with_scans(geometry);
  // (Plain variables, not a structured binding: clang before 16 cannot refer
  // to bindings inside an OpenMP region.)
  const auto row_range = range_of(range, rows);
  const std::size_t first = row_range.first, end = row_range.second;
  // Without count model rows, a count model that only the fit uses is
  // computed row by row where the fit reads it (the same values).
  const bool own_model = m.fitter && m.fit_count_model && calibrated.scale.empty() &&
                         !(m.smoother && m.smoother->needs_count_model());
  const Impl::ModelInputs model_inputs{counts, exposure_s, temperature_c};
  const Impl::ModelInputs* model = own_model ? &model_inputs : nullptr;
  const bool refit = m.fitter && m.neighbour_reference && (!calibrated.scale.empty() || own_model);
  const std::span<const float> initial =
      m.smoother ? std::span<const float>(denoised.radiance) : std::span<const float>();
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  StageSeconds total;
  const auto tasks = static_cast<std::int64_t>(tasks_of(rows));
#pragma omp parallel num_threads(m.threads)
  {
    StageSeconds mine;
    const int thread = omp_get_thread_num();
    // Every row's radiance before any row's variance (the loop ends with a
    // barrier): the variance reads the neighbouring rows'.
    if (!radiance_ready) {
#pragma omp for schedule(dynamic)
      for (std::int64_t task = 0; task < tasks; ++task) {
        const std::size_t r0 = static_cast<std::size_t>(task) * kTaskRows;
        const auto t = Clock::now();
        m.radiance_task(counts, exposure_s, temperature_c, calibrated, r0, std::min(kTaskRows, rows - r0));
        mine.calibrate += since(t);
      }
    }
#pragma omp for schedule(dynamic)
    for (std::int64_t task = 0; task < tasks; ++task) {
      const std::size_t r0 = static_cast<std::size_t>(task) * kTaskRows;
      const std::size_t n = std::min(kTaskRows, rows - r0);
      auto t = Clock::now();
      m.variance_task(counts, exposure_s, temperature_c, calibrated, geo.scan, r0, n, thread);
      mine.calibrate += since(t);
      if (m.smoother) {
        t = Clock::now();
        m.denoise_task(in, denoised, r0, n, thread);
        mine.denoise += since(t);
      }
      if (m.fitter) {
        t = Clock::now();
        m.fit_task(in, initial, fits, r0, n, thread, model);
        mine.fit += since(t);
      }
    }
    // The final solves at the neighbours' reference, once every row's fit is
    // known (the loop above ends with a barrier).
    if (refit) {
      const auto refit_tasks = static_cast<std::int64_t>(tasks_of(end - first));
#pragma omp for schedule(dynamic)
      for (std::int64_t task = 0; task < refit_tasks; ++task) {
        const std::size_t r0 = first + static_cast<std::size_t>(task) * kTaskRows;
        const auto t = Clock::now();
        m.refit_task(in, fits, geo, r0, std::min(kTaskRows, end - r0), thread, model);
        mine.fit += since(t);
      }
    }
#pragma omp critical(exospec_stage_seconds)
    {
      total.calibrate += mine.calibrate;
      total.denoise += mine.denoise;
      total.fit += mine.fit;
    }
  }
  return total;
}

}  // namespace exospec::pipeline
