"""The README's "From Python" example and examples/quicklook.py run as written."""
import os
import pathlib
import re
import subprocess
import sys

from conftest import ROOT


def readme_block():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python"):]
    section = section[:section.index("\n## ", 3)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    return blocks[0]


def run_python(args, cwd):
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_readme_from_python_runs(tmp_path):
    (tmp_path / "example.py").write_text(readme_block())
    out = run_python(["example.py"], tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("1000 spectra in ")
    assert re.match(r"Mg I 285.213 in spectrum 0: [-\d.]+ \+- [\d.]+ R$", lines[1]), lines[1]
    t = re.match(r"T\(Mg\) = (\d+) K \(median of (\d+) scans\)$", lines[2])
    assert t, lines[2]
    import h5py
    with h5py.File(tmp_path / "scan.h5", "r") as f:
        names = [n.decode() for n in f["truth/fuv/line_name"][...]]
        truth = f["truth/fuv/profile_temperature_K"][names.index("Mg I 285.213")]
    assert int(t.group(2)) >= 10 and abs(int(t.group(1)) - truth) < 0.1 * truth, (lines[2], truth)
    for png in ("spectrum.png", "overview.png", "profile.png"):
        assert (tmp_path / png).stat().st_size > 10_000, png


def test_quicklook_example_runs(tmp_path):
    out = run_python([str(ROOT / "examples" / "quicklook.py"), str(tmp_path / "q"), "--spectra", "600",
                      "--threads", "2"], tmp_path)
    assert "run: 600 spectra x euv, fuv" in out
    rows = [l for l in out.splitlines() if l.startswith("Mg I 285.213")]
    assert len(rows) == 1
    fields = rows[0].split()
    t, truth = float(fields[-2]), float(fields[-1])
    assert abs(t - truth) < 0.3 * truth, rows[0]  # a few scans' median against the simulator's truth
    for png in ("spectrum.png", "overview.png", "profile.png"):
        assert (tmp_path / "q" / png).stat().st_size > 10_000, png
