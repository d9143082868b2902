"""`exospec run --threads 1` and `--threads 2` (and a different block size)
write the same bytes in every dataset, /fit included, through the command
line; only the creation time attribute differs."""
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
    subprocess.run([exe, "run", inp, "-o", out, "--threads", str(threads), "--quiet"] + extra, check=True)
    outs.append(out)

failures = []


def datasets(f):
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


ref = h5py.File(outs[0], "r")
names = datasets(ref)
if not any(n.startswith("fit/") for n in names) or not any(n.startswith("denoised/") for n in names):
    failures.append(f"expected calibrated, denoised and fit groups, got {names}")
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
print(f"{len(names)} datasets byte-identical for --threads 1, --threads 2 and block_rows 37")
