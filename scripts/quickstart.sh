#!/usr/bin/env bash
# Builds exospec, simulates the default Phebus-like limb-scan dataset
# (out/default_scan.h5, both channels, 1000 spectra, seed 1), summarises it and
# runs the pipeline on it (out/default_scan_out.h5), then prints fitted against
# true brightness for a few lines and altitudes, and saves three quick-look
# plots of the FUV channel (out/*.png, with the Python package).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target exospec_cli exospec_python
mkdir -p out
./build/cli/exospec simulate -o out/default_scan.h5 --force
./build/cli/exospec info out/default_scan.h5
./build/cli/exospec run out/default_scan.h5 -o out/default_scan_out.h5 --force
# Fitted against true brightness for a few lines, in altitude bins.
./build/cli/exospec report out/default_scan_out.h5 --truth out/default_scan.h5 --bins 4 \
  --lines "H I 121.567,He I 58.433,Mg I 285.213"
for kind in spectrum overview profile; do
  PYTHONPATH=build/python MPLBACKEND=Agg /usr/bin/python3 -m exospec plot "$kind" out/default_scan_out.h5 \
    --channel fuv -o "out/$kind.png"
done
echo "quick-look plots: out/spectrum.png out/overview.png out/profile.png"
