"""`exospec run --threads 1` and `--threads 2` (and a different block size)
write the same bytes in every dataset, /fit and /profile included (the fit's
reference and the calibrated variance take neighbouring spectra across block
edges), through the command
line; only the creation time attribute differs. Each run's JSON report
counts the flagged pixels and fit statuses that numpy counts in its output."""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

exe, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
inp = os.path.join(work, "in.h5")
subprocess.run([exe, "simulate", "-o", inp, "--spectra", "300", "--seed", "8", "--quiet"], check=True)
blocks = os.path.join(work, "blocks.toml")
with open(blocks, "w") as fh:
    fh.write("[run]\nblock_rows = 37\n")
outs = []
for threads, extra in [(1, []), (2, []), (2, ["--config", blocks])]:
    out = os.path.join(work, f"out_{threads}_{len(extra)}.h5")
    subprocess.run([exe, "run", inp, "-o", out, "--threads", str(threads), "--quiet",
                    "--json-report", out + ".json"] + extra, check=True)
    outs.append(out)

failures = []

BITS = ["bad_pixel", "saturated", "invalid_exposure", "invalid_temperature", "particle_hit"]
STATUS = ["converged", "max_iterations", "stalled", "singular", "too_few_pixels", "invalid_spectrum",
          "not_finite"]
for out in outs:
    report = json.load(open(out + ".json"))
    with h5py.File(out, "r") as f:
        quality = np.concatenate([f[f"calibrated/{ch}/quality"][()].ravel() for ch in report["channels"]])
        status = np.concatenate([f[f"fit/{ch}/status"][()].ravel() for ch in report["channels"]])
    counted = {name: int(np.count_nonzero(quality & (1 << b))) for b, name in enumerate(BITS)}
    if counted["bad_pixel"] == 0 or counted["particle_hit"] == 0:
        failures.append(f"{os.path.basename(out)}: expected bad pixels and particle hits, got {counted}")
    if report["flagged_pixels"] != counted:
        failures.append(f"{os.path.basename(out)}: report flags {report['flagged_pixels']}, numpy {counted}")
    statuses = {STATUS[s]: int(c) for s, c in enumerate(np.bincount(status)) if c > 0}
    if report["fit_status"] != statuses:
        failures.append(f"{os.path.basename(out)}: report fit status {report['fit_status']}, numpy {statuses}")


def datasets(f):
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


ref = h5py.File(outs[0], "r")
names = datasets(ref)
if not all(any(n.startswith(g + "/") for n in names) for g in ("calibrated", "denoised", "fit", "profile")):
    failures.append(f"expected calibrated, denoised, fit and profile groups, got {names}")
for other in outs[1:]:
    f = h5py.File(other, "r")
    if datasets(f) != names:
        failures.append(f"{other}: other datasets")
        continue
    for n in names:
        a, b = ref[n][()], f[n][()]
        same = (a == b) if a.dtype.kind in "OS" else (np.asarray(a).tobytes() == np.asarray(b).tobytes())
        if not np.all(same):
            failures.append(f"{os.path.basename(other)}: /{n} differs")
    for k in ref.attrs:
        if k != "created_utc" and k != "config" and str(ref.attrs[k]) != str(f.attrs[k]):
            failures.append(f"{os.path.basename(other)}: attribute {k} differs")
if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"{len(names)} datasets byte-identical for --threads 1, --threads 2 and block_rows 37; "
      f"reports count what the files hold ({report['flagged_pixels']}, {report['fit_status']})")
