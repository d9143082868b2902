#!/usr/bin/env bash
# Installs the Debian 12 packages that exospec needs to build, test and
# benchmark. Idempotent: packages already present are left alone. Run as root
# (or with sudo available).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libeigen3-dev libfftw3-dev libhdf5-dev hdf5-tools
  libbenchmark-dev libgtest-dev
  libcli11-dev libtoml11-dev nlohmann-json3-dev libssl-dev libdeflate-dev
  python3-h5py python3-numpy python3-scipy
  python3-dev pybind11-dev python3-pytest python3-matplotlib
  clang libclang-rt-14-dev
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
