"""Re-referencing per hand: :mod:`alakazam.solvers.rereference` for a step whose sets have flags per
hand (K, G: ``pol_flags`` and ``solver_stats/ref_ant_hand``; :mod:`alakazam.core.handflags`,
:mod:`alakazam.solvers.handsolve`).

Each hand h is brought to its own step reference R_h the way the module docstring of
:mod:`alakazam.solvers.rereference` describes for the cell, with the hand's own quantities:

* the reference of a cell for hand h is ``ref_ant_hand[..., h]`` (the cell's reference, or the hand's
  fallback when the cell's reference had no data in h);
* R_h (flex) is the first of the ``ref_ant`` list that is hand h's reference in some cell, else the
  antenna most cells used for h; strict: the first of the list;
* a cell whose hand-h reference r' differs from R_h is bridged from the cells solved with R_h for h in
  which r' has an unflagged hand h (r''s hand-h phase (G, on the whole chain's phase) or delay (K),
  interpolated in time), applied to hand h of every antenna of the cell; without a bridge (or in
  strict mode) hand h of the cell is flagged, the other hand is kept;
* a cell without any usable hand h is left alone (``no_data``).

So a reference antenna whose q feed is dead in some scans only gives q solutions referenced to it in
the others and bridged to it in those (through the fallback), one phase reference per hand across the
step.  The sets' attr ``ref_ant`` stays R_p (the first recorded hand's), ``ref_ant_hands`` = [R_p, R_q].
"""

from __future__ import annotations

import numpy as np

from ..core.handflags import antenna_flags, hand_flags, set_hands
from ..jones import terms

TWO_PI_NS = 2.0 * np.pi * 1e-9


def applies(sets) -> bool:
    """The step's sets carry flags and references per hand."""
    return bool(sets) and all(getattr(s, "pol_flags", None) is not None and "ref_ant_hand" in s.extra
                              for s in sets)


def _used(s, h):
    return np.asarray(s.extra["ref_ant_hand"])[..., h]


def _step_reference(sets, refs, mode, h):
    from .rereference import pick_reference

    if mode == "strict":
        return refs[0]
    used = [_used(s, h)[~hand_flags(s)[..., h].all(axis=0)] for s in sets]
    return pick_reference(np.concatenate(used), refs)


def _value(kind, s, ant, jf, its, h):
    """(n,) the hand-h quantity of ``ant`` in cells ``its`` of freq bin jf that converts its gauge to R's."""
    if kind == "phase":
        return np.angle(s.jones[ant, jf, its, h, h])
    return np.asarray(s.delay[ant, jf, its, h], float)


def _bridge_table(kind, sources, R, r2, jf, h, prior):
    from .rereference import _prior_angles

    ts, vals = [], []
    for s in sources:
        if s.jones.shape[1] <= jf:
            continue
        hf = hand_flags(s)[..., h]
        its = np.flatnonzero((_used(s, h)[jf] == R) & ~hf[r2, jf] & ~hf[R, jf])
        if not len(its):
            continue
        v = _value(kind, s, r2, jf, its, h)
        if prior is not None and prior.fn is not None:
            v = v + _prior_angles(prior, s, r2, jf, its)[:, h]
        ok = np.isfinite(v)
        ts.append(np.asarray(s.time, float)[its][ok])
        vals.append(v[ok][:, None])
    if not ts or not sum(len(t) for t in ts):
        return None, None
    ts, vals = np.concatenate(ts), np.concatenate(vals)
    order = np.argsort(ts, kind="stable")
    return ts[order], vals[order]


def _freq_bridge(kind, s, R, r2, jf, it, h, prior):
    """(freqs, values) sorted by frequency: the bridge in frequency for cell (jf, it) of set ``s`` when
    no cell of another time has both R and r2 (a bandpass over one time cell, 'inf', whose reference
    antenna is flagged in some channels, e.g. by RFI): the other freq bins of the same time cell solved
    with R in which r2 and R have a solution; ``_interp`` takes the value at the cell's frequency
    (linear between the nearest bins below and above, the phase the shorter way; nearest on one side).
    Exact for r2's phase relative to R varying linearly across the band (a delay difference; with
    ``prior`` the chain's K, G included, as the time bridge).  (None, None) without such bins."""
    from .rereference import _prior_angles

    hf = hand_flags(s)[..., h]
    jfs = np.flatnonzero((_used(s, h)[:, it] == R) & ~hf[r2, :, it] & ~hf[R, :, it])
    jfs = jfs[jfs != jf]
    if not len(jfs):
        return None, None
    v = np.array([_value(kind, s, r2, j, np.array([it]), h)[0] for j in jfs], float)
    if prior is not None and prior.fn is not None:
        v = v + np.array([_prior_angles(prior, s, r2, j, it)[0, h] for j in jfs])
    ok = np.isfinite(v)
    if not ok.any():
        return None, None
    f = np.asarray(s.freq, float)[jfs][ok]
    order = np.argsort(f, kind="stable")
    return f[order], v[ok][order][:, None]


def _rotate(kind, s, jf, it, h, val):
    if kind == "phase":
        s.jones[:, jf, it, h, h] *= np.exp(1j * val)
    else:
        s.delay[:, jf, it, h] += val
        s.jones[:, jf, it, h, h] *= np.exp(-1j * TWO_PI_NS * val * s.freq[jf])


def _flag(s, jf, it, h):
    pol = hand_flags(s)
    pol[:, jf, it, h] = True
    s.pol_flags = pol
    s.jones[:, jf, it, h, h] = np.nan
    if s.delay is not None:
        s.delay[:, jf, it, h] = np.nan
    both = pol[:, jf, it].all(-1)
    s.jones[both, jf, it] = np.nan
    s.flags[:] = antenna_flags(pol, set_hands(s))


def rereference(jones_type, new_s, same, done, refs, mode, prior, prior_phasor, counts):
    """Bring ``new_s`` (the new sets of one SPW) to one reference per hand, in place (module docstring);
    ``same``: every set of the step in the SPW (bridge sources), ``done``: those processed before;
    ``counts`` (rereferenced, no_bridge, strict, no_data) added to per cell (a cell with a hand bridged,
    flagged without a bridge, flagged by strict; no_data: no usable hand).  Returns R per hand."""
    from .rereference import _interp, _prior_angles

    kind = terms.get(jones_type).phase_ref
    hands = set_hands(new_s[0])
    cells = {k: set() for k in ("rereferenced", "no_bridge", "strict")}    # counted per cell, as the caller's
    for s in new_s:
        counts["no_data"] += int(hand_flags(s)[..., hands].all(-1).all(axis=0).sum())
    Rs = []
    for h in (0, 1):
        prev = done[0].attrs.get("ref_ant_hands") if done else None
        R = int(prev[h]) if prev is not None else _step_reference(new_s, refs, mode, h)
        Rs.append(R)
        if h not in hands:
            continue
        tables = {}
        for s in new_s:
            used = _used(s, h)
            empty = hand_flags(s)[..., h].all(axis=0)
            for jf, it in zip(*np.nonzero((used != R) & ~empty)):
                cell = (id(s), int(jf), int(it))
                if mode == "strict":
                    _flag(s, jf, it, h)
                    cells["strict"].add(cell)
                    continue
                r2 = int(used[jf, it])
                key = (int(jf), r2)
                if key not in tables:
                    tables[key] = _bridge_table(kind, same, R, r2, key[0], h, prior)
                val = _interp(*tables[key], s.time[it], jones_type)
                if val is None:         # no cell of another time: the neighbouring bins of this one
                    val = _interp(*_freq_bridge(kind, s, R, r2, jf, it, h, prior), s.freq[jf], jones_type)
                if val is not None and kind == "phase" and prior_phasor is not None:
                    val = val - _prior_angles(prior, s, r2, jf, it)[0, h]
                val = None if val is None or not np.all(np.isfinite(val)) else float(np.ravel(val)[0])
                if val is None:
                    _flag(s, jf, it, h)
                    cells["no_bridge"].add(cell)
                    continue
                _rotate(kind, s, jf, it, h, val)
                cells["rereferenced"].add(cell)
    for k, v in cells.items():
        counts[k] += len(v)
    return Rs
