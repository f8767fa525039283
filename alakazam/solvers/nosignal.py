"""Antennas whose data carry no signal, taken out of a cell that did not converge.

Convention (pinned by tests/test_nosignal.py):

* An antenna (for K and G: an antenna's hand) whose samples hold noise only -- a dead antenna or feed
  the flags do not mark -- leaves its parameters undetermined: the joint fit of the cell can wander in
  them and not converge, and the solve flow then flags every antenna of the cell (before: one dead
  antenna, with ``rfi_threshold=0``, flagged a whole K scan).
* Only in such a cell (``SolveOptions.flag_nonconverged``, i.e. the solve flow), each antenna's (hand's)
  *signal* is measured at the non-converged solution: the matched-filter SNR of its data,
  ``S = sum_b Re(w conj(V^) V) / sqrt(sum_b w |V^|^2)`` over its baselines (V^ the model of the
  solution, w the weights, the term's correlations; per hand for K and G).  For an antenna with signal
  S is its SNR (thousands on a calibrator); a fit to pure noise finds S of a few units.
* Every antenna (hand) with ``S < NOISE_S`` and ``S < NOISE_SHARE`` times the cell's typical S (the
  ``TYPICAL_PCT``-th percentile of its hands with data: in a cell where every antenna's signal is
  weak no hand is told from noise by its S alone), or ``S < NOISE_REL`` times the median S
  (weights that do not describe the dead antenna's noise), is taken out -- its
  baselines' weights in that hand (every correlation for the other terms) set to 0 -- and the cell is
  solved again; up to :data:`MAX_ROUNDS` rounds while the cell does not converge (before: one antenna
  hand per round, so two dead antennas, four hands, kept one in and lost the cell -- the session's
  review).  Nothing is taken out when fewer than two antennas (hands) with signal would remain.  An
  antenna taken out is flagged with reason ``minsnr`` (its data carry no signal); ``extra['snr']``
  holds its S (0 when negative).  A cell that still does not converge is flagged as before.
* The same is done for a converged cell whose reference antenna (hand) has data but an SNR below
  minsnr (:func:`cells_to_check`): a dead reference that the sample flags did not mark
  (``rfi_threshold=0``) made the other antennas' delays relative to its noise -- tens to 4e5 ns off,
  stored unflagged (the session's second review); taken out, the cell takes the next reference.
* Other converged cells, and every cell of a direct solver call (``flag_nonconverged`` False), are
  left as solved.
"""

from __future__ import annotations

import numpy as np

from ..core.handflags import HAND_CORR
from .quality import matched_snr

#: S below this: the antenna's data hold no signal a fit to noise would not find (a delay + phase fit
#: to pure noise measured S = 3.3 on 128 channels)
NOISE_S = 6.0
#: ... or below this fraction of the cell's median S (a dead antenna whose weights understate its noise,
#: or whose baselines carry some RFI when the sample flags are off: a dead antenna with intermittent
#: RFI, rfi_threshold=0, measured S at 0.0045 / 0.012 of the median (X / Y) at numba's and scipy's
#: non-converged K, kept in at 0.01 so that the whole scan was flagged, where ceres and jax stopped
#: elsewhere, took it out and kept the scan (session 34's review).  A live antenna of a cell is
#: never this far below the others (10x the noise of the others: 0.1)
NOISE_REL = 0.03
#: ... and S below NOISE_S only where it is also below this fraction of the cell's typical S (the
#: TYPICAL_PCT-th percentile of its hands' S): in a cell where every antenna's signal is weak (a faint
#: field solved per integration: S 3.7-7.4 for every hand) a live hand is not told from a fit to noise
#: by its size alone -- it was taken out, 12 of 16 hands of such a cell, and the cell lost, where CASA
#: keeps 13 of 16 solutions (session 41's review)
NOISE_SHARE = 0.5
#: the percentile of the cell's S taken as typical: not the median, which fell to the dead hands' level
#: with 3 dead antennas of 8 (3.5) and kept them in (a second review).  Measured on that review's
#: dead-antenna cases (K noise 20 with 3 dead / 1 dead, G noise 45 with 3 dead / a dead reference;
#: live hands flagged, cells lost): 60th percentile 152, 4; 75th 160, 3; median 166, 8; S < NOISE_S
#: alone 259, 10 -- and on the faint field (2560 hands) the 60th and the median flag no hand of SNR >= 3
#: (CASA keeps those), the 75th 2
TYPICAL_PCT = 60
#: at most this many rounds of taking antennas out of one cell
MAX_ROUNDS = 3


def _pick(s):
    """[(antenna, hand)] of one cell whose S is below the thresholds (module doc), lowest first."""
    ok = np.isfinite(s)
    if ok.sum() < 3:
        return []
    med = float(np.median(s[ok]))
    typ = float(np.percentile(s[ok], TYPICAL_PCT))
    low = ok & (((s < NOISE_S) & (s < NOISE_SHARE * typ)) | (s < NOISE_REL * med))
    if low.sum() >= ok.sum() - 1:           # no antenna with signal left to solve: nothing to take out
        return []
    idx = np.argwhere(low)
    return [(int(a), int(h)) for a, h in idx[np.argsort(s[low])]]


def _splice(res, sub, cells):
    """Cells ``cells`` of ``res`` replaced by the result ``sub`` of their solve again."""
    for name in ("jones", "flags", "delay", "params", "converged", "cost", "ref_ant"):
        full = getattr(res, name)
        if full is not None:
            full = np.array(full)
            full[cells] = getattr(sub, name)
            setattr(res, name, full)
    n_iter = np.array(res.n_iter)
    n_iter[cells] = n_iter[cells] + np.asarray(sub.n_iter)
    res.n_iter = n_iter
    for k, v in sub.extra.items():
        if isinstance(v, np.ndarray) and isinstance(res.extra.get(k), np.ndarray):
            res.extra[k] = np.array(res.extra[k])
            res.extra[k][cells] = v


def cells_to_check(res, min_snr):
    """(n_cell,) bool: the cells :func:`resolve` looks at -- not converged, or whose reference antenna
    (for K and G: a hand's reference, ``extra['ref_ant_hand']``) has data but an SNR below ``min_snr``
    (a dead reference: the others' solutions are relative to its noise)."""
    bad = ~np.asarray(res.converged, bool)
    snr = res.extra.get("snr")
    if min_snr and min_snr > 0 and isinstance(snr, np.ndarray) and snr.ndim == 3 and len(bad):
        ref_h = res.extra.get("ref_ant_hand")
        ref_h = np.asarray(ref_h) if isinstance(ref_h, np.ndarray) else \
            np.repeat(np.asarray(res.ref_ant)[:, None], 2, axis=1)
        idx = np.arange(len(bad))
        for h in range(2):
            r = snr[idx, ref_h[:, h], h]
            bad |= (r > 0) & (r < float(min_snr))
    return bad


def resolve(jones_type, batch, res, solve, per_hand, min_snr=0.0):
    """``res`` with the no-signal antennas of its cells that did not converge or whose reference has no
    signal (:func:`cells_to_check`) taken out and those cells solved again by ``solve(sub_batch) ->
    SolveResult`` (module doc)."""
    taken = np.zeros((batch.n_cell, batch.n_ant, 2), bool)
    s_taken = np.full((batch.n_cell, batch.n_ant, 2), np.nan)
    weight = {}
    for _ in range(MAX_ROUNDS):
        bad = np.flatnonzero(cells_to_check(res, min_snr))
        if not len(bad):
            break
        w = np.stack([weight.get(int(c), batch.weight[c]) for c in bad])
        s = matched_snr(jones_type, batch.take(bad, w), np.asarray(res.params)[bad], per_hand)
        redo = []
        for i, c in enumerate(bad):
            picked = _pick(s[i])
            if not picked:
                continue
            wc = w[i].copy()
            for a, h in picked:             # every antenna (hand) without signal at once
                on = (batch.ant1 == a) | (batch.ant2 == a)
                if per_hand:
                    wc[on, :, HAND_CORR[h]] = 0.0
                else:
                    wc[on] = 0.0
                hands = [h] if per_hand else [0, 1]
                taken[c, a, hands] = True
                s_taken[c, a, hands] = max(float(s[i, a, h]), 0.0)
            weight[int(c)] = wc
            redo.append(int(c))
        if not redo:
            break
        redo = np.asarray(redo)
        sub = solve(batch.take(redo, np.stack([weight[int(c)] for c in redo])))
        _splice(res, sub, redo)
    if taken.any():
        t = taken.any(-1) & np.asarray(res.converged, bool)[:, None]
        res.extra["minsnr"] = np.asarray(res.extra.get("minsnr", np.zeros_like(t))) | t
        for k in ("minblperant", "amplitude_undetermined", "nonconverged"):
            if isinstance(res.extra.get(k), np.ndarray):
                res.extra[k] = res.extra[k] & ~t
        snr = res.extra.get("snr")
        if isinstance(snr, np.ndarray):
            res.extra["snr"] = np.where(taken, s_taken, snr)
    return res
