#include "exospec/pipeline/simulate.hpp"
#if EXOSPEC_HAVE_MPI
#include "exospec/io/parallel.hpp"
#include "exospec/pipeline/run_mpi.hpp"
#include "mpi_agreement.hpp"
#endif

#include <omp.h>

#include <optional>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <numbers>

#include "exospec/error.hpp"
#include "exospec/io/contract_writer.hpp"
#include "exospec/io/file.hpp"
#include "exospec/io/schema.hpp"
#include "exospec/kernels/ballistic.hpp"
#include "exospec/kernels/random.hpp"

namespace exospec::pipeline {
namespace {

// Purposes of the random streams (the last key word of Rng::stream).
enum Stream : std::uint64_t { kCalibration = 1, kTemperature = 2, kCounts = 3, kHits = 4 };

std::uint64_t channel_id(std::string_view ch) { return ch == "euv" ? 1 : 2; }

}  // namespace

Pointing pointing(const SimulationConfig& c, std::uint64_t i) noexcept {
  const double t = c.start_time_j2000_s + static_cast<double>(i) * c.cadence_s + 0.5 * c.exposure_s;
  double z;
  if (c.preset == Preset::kLimbScan) {
    const std::uint64_t s = c.limb_spectra_per_scan;
    const double frac = s > 1 ? static_cast<double>(i % s) / static_cast<double>(s - 1) : 0.0;
    z = c.limb_altitude_min_km + (c.limb_altitude_max_km - c.limb_altitude_min_km) * frac;
  } else {
    const double t_ca = c.start_time_j2000_s +
                        0.5 * static_cast<double>(c.spectra - 1) * c.cadence_s + 0.5 * c.exposure_s;
    const double d = c.flyby_speed_km_s * (t - t_ca);
    const double r0 = c.mercury_radius_km + c.flyby_closest_approach_km;
    z = std::sqrt(r0 * r0 + d * d) - c.mercury_radius_km;
  }
  return {t, z};
}

ChannelSimulator::ChannelSimulator(const SimulationConfig& config, std::string_view channel,
                                   const std::vector<CatalogueLine>& lines)
    : channel_(channel),
      channel_id_(channel_id(channel)),
      seed_(config.seed),
      exposure_s_(config.exposure_s),
      model_(config.instrument.at(std::string(channel))),
      pixels_(model_.pixels) {
  const std::size_t P = pixels_;
  const double last = static_cast<double>(P - 1);
  const double span = model_.wavelength_max_nm - model_.wavelength_min_nm;
  const double c2 = model_.dispersion_curvature * span / (last * last);
  coeffs_ = {model_.wavelength_min_nm, (span - c2 * last * last) / last, c2};

  auto rng = kernels::Rng::stream(seed_, channel_id_, 0, kCalibration);
  sensitivity_.resize(P);
  flat_.resize(P);
  dark_rate_.resize(P);
  bad_pixel_.assign(P, 0);
  dead_.assign(P, 0);
  double flat_sum = 0.0;
  for (std::size_t p = 0; p < P; ++p) {
    const double u = (static_cast<double>(p) - 0.5 * last) / (0.5 * last);
    sensitivity_[p] = model_.sensitivity_peak * std::pow(model_.sensitivity_edge_ratio, u * u);
    flat_[p] = (1.0 + 0.5 * model_.flat_gradient * u) * (1.0 + model_.flat_rms * rng.normal());
    flat_[p] = std::max(flat_[p], 0.05);
    flat_sum += flat_[p];
    dark_rate_[p] = std::max(0.0, model_.dark_rate + model_.dark_rate_rms * rng.normal());
  }
  for (auto& f : flat_) f *= static_cast<double>(P) / flat_sum;
  auto pick_free_pixel = [&] {
    for (;;) {
      const std::size_t p = rng.below(P);
      if (!bad_pixel_[p]) return p;
    }
  };
  for (std::uint64_t h = 0; h < model_.hot_pixels; ++h) {
    const std::size_t p = pick_free_pixel();
    bad_pixel_[p] = 1;
    dark_rate_[p] = rng.uniform(model_.hot_pixel_rate_min, model_.hot_pixel_rate_max);
  }
  for (std::uint64_t d = 0; d < model_.dead_pixels; ++d) {
    const std::size_t p = pick_free_pixel();
    bad_pixel_[p] = 1;
    dead_[p] = 1;
  }
  response_.resize(P);
  dark_live_.resize(P);
  continuum_.resize(P);
  std::vector<double> edges(P + 1);
  kernels::pixel_edges(coeffs_, edges);
  const double mid = 0.5 * (model_.wavelength_min_nm + model_.wavelength_max_nm);
  for (std::size_t p = 0; p < P; ++p) {
    response_[p] = dead_[p] ? 0.0 : sensitivity_[p] * flat_[p];
    dark_live_[p] = dead_[p] ? 0.0 : dark_rate_[p];
    // A linear continuum: its pixel average is its value at the pixel's mid-wavelength.
    const double centre = 0.5 * (edges[p] + edges[p + 1]);
    continuum_[p] = std::max(0.0, model_.continuum + model_.continuum_slope * (centre - mid));
  }
  const auto& emission = config.exosphere.at(channel_);
  for (const auto& line : lines) {
    Line l;
    l.name = line.name;
    l.wavelength_nm = line.wavelength_nm;
    std::vector<kernels::LineComponent> shifted = line.components;
    for (auto& c : shifted) c.wavelength_nm += model_.line_shift_nm;
    l.profile = kernels::make_line_profile(edges, shifted, model_.lsf_fwhm_nm);
    l.emission = emission.find(line.name)->second;
    if (l.emission.mass_amu == 0.0) l.emission.mass_amu = kernels::exosphere::species_mass_amu(line.name).value_or(0.0);
    lines_.push_back(std::move(l));
  }
  // A limb scan repeats the same altitudes: the column ratios of one scan's
  // positions are computed once (a column costs about 14 us).
  if (config.preset == Preset::kLimbScan) {
    const std::uint64_t s = std::min<std::uint64_t>(config.limb_spectra_per_scan, config.spectra);
    scan_altitude_.resize(s);
    scan_shape_.resize(s * lines_.size());
    for (std::uint64_t k = 0; k < s; ++k) {
      scan_altitude_[k] = pointing(config, k).tangent_altitude_km;
      for (std::size_t j = 0; j < lines_.size(); ++j) scan_shape_[k * lines_.size() + j] = shape(j, scan_altitude_[k]);
    }
  }
}

double ChannelSimulator::shape(std::size_t j, double altitude_km) const {
  const auto& e = lines_[j].emission;
  // (Below the surface, a line of sight meets the planet: the surface value.)
  const double z = std::max(altitude_km, 0.0);
  return e.surface_brightness_R > 0.0 ? kernels::exosphere::column_ratio(z, e.mass_amu, e.temperature_K) : 0.0;
}

std::vector<std::string> ChannelSimulator::line_names() const {
  std::vector<std::string> out;
  for (const auto& l : lines_) out.push_back(l.name);
  return out;
}

std::vector<double> ChannelSimulator::line_wavelengths() const {
  std::vector<double> out;
  for (const auto& l : lines_) out.push_back(l.wavelength_nm);
  return out;
}

std::vector<double> ChannelSimulator::line_surface_brightness() const {
  std::vector<double> out;
  for (const auto& l : lines_) out.push_back(l.emission.surface_brightness_R);
  return out;
}

std::vector<double> ChannelSimulator::line_temperature() const {
  std::vector<double> out;
  for (const auto& l : lines_) out.push_back(l.emission.temperature_K);
  return out;
}

std::vector<double> ChannelSimulator::line_background() const {
  std::vector<double> out;
  for (const auto& l : lines_) out.push_back(l.emission.background_R);
  return out;
}

double ChannelSimulator::temperature(std::uint64_t i, double time_s) const noexcept {
  auto rng = kernels::Rng::stream(seed_, channel_id_, i, kTemperature);
  const double t = model_.temperature_mean +
                   model_.temperature_amplitude *
                       std::sin(2.0 * std::numbers::pi * time_s / model_.temperature_period_s) +
                   model_.temperature_noise * rng.normal();
  // Stored as float32: the simulation uses the stored value.
  return static_cast<double>(static_cast<float>(t));
}

double ChannelSimulator::expected_counts(std::span<const double> radiance, double temperature_c,
                                         std::span<double> out) const {
  const double dark_scale =
      1.0 + model_.dark_temperature_coeff * (temperature_c - model_.dark_reference_temperature);
  return kernels::expected_counts(radiance, response_, dark_live_, dark_scale, model_.dead_time_s,
                                  exposure_s_, out);
}

void ChannelSimulator::generate(std::uint64_t i, const Pointing& where, const Spectrum& out,
                                std::span<double> work) const {
  const std::size_t P = pixels_;
  const double temp = temperature(i, where.time_s);
  *out.temperature = static_cast<float>(temp);
  std::copy(continuum_.begin(), continuum_.end(), out.radiance.begin());
  const std::size_t L = lines_.size();
  const std::size_t k = scan_altitude_.empty() ? 0 : static_cast<std::size_t>(i % scan_altitude_.size());
  const bool cached = !scan_altitude_.empty() && scan_altitude_[k] == where.tangent_altitude_km;
  for (std::size_t j = 0; j < L; ++j) {
    const auto& e = lines_[j].emission;
    const double c = cached ? scan_shape_[k * L + j] : shape(j, where.tangent_altitude_km);
    const double b = e.surface_brightness_R * c + e.background_R;
    out.line_brightness[j] = b;
    kernels::add_line(lines_[j].profile, b, out.radiance);
  }
  expected_counts(out.radiance, temp, work);
  auto counts_rng = kernels::Rng::stream(seed_, channel_id_, i, kCounts);
  for (std::size_t p = 0; p < P; ++p) {
    out.counts[p] = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(counts_rng.poisson(work[p]), UINT32_MAX));
    out.hit_counts[p] = 0;
  }
  if (model_.particle_hit_rate > 0.0) {
    auto hit_rng = kernels::Rng::stream(seed_, channel_id_, i, kHits);
    const std::uint64_t hits = hit_rng.poisson(model_.particle_hit_rate);
    const std::uint64_t lo = model_.particle_hit_counts_min;
    const std::uint64_t range = model_.particle_hit_counts_max - lo + 1;
    for (std::uint64_t h = 0; h < hits; ++h) {
      const std::size_t start = hit_rng.below(P);
      const std::size_t width = 1 + hit_rng.below(3);
      for (std::size_t p = start; p < std::min(P, start + width); ++p) {
        const auto c = static_cast<std::uint32_t>(lo + hit_rng.below(range));
        if (dead_[p]) continue;
        out.hit_counts[p] += c;
        out.counts[p] += c;
      }
    }
  }
}

namespace {

// The channels' simulators, in contract order.
std::vector<ChannelSimulator> make_simulators(const SimulationConfig& config, const LineCatalogue& catalogue) {
  std::vector<ChannelSimulator> sims;
  for (auto ch : io::schema::kChannels) {
    if (std::find(config.channels.begin(), config.channels.end(), ch) != config.channels.end()) {
      sims.emplace_back(config, ch, catalogue.channel(ch));
    }
  }
  return sims;
}

// Every object of the file, the root attributes and the per-channel
// constants (calibration, truth of the lines and profiles).
void create_simulation_objects(io::FileWriter& w, const SimulationConfig& config,
                               const std::vector<ChannelSimulator>& sims) {
  const std::uint64_t N = config.spectra;
  io::write_root_attributes(w, config.to_toml());
  w.set_attribute("/", "generator", std::string_view("exospec simulate"));
  w.set_attribute("/", "preset", preset_name(config.preset));
  io::create_objects(w, io::schema::geometry_objects(), {N, 0, 0, 0});
  for (const auto& sim : sims) {
    const std::string& ch = sim.channel();
    const io::schema::Sizes sizes{N, sim.pixels(), sim.wavelength_coeffs().size(), sim.lines()};
    io::create_objects(w, io::schema::raw_objects(ch), sizes);
    io::create_objects(w, io::schema::calibration_objects(ch), sizes);
    io::create_objects(w, io::schema::truth_objects(ch), sizes);
    io::create_objects(w, io::schema::profile_truth_objects(ch), sizes);
    const std::string cal = io::schema::calibration_group(ch);
    w.write<double>(cal + "/wavelength_coeffs", sim.wavelength_coeffs());
    w.write<double>(cal + "/dark_rate", sim.dark_rate());
    w.write<double>(cal + "/flat", sim.flat());
    w.write<double>(cal + "/sensitivity", sim.sensitivity());
    w.write<std::uint8_t>(cal + "/bad_pixel", sim.bad_pixel());
    w.set_attribute(cal, "dead_time_s", sim.model().dead_time_s);
    w.set_attribute(cal, "dark_reference_temperature", sim.model().dark_reference_temperature);
    w.set_attribute(cal, "dark_temperature_coeff", sim.model().dark_temperature_coeff);
    const std::string truth = io::schema::truth_group(ch);
    w.write_strings(truth + "/line_name", sim.line_names());
    const auto wl = sim.line_wavelengths();
    w.write<double>(truth + "/line_wavelength_nm", wl);
    w.write<double>(truth + "/profile_surface_brightness_R", sim.line_surface_brightness());
    w.write<double>(truth + "/profile_temperature_K", sim.line_temperature());
    w.write<double>(truth + "/profile_background_R", sim.line_background());
    const double fwhm = sim.model().lsf_fwhm_nm;
    w.write<double>(truth + "/lsf_fwhm_nm", std::span<const double>(&fwhm, 1));
  }
}

// One block of rows of every channel, and per-thread work. Each spectrum
// comes from its own random streams (keyed by its row), so a block's rows do
// not depend on where the block starts, nor on the thread count.
class SimulationBlocks {
 public:
  SimulationBlocks(const SimulationConfig& config, const std::vector<ChannelSimulator>& sims, std::size_t block,
                   int threads)
      : config_(config), sims_(sims), threads_(threads), buf_(sims.size()), times_(block), altitudes_(block) {
    std::size_t max_p = 0;
    for (std::size_t c = 0; c < sims.size(); ++c) {
      const std::size_t P = sims[c].pixels(), L = sims[c].lines();
      max_p = std::max(max_p, P);
      buf_[c].counts.resize(block * P);
      buf_[c].hits.resize(block * P);
      buf_[c].radiance.resize(block * P);
      buf_[c].brightness.resize(block * L);
      buf_[c].exposure.assign(block, config.exposure_s);
      buf_[c].temperature.resize(block);
    }
    work_.assign(static_cast<std::size_t>(threads), std::vector<double>(max_p));
  }

  void generate(std::uint64_t row0, std::size_t rows) {
    const auto n_rows = static_cast<std::int64_t>(rows);
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const std::uint64_t i = row0 + static_cast<std::uint64_t>(r);
      const Pointing where = pointing(config_, i);
      const auto ri = static_cast<std::size_t>(r);
      times_[ri] = where.time_s;
      altitudes_[ri] = where.tangent_altitude_km;
      auto& ws = work_[static_cast<std::size_t>(omp_get_thread_num())];
      for (std::size_t c = 0; c < sims_.size(); ++c) {
        const std::size_t P = sims_[c].pixels(), L = sims_[c].lines();
        ChannelSimulator::Spectrum s{
            std::span(buf_[c].counts).subspan(ri * P, P), std::span(buf_[c].hits).subspan(ri * P, P),
            std::span(buf_[c].radiance).subspan(ri * P, P),
            std::span(buf_[c].brightness).subspan(ri * L, L), &buf_[c].temperature[ri]};
        sims_[c].generate(i, where, s, std::span(ws).first(P));
      }
    }
  }

  // The block's rows (none: a collective write this rank has no rows for).
  template <class Writer>
  void write(Writer& w, std::uint64_t row0, std::size_t rows) const {
    w.template write_rows<double>("/geometry/time", row0, std::span<const double>(times_).first(rows));
    w.template write_rows<double>("/geometry/tangent_altitude_km", row0,
                                  std::span<const double>(altitudes_).first(rows));
    for (std::size_t c = 0; c < sims_.size(); ++c) {
      const std::string& ch = sims_[c].channel();
      const std::size_t P = sims_[c].pixels(), L = sims_[c].lines();
      const std::string raw = io::schema::raw_group(ch), truth = io::schema::truth_group(ch);
      const Buffers& b = buf_[c];
      w.template write_rows<std::uint32_t>(raw + "/counts", row0, std::span<const std::uint32_t>(b.counts).first(rows * P));
      w.template write_rows<double>(raw + "/exposure_s", row0, std::span<const double>(b.exposure).first(rows));
      w.template write_rows<float>(raw + "/detector_temperature", row0,
                                   std::span<const float>(b.temperature).first(rows));
      w.template write_rows<double>(truth + "/line_brightness", row0,
                                    std::span<const double>(b.brightness).first(rows * L));
      w.template write_rows<double>(truth + "/radiance", row0, std::span<const double>(b.radiance).first(rows * P));
      w.template write_rows<std::uint32_t>(truth + "/particle_hit_counts", row0,
                                           std::span<const std::uint32_t>(b.hits).first(rows * P));
    }
  }

 private:
  struct Buffers {
    std::vector<std::uint32_t> counts, hits;
    std::vector<double> radiance, brightness, exposure;
    std::vector<float> temperature;
  };
  const SimulationConfig& config_;
  const std::vector<ChannelSimulator>& sims_;
  int threads_;
  std::vector<Buffers> buf_;
  std::vector<std::vector<double>> work_;
  std::vector<double> times_, altitudes_;
};

}  // namespace

SimulationSummary simulate(const SimulationConfig& config, const LineCatalogue& catalogue,
                           const std::filesystem::path& output, bool overwrite, int threads,
                           const ProgressCallback& progress) {
  config.validate(catalogue);
  const auto t_start = std::chrono::steady_clock::now();
  const std::vector<ChannelSimulator> sims = make_simulators(config, catalogue);
  const std::uint64_t N = config.spectra;
  io::WriteOptions options;
  options.deflate_level = config.deflate_level;
  io::FileWriter w(output, options, overwrite);
  create_simulation_objects(w, config, sims);

  const std::size_t block = static_cast<std::size_t>(std::min<std::uint64_t>(config.block_rows, N));
  const int nthreads = threads > 0 ? threads : omp_get_max_threads();
  SimulationBlocks blocks(config, sims, block, nthreads);
  for (std::uint64_t row0 = 0; row0 < N; row0 += block) {
    const std::size_t rows = static_cast<std::size_t>(std::min<std::uint64_t>(block, N - row0));
    blocks.generate(row0, rows);
    blocks.write(w, row0, rows);
    if (progress) progress(row0 + rows, N);
  }
  w.commit();

  SimulationSummary summary;
  summary.spectra = N;
  for (const auto& s : sims) summary.channels.push_back(s.channel());
  summary.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return summary;
}

#if EXOSPEC_HAVE_MPI
SimulationSummary simulate_mpi(const SimulationConfig& config, const LineCatalogue& catalogue,
                               const std::filesystem::path& output, bool overwrite, int threads,
                               const ProgressCallback& progress, MPI_Comm comm) {
  const auto t_start = std::chrono::steady_clock::now();
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  detail::Agreement agreement(comm);
  std::vector<ChannelSimulator> sims;
  std::optional<io::FileWriter> w;
  std::string temporary;
  const std::uint64_t N = config.spectra;
  // 1. rank 0 creates the file's objects and closes it for now.
  agreement.phase([&] {
    config.validate(catalogue);
    sims = make_simulators(config, catalogue);
    if (rank == 0) {
      io::WriteOptions options;
      options.deflate_level = config.deflate_level;
      w.emplace(output, options, overwrite);
      create_simulation_objects(*w, config, sims);
      w->suspend();
      temporary = w->temporary_path();
    }
  });
  detail::bcast_string(temporary, 0, comm);
  // 2. every rank its contiguous rows, block by block, written collectively.
  std::optional<io::ParallelRowWriter> pw;
  agreement.phase([&] { pw.emplace(output.string(), temporary, comm); });
  {
    const std::uint64_t first = N / static_cast<std::uint64_t>(size) * static_cast<std::uint64_t>(rank) +
                                N % static_cast<std::uint64_t>(size) * static_cast<std::uint64_t>(rank) /
                                    static_cast<std::uint64_t>(size);
    const std::uint64_t end = rank + 1 == size ? N
                              : N / static_cast<std::uint64_t>(size) * static_cast<std::uint64_t>(rank + 1) +
                                    N % static_cast<std::uint64_t>(size) * static_cast<std::uint64_t>(rank + 1) /
                                        static_cast<std::uint64_t>(size);
    const std::size_t block = static_cast<std::size_t>(std::max<std::uint64_t>(1, std::min<std::uint64_t>(config.block_rows, N)));
    const int nthreads = threads > 0 ? threads : omp_get_max_threads();
    SimulationBlocks blocks(config, sims, block, nthreads);
    unsigned long long steps = (end - first + block - 1) / block;
    MPI_Allreduce(MPI_IN_PLACE, &steps, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm);
    for (std::uint64_t k = 0; k < steps; ++k) {
      const std::uint64_t row0 = std::min(end, first + k * block);
      const std::size_t rows = static_cast<std::size_t>(std::min<std::uint64_t>(block, end - row0));
      agreement.phase([&] {
        blocks.generate(row0, rows);
        if (progress) progress(row0 + rows - first, end - first);
      });
      blocks.write(*pw, rows > 0 ? row0 : 0, rows);
    }
  }
  agreement.phase([&] { pw->close(); });
  pw.reset();
  // 3. rank 0 renames it into place.
  agreement.phase([&] {
    if (rank == 0) {
      w->resume();
      w->commit();
    }
  });
  SimulationSummary summary;
  summary.spectra = N;
  for (const auto& s : sims) summary.channels.push_back(s.channel());
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  MPI_Allreduce(MPI_IN_PLACE, &summary.seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
  return summary;
}
#endif

}  // namespace exospec::pipeline
