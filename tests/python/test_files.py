"""run, simulate, info and default_config give what the command gives."""
import json

import h5py
import numpy as np

import exospec
from conftest import assert_identical, cli


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[...]) if isinstance(o, h5py.Dataset) else None)
        attrs = {k: v for k, v in f.attrs.items()}
    return out, attrs


def assert_same_files(a, b, skip_attrs=("created_utc",)):
    da, aa = datasets(a)
    db, ab = datasets(b)
    assert sorted(da) == sorted(db)
    for k in da:
        assert_identical(da[k], db[k], k)
    for k in set(aa) | set(ab):
        if k not in skip_attrs:
            assert k in aa and k in ab, k
            assert np.array_equal(np.asarray(aa[k]), np.asarray(ab[k])), k


def test_simulate_and_run_equal_the_command(tmp_path, cli_files):
    src, out = cli_files
    s = exospec.simulate(tmp_path / "in.h5", spectra=600, seed=11, threads=1)
    assert s["spectra"] == 600 and s["channels"] == ["euv", "fuv"] and s["seed"] == 11
    assert_same_files(tmp_path / "in.h5", src)
    r = exospec.run(src, tmp_path / "out.h5", threads=1)
    assert r["spectra"] == 600 and r["channels"] == ["euv", "fuv"]
    assert_same_files(tmp_path / "out.h5", out)
    # The summary is the command's --json-report (but for the times).
    cli("run", src, "-o", tmp_path / "cli.h5", "--threads", 1, "-q", "--json-report", tmp_path / "r.json")
    ref = json.loads((tmp_path / "r.json").read_text())
    for k in ("spectra", "channels", "flagged_pixels", "fit_status", "scans", "profile_status"):
        assert r[k] == ref[k], k
    assert sorted(r["seconds"]) == sorted(ref["seconds"])


def test_run_options(tmp_path, cli_files):
    src, _ = cli_files
    exospec.run(src, tmp_path / "a.h5", stages=["calibrate", "denoise", "fit"], products="fit",
                channels=["fuv"], threads=2)
    cli("run", src, "-o", tmp_path / "b.h5", "--stages", "calibrate,denoise,fit", "--products", "fit",
        "--channels", "fuv", "-q")
    assert_same_files(tmp_path / "a.h5", tmp_path / "b.h5")
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert sorted(f) == ["fit", "geometry"] and list(f["fit"]) == ["fuv"]
    # overwrite replaces; the configuration as a file or as its text.
    cfg = tmp_path / "c.toml"
    cfg.write_text("[run]\nstages = [\"calibrate\"]\n")
    exospec.run(src, tmp_path / "a.h5", config=cfg, overwrite=True)
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert sorted(f) == ["calibrated", "geometry"]
        text = f.attrs["config"]
    ch = exospec.Channel("fuv", exospec.read_calibration(src, "fuv"), config=text)
    assert ch.stages == ["calibrate"]


def test_info_equals_the_commands_json(cli_files):
    for path in cli_files:
        ref = json.loads(cli("info", "--json", path).stdout)
        assert exospec.info(path) == ref
        assert exospec.info(str(path))["kind"] == ("input" if path.name == "in.h5" else "output")


def test_default_config_is_the_commands():
    for which in ("run", "simulate", "lines"):
        assert exospec.default_config(which) == cli("config", "--defaults", which).stdout
    assert exospec.__version__ == cli("--version").stdout.strip().split()[-1]
