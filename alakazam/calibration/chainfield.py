"""One calibrator field per target time for the whole chain (apply, akflag's pre-apply).

Each term chooses its field by itself (``nearest_time`` / ``nearest_sky``, :func:`.chain.choose_fields`).
When two terms of a chain both have solutions on two calibrators, the choices can differ for the same
target time -- e.g. K0 (solint inf, one solution time per field) from 3C286 and G0 (per scan) from
3C147 -- and the product is wrong: a field's G was solved with *that field's* K pre-applied and absorbs
its phase, and a delay enters as -2 pi tau nu at the absolute frequency (docs/conventions.md), so
delays differing by 0.3 ns between the fields are 2.4 rad at 1.3 GHz.  Measured (tests/
test_review_s24_solve.py): TARGET corrected with K0, G0 solved on 3C286 and 3C147: 1.6 rad rms phase
error in the scans where the two terms chose differently, 0.26-0.37 rad (the gain drift) with one
field for both.

Convention: of the chain's terms whose field selection is nearest_time / nearest_sky, that do not use
the target's own solutions and that are not instrumental (KC, CP, D), the one solved last -- that no
other was solved after, by the pre-apply chains the tables record; of several (or unrecorded), the most
time-variable: the most solution times on one field, then solutions on more fields, then the last
listed -- chooses the field for each target time: it was solved with the earlier ones of its own field
pre-applied (a gain per scan solved on one calibrator after K and G of several pins them to its field;
a bandpass of one calibrator solved before gains per scan of several does not pin them, wherever it is
listed).  A KC, CP or D (solved on one polarisation or leakage calibrator after gains solved on
several) keeps its own choice and does not decide for the others: the gains of each calibrator share
the reference antenna's gauge, so one calibrator's KC, CP or D serves the gains of any (CASA's recipe,
gainfield '' for them).  A term with the target's
own solutions (e.g. G solved on the target itself with K and G of two calibrators pre-applied) keeps
them and does not decide for the others (it was solved with their one-field product pre-applied); every
earlier such term that has solutions on that field uses that field for those times (as if pinned to
it); a term without solutions on it keeps its own choice (e.g. K and a bandpass solved on the bandpass
calibrator only: that is what the later G of the other field was solved with).  Pinned terms and a
target's own solutions are unchanged.  When every term already agrees, nothing changes (the chain is
evaluated as before).  A solve's pre-apply follows the same rule (:mod:`.preapply_cache`).
"""

from __future__ import annotations

import copy

import numpy as np

from ..errors import AlakazamError

FREE = ("nearest_time", "nearest_sky")


def _instrumental(term) -> bool:
    """KC, CP (cross hands only) and D (not diagonal): the instrument's terms, the same under the gains of
    every calibrator (which share the reference antenna's gauge); they never lead the chain's choice."""
    from ..jones import terms as jterms

    return jterms.get(term.jones_type).cross_only or not jterms.get(term.jones_type).diagonal


def groups(terms, spw_id, times, target_name, target_radec, prefer_own):
    """``[(time indices, terms for them), ...]`` when the chain's terms would choose different fields for
    some times (module doc), else None (evaluate as before)."""
    from .chain import _by_field, choose_fields

    free = [k for k, t in enumerate(terms) if t.field_select in FREE]
    if len(free) < 2:
        return None
    try:
        fields = {k: _by_field(terms[k], spw_id) for k in free}
        choice = {k: choose_fields(terms[k], fields[k], times, target_name, target_radec, prefer_own)
                  for k in free}
    except AlakazamError:
        return None                 # (said by the evaluation itself)
    # the lead: terms with the target's own solutions ('own', e.g. a self-calibration) keep them and do
    # not decide for the others, nor do the instrumental terms (KC, CP, D: _instrumental) -- a CP of
    # one polarisation calibrator "chose" its field for every time, and pinning the gains to it
    # calibrated a target scan next to the other calibrator with gains 20 min away (review 53b: Stokes
    # I 0.85 of the truth in that scan).  Of the others the one solved last leads (below): a per-scan G
    # of one calibrator solved after K, G of two pins them (review 53d: else 3C147's G under a G
    # relative to 3C286's, 0.25 of the target's flux); a bandpass of one calibrator solved before gains
    # per scan of two and listed after them does not (review 53e: the target's phase error 12.1 -> 16.3
    # deg with the list's order alone)
    cand = [k for k in free if choice[k][2] in FREE and not _instrumental(terms[k])]
    if not cand:                    # every term uses the target's own solutions or is instrumental
        return None
    # First the solve order the tables record (attrs preapply_chain / preapply_tables): a term that
    # another candidate was solved after does not lead -- the last solved does, with the earlier ones of
    # its own field under it, whatever the list's order (review 53f: K per scan on 3C286 and G per scan
    # on two calibrators solved after it, as many solution times, led by list order: 12.1 or 15.8 deg).
    # Then the most solution times on one field, the more fields, the last listed
    rank = {k: (max(len(np.unique(f.time)) for f in fields[k].values()), len(fields[k]), k) for k in cand}
    sinks = [k for k in cand if not any(_solved_after(terms[j], terms[k]) for j in cand if j != k)]
    lead = max(sinks or cand, key=rank.get)
    names, which, mode = choice[lead]
    lead_name = np.asarray(names, object)[which]                        # (n_t,) field per time
    differs = False
    for k in free:
        if k == lead:
            continue
        n_k, w_k, m_k = choice[k]
        if m_k not in FREE:
            continue
        own = np.asarray(n_k, object)[w_k]
        have = np.array([n in fields[k] for n in lead_name])
        differs |= bool(np.any(have & (own != lead_name)))
    if not differs:
        return None
    out = []
    pinned = set()
    for name in dict.fromkeys(lead_name.tolist()):
        idx = np.nonzero(lead_name == name)[0]
        ts = []
        for k, t in enumerate(terms):
            if k in free and k != lead and name in fields[k] and choice[k][2] in FREE:
                t = copy.copy(t)
                t.field_select, t.solution_field = "pinned", [name]
                pinned.add(_name(t))
            ts.append(t)
        out.append((idx, ts))
    _say(target_name, spw_id, _name(terms[lead]), sorted(pinned))
    return out


def _solved_after(b, a) -> bool:
    """Term ``b`` was solved with term ``a`` pre-applied: ``a``'s key in ``b``'s recorded pre-apply chain,
    from ``a``'s table (``preapply_tables``: '' = ``b``'s own table; not recorded: ``b``'s table)."""
    import os

    from .solve_order import preapply_chain

    chain = preapply_chain(b)
    if not chain or a.key not in chain:
        return False
    tabs = [str(x) for x in np.atleast_1d(b.sets[0].attrs.get("preapply_tables", []))] if b.sets else []
    if len(tabs) != len(chain):
        tabs = [""] * len(chain)

    def real(p):
        return os.path.realpath(p) if p else ""

    for key, tab in zip(chain, tabs):
        if key == a.key and real(tab or getattr(b, "source", "")) == real(getattr(a, "source", "")):
            return True
    return False


def _name(term):
    """A term as the log names it: its key and, when read from a table, the table's file name."""
    import os

    return f"{term.key} ({os.path.basename(term.source)})" if getattr(term, "source", "") else term.key


def _say(target, spw, lead, pinned):
    """INFO, once per task call or run (groups() runs per chunk of rows; core/warnonce.py): the per-term
    log lines name each term's own choice, not that the chain pinned it (review 53e)."""
    from ..core import warnonce

    warnonce.info("alakazam.apply", "%s spw %d: one calibrator per time for the chain -- %s follow the "
                  "calibrator %s takes at each time (the term solved last; calibration/chainfield.py)",
                  target, int(spw), ", ".join(pinned), lead)


def compose_groups(compose, parts, spw_id, times, freqs, ant_names, target_name, target_radec, prefer_own,
                   log_lines, time_scan, bad_out):
    """:func:`.chain.compose` of each group's times with its terms, stitched back in time order."""
    n_t, n_a, n_c = len(times), len(ant_names), len(freqs)
    diag = sky = None
    bad = {}
    for idx, ts in parts:
        sub_bad = {} if bad_out is not None else None
        d, s = compose(ts, spw_id, np.asarray(times)[idx], freqs, ant_names, target_name, target_radec,
                       prefer_own, log_lines if idx is parts[0][0] else None,
                       None if time_scan is None else np.asarray(time_scan)[idx], sub_bad)
        if d is not None:
            if diag is None:
                diag = np.full((n_t, n_a, n_c, 2), np.nan + 0j)
            diag[idx] = d
        if s is not None:
            if sky is None:
                sky = np.full((n_t, n_a, n_c, 2, 2), np.nan + 0j)
            sky[idx] = np.broadcast_to(s, (len(idx), n_a, n_c, 2, 2))
        for key, b in (sub_bad or {}).items():
            # a term with flags per hand gives them per hand (n_t, n_ant, n_chan or 1, 2: chain.compose's
            # bad_out); a group where its hands agree gives one per sample: then per hand for both
            b = np.asarray(b)
            have = bad.get(key)
            if have is not None and have.ndim != b.ndim:
                if have.ndim == 3:
                    bad[key] = np.repeat(have[..., None], 2, axis=-1)
                else:
                    b = b[..., None]
            if key not in bad:
                bad[key] = np.ones((n_t, n_a, n_c) + b.shape[3:], bool)
            bad[key][idx] = np.broadcast_to(b, (len(idx), n_a, n_c) + bad[key].shape[3:])
    if bad_out is not None:
        bad_out.update(bad)
    return diag, sky
