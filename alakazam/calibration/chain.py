"""A chain of solved terms evaluated on a data grid: the shared path of pre-apply (solve) and apply.

A :class:`LoadedTerm` holds every solution set of one key (all fields, scans and SPWs).
:func:`term_tables` evaluates it on the grid of a chunk of data -- unique times, channel frequencies,
the MS's active antennas -- with field selection, time interpolation, frequency mapping (delays are
turned into Jones matrices at every channel) and antenna remapping by name.  :func:`compose` splits a
chain into the antenna-side diagonal product and the sky-side (D, P) product in the RIME order of
docs/conventions.md::

    J_a = [K G... KC CP]_a  D_a  P_a

and :func:`preapply_tables` builds them for a solve step (applied by
:func:`alakazam.core.averaging.accumulate_corrected`): ``V' = Jd_p^-1 V Jd_q^-H``, ``M' = Js_p M Js_q^H``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..errors import AlakazamError
from ..jones import terms as jterms
from ..jones.algebra import nonfinite_any

log = logging.getLogger("alakazam.chain")

#: the diagonal types (the registry's matrix_form)
DIAGONAL_TYPES = tuple(n for n in jterms.names() if jterms.get(n).diagonal)


@dataclass
class LoadedTerm:
    """One solved term: all its solution sets and how to evaluate it on other grids."""

    key: str
    jones_type: str
    sets: list                          # alakazam.io.hdf5.SolutionSet
    field_select: str = "nearest_time"
    time_interp: str = "nearest"
    solution_field: Optional[List[str]] = None
    freq_interp: str = ""               # '' (nearest bin) or a core/freqinterp.FREQ_MODES entry
    spwmap: Optional[dict] = None       # {data SPW: table SPW} (apply's spwmap; calibration/spwmap.py)
    source: str = ""                    # the table it was read from (absolute path; '' = solved in this run)

    @property
    def diagonal(self) -> bool:
        return jterms.get(self.jones_type).diagonal


def load_term(table, key, field_select="nearest_time", time_interp="nearest", solution_field=None):
    """Read one key of a cal table (fuzzy key matching, e.g. 'g0' or 'G' when unique)."""
    from ..io import solutions  # an HDF5 table, or a CASA caltable (type from its VisCal)

    real = solutions.resolve_key(table, key)
    sets = solutions.read_term(table, real)
    if not sets:
        raise AlakazamError(f"{key}: table {table} has no solutions under {real}")
    jt = str(sets[0].attrs["jones_type"])
    if jterms.get(jt).gain:     # gains akfluxscale scaled in some SPWs only: said (review 54a)
        from .fluxscale import warn_partly_scaled

        warn_partly_scaled(real, table, sets)
    if field_select == "pinned" and not solution_field:
        raise AlakazamError(f"{key}: field_select 'pinned' needs solution_field (the calibrator "
                            "field(s) whose solutions to use)")
    return LoadedTerm(real, jt, sets, field_select, time_interp,
                      list(solution_field) if solution_field else None, source=os.path.abspath(str(table)))


def term_from_sets(key, jones_type, sets, time_interp="nearest"):
    """A term just solved in this run (pre-applied to the following steps)."""
    return LoadedTerm(key, jones_type, list(sets), "nearest_time", time_interp, None)


@dataclass
class _FieldSolutions:
    name: str
    ra: float
    dec: float
    time: np.ndarray          # (n_t,)
    jones: np.ndarray         # (n_ant, n_f, n_t, 2, 2)
    flags: np.ndarray         # (n_ant, n_f, n_t)
    delay: Optional[np.ndarray]
    freq: np.ndarray
    ant_names: list
    delay_ref: float = 0.0    # Hz: delay phases are -2 pi tau (nu - delay_ref) (CASA K tables; 0 = ours)
    scan: Optional[np.ndarray] = None   # (n_t,) MS scan of each solution time (-1: a bin spanning scans)


def _by_field(term: LoadedTerm, spw_id: int):
    """``{field name: _FieldSolutions}`` of the term's sets of SPW ``spw_id``: each field's solutions on
    one timeline, in time order.  Built once per term and SPW (kept on the term while its sets are the
    same objects, as :func:`hand_views`): every chunk of an apply and every block of a pre-apply asked
    for it again, concatenating and sorting every field's whole timeline -- 12,176 calls and 25.8 s of
    a 46 s apply of a 150-field mosaic with 600 scans (review 56a).  The arrays are read, never written,
    by the callers."""
    memo = sets_memo(term, "_by_field")
    got = memo.get(int(spw_id))
    if got is None:
        got = memo[int(spw_id)] = _by_field_uncached(term, spw_id)
    return got


def sets_memo(term: LoadedTerm, name: str) -> dict:
    """A dict kept on ``term`` under ``name`` for values that depend on its solution sets alone: emptied
    when the term's sets are no longer the same objects (compared by identity and held, so that an id is
    never reused while kept).  A copy of the term (``copy.copy``) with the same sets shares it."""
    memo = term.__dict__.get(name)
    if memo is None or len(memo[0]) != len(term.sets) or any(a is not b for a, b in zip(memo[0], term.sets)):
        memo = term.__dict__[name] = (tuple(term.sets), {})
    return memo[1]


def _by_field_uncached(term: LoadedTerm, spw_id: int):
    sets = [s for s in term.sets if int(s.attrs["spw"]) == int(spw_id)]
    if not sets:
        have = sorted({int(s.attrs["spw"]) for s in term.sets})
        raise AlakazamError(f"{term.key}: no solutions for SPW {spw_id} (the table has SPW "
                            f"{', '.join(map(str, have))}); select matching SPWs")
    out = {}
    for name in dict.fromkeys(str(s.attrs["field_name"]) for s in sets):
        fs = sorted([s for s in sets if str(s.attrs["field_name"]) == name],
                    key=lambda s: float(s.time[0]))
        t = np.concatenate([s.time for s in fs])
        order = np.argsort(t, kind="stable")
        jones = np.concatenate([s.jones for s in fs], axis=2)[:, :, order]
        flags = np.concatenate([s.flags for s in fs], axis=2)[:, :, order]
        delay = (np.concatenate([s.delay for s in fs], axis=2)[:, :, order]
                 if fs[0].delay is not None else None)
        a = fs[0].attrs
        scan = np.concatenate([np.full(len(s.time), _set_scan(s), np.int64) for s in fs])[order]
        out[name] = _FieldSolutions(name, float(a.get("field_ra", np.nan)),
                                    float(a.get("field_dec", np.nan)), t[order], jones, flags, delay,
                                    np.asarray(fs[0].freq), [str(x) for x in a["ant_names"]],
                                    float(a.get("delay_ref_hz", 0.0)), scan)
    return out


def _set_scan(s):
    """The MS scan of a solution set's bins: its scan_id, the only scan of a combined (scan_0) set,
    or -1 when its bins span several scans."""
    if s.scan_id:
        return int(s.scan_id)
    scans = list(np.atleast_1d(s.attrs.get("scans", [])))
    return int(scans[0]) if len(scans) == 1 else -1


def _same_scan_parts(parts, time_scan, target_name):
    """Own-field solutions and flags, scan by scan (applymode calflag, and every pre-apply): at target
    times of scan s of a field with its own solutions in scan s, every antenna and bin is interpolated
    over all the field's solutions (CASA's timeline), and where that uses a flagged one of another scan
    -- the linear bracket from scan s to a neighbouring scan whose solution is flagged -- it takes scan
    s's own instead: the data are not flagged for a flag of another scan while their own scan has valid
    solutions (CASA, whose timeline ignores scans, flags them; where scan s's own is flagged too, so
    are they).  The fallback is taken per sample, after the frequency mapping (a mode that bridges
    flagged bins bridges before it).

    Until session 54 a flagged solution in scan s put every antenna of the scan on scan s's solutions
    alone, held where CASA and the other scans interpolate linearly (review 54c: 0.40 of max |V| from
    CASA's applycal); then, per (antenna, bin), the flagged antenna itself was still held at the scan's
    edges (review 54g: 1.9e-2 of the field's max |V|).  Within the solutions used the flags follow
    core/interpolation.py (the nearest solution's, either bracketing one's for linear / cubic, outside
    them the held end one's).  Other fields' solutions are interpolated over all solutions, and no flag
    is bridged there either.  Returns parts ``(name, sel, fs, amap, fallback)``: ``fallback`` None, or
    the scan's own solutions, taken where ``fs`` gives a flagged solution."""
    out = []
    for name, sel, fs, amap in parts:
        if name != target_name or fs.scan is None or len(sel) == 0:
            out.append((name, sel, fs, amap, None))
            continue
        vals = fs.delay if fs.delay is not None else fs.jones
        ok = ~fs.flags & np.isfinite(vals).reshape(vals.shape[:3] + (-1,)).all(axis=-1)
        all_ok = bool(ok.all())
        ts = np.asarray(time_scan)[sel]
        keep = np.ones(len(sel), bool)
        for sc in np.unique(ts):
            m = fs.scan == sc
            if sc < 0 or not m.any() or all_ok:
                continue
            sub = ts == sc
            keep &= ~sub
            fsub = _FieldSolutions(fs.name, fs.ra, fs.dec, fs.time[m], fs.jones[:, :, m], fs.flags[:, :, m],
                                   None if fs.delay is None else fs.delay[:, :, m], fs.freq, fs.ant_names,
                                   delay_ref=fs.delay_ref, scan=fs.scan[m])
            out.append((name, sel[sub], fs, amap, fsub))
        if keep.any():
            out.append((name, sel[keep], fs, amap, None))
    return out


def _fallback_mode(mode, fs):
    """The time mode for a scan's own solutions (:func:`_same_scan_parts`): ``cubic`` needs 4 of them,
    with fewer ``linear``."""
    return "linear" if mode == "cubic" and len(fs.time) < 4 else mode


def _angular_sep(ra1, dec1, ra2, dec2):
    c = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(ra1 - ra2)
    return np.arccos(np.clip(c, -1.0, 1.0))


def choose_fields(term: LoadedTerm, fields: dict, times, target_name=None, target_radec=None,
                  prefer_own=False):
    """Solution field for each target time: (names list, index array (n_time,)) and a mode label.

    A field that has its own solutions in the term is calibrated with them (``prefer_own``; label
    'own'), unless the term is pinned; otherwise field_select decides: nearest_time (per time, the
    field with the closest solution time), nearest_sky (smallest angular distance; falls back to
    nearest_time without RA/Dec) or pinned (solution_field, nearest in time among them).  For
    nearest_time / nearest_sky a field whose every solution (in this SPW) is flagged is no candidate
    while another field has a valid one.
    """
    names = list(fields)
    if term.field_select == "pinned":
        use = [n for n in term.solution_field if n in fields]
        if not use:
            raise AlakazamError(
                f"{term.key}: solution_field {term.solution_field} has no solutions in this table "
                f"(fields with solutions: {', '.join(names)})")
        names = use
        mode = "pinned"
    elif prefer_own and target_name in fields:
        return [target_name], np.zeros(len(times), np.int64), "own"
    else:
        mode = term.field_select
        # a field whose every solution is flagged serves no other field (nearest_time chose it by time
        # and left the target uncorrected; tests/test_review_s24_solve.py)
        usable = [n for n in names if not np.all(fields[n].flags)]
        names = usable or names
    if len(names) == 1:
        return names, np.zeros(len(times), np.int64), mode
    if mode == "nearest_sky":
        if target_radec is not None and all(np.isfinite([fields[n].ra, fields[n].dec]).all()
                                            for n in names):
            sep = [_angular_sep(fields[n].ra, fields[n].dec, *target_radec) for n in names]
            return names, np.full(len(times), int(np.argmin(sep)), np.int64), mode
        log.info("%s: nearest_sky without RA/Dec, falling back to nearest_time", term.key)
        mode = "nearest_time"
    # nearest_time (also pinned with several fields): per time, the field with the closest solution
    dist = np.empty((len(names), len(times)))
    for i, n in enumerate(names):
        st = fields[n].time
        j = np.clip(np.searchsorted(st, times), 1, max(len(st) - 1, 1))
        lo = np.abs(times - st[j - 1])
        hi = np.abs(times - st[np.minimum(j, len(st) - 1)])
        dist[i] = np.minimum(lo, hi)
    return names, np.argmin(dist, axis=0), mode


def _field_parts(term, spw_id, times, ant_names, target_name, target_radec, prefer_own, time_scan=None):
    """Which solution field serves which target times (shared by :func:`term_tables` and
    :func:`diag_table`): returns ``(parts, info)`` with parts a list of
    ``(name, sel, fs, amap, fallback)`` -- the target-time indices ``sel`` served by field ``name``,
    its solutions ``fs``, the map target antenna -> solution antenna (-1: missing) and None or the
    solutions to use where ``fs`` gives a flagged one -- and the info dict of the apply log lines
    (fields and selection mode filled in).  With ``time_scan`` (the MS scan of each target time) the
    own-field solutions are taken scan by scan (:func:`_same_scan_parts`)."""
    fields = _by_field(term, spw_id)
    names, which, mode = choose_fields(term, fields, times, target_name, target_radec, prefer_own)
    info = {"fields": [], "mode": mode, "time": "", "freq": ""}
    parts = []
    for i, name in enumerate(names):
        sel = np.nonzero(which == i)[0]
        if len(sel) == 0:
            continue
        fs = fields[name]
        info["fields"].append(name)
        amap = np.array([fs.ant_names.index(a) if a in fs.ant_names else -1 for a in ant_names],
                        np.int64)
        parts.append((name, sel, fs, amap))
    if time_scan is not None:
        return _same_scan_parts(parts, time_scan, target_name), info
    return [p + (None,) for p in parts], info


def term_tables(term: LoadedTerm, spw_id: int, times, freqs, ant_names, target_name=None,
                target_radec=None, prefer_own=True, describe=False, time_scan=None, chan_one=False):
    """Evaluate a term on a data grid.

    Parameters
    ----------
    term : LoadedTerm
    spw_id : int
        SPECTRAL_WINDOW id of the data.
    times : (n_time,) float
        Unique MJD seconds of the data chunk.
    freqs : (n_chan,) float
        Channel frequencies of the data (Hz).
    ant_names : list of str (n_ant,)
        The data's active antennas; solutions are remapped by name (missing -> flagged).
    target_name, target_radec
        The data's field (for own-field preference and nearest_sky).
    time_scan : (n_time,) int or None
        MS scan of each time: flagged own-field solutions are not bridged across scans
        (:func:`_same_scan_parts`).
    chan_one : bool
        A term whose solutions have one frequency bin in every field it uses (no delay, no freq_interp:
        the bin is broadcast to every channel) is returned with a channel axis of 1 -- the same values
        without the copies to every channel (the apply's leakage and linearly interpolated gains,
        issue 16).  Otherwise, and by default, the channel axis has n_chan.

    Returns
    -------
    jones : complex128 (n_time, n_ant, n_chan, 2, 2)
        NaN where flagged.
    flags : bool (n_time, n_ant, n_chan)
    info : dict  (fields used, time/freq mapping descriptions; for the apply log lines)
    """
    from ..core import interpolation as interp

    views = hand_views(term)
    if views is not None:       # flags per hand (core/handflags.py): each hand evaluated on its own flags
        (j0, f0, info), (j1, f1, _) = [term_tables(v, spw_id, times, freqs, ant_names, target_name,
                                                   target_radec, prefer_own, describe, time_scan, chan_one)
                                       for v in views]
        j0, j1 = np.broadcast_arrays(j0, j1)
        j = np.array(j0)
        j[..., 1, 1] = j1[..., 1, 1]
        return j, f0 | f1, info
    times = np.asarray(times, float)
    freqs = np.asarray(freqs, float)
    n_t, n_c, n_a = len(times), len(freqs), len(ant_names)
    field_parts, info = _field_parts(term, spw_id, times, ant_names, target_name, target_radec,
                                     prefer_own, time_scan)
    one = (chan_one and not term.freq_interp and
           all(fs.delay is None and len(fs.freq) == 1 for _, _, fs, _, _ in field_parts))
    all_freqs = freqs
    if one:                 # every channel maps to the one bin: evaluate it once
        freqs = freqs[:1]
        n_c = 1
    jones = np.full((n_t, n_a, n_c, 2, 2), np.nan + 0j)
    flags = np.ones((n_t, n_a, n_c), bool)
    def evaluate(fs, t_target, mode):
        """(jones (n_ant_sol, n_chan, n_tt, 2, 2), flags (n_ant_sol, n_chan, n_tt), freq description)"""
        if fs.delay is not None:
            d, dflag = interp.interp_delay_time(fs.time, fs.delay, fs.flags, t_target, mode)
            # delay (n_ant, n_f, n_tt, 2): the delay of the nearest solution freq bin per channel
            fidx, _ = interp.map_freq(fs.freq, freqs)
            d = d[:, fidx]                      # (n_ant, n_chan, n_tt, 2)
            dflag = dflag[:, fidx]
            j = interp.delay_to_jones(d, freqs - fs.delay_ref, term.jones_type)   # (n_ant, n_chan, n_tt, 2,2)
            return j, dflag, f"delay->jones {n_c}ch"
        jt, jflag = interp.interp_time(fs.time, fs.jones, fs.flags, t_target, mode)
        if term.freq_interp and len(fs.freq) > 1:     # CASA interp 'time,freq' (core/freqinterp.py)
            from ..core.freqinterp import interp_freq
            return interp_freq(fs.freq, jt, jflag, freqs, term.freq_interp)
        fidx, fdesc = interp.map_freq(fs.freq, freqs)
        return jt[:, fidx], jflag[:, fidx], fdesc

    for name, sel, fs, amap, fallback in field_parts:
        t_target = times[sel]
        try:
            j, jf, fdesc = evaluate(fs, t_target, term.time_interp)
        except AlakazamError as e:      # ('cubic' with too few solutions): which term, field and SPW
            raise AlakazamError(f"{term.key} (solutions of {name} for {target_name}, SPW {spw_id}): "
                                f"{e}") from None
        if fallback is not None and jf.any():     # the scan's own solutions where fs gives a flagged one
            j2, jf2, _ = evaluate(fallback, t_target, _fallback_mode(term.time_interp, fallback))
            use = jf & ~jf2
            j = np.array(j)
            j[use] = j2[use]
            jf = jf & jf2
        info["time"] = f"{term.time_interp} {len(fs.time)}->{n_t}"
        info["freq"] = interp.map_freq(fs.freq, all_freqs)[1] if one else fdesc
        # (n_ant_sol, n_chan, n_tt, ...) -> (n_tt, n_ant, n_chan, ...)
        j = np.moveaxis(j, 2, 0)
        jf = np.moveaxis(jf, 2, 0)
        ok = amap >= 0
        jj = np.full((len(sel), n_a, n_c, 2, 2), np.nan + 0j)
        ff = np.ones((len(sel), n_a, n_c), bool)
        jj[:, ok] = j[:, amap[ok]]
        ff[:, ok] = jf[:, amap[ok]]
        jones[sel] = jj
        flags[sel] = ff
    flags |= ~np.isfinite(jones).all(axis=(-1, -2))
    jones[flags] = np.nan
    return jones, flags, info


def describe(term: LoadedTerm, spw_id, times, freqs, ant_names, target_name, target_radec, n_ant):
    """The two apply log lines of SEED.md for one term and target field::

        G0: loaded [3C286(29t), 3C147(15t)] (7 ants)
        G0: 3C286 -> DA240 (nearest_time, time=linear 29->45, freq=broadcast 1->2048)
    """
    from ..core import interpolation as interp

    fields = _by_field(term, spw_id)
    loaded = ", ".join(f"{n}({len(f.time)}t)" for n, f in fields.items())
    n_sol_ant = len(next(iter(fields.values())).ant_names)
    names, which, mode = choose_fields(term, fields, np.asarray(times, float), target_name, target_radec,
                                       prefer_own=True)
    used = [names[i] for i in np.unique(which)]
    n_t_sol = sum(len(fields[n].time) for n in used)
    fs = fields[used[0]]
    if fs.delay is not None:
        fdesc = f"delay->jones {len(freqs)}ch"
    else:
        fdesc = (f"{term.freq_interp} {len(fs.freq)}->{len(freqs)}" if term.freq_interp and len(fs.freq) > 1
                 else interp.map_freq(fs.freq, freqs)[1])
    return [f"{term.key}: loaded [{loaded}] ({n_sol_ant} ants)",
            f"{term.key}: {', '.join(used)} -> {target_name} ({mode}, time={term.time_interp} "
            f"{n_t_sol}->{len(times)}, freq={fdesc})"]


def compose(terms: List[LoadedTerm], spw_id, times, freqs, ant_names, target_name=None,
            target_radec=None, prefer_own=True, log_lines=None, time_scan=None, bad_out=None, full=True,
            sky_chan_one=False, frame_terms=None):
    """Evaluate a chain: (diag (n_t, n_ant, n_chan, 2) or None, sky (n_t, n_ant, n_chan, 2, 2) or None).

    ``full=False``: ``diag`` as evaluated, its channel axis possibly 1 (a broadcast, 1-bin term) and not
    necessarily contiguous or owned -- the same values once broadcast, for a caller that multiplies it
    into another table (:mod:`.preapply_cache`) and needs no full-size copy of it.
    ``sky_chan_one=True``: the 1-bin terms evaluated by :func:`term_tables` (leakage, gains with linear
    time interpolation) keep a channel axis of 1 (``term_tables(chan_one=True)``), so ``sky`` has a
    channel axis of 1 when every D term is 1-bin -- the same values once broadcast (the apply's
    :func:`alakazam.jones.algebra.compose_inverse_table` takes either); a D brought to the final frame
    of later KC/CP terms is evaluated per channel as before.

    ``frame_terms``: the whole chain when ``terms`` is a part of it evaluated on its own (the solve's kept
    pre-apply product extended term by term, :mod:`.preapply_cache`): a G solved after a per-scan K of
    the whole chain is evaluated in that K's frame (:mod:`.delayframe`) as in the chain's own compose.

    ``bad_out`` (a dict, optional) receives ``{term key: bool (n_t or 1, n_ant, n_chan or 1)}``, where
    each term's solution is flagged -- what :func:`alakazam.calibration.applymode.term_flag_counts`
    evaluates, from the tables evaluated here (each term is evaluated once per chunk).

    ``diag`` is the product of the diagonal terms' diagonals; ``sky`` the product of the D terms in
    chain order, later terms to the left (J = ... D_2 D_1).  Flagged solutions are NaN.  A D solved
    before a KC/CP of ``terms`` is first brought to the final frame (:mod:`.solve_order`).
    """
    from .solve_order import cross_terms_after, to_final_frame
    from . import chainfield        # one calibrator field per target time for the whole chain
    parts = chainfield.groups(terms, spw_id, times, target_name, target_radec, prefer_own)
    if parts is not None:
        return chainfield.compose_groups(compose, parts, spw_id, times, freqs, ant_names, target_name,
                                         target_radec, prefer_own, log_lines, time_scan, bad_out)

    def evaluate(term, chan_one=False, at=None):
        """(jones or None, diag or None, info, flags or None) of ``term`` on the data's channels (or on
        the frequencies ``at``)."""
        at = freqs if at is None else at
        fast = diag_table(term, spw_id, times, at, ant_names, target_name, target_radec, prefer_own,
                          time_scan=time_scan)
        if fast is not None:
            return None, fast[0], fast[1], None   # (n_t, n_ant, n_chan or 1, 2), the same values
        j, f, info = term_tables(term, spw_id, times, at, ant_names, target_name, target_radec,
                                 prefer_own, time_scan=time_scan, chan_one=chan_one)
        return j, (np.stack([j[..., 0, 0], j[..., 1, 1]], axis=-1) if term.diagonal else None), info, f

    # a D solved before some KC/CP of the chain is brought to the final frame (solve_order)
    frames = {i: cross_terms_after(t, terms) for i, t in enumerate(terms) if not t.diagonal}
    cache = {k: evaluate(terms[k]) for k in sorted({k for v in frames.values() for k in v})}
    diag = None
    sky = None
    owned = False
    from . import delayframe        # a G solved after a per-scan K: interpolated with that K
    for i, term in enumerate(terms):
        ks = delayframe.k_terms_for(term, terms if frame_terms is None else frame_terms, spw_id)
        if ks:
            j, d, info, f = delayframe.evaluate_in_frame(evaluate, term, ks, spw_id, times, freqs, ant_names,
                                                         target_name, target_radec, time_scan)
        else:
            j, d, info, f = cache[i] if i in cache else evaluate(term, sky_chan_one and not frames.get(i))
        if frames.get(i):
            j = to_final_frame(j, [cache[k][1] for k in frames[i]])
        if log_lines is not None:
            log_lines.append((term, info))
        if bad_out is not None:     # a per-hand term: per hand (applymode counts per correlation)
            bad_out[term.key] = (~np.isfinite(d) if term.diagonal and hand_views(term) is not None else
                                 nonfinite_any(d) if f is None else f)
        if term.diagonal:               # same products in the same order as before (in place when possible)
            if diag is None:
                diag = d
            elif owned and np.broadcast_shapes(diag.shape, d.shape) == diag.shape:
                np.multiply(diag, d, out=diag)
            else:
                diag = diag * d
                owned = True
        else:
            sky = j if sky is None else np.einsum("...ij,...jk->...ik", j, sky)
    if diag is not None and full:
        shape = (len(times), len(ant_names), len(freqs), 2)
        diag = (np.ascontiguousarray(diag) if diag.shape == shape else
                np.ascontiguousarray(np.broadcast_to(diag, shape)))
    return diag, sky


def diag_table(term: LoadedTerm, spw_id: int, times, freqs, ant_names, target_name=None,
               target_radec=None, prefer_own=True, time_scan=None):
    """``(diag, info)``: the diagonal ``(n_time, n_ant, n_chan or 1, 2)`` of :func:`term_tables` (same
    values, NaN where flagged; the channel axis is 1 for a broadcast (1-bin) term) for a diagonal term
    with ``exact``/``nearest`` time interpolation, or None for other terms (use term_tables).

    The nearest solution (flagged ones included: a flagged nearest solution gives NaN, as in
    :func:`alakazam.core.interpolation.interp_time`) is chosen on the solution grid and the values
    are gathered once into the output order: no full-size (n_time, n_ant, n_chan, 2, 2)
    intermediate, no antenna/frequency copy, and the delays of K/KC are turned into phases only for
    the solution times used.
    """
    from ..core import interpolation as interp

    if not term.diagonal or term.time_interp not in ("exact", "nearest") or term.freq_interp:
        return None
    views = hand_views(term)
    if views is not None:       # flags per hand (core/handflags.py): each hand evaluated on its own flags
        (d0, info), (d1, _) = [diag_table(v, spw_id, times, freqs, ant_names, target_name, target_radec,
                                          prefer_own, time_scan) for v in views]
        d0, d1 = np.broadcast_arrays(d0, d1)
        d = np.array(d0)
        d[..., 1] = d1[..., 1]
        return d, info
    times = np.asarray(times, float)
    freqs = np.asarray(freqs, float)
    n_t, n_c, n_a = len(times), len(freqs), len(ant_names)
    parts = []
    field_parts, info = _field_parts(term, spw_id, times, ant_names, target_name, target_radec,
                                     prefer_own, time_scan)

    def gather(fs, sel, amap):
        """(n_tt or 1, n_a, n_x, 2) of the nearest solutions of ``fs`` at times[sel], NaN where flagged."""
        t_target = times[sel]
        order = np.argsort(np.asarray(fs.time, float), kind="stable")      # as interp_time does
        st = np.asarray(fs.time, float)[order]
        fl = fs.flags[:, :, order]
        fidx, fdesc = interp.map_freq(fs.freq, freqs)
        if fs.delay is not None:
            sol = fs.delay[:, :, order].astype(float, copy=False)           # (n_s, n_f, n_ts, 2)
            ok = ~fl & np.isfinite(sol).all(axis=-1)
            fdesc = f"delay->jones {n_c}ch"
        else:
            sol = fs.jones[:, :, order].astype(np.complex128, copy=False)   # (n_s, n_f, n_ts, 2, 2)
            ok = ~fl & ~nonfinite_any(sol.reshape(sol.shape[:-2] + (4,)))
        info["freq"] = fdesc
        n_s, n_f, n_ts = ok.shape
        if n_ts == 0:
            return np.full((len(sel), n_a, 1, 2), np.nan + 0j)
        # the nearest solution time, the same for every antenna and freq; a flagged one gives NaN
        # (flags are not bridged: core/interpolation.py)
        idx, _ = interp.nearest_solution_index(st, ok[:1, :1], t_target)   # (n_tt,)
        uk, kk = np.unique(idx, return_inverse=True)                        # solution times used
        kk = kk.reshape(idx.shape)
        ok_u = ok[:, :, uk]                                                 # (n_s, n_f, n_u)
        if fs.delay is not None:        # phases per channel at the used solution times (delay_to_jones)
            dsel = sol[:, :, uk][:, fidx]                                   # (n_s, n_chan, n_u, 2)
            dsel[~ok_u[:, fidx]] = np.nan
            nu = freqs[None, :, None] - fs.delay_ref
            vals = np.empty(dsel.shape, np.complex128)
            vals[..., 0] = np.exp(-1j * interp.TWO_PI_NS * dsel[..., 0] * nu)
            if jterms.get(term.jones_type).delay_pols == 1:       # KC: q entry 1
                vals[..., 1] = np.where(np.isfinite(dsel[..., 0]), 1.0, np.nan)
            else:
                vals[..., 1] = np.exp(-1j * interp.TWO_PI_NS * dsel[..., 1] * nu)
            xmap = np.arange(n_c)
        else:
            vals = np.stack([sol[:, :, uk, 0, 0], sol[:, :, uk, 1, 1]], axis=-1)   # (n_s, n_f, n_u, 2)
            vals[~ok_u] = np.nan
            xmap = np.zeros(1, np.int64) if n_f == 1 else np.asarray(fidx, np.int64)
        vals[nonfinite_any(vals)] = np.nan                  # term_tables flags the whole matrix
        # a NaN antenna for the antennas without solutions
        vals = np.concatenate([vals, np.full((1,) + vals.shape[1:], np.nan + 0j)], axis=0)
        n_x, n_u = vals.shape[1], vals.shape[2]
        s_ix = np.where(amap >= 0, amap, n_s)[None, :, None]
        x_ix = xmap[None, None, :]
        if len(uk) == 1:                # one solution time for all: constant in time (broadcast)
            k_ix = np.zeros((1, 1, 1), np.int64)
        else:
            k_ix = kk[:, None, None]
        # one gather into (n_tt or 1, n_a, n_x, 2) by flat index (np.take: ~10x faster than 3 index arrays)
        flat = (s_ix * n_x + x_ix) * n_u + k_ix
        return np.take(vals.reshape(-1, 2), flat, axis=0)

    for name, sel, fs, amap, fallback in field_parts:
        info["time"] = f"{term.time_interp} {len(fs.time)}->{n_t}"
        g = gather(fs, sel, amap)
        if fallback is not None and np.isnan(g).any():   # the scan's own solutions where fs's are flagged
            g, g2 = np.broadcast_arrays(g, gather(fallback, sel, amap))
            g = np.where(np.isnan(g), g2, g)
        parts.append((sel, g))
    if len(parts) == 1 and len(parts[0][0]) == n_t:
        return parts[0][1], info         # (n_t or 1, n_a, n_chan or 1, 2)
    n_x = max([p.shape[2] for _, p in parts] + [1])
    out = np.full((n_t, n_a, n_x, 2), np.nan + 0j)
    for sel, p in parts:
        out[sel] = p
    return out, info


def hand_views(term: LoadedTerm):
    """Two views of a term whose sets have flags per hand that differ between the hands somewhere
    (:mod:`alakazam.core.handflags`), else None: view h has hand h's flags as ``flags`` and hand h's
    values on both diagonal elements (and delays), so the per-antenna evaluation of
    :func:`term_tables` / :func:`diag_table` (nearest / bracketing solutions in time, flags not bridged,
    field choice, frequency interpolation) is that of hand h alone; the caller takes hand h of view h.
    A flagged hand is thus interpolated from its own hand's solutions only.  Built once per term."""
    memo = term.__dict__.get("_hand_views")
    if memo is not None and memo[0] == tuple(id(s) for s in term.sets):
        return memo[1]
    import copy

    views = None
    hf = [s.hand_flags() if getattr(s, "pol_flags", None) is not None else None for s in term.sets]
    if any(h is not None and (h[..., 0] != h[..., 1]).any() for h in hf):
        views = []
        for h in (0, 1):
            sets = []
            for s, f in zip(term.sets, hf):
                if f is None:
                    sets.append(s)
                    continue
                v = copy.copy(s)
                v.flags = f[..., h]
                v.pol_flags = None
                v.jones = np.array(s.jones)
                v.jones[..., 1 - h, 1 - h] = s.jones[..., h, h]
                if s.delay is not None:
                    v.delay = np.array(s.delay)
                    v.delay[..., 1 - h] = s.delay[..., h]
                sets.append(v)
            t2 = copy.copy(term)
            t2.__dict__.pop("_hand_views", None)
            t2.sets = sets
            views.append(t2)
        views = tuple(views)
    term.__dict__["_hand_views"] = (tuple(id(s) for s in term.sets), views)
    return views


def parang_table(meta, field, times, spw):
    """P matrices (n_time, n_ant, 2, 2) for the active antennas of SPW ``spw`` (an ms_io.SpwInfo), each
    with its own parallactic angle (its ANTENNA position, as CASA; docs/conventions.md) and its FEED
    row's receptor angle for that SPW (ms_io.receptor_angles)."""
    from ..jones import parang
    from .parang_check import check_antenna_positions, check_receptor_angles

    check_antenna_positions(meta, "parang")          # a clear error, whichever task got here
    check_receptor_angles(meta, [spw.ddid], "parang")
    act = np.asarray(meta.active_ants)
    rec = spw.receptor_angle if spw.receptor_angle is not None else meta.receptor_angle
    recept = np.asarray(rec)[act]
    mounts = _active_mounts(meta)
    return parang.parang_tables(np.asarray(times, float), field.ra, field.dec, meta.observatory,
                                recept, spw.feed_basis, ant_pos_itrf=np.asarray(meta.ant_positions)[act],
                                mounts=mounts)


def _active_mounts(meta):
    """The ANTENNA MOUNT of each active antenna (jones/parang.mount_kind turns its feeds so); a mount
    casacore does not handle is warned about once, as CASA's 'unhandled mount type': no rotation."""
    from ..core import warnonce
    from ..jones import parang

    mounts = meta.active_mounts
    odd = sorted({(m, n) for m, n in zip(mounts, meta.active_names) if parang.mount_kind(m) == "unknown"})
    if odd:
        by = {}
        for m, n in odd:
            by.setdefault(m, []).append(n)
        warnonce.warning(
            "alakazam.parang", "parang: ANTENNA MOUNT %s: not a mount whose feed rotation is known (ALT-AZ, "
            "EQUATORIAL, ALT-AZ+NASMYTH-R/L, X-Y, ALT-AZ+ROTATOR): no parallactic rotation is applied to "
            "those antennas, as CASA's applycal does ('unhandled mount type'); if their feeds turn with the "
            "parallactic angle, set MOUNT to ALT-AZ in the MS's ANTENNA table",
            "; ".join(f"{m!r} ({', '.join(v)})" for m, v in by.items()))
    return mounts


def preapply_tables(prior, meta, ddid, chans, field, utimes, apply_parang, time_scan=None):
    """The pre-apply tables of a solve step on the unique times ``utimes`` of a chunk:
    ``(diag, sky)`` = (product of the earlier diagonal terms (n_t, n_ant, n_chan, 2), data side; the
    D terms and, with ``apply_parang``, P: (n_t, n_ant, n_chan, 2, 2), model side), each None when
    empty; NaN = flagged.  With P and no D the sky table is ``(n_t, n_ant, 1, 2, 2)``: P is the same
    for every channel (not broadcast: 1/n_chan of the memory traffic).  The solve flow applies them
    in its fused accumulation pass (:func:`alakazam.core.averaging.accumulate_corrected`)."""
    spw = meta.spws[ddid]
    freqs = np.asarray(spw.freqs)[chans]
    names = [meta.ant_names[a] for a in meta.active_ants]
    from .spwmap import map_prior
    prior = map_prior(prior, meta, ddid)                      # gaintable spwmap (calibration/spwmap.py)
    diag, sky = compose(prior, spw.spw_id, utimes, freqs, names, field.name, (field.ra, field.dec),
                        prefer_own=True, time_scan=time_scan) if prior else (None, None)
    if apply_parang:
        p = parang_table(meta, field, utimes, spw)                   # (n_t, n_ant, 2, 2)
        if sky is None:
            return diag, np.ascontiguousarray(p[:, :, None])         # one channel: the same for all
        p = np.broadcast_to(p[:, :, None], (len(utimes), len(names), len(freqs), 2, 2))
        sky = np.einsum("...ij,...jk->...ik", sky, p)
    return diag, sky
