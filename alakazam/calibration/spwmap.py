"""CASA ``spwmap`` for apply and for a solve's gaintable pre-apply (akcal ``spwmap``, YAML
``external_preapply.spwmap``, CASA gaincal's): correct the data of SPW i with a table's solutions of SPW
``spwmap[i]``.  In a solve the mapping is made where the pre-apply tables of a DATA_DESC_ID are built
(:func:`alakazam.calibration.chain.preapply_tables`), so every member of a ``combine='spw'`` solve
uses its own mapped SPW; :func:`check_solve_terms` refuses a missing SPW before anything is read.

Conventions (pinned by tests/test_apply_params.py):

* ``spwmap`` is CASA's: one list of SPW ids for every table (``[0, 0]``: SPW 0's solutions for SPWs 0
  and 1), or one list per gaintable entry (``[[0, 0], []]``: the first term mapped, the second not).
  ``[]`` = no mapping; a data SPW beyond the end of a list keeps its own id (CASA).
* Only the mapped SPW's solutions are used for SPW i (the table's own SPW-i solutions, if any, are
  not).
* Frequencies: a frequency-independent solution (one bin) is broadcast and a delay (K, KC) is turned
  into phases at the *data's* channel frequencies, as for an unmapped SPW.  A multi-bin solution
  (bandpass) whose band overlaps the data's band is interpolated in frequency as usual; when the bands
  do not overlap (the usual case of spwmap) its bins are shifted by the difference of the two band
  centres, i.e. matched by position in the band (the bin at the table band's centre serves the data
  band's centre) -- a warning says so (CASA's applycal takes the nearest frequency: the edge bin's
  value for every channel).
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from ..errors import AlakazamError

log = logging.getLogger("alakazam.apply")


def parse_spwmap(value, n_terms, where="spwmap"):
    """CASA spwmap -> one list of ints per term (``[]`` = none).  Errors name ``where``.  numpy arrays
    and numpy integers are taken as the lists and ints they hold."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        value = [x.tolist() if isinstance(x, (np.ndarray, np.integer)) else x for x in value]
        value = [[y.tolist() if isinstance(y, np.integer) else y for y in x] if isinstance(x, (list, tuple))
                 else x for x in value]
    if value is None or (isinstance(value, (str, list, tuple)) and len(value) == 0):
        return [[] for _ in range(n_terms)]
    if not isinstance(value, (list, tuple)):
        raise AlakazamError(f"{where}: {value!r} is not a list of SPW ids; expected e.g. [0, 0] (one list "
                            f"for every table) or [[0, 0], []] (one list per table)")
    nested = [isinstance(x, (list, tuple)) for x in value]
    if any(nested) and not all(nested):
        raise AlakazamError(f"{where}: {value!r} mixes lists and numbers; expected [0, 0] or [[0, 0], []]")
    lists = [list(x) for x in value] if all(nested) else [list(value)] * n_terms
    if len(lists) != n_terms:
        raise AlakazamError(f"{where}: has {len(lists)} lists but there are {n_terms} terms; give one list "
                            "per table or one list for every table")
    for lst in lists:
        for x in lst:
            if isinstance(x, bool) or not isinstance(x, int) or x < 0:
                raise AlakazamError(f"{where}: {value!r}: {x!r} is not an SPW id (an integer >= 0)")
    return lists


def as_dict(lst):
    """[0, 0, 2] -> {1: 0} (identity entries dropped); [] -> {}."""
    return {i: int(s) for i, s in enumerate(lst) if int(s) != i}


def table_spw(term, spw_id):
    """The table SPW whose solutions serve data SPW ``spw_id``."""
    m = getattr(term, "spwmap", None) or {}
    return int(m.get(int(spw_id), int(spw_id)))


def for_spw(terms, spw_id, data_freqs, quiet=False):
    """``terms`` with each mapped term's solutions of SPW ``spwmap[spw_id]`` relabelled as SPW
    ``spw_id`` (and shifted in frequency when the bands do not overlap: module doc).  Unmapped terms
    are returned as they are.  Each mapping is logged unless ``quiet`` (a solve maps in every block of
    times and logs once, :func:`check_solve_terms`)."""
    out = []
    d = np.asarray(data_freqs, float)
    d_lo, d_hi = float(d.min()), float(d.max())
    for term in terms:
        tspw = table_spw(term, spw_id)
        if tspw == int(spw_id):
            out.append(term)
            continue
        src = [s for s in term.sets if int(s.attrs.get("spw", -1)) == tspw]
        if not src:
            have = sorted({int(s.attrs.get("spw", -1)) for s in term.sets})
            raise AlakazamError(f"spwmap: {term.key} has no solutions for SPW {tspw} (mapped from SPW "
                                f"{spw_id}); the table has SPW {', '.join(map(str, have))}")
        sets = []
        shifted = False
        for s in src:
            s2 = copy.copy(s)
            s2.attrs = dict(s.attrs)
            s2.attrs["spw"] = int(spw_id)
            f = np.asarray(s.freq, float)
            if f.size > 1 and float(f.min()) > 0 and (f.max() < d_lo or f.min() > d_hi):
                s2.freq = f + (0.5 * (d_lo + d_hi) - 0.5 * (float(f.min()) + float(f.max())))
                shifted = True
            sets.append(s2)
        if not quiet:
            log.info("spwmap: %s: SPW %d solutions applied to SPW %d%s", term.key, tspw, int(spw_id),
                     " (bins matched by position in the band: the bands do not overlap)" if shifted else "")
        if shifted:     # a CASA difference that changes the values (a review: up to 46% apart)
            from ..core import warnonce
            warnonce.warning("alakazam.apply", "spwmap: %s: SPW %d's frequency bins serve SPW %d, whose band "
                             "they do not cover: matched by position in the band (the bin at the table "
                             "band's centre serves the data band's centre). CASA's applycal takes the "
                             "nearest frequency instead -- the table band's edge bin for every channel of "
                             "SPW %d; a bandpass of one SPW rarely describes another's", term.key, tspw,
                             int(spw_id), int(spw_id))
        t2 = copy.copy(term)
        t2.sets = sets + [s for s in term.sets if int(s.attrs.get("spw", -1)) not in (tspw, int(spw_id))]
        t2.spwmap = None                       # mapped: its SPW-``spw_id`` solutions are the mapped ones
        t2.__dict__.pop("_spw_mapped", None)   # (map_prior's memo belongs to the original term)
        out.append(t2)
    return out


def check_solve_terms(terms, meta, spw_sel, lists=None):
    """Before a solve: every gaintable term has solutions for the table SPW (its own, or the one
    ``spwmap`` maps it to) of every selected DATA_DESC_ID; one error naming every missing pair.
    ``lists``: the spwmap list given for each term (to say when an SPW lies beyond its end)."""
    problems = []
    for i, term in enumerate(terms):
        given = list(lists[i]) if lists is not None and i < len(lists) else []
        have = sorted({int(s.attrs.get("spw", -1)) for s in term.sets})
        for ddid in sorted(spw_sel):
            spw_id = int(meta.spws[ddid].spw_id)
            tspw = table_spw(term, spw_id)
            if tspw in have:
                if tspw != spw_id:
                    log.info("spwmap: %s: SPW %d solutions pre-applied to SPW %d", term.key, tspw, spw_id)
                continue
            if tspw != spw_id:
                via = f" (spwmap maps SPW {spw_id} to it)"
            elif given:
                via = (f" (its spwmap does not reach SPW {spw_id}: an SPW beyond the end of the list keeps "
                       f"its own id; extend the list)")
            else:
                via = ""
            problems.append(f"{term.key} has no solutions for SPW {tspw}{via}; its table has SPW "
                            f"{', '.join(map(str, have))}")
    if problems:
        hint = ("" if any("spwmap" in p for p in problems)
                else "; give spwmap (e.g. [0, 0]) to pre-apply another SPW's solutions, or select spw")
        raise AlakazamError("gaintable: " + "; ".join(dict.fromkeys(problems)) + hint)


def map_prior(prior, meta, ddid):
    """A solve's pre-apply terms for the data of DATA_DESC_ID ``ddid``: each term with a ``spwmap``
    relabelled by :func:`for_spw` (quietly), the same objects for the same (term, SPW) every time
    (memoised on the term), so the tables kept per term identity (calibration/preapply_cache.py) stay
    valid; ``prior`` itself when no term has a spwmap.  The one place a solve maps SPWs (used by
    :func:`alakazam.calibration.chain.preapply_tables` and :func:`.preapply_cache.block`; a mapped
    term has no spwmap, so mapping twice is mapping once)."""
    if not any(getattr(t, "spwmap", None) for t in prior):
        return prior
    spw = meta.spws[ddid]
    freqs = np.asarray(spw.freqs, float)
    out = []
    for t in prior:
        if not getattr(t, "spwmap", None):
            out.append(t)
            continue
        memo = t.__dict__.setdefault("_spw_mapped", {})
        k = (int(spw.spw_id), freqs.tobytes())
        if k not in memo:
            memo[k] = for_spw([t], spw.spw_id, freqs, quiet=True)[0]
        out.append(memo[k])
    return out
