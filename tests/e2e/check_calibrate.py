"""`exospec run --stages calibrate` checked with h5py and numpy: the output
objects of the contract (dtype, shape, units, description), provenance
attributes, /geometry copied, the input untouched, and the radiance and
variance recomputed independently in numpy from the raw counts and the
calibration (the formulas of kernels/calibrate.hpp, written from
shared/INSTRUMENT.md)."""
import hashlib
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

from scan_rule import scan_of_rows

exe, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
inp, out = os.path.join(work, "in.h5"), os.path.join(work, "out.h5")
subprocess.run([exe, "simulate", "-o", inp, "--spectra", "64", "--seed", "5", "--quiet"],
               check=True)
digest = hashlib.sha256(open(inp, "rb").read()).hexdigest()
mtime = os.stat(inp).st_mtime_ns
subprocess.run([exe, "run", inp, "-o", out, "--stages", "calibrate", "--quiet"], check=True)

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


check(hashlib.sha256(open(inp, "rb").read()).hexdigest() == digest, "input file modified")
check(os.stat(inp).st_mtime_ns == mtime, "input file touched")
check(sorted(os.listdir(work)) == ["in.h5", "out.h5"], f"stray files: {os.listdir(work)}")

fi, fo = h5py.File(inp, "r"), h5py.File(out, "r")
attrs = fo.attrs
check(attrs["schema"] == "exospec" and attrs["schema_version"] == 1, "schema attributes")
for a in ["software_version", "config", "input_file", "input_sha256", "created_utc"]:
    check(a in attrs, f"missing root attribute {a}")
check(attrs["input_sha256"] == digest, "input_sha256 differs from hashlib")
check("[calibrate]" in attrs["config"], "config attribute lacks [calibrate]")
check("denoised" not in fo and "fit" not in fo, "stages not run must leave their groups out")
for g in ["time", "tangent_altitude_km"]:
    check(np.array_equal(fi["geometry/" + g][:], fo["geometry/" + g][:]), f"geometry/{g} differs")

N = fi["geometry/time"].shape[0]
spec = {"wavelength_nm": ("float64", "P", "nm"), "radiance": ("float32", "NxP", "R/nm"),
        "variance": ("float32", "NxP", "(R/nm)^2"), "quality": ("uint8", "NxP", "1")}
for ch in ["euv", "fuv"]:
    P = fi[f"raw/{ch}/counts"].shape[1]
    for name, (dtype, shape, units) in spec.items():
        d = fo[f"calibrated/{ch}/{name}"]
        check(str(d.dtype) == dtype, f"{ch}/{name} dtype {d.dtype}")
        check(d.shape == ((P,) if shape == "P" else (N, P)), f"{ch}/{name} shape {d.shape}")
        check(d.attrs["units"] == units, f"{ch}/{name} units")
        check(len(d.attrs["description"]) > 0, f"{ch}/{name} description")
        if shape == "NxP":
            check(d.chunks is not None and d.chunks[1] == P, f"{ch}/{name} not row-chunked")

    # Independent recomputation in numpy.
    cal = fi[f"calibration/{ch}"]
    c = fi[f"raw/{ch}/counts"][:].astype(np.float64)
    t = fi[f"raw/{ch}/exposure_s"][:][:, None]
    T = fi[f"raw/{ch}/detector_temperature"][:].astype(np.float64)[:, None]
    tau = cal.attrs["dead_time_s"]
    resp = cal["sensitivity"][:] * cal["flat"][:]
    dark = cal["dark_rate"][:] * (1 + cal.attrs["dark_temperature_coeff"] *
                                  (T - cal.attrs["dark_reference_temperature"]))
    m = c.sum(axis=1, keepdims=True) / t
    g = 1 - m * tau
    L = (c / (t * g) - dark) / resp
    wl = np.polyval(cal["wavelength_coeffs"][:][::-1], np.arange(P))
    check(np.allclose(fo[f"calibrated/{ch}/wavelength_nm"][:], wl, rtol=1e-13), f"{ch} wavelength")
    bad = cal["bad_pixel"][:] != 0
    Lo = fo[f"calibrated/{ch}/radiance"][:].astype(np.float64)
    Vo = fo[f"calibrated/{ch}/variance"][:].astype(np.float64)
    Qo = fo[f"calibrated/{ch}/quality"][:]
    check(np.all(Qo[:, bad] == 1) and np.all(Qo[:, ~bad] == 0), f"{ch} quality flags")
    check(np.all(np.isnan(Lo[:, bad])), f"{ch} bad pixels not NaN")
    scale = np.abs(L[:, ~bad]) + 1e-3 * np.abs(L[:, ~bad]).max()
    err = np.abs(Lo[:, ~bad] - L[:, ~bad]) / scale
    check(err.max() < 1e-5, f"{ch} radiance differs from numpy: {err.max():.2e}")

    # Variance (docs/CALIBRATION.md), for a sample of pixels: the spectra
    # within +-2 of the same scan (the scan rule of docs/PROFILE.md, written
    # in scan_rule.py); the wide mean over their usable pixels within +-10
    # of p, (row, p) itself left out; the leave-one-out quadratic
    # (np.polyfit) over the usable pixels of the +-4 window (shifted inwards
    # at the edges) of the spectra's mean, its weights' squared norm from the
    # pseudo-inverse; the quadratic where the two differ by > 3 of its sigma.
    scan = scan_of_rows(fi["geometry/tangent_altitude_km"][:])
    rng = np.random.default_rng(1)
    good = np.flatnonzero(~bad)
    worst, chose_quadratic = 0.0, 0
    for i in rng.choice(N, 8, replace=False):
        rows = [r for r in range(max(i - 2, 0), min(i + 3, N)) if scan[r] == scan[i]]
        tg = t[i, 0] * g[i, 0]
        for p in np.concatenate([[good[0], good[-1]], rng.choice(good, 40, replace=False)]):
            k = resp[p] * tg
            cols = [x for x in range(max(p - 10, 0), min(p + 11, P)) if not bad[x]]
            block = L[np.ix_(rows, cols)]
            wide = (block.sum() - L[i, p]) / (block.size - 1)
            lo = min(max(p - 4, 0), P - 9)
            q = np.array([x for x in range(lo, lo + 9) if x != p and not bad[x]])
            order = 2 if len(q) >= 5 else 1 if len(q) >= 3 else 0
            mean = L[np.ix_(rows, q)].mean(axis=0)
            quad = np.polyfit(q - p, mean, order)[-1]
            w2 = np.sum(np.linalg.pinv(np.vander(q - p, order + 1))[-1] ** 2)
            mu_w = max((max(wide, 0.0) + dark[i, p] / resp[p]) * k, 0.1)
            structure = abs(quad - wide) > 3 * np.sqrt(w2 * mu_w / len(rows)) / k
            chose_quadratic += structure
            Lhat = max(quad if structure else wide, 0.0)
            mu = max((Lhat + dark[i, p] / resp[p]) * k, 0.1)
            beta = tau / tg
            M = c[i].sum()
            base = 1 / k
            var = base**2 * mu * ((1 + beta * mu) ** 2 + beta**2 * mu * max(M - mu, 0))
            worst = max(worst, abs(Vo[i, p] - var) / var)
    check(0 < chose_quadratic < 8 * 42, f"{ch}: the quadratic chosen at {chose_quadratic} of {8 * 42} pixels "
          "(the sample must hold both estimates)")
    check(worst < 1e-4, f"{ch} variance differs from numpy: {worst:.2e}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("calibrate output: contract, provenance and values agree with numpy")
