"""Solution flags per polarisation (hand): the convention and the helpers every reader shares.

Convention (docs/conventions.md "Solution flags per polarisation"; pinned by tests/test_pol_flags.py)
-----------------------------------------------------------------------------------------------------
* A *per-hand* term solves its two hands (p = X/R, q = Y/L) independently: K and G (a bandpass is a G
  per frequency bin).  D (mixes the hands), KC, CP (one value for every antenna) and a term with one
  parameter for both hands (T) are not per hand: their flags stay per antenna.
* A per-hand term's solution set carries ``pol_flags`` (n_ant, n_freq, n_time, 2) bool beside the
  SEED layout's ``flags`` (n_ant, n_freq, n_time): hand h of the antenna has no valid solution.
  ``flags`` keeps its SEED meaning for every reader: True when the antenna's solution is not whole,
  ``flags = pol_flags[..., hands].any(-1)`` over the ``hands`` the data record (attr ``hands``; both
  unless the MS holds one hand only, e.g. XX only or RR only: its other hand is not part of the
  solution -- stored as flagged in ``pol_flags`` and NaN in ``jones``, not counted in ``flags``).
* A flagged hand's diagonal element of ``jones`` (and ``delay[..., h]``) is NaN; the other hand keeps
  its value.  An antenna with both hands flagged is all NaN as before.
* A set without ``pol_flags`` (older files, CASA imports without per-pol FLAG, the per-antenna terms)
  has both hands flagged where ``flags`` is: :func:`hand_flags`.
* Applying a chain: correlation (p, q) of baseline (a, b) has no valid solution when hand p of a or
  hand q of b is flagged in a term -- provided every matrix of the chain is diagonal (the diagonal
  apply kernel works per correlation).  A chain holding a term that mixes the hands (D, the
  parallactic-angle rotation of linear feeds, any full 2x2 matrix) corrects with J_a^-1 V J_b^-H,
  which mixes the hands: a flagged hand there flags all the antenna's correlations (the full kernel's
  per-antenna validity does this once the flagged hand's element is NaN).
"""

from __future__ import annotations

import numpy as np

HANDS = (0, 1)
#: the parallel-hand correlation of each hand (MS order pp, pq, qp, qq)
HAND_CORR = (0, 3)


def per_hand(jones_type) -> bool:
    """A term whose two hands are solved independently (K, G): flags per hand."""
    from ..jones import terms

    tt = terms.get(str(jones_type))
    return bool(tt.diagonal and not tt.is_global and not tt.pol_shared and tuple(tt.corr) == terms.PARALLEL)


def set_hands(sset):
    """The hands the set's data record (attr ``hands``; both when absent)."""
    h = sset.attrs.get("hands") if isinstance(getattr(sset, "attrs", None), dict) else None
    if h is None:
        return list(HANDS)
    return [int(x) for x in np.atleast_1d(h)]


def hand_flags(sset) -> np.ndarray:
    """(n_ant, n_freq, n_time, 2) bool: hand h of the antenna has no valid solution.

    From ``pol_flags`` when the set has them, else ``flags`` on both hands.  ``flags`` wins where the
    two disagree on a recorded hand (code that flags or unflags a whole antenna, e.g. the
    re-referencing's cells without a bridge, fillgaps, sets only ``flags``): an antenna flagged in
    ``flags`` with no recorded hand flagged in ``pol_flags`` has both flagged, and an unflagged one has
    its recorded hands unflagged."""
    flags = np.asarray(sset.flags, bool)
    pol = getattr(sset, "pol_flags", None)
    if pol is None:
        return np.repeat(flags[..., None], 2, axis=-1)
    pol = np.array(pol, bool)
    rec = set_hands(sset)
    whole = flags & ~pol[..., rec].any(-1)
    pol[whole] = True
    for h in rec:
        pol[..., h] &= flags
    return pol


def antenna_flags(pol, hands=HANDS) -> np.ndarray:
    """``flags`` of ``pol`` (..., 2): the antenna's solution is not whole (on the recorded hands)."""
    return np.asarray(pol, bool)[..., list(hands)].any(-1)


def nan_flagged(jones, delay, pol):
    """In place: a flagged hand's diagonal element of ``jones`` (..., 2, 2) and ``delay[..., h]`` NaN;
    both hands flagged: the whole matrix NaN.  ``pol`` (..., 2) bool."""
    pol = np.asarray(pol, bool)
    both = pol.all(-1)
    for h in HANDS:
        jones[..., h, h][pol[..., h]] = np.nan
        if delay is not None:
            delay[..., h][pol[..., h]] = np.nan
    jones[both] = np.nan
    if delay is not None:
        delay[both] = np.nan


def hand_usable(jones, delay, pol):
    """(..., 2) bool: hand h has a valid value (not flagged and finite; a delay term's delay finite)."""
    ok = ~np.asarray(pol, bool)
    for h in HANDS:
        ok[..., h] &= np.isfinite(jones[..., h, h])
        if delay is not None:
            ok[..., h] &= np.isfinite(delay[..., h])
    return ok


def solved_values(jones_type, jones, delay) -> np.ndarray:
    """(n_ant, n_freq, n_time, 2): the two values a set holds per cell, as plots draw them -- the delays
    of a delay type, (d_pq, d_qp) of D, the diagonal otherwise; of these only the registry's
    ``value_hands`` are solved (KC: tau_p; CP: J[1, 1])."""
    from ..jones import terms

    tt = terms.get(str(jones_type))
    if tt.freq == "delay" and delay is not None:
        return np.asarray(delay)
    j = np.asarray(jones)
    if not tt.diagonal:
        return np.stack([j[..., 0, 1], j[..., 1, 0]], axis=-1)
    return np.stack([j[..., 0, 0], j[..., 1, 1]], axis=-1)


def nonfinite_unflagged(jones_type, jones, delay, hflags, hands=HANDS) -> np.ndarray:
    """(n_ant, n_freq, n_time) bool: a solution with a non-finite value (NaN, Inf) on a hand that holds
    a solved value (the registry's ``value_hands``), that the data record (``hands``) and that is not
    flagged (``hflags`` (n_ant, n_freq, n_time, 2), :func:`hand_flags`).  Such a solution is neither
    usable nor flagged; a table alakazam writes has none (a flagged hand is NaN, an unflagged one
    finite), so it comes from a hand-edited or foreign table."""
    from ..jones import terms

    vals = solved_values(jones_type, jones, delay)
    hf = np.asarray(hflags, bool)
    if hf.ndim == vals.ndim - 1:
        hf = np.repeat(hf[..., None], 2, axis=-1)
    use = [h for h in terms.get(str(jones_type)).value_hands if h in set(int(x) for x in hands)]
    bad = np.zeros(vals.shape[:-1], bool)
    for h in use:
        bad |= ~hf[..., h] & ~np.isfinite(vals[..., h])
    return bad


def recorded_hands(corr_types):
    """The hands whose parallel correlation the data record (corr_types e.g. ['XX'] -> [0])."""
    from .ms_io import CORR_ORDER

    have = {CORR_ORDER.get(str(c), -1) for c in corr_types}
    out = [h for h, c in zip(HANDS, HAND_CORR) if c in have]
    return out or list(HANDS)


def fold_diagonal_parang(diag, par):
    """``(diag, par)`` for the apply of one block: when the parallactic-angle matrices are diagonal
    (circular feeds: P = diag(e^-i chi, e^i chi)) and ``diag`` (n_t, n_ant, n_chan, 2) has a hand
    flagged (NaN) where the other is valid, P is multiplied into ``diag`` and None returned for it, so
    the diagonal kernel corrects (and flags) per correlation (module docstring: a chain of diagonal
    matrices keeps the good hand).  Otherwise both unchanged (the full kernel; the same values as
    before to the last bit)."""
    if diag is None or par is None:
        return diag, par
    if np.any(par[..., 0, 1] != 0) or np.any(par[..., 1, 0] != 0):
        return diag, par                # linear feeds: P rotates the hands into each other
    fin = np.isfinite(diag)
    if not np.any(fin[..., 0] != fin[..., 1]):
        return diag, par
    pd = np.stack([par[..., 0, 0], par[..., 1, 1]], axis=-1)[:, :, None, :]     # (n_t, n_ant, 1, 2)
    return np.ascontiguousarray(diag * pd), None


def unusable(sset) -> np.ndarray:
    """(n_ant, n_freq, n_time) bool: no hand of the antenna's solution is usable (every recorded hand
    flagged) -- what "every solution is flagged" means for a step; ``flags`` for a per-antenna set."""
    if getattr(sset, "pol_flags", None) is None:
        return np.asarray(sset.flags, bool)
    return hand_flags(sset)[..., set_hands(sset)].all(-1)
