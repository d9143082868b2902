#pragma once
// Savitzky-Golay smoothing and differentiation (Savitzky & Golay, Anal. Chem.
// 36, 1627, 1964; tables corrected by Steinier, Termonia & Deltour, Anal. Chem.
// 44, 1906, 1972) with the semantics of scipy.signal.savgol_coeffs and
// scipy.signal.savgol_filter (scipy 1.10):
//
//   savgol_coeffs(window, polyorder, deriv, delta, pos, use) are the weights
//   that evaluate, at position `pos` of the window, the deriv-th derivative of
//   the least-squares polynomial of degree polyorder through the window's
//   samples (sample spacing delta). "dot" order: y = sum_i c_i x_i over the
//   window; "conv" (scipy's default) is the same array reversed.
//
//   savgol_filter(x, ...) applies the central coefficients to every sample;
//   samples beyond the ends are supplied by `mode` as scipy.ndimage does:
//   mirror (d c b | a b c d | c b a), nearest (a a | a b c d | d d), wrap
//   (c d | a b c d | a b), constant (cval). Mode interp instead fits the
//   polynomial to the first (last) window samples and evaluates it at the first
//   (last) window/2 positions.
//
// Coefficients are computed once per setting (long double, scaled abscissae,
// minimum-norm least squares), so they agree with the exact rational values to
// ~1e-16. The filter is linear, y_j = sum_q w_jq x_q; apply_variance() gives
// var(y_j) = sum_q w_jq^2 var(x_q) for independent samples, with repeated
// samples at the edges (mirror, nearest, wrap) merged before squaring.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace exospec::kernels {

enum class SavgolMode : std::uint8_t { kInterp, kMirror, kNearest, kConstant, kWrap };
// "interp", "mirror", "nearest", "constant", "wrap"; nullopt otherwise.
std::optional<SavgolMode> parse_savgol_mode(std::string_view name) noexcept;
std::string_view savgol_mode_name(SavgolMode m) noexcept;

// scipy.signal.savgol_coeffs. Throws std::invalid_argument for polyorder >=
// window, window < 1, pos outside [0, window). deriv > polyorder gives zeros.
std::vector<double> savgol_coeffs(int window, int polyorder, int deriv = 0, double delta = 1.0,
                                  std::optional<double> pos = std::nullopt, bool use_conv = true);

struct SavgolSettings {
  int window = 11;
  int polyorder = 3;
  int deriv = 0;
  double delta = 1.0;
  SavgolMode mode = SavgolMode::kInterp;
  double cval = 0.0;
};

// A Savitzky-Golay filter prepared for signals of one length (set-up
// allocates; apply() does not). Odd windows only. Throws std::invalid_argument
// for bad settings (interp needs length >= window).
class SavgolFilter {
 public:
  SavgolFilter(std::size_t length, const SavgolSettings& settings);

  std::size_t length() const noexcept { return n_; }
  const SavgolSettings& settings() const noexcept { return s_; }
  // The central ("dot" order) coefficients.
  std::span<const double> coefficients() const noexcept { return centre_; }

  // y = filter(x); x and y of length(), no aliasing.
  template <class T>
  void apply(std::span<const T> x, std::span<T> y) const noexcept;
  // out = var(filter(x)) from var(x) (independent samples).
  template <class T>
  void apply_variance(std::span<const T> var, std::span<T> out) const noexcept;
  // Rows of a row-major batch.
  template <class T>
  void apply_rows(std::span<const T> x, std::span<T> y) const noexcept;
  // apply() and apply_variance() for the outputs [lo, hi) (hi <= length()),
  // each equal to apply()'s to the bit. Outputs near the range (up to 15
  // before it, and the edge outputs of its side) may be written too, the
  // rest of y is untouched.
  template <class T>
  void apply_range(std::span<const T> x, std::span<T> y, std::size_t lo, std::size_t hi) const noexcept;
  template <class T>
  void apply_variance_range(std::span<const T> var, std::span<T> out, std::size_t lo,
                            std::size_t hi) const noexcept;

 private:
  struct EdgeTap {
    std::uint32_t source;
    double weight;
  };
  struct EdgeRow {
    std::uint32_t output, first, count;  // taps_[first, first + count)
    double constant;                     // cval times the weights beyond the ends
  };
  std::size_t n_;
  SavgolSettings s_;
  std::vector<double> centre_, centre2_f64_;
  std::vector<float> centre_f32_, centre2_f32_;
  template <class T>
  const std::vector<T>& centre() const noexcept {
    if constexpr (sizeof(T) == sizeof(float)) {
      return centre_f32_;
    } else {
      return centre_;
    }
  }
  template <class T>
  const std::vector<T>& centre_squared() const noexcept {
    if constexpr (sizeof(T) == sizeof(float)) {
      return centre2_f32_;
    } else {
      return centre2_f64_;
    }
  }
  std::size_t interior_begin_ = 0, interior_end_ = 0;
  std::vector<EdgeRow> edges_;
  std::vector<EdgeTap> taps_;
  // Mode interp: each side's edge outputs (h of them) all read the same W
  // samples, so they are kept as dense W x h matrices too (the weights, and
  // their squares for the variance; tap-major: [t * hp + r], hp = h rounded
  // up to 8, the padding 0), which the
  // edges are computed from, across the outputs at once.
  struct DenseSide {
    std::size_t first_output = 0, first_source = 0;
    std::vector<double> weight, weight2;
  };
  std::vector<DenseSide> dense_;
  template <class T>
  bool dense_edges(std::span<const T> x, std::span<T> y, std::size_t lo, std::size_t hi, bool variance) const noexcept;
};

}  // namespace exospec::kernels
