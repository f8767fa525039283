"""Time blocks of an apply chunk: the chain's tables evaluated a few integrations at a time.

The apply reads a chunk of rows (DATA + FLAG, within the memory limit), corrects it and writes it.
Its Jones tables are per (time, antenna, channel): the composed inverse (64 B), the diagonal and D
products and each term's evaluation (several complex128 2x2 or 2-vectors), i.e. ~1 kB per (time,
antenna, channel) at their peak, against ~36 B per (row, channel) of the chunk (4 complex64 + 4
flags).  With 25 antennas (300 baselines) the tables of a whole chunk were ~0.8x the chunk itself;
evaluated for one block of times at a time they are ~1/N_BLOCKS of that (issue 16: apply peak memory
<= 1.5x the largest chunk).

Every table value depends only on its own time (interpolation, nearest solution, parallactic angle),
so the corrected data are identical whichever times a block holds (tests/test_apply_blocks.py).
"""

from __future__ import annotations

import numpy as np

#: blocks per chunk (each one compose + inverse + correction); more blocks = smaller tables, more
#: per-call overhead (the chain's evaluation has a fixed cost per call of a few ms per term)
N_BLOCKS = 8


def time_blocks(tidx, n_blocks=None):
    """``[(r0, r1, t0, t1)]``: row slices ``r0:r1`` of a chunk whose time indices ``tidx`` (row,) into
    its unique times are ``t0 <= tidx < t1``, about ``len(tidx) / n_blocks`` rows each, cut at time
    boundaries.  Rows must be in time order (``tidx`` non-decreasing; the usual MS order) for the
    slices to be views; otherwise one block of all rows and times is returned."""
    n_blocks = N_BLOCKS if n_blocks is None else int(n_blocks)
    tidx = np.asarray(tidx)
    n_row = len(tidx)
    if n_row == 0:
        return [(0, 0, 0, 0)]
    n_t = int(tidx[-1]) + 1
    if n_blocks <= 1 or n_t <= 1 or np.any(np.diff(tidx) < 0):
        return [(0, n_row, 0, int(tidx.max()) + 1)]
    # first row of every time (tidx non-decreasing, all values 0..n_t-1 present: np.unique's inverse)
    starts = np.searchsorted(tidx, np.arange(n_t + 1), side="left")
    per = max(1, -(-n_row // n_blocks))
    out = []
    t0 = 0
    while t0 < n_t:
        # the last time whose rows still end within r0 + per (at least one time per block)
        t1 = int(np.searchsorted(starts, starts[t0] + per, side="right")) - 1
        t1 = min(max(t1, t0 + 1), n_t)
        out.append((int(starts[t0]), int(starts[t1]), t0, t1))
        t0 = t1
    return out
