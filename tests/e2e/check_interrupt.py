"""An interrupted `exospec run` leaves no output: SIGINT and SIGTERM unwind and
remove the temporary file (exit 128 + signal, one error line); SIGKILL cannot
be caught, but the output still never appears (it is only renamed into place
at the end). The input is never modified."""
import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

exe, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
inp = os.path.join(work, "in.h5")
subprocess.run([exe, "simulate", "-o", inp, "--spectra", "12000", "--quiet"], check=True)
digest = hashlib.sha256(open(inp, "rb").read()).hexdigest()
slow = os.path.join(work, "slow.toml")
with open(slow, "w") as fh:
    fh.write("[run]\nblock_rows = 16\n")  # many small blocks: a long run, frequent checks

failures = []
for sig in [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]:
    out = os.path.join(work, f"out_{sig.name}.h5")
    p = subprocess.Popen([exe, "run", inp, "-o", out, "--config", slow, "--threads", "1"],
                         stderr=subprocess.PIPE, text=True)
    time.sleep(0.6)
    if p.poll() is not None:
        failures.append(f"{sig.name}: the run finished before the signal; make it longer")
        continue
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    left = glob.glob(out + "*")
    if os.path.exists(out):
        failures.append(f"{sig.name}: output exists after the signal")
    if sig == signal.SIGKILL:
        if p.returncode != -signal.SIGKILL:
            failures.append(f"SIGKILL: return code {p.returncode}")
        for f in left:  # the temporary file cannot be cleaned up after SIGKILL
            os.remove(f)
    else:
        if p.returncode != 128 + sig:
            failures.append(f"{sig.name}: exit {p.returncode}, expected {128 + sig}")
        if left:
            failures.append(f"{sig.name}: left {left}")
        lines = [l for l in err.splitlines() if l.strip()]
        if len(lines) != 1 or "interrupted" not in lines[0]:
            failures.append(f"{sig.name}: stderr {err!r}")
    print(f"{sig.name}: exit {p.returncode}, output absent, left behind: {left}")

if hashlib.sha256(open(inp, "rb").read()).hexdigest() != digest:
    failures.append("input modified")
if failures:
    print("\n".join(failures))
    sys.exit(1)
print("interrupted runs leave no output")
