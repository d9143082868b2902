"""The fit stage against a truth that exospec did not make.

The input is written by tests/e2e/independent_generator.py (numpy/scipy: its
own wavelength solutions, calibration tables, pixel-integrated Gaussian lines
with sigma = FWHM / (2 sqrt(2 ln 2)) computed there, dark, dead time, Poisson
counts; no particle hits), so a fault that the simulator and the fitter share
(the line profile, the FWHM-per-sigma constant) cannot cancel here. Then
`exospec run IN -o OUT --threads 2` (default configuration) and, per line,
the pulls (fitted - true) / sigma and the fitted brightness against the
generator's constant truth:

  pull sd, pull median, plain mean of the brightness   asserted (ASSERT below)
  mean pull, inverse-variance weighted mean error      asserted at 4 SE (PENDING,
                                                       now enabled)
and the line-spread convention through the bright line (H I 121.567, 300 R,
S/N ~ 66): a second run with `width = "free"` in the EUV must fit a FWHM equal
to the generator's 1.0 nm within 4 standard errors of the mean (~3e-4 nm),
and in the default run the bright line's plain mean and its window's reduced
chi2 must be right (a profile 18 % too wide biases its brightness by ~5 %,
~400 standard errors, and its chi2 by far more than the bound).

Sample size and the bounds (N spectra, every fit converged):
  SE of a pull mean    1 / sqrt(N)           = 0.0071 (N = 20,000)
  SE of a pull median  1.2533 / sqrt(N)      = 0.0089
  SE of a pull sd      1 / sqrt(2 N)         = 0.0050
  SE of a plain mean   sd(B) / sqrt(N)       (measured per line)
  SE of a weighted mean  1 / sqrt(sum 1/sigma^2)
Every statistical bound is (expected value) +- 4 standard errors, plus, where
stated, a model allowance that is not statistical (below).
"""
import json
import math
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import independent_generator as gen  # noqa: E402

N = 20000
SEED = 7
K = 4.0  # standard errors

SE_MEAN = 1.0 / math.sqrt(N)
SE_MEDIAN = 1.2533 / math.sqrt(N)
SE_SD = 1.0 / math.sqrt(2.0 * N)

# Classes of line by their S/N in this file (median truth / sigma):
#   bright  S/N >= 10 (H I 121.567 at 66, H I 102.572 at 17): Gaussian regime,
#           pull sd 1 and median 0 within 4 SE.
#   medium  S/N 3-10 (a few hundred counts over the line): sd within
#           [1 - 4 SE, 1.03 + 4 SE] and |median| <= 0.03 + 4 SE: Poisson
#           skew at tens of counts per pixel moves the median by a few
#           hundredths (docs/FIT.md).
#   faint   S/N < 3 (0, 1 and 2 R lines; 0.2-0.6 counts per pixel at the
#           band edges): sd within [1 - 4 SE, 1.06 + 4 SE] and |median| <=
#           0.05 + 4 SE. The allowances are not statistics: docs/FIT.md's
#           low-count Monte Carlo (pull sd 1.00-1.05 at 0-5 R with
#           line_prior_counts = 1; median about -0.05 at zero brightness from
#           the skew of Poisson counts, there with the true variance too),
#           and, measured here with sigma_reference = "neighbours", sd up to
#           1.058 / 1.060 / 1.073 (seeds 7 / 8 / 9) for the 0 R lines at the
#           band edges (Al I 308.22, He I 58.433: 0.2-0.4 counts per pixel),
#           above the documented 1.05 (reported as a finding).
# A sigma 3.5 % too large gives sd 0.966 for the bright lines (below 0.98);
# one 3.5 % too small 1.036 (above 1.02).
CLASSES = {
    "bright": dict(sd=(1.0 - K * SE_SD, 1.0 + K * SE_SD), median=K * SE_MEDIAN),
    "medium": dict(sd=(1.0 - K * SE_SD, 1.03 + K * SE_SD), median=0.03 + K * SE_MEDIAN),
    "faint": dict(sd=(1.0 - K * SE_SD, 1.06 + K * SE_SD), median=0.05 + K * SE_MEDIAN),
}
# Line -> class (the truth is the generator's; see CHANNELS there).
LINES = {
    ("euv", "He I 58.433"): "faint",     # 0 R, band edge
    ("euv", "H I 102.572"): "bright",    # 20 R
    ("euv", "H I 121.567"): "bright",    # 300 R
    ("euv", "O I 130.4"): "medium",      # 2 R, triplet 5:3:1
    ("fuv", "C I 156.1"): "medium",      # 5 R
    ("fuv", "C I 165.7"): "faint",       # 0 R
    ("fuv", "S I 180.73"): "faint",      # 1 R, blend
    ("fuv", "S I 182.62"): "medium",     # 5 R, blend
    ("fuv", "Mg II 279.553"): "medium",  # 5 R, doublet 2:1, blend with Mg I
    ("fuv", "Mg I 285.213"): "faint",    # 1 R
    ("fuv", "Al I 308.22"): "faint",     # 0 R, band edge, blend
    ("fuv", "Al I 309.28"): "faint",     # 1 R, band edge, blend
}

# What is asserted today (True) and what is only printed (False).
ASSERT = {
    "converged": True,        # every fit status 0 (>= 99.9 %)
    "pull_sd": True,          # CLASSES[...]["sd"]
    "pull_median": True,      # CLASSES[...]["median"]
    "plain_mean": True,       # |mean(B) - truth| <= 4 sd(B) / sqrt(N)
    "bright_line": True,      # the line-spread checks on H I 121.567 (below)
}
# PENDING (the change of what brightness_sigma means for faint lines, built
# in parallel): enable these when it lands. Until then they are printed.
#   mean_pull          |mean pull| <= 0.05 for every line (today's faint
#                      lines without it: about -0.13, from a sigma that
#                      follows the spectrum's own noise)
#   weighted_mean_R    |inverse-variance weighted mean - truth| <= 0.01 R for
#                      the 0, 1 and 5 R lines (today without it: biased low by
#                      30-40 standard errors). NB: with N = 20,000 the
#                      weighted mean's standard error is 0.003-0.009 R for
#                      those lines, so 0.01 R is only 1.1-3 SE; a bound of
#                      4 SE (weighted_mean_se) is the statistically safe form.
# Landed (sigma_reference = "neighbours", the default): the mean pull is
# asserted at 4 standard errors (0.028, tighter than the 0.05 once planned;
# measured |.| <= 0.018) and the weighted mean at 4 of its standard errors
# (measured |.| <= 3.0 SE). The bound of 0.01 R stays printed only: it is
# 1.1-3 standard errors, not a statistical bound.
PENDING = {
    "mean_pull": (True, K * SE_MEAN),
    "weighted_mean_R": (False, 0.01),
    "weighted_mean_se": (True, K),
}
WEIGHTED_MEAN_LINES = (0.0, 1.0, 5.0)  # truths the weighted-mean checks apply to
BRIGHT = ("euv", "H I 121.567")
FWHM_REL_TOL = 0.005  # besides 4 SE: the free-width FWHM within 0.5 % (a 2.0 constant: -15 %)
CHI2_MEDIAN = (0.95, 1.05)  # bright line's window, median reduced chi2 (dof ~ 60: median ~0.99)

exe, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
failures = []


def check(kind, cond, msg):
    enabled = ASSERT.get(kind, False) if kind in ASSERT else PENDING.get(kind, (False,))[0]
    tag = ("ok   " if cond else "FAIL ") if enabled else ("info " if cond else "info(would fail) ")
    print(tag + msg)
    if enabled and not cond:
        failures.append(msg)


inp = os.path.join(work, "independent.h5")
truth = gen.generate(inp, N, SEED)
out = os.path.join(work, "independent_out.h5")
subprocess.run([exe, "run", inp, "-o", out, "--threads", "2", "--products", "fit", "--quiet"], check=True)

with h5py.File(out, "r") as fo:
    for ch in ("euv", "fuv"):
        t = truth["channels"][ch]
        g = fo[f"fit/{ch}"]
        names = [n.decode() if isinstance(n, bytes) else n for n in g["line_name"][:]]
        if sorted(names) != sorted(t["line_name"]):
            failures.append(f"{ch}: fitted lines {names} are not the generator's {t['line_name']}")
            continue
        B, S, st = g["brightness"][:], g["brightness_sigma"][:], g["status"][:]
        chi2 = g["chi2_reduced"][:]
        for j, name in enumerate(names):
            true_b = t["line_brightness"][t["line_name"].index(name)]
            cls = CLASSES[LINES[(ch, name)]]
            ok = st[:, j] == 0
            check("converged", ok.mean() >= 0.999, f"{ch} {name:<14} {ok.mean():.2%} of fits converged")
            b, s = B[ok, j], S[ok, j]
            n = len(b)
            pull = (b - true_b) / s
            snr = np.median(true_b / s)
            lo, hi = cls["sd"]
            sd, med, mp = pull.std(), np.median(pull), pull.mean()
            label = f"{ch} {name:<14} {true_b:5.1f} R (S/N {snr:5.1f}, {LINES[(ch, name)]})"
            check("pull_sd", lo <= sd <= hi, f"{label}: pull sd {sd:.4f} in [{lo:.3f}, {hi:.3f}]")
            check("pull_median", abs(med) <= cls["median"],
                  f"{label}: pull median {med:+.4f}, |.| <= {cls['median']:.3f}")
            plain, plain_se = b.mean() - true_b, b.std() / math.sqrt(n)
            check("plain_mean", abs(plain) <= K * plain_se,
                  f"{label}: plain mean error {plain:+.4f} R, {plain / plain_se:+.1f} SE (|.| <= {K:.0f} SE)")
            w = 1.0 / (s * s)
            wmean, wse = (w * b).sum() / w.sum() - true_b, 1.0 / math.sqrt(w.sum())
            check("mean_pull", abs(mp) <= PENDING["mean_pull"][1],
                  f"{label}: mean pull {mp:+.4f} (SE {SE_MEAN:.4f}), |.| <= {PENDING['mean_pull'][1]:.3f}")
            if true_b in WEIGHTED_MEAN_LINES:
                check("weighted_mean_R", abs(wmean) <= PENDING["weighted_mean_R"][1],
                      f"{label}: weighted mean error {wmean:+.4f} R +- {wse:.4f} ({wmean / wse:+.1f} SE), "
                      f"pending |.| <= {PENDING['weighted_mean_R'][1]} R")
                check("weighted_mean_se", abs(wmean) <= PENDING["weighted_mean_se"][1] * wse,
                      f"{label}: weighted mean error {wmean / wse:+.1f} SE, |.| <= "
                      f"{PENDING['weighted_mean_se'][1]:.0f} SE")
            else:
                print(f"info {label}: weighted mean error {wmean:+.4f} R +- {wse:.4f} ({wmean / wse:+.1f} SE)")
            if (ch, name) == BRIGHT:
                # The default run: the bright line's brightness to 4 SE
                # (plain_mean above, ~0.04 % here) and its window's chi2.
                mchi = float(np.median(chi2[ok, j]))
                check("bright_line", CHI2_MEDIAN[0] <= mchi <= CHI2_MEDIAN[1],
                      f"{label}: median reduced chi2 {mchi:.3f} in {CHI2_MEDIAN}")
                check("bright_line", abs(plain) <= K * plain_se and abs(plain) <= 0.005 * true_b,
                      f"{label}: brightness {b.mean():.3f} R against {true_b} R ({plain / true_b:+.3%})")

# The FWHM convention through the bright line: the EUV fitted with a free
# width; the bright window measures the FWHM of the generator's lines.
cfg = os.path.join(work, "free_width.toml")
with open(cfg, "w") as fh:
    fh.write('[fit.euv]\nwidth = "free"\n')
out_free = os.path.join(work, "independent_free_width.h5")
subprocess.run([exe, "run", inp, "-o", out_free, "--threads", "2", "--products", "fit", "--channels", "euv",
                "--config", cfg, "--quiet"], check=True)
with h5py.File(out_free, "r") as fo:
    g = fo["fit/euv"]
    names = [n.decode() if isinstance(n, bytes) else n for n in g["line_name"][:]]
    j = names.index(BRIGHT[1])
    st, fw = g["status"][:, j], g["fwhm_nm"][:, j]
    ok = st == 0
    true_fwhm = truth["channels"]["euv"]["lsf_fwhm_nm"]
    f_mean, f_se = fw[ok].mean(), fw[ok].std() / math.sqrt(ok.sum())
    check("bright_line", ok.mean() >= 0.999, f"free width: {ok.mean():.2%} of {BRIGHT[1]} fits converged")
    check("bright_line", abs(f_mean - true_fwhm) <= K * f_se and abs(f_mean / true_fwhm - 1) <= FWHM_REL_TOL,
          f"free width: {BRIGHT[1]} fitted FWHM {f_mean:.5f} +- {f_se:.5f} nm against the generator's "
          f"{true_fwhm} nm ({(f_mean - true_fwhm) / f_se:+.1f} SE; |.| <= {K:.0f} SE and {FWHM_REL_TOL:.1%})")

if failures:
    print(f"{len(failures)} failures:")
    print("\n".join(failures))
    sys.exit(1)
print(f"fit against an independent truth ({N} spectra per channel): pulls and the line spread as stated")
