"""exospec.plot: the quick-look figures render real pictures, check their inputs, and draw the fit's numbers.

Run: PYTHONPATH=build/python MPLBACKEND=Agg /usr/bin/python3 -m pytest -q tests/python/test_plot.py
"""
import os
import shutil
import subprocess
import sys
import tomllib

import h5py
import numpy as np
import pytest
from matplotlib.colors import LogNorm
from matplotlib.image import AxesImage
from PIL import Image

import exospec
from exospec import plot

CH = "fuv"


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """A 400-spectrum default limb scan (both channels, seed 7) and its default run: (input, output)."""
    d = tmp_path_factory.mktemp("plot")
    src, out = d / "in.h5", d / "out.h5"
    exospec.simulate(str(src), spectra=400, seed=7, overwrite=True)
    exospec.run(str(src), str(out), overwrite=True, threads=1)
    return src, out


def _picture(path, fig):
    """Asserts that path is a PNG of figsize x dpi pixels that is not blank; returns its RGB array."""
    assert path.exists() and path.stat().st_size > 10_000
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = fig.get_size_inches() * fig.dpi
        assert im.size == (round(w), round(h))
        rgb = np.asarray(im.convert("RGB"), dtype=float)
    colours = np.unique(rgb.reshape(-1, 3).astype(np.uint8), axis=0)
    assert len(colours) > 200, f"only {len(colours)} colours"
    assert rgb.std() > 15.0
    assert (rgb < 250).mean() > 0.05      # more than a few dark strokes on white
    return rgb


def _gid_lines(ax, prefix):
    return [l for l in ax.lines if (l.get_gid() or "").startswith(prefix)]


# ------------------------------------------------------------------------------------------ pictures

def test_spectrum_png(files, tmp_path):
    _, out = files
    p = tmp_path / "spectrum.png"
    fig = plot.spectrum(out, row=0, channel=CH, path=p)
    _picture(p, fig)
    assert len(fig.axes) == 2
    top, bottom = fig.axes
    assert "R/nm" in top.get_ylabel() and "nm" in bottom.get_xlabel()
    assert top.get_shared_x_axes().joined(top, bottom)
    with h5py.File(out) as f:
        windows = exospec.Channel(CH, exospec.read_calibration(f.attrs["input_file"], CH),
                                  config=f.attrs["config"]).windows
    assert len(_gid_lines(top, "model:")) == len(windows)
    assert _gid_lines(top, "denoised") and _gid_lines(top, "flagged")   # bad pixels: flagged, no value
    assert _gid_lines(bottom, "residuals")
    assert "out.h5" in fig._suptitle.get_text() and "FUV" in fig._suptitle.get_text()


def test_overview_png(files, tmp_path):
    _, out = files
    p = tmp_path / "overview.png"
    fig = plot.overview(out, channel=CH, path=p)
    _picture(p, fig)
    assert len(fig.axes) == 2                        # image + colourbar
    ax, cax = fig.axes
    im = [a for a in ax.get_children() if isinstance(a, AxesImage)]
    assert len(im) == 1 and isinstance(im[0].norm, LogNorm) and im[0].norm.vmin > 0
    assert cax.get_ylabel() == "radiance (R/nm)"
    x0, x1, _, _ = im[0].get_extent()
    with h5py.File(out) as f:
        wl = f[f"calibrated/{CH}/wavelength_nm"][...]
        names = [s.decode() for s in f[f"fit/{CH}/line_name"][...]]
    assert wl[0] - 0.2 < x0 < wl[0] and wl[-1] < x1 < wl[-1] + 0.2
    assert {t.get_text() for t in ax.texts} == set(names)
    # subsampling and averaging
    assert plot.overview(out, CH, max_rows=50).axes[0].images[0].get_array().shape[0] == 50
    assert plot.overview(out, CH, average=4).axes[0].images[0].get_array().shape[0] == 100


def test_profile_png(files, tmp_path):
    _, out = files
    with h5py.File(out) as f:
        status = f[f"profile/{CH}/status"][0]
        names = [s.decode() for s in f[f"profile/{CH}/line_name"][...]]
    expected = [n for n, s in zip(names, status) if s in (0, 1)]
    assert expected
    p = tmp_path / "profile.png"
    fig = plot.profile(out, CH, 0, path=p)
    _picture(p, fig)
    assert len(fig.axes) == len(expected)
    assert [a.get_title().split(":")[0] for a in fig.axes] == expected
    for a in fig.axes:
        legend = " ".join(t.get_text() for t in a.get_legend().get_texts())
        assert "T = " in legend and " K" in legend and "B$_s$ = " in legend and "B$_{bg}$" in legend
    two = plot.profile(out, CH, 1, lines=["Mg I 285.213", "C I 156.1"])
    assert len(two.axes) == 2


@pytest.mark.parametrize("ext, magic", [("pdf", b"%PDF"), ("svg", b"<svg")])
def test_vector_formats_by_extension(files, tmp_path, ext, magic):
    _, out = files
    for kind, draw in (("spectrum", lambda p: plot.spectrum(out, 3, CH, path=p)),
                       ("overview", lambda p: plot.overview(out, CH, path=p)),
                       ("profile", lambda p: plot.profile(out, CH, 0, path=p))):
        p = tmp_path / f"{kind}.{ext}"
        draw(p)
        head = p.read_bytes()[:4096]
        assert magic in head, f"{kind}.{ext}"


# ------------------------------------------------------------------------------------------ the numbers

def test_spectrum_model_is_line_model_plus_weighted_background(files):
    """The drawn model of each window = exospec.line_model of the fit + a weighted polyfit of the rest."""
    src, out = files
    row = 0
    fig = plot.spectrum(out, row, CH, input=src)
    top = fig.axes[0]
    cal = exospec.read_calibration(str(src), CH)
    with h5py.File(out) as f:
        config = f.attrs["config"]
        g = f[f"calibrated/{CH}"]
        wl, rad = g["wavelength_nm"][...], g["radiance"][row].astype(float)
        var, q = g["variance"][row].astype(float), g["quality"][row]
        fg = f[f"fit/{CH}"]
        names = [s.decode() for s in fg["line_name"][...]]
        b, c, w = fg["brightness"][row], fg["center_nm"][row], fg["fwhm_nm"][row]
    order = tomllib.loads(config)["fit"][CH]["background_order"]
    ch = exospec.Channel(CH, cal, config=config)
    checked = 0
    for first, count, idx in ch.windows:
        sel = [names.index(ch.line_names[i]) for i in idx]
        lines = exospec.line_model(cal.wavelength_coeffs, cal.pixels, lines=[names[i] for i in sel],
                                   brightness=b[sel], center_nm=c[sel], fwhm_nm=w[sel], channel=CH)
        sl = slice(first, first + count)
        rest = rad[sl] - lines[:, sl].sum(axis=0)
        good = (q[sl] == 0) & np.isfinite(rest) & (var[sl] > 0)
        coef = np.polyfit(wl[sl][good], rest[good], order, w=1.0 / np.sqrt(var[sl][good]))
        expected = lines[:, sl].sum(axis=0) + np.polyval(coef, wl[sl])
        (drawn,) = _gid_lines(top, f"model:{first}")
        np.testing.assert_array_equal(drawn.get_xdata(), wl[sl])
        np.testing.assert_allclose(drawn.get_ydata(), expected, rtol=0, atol=1e-9)
        checked += 1
    assert checked == len(ch.windows) >= 3
    # the residuals are (radiance - model) / sigma of the good pixels in the windows
    (res,) = _gid_lines(fig.axes[1], "residuals")
    assert np.all(np.abs(res.get_ydata()) < 20) and len(res.get_ydata()) > 100


def test_profile_curve_is_bs_shape_plus_bbg(files):
    _, out = files
    scan = 2
    fig = plot.profile(out, CH, scan, lines=["Mg I 285.213", "Mg II 279.553"])
    with h5py.File(out) as f:
        p = f[f"profile/{CH}"]
        names = [s.decode() for s in p["line_name"][...]]
        first, count = p["scan_first"][scan], p["scan_count"][scan]
        alt = f["geometry/tangent_altitude_km"][first:first + count]
        fnames = [s.decode() for s in f[f"fit/{CH}/line_name"][...]]
        fb = f[f"fit/{CH}/brightness"][first:first + count]
        fst = f[f"fit/{CH}/status"][first:first + count]
        vals = {k: p[k][scan] for k in ("surface_brightness_R", "temperature_K", "background_R")}
        config = f.attrs["config"]
    for ax, name in zip(fig.axes, ["Mg I 285.213", "Mg II 279.553"]):
        i = names.index(name)
        bs, t, bb = (vals[k][i] for k in ("surface_brightness_R", "temperature_K", "background_R"))
        m = exospec.line_mass_amu(name, config=config)
        (curve,) = _gid_lines(ax, f"model:{name}")
        z = curve.get_xdata()
        assert z.min() == pytest.approx(alt.min()) and z.max() == pytest.approx(alt.max())
        np.testing.assert_allclose(curve.get_ydata(), bs * exospec.profile_shape(t, z, mass_amu=m) + bb,
                                   rtol=1e-12, atol=1e-9)
        # the model at the fit's altitudes, interpolated from the drawn curve, is close to the data's trend
        j = fnames.index(name)
        ok = fst[:, j] == 0
        model_at = np.interp(alt[ok], z, curve.get_ydata())
        assert abs(np.median(fb[ok, j] - model_at)) < 0.1 * np.median(np.abs(fb[ok, j])) + 1.0
        # the points drawn are the converged level-2 fits of the scan
        data = [c for c in ax.containers if c.get_label().startswith("level-2")]
        assert len(data) == 1
        np.testing.assert_array_equal(data[0].lines[0].get_ydata(), fb[ok, j])


# ------------------------------------------------------------------------------------------ bad inputs

def test_bad_inputs_raise(files, tmp_path):
    src, out = files
    for row in (400, -1):
        with pytest.raises(IndexError, match=r"0\.\.399"):
            plot.spectrum(out, row, CH)
    with pytest.raises(IndexError, match=r"valid: 0\.\.7"):
        plot.profile(out, CH, scan=8)
    for draw in (lambda: plot.spectrum(out, 0, "nuv"), lambda: plot.overview(out, "nuv"),
                 lambda: plot.profile(out, "nuv")):
        with pytest.raises((ValueError, KeyError), match="nuv"):
            draw()
    with pytest.raises(ValueError, match="Na I 589"):
        plot.profile(out, CH, 0, lines=["Na I 589"])
    with pytest.raises(FileNotFoundError, match="nope"):
        plot.overview(tmp_path / "nope.h5")

    # neither the given input nor the output's input_file can be read: both named
    moved = tmp_path / "moved_out.h5"
    shutil.copy(out, moved)
    with h5py.File(moved, "a") as f:
        f.attrs["input_file"] = str(tmp_path / "gone_in.h5")
    with pytest.raises(FileNotFoundError) as e:
        plot.spectrum(moved, 0, CH, input=tmp_path / "wrong_in.h5")
    assert "gone_in.h5" in str(e.value) and "wrong_in.h5" in str(e.value)
    # the input given works where the attribute does not
    assert len(plot.spectrum(moved, 0, CH, input=src).axes) == 2


# ------------------------------------------------------------------------------------------ command line

def test_main_writes_file(files, tmp_path, monkeypatch, capsys):
    src, out = files
    target = tmp_path / "s.png"
    assert plot.main(["spectrum", str(out), "-o", str(target), "--row", "5", "--input", str(src)]) == 0
    assert target.exists() and target.stat().st_size > 10_000
    monkeypatch.chdir(tmp_path)
    assert plot.main(["profile", str(out), "--scan", "1", "--lines", "Mg I 285.213,Mg II 279.553"]) == 0
    assert (tmp_path / "profile.png").exists()
    assert plot.main(["overview", str(out), "--channel", "euv", "-o", "o.svg"]) == 0
    assert (tmp_path / "o.svg").read_bytes().lstrip().startswith(b"<?xml")
    assert capsys.readouterr().err == ""


def test_main_errors(files, tmp_path, capsys):
    _, out = files
    assert plot.main(["overview", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("exospec plot: error: ") and "missing.h5" in err[0]
    assert not (tmp_path / "x.png").exists()
    assert plot.main(["spectrum", str(out), "--row", "9999", "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "0..399" in err[0]
    for bad in (["histogram", str(out)], ["profile", str(out), "--row", "3"]):
        with pytest.raises(SystemExit) as e:
            plot.main(bad)
        assert e.value.code == 2
    capsys.readouterr()


def test_module_command_is_headless(files, tmp_path):
    """`python3 -m exospec plot ...` with no display and no backend set, without pyplot."""
    _, out = files
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY")}
    code = ("import sys, runpy; sys.argv = ['exospec', 'plot', 'overview', sys.argv[1], '-o', sys.argv[2]]\n"
            "try:\n    runpy.run_module('exospec', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "ov.png")], env=env,
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ov.png").exists()
