"""What an apply would refuse at run time, found before it starts and reported with every other bad
parameter (akapply's parameter check, the YAML runner's preflight of an apply block).

``run_apply`` checks these again when it runs (after the Begin line, one at a time, before anything is
written); here they are collected, each named by its parameter:

* ``field`` / ``scan`` / ``spw`` (YAML ``target_field`` / ``target_scans`` / ``spw``) that resolve in the
  MS but select together no data (e.g. a field and a scan of another field): named by the
  parameters set, from the MS's metadata (scans, their field and SPWs).  The row selections
  (timerange, uvrange, antenna, ...) are left to the run: they need the rows.
* a term without solutions for an SPW to correct: named ``spwmap`` when the SPW is mapped (the value,
  the mapped SPW and the table's SPWs), else ``jones[i]`` with the table's SPWs and the hint to select
  spw or give spwmap (before: "no solutions for SPW 1 in <the MS the table was solved on>; select
  spw=[0]", at run time);
* ``solutionfield[i]`` naming a field without solutions in the term's table (before: at run time);
* ``interp[i]`` (YAML ``time_interp[i]``) 'cubic' for a term with fewer than 4 solution times in an SPW
  to correct, its fields together (the run stopped at it after its Begin line and its flag backup);
* ``gaintable[i]`` (YAML ``tables[i]``) whose solutions do not fit the MS (:func:`.compat.fit_errors`):
  no frequency overlap with an SPW to correct, another feed basis, no antenna name in common (before:
  after the Begin line).

Tables that do not exist (yet) are skipped: :func:`alakazam.core.selcheck.table_errors` names them, and
in a YAML file an earlier block may write them.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import AlakazamError


def _table_index(table, key):
    """(spw ids, field names, sets) of ``key`` in ``table`` without reading the solutions (each set's
    ``attrs``, ``freq`` and ``ant_names``: what :func:`.compat.fit_errors` reads); None when the table
    or key cannot be read (reported elsewhere)."""
    from types import SimpleNamespace

    from ..io import solutions

    try:
        real = solutions.resolve_key(table, key)
        if solutions.is_casa_table(table):
            sets = solutions.read_term(table, real)
            return {int(s.attrs["spw"]) for s in sets}, {str(s.field_name) for s in sets}, sets
        import h5py

        from ..io.hdf5 import _decode_attr, _leaf_groups
        with h5py.File(table, "r") as f:
            groups = _leaf_groups(f[real])
            sets = []
            for g in groups:
                attrs = {k: _decode_attr(v) for k, v in g.attrs.items()}
                sets.append(SimpleNamespace(attrs=attrs, freq=g["freq"][()],
                                            ant_names=[str(a) for a in attrs.get("ant_names", [])],
                                            time=g["time"][()] if "time" in g else None))
            return ({int(s.attrs["spw"]) for s in sets}, {str(s.attrs["field_name"]) for s in sets}, sets)
    except (AlakazamError, OSError, KeyError, ValueError, TypeError):
        return None


def errors(cfg, table_ok=None, planned=None) -> dict:
    """{YAML key or 'key[i]': [message]} for apply config ``cfg`` (one MS or a list).  ``table_ok(path)``:
    whether a table may be read now (default: it exists).  ``planned``: {term index: (name, SPW ids,
    field names)} of terms whose table an earlier block of a YAML file writes (caltasks/yamlrun.py):
    ``name`` names the term in messages ('G0 of cal.h5 as solve[0] writes it'), SPWs and fields are
    those that block will write (None: not known, that check is skipped); nothing else is checked
    for them (no solutions to compare yet)."""
    from types import SimpleNamespace

    from ..core import ms_io
    from . import compat, spwmap as _spwmap

    table_ok = table_ok or (lambda p: os.path.exists(p))
    planned = planned or {}
    out = {}

    def add(key, msg):
        if msg not in out.get(key, []):
            out.setdefault(key, []).append(msg)

    index, names = {}, {}
    for i, t in enumerate(cfg.terms):
        names[i] = f"{t.key} of {t.table}"
        if i in planned:
            names[i], spws, fields = planned[i]
            index[i] = (None if spws is None else set(spws), None if fields is None else set(fields), None)
        elif isinstance(t.table, str) and table_ok(os.path.expanduser(t.table)):
            index[i] = _table_index(os.path.expanduser(t.table), t.key)
        if index.get(i) and index[i][1] is not None and t.field_select == "pinned" and t.solution_field:
            fields = index[i][1]
            if not any(f in fields for f in t.solution_field):
                add(f"solution_field[{i}]", f"{t.solution_field!r}: no solutions for these fields in "
                    f"{names[i]}; fields with solutions: {', '.join(sorted(fields))}")
    for ms in (cfg.ms if isinstance(cfg.ms, (list, tuple)) else [cfg.ms]):
        try:
            meta = ms_io.read_meta(ms)
            fields = ms_io.resolve_fields(meta, cfg.target_field)
            scans = ms_io.resolve_scans(meta, cfg.target_scans)
            spw_sel = ms_io.resolve_spw(meta, cfg.spw)
        except (AlakazamError, RuntimeError, OSError):      # (named by the selection check)
            continue
        if not meta.scans:                                  # no rows at all: named by the selection check
            continue
        ddids = set()
        for sc in meta.scans:
            if sc.field_id in fields and (scans is None or sc.scan_number in scans):
                ddids |= set(sc.ddids) & set(spw_sel)
        if not ddids:
            given = {k: v for k, v in (("target_field", cfg.target_field), ("target_scans", cfg.target_scans),
                                       ("spw", cfg.spw)) if v not in (None, "", [])}
            word = {"target_field": "field", "target_scans": "scan", "spw": "spw"}
            add("/".join(given) or "target_field",
                "the selection " + ", ".join(f"{word[k]}={v!r}" for k, v in given.items())
                + f" has no data in {ms}; expected a field, scan and SPW observed together (listobs: "
                f"'alakazam info {ms}')")
            continue
        for i, t in enumerate(cfg.terms):
            if not index.get(i):
                continue
            have = index[i][0]
            smap = _spwmap.as_dict(getattr(t, "spwmap", []))
            # the table's band, feeds and antennas against the MS's (compat.fit_errors; before: at run time)
            if index[i][2] is not None:
                term = SimpleNamespace(key=t.key, sets=index[i][2], spwmap=smap)
                for msg in compat.fit_errors(ms, meta, term, sorted(ddids), getattr(cfg, "spwmap", None))[0]:
                    add(f"tables[{i}]", msg)
            if have is None:
                continue
            if t.time_interp == "cubic" and index[i][2] is not None:
                # 'cubic' needs 4 solution times (CASA's applycal aborts with fewer): where even every
                # field's together have fewer, the run would stop at it (after its Begin line)
                for spw_id in sorted({meta.spws[d].spw_id for d in ddids}):
                    tspw = smap.get(spw_id, spw_id)
                    times = set()
                    for x in index[i][2]:
                        if int(x.attrs.get("spw", -1)) == tspw and getattr(x, "time", None) is not None:
                            times |= {float(v) for v in np.atleast_1d(x.time)}
                    if tspw in have and len(times) < 4:
                        add(f"time_interp[{i}]", f"'cubic' needs at least 4 solution times; {names[i]} has "
                            f"{len(times)} for SPW {tspw} (CASA's applycal aborts with fewer); expected "
                            "'linear' or 'nearest'")
            for spw_id in sorted({meta.spws[d].spw_id for d in ddids}):
                tspw = smap.get(spw_id, spw_id)
                if tspw in have:
                    continue
                if tspw != spw_id:
                    add("spwmap", f"{getattr(t, 'spwmap', [])!r} maps SPW {spw_id} to SPW {tspw}, which "
                        f"{names[i]} has no solutions for; expected SPWs of the table: "
                        f"{', '.join(map(str, sorted(have)))}")
                else:
                    add(f"jones[{i}]", f"{names[i]} has no solutions for SPW {spw_id} (the table "
                        f"has SPW {', '.join(map(str, sorted(have)))}); select spw, or give spwmap to "
                        "correct it with another SPW's solutions")
    return out


def errors_without(d, bad, table_ok=None) -> dict:
    """:func:`errors` of the apply block ``d`` (YAML keys) built without the keys ``bad`` (left at their
    defaults): a block with a bad parameter has its tables checked against the MS too, all reported
    together (the YAML preflight; akapply does the same).  {} when it cannot be built without them."""
    from ..config import apply_config_from_dict

    rest = {k: v for k, v in d.items() if k not in bad}
    if not {"ms", "tables", "jones"} <= set(rest):
        return {}
    try:
        cfg = apply_config_from_dict(rest)
    except (AlakazamError, TypeError, ValueError):
        return {}
    out = {k: v for k, v in errors(cfg, table_ok).items() if k.split("[", 1)[0] not in bad}
    return {k: v for k, v in ((k, judged_without(v, bad)) for k, v in out.items()) if v}


#: the messages of :func:`errors` that depend on which table SPW serves each data SPW (the spwmap): a
#: data SPW without solutions of its own, and a table SPW's band against the data SPW's (a mapped SPW's
#: band may differ on purpose)
_MAPPED = ("has no solutions for SPW", "no overlap (wrong table or MS?)")


def judged_without(msgs, bad):
    """The messages of :func:`errors` that still hold with the parameters ``bad`` (their YAML / akapply
    names) dropped from the config: which table SPW serves each data SPW is a bad spwmap's to say, so
    the checks that depend on it (:data:`_MAPPED`) are dropped -- they reported what the user's spwmap
    may map away (a review: spwmap=[-1, 0, 0, 0] was followed by "G0 has no solutions for SPW 3 ...
    give spwmap"); the others (a table's feeds against the MS's) are kept (a second review: dropping
    every message naming an SPW hid a feed-basis mismatch no spwmap mends)."""
    if "spwmap" in bad:
        return [m for m in msgs if not any(k in m for k in _MAPPED)]
    return list(msgs)
