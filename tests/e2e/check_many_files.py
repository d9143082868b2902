"""`exospec run A.h5 B.h5 ... -O DIR`: one output per input in the folder,
each equal to the file's own `exospec run IN -o OUT` (every dataset); inputs
from arguments, a quoted glob the command expands, and --inputs-from; a bad
file gets its one error line and does not stop the others; the exit code is
the number of files that failed; one summary line and a JSON report; the
same with --jobs 2 (one process per file); names that would collide, or -o
with several inputs, are refused before anything is written.

usage: check_many_files.py EXE WORK"""
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
failures = []
names = []
for i, n in enumerate((200, 300, 250)):
    p = os.path.join(work, f"orbit_{i}.h5")
    subprocess.run([exe, "simulate", "-o", p, "--spectra", str(n), "--seed", str(40 + i), "--quiet"], check=True)
    names.append(p)
bad1 = os.path.join(work, "bad_text.h5")
open(bad1, "w").write("not hdf5\n")
bad2 = os.path.join(work, "bad_cut.h5")
with open(names[0], "rb") as f, open(bad2, "wb") as g:
    g.write(f.read()[:5000])
single = {}
for p in names:
    out = os.path.join(work, "single_" + os.path.basename(p))
    subprocess.run([exe, "run", p, "-o", out, "-q", "--threads", "1"], check=True)
    single[os.path.basename(p)] = out


def same(a, b):
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        ds = []
        x.visititems(lambda n, o: ds.append(n) if isinstance(o, h5py.Dataset) else None)
        if len(ds) < 50:
            return False
        for n in ds:
            u, v = x[n][()], y[n][()]
            if not (np.array_equal(u, v) if x[n].dtype.kind == "O" else np.asarray(u).tobytes() == np.asarray(v).tobytes()):
                return False
    return True


listing = os.path.join(work, "list.txt")
with open(listing, "w") as fh:
    fh.write(f"# the third orbit and a truncated file\n{names[2]}\n\n{bad2}\n")
for tag, extra in (("in process", []), ("--jobs 2", ["--jobs", "2"])):
    outdir = os.path.join(work, "out_" + tag.replace(" ", "_").replace("-", ""))
    report = os.path.join(work, tag.replace(" ", "_").replace("-", "") + ".json")
    # orbit_0 and orbit_1 through a quoted pattern, a bad file, then the list.
    r = subprocess.run([exe, "run", os.path.join(work, "orbit_[01].h5"), bad1, "--inputs-from", listing,
                        "-O", outdir, "--threads", "1", "--json-report", report] + extra,
                       capture_output=True, text=True)
    errors = [l for l in r.stderr.splitlines() if l.startswith("exospec: error")]
    summary = [l for l in r.stderr.splitlines() if l.startswith("run: ")]
    if r.returncode != 2:
        failures.append(f"{tag}: exit {r.returncode}, expected 2 (two files failed): {r.stderr!r}")
    if len(errors) != 2 or not any("bad_text.h5" in e for e in errors) or not any("bad_cut.h5" in e for e in errors):
        failures.append(f"{tag}: error lines {errors}")
    if len(summary) != 1 or "3 of 5 files" not in summary[0] or "2 failed" not in summary[0]:
        failures.append(f"{tag}: summary {summary}")
    got = sorted(os.listdir(outdir))
    if got != sorted(os.path.basename(p) for p in names):
        failures.append(f"{tag}: outputs {got}")
    for p in names:
        o = os.path.join(outdir, os.path.basename(p))
        if os.path.exists(o) and not same(single[os.path.basename(p)], o):
            failures.append(f"{tag}: {o} differs from the single-file run")
    rep = json.load(open(report))
    statuses = {os.path.basename(f["input"]): f["status"] for f in rep["files"]}
    if statuses != {"orbit_0.h5": "written", "orbit_1.h5": "written", "bad_text.h5": "failed",
                    "orbit_2.h5": "written", "bad_cut.h5": "failed"} or rep["spectra"] != 750:
        failures.append(f"{tag}: report {statuses}, {rep['spectra']} spectra")
    print(f"{tag}: exit {r.returncode}; {summary[0] if summary else r.stderr!r}")

# Refused before anything is written.
dup_dir = os.path.join(work, "dup")
os.makedirs(dup_dir)
shutil.copy(names[0], os.path.join(dup_dir, "orbit_0.h5"))
for args, words in (([names[0], os.path.join(dup_dir, "orbit_0.h5"), "-O", os.path.join(work, "out_dup")],
                     ["orbit_0.h5", "same name"]),
                    ([names[0], names[1], "-o", os.path.join(work, "x.h5")], ["-o", "one input"]),
                    ([os.path.join(work, "nothing_*.h5"), "-O", os.path.join(work, "out_none")],
                     ["nothing_*.h5", "no file matches"])):
    r = subprocess.run([exe, "run"] + args, capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    if r.returncode == 0 or len(lines) != 1 or not all(w in lines[0] for w in words):
        failures.append(f"{args}: exit {r.returncode}, {r.stderr!r}")
    for d in ("out_dup", "x.h5", "out_none"):
        if os.path.exists(os.path.join(work, d)) and os.listdir(os.path.join(work, d)) if os.path.isdir(os.path.join(work, d)) else os.path.exists(os.path.join(work, d)):
            failures.append(f"{args}: {d} written")
    print(f"refused: {lines[0] if lines else r.stderr!r}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("many files: one output per input, equal to single runs; bad files counted, not fatal")
