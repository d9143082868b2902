"""End-to-end benchmark of `exospec run`, beside the kernel-only times.

1. Simulates limb-scan files of 10^4 and 10^5 spectra (both channels; kept in
   WORK between runs, and re-simulated only if missing).
2. Times the stage kernels alone with Google Benchmark on one core
   (bench_kernels: calibrate with spike removal, the adaptive smoother, the
   fit stage in its default tied mode, per channel) and adds them up into a
   kernel-only time per spectrum (one spectrum = one row of both channels).
3. Runs `exospec run IN -o OUT --products fit` (the default stages; most users
   keep only /fit) with --threads 1 and --threads 2 on the 10^5 file, and
   with --threads 1 on the 10^4 file and with all products, recording wall
   time and the child's peak RSS (getrusage). The 1 -> 2 thread runs are
   PAIRS alternating pairs (default 3), and the kernel-only sum is measured
   again just before each pair (this machine's speed drifts between
   minutes), giving one run/kernel ratio per pair. Before each pair the
   kernel benchmarks also run in two processes at once: their summed
   throughput against one process is the speed-up this machine gives two
   independent single-threaded jobs at that minute, which the 1 -> 2 thread
   speed-up of `run` is compared with. After each pair, the one-thread run
   again, confined to one core (taskset -c 0), for the 1 -> 2 core speed-up.
4. Prints spectra/s, the ratio to the kernel-only throughput, the 1 -> 2
   thread speed-up with each run's CPU seconds (how many cores it kept
   busy), and peak RSS against N.

  /usr/bin/python3 bench/e2e_benchmark.py [BUILD_DIR] [WORK] [PAIRS]
"""
import json
import os
import platform
import resource
import subprocess
import sys
import time

build = sys.argv[1] if len(sys.argv) > 1 else "build"
work = sys.argv[2] if len(sys.argv) > 2 else os.path.join("/tmp", "exospec_e2e")
PAIRS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
exe = os.path.join(build, "cli", "exospec")
bench = os.path.join(build, "bench", "bench_kernels")
os.makedirs(work, exist_ok=True)


def simulate(n):
    path = os.path.join(work, f"limb_{n}.h5")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        subprocess.run([exe, "simulate", "-o", path, "--spectra", str(n), "--seed", "1", "--quiet"],
                       check=True)
        print(f"simulated {n} spectra in {time.perf_counter() - t0:.1f} s -> {path}", flush=True)
    return path


def run_measured(args):
    """Runs args in a child of a fresh Python, so that ru_maxrss is this run's alone."""
    code = ("import resource, subprocess, sys, time, json\n"
            "t0 = time.perf_counter()\n"
            "subprocess.run(sys.argv[1:], check=True)\n"
            "dt = time.perf_counter() - t0\n"
            "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "print(json.dumps({'seconds': dt, 'cpu_seconds': ru.ru_utime + ru.ru_stime, "
            "'max_rss_kib': ru.ru_maxrss}))\n")
    r = subprocess.run([sys.executable, "-c", code] + args, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def exospec_run(inp, threads, products="fit", tag="", one_core=False):
    out = os.path.join(work, f"out_{os.path.basename(inp)}_{threads}{tag}.h5")
    report = out + ".json"
    pin = ["taskset", "-c", "0"] if one_core else []
    m = run_measured(pin + [exe, "run", inp, "-o", out, "--force", "--quiet", "--threads", str(threads),
                            "--products", products, "--json-report", report])
    with open(report) as fh:
        m["report"] = json.load(fh)
    os.remove(out)
    return m


f4, f5 = simulate(10_000), simulate(100_000)

# Kernel-only times (one core).
KERNEL_ARGS = [bench, "--benchmark_filter=BM_CalibrateDespike|BM_Adaptive|BM_FitStage/(fuv|euv)_tied",
               "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true", "--benchmark_format=json"]


def kernel_times():
    r = subprocess.run(KERNEL_ARGS, capture_output=True, text=True, check=True)
    return kernel_sum(r.stdout)


def two_kernel_processes():
    """The same kernel benchmarks in two processes at once: the throughput
    (rows/s, summed) that this machine's two cores give to independent
    single-threaded work, the ceiling of any 1 -> 2 thread speed-up here."""
    procs = [subprocess.Popen(KERNEL_ARGS, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return sum(1.0 / kernel_sum(o)[-1] for o in outs)


def kernel_sum(stdout):
    per_item = {}
    for b in json.loads(stdout)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            per_item[b["run_name"]] = 1.0 / b["items_per_second"]
    c = per_item["BM_CalibrateDespike/real_time"]
    d = per_item["BM_Adaptive/real_time"]
    ff, fe = per_item["BM_FitStage/fuv_tied"], per_item["BM_FitStage/euv_tied"]
    return c, d, ff, fe, 2 * c + 2 * d + ff + fe  # one row = both channels


calib, denoise, fit_fuv, fit_euv, kernel_row = kernel_times()

# 1 -> 2 threads: alternating pairs, because this machine's speed drifts by
# tens of percent between minutes; each pair's ratio is taken within it.
# The kernel-only sum is measured again just before each pair's one-thread
# run, so that run and kernels are compared in the same minute.
# Before each pair, also the kernels in two processes at once: the speed-up
# this minute's two cores give to independent work (two_kernel_processes).
pairs, kernel_ratio, kernel_two, one_core = [], [], [], []
for _ in range(PAIRS):
    k_row = kernel_times()[-1]
    kernel_two.append(two_kernel_processes() * k_row)
    one = exospec_run(f5, 1)
    pairs.append((one, exospec_run(f5, 2)))
    kernel_ratio.append((one["report"]["spectra"] / one["seconds"]) * k_row)
    one_core.append(exospec_run(f5, 1, tag="_core0", one_core=True))
runs = {
    "1e5, 1 thread": pairs[0][0],
    "1e5, 2 threads": pairs[0][1],
    "1e4, 1 thread": exospec_run(f4, 1),
    "1e4, 1 thread, all products": exospec_run(f4, 1, "calibrated,denoised,fit", "_all"),
    "1e5, 1 thread, all products": exospec_run(f5, 1, "calibrated,denoised,fit", "_all"),
}

print(f"# exospec end-to-end, {platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
print(f"kernel-only, one core, per spectrum (both channels): calibrate+despike {2 * calib * 1e6:.1f} us, "
      f"adaptive denoise {2 * denoise * 1e6:.1f} us, fit FUV {fit_fuv * 1e6:.1f} us + EUV {fit_euv * 1e6:.1f} us"
      f" = {kernel_row * 1e6:.1f} us -> {1 / kernel_row:.0f} spectra/s")
print(f"{'run':<30} {'spectra/s':>10} {'vs kernels':>10} {'peak RSS MiB':>13}  "
      f"stage seconds (read/decode/cal/den/fit/write)")
for name, m in runs.items():
    rep = m["report"]
    n = rep["spectra"]
    sps = n / m["seconds"]
    s = rep["seconds"]
    print(f"{name:<30} {sps:>10.0f} {sps * kernel_row:>9.0%} {m['max_rss_kib'] / 1024:>13.0f}  "
          f"{s['read']:.2f}/{s['decode']:.2f}/{s['calibrate']:.2f}/{s['denoise']:.2f}/{s['fit']:.2f}/"
          f"{s['write']:.2f}")
kr = sorted(kernel_ratio)
print(f"1e5, 1 thread, against the kernel-only sum measured just before it: "
      + ", ".join(f"{x:.0%}" for x in kernel_ratio) + f"; median {kr[len(kr) // 2]:.0%}")
# CPU time (user + system, all threads) against wall time: how many cores
# each run kept busy. The one-thread run also uses the second core, for the
# input hash and (with a core free) the decompression on the I/O thread; the
# two-thread run must fit that work into its two cores as well.
print("CPU seconds / wall seconds (cores busy), 1 thread | 2 threads: "
      + ", ".join(f"{one['cpu_seconds']:.1f}/{one['seconds']:.1f} ({one['cpu_seconds'] / one['seconds']:.2f})"
                  f" | {two['cpu_seconds']:.1f}/{two['seconds']:.1f} ({two['cpu_seconds'] / two['seconds']:.2f})"
                  for one, two in pairs))
ratios = sorted(one["seconds"] / two["seconds"] for one, two in pairs)
print(f"1 -> 2 threads on 1e5 spectra, {PAIRS} alternating pairs: "
      + ", ".join(f"{one['seconds']:.2f} s / {two['seconds']:.2f} s = {one['seconds'] / two['seconds']:.2f}x"
                  for one, two in pairs)
      + f"; median {ratios[len(ratios) // 2]:.2f}x")
# The same one-thread run confined to one core (taskset -c 0): the hash and
# the decompression then share the compute thread's core instead of taking
# the idle one, so this against the two-thread run is how the whole job
# scales from one core to two.
cores = sorted(c["seconds"] / two["seconds"] for c, (_, two) in zip(one_core, pairs))
print(f"1 core (--threads 1, taskset -c 0) -> 2 cores (--threads 2), after each pair: "
      + ", ".join(f"{c['seconds']:.2f} s / {two['seconds']:.2f} s = {c['seconds'] / two['seconds']:.2f}x"
                  for c, (_, two) in zip(one_core, pairs))
      + f"; median {cores[len(cores) // 2]:.2f}x")
k2 = sorted(kernel_two)
print("the kernels in two processes at once, against one, just before each pair: "
      + ", ".join(f"{x:.2f}x" for x in kernel_two) + f"; median {k2[len(k2) // 2]:.2f}x")
rel = sorted((one["seconds"] / two["seconds"]) / k for (one, two), k in zip(pairs, kernel_two))
print(f"1 -> 2 thread speed-up of run / that of two kernel processes, per pair: "
      + ", ".join(f"{(one['seconds'] / two['seconds']) / k:.0%}" for (one, two), k in zip(pairs, kernel_two))
      + f"; median {rel[len(rel) // 2]:.0%}")
