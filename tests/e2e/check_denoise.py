"""The denoise stage against the simulator's truth, with h5py + numpy + scipy:
particle hits found, clean and line pixels left alone, the error to the truth
radiance lowered, bright lines' integrated brightness kept, and /denoised of
the contract. Runs the limb-scan and flyby presets, both channels, plus a
bright-line variant of the limb scan.

Criteria (issue 4):
- >= 95 % of injected hits standing above 5 sigma of the local noise flagged;
- < 0.1 % of clean pixels flagged; no pixel where a line contributes more than
  5 sigma of the pixel's noise flagged (unless a particle hit it);
- RMS over good, spike-free pixels of (radiance - truth) / sigma_true lowered
  by >= 40 % against the calibrated radiance;
- every bright line (integrated signal-to-noise > 30) keeps its integrated
  brightness (+-2 FWHM) within 0.5 % (mean over spectra of denoised against
  calibrated, relative to the truth).
"""
import os
import shutil
import subprocess
import sys
import tomllib

import h5py
import numpy as np
from scipy.special import erf

# Bounds from statistics (docs/TESTING.md). The documented values (docs/
# DENOISE.md's tables, which copy what this script prints, seed 11) are
# asserted within 4 standard errors of this sample:
# - a rate p of n (hits found, clean pixels flagged): the count k = p n within
#   4 sqrt(max(n p (1 - p), 1)) of the documented count (binomial; at least
#   one count, so a documented 100 % or 0 % allows 4 misses);
# - the RMS error's reduction at the precision docs/DENOISE.md quotes (0.5 %;
#   its standard error over ~800,000 pixels is below 0.1 %);
# - denoised pulls (mean, sd) within 4 SE for an effective sample of n / 41
#   pixels (neighbours are correlated over the chosen window, at most 41).
K = 4.0
DOC = {  # tag, channel: hits found, clean pixels flagged, RMS reduction, denoised pull mean, sd
    ("limb-scan", "euv"): (1.0000, 0.0007e-2, 0.581, -0.050, 1.159),
    ("limb-scan", "fuv"): (1.0000, 0.0015e-2, 0.615, -0.040, 1.132),
    ("flyby", "euv"): (1.0000, 0.0005e-2, 0.580, -0.053, 1.158),
    ("flyby", "fuv"): (1.0000, 0.0015e-2, 0.613, -0.044, 1.133),
    ("bright", "euv"): (0.9815, 0.0012e-2, 0.543, -0.075, 1.166),
    ("bright", "fuv"): (0.9767, 0.0025e-2, 0.558, -0.076, 1.183),
}
# Other methods on the limb scan: error reduction in calibrated sigma (EUV,
# FUV); and the Anscombe method's pulls (mean, sd; EUV, FUV).
DOC_METHODS = {"savgol": (0.502, 0.541), "lowpass": (0.200, 0.611), "wiener": (0.311, 0.643),
               "anscombe": (0.668, 0.691)}
DOC_ANSCOMBE_PULLS = {"euv": (-0.034, 0.892), "fuv": (-0.039, 0.901)}
table_hits, table_rms, table_methods = [], [], []


def count_ok(k, n, p_doc):
    e = p_doc * n
    return abs(k - e) <= K * np.sqrt(max(n * p_doc * (1 - p_doc), 1.0)), e


exe, work, source = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
catalogue = tomllib.load(open(os.path.join(source, "data", "lines.toml"), "rb"))
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def line_radiance(wl_coeffs, P, fwhm, components, brightness):
    """Pixel-integrated Gaussian line spread of unit area (R/nm per R), as
    shared/INSTRUMENT.md defines it, for each spectrum's brightness."""
    x = np.arange(P + 1) - 0.5
    edges = np.polyval(wl_coeffs[::-1], x)
    s = fwhm / (2 * np.sqrt(2 * np.log(2)))
    total = sum(c["ratio"] for c in components)
    prof = np.zeros(P)
    for c in components:
        cdf = 0.5 * (1 + erf((edges - c["wavelength_nm"]) / (s * np.sqrt(2))))
        prof += c["ratio"] / total * np.diff(cdf) / np.diff(edges)
    return brightness[:, None] * prof[None, :]


def evaluate(tag, inp, out):
    fi, fo = h5py.File(inp, "r"), h5py.File(out, "r")
    for ch in ["euv", "fuv"]:
        L = fo[f"calibrated/{ch}/radiance"][:].astype(float)
        V = fo[f"calibrated/{ch}/variance"][:].astype(float)
        Q = fo[f"calibrated/{ch}/quality"][:]
        D = fo[f"denoised/{ch}/radiance"][:].astype(float)
        DV = fo[f"denoised/{ch}/variance"][:].astype(float)
        check(D.dtype == np.float64 and fo[f"denoised/{ch}/radiance"].dtype == np.float32,
              f"{tag} {ch}: /denoised float32")
        check(fo[f"denoised/{ch}/variance"].attrs["units"] == "(R/nm)^2", f"{tag} {ch}: units")
        T = fi[f"truth/{ch}/radiance"][:]
        H = fi[f"truth/{ch}/particle_hit_counts"][:]
        C = fi[f"raw/{ch}/counts"][:].astype(float)
        cal = fi[f"calibration/{ch}"]
        t = fi[f"raw/{ch}/exposure_s"][:][:, None]
        Tm = fi[f"raw/{ch}/detector_temperature"][:].astype(float)[:, None]
        resp = cal["sensitivity"][:] * cal["flat"][:]
        dark = cal["dark_rate"][:] * (1 + cal.attrs["dark_temperature_coeff"] *
                                      (Tm - cal.attrs["dark_reference_temperature"]))
        g = 1 - (C - H).sum(1, keepdims=True) / t * cal.attrs["dead_time_s"]
        mu = (T * resp + dark) * t * g                      # true expected counts
        sig = np.sqrt(mu) / (t * g * resp)                  # true noise, R/nm
        bad = (cal["bad_pixel"][:] != 0)[None, :] | np.zeros(Q.shape, bool)
        flagged = (Q & 16) != 0
        # Hits.
        d_hits, d_fp, d_red, d_pm, d_ps = DOC[(tag, ch)]
        strong = (H > 0) & (H > 5 * np.sqrt(mu)) & ~bad
        frac = flagged[strong].mean()
        ok_k, e = count_ok(flagged[strong].sum(), strong.sum(), d_hits)
        check(strong.sum() > 100 and frac >= 0.95 and ok_k,
              f"{tag} {ch}: {frac:.2%} of {strong.sum()} hits above 5 sigma flagged (>= 95 %; documented "
              f"{d_hits:.2%}: {flagged[strong].sum()} against {e:.1f} +- 4 SE)")
        clean = ~bad & (H == 0)
        fp = flagged[clean].mean()
        ok_k, e = count_ok(flagged[clean].sum(), clean.sum(), d_fp)
        check(fp < 1e-3 and ok_k, f"{tag} {ch}: {fp:.4%} of clean pixels flagged (< 0.1 %; documented "
                                  f"{d_fp:.4%}: {flagged[clean].sum()} against {e:.1f} +- 4 SE)")
        # Line pixels: where some line contributes > 5 sigma.
        wl_coeffs = cal["wavelength_coeffs"][:]
        P = L.shape[1]
        fwhm = fi[f"truth/{ch}/lsf_fwhm_nm"][()]
        B = fi[f"truth/{ch}/line_brightness"][:]
        names = [n.decode() if isinstance(n, bytes) else n for n in fi[f"truth/{ch}/line_name"][:]]
        line_max = np.zeros_like(T)
        for j, name in enumerate(names):
            comps = next(l["components"] for l in catalogue[ch] if l["name"] == name)
            line_max = np.maximum(line_max, line_radiance(wl_coeffs, P, fwhm, comps, B[:, j]))
        line_pix = ~bad & (H == 0) & (line_max > 5 * sig)  # a hit on a line is a hit
        nl = int(flagged[line_pix].sum())
        check(nl == 0, f"{tag} {ch}: {nl} of {line_pix.sum()} line pixels (> 5 sigma) flagged (0)")
        table_hits.append((tag, ch, frac, fp, nl, int(line_pix.sum())))
        # Error to the truth.
        ev = clean & ~flagged
        rc = np.sqrt(np.mean(((L - T) / sig)[ev] ** 2))
        rd = np.sqrt(np.mean(((D - T) / sig)[ev] ** 2))
        check(rd <= 0.6 * rc and abs(1 - rd / rc - d_red) <= 0.005,
              f"{tag} {ch}: RMS error {rc:.3f} -> {rd:.3f} sigma ({1 - rd / rc:.1%} lower, >= 40 %; "
              f"documented {d_red:.1%} +- 0.5 %)")
        table_rms.append((tag, ch, rc, rd))
        # Bright lines' integrated brightness.
        wl = fo[f"calibrated/{ch}/wavelength_nm"][:]
        lw = fi[f"truth/{ch}/line_wavelength_nm"][:]
        dl = np.gradient(wl)
        for j, name in enumerate(names):
            sel = (np.abs(wl - lw[j]) < 2 * fwhm) & ~bad[0]
            Ls = np.sum((L * dl)[:, sel], 1)
            Ds = np.sum((D * dl)[:, sel], 1)
            Ts = np.sum((T * dl)[:, sel], 1)
            snr = np.median(B[:, j] / np.sqrt(np.sum((V * dl ** 2)[:, sel], 1)))
            if snr < 30:
                continue
            change = np.mean((Ds - Ls) / Ts)
            check(abs(change) < 5e-3, f"{tag} {ch}: {name} (S/N {snr:.0f}) integrated brightness "
                                      f"changed by {change:+.3%} (< 0.5 %)")
        pull = ((D - T) / np.sqrt(DV))[ev]
        n_eff = pull.size / 41.0
        se_m, se_s = pull.std() / np.sqrt(n_eff), pull.std() / np.sqrt(2 * n_eff)
        check(abs(pull.mean() - d_pm) <= K * se_m and abs(pull.std() - d_ps) <= K * se_s,
              f"{tag} {ch}: denoised pulls mean {pull.mean():+.3f} sd {pull.std():.3f} (documented {d_pm:+.3f} / "
              f"{d_ps:.3f} +- {K * se_m:.3f} / {K * se_s:.3f}; the diagonal variance of the chosen window, "
              f"docs/DENOISE.md)")


bright = os.path.join(work, "bright.toml")
with open(bright, "w") as fh:
    # Backgrounds that keep most lines bright at every altitude of the scan.
    for ch, name, bg in [("euv", "He I 58.433", 400), ("euv", "H I 102.572", 100),
                         ("euv", "O I 130.4", 300), ("fuv", "Mg I 285.213", 300),
                         ("fuv", "Mg II 279.553", 100), ("fuv", "C I 165.7", 150),
                         ("fuv", "Al I 308.22", 60), ("fuv", "S I 180.73", 30)]:
        fh.write(f'[exosphere.{ch}."{name}"]\nbackground_R = {bg}.0\n')
for tag, extra in [("limb-scan", []), ("flyby", ["--preset", "flyby"]),
                   ("bright", ["--config", bright])]:
    inp, out = os.path.join(work, tag + ".h5"), os.path.join(work, tag + "_out.h5")
    subprocess.run([exe, "simulate", "-o", inp, "--spectra", "400", "--seed", "11", "--quiet"]
                   + extra, check=True)
    subprocess.run([exe, "run", inp, "-o", out, "--stages", "calibrate,denoise", "--quiet"],
                   check=True)
    evaluate(tag, inp, out)

# Every other method runs and lowers the error on the limb scan; the adaptive
# default was held to the criteria above. (A fixed kernel, lowpass, broadens
# Lyman-alpha by many sigma: its EUV error falls least, as the issue predicts.)
inp = os.path.join(work, "limb-scan.h5")
for method, need in [("savgol", 0.4), ("lowpass", 0.15), ("wiener", 0.15), ("anscombe", 0.4)]:
    cfg = os.path.join(work, method + ".toml")
    with open(cfg, "w") as fh:
        fh.write(f'[denoise.euv]\nmethod = "{method}"\n[denoise.fuv]\nmethod = "{method}"\n')
    out = os.path.join(work, method + "_out.h5")
    subprocess.run([exe, "run", inp, "-o", out, "--config", cfg, "--quiet"], check=True)
    fi, fo = h5py.File(inp, "r"), h5py.File(out, "r")
    for ch in ["euv", "fuv"]:
        L = fo[f"calibrated/{ch}/radiance"][:].astype(float)
        D = fo[f"denoised/{ch}/radiance"][:].astype(float)
        DV = fo[f"denoised/{ch}/variance"][:].astype(float)
        Q = fo[f"calibrated/{ch}/quality"][:]
        T = fi[f"truth/{ch}/radiance"][:]
        V = fo[f"calibrated/{ch}/variance"][:].astype(float)
        ok = Q == 0
        check(np.all(np.isfinite(D[ok])) and np.all(DV[ok] > 0), f"{method} {ch}: finite output")
        rc = np.sqrt(np.mean((L - T)[ok] ** 2 / V[ok]))
        rd = np.sqrt(np.mean((D - T)[ok] ** 2 / V[ok]))
        d_red = DOC_METHODS[method][0 if ch == "euv" else 1]
        check(rd < (1 - need) * rc and abs(1 - rd / rc - d_red) <= 0.005,
              f"{method} {ch}: error {rc:.3f} -> {rd:.3f} (in calibrated sigma; > {need:.0%} lower; "
              f"documented {d_red:.1%} +- 0.5 %)")
        row = [method, ch, 1 - rd / rc]
        if method == "anscombe":
            # Its pulls against the delta-method variance (docs/DENOISE.md).
            pull = ((D - T) / np.sqrt(DV))[ok]
            n_eff = pull.size / 41.0
            se_m, se_s = pull.std() / np.sqrt(n_eff), pull.std() / np.sqrt(2 * n_eff)
            d_pm, d_ps = DOC_ANSCOMBE_PULLS[ch]
            check(abs(pull.mean() - d_pm) <= K * se_m and abs(pull.std() - d_ps) <= K * se_s,
                  f"anscombe {ch}: pulls mean {pull.mean():+.3f} sd {pull.std():.3f} (documented {d_pm} / {d_ps} "
                  f"+- {K * se_m:.3f} / {K * se_s:.3f})")
            row += [pull.mean(), pull.std()]
        table_methods.append(row)

print("table | data | channel | hits > 5 sigma flagged | clean pixels flagged | line pixels (> 5 sigma) flagged |")
for tag, ch, frac, fp, nl, nlp in table_hits:
    print(f"table | {tag} | {ch.upper()} | {frac:.2%} | {fp:.4%} | {nl} of {nlp} |")
print("table | data | channel | RMS error, calibrated -> denoised (true noise) |")
for tag, ch, rc, rd in table_rms:
    print(f"table | {tag} | {ch.upper()} | {rc:.2f} -> {rd:.2f} ({rd / rc - 1:+.1%}) |")
print("table | method | channel | error reduction (calibrated sigma) | pull mean | pull sd |")
for row in table_methods:
    extra = f" {row[3]:+.3f} | {row[4]:.3f} |" if len(row) > 3 else " | |"
    print(f"table | {row[0]} | {row[1].upper()} | {row[2]:.1%} |" + extra)

if failures:
    print(f"{len(failures)} failures")
    sys.exit(1)
print("denoise: hits, clean and line pixels, error and brightness as required")
