"""Files that claim more than exospec takes (io/include/exospec/io/input_file.hpp:
kMaxPixels, kMaxSpectra) are refused with one error line naming the file and
the object, exit code 1, no output and a small peak memory, however little
HDF5 the claim takes (chunked datasets with no chunk written). A file within
the bounds but with wide spectra runs with the block rows cut to its memory
bound, and gives the same bytes as with a small block_rows.

usage: check_size_limits.py EXOSPEC WORKDIR [--sanitized]
(--sanitized: AddressSanitizer's shadow memory and redzones inflate the
resident size, so the peak-memory bounds are not checked.)"""
import os
import resource
import shutil
import subprocess
import sys

import h5py
import numpy as np

exe, work = sys.argv[1], sys.argv[2]
sanitized = "--sanitized" in sys.argv[3:]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
base = os.path.join(work, "base.h5")
subprocess.run([exe, "simulate", "-o", base, "--channels", "fuv", "--spectra", "10", "--seed", "4", "--quiet"],
               check=True)
failures = []


def recreate(group, name, shape=None, data=None, chunks=None):
    """Replaces a dataset by one of another shape, keeping its attributes."""
    old = group[name]
    attrs, dtype = dict(old.attrs), old.dtype
    del group[name]
    new = (group.create_dataset(name, data=data) if data is not None
           else group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks))
    for k, v in attrs.items():
        new.attrs[k] = v


def peak_child_rss_mib():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run(inp, out, extra=()):
    return subprocess.run([exe, "run", inp, "-o", out, "--quiet", "--threads", "1", *extra],
                          capture_output=True, text=True, timeout=300)


# 1. Claims beyond the bounds: one clear line, before any allocation.
claims = {
    "spectra": (10**12, None, "/raw/fuv/counts", "1000000000000 spectra; exospec takes at most 10000000"),
    "pixels": (None, 10**9, "/raw/fuv/counts", "1000000000 pixels per spectrum; exospec takes at most 65536"),
}
for label, (n, p, obj, expected) in claims.items():
    path = os.path.join(work, f"claims_{label}.h5")
    shutil.copy(base, path)
    with h5py.File(path, "r+") as f:
        N, P = f["raw/fuv/counts"].shape
        N, P = n or N, p or P
        recreate(f["raw/fuv"], "counts", shape=(N, P), chunks=(1, min(P, 1024)))
        if n:
            for name in ("exposure_s", "detector_temperature"):
                recreate(f["raw/fuv"], name, shape=(N,), chunks=(1024,))
            for name in list(f["geometry"]):
                recreate(f["geometry"], name, shape=(N,), chunks=(1024,))
        if p:
            for name in ("dark_rate", "flat", "sensitivity", "bad_pixel"):
                recreate(f["calibration/fuv"], name, shape=(P,), chunks=(65536,))
        if "truth" in f:
            del f["truth"]
    size = os.path.getsize(path)
    before = os.stat(path).st_mtime_ns
    out = os.path.join(work, f"claims_{label}_out.h5")
    r = run(path, out)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    line = f"exospec: error: {path}: {obj}: {expected}"
    if r.returncode != 1 or len(lines) != 1 or not lines[0].startswith(line):
        failures.append(f"{label}: exit {r.returncode}, stderr {r.stderr!r}; expected exit 1 and {line!r}")
    if os.path.exists(out) or any(e.startswith(os.path.basename(out)) for e in os.listdir(work)):
        failures.append(f"{label}: output left behind")
    if os.stat(path).st_mtime_ns != before:
        failures.append(f"{label}: the input was modified")
    print(f"{label}: a {size // 1024} KiB file claiming {n or ''}{p or ''}: exit {r.returncode}: "
          f"{lines[0] if lines else ''}")
peak = peak_child_rss_mib()
print(f"peak resident memory of those runs: {peak:.0f} MiB")
if not sanitized and peak > 200:
    failures.append(f"refusing the claims took {peak:.0f} MiB (more than 200)")

# 2. Wide spectra within the bounds: 65,536 pixels (the base file's pixels
# repeated 64 times, the wavelength scale 64 times finer) and 400 spectra.
# Two slots of 400 such rows would be ~2.4 GB; the memory bound (1 GiB for
# both slots) cuts the block to 182 rows. The same bytes as block_rows = 50.
R, T = 64, 40
wide = os.path.join(work, "wide.h5")
shutil.copy(base, wide)
with h5py.File(wide, "r+") as f:
    cal = f["calibration/fuv"]
    for name in ("dark_rate", "flat", "sensitivity", "bad_pixel"):
        recreate(cal, name, data=np.repeat(cal[name][()], R))
    c = cal["wavelength_coeffs"][()]
    recreate(cal, "wavelength_coeffs", data=c / np.array([float(R) ** i for i in range(len(c))]))
    counts = np.repeat(f["raw/fuv/counts"][()], R, axis=1)
    recreate(f["raw/fuv"], "counts", data=np.concatenate([counts] * T))
    for name in ("exposure_s", "detector_temperature"):
        recreate(f["raw/fuv"], name, data=np.concatenate([f["raw/fuv"][name][()]] * T))
    t = f["geometry/time"][()]
    recreate(f["geometry"], "time", data=np.concatenate([t + 1000.0 * i for i in range(T)]))
    recreate(f["geometry"], "tangent_altitude_km", data=np.tile(f["geometry/tangent_altitude_km"][()], T))
    if "truth" in f:
        del f["truth"]
small_blocks = os.path.join(work, "small_blocks.toml")
with open(small_blocks, "w") as fh:
    fh.write("[run]\nblock_rows = 50\n")
outs = {}
for label, extra in (("default block_rows", ()), ("block_rows 50", ("--config", small_blocks))):
    out = os.path.join(work, f"wide_{label.replace(' ', '_')}.h5")
    # (Each run in its own child, so that its peak is its own.)
    probe = subprocess.run([sys.executable, "-c",
                            "import resource, subprocess, sys\n"
                            "r = subprocess.run(sys.argv[1:])\n"
                            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
                            "sys.exit(r.returncode)",
                            exe, "run", wide, "-o", out, "--quiet", "--threads", "1", *extra],
                           capture_output=True, text=True, timeout=600)
    if probe.returncode != 0:
        failures.append(f"wide, {label}: exit {probe.returncode}: {probe.stderr!r}")
        continue
    mib = int(probe.stdout.split()[-1])
    print(f"wide spectra (400 x 65536), {label}: exit 0, peak resident memory {mib} MiB")
    if label == "default block_rows" and not sanitized and mib > 1600:
        failures.append(f"wide, {label}: peak {mib} MiB, more than 1600 (the block is not bounded)")
    outs[label] = out

if len(outs) == 2:
    a, b = (h5py.File(p, "r") for p in outs.values())
    names = []
    a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    for n in names:
        x, y = a[n][()], b[n][()]
        same = np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
        if not same:
            failures.append(f"wide: /{n} differs between the block sizes")
    print(f"wide: {len(names)} datasets identical for the default block and block_rows 50")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("size limits: claims refused in one line, wide spectra within the memory bound")
