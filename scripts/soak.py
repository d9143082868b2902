#!/usr/bin/python3
"""Soak of `exospec run` (issue 20, point 4; docs/TESTING.md).

    /usr/bin/python3 scripts/soak.py [--exospec build/cli/exospec] [--workdir /tmp/exospec-soak]
                                     [--spectra 1000000] [--block-a 1024 --threads-a 2]
                                     [--block-b 700 --threads-b 1] [--interval 1.0]

1. Simulates an input of --spectra spectra, both channels (`exospec simulate`,
   seed --seed; kept in the work folder and reused when it is already there
   with the same spectra and seed).
2. Runs `exospec run` on it (every stage and product, block_rows A, threads A)
   while sampling the process's resident memory (VmRSS of /proc/PID/status)
   and its bytes written (wchar of /proc/PID/io) every --interval seconds;
   the samples go to rss_a.csv (t_s, vmrss_kib, wchar_bytes).
3. Checks that the RSS is flat after the first block: over the samples taken
   once the process has written at least two blocks of output (2 x block x
   output bytes per spectrum: by then each of the run's two buffer slots has
   held a whole block) and before the last two blocks are written (after
   them the run writes /profile, closes the output and frees its buffers, so
   its RSS falls), max / min <= --tolerance (1.10).
4. Hashes the output dataset by dataset (SHA-256 of each dataset's values as
   stored, with its dtype and shape; every attribute of every object), then
   deletes it unless --keep-outputs (two outputs of 10^6 spectra, 36 GB each,
   do not fit beside each other on a 68 GB disk).
5. Runs again with block_rows B and threads B (sampled and checked the same
   way, rss_b.csv) and compares the two outputs' hashes: every dataset and
   attribute must be identical, except the root's created_utc (the clock)
   and, in the root's `config` (the effective configuration), the
   block_rows line, which the two runs differ in on purpose.

Prints a summary and exits 1 if any check fails (2 for a bad set-up: not
enough disk, no exospec). The run's effective block is min(block_rows,
max(256, N / 32)) (pipeline/src/run.cpp): the two effective blocks must
differ, or the comparison would not test anything.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Bytes per spectrum, both channels of 1024 pixels: input (counts with
# shuffle + deflate 4, truth) and output (calibrated radiance, variance and
# quality, denoised radiance and variance, fits), measured on 10^4 spectra.
INPUT_BYTES_PER_SPECTRUM = 4200
OUTPUT_BYTES_PER_SPECTRUM = 36100


def effective_block(block_rows, n):
    """The rows per block run() uses (pipeline/src/run.cpp, 2 x 1024-pixel channels)."""
    return max(1, min(block_rows, n, max(256, n // 32)))


def read_proc(pid):
    """(VmRSS KiB, wchar bytes) of a live process, or None once it is gone."""
    try:
        rss = None
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
        wchar = 0
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    wchar = int(line.split()[1])
                    break
        return None if rss is None else (rss, wchar)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def run_sampled(cmd, interval, csv_path):
    """Runs cmd, sampling VmRSS and wchar every `interval` s. Returns (rc, wall s, samples, stderr)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    next_t = t0
    while proc.poll() is None:
        s = read_proc(proc.pid)
        if s is not None and proc.poll() is None:
            samples.append((time.monotonic() - t0, s[0], s[1]))
        next_t += interval
        time.sleep(max(0.0, next_t - time.monotonic()))
    out, err = proc.communicate()
    wall = time.monotonic() - t0
    with open(csv_path, "w") as f:
        f.write("t_s,vmrss_kib,wchar_bytes\n")
        for t, rss, w in samples:
            f.write(f"{t:.3f},{rss},{w}\n")
    return proc.returncode, wall, samples, err


def flat_rss(samples, start_bytes, end_bytes):
    """The samples taken while blocks stream: once the first blocks are written (wchar >= start_bytes)
    and before the last ones (wchar <= the run's last wchar - end_bytes), when the run writes /profile,
    closes the output and frees its buffers. Returns them and their min and max RSS."""
    last = max((s[2] for s in samples), default=0)
    after = [s for s in samples if start_bytes <= s[2] <= last - end_bytes]
    if not after:
        return after, None, None
    rss = [s[1] for s in after]
    return after, min(rss), max(rss)


def dataset_digest(d, rows_per_read):
    """SHA-256 of a dataset's dtype, shape and values (read in blocks of rows)."""
    h = hashlib.sha256()
    h.update(f"{d.dtype.str if d.dtype.kind != 'O' else 'str'} {d.shape}\n".encode())
    if d.dtype.kind == "O" or d.dtype.kind in "SU" or h5py.check_string_dtype(d.dtype) is not None:
        for s in d.asstr()[()].ravel().tolist() if d.shape else [d.asstr()[()]]:
            h.update(s.encode() + b"\0")
        return h.hexdigest()
    if d.ndim == 0:
        h.update(np.ascontiguousarray(d[()]).tobytes())
        return h.hexdigest()
    n = d.shape[0]
    for r in range(0, n, rows_per_read):
        h.update(np.ascontiguousarray(d[r:r + rows_per_read]).tobytes())
    return h.hexdigest()


def attr_digest(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        return "str " + hashlib.sha256(v.encode()).hexdigest()
    a = np.asarray(v)
    return f"{a.dtype.str} {a.shape} " + hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def file_digests(path):
    """{object path or path@attribute: digest} for every dataset and attribute of the file."""
    out = {}
    with h5py.File(path, "r") as f:
        def attrs(name, obj):
            for k, v in obj.attrs.items():
                if name == "/" and k == "created_utc":
                    continue  # the run's clock time
                if name == "/" and k == "config":
                    # The two runs differ in block_rows on purpose.
                    v = "\n".join(l for l in v.splitlines() if not l.startswith("block_rows ="))
                out[f"{name}@{k}"] = attr_digest(v)

        attrs("/", f)

        def visit(name, obj):
            attrs("/" + name, obj)
            if isinstance(obj, h5py.Dataset):
                row_bytes = max(1, obj.dtype.itemsize * int(np.prod(obj.shape[1:])) if obj.ndim else 1)
                out["/" + name] = dataset_digest(obj, max(1, (64 << 20) // row_bytes))
            else:
                out["/" + name] = "group"

        f.visititems(visit)
    return out


def spectra_of(path):
    with h5py.File(path, "r") as f:
        return f["geometry/tangent_altitude_km"].shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exospec", default=os.path.join(ROOT, "build", "cli", "exospec"))
    ap.add_argument("--workdir", default="/tmp/exospec-soak")
    ap.add_argument("--spectra", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--block-a", type=int, default=1024)
    ap.add_argument("--threads-a", type=int, default=2)
    ap.add_argument("--block-b", type=int, default=700)
    ap.add_argument("--threads-b", type=int, default=1)
    ap.add_argument("--interval", type=float, default=1.0, help="RSS sampling period, s")
    ap.add_argument("--tolerance", type=float, default=1.10, help="max / min RSS after the first blocks")
    ap.add_argument("--no-rss-check", action="store_true",
                    help="report RSS only (sanitizer builds: shadow memory and quarantine)")
    ap.add_argument("--keep-outputs", action="store_true", help="keep both outputs (needs the disk for two)")
    ap.add_argument("--clean", action="store_true", help="remove the work folder at the end (input included)")
    ap.add_argument("--json", help="also write the summary as JSON to this file")
    args = ap.parse_args()

    exe = os.path.abspath(args.exospec)
    if not os.access(exe, os.X_OK):
        print(f"soak: no exospec at {exe} (--exospec)", file=sys.stderr)
        return 2
    n = args.spectra
    ba, bb = effective_block(args.block_a, n), effective_block(args.block_b, n)
    if ba == bb and args.threads_a == args.threads_b:
        print(f"soak: both runs would use blocks of {ba} rows and {args.threads_a} threads: "
              "choose other --block-a/--block-b (the effective block is min(block_rows, max(256, N/32)))",
              file=sys.stderr)
        return 2
    os.makedirs(args.workdir, exist_ok=True)
    wd = os.path.abspath(args.workdir)
    inp = os.path.join(wd, f"in_{n}_seed{args.seed}.h5")
    out_a, out_b = os.path.join(wd, "out_a.h5"), os.path.join(wd, "out_b.h5")
    for p in (out_a, out_b):
        if os.path.exists(p):
            os.remove(p)

    # Disk: the input (unless it is there), then one output at a time (or two with --keep-outputs).
    have_input = os.path.exists(inp) and spectra_of(inp) == n
    need = (0 if have_input else INPUT_BYTES_PER_SPECTRUM * n) + \
        OUTPUT_BYTES_PER_SPECTRUM * n * (2 if args.keep_outputs else 1)
    free = shutil.disk_usage(wd).free
    print(f"soak: {n} spectra in {wd}: needs about {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free", flush=True)
    if need * 1.05 > free:
        print("soak: not enough disk space", file=sys.stderr)
        return 2

    t = time.monotonic()
    if not have_input:
        cmd = [exe, "simulate", "-o", inp, "--spectra", str(n), "--seed", str(args.seed),
               "--channels", "euv,fuv", "--quiet", "--force"]
        subprocess.run(cmd, check=True)
        sim_s = time.monotonic() - t
        print(f"soak: simulated {inp} in {sim_s:.1f} s", flush=True)
    else:
        sim_s = None
        print(f"soak: reusing {inp}", flush=True)
    input_bytes = os.path.getsize(inp)

    results = {"spectra": n, "input": inp, "input_bytes": input_bytes, "simulate_s": sim_s, "runs": []}
    failures = []
    digests = {}
    for tag, block_rows, threads, out in (("a", args.block_a, args.threads_a, out_a),
                                          ("b", args.block_b, args.threads_b, out_b)):
        cfg = os.path.join(wd, f"run_{tag}.toml")
        with open(cfg, "w") as f:
            f.write(f"[run]\nblock_rows = {block_rows}\n")
        report = os.path.join(wd, f"report_{tag}.json")
        cmd = [exe, "run", inp, "-o", out, "--threads", str(threads), "--config", cfg,
               "--json-report", report, "--quiet", "--force"]
        print(f"soak: run {tag}: block_rows {block_rows} (effective {effective_block(block_rows, n)}), "
              f"threads {threads}", flush=True)
        csv = os.path.join(wd, f"rss_{tag}.csv")
        rc, wall, samples, err = run_sampled(cmd, args.interval, csv)
        if rc != 0:
            print(f"soak: run {tag} failed ({rc}): {err.strip()}", file=sys.stderr)
            return 1
        out_bytes = os.path.getsize(out)
        block = effective_block(block_rows, n)
        start_bytes = 2 * block * out_bytes // n
        # (In wchar's bytes, not the file's: wchar can count more, 39.4 GB for a 35.3 GB file with
        # blocks of 700 rows and chunks of 512, probably the fill of chunks a block fills in part.)
        end_bytes = 2 * block * max((x[2] for x in samples), default=0) // n
        after, lo, hi = flat_rss(samples, start_bytes, end_bytes)
        peak = max(s[1] for s in samples) if samples else None
        r = {"run": tag, "block_rows": block_rows, "effective_block": block, "threads": threads,
             "wall_s": wall, "output_bytes": out_bytes, "samples": len(samples), "csv": csv,
             "peak_rss_kib": peak, "flat_from_s": after[0][0] if after else None,
             "flat_samples": len(after), "flat_min_kib": lo, "flat_max_kib": hi,
             "flat_ratio": (hi / lo) if lo else None}
        with open(report) as f:
            r["report"] = json.load(f)
        results["runs"].append(r)
        if len(after) < 2:
            msg = f"run {tag}: fewer than 2 RSS samples after the first blocks (raise --spectra or lower --interval)"
            (print("soak: warning: " + msg) if args.no_rss_check else failures.append(msg))
        elif hi / lo > args.tolerance:
            msg = f"run {tag}: RSS after the first blocks {lo}..{hi} KiB, ratio {hi / lo:.3f} > {args.tolerance}"
            (print("soak: warning: " + msg) if args.no_rss_check else failures.append(msg))
        print(f"soak: run {tag}: {wall:.1f} s, peak RSS {peak} KiB, after the first blocks "
              f"({len(after)} samples from {r['flat_from_s']} s) {lo}..{hi} KiB", flush=True)
        t = time.monotonic()
        digests[tag] = file_digests(out)
        r["hash_s"] = time.monotonic() - t
        print(f"soak: run {tag}: {len(digests[tag])} objects and attributes hashed in {r['hash_s']:.1f} s",
              flush=True)
        if not args.keep_outputs:
            os.remove(out)

    da, db = digests["a"], digests["b"]
    differ = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
    identical = not differ
    if differ:
        failures.append(f"outputs differ in {len(differ)} objects/attributes: " + ", ".join(differ[:20]))
    results["identical"] = identical
    results["differ"] = differ
    results["compared"] = len(da)

    print()
    print("soak summary")
    print(f"  spectra          {n} (euv + fuv, 1024 pixels each), input {input_bytes / 1e9:.2f} GB"
          + (f", simulated in {sim_s:.0f} s" if sim_s else ""))
    for r in results["runs"]:
        print(f"  run {r['run']}            block_rows {r['block_rows']} (effective {r['effective_block']}), "
              f"threads {r['threads']}: {r['wall_s']:.1f} s wall ({n / r['wall_s']:.0f} spectra/s), "
              f"output {r['output_bytes'] / 1e9:.2f} GB")
        ratio = f"{r['flat_ratio']:.3f}" if r["flat_ratio"] else "-"
        print(f"                   peak RSS {r['peak_rss_kib'] / 1024:.1f} MiB; after the first blocks "
              f"(from {r['flat_from_s']:.1f} s, {r['flat_samples']} samples) "
              f"{(r['flat_min_kib'] or 0) / 1024:.1f}..{(r['flat_max_kib'] or 0) / 1024:.1f} MiB, "
              f"max/min {ratio} (limit {args.tolerance})" if r["flat_from_s"] is not None else
              f"                   peak RSS {r['peak_rss_kib']} KiB; no samples after the first blocks")
    print(f"  identical        {'yes' if identical else 'no'} ({len(da)} datasets, groups and attributes compared)")
    for msg in failures:
        print(f"  FAIL: {msg}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.clean:
        shutil.rmtree(wd, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
