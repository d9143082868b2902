"""Fault injection: `exospec run` against a file system that misbehaves.

fault_shim.c (LD_PRELOAD) fails, shortens or pauses the reads and writes of
the files whose path holds a given string; while a run is paused this script
acts on the file system (removes the output's folder, makes it read-only,
truncates or replaces the input, starts a second run on the same output).

Every fault must end one of two ways, and each case says which:
  error    exit code 1, exactly one stderr line "exospec: error: <file>: ..."
           naming the faulty file (the input or the output as given), no
           output file, no temporary file left in the output's folder, and
           the input unchanged (SHA-256) unless the fault changed it;
  same     (faults that POSIX allows and that must be absorbed: short reads
           and writes) exit 0 and an output whose datasets equal those of an
           undisturbed run, nothing else left behind.
A case whose fault did not fire (the shim reports when it does) fails, except
in the offset sweeps, where an offset that is never read must give `same`.
Two exceptions to "no temporary file": a folder made read-only mid-run cannot
have its temporary file removed by anyone but root; it must then be empty and
named in the error line. And two runs on one output: without --force exactly
one succeeds and the other says "already exists"; with --force both succeed;
either way the output at the end is one run's, whole.

Usage: check_faults.py --exe EXOSPEC --shim SHIM.so --work DIR [--group G]
with G one of read, write, folder, concurrent, input, all. One line per case;
exit code 1 if any case fails."""
import argparse
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--exe", required=True)
ap.add_argument("--shim", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--group", default="all", choices=["read", "write", "folder", "concurrent", "input", "all"])
args = ap.parse_args()
exe, shim, work = os.path.abspath(args.exe), os.path.abspath(args.shim), os.path.abspath(args.work)

if os.path.isdir(work):
    for root, dirs, _ in os.walk(work):  # an earlier run may have left a read-only folder
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
control = os.path.join(work, "control")  # the shim's report and pause signal: never in an output folder
os.makedirs(control)
os.chmod(work, 0o755)
os.chmod(control, 0o777)

# Under AddressSanitizer its runtime must come first in LD_PRELOAD.
preload = [shim]
ldd = subprocess.run(["ldd", exe], capture_output=True, text=True).stdout
for line in ldd.splitlines():
    if "libasan" in line and "=>" in line:
        preload.insert(0, line.split("=>")[1].split()[0])
SANITIZED = len(preload) > 1
TIMEOUT = 120 if SANITIZED else 60  # a run that takes longer hangs
base_env = dict(os.environ)
for k in list(base_env):
    if k.startswith("EXOSPEC_FAULT_"):
        del base_env[k]
# HDF5's own leak on a failed chunk write is suppressed under LeakSanitizer
# (as in tests/e2e/check_disk_full.py).
supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e", "lsan_hdf5_write_failure.supp")
base_env["LSAN_OPTIONS"] = ":".join(
    filter(None, [base_env.get("LSAN_OPTIONS", ""), f"suppressions={os.path.abspath(supp)}", "print_suppressions=0"]))


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def simulate(path, seed, spectra=600):
    subprocess.run([exe, "simulate", "-o", path, "--spectra", str(spectra), "--seed", str(seed), "--quiet"],
                   check=True, env=base_env)


def datasets(path):
    """Every dataset's values, by name."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def same_datasets(path, ref):
    try:
        got = datasets(path)
    except Exception as e:  # noqa: BLE001 (a damaged output is a failure, reported)
        return f"unreadable output: {e}"
    if sorted(got) != sorted(ref):
        return f"datasets {sorted(set(got) ^ set(ref))} differ in presence"
    for name, want in ref.items():
        have = got[name]
        if have.dtype != want.dtype or have.shape != want.shape:
            return f"{name}: dtype or shape differs"
        if want.dtype.kind == "f":
            if not np.array_equal(have, want, equal_nan=True):
                return f"{name}: values differ"
        elif not np.array_equal(have, want):
            return f"{name}: values differ"
    return None


inputs = os.path.join(work, "inputs")
os.makedirs(inputs)
os.chmod(inputs, 0o755)
IN = os.path.join(inputs, "in.h5")
simulate(IN, 3)
IN_SHA = sha256(IN)
OTHER = os.path.join(inputs, "other.h5")  # what replaces the input
simulate(OTHER, 4)
deflate = os.path.join(inputs, "deflate.toml")
with open(deflate, "w") as fh:
    fh.write("[run]\ndeflate_level = 1\n")
for p in (IN, OTHER, deflate):
    os.chmod(p, 0o644)


def storage_offsets(path):
    """(name, first byte, bytes) of every dataset's storage: the contiguous
    block, or each chunk."""
    out = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            if obj.chunks:
                for i in range(obj.id.get_num_chunks()):
                    c = obj.id.get_chunk_info(i)
                    out.append((f"{name}[chunk {i}]", c.byte_offset, c.size))
            elif obj.id.get_offset() is not None:
                out.append((name, obj.id.get_offset(), obj.id.get_storage_size()))
        f.visititems(visit)
    return out


failures = []
results = []


class Case:
    """One run of exospec under a fault."""

    def __init__(self, name, expect, env=None, run_args=None, out_dir=None, during=None, names=None,
                 input_changes=False, may_not_fire=False, reason=None, user=None, check_out=True, keep=None,
                 named_leftover=False):
        self.name, self.expect, self.env = name, expect, env or {}
        self.run_args = run_args or []
        self.out_dir = out_dir or os.path.join(work, name.replace("@", "_").replace(" ", "_"))
        self.during, self.names, self.reason = during, names, reason
        self.input_changes, self.may_not_fire, self.user = input_changes, may_not_fire, user
        self.check_out, self.keep = check_out, keep  # keep: where to copy OUT before cleaning up
        # A temporary file that cannot be removed (its folder became read-only)
        # is accepted only if it is empty and the error line names it.
        self.named_leftover = named_leftover


def fault_env(path_part, op, kind, at=0, api=None):
    e = {"EXOSPEC_FAULT_PATH": path_part, "EXOSPEC_FAULT_OP": op, "EXOSPEC_FAULT_KIND": kind,
         "EXOSPEC_FAULT_AT": str(at)}
    if api:
        e["EXOSPEC_FAULT_API"] = api
    return e


def as_user(user):
    if user is None:
        return None

    def drop():
        os.setgid(user.pw_gid)
        os.setgroups([])
        os.setuid(user.pw_uid)
    return drop


def start(case, out, inp=IN, extra_env=None):
    env = dict(base_env)
    env.update(case.env)
    if extra_env:
        env.update(extra_env)
    env["LD_PRELOAD"] = ":".join(preload)
    return subprocess.Popen([exe, "run", inp, "-o", out, "--quiet"] + case.run_args, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_user(case.user))


def wait_for(path, proc, seconds):
    t = time.monotonic()
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() - t > seconds:
            return False
        time.sleep(0.005)
    return True


def leftovers(folder, before):
    if not os.path.isdir(folder):
        return []
    return sorted(set(os.listdir(folder)) - before)


def check_error(case, rc, err, out, problems):
    lines = [l for l in err.splitlines() if l.strip()]
    if rc != 1:
        problems.append(f"exit code {rc}, 1 expected")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, 1 expected: {err!r}")
    elif not lines[0].startswith("exospec: error: "):
        problems.append(f"stderr does not start with 'exospec: error: ': {lines[0]!r}")
    else:
        names = case.names if case.names is not None else [out]
        if not any(lines[0].startswith(f"exospec: error: {n}:") for n in names):
            problems.append(f"error does not name {' or '.join(names)}: {lines[0]!r}")
        if case.reason and case.reason not in lines[0]:
            problems.append(f"error does not say {case.reason!r}: {lines[0]!r}")
    if case.check_out and os.path.exists(out):
        problems.append("an output file exists")


def run_case(case, ref):
    """Runs one case and records what it did; returns (rc, stderr line)."""
    os.makedirs(case.out_dir, exist_ok=True)
    os.chmod(case.out_dir, 0o777 if case.user else 0o755)
    out = os.path.join(case.out_dir, "out.h5")
    before = set(os.listdir(case.out_dir))
    report = os.path.join(control, case.out_dir.replace("/", "_") + ".report")
    signal = os.path.join(control, case.out_dir.replace("/", "_") + ".signal")
    for p in (report, signal):
        if os.path.exists(p):
            os.remove(p)
    extra = {"EXOSPEC_FAULT_REPORT": report, "EXOSPEC_FAULT_SIGNAL": signal}
    problems = []
    t0 = time.monotonic()
    proc = start(case, out, extra_env=extra)
    if case.during is not None:
        if wait_for(signal, proc, TIMEOUT):
            try:
                case.during(case, out)
            except Exception as e:  # noqa: BLE001
                problems.append(f"the action failed: {e!r}")
            os.remove(signal)  # resumes the run
        else:
            problems.append("the run never reached the pause")
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        problems.append(f"hung (killed after {TIMEOUT} s)")
    seconds = time.monotonic() - t0
    rc = proc.returncode
    if os.path.isdir(case.out_dir):
        os.chmod(case.out_dir, 0o755)  # (a case may have made it read-only)
    fired = os.path.exists(report) and "fired" in open(report).read()
    expect = case.expect
    if not fired:
        if case.may_not_fire:
            expect = "same"
        else:
            problems.append("the fault never fired")
    if expect == "error":
        check_error(case, rc, err, out, problems)
    elif expect == "same":
        if rc != 0 or err.strip():
            problems.append(f"exit code {rc}, stderr {err!r}: success expected")
        elif case.check_out:
            diff = same_datasets(out, ref)
            if diff:
                problems.append(diff)
    left = [f for f in leftovers(case.out_dir, before) if f != "out.h5" or (expect != "same" and case.check_out)]
    first = next((l for l in err.splitlines() if l.strip()), "")
    if case.named_leftover:
        left = [f for f in left
                if not (os.path.join(case.out_dir, f) in first and os.path.getsize(os.path.join(case.out_dir, f)) == 0)]
    if left:
        problems.append(f"left behind {left}")
    if not case.input_changes and sha256(IN) != IN_SHA:
        problems.append("the input changed")
    status = "FAIL" if problems else "ok"
    shown = first if first else f"exit {rc}, output identical" if expect == "same" and not problems else f"exit {rc}"
    print(f"{status:4} {case.name} ({seconds:.2f} s): {shown}" + (f" -- {'; '.join(problems)}" if problems else ""),
          flush=True)
    if problems:
        failures.append(case.name)
    results.append((case.name, rc, first))
    if case.keep and os.path.exists(out):
        shutil.copy(out, case.keep)
    shutil.rmtree(case.out_dir, ignore_errors=True)
    return rc, first


def reference(run_args, name):
    d = os.path.join(work, "reference_" + name)
    os.makedirs(d)
    out = os.path.join(d, "out.h5")
    subprocess.run([exe, "run", IN, "-o", out, "--quiet"] + run_args, check=True, env=base_env)
    # How many bytes a run writes, and reads of the input (the shim counts them).
    counts = {}
    counting = os.path.join(d, "count")
    os.makedirs(counting)
    for path_part, op in ((os.path.basename(IN), "read"), ("out.h5.tmp-", "write")):
        report = os.path.join(control, f"count_{name}_{op}")
        env = dict(base_env, LD_PRELOAD=":".join(preload), EXOSPEC_FAULT_REPORT=report,
                   **fault_env(path_part, op, "count"))
        o2 = os.path.join(counting, "out.h5")
        subprocess.run([exe, "run", IN, "-o", o2, "--quiet", "--force"] + run_args, check=True, env=env)
        os.remove(o2)
        for line in open(report):
            k, nbytes, calls = line.split()
            if k == op:
                counts[k] = int(nbytes)
    return datasets(out), counts


REF, COUNTS = reference([], "plain")
IN_NAME = os.path.basename(IN)
TMP_PART = "out.h5.tmp-"  # the temporary output (FileWriter: "<name>.tmp-<pid>-<random>")
group = args.group
t_all = time.monotonic()

# ----------------------------------------------------------------------------- read
if group in ("read", "all"):
    # EIO at the first byte of each dataset's storage that a run reads (and
    # the middle and last chunk of the counts), and across the metadata at the
    # start of the file every 1,000 bytes: wherever it comes, one line naming
    # the input. Offsets that a run never reads (the truth) give `same`.
    offsets = {}
    for name, first, size in storage_offsets(IN):
        if name.startswith("truth/"):
            continue
        base = name.split("[")[0]
        if base not in offsets or "counts" in name:
            offsets.setdefault(base, []).append(first + size // 2)
    points = []
    for base, offs in sorted(offsets.items()):
        picks = [offs[0], offs[len(offs) // 2], offs[-1]] if len(offs) > 2 else offs[:1]
        for o in sorted(set(picks)):
            points.append((f"read.eio@{o} ({base})", o, False))
    metadata_end = min(first for _, first, _ in storage_offsets(IN))
    for o in range(0, metadata_end, 256):
        points.append((f"read.eio@{o} (metadata)", o, True))
    points.append(("read.eio@superblock signature", 0, False))
    for label, at, sweep in points:
        run_case(Case(label, "error", fault_env(IN_NAME, "read", "eio", at), names=[IN], may_not_fire=sweep), REF)
    # The input's SHA-256 (provenance) is read on another thread, with stdio.
    run_case(Case("read.eio.hash@middle", "error", fault_env(IN_NAME, "read", "eio", os.path.getsize(IN) // 2, "stdio"),
                  names=[IN]), REF)
    # Every read returns half of what was asked: HDF5 reads the rest.
    run_case(Case("read.short", "same", fault_env(IN_NAME, "read", "short")), REF)

# ---------------------------------------------------------------------------- write
if group in ("write", "all"):
    total = COUNTS["write"]
    # The disk fills after k bytes: at the file's creation (0, 1 byte), early,
    # through the rows, in the final flush, at the last byte.
    points = [0, 1, 4096, total // 100, total // 10, total // 4, total // 2, 3 * total // 4, 9 * total // 10,
              99 * total // 100, total - 4096, total - 1]
    for at in points:
        run_case(Case(f"write.enospc@{at}", "error", fault_env(TMP_PART, "write", "enospc", at),
                      reason="No space left on device"), REF)
    # Compressed: the chunks wait in HDF5's cache, most bytes go at the flush.
    dref, dcounts = reference(["--config", deflate], "deflate")
    dtotal = dcounts["write"]
    for at in [0, dtotal // 3, 2 * dtotal // 3, dtotal - 1]:
        run_case(Case(f"write.enospc.deflate@{at}", "error", fault_env(TMP_PART, "write", "enospc", at),
                      run_args=["--config", deflate], reason="No space left on device"), dref)
    run_case(Case(f"write.eio@{total // 2}", "error", fault_env(TMP_PART, "write", "eio", total // 2),
                  reason="Input/output error"), REF)
    # close() fails (NFS, quotas): the data may not be on disk.
    run_case(Case("write.close.eio", "error", fault_env(TMP_PART, "close", "eio"), reason="Input/output error"), REF)
    # Every write takes half of what was given: HDF5 writes the rest.
    run_case(Case("write.short", "same", fault_env(TMP_PART, "write", "short")), REF)

# --------------------------------------------------------------------------- folder
if group in ("folder", "all"):
    total = COUNTS["write"]

    def remove_folder(case, out):
        shutil.rmtree(os.path.dirname(out))

    def remove_and_recreate(case, out):
        shutil.rmtree(os.path.dirname(out))
        os.makedirs(os.path.dirname(out))

    def read_only(case, out):
        os.chmod(os.path.dirname(out), 0o555)

    for label, at in (("early", 4096), ("middle", total // 2), ("last write", total - 1)):
        run_case(Case(f"folder.removed@{label}", "error", fault_env(TMP_PART, "write", "pause", at),
                      during=remove_folder), REF)
    run_case(Case("folder.removed_and_recreated@middle", "error", fault_env(TMP_PART, "write", "pause", total // 2),
                  during=remove_and_recreate), REF)
    # Root ignores permissions: as root the run is made as user nobody.
    user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    for label, at in (("early", 4096), ("middle", total // 2), ("last write", total - 1)):
        run_case(Case(f"folder.read_only@{label}", "error", fault_env(TMP_PART, "write", "pause", at),
                      during=read_only, user=user, named_leftover=True), REF)

# ----------------------------------------------------------------------- concurrent
if group in ("concurrent", "all"):
    total = COUNTS["write"]
    # Two runs on the same OUT. Without --force the output must not be
    # replaced: the one that finishes second refuses ("output file already
    # exists"), and OUT is the first one's, whole. With --force both succeed
    # and OUT is one of them, whole (the rename is atomic).
    second = {}

    def run_second(force):
        def act(case, out):
            p = subprocess.Popen([exe, "run", IN, "-o", out, "--quiet"] + (["--force"] if force else []),
                                 env=base_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _, e = p.communicate(timeout=TIMEOUT)
            second["rc"], second["err"] = p.returncode, e
            second["out_ok"] = same_datasets(out, REF) if os.path.exists(out) else "no output"
        return act

    # A pauses in its writes; B runs from start to end meanwhile; A resumes.
    for force in (False, True):
        second.clear()
        name = f"concurrent.same_out{'.force' if force else ''}"
        expect = "same" if force else "error"
        keep = os.path.join(work, "kept.h5")
        case = Case(name, expect, fault_env(TMP_PART, "write", "pause", total // 2),
                    run_args=["--force"] if force else [], during=run_second(force),
                    reason=None if force else "output file already exists", check_out=False, keep=keep)
        run_case(case, REF)
        problems = []
        if second.get("rc") != 0 or second.get("err", "").strip():
            problems.append(f"the second run: exit {second.get('rc')}, {second.get('err')!r}")
        if second.get("out_ok"):
            problems.append(f"the second run's output: {second['out_ok']}")
        diff = same_datasets(keep, REF) if os.path.exists(keep) else "no output at the end"
        if diff:
            problems.append(f"OUT at the end: {diff}")
        if os.path.exists(keep):
            os.remove(keep)
        print(f"{'FAIL' if problems else 'ok':4} {name}: second run exit {second.get('rc')}, OUT whole at the end"
              + (f" -- {'; '.join(problems)}" if problems else ""), flush=True)
        if problems:
            failures.append(name + " (second run / OUT)")
        results.append((name + " (second run / OUT)", second.get("rc"), ""))

    # Truly at once, twice each way.
    for force in (False, True, False, True):
        d = os.path.join(work, "at_once")
        os.makedirs(d, exist_ok=True)
        out = os.path.join(d, "out.h5")
        cmd = [exe, "run", IN, "-o", out, "--quiet"] + (["--force"] if force else [])
        t0 = time.monotonic()
        ps = [subprocess.Popen(cmd, env=base_env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        errs = [p.communicate(timeout=TIMEOUT)[1] for p in ps]
        rcs = sorted(p.returncode for p in ps)
        name = f"concurrent.at_once{'.force' if force else ''}"
        problems = []
        if force:
            if rcs != [0, 0] or any(e.strip() for e in errs):
                problems.append(f"exit codes {rcs}, stderr {errs!r}: both should succeed")
        else:
            lines = [l for e in errs for l in e.splitlines() if l.strip()]
            if rcs != [0, 1] or len(lines) != 1 or not lines[0].startswith(f"exospec: error: {out}:") \
                    or "already exists" not in lines[0]:
                problems.append(f"exit codes {rcs}, stderr {errs!r}: one success, one 'already exists'")
        diff = same_datasets(out, REF) if os.path.exists(out) else "no output"
        if diff:
            problems.append(f"OUT: {diff}")
        left = [f for f in os.listdir(d) if f != "out.h5"]
        if left:
            problems.append(f"left behind {left}")
        said = next((l for e in errs for l in e.splitlines() if l.strip()), "")
        print(f"{'FAIL' if problems else 'ok':4} {name} ({time.monotonic() - t0:.2f} s): exit codes {rcs}"
              + (f": {said}" if said else "")
              + (f" -- {'; '.join(problems)}" if problems else ""), flush=True)
        if problems:
            failures.append(name)
        results.append((name, rcs, said))
        shutil.rmtree(d)

# ---------------------------------------------------------------------------- input
if group in ("input", "all"):
    # Pause on the read of a counts chunk in the middle of the file, change
    # the input, resume: the run must fail naming the input (what it read is
    # not one file any more), never write an output from a mix.
    chunks = [(n, o, s) for n, o, s in storage_offsets(IN) if n.startswith("raw/fuv/counts")]
    mid = chunks[len(chunks) // 2][1] + 1

    def saved_input():
        tmp = os.path.join(inputs, "saved.h5")
        shutil.copy(IN, tmp)
        return tmp

    def restore(saved):
        os.replace(saved, IN)
        os.chmod(IN, 0o644)
        assert sha256(IN) == IN_SHA

    def truncate_to(fraction):
        def act(case, out):
            os.truncate(IN, int(os.path.getsize(IN) * fraction))
        return act

    def replace_by_rename(case, out):
        tmp = IN + ".new"
        shutil.copy(OTHER, tmp)
        os.replace(tmp, IN)

    def overwrite_in_place(case, out):
        with open(IN, "r+b") as fh:  # same inode, other bytes
            fh.write(open(OTHER, "rb").read())
            fh.truncate()

    def append(case, out):
        with open(IN, "ab") as fh:
            fh.write(b"\0" * 4096)

    def one_byte(case, out):  # same size, other bytes
        with open(IN, "r+b") as fh:
            fh.seek(os.path.getsize(IN) // 2)
            b = fh.read(1)
            fh.seek(-1, os.SEEK_CUR)
            fh.write(bytes([b[0] ^ 0xFF]))

    def remove(case, out):
        os.remove(IN)

    for label, act in (("truncated to half", truncate_to(0.5)), ("truncated to 90%", truncate_to(0.9)),
                       ("truncated to zero", truncate_to(0.0)), ("replaced (rename)", replace_by_rename),
                       ("overwritten in place", overwrite_in_place), ("appended to", append),
                       ("one byte changed", one_byte), ("removed", remove)):
        saved = saved_input()
        try:
            run_case(Case(f"input.{label.replace(' ', '_')}", "error", fault_env(IN_NAME, "read", "pause", mid),
                          during=act, names=[IN], input_changes=True), REF)
        finally:
            restore(saved)
    # The same with counts stored without compression (HDF5 reads zeros past
    # the end of a truncated file: only the check that the input did not
    # change can tell).
    with h5py.File(IN, "r") as f:
        counts = {ch: f[f"raw/{ch}/counts"][()] for ch in ("euv", "fuv")}
    plain = os.path.join(inputs, "plain.h5")
    shutil.copy(IN, plain)
    with h5py.File(plain, "r+") as f:
        for ch, data in counts.items():
            attrs = dict(f[f"raw/{ch}/counts"].attrs)
            del f[f"raw/{ch}/counts"]
            d = f.create_dataset(f"raw/{ch}/counts", data=data)
            for k, v in attrs.items():
                d.attrs[k] = v
    saved = saved_input()
    shutil.copy(plain, IN)
    PLAIN_SHA = sha256(IN)
    off = [(n, o, s) for n, o, s in storage_offsets(IN) if n == "raw/fuv/counts"][0]
    try:
        run_case(Case("input.truncated_to_half.uncompressed", "error",
                      fault_env(IN_NAME, "read", "pause", off[1] + off[2] // 2),
                      during=truncate_to(0.5), names=[IN], input_changes=True), REF)
    finally:
        restore(saved)

print(f"{len(results)} cases in {time.monotonic() - t_all:.1f} s" + (" (sanitized build)" if SANITIZED else ""))
if failures:
    print("FAILED: " + ", ".join(failures))
    sys.exit(1)
print("faults: one clear error line, exit 1, no output, no temporary file, input untouched; "
      "short reads and writes absorbed")
