// Must NOT compile: HDF5 is private to exospec_io, so the pipeline (and any
// code above it) cannot call HDF5 directly.
#include <hdf5.h>

#include "exospec/pipeline/simulate.hpp"

int main() { return H5open() < 0; }
