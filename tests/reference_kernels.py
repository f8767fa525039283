"""Reference kernels for the tests: straightforward implementations the engine's fused kernels are
checked against (they shipped inside the package before; nothing outside tests/ calls them).

* :func:`accumulate` (with :func:`new_accumulators`): weighted accumulation of (row, chan, corr) data
  into (sample bin, frequency sample, baseline) sums -- the reference of
  :func:`alakazam.core.averaging.accumulate_corrected`; :func:`baseline_index`: rows -> a < b baselines.
* :func:`correct_diag`, :func:`corrupt_diag`, :func:`corrupt_full`: 2x2 Jones algebra on the
  (row, chan, corr) layout, V' = J_p^-1 V J_q^-H and M' = J_p M J_q^H -- the references of
  :func:`alakazam.jones.algebra.correct_diag_inv` / ``correct_full`` and of the fused pre-apply.
* :func:`compose`: the total Jones matrix in the RIME order of docs/conventions.md (numpy).
"""

from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from alakazam._numba import pjit
from alakazam.jones.algebra import sandwich


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
def _accumulate(vis_sum, model_sum, w_sum, data, model, w, sbin, row_bl, chan_lo, chan_hi, n_block):
    # prange over n_block contiguous ranges of frequency samples: block k owns the output slice
    # [:, f0:f1] -> race-free.  The sum over rows runs in row order for every output element (same
    # result as a serial loop).
    # Channels of sample fs are the contiguous range chan_lo[fs] .. chan_hi[fs] - 1.
    n_row = data.shape[0]
    n_fs = chan_lo.shape[0]
    for blk in prange(n_block):
        f0 = blk * n_fs // n_block
        f1 = (blk + 1) * n_fs // n_block
        for row in range(n_row):
            s = sbin[row]
            b = row_bl[row]
            if s < 0 or b < 0:
                continue
            for fs in range(f0, f1):
                for chan in range(chan_lo[fs], chan_hi[fs]):
                    for c in range(4):
                        wt = np.float64(w[row, chan, c])
                        if wt > 0:
                            vis_sum[s, fs, b, c] += wt * np.complex128(data[row, chan, c])
                            model_sum[s, fs, b, c] += wt * np.complex128(model[row, chan, c])
                            w_sum[s, fs, b, c] += wt


@pjit
def _accumulate_rowsplit(vis_part, model_part, w_part, data, model, w, sbin, row_bl, chan_lo, chan_hi):
    # fewer frequency samples than threads (e.g. a G over the full band): row block k adds only into
    # its own partial sums vis_part[k] (race-free); the caller reduces over k.
    n_part = vis_part.shape[0]
    n_row = data.shape[0]
    n_fs = chan_lo.shape[0]
    for part in prange(n_part):
        lo = part * n_row // n_part
        hi = (part + 1) * n_row // n_part
        for row in range(lo, hi):
            s = sbin[row]
            b = row_bl[row]
            if s < 0 or b < 0:
                continue
            for fs in range(n_fs):
                for chan in range(chan_lo[fs], chan_hi[fs]):
                    for c in range(4):
                        wt = np.float64(w[row, chan, c])
                        if wt > 0:
                            vis_part[part, s, fs, b, c] += wt * np.complex128(data[row, chan, c])
                            model_part[part, s, fs, b, c] += wt * np.complex128(model[row, chan, c])
                            w_part[part, s, fs, b, c] += wt


def accumulate(acc: Accumulators, data, model, w, sbin, row_bl, fsamp_of_chan):
    """Add one chunk: data, model (row, chan, 4), w (row, chan, 4) with 0 = flagged (float32 or float64;
    products and sums are in double precision); sbin, row_bl (row,) (negative = skip the row);
    fsamp_of_chan (chan,)."""
    f = np.asarray(fsamp_of_chan, np.int64)
    n_fsamp = acc.vis_sum.shape[1]
    if len(f) and np.any(np.diff(f) < 0):
        raise ValueError("fsamp_of_chan must be non-decreasing (contiguous channel runs)")
    chan_lo = np.searchsorted(f, np.arange(n_fsamp), side="left").astype(np.int64)
    chan_hi = np.searchsorted(f, np.arange(n_fsamp), side="right").astype(np.int64)
    w = np.asarray(w)
    if w.dtype not in (np.float32, np.float64):
        w = w.astype(np.float64)
    # float32 or float64 weights are used as they are (converted per sample inside the kernel)
    sbin = np.asarray(sbin, np.int64)
    row_bl = np.asarray(row_bl, np.int64)
    n_threads = numba.get_num_threads()
    n_row = data.shape[0]
    if n_fsamp >= n_threads or n_threads == 1 or n_row < 4 * n_threads:
        # one frequency sample per parallel iteration: measured on 2 cores (3510 rows x 1024 chan, K)
        # 0.12 s, vs 0.14-0.19 s with n_threads contiguous blocks of samples (output locality wins)
        _accumulate(acc.vis_sum, acc.model_sum, acc.w_sum, data, model, w, sbin, row_bl, chan_lo, chan_hi,
                    max(1, n_fsamp))
    else:
        # fewer frequency samples than threads (G over the full band): row blocks with partial sums,
        # measured 0.04 s vs 0.07 s for the one-thread loop (3510 rows x 1024 chan, one sample)
        part_shape = (n_threads,) + acc.vis_sum.shape
        vp, mp = np.zeros(part_shape, np.complex128), np.zeros(part_shape, np.complex128)
        wp = np.zeros(part_shape, np.float64)
        _accumulate_rowsplit(vp, mp, wp, data, model, w, sbin, row_bl, chan_lo, chan_hi)
        acc.vis_sum += vp.sum(axis=0)
        acc.model_sum += mp.sum(axis=0)
        acc.w_sum += wp.sum(axis=0)


def baseline_index(ant1, ant2, n_ant):
    """Map rows to a fixed list of baselines: every pair a < b of ``n_ant`` active antennas.

    Parameters
    ----------
    ant1, ant2 : array_like (row,) int
        Active-antenna indices (0 .. n_ant-1) of each row.
    n_ant : int

    Returns
    -------
    row_bl : ndarray (row,) int64
        Baseline index of each row; -1 for autocorrelations (a == b) and out-of-range indices.
        A row with ant1 > ant2 maps to the pair (ant2, ant1).
    bl_ant1, bl_ant2 : ndarray (n_bl,) int64
        Antennas of each baseline, n_bl = n_ant (n_ant - 1) / 2, ordered (0,1), (0,2), ..., (1,2), ...
    """
    n_ant = int(n_ant)
    bl_ant1, bl_ant2 = np.triu_indices(n_ant, 1)
    lookup = -np.ones((max(n_ant, 1), max(n_ant, 1)), np.int64)
    lookup[bl_ant1, bl_ant2] = np.arange(len(bl_ant1))
    lookup[bl_ant2, bl_ant1] = np.arange(len(bl_ant1))
    a1 = np.asarray(ant1, np.int64)
    a2 = np.asarray(ant2, np.int64)
    ok = (a1 >= 0) & (a1 < n_ant) & (a2 >= 0) & (a2 < n_ant)
    row_bl = np.full(a1.shape, -1, np.int64)
    row_bl[ok] = lookup[a1[ok], a2[ok]]
    return row_bl, bl_ant1.astype(np.int64), bl_ant2.astype(np.int64)


@pjit
def correct_diag(data, jd, tidx, ant1, ant2, out, out_flag):
    r"""Correct data with diagonal Jones: :math:`V' = J_p^{-1} V J_q^{-H}`.

    Per correlation c = (i, j): ``V'_c = V_c / (jd[t, p, chan, i] * conj(jd[t, q, chan, j]))``;
    only (0,0) and (1,1) of each Jones matrix are touched.

    Parameters
    ----------
    data : ndarray (row, chan, corr=4) complex64 or complex128
    jd : ndarray (time, ant, chan, 2) complex
        Diagonal Jones (p, q feeds).
    tidx, ant1, ant2 : ndarray (row,) int
        Time index into ``jd`` and the two (active) antenna indices of each row.
    out : ndarray (row, chan, corr) complex
        Corrected data (written; may be ``data`` itself).
    out_flag : ndarray (row, chan, corr) bool
        Set True (never cleared) where a used Jones element is zero or non-finite; ``out`` is 0 there.
    """
    n_row, n_chan, n_corr = data.shape
    for row in prange(n_row):
        t = tidx[row]
        a = ant1[row]
        b = ant2[row]
        for chan in range(n_chan):
            for c in range(4):
                i = 0 if c < 2 else 1
                j = 0 if (c == 0 or c == 2) else 1
                den = jd[t, a, chan, i] * np.conj(jd[t, b, chan, j])
                if den == 0 or not np.isfinite(den.real) or not np.isfinite(den.imag):
                    out[row, chan, c] = 0
                    out_flag[row, chan, c] = True
                else:
                    out[row, chan, c] = data[row, chan, c] / den


@pjit
def corrupt_diag(model, jd, tidx, ant1, ant2, out):
    r"""Corrupt a model with diagonal Jones: :math:`M' = J_p M J_q^H`, per correlation
    ``M'_c = jd[t, p, chan, i] M_c conj(jd[t, q, chan, j])``.

    Parameters
    ----------
    model : ndarray (row, chan, corr=4) complex
    jd : ndarray (time, ant, chan, 2) complex
    tidx, ant1, ant2 : ndarray (row,) int
    out : ndarray (row, chan, corr) complex
        Written (may be ``model`` itself).
    """
    n_row, n_chan, n_corr = model.shape
    for row in prange(n_row):
        t = tidx[row]
        a = ant1[row]
        b = ant2[row]
        for chan in range(n_chan):
            for c in range(4):
                i = 0 if c < 2 else 1
                j = 0 if (c == 0 or c == 2) else 1
                out[row, chan, c] = jd[t, a, chan, i] * model[row, chan, c] * np.conj(jd[t, b, chan, j])


@pjit
def corrupt_full(model, j, tidx, ant1, ant2, out):
    r"""Corrupt a model with full 2x2 Jones: :math:`M' = J_p M J_q^H` (puts D and P into the model).

    Parameters
    ----------
    model : ndarray (row, chan, corr=4) complex
    j : ndarray (time, ant, chan, 2, 2) complex
    tidx, ant1, ant2 : ndarray (row,) int
    out : ndarray (row, chan, corr) complex
        Written (may be ``model`` itself: each row reads its four correlations before writing).
    """
    n_row, n_chan, n_corr = model.shape
    for row in prange(n_row):
        t = tidx[row]
        a = ant1[row]
        b = ant2[row]
        for chan in range(n_chan):
            o0, o1, o2, o3 = sandwich(j[t, a, chan, 0, 0], j[t, a, chan, 0, 1], j[t, a, chan, 1, 0],
                                      j[t, a, chan, 1, 1], model[row, chan, 0], model[row, chan, 1],
                                      model[row, chan, 2], model[row, chan, 3], j[t, b, chan, 0, 0],
                                      j[t, b, chan, 0, 1], j[t, b, chan, 1, 0], j[t, b, chan, 1, 1])
            out[row, chan, 0] = o0
            out[row, chan, 1] = o1
            out[row, chan, 2] = o2
            out[row, chan, 3] = o3


def matmul(a, b):
    """Batched 2x2 product (..., 2, 2) @ (..., 2, 2) (small tables only)."""
    return np.einsum("...ij,...jk->...ik", a, b)


def compose(diag_terms=(), leakage=None, parang=None):
    r"""Total Jones in the RIME order of docs/conventions.md (small tables; numpy).

    .. math:: J = K\,G\cdots K_C\,C_P\; D\; P

    Parameters
    ----------
    diag_terms : sequence of array_like
        Diagonal terms (K, G, KC, CP, in any order: they commute), each (..., 2) diagonal or
        (..., 2, 2) diagonal matrices; all broadcastable to one shape.
    leakage : array_like (..., 2, 2), optional
        D term (sky side of the diagonal terms).
    parang : array_like (..., 2, 2), optional
        P term (sky-most).

    Returns
    -------
    ndarray (..., 2, 2) complex128
        ``prod(diag_terms) @ D @ P``; the identity if nothing is given.
    """
    diag = None
    for term in diag_terms:
        t = np.asarray(term, np.complex128)
        if t.ndim >= 2 and t.shape[-2:] == (2, 2):
            t = np.stack([t[..., 0, 0], t[..., 1, 1]], axis=-1)
        diag = t if diag is None else diag * t
    out = None
    if diag is not None:
        out = np.zeros(diag.shape + (2,), np.complex128)
        out[..., 0, 0] = diag[..., 0]
        out[..., 1, 1] = diag[..., 1]
    for full in (leakage, parang):
        if full is None:
            continue
        f = np.asarray(full, np.complex128)
        out = f if out is None else matmul(out, f)
    if out is None:
        out = np.eye(2, dtype=np.complex128)
    return out
