"""Simulate with the exospec command, then read the file with h5py (an
independent reader) and check every SCHEMA.md input and truth object: path,
dtype, shape, `units` and `description`, the root attributes, chunking along N,
and a few values against numpy."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

exe, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
path = os.path.join(work, "sim.h5")
N = 130
subprocess.run([exe, "simulate", "-o", path, "--spectra", str(N), "--seed", "3", "--quiet"],
               check=True)

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


with h5py.File(path, "r") as f:
    check(f.attrs["schema"] == "exospec", "root schema")
    sv = f.attrs["schema_version"]
    check(sv == 1 and sv.dtype == np.int32, "root schema_version int32 1")
    for ch in ("euv", "fuv"):
        P = f[f"/raw/{ch}/counts"].shape[1]
        K = f[f"/calibration/{ch}/wavelength_coeffs"].shape[0]
        L = f[f"/truth/{ch}/line_name"].shape[0]
        spec = {
            f"/raw/{ch}/counts": ("uint32", (N, P), "count"),
            f"/raw/{ch}/exposure_s": ("float64", (N,), "s"),
            f"/raw/{ch}/detector_temperature": ("float32", (N,), "degC"),
            f"/calibration/{ch}/wavelength_coeffs": ("float64", (K,), "nm"),
            f"/calibration/{ch}/dark_rate": ("float64", (P,), "count/s"),
            f"/calibration/{ch}/flat": ("float64", (P,), "1"),
            f"/calibration/{ch}/sensitivity": ("float64", (P,), "count/s/(R/nm)"),
            f"/calibration/{ch}/bad_pixel": ("uint8", (P,), "1"),
            f"/truth/{ch}/line_wavelength_nm": ("float64", (L,), "nm"),
            f"/truth/{ch}/line_brightness": ("float64", (N, L), "R"),
            f"/truth/{ch}/radiance": ("float64", (N, P), "R/nm"),
            f"/truth/{ch}/lsf_fwhm_nm": ("float64", (), "nm"),
            f"/truth/{ch}/particle_hit_counts": ("uint32", (N, P), "count"),
        }
        for obj, (dtype, shape, units) in spec.items():
            d = f[obj]
            check(d.dtype == np.dtype(dtype), f"{obj} dtype {d.dtype} != {dtype}")
            check(d.shape == shape, f"{obj} shape {d.shape} != {shape}")
            check(d.attrs.get("units") == units, f"{obj} units {d.attrs.get('units')!r}")
            check(len(d.attrs.get("description", "")) > 0, f"{obj} description")
            if len(shape) >= 1 and shape[0] == N and obj.split("/")[1] in ("raw", "truth"):
                check(d.chunks is not None and d.chunks[1:] == shape[1:],
                      f"{obj} not chunked in whole rows: {d.chunks}")
        names = f[f"/truth/{ch}/line_name"]
        check(h5py.check_string_dtype(names.dtype) is not None
              and h5py.check_string_dtype(names.dtype).length is None
              and h5py.check_string_dtype(names.dtype).encoding == "utf-8",
              f"{ch} line_name not variable-length UTF-8")
        check(len(names.attrs.get("description", "")) > 0, f"{ch} line_name description")
        for a in ("dead_time_s", "dark_reference_temperature", "dark_temperature_coeff"):
            v = f[f"/calibration/{ch}"].attrs[a]
            check(np.asarray(v).dtype == np.float64, f"{ch} attribute {a} dtype")
        # Values, with numpy: flat has mean 1; wavelengths span the band.
        flat = f[f"/calibration/{ch}/flat"][:]
        check(abs(flat.mean() - 1.0) < 1e-12, f"{ch} flat mean {flat.mean()}")
        c = f[f"/calibration/{ch}/wavelength_coeffs"][:]
        lam = np.polynomial.polynomial.polyval(np.array([0, P - 1]), c)
        want = (55.0, 155.0) if ch == "euv" else (145.0, 315.0)
        check(np.allclose(lam, want, atol=1e-9), f"{ch} wavelength range {lam}")
        counts = f[f"/raw/{ch}/counts"][:]
        hits = f[f"/truth/{ch}/particle_hit_counts"][:]
        check(np.all(counts >= hits), f"{ch} counts below hits")
        check(counts.sum() > 0, f"{ch} empty counts")
    for obj in ("/geometry/time", "/geometry/tangent_altitude_km"):
        d = f[obj]
        check(d.dtype == np.float64 and d.shape == (N,), f"{obj} dtype/shape")
        check(d.attrs.get("units") == ("s" if obj.endswith("time") else "km"), f"{obj} units")
    t = f["/geometry/time"][:]
    check(np.allclose(np.diff(t), 10.0), "cadence 10 s")
    names = [s.decode() if isinstance(s, bytes) else s for s in f["/truth/euv/line_name"][:]]
    check(names == ["He I 58.433", "H I 102.572", "H I 121.567", "O I 130.4"], f"euv names {names}")

# exospec info --json agrees with h5py.
import json
out = subprocess.run([exe, "info", path, "--json"], check=True, capture_output=True, text=True)
info = json.loads(out.stdout)
check(info["spectra"] == N, "info spectra")
check(sorted(info["channels"]) == ["euv", "fuv"], "info channels")
with h5py.File(path, "r") as f:
    z = f["/geometry/tangent_altitude_km"][:]
    check(np.isclose(info["tangent_altitude_km"][0], z.min()) and
          np.isclose(info["tangent_altitude_km"][1], z.max()), "info altitude range")
    T = f["/raw/fuv/detector_temperature"][:]
    rng = info["channels"]["fuv"]["detector_temperature_degC"]
    check(np.isclose(rng[0], T.min()) and np.isclose(rng[1], T.max()), "info temperature range")

# exospec info on an output of `exospec run` (FUV only, fit only) agrees with
# h5py and hashlib; a fit dataset of the wrong shape is one error naming it.
import hashlib
result = os.path.join(work, "sim_out.h5")
subprocess.run([exe, "run", path, "-o", result, "--channels", "fuv", "--products", "fit", "--quiet"],
               check=True)
info = json.loads(subprocess.run([exe, "info", result, "--json"], check=True, capture_output=True,
                                 text=True).stdout)
STATUS = ["converged", "max_iterations", "stalled", "singular", "too_few_pixels", "invalid_spectrum",
          "not_finite"]
check(info["kind"] == "output" and info["spectra"] == N, f"output info: kind {info['kind']}, N {info['spectra']}")
check(list(info["channels"]) == ["fuv"] and info["channels"]["fuv"]["products"] == ["fit"],
      f"output info: channels {info['channels'].keys()}")
check(info["input_sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest(), "output info: input hash")
with h5py.File(result, "r") as f:
    names = [s.decode() if isinstance(s, bytes) else s for s in f["/fit/fuv/line_name"][:]]
    check(info["channels"]["fuv"]["fit_lines"] == names, "output info: fitted lines")
    counts = np.bincount(f["/fit/fuv/status"][()].ravel())
    expected = {STATUS[k]: int(c) for k, c in enumerate(counts) if c > 0}
    check(info["channels"]["fuv"]["fit_status"] == expected,
          f"output info: fit status {info['channels']['fuv']['fit_status']}, numpy {expected}")
    z = f["/geometry/tangent_altitude_km"][:]
    check(np.isclose(info["tangent_altitude_km"][1], z.max()), "output info: altitude range")
    check(info["created_utc"] == f.attrs["created_utc"], "output info: creation time")
bad = os.path.join(work, "bad_out.h5")
shutil.copy(result, bad)
with h5py.File(bad, "a") as f:
    del f["/fit/fuv/status"]
    f["/fit/fuv/status"] = np.zeros((N - 1, len(names)), np.uint8)
r = subprocess.run([exe, "info", bad], capture_output=True, text=True)
check(r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "/fit/fuv/status" in r.stderr
      and "shape" in r.stderr, f"output info, wrong shape: {r.returncode} {r.stderr!r}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("h5py check: all SCHEMA objects present with dtype, shape, units, description; "
      "exospec info agrees on an input and an output")
