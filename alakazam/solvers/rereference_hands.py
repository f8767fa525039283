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
  strict mode) hand h of the cell is flagged, the other hand is kept; a cell after the last (before
  the first) cell solved with R_h takes the nearest cell already in R_h's gauge as its bridge when
  that is nearer in time (:class:`_Chained`; cells are processed in that time order);
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


class _Chained:
    """Cells already in R's gauge without having been solved with R (re-referenced before, in this
    call or in ``done``), per freq bin and sorted by time: a bridge source for a cell beyond the last
    (or before the first) cell solved with R.  Bridging such a cell from R's end cell holds r''s phase
    from that time -- an hour earlier when R died half-way -- and with a fallback antenna that changes
    from cell to cell the re-referenced cells then differ by a common phase of radians, which apply's
    interpolation (each antenna's phase the short way round) turns into decorrelation.  Bridged from
    the nearest cell already in R's gauge, consecutive cells stay continuous."""

    def __init__(self, kind, same, done, R, h, prior):
        import bisect

        self._bisect = bisect
        self.kind, self.h, self.prior = kind, h, prior
        self.by_bin = {}            # jf -> ([times], [(set, it)])
        in_spw = {id(x) for x in same}
        for s in done:
            if id(s) not in in_spw:
                continue
            used = _used(s, h)
            hf = hand_flags(s)[..., h]
            for jf, it in zip(*np.nonzero((used != R) & ~hf.all(axis=0))):
                self.add(s, int(jf), int(it))

    def add(self, s, jf, it):
        ts, cs = self.by_bin.setdefault(jf, ([], []))
        k = self._bisect.bisect_right(ts, float(s.time[it]))
        ts.insert(k, float(s.time[it]))
        cs.insert(k, (s, it))

    def nearest(self, jf, r2, t):
        """(time, r2's value in R's gauge) of the cell nearest ``t`` in which r2 has hand h, or None."""
        if jf not in self.by_bin:
            return None
        ts, cs = self.by_bin[jf]
        k = self._bisect.bisect_left(ts, t)
        lo, hi = k - 1, k
        while lo >= 0 or hi < len(ts):
            if hi >= len(ts) or (lo >= 0 and t - ts[lo] <= ts[hi] - t):
                i, lo = lo, lo - 1
            else:
                i, hi = hi, hi + 1
            s, it = cs[i]
            if hand_flags(s)[r2, jf, it, self.h]:
                continue
            v = float(_value(self.kind, s, r2, jf, np.array([it]), self.h)[0])
            if self.prior is not None and self.prior.fn is not None:
                from .rereference import _prior_angles

                v += float(_prior_angles(self.prior, s, r2, jf, it)[0, self.h])
            if np.isfinite(v):
                return ts[i], v
        return None


def _bridged_cells(kind, new_s, Rs, hands):
    """{(id(set), jf, it)}: the cells not solved with the step's reference in which some hand with data
    has no solution of that reference (R_h flagged or missing in hand h): that hand is bridged, and so
    is every other hand of the cell, not brought to R exactly by R's own solution in it.  A bridge's
    error is the interpolation error of r''s phase relative to R, nearly the same in both hands (the
    atmosphere is common to an antenna's feeds); in both hands it is a common phase of the cell, which
    no baseline sees, but in one hand alone it is a p - q phase error: the reference's q feed lost in one
    scan left that scan's gains 36-40 deg off in q - p and a polarised calibrator's corrected cross
    hands at 4.2-8.7 x the noise (review 55c)."""
    out = set()
    for s in new_s:
        hf = hand_flags(s)
        for h in hands:
            used = _used(s, h)
            need = (used != Rs[h]) & ~hf[..., h].all(axis=0) & hf[Rs[h], ..., h]
            for jf, it in zip(*np.nonzero(need)):
                out.add((id(s), int(jf), int(it)))
    return out


def rereference(jones_type, new_s, same, done, refs, mode, prior, prior_phasor, counts):
    """Bring ``new_s`` (the new sets of one SPW) to one reference per hand, in place (module docstring);
    ``same``: every set of the step in the SPW (bridge sources), ``done``: those processed before;
    ``counts`` (rereferenced, no_bridge, strict, no_data) added to per cell (a cell with a hand bridged,
    flagged without a bridge, flagged by strict; no_data: no usable hand); each set's own counts on
    ``s.reference_counts`` (as :func:`alakazam.solvers.rereference.rereference_step`).  Returns R per
    hand."""
    from .rereference import _interp, _prior_angles

    kind = terms.get(jones_type).phase_ref
    hands = set_hands(new_s[0])
    cells = {k: set() for k in ("rereferenced", "no_bridge", "strict")}    # counted per cell, as the caller's
    for s in new_s:
        s.reference_counts = dict(rereferenced=0, no_bridge=0, strict=0,
                                  no_data=int(hand_flags(s)[..., hands].all(-1).all(axis=0).sum()))
        counts["no_data"] += s.reference_counts["no_data"]
    prev = done[0].attrs.get("ref_ant_hands") if done else None
    Rs = [int(prev[h]) if prev is not None else _step_reference(new_s, refs, mode, h) for h in (0, 1)]
    bridged = _bridged_cells(kind, new_s, Rs, hands)
    for h in (0, 1):
        R = Rs[h]
        if h not in hands:
            continue
        tables = {}
        todo = []                           # (order class, sort key, set, jf, it, r2)
        direct = []                         # (set, jf, it, value): R has a solution in the cell itself
        for s in new_s:
            used = _used(s, h)
            hf = hand_flags(s)[..., h]
            empty = hf.all(axis=0)
            for jf, it in zip(*np.nonzero((used != R) & ~empty)):
                if mode == "strict":
                    _flag(s, jf, it, h)
                    cells["strict"].add((id(s), int(jf), int(it)))
                    continue
                # R has data in the cell but the cell took another antenna: R is not the first of the
                # list with data here (R was fixed by a field solved before, in which the first had
                # none).  The cell is then brought to R exactly by R's own solution in it.
                v = _value(kind, s, R, jf, np.array([it]), h)[0] if not hf[R, jf, it] else np.nan
                if np.isfinite(v) and (id(s), int(jf), int(it)) not in bridged:
                    direct.append((s, int(jf), int(it), -float(v)))
                    continue
                r2 = int(used[jf, it])
                key = (int(jf), r2)
                if key not in tables:
                    tables[key] = _bridge_table(kind, same, R, r2, key[0], h, prior)
                ts, t = tables[key][0], float(s.time[it])
                # bracketed by cells solved with R first; then the cells after the last one in time
                # order, those before the first in reverse time order (each bridged from its already
                # re-referenced neighbour: _chained); then those without any
                cls, sk = ((0, t) if ts is not None and ts[0] <= t <= ts[-1] else
                           (1, t) if ts is not None and t > ts[-1] else
                           (2, -t) if ts is not None else (3, t))
                todo.append((cls, sk, len(todo), s, int(jf), int(it), r2))
        chain = _Chained(kind, same, done, R, h, prior)
        for s, jf, it, val in direct:
            _rotate(kind, s, jf, it, h, val)
            cells["rereferenced"].add((id(s), jf, it))
            chain.add(s, jf, it)
        for cls, _, _, s, jf, it, r2 in sorted(todo, key=lambda x: x[:3]):
            cell = (id(s), jf, it)
            t = float(s.time[it])
            ts, vals = tables[(jf, r2)]
            val = None
            if cls in (1, 2):       # beyond R's cells: the nearer of R's end cell and a chained one
                near = chain.nearest(jf, r2, t)
                end_t = ts[-1] if cls == 1 else ts[0]
                if near is not None and abs(near[0] - t) < abs(end_t - t):
                    val = near[1]
            if val is None:
                val = _interp(ts, vals, s.time[it], jones_type)
            if val is None:         # no cell of another time: the neighbouring bins of this one
                val = _interp(*_freq_bridge(kind, s, R, r2, jf, it, h, prior), s.freq[jf], jones_type)
            if val is None:
                near = chain.nearest(jf, r2, t)
                val = None if near is None else near[1]
            if val is not None and kind == "phase" and prior_phasor is not None:
                val = val - _prior_angles(prior, s, r2, jf, it)[0, h]
            val = None if val is None or not np.all(np.isfinite(val)) else float(np.ravel(val)[0])
            if val is None:
                _flag(s, jf, it, h)
                cells["no_bridge"].add(cell)
                continue
            _rotate(kind, s, jf, it, h, val)
            cells["rereferenced"].add(cell)
            chain.add(s, jf, it)
    by_id = {id(s): s for s in new_s}
    for k, v in cells.items():
        counts[k] += len(v)
        for cell in v:
            by_id[cell[0]].reference_counts[k] += 1
    return Rs
