"""The whole pipeline the numpy/scipy way, on the same file as `exospec run`,
in one run: wall time of both, the ratio, and how far the fitted brightness
of the two agree.

The numpy version does what a careful analyst would write by hand, as
vectorised as numpy allows:
- calibrate: dead time, dark (temperature-scaled), flat and sensitivity on the
  whole (N, P) array; the Poisson variance from the counts themselves;
  particle hits flagged 5 sigma above a 7-pixel running median
  (scipy.ndimage.median_filter);
- denoise: scipy.signal.savgol_filter (window 9, order 2) along the rows, bad
  pixels filled by linear interpolation first (exospec's default is an
  adaptive Savitzky-Golay with spike removal: more work than this);
- fit: the same windows, pixel-integrated Gaussian line spread (erf at the
  pixel edges), linear background, multiplets tied, flagged pixels at zero
  weight; brightness and background by batched weighted least squares
  (numpy.linalg.solve over all spectra at once) with two Poisson refits of
  the weights from the model, as exospec does; where a window's brightest line
  reaches S/N 20 (Lyman-alpha in the EUV), scipy.optimize.curve_fit with a
  free shift, and the other windows of that spectrum solved again at that
  shift (exospec's default tied mode).

  /usr/bin/python3 bench/compare_e2e_numpy.py [build/cli/exospec] [spectra]
"""
import os
import platform
import subprocess
import sys
import tempfile
import time
import tomllib

import h5py
import numpy as np
import scipy
import scipy.ndimage
import scipy.signal
from scipy.optimize import curve_fit
from scipy.special import erf

exe = sys.argv[1] if len(sys.argv) > 1 else os.path.join("build", "cli", "exospec")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
work = tempfile.mkdtemp(prefix="exospec_np_")
inp, out = os.path.join(work, "in.h5"), os.path.join(work, "out.h5")
subprocess.run([exe, "simulate", "-o", inp, "--spectra", str(N), "--seed", "3", "--quiet"], check=True)

t0 = time.perf_counter()
subprocess.run([exe, "run", inp, "-o", out, "--products", "fit", "--threads", "1", "--quiet"], check=True)
t_exospec = time.perf_counter() - t0

with open(os.path.join(root, "data", "lines.toml"), "rb") as fh:
    catalogue = tomllib.load(fh)
with open(os.path.join(root, "data", "run.toml"), "rb") as fh:
    run_cfg = tomllib.load(fh)


def windows(lines, fwhm):
    """Lines grouped as exospec groups them: closer than 4 FWHM share a window."""
    spans = sorted((min(c["wavelength_nm"] for c in l["components"]),
                    max(c["wavelength_nm"] for c in l["components"]), j) for j, l in enumerate(lines))
    groups, hi = [], -np.inf
    for lo_j, hi_j, j in spans:
        if not groups or lo_j - hi > 4.0 * fwhm:
            groups.append([])
            hi = hi_j
        groups[-1].append(j)
        hi = max(hi, hi_j)
    return groups


def profiles(edges, comps, shift, sigma):
    """Pixel-integrated unit profile of one (multiplet) line: (n,)."""
    total = sum(c["ratio"] for c in comps)
    prof = 0.0
    for c in comps:
        z = (edges - c["wavelength_nm"] - shift) / (sigma * np.sqrt(2.0))
        prof = prof + c["ratio"] / total * np.diff(0.5 * erf(z))
    return prof / np.diff(edges)


t0 = time.perf_counter()
fi = h5py.File(inp, "r")
results = {}
for ch in ["euv", "fuv"]:
    cal = fi[f"calibration/{ch}"]
    c = fi[f"raw/{ch}/counts"][:].astype(np.float64)
    t = fi[f"raw/{ch}/exposure_s"][:][:, None]
    T = fi[f"raw/{ch}/detector_temperature"][:].astype(np.float64)[:, None]
    tau = cal.attrs["dead_time_s"]
    resp = cal["sensitivity"][:] * cal["flat"][:]
    bad = cal["bad_pixel"][:] != 0
    dark = cal["dark_rate"][:] * (1 + cal.attrs["dark_temperature_coeff"] *
                                  (T - cal.attrs["dark_reference_temperature"]))
    g = 1 - c.sum(axis=1, keepdims=True) / t * tau
    scale = np.where(bad, 0.0, t * g * resp)           # counts per R/nm
    offset = dark * t * g                              # dark counts
    with np.errstate(divide="ignore", invalid="ignore"):
        L = (c - offset) / scale
        V = np.maximum(c, 1.0) / scale**2
    P = L.shape[1]
    # Particle hits: counts more than 5 sigma above a 7-pixel running median
    # of the row (and their neighbours) get no weight in the fit.
    med = scipy.ndimage.median_filter(c, size=(1, 7), mode="nearest")
    hit = (c - med) > 5 * np.sqrt(med + 1.0)
    hit |= np.roll(hit, 1, axis=1) | np.roll(hit, -1, axis=1)
    # Denoise (not used by the fit, as in exospec): fill bad pixels, smooth.
    x = np.arange(P)
    Lf = L.copy()
    Lf[:, bad] = np.array([np.interp(x[bad], x[~bad], row[~bad]) for row in L]) if bad.any() else 0
    scipy.signal.savgol_filter(Lf, 9, 2, axis=1)
    # Fit.
    coeffs = cal["wavelength_coeffs"][:]
    wl = np.polynomial.polynomial.polyval(x, coeffs)
    edges = np.polynomial.polynomial.polyval(np.arange(P + 1) - 0.5, coeffs)
    fwhm = run_cfg["instrument"][ch]["lsf_fwhm_nm"]
    sigma = fwhm / 2.3548200450309493
    lines = catalogue[ch]
    B = np.full((N, len(lines)), np.nan)
    S = np.full((N, len(lines)), np.nan)
    bright_shift = np.full(N, np.nan)
    plan = []
    for grp in windows(lines, fwhm):
        lo = min(c["wavelength_nm"] for j in grp for c in lines[j]["components"]) - 3 * fwhm
        hi = max(c["wavelength_nm"] for j in grp for c in lines[j]["components"]) + 3 * fwhm
        sel = np.flatnonzero((wl >= lo) & (wl <= hi))
        e = edges[sel[0]: sel[-1] + 2]
        xb = (wl[sel] - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
        plan.append((grp, sel, e, xb))

    def solve(A, w, y, s, o, nl, refits=2):
        """Batched WLS with Poisson refits; A (n,k) or (N,n,k); nl line columns."""
        for it in range(refits + 1):
            AtW = np.einsum("...na,in->ian", A, w) if A.ndim == 2 else np.einsum("ina,in->ian", A, w)
            M = np.einsum("ian,...nb->iab", AtW, A) if A.ndim == 2 else np.einsum("ian,inb->iab", AtW, A)
            beta = np.linalg.solve(M, np.einsum("ian,in->ia", AtW, y))
            if it < refits:
                model = np.einsum("...na,ia->in", A, beta) if A.ndim == 2 else np.einsum("ina,ia->in", A, beta)
                prof = A[:, :nl] if A.ndim == 2 else A[:, :, :nl]
                counts = np.einsum("...na,in->ia", prof, s * (w > 0)) if A.ndim == 2 else \
                    np.einsum("ina,in->ia", prof, s * (w > 0))
                prior = np.einsum("...na,ia->in", prof, 1.0 / np.maximum(counts, 1e-300)) if A.ndim == 2 else \
                    np.einsum("ina,ia->in", prof, 1.0 / np.maximum(counts, 1e-300))
                mu = np.maximum((model + prior) * s + o, 0.1)
                w = np.where(w > 0, s**2 / mu, 0.0)
        cov = np.linalg.inv(M)
        return beta, np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0)), w

    for grp, sel, e, xb in plan:
        A = np.column_stack([profiles(e, lines[j]["components"], 0.0, sigma) for j in grp] +
                            [np.ones_like(xb), xb])
        y, v = L[:, sel], V[:, sel]
        ok = np.isfinite(y) & np.isfinite(v) & ~bad[sel] & ~hit[:, sel]
        w = np.where(ok, 1.0 / np.where(ok, v, 1.0), 0.0)
        y = np.where(ok, y, 0.0)
        beta, sig, w_final = solve(A, w, y, scale[:, sel], offset[:, sel], len(grp))
        B[:, grp], S[:, grp] = beta[:, :len(grp)], sig[:, :len(grp)]
        # Bright windows: curve_fit with a free shift, spectrum by spectrum.
        snr = np.max(beta[:, :len(grp)] / sig[:, :len(grp)], axis=1)
        for i in np.flatnonzero(snr >= 20):
            good = w_final[i] > 0

            def model(_, *p, e=e, xb=xb, grp=grp, good=good):
                prof = np.array([profiles(e, lines[j]["components"], p[-1], sigma) for j in grp])
                return (np.array(p[:len(grp)]) @ prof + p[len(grp)] + p[len(grp) + 1] * xb)[good]
            p, pc = curve_fit(model, xb[good], y[i, good], p0=list(beta[i]) + [0.0],
                              sigma=1 / np.sqrt(w_final[i, good]), absolute_sigma=True)
            B[i, grp], S[i, grp] = p[:len(grp)], np.sqrt(np.diag(pc))[:len(grp)]
            bright_shift[i] = p[-1]
    # Tied: the other windows of spectra with a measured shift, at that shift.
    for grp, sel, e, xb in plan:
        rows = np.flatnonzero(np.isfinite(bright_shift))
        if not len(rows):
            continue
        A = np.stack([np.column_stack([profiles(e, lines[j]["components"], bright_shift[i], sigma)
                                       for j in grp] + [np.ones_like(xb), xb]) for i in rows])
        y, v = L[rows][:, sel], V[rows][:, sel]
        ok = np.isfinite(y) & np.isfinite(v) & ~bad[sel] & ~hit[rows][:, sel]
        w = np.where(ok, 1.0 / np.where(ok, v, 1.0), 0.0)
        beta, sig, _ = solve(A, w, np.where(ok, y, 0.0), scale[rows][:, sel], offset[rows][:, sel],
                             len(grp))
        snr_rows = np.max(B[rows][:, grp] / S[rows][:, grp], axis=1)
        keep = snr_rows < 20  # the bright window keeps its own nonlinear fit
        idx = rows[keep]
        B[np.ix_(idx, grp)], S[np.ix_(idx, grp)] = beta[keep, :len(grp)], sig[keep, :len(grp)]
    results[ch] = (B, S)
t_numpy = time.perf_counter() - t0

fo = h5py.File(out, "r")
print(f"# exospec run vs numpy/scipy (numpy {np.__version__}, scipy {scipy.__version__}), "
      f"{N} limb-scan spectra x 2 channels, one core, {platform.node()}, {time.strftime('%Y-%m-%d')}")
print(f"exospec run --threads 1 --products fit: {t_exospec:.2f} s ({N / t_exospec:.0f} spectra/s, "
      "including process start, input hash and HDF5 I/O)")
print(f"numpy/scipy:                            {t_numpy:.2f} s ({N / t_numpy:.0f} spectra/s, "
      "excluding the HDF5 read)")
print(f"ratio: {t_numpy / t_exospec:.1f}x")
T = {ch: fi[f"truth/{ch}/line_brightness"][:] for ch in ["euv", "fuv"]}
for ch in ["euv", "fuv"]:
    names = [n.decode() if isinstance(n, bytes) else n for n in fo[f"fit/{ch}/line_name"][:]]
    Be, Se = fo[f"fit/{ch}/brightness"][:], fo[f"fit/{ch}/brightness_sigma"][:]
    Bn, Sn = results[ch]
    for j, name in enumerate(names):
        d = (Bn[:, j] - Be[:, j]) / Se[:, j]
        pe = (Be[:, j] - T[ch][:, j]) / Se[:, j]
        pn = (Bn[:, j] - T[ch][:, j]) / Sn[:, j]
        print(f"  {ch} {name:<14} numpy - exospec: median {np.nanmedian(d):+.3f} sigma, "
              f"90% within {np.nanpercentile(np.abs(d), 90):.2f} sigma | pull sd exospec {np.nanstd(pe):.3f}, "
              f"numpy {np.nanstd(pn):.3f}")
