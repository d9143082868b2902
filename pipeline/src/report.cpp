#include "exospec/pipeline/report.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "exospec/error.hpp"
#include "exospec/io/file.hpp"
#include "exospec/io/schema.hpp"

namespace exospec::pipeline {

std::vector<FitReportRow> fit_report(const std::filesystem::path& output,
                                     const std::optional<std::filesystem::path>& truth_input,
                                     std::size_t altitude_bins) {
  const auto out = io::File::open(output);
  std::optional<io::File> truth;
  if (truth_input) truth = io::File::open(*truth_input);
  if (!out.exists("/fit")) return {};  // (a file of `exospec profile`: its profiles only)
  const auto alt = out.read_all<double>("/geometry/tangent_altitude_km");
  const std::size_t N = alt.size();
  if (N == 0) throw FileError(out.path(), "/geometry/tangent_altitude_km", "no spectra");
  const double lo = *std::min_element(alt.begin(), alt.end());
  const double hi = *std::max_element(alt.begin(), alt.end());
  const std::size_t bins = std::max<std::size_t>(altitude_bins, 1);
  const double width = (hi - lo) / static_cast<double>(bins);
  auto bin_of = [&](double z) {
    if (!(width > 0)) return std::size_t{0};
    return std::min(bins - 1, static_cast<std::size_t>((z - lo) / width));
  };
  std::vector<FitReportRow> rows;
  for (auto ch : io::schema::kChannels) {
    const std::string g = io::schema::fit_group(ch);
    if (!out.exists(g)) continue;
    const auto names = out.read_strings(g + "/line_name");
    const std::size_t L = names.size();
    const auto b = out.read_all<double>(g + "/brightness");
    const auto s = out.read_all<double>(g + "/brightness_sigma");
    const auto st = out.read_all<std::uint8_t>(g + "/status");
    if (b.size() != N * L || s.size() != N * L || st.size() != N * L) {
      throw SchemaError(out.path(), g, "fit datasets are not N x L");
    }
    std::vector<double> t;
    if (truth) {
      const std::string tg = io::schema::truth_group(ch);
      if (truth->read_strings(tg + "/line_name") != names) {
        throw FileError(truth->path(), tg + "/line_name", "lines differ from " + g + "/line_name");
      }
      t = truth->read_all<double>(tg + "/line_brightness");
      if (t.size() != N * L) throw SchemaError(truth->path(), tg, "N differs from the output's");
    }
    for (std::size_t j = 0; j < L; ++j) {
      for (std::size_t k = 0; k < bins; ++k) {
        FitReportRow r;
        r.channel = std::string(ch);
        r.line = names[j];
        r.altitude_min_km = lo + width * static_cast<double>(k);
        r.altitude_max_km = lo + width * static_cast<double>(k + 1);
        double sum = 0, var = 0, tsum = 0;
        std::size_t n = 0, nt = 0;
        for (std::size_t i = 0; i < N; ++i) {
          if (bin_of(alt[i]) != k) continue;
          if (!t.empty()) {
            tsum += t[i * L + j];
            ++nt;
          }
          if (st[i * L + j] != 0) continue;
          sum += b[i * L + j];
          var += s[i * L + j] * s[i * L + j];
          ++n;
        }
        r.spectra = n;
        const double nan = std::numeric_limits<double>::quiet_NaN();
        r.fitted_mean = n ? sum / static_cast<double>(n) : nan;
        r.fitted_error = n ? std::sqrt(var) / static_cast<double>(n) : nan;
        r.truth_mean = nt ? tsum / static_cast<double>(nt) : nan;
        rows.push_back(r);
      }
    }
  }
  return rows;
}

std::vector<ProfileReportRow> profile_report(const std::filesystem::path& output,
                                             const std::optional<std::filesystem::path>& truth_input) {
  const auto out = io::File::open(output);
  std::optional<io::File> truth;
  if (truth_input) truth = io::File::open(*truth_input);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto median = [&](std::vector<double> v) {
    if (v.empty()) return nan;
    const std::size_t m = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(m), v.end());
    const double hi = v[m];
    if (v.size() % 2 == 1) return hi;
    return 0.5 * (hi + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(m)));
  };
  std::vector<ProfileReportRow> rows;
  for (auto ch : io::schema::kChannels) {
    const std::string g = io::schema::profile_group(ch);
    if (!out.exists(g)) continue;
    const auto names = out.read_strings(g + "/line_name");
    const std::size_t L = names.size();
    const auto st = out.read_all<std::uint8_t>(g + "/status");
    const std::size_t S = L ? st.size() / L : 0;
    auto read = [&](const std::string& name) {
      auto v = out.read_all<double>(g + "/" + name);
      if (v.size() != S * L) throw SchemaError(out.path(), g + "/" + name, "is not S x L");
      return v;
    };
    const auto t = read("temperature_K"), ts = read("temperature_K_sigma");
    const auto bs = read("surface_brightness_R"), bss = read("surface_brightness_R_sigma");
    const auto bg = read("background_R"), bgs = read("background_R_sigma");
    std::vector<double> tt(L, nan), tbs(L, nan), tbg(L, nan);
    if (truth) {
      const std::string tg = io::schema::truth_group(ch);
      if (truth->exists(tg + "/profile_temperature_K")) {
        if (truth->read_strings(tg + "/line_name") != names) {
          throw FileError(truth->path(), tg + "/line_name", "lines differ from " + g + "/line_name");
        }
        tt = truth->read_all<double>(tg + "/profile_temperature_K");
        tbs = truth->read_all<double>(tg + "/profile_surface_brightness_R");
        tbg = truth->read_all<double>(tg + "/profile_background_R");
        if (tt.size() != L || tbs.size() != L || tbg.size() != L) {
          throw SchemaError(truth->path(), tg, "profile truth is not L long");
        }
      }
    }
    for (std::size_t j = 0; j < L; ++j) {
      ProfileReportRow r;
      r.channel = std::string(ch);
      r.line = names[j];
      r.scans = S;
      std::vector<double> vt, vts, vb, vbs, vg, vgs;
      for (std::size_t s = 0; s < S; ++s) {
        const std::size_t i = s * L + j;
        if (st[i] != 0) continue;
        ++r.converged;
        vt.push_back(t[i]);
        vts.push_back(ts[i]);
        vb.push_back(bs[i]);
        vbs.push_back(bss[i]);
        vg.push_back(bg[i]);
        vgs.push_back(bgs[i]);
      }
      r.temperature_K = {median(vt), median(vts), tt[j]};
      r.surface_brightness_R = {median(vb), median(vbs), tbs[j]};
      r.background_R = {median(vg), median(vgs), tbg[j]};
      rows.push_back(r);
    }
  }
  return rows;
}

}  // namespace exospec::pipeline
