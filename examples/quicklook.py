#!/usr/bin/python3
"""A quick look at a simulated limb scan, from Python: simulate, run, fit the limb profiles, save three plots.

    PYTHONPATH=build/python /usr/bin/python3 examples/quicklook.py [OUTDIR] [--spectra N]

Writes OUTDIR/scan.h5 (input, with its truth), OUTDIR/scan_out.h5 (`exospec run`'s output) and
OUTDIR/spectrum.png, overview.png, profile.png; prints each FUV line's exospheric temperature
(median over the scans where its profile converged) beside the simulator's truth.
"""
import argparse
import pathlib

import h5py
import numpy as np

import exospec
import exospec.plot


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", nargs="?", default="quicklook")
    ap.add_argument("--spectra", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    out = pathlib.Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    src, res = out / "scan.h5", out / "scan_out.h5"

    # 1. A seeded Phebus-like limb-scan file, and the whole pipeline on it (as `exospec run`).
    exospec.simulate(src, spectra=args.spectra, seed=1, overwrite=True, threads=args.threads)
    summary = exospec.run(src, res, overwrite=True, threads=args.threads)
    print(f"run: {summary['spectra']} spectra x {', '.join(summary['channels'])} "
          f"in {summary['seconds']['total']:.2f} s")

    # 2. The same stages in memory on the FUV spectra, and the limb profiles of their fits.
    d = exospec.read_input(src, "fuv")
    fuv = exospec.Channel("fuv", d["calibration"], threads=args.threads)
    cal, den, fits = fuv.process(d["counts"], d["exposure_s"], d["temperature_c"], altitude_km=d["altitude_km"])
    prof = exospec.profile(d["altitude_km"], fits, channel="fuv", threads=args.threads)
    with h5py.File(src, "r") as f:
        truth = dict(zip([n.decode() for n in f["truth/fuv/line_name"][...]],
                         f["truth/fuv/profile_temperature_K"][...]))
    print(f"{'line':<16} {'scans':>9} {'T (K), median':>14} {'truth (K)':>10}")
    for j, name in enumerate(prof.line_names):
        ok = prof.status[:, j] == 0
        t = np.median(prof.temperature_K[ok, j]) if ok.any() else float("nan")
        print(f"{name:<16} {ok.sum():>4}/{len(ok):<4} {t:>14.0f} {truth.get(name, float('nan')):>10.0f}")

    # 3. Quick-look plots of the output file.
    row = int(np.argmin(d["altitude_km"]))  # a spectrum at the lowest tangent altitude: bright lines
    exospec.plot.spectrum(res, row=row, channel="fuv", path=out / "spectrum.png")
    exospec.plot.overview(res, channel="fuv", path=out / "overview.png")
    exospec.plot.profile(res, channel="fuv", scan=0, path=out / "profile.png")
    print(f"plots: {out / 'spectrum.png'}, {out / 'overview.png'}, {out / 'profile.png'}")


if __name__ == "__main__":
    main()
