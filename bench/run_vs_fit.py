"""Issue 17's yardsticks in one run: the whole `exospec run` against its fit.

1. Simulates a 20,000-spectrum FUV limb-scan file (seed 17) and copies it
   without its /truth group (what a user's input looks like); and a
   10-spectrum file for the start-up.
2. Runs `exospec run IN -o OUT --threads 1` REPEAT times (default 3), with
   the default products and with `--products calibrated,fit,profile`
   alternately, and reads each run's JSON report: wall time (measured here,
   process start to exit) and the thread time of each stage.
3. Prints, per run, us/spectrum of the wall and of each stage, and the ratio
   of the wall to the fit stage's time on the same spectra in the same run
   (the fit stage with --threads 1 is the fit kernel on those spectra); then
   the default run with --threads 2 beside --threads 1 (REPEAT alternating
   pairs: the speed-up), and the 10-spectrum file's wall time (start-up:
   median of 9) and the process's own start (`exospec --version`, median of
   9).

The output goes to WORK (default /tmp/exospec_run_vs_fit, a disk here); a
tmpfs (/dev/shm/...) leaves out the disk's write-back.

  /usr/bin/python3 bench/run_vs_fit.py [BUILD_DIR] [WORK] [REPEAT]
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import h5py

build = sys.argv[1] if len(sys.argv) > 1 else "build"
work = sys.argv[2] if len(sys.argv) > 2 else os.path.join("/tmp", "exospec_run_vs_fit")
REPEAT = int(sys.argv[3]) if len(sys.argv) > 3 else 3
exe = os.path.join(build, "cli", "exospec")
os.makedirs(work, exist_ok=True)
N = 20000


def simulate(path, spectra):
    if os.path.exists(path):
        return
    full = path + ".truth.h5"
    subprocess.run([exe, "simulate", "-o", full, "--spectra", str(spectra), "--channels", "fuv",
                    "--seed", "17", "-q", "-f"], check=True)
    with h5py.File(full, "r") as a, h5py.File(path + ".tmp", "w") as b:
        for k, v in a.attrs.items():
            b.attrs[k] = v
        for name in a:
            if name != "truth":
                a.copy(name, b)
    os.rename(path + ".tmp", path)
    os.remove(full)


def run(inp, extra, threads=1):
    report = os.path.join(work, "report.json")
    out = os.path.join(work, "out.h5")
    t = time.perf_counter()
    subprocess.run([exe, "run", inp, "-o", out, "--threads", str(threads), "-q", "-f", "--json-report", report] +
                   extra, check=True)
    wall = time.perf_counter() - t
    with open(report) as fh:
        return wall, json.load(fh)


big = os.path.join(work, "fuv20k.h5")
small = os.path.join(work, "fuv10.h5")
simulate(big, N)
simulate(small, 10)
print(f"{platform.node()} {time.strftime('%Y-%m-%d %H:%M')} {os.cpu_count()} cores; {N} FUV spectra, --threads 1")
stages = ["read", "decode", "calibrate", "denoise", "fit", "profile", "write", "hash"]
print(f"{'products':<26} {'wall':>7} " + " ".join(f"{s:>9}" for s in stages) + "   wall/fit  (us/spectrum)")
ratios = {}
for _ in range(REPEAT):
    for label, extra in (("default", []), ("calibrated,fit,profile", ["--products", "calibrated,fit,profile"])):
        wall, rep = run(big, extra)
        sec = rep["seconds"]
        us = {s: 1e6 * sec.get(s, 0.0) / N for s in stages}
        ratio = wall / sec["fit"]
        ratios.setdefault(label, []).append(ratio)
        print(f"{label:<26} {1e6 * wall / N:7.1f} " + " ".join(f"{us[s]:9.2f}" for s in stages) +
              f"   {ratio:8.2f}", flush=True)
for label, r in ratios.items():
    print(f"median wall / fit, {label}: {statistics.median(r):.2f}")
speedups = []
for _ in range(REPEAT):
    one, two = run(big, [], 1)[0], run(big, [], 2)[0]
    speedups.append(one / two)
    print(f"default products: --threads 1 {1e6 * one / N:.1f}, --threads 2 {1e6 * two / N:.1f} us/spectrum: "
          f"{one / two:.2f}x", flush=True)
print(f"median speed-up 1 -> 2 threads: {statistics.median(speedups):.2f}x")
walls = sorted(run(small, [])[0] for _ in range(9))
print(f"start-up: 10-spectrum file end to end {1e3 * walls[4]:.1f} ms median ({1e3 * walls[0]:.1f}-{1e3 * walls[-1]:.1f})")
bare = []
for _ in range(9):
    t = time.perf_counter()
    subprocess.run([exe, "--version"], check=True, stdout=subprocess.DEVNULL)
    bare.append(time.perf_counter() - t)
print(f"process start and exit alone (exospec --version): {1e3 * statistics.median(bare):.1f} ms median")
