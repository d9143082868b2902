#!/usr/bin/python3
"""The Python binding's overhead: exospec Channel.fit called from Python on N FUV spectra in memory,
beside the C++ fit alone on the same arrays, in the same process and run.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_binding.py [N] [REPEATS] [--threads T]

The spectra are simulated (default limb scan, seed 1) and calibrated and denoised once, outside the
timing. "C++" is Channel._time_fit: the same ChannelStages::fit call in a C++ loop, arrays already
converted and results allocated; "Python" is the whole call from Python (argument checks, the scan of
the inputs for NaN at good pixels, allocation of the results, the GIL released and taken back).
Prints both per spectrum, their ratio, and the repeats' spread; the target of issue 18 is <= 1.2x.
"""
import argparse
import pathlib
import statistics
import tempfile
import time

import exospec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("spectra", nargs="?", type=int, default=10000)
    ap.add_argument("repeats", nargs="?", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "in.h5"
        exospec.simulate(src, spectra=args.spectra, seed=1, channels=["fuv"])
        d = exospec.read_input(src, "fuv")
    ch = exospec.Channel("fuv", d["calibration"], threads=args.threads)
    cal = ch.calibrate(d["counts"], d["exposure_s"], d["temperature_c"], altitude_km=d["altitude_km"])
    den = ch.denoise(cal)
    alt = d["altitude_km"]
    ch.fit(cal, denoised=den.radiance, altitude_km=alt)  # warm-up
    cpp, py = [], []
    for _ in range(args.repeats):  # alternated, so that drifts of the machine hit both alike
        cpp.append(ch._time_fit(cal, den.radiance, alt, 1))
        t0 = time.perf_counter()
        ch.fit(cal, denoised=den.radiance, altitude_km=alt)
        py.append(time.perf_counter() - t0)
    n = args.spectra
    c, p = statistics.median(cpp), statistics.median(py)
    print(f"spectra {n}, threads {args.threads}, repeats {args.repeats}")
    print(f"C++ fit alone      {1e6 * c / n:8.3f} us/spectrum  (min {1e6 * min(cpp) / n:.3f}, max {1e6 * max(cpp) / n:.3f})")
    print(f"exospec.fit (Python) {1e6 * p / n:6.3f} us/spectrum  (min {1e6 * min(py) / n:.3f}, max {1e6 * max(py) / n:.3f})")
    print(f"ratio Python / C++ {p / c:8.3f}  (pairwise: {', '.join(f'{b / a:.3f}' for a, b in zip(cpp, py))})")


if __name__ == "__main__":
    main()
