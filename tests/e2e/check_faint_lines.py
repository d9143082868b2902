"""Faint lines unbiased where it matters (issue "Level 3", point 3): on files
whose lines have constant brightness 0, 1 or 5 R on the default instrument
(the FUV continuum at 0.3 R/nm), the plain mean AND the inverse-variance
weighted mean of the fitted brightness are within 0.01 R of the truth, and
the pulls keep |median| <= 0.1, sd in [0.9, 1.1] and |mean| <= 0.05.

A weighted mean is biased when a spectrum's sigma follows its own
fluctuation (docs/FIT.md, "What brightness_sigma means"); the test also
runs sigma_reference = "self" on the same file and requires that bias to be
visible there (so that the check can fail).

Bounds from the sample size: with n spectra and a line's sigma s, the mean's
standard error is s / sqrt(n); 0.01 R is asserted where 4 standard errors fit
in it, and 4 standard errors elsewhere (printed). The means' table is printed
for docs/FIT.md.
"""
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
N = int(os.environ.get("EXOSPEC_FAINT_SPECTRA", "200000"))


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


# Constant lines: B_s = 0, B_bg = the brightness (the profile model with no
# exosphere); every catalogue line gets one of 0, 1, 5 R.
levels = {"euv": {"He I 58.433": 5.0, "H I 102.572": 1.0, "H I 121.567": 1000.0, "O I 130.4": 0.0},
          "fuv": {"C I 156.1": 0.0, "C I 165.7": 1.0, "S I 180.73": 5.0, "S I 182.62": 0.0,
                  "Mg II 279.553": 1.0, "Mg I 285.213": 5.0, "Al I 308.22": 0.0, "Al I 309.28": 1.0}}
sim_toml = os.path.join(work, "constant.toml")
with open(sim_toml, "w") as f:
    f.write("[instrument.fuv]\ncontinuum = 0.3\ncontinuum_slope = 0.0\n")
    for ch, lines in levels.items():
        for name, b in lines.items():
            f.write(f'[exosphere.{ch}."{name}"]\nsurface_brightness_R = 0.0\nbackground_R = {b}\n')
self_toml = os.path.join(work, "self.toml")
with open(self_toml, "w") as f:
    f.write('[fit.euv]\nsigma_reference = "self"\n[fit.fuv]\nsigma_reference = "self"\n')

inp = os.path.join(work, "constant.h5")
subprocess.run([exe, "simulate", "-o", inp, "--spectra", str(N), "--seed", "31", "--config", sim_toml, "--quiet"],
               check=True)
outs = {}
for mode, extra in [("neighbours", []), ("self", ["--config", self_toml])]:
    outs[mode] = os.path.join(work, f"out_{mode}.h5")
    subprocess.run([exe, "run", inp, "-o", outs[mode], "--quiet", "--products", "fit"] + extra, check=True)

fi = h5py.File(inp, "r")
print(f"{N} spectra per line; errors in R with their standard errors")
print("| ch | line | truth (R) | sigma (R) | mean error | weighted mean error | pull mean | pull median | pull sd |"
      " weighted error with sigma_reference = self |")
print("|---|---|---|---|---|---|---|---|---|---|")
for ch, lines in levels.items():
    fo, fs = h5py.File(outs["neighbours"], "r"), h5py.File(outs["self"], "r")
    names = [n.decode() if isinstance(n, bytes) else n for n in fo[f"fit/{ch}/line_name"][:]]
    T = fi[f"truth/{ch}/line_brightness"][:]

    def stats(f, j):
        b, s, st = (f[f"fit/{ch}/{d}"][:, j] for d in ("brightness", "brightness_sigma", "status"))
        ok = st == 0
        e, s = (b - T[:, j])[ok], s[ok]
        w = 1.0 / s**2
        return ok.mean(), e, s, np.sum(w * e) / np.sum(w), 1.0 / np.sqrt(np.sum(w))

    for j, name in enumerate(names):
        truth = lines[name]
        if truth > 10:  # (the bright line is there for the shift; issue 5 checks it)
            continue
        conv, e, s, wmean, wse = stats(fo, j)
        _, _, _, wmean_self, wse_self = stats(fs, j)
        n = len(e)
        se = e.std() / np.sqrt(n)
        p = e / s
        pm, pmed, psd = p.mean(), np.median(p), p.std()
        print(f"| {ch} | {name} | {truth:g} | {np.median(s):.2f} | {e.mean():+.4f} +- {se:.4f} | "
              f"{wmean:+.4f} +- {wse:.4f} | {pm:+.3f} | {pmed:+.3f} | {psd:.3f} | {wmean_self:+.4f} +- {wse_self:.4f} |")
        check(conv >= 0.999, f"{ch} {name}: {conv:.2%} converged")
        tol = max(0.01, 4 * se)
        check(abs(e.mean()) <= tol, f"{ch} {name} at {truth:g} R: mean error {e.mean():+.4f} within {tol:.4f} R")
        tolw = max(0.01, 4 * wse)
        check(abs(wmean) <= tolw,
              f"{ch} {name} at {truth:g} R: weighted mean error {wmean:+.4f} within {tolw:.4f} R")
        check(abs(pmed) <= 0.1 and 0.9 <= psd <= 1.1 and abs(pm) <= 0.05,
              f"{ch} {name}: pull median {pmed:+.3f}, sd {psd:.3f}, mean {pm:+.3f}")
        if truth <= 5:
            # The fault this stage removes: with the fitted model's own variance
            # the weighted mean is biased low by many standard errors.
            check(wmean_self < -8 * wse_self,
                  f"{ch} {name}: sigma_reference = self is biased ({wmean_self:+.4f}, {wmean_self / wse_self:.0f} SE)")

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("all faint-line checks passed")
