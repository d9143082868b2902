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
        strong = (H > 0) & (H > 5 * np.sqrt(mu)) & ~bad
        frac = flagged[strong].mean()
        check(strong.sum() > 100 and frac >= 0.95,
              f"{tag} {ch}: {frac:.2%} of {strong.sum()} hits above 5 sigma flagged (>= 95 %)")
        clean = ~bad & (H == 0)
        fp = flagged[clean].mean()
        check(fp < 1e-3, f"{tag} {ch}: {fp:.4%} of clean pixels flagged (< 0.1 %)")
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
        # Error to the truth.
        ev = clean & ~flagged
        rc = np.sqrt(np.mean(((L - T) / sig)[ev] ** 2))
        rd = np.sqrt(np.mean(((D - T) / sig)[ev] ** 2))
        check(rd <= 0.6 * rc, f"{tag} {ch}: RMS error {rc:.3f} -> {rd:.3f} sigma "
                              f"({1 - rd / rc:.1%} lower, >= 40 %)")
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
        print(f"     {tag} {ch}: denoised pulls mean {pull.mean():+.3f} sd {pull.std():.3f} "
              f"(diagonal variance of the chosen window; see docs/DENOISE.md)")


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
        check(rd < (1 - need) * rc, f"{method} {ch}: error {rc:.3f} -> {rd:.3f} "
                                    f"(in calibrated sigma; > {need:.0%} lower)")

if failures:
    print(f"{len(failures)} failures")
    sys.exit(1)
print("denoise: hits, clean and line pixels, error and brightness as required")
