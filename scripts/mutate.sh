#!/usr/bin/env bash
# Mutation check (issue 22): apply deliberate faults one at a time to a
# scratch copy of the tree, rebuild incrementally, run ctest, and print which
# tests caught each fault. Not part of .ci/run (it takes 30-60 minutes on two
# cores); docs/TESTING.md shows its table.
#
#   bash scripts/mutate.sh                 # every fault
#   bash scripts/mutate.sh 2 5             # only faults 2 and 5 (their numbers in the table)
#
# Environment: MUTATE_DIR (scratch, default /tmp/exospec-mutate), JOBS (2),
# CTEST_ARGS (default "-E ^package\." : the install/consumer tests do not
# test numerics). The scratch tree keeps its build directory between runs,
# so a second run rebuilds only what a fault touches.
#
# Each fault is a literal replacement that must match exactly `count` times
# in the current source: if the code has changed under it, the script stops
# with an error naming the fault instead of testing something else.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export MUTATE_ROOT="$root"
export MUTATE_DIR="${MUTATE_DIR:-/tmp/exospec-mutate}"
export JOBS="${JOBS:-2}"
export CTEST_ARGS="${CTEST_ARGS:--E ^package\\.}"
exec /usr/bin/python3 - "$@" <<'PY'
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

ROOT, DIR, JOBS = os.environ["MUTATE_ROOT"], os.environ["MUTATE_DIR"], os.environ["JOBS"]
SRC, BUILD = os.path.join(DIR, "src"), os.path.join(DIR, "build")

# (fault, file, old, new, count). Issue 22's three are 1, 2 and the last.
FAULTS = [
    ("linear fit path: brightness sigma x 1.035",
     "kernels/src/line_fit_linear.cpp",
     "= std::sqrt(inverse_diagonal<K>(L, K, static_cast<int>(a)));",
     "= 1.035 * std::sqrt(inverse_diagonal<K>(L, K, static_cast<int>(a)));", 1),
    ("despike threshold 3.5 -> 5.0 (both channels)",
     "data/run.toml", "\nthreshold = 3.5\n", "\nthreshold = 5.0\n", 2),
    ("linear fit path: brightness sigma x 1.02",
     "kernels/src/line_fit_linear.cpp",
     "= std::sqrt(inverse_diagonal<K>(L, K, static_cast<int>(a)));",
     "= 1.02 * std::sqrt(inverse_diagonal<K>(L, K, static_cast<int>(a)));", 1),
    ("final solve at the neighbours' shift: reported brightness sigma x 1.04",
     "kernels/src/line_fit.cpp",
     "out.sigma[j] = sol.sigma(i);",
     "out.sigma[j] = 1.04 * sol.sigma(i);", 1),
    ("calibrate: sensitivity x 1.03",
     "kernels/src/calibrate.cpp",
     "const double r = cal.sensitivity[p] * cal.flat[p];",
     "const double r = 1.03 * cal.sensitivity[p] * cal.flat[p];", 1),
    ("calibrate: flat field applied twice",
     "kernels/src/calibrate.cpp",
     "const double r = cal.sensitivity[p] * cal.flat[p];",
     "const double r = cal.sensitivity[p] * cal.flat[p] * cal.flat[p];", 1),
    ("calibrate: dead-time term dropped (g = 1)",
     "kernels/src/calibrate.cpp",
     "s.g = 1.0 - tau * total / t;", "s.g = 1.0 + 0.0 * tau * total / t;", 1),
    ("calibrate: sign of the dark's temperature term",
     "kernels/src/calibrate.cpp",
     "const double dark_scale = 1.0 + coeff * (temp - t_ref);",
     "const double dark_scale = 1.0 - coeff * (temp - t_ref);", 1),
    ("wavelengths: pixel centres one pixel off (p + 1)",
     "kernels/src/spectrum_model.cpp",
     "out[p] = eval_polynomial(coeffs, static_cast<double>(p));",
     "out[p] = eval_polynomial(coeffs, static_cast<double>(p + 1));", 1),
    ("line profile: last pixel's upper edge off by one (pixel p uses edges p, p + 2)",
     "kernels/src/spectrum_model.cpp",
     "v += c.fraction * gaussian_pixel_average(edges[p], edges[p + 1], c.wavelength_nm, sigma);",
     "v += c.fraction * gaussian_pixel_average(edges[p], edges[std::min(p + 2, pixels)], c.wavelength_nm, sigma);",
     1),
    ("fit: tied-multiplet ratios ignored (equal fractions)",
     "kernels/src/line_fit_windows.cpp",
     "w.components.push_back({c.wavelength_nm, total > 0.0 ? c.fraction / total : 0.0});",
     "w.components.push_back({c.wavelength_nm, 1.0 / static_cast<double>(lines_[j].components.size())});", 1),
    ("fit: sign of the final Newton step on the quadratic model",
     "kernels/src/line_fit_projected.cpp",
     "std::clamp(s(0) - gradient / curvature, -max_shift, max_shift)",
     "std::clamp(s(0) + gradient / curvature, -max_shift, max_shift)", 1),
    ("despike: line tolerance 0.2 -> 0 (both channels)",
     "data/run.toml", "\nline_tolerance = 0.2\n", "\nline_tolerance = 0.0\n", 2),
    ("despike: reference's noise term 1/4 dropped",
     "kernels/src/calibrate.cpp",
     "return diff / std::sqrt(1.25 + tol * tol / a);", "return diff / std::sqrt(1.0 + tol * tol / a);", 1),
    ("Anscombe transform: 3/8 -> 1/8",
     "kernels/src/denoise.cpp",
     "return 2.0 * std::sqrt(std::max(counts, 0.0) + 0.375);",
     "return 2.0 * std::sqrt(std::max(counts, 0.0) + 0.125);", 1),
    ("calibrate variance: the wide mean keeps the pixel's own count (not leave-one-out)",
     "kernels/src/calibrate.cpp",
     "W[p] = ((t7[p - 10] + t7[p - 3] + t7[p + 4]) - L[p]) * inv_n[p];",
     "W[p] = (t7[p - 10] + t7[p - 3] + t7[p + 4]) * inv_n[p];", 1),
    ("calibrate variance: never switch to the pooled quadratic near lines",
     "kernels/src/calibrate.cpp",
     "return d * d > w2_c2_over_m * mu_w ? n : w;",
     "return d * d > T(1e6) * w2_c2_over_m * mu_w ? n : w;", 1),
    # (Last: a header that every target includes, so the full rebuild happens once.)
    ("FWHM per sigma 2.3548 -> 2.0 (simulator and fitter)",
     "kernels/include/exospec/kernels/spectrum_model.hpp",
     "kFwhmPerSigma = 2.3548200450309493;", "kFwhmPerSigma = 2.0;", 1),
]


def run(cmd, **kw):
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def sync():
    """The scratch tree: the tracked and new files of the work tree, copied
    by content (a file that did not change keeps its time stamp, one that did
    gets a new one, so the incremental build is right)."""
    files = run(["git", "-C", ROOT, "ls-files", "--cached", "--others", "--exclude-standard"], check=True).stdout
    for rel in files.splitlines():
        src, dst = os.path.join(ROOT, rel), os.path.join(SRC, rel)
        if not os.path.isfile(src):
            continue  # (deleted in the work tree, not yet in git)
        data = open(src, "rb").read()
        if os.path.isfile(dst) and open(dst, "rb").read() == data:
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as fh:
            fh.write(data)
        shutil.copymode(src, dst)


def source_of(i):
    """Fault i's file in the scratch tree, after checking that its text
    matches as often as the fault says."""
    name, path, old, _, count = FAULTS[i - 1]
    text = open(os.path.join(SRC, path)).read()
    found = text.count(old)
    if found != count:
        sys.exit(f"mutate.sh: fault {i} '{name}': {path} has {found} matches of its text, not {count}: "
                 "the source changed; update the fault")
    return text


def apply(i):
    _, path, old, new, _ = FAULTS[i - 1]
    text = source_of(i)
    with open(os.path.join(SRC, path), "w") as fh:
        fh.write(text.replace(old, new))


def restore(fault):
    path = fault[1]
    with open(os.path.join(ROOT, path)) as src, open(os.path.join(SRC, path), "w") as dst:
        dst.write(src.read())  # (a new time stamp: rebuilt with the next fault)


def build_and_test(log):
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        r = run(["cmake", "-S", SRC, "-B", BUILD, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                 "-DEXOSPEC_WERROR=ON", "-DEXOSPEC_BUILD_BENCHMARKS=OFF"])
        if r.returncode:
            sys.exit("mutate.sh: configure failed:\n" + r.stdout + r.stderr)
    r = run(["cmake", "--build", BUILD, "-j", JOBS])
    with open(log, "w") as fh:
        fh.write(r.stdout + r.stderr)
    if r.returncode:
        return None, "build failed"
    r = run(["ctest", "--test-dir", BUILD, "-j", JOBS, "--timeout", "600", "--output-on-failure"] + shlex.split(os.environ["CTEST_ARGS"]))
    with open(log, "a") as fh:
        fh.write(r.stdout + r.stderr)
    failed = re.findall(r"^\s*\d+ - (\S+) \((?:Failed|Timeout|SEGFAULT|Subprocess aborted|Exception|Not Run)",
                        r.stdout, re.M)
    m = re.search(r"(\d+)% tests passed, (\d+) tests failed out of (\d+)", r.stdout)
    return failed, (m.group(0) if m else "no ctest summary")


def short(names, shown=6):
    return ", ".join(names[:shown]) + (f" (+{len(names) - shown} more)" if len(names) > shown else "")


picked = [int(a) for a in sys.argv[1:]] or list(range(1, len(FAULTS) + 1))
sync()
for i in picked:  # (every fault's text checked before the first hour is spent)
    source_of(i)
t0 = time.time()
logs = os.path.join(DIR, "logs")
os.makedirs(logs, exist_ok=True)
failed, summary = build_and_test(os.path.join(logs, "baseline.log"))
if failed is None or failed:
    sys.exit(f"mutate.sh: the unmodified tree does not pass ({summary}: {failed}); see {logs}/baseline.log")
print(f"baseline: {summary} ({time.time() - t0:.0f} s)", flush=True)
rows = []
for i in picked:
    fault = FAULTS[i - 1]
    t = time.time()
    apply(i)
    try:
        failed, summary = build_and_test(os.path.join(logs, f"fault{i:02d}.log"))
    finally:
        restore(fault)
    caught = failed is None or len(failed) > 0
    by = "the build" if failed is None else short(failed)
    rows.append((i, fault[0], fault[1], caught, len(failed or []), by))
    print(f"fault {i}: {'caught' if caught else 'NOT CAUGHT'} ({summary}; {time.time() - t:.0f} s): {by}",
          flush=True)

print()
print("| # | fault | file | caught | tests failed | by |")
print("|---|---|---|---|---|---|")
for i, name, path, caught, n, by in rows:
    print(f"| {i} | {name} | `{path}` | {'yes' if caught else '**no**'} | {n} | {by} |")
n_caught = sum(r[3] for r in rows)
print(f"\n{n_caught} of {len(rows)} faults caught ({time.time() - t0:.0f} s; logs in {logs})")
sys.exit(0 if n_caught == len(rows) else 1)
PY
