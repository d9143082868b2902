"""Strong and weak scaling of `mpirun -np R exospec run` (the MPI build) on
this machine, with the serial build beside it, in one run.

usage: mpi_scaling.py MPI_EXE SERIAL_EXE WORK [SPECTRA] [PAIRS] [fit|all]

Strong: one file of SPECTRA (default 100,000) spectra, both channels,
`--threads 1` per rank, R = 1 and R = 2 alternating PAIRS times (default 3),
for the default products and for `--products fit,profile`; wall time from
mpirun's start to its exit. Weak: SPECTRA / 2 spectra per rank (R = 1 on half
the file, R = 2 on the whole). Prints a table (seconds, and R=2 against R=1)
and each run's output size, and checks that the first R = 2 output of each equals the serial build's
in its datasets (h5py).

Each is run with two launches: Open MPI's defaults, and the single-node
transports (`--mca pml ob1 --mca btl self,vader`: shared memory only, without
probing for the UCX and OFI network stacks, which costs each rank start-up
time and CPU on a machine without them)."""
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

mpi_exe, serial_exe, work = sys.argv[1], sys.argv[2], sys.argv[3]
N = int(sys.argv[4]) if len(sys.argv) > 4 else 100_000
pairs = int(sys.argv[5]) if len(sys.argv) > 5 else 3
os.makedirs(work, exist_ok=True)
env = dict(os.environ)
env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
mpirun = ["mpirun"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])


def make(n):
    path = os.path.join(work, f"in_{n}.h5")
    if not os.path.exists(path):
        subprocess.run([serial_exe, "simulate", "-o", path, "--spectra", str(n), "--seed", "17", "--quiet"],
                       check=True)
    return path


def timed(cmd, out):
    if os.path.exists(out):
        os.remove(out)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    dt = time.perf_counter() - t0
    return dt


def same(a, b):
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        names = []
        x.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for n in names:
            u, v = x[n][()], y[n][()]
            if not (np.array_equal(u, v) if x[n].dtype.kind == "O" else np.asarray(u).tobytes() == np.asarray(v).tobytes()):
                return False
    return True


full, half = make(N), make(N // 2)
print(f"{os.uname().nodename}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}; "
      f"{N} spectra ({os.path.getsize(full) / 1e6:.0f} MB input)")
launches = [("Open MPI defaults", []), ("pml ob1, btl self,vader", ["--mca", "pml", "ob1", "--mca", "btl", "self,vader"])]
rows = []
which = sys.argv[6] if len(sys.argv) > 6 else "all"
product_sets = [["--products", "fit,profile"]] + ([[]] if which == "all" else [])
for products, (launch, mca) in [(p, l) for p in product_sets for l in launches]:
    label = ("default" if not products else "fit,profile") + f" [{launch}]"
    mpirun_l = mpirun + mca
    ref = os.path.join(work, "serial.h5")
    ts = timed([serial_exe, "run", full, "-o", ref, "--threads", "1", "-q"] + products, ref)
    size = os.path.getsize(ref)
    t = {1: [], 2: []}
    ok = True
    for _ in range(pairs):
        for R in (1, 2):
            out = os.path.join(work, f"mpi{R}.h5")
            t[R].append(timed(mpirun_l + ["-np", str(R), mpi_exe, "run", full, "-o", out, "--threads", "1", "-q"]
                              + products, out))
            if R == 2 and len(t[2]) == 1:  # (the first R = 2 output against the serial run's)
                ok = ok and same(ref, out)
            os.remove(out)
    weak1 = os.path.join(work, "weak1.h5")
    tw = timed(mpirun_l + ["-np", "1", mpi_exe, "run", half, "-o", weak1, "--threads", "1", "-q"] + products, weak1)
    os.remove(weak1)
    os.remove(ref)
    m1, m2 = sorted(t[1])[len(t[1]) // 2], sorted(t[2])[len(t[2]) // 2]
    # (On a shared host the speed drifts between runs: the ratio of each
    # adjacent pair, and of the fastest runs, are shown beside the medians'.)
    pr = sorted(a / b for a, b in zip(t[1], t[2]))
    rows.append((label, ts, t[1], t[2], m1 / m2, tw, size, ok))
    print(f"{label}: serial {ts:.2f} s; R=1 {', '.join(f'{x:.2f}' for x in t[1])} s; "
          f"R=2 {', '.join(f'{x:.2f}' for x in t[2])} s; R=2 / R=1 speed-up (medians) {m1 / m2:.2f}x, "
          f"(pairs) {pr[len(pr) // 2]:.2f}x, (fastest) {min(t[1]) / min(t[2]):.2f}x; "
          f"weak (N/2 on R=1 against N on R=2): {tw:.2f} s against {m2:.2f} s, efficiency {tw / m2:.2f}; "
          f"output {size / 1e9:.2f} GB; outputs equal the serial run's: {ok}")
json.dump([{"products": r[0], "serial_s": r[1], "r1_s": r[2], "r2_s": r[3], "speedup": r[4], "weak_r1_half_s": r[5],
            "output_bytes": r[6], "identical": r[7]} for r in rows], open(os.path.join(work, "mpi_scaling.json"), "w"),
          indent=1)
if not all(r[7] for r in rows):
    sys.exit(1)
