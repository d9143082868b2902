#pragma once
// The shared table behind ColumnProfileTable (ballistic.cpp): ln C(z)/C(0)
// over u = ln lambda_c (rows) and t = ln(1 + x / 1e-3) (columns). Building it
// takes about 0.3-0.9 s of exp-sinh quadratures, more than a whole run of a
// small file, so the build computes it once (kernels/tools/make_column_table,
// the same code) and compiles the values into the library; a process only
// computes it when the library was built without them (the generator itself).
// Internal to exospec_kernels and its tests.
#include <cstddef>
#include <span>

namespace exospec::kernels::exosphere::detail {

struct ColumnTableShape {
  double u0;               // u of row 0 (one row below the range)
  std::size_t rows, cols;  // column 0 is t = -dt (one node before t = 0)
};
ColumnTableShape column_table_shape() noexcept;
// Every node computed (rows x cols, row-major); out.size() must be rows x cols.
void compute_column_table(std::span<double> out);
// The values compiled into the library (empty in the generator's own build).
std::span<const double> embedded_column_table() noexcept;

}  // namespace exospec::kernels::exosphere::detail
