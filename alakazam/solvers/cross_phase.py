"""CP: one cross-hand phase for all antennas, diag(1, exp(i phi)), per frequency bin.

.. math:: V_{pq} = e^{-i\\phi} M_{pq}, \\qquad V_{qp} = e^{+i\\phi} M_{qp}

The least-squares phase is closed-form: the cost depends on phi only through
-2 Re(exp(-i phi) A) with A = sum w (conj(V_pq) M_pq ... ) -- see :func:`solve_exact` -- so
phi = arg(A) is the exact minimiser (no iteration; the initial guess is the solution).
"""

import numpy as np

from .._numba import njit, threaded

CROSS = (1, 2)


#: samples per item of :func:`_cross_pass` (a cell's samples are cut into blocks of this many, so
#: that a cell with many samples -- KC over the band -- spreads over the threads)
_SAMP_BLOCK = 512

# compiled on first use (no signature given: not at import, so that a run whose background compile
# (alakazam/warmup.py) has already cached it loads it); every call passes the same C-contiguous
# types (:func:`_cross_run`): one specialisation for its three uses
@njit
def _cross_pass(start, stride, mode, n_blk, v, m, w, e1, e2, a, r2, present, ws, nw):
    # One pass over a batch, per (cell, sample), summed over baselines in order:
    #   mode 0: a = sum_b w_pq conj(V_pq) M_pq + w_qp V_qp conj(M_qp), present = any w_pq, w_qp > 0
    #   mode 1: r2 = sum_b w_pq |V_pq - e1 M_pq|^2 + w_qp |V_qp - e2 M_qp|^2   (e1, e2: (cell, sample))
    #   mode 2: r2 = sum_b w_pq |M_pq|^2 + w_qp |M_qp|^2, a = sum_b w_pp |M_pp|^2 + w_qq |M_qq|^2
    #           + i sum_b (w_pq |V_pq|^2 + w_qp |V_qp|^2)   (two real sums in one complex array),
    #           ws = sum_b w_pq + w_qp, nw = the samples (baseline, hand) with w > 0
    # Items (cell, block of _SAMP_BLOCK samples) start, start + stride, ... on this thread
    # (_numba.threaded; each writes only its own outputs).
    n_cell, n_bl, n_samp, _ = v.shape
    for it in range(start, n_cell * n_blk, stride):
        c = it // n_blk
        s0 = (it % n_blk) * _SAMP_BLOCK
        s1 = min(s0 + _SAMP_BLOCK, n_samp)
        for b in range(n_bl):
            for s in range(s0, s1):
                w1 = w[c, b, s, 1]
                w2 = w[c, b, s, 2]
                m1 = m[c, b, s, 1]
                m2 = m[c, b, s, 2]
                v1 = v[c, b, s, 1]
                v2 = v[c, b, s, 2]
                if mode == 2:
                    m0 = m[c, b, s, 0]
                    m3 = m[c, b, s, 3]
                    r2[c, s] += (w1 * (m1.real * m1.real + m1.imag * m1.imag)
                                 + w2 * (m2.real * m2.real + m2.imag * m2.imag))
                    ws[c, s] += w1 + w2
                    nw[c, s] += (w1 > 0) + (w2 > 0)
                    a[c, s] += complex(w[c, b, s, 0] * (m0.real * m0.real + m0.imag * m0.imag)
                                       + w[c, b, s, 3] * (m3.real * m3.real + m3.imag * m3.imag),
                                       w1 * (v1.real * v1.real + v1.imag * v1.imag)
                                       + w2 * (v2.real * v2.real + v2.imag * v2.imag))
                    continue
                if mode == 1:
                    x = e1[c, s]
                    rr = v1.real - (x.real * m1.real - x.imag * m1.imag)
                    ri = v1.imag - (x.real * m1.imag + x.imag * m1.real)
                    y = e2[c, s]
                    qr = v2.real - (y.real * m2.real - y.imag * m2.imag)
                    qi = v2.imag - (y.real * m2.imag + y.imag * m2.real)
                    r2[c, s] += w1 * (rr * rr + ri * ri) + w2 * (qr * qr + qi * qi)
                else:
                    # w conj(V_pq) M_pq + w V_qp conj(M_qp) in real arithmetic
                    a[c, s] += complex(w1 * (v1.real * m1.real + v1.imag * m1.imag)
                                       + w2 * (v2.real * m2.real + v2.imag * m2.imag),
                                       w1 * (v1.real * m1.imag - v1.imag * m1.real)
                                       + w2 * (v2.imag * m2.real - v2.real * m2.imag))
                    if w1 > 0 or w2 > 0:
                        present[c, s] = True


@njit
def _swap_pass(start, stride, v, m, w, out):
    # Per cell c (cells start, start + stride, ...; _numba.threaded), over its samples (baseline,
    # sample) that carry both cross hands (w_pq > 0 and w_qp > 0):
    #   out[c, 0] = sum w_pq conj(V_pq) M_pq + w_qp V_qp conj(M_qp)        (A, as labelled)
    #   out[c, 1] = sum w_pq conj(V_qp) M_pq + w_qp V_pq conj(M_qp)        (A_swap: pq <-> qp exchanged)
    #   out[c, 2] = sum w_pq |M_pq|^2 + w_qp |M_qp|^2                      (real: A's noise squared)
    n_cell, n_bl, n_samp, _ = v.shape
    for c in range(start, n_cell, stride):
        a = 0j
        a_swap = 0j
        p = 0.0
        for b in range(n_bl):
            for s in range(n_samp):
                w1 = w[c, b, s, 1]
                w2 = w[c, b, s, 2]
                if not (w1 > 0 and w2 > 0):
                    continue
                m1 = m[c, b, s, 1]
                m2 = m[c, b, s, 2]
                v1 = v[c, b, s, 1]
                v2 = v[c, b, s, 2]
                a += w1 * v1.conjugate() * m1 + w2 * v2 * m2.conjugate()
                a_swap += w1 * v2.conjugate() * m1 + w2 * v1 * m2.conjugate()
                p += (w1 * (m1.real * m1.real + m1.imag * m1.imag)
                      + w2 * (m2.real * m2.real + m2.imag * m2.imag))
        out[c, 0] = a
        out[c, 1] = a_swap
        out[c, 2] = p


def swap_sums(batch):
    """(n_cell, 3) complex per cell: ``A``, ``A_swap`` (the cross hands pq <-> qp exchanged in the data)
    and ``sum w |M|^2`` (real part) over the samples with both cross hands (w_pq > 0 and w_qp > 0): what
    the exchanged-hands check (calibration/misfitcheck.swap_ratio) compares; one compiled pass
    threaded over the cells (the per-cell numpy form took 0.1 s of a CP step on issue 16's MS)."""
    v = np.ascontiguousarray(batch.vis, np.complex128)
    m = np.ascontiguousarray(batch.model, np.complex128)
    w = np.ascontiguousarray(batch.weight, np.float64)
    out = np.zeros((v.shape[0], 3), np.complex128)
    if v.shape[0] and v.shape[2]:
        threaded(_swap_pass, v.shape[0], v, m, w, out)
    return out


def _cross_run(batch, mode, e1=None, e2=None):
    v = np.ascontiguousarray(batch.vis, np.complex128)
    m = np.ascontiguousarray(batch.model, np.complex128)
    w = np.ascontiguousarray(batch.weight, np.float64)
    n_cell, _, n_samp, _ = v.shape
    n_blk = max(1, -(-n_samp // _SAMP_BLOCK))
    shape = (n_cell, n_samp)
    none_c = np.zeros((0, 0), np.complex128)
    a = np.zeros(shape, np.complex128) if mode != 1 else none_c
    r2 = np.zeros(shape if mode != 0 else (0, 0))
    present = np.zeros(shape if mode == 0 else (0, 0), np.bool_)
    ws = np.zeros(shape if mode == 2 else (0, 0))
    nw = np.zeros(shape if mode == 2 else (0, 0), np.int64)
    if n_cell and n_samp:
        threaded(_cross_pass, n_cell * n_blk, int(mode), n_blk, v, m, w,
                 np.ascontiguousarray(e1, np.complex128) if mode == 1 else none_c,
                 np.ascontiguousarray(e2, np.complex128) if mode == 1 else none_c, a, r2, present, ws, nw)
    return a, r2, present, ws, nw


def cross_sums(batch):
    """``(A, present)``: A (n_cell, n_samp) = sum over baselines of w conj(V_pq) M_pq + w V_qp conj(M_qp),
    present (n_cell, n_samp) = a cross-hand weight > 0 on some baseline; one compiled pass (the values
    of the numpy definition to rounding, tests/test_kccp_speed.py)."""
    a, _, present, _, _ = _cross_run(batch, 0)
    return a, present


def cross_residual(batch, e1, e2):
    """(n_cell, n_samp) sum over baselines of w |V_pq - e1 M_pq|^2 + w |V_qp - e2 M_qp|^2 for the
    per-(cell, sample) factors e1, e2 (n_cell, n_samp); one compiled pass."""
    return _cross_run(batch, 1, e1, e2)[1]


def power_pass(batch):
    """The per-(cell, sample) sums of :func:`_cross_pass`'s mode 2 ``(a, r2, present, ws, nw)``: what
    :func:`powers` and :func:`cross_power_counts` read.  A solve of KC / CP computes it once and hands
    it to both (``sums=``) as long as the batch's weights and model are unchanged between them
    (solvers/common.py: again after minblperant removed an antenna)."""
    return _cross_run(batch, 2)


def powers(batch, sums=None):
    """``(parallel, cross, data_cross)``: sum of w |M|^2 over the batch's parallel hands (pp, qq) and over
    its cross hands (pq, qp), and sum of w |V|^2 over its cross hands; one compiled pass (or ``sums``,
    :func:`power_pass` of this batch)."""
    a, r2, _, _, _ = power_pass(batch) if sums is None else sums
    return float(a.real.sum()), float(r2.sum()), float(a.imag.sum())


def cross_model_power(batch):
    """``(sum w |M|^2, sum w)`` over the batch's cross hands (pq, qp): what
    ``leakage.model_power_sums(batch.model, batch.weight, (1, 2))`` gives, in one compiled pass without
    its full-size temporaries (0.3 s of a CP step on the 8.9 GB MS of issue 16)."""
    _, r2, _, ws, _ = _cross_run(batch, 2)
    return float(r2.sum()), float(ws.sum())


def cross_power_counts(batch, sums=None):
    """``(power, n_w)``, each (n_cell,): sum w |M|^2 over the cross hands and the cross-hand samples with
    w > 0 -- what :func:`alakazam.solvers.quality.snr` needs of a global term whose Jones matrices are
    diagonal with entries of modulus 1 (KC, CP: |V^| = |M|), in one pass (its general pass forms
    J M J^H for every sample: 0.18 s of a CP step on the 8.9 GB MS of issue 16, this 0.05 s).
    ``sums``: :func:`power_pass` of this batch, when the caller has it."""
    _, r2, _, _, nw = power_pass(batch) if sums is None else sums
    return r2.sum(axis=1), nw.sum(axis=1)


def chi2(params, batch):
    """(n_cell,) sum w |V_pq - e^{-i phi} M_pq|^2 + w |V_qp - e^{i phi} M_qp|^2 (:func:`model_vis`'s cost)
    in one compiled pass (:func:`cross_residual`)."""
    n_samp = batch.vis.shape[2]
    e1 = np.repeat(np.exp(-1j * np.asarray(params, float)[:, 0])[:, None], n_samp, axis=1)
    return cross_residual(batch, e1, np.conj(e1)).sum(axis=1)


def model_power(batch):
    """``(parallel, cross)``: sum of w |M|^2 over the batch's parallel hands (pp, qq) and over its cross
    hands (pq, qp); one compiled pass."""
    return powers(batch)[:2]


def _a_sum(batch, extra_phase=None):
    """A (n_cell, n_samp) = sum over baselines of w conj(V_pq) M_pq + w V_qp conj(M_qp)."""
    return cross_sums(batch)[0]


#: smallest fraction of the cross-hand model power that must vary between a cell's samples
#: (sum w |M - mean M|^2 / sum w |M|^2) for :func:`remove_leakage_offsets` to act on the cell
MIN_VARYING_FRACTION = 0.05


# compiled on first use, like _cross_pass (no signature given: a signature compiled it at the import of
# this module -- which the run's warmup.needed() does at its start to look at the cache -- on the
# run's own core while the background compile (alakazam/warmup.py) compiled it too, ~0.9 s of the cold
# start); remove_leakage_offsets passes the same C-contiguous types every time: one specialisation,
# (int64, int64, complex128[:, :, :, ::1] x 2, float64[:, :, :, ::1], float64[::1], boolean[::1])
@njit
def _leakage_offsets(start, stride, v, m, w, min_frac, changed, pw):
    # cells start, start + stride, ... on this thread (_numba.threaded; each writes only its own cell).
    # Per (baseline, cross hand): ws = sum_s w (1 where 0), mean = sum_s w x / ws; the cell changes when
    # sum w |M - mean M|^2 >= min_frac[c] sum w |M|^2 (over w > 0 samples; min_frac[c] = 0: always,
    # inf: never); then x -> x - mean where w > 0
    # and 0 elsewhere, for V and M (remove_leakage_offsets).  Pass 0 decides, pass 1 subtracts.
    # pw[c] = (sum w |M|^2, sum w) over the cell's cross hands as they were (pass 0's sums).
    n_cell, n_bl, n_samp, _ = v.shape
    for c in range(start, n_cell, stride):
        num = 0.0
        den = 0.0
        wsum = 0.0
        for rep in range(2):
            for b in range(n_bl):
                for k in range(1, 3):
                    ws = 0.0
                    svr = svi = smr = smi = 0.0
                    for s in range(n_samp):
                        wt = w[c, b, s, k]
                        ws += wt
                        svr += wt * v[c, b, s, k].real
                        svi += wt * v[c, b, s, k].imag
                        smr += wt * m[c, b, s, k].real
                        smi += wt * m[c, b, s, k].imag
                    if not ws > 0:
                        ws = 1.0
                    # the means as numpy's complex / real: each part divided
                    mr = smr / ws
                    mi = smi / ws
                    if rep == 0:
                        for s in range(n_samp):
                            wt = w[c, b, s, k]
                            xr = m[c, b, s, k].real
                            xi = m[c, b, s, k].imag
                            den += wt * (xr * xr + xi * xi)
                            wsum += wt
                            if wt > 0:
                                num += wt * ((xr - mr) ** 2 + (xi - mi) ** 2)
                        continue
                    vr = svr / ws
                    vi = svi / ws
                    for s in range(n_samp):
                        if w[c, b, s, k] > 0:
                            v[c, b, s, k] = complex(v[c, b, s, k].real - vr, v[c, b, s, k].imag - vi)
                            m[c, b, s, k] = complex(m[c, b, s, k].real - mr, m[c, b, s, k].imag - mi)
                        else:
                            v[c, b, s, k] = 0
                            m[c, b, s, k] = 0
            if rep == 0:
                pw[c, 0] = den
                pw[c, 1] = wsum
                # a forced cell (min_frac[c] = 0) changes whatever its power; an excluded one (inf) never
                mf = min_frac[c]
                ok = num >= mf * (den if den > 0 else np.inf) if mf > 0 else mf == 0
                changed[c] = ok
                if not ok:
                    break


def remove_leakage_offsets(batch, cells=None, model_power=None):
    """Absorb the not-yet-calibrated leakage in a CP solve: a constant per baseline and cross hand.

    Before D is known, the cross hands carry the leakage of the unpolarised flux,
    ``V_pq = e^{-i phi} (M_pq + d_pq,a M_qq + conj(d_qp,b) M_pp)``, whose leakage part is constant over
    the cell's samples (the feed-frame parallel hands M_pp, M_qq change with parallactic angle only by
    the polarised flux: a term of order |d| m) while M_pq rotates with it.  For a linear feed M_pq
    (the rotated U) is of the order of the leakage term |d| I, so ignoring it biases phi by
    O(|d| I / |M_pq|) (0.2 rad for |d| ~ 0.07 on 3C286);
    the CASA remedy for linear feeds is the same (Xfparang: the leakage is the offset of the
    cross-hand data in the complex plane, the source polarisation the part that moves with
    parallactic angle).  Fitting ``V = e^{-i phi} M + C_b`` with a free complex C_b per baseline and
    cross hand is the same least-squares problem as fitting ``V~ = e^{-i phi} M~`` with the weighted
    mean over the samples removed from both (C_b = mean V - e^{-i phi} mean M), which is what this
    does, in place, on the cross hands of every cell whose model varies enough between samples
    (fraction >= MIN_VARYING_FRACTION); other cells (one scan, no parallactic-angle change) are left
    as they are.  Returns the per-cell bool array of the cells that were changed.  ``cells`` (bool per
    cell) decides instead which cells change (a later round of ``iterations`` repeats the first round's
    decision: with the previous round's D applied, that D's constant leakage term makes the model's
    varying fraction small -- 0.03 at |d| ~ 0.15 -- and the test above would skip every cell).

    One compiled pass per cell (:func:`_leakage_offsets`, cells on the thread pool): the cell's
    per-(baseline, hand) weighted means, its varying fraction, and the subtraction where it acts --
    the values of the numpy definition above (``tests/test_flow_fullpol.py`` pins them against it)
    without its full-size temporaries.

    ``model_power``: an (n_cell, 2) float64 array to fill with each cell's ``(sum w |M|^2, sum w)`` over
    its cross hands before the change -- :func:`cross_model_power`'s sums per cell, from the same pass.
    """
    batch.vis = np.ascontiguousarray(batch.vis, np.complex128)
    batch.model = np.ascontiguousarray(batch.model, np.complex128)
    batch.weight = np.ascontiguousarray(batch.weight, np.float64)
    changed = np.zeros(batch.n_cell, bool)
    pw = np.zeros((batch.n_cell, 2)) if model_power is None else model_power
    if batch.n_cell:
        threaded(_leakage_offsets, batch.n_cell, batch.vis, batch.model, batch.weight,
                 _min_fractions(batch.n_cell, cells), changed, pw)
    return changed


def _min_fractions(n_cell, cells):
    """(n_cell,) float64 for :func:`_leakage_offsets`: MIN_VARYING_FRACTION, or 0 / inf per ``cells``."""
    if cells is None:
        return np.full(n_cell, float(MIN_VARYING_FRACTION))
    return np.where(np.asarray(cells, bool), 0.0, np.inf)


def check_polarised(batch, term, sums=None):
    """Refuse a KC / CP solve whose model has no cross-hand power (``sums``: :func:`power_pass` of the
    batch, when the caller has it)."""
    from ..errors import AlakazamError

    # sum w |M|^2 over the parallel and the cross hands, one compiled pass (no temporaries)
    tot, p, data_cross = powers(batch, sums)
    if not tot > 0:
        # a solve sums only the cross hands for KC / CP (unit._accumulate_group): the scale is then the
        # data's cross-hand power (leakage and noise at least), against which an unpolarised model's
        # cross hands are 0
        tot = data_cross
    if not (p > 1e-12 * max(tot, 1e-300)):
        raise AlakazamError(
            f"{term} needs a polarised model: the model's cross hands (pq, qp) carry no signal in the "
            "selected data. Solve it on a polarised calibrator (e.g. 3C286) with a polarised MODEL_DATA "
            "(and parang=True for an alt-az array).")


def solve_exact(batch):
    """phi (n_cell, 1), n_iter, converged, cost."""
    A = _a_sum(batch).sum(axis=1)           # (n_cell,)
    phi = np.angle(A)
    return phi[:, None], np.ones(len(phi), np.int32), np.abs(A) > 0


def model_vis(params, batch):
    phi = params[:, 0]
    out = np.zeros_like(batch.model)
    out[..., 1] = np.exp(-1j * phi)[:, None, None] * batch.model[..., 1]
    out[..., 2] = np.exp(1j * phi)[:, None, None] * batch.model[..., 2]
    return out


def initial_guess(batch, ref):
    """The exact (closed-form) solution.  Kept on the batch (``batch.exact``), so the numba solve that
    follows does not compute it a second time."""
    res = solve_exact(batch)
    batch.exact = ("CP", res)
    return res[0].copy()


def solve_numba(batch, init, ref, opts):
    kept = batch.__dict__.pop("exact", None)       # consumed once: never reused for a later solve
    if kept is not None and kept[0] == "CP" and np.array_equal(kept[1][0], init):
        p, n_iter, conv = kept[1]          # solve_exact of the same batch, just computed
    else:
        p, n_iter, conv = solve_exact(batch)
    return p, n_iter, conv, None


def to_jones(params, batch):
    """diag(1, exp(i phi)) for every antenna; no delay."""
    J = np.zeros((batch.n_cell, batch.n_ant, 2, 2), np.complex128)
    J[..., 0, 0] = 1
    J[..., 1, 1] = np.exp(1j * params[:, 0])[:, None]
    return J, None
