"""D: polarisation leakage [[1, d_pq], [d_qp, 1]] per antenna, from all four correlations.

.. math:: V_{ab} = D_a M_{ab} D_b^H

Gauge d_pq[ref] = 0, as CASA's polcal: the cell is fitted FREE (every antenna's d_pq and d_qp), then
re-referenced as CASA's DJones::applyRefAnt does, d_pq -= d_pq[ref] and d_qp += conj(d_pq[ref]) on
every antenna (:func:`reference`).  The transform x_a + c, y_a - conj(c) leaves the cross hands of an
unpolarised calibrator unchanged (exactly) and those of a polarised one to first order for circular
feeds (they change by -2 c V), so there the data do not fix c; for LINEAR feeds they change by
-2 c Q_rot (Q in the feed frame, rotating with the parallactic angle), so a polarised calibrator fixes
c, and a fit that holds d_pq[ref] = 0 instead spreads that misfit over every antenna (measured,
benchmarks/dgauge_casa.py: 0.0105 off the gauged truth, where CASA's Df and the free fit re-referenced
are 0.002 / 0.0004 off).  A weak prior holds c where the data do not fix it: the cost gets
GAUGE_PRIOR x (the information on d_pq[ref] of its own data) x |d_pq[ref]|^2 (:func:`gauge_prior`);
every backend fits the same prior.  Only for linear feeds (``CellBatch.feed_basis``): for circular
feeds (and a batch whose feeds are not known) the weight is GAUGE_PIN instead, which holds
d_pq[ref] at 0 inside the fit, as before session 36.  Why: with circular feeds the data fix c only at
second order, and a weak prior let a model error pull it far (a review: 3C286's model polarisation
angle 30 deg off put the free d_pq[ref] at 0.6 where the truth is 0.1, and the first-order
re-referencing could not undo that: D 10-15% worse than the pinned fit and CASA's); the pinned fit
was already at CASA's accuracy there (0.0005).  Limits (linear feeds): at one parallactic angle (D per
scan) the cross hands have another exact degeneracy, d_pq + t / (I - Q), conj(d_qp) - t / (I + Q),
which the prior pins at d_pq[ref] = 0, so a per-scan D is the pinned fit (up to ~2 |d_ref| q off the
gauged truth; CASA's Df is closer there); and the gauge, exact only for an unpolarised source, leaves
the stored D fitting a polarised calibrator worse than the free fit did (what CASA returns, too).
Parameters per antenna are (Re x, Im x, Re y, Im y) with x = d_pq, y = d_qp; the model is
holomorphic in (x_a, y_a) and anti-holomorphic in (x_b, y_b), which gives the analytic Jacobian.
Solved by Levenberg-Marquardt on the normal equations (numba, cells spread over threads),
starting from 0 (leakages are small; the problem is nearly linear there).
"""

import numpy as np

from .._numba import njit, threaded
from .lm import converged_test, damped_step, norm


#: weight of the gauge prior on d_pq[ref], relative to the information on it of the reference's own
#: cross-hand data (:func:`gauge_prior`): linear feeds
GAUGE_PRIOR = 1e-4
#: the same weight where the gauge is held inside the fit (circular or unknown feeds)
GAUGE_PIN = 1e12
#: the same weight with leakage_gauge 'absolute', whose cells carry at least ABSOLUTE_MIN_INFO of that
#: information on the gauge mode (checked before the solve): only a floor for the normal equations,
#: pulling the absolute d_pq[ref] towards 0 by at most 1e-6 of itself
GAUGE_ABSOLUTE = 1e-8


def initial_guess(batch, ref):
    return np.zeros((batch.n_cell, batch.n_ant, 2), np.complex128)


def gauge_prior(batch, ref):
    """(n_cell,) float64: the weight lam of the prior term lam |d_pq[ref]|^2 every backend adds to the
    cell's cost (module docstring).  lam = GAUGE_PRIOR (linear feeds; else GAUGE_PIN) x the reference
    antenna's information on its
    d_pq: sum w_pq |M_qq|^2 over the samples of its baselines as the first antenna, plus w_qp |M_qq|^2
    as the second (d_pq enters the cross hands as d_pq,a M_qq and conj(d_pq,b) M_qq at first order);
    1.0 where that is 0 or not finite (a cell without the reference's data: nothing to hold)."""
    ref = np.asarray(ref, np.int64)
    out = np.empty(batch.n_cell)
    for r in np.unique(ref):                  # the cells of one reference together (normally all)
        cells = np.nonzero(ref == r)[0]
        out[cells] = _prior_of(batch, slice(None), int(r))[cells]      # (all cells: no copy of them)
    return out


def _prior_of(batch, cells, r):
    """(len(cells),): :func:`gauge_prior_cell` of the cells ``cells`` (indices or a slice), reference r."""
    s1 = np.nonzero(np.asarray(batch.ant1) == r)[0]
    s2 = np.nonzero(np.asarray(batch.ant2) == r)[0]
    w, m = batch.weight[cells], batch.model[cells]
    with np.errstate(invalid="ignore", over="ignore"):
        w1, w2 = w[:, s1][..., 1], w[:, s2][..., 2]          # (cells, baselines, samples)
        m1, m2 = m[:, s1][..., 3], m[:, s2][..., 3]
        info = (np.where(w1 > 0, w1 * (m1.real ** 2 + m1.imag ** 2), 0.0).sum(axis=(1, 2))
                + np.where(w2 > 0, w2 * (m2.real ** 2 + m2.imag ** 2), 0.0).sum(axis=(1, 2)))
    rel = (GAUGE_ABSOLUTE if absolute_gauge(batch) else GAUGE_PRIOR) if free_gauge(batch) else GAUGE_PIN
    ok = np.isfinite(info) & (info > 0)
    return np.where(ok, rel * np.where(ok, info, 0.0), 1.0)


def free_gauge(batch) -> bool:
    """Whether D's gauge is fitted (weak prior, then re-referenced): linear feeds only (module
    docstring); otherwise d_pq[ref] is held at 0 inside the fit (GAUGE_PIN)."""
    return getattr(batch, "feed_basis", "") == "linear"


def gauge_prior_cell(batch, c, r):
    """:func:`gauge_prior` of cell ``c`` with reference ``r``."""
    return float(_prior_of(batch, [c], int(r))[0])


@njit(inline="always")
def _model(m, xa, ya, xb, yb):
    m00, m01, m10, m11 = m[0], m[1], m[2], m[3]
    cxb = np.conj(xb)
    cyb = np.conj(yb)
    t00 = m00 + xa * m10
    t01 = m01 + xa * m11
    t10 = ya * m00 + m10
    t11 = ya * m01 + m11
    return t00 + t01 * cxb, t00 * cyb + t01, t10 + t11 * cxb, t10 * cyb + t11


@njit(inline="always")
def _normal_eq(vis, model, weight, ant1, ant2, d, index):
    n_par = 4 * index.shape[0]            # index (n_ant, 4)
    jtj = np.zeros((n_par, n_par))
    jtr = np.zeros(n_par)
    cost = 0.0
    n_bl, n_samp = vis.shape[0], vis.shape[1]
    # derivative buffers: 4 corr x 8 real params (xa re/im, ya re/im, xb re/im, yb re/im)
    dv = np.zeros((4, 8), np.complex128)
    idx = np.empty(8, np.int64)
    for b in range(n_bl):
        a1 = ant1[b]
        a2 = ant2[b]
        xa = d[a1, 0]
        ya = d[a1, 1]
        xb = d[a2, 0]
        yb = d[a2, 1]
        for k in range(4):
            idx[k] = index[a1, k]
            idx[4 + k] = index[a2, k]
        for s in range(n_samp):
            m = model[b, s]
            mv = _model(m, xa, ya, xb, yb)
            m00, m01, m10, m11 = m[0], m[1], m[2], m[3]
            cxb = np.conj(xb)
            cyb = np.conj(yb)
            # holomorphic derivatives wrt xa, ya
            dxa = (m10 + m11 * cxb, m10 * cyb + m11, 0j, 0j)
            dya = (0j, 0j, m00 + m01 * cxb, m00 * cyb + m01)
            # derivatives wrt conj(xb), conj(yb)
            dcxb = (m01 + xa * m11, 0j, ya * m01 + m11, 0j)
            dcyb = (0j, m00 + xa * m10, 0j, ya * m00 + m10)
            for c in range(4):
                dv[c, 0] = dxa[c]
                dv[c, 1] = 1j * dxa[c]
                dv[c, 2] = dya[c]
                dv[c, 3] = 1j * dya[c]
                dv[c, 4] = dcxb[c]
                dv[c, 5] = -1j * dcxb[c]
                dv[c, 6] = dcyb[c]
                dv[c, 7] = -1j * dcyb[c]
            for c in range(4):
                w = weight[b, s, c]
                if w <= 0:
                    continue
                r = vis[b, s, c] - mv[c]
                cost += w * (r.real * r.real + r.imag * r.imag)
                # dr/dp = -dv ; jtr = sum w Re(conj(dr) r)
                for i in range(8):
                    ii = idx[i]
                    if ii < 0:
                        continue
                    gi = dv[c, i]
                    jtr[ii] -= w * (gi.real * r.real + gi.imag * r.imag)
                    for j in range(8):
                        jj = idx[j]
                        if jj < 0:
                            continue
                        gj = dv[c, j]
                        jtj[ii, jj] += w * (gi.real * gj.real + gi.imag * gj.imag)
    return jtj, jtr, cost


@njit(inline="always")
def _lm_cell(vis, model, weight, ant1, ant2, d, ref, prior, max_iter, tol):
    """LM for one cell, free, with the gauge prior ``prior`` |d_pq[ref]|^2 in the cost (module
    docstring); d (n_ant, 2) updated in place, started with d_pq[ref] = 0.  One call site of
    _normal_eq (it is inlined by LLVM, so every extra call site costs compile time); the loop
    evaluates the candidate point, accepts or rejects it, then proposes the next damped Gauss-Newton
    step."""
    n_ant = d.shape[0]
    index = -np.ones((n_ant, 4), np.int64)
    k = 0
    for a in range(n_ant):
        for j in range(4):
            index[a, j] = k
            k += 1
    n_par = k
    i_re = index[ref, 0]
    i_im = index[ref, 1]
    d[ref, 0] = 0.0
    lam = 1e-3
    dc = d.copy()                 # candidate
    jtj = np.zeros((n_par, n_par))
    jtr = np.zeros(n_par)
    cost = 0.0
    step = np.zeros(n_par)
    first = True
    conv = False
    it = np.int64(0)      # not a literal 0: damped_step compiles once (int64), not twice
    while True:
        jtj_n, jtr_n, cost_n = _normal_eq(vis, model, weight, ant1, ant2, dc, index)
        xr = dc[ref, 0]                        # the prior's residual sqrt(prior) x_ref
        jtj_n[i_re, i_re] += prior
        jtj_n[i_im, i_im] += prior
        jtr_n[i_re] += prior * xr.real
        jtr_n[i_im] += prior * xr.imag
        cost_n += prior * (xr.real * xr.real + xr.imag * xr.imag)
        if first or cost_n <= cost:
            done = False
            if not first:
                xn = 0.0
                for a in range(n_ant):
                    for j in range(2):
                        xn += d[a, j].real ** 2 + d[a, j].imag ** 2
                done = converged_test(cost, cost_n, norm(step), np.sqrt(xn), tol)
                lam = max(lam * 0.1, 1e-12)
            for a in range(n_ant):     # element loops: slice assignment costs seconds of compile
                d[a, 0] = dc[a, 0]
                d[a, 1] = dc[a, 1]
            jtj, jtr, cost = jtj_n, jtr_n, cost_n
            first = False
            if done:
                conv = True
                break
        else:
            lam *= 10.0
            if lam > 1e12:
                conv = True
                break
        step, ok, lam, it = damped_step(jtj, jtr, lam, it, max_iter)
        if not ok:
            break
        for a in range(n_ant):
            dc[a, 0] = d[a, 0]
            dc[a, 1] = d[a, 1]
        for a in range(n_ant):
            dc[a, 0] += step[index[a, 0]] + 1j * step[index[a, 1]]
            dc[a, 1] += step[index[a, 2]] + 1j * step[index[a, 3]]
    return it, conv, cost


@njit
def _lm_items(start, stride, vis, model, weight, ant1, ant2, d, ref, prior, max_iter, tol, n_iter, conv,
              cost):
    """Cells range(start, n_cell, stride); each writes only its own outputs."""
    n_ant = d.shape[1]
    for c in range(start, vis.shape[0], stride):
        dc = np.empty((n_ant, 2), np.complex128)
        for a in range(n_ant):
            dc[a, 0] = d[c, a, 0]
            dc[a, 1] = d[c, a, 1]
        it, ok, cst = _lm_cell(vis[c], model[c], weight[c], ant1, ant2, dc, ref[c], prior[c], max_iter, tol)
        for a in range(n_ant):
            d[c, a, 0] = dc[a, 0]
            d[c, a, 1] = dc[a, 1]
        n_iter[c] = it
        conv[c] = ok
        cost[c] = cst


def lm_batch(vis, model, weight, ant1, ant2, d, ref, prior, max_iter, tol, n_iter, conv, cost):
    """In place: d (n_cell, n_ant, 2) complex; n_iter, conv, cost (n_cell,; with the prior term).
    Cells spread over numba's threads (:func:`alakazam._numba.threaded`)."""
    threaded(_lm_items, vis.shape[0], vis, model, weight, ant1, ant2, d, ref, prior, max_iter, tol, n_iter,
             conv, cost)


def model_vis(params, batch):
    x = params[..., 0]
    y = params[..., 1]
    D = np.zeros(params.shape[:2] + (2, 2), np.complex128)
    D[..., 0, 0] = 1
    D[..., 1, 1] = 1
    D[..., 0, 1] = x
    D[..., 1, 0] = y
    Da = D[:, batch.ant1][:, :, None]
    Db = D[:, batch.ant2][:, :, None]
    M = batch.model.reshape(batch.model.shape[:-1] + (2, 2))
    V = Da @ M @ np.conj(np.swapaxes(Db, -1, -2))
    return V.reshape(batch.model.shape)


def solve_numba(batch, init, ref, opts):
    """numba backend: LM per cell; cost None (recomputed by common.chi2, as before)."""
    n_cell = batch.n_cell
    ref = np.ascontiguousarray(ref, np.int64)
    d = np.ascontiguousarray(init, np.complex128).copy()
    n_iter = np.zeros(n_cell, np.int64)
    conv = np.zeros(n_cell, bool)
    cost = np.zeros(n_cell)
    prior = np.ascontiguousarray(gauge_prior(batch, ref), np.float64)
    lm_batch(batch.vis, batch.model, batch.weight, batch.ant1, batch.ant2, d, ref, prior,
             int(opts.max_iter), float(opts.tol), n_iter, conv, cost)
    return d, n_iter, conv, None


def cross_hands_only(batch) -> bool:
    """D is fitted on the cross hands (pq, qp) only, on every calibrator, as CASA's polcal Df ("Using
    only cross-hand data for instrumental polarization solution"): the parallel-hand weights of the
    batch are set to 0, so the fit, its cost, SNR and degrees of freedom use pq, qp.

    Why, for a polarised calibrator: the gauge d_pq[ref] = 0 (CASA's too) is a symmetry of the cross
    hands to first order in d for any calibrator, but of the parallel hands only for an unpolarised one
    (for a polarised one they carry d_pq M_qp + conj(d_pq) M_pq at first order, whose absolute offset
    the gauge sets to 0).  A fit of all four correlations spreads that misfit over every antenna:
    measured with benchmarks/dgauge_casa.py (linear and circular feeds, |d| ~ 0.05 with d_ref = 0.07),
    up to 0.017 off the truth moved into the gauge, where CASA's Df and this fit are 0.002 / 0.0005 off.

    Why, for an unpolarised one: its parallel hands carry d only at second order (d_a conj(d_b) I), so
    they add nothing to the leakage but a way to absorb a parallel-hand misfit.  When the corrected
    parallel hands are r x the model (the pre-applied gains fitted to another field, a flux model a few
    per cent off), the fit of all four correlations moves every d towards |d_a d_b| ~ |r - 1|: measured
    (benchmarks/dmismatch_casa.py, 8 antennas, |d| <= 0.1, both feeds), max |D - truth| 0.044 at
    r = 1.05 and no convergence at r = 1.1, against 0.005 / 0.010 for the cross hands only and
    0.006 / 0.010 for CASA's Df; at r = 1 both fits are 0.0022 off (CASA 0.0045).
    Returns whether the batch has cross-hand data left."""
    if batch.n_cell == 0:
        return False
    batch.weight = np.ascontiguousarray(batch.weight, np.float64)
    batch.weight[..., 0] = 0
    batch.weight[..., 3] = 0
    return bool((batch.weight[..., 1:3] > 0).any())


#: |R - 1| of :func:`parallel_hand_scale` above which the D solve warns (the leakage comes out
#: scaled by about R: |d| ~ 0.05 -> ~0.005 off at 10%) ...
PARALLEL_MISFIT_WARN = 0.1
#: ... and above which it stops with an error (the leakage would be more than 1.5x or less than half
#: its value: not a usable solution)
PARALLEL_MISFIT_ERROR = 0.5
#: a misfit counts only beyond this many standard errors of R
PARALLEL_MISFIT_SIGMA = 5.0
#: samples per block of :func:`parallel_hand_scale` (bounds its temporaries)
_SCALE_BLOCK = 1 << 20


def parallel_hand_scale(batch):
    """(R, sigma_R): the least-squares complex scale of the batch's parallel hands against its model:
    R = sum w conj(M) V / sum w |M|^2 over pp and qq of every cell, baseline and sample with weight,
    and its standard error per real component from the scatter of V - R M (the weights taken as
    relative: their absolute scale is not trusted).  R = 1 when the pre-applied terms calibrate the
    field against its model; the cross hands a D fits are then V_pq ~ R (d_pq,a M_qq + conj(d_qp,b)
    M_pp), so the leakage comes out scaled by R.  (nan, nan) without parallel-hand data."""
    vis, model, weight = np.asarray(batch.vis), np.asarray(batch.model), np.asarray(batch.weight)
    step = max(1, _SCALE_BLOCK // max(1, vis[0].size))
    num, den, vv, n = 0j, 0.0, 0.0, 0
    for c0 in range(0, batch.n_cell, step):
        for h in (0, 3):                 # strided views of one hand: no copy of the batch
            v, m, w = (a[c0:c0 + step, ..., h] for a in (vis, model, weight))
            ok = (w > 0) & np.isfinite(v) & np.isfinite(m)
            v, m, w = v[ok], m[ok], w[ok]
            num += complex(np.sum(w * np.conj(m) * v))
            den += float(np.sum(w * (m.real ** 2 + m.imag ** 2)))
            vv += float(np.sum(w * (v.real ** 2 + v.imag ** 2)))
            n += int(ok.sum())
    if den <= 0 or n < 2:
        return complex("nan"), float("nan")
    r = num / den
    s2 = max(vv - abs(num) ** 2 / den, 0.0) / (n - 1)       # sum w |V - R M|^2, in one pass
    return r, float(np.sqrt(s2 / (2 * den)))


def check_parallel_hands(batch, where: str, log) -> None:
    """Before a D solve: the parallel hands must match the model (:func:`parallel_hand_scale`); a
    misfit |R - 1| beyond PARALLEL_MISFIT_SIGMA standard errors and PARALLEL_MISFIT_ERROR is an
    error, beyond PARALLEL_MISFIT_WARN a warning (the leakage is scaled by about R either way)."""
    from ..errors import AlakazamError

    r, sig = parallel_hand_scale(batch)
    if not np.isfinite(r) or abs(r - 1) <= PARALLEL_MISFIT_SIGMA * sig:
        return
    mis = abs(r - 1)
    text = (f"{where}: the parallel hands (with the earlier steps' terms applied, if any) are "
            f"{abs(r):.3g} x the model (phase {np.degrees(np.angle(r)):+.1f} deg; |R - 1| = {mis:.2f}), "
            f"and a leakage comes out scaled by about that factor: the data are not calibrated against "
            f"this field's model. Solve an amplitude-and-phase G on this field in an earlier step, or "
            f"give it its true flux model")
    if mis > PARALLEL_MISFIT_ERROR:
        raise AlakazamError(text + f" (|R - 1| > {PARALLEL_MISFIT_ERROR}: the D step was not solved)")
    if mis > PARALLEL_MISFIT_WARN:
        log.warning("%s", text)


def model_pol_fraction(batch) -> float:
    """sqrt(sum w |M|^2 over the cross hands / over the parallel hands) of the batch's model: about
    rms(U_feed) / I for linear feeds, the linear polarisation fraction for circular ones -- the
    polarised flux that a leakage d puts into the parallel hands at first order (d x that fraction),
    which a gain solved on these data before D absorbed (calibration/leakcheck.py).  0 for an
    unpolarised model, nan without parallel-hand weight."""
    from .cross_phase import model_power

    par, cross = model_power(batch)
    return float(np.sqrt(cross / par)) if par > 0 else float("nan")


def model_power_sums(model, weight, hands):
    """(sum w |M|^2, sum w) over the correlations ``hands`` of 4-correlation arrays (pp, pq, qp, qq
    last): a CP step's parallel hands from a sample of its rows as read and cross hands from its batch
    give its calibrator's mean model power per weight in each (calibration/leakcheck.py)."""
    num = den = 0.0
    for k in hands:
        m = model[..., k]
        w = weight[..., k]
        num += float(np.sum(w * (m.real ** 2 + m.imag ** 2)))
        den += float(np.sum(w))
    return num, den


#: the solution moves in :func:`reference`: the solver's cost is not the re-referenced one's
#: (alakazam.solvers.common recomputes it)
REFERENCE_MOVES_SOLUTION = True
#: :func:`reference` needs the batch (its ``leakage_gauge``)
REFERENCE_USES_BATCH = True
#: leakage_gauge 'absolute': the smallest information on the gauge mode (every d_pq + c, d_qp - conj(c))
#: that a cell's data must carry, relative to one antenna's on its d_pq (:func:`absolute_gauge_info`):
#: 0.01 = the common offset c at most 10x as uncertain as one leakage
ABSOLUTE_MIN_INFO = 0.01


def absolute_gauge(batch) -> bool:
    """Whether the batch's D is kept as the free fit (``leakage_gauge`` 'absolute'; linear feeds)."""
    return getattr(batch, "leakage_gauge", "reference") == "absolute"


def absolute_gauge_info(batch):
    """(n_cell,) float64: the information the cell's cross hands carry on the gauge mode d_pq + c,
    d_qp - conj(c) of every antenna, relative to one antenna's on its own d_pq; nan without data.

    The mode changes V_pq by -c (M_pp - M_qq) and V_qp by -conj(c) (M_pp - M_qq) at first order
    (M_pp - M_qq = 2 Q in the feed frame for linear feeds; 2 V for circular ones), so the data fix c
    through the polarised flux, and only through its change between the cell's samples: a constant
    part per baseline is taken as absorbed by the other leakages (at one parallactic angle a linear
    feed's D has another degeneracy; module docstring).  Information = sum w |x - mean_w x|^2 over
    each baseline's samples of x = M_pp - M_qq, both cross hands; one antenna's = 2 / n_ant x sum w
    |M_qq|^2 over every baseline's pq and qp (as :func:`gauge_prior`'s reference information; an
    antenna is on 2 / n_ant of the baselines).  Computed on the model before the solve (the check of
    ``leakage_gauge`` 'absolute')."""
    info = np.zeros(batch.n_cell)
    own = np.zeros(batch.n_cell)
    if batch.n_cell:
        _gauge_info_cells(np.ascontiguousarray(batch.model, np.complex128),
                          np.ascontiguousarray(batch.weight, np.float64), info, own)
    own *= 2.0 / max(batch.n_ant, 1)
    return np.where(own > 0, info / np.where(own > 0, own, 1.0), np.nan)


@njit
def _gauge_info_cells(m, w, info, own):
    # :func:`absolute_gauge_info`'s sums, one pass per (cell, baseline, cross hand): no temporaries
    n_cell, n_bl, n_samp, _ = m.shape
    for c in range(n_cell):
        for b in range(n_bl):
            for h in range(1, 3):
                ws = 0.0
                sr = 0.0
                si = 0.0
                for s in range(n_samp):
                    wt = w[c, b, s, h]
                    if wt > 0:
                        x = m[c, b, s, 0] - m[c, b, s, 3]
                        ws += wt
                        sr += wt * x.real
                        si += wt * x.imag
                        q = m[c, b, s, 3]
                        own[c] += wt * (q.real * q.real + q.imag * q.imag)
                if ws > 0:
                    mr = sr / ws
                    mi = si / ws
                    for s in range(n_samp):
                        wt = w[c, b, s, h]
                        if wt > 0:
                            x = m[c, b, s, 0] - m[c, b, s, 3]
                            dr = x.real - mr
                            di = x.imag - mi
                            info[c] += wt * (dr * dr + di * di)


def reference(params, ref, batch=None):
    """The free fit brought to the gauge d_pq[ref] = 0, as CASA's DJones::applyRefAnt: every antenna's
    d_pq -= d_pq[ref] and d_qp += conj(d_pq[ref]) (module docstring); a cell whose d_pq[ref] is not
    finite is left as it is (its solutions are flagged).  With ``leakage_gauge`` 'absolute' on the
    batch (:func:`absolute_gauge`) the free fit itself."""
    if batch is not None and absolute_gauge(batch):
        return np.array(params, np.complex128, copy=True)
    p = np.array(params, np.complex128, copy=True)
    c = p[np.arange(p.shape[0]), np.asarray(ref, np.int64), 0]          # (n_cell,)
    c = np.where(np.isfinite(c), c, 0)
    if batch is not None:               # what the re-referencing moved (calibration/leakcheck.py)
        batch.free_reference_leakage = np.abs(c)
    p[..., 0] -= c[:, None]
    p[..., 1] += np.conj(c)[:, None]
    p[np.arange(p.shape[0]), np.asarray(ref, np.int64), 0] = 0
    return p


def to_jones(params, batch):
    """[[1, d_pq], [d_qp, 1]]; no delay."""
    J = np.zeros((batch.n_cell, batch.n_ant, 2, 2), np.complex128)
    J[..., 0, 0] = 1
    J[..., 1, 1] = 1
    J[..., 0, 1] = params[..., 0]
    J[..., 1, 0] = params[..., 1]
    return J, None
