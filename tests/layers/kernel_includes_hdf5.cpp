// Must NOT compile: the kernels layer has no HDF5 on its include path
// (tests/CMakeLists.txt builds this with the kernels' usage requirements only
// and expects the build to fail).
#include <hdf5.h>

#include "exospec/kernels/spectrum_model.hpp"

int main() { return H5open() < 0; }
