"""The solve of a per-hand term (K, G; :mod:`alakazam.core.handflags`): presence, minblperant,
reference antenna, minsnr and non-finite checks per hand.

Data presence and minblperant
    Counted per hand on that hand's parallel correlation (pp for p, qq for q): an antenna whose q feed
    is dead (its qq samples flagged or absent) has data in p only; minblperant removes an antenna from
    one hand's correlation only.

Reference antenna per hand
    The cell is solved with the reference :func:`alakazam.solvers.common.choose_ref` picks among the
    antennas with data in either hand.  A hand in which that antenna has no data (its feed is dead) is
    then solved again, in those cells only, with that hand's own reference: the first antenna of the
    ``ref_ant`` list with data in the hand, else the one with the most weight in it (the same fallback
    as choose_ref, per hand).  The hands of K and G are independent (the parallel hands hold only their
    own hand's parameters), so the hand's solution from that second solve is exactly what a solve of
    that hand alone gives.  ``solver_stats/ref_ant_hand`` (n_freq, n_time, 2) records each hand's
    reference; ``solver_stats/ref_ant`` stays the cell's (the re-referencing across cells works with it).

Flags per hand
    A hand is flagged where the antenna has no data in it (after minblperant), its solution is
    non-finite or zero, its amplitude is not determined by the hand's baselines (G amplitude solves:
    :func:`alakazam.solvers.quality.amplitude_undetermined`), or its SNR is below minsnr; a
    non-converged cell flags both hands of every antenna.  The reason masks in ``extra`` (minblperant,
    amplitude_undetermined, minsnr, nonconverged) stay per antenna (n_cell, n_ant): the solutions (not
    whole) a check flagged in some hand, each once.
"""

from __future__ import annotations

import numpy as np

from ..core.handflags import HAND_CORR, HANDS


def _with_data(batch, c, bl=None):
    """(n_cell, n_ant) bool: the antenna has weight > 0 on correlation ``c`` (``bl``: its baselines with
    data, when known)."""
    from . import quality

    bl = quality.baselines_with_data(batch.weight, (c,)) if bl is None else bl
    return quality.count_per_antenna(bl, batch.ant1, batch.ant2, batch.n_ant) > 0


def with_data(batch):
    """(n_cell, n_ant, 2) bool: the antenna has data in the hand (its parallel correlation)."""
    return np.stack([_with_data(batch, c) for c in HAND_CORR], -1)


def presence(batch, jones_type, min_bl):
    """``(had, dropped, has)``, each (n_cell, n_ant, 2) bool: data before minblperant, the antennas
    minblperant removed (per hand; ``batch.weight`` changed in place) and data after it."""
    from . import quality

    had, dropped, has = [], [], []
    for c in HAND_CORR:
        bl = quality.baselines_with_data(batch.weight, (c,))
        h0 = _with_data(batch, c, bl)
        d = quality.drop_sparse_antennas(batch, jones_type, min_bl, bl, corr=(c,))
        h1 = _with_data(batch, c) if d.any() else h0
        had.append(h0)
        dropped.append(d)
        has.append(h1)
    return np.stack(had, -1), np.stack(dropped, -1), np.stack(has, -1)


def take_out(batch, hands):
    """Zero ``batch.weight`` of the hands ``hands`` ((n_cell, n_ant, 2) bool): each one's correlation on
    the antenna's baselines in that cell (taken out of the solve, as minblperant does)."""
    for h, c in zip(HANDS, HAND_CORR):
        for ci, a in zip(*np.nonzero(hands[..., h])):
            batch.weight[ci, (batch.ant1 == a) | (batch.ant2 == a), :, c] = 0.0


def hand_weight(batch):
    """(n_cell, n_ant, 2) summed weight of each antenna's baselines on each hand's correlation."""
    out = np.zeros((batch.n_cell, batch.n_ant, 2))
    for h, c in zip(HANDS, HAND_CORR):
        w = batch.weight[..., c].sum(axis=2)                            # (n_cell, n_bl)
        np.add.at(out[..., h], (slice(None), batch.ant1), w)
        np.add.at(out[..., h], (slice(None), batch.ant2), w)
    return out


def _sub_batch(batch, cells, hand):
    """The cells ``cells`` of ``batch`` with only hand ``hand``'s correlation weighted."""
    w = batch.weight[cells].copy()
    w[..., HAND_CORR[1 - hand]] = 0.0
    return batch.take(cells, w)


def hands_to_redo(batch, has, ref):
    """``[(hand, cells)]``: the cells whose reference ``ref`` (n_cell,) has no data in ``hand`` while some
    antenna has (solved again by :func:`solve_hands`).  Hand ``hand`` of those cells is taken out of
    ``batch.weight`` for the first solve (its gauge would be free there: a singular system); the saved
    weights are put back by :func:`restore`."""
    idx = np.arange(batch.n_cell)
    out, saved = [], []
    for h in HANDS:
        cells = np.flatnonzero(~has[idx, ref, h] & has[..., h].any(axis=1))
        if len(cells):
            out.append((h, cells))
            saved.append(batch.weight[cells, :, :, HAND_CORR[h]].copy())
            batch.weight[cells, :, :, HAND_CORR[h]] = 0.0
    return out, saved


def restore(batch, redo, saved):
    """Put back the weights :func:`hands_to_redo` took out."""
    for (h, cells), w in zip(redo, saved):
        batch.weight[cells, :, :, HAND_CORR[h]] = w


def solve_hands(jones_type, batch, backend_module, opts, has, ref, solve_fn):
    """Re-solve the hands whose cell reference has no data in them (module docstring).

    ``solve_fn(batch, init, ref) -> (params, n_iter, conv, cost)`` is the cell solve of
    :func:`alakazam.solvers.common.run`; ``has`` (n_cell, n_ant, 2); ``ref`` (n_cell,) the cell
    references.  Returns ``(ref_hand (n_cell, 2), redo)`` with ``redo`` a list of
    ``(hand, cells, params, n_iter, conv)`` of the second solves, their params referenced to the hand's
    reference (the caller takes hand ``hand`` of them)."""
    from . import common

    n_cell = batch.n_cell
    ref_hand = np.repeat(np.asarray(ref, np.int32)[:, None], 2, axis=1)
    redo = []
    idx = np.arange(n_cell)
    req = batch.ref_ants or batch.ref_ant
    amount = None
    for h in HANDS:
        cells = np.flatnonzero(~has[idx, ref, h] & has[..., h].any(axis=1))
        if not len(cells):
            continue
        if amount is None:
            amount = hand_weight(batch)
        r_h = common.choose_ref(has[cells, :, h], req, amount[cells, :, h]).astype(np.int32)
        sub = _sub_batch(batch, cells, h)
        init = common.initial_guess(jones_type, sub, r_h)
        params, n_iter, conv, _ = solve_fn(sub, init, r_h)
        params = common.reference(jones_type, params, r_h, sub)
        ref_hand[cells, h] = r_h
        redo.append((h, cells, params, np.asarray(n_iter), np.asarray(conv, bool)))
    return ref_hand, redo


def flags(J, has, snr, conv, opts, sparse, undetermined=None, delay_undetermined=None):
    """``(pol (n_cell, n_ant, 2), extra masks)``: the flags per hand (module docstring).  The masks
    (minblperant, amplitude_undetermined, minsnr, nonconverged) are per antenna (n_cell, n_ant), as for
    the other terms: the solutions a check flagged in some hand, each counted for the first check that
    applies (``sparse`` (n_cell, n_ant, 2): the hands minblperant removed; ``undetermined`` (n_cell,
    n_ant, 2) or None: the hands whose amplitude the baselines do not determine,
    :func:`alakazam.solvers.quality.amplitude_undetermined`, flagged whatever minsnr is;
    ``delay_undetermined`` likewise: the hands whose data lie at one frequency,
    :func:`alakazam.solvers.quality.delay_undetermined`)."""
    d = np.stack([J[..., 0, 0], J[..., 1, 1]], axis=-1)
    pol = ~has | ~np.isfinite(d) | (d == 0)
    und = np.zeros_like(pol) if undetermined is None else undetermined & ~pol
    pol |= und
    # (a hand whose data lie at one frequency was taken out of the solve: no data left, counted for this)
    dund = np.zeros_like(pol) if delay_undetermined is None else delay_undetermined & ~und
    pol |= dund
    low = np.zeros_like(pol)
    if opts.min_snr and opts.min_snr > 0:
        low = (snr < float(opts.min_snr)) & ~pol
    nonconv = ((~np.asarray(conv, bool))[:, None, None] & ~pol & ~low) if opts.flag_nonconverged \
        else np.zeros_like(pol)
    m_bl = sparse.any(-1)
    m_und = und.any(-1) & ~m_bl
    m_dund = dund.any(-1) & ~m_bl & ~m_und
    m_snr = low.any(-1) & ~m_bl & ~m_und & ~m_dund
    m_nc = nonconv.any(-1) & ~m_bl & ~m_und & ~m_dund & ~m_snr
    return pol | low | nonconv, {"minblperant": m_bl, "amplitude_undetermined": m_und,
                                 "delay_undetermined": m_dund, "minsnr": m_snr, "nonconverged": m_nc}
