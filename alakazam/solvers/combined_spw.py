"""Do the SPWs of a gain solved with combine='spw' agree with its one gain?

A gain solved over several SPWs (core/combine.py, ``combine: spw``) is one complex number per antenna
and hand for all of them.  It holds the data only when the terms pre-applied before it leave the SPWs
in phase with each other; a phase offset between SPWs that they do not remove (a K off by a few tens of
picoseconds in one SPW -- a gap of flagged channels lets it absorb bandpass curvature -- evaluated at the
SPW's absolute frequency, or gains solved per SPW that are not pre-applied) is averaged into the one
gain, and every SPW is then corrected with the others' offsets: review 54a measured 3C286's corrected
flux +2.2, -5.4, +1.6 and +2.0% off per SPW and the target 4.4% low in one SPW, silently (CASA the same,
worse).

:func:`mismatch` takes one step of a per-SPW gain on top of the combined one:
``r_a,k,h = sum_b w V conj(g_a M conj(g_b)) / sum_b w |g_a M g_b|^2`` over the baselines of antenna a in
SPW k and hand h, from the per-SPW weighted sums the accumulation keeps for it (unit._accumulate_group),
and reports per SPW the median over (cell, antenna, hand) of ``|r - 1|`` (the relative complex
difference between the SPW's own gain and the combined one) and of ``|arg r|``, with the median noise
``sqrt(s / S)``: S the denominator, s the scale of the weights measured from the data -- the reduced
chi2 of a per-SPW gain fitted on top of the combined one (a few StEFCal iterations), pooled over the
SPWs, which holds the noise when the weights are not 1/sigma^2 (unit weights, 2 dnu dt: review 54d's
first version warned falsely there, "52.7% (noise 5.4%)").  Without enough degrees of freedom to
measure s the noise is NaN and nothing is said.  A phase common to every antenna of an SPW cancels
in the data and is not seen (nor does it matter).  The solve warns once per step above
:data:`THRESHOLD` and 3x its noise (unit._check_combined_spws)."""

from __future__ import annotations

import numpy as np

#: the relative complex difference |r - 1| (median over antennas) above which a step warns
THRESHOLD = 0.1
#: parallel hands (pp, qq) in the 4-correlation layout, and the hand of each
_PARALLEL = ((0, 0), (3, 1))


def mismatch(vis_sum, model_sum, w_sum, cells, ant1, ant2, jones):
    """Per SPW: ``(median |r - 1|, median |arg r|, median noise)`` or None where no antenna has data.

    vis_sum, model_sum, w_sum : (n_acc, n_bl, n_spw, 4) weighted sums (sum w V, sum w M, sum w)
    cells : int (n_cell,) the accumulator bin of each solution cell
    ant1, ant2 : (n_bl,) active-antenna indices
    jones : complex (n_cell, n_ant, 2, 2), NaN where flagged (the combined solution)
    """
    n_cell, n_ant = jones.shape[:2]
    n_spw = vis_sum.shape[2]
    a1, a2 = np.asarray(ant1), np.asarray(ant2)
    out, fits = [], []
    for k in range(n_spw):
        num = np.zeros((n_cell, n_ant, 2), np.complex128)
        den = np.zeros((n_cell, n_ant, 2))
        for c, h in _PARALLEL:
            g = jones[:, :, h, h]                                          # (n_cell, n_ant)
            w = w_sum[cells, :, k, c]                                      # (n_cell, n_bl)
            with np.errstate(invalid="ignore", divide="ignore"):
                v = vis_sum[cells, :, k, c] / w
                m = model_sum[cells, :, k, c] / w
            pred = g[:, a1] * m * np.conj(g[:, a2])
            ok = (w > 0) & np.isfinite(v) & np.isfinite(pred)
            wv = np.where(ok, w, 0.0)
            s = wv * np.where(ok, v, 0) * np.conj(np.where(ok, pred, 0))
            e = wv * np.abs(np.where(ok, pred, 0)) ** 2
            rows = np.arange(n_cell)[:, None]
            np.add.at(num[..., h], (rows, a1[None, :]), s)
            np.add.at(num[..., h], (rows, a2[None, :]), np.conj(s))
            np.add.at(den[..., h], (rows, a1[None, :]), e)
            np.add.at(den[..., h], (rows, a2[None, :]), e)
        use = den > 0
        if not use.any():
            out.append(None)
            fits.append((0.0, 0))
            continue
        r = num[use] / den[use]
        fits.append(_weight_fit(vis_sum[cells, :, k], model_sum[cells, :, k], w_sum[cells, :, k], a1, a2,
                                jones))
        out.append([float(np.median(np.abs(r - 1))), float(np.median(np.abs(np.angle(r)))),
                    float(np.median(1.0 / np.sqrt(den[use])))])
    # one scale of the weights for all SPWs (their error is the MS's, not an SPW's): an SPW mostly
    # flagged has too few degrees of freedom of its own (review 54g: its check went silent)
    chi2, dof = sum(f[0] for f in fits), sum(f[1] for f in fits)
    scale = chi2 / dof if dof >= 4 else float("nan")
    return [None if x is None else (x[0], x[1], x[2] * np.sqrt(scale)) for x in out]


def _weight_fit(vs, ms, ws, a1, a2, jones, n_iter=12):
    """``(chi2, degrees of freedom)`` of a per-SPW gain r (n_cell, n_ant, hand) fitted on top of the
    combined ``jones`` to one SPW's weighted sums ``vs, ms, ws`` (n_cell, n_bl, 4): their ratio is the
    factor by which the weights misstate the noise.  Each (cell, hand) has one free phase."""
    n_cell, n_ant = jones.shape[:2]
    rows = np.arange(n_cell)[:, None]
    chi2, n_obs, n_par = 0.0, 0, 0
    for c, h in _PARALLEL:
        g = jones[:, :, h, h]
        w = ws[..., c]
        with np.errstate(invalid="ignore", divide="ignore"):
            v = vs[..., c] / w
            p = g[:, a1] * (ms[..., c] / w) * np.conj(g[:, a2])
        ok = (w > 0) & np.isfinite(v) & np.isfinite(p)
        w = np.where(ok, w, 0.0)
        v = np.where(ok, v, 0)
        p = np.where(ok, p, 0)
        r = np.ones((n_cell, n_ant), np.complex128)
        for _ in range(n_iter):         # StEFCal: each antenna's gain with its partners' held
            num = np.zeros((n_cell, n_ant), np.complex128)
            den = np.zeros((n_cell, n_ant))
            np.add.at(num, (rows, a1[None, :]), w * v * np.conj(p * np.conj(r[:, a2])))
            np.add.at(num, (rows, a2[None, :]), np.conj(w * v) * p * r[:, a1])
            np.add.at(den, (rows, a1[None, :]), w * np.abs(p) ** 2 * np.abs(r[:, a2]) ** 2)
            np.add.at(den, (rows, a2[None, :]), w * np.abs(p) ** 2 * np.abs(r[:, a1]) ** 2)
            new = np.where(den > 0, num / np.where(den > 0, den, 1.0), r)
            r = 0.5 * (r + new)
        res = v - r[:, a1] * p * np.conj(r[:, a2])
        chi2 += float(np.sum(w * np.abs(res) ** 2))
        n_obs += int(ok.sum())
        has = np.zeros((n_cell, n_ant), bool)
        np.logical_or.at(has, (rows, a1[None, :]), ok)
        np.logical_or.at(has, (rows, a2[None, :]), ok)
        n_par += 2 * int(has.sum()) - int(has.any(axis=1).sum())   # (real parameters; one phase free)
    return chi2, max(2 * n_obs - n_par, 0)
