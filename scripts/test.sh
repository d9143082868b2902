#!/usr/bin/env bash
# Builds exospec (warnings are errors) and runs the whole test suite: kernels,
# io, pipeline, end-to-end (h5py, CLI errors) and the installed-package consumer.
#   scripts/test.sh                  Release build in build/
#   EXOSPEC_SANITIZE=address,undefined BUILD_DIR=build-asan scripts/test.sh
# Then the MPI build (EXOSPEC_MPI, parallel HDF5) in "$BUILD_DIR-mpi", whose
# MPI tests compare mpirun's outputs with the serial build's. EXOSPEC_TEST_MPI=0
# leaves it out (the sanitizer run of CI: Open MPI's own allocations would be
# reported as leaks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DEXOSPEC_WERROR=ON \
      -DEXOSPEC_SANITIZE="${EXOSPEC_SANITIZE:-}" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
ctest --test-dir "$BUILD_DIR" -j "$(nproc)" --output-on-failure --timeout 600
if [ "${EXOSPEC_TEST_MPI:-1}" != 0 ]; then
  MPI_DIR="$BUILD_DIR-mpi"
  cmake -S . -B "$MPI_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DEXOSPEC_WERROR=ON \
        -DEXOSPEC_SANITIZE="${EXOSPEC_SANITIZE:-}" -DEXOSPEC_MPI=ON -DEXOSPEC_BUILD_BENCHMARKS=OFF \
        -DEXOSPEC_SERIAL_EXE="$(cd "$BUILD_DIR" && pwd)/cli/exospec" >/dev/null
  cmake --build "$MPI_DIR" -j "$(nproc)"
  ctest --test-dir "$MPI_DIR" -j "$(nproc)" --output-on-failure --timeout 600
fi
