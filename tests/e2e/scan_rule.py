"""The scans of docs/PROFILE.md's default rule, written independently of the
C++ (kernels/src/scans.cpp), for the e2e checks that need them."""
import numpy as np


def monotonic_scans(z):
    """The documented rule: maximal runs of consecutive spectra whose altitude
    changes in one direction (equal steps continue a run). A list of
    (first, count)."""
    scans, first, direction = [], 0, 0
    for i in range(1, len(z)):
        step = np.sign(z[i] - z[i - 1])
        if step == 0:
            continue
        if direction == 0:
            direction = step
        elif step != direction:
            scans.append((first, i - first))
            first, direction = i, 0
    scans.append((first, len(z) - first))
    return scans


def scan_of_rows(z):
    """Each spectrum's scan number under monotonic_scans."""
    scan = np.empty(len(z), dtype=np.int64)
    for s, (first, count) in enumerate(monotonic_scans(z)):
        scan[first:first + count] = s
    return scan
