"""`mpirun -np R exospec simulate` writes the serial simulate's file for R = 2
and 3; `mpirun -np R exospec run` (the MPI build): for R = 1, 2 and 3 on both
channels, every dataset and attribute of the output equals a serial run's
(only created_utc may differ), with the default products, with compressed
output and with two threads per rank; a damaged chunk that only the last
rank reads fails every rank with one error line naming the file, the object
and the rank, and leaves nothing; so does a write that fails on one rank
only (EIO from the fault shim, tests/fault, on rank 1: before the held write
errors, the others waited for it forever); so does a missing input; SIGINT to mpirun
(which passes SIGTERM to the ranks) unwinds every rank and leaves nothing.

usage: check_mpi.py MPI_EXE WORK [SERIAL_EXE] [FAULT_SHIM]
SERIAL_EXE (a serial build's exospec, as scripts/test.sh gives) makes the
reference run; without it the MPI build's command runs it without mpirun
(one rank)."""
import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

exe, work = sys.argv[1], sys.argv[2]
serial = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else exe
shim = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
env = dict(os.environ)
# Containers: no cross-memory attach between the ranks (ptrace), and as
# many ranks as the test asks on two cores.
env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
mpirun = ["mpirun", "--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])


def mpi(R, *args, **kw):
    return subprocess.run(mpirun + ["-np", str(R), exe] + list(args), env=env, capture_output=True,
                          text=True, **kw)


failures = []
inp = os.path.join(work, "in.h5")
subprocess.run([serial, "simulate", "-o", inp, "--spectra", "700", "--seed", "21", "--quiet"], check=True)
digest = hashlib.sha256(open(inp, "rb").read()).hexdigest()
zlib = os.path.join(work, "deflate.toml")
with open(zlib, "w") as fh:
    fh.write("[run]\ndeflate_level = 3\nblock_rows = 64\n")


def objects(f):
    out = {"/": f}
    f.visititems(lambda n, o: out.__setitem__("/" + n, o))
    return out


def compare(ref_path, path, tag, products=True):
    bad = []
    with h5py.File(ref_path, "r") as a, h5py.File(path, "r") as b:
        oa, ob = objects(a), objects(b)
        if sorted(oa) != sorted(ob):
            return [f"{tag}: objects differ: {sorted(set(oa) ^ set(ob))}"]
        for name, x in oa.items():
            y = ob[name]
            if isinstance(x, h5py.Dataset):
                if x.dtype != y.dtype or x.shape != y.shape:
                    bad.append(f"{tag}: {name}: {x.dtype}{x.shape} against {y.dtype}{y.shape}")
                    continue
                u, v = x[()], y[()]
                same = (np.array_equal(u, v) if x.dtype.kind == "O"
                        else np.asarray(u).tobytes() == np.asarray(v).tobytes())
                if not same:
                    bad.append(f"{tag}: {name} differs")
            if sorted(x.attrs) != sorted(y.attrs):
                bad.append(f"{tag}: {name}: attributes {sorted(x.attrs)} against {sorted(y.attrs)}")
            for k in x.attrs:
                if not (name == "/" and k == "created_utc") and str(x.attrs[k]) != str(y.attrs.get(k)):
                    bad.append(f"{tag}: attribute {name}@{k} differs")
        groups = [n for n in oa if n.count("/") == 1 and n != "/"]
        want = {"/calibrated", "/denoised", "/fit", "/profile"} if products else {"/raw", "/truth", "/calibration"}
        if len(oa) < 40 or not want <= set(groups):
            bad.append(f"{tag}: expected every product group, got {groups}")
    return bad


# ---- simulate: the same file for R = 2 and 3 (compressed and not)
plain = os.path.join(work, "plain.toml")
with open(plain, "w") as fh:
    fh.write("[simulate]\ndeflate_level = 0\nblock_rows = 64\n")
for tag, extra in (("default", []), ("uncompressed", ["--config", plain])):
    ref = os.path.join(work, f"sim_serial_{tag}.h5")
    subprocess.run([serial, "simulate", "-o", ref, "--spectra", "500", "--seed", "33", "-q"] + extra, check=True)
    for R in (2, 3):
        out = os.path.join(work, f"sim_{tag}_{R}.h5")
        r = mpi(R, "simulate", "-o", out, "--spectra", "500", "--seed", "33", "-q", *extra)
        if r.returncode != 0:
            failures.append(f"simulate {tag} R={R}: exit {r.returncode}: {r.stderr}")
            continue
        bad = compare(ref, out, f"simulate {tag} R={R}", products=False)
        failures += bad
        print(f"simulate {tag} R={R}: {'identical to the serial simulate' if not bad else str(len(bad)) + ' differences'}")
        os.remove(out)
    os.remove(ref)
os.remove(plain)

# ---- identical outputs
cases = [("default", [], [1, 2, 3]), ("deflate", ["--config", zlib], [2, 3]),
         ("threads2", ["--threads", "2"], [2])]
for tag, extra, ranks in cases:
    ref = os.path.join(work, f"serial_{tag}.h5")
    subprocess.run([serial, "run", inp, "-o", ref, "-q"] + (["--threads", "1"] if "--threads" not in extra else [])
                   + extra, check=True, env=env)
    for R in ranks:
        out = os.path.join(work, f"mpi_{tag}_{R}.h5")
        r = mpi(R, "run", inp, "-o", out, "-q", *(["--threads", "1"] if "--threads" not in extra else []), *extra)
        if r.returncode != 0:
            failures.append(f"{tag} R={R}: exit {r.returncode}: {r.stderr}")
            continue
        bad = compare(ref, out, f"{tag} R={R}")
        failures += bad
        print(f"{tag} R={R}: {'identical to the serial run' if not bad else str(len(bad)) + ' differences'}")
        os.remove(out)
    os.remove(ref)
left = sorted(set(os.listdir(work)) - {"in.h5", "deflate.toml"})
if left:
    failures.append(f"files left after the runs: {left}")

# ---- a damaged chunk in the last rank's rows
damaged = os.path.join(work, "damaged.h5")
shutil.copy(inp, damaged)
with h5py.File(damaged, "r") as f:
    d = f["raw/fuv/counts"]
    info = d.id.get_chunk_info(d.id.get_num_chunks() - 1)
    first_row = info.chunk_offset[0]
if first_row < 700 * 2 // 3:
    failures.append(f"the last chunk starts at row {first_row}: not only the last rank's")
with open(damaged, "r+b") as fh:
    fh.seek(info.byte_offset + info.size // 2)
    fh.write(b"\xff" * 16)
for R in (2, 3):
    before = set(os.listdir(work))
    out = os.path.join(work, "damaged_out.h5")
    r = mpi(R, "run", damaged, "-o", out, "--threads", "1")
    lines = [l for l in r.stderr.splitlines() if l.startswith("exospec")]
    tag = f"damaged chunk R={R}"
    if r.returncode == 0:
        failures.append(f"{tag}: exit 0")
    if len(lines) != 1:
        failures.append(f"{tag}: {len(lines)} exospec lines: {r.stderr!r}")
    for word in ("damaged.h5", "/raw/fuv/counts", f"chunk at row {first_row}", f"rank {R - 1} failed"):
        if word not in r.stderr:
            failures.append(f"{tag}: stderr lacks {word!r}: {r.stderr!r}")
    if set(os.listdir(work)) - before:
        failures.append(f"{tag}: left {sorted(set(os.listdir(work)) - before)}")
    print(f"{tag}: exit {r.returncode}: {lines[0] if lines else r.stderr!r}")

# ---- a write that fails on rank 1 only, half-way through its rows (it
# writes about 13.6 MB of this output in all, the first of it when the
# datasets are opened)
if shim:
    wrapper = os.path.join(work, "rank1_fault.sh")
    with open(wrapper, "w") as fh:
        fh.write("#!/bin/sh\n"
                 "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then\n"
                 f"  export LD_PRELOAD={shim} EXOSPEC_FAULT_PATH=write_fault_out EXOSPEC_FAULT_OP=write "
                 f"EXOSPEC_FAULT_KIND=eio EXOSPEC_FAULT_AT=8000000\n"
                 "fi\n"
                 f"exec {exe} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    before = set(os.listdir(work))
    out = os.path.join(work, "write_fault_out.h5")
    tag = "write fails on rank 1 of 2"
    try:
        r = subprocess.run(mpirun + ["-np", "2", wrapper, "run", inp, "-o", out, "--threads", "1"], env=env,
                           capture_output=True, text=True, timeout=120)
        lines = [l for l in r.stderr.splitlines() if l.startswith("exospec")]
        if r.returncode == 0:
            failures.append(f"{tag}: exit 0")
        if len(lines) != 1:
            failures.append(f"{tag}: {len(lines)} exospec lines: {r.stderr!r}")
        # (the message shows the fault: rank 1's write failed, not another)
        for word in ("write_fault_out.h5", "rank 1 failed", "cannot write rows", "file write failed"):
            if word not in r.stderr:
                failures.append(f"{tag}: stderr lacks {word!r}: {r.stderr!r}")
        print(f"{tag}: exit {r.returncode}: {lines[0] if lines else r.stderr!r}")
    except subprocess.TimeoutExpired:
        failures.append(f"{tag}: the ranks did not stop within 120 s")
        subprocess.run(["pkill", "-9", "-f", "write_fault_out"])
    os.remove(wrapper)
    if set(os.listdir(work)) - before:
        failures.append(f"{tag}: left {sorted(set(os.listdir(work)) - before)}")

# ---- a missing input
r = mpi(2, "run", os.path.join(work, "absent.h5"), "-o", os.path.join(work, "absent_out.h5"))
lines = [l for l in r.stderr.splitlines() if l.startswith("exospec")]
if r.returncode == 0 or len(lines) != 1 or "absent.h5" not in lines[0] or glob.glob(os.path.join(work, "absent_out*")):
    failures.append(f"missing input: exit {r.returncode}, {r.stderr!r}")
print(f"missing input: exit {r.returncode}: {lines[0] if lines else ''}")

# ---- many files across the ranks: each output equals its serial run's
many = []
for i in range(3):
    p = os.path.join(work, f"orbit_{i}.h5")
    subprocess.run([serial, "simulate", "-o", p, "--spectra", "150", "--seed", str(60 + i), "--quiet"], check=True)
    many.append(p)
refs = {}
for p in many:
    refs[p] = os.path.join(work, "ref_" + os.path.basename(p))
    subprocess.run([serial, "run", p, "-o", refs[p], "-q", "--threads", "1"], check=True, env=env)
outdir = os.path.join(work, "many_out")
r = mpi(2, "run", many[0], damaged, many[1], many[2], "-O", outdir, "--threads", "1")
lines = [l for l in r.stderr.splitlines() if l.startswith("exospec")]
summary = [l for l in r.stderr.splitlines() if l.startswith("run: ")]
if r.returncode == 0 or len(lines) != 1 or "damaged.h5" not in lines[0] or not summary or "3 of 4" not in summary[0]:
    failures.append(f"many files R=2: exit {r.returncode}, {r.stderr!r}")
for p in many:
    o = os.path.join(outdir, os.path.basename(p))
    if not os.path.exists(o):
        failures.append(f"many files R=2: {o} missing")
    else:
        failures += compare(refs[p], o, f"many files R=2 {os.path.basename(p)}")
print(f"many files R=2: exit {r.returncode}: {summary[0] if summary else r.stderr!r}")

# ---- interrupted: SIGINT to mpirun while the ranks write
big = os.path.join(work, "big.h5")
subprocess.run([serial, "simulate", "-o", big, "--spectra", "12000", "--seed", "4", "--quiet"], check=True)
slow = os.path.join(work, "slow.toml")
with open(slow, "w") as fh:
    fh.write("[run]\nblock_rows = 16\n")  # many small blocks: a long run
out = os.path.join(work, "interrupted.h5")
p = subprocess.Popen(mpirun + ["-np", "2", exe, "run", big, "-o", out, "--config", slow, "--threads", "1"],
                     env=env, stderr=subprocess.PIPE, text=True)
t0 = time.time()
while not glob.glob(out + ".tmp-*") and time.time() - t0 < 30 and p.poll() is None:
    time.sleep(0.05)
time.sleep(0.5)
if p.poll() is not None:
    failures.append("interrupt: the run ended before the signal; make it longer")
else:
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    lines = [l for l in err.splitlines() if l.startswith("exospec")]
    if p.returncode == 0:
        failures.append("interrupt: exit 0")
    if len(lines) != 1 or "interrupted" not in lines[0]:
        failures.append(f"interrupt: stderr {err!r}")
    if glob.glob(out + "*"):
        failures.append(f"interrupt: left {glob.glob(out + '*')}")
    print(f"interrupt after {time.time() - t0:.1f} s: exit {p.returncode}: {lines[0] if lines else err!r}")

if hashlib.sha256(open(inp, "rb").read()).hexdigest() != digest:
    failures.append("input modified")
if failures:
    print("\n".join(failures))
    sys.exit(1)
print("mpirun: simulate and run outputs identical to the serial ones for R = 1, 2, 3; many files over the "
      "ranks; failures and interrupts leave nothing")
