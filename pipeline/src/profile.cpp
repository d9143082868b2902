#include "exospec/pipeline/profile.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>

#include "exospec/error.hpp"
#include "exospec/io/contract_writer.hpp"
#include "exospec/io/file.hpp"
#include "exospec/io/hash.hpp"
#include "exospec/io/input_file.hpp"
#include "exospec/io/schema.hpp"
#include "exospec/kernels/ballistic.hpp"

namespace exospec::pipeline {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

double line_mass_amu(const RunConfig& config, const std::string& line_name) {
  if (auto it = config.profile.mass_amu.find(line_name); it != config.profile.mass_amu.end()) return it->second;
  return kernels::exosphere::species_mass_amu(line_name).value_or(kNaN);
}

struct ChannelProfiles::Impl {
  std::string channel;
  std::vector<std::string> names;
  std::vector<double> masses;
  std::vector<kernels::Scan> scans;
  int threads = 1;
  std::vector<kernels::ProfileFitter> fitters;             // per line
  std::vector<kernels::ProfileFitter::Workspace> work;     // per thread
  struct Column {
    std::vector<double> brightness, sigma;
    std::vector<std::uint8_t> status;
  };
  std::vector<Column> columns;                             // per thread: one line of a scan
  std::vector<kernels::ProfileResult> results;             // fitted scans x lines
  // The spectra not yet fitted: rows [first, first + altitude.size()).
  std::uint64_t first = 0, next = 0;  // next: the row the next add() must start at
  std::vector<double> altitude, brightness, sigma;
  std::vector<std::uint8_t> status;
  std::size_t fitted = 0;
  double seconds = 0.0;

  // Fits the scans [fitted, last) from the buffered rows, then drops the
  // rows before scan `last`.
  void fit_through(std::size_t last) {
    if (last <= fitted) return;
    const auto t0 = Clock::now();
    const std::size_t L = names.size(), S0 = fitted;
    const auto jobs = static_cast<std::int64_t>((last - S0) * L);
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (std::int64_t job = 0; job < jobs; ++job) {
      const std::size_t s = S0 + static_cast<std::size_t>(job) / L, j = static_cast<std::size_t>(job) % L;
      const kernels::Scan& sc = scans[s];
      const auto r0 = static_cast<std::size_t>(static_cast<std::uint64_t>(sc.first) - first);
      const auto n = static_cast<std::size_t>(sc.count);
      // (This line's column of the row-major n x L fits.)
      const auto thread = static_cast<std::size_t>(omp_get_thread_num());
      auto& ws = work[thread];
      auto& [b, sg, st] = columns[thread];
      b.resize(n);
      sg.resize(n);
      st.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        b[i] = brightness[(r0 + i) * L + j];
        sg[i] = sigma[(r0 + i) * L + j];
        st[i] = status[(r0 + i) * L + j];
      }
      results[s * L + j] = fitters[j].fit(std::span<const double>(altitude).subspan(r0, n), b, sg, st, ws);
    }
    fitted = last;
    // Drop the rows before the next scan.
    const std::uint64_t keep_from = last < scans.size() ? static_cast<std::uint64_t>(scans[last].first) : next;
    const auto drop = static_cast<std::size_t>(std::min<std::uint64_t>(keep_from - first, altitude.size()));
    altitude.erase(altitude.begin(), altitude.begin() + static_cast<std::ptrdiff_t>(drop));
    brightness.erase(brightness.begin(), brightness.begin() + static_cast<std::ptrdiff_t>(drop * L));
    sigma.erase(sigma.begin(), sigma.begin() + static_cast<std::ptrdiff_t>(drop * L));
    status.erase(status.begin(), status.begin() + static_cast<std::ptrdiff_t>(drop * L));
    first += drop;
    seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }
};

ChannelProfiles::ChannelProfiles(const RunConfig& config, std::string channel,
                                 std::vector<std::string> line_names, std::vector<kernels::Scan> scans,
                                 int threads)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.channel = std::move(channel);
  m.names = std::move(line_names);
  m.scans = std::move(scans);
  m.threads = threads > 0 ? threads : omp_get_max_threads();
  std::size_t longest = 0;
  for (const auto& s : m.scans) longest = std::max(longest, static_cast<std::size_t>(s.count));
  for (const auto& name : m.names) {
    m.masses.push_back(line_mass_amu(config, name));
    try {
      m.fitters.emplace_back(m.masses.back(), config.profile.settings);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(config.source, "profile", e.what());
    }
  }
  // Every scan's results, allocated (and written) now: the run's memory is
  // then all taken at its start, and does not grow as the scans are fitted
  // (growing it scan by scan moved 20,000 scans x 12 lines of results
  // through a doubling vector; docs/RELIABILITY.md, the soak).
  m.results.assign(m.scans.size() * m.names.size(), kernels::ProfileResult{});
  m.columns.resize(static_cast<std::size_t>(m.threads));
  for (int t = 0; t < m.threads; ++t) {
    m.work.push_back(m.fitters.empty() ? kernels::ProfileFitter::Workspace{} : m.fitters[0].make_workspace(longest));
  }
}
ChannelProfiles::~ChannelProfiles() = default;
ChannelProfiles::ChannelProfiles(ChannelProfiles&&) noexcept = default;
ChannelProfiles& ChannelProfiles::operator=(ChannelProfiles&&) noexcept = default;

const std::string& ChannelProfiles::channel() const noexcept { return impl_->channel; }
const std::vector<std::string>& ChannelProfiles::line_names() const noexcept { return impl_->names; }
const std::vector<double>& ChannelProfiles::masses_amu() const noexcept { return impl_->masses; }
const std::vector<kernels::Scan>& ChannelProfiles::scans() const noexcept { return impl_->scans; }
std::size_t ChannelProfiles::fitted() const noexcept { return impl_->fitted; }
double ChannelProfiles::seconds() const noexcept { return impl_->seconds; }
const kernels::ProfileResult& ChannelProfiles::result(std::size_t s, std::size_t j) const noexcept {
  return impl_->results[s * impl_->names.size() + j];
}

void ChannelProfiles::start_at(std::size_t s) {
  Impl& m = *impl_;
  if (s > m.scans.size() || m.next != 0 || m.fitted != 0) {
    throw std::invalid_argument("ChannelProfiles::start_at: not a fresh part's first scan");
  }
  const std::uint64_t row = s < m.scans.size() ? static_cast<std::uint64_t>(m.scans[s].first)
                            : m.scans.empty()  ? 0
                                               : static_cast<std::uint64_t>(m.scans.back().first + m.scans.back().count);
  m.fitted = s;
  m.first = m.next = row;
}

std::span<const kernels::ProfileResult> ChannelProfiles::results(std::size_t s0, std::size_t s1) const {
  const Impl& m = *impl_;
  const std::size_t L = m.names.size();
  s1 = std::min(s1, m.fitted);
  s0 = std::min(s0, s1);
  return std::span<const kernels::ProfileResult>(m.results).subspan(s0 * L, (s1 - s0) * L);
}

void ChannelProfiles::adopt(std::span<const kernels::ProfileResult> r) {
  Impl& m = *impl_;
  const std::size_t L = m.names.size();
  if (L == 0) return;
  if (r.size() % L != 0 || m.fitted + r.size() / L > m.scans.size()) {
    throw std::invalid_argument("ChannelProfiles::adopt: results are not whole scans that follow on");
  }
  std::copy(r.begin(), r.end(), m.results.begin() + static_cast<std::ptrdiff_t>(m.fitted * L));
  m.fitted += r.size() / L;
}

void ChannelProfiles::add(std::uint64_t row0, std::span<const double> altitude_km,
                          std::span<const double> brightness, std::span<const double> sigma,
                          std::span<const std::uint8_t> status) {
  Impl& m = *impl_;
  const std::size_t n = altitude_km.size(), L = m.names.size();
  if (row0 != m.next) throw std::invalid_argument("ChannelProfiles::add: rows out of order");
  if (brightness.size() != n * L || sigma.size() != n * L || status.size() != n * L) {
    throw std::invalid_argument("ChannelProfiles::add: fits are not rows x lines");
  }
  m.altitude.insert(m.altitude.end(), altitude_km.begin(), altitude_km.end());
  m.brightness.insert(m.brightness.end(), brightness.begin(), brightness.end());
  m.sigma.insert(m.sigma.end(), sigma.begin(), sigma.end());
  m.status.insert(m.status.end(), status.begin(), status.end());
  m.next += n;
  std::size_t last = m.fitted;
  while (last < m.scans.size() &&
         static_cast<std::uint64_t>(m.scans[last].first + m.scans[last].count) <= m.next) {
    ++last;
  }
  m.fit_through(last);
}

void write_profiles(io::FileWriter& w, const ChannelProfiles& p) {
  const std::size_t S = p.scans().size(), L = p.line_names().size();
  if (p.fitted() != S) throw std::logic_error("write_profiles: not every scan is fitted");
  const std::string g = io::schema::profile_group(p.channel());
  io::create_objects(w, io::schema::profile_objects(p.channel()), {0, 0, 0, L, S});
  w.write_strings(g + "/line_name", p.line_names());
  w.write<double>(g + "/mass_amu", p.masses_amu());
  std::vector<std::int64_t> first(S), count(S), spectra(S * L);
  for (std::size_t s = 0; s < S; ++s) {
    first[s] = p.scans()[s].first;
    count[s] = p.scans()[s].count;
  }
  w.write<std::int64_t>(g + "/scan_first", first);
  w.write<std::int64_t>(g + "/scan_count", count);
  std::vector<double> v(S * L);
  auto put = [&](const char* name, double kernels::ProfileResult::*field) {
    for (std::size_t i = 0; i < S * L; ++i) v[i] = p.result(i / L, i % L).*field;
    w.write<double>(g + "/" + name, v);
  };
  put("surface_brightness_R", &kernels::ProfileResult::surface_brightness_R);
  put("surface_brightness_R_sigma", &kernels::ProfileResult::surface_brightness_sigma);
  put("temperature_K", &kernels::ProfileResult::temperature_K);
  put("temperature_K_sigma", &kernels::ProfileResult::temperature_sigma);
  put("background_R", &kernels::ProfileResult::background_R);
  put("background_R_sigma", &kernels::ProfileResult::background_sigma);
  put("scale_height_km", &kernels::ProfileResult::scale_height_km);
  put("scale_height_km_sigma", &kernels::ProfileResult::scale_height_sigma);
  put("temperature_background_correlation", &kernels::ProfileResult::temperature_background_correlation);
  std::vector<float> chi2(S * L);
  std::vector<std::uint8_t> status(S * L);
  for (std::size_t i = 0; i < S * L; ++i) {
    const auto& r = p.result(i / L, i % L);
    chi2[i] = static_cast<float>(r.chi2_reduced);
    status[i] = static_cast<std::uint8_t>(r.status);
    spectra[i] = static_cast<std::int64_t>(r.spectra);
  }
  w.write<float>(g + "/chi2_reduced", chi2);
  w.write<std::uint8_t>(g + "/status", status);
  w.write<std::int64_t>(g + "/spectra", spectra);
}

ProfileSummary profile(const RunConfig& config, const std::filesystem::path& run_output,
                       const std::filesystem::path& output, bool overwrite, int threads) {
  config.validate();
  const auto t0 = Clock::now();
  const auto in = io::File::open(run_output);
  {
    std::error_code ec;
    if (std::filesystem::exists(output, ec) && std::filesystem::equivalent(run_output, output, ec)) {
      throw FileError(output.string(), "", "output would replace the input file");
    }
  }
  const std::string alt_path = "/geometry/tangent_altitude_km";
  if (!in.exists(alt_path)) throw SchemaError(in.path(), alt_path, "missing (not an output of exospec run?)");
  const auto alt_info = in.dataset_info(alt_path);
  if (alt_info.dims.size() != 1) throw SchemaError(in.path(), alt_path, "must be one-dimensional (N)");
  const std::uint64_t N = alt_info.dims[0];
  std::vector<double> altitude(N);
  in.read(alt_path, std::span<double>(altitude));
  const auto scans = kernels::find_scans(altitude, config.scan_mode, config.scan_length);
  ProfileSummary summary;
  summary.spectra = N;
  summary.scans = scans.size();
  std::vector<ChannelProfiles> channels;
  for (auto ch : io::schema::kChannels) {
    if (!config.channels.empty() &&
        std::find(config.channels.begin(), config.channels.end(), ch) == config.channels.end()) {
      continue;
    }
    const std::string g = io::schema::fit_group(ch);
    if (!in.exists(g)) continue;
    const auto names = in.read_strings(g + "/line_name");
    io::validate_objects(in, io::schema::fit_objects(ch), {N, 0, 0, names.size()});
    channels.emplace_back(config, std::string(ch), names, scans, threads);
    summary.channels.emplace_back(ch);
  }
  if (channels.empty()) throw SchemaError(in.path(), "/fit", "no fit group: run the fit stage first");
  const std::size_t block = static_cast<std::size_t>(std::min<std::uint64_t>(config.block_rows, std::max<std::uint64_t>(N, 1)));
  for (auto& cp : channels) {
    const std::size_t L = cp.line_names().size();
    const std::string g = io::schema::fit_group(cp.channel());
    std::vector<double> b(block * L), s(block * L);
    std::vector<std::uint8_t> st(block * L);
    for (std::uint64_t row0 = 0; row0 < N; row0 += block) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(block, N - row0));
      in.read_rows(g + "/brightness", row0, std::span<double>(b).first(n * L));
      in.read_rows(g + "/brightness_sigma", row0, std::span<double>(s).first(n * L));
      in.read_rows(g + "/status", row0, std::span<std::uint8_t>(st).first(n * L));
      cp.add(row0, std::span<const double>(altitude).subspan(row0, n), std::span<const double>(b).first(n * L),
             std::span<const double>(s).first(n * L), std::span<const std::uint8_t>(st).first(n * L));
    }
  }
  io::WriteOptions options;
  io::FileWriter w(output, options, overwrite);
  io::write_root_attributes(w, config.to_toml());
  w.set_attribute("/", "input_file", std::filesystem::absolute(run_output).lexically_normal().string());
  w.set_attribute("/", "input_sha256", io::sha256_file(run_output));
  for (const auto& cp : channels) {
    write_profiles(w, cp);
    for (std::size_t i = 0; i < cp.scans().size() * cp.line_names().size(); ++i) {
      const auto st = static_cast<std::size_t>(cp.result(i / cp.line_names().size(), i % cp.line_names().size()).status);
      if (summary.status.size() <= st) summary.status.resize(st + 1, 0);
      ++summary.status[st];
    }
  }
  w.commit();
  summary.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return summary;
}

}  // namespace exospec::pipeline
