"""Shared fixtures of the Python package's tests (run by ctest: tests/CMakeLists.txt).

PYTHONPATH points at the build tree's package (build/python) and EXOSPEC_CLI at
the exospec command of the same build, whose results the package must equal.
"""
import os
import pathlib
import subprocess

import h5py
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def cli_path():
    p = os.environ.get("EXOSPEC_CLI", str(ROOT / "build" / "cli" / "exospec"))
    if not os.path.exists(p):
        pytest.fail(f"the exospec command is not at {p} (set EXOSPEC_CLI)")
    return p


def cli(*args, check=True):
    """Runs the exospec command; returns the CompletedProcess."""
    r = subprocess.run([cli_path(), *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"exospec {' '.join(map(str, args))} failed: {r.stderr}")
    return r


@pytest.fixture(scope="session")
def cli_files(tmp_path_factory):
    """A 600-spectrum limb-scan file (both channels, with truth) and the command's default run of it."""
    d = tmp_path_factory.mktemp("cli")
    src, out = d / "in.h5", d / "out.h5"
    cli("simulate", "-o", src, "--spectra", 600, "--seed", 11, "-q")
    cli("run", src, "-o", out, "--threads", 2, "-q")
    return src, out


def read_group(path, group):
    """Every dataset of a group as {name: array}."""
    with h5py.File(path, "r") as f:
        g = f[group]
        return {k: g[k][...] for k in g if isinstance(g[k], h5py.Dataset)}


def assert_identical(a, b, what):
    """The same dtype, shape and bits (NaN where NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    if a.dtype.kind == "O":
        assert list(a) == list(b), what
        return
    assert a.tobytes() == b.tobytes(), f"{what}: {np.count_nonzero(a != b)} values differ"
