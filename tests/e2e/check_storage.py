"""`run` gives the same bytes whatever the storage of the input counts.

exospec reads /raw/<ch>/counts as stored chunks and inflates them itself,
off the HDF5 thread (io/stored_rows.hpp), for whole-row chunks with no
filter, deflate, or shuffle + deflate; anything else goes through HDF5. This
rewrites the counts of one simulated file with h5py in several storages
(chunks that do not line up with the run's blocks, a partial last chunk,
deflate without shuffle, no filter, chunks that split rows, Fletcher32, big
endian, contiguous), runs each with --threads 1 and 2 (on a machine with
more cores than threads the I/O thread inflates, otherwise the compute
threads do) and a block size that is not a multiple of any chunk, and
checks that /calibrated and /fit are identical to the run on the file as
simulated. A damaged chunk must give one error line naming the file, the
dataset and the chunk, a non-zero exit code and no output.
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
N = 300
base = os.path.join(work, "base.h5")
subprocess.run([exe, "simulate", "-o", base, "--spectra", str(N), "--seed", "3", "--quiet"], check=True)
blocks = os.path.join(work, "blocks.toml")
with open(blocks, "w") as fh:
    fh.write("[run]\nblock_rows = 37\n")

failures = []


def run(inp, out, threads, config=None):
    args = [exe, "run", inp, "-o", out, "--quiet", "--threads", str(threads)]
    if config:
        args += ["--config", config]
    return subprocess.run(args, capture_output=True, text=True)


def products(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.split("/")[0] in ("calibrated", "fit"):
                out[name] = obj[()]
        f.visititems(visit)
    return out


def rewrite(name, dtype=None, **storage):
    path = os.path.join(work, name + ".h5")
    shutil.copy(base, path)
    with h5py.File(path, "r+") as f:
        for ch in ("euv", "fuv"):
            old = f[f"raw/{ch}/counts"]
            data, attrs = old[()], dict(old.attrs)
            del f[f"raw/{ch}/counts"]
            d = f.create_dataset(f"raw/{ch}/counts", data=data.astype(dtype) if dtype else data, **storage)
            for k, v in attrs.items():
                d.attrs[k] = v
    return path


r = run(base, os.path.join(work, "base_out.h5"), 1)
if r.returncode != 0:
    sys.exit(f"run on the simulated file failed: {r.stderr}")
reference = products(os.path.join(work, "base_out.h5"))
if not any(k.startswith("fit/") for k in reference):
    sys.exit("reference output has no /fit")

P = 1024
variants = {
    "as_simulated": base,
    "deflate_only_64rows": rewrite("deflate_only_64rows", chunks=(64, P), compression="gzip",
                                   compression_opts=6),
    "shuffle_deflate_100rows": rewrite("shuffle_deflate_100rows", chunks=(100, P), shuffle=True,
                                       compression="gzip", compression_opts=1),
    "no_filter_7rows": rewrite("no_filter_7rows", chunks=(7, P)),
    "chunks_split_rows": rewrite("chunks_split_rows", chunks=(16, 256), shuffle=True, compression="gzip"),
    "fletcher32": rewrite("fletcher32", chunks=(32, P), shuffle=True, compression="gzip",
                          fletcher32=True),
    "big_endian": rewrite("big_endian", chunks=(32, P), shuffle=True, compression="gzip", dtype=">u4"),
    "contiguous": rewrite("contiguous"),
}
for name, path in variants.items():
    for threads in (1, 2):
        for config in (None, blocks):
            out = os.path.join(work, f"out_{name}_{threads}{'_b37' if config else ''}.h5")
            r = run(path, out, threads, config)
            tag = f"{name} --threads {threads}{' block_rows 37' if config else ''}"
            if r.returncode != 0:
                failures.append(f"{tag}: exit {r.returncode}: {r.stderr.strip()}")
                continue
            got = products(out)
            if got.keys() != reference.keys():
                failures.append(f"{tag}: datasets differ: {sorted(got.keys() ^ reference.keys())}")
                continue
            for k, v in reference.items():
                same = (v.tolist() == got[k].tolist() if v.dtype.kind == "O"  # strings
                        else v.dtype == got[k].dtype and v.tobytes() == got[k].tobytes())
                if not same:
                    failures.append(f"{tag}: {k} differs from the run on the simulated file")
            os.remove(out)
    print(f"{name}: identical /calibrated and /fit for --threads 1, 2 and block_rows 1024, 37")

# A damaged chunk: flip bytes in the middle of the compressed data of the
# second chunk of /raw/fuv/counts.
damaged = os.path.join(work, "damaged.h5")
shutil.copy(base, damaged)
with h5py.File(damaged, "r") as f:
    info = f["raw/fuv/counts"].id.get_chunk_info(1)
    first_row = info.chunk_offset[0]
with open(damaged, "r+b") as fh:
    fh.seek(info.byte_offset + info.size // 2)
    fh.write(b"\xff" * 16)
for threads in (1, 2):
    before = set(os.listdir(work))
    out = os.path.join(work, "damaged_out.h5")
    r = run(damaged, out, threads)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    tag = f"damaged chunk --threads {threads}"
    if r.returncode == 0:
        failures.append(f"{tag}: exit 0")
    if len(lines) != 1:
        failures.append(f"{tag}: {len(lines)} stderr lines: {r.stderr!r}")
    for word in ("damaged.h5", "/raw/fuv/counts", f"chunk at row {first_row}"):
        if word not in r.stderr:
            failures.append(f"{tag}: stderr lacks {word!r}: {r.stderr!r}")
    if set(os.listdir(work)) - before:
        failures.append(f"{tag}: left files behind: {sorted(set(os.listdir(work)) - before)}")
    print(f"{tag}: {r.stderr.strip()}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("storage: all variants give identical bytes; a damaged chunk is one clear error")
