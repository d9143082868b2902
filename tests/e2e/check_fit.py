"""The fit stage against the simulator's truth (h5py + numpy): the /fit
objects of the contract, every fit converged, and pulls (fit - truth) / sigma
per line on the limb-scan and flyby presets, both channels, particle hits
included, bright, faint, blended and undetected alike (issues 5 and 22).

Bounds from the sample size (docs/TESTING.md). With N = 10,000 spectra the
standard error of a pull sd is 1 / sqrt(2 N) = 0.0071 and that of a median
1.2533 / sqrt(N) = 0.0125. The expected values are not all 0 and 1: faint
lines have a median of -0.03 to -0.08 (the skew of Poisson counts) and an
sd of 1.02-1.06 (a sigma from the neighbours' reference, itself noisy;
docs/FIT.md). So each line's median and sd are asserted at the value that
docs/FIT.md documents (the table this script prints, EXPECTED below) within
4 standard errors, and the median's absolute value is at most 0.1 (issue 5).
One line alone sees a sigma 3 % off (0.03 > 0.028); the mean over the
lines of a channel and preset (4 EUV, 8 FUV) of (sd - documented sd) has a
standard error of 0.0071 / sqrt(4 or 8) = 0.0035 / 0.0025, so a sigma 2 %
off in every line of a channel (-0.02) fails its bound of 4 SE = 0.014 /
0.010.
Only /fit is written (--products fit), so the files stay small.
"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

exe, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
failures = []
N = 10000
K = 4.0  # standard errors
SE_SD, SE_MEDIAN = 1.0 / np.sqrt(2.0 * N), 1.2533 / np.sqrt(N)
# docs/FIT.md's table (pull median, pull sd), as this script prints it (seed 21).
EXPECTED = {
    ("limb-scan", "euv"): {"He I 58.433": (-0.032, 1.019), "H I 102.572": (+0.003, 1.008),
                           "H I 121.567": (+0.018, 1.004), "O I 130.4": (-0.065, 1.055)},
    ("limb-scan", "fuv"): {"C I 156.1": (-0.081, 1.052), "C I 165.7": (-0.049, 1.044),
                           "S I 180.73": (-0.028, 1.044), "S I 182.62": (-0.049, 1.040),
                           "Mg II 279.553": (-0.054, 1.022), "Mg I 285.213": (-0.030, 1.009),
                           "Al I 308.22": (-0.068, 1.063), "Al I 309.28": (-0.052, 1.041)},
    ("flyby", "euv"): {"He I 58.433": (-0.044, 1.010), "H I 102.572": (-0.019, 1.010),
                       "H I 121.567": (+0.019, 0.990), "O I 130.4": (-0.057, 1.030)},
    ("flyby", "fuv"): {"C I 156.1": (-0.082, 1.035), "C I 165.7": (-0.046, 1.038),
                       "S I 180.73": (-0.024, 1.020), "S I 182.62": (-0.048, 1.024),
                       "Mg II 279.553": (-0.066, 1.029), "Mg I 285.213": (-0.062, 1.002),
                       "Al I 308.22": (-0.051, 1.048), "Al I 309.28": (-0.054, 1.038)},
}
table = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


for preset in ["limb-scan", "flyby"]:
    inp, out = os.path.join(work, preset + ".h5"), os.path.join(work, preset + "_out.h5")
    subprocess.run([exe, "simulate", "-o", inp, "--preset", preset, "--spectra", str(N), "--seed", "21",
                    "--quiet"], check=True)
    subprocess.run([exe, "run", inp, "-o", out, "--quiet", "--products", "fit"], check=True)
    fi, fo = h5py.File(inp, "r"), h5py.File(out, "r")
    for ch in ["euv", "fuv"]:
        g = fo[f"fit/{ch}"]
        names = [n.decode() if isinstance(n, bytes) else n for n in g["line_name"][:]]
        truth_names = [n.decode() if isinstance(n, bytes) else n for n in fi[f"truth/{ch}/line_name"][:]]
        check(names == truth_names, f"{preset} {ch}: line names in catalogue order")
        L = len(names)
        for ds, dtype, units in [("brightness", "float64", "R"), ("brightness_sigma", "float64", "R"),
                                 ("center_nm", "float64", "nm"), ("fwhm_nm", "float64", "nm"),
                                 ("chi2_reduced", "float32", "1"), ("status", "uint8", "1")]:
            check(str(g[ds].dtype) == dtype and g[ds].shape == (N, L) and g[ds].attrs["units"] == units,
                  f"{preset} {ch}: /fit/{ch}/{ds} {dtype} N x L {units}")
        B, S, st = g["brightness"][:], g["brightness_sigma"][:], g["status"][:]
        T = fi[f"truth/{ch}/line_brightness"][:]
        conv = (st == 0).mean()
        check(conv >= 0.999, f"{preset} {ch}: {conv:.2%} of fits converged (>= 99.9 %)")
        chi = g["chi2_reduced"][:][st == 0]
        check(0.8 < np.median(chi) < 1.2, f"{preset} {ch}: median reduced chi2 {np.median(chi):.2f}")
        expected = EXPECTED[(preset, ch)]
        d_sd = []
        for j, name in enumerate(names):
            ok = st[:, j] == 0
            pull = ((B[:, j] - T[:, j]) / S[:, j])[ok]
            med, sd = np.median(pull), pull.std()
            snr = np.median(T[:, j] / S[:, j])
            e_med, e_sd = expected[name]
            check(abs(med - e_med) <= K * SE_MEDIAN and abs(med) <= 0.1 and abs(sd - e_sd) <= K * SE_SD,
                  f"{preset} {ch}: {name:<14} S/N {snr:6.1f}  pull median {med:+.3f} sd {sd:.3f} "
                  f"(documented {e_med:+.3f} / {e_sd:.3f} +- {K * SE_MEDIAN:.3f} / {K * SE_SD:.3f})")
            d_sd.append(sd - e_sd)
            table.append(f"| {preset} | {ch.upper()} | {name} | {snr:.1f} | {med:+.3f} | {sd:.3f} | "
                         f"{pull.mean():+.3f} |")
        se_pool = SE_SD / np.sqrt(len(d_sd))
        check(abs(np.mean(d_sd)) <= K * se_pool,
              f"{preset} {ch}: mean over {len(d_sd)} lines of (pull sd - documented) {np.mean(d_sd):+.4f}, "
              f"|.| <= {K * se_pool:.4f} (4 SE)")

print("table | preset | channel | line | S/N (median B/sigma) | pull median | pull sd | pull mean |")
for row in table:
    print("table " + row)

# A wavelength shift the calibration does not know (0.15 nm, every line):
# tied (the default), Lyman-alpha measures it and the other EUV lines take
# it; fixed at the catalogue, Lyman-alpha's brightness is biased.
shift_cfg = os.path.join(work, "shift.toml")
with open(shift_cfg, "w") as fh:
    fh.write("[instrument.euv]\nline_shift_nm = 0.15\n")
inp = os.path.join(work, "shifted.h5")
subprocess.run([exe, "simulate", "-o", inp, "--spectra", "4000", "--seed", "22", "--channels", "euv",
                "--config", shift_cfg, "--quiet"], check=True)
SHIFTED_TIED = {"He I 58.433": (-0.036, 1.018), "H I 102.572": (-0.027, 1.016),
                "H I 121.567": (-0.013, 0.985), "O I 130.4": (-0.047, 1.022)}  # docs/FIT.md, 4000 spectra
SHIFTED_FIXED_MEDIAN = -0.846
fixed_cfg = os.path.join(work, "fixed.toml")
with open(fixed_cfg, "w") as fh:
    fh.write('[fit.euv]\nshift = "fixed"\n')
fi = h5py.File(inp, "r")
T = fi["truth/euv/line_brightness"][:]
for mode, extra in [("tied", []), ("fixed", ["--config", fixed_cfg])]:
    out = os.path.join(work, f"shifted_{mode}.h5")
    subprocess.run([exe, "run", inp, "-o", out, "--quiet", "--products", "fit"] + extra, check=True)
    g = h5py.File(out, "r")["fit/euv"]
    names = [n.decode() if isinstance(n, bytes) else n for n in g["line_name"][:]]
    B, S, C, st = g["brightness"][:], g["brightness_sigma"][:], g["center_nm"][:], g["status"][:]
    rest = g["line_wavelength_nm"][:]
    check((st == 0).mean() >= 0.999, f"shifted {mode}: {(st == 0).mean():.2%} of fits converged")
    j = names.index("H I 121.567")
    pull_la = (B[:, j] - T[:, j]) / S[:, j]
    n_shift = len(pull_la)
    se_sd, se_med = 1.0 / np.sqrt(2.0 * n_shift), 1.2533 / np.sqrt(n_shift)
    if mode == "tied":
        d = C[:, j] - rest[j]
        check(abs(np.median(d) - 0.15) < 0.002, f"shifted tied: Lyman-alpha centre {np.median(d):+.4f} nm "
                                                 f"from rest (truth +0.15), spread {d.std():.4f}")
        for k, name in enumerate(names):
            dk = C[:, k] - rest[k]
            pull = ((B[:, k] - T[:, k]) / S[:, k])[st[:, k] == 0]
            e_med, e_sd = SHIFTED_TIED[name]
            check(abs(np.median(dk) - 0.15) < 0.002 and abs(np.median(pull) - e_med) <= K * se_med
                  and abs(pull.std() - e_sd) <= K * se_sd,
                  f"shifted tied: {name:<14} shift {np.median(dk):+.4f}  pull median {np.median(pull):+.3f} "
                  f"sd {pull.std():.3f} (documented {e_med:+.3f} / {e_sd:.3f} +- {K * se_med:.3f} / "
                  f"{K * se_sd:.3f})")
    else:
        # docs/FIT.md: fixed at the catalogue, Lyman-alpha's pull median is
        # -0.85 (biased: the shift is real), within 4 SE.
        check(abs(np.median(pull_la) - SHIFTED_FIXED_MEDIAN) <= K * se_med,
              f"shifted fixed: Lyman-alpha pull median {np.median(pull_la):+.3f} (documented "
              f"{SHIFTED_FIXED_MEDIAN:+.3f} +- {K * se_med:.3f}: biased, the shift is real)")

# exospec report: fitted against true brightness in altitude bins, against
# numpy's own averages of the same file.
inp, out = os.path.join(work, "limb-scan.h5"), os.path.join(work, "limb-scan_out.h5")
r = subprocess.run([exe, "report", out, "--truth", inp, "--bins", "4", "--lines", "H I 121.567"],
                   capture_output=True, text=True, check=True)
rows = [l.split() for l in r.stdout.splitlines()[1:]]
check(len(rows) == 4, f"report: 4 altitude bins for Lyman-alpha ({len(rows)})")
fo, fi = h5py.File(out, "r"), h5py.File(inp, "r")
alt = fo["geometry/tangent_altitude_km"][:]
j = [n.decode() if isinstance(n, bytes) else n for n in fo["fit/euv/line_name"][:]].index("H I 121.567")
b, t = fo["fit/euv/brightness"][:, j], fi["truth/euv/line_brightness"][:, j]
edges = np.linspace(alt.min(), alt.max(), 5)
for k, row in enumerate(rows):
    sel = (alt >= edges[k]) & ((alt < edges[k + 1]) if k < 3 else (alt <= edges[k + 1]))
    fitted, err, truth = float(row[-4]), float(row[-2]), float(row[-1])
    check(abs(fitted - b[sel].mean()) < 0.01 and abs(truth - t[sel].mean()) < 0.01,
          f"report bin {k}: {fitted:.2f} / {truth:.2f} as numpy averages the file")
    check(abs(fitted - truth) < 4 * err, f"report bin {k}: fitted {fitted:.2f} +- {err:.2f} "
                                         f"against truth {truth:.2f}")
# Without --truth: the same fitted values, and no truth column.
r = subprocess.run([exe, "report", out, "--bins", "4", "--lines", "H I 121.567"],
                   capture_output=True, text=True, check=True)
alone = [l.split() for l in r.stdout.splitlines()]
check("truth" not in r.stdout and [row[:-1] for row in rows] == alone[1:],
      f"report without --truth: the fitted columns only ({alone[:2]})")

if failures:
    print(f"{len(failures)} failures")
    sys.exit(1)
print("fit: contract, convergence and pulls as stated")
