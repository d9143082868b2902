"""The profile stage's edge cases, through the command line (docs/PROFILE.md):
a non-monotonic geometry (a flyby: down, then up), a scan of one spectrum, a
line that is nowhere detected, a temperature at the bound of the search, a
scan whose spectra all sit at one altitude; and `exospec profile` on files it
cannot use (one error line naming the file, non-zero exit, no output).
Every case gets statuses, never a crash or a silent number."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

from scan_rule import monotonic_scans

exe, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
failures = []
NOT_DETECTED, AT_BOUND, TOO_FEW, NO_RANGE = 1, 2, 3, 4


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def run(*args, config=None):
    extra = ["--config", config] if config else []
    return subprocess.run([exe, *args, "--quiet", *extra], capture_output=True, text=True)


def toml(name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def names(g):
    return [n.decode() if isinstance(n, bytes) else n for n in g["line_name"][:]]


# 1. A flyby: the altitude falls to closest approach and rises again.
fly, fly_out = os.path.join(work, "flyby.h5"), os.path.join(work, "flyby_out.h5")
subprocess.run([exe, "simulate", "-o", fly, "--preset", "flyby", "--spectra", "121", "--channels", "fuv",
                "--seed", "2", "--quiet"], check=True)
r = run("run", fly, "-o", fly_out, "--products", "fit,profile")
check(r.returncode == 0, f"flyby run: exit {r.returncode} {r.stderr.strip()}")
if r.returncode == 0:
    with h5py.File(fly, "r") as fi, h5py.File(fly_out, "r") as fo:
        want = monotonic_scans(fi["geometry/tangent_altitude_km"][()])
        got = list(zip(fo["profile/fuv/scan_first"][()].tolist(), fo["profile/fuv/scan_count"][()].tolist()))
        check(len(want) >= 2 and got == want, f"flyby: scans {got}, the rule gives {want}")
        st = fo["profile/fuv/status"][()]
        check(st.shape == (len(want), 8) and np.all(st <= 6), f"flyby: statuses {np.unique(st).tolist()}")

# 2. A scan of one spectrum: fixed scans of 50 over 101 spectra.
limb = os.path.join(work, "limb.h5")
subprocess.run([exe, "simulate", "-o", limb, "--spectra", "101", "--channels", "fuv", "--seed", "4", "--quiet"],
               check=True)
fixed = toml("fixed.toml", '[scans]\nmode = "fixed"\nlength = 50\n')
out = os.path.join(work, "fixed_out.h5")
r = run("run", limb, "-o", out, "--products", "fit,profile", config=fixed)
check(r.returncode == 0, f"fixed scans: exit {r.returncode} {r.stderr.strip()}")
if r.returncode == 0:
    with h5py.File(out, "r") as fo:
        g = fo["profile/fuv"]
        check(g["scan_first"][()].tolist() == [0, 50, 100] and g["scan_count"][()].tolist() == [50, 50, 1],
              f"fixed scans: {g['scan_first'][()].tolist()} x {g['scan_count'][()].tolist()}")
        last = g["status"][2, :]
        check(np.all(last == TOO_FEW) and np.all(np.isnan(g["temperature_K"][2, :]))
              and np.all(np.isnan(g["surface_brightness_R_sigma"][2, :])),
              f"a scan of one spectrum: status {last.tolist()} (3, too few), values NaN")
        check(np.all(g["status"][:2, names(g).index("Mg I 285.213")] == 0), "its neighbours' Mg I fits converge")

# 3. A line nowhere detected: Mg I at 0 R everywhere.
dark_cfg = toml("no_mg.toml", '[exosphere.fuv."Mg I 285.213"]\nsurface_brightness_R = 0.0\nbackground_R = 0.0\n')
dark, dark_out = os.path.join(work, "no_mg.h5"), os.path.join(work, "no_mg_out.h5")
subprocess.run([exe, "simulate", "-o", dark, "--spectra", "300", "--channels", "fuv", "--seed", "5",
                "--config", dark_cfg, "--quiet"], check=True)
r = run("run", dark, "-o", dark_out, "--products", "fit,profile")
check(r.returncode == 0, f"undetected line: exit {r.returncode} {r.stderr.strip()}")
if r.returncode == 0:
    with h5py.File(dark_out, "r") as fo:
        g = fo["profile/fuv"]
        j = names(g).index("Mg I 285.213")
        st, bs, sig = g["status"][:, j], g["surface_brightness_R"][:, j], g["surface_brightness_R_sigma"][:, j]
        check(len(st) == 6 and np.all((st == NOT_DETECTED) | (st == AT_BOUND)),
              f"Mg I at 0 R: statuses {st.tolist()} (1 not detected or 2 at a bound), none converged")
        check(np.all(np.isfinite(bs)) and np.all(np.abs(bs) < 5 * sig),
              f"Mg I at 0 R: B_s {np.round(bs, 2).tolist()} within 5 sigma of 0")

# 4. A temperature at the bound: H (420 K) searched below 300 K.
cold = toml("cold.toml", "[profile]\nmax_temperature_K = 300.0\n")
out = os.path.join(work, "cold_out.h5")
limb_euv = os.path.join(work, "limb_euv.h5")
subprocess.run([exe, "simulate", "-o", limb_euv, "--spectra", "150", "--channels", "euv", "--seed", "6",
                "--quiet"], check=True)
r = run("run", limb_euv, "-o", out, "--products", "fit,profile", config=cold)
check(r.returncode == 0, f"T at bound: exit {r.returncode} {r.stderr.strip()}")
if r.returncode == 0:
    with h5py.File(out, "r") as fo:
        g = fo["profile/euv"]
        j = names(g).index("H I 121.567")
        st, t, ts = g["status"][:, j], g["temperature_K"][:, j], g["temperature_K_sigma"][:, j]
        check(np.all(st == AT_BOUND) and np.allclose(t, 300.0, rtol=1e-5) and np.all(np.isnan(ts))
              and np.all(np.isfinite(g["surface_brightness_R_sigma"][:, j])),
              f"Lyman-alpha searched up to 300 K: status {st.tolist()}, T {np.round(t, 3).tolist()}, sigma(T) NaN")

# 5. Every spectrum at one altitude: one scan with no altitude range.
flat = os.path.join(work, "flat.h5")
shutil.copy(limb, flat)
with h5py.File(flat, "r+") as f:
    f["geometry/tangent_altitude_km"][...] = 800.0
out = os.path.join(work, "flat_out.h5")
r = run("run", flat, "-o", out, "--products", "fit,profile")
check(r.returncode == 0, f"one altitude: exit {r.returncode} {r.stderr.strip()}")
if r.returncode == 0:
    with h5py.File(out, "r") as fo:
        g = fo["profile/fuv"]
        check(g["scan_count"][()].tolist() == [101] and np.all(g["status"][()] == NO_RANGE)
              and np.all(np.isnan(g["temperature_K"][()])),
              f"one altitude: one scan of {g['scan_count'][()].tolist()}, status {np.unique(g['status'][()]).tolist()}"
              " (4, no altitude range), values NaN")

# 6. `exospec profile` on what it cannot use.
calib_only = os.path.join(work, "calibrated_only.h5")
r = run("run", limb, "-o", calib_only, "--stages", "calibrate", "--products", "calibrated")
check(r.returncode == 0, f"calibrate-only run: {r.stderr.strip()}")
for bad, why in [(calib_only, "/fit"), (os.path.join(work, "missing.h5"), "missing.h5"), (limb, "/fit")]:
    target = os.path.join(work, "never.h5")
    r = run("profile", bad, "-o", target)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    check(r.returncode != 0 and len(lines) == 1 and os.path.basename(bad) in lines[0] and why in lines[0]
          and not os.path.exists(target),
          f"profile {os.path.basename(bad)}: exit {r.returncode}, {lines}")
# ... and on a good file, the same profiles as the run wrote.
again = os.path.join(work, "again.h5")
r = run("profile", fly_out, "-o", again)
check(r.returncode == 0, f"profile on a run output: {r.stderr.strip()}")
if r.returncode == 0:
    with h5py.File(fly_out, "r") as a, h5py.File(again, "r") as b:
        same = all(np.array_equal(a[f"profile/fuv/{d}"][()], b[f"profile/fuv/{d}"][()], equal_nan=True)
                   for d in ("temperature_K", "surface_brightness_R_sigma", "status", "scan_first"))
        check(same, "exospec profile on the run's output writes the run's /profile")

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("all profile edge cases passed")
