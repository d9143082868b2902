#!/usr/bin/python3
"""Compares estimates of the expected counts behind the calibrated variance
(docs/CALIBRATION.md, "Limit"; issue 21 point 4), on a simulated file and its
`exospec run` output:

    /usr/bin/python3 scripts/variance_estimators.py out/default_scan.h5 out/default_scan_out.h5

For each estimate Lhat of a pixel's radiance that leaves the pixel itself out,
the variance is the calibrate kernel's formula (floor 0.1 counts, dead time
included) and the pull (radiance - truth) / sqrt(variance) is taken over good
pixels without particle hits, 5 pixels in from each detector edge (the narrow
estimate below does not handle the edges). It was the prototype of the
design that the calibrate kernel now implements (the row "the wide mean, or
the pooled quadratic ..." is the kernel's estimate, in numpy, with the
stored radiance after despike and the scans of the output's /profile group);
it also prints the run's stored variance beside it, and that variance's
pulls by true expected counts.
"""
import sys

import h5py
import numpy as np


def scans_of(fout, rows):
    """Each spectrum's scan, as the run's profile stage found it
    (/profile/<ch>/scan_first and scan_count: the pipeline's own scans)."""
    ch = next(c for c in ("euv", "fuv") if f"profile/{c}/scan_first" in fout)
    scan = np.full(rows, -1)
    for s, (first, count) in enumerate(zip(fout[f"profile/{ch}/scan_first"][:], fout[f"profile/{ch}/scan_count"][:])):
        scan[first:first + count] = s
    return scan


def box(a, h, axis):
    """Sum over +-h along axis, truncated at the ends."""
    pad = [(1, 0) if ax == axis else (0, 0) for ax in range(a.ndim)]
    c = np.cumsum(np.pad(a, pad), axis=axis)
    n = a.shape[axis]
    i = np.arange(n)
    return np.take(c, np.clip(i + h + 1, 0, n), axis=axis) - np.take(c, np.clip(i - h, 0, n), axis=axis)


def by_scan(a, h, scan):
    out = np.zeros_like(a)
    for s in np.unique(scan):
        idx = np.where(scan == s)[0]
        out[idx] = box(a[idx], h, 0)
    return out


def loo_quadratic_weights(h):
    xs = np.array([x for x in range(-h, h + 1) if x != 0], float)
    a = np.vander(xs, 3, increasing=True)
    return np.insert(np.linalg.solve(a.T @ a, a.T)[0], h, 0.0)


def main(raw_path, out_path):
    fin, fout = h5py.File(raw_path, "r"), h5py.File(out_path, "r")
    if "profile" not in fout:
        sys.exit(f"variance_estimators.py: {out_path}: no /profile group (run with the default products)")
    scan = scans_of(fout, len(fin["/geometry/tangent_altitude_km"]))
    print("| estimate of Lhat | channel | mean | sd |\n|---|---|---|---|")
    bands = []
    for ch in ("euv", "fuv"):
        cal = fin[f"/calibration/{ch}"]
        S = cal["sensitivity"][:] * cal["flat"][:]
        D = cal["dark_rate"][:]
        tau, tref, k = (cal.attrs[a] for a in ("dead_time_s", "dark_reference_temperature", "dark_temperature_coeff"))
        C = fin[f"/raw/{ch}/counts"][:].astype(float)
        t = fin[f"/raw/{ch}/exposure_s"][:]
        T = fin[f"/raw/{ch}/detector_temperature"][:]
        M = C.sum(1)
        tg = (t * (1 - tau * M / t))[:, None]
        ds = (1 + k * (T - tref))[:, None]
        L = fout[f"/calibrated/{ch}/radiance"][:].astype(float)
        Q = fout[f"/calibrated/{ch}/quality"][:]
        truth = fin[f"/truth/{ch}/radiance"][:]
        hits = fin[f"/truth/{ch}/particle_hit_counts"][:]
        good = (Q == 0) & (hits == 0)
        good[:, :5] = good[:, -5:] = False

        def variance(lhat):
            mu = np.maximum((np.maximum(lhat, 0) + ds * D / S) * S * tg, 0.1)
            a = 1 / tg
            beta = tau * a
            return (a / S) ** 2 * mu * ((1 + beta * mu) ** 2 + beta ** 2 * mu * np.maximum(M[:, None] - mu, 0))

        use = np.isfinite(L)
        Lz, u = np.where(use, L, 0.0), use.astype(float)

        def wide(hp, hs):  # leave-one-out mean over +-hp pixels x +-hs spectra of the scan
            s = by_scan(box(Lz, hp, 1), hs, scan)
            n = by_scan(box(u, hp, 1), hs, scan)
            return (s - Lz) / np.maximum(n - u, 1)

        def narrow(h, hs):  # leave-one-out quadratic over +-h pixels of the +-hs spectra's mean
            cm = by_scan(Lz, hs, scan) / by_scan(np.ones_like(Lz), hs, scan)
            out = np.zeros_like(cm)
            for j, w in enumerate(loo_quadratic_weights(h)):
                if w:
                    out += w * np.roll(cm, h - j, axis=1)
            return out

        W, N1, N5 = wide(10, 2), narrow(4, 0), narrow(4, 2)
        mu_w = np.maximum((np.maximum(W, 0) + ds * D / S) * S * tg, 0.1)
        sd_n = np.sqrt(np.sum(loo_quadratic_weights(4) ** 2) / 5 * mu_w) / (S * tg)
        rows = [
            ("leave-one-out quadratic, +-4 pixels (before issue 21)", N1),
            ("leave-one-out mean, +-10 pixels", wide(10, 0)),
            ("leave-one-out mean, +-10 pixels x +-2 spectra", W),
            ("quadratic, +-4 pixels, on the +-2 spectra's mean", N5),
            ("the wide mean, or the pooled quadratic where they differ by > 3 sigma",
             np.where(np.abs(N5 - W) > 3 * sd_n, N5, W)),
            ("the truth", truth),
        ]
        for name, lhat in rows:
            z = ((L - truth) / np.sqrt(variance(lhat)))[good]
            print(f"| {name} | {ch.upper()} | {z.mean():+.4f} | {z.std():.3f} |")
        stored = fout[f"/calibrated/{ch}/variance"][:].astype(float)
        z = ((L - truth) / np.sqrt(stored))[good]
        print(f"| the run's stored variance | {ch.upper()} | {z.mean():+.4f} | {z.std():.3f} |")
        bands.append((ch, ((L - truth) / np.sqrt(stored)), mu_true(truth, ds, D, S, tg), good))
    print("\nThe stored variance's pulls by true expected counts (all good pixels without hits):\n")
    edges = [0, 0.5, 2, 10, 100, 1e3, np.inf]
    print("| channel | " + " | ".join(f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])) + " |")
    print("|---|" + "---|" * (len(edges) - 1))
    for ch, z, mu, good in bands:
        cells = []
        for a, b in zip(edges[:-1], edges[1:]):
            sel = good & (mu >= a) & (mu < b)
            cells.append(f"{z[sel].mean():+.3f} / {z[sel].std():.3f} ({sel.sum()})" if sel.sum() > 100 else "-")
        print(f"| {ch.upper()} | " + " | ".join(cells) + " |")


def mu_true(truth, ds, D, S, tg):
    return (np.maximum(truth, 0) + ds * D / S) * S * tg


if __name__ == "__main__":
    main(*sys.argv[1:3])
