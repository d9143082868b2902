#pragma once
// The pipeline's stages on in-memory data: what `exospec run` does to each
// block of rows, for analysis code that holds its spectra in its own arrays.
//
//   exospec::pipeline::RunConfig config = exospec::pipeline::load_run_config();
//   exospec::pipeline::ChannelStages fuv(config, "fuv", calibration);  // io::ChannelCalibration
//   fuv.calibrate(counts, exposure_s, temperature_c, calibrated);      // rows x P
//   fuv.denoise(calibrated, denoised);
//   fuv.fit(calibrated, denoised.radiance, fits);                      // rows x lines
//
// All arrays are row-major std::span over the caller's memory: `rows` spectra
// of pixels() values each (Eigen users pass a RowMajor matrix's data()). The
// row count is taken from the counts or radiance span; every other span must
// match it, or std::invalid_argument is thrown. The same RunConfig as the
// command line (data/run.toml, exospec config --defaults run) selects the
// denoise method and the fit settings; the stages a configuration leaves out
// (config.stages) are not set up, and calling them throws std::logic_error.
//
// Results equal `exospec run`'s bit for bit: run() calls these functions.
// Rows are processed in parallel on `threads` OpenMP threads; the results do
// not depend on the thread count. One ChannelStages holds per-thread scratch
// space: use it from one thread at a time (one object per calling thread).
// Nothing here reads or writes files, prints or exits.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "exospec/io/input_file.hpp"
#include "exospec/kernels/line_fit.hpp"
#include "exospec/pipeline/run.hpp"

namespace exospec::pipeline {

// Calibrated rows (rows x P). scale and offset are the count model of each
// pixel (counts = radiance x scale + offset): the fit's Poisson refits and
// the anscombe denoiser need them; leave them empty to skip them (the fit
// then weights by the calibrated variance alone).
struct CalibratedRows {
  std::span<float> radiance, variance;
  std::span<std::uint8_t> quality;
  std::span<double> scale, offset;
};
struct CalibratedInput {
  std::span<const float> radiance, variance;
  std::span<const std::uint8_t> quality;
  std::span<const double> scale, offset;
  CalibratedInput() = default;
  CalibratedInput(std::span<const float> r, std::span<const float> v, std::span<const std::uint8_t> q,
                  std::span<const double> s = {}, std::span<const double> o = {})
      : radiance(r), variance(v), quality(q), scale(s), offset(o) {}
  CalibratedInput(const CalibratedRows& c)  // NOLINT: a view of the same arrays
      : radiance(c.radiance), variance(c.variance), quality(c.quality), scale(c.scale), offset(c.offset) {}
};
struct DenoisedRows {
  std::span<float> radiance, variance;
};
// Fit results (rows x lines()), in the catalogue's line order.
struct FitRows {
  std::span<double> brightness, sigma, center_nm, fwhm_nm;
  std::span<float> chi2_reduced;
  std::span<std::uint8_t> status;  // kernels::FitStatus
};

// Where each row was taken (optional). The fit's final solve takes its
// reference from the neighbouring spectra of the same scan
// (kernels::LineFitter::reference), fitted against these altitudes. Without
// `scan`, the scans are found from the altitudes as the configuration's
// [scans] says (kernels::find_scans over the rows given); with neither, the
// rows are one scan and the row index stands for the altitude.
struct RowGeometry {
  std::span<const double> altitude_km = {};  // one per row, or empty
  std::span<const std::int64_t> scan = {};   // the scan of each row (any numbering), or empty
};
// The rows whose results are wanted, [first, first + count) (count clipped to
// the rows). The rows around them are context: what the stages that use
// neighbouring spectra read. Their own results are computed as far as those
// need them and are not final. `exospec run` passes each block with the
// rows around it, so that a row's results do not depend on the block size.
struct RowRange {
  std::size_t first = 0;
  std::size_t count = static_cast<std::size_t>(-1);
};

// Thread time per stage, summed over the threads (process()).
struct StageSeconds {
  double calibrate = 0.0, denoise = 0.0, fit = 0.0;
};

class ChannelStages {
 public:
  // threads <= 0: OpenMP's default. The fit's lines are `lines`, or, when
  // it is empty, the channel's lines of the catalogue shipped with exospec
  // (data/lines.toml, pipeline/catalogue.hpp), as in `exospec run`. Throws
  // ConfigError for settings that do not fit this channel.
  ChannelStages(const RunConfig& config, std::string channel, io::ChannelCalibration calibration,
                int threads = 0, const std::string& fftw_wisdom = {},
                std::vector<kernels::FitLineSpec> lines = {});
  ~ChannelStages();
  ChannelStages(ChannelStages&&) noexcept;
  ChannelStages& operator=(ChannelStages&&) noexcept;

  const std::string& channel() const noexcept;
  const io::ChannelCalibration& calibration() const noexcept;
  std::size_t pixels() const noexcept;
  int threads() const noexcept;
  bool has_denoise() const noexcept;
  bool has_fit() const noexcept;
  // Whether denoise or fit use the count model (then calibrate() must get
  // scale and offset spans, and they must be passed on).
  bool needs_count_model() const noexcept;
  // Whether process() needs them too: only for the denoise stage's count
  // model (anscombe). A count model that only the fit uses, process()
  // computes row by row where the fit reads it when the calibrated rows
  // come without scale and offset (the same fits).
  bool needs_count_model_rows() const noexcept;
  std::size_t lines() const noexcept;  // 0 without the fit stage
  const std::vector<kernels::FitLineSpec>& line_specs() const;
  // The fit's windows: pixels [first, first + size) and the lines (indices
  // into line_specs()) fitted together there. Throws std::logic_error
  // without the fit stage.
  struct FitWindow {
    std::size_t first = 0, size = 0;
    std::vector<std::size_t> lines;
  };
  std::vector<FitWindow> fit_windows() const;

  // Counts (rows x P), exposure (s) and detector temperature (degC) per row.
  // A row's variance pools the radiance of its neighbouring spectra of the
  // same scan (kernels::Calibrator::variance); the scans come from
  // `geometry` as for fit() (with neither altitudes nor scans, the rows are
  // one scan).
  void calibrate(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                 std::span<const double> temperature_c, const CalibratedRows& out,
                 const RowGeometry& geometry = {});
  void denoise(const CalibratedInput& in, const DenoisedRows& out);
  // When the denoised rows serve only as the fit's initial guesses (what
  // `exospec run` does when /denoised is not among its products): from then
  // on denoise() and process() compute them only at the pixels the fit
  // reads, its windows and one pixel each side (DenoiseStage::restrict_to;
  // NaN elsewhere), which gives the same fits to the bit at a fraction of
  // the cost. No effect without both stages, or with a method that needs the
  // whole spectrum.
  void denoise_for_fit_only();
  // denoised: the denoised radiance (initial values of the nonlinear fit), or
  // empty. Every row is fitted (fit()); then, with a count model and
  // `sigma_reference = "neighbours"`, the rows of `range` are solved once
  // more at the reference of their neighbours (refit(), docs/FIT.md).
  void fit(const CalibratedInput& in, std::span<const float> denoised, const FitRows& out,
           const RowGeometry& geometry = {}, const RowRange& range = {});
  // Rows of context each side of a range that calibrate() and fit() read
  // (the variance's neighbouring spectra, plus twice the fit reference's half
  // width with the neighbours' reference).
  std::size_t context_rows() const noexcept;

  // Every configured stage on the same rows in one pass, what `exospec run`
  // does: each parallel task of rows is calibrated, denoised and fitted
  // while its data are still in cache, with one synchronisation of the
  // threads instead of three. The results equal calibrate(), denoise() and
  // fit() called in turn (with the denoised radiance as the fit's initial
  // values). `denoised` and `fits` may be empty for stages not configured.
  // Returns the time each stage took, summed over the threads.
  // radiance_ready: calibrate_radiance() has already made the calibrated
  // rows' radiance and quality (then not made again).
  StageSeconds process(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                       std::span<const double> temperature_c, const CalibratedRows& calibrated,
                       const DenoisedRows& denoised, const FitRows& fits,
                       const RowGeometry& geometry = {}, const RowRange& range = {},
                       bool radiance_ready = false);
  // The calibrate stage's first pass alone, on the calling thread only: the
  // radiance and quality of every row (despike included), for process()
  // with radiance_ready. `exospec run` does it on its I/O thread, beside the
  // compute threads' previous block, when they leave it a core. Returns its
  // time.
  double calibrate_radiance(std::span<const std::uint32_t> counts, std::span<const double> exposure_s,
                            std::span<const double> temperature_c, const CalibratedRows& calibrated);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace exospec::pipeline
