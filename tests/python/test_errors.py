"""Bad arrays raise a clear exception; bad files and options raise the command's one-line error."""
import os

import h5py
import numpy as np
import pytest

import exospec
from conftest import cli


@pytest.fixture(scope="module")
def fuv(cli_files):
    src, _ = cli_files
    d = exospec.read_input(src, "fuv", count=40)
    return d, exospec.Channel("fuv", d["calibration"], threads=1)


def test_wrong_dtype(fuv):
    d, ch = fuv
    with pytest.raises(TypeError, match="counts: expected integers.*float64"):
        ch.calibrate(d["counts"].astype(np.float64), d["exposure_s"], d["temperature_c"])
    with pytest.raises(TypeError, match="exposure_s: expected real numbers.*complex"):
        ch.calibrate(d["counts"], d["exposure_s"].astype(complex), d["temperature_c"])
    cal = ch.calibrate(d["counts"], d["exposure_s"], d["temperature_c"])
    with pytest.raises(TypeError, match="quality: expected integers"):
        ch.fit(cal.radiance, cal.variance, cal.quality.astype(np.float32))
    with pytest.raises(TypeError, match="expected an array, got None"):
        ch.calibrate(None, d["exposure_s"], d["temperature_c"])
    with pytest.raises(ValueError, match="counts: values outside 0..4294967295"):
        ch.calibrate(d["counts"].astype(np.int64) - 1, d["exposure_s"], d["temperature_c"])


def test_wrong_shape(fuv):
    d, ch = fuv
    with pytest.raises(ValueError, match="counts: 1023 pixels per spectrum, the calibration has 1024"):
        ch.calibrate(np.ascontiguousarray(d["counts"][:, :-1]), d["exposure_s"], d["temperature_c"])
    with pytest.raises(ValueError, match="counts: expected 1-D .* or 2-D .*, got 3-D"):
        ch.calibrate(d["counts"][None], d["exposure_s"], d["temperature_c"])
    with pytest.raises(ValueError, match=r"exposure_s: expected one value per spectrum \(40\)"):
        ch.calibrate(d["counts"], d["exposure_s"][:-1], d["temperature_c"])
    cal = ch.calibrate(d["counts"], d["exposure_s"], d["temperature_c"])
    with pytest.raises(ValueError, match="variance: shape .* differs from radiance's"):
        ch.fit(cal.radiance, cal.variance[:-1], cal.quality)
    with pytest.raises(ValueError, match="altitude_km: expected one value per spectrum"):
        ch.fit(cal, altitude_km=d["altitude_km"][:3])
    with pytest.raises(ValueError, match="brightness_sigma: expected spectra x lines"):
        exospec.profile(d["altitude_km"], np.zeros((40, 2)), np.ones((40, 3)), lines=["Mg I 285.213", "Al I 308.22"])


def test_non_contiguous(fuv):
    d, ch = fuv
    with pytest.raises(ValueError, match=r"counts: the array is not C-contiguous \(numpy.ascontiguousarray"):
        ch.calibrate(np.asfortranarray(d["counts"]), d["exposure_s"], d["temperature_c"])
    cal = ch.calibrate(d["counts"], d["exposure_s"], d["temperature_c"])
    wide = np.repeat(cal.radiance, 2, axis=1)
    with pytest.raises(ValueError, match="radiance: the array is not C-contiguous"):
        ch.fit(wide[:, ::2], cal.variance, cal.quality)


def test_nan_where_a_value_is_needed(fuv):
    d, ch = fuv
    cal = ch.calibrate(d["counts"], d["exposure_s"], d["temperature_c"])
    r = cal.radiance.copy()
    good = np.argwhere(cal.quality == 0)[5]
    r[tuple(good)] = np.nan
    with pytest.raises(ValueError, match=f"radiance: not a finite value .* at spectrum {good[0]}, pixel {good[1]}"):
        ch.fit(r, cal.variance, cal.quality)
    with pytest.raises(ValueError, match="variance: not a finite value"):
        ch.denoise(cal.radiance, np.zeros_like(cal.variance), cal.quality)
    # NaN where the quality flags the pixel is what calibrate writes there: accepted.
    q = cal.quality.copy()
    q[tuple(good)] = 1
    ch.fit(r, cal.variance, q)
    # A NaN exposure is a flagged spectrum, as in a file.
    e = d["exposure_s"].copy()
    e[3] = np.nan
    c2 = ch.calibrate(d["counts"], e, d["temperature_c"])
    assert np.all(c2.quality[3] & 4) and np.all(np.isnan(c2.radiance[3]))


def test_mismatched_or_bad_tables(fuv):
    d, _ = fuv
    c = d["calibration"]
    t = dict(wavelength_coeffs=c.wavelength_coeffs, dark_rate=c.dark_rate, flat=c.flat, sensitivity=c.sensitivity,
             bad_pixel=c.bad_pixel, dead_time_s=c.dead_time_s)
    exospec.Channel("fuv", exospec.Calibration(**t))
    with pytest.raises(ValueError, match=r"calibration/flat: has 1023 values, expected 1024 \(pixels\)"):
        exospec.Channel("fuv", exospec.Calibration(**{**t, "flat": c.flat[:-1]}))
    s = c.sensitivity.copy()
    s[np.argmin(c.bad_pixel)] = np.nan
    with pytest.raises(ValueError, match="calibration/sensitivity: non-positive or non-finite value at usable pixel"):
        exospec.Channel("fuv", exospec.Calibration(**{**t, "sensitivity": s}))
    with pytest.raises(ValueError, match="calibration/wavelength_coeffs: wavelengths do not run one way"):
        exospec.Channel("fuv", exospec.Calibration(**{**t, "wavelength_coeffs": [150.0, 0.15, -0.001]}))
    with pytest.raises(ValueError, match="attribute 'dead_time_s' is negative"):
        exospec.Channel("fuv", exospec.Calibration(**{**t, "dead_time_s": -1.0}))
    ch = exospec.Channel("fuv", c)
    with pytest.raises(ValueError, match="the calibration has 1024"):
        ch.calibrate(np.zeros((2, 1000), np.uint32), 8.0, 20.0)


def test_bad_arguments(fuv):
    d, _ = fuv
    with pytest.raises(ValueError, match="channel: 'nuv' is not a channel"):
        exospec.Channel("nuv", d["calibration"])
    with pytest.raises(exospec.ConfigError, match="stages"):
        exospec.Channel("fuv", d["calibration"], stages=["calibrate", "smooth"])
    with pytest.raises(ValueError, match="lines: 'H I 121.567' is not a fuv line of the catalogue"):
        exospec.Channel("fuv", d["calibration"], lines=["H I 121.567"])
    with pytest.raises(ValueError, match="fractions of the components sum to"):
        exospec.Line("x", 200.0, [exospec.LineComponent(200.0, 0.5)])
    with pytest.raises(ValueError, match="threads: must be >= 0"):
        exospec.Channel("fuv", d["calibration"], threads=-1)


def error_line(*args):
    r = cli(*args, check=False)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exospec: error: "), r.stderr
    return lines[0][len("exospec: error: "):]


def test_file_errors_carry_the_commands_message(tmp_path, cli_files):
    src, out = cli_files
    missing = tmp_path / "missing.h5"
    with pytest.raises(exospec.FileNotFound) as e:
        exospec.run(missing, tmp_path / "o.h5")
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, exospec.Error)
    assert str(e.value) == error_line("run", missing, "-o", tmp_path / "o.h5")
    with pytest.raises(FileNotFoundError):
        exospec.info(missing)
    with pytest.raises(FileNotFoundError):
        exospec.read_input(missing, "fuv")

    text = tmp_path / "text.h5"
    text.write_text("not HDF5\n")
    with pytest.raises(exospec.FileError) as e:
        exospec.run(text, tmp_path / "o.h5")
    assert not isinstance(e.value, FileNotFoundError)
    assert str(e.value) == error_line("run", text, "-o", tmp_path / "o.h5")

    broken = tmp_path / "broken.h5"
    with h5py.File(src, "r") as f, h5py.File(broken, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        for grp in ("raw", "calibration", "geometry"):
            f.copy(grp, g)
        del g["raw/fuv/exposure_s"]
    with pytest.raises(exospec.SchemaError) as e:
        exospec.run(broken, tmp_path / "o.h5")
    assert isinstance(e.value, OSError)
    assert str(e.value) == error_line("run", broken, "-o", tmp_path / "o.h5")
    assert "/raw/fuv/exposure_s" in str(e.value)

    cfg = tmp_path / "bad.toml"
    cfg.write_text("[run]\nblock_rows = -3\n")
    with pytest.raises(exospec.ConfigError) as e:
        exospec.run(src, tmp_path / "o.h5", config=cfg)
    assert isinstance(e.value, ValueError)
    assert str(e.value) == error_line("run", src, "-o", tmp_path / "o.h5", "--config", cfg)
    with pytest.raises(exospec.ConfigError, match="products"):
        exospec.run(src, tmp_path / "o.h5", products="calibrated,spectra")

    with pytest.raises(exospec.FileError, match="exists"):
        exospec.run(src, out)  # no overwrite
    assert not os.path.exists(tmp_path / "o.h5")
    assert sorted(os.listdir(tmp_path)) == ["bad.toml", "broken.h5", "text.h5"]


def test_interrupt_and_callback_errors_leave_no_output(tmp_path, cli_files):
    src, _ = cli_files
    target = tmp_path / "o.h5"

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        exospec.run(src, target, progress=interrupt)
    seen = []

    def fail(done, total):
        seen.append((done, total))
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        exospec.simulate(tmp_path / "s.h5", spectra=3000, progress=fail)
    assert seen and seen[0][1] == 3000
    assert os.listdir(tmp_path) == []
    summary = exospec.run(src, target, threads=1, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (600, 600) and summary["spectra"] == 600 and target.exists()


def test_ctrl_c_stops_a_run_and_leaves_no_output(tmp_path):
    import signal
    import subprocess
    import sys
    src = tmp_path / "big.h5"
    exospec.simulate(src, spectra=8000, seed=2, channels=["fuv"])
    code = (
        "import sys, exospec\n"
        "def progress(done, total):\n"
        "    if done < total:\n"
        "        print('block', done, flush=True)\n"
        "try:\n"
        f"    exospec.run({str(src)!r}, {str(tmp_path / 'out.h5')!r}, threads=1, progress=progress)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(3)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith("block")
    p.send_signal(signal.SIGINT)
    rest = p.stdout.read()
    assert p.wait(timeout=60) == 3 and "interrupted" in rest
    assert sorted(os.listdir(tmp_path)) == ["big.h5"]
