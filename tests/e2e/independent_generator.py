"""An exospec input file made WITHOUT exospec's simulator (numpy, scipy, h5py).

Everything here is written from shared/INSTRUMENT.md and shared/SCHEMA.md,
not from the project's code: its own wavelength solutions (quadratic, with a
curvature other than the simulator's), calibration tables (a parabolic
sensitivity, a flat field with a gradient and scatter, dark rates with hot and
dead pixels, some inside line windows), pixel-integrated Gaussian lines
(scipy.special.ndtr at the pixel edges; sigma = FWHM / (2 sqrt(2 ln 2))
computed here), a linear continuum, a temperature-dependent dark,
whole-detector non-paralyzable dead time and Poisson counts from numpy's
Generator. No particle hits. Line brightnesses are constant within a file.

The file holds the SCHEMA.md input objects only (/raw, /calibration,
/geometry, root attributes), with their dtypes, shapes, `units` and
`description`, per-spectrum arrays chunked in whole rows along N. The truth
(line brightness per line, FWHM, continuum) goes to a JSON file beside it:
/truth is written only by exospec's simulator (SCHEMA.md).

    generate(path, spectra, seed) -> truth dict   (also `python3 independent_generator.py OUT N SEED`)
"""
import datetime
import json
import math
import sys

import h5py
import numpy as np
from scipy.special import ndtr

P = 1024
EXPOSURE_S = 8.0
CADENCE_S = 10.0
DEAD_TIME_S = 0.5e-6
DARK_REF_C = 0.0
DARK_COEFF = 0.03          # 1/degC
SPECTRA_PER_SCAN = 50      # limb scans 0 -> 5000 km, then again
ROWS_PER_CHUNK = 256

# The catalogue's lines (shared/INSTRUMENT.md; the fit fits every one of
# them), with the constant brightness (R) each file gets. Multiplets: their
# components and intensity ratios; brightness summed over components.
CHANNELS = {
    "euv": dict(
        band=(55.0, 155.0), curvature=0.015, fwhm=1.0, sensitivity_peak=0.2,
        continuum=0.2, continuum_slope=0.0, flat_gradient=0.04,
        lines=[
            ("He I 58.433", [(58.433, 1.0)], 0.0),
            ("H I 102.572", [(102.572, 1.0)], 20.0),
            ("H I 121.567", [(121.567, 1.0)], 300.0),
            ("O I 130.4", [(130.217, 5.0), (130.486, 3.0), (130.603, 1.0)], 2.0),
        ],
        # Bad pixels placed inside line windows (hot, dead), wavelengths in nm.
        hot_at=[102.572 + 1.3], dead_at=[121.567 - 2.1]),
    "fuv": dict(
        band=(145.0, 315.0), curvature=0.025, fwhm=1.5, sensitivity_peak=0.3,
        continuum=0.3, continuum_slope=0.0, flat_gradient=-0.03,
        lines=[
            ("C I 156.1", [(156.1, 1.0)], 5.0),
            ("C I 165.7", [(165.7, 1.0)], 0.0),
            ("S I 180.73", [(180.73, 1.0)], 1.0),
            ("S I 182.62", [(182.62, 1.0)], 5.0),
            ("Mg II 279.553", [(279.553, 2.0), (280.271, 1.0)], 5.0),
            ("Mg I 285.213", [(285.213, 1.0)], 1.0),
            ("Al I 308.22", [(308.22, 1.0)], 0.0),
            ("Al I 309.28", [(309.28, 1.0)], 1.0),
        ],
        hot_at=[165.7 + 2.0], dead_at=[182.62 + 1.1]),
}


def wavelength_coeffs(band, curvature):
    """lambda(p) = c0 + c1 p + c2 p^2 with lambda(0), lambda(P-1) at the band's
    ends and a quadratic term of `curvature` x span at the last pixel."""
    lo, hi = band
    last = P - 1.0
    c2 = curvature * (hi - lo) / last**2
    c1 = (hi - lo - c2 * last**2) / last
    return np.array([lo, c1, c2])


def line_profile(edges, components, fwhm):
    """Radiance (R/nm) per pixel of a 1 R line: the unit-area Gaussian
    averaged over each pixel's wavelength interval, components split by
    their ratios."""
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    total = sum(r for _, r in components)
    out = np.zeros(len(edges) - 1)
    for wl, ratio in components:
        # Mass between the edges: ndtr on the side of the tail, so far
        # wings keep their precision (ndtr(-x) is the upper tail).
        x = (edges - wl) / sigma
        lower = ndtr(x)
        upper = ndtr(-x)
        mass = np.where(x[:-1] >= 0.0, upper[:-1] - upper[1:], lower[1:] - lower[:-1])
        out += ratio / total * mass / np.diff(edges)
    return out


def j2000_seconds(when):
    epoch = datetime.datetime(2000, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
    return (when - epoch).total_seconds()


def _dataset(f, path, data, units, description, chunk_rows=None, compress=False):
    kw = {}
    if chunk_rows is not None:
        kw["chunks"] = (min(chunk_rows, data.shape[0]),) + data.shape[1:]
        if compress:
            kw.update(compression="gzip", compression_opts=1, shuffle=True)
    d = f.create_dataset(path, data=data, **kw)
    d.attrs["units"] = units
    d.attrs["description"] = description
    return d


def generate(path, spectra, seed):
    N = int(spectra)
    rng = np.random.Generator(np.random.PCG64(seed))
    t0 = j2000_seconds(datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc))
    time = t0 + np.arange(N) * CADENCE_S + 0.5 * EXPOSURE_S
    frac = (np.arange(N) % SPECTRA_PER_SCAN) / (SPECTRA_PER_SCAN - 1.0)
    altitude = 5000.0 * frac
    truth = {"spectra": N, "seed": seed, "channels": {}}
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "exospec"
        f.attrs["schema_version"] = np.int32(1)
        f.attrs["generator"] = "tests/e2e/independent_generator.py"
        _dataset(f, "/geometry/time", time, "s",
                 "mid-exposure time, seconds since 2000-01-01T12:00:00 UTC (J2000)", ROWS_PER_CHUNK)
        _dataset(f, "/geometry/tangent_altitude_km", altitude, "km",
                 "minimum altitude of the line of sight above the surface", ROWS_PER_CHUNK)
        for ch, spec in CHANNELS.items():
            coeffs = wavelength_coeffs(spec["band"], spec["curvature"])
            x = np.arange(P + 1) - 0.5
            edges = coeffs[0] + coeffs[1] * x + coeffs[2] * x * x
            centres = 0.5 * (edges[1:] + edges[:-1])
            u = (np.arange(P) - 0.5 * (P - 1)) / (0.5 * (P - 1))
            sensitivity = spec["sensitivity_peak"] * (0.1 + 0.9 * (1.0 - u * u))
            flat = (1.0 + 0.5 * spec["flat_gradient"] * u) * (1.0 + 0.03 * rng.standard_normal(P))
            flat = np.maximum(flat, 0.5)
            flat /= flat.mean()
            dark = np.maximum(0.02 + 0.005 * rng.standard_normal(P), 0.0)
            bad = np.zeros(P, np.uint8)
            dead = np.zeros(P, bool)
            for wl in spec["hot_at"]:
                p = int(np.argmin(np.abs(centres - wl)))
                bad[p] = 1
                dark[p] = 12.0
            for wl in spec["dead_at"]:
                p = int(np.argmin(np.abs(centres - wl)))
                bad[p] = 1
                dead[p] = True
            # A few more hot and dead pixels anywhere.
            for p in rng.choice(P, 4, replace=False):
                bad[p] = 1
                if p % 2:
                    dark[p] = rng.uniform(2.0, 20.0)
                else:
                    dead[p] = True
            mid = 0.5 * sum(spec["band"])
            radiance = np.maximum(spec["continuum"] + spec["continuum_slope"] * (centres - mid), 0.0)
            names, wls, brightness = [], [], []
            for name, comps, b in spec["lines"]:
                radiance = radiance + b * line_profile(edges, comps, spec["fwhm"])
                names.append(name)
                wls.append(max(comps, key=lambda c: c[1])[0])
                brightness.append(b)
            response = np.where(dead, 0.0, sensitivity * flat)
            dark_live = np.where(dead, 0.0, dark)
            temperature = (5.0 + 3.0 * np.sin(2.0 * np.pi * time / 6000.0)
                           + 0.1 * rng.standard_normal(N)).astype(np.float32)
            exposure = np.full(N, EXPOSURE_S)
            g = f.create_group(f"/raw/{ch}")
            counts_ds = g.create_dataset("counts", shape=(N, P), dtype="<u4",
                                         chunks=(min(ROWS_PER_CHUNK, N), P), compression="gzip",
                                         compression_opts=1, shuffle=True)
            counts_ds.attrs["units"] = "count"
            counts_ds.attrs["description"] = "photon counts per pixel, as telemetered"
            for r0 in range(0, N, 2048):
                r1 = min(N, r0 + 2048)
                dark_scale = 1.0 + DARK_COEFF * (temperature[r0:r1].astype(np.float64) - DARK_REF_C)
                rate = radiance[None, :] * response[None, :] + dark_live[None, :] * dark_scale[:, None]
                total = rate.sum(axis=1)
                expected = rate * (exposure[r0:r1] / (1.0 + DEAD_TIME_S * total))[:, None]
                counts_ds[r0:r1] = rng.poisson(expected).astype(np.uint32)
            _dataset(f, f"/raw/{ch}/exposure_s", exposure, "s", "integration time of each spectrum",
                     ROWS_PER_CHUNK)
            _dataset(f, f"/raw/{ch}/detector_temperature", temperature, "degC",
                     "detector temperature during the acquisition", ROWS_PER_CHUNK)
            cal = f.create_group(f"/calibration/{ch}")
            _dataset(f, f"/calibration/{ch}/wavelength_coeffs", coeffs, "nm",
                     "lambda(p) = sum_k c_k p^k, p = pixel index 0..P-1")
            _dataset(f, f"/calibration/{ch}/dark_rate", dark, "count/s",
                     "dark rate per pixel at the reference temperature")
            _dataset(f, f"/calibration/{ch}/flat", flat, "1", "relative pixel response (mean 1)")
            _dataset(f, f"/calibration/{ch}/sensitivity", sensitivity, "count/s/(R/nm)",
                     "counts per second per unit spectral radiance, flat excluded")
            _dataset(f, f"/calibration/{ch}/bad_pixel", bad, "1", "1 = pixel unusable (dead or hot)")
            cal.attrs["dead_time_s"] = np.float64(DEAD_TIME_S)
            cal.attrs["dark_reference_temperature"] = np.float64(DARK_REF_C)
            cal.attrs["dark_temperature_coeff"] = np.float64(DARK_COEFF)
            truth["channels"][ch] = dict(
                line_name=names, line_wavelength_nm=wls, line_brightness=brightness,
                lsf_fwhm_nm=spec["fwhm"], continuum=spec["continuum"],
                bad_pixels=[int(p) for p in np.flatnonzero(bad)])
    with open(path + ".truth.json", "w") as fh:
        json.dump(truth, fh, indent=1)
    return truth


if __name__ == "__main__":
    generate(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
