"""One phase reference for all the solution cells of a step (refantmode flex / strict).

Every cell is solved with its own reference antenna (:func:`alakazam.solvers.common.choose_ref`): the
first antenna of the ``ref_ant`` list that has data in the cell, or, when none of the list has, the
antenna with the most data; ``solver_stats/ref_ant`` records which.  A cell solved with r' is in r''s
gauge (arg g[r'] = 0, tau[r'] = 0, d_pq[r'] = 0).  Interpolating in time across cells of different
gauges mixes references, so before a step's solutions are used (pre-applied by the next steps of the
chain, written to the HDF5) this module brings them to ONE reference R per SPW:

* ``strict``: R is the first antenna of the list; cells solved with another antenna are flagged.
* ``flex``: R is the first antenna of the list that is the reference of at least one cell of the first
  (field, SPW) solved (normally the first of the list; if none of the list is, the antenna most cells
  used).  A cell solved with r' != R is re-referenced by a *bridge*: in the
  step's cells solved with R in which r' has a solution (the same freq bin), r''s solution is the
  quantity that converts r''s gauge to R's (below); it is interpolated to the cell's time (linearly
  between the nearest such cells before and after, nearest when there is only one side) and applied to
  every antenna of the cell.  R has no data in that cell (otherwise the cell would have used it), so
  this is the only information about R there -- what CASA's re-referencing does.  Except when R is
  not the first of the list with data in the cell (R was fixed by a field solved before, in which the
  first had none): a cell in which R has a solution is brought to R by that solution itself (exact).
  K and G (per hand): a cell without such a cell of another time is bridged in frequency, from the
  bins of its own time cell solved with R in which r' has a solution
  (:func:`alakazam.solvers.rereference_hands._freq_bridge`: a bandpass over one time cell whose
  reference is flagged in some channels).  K and G: a cell after
  the last (before the first) cell solved with R is bridged from the nearest cell already in R's
  gauge when that is nearer than R's end cell, so that a reference dying half-way leaves one phase
  continuous in time (:class:`alakazam.solvers.rereference_hands._Chained`).  Cells without a
  bridge are flagged.
* Flags per hand (K, G; :mod:`alakazam.core.handflags`): each hand is brought to its own reference
  R_h with its own per-cell references (``solver_stats/ref_ant_hand``, :mod:`alakazam.solvers.handsolve`),
  bridges and flags (:mod:`alakazam.solvers.rereference_hands`); a hand without a bridge is flagged in
  the cell, the other kept.

Algebra (docs/conventions.md, "Re-referencing"), per feed p, cell solved with r', bridge value at the
cell's time marked ``^``:

* G: g_a^(r') = g_a exp(-i arg g_r'), so g_a^(R) = g_a^(r') exp(i arg g_r'^(R)) with
  arg g_r'^(R) the phase of r' in the cells solved with R (interpolated with 2 pi wraps removed);
  amplitudes are unchanged.  Exact when the bridge phase is exact.  The bridged phase is the whole
  chain's (``prior_phasor``): arg(P_r' g_r') in the bridge cells minus arg(P_r') in the cell, P the
  earlier K and G terms as the solve pre-applied them -- a G absorbs what they left (e.g. a K per
  scan's error at absolute frequency, 2 pi nu dtau), which differs between the bridge cells and the cell.
* K: tau_a^(R) = tau_a - tau_R = tau_a^(r') + tau_r'^(R).  Exact for constant delays.
* D: d_pq[ref] = 0 is fixed with the first-order gauge of the leakage, d_pq -> d_pq + c,
  d_qp -> d_qp - c^* for every antenna (D_a -> D_a U with U = [[1, c], [-c^*, 1]], unitary to first
  order, which leaves D_a M D_b^H unchanged for an unpolarised M), so d^(R) = d^(r') shifted by
  c = d_pq,r'^(R): d_pq,a += c, d_qp,a -= c^*.  The gauge itself is first order (docs/conventions.md):
  the shift is exact in that sense, not for second-order terms (|d| |c|) or the polarised flux.
* KC, CP: one value for all antennas, no reference antenna of their own.  They absorb the reference
  antenna's p - q delay / phase of the K and G that are pre-applied when they are solved; those are the
  re-referenced K and G (the chain is built from the re-referenced sets), so every KC/CP cell absorbs
  R's p - q terms -- already consistent, nothing to re-reference.

Order: a step's sets are re-referenced as each (field, SPW) is solved, bridging from the step's cells
solved so far (that field and the fields before it, in the step's field order); cells already
re-referenced are never changed again.  Step-major and field-major order solve the fields in the same
order, so both give the same solutions, and a later step's pre-apply sees exactly what is written.
"""

from __future__ import annotations

import logging

import numpy as np

from ..core.handflags import unusable
from ..jones import terms

log = logging.getLogger("alakazam.rereference")

TWO_PI_NS = 2.0 * np.pi * 1e-9
#: time interpolation of the bridge value between the nearest bridge cells before and after: 'linear'
#: (nearest when only one side exists) or 'nearest'
BRIDGE_INTERP = "linear"


def rereference_step(jones_type, sets, refs, mode="flex", ant_names=None, step_key="", prior_phasor=None):
    """Bring the not yet processed SolutionSets of one step to one reference per SPW (in place).

    Parameters
    ----------
    jones_type : str
    sets : list of :class:`alakazam.io.hdf5.SolutionSet`
        All sets of the step so far; those processed by an earlier call are bridge sources only.
        Each has ``extra['ref_ant']`` (n_freq, n_time), the reference each cell was solved with.
    refs : list of int
        Reference antennas in priority order (active numbering).
    mode : 'flex' | 'strict'
    prior_phasor : callable(set) -> (n_time, n_ant, n_freq, 2) complex, optional
        G only: the earlier referenced diagonal terms (K, G) of the chain as pre-applied in each cell
        (:func:`prior_phasor_from_chain`); the bridge is then taken on the whole chain's phase
        (module docstring).

    Returns
    -------
    dict of counts: ``rereferenced`` (cells bridged), ``no_bridge`` (flagged: no cell with both),
    ``strict`` (flagged: first choice missing), ``no_data`` (cells without any data, already flagged).
    The same counts of each set's own cells are kept on the set as ``s.reference_counts`` (K, G, D; a
    Python attribute, not written to the HDF5), so the solve can say why a (field, SPW, scan) group is
    flagged whole (``flow._refuse_all_flagged``: the reference antenna had no data there, not the data).
    """
    total = dict(rereferenced=0, no_bridge=0, strict=0, no_data=0)
    new = [s for s in sets if not getattr(s, "_rereferenced", False)]
    kind = terms.get(jones_type).phase_ref      # None: no reference antenna (KC, CP: module docstring)
    if kind is None:
        for s in new:
            s._rereferenced = True
        return total
    refs = [int(r) for r in refs]
    for spw in sorted({s.spw for s in new}):
        counts = dict(rereferenced=0, no_bridge=0, strict=0, no_data=0)
        same = [s for s in sets if s.spw == spw]          # bridge sources: their cells solved with R
        new_s = [s for s in new if s.spw == spw]
        done = [s for s in same if getattr(s, "_rereferenced", False)]
        prior = _PriorCache(prior_phasor if kind == "phase" else None)
        from . import rereference_hands
        per_hand = rereference_hands.applies(new_s)       # K, G: each hand to its own reference
        if per_hand:
            from ..core.handflags import set_hands
            Rs = rereference_hands.rereference(jones_type, new_s, same, done, refs, mode, prior, prior_phasor,
                                               counts)
            R = Rs[set_hands(new_s[0])[0]]
            for s in new_s:
                s.attrs["ref_ant_hands"] = [int(r) for r in Rs]
        else:
            R = int(done[0].attrs["ref_ant"]) if done else _step_reference(new_s, refs, mode)
        tables = {}                                       # (freq bin, fallback antenna) -> bridge cells
        for s in ([] if per_hand else new_s):
            used = np.asarray(s.extra["ref_ant"])
            empty = unusable(s).all(axis=0)               # (n_freq, n_time): no antenna has data
            own = s.reference_counts = dict(rereferenced=0, no_bridge=0, strict=0, no_data=int(empty.sum()))
            for jf, it in zip(*np.nonzero((used != R) & ~empty)):
                if mode == "strict":
                    _flag_cell(s, jf, it)
                    own["strict"] += 1
                    continue
                if not s.flags[R, jf, it]:      # R has a solution in the cell itself (R fixed by a field
                    val = -_bridge_values(jones_type, s, R, jf, np.array([it]))[0]   # solved before): exact
                    if np.all(np.isfinite(_recorded(s, val))):
                        _rotate_cell(jones_type, s, jf, it, val)
                        own["rereferenced"] += 1
                        continue
                key = (int(jf), int(used[jf, it]))
                if key not in tables:
                    tables[key] = _bridge_table(jones_type, same, R, key[1], key[0], prior)
                val = _interp(*tables[key], s.time[it], jones_type)
                if val is not None and kind == "phase" and prior_phasor is not None:
                    val = val - _prior_angles(prior, s, int(used[jf, it]), jf, it)[0]
                    val = val if np.all(np.isfinite(_recorded(s, val))) else None
                if val is None:
                    _flag_cell(s, jf, it)
                    own["no_bridge"] += 1
                    continue
                _rotate_cell(jones_type, s, jf, it, val)
                own["rereferenced"] += 1
            for k in counts:
                counts[k] += own[k]
        for s in new_s:
            s.attrs["ref_ant"] = R
            if ant_names is not None:
                s.attrs["ref_ant_name"] = ant_names[R]
            s._rereferenced = True
        if ant_names is not None:
            _log(step_key, jones_type, spw, mode, ant_names, R, refs, new_s, counts)
        for k in total:
            total[k] += counts[k]
    return total


def _step_reference(sets, refs, mode):
    """R: the first of ``refs`` (strict); flex: the first of ``refs`` that some cell with data used,
    else the antenna most cells used (lowest index on ties)."""
    if mode == "strict":
        return refs[0]
    return pick_reference(np.concatenate([np.asarray(s.extra["ref_ant"])[~unusable(s).all(axis=0)]
                                          for s in sets]), refs)


def pick_reference(used, refs):
    """flex's R from the references ``used`` by the cells with data: the first of ``refs`` among them,
    else the antenna most cells used (lowest index on ties), else ``refs[0]`` (no cell with data)."""
    for r in refs:
        if np.any(used == r):
            return r
    if used.size == 0:
        return refs[0]
    vals, n = np.unique(used, return_counts=True)
    return int(vals[np.argmax(n)])


def _bridge_values(jones_type, s, ant, jf, its):
    """(n, n_val) quantity of antenna ``ant`` in cells ``its`` (freq bin jf) solved with R that converts
    ``ant``'s gauge to R's: G its phase per feed, K its delay per feed, D its d_pq."""
    kind = terms.get(jones_type).phase_ref
    if kind == "phase":
        return np.angle(np.stack([s.jones[ant, jf, its, 0, 0], s.jones[ant, jf, its, 1, 1]], axis=-1))
    if kind == "delay":
        return np.asarray(s.delay[ant, jf, its], float)
    return np.asarray(s.jones[ant, jf, its, 0, 1])[:, None]


def _bridge_table(jones_type, sources, R, r2, jf, prior=None):
    """(times, values) sorted by time: the bridge cells of antenna ``r2`` in freq bin ``jf`` -- the
    cells solved with R in which r2 has a solution; G: on the whole chain's phase (``prior``)."""
    ts, vals = [], []
    for s in sources:
        if s.jones.shape[1] <= jf:
            continue
        used = np.asarray(s.extra["ref_ant"])[jf]
        its = np.flatnonzero((used == R) & ~s.flags[r2, jf] & ~s.flags[R, jf])
        if not len(its):
            continue
        v = _bridge_values(jones_type, s, r2, jf, its)
        if prior is not None and prior.fn is not None:
            v = v + _prior_angles(prior, s, r2, jf, its)
        ok = np.isfinite(_recorded(s, v)).all(axis=-1)
        ts.append(np.asarray(s.time, float)[its][ok])
        vals.append(v[ok])
    if not ts or not sum(len(t) for t in ts):
        return None, None
    ts, vals = np.concatenate(ts), np.concatenate(vals)
    order = np.argsort(ts, kind="stable")
    return ts[order], vals[order]


def _recorded(s, v):
    """The columns (feeds) of bridge values ``v`` (..., n_val) the set's data record: a single-hand MS's
    other hand is NaN and not part of the solution (core/handflags.py)."""
    from ..core.handflags import set_hands

    if v.shape[-1] != 2 or getattr(s, "pol_flags", None) is None:
        return v
    return v[..., set_hands(s)]


def _interp(ts, vals, t, jones_type):
    """The bridge value at time ``t``: linear between the nearest bridge cells before and after
    (nearest with one side only, or with BRIDGE_INTERP 'nearest'); G phases the shorter way round."""
    if ts is None:
        return None
    k = int(np.searchsorted(ts, t))         # ts[k - 1] < t <= ts[k]
    if k == 0 or k == len(ts) or BRIDGE_INTERP == "nearest":
        near = 0 if k == 0 else len(ts) - 1 if k == len(ts) else (k if ts[k] - t <= t - ts[k - 1] else k - 1)
        return vals[near]
    w = (t - ts[k - 1]) / (ts[k] - ts[k - 1])
    v0, v1 = vals[k - 1], vals[k]
    if terms.get(jones_type).phase_ref == "phase":     # phases: the shorter way round
        return v0 + w * np.angle(np.exp(1j * (v1 - v0)))
    return v0 + w * (v1 - v0)


class _PriorCache:
    """The earlier terms' phasors per set, evaluated once per set when a bridge needs them."""

    def __init__(self, fn):
        self.fn = fn
        self.cache = {}

    def get(self, s):
        if id(s) not in self.cache:
            self.cache[id(s)] = (s, self.fn(s))
        return self.cache[id(s)][1]


def _prior_angles(prior, s, ant, jf, its):
    """(n, 2) phase of antenna ``ant`` in the earlier referenced diagonal terms as pre-applied in cells
    ``its`` (freq bin jf) of set ``s``: 0 without them; NaN where they are flagged."""
    its = np.atleast_1d(its)
    if prior is None or prior.fn is None or prior.get(s) is None:
        return np.zeros((len(its), 2))
    ph = prior.get(s)[its, ant, jf]
    return np.angle(ph) + np.where(np.isfinite(ph), 0.0, np.nan)


def prior_phasor_from_chain(prior, meta):
    """``prior_phasor`` for :func:`rereference_step`: the product of the chain's earlier K and G terms
    (:func:`alakazam.calibration.chain.compose`, as the solve's pre-apply evaluates them: own field
    first, each term's pre-apply time interpolation) at the cell times and the set's channels, averaged
    as phasors over the channels of each freq bin -- what a G cell absorbs.  KC / CP are the same for
    every antenna and D is not diagonal: neither changes the phase of one antenna relative to R."""
    from ..calibration import chain

    terms_ = [t for t in prior if terms.get(t.jones_type).phase_ref in ("phase", "delay")]
    if not terms_:
        return None
    spw_freqs = {sp.spw_id: np.asarray(sp.freqs, float) for sp in meta.spws.values()}
    names = [meta.ant_names[a] for a in meta.active_ants]

    def fn(s):
        freqs = spw_freqs[s.spw][np.asarray(s.attrs["channels"], np.int64)]
        diag, _ = chain.compose(terms_, s.spw, np.asarray(s.time, float), freqs, names, s.field_name,
                                (s.attrs.get("field_ra", np.nan), s.attrs.get("field_dec", np.nan)),
                                prefer_own=True)
        if diag is None:
            return None
        diag = np.broadcast_to(diag, (len(s.time), len(names), len(freqs), 2))
        fbin = np.argmin(np.abs(freqs[:, None] - np.asarray(s.freq, float)[None, :]), axis=1)
        out = np.empty((len(s.time), len(names), len(s.freq), 2), complex)
        for jf in range(len(s.freq)):
            with np.errstate(invalid="ignore"):
                good = np.isfinite(diag[:, :, fbin == jf])
                out[:, :, jf] = np.where(good, diag[:, :, fbin == jf], 0).sum(axis=2) / np.where(
                    good.any(axis=2), 1.0, np.nan)
        return out
    return fn


def _rotate_cell(jones_type, s, jf, it, val):
    """Apply the bridge value to every antenna of one cell (module docstring)."""
    kind = terms.get(jones_type).phase_ref
    if kind == "phase":
        s.jones[:, jf, it, 0, 0] *= np.exp(1j * val[0])
        s.jones[:, jf, it, 1, 1] *= np.exp(1j * val[1])
    elif kind == "delay":
        s.delay[:, jf, it, :] += val
        # the stored Jones is the delay's phase at the bin centre (apply uses the delays)
        s.jones[:, jf, it, 0, 0] *= np.exp(-1j * TWO_PI_NS * val[0] * s.freq[jf])
        s.jones[:, jf, it, 1, 1] *= np.exp(-1j * TWO_PI_NS * val[1] * s.freq[jf])
    else:                                   # D
        c = complex(val[0])
        s.jones[:, jf, it, 0, 1] += c
        s.jones[:, jf, it, 1, 0] -= np.conj(c)


def _flag_cell(s, jf, it):
    s.flags[:, jf, it] = True
    if getattr(s, "pol_flags", None) is not None:
        s.pol_flags[:, jf, it] = True
    s.jones[:, jf, it] = np.nan
    if s.delay is not None:
        s.delay[:, jf, it] = np.nan


def _hand_refs(sets):
    """Per-hand sets (rereference_hands): the antennas that referenced a recorded hand h in some cell
    other than that hand's step reference R_h, and {h: R_h}; (None, None) for other sets."""
    from ..core.handflags import set_hands

    if not all("ref_ant_hand" in s.extra and s.attrs.get("ref_ant_hands") is not None for s in sets):
        return None, None
    others, hand_R = set(), {}
    for s in sets:
        rh = np.asarray(s.extra["ref_ant_hand"])
        for h in set_hands(s):
            hand_R[h] = int(s.attrs["ref_ant_hands"][h])
            others |= {int(u) for u in np.unique(rh[..., h])} - {hand_R[h]}
    return others, hand_R


def _first_unused(sets, first, hand=None):
    """True when antenna ``first`` is the reference of no cell of ``sets`` in any hand (``hand``: in that
    hand; per-hand sets: ``solver_stats/ref_ant_hand``; else ``ref_ant``): a cell takes the first
    antenna of the list with data in it, so ``first`` then has no usable sample in any cell of the
    selection."""
    for s in sets:
        rh = s.extra.get("ref_ant_hand")
        if rh is not None:
            from ..core.handflags import set_hands

            rh = np.asarray(rh)
            if any((rh[..., h] == first).any() for h in set_hands(s) if hand is None or h == hand):
                return False
        elif (np.asarray(s.extra["ref_ant"]) == first).any():
            return False
    return True


def _had_data(sets, ant, hand=None):
    """Whether antenna ``ant`` had data (in hand ``hand``; None: either) in some cell of ``sets``: an SNR
    > 0 recorded for it (a hand without data has 0; one taken out for no signal keeps its S,
    solvers/nosignal.py)."""
    for s in sets:
        snr = s.extra.get("snr") if isinstance(getattr(s, "extra", None), dict) else None
        if snr is None:
            continue
        v = np.asarray(snr)[ant]
        if hand is not None:
            v = v[..., hand]
        if np.any(np.nan_to_num(v) > 0):
            return True
    return False


def _lost_hands(sets, ant):
    """The recorded hands in which antenna ``ant`` has no unflagged solution in any cell of ``sets``, when
    it has one in another recorded hand (a feed lost for the whole selection); [] otherwise or for sets
    without flags per hand."""
    from ..core.handflags import set_hands

    if not sets or not all(getattr(s, "pol_flags", None) is not None for s in sets):
        return []
    hands = set_hands(sets[0])
    alive = {h: any(not s.hand_flags()[ant, ..., h].all() for s in sets) for h in hands}
    if not any(alive.values()):
        return []
    return [h for h in hands if not alive[h]]


def _log(step_key, jones_type, spw, mode, names, R, refs, sets, counts):
    others, hand_R = _hand_refs(sets)     # a hand solved with a fallback (the cell's reference unchanged)
    if others is None:
        used = np.concatenate([np.asarray(s.extra["ref_ant"]).ravel() for s in sets])
        others = set(int(u) for u in np.unique(used)) - {R}
    others = sorted(others)
    moved = {h: r for h, r in (hand_R or {}).items() if r != refs[0]}
    if not others and not counts["no_data"] and not moved and R == refs[0]:
        return
    if hand_R and len(set(hand_R.values())) > 1:   # the hands' references differ: name both
        R_text = " / ".join(f"{names[r]} ({'pq'[h]})" for h, r in sorted(hand_R.items()))
    else:
        R_text = names[R]
    # the fields of the sets this call brought to the reference (a step calls once per field group: two
    # 'spw 0' lines without a field left the user to guess which had the fallback; review 55c)
    flds = sorted({str(getattr(s, "field_name", "")) for s in sets} - {""})
    where = f"{step_key} ({jones_type}) " + (f"field {', '.join(flds)} " if flds else "") + f"spw {spw}"
    if mode == "flex" and _first_unused(sets, refs[0]) and (moved if hand_R else R != refs[0]) \
            and (not hand_R or set(moved) == set(hand_R)):
        # the first refant is the reference of no cell of any hand: it has no usable sample in the
        # selection (e.g. every row of it flagged); one message naming it and the antenna used instead
        fields = ", ".join(dict.fromkeys(s.field_name for s in sets))
        lost = _lost_hands(sets, refs[0])
        if lost:
            # alive in one hand: a cell's reference has both hands where some antenna has (common.run)
            log.warning("%s: refant %s has no usable %s hand in any cell of the selection (field(s) %s, spw "
                        "%s: a feed dead or flagged); a reference needs both hands, so %s is the reference "
                        "instead, of both (solver_stats/ref_ant%s); %s's other hand is solved", where,
                        names[refs[0]], "/".join("pq"[h] for h in lost), fields, spw, R_text,
                        ", attr ref_ant_hands" if hand_R else "", names[refs[0]])
        elif _had_data(sets, refs[0]):
            # its samples reached the solve but carried no signal (taken out: solvers/nosignal.py)
            log.warning("%s: refant %s has data but no signal in the selection (field(s) %s, spw %s: its "
                        "solutions are flagged in every cell, SNR below minsnr -- a dead antenna or feed "
                        "the flags do not mark); %s is the reference instead (solver_stats/ref_ant%s)",
                        where, names[refs[0]], fields, spw, R_text, ", attr ref_ant_hands" if hand_R else "")
        else:
            one_f = (" -- or its samples lie at one frequency, which fixes no delay"
                     if jones_type in ("K", "KC") else "")
            # (the solve-time flags count: an antenna whose data carry no signal -- noise only, a dead
            # antenna the MS does not flag -- is flagged there before the solve; review 53a read "no
            # unflagged data" of an antenna 96% unflagged in the MS)
            log.warning("%s: refant %s has no unflagged data in the selection (field(s) %s, spw %s: in no "
                        "solution cell has it a sample that is unflagged -- in the MS or by the solve-time "
                        "flags, which flag an antenna whose data carry no signal --, with weight > 0 and "
                        "finite%s); %s is the reference instead (solver_stats/ref_ant%s)", where,
                        names[refs[0]], fields, spw, one_f, R_text, ", attr ref_ant_hands" if hand_R else "")
        moved = {}
        R_named = True
    else:
        R_named = False
    if mode == "flex":
        for h, r in moved.items():
            unused = _first_unused(sets, refs[0], hand=h)
            if unused and _had_data(sets, refs[0], hand=h):
                # its samples in this hand reached the solve but carried no signal (solvers/nosignal.py)
                log.warning("%s: hand %s: the first reference antenna %s has data but no signal in this hand "
                            "(flagged in every cell, SNR below minsnr); %s is its reference (attr "
                            "ref_ant_hands)", where, "pq"[h], names[refs[0]], names[r])
            elif unused:
                log.warning("%s: hand %s: the first reference antenna %s has data in this hand in no "
                            "cell%s; %s is its reference (attr ref_ant_hands)", where, "pq"[h],
                            names[refs[0]], " (or at one frequency only, which fixes no delay)"
                            if jones_type == "K" else "", names[r])
            else:       # it has data here; the step's reference was fixed by a field solved before
                log.warning("%s: hand %s: %s is the step's reference (the first reference antenna %s had no "
                            "data in this hand in the field solved first; attr ref_ant_hands)", where,
                            "pq"[h], names[r], names[refs[0]])
    if others and not (counts["rereferenced"] or counts["no_bridge"] or counts["strict"]):
        # every cell solved with another antenna ended flagged for its own reasons (RFI channels, no
        # signal): nothing was re-referenced -- not a warning listing antennas and three zero counts
        log.info("%s: reference %s; the cells solved with %s were all flagged (no usable solution), none "
                 "re-referenced", where, R_text, ", ".join(names[o] for o in others))
    elif others:
        log.warning("%s: reference %s; cells solved with %s: %d re-referenced to %s (bridged), %d flagged "
                    "without a bridge, %d flagged by refantmode strict (solver_stats/ref_ant keeps each "
                    "cell's antenna)", where, R_text, ", ".join(names[o] for o in others),
                    counts["rereferenced"], R_text, counts["no_bridge"], counts["strict"])
    if R != refs[0] and mode == "flex" and not hand_R and not R_named:
        log.warning("%s: the first reference antenna %s is the reference of no cell; %s is used", where,
                    names[refs[0]], names[R])
    if counts["no_data"]:
        log.info("%s: %d cells without any usable data (flagged)", where, counts["no_data"])
