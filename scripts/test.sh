#!/usr/bin/env bash
# Builds exospec (warnings are errors) and runs the whole test suite: kernels,
# io, pipeline, end-to-end (h5py, CLI errors) and the installed-package consumer.
#   scripts/test.sh                  Release build in build/
#   EXOSPEC_SANITIZE=address,undefined BUILD_DIR=build-asan scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DEXOSPEC_WERROR=ON \
      -DEXOSPEC_SANITIZE="${EXOSPEC_SANITIZE:-}" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
ctest --test-dir "$BUILD_DIR" -j "$(nproc)" --output-on-failure --timeout 600
