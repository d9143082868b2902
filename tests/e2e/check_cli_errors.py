"""Every bad input to the exospec command gives exactly one line on stderr that
names the file (and object), a non-zero exit code, and leaves no output or
temporary file behind."""
import os
import shutil
import subprocess
import sys

exe, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
good = os.path.join(work, "good.h5")
subprocess.run([exe, "simulate", "-o", good, "--spectra", "40", "--quiet"], check=True)

failures = []


def expect_error(args, words, leaves=None):
    before = set(os.listdir(work))
    r = subprocess.run([exe] + args, capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    if r.returncode == 0:
        failures.append(f"{args}: exit 0")
    if len(lines) != 1:
        failures.append(f"{args}: {len(lines)} stderr lines: {r.stderr!r}")
    for w in words:
        if w not in r.stderr:
            failures.append(f"{args}: stderr lacks {w!r}: {r.stderr!r}")
    after = set(os.listdir(work))
    if after - before:
        failures.append(f"{args}: left files behind: {sorted(after - before)}")


text = os.path.join(work, "text.h5")
with open(text, "w") as fh:
    fh.write("not hdf5\n")
cut = os.path.join(work, "cut.h5")
with open(good, "rb") as fh:
    data = fh.read()
with open(cut, "wb") as fh:
    fh.write(data[: len(data) // 3])
badcfg = os.path.join(work, "bad.toml")
with open(badcfg, "w") as fh:
    fh.write("[instrument.euv]\ndead_time = 1\n")
badval = os.path.join(work, "badval.toml")
with open(badval, "w") as fh:
    fh.write("[schedule]\nexposure_s = 0\n")

expect_error(["info", os.path.join(work, "absent.h5")], ["absent.h5", "no such file"])
expect_error(["info", text], ["text.h5", "not an HDF5 file"])
expect_error(["info", cut], ["cut.h5", "truncated"])
expect_error(["simulate", "-o", os.path.join(work, "o.h5"), "--config", badcfg],
             ["bad.toml", "instrument.euv.dead_time", "unknown key"])
expect_error(["simulate", "-o", os.path.join(work, "o.h5"), "--config", badval],
             ["badval.toml", "schedule.exposure_s", "must be > 0"])
expect_error(["simulate", "-o", os.path.join(work, "o.h5"), "--spectra", "0"], ["spectra"])
expect_error(["simulate", "-o", os.path.join(work, "o.h5"), "--channels", "euv,xuv"],
             ["xuv", "simulate.channels"])
expect_error(["simulate", "-o", os.path.join(work, "o.h5"), "--preset", "orbit"], ["preset"])
expect_error(["simulate", "-o", good, "--spectra", "5"], ["good.h5", "already exists"])
expect_error(["simulate", "-o", os.path.join(work, "nodir", "o.h5")], ["nodir", "does not exist"])
# run: bad inputs, bad options, refused outputs.
out = os.path.join(work, "out.h5")
badrun = os.path.join(work, "badrun.toml")
with open(badrun, "w") as fh:
    fh.write("[calibrate]\nvariance_half_width = 0\n")
unknownrun = os.path.join(work, "unknownrun.toml")
with open(unknownrun, "w") as fh:
    fh.write("[calibrate]\nsmoothing = 3\n")
expect_error(["run", os.path.join(work, "absent.h5"), "-o", out], ["absent.h5", "no such file"])
expect_error(["run", text, "-o", out], ["text.h5", "not an HDF5 file"])
expect_error(["run", cut, "-o", out], ["cut.h5", "truncated"])
expect_error(["run", good, "-o", good], ["good.h5", "input"])
expect_error(["run", good, "-o", out, "--stages", "calibrate,polish"], ["--stages", "polish"])
expect_error(["run", good, "-o", out, "--config", badrun],
             ["badrun.toml", "calibrate.variance_half_width"])
expect_error(["run", good, "-o", out, "--config", unknownrun],
             ["unknownrun.toml", "calibrate.smoothing", "unknown key"])
expect_error(["run", good, "-o", out, "--channels", "xuv"], ["xuv", "run.channels"])
limits = os.path.join(work, "limits.toml")
with open(limits, "w") as fh:
    fh.write("[calibrate]\nmin_detector_temperature_c = 50.0\nmax_detector_temperature_c = 10.0\n")
expect_error(["run", good, "-o", out, "--config", limits],
             ["limits.toml", "calibrate.max_detector_temperature_c", "above"])
badmethod = os.path.join(work, "badmethod.toml")
with open(badmethod, "w") as fh:
    fh.write('[denoise.fuv]\nmethod = "median"\n')
expect_error(["run", good, "-o", out, "--config", badmethod],
             ["badmethod.toml", "denoise.fuv.method", "median"])
expect_error(["run", good, "-o", out, "--stages", "denoise"], ["denoise needs calibrate"])
expect_error(["run", good, "-o", os.path.join(work, "nodir", "o.h5")], ["nodir", "does not exist"])
# Wrong schema: an object missing, a dataset of the wrong shape (made with
# h5py from the good file).
import h5py  # noqa: E402
import numpy as np  # noqa: E402
missing = os.path.join(work, "missing.h5")
shutil.copy(good, missing)
with h5py.File(missing, "a") as f:
    del f["calibration/euv/flat"]
expect_error(["run", missing, "-o", out], ["missing.h5", "/calibration/euv/flat"])
shape = os.path.join(work, "shape.h5")
shutil.copy(good, shape)
with h5py.File(shape, "a") as f:
    del f["raw/fuv/exposure_s"]
    f["raw/fuv/exposure_s"] = np.full(7, 8.0)
expect_error(["run", shape, "-o", out], ["shape.h5", "/raw/fuv/exposure_s"])
# An unwritable output even for root: its directory is a regular file.
expect_error(["run", good, "-o", os.path.join(text, "o.h5")], ["o.h5", "is not a directory"])
# A JSON report that cannot be written is refused before the run.
expect_error(["run", good, "-o", out, "--json-report", os.path.join(work, "nodir", "r.json")],
             ["r.json", "does not exist"])
expect_error(["run", good, "-o", out, "--json-report", out], ["out.h5", "would replace"])
expect_error(["run", good, "-o", out, "--json-report", good], ["good.h5", "would replace"])
expect_error(["info"], ["file"])
expect_error(["frobnicate"], ["subcommand"])

# The existing file was not touched by the refused simulate.
with open(good, "rb") as fh:
    if fh.read() != data:
        failures.append("refused simulate modified the existing file")

# Unwritable directory (skipped when running as root, which can write anyway).
if os.geteuid() != 0:
    ro = os.path.join(work, "ro")
    os.makedirs(ro)
    os.chmod(ro, 0o500)
    expect_error(["simulate", "-o", os.path.join(ro, "o.h5")], ["o.h5"])

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("CLI errors: one line each, non-zero exit, nothing left behind")
