"""Exact Savitzky-Golay coefficients (rational arithmetic) for the scipy golden
sets that shared/reference/savgol/sg_exact_coefficients.txt does not cover.
scipy 1.10's savgol_coeffs solves an unscaled Vandermonde least-squares problem
in double precision; for window 31, polyorder 9 its answer is off by ~3e-9.
This file is the exact answer, to compare with both.

Regenerate: /usr/bin/python3 tests/data/make_savgol_exact.py > tests/data/savgol_exact_extra.txt
"""
import json
import os
from fractions import Fraction as F

here = os.path.dirname(os.path.abspath(__file__))
golden = json.load(open(os.path.join(here, "reference", "savgol", "sg_scipy_golden.json")))


def exact(window, order, deriv, delta, pos, use):
    half = window // 2
    if pos is None:
        pos = F(2 * half - 1, 2) if window % 2 == 0 else F(half)
    pos = F(pos)
    xs = [F(i) - pos for i in range(window)]
    if use == "conv":
        xs = xs[::-1]
    n = order + 1
    if deriv > order:
        return [F(0)] * window
    G = [[sum(x ** (i + j) for x in xs) for j in range(n)] for i in range(n)]
    fact = 1
    for k in range(2, deriv + 1):
        fact *= k
    rhs = [F(0)] * n
    rhs[deriv] = F(fact) / F(delta) ** deriv
    A = [G[i][:] + [rhs[i]] for i in range(n)]
    for i in range(n):
        piv = A[i][i]
        A[i] = [v / piv for v in A[i]]
        for k in range(n):
            if k != i and A[k][i] != 0:
                f = A[k][i]
                A[k] = [a - f * b for a, b in zip(A[k], A[i])]
    z = [A[i][n] for i in range(n)]
    return [sum(z[k] * x ** k for k in range(n)) for x in xs]


print("# window polyorder deriv delta pos use | exact coefficients (17 significant digits)")
for c in golden["coeffs"]:
    pos = "none" if c["pos"] is None else str(c["pos"])
    vals = exact(c["window_length"], c["polyorder"], c["deriv"], c["delta"], c["pos"], c["use"])
    print(c["window_length"], c["polyorder"], c["deriv"], repr(c["delta"]), pos, c["use"], "|",
          " ".join(f"{float(v):.17g}" for v in vals))
