"""The stages on numpy arrays give the command's results to the bit."""
import threading
import time

import h5py
import numpy as np
import pytest

import exospec
from conftest import assert_identical, read_group

CHANNELS = ("euv", "fuv")


@pytest.fixture(scope="module")
def inputs(cli_files):
    src, _ = cli_files
    return {ch: exospec.read_input(src, ch) for ch in CHANNELS}


def test_read_input_is_the_file(cli_files, inputs):
    src, _ = cli_files
    with h5py.File(src, "r") as f:
        for ch in CHANNELS:
            d = inputs[ch]
            assert_identical(d["counts"], f[f"raw/{ch}/counts"][...], "counts")
            assert_identical(d["exposure_s"], f[f"raw/{ch}/exposure_s"][...], "exposure")
            assert_identical(d["temperature_c"], f[f"raw/{ch}/detector_temperature"][...].astype(np.float64), "T")
            assert_identical(d["altitude_km"], f["geometry/tangent_altitude_km"][...], "altitude")
            cal = d["calibration"]
            assert_identical(cal.sensitivity, f[f"calibration/{ch}/sensitivity"][...], "sensitivity")
            assert_identical(cal.wavelength_coeffs, f[f"calibration/{ch}/wavelength_coeffs"][...], "coeffs")
            assert cal.dead_time_s == f[f"calibration/{ch}"].attrs["dead_time_s"]


@pytest.mark.parametrize("ch", CHANNELS)
def test_process_equals_the_command(cli_files, inputs, ch):
    _, out = cli_files
    d = inputs[ch]
    stages = exospec.Channel(ch, d["calibration"], threads=1)
    cal, den, fits = stages.process(d["counts"], d["exposure_s"], d["temperature_c"], altitude_km=d["altitude_km"])
    c = read_group(out, f"calibrated/{ch}")
    for k in ("radiance", "variance", "quality"):
        assert_identical(getattr(cal, k), c[k], f"{ch} calibrated {k}")
    assert_identical(stages.calibration.wavelength_nm, c["wavelength_nm"], "wavelength")
    dn = read_group(out, f"denoised/{ch}")
    for k in ("radiance", "variance"):
        assert_identical(getattr(den, k), dn[k], f"{ch} denoised {k}")
    fi = read_group(out, f"fit/{ch}")
    for k in ("brightness", "brightness_sigma", "center_nm", "fwhm_nm", "chi2_reduced", "status",
              "line_wavelength_nm"):
        assert_identical(getattr(fits, k), fi[k], f"{ch} fit {k}")
    assert fits.line_names == [n.decode() if isinstance(n, bytes) else n for n in fi["line_name"]]


@pytest.mark.parametrize("ch", CHANNELS)
def test_stage_by_stage_and_one_shots_equal_the_command(cli_files, inputs, ch):
    _, out = cli_files
    d = inputs[ch]
    cal = exospec.calibrate(d["counts"], d["exposure_s"], d["temperature_c"], d["calibration"], channel=ch,
                            altitude_km=d["altitude_km"], threads=2)
    c = read_group(out, f"calibrated/{ch}")
    assert_identical(cal.radiance, c["radiance"], "radiance")
    assert_identical(cal.quality, c["quality"], "quality")
    den = exospec.denoise(cal, d["calibration"], channel=ch)
    assert_identical(den.radiance, read_group(out, f"denoised/{ch}")["radiance"], "denoised")
    fi = read_group(out, f"fit/{ch}")
    for denoised in (den, den.radiance, None):  # None: fit() denoises first
        fits = exospec.fit(cal, d["calibration"], channel=ch, denoised=denoised, altitude_km=d["altitude_km"])
        assert_identical(fits.brightness, fi["brightness"], "brightness")
        assert_identical(fits.brightness_sigma, fi["brightness_sigma"], "sigma")
    # From the output file's own arrays (an h5py group as the mapping).
    with h5py.File(out, "r") as f:
        fits = exospec.fit(f[f"calibrated/{ch}"], d["calibration"], channel=ch,
                           denoised=f[f"denoised/{ch}/radiance"][...], altitude_km=d["altitude_km"])
    # Without the count model (scale, offset) the fit weights by the variance alone.
    assert np.all(np.isfinite(fits.brightness[fits.status == 0]))


def test_profile_equals_the_command(cli_files, inputs):
    _, out = cli_files
    for ch in CHANNELS:
        d = inputs[ch]
        fits = exospec.Channel(ch, d["calibration"]).process(d["counts"], d["exposure_s"], d["temperature_c"],
                                                             altitude_km=d["altitude_km"])[2]
        p = exospec.profile(d["altitude_km"], fits, channel=ch, threads=1)
        ref = read_group(out, f"profile/{ch}")
        assert p.line_names == [n.decode() if isinstance(n, bytes) else n for n in ref["line_name"]]
        for k, v in ref.items():
            if k != "line_name":
                assert_identical(getattr(p, k), v, f"{ch} profile {k}")
        # The arrays form, with the scans given as numbers: the same.
        scan = np.repeat(np.arange(len(p.scan_first)), p.scan_count)
        q = exospec.profile(d["altitude_km"], fits.brightness, fits.brightness_sigma, fits.status,
                            lines=fits.line_names, channel=ch, scan=scan)
        assert_identical(q.temperature_K, p.temperature_K, "T")


def test_results_do_not_depend_on_threads(inputs):
    d = inputs["fuv"]
    a = exospec.Channel("fuv", d["calibration"], threads=1).process(d["counts"], d["exposure_s"], d["temperature_c"],
                                                                    altitude_km=d["altitude_km"])
    b = exospec.Channel("fuv", d["calibration"], threads=2).process(d["counts"], d["exposure_s"], d["temperature_c"],
                                                                    altitude_km=d["altitude_km"])
    assert_identical(a[0].variance, b[0].variance, "variance")
    assert_identical(a[2].brightness, b[2].brightness, "brightness")
    assert_identical(a[2].brightness_sigma, b[2].brightness_sigma, "sigma")


def test_one_spectrum_is_a_batch_of_one(inputs):
    d = inputs["fuv"]
    ch = exospec.Channel("fuv", d["calibration"], threads=1)
    one = ch.calibrate(d["counts"][7], d["exposure_s"][7], float(d["temperature_c"][7]))
    batch = ch.calibrate(d["counts"][7:8], d["exposure_s"][7:8], d["temperature_c"][7:8])
    assert one.radiance.shape == (ch.pixels,)
    assert_identical(one.radiance, batch.radiance[0], "radiance")
    assert_identical(one.variance, batch.variance[0], "variance")
    f1 = ch.fit(one)
    assert f1.brightness.shape == (len(ch.line_names),)
    assert_identical(f1.brightness, ch.fit(batch).brightness[0], "brightness")


def test_no_copy_where_the_dtype_fits_and_conversion_where_not(inputs):
    from exospec import _core
    d = inputs["fuv"]
    counts = d["counts"][:50]
    for arr, kind in ((counts, "counts"), (d["exposure_s"], "per_row"),
                      (np.zeros((3, 4), np.float32), "radiance"), (np.zeros(5, np.uint8), "quality")):
        assert np.shares_memory(_core._stage_array(arr, kind), arr), f"{kind}: {arr.dtype} was copied"
    small = counts.astype(np.uint16)
    assert not np.shares_memory(_core._stage_array(small, "counts"), small)
    ch = exospec.Channel("fuv", d["calibration"], threads=1)
    ref = ch.calibrate(counts, d["exposure_s"][:50], d["temperature_c"][:50])
    other = ch.calibrate(small, d["exposure_s"][:50].astype(np.float32), d["temperature_c"][:50])
    assert_identical(other.radiance, ref.radiance, "radiance from uint16 counts")
    f = ch.fit(ref.radiance, ref.variance, ref.quality, scale=ref.scale, offset=ref.offset)
    g = ch.fit(ref.radiance.astype(np.float64), ref.variance, ref.quality, scale=ref.scale, offset=ref.offset)
    assert_identical(g.brightness, f.brightness, "float64 radiance (converted to the file's float32)")


def test_lines_by_name_or_given(inputs):
    d = inputs["fuv"]
    names = ["Mg II 279.553", "Mg I 285.213"]
    by_name = exospec.Channel("fuv", d["calibration"], lines=names, threads=1)
    assert by_name.line_names == names
    cat = {l.name: l for l in exospec.catalogue("fuv")}
    given = [exospec.Line(n, cat[n].wavelength_nm, cat[n].components) for n in names]
    by_obj = exospec.Channel("fuv", d["calibration"], lines=given, threads=1)
    a = by_name.process(d["counts"], d["exposure_s"], d["temperature_c"], altitude_km=d["altitude_km"])[2]
    b = by_obj.process(d["counts"], d["exposure_s"], d["temperature_c"], altitude_km=d["altitude_km"])[2]
    assert a.brightness.shape == (len(d["counts"]), 2)
    assert_identical(a.brightness, b.brightness, "brightness")
    # The Mg blend fitted alone is the same window as in the full fit: its brightness
    # agrees with the full fit's within a small part of its sigma (the tied shift moves).
    full = exospec.Channel("fuv", d["calibration"]).process(d["counts"], d["exposure_s"], d["temperature_c"],
                                                           altitude_km=d["altitude_km"])[2]
    j = full.line_names.index("Mg I 285.213")
    ok = (a.status[:, 1] == 0) & (full.status[:, j] == 0)
    dev = (a.brightness[ok, 1] - full.brightness[ok, j]) / full.brightness_sigma[ok, j]
    assert ok.sum() > 500 and np.median(np.abs(dev)) < 0.1
    # A line of one's own: a single Gaussian at a wavelength with no emission gives ~0 R.
    empty = exospec.Channel("fuv", d["calibration"], lines=[exospec.Line("none 240", 240.0)], threads=1)
    f = empty.process(d["counts"], d["exposure_s"], d["temperature_c"], altitude_km=d["altitude_km"])[2]
    pulls = f.brightness[f.status == 0] / f.brightness_sigma[f.status == 0]
    assert abs(np.mean(pulls)) < 0.2 and 0.8 < np.std(pulls) < 1.2


def test_line_model_is_the_pixel_integrated_gaussian(inputs):
    from math import erf, sqrt
    cal = inputs["fuv"]["calibration"]
    m = exospec.line_model(cal, lines=["Mg I 285.213"], brightness=[100.0], center_nm=[285.3], fwhm_nm=[1.5])
    c = cal.wavelength_coeffs
    x = np.arange(cal.pixels + 1) - 0.5
    edges = np.polynomial.polynomial.polyval(x, c)
    s = 1.5 / (2 * sqrt(2 * np.log(2)))
    cdf = np.array([0.5 * (1 + erf((e - 285.3) / (s * sqrt(2)))) for e in edges])
    ref = 100.0 * np.diff(cdf) / np.diff(edges)
    assert np.max(np.abs(m[0] - ref)) < 1e-9 * 100
    assert abs(np.sum(m[0] * np.diff(edges)) - 100.0) < 1e-6


def test_profile_shape_and_mass():
    assert exospec.line_mass_amu("Mg I 285.213") == pytest.approx(24.305, abs=0.01)
    assert np.isnan(exospec.line_mass_amu("Xx 1"))
    z = np.array([0.0, 100.0, 1000.0])
    s = exospec.profile_shape(1000.0, z, mass_amu=24.305)
    assert s[0] == pytest.approx(1.0) and 1.0 > s[1] > s[2] > 0.0
    hot = exospec.profile_shape(5000.0, z, mass_amu=24.305)
    assert hot[2] > s[2]  # a hotter exosphere falls off more slowly


def test_the_gil_is_released(inputs):
    d = inputs["fuv"]
    ch = exospec.Channel("fuv", d["calibration"], threads=1)
    counts = np.tile(d["counts"], (4, 1))
    n = len(counts)
    args = (counts, np.tile(d["exposure_s"], 4), np.tile(d["temperature_c"], 4))
    t0 = time.perf_counter()
    ch.process(*args)
    single = time.perf_counter() - t0
    started = threading.Event()

    def work():
        started.set()
        ch.process(*args)

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    stamps = [time.perf_counter()]
    while t.is_alive():
        stamps.append(time.perf_counter())
    t.join()
    gaps = np.diff(stamps)
    # The main thread ran all along: no gap near the call's length.
    assert len(stamps) > 100 and gaps.max() < 0.5 * single, (n, single, gaps.max())
