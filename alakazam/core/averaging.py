"""Weighted accumulation of (row, chan, corr) data into solution sample bins (numba).

A running accumulator: call :func:`accumulate` on successive row chunks of the same rows and the sums
are identical (up to floating-point summation order) to one call on all rows, which is what makes
the three memory tiers of the solve flow give the same solutions.

Sums are kept per (sample bin, frequency sample, baseline, corr); dividing by ``w_sum`` gives the
weighted average, whose inverse variance is ``w_sum``.
"""

from dataclasses import dataclass

import numpy as np
from numba import prange

from .._numba import pjit


@dataclass
class Accumulators:
    vis_sum: np.ndarray     # complex128 (n_sbin, n_fsamp, n_bl, 4): sum of w * V
    model_sum: np.ndarray   # complex128 (n_sbin, n_fsamp, n_bl, 4): sum of w * M
    w_sum: np.ndarray       # float64    (n_sbin, n_fsamp, n_bl, 4): sum of w


def new_accumulators(n_sbin, n_fsamp, n_bl) -> Accumulators:
    shape = (n_sbin, n_fsamp, n_bl, 4)
    return Accumulators(np.zeros(shape, np.complex128), np.zeros(shape, np.complex128),
                        np.zeros(shape, np.float64))


@pjit
def _accumulate(vis_sum, model_sum, w_sum, data, model, w, sbin, row_bl, chan_lo, chan_hi):
    # prange over frequency samples: each thread owns the output slice [:, fs] -> race-free.
    # Channels of sample fs are the contiguous range chan_lo[fs] .. chan_hi[fs] - 1.
    n_row = data.shape[0]
    for fs in prange(chan_lo.shape[0]):
        for row in range(n_row):
            s = sbin[row]
            b = row_bl[row]
            if s < 0 or b < 0:
                continue
            for chan in range(chan_lo[fs], chan_hi[fs]):
                for c in range(4):
                    wt = w[row, chan, c]
                    if wt > 0:
                        vis_sum[s, fs, b, c] += wt * data[row, chan, c]
                        model_sum[s, fs, b, c] += wt * model[row, chan, c]
                        w_sum[s, fs, b, c] += wt


def accumulate(acc: Accumulators, data, model, w, sbin, row_bl, fsamp_of_chan):
    """Add one chunk: data, model (row, chan, 4), w (row, chan, 4) with 0 = flagged;
    sbin, row_bl (row,) (negative = skip the row); fsamp_of_chan (chan,)."""
    f = np.asarray(fsamp_of_chan, np.int64)
    n_fsamp = acc.vis_sum.shape[1]
    if len(f) and np.any(np.diff(f) < 0):
        raise ValueError("fsamp_of_chan must be non-decreasing (contiguous channel runs)")
    chan_lo = np.searchsorted(f, np.arange(n_fsamp), side="left").astype(np.int64)
    chan_hi = np.searchsorted(f, np.arange(n_fsamp), side="right").astype(np.int64)
    _accumulate(acc.vis_sum, acc.model_sum, acc.w_sum, data, model,
                np.ascontiguousarray(w, dtype=np.float64), np.asarray(sbin, np.int64),
                np.asarray(row_bl, np.int64), chan_lo, chan_hi)
