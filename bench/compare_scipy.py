"""Side-by-side: the exospec kernels and the numpy/scipy way of doing the same
work, on the same batch, in one run.

Writes a 4096 x 1024 batch of Poisson spectra (float64) to a temporary file,
times scipy.signal.savgol_filter(x, 11, 3, axis=-1) (mode interp, scipy's
default) and a scipy.fft low-pass of the mirrored rows on it, then runs
build/bench/bench_kernels with EXOSPEC_BENCH_BATCH pointing at the same file,
and prints spectra per second for both and the ratio.

  /usr/bin/python3 bench/compare_scipy.py [build/bench/bench_kernels]
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy
import scipy.fft
import scipy.signal

exe = sys.argv[1] if len(sys.argv) > 1 else os.path.join("build", "bench", "bench_kernels")
rows, pixels = 4096, 1024
rng = np.random.default_rng(11)
p = np.arange(pixels)
mu = 20.0 + 3000.0 * np.exp(-0.5 * ((p - 500.0) / 4.0) ** 2)
x = rng.poisson(mu, size=(rows, pixels)).astype(np.float64)


def best_of(fn, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


t_sg = best_of(lambda: scipy.signal.savgol_filter(x, 11, 3, axis=-1))


def scipy_lowpass():
    # The same filter as FourierFilter (Gaussian kernel sigma 2 px, mirrored rows).
    ext = np.concatenate([x, x[:, ::-1]], axis=1)
    f = np.fft.rfftfreq(2 * pixels)
    H = np.exp(-2 * np.pi ** 2 * 4.0 * f ** 2)
    return scipy.fft.irfft(scipy.fft.rfft(ext, axis=1) * H, n=2 * pixels, axis=1)[:, :pixels]


t_lp = best_of(scipy_lowpass)

with tempfile.NamedTemporaryFile(suffix=".f64", delete=False) as fh:
    x.tofile(fh)
    batch = fh.name
env = dict(os.environ, EXOSPEC_BENCH_BATCH=batch)
r = subprocess.run([exe, "--benchmark_filter=BM_Savgol|BM_FourierLowpass/0",
                    "--benchmark_min_time=1", "--benchmark_format=json"],
                   env=env, capture_output=True, text=True, check=True)
os.unlink(batch)
bench = {b["name"]: b for b in json.loads(r.stdout)["benchmarks"]}

print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
      f"numpy {np.__version__}, scipy {scipy.__version__}; batch {rows} x {pixels}")
print(f"{'work':<42} {'numpy/scipy':>14} {'exospec':>14} {'ratio':>8}")
for label, scipy_s, name in [
        ("Savitzky-Golay 11/3 interp, float64", t_sg, "BM_Savgol<double>/real_time"),
        ("Savitzky-Golay 11/3 interp, float32 (ours)", t_sg, "BM_Savgol<float>/real_time"),
        ("Gaussian low-pass by FFT, mirrored rows", t_lp, "BM_FourierLowpass/0/real_time")]:
    ours = bench[name]["items_per_second"]
    theirs = rows / scipy_s
    print(f"{label:<42} {theirs:>11.0f}/s {ours:>11.0f}/s {ours / theirs:>7.1f}x")
