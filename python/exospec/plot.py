"""Quick-look plots of exospec outputs: one spectrum with its fit, an overview image, one limb profile.

Each function reads an output of ``exospec run`` (``shared/SCHEMA.md``) with h5py, read-only, draws with
matplotlib's object API (:class:`matplotlib.figure.Figure`; no pyplot state, so it works without a display)
and returns the Figure; given ``path`` it also saves it there (PNG unless the extension says ``.pdf``,
``.svg``, ...; the pixel size of a PNG is ``figsize x dpi``).

    >>> from exospec import plot
    >>> plot.spectrum("out.h5", row=0, channel="fuv", path="spectrum.png")
    >>> plot.overview("out.h5", channel="fuv", path="overview.png")
    >>> plot.profile("out.h5", channel="fuv", scan=0, path="profile.png")

From the command line: ``python3 -m exospec plot spectrum|overview|profile OUTPUT [-o FILE] ...``
(:func:`main`).

Units: wavelength in nm, spectral radiance in R/nm, line brightness in rayleighs (R), tangent altitude in
km, exospheric temperature in K.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import tomllib
from typing import Optional, Sequence, Union

import h5py
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import blended_transform_factory

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["spectrum", "overview", "profile", "main"]

#: Default figure size (inches) and resolution (dots per inch) of every figure.
FIGSIZE = (10.0, 6.0)
DPI = 120

_J2000 = datetime.datetime(2000, 1, 1, 12, 0, 0)

_FIT_STATUS = {0: "converged", 1: "max. iterations", 2: "stalled", 3: "singular",
               4: "too few good pixels", 5: "invalid spectrum", 6: "model not finite"}
_PROFILE_STATUS = {0: "converged", 1: "not detected", 2: "T at bound", 3: "too few spectra",
                   4: "no altitude range", 5: "singular", 6: "unknown mass"}

# Colours (colour-blind safe, Okabe-Ito).
_C_DATA = "#000000"
_C_SIGMA = "#999999"
_C_DENOISED = "#0072B2"
_C_MODEL = "#D55E00"
_C_FLAG = "#CC79A7"
_C_WINDOW = "#E69F00"


# --------------------------------------------------------------------------------------------- helpers

def _open(output: PathLike) -> h5py.File:
    """The output file, opened read-only (FileNotFoundError if it does not exist)."""
    p = os.fspath(output)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{p}: no such file")
    try:
        return h5py.File(p, "r")
    except OSError as e:
        raise OSError(f"{p}: not a readable HDF5 file ({e})") from None


def _group(f: h5py.File, name: str, channel: str) -> h5py.Group:
    """f[name/channel], or a ValueError naming the channel (and the ones there are) or the missing group."""
    if name not in f:
        raise ValueError(f"{f.filename}: no /{name} group (was the '{name}' stage run?)")
    g = f[name]
    if channel not in g:
        have = ", ".join(sorted(g.keys())) or "none"
        raise ValueError(f"{f.filename}: channel '{channel}' is not in /{name} (channels there: {have})")
    return g[channel]


def _names(ds) -> list:
    """A string dataset as a list of str."""
    return [s.decode() if isinstance(s, bytes) else str(s) for s in ds[...]]


def _attr_str(f: h5py.File, key: str) -> Optional[str]:
    v = f.attrs.get(key)
    if v is None:
        return None
    return v.decode() if isinstance(v, bytes) else str(v)


def _fit_config(f: h5py.File, channel: str) -> dict:
    """The run's [fit.<channel>] table (empty when the output has no configuration attribute)."""
    text = _attr_str(f, "config")
    if not text:
        return {}
    return tomllib.loads(text).get("fit", {}).get(channel, {})


def _check_index(value: int, n: int, what: str, where: str) -> int:
    """value as an int in 0..n-1, else IndexError giving the valid range (TypeError if not an integer)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}")
    if not 0 <= value < n:
        raise IndexError(f"{where}: {what} {value} is out of range (valid: 0..{n - 1})" if n
                         else f"{where}: {what} {value} is out of range (there are none)")
    return int(value)


def _basename(f: h5py.File) -> str:
    return os.path.basename(f.filename)


def _utc(t: float) -> str:
    """Seconds since J2000 as an ISO UTC time (leap seconds ignored), or '' when not finite."""
    if not np.isfinite(t):
        return ""
    return (_J2000 + datetime.timedelta(seconds=float(t))).strftime("%Y-%m-%d %H:%M:%S UTC")


def _save(fig: Figure, path: Optional[PathLike]) -> Figure:
    """Saves fig at path (format from the extension, PNG without one) at the figure's dpi."""
    if path is not None:
        p = os.fspath(path)
        ext = os.path.splitext(p)[1].lower().lstrip(".")
        fig.savefig(p, format=ext or "png", dpi=fig.dpi)
    return fig


def _spread(x: Sequence[float], gap: float, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """Label positions near x (same order) at least gap apart within [lo, hi] (all in axes fraction).

    Clusters of labels closer than gap are spread symmetrically about their mean; repeated until none
    overlap.
    """
    x = np.asarray(x, float)
    if x.size == 0:
        return x
    order = np.argsort(x)
    xs = x[order]
    groups = [[v] for v in xs]        # each group: positions of labels packed gap apart
    starts = list(xs)
    merged = True
    while merged:
        merged = False
        i = 0
        while i < len(groups) - 1:
            end_i = starts[i] + gap * (len(groups[i]) - 1)
            if starts[i + 1] - end_i < gap:
                members = groups[i] + groups[i + 1]
                centre = float(np.mean(members))
                groups[i] = members
                starts[i] = centre - gap * (len(members) - 1) / 2
                del groups[i + 1], starts[i + 1]
                merged = True
            else:
                i += 1
    out = np.concatenate([s + gap * np.arange(len(g)) for s, g in zip(starts, groups)])
    # keep inside [lo, hi] when it fits
    if out[0] < lo:
        out += lo - out[0]
    if out[-1] > hi:
        out -= out[-1] - hi
    res = np.empty_like(out)
    res[order] = out
    return res


def _label_lines(ax, positions, names, *, color, fontsize=8, y=1.0, gap_in=None):
    """Names above the top edge of ax at data x positions, spread apart so that they do not overlap.

    A short leader line joins each name to its position when it had to be moved.
    """
    x0, x1 = ax.get_xlim()
    fig = ax.figure
    width_in = fig.get_figwidth() * ax.get_position().width
    gap = (gap_in if gap_in is not None else 1.35 * fontsize / 72.0) / max(width_in, 1e-3)
    frac = [(p - x0) / (x1 - x0) for p in positions]
    keep = [i for i, u in enumerate(frac) if np.isfinite(u) and 0.0 <= u <= 1.0]
    if not keep:
        return
    placed = _spread([frac[i] for i in keep], gap, 0.0, 1.0)
    tr = ax.transAxes
    for i, u in zip(keep, placed):
        ax.annotate(names[i], xy=(frac[i], y), xycoords=tr, xytext=(u, y + 0.035), textcoords=tr,
                    rotation=90, ha="center", va="bottom", fontsize=fontsize, color=color,
                    annotation_clip=False,
                    arrowprops=dict(arrowstyle="-", color=color, lw=0.6, shrinkA=0, shrinkB=0))


def _fmt_pm(value: float, sigma: float, unit: str) -> str:
    """'value +- sigma unit' rounded to sigma's two significant digits."""
    if not np.isfinite(value):
        return f"n/a {unit}".strip()
    if not np.isfinite(sigma) or sigma <= 0:
        digits = max(0, 2 - int(math.floor(math.log10(abs(value)))) - 1) if value != 0 else 1
        return f"{value:.{min(digits, 6)}f} {unit}".strip()
    digits = max(0, 1 - int(math.floor(math.log10(sigma))))
    digits = min(digits, 6)
    return f"{value:.{digits}f} \u00b1 {sigma:.{digits}f} {unit}".strip()


def _calibration(f: h5py.File, channel: str, input: Optional[PathLike]):
    """The channel's Calibration from ``input`` or else the output's ``input_file``, checked against the
    output's wavelengths; FileNotFoundError naming every place tried when none can be used."""
    import exospec

    wl = f[f"calibrated/{channel}/wavelength_nm"][...]
    tried = []
    candidates = []
    if input is not None:
        candidates.append(("input", os.fspath(input)))
    attr = _attr_str(f, "input_file")
    candidates.append(("the output's input_file attribute", attr))
    for what, p in candidates:
        if not p:
            tried.append(f"{what}: not set")
            continue
        if not os.path.exists(p):
            tried.append(f"{what} {p}: no such file")
            continue
        try:
            cal = exospec.read_calibration(p, channel)
        except Exception as e:  # noqa: BLE001 - any failure means this file cannot be used
            tried.append(f"{what} {p}: {e}")
            continue
        w = np.asarray(cal.wavelength_nm)
        if w.shape != wl.shape or not np.allclose(w, wl, rtol=0, atol=1e-6):
            tried.append(f"{what} {p}: its /calibration/{channel} wavelengths differ from the output's")
            continue
        return cal
    if input is None:
        tried.append("input: not given")
    raise FileNotFoundError(f"{f.filename}: no usable input file for the wavelength calibration and fit "
                            f"windows of '{channel}' (" + "; ".join(tried) + ")")


def _background(wl, resid, variance, good, order):
    """Weighted least-squares polynomial of the given order in wavelength (weights 1/variance, good pixels).

    Returns its values at wl, or NaN everywhere when there are too few usable pixels.
    """
    ok = good & np.isfinite(resid) & np.isfinite(variance) & (variance > 0)
    if np.count_nonzero(ok) < order + 1:
        return np.full(wl.shape, np.nan)
    centre = 0.5 * (wl[0] + wl[-1])
    half = max(0.5 * (wl[-1] - wl[0]), 1e-12)
    u = (wl - centre) / half                      # same polynomial space, better conditioned
    a = np.vander(u, order + 1, increasing=True)
    sw = 1.0 / np.sqrt(variance[ok])
    coef, *_ = np.linalg.lstsq(a[ok] * sw[:, None], resid[ok] * sw, rcond=None)
    return a @ coef


# --------------------------------------------------------------------------------------------- spectrum

def spectrum(output: PathLike, row: int = 0, channel: str = "fuv", *, input: Optional[PathLike] = None,
             path: Optional[PathLike] = None, yscale: str = "linear") -> Figure:
    """One calibrated spectrum of an output with its fitted model and the fit's residuals.

    Top axes: the calibrated spectral radiance (R/nm) against wavelength (nm) with its +-1 sigma band
    (sigma = sqrt(variance)), the denoised radiance when ``/denoised`` is there, the fitted model of each
    fit window (shaded) and the line names at their fitted centres. Pixels flagged in
    ``/calibrated/<ch>/quality`` are marked: at their radiance when it is finite, as triangles along the
    bottom edge when it is not (bad pixels carry NaN).

    The model of a window is the sum of its lines, each the exact pixel-integrated line spread that the
    fit uses (:func:`exospec.line_model` with the row's fitted brightness, centre and FWHM), plus a
    background polynomial in wavelength of the configured order (``[fit.<ch>] background_order`` of the
    run's configuration). That background is not stored in the output: it is **re-estimated here** by
    weighted least squares (weights 1/variance, pixels of quality 0) of the radiance minus the fitted lines
    within the window, so it can differ slightly from the fit's own (which is solved jointly with the lines
    and with model-based variances).

    Bottom axes (shared wavelength axis): the normalised residuals (radiance - model) / sigma of the good
    pixels inside the windows, with guides at 0 and +-3.

    Parameters
    ----------
    output: an output file of ``exospec run`` (needs ``/calibrated/<ch>``; ``/fit/<ch>`` for the model).
    row: the spectrum's index (0-based) in the file.
    channel: ``"fuv"`` or ``"euv"``.
    input: the input file of the run (its ``/calibration/<ch>`` gives the wavelength polynomial and so the
        fit windows); by default the output's ``input_file`` attribute.
    path: where to save the figure (PNG, or PDF/SVG/... by extension); None to only return it.
    yscale: ``"linear"``, or ``"symlog"`` (linear within +-2 median sigma, logarithmic beyond) to see faint
        lines beside bright ones.

    Raises
    ------
    FileNotFoundError: the output, or (with ``/fit``) a usable input file from neither ``input`` nor the
        ``input_file`` attribute (the message names both).
    IndexError: ``row`` outside 0..N-1 (the message gives the range).
    ValueError: ``channel`` not in the file (the message names it and the channels there), a bad yscale.
    """
    import exospec

    if yscale not in ("linear", "symlog"):
        raise ValueError(f"yscale must be 'linear' or 'symlog', not {yscale!r}")
    with _open(output) as f:
        cg = _group(f, "calibrated", channel)
        n = cg["radiance"].shape[0]
        row = _check_index(row, n, "row", f"{f.filename}: /calibrated/{channel} has {n} spectra")
        wl = cg["wavelength_nm"][...].astype(float)
        rad = cg["radiance"][row].astype(float)
        var = cg["variance"][row].astype(float)
        qual = cg["quality"][row]
        den = None
        if "denoised" in f and channel in f["denoised"]:
            den = f[f"denoised/{channel}/radiance"][row].astype(float)
        alt = f["geometry/tangent_altitude_km"][row] if "geometry/tangent_altitude_km" in f else np.nan
        tim = f["geometry/time"][row] if "geometry/time" in f else np.nan
        fit = None
        if "fit" in f and channel in f["fit"]:
            fg = f[f"fit/{channel}"]
            fit = {k: fg[k][row] for k in ("brightness", "brightness_sigma", "center_nm", "fwhm_nm",
                                           "chi2_reduced", "status")}
            fit["names"] = _names(fg["line_name"])
            cal = _calibration(f, channel, input)
            config = _attr_str(f, "config")
            order = int(_fit_config(f, channel).get("background_order", 1))
        fname = _basename(f)

    sigma = np.sqrt(np.where(var >= 0, var, np.nan))
    good = (qual == 0) & np.isfinite(rad) & np.isfinite(sigma) & (sigma > 0)

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    gs = fig.add_gridspec(2, 1, height_ratios=(3.2, 1.0))
    ax = fig.add_subplot(gs[0])
    axr = fig.add_subplot(gs[1], sharex=ax)

    # data
    ax.fill_between(wl, rad - sigma, rad + sigma, step="mid", color=_C_SIGMA, alpha=0.35, lw=0,
                    label="\u00b11\u03c3", gid="sigma")
    ax.plot(wl, rad, drawstyle="steps-mid", color=_C_DATA, lw=0.6, label="calibrated", gid="calibrated")
    if den is not None:
        ax.plot(wl, den, color=_C_DENOISED, lw=1.0, label="denoised", gid="denoised")

    # model per window
    model_full = np.full(wl.shape, np.nan)
    if fit is not None:
        ch = exospec.Channel(channel, cal, config=config, threads=1, lines=fit["names"])
        col = {name: i for i, name in enumerate(fit["names"])}
        lines = exospec.line_model(cal, cal.pixels, lines=fit["names"], brightness=fit["brightness"],
                                   center_nm=fit["center_nm"], fwhm_nm=fit["fwhm_nm"], channel=channel)
        first_label = True
        for first, count, idx in ch.windows:
            cols = [col[ch.line_names[i]] for i in idx]
            sl = slice(first, first + count)
            w = wl[sl]
            line_sum = lines[cols, sl].sum(axis=0)
            finite = all(np.isfinite(fit["brightness"][c]) for c in cols)
            bg = _background(w, rad[sl] - line_sum, var[sl], good[sl], order) if finite else np.full(w.shape,
                                                                                                        np.nan)
            m = line_sum + bg
            model_full[sl] = m
            for a in (ax, axr):
                a.axvspan(wl[first], wl[first + count - 1], color=_C_WINDOW, alpha=0.08, lw=0)
            if np.all(np.isfinite(m)):
                ax.plot(w, m, color=_C_MODEL, lw=1.4, label="fitted model" if first_label else None,
                        gid=f"model:{first}")
                first_label = False

    # flagged pixels
    flagged = qual != 0
    fin = flagged & np.isfinite(rad)
    if np.any(fin):
        ax.plot(wl[fin], rad[fin], ls="none", marker="x", ms=5, mew=1.2, color=_C_FLAG,
                label=f"flagged pixel ({np.count_nonzero(fin)})", gid="flagged")
    nofin = flagged & ~np.isfinite(rad)
    if np.any(nofin):
        tr = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(wl[nofin], np.full(np.count_nonzero(nofin), 0.012), ls="none", marker="^", ms=5,
                color=_C_FLAG, mec="none", transform=tr, clip_on=False,
                label=f"flagged, no value ({np.count_nonzero(nofin)})", gid="flagged_nan")

    # y range: from the data (robust to a few spikes) and the model
    if np.any(good):
        lo = min(float(np.percentile(rad[good], 0.5)), 0.0)
        hi = float(np.percentile(rad[good], 99.9))
        if np.any(np.isfinite(model_full)):
            hi = max(hi, float(np.nanmax(model_full)))
        if hi > lo:
            if yscale == "symlog":
                lt = max(2.0 * float(np.median(sigma[good])), 1e-6 * max(abs(hi), abs(lo), 1e-30))
                ax.set_yscale("symlog", linthresh=lt, linscale=1.0)
                ax.set_ylim(min(lo * 1.3, -lt), hi * 1.8)
            else:
                pad = 0.06 * (hi - lo)
                ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(wl[0] - 0.5 * (wl[1] - wl[0]), wl[-1] + 0.5 * (wl[-1] - wl[-2]))
    ax.axhline(0.0, color="0.6", lw=0.5, zorder=0)

    # line names at the fitted centres
    if fit is not None:
        centres, labels = [], []
        for i, name in enumerate(fit["names"]):
            c = fit["center_nm"][i]
            if np.isfinite(c):
                ax.axvline(c, color=_C_MODEL, lw=0.6, ls=":", alpha=0.8)
                st = int(fit["status"][i])
                labels.append(name if st == 0 else f"{name} ({_FIT_STATUS.get(st, st)})")
                centres.append(c)
        _label_lines(ax, centres, labels, color=_C_MODEL, fontsize=8, y=1.0)

    ax.set_ylabel("spectral radiance (R/nm)")
    ax.legend(loc="upper left", fontsize=8, ncol=2, framealpha=0.85)
    ax.tick_params(labelbottom=False)
    head = f"{fname}  \u2014  {channel.upper()} spectrum {row} of {n}"
    sub = []
    if np.isfinite(alt):
        sub.append(f"tangent altitude {alt:.0f} km")
    if np.isfinite(tim):
        sub.append(_utc(tim))
    fig.suptitle(head + ("\n" + ", ".join(sub) if sub else ""), fontsize=11)

    # residuals
    inwin = np.isfinite(model_full) & good
    z = np.where(inwin, (rad - model_full) / np.where(good, sigma, np.nan), np.nan)
    for y0, ls in ((0.0, "-"), (3.0, "--"), (-3.0, "--")):
        axr.axhline(y0, color="0.4", lw=0.7, ls=ls)
    if np.any(inwin):
        axr.plot(wl[inwin], z[inwin], ls="none", marker=".", ms=2.5, color=_C_DATA, gid="residuals")
        lim = max(5.0, min(float(np.nanmax(np.abs(z[inwin]))) * 1.1, 50.0))
        axr.set_ylim(-lim, lim)
        chi2 = float(np.nanmean(z[inwin] ** 2))
        axr.text(0.995, 0.95, f"mean (residual/\u03c3)\u00b2 = {chi2:.2f} over {np.count_nonzero(inwin)} pixels",
                 transform=axr.transAxes, ha="right", va="top", fontsize=8)
    else:
        axr.set_ylim(-5, 5)
        axr.text(0.5, 0.5, "no fit in this file" if fit is None else "no fitted window", ha="center",
                 va="center", transform=axr.transAxes, fontsize=9, color="0.3")
    axr.set_xlabel("wavelength (nm)")
    axr.set_ylabel("(data \u2212 model)/\u03c3")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------- overview

def overview(output: PathLike, channel: str = "fuv", *, path: Optional[PathLike] = None,
             max_rows: int = 2000, average: int = 1,
             floor_percentile: float = 10.0) -> Figure:
    """The calibrated radiance of every spectrum as an image: spectrum index (y) against wavelength (x, nm).

    Colour is the spectral radiance (R/nm) on a logarithmic scale from a floor, the ``floor_percentile``-th
    percentile of the positive values drawn (10 by default), to their 99.99th percentile (values below the floor, negative noise included,
    take the floor's colour); pixels without a value (NaN: bad pixels, invalid spectra) are grey. At most
    ``max_rows`` rows are drawn, evenly subsampled. The pixels are placed at their calibrated wavelengths
    (resampled by nearest pixel onto a uniform grid of twice the pixel count, so the non-linear dispersion
    is followed to 1/4 pixel and ``extent`` is exact in nm). Each fitted line is marked at the
    median centre (nm) of its converged fits (``/fit`` status 0), as short vertical lines at the top and
    bottom edges (so as not to hide the emission), labelled above the image.

    Parameters
    ----------
    output: an output file of ``exospec run`` (needs ``/calibrated/<ch>``).
    channel: ``"fuv"`` or ``"euv"``.
    path: where to save the figure (PNG, or PDF/SVG/... by extension); None to only return it.
    max_rows: the largest number of rows drawn (>= 1).
    average: spectra per row (>= 1). With average > 1 each row is the mean of that many consecutive spectra (pixels
        of quality 0 only), which shows lines that single spectra hide in their photon noise; the blocks
        are then subsampled to max_rows.
    floor_percentile: the percentile (0-100) of the positive values that sets the colour scale's floor;
        raise it (e.g. 50) to turn the photon noise of faint continua dark and let faint lines stand out.

    Raises FileNotFoundError (no output), ValueError (channel not in the file, max_rows or average < 1, a bad
    floor_percentile).
    """
    if int(max_rows) < 1:
        raise ValueError(f"max_rows must be at least 1, not {max_rows}")
    if not 0.0 <= float(floor_percentile) < 100.0:
        raise ValueError(f"floor_percentile must be in [0, 100), not {floor_percentile}")
    if int(average) < 1:
        raise ValueError(f"average must be at least 1, not {average}")
    per = int(average)
    with _open(output) as f:
        cg = _group(f, "calibrated", channel)
        wl = cg["wavelength_nm"][...].astype(float)
        n = cg["radiance"].shape[0]
        if n == 0:
            raise ValueError(f"{f.filename}: /calibrated/{channel}/radiance has no spectra")
        nblocks = -(-n // per)
        blocks = np.unique(np.linspace(0, nblocks - 1, min(nblocks, int(max_rows))).round().astype(np.int64))
        if per == 1:
            img = cg["radiance"][...] if blocks.size == n else cg["radiance"][blocks, :]
            img = img.astype(float)
        else:
            img = np.empty((blocks.size, wl.size))
            for k, blk in enumerate(blocks):
                sl = slice(int(blk) * per, min(n, (int(blk) + 1) * per))
                r = cg["radiance"][sl].astype(float)
                ok = (cg["quality"][sl] == 0) & np.isfinite(r)
                cnt = ok.sum(axis=0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    img[k] = np.where(cnt > 0, np.where(ok, r, 0.0).sum(axis=0) / cnt, np.nan)
        centres, names = [], []
        if "fit" in f and channel in f["fit"]:
            fg = f[f"fit/{channel}"]
            names = _names(fg["line_name"])
            c = fg["center_nm"][...]
            ok = (fg["status"][...] == 0) & np.isfinite(c)
            for i in range(len(names)):
                centres.append(float(np.median(c[ok[:, i], i])) if np.any(ok[:, i]) else np.nan)
        fname = _basename(f)

    pos = img[np.isfinite(img) & (img > 0)]
    if pos.size:
        floor = float(np.percentile(pos, float(floor_percentile)))
        top = max(float(np.percentile(pos, 99.99)), floor * 10)
    else:
        floor, top = 1e-3, 1.0
    shown = np.where(np.isfinite(img), np.clip(img, floor, None), np.nan)

    # resample onto a uniform wavelength grid (nearest pixel), so that extent= is exact in nm
    edges = np.concatenate([[wl[0] - 0.5 * (wl[1] - wl[0])], 0.5 * (wl[1:] + wl[:-1]),
                            [wl[-1] + 0.5 * (wl[-1] - wl[-2])]])
    m = 2 * wl.size
    grid = edges[0] + (np.arange(m) + 0.5) * (edges[-1] - edges[0]) / m
    pix = np.clip(np.searchsorted(edges, grid) - 1, 0, wl.size - 1)
    shown = shown[:, pix]

    cmap = colormaps["magma"].copy()
    cmap.set_bad("0.5")
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(shown, aspect="auto", origin="lower", interpolation="nearest", cmap=cmap,
                   norm=LogNorm(vmin=floor, vmax=top), extent=(edges[0], edges[-1], -0.5, n - 0.5))
    im.set_gid("radiance")
    cb = fig.colorbar(im, ax=ax, pad=0.01, extend="both")
    cb.set_label("radiance (R/nm)")
    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel("spectrum index")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(-0.5, n - 0.5)

    lab_c, lab_n = [], []
    for c, name in zip(centres, names):
        if np.isfinite(c):
            for y0, y1 in ((0.0, 0.035), (0.965, 1.0)):     # ticks at the edges: the image stays visible
                ax.axvline(c, y0, y1, color="#56B4E9", lw=1.2, gid=f"line:{name}")
            lab_c.append(c)
            lab_n.append(name)
    _label_lines(ax, lab_c, lab_n, color="#0072B2", fontsize=8, y=1.0)
    if per == 1:
        sub = f"{blocks.size} of {n} spectra" + (" (evenly subsampled)" if blocks.size < n else "")
    else:
        sub = (f"{n} spectra, mean of {per} per row ({blocks.size} rows"
               + (", evenly subsampled)" if blocks.size < nblocks else ")"))
    fig.suptitle(f"{fname}  \u2014  {channel.upper()} calibrated radiance, {sub}", fontsize=11)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------- profile

def profile(output: PathLike, channel: str = "fuv", scan: int = 0, *, lines: Optional[Sequence[str]] = None,
            path: Optional[PathLike] = None) -> Figure:
    """One limb scan: the fitted brightness of each line (R) against tangent altitude (km) with the profile fit.

    One axes per line: the level-2 brightness of the scan's spectra whose fit converged (``/fit`` status 0)
    with 1-sigma error bars (``brightness_sigma``), and the profile model
    B(z) = B_s C(z; T)/C(0; T) + B_bg (:func:`exospec.profile_shape` with the line's ``mass_amu`` and the
    run's configuration) on a fine altitude grid over the scan's range (dashed below it, down to the
    surface, where the scan starts above it), drawn when the profile has values (statuses 0, 1, 2, 5). The legend gives T (K), B_s (R) and B_bg (R) with their 1-sigma uncertainties,
    the status and the reduced chi-square.

    Parameters
    ----------
    output: an output of ``exospec run`` with ``/fit``, ``/profile`` and ``/geometry``.
    channel: ``"fuv"`` or ``"euv"``.
    scan: the scan's index (0-based) in ``/profile/<ch>``.
    lines: line names to draw (as in ``/profile/<ch>/line_name``); by default the lines whose profile status
        in this scan is 0 (converged) or 1 (not detected).
    path: where to save the figure (PNG, or PDF/SVG/... by extension); None to only return it.

    Raises FileNotFoundError (no output), IndexError (scan out of range), ValueError (channel not in the
    file, a line name that is not profiled, no line to draw).
    """
    import exospec

    with _open(output) as f:
        pg = _group(f, "profile", channel)
        fg = _group(f, "fit", channel)
        s_first = pg["scan_first"][...]
        s_count = pg["scan_count"][...]
        scan = _check_index(scan, s_first.size, "scan", f"{f.filename}: /profile/{channel} has {s_first.size} scans")
        pnames = _names(pg["line_name"])
        status = pg["status"][scan]
        if lines is None:
            chosen = [i for i in range(len(pnames)) if int(status[i]) in (0, 1)]
            if not chosen:
                raise ValueError(f"{f.filename}: scan {scan} of '{channel}' has no line with profile status 0 or "
                                 f"1 (statuses: {', '.join(f'{n}={int(s)}' for n, s in zip(pnames, status))}); "
                                 f"name the lines to draw")
        else:
            if isinstance(lines, str):
                lines = [lines]
            chosen = []
            for name in lines:
                if name not in pnames:
                    raise ValueError(f"{f.filename}: line '{name}' is not in /profile/{channel} "
                                     f"(lines there: {', '.join(pnames)})")
                chosen.append(pnames.index(name))
            if not chosen:
                raise ValueError("lines: no line named")
        a, c = int(s_first[scan]), int(s_count[scan])
        rows = slice(a, a + c)
        alt = f["geometry/tangent_altitude_km"][rows].astype(float)
        fnames = _names(fg["line_name"])
        fb, fs, fst = fg["brightness"][rows], fg["brightness_sigma"][rows], fg["status"][rows]
        par = {k: pg[k][scan] for k in ("surface_brightness_R", "surface_brightness_R_sigma", "temperature_K",
                                        "temperature_K_sigma", "background_R", "background_R_sigma",
                                        "scale_height_km", "scale_height_km_sigma", "chi2_reduced")}
        mass = pg["mass_amu"][...] if "mass_amu" in pg else None
        config = _attr_str(f, "config")
        tim = f["geometry/time"][a] if "geometry/time" in f else np.nan
        fname = _basename(f)
        nscan = s_first.size

    n = len(chosen)
    ncols = 1 if n == 1 else 2 if n in (2, 4) else 3
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(FIGSIZE[0], max(FIGSIZE[1], 3.0 * nrows)), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    zlo, zhi = (float(np.nanmin(alt)), float(np.nanmax(alt))) if np.any(np.isfinite(alt)) else (0.0, 1.0)
    zgrid = np.linspace(zlo, zhi, 300) if zhi > zlo else np.array([zlo])

    for k, li in enumerate(chosen):
        ax = axes[k // ncols][k % ncols]
        name = pnames[li]
        st = int(status[li])
        chi2 = float(par["chi2_reduced"][li])
        head = f"{name}: {_PROFILE_STATUS.get(st, f'status {st}')}"
        if np.isfinite(chi2):
            head += f", \u03c7\u00b2$_r$ = {chi2:.2f}"
        ax.set_title(head, fontsize=9.5)
        ylo, yhi = [0.0], [0.0]
        if name in fnames:
            j = fnames.index(name)
            ok = (fst[:, j] == 0) & np.isfinite(fb[:, j]) & np.isfinite(fs[:, j]) & np.isfinite(alt)
            ax.errorbar(alt[ok], fb[ok, j], yerr=fs[ok, j], ls="none", marker="o", ms=3, color=_C_DATA,
                        ecolor="0.45", elinewidth=0.8, capsize=0,
                        label=f"level-2 fits ({np.count_nonzero(ok)} spectra)", gid=f"data:{name}")
            if np.any(ok):
                ylo.append(float(np.min(fb[ok, j] - fs[ok, j])))
                yhi.append(float(np.max(fb[ok, j] + fs[ok, j])))
        bs, t, bb = par["surface_brightness_R"][li], par["temperature_K"][li], par["background_R"][li]
        m = float(mass[li]) if mass is not None else exospec.line_mass_amu(name, config=config)
        text = [f"T = {_fmt_pm(t, par['temperature_K_sigma'][li], 'K')}" + (" (bound)" if st == 2 else ""),
                f"B$_s$ = {_fmt_pm(bs, par['surface_brightness_R_sigma'][li], 'R')}",
                f"B$_{{bg}}$ = {_fmt_pm(bb, par['background_R_sigma'][li], 'R')}"]
        if np.isfinite(bs) and np.isfinite(t) and np.isfinite(bb) and np.isfinite(m):
            shape = exospec.profile_shape(float(t), zgrid, mass_amu=m, config=config)
            model = bs * shape + bb
            ax.plot(zgrid, model, color=_C_MODEL, lw=1.5, zorder=4, label="\n".join(text), gid=f"model:{name}")
            if zlo > 0.01 * (zhi - zlo):     # below the scan: the model extrapolated to the surface (B_s)
                zx = np.linspace(0.0, zlo, 60)
                mx = bs * exospec.profile_shape(float(t), zx, mass_amu=m, config=config) + bb
                ax.plot(zx, mx, color=_C_MODEL, lw=1.2, ls="--", zorder=4, gid=f"model_extrapolated:{name}")
                model = np.concatenate([mx, model])
            ylo.append(float(np.min(model)))
            yhi.append(float(np.max(model)))
        else:
            ax.plot([], [], " ", label="\n".join(["no profile fit"] + text))
        lo, hi = min(ylo), max(yhi)
        r = hi - lo if hi > lo else 1.0
        ax.set_ylim(lo - 0.05 * r, hi + 0.5 * r)        # headroom for the legend
        ax.axhline(0.0, color="0.7", lw=0.5, zorder=0)
        ax.legend(fontsize=7.5, loc="upper right", framealpha=0.85, handlelength=1.5)
        ax.set_xlim(min(0.0, zlo), zhi + 0.02 * max(zhi - zlo, 1.0))
        if k // ncols == nrows - 1 or k + ncols >= n:
            ax.set_xlabel("tangent altitude (km)")
        if k % ncols == 0:
            ax.set_ylabel("brightness (R)")
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].remove()
    when = _utc(tim)
    fig.suptitle(f"{fname}  \u2014  {channel.upper()} limb scan {scan} of {nscan} (spectra {a}\u2013{a + c - 1}"
                 f"{', ' + when if when else ''})", fontsize=11)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="exospec plot",
        description="Quick-look plots of an exospec output: one spectrum with its fit, an overview image of "
                    "all spectra, or the limb profiles of one scan.")
    p.add_argument("kind", choices=("spectrum", "overview", "profile"), help="the figure to draw")
    p.add_argument("output", help="an output file of `exospec run`")
    p.add_argument("-o", "--out", dest="file", default=None,
                   help="figure file; PNG, or PDF/SVG by extension (default: KIND.png in the current directory)")
    p.add_argument("--channel", default="fuv", help="euv or fuv (default fuv)")
    p.add_argument("--row", type=int, default=None, help="spectrum: the spectrum's index (default 0)")
    p.add_argument("--scan", type=int, default=None, help="profile: the scan's index (default 0)")
    p.add_argument("--input", default=None,
                   help="spectrum: the run's input file (default: the output's input_file attribute)")
    p.add_argument("--lines", default=None,
                   help='profile: comma-separated line names, e.g. "Mg II 279.553,Mg I 285.213" '
                        "(default: the lines converged or not detected in the scan)")
    p.add_argument("--yscale", choices=("linear", "symlog"), default=None,
                   help="spectrum: radiance axis scale (default linear)")
    p.add_argument("--max-rows", type=int, default=None, help="overview: most rows drawn (default 2000)")
    p.add_argument("--average", type=int, default=None,
                   help="overview: consecutive spectra averaged into one row (default 1)")
    p.add_argument("--floor-percentile", type=float, default=None,
                   help="overview: percentile of the positive radiances that sets the colour floor (default 10)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line: ``python3 -m exospec plot KIND OUTPUT [-o FILE] [--channel euv|fuv] ...``.

    KIND is ``spectrum`` (options ``--row N``, ``--input IN``, ``--yscale linear|symlog``), ``overview``
    (``--max-rows M``, ``--average K``, ``--floor-percentile P``) or ``profile`` (``--scan S``,
    ``--lines "A,B"``); an option of another kind is a usage error. argv: the arguments after ``plot``
    (None: ``sys.argv[1:]``).

    Writes the figure (default ``KIND.png`` in the current directory) and returns 0. An error prints one
    line ``exospec plot: error: ...`` on stderr and returns 1; a bad option exits 2 (argparse).
    """
    p = _parser()
    args = p.parse_args(None if argv is None else list(argv))
    only = {"row": "spectrum", "input": "spectrum", "yscale": "spectrum", "scan": "profile", "lines": "profile",
            "max_rows": "overview", "average": "overview", "floor_percentile": "overview"}
    for opt, kind in only.items():
        if getattr(args, opt) is not None and args.kind != kind:
            p.error(f"--{opt.replace('_', '-')} applies to the {kind} plot only")
    out = args.file if args.file is not None else f"{args.kind}.png"
    try:
        if args.kind == "spectrum":
            spectrum(args.output, args.row or 0, args.channel, input=args.input, path=out,
                     yscale=args.yscale or "linear")
        elif args.kind == "overview":
            overview(args.output, args.channel, path=out,
                     max_rows=args.max_rows if args.max_rows is not None else 2000,
                     average=args.average if args.average is not None else 1,
                     floor_percentile=args.floor_percentile if args.floor_percentile is not None else 10.0)
        else:
            names = None
            if args.lines is not None:
                names = [s.strip() for s in args.lines.split(",") if s.strip()]
            profile(args.output, args.channel, args.scan or 0, lines=names, path=out)
    except KeyError as e:
        print(f"exospec plot: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    except (OSError, ValueError, IndexError, TypeError, RuntimeError) as e:
        msg = str(e).replace("\n", " ")
        print(f"exospec plot: error: {msg}", file=sys.stderr)
        return 1
    return 0
