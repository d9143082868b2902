"""Limb profiles against the simulator's truth (issue "Level 3", docs/PROFILE.md).

1. The truth itself, derived independently: the simulator's line brightness
   along the first scan equals B_s C(z; T) / C(0; T) + B_bg with the column C
   computed here by scipy: the ballistic density of Chamberlain's closed form
   (scipy.special.gammainc) integrated along the line of sight by
   scipy.integrate.quad, to 1e-7 relative.
2. Pulls (fitted - truth) / sigma of B_s, T and B_bg over EXOSPEC_PROFILE_SCANS
   scans (default 2000 of 50 spectra, the default limb scan) for every line
   whose surface S/N (B_s over the median sigma(B_s)) is >= 5 and whose T is
   measured to S/N >= 5 (T over the median sigma(T)): |median| <= 0.1 and sd
   in [0.9, 1.1] (4 standard errors where fewer scans make that wider).
   Below S/N 5 the table shows what the stage reports: mostly status 1 (not
   detected), the values still written; and where T has S/N < 5 (H I 102.572:
   the H profile is nearly flat over 5000 km) the pulls are skewed even for a
   fit of the true brightness plus Gaussian noise, which the table shows in
   brackets beside every line (the same sigmas, `exospec profile`).
3. The T-B_bg correlation written beside the sigmas is the correlation of
   the fitted values over the scans (to 4 standard errors, at least 0.05)
   where T is measured to 10 % or better (to first order they agree; with a
   poorly measured T the values' correlation is not the local one).

The table it prints is docs/PROFILE.md's.
"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
from scipy import integrate, special

exe, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
SCANS = int(os.environ.get("EXOSPEC_PROFILE_SCANS", "2000"))
PER_SCAN = 50
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


# ---------------------------------------------------------------- the truth
GM, R_KM, K_B, AMU = 2.2032e13, 2439.7, 1.380649e-23, 1.66053906660e-27


def zeta_ballistic(lam, lam_c):
    """Chamberlain's ballistic fraction for the exobase at r_c (lam_c = lambda(r_c))."""
    psi = lam**2 / (lam + lam_c)
    p = special.gammainc(1.5, lam)
    q = np.sqrt(1.0 - (lam / lam_c) ** 2) * np.exp(-psi) * special.gammainc(1.5, lam - psi) if lam < lam_c else 0.0
    return p - q


def column(z_km, mass_amu, t_k):
    lam_c = GM * mass_amu * AMU / (K_B * t_k * R_KM * 1e3)
    rt = R_KM + z_km

    def density(r):
        lam = lam_c * R_KM / r
        return np.exp(lam - lam_c) * zeta_ballistic(lam, lam_c) / zeta_ballistic(lam_c, lam_c)

    # s along the line of sight from the tangent point; r = sqrt(rt^2 + s^2); both sides.
    f = lambda s: density(np.hypot(rt, s))
    val, _ = integrate.quad(f, 0.0, np.inf, epsabs=0.0, epsrel=1e-11, limit=400)
    return 2.0 * val


ELEMENT_AMU = {"H": 1.008, "He": 4.002602, "C": 12.011, "O": 15.999, "Mg": 24.305, "Al": 26.9815385,
               "S": 32.06}

inp = os.path.join(work, "scan.h5")
out = os.path.join(work, "out.h5")
subprocess.run([exe, "simulate", "-o", inp, "--spectra", str(SCANS * PER_SCAN), "--seed", "23", "--quiet"],
               check=True)
subprocess.run([exe, "run", inp, "-o", out, "--quiet", "--products", "fit,profile"], check=True)
# The same level-2 sigmas with the true brightness plus Gaussian noise: what
# the profile fit gives with ideal inputs (the reference for the lines whose
# pulls are skewed by the model itself).
ideal_in, ideal_out = os.path.join(work, "ideal_fit.h5"), os.path.join(work, "ideal_profile.h5")
shutil.copy(out, ideal_in)
rng = np.random.default_rng(5)
with h5py.File(ideal_in, "r+") as f, h5py.File(inp, "r") as src:
    for ch in ("euv", "fuv"):
        s = f[f"fit/{ch}/brightness_sigma"][()]
        f[f"fit/{ch}/brightness"][...] = src[f"truth/{ch}/line_brightness"][()] + s * rng.standard_normal(s.shape)
    del f["profile"]
subprocess.run([exe, "profile", ideal_in, "-o", ideal_out, "--quiet"], check=True)
fi, fo, fg = h5py.File(inp, "r"), h5py.File(out, "r"), h5py.File(ideal_out, "r")
z = fi["geometry/tangent_altitude_km"][:PER_SCAN]
worst = 0.0
for ch in ("euv", "fuv"):
    t = fi[f"truth/{ch}"]
    names = [n.decode() if isinstance(n, bytes) else n for n in t["line_name"][:]]
    for j, name in enumerate(names):
        bs, tk, bg = (t[d][j] for d in ("profile_surface_brightness_R", "profile_temperature_K",
                                         "profile_background_R"))
        if bs <= 0:
            continue
        m = ELEMENT_AMU[name.split()[0]]
        c0 = column(0.0, m, tk)
        for i in (0, 5, 17, 33, 49):
            want = bs * column(max(z[i], 0.0), m, tk) / c0 + bg
            got = t["line_brightness"][i, j]
            worst = max(worst, abs(got - want) / want)
check(worst < 1e-7, f"simulator truth = B_s C(z)/C(0) + B_bg with scipy's column: worst relative error {worst:.1e}")

# -------------------------------------------------------------------- pulls
STATUS = ["converged", "not_detected", "T_at_bound", "too_few", "no_range", "singular", "unknown_mass"]
print(f"\n{SCANS} scans of {PER_SCAN} spectra (0-5000 km), default exosphere; pulls (fit - truth) / sigma")
print("(in brackets: the same fit of the true brightness plus Gaussian noise of the level-2 sigmas)")
print("| ch | line | B_s, T, B_bg (truth) | S/N of B_s, T | statuses | B_s pull median, sd | T pull median, sd |"
      " B_bg pull median, sd | corr(T, B_bg) written, of the values |")
print("|---|---|---|---|---|---|---|---|---|")
tested_lines = {}
for ch in ("euv", "fuv"):
    g, t = fo[f"profile/{ch}"], fi[f"truth/{ch}"]
    names = [n.decode() if isinstance(n, bytes) else n for n in g["line_name"][:]]
    check(len(g["scan_first"]) == SCANS and np.all(g["scan_count"][:] == PER_SCAN)
          and np.all(g["scan_first"][:] == PER_SCAN * np.arange(SCANS)), f"{ch}: {SCANS} scans of {PER_SCAN}")
    for j, name in enumerate(names):
        st = g["status"][:, j]
        counts = {STATUS[k]: int(c) for k, c in enumerate(np.bincount(st, minlength=7)) if c}
        truth = {q: t[tq][j] for q, tq in (("surface_brightness_R", "profile_surface_brightness_R"),
                                           ("temperature_K", "profile_temperature_K"),
                                           ("background_R", "profile_background_R"))}
        ok = (st <= 1) & np.isfinite(g["temperature_K_sigma"][:, j])
        snr = truth["surface_brightness_R"] / np.median(g["surface_brightness_R_sigma"][:, j][ok]) \
            if ok.any() else 0.0
        tv = g["temperature_K"][:, j][ok]
        t_snr = np.median(tv / g["temperature_K_sigma"][:, j][ok]) if ok.any() else 0.0
        tested = snr >= 5 and t_snr >= 5
        tested_lines[(ch, name)] = (j, tested)
        gst = fg[f"profile/{ch}/status"][:, j]
        gok = (gst <= 1) & np.isfinite(fg[f"profile/{ch}/temperature_K_sigma"][:, j])
        cells = []
        for q in ("surface_brightness_R", "temperature_K", "background_R"):
            v, s = g[q][:, j][ok], g[q + "_sigma"][:, j][ok]
            p = (v - truth[q]) / s
            med, sd = np.median(p), p.std()
            gp = (fg[f"profile/{ch}/{q}"][:, j][gok] - truth[q]) / fg[f"profile/{ch}/{q}_sigma"][:, j][gok]
            cells.append(f"{med:+.3f}, {sd:.3f} ({np.median(gp):+.3f}, {gp.std():.3f})")
            if tested:
                n = len(p)
                tol_med = max(0.1, 4 * 1.2533 * sd / np.sqrt(n))
                tol_sd = max(0.1, 4 * sd / np.sqrt(2 * n))
                check(abs(med) <= tol_med and abs(sd - 1) <= tol_sd,
                      f"{ch} {name} {q}: pull median {med:+.3f} (<= {tol_med:.3f}), sd {sd:.3f} (1 +- {tol_sd:.3f})"
                      f" over {n} scans")
        rho_w = g["temperature_background_correlation"][:, j][ok]
        bv = g["background_R"][:, j][ok]
        rho_v = np.corrcoef(tv, bv)[0, 1] if ok.sum() > 2 else np.nan
        if snr >= 5 and t_snr >= 10:
            # (the Fisher correlation is the values' correlation to first
            # order: where T is measured to 10 % or better)
            tol = max(0.05, 4 * (1 - rho_v**2) / np.sqrt(ok.sum()))
            check(abs(np.median(rho_w) - rho_v) <= tol,
                  f"{ch} {name}: correlation written {np.median(rho_w):+.3f}, of the values {rho_v:+.3f}")
        print(f"| {ch} | {name} | {truth['surface_brightness_R']:g} R, {truth['temperature_K']:g} K,"
              f" {truth['background_R']:g} R | {snr:.1f}, {t_snr:.1f} | {counts} | {cells[0]} | {cells[1]} | {cells[2]} |"
              f" {np.median(rho_w):+.2f}, {rho_v:+.2f} |")
        if tested:
            check(counts.get("converged", 0) >= 0.99 * SCANS, f"{ch} {name}: {counts}")
        elif snr >= 5:
            check(counts.get("converged", 0) >= 0.99 * SCANS, f"{ch} {name} (T S/N {t_snr:.1f}): {counts}")
        else:
            # Below S/N 5 a scan is reported, with a status: mostly not detected.
            check(sum(counts.values()) == SCANS and counts.get("converged", 0) < SCANS,
                  f"{ch} {name} (S/N {snr:.1f}): every scan has a status, {counts}")

# ----------------------------------------------------- exospec report's table
# `exospec report --truth` prints, per line, the medians over the converged
# scans (status 0) of T, B_s and B_bg with the median sigma of one scan, beside
# the truth: each figure against numpy on the same file (to its printed
# precision), and for the lines tested above each median within
# 0.1 sigma + 4 standard errors of the median of the truth.
r = subprocess.run([exe, "report", out, "--truth", inp, "--bins", "1"], capture_output=True, text=True, check=True)
table = r.stdout.split("limb profiles:")[1].splitlines()[2:]
seen = 0
for row in table:
    tok = row.split()
    if len(tok) < 15:
        continue
    ch, name, nums = tok[0], " ".join(tok[1:-13]), tok[-13:]
    g, t = fo[f"profile/{ch}"], fi[f"truth/{ch}"]
    j, tested = tested_lines[(ch, name)]
    conv = g["status"][:, j] == 0
    ok_scans = f"{int(conv.sum())}/{len(conv)}"
    check(nums[0] == ok_scans, f"report {ch} {name}: converged/scans {nums[0]}, numpy {ok_scans}")
    seen += 1
    for k, (q, tq, dec) in enumerate((("temperature_K", "profile_temperature_K", 0),
                                      ("surface_brightness_R", "profile_surface_brightness_R", 2),
                                      ("background_R", "profile_background_R", 2))):
        med, sig, tru = float(nums[1 + 4 * k]), float(nums[3 + 4 * k]), float(nums[4 + 4 * k])
        half = 0.5 * 10.0 ** -dec + 1e-9
        if conv.any():
            want_med, want_sig = np.median(g[q][:, j][conv]), np.median(g[q + "_sigma"][:, j][conv])
            check(abs(med - want_med) <= half and abs(sig - want_sig) <= half,
                  f"report {ch} {name} {q}: {med} +- {sig}, numpy {want_med:.4f} +- {want_sig:.4f}")
        check(abs(tru - t[tq][j]) <= half, f"report {ch} {name} {q}: truth {tru}, file {t[tq][j]}")
        if tested:
            n = int(conv.sum())
            tol = (0.1 + 4 * 1.2533 / np.sqrt(n)) * sig + half
            check(abs(med - tru) <= tol, f"report {ch} {name} {q}: median {med} against truth {tru} (<= {tol:.3g})")
check(seen == len(tested_lines), f"report: {seen} profile rows, {len(tested_lines)} lines in /profile")

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("all profile checks passed")
