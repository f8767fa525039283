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
* A cell whose reference hand has data but an SNR below minsnr (or below NOISE_S and NOISE_SHARE times
  the cell's typical SNR: a dead feed's noise fit reached 3.3) -- at the first solve, or still after
  the rounds above -- is also solved with that hand taken out first (the cell takes the next reference;
  the rounds run on that solve too, and one such trial more inside it), and the trial is kept where it
  gives more hands of clear signal (unflagged, SNR >= max(minsnr, NOISE_S); as many suffice where the
  reference was below minsnr) -- :func:`keep_second`, which also keeps flagged a hand the trial
  unflags below NOISE_S.  At a solution referenced to a dead reference every
  hand's S is low, so the S rule took live hands out with it: K per integration at noise 20 with the
  reference dead kept 11 of 140 live hands (tests/test_weak_cells.py: 138 now).
* The re-solves do not apply minblperant again (``solvers/common.run``): it counts the baselines with
  unflagged data, as CASA's, and the first solve applied it; counted without the antennas taken out
  here, one dead antenna of five left the others three baselines each and lost the scan to
  minblperant 4 (review 56c; tests/test_nosignal_small_array.py).  Its reasons are the first solve's
  (:func:`_splice`).
* Other converged cells, and every cell of a direct solver call (``flag_nonconverged`` False), are
  left as solved.
"""

from __future__ import annotations

import copy

import numpy as np

from ..core.handflags import HAND_CORR
from .quality import REASONS, matched_snr

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
            # minblperant is the first solve's (the re-solves do not count again: solvers/common.run)
            res.extra[k][cells] = (res.extra[k][cells] | v) if k == "minblperant" else v


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


def typical_snr(snr):
    """(n_cell,) the cell's typical SNR: the :data:`TYPICAL_PCT`-th percentile of its hands with data (SNR
    > 0) of ``snr`` (n_cell, n_ant, 2); NaN where fewer than 3 hands have data."""
    s = np.where(snr > 0, snr, np.nan).reshape(len(snr), -1)
    enough = (snr > 0).reshape(len(snr), -1).sum(axis=1) >= 3
    typ = np.full(len(snr), np.nan)
    if enough.any():
        typ[enough] = np.nanpercentile(s[enough], TYPICAL_PCT, axis=1)
    return typ


def _ref_hands(res):
    """(n_cell, 2) int: each hand's reference antenna of each cell."""
    ref_h = res.extra.get("ref_ant_hand")
    if isinstance(ref_h, np.ndarray):
        return np.asarray(ref_h)
    return np.repeat(np.asarray(res.ref_ant)[:, None], 2, axis=1)


def _good_hands(res, per_hand, min_snr=0.0):
    """(n_cell, n_ant, 2) bool: the hands with an unflagged solution whose SNR is at least
    max(``min_snr``, :data:`NOISE_S`) -- what a second solve of a cell must give more of to be kept: a
    hand just above minsnr may be a fit to noise (a dead antenna's highest noise peak: S 3.2-3.3), and
    counting those kept second solves that stored dead hands and noise-fitted delays unflagged (a
    review: up to 813 ns off at noise 45, where the first solve had flagged them)."""
    good = _unflagged(res, per_hand)
    snr = res.extra.get("snr")
    if isinstance(snr, np.ndarray) and snr.shape == good.shape:
        good = good & (snr >= max(float(min_snr or 0.0), NOISE_S))
    return good


def _unflagged(res, per_hand):
    """(n_cell, n_ant, 2) bool: the hands with an unflagged solution (whatever their SNR)."""
    pol = res.extra.get("pol_flags")
    if per_hand and isinstance(pol, np.ndarray):
        return ~np.asarray(pol, bool)
    return np.repeat(~np.asarray(res.flags, bool)[:, :, None], 2, axis=2)


def keep_second(first, second, cells, per_hand, min_snr, tie=False):
    """Splice into ``first`` the cells of ``second`` (the solve again of ``first``'s cells ``cells``) that
    give more hands of clear signal (:func:`_good_hands`), or as many and a lower chi2 (the same data:
    scipy's K per integration kept two hands 8.5 sigma off at SNR > 6 where the search's solve found the
    right ones); ``tie`` (n_cell,) bool (a solve on other data, the reference taken out): where True, as
    many (and some) is enough.  A kept
    cell's hands that the second solve unflags without clear signal (SNR below NOISE_S) but the first
    had flagged stay flagged (reason minsnr): a marginal hand of a re-solve may be a fit to noise or to
    RFI the flags do not mark (a review: 36 ns off, SNR 3.5, where the first solve had flagged it).
    Returns the kept cells (indices into ``cells``)."""
    cells = np.asarray(cells)
    n_before = _good_hands(first, per_hand, min_snr)[cells].sum(axis=(1, 2))
    n_after = _good_hands(second, per_hand, min_snr).sum(axis=(1, 2))
    if tie is not False:
        better = (n_after > n_before) | (np.asarray(tie, bool) & (n_after == n_before) & (n_after > 0))
    else:           # the same data: as many hands of clear signal and a lower chi2 is the better fit too
        c0 = np.asarray(first.cost, float)[cells]
        c1 = np.asarray(second.cost, float)
        better = (n_after > n_before) | ((n_after == n_before) & (n_after > 0) & (c1 < c0 * (1 - 1e-9)))
    keep = np.flatnonzero(better)
    if not len(keep):
        return keep
    sub = _take_result(second, keep)
    marginal = (_unflagged(sub, per_hand) & ~_good_hands(sub, per_hand, min_snr)
                & ~_unflagged(first, per_hand)[cells[keep]])
    if marginal.any():          # flagged as the first solve had them, with its SNR
        _flag_hands(sub, marginal, per_hand)
        snr0 = first.extra.get("snr")
        if isinstance(snr0, np.ndarray) and isinstance(sub.extra.get("snr"), np.ndarray):
            sub.extra["snr"] = np.where(marginal, np.asarray(snr0)[cells[keep]], sub.extra["snr"])
    _splice(first, sub, cells[keep])
    return keep


def _flag_hands(res, mask, per_hand):
    """In place: the hands ``mask`` (n_cell, n_ant, 2) of ``res`` flagged with reason minsnr."""
    from ..core.handflags import nan_flagged

    ant = mask.any(-1)
    if per_hand and isinstance(res.extra.get("pol_flags"), np.ndarray):
        pol = np.asarray(res.extra["pol_flags"], bool) | mask
        res.extra["pol_flags"] = pol
        res.flags = pol.any(-1)
        res.jones = np.array(res.jones)
        res.delay = None if res.delay is None else np.array(res.delay)
        nan_flagged(res.jones, res.delay, pol)
    else:
        res.flags = np.asarray(res.flags, bool) | ant
        res.jones = np.array(res.jones)
        res.jones[ant] = np.nan
        if res.delay is not None:
            res.delay = np.array(res.delay)
            res.delay[ant] = np.nan
    if isinstance(res.extra.get("minsnr"), np.ndarray):
        res.extra["minsnr"] = np.asarray(res.extra["minsnr"], bool) | ant


def _take_result(res, idx):
    """A copy of ``res`` holding only its cells ``idx``."""
    out = copy.copy(res)
    for name in ("jones", "flags", "delay", "params", "converged", "cost", "ref_ant", "n_iter"):
        v = getattr(res, name)
        if v is not None:
            setattr(out, name, np.asarray(v)[idx])
    out.extra = {k: (v[idx] if isinstance(v, np.ndarray) and v.ndim and len(v) == len(res.converged) else v)
                 for k, v in res.extra.items()}
    return out


def _reference_suspects(res, batch, min_snr, per_hand, skip=()):
    """[(cell, [(antenna, hand, its SNR), ...])]: the cells (not in ``skip``) whose reference hand has data
    in ``batch`` but an SNR below ``min_snr`` -- or below :data:`NOISE_S` and :data:`NOISE_SHARE` times
    the cell's typical SNR (the :data:`TYPICAL_PCT`-th percentile of its hands with data): a dead
    reference feed's noise fit reached S 3.3, over minsnr, with the cell's other hands at ~10 (a
    review) -- and those hands."""
    snr = res.extra.get("snr")
    if not (min_snr and min_snr > 0 and isinstance(snr, np.ndarray) and snr.ndim == 3):
        return []
    ref_h = _ref_hands(res)
    typs = np.nan_to_num(typical_snr(snr))
    out = []
    for c in range(len(res.converged)):
        if c in skip:
            continue
        typ = float(typs[c])
        hands = []
        for h in range(2):
            a = int(ref_h[c, h])
            on = (batch.ant1 == a) | (batch.ant2 == a)
            w = batch.weight[c][on][..., HAND_CORR[h]] if per_hand else batch.weight[c][on]
            s = float(snr[c, a, h])
            if (w > 0).any() and (s < float(min_snr) or (s < NOISE_S and s < NOISE_SHARE * typ)):
                hands.append((a, h, max(s, 0.0)))
        if hands:
            out.append((c, hands))
    return out


def _without(batch, weight, hands, per_hand):
    """``weight`` (one cell's) with the baselines of ``hands`` [(antenna, hand)] given weight 0 in that
    hand (every correlation when the term is not solved per hand)."""
    wc = weight.copy()
    for a, h in hands:
        on = (batch.ant1 == a) | (batch.ant2 == a)
        if per_hand:
            wc[on, :, HAND_CORR[h]] = 0.0
        else:
            wc[on] = 0.0
    return wc


def resolve(jones_type, batch, res, solve, per_hand, min_snr=0.0, taken=None, s_taken=None, depth=2):
    """``res`` with the no-signal antennas of its cells that did not converge or whose reference has no
    signal (:func:`cells_to_check`) taken out and those cells solved again by ``solve(sub_batch) ->
    SolveResult`` (module doc).

    A cell whose reference hand is still below ``min_snr`` after that is also solved the same way with
    the reference hand taken out first (the cell takes the next reference), and that trial is kept where
    it leaves more hands with an unflagged solution.  At a solution referenced to a dead reference every
    hand's S is low -- the others' delays and phases are relative to noise; K per integration at noise 20
    with C00 dead: S 1.5-8 for every hand, the reference's 1.9 -- so the S rule alone cannot tell the
    reference from the rest: 7 of 10 cells lost every live hand that a solve with C00's rows flagged
    keeps (session 41's review).  A live reference that is only weak is kept: taking it out does not
    give more hands a solution."""
    first = _reference_suspects(res, batch, min_snr, per_hand) if depth > 0 else []
    res = _rounds(jones_type, batch, res, solve, per_hand, min_snr,
                  None if taken is None else taken.copy(), None if s_taken is None else s_taken.copy())
    if depth <= 0:
        return res
    suspects = first + _reference_suspects(res, batch, min_snr, per_hand, skip={c for c, _ in first})
    if not suspects:
        return res
    cells = np.asarray([c for c, _ in suspects])
    ws = np.stack([_without(batch, batch.weight[c], [(a, h) for a, h, _ in hands], per_hand)
                   for c, hands in suspects])
    sub_batch = batch.take(cells, ws)
    t_sub = np.zeros((len(cells), batch.n_ant, 2), bool) if taken is None else taken[cells].copy()
    s_sub = np.full(t_sub.shape, np.nan) if s_taken is None else s_taken[cells].copy()
    for i, (c, hands) in enumerate(suspects):
        for a, h, s_ref in hands:
            hh = [h] if per_hand else [0, 1]
            t_sub[i, a, hh] = True
            s_sub[i, a, hh] = s_ref
    sub = resolve(jones_type, sub_batch, solve(sub_batch), solve, per_hand, min_snr, t_sub, s_sub, depth - 1)
    # kept where it gives more hands of clear signal than the first (:func:`_good_hands`) -- or as many, and
    # some, where the reference hand it took out was below minsnr (flagged either way: a tie goes to the
    # cell referenced to a live antenna); a reference over minsnr but far below the cell's other hands is
    # taken out only for more (a faint field's weak but live reference keeps its solution)
    kept = keep_second(res, sub, cells, per_hand, min_snr,
                       tie=np.array([any(s_ref < float(min_snr) for _, _, s_ref in hands)
                                     for _, hands in suspects]))
    if len(kept):
        _reason_for_orphans(res, batch, cells[kept], per_hand)
    return res


def _reason_for_orphans(res, batch, cells, per_hand):
    """In place: in ``cells``, an antenna with a hand that has data in ``batch`` but is flagged with no
    reason -- its baselines were all to hands the trial took out, so the trial saw no data of it -- gets
    reason minsnr (its SNR is recorded as 0).  A review: 12/16 flagged, 11 with a reason."""
    if not isinstance(res.extra.get("minsnr"), np.ndarray):
        return
    why = np.zeros(np.shape(res.flags), bool)
    for k in REASONS:
        if isinstance(res.extra.get(k), np.ndarray):
            why |= np.asarray(res.extra[k], bool)
    for c in cells:
        for a in np.flatnonzero(np.asarray(res.flags)[c] & ~why[c]):
            on = (batch.ant1 == a) | (batch.ant2 == a)
            w = batch.weight[c][on]
            hands = [h for h in range(2) if (w[..., HAND_CORR[h]] > 0).any()] if per_hand else \
                ([0] if (w > 0).any() else [])
            if hands:
                res.extra["minsnr"] = np.array(res.extra["minsnr"], bool)
                res.extra["minsnr"][c, a] = True


def _rounds(jones_type, batch, res, solve, per_hand, min_snr, taken=None, s_taken=None):
    """The S rule's rounds of :func:`resolve` (``taken`` / ``s_taken``: hands already taken out of
    ``batch``'s weights, and their S, to flag as such)."""
    if taken is None:
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
            wc = _without(batch, w[i], picked, per_hand)   # every antenna (hand) without signal at once
            for a, h in picked:
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
        for k in REASONS:
            if k != "minsnr" and isinstance(res.extra.get(k), np.ndarray):
                res.extra[k] = res.extra[k] & ~t
        snr = res.extra.get("snr")
        if isinstance(snr, np.ndarray):
            res.extra["snr"] = np.where(taken, s_taken, snr)
    return res
