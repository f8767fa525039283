"""2x2 Jones algebra on the native (row, chan, corr) layout (numba kernels).

Correlations are indexed 0 = pp, 1 = pq, 2 = qp, 3 = qq; a visibility row is the 2x2 matrix
``[[pp, pq], [qp, qq]]``.  Jones tables are per unique time of a chunk: diagonal
``jd (n_time, n_ant, n_chan, 2)`` or full ``j (n_time, n_ant, n_chan, 2, 2)``; ``tidx (row,)`` gives each
row's time index, ``ant1/ant2 (row,)`` the active antenna indices.

.. math::

    V' = J_p^{-1} V J_q^{-H} \\quad (\\text{correct}),\\qquad M' = J_p M J_q^H \\quad (\\text{corrupt})

Kernels never produce NaN silently: a Jones element that is NaN, infinite or zero (or a singular 2x2)
flags the affected correlations and writes 0 there.  Every row writes only its own output, so the
row loop is parallel (prange) and race-free.
"""

import numpy as np
from numba import prange

from .._numba import njit, pjit, threaded


@njit(inline="always")
def sandwich(p00, p01, p10, p11, m0, m1, m2, m3, q00, q01, q10, q11):
    """P M Q^H for 2x2 P, Q given by elements and M = [[m0, m1], [m2, m3]]; returns the four
    correlations (pp, pq, qp, qq).  The one 2x2 product of the corrupt/correct kernels (and of the
    solve flow's fused accumulation, alakazam.core.averaging)."""
    x00 = p00 * m0 + p01 * m2
    x01 = p00 * m1 + p01 * m3
    x10 = p10 * m0 + p11 * m2
    x11 = p10 * m1 + p11 * m3
    c00 = np.conj(q00)
    c01 = np.conj(q10)
    c10 = np.conj(q01)
    c11 = np.conj(q11)
    return (x00 * c00 + x01 * c10, x00 * c01 + x01 * c11,
            x10 * c00 + x11 * c10, x10 * c01 + x11 * c11)


def diag_inverse_table(jd):
    """1 / jd for :func:`correct_diag_inv`: NaN where an element is zero or non-finite or its inverse
    is not finite or zero (the cases the direct division V / (g_p conj(g_q)) would flag), as a new
    contiguous complex128 table of the same shape (one parallel pass)."""
    jd = np.ascontiguousarray(jd, np.complex128)
    inv = np.empty(jd.shape, np.complex128)
    threaded(_inverse_or_nan, jd.size, jd.reshape(-1), inv.reshape(-1))
    return inv


@njit
def _inverse_or_nan(start, stride, z, out):
    for i in range(start, z.shape[0], stride):
        v = z[i]
        if v == 0 or not np.isfinite(v.real) or not np.isfinite(v.imag):
            out[i] = np.nan
        else:
            w = 1.0 / v
            if w == 0 or not np.isfinite(w.real) or not np.isfinite(w.imag):
                out[i] = np.nan
            else:
                out[i] = w


def correct_diag_inv(data, jinv, tidx, ant1, ant2, out, out_flag, zero_bad=True):  # -> n flagged
    r"""Correct data with diagonal Jones, :math:`V' = J_p^{-1} V J_q^{-H}`, with a precomputed inverse
    table (:func:`diag_inverse_table`): per correlation c = (i, j),
    ``w = jinv[t, p, chan, i] * conj(jinv[t, q, chan, j])`` and ``V'_c = V_c * w`` (a product instead
    of a complex division; equal to rounding).

    Flags where the direct division would (tests/reference_kernels.correct_diag): a used element zero
    or non-finite (its inverse is NaN in the table) and, as there, a product that over/underflows
    (``w`` not finite or zero; the only difference: an element below ~1e-308, whose inverse
    overflows, is flagged here).  ``out_flag`` is
    set True there (never cleared) and ``out`` is 0 (``zero_bad``, as correct_diag) or the uncorrected
    ``data`` (``zero_bad=False``).  ``out`` may be ``data`` itself (in place).  Returns the number of
    samples flagged here (with a zero ``out_flag`` on input: ``out_flag.sum()``).  Rows on numba's
    threads (:func:`alakazam._numba.threaded`: each row writes only its own output).
    """
    return int(sum(threaded(_correct_diag_inv_rows, data.shape[0], data, jinv, tidx, ant1, ant2, out,
                            out_flag, bool(zero_bad))))


@njit
def _correct_diag_inv_rows(start, stride, data, jinv, tidx, ant1, ant2, out, out_flag, zero_bad):
    n_row, n_chan, n_corr = data.shape
    n_bad = 0
    for row in range(start, n_row, stride):
        t = tidx[row]
        a = ant1[row]
        b = ant2[row]
        for chan in range(n_chan):
            pa0 = jinv[t, a, chan, 0]
            pa1 = jinv[t, a, chan, 1]
            qb0 = np.conj(jinv[t, b, chan, 0])
            qb1 = np.conj(jinv[t, b, chan, 1])
            for c in range(4):
                w = (pa0 if c < 2 else pa1) * (qb0 if (c == 0 or c == 2) else qb1)
                if w == 0 or not np.isfinite(w.real) or not np.isfinite(w.imag):
                    out[row, chan, c] = 0 if zero_bad else data[row, chan, c]
                    out_flag[row, chan, c] = True
                    n_bad += 1
                else:
                    out[row, chan, c] = data[row, chan, c] * w
    return n_bad



@pjit
def correct_full(data, j, tidx, ant1, ant2, out, out_flag):
    r"""Correct data with full 2x2 Jones: :math:`V' = J_p^{-1} V J_q^{-H}` (used for D and for the
    parallactic-angle rotation with P tables).

    Parameters
    ----------
    data : ndarray (row, chan, corr=4) complex
    j : ndarray (time, ant, chan, 2, 2) complex
    tidx, ant1, ant2 : ndarray (row,) int
    out : ndarray (row, chan, corr) complex
        Written (may be ``data`` itself).
    out_flag : ndarray (row, chan, corr) bool
        Set True for all four correlations where either matrix is singular or non-finite (out = 0).
    """
    n_row, n_chan, n_corr = data.shape
    for row in prange(n_row):
        t = tidx[row]
        a = ant1[row]
        b = ant2[row]
        for chan in range(n_chan):
            p00 = j[t, a, chan, 0, 0]
            p01 = j[t, a, chan, 0, 1]
            p10 = j[t, a, chan, 1, 0]
            p11 = j[t, a, chan, 1, 1]
            q00 = j[t, b, chan, 0, 0]
            q01 = j[t, b, chan, 0, 1]
            q10 = j[t, b, chan, 1, 0]
            q11 = j[t, b, chan, 1, 1]
            dp = p00 * p11 - p01 * p10
            dq = q00 * q11 - q01 * q10
            ok = (dp != 0) and (dq != 0) and np.isfinite(dp.real) and np.isfinite(dp.imag) \
                and np.isfinite(dq.real) and np.isfinite(dq.imag)
            if not ok:
                for c in range(4):
                    out[row, chan, c] = 0
                    out_flag[row, chan, c] = True
                continue
            # inverses
            i00 = p11 / dp
            i01 = -p01 / dp
            i10 = -p10 / dp
            i11 = p00 / dp
            r00 = q11 / dq
            r01 = -q01 / dq
            r10 = -q10 / dq
            r11 = q00 / dq
            o0, o1, o2, o3 = sandwich(i00, i01, i10, i11, data[row, chan, 0], data[row, chan, 1],
                                      data[row, chan, 2], data[row, chan, 3], r00, r01, r10, r11)
            out[row, chan, 0] = o0
            out[row, chan, 1] = o1
            out[row, chan, 2] = o2
            out[row, chan, 3] = o3


def full_inverse_table(j):
    """``(inv, ok)`` for :func:`correct_full_inv`: the inverse of every 2x2 of a full Jones table
    ``j (..., 2, 2)`` as a new contiguous complex128 table of the same shape -- the same elements
    :func:`correct_full` computes per visibility (``p11 / det``, ``-p01 / det``, ``-p10 / det``,
    ``p00 / det``), computed once per (time, antenna, channel) instead of once per baseline -- and
    ``ok (...)`` bool, False where the matrix is singular or non-finite (the cases correct_full flags;
    ``inv`` is NaN there)."""
    j = np.ascontiguousarray(j, np.complex128)
    inv = np.empty(j.shape, np.complex128)
    ok = np.empty(j.shape[:-2], np.bool_)
    _inverse2x2_or_nan(j.reshape(-1, 2, 2), inv.reshape(-1, 2, 2), ok.reshape(-1))
    return inv, ok


@pjit
def _inverse2x2_or_nan(j, out, ok):
    for i in prange(j.shape[0]):
        p00 = j[i, 0, 0]
        p01 = j[i, 0, 1]
        p10 = j[i, 1, 0]
        p11 = j[i, 1, 1]
        dp = p00 * p11 - p01 * p10
        if dp != 0 and np.isfinite(dp.real) and np.isfinite(dp.imag):
            out[i, 0, 0] = p11 / dp
            out[i, 0, 1] = -p01 / dp
            out[i, 1, 0] = -p10 / dp
            out[i, 1, 1] = p00 / dp
            ok[i] = True
        else:
            out[i, 0, 0] = np.nan
            out[i, 0, 1] = np.nan
            out[i, 1, 0] = np.nan
            out[i, 1, 1] = np.nan
            ok[i] = False


@njit(inline="always")
def _flag_sample(data, out, out_flag, row, chan, zero_bad):
    """All four correlations of (row, chan) flagged, ``out`` 0 (``zero_bad``) or the uncorrected data;
    returns 4 (the count) -- the full kernels' sample without a valid solution."""
    for c in range(4):
        out[row, chan, c] = 0 if zero_bad else data[row, chan, c]
        out_flag[row, chan, c] = True
    return 4


def correct_full_inv(data, jinv, jok, tidx, ant1, ant2, out, out_flag, zero_bad=True):  # -> n flagged
    r""":func:`correct_full` with a precomputed inverse table ``(jinv, jok)`` of
    :func:`full_inverse_table`: ``V' = Jinv_p V Jinv_q^H``, the same products as correct_full (equal
    to the last bit), without the per-visibility determinant and eight divisions.

    Flags what correct_full flags: all four correlations where either matrix is singular or
    non-finite (``jok`` False); ``out`` is 0 there (``zero_bad``) or the uncorrected ``data``
    (``zero_bad=False``, as :func:`correct_diag_inv`) and ``out_flag`` True (never cleared).  ``out``
    may be ``data`` itself.  Returns the number of samples flagged here.  Rows on numba's threads
    (:func:`alakazam._numba.threaded`: each row writes only its own output)."""
    return int(sum(threaded(_correct_full_inv_rows, data.shape[0], data, jinv, jok, tidx, ant1, ant2, out,
                            out_flag, bool(zero_bad))))


@njit
def _correct_full_inv_rows(start, stride, data, jinv, jok, tidx, ant1, ant2, out, out_flag, zero_bad):
    n_row, n_chan, n_corr = data.shape
    n_bad = 0
    for row in range(start, n_row, stride):
        t = tidx[row]
        a = ant1[row]
        b = ant2[row]
        for chan in range(n_chan):
            if not (jok[t, a, chan] and jok[t, b, chan]):
                n_bad += _flag_sample(data, out, out_flag, row, chan, zero_bad)
                continue
            o0, o1, o2, o3 = sandwich(jinv[t, a, chan, 0, 0], jinv[t, a, chan, 0, 1], jinv[t, a, chan, 1, 0],
                                      jinv[t, a, chan, 1, 1], data[row, chan, 0], data[row, chan, 1],
                                      data[row, chan, 2], data[row, chan, 3], jinv[t, b, chan, 0, 0],
                                      jinv[t, b, chan, 0, 1], jinv[t, b, chan, 1, 0], jinv[t, b, chan, 1, 1])
            out[row, chan, 0] = o0
            out[row, chan, 1] = o1
            out[row, chan, 2] = o2
            out[row, chan, 3] = o3
    return n_bad


def correct_lin_d(data, dinv, leak, pinv, tidx, ant1, ant2, out, out_flag, zero_bad=True):  # -> n flagged
    r"""Correct with the chain ``J = diag(d) S P`` where the leakage S is inverted LINEARISED, as CASA's
    applycal applies a Df: ``V' = P_p^-1 L(X) P_q^-H`` with ``X = d_p^-1 V d_q^-H`` (the diagonal terms
    inverted in full) and L the first-order inverse of ``S_p X S_q^H`` in the leakages (s_pq, s_qp) =
    S's off-diagonal elements:

        L(X)_pp = X_pp,  L(X)_qq = X_qq,
        L(X)_pq = X_pq - s_pq,p X_qq - conj(s_qp,q) X_pp,
        L(X)_qp = X_qp - s_qp,p X_pp - conj(s_pq,q) X_qq

    -- the cross hands corrected to first order in the leakages, the parallel hands untouched
    (calibration/dapply.py says when the apply takes this form).  ``dinv`` (n_t, n_ant, n_chan, 2):
    :func:`diag_inverse_table` of the diagonal product (NaN = no solution); ``leak`` (n_t, n_ant,
    n_chan or 1, 2): (s_pq, s_qp); ``pinv`` (n_t, n_ant, 2, 2): P^-1, or None.  All four correlations are
    flagged where either antenna's diagonal inverse or leakage is not finite (as
    :func:`correct_full_inv`, the leakage mixing the hands); ``out`` there is 0 (``zero_bad``) or the
    uncorrected data.  Returns the number of samples flagged here; rows on numba's threads.

    Per (time, antenna, channel), before the rows: whether the antenna's factors are usable, and its
    leakages times its diagonal inverses (``s_pq d_q^-1``, ``s_qp d_p^-1``: the terms of L that antenna
    brings), so a visibility costs the products of X, four more for L and the P sandwich."""
    c128 = np.complex128
    dinv = np.ascontiguousarray(dinv, c128)
    leak = np.ascontiguousarray(leak, c128)
    if leak.shape[2] != dinv.shape[2]:
        leak = np.ascontiguousarray(np.broadcast_to(leak, dinv.shape))
    ok = np.isfinite(dinv).all(axis=-1) & np.isfinite(leak).all(axis=-1)
    scaled = np.empty(dinv.shape, c128)
    scaled[..., 0] = leak[..., 0] * dinv[..., 1]            # s_pq d_q^-1 (the a side of L's pq term)
    scaled[..., 1] = leak[..., 1] * dinv[..., 0]            # s_qp d_p^-1 (the a side of L's qp term)
    if pinv is None:
        pinv = np.zeros((1, 1, 2, 2), c128)
        pinv[..., 0, 0] = pinv[..., 1, 1] = 1
        has_p = False
    else:
        has_p = True
    return int(sum(threaded(_correct_lin_d_rows, data.shape[0], data, dinv, scaled, ok,
                            np.ascontiguousarray(pinv, c128), has_p, tidx, ant1, ant2, out, out_flag,
                            bool(zero_bad))))


@njit
def _correct_lin_d_rows(start, stride, data, dinv, scaled, ok, pinv, has_p, tidx, ant1, ant2, out, out_flag,
                        zero_bad):
    # X_ij = d_a,i V_ij conj(d_b,j);  L(X)_pq = X_pq - (s_pq,a d_a,q) V_qq conj(d_b,q)
    #                                         - d_a,p V_pp conj(s_qp,b d_b,p)   (and qp alike)
    n_row, n_chan, n_corr = data.shape
    n_bad = 0
    for row in range(start, n_row, stride):
        t = tidx[row]
        a = ant1[row]
        b = ant2[row]
        ta = t if has_p else 0
        aa = a if has_p else 0
        bb = b if has_p else 0
        for chan in range(n_chan):
            if not (ok[t, a, chan] and ok[t, b, chan]):
                n_bad += _flag_sample(data, out, out_flag, row, chan, zero_bad)
                continue
            ga0 = dinv[t, a, chan, 0]
            ga1 = dinv[t, a, chan, 1]
            gb0 = np.conj(dinv[t, b, chan, 0])
            gb1 = np.conj(dinv[t, b, chan, 1])
            v0 = data[row, chan, 0]
            v3 = data[row, chan, 3]
            x0 = v0 * (ga0 * gb0)
            x3 = v3 * (ga1 * gb1)
            z1 = data[row, chan, 1] * (ga0 * gb1) - scaled[t, a, chan, 0] * v3 * gb1 \
                - ga0 * v0 * np.conj(scaled[t, b, chan, 1])
            z2 = data[row, chan, 2] * (ga1 * gb0) - scaled[t, a, chan, 1] * v0 * gb0 \
                - ga1 * v3 * np.conj(scaled[t, b, chan, 0])
            if has_p:
                o0, o1, o2, o3 = sandwich(pinv[ta, aa, 0, 0], pinv[ta, aa, 0, 1], pinv[ta, aa, 1, 0],
                                          pinv[ta, aa, 1, 1], x0, z1, z2, x3, pinv[ta, bb, 0, 0],
                                          pinv[ta, bb, 0, 1], pinv[ta, bb, 1, 0], pinv[ta, bb, 1, 1])
            else:
                o0, o1, o2, o3 = x0, z1, z2, x3
            out[row, chan, 0] = o0
            out[row, chan, 1] = o1
            out[row, chan, 2] = o2
            out[row, chan, 3] = o3
    return n_bad


def compose_inverse_table(n_t, n_ant, n_chan, diag=None, sky=None, parang=None):
    """``(inv, ok)`` of :func:`full_inverse_table` for the apply chain ``J = diag(d) S P`` evaluated per
    (time, antenna, channel) in one pass, without the (n_t, n_ant, n_chan, 2, 2) intermediates of
    ``S @ P`` and ``d * (S P)``: ``diag (n_t, n_ant, n_chan, 2)`` (the diagonal terms' product),
    ``sky (n_t, n_ant, n_chan or 1, 2, 2)`` (the D terms; a channel axis of 1 serves every channel),
    ``parang (n_t, n_ant, 2, 2)`` (P, the same for every channel); each optional (None = identity).
    The products are those of ``diag[..., :, None] * (sky @ P)`` (numpy's order of the two-term sums),
    so the result equals the former numpy composition followed by full_inverse_table to rounding
    (pinned to 1e-12 by tests/test_apply_fullinv.py)."""
    one = np.ones((1, 1, 1, 2), np.complex128)
    eye = np.zeros((1, 1, 1, 2, 2), np.complex128)
    eye[..., 0, 0] = eye[..., 1, 1] = 1
    d = one if diag is None else np.ascontiguousarray(diag, np.complex128)
    s = eye if sky is None else np.ascontiguousarray(sky, np.complex128)
    p = eye[:, :, 0] if parang is None else np.ascontiguousarray(parang, np.complex128)
    inv = np.empty((n_t, n_ant, n_chan, 2, 2), np.complex128)
    ok = np.empty((n_t, n_ant, n_chan), np.bool_)
    threaded(_compose_inverse, n_t * n_ant, d, diag is not None, s, sky is not None, p, parang is not None,
             inv, ok)
    return inv, ok


@njit
def _compose_inverse(start, stride, d, has_d, s, has_s, p, has_p, out, ok):
    n_t, n_ant, n_chan = ok.shape
    s_per_chan = s.shape[2] > 1             # else one channel of S serves all (a 1-bin leakage)
    for k in range(start, n_t * n_ant, stride):
        t = k // n_ant
        a = k % n_ant
        for c in range(n_chan):
            if has_s:
                sc = c if s_per_chan else 0
                s00 = s[t, a, sc, 0, 0]
                s01 = s[t, a, sc, 0, 1]
                s10 = s[t, a, sc, 1, 0]
                s11 = s[t, a, sc, 1, 1]
            else:
                s00 = 1.0 + 0j
                s01 = 0j
                s10 = 0j
                s11 = 1.0 + 0j
            if has_p:
                m00 = s00 * p[t, a, 0, 0] + s01 * p[t, a, 1, 0]
                m01 = s00 * p[t, a, 0, 1] + s01 * p[t, a, 1, 1]
                m10 = s10 * p[t, a, 0, 0] + s11 * p[t, a, 1, 0]
                m11 = s10 * p[t, a, 0, 1] + s11 * p[t, a, 1, 1]
            else:
                m00 = s00
                m01 = s01
                m10 = s10
                m11 = s11
            if has_d:
                d0 = d[t, a, c, 0]
                d1 = d[t, a, c, 1]
                m00 = d0 * m00
                m01 = d0 * m01
                m10 = d1 * m10
                m11 = d1 * m11
            dp = m00 * m11 - m01 * m10
            if dp != 0 and np.isfinite(dp.real) and np.isfinite(dp.imag):
                out[t, a, c, 0, 0] = m11 / dp
                out[t, a, c, 0, 1] = -m01 / dp
                out[t, a, c, 1, 0] = -m10 / dp
                out[t, a, c, 1, 1] = m00 / dp
                ok[t, a, c] = True
            else:
                out[t, a, c, 0, 0] = np.nan
                out[t, a, c, 0, 1] = np.nan
                out[t, a, c, 1, 0] = np.nan
                out[t, a, c, 1, 1] = np.nan
                ok[t, a, c] = False


def merge_flags(flag, bad):  # -> number of samples newly flagged
    """``flag |= bad`` in place (both (row, chan, corr) bool); returns how many samples were not
    flagged in ``flag`` and are in ``bad`` (the samples apply flags because of their solutions)."""
    return int(sum(threaded(_merge_flags_rows, flag.shape[0], flag, bad)))


def merge_flags_nonfinite(flag, bad, out, use_corr=None):  # -> (newly flagged: bad, bad data)
    """``flag |= bad | (out not finite) | (out zero in every correlation of the (row, channel))`` in place
    (all (row, chan, corr); ``bad`` None: none), in one pass; returns how many samples not flagged in
    ``flag`` it flags because of ``bad`` and how many more because of their data: ``out`` (the corrected
    data) NaN or infinite -- DATA that held NaN / Inf, which no solution corrects -- or exactly 0 in all
    the correlations of its (row, channel) -- a correlator dropout, as the solve's bad values
    (core/cellflags.py) -- (apply with propagate_flags).  ``use_corr`` (n_corr,) bool: only these
    correlations are flagged and counted (those stored and selected: what the apply writes to FLAG;
    default all), and only they decide 'zero in every correlation'."""
    use_bad = bad is not None
    use = np.ones(flag.shape[2], np.bool_) if use_corr is None else np.ascontiguousarray(use_corr, np.bool_)
    res = threaded(_merge_flags_nonfinite_rows, flag.shape[0], flag,
                   bad if use_bad else np.zeros((1, 1, 1), np.bool_), out, use_bad, use)
    return int(sum(r[0] for r in res)), int(sum(r[1] for r in res))


@njit
def _merge_flags_nonfinite_rows(start, stride, flag, bad, out, use_bad, use):
    n_row, n_chan, n_corr = flag.shape
    n_bad = 0
    n_nf = 0
    for row in range(start, n_row, stride):
        for chan in range(n_chan):
            zero = True
            for c in range(n_corr):
                x = out[row, chan, c]
                if use[c] and (x.real != 0 or x.imag != 0):
                    zero = False
                    break
            for c in range(n_corr):
                if flag[row, chan, c] or not use[c]:
                    continue
                if use_bad and bad[row, chan, c]:
                    flag[row, chan, c] = True
                    n_bad += 1
                    continue
                x = out[row, chan, c]
                if zero or not (np.isfinite(x.real) and np.isfinite(x.imag)):
                    flag[row, chan, c] = True
                    n_nf += 1
    return n_bad, n_nf


@njit
def _merge_flags_rows(start, stride, flag, bad):
    n_row, n_chan, n_corr = flag.shape
    n_new = 0
    for row in range(start, n_row, stride):
        for chan in range(n_chan):
            for c in range(n_corr):
                if bad[row, chan, c] and not flag[row, chan, c]:
                    flag[row, chan, c] = True
                    n_new += 1
    return n_new


@njit
def _nonfinite_pairs(start, stride, a, out):
    # items start, start + stride, ... of the blocks of 1 << 14 entries (_numba.threaded)
    n = out.shape[0]
    k = a.shape[1]
    blk = 1 << 14
    for b in range(start, (n + blk - 1) // blk, stride):
        for i in range(b * blk, min(n, (b + 1) * blk)):
            bad = False
            for j in range(k):
                x = a[i, j]
                if not (np.isfinite(x.real) and np.isfinite(x.imag)):
                    bad = True
                    break
            out[i] = bad
    return


def nonfinite_any(a):
    """``~np.isfinite(a).all(axis=-1)`` of a complex array (e.g. the (..., 2) diagonal tables of a
    chain), in one threaded pass without the full-size boolean temporaries (the apply's per-term flag
    counts evaluated it on every table of every chunk: 0.33 s of the benchmark's apply)."""
    a = np.asarray(a)
    lead = a.shape[:-1]
    flat = np.ascontiguousarray(a, np.complex128).reshape(-1, a.shape[-1]) if a.size else None
    out = np.zeros(int(np.prod(lead, dtype=np.int64)), np.bool_)
    if flat is not None and len(out):
        threaded(_nonfinite_pairs, max(1, (len(out) + (1 << 14) - 1) >> 14), flat, out)
    return out.reshape(lead)
