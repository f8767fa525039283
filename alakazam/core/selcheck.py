"""The selections of a solve or apply block checked against its Measurement Set, all at once.

akcal's and akapply's parameter check (``build_config``) and the YAML runner's preflight of ``solve``
and ``apply`` blocks call :func:`ms_errors` (through :func:`merge`), so a field, spw, scan, antenna,
timerange, uvrange, intent, observation, ref_ant (or a solve's data / model column, an apply's
correlation) that does not exist in the MS is reported with every other bad parameter, before anything
runs (as akflag does): the YAML runner's preflight sees them before any flag block writes FLAG, and the
tasks name all of them, not only the first one the engine happens to resolve.  The engine resolves them
again when it runs (``flow._validate``, ``calibration/apply.py``).  (Not in ``solve_config_from_dict``
itself: the engine called directly reads the MS's metadata once per solve, tests/test_ms_handle.py; a
task call or a YAML block reads it once more, here.)  A ``plots`` directory that cannot be made is
reported too (before: after the solve had written the table).
"""

from __future__ import annotations

import os

from ..errors import AlakazamError, ParameterError

_SELECT = ("antenna", "uvrange", "timerange", "intent", "observation")
#: YAML key -> what it selects, per block kind
SOLVE_KEYS = {"field": "field", "spw": "spw", "scan": "scan", "ref_ant": "ref_ant", "data_col": "column",
              "model_col": "column", **{k: k for k in _SELECT}}
APPLY_KEYS = {"target_field": "field", "spw": "spw", "target_scans": "scan",     # (not data_col: an
              "correlation": "correlation",             # earlier apply block of a YAML file may write it)
              **{k: k for k in _SELECT}}


def _strip(msg: str, *heads) -> str:
    """The message without a leading 'key: ' that names the parameter again."""
    head, sep, rest = msg.partition(": ")
    return rest if sep and (head in heads or head == "ref_ant/refant") else msg


def _field_items(f, in_list=False):
    """Every field selection string of a block's ``field`` (string, list, or list of lists), as the
    engine resolves them (:func:`alakazam.config._field_list`): a string is split on commas, an entry of
    a list is one field (not split)."""
    if f is None or f == "":
        return []
    if isinstance(f, (list, tuple)):
        return [x for v in f for x in _field_items(v, True)]
    return [str(f).strip()] if in_list else [s.strip() for s in str(f).split(",") if s.strip()]


_LIST_HINT = ("; an entry of a field list is one field: give one selection per step as a list of lists, "
              "e.g. [[3C286], [3C286, 3C147]], or one comma-separated string for every step")


def ms_errors(d: dict, keys=None) -> dict:
    """{yaml key: [message]} for the selections of block ``d`` (YAML keys; ``keys``: :data:`SOLVE_KEYS`
    (default) or :data:`APPLY_KEYS`) that do not resolve against ``d['ms']``; {} when it is not a
    Measurement Set here (the engine then says so)."""
    from . import ms_io, rowselect

    out = {}
    if isinstance(d.get("plots"), str) and d["plots"]:       # (checked here: the plots follow the solve)
        from ..plots import outdir_errors
        for msg in outdir_errors(d["plots"]).get("outdir", []):
            out.setdefault("plots", []).append(msg)
        if "plots" not in out and isinstance(d.get("output"), str) and d["output"]:
            # pages this block's keys would replace that another table drew (akplot replaces only its
            # own pages of the same table): refused before the solve, not after it
            from ..plots import foreign_message, foreign_pages, pages_in
            types = {str(j).strip().upper() for j in (d.get("jones") or []) if isinstance(j, str)}
            found = foreign_pages(pages_in(d["plots"], types or None), d["output"])
            if found:
                out["plots"] = [foreign_message(d["plots"], d["output"], found)]
    ms = d.get("ms")
    if isinstance(ms, (list, tuple)):           # several MSs (multims.py): each selection in every MS
        paths = [p for p in dict.fromkeys(ms) if isinstance(p, str)]
        for p in paths:
            for key, msgs in ms_errors(dict(d, ms=p, plots=None), keys).items():
                for m in msgs:
                    m = f"{m} (in {p})" if len(paths) > 1 and p not in m else m
                    if m not in out.get(key, []):
                        out.setdefault(key, []).append(m)
        return out
    if not isinstance(ms, str) or not os.path.isdir(os.path.expanduser(ms)):
        return out
    ms = os.path.expanduser(ms)
    try:
        # (check_ms first puts back the table files a killed writer's snapshot holds when the MS does not
        # open -- core/columns.recover_killed -- so the MS is opened here only once it opens; before,
        # every check against the MS was skipped while a snapshot was left, and a YAML with a typo in
        # its last block wrote FLAG and a solution table before it stopped)
        ms_io.check_ms(ms)
    except AlakazamError:                 # not an MS (or one that stays damaged): the engine says so
        return out
    try:
        meta = ms_io.read_meta(ms)
    except (AlakazamError, RuntimeError):            # (damaged: the engine says so, or repairs it)
        return out
    try:
        ms_io.check_antenna_names(meta)
    except AlakazamError as e:
        out.setdefault("ms", []).append(_strip(str(e), "vis/ms"))
    if not meta.scans:                    # (before: "refant: 'C00' has no data; antennas with data: ")
        out.setdefault("ms", []).append(f"{ms!r} has no rows in its main table (no data to solve or "
                                        "correct); expected a Measurement Set with data")
        return out

    def attempt(key, fn, *a):
        kind = (keys or SOLVE_KEYS)[key]
        try:
            fn(*a)
        except ParameterError as e:
            for msgs in e.errors.values():
                for m in msgs:
                    out.setdefault(key, []).append(_strip(m, key, kind))
        except AlakazamError as e:
            m = _strip(str(e), key, kind)
            if m not in out.get(key, []):
                out.setdefault(key, []).append(m)

    for key, kind in (keys or SOLVE_KEYS).items():
        v = d.get(key)
        if kind == "field":
            items = _field_items(v)
            # each item is resolved alone, so the message's '(item 0)' is made the item's place in the
            # selection (a string's comma-separated items, a list's entries; none for a list of lists)
            flat = not (isinstance(v, (list, tuple)) and any(isinstance(x, (list, tuple)) for x in v))
            for item in dict.fromkeys(items):
                n0 = len(out.get(key, []))
                attempt(key, ms_io.resolve_fields, meta, [item] if "," in item else item)
                place = f"(item {items.index(item)}) " if flat else ""
                out.get(key, [])[n0:] = [m.replace("(item 0) ", place, 1)
                                         for m in out.get(key, [])[n0:]]
                if "," in item and out.get(key) and not out[key][-1].endswith(_LIST_HINT):
                    out[key][-1] += _LIST_HINT
        elif kind == "ref_ant":
            from ..config import parse_ref_ant

            v = parse_ref_ant(v)            # 'C05,C09' as a list, as the run reads it
            if v is None:           # not given: the run takes ANTENNA 0 or the first antenna with data
                continue
            refs = v if isinstance(v, (list, tuple)) else [v]
            if refs and all(isinstance(r, (int, str)) and not isinstance(r, bool) for r in refs):
                ref = list(refs) if isinstance(v, (list, tuple)) else refs[0]
                attempt(key, lambda m, r: ms_io.resolve_antenna(m, r, warn=False), meta, ref)  # run warns
        elif kind == "column":
            default = "MODEL_DATA" if key == "model_col" else "DATA"
            if key == "model_col" and d.get("smodel"):        # (smodel: no model column is read)
                continue
            attempt(key, ms_io.check_columns, ms, [v if isinstance(v, str) and v else default])
        elif not isinstance(v, (str, int)) or isinstance(v, bool) or not str(v).strip():
            continue
        elif kind == "correlation":
            attempt(key, _correlations, meta, str(v), d.get("spw"))
        elif kind == "spw":
            attempt(key, ms_io.resolve_spw, meta, str(v))
        elif kind == "scan":
            attempt(key, ms_io.resolve_scans, meta, str(v))
        else:
            attempt(key, rowselect.build, meta, {kind: str(v)})
    if not any(k in out for k in _SELECT):
        bad = [k for k in (keys or SOLVE_KEYS) if k in out]
        for key, msgs in _together_errors(meta, d, keys or SOLVE_KEYS, rows_only=bool(bad)).items():
            out.setdefault(key, []).extend(msgs)
    return out


def _correlations(meta, text, spw):
    """An apply's ``correlation`` against the correlations of the SPWs it corrects (all SPWs when its
    spw does not resolve; before: found by the apply after the Begin line, e.g. 'RR' on linear feeds)."""
    from . import ms_io
    from .corrselect import parse_correlation

    try:
        ddids = ms_io.resolve_spw(meta, spw if isinstance(spw, (str, int)) else None)
    except (AlakazamError, TypeError, ValueError):
        ddids = meta.spws
    for corr_types in dict.fromkeys(tuple(meta.spws[d].corr_types) for d in ddids):
        parse_correlation(text, list(corr_types))


def _groups(f):
    """A solve block's field selection per step group: a string -> [it]; a list -> its entries."""
    if f is None or f == "" or f == []:
        return [""]
    return list(f) if isinstance(f, (list, tuple)) else [f]


def _together_errors(meta, d, keys, rows_only=False) -> dict:
    """Selections that resolve one by one but select no data together (a field and a scan of another
    field, a timerange outside the observation, an antenna / uvrange / timerange combination without
    rows): {'field/scan/...': [message]}, named by the parameters set (before: found by the engine
    after the Begin line, one at a time).  The row selections are evaluated on the rows (as the engine
    does when it starts); field / scan / spw on the metadata's scans (``rows_only``: not, when one of
    them is bad itself).  Apply blocks get the row check only (their field / scan combination:
    calibration/apply_precheck.py)."""
    from . import ms_io, rowselect

    field_key = "field" if "field" in keys else "target_field"
    scan_key = "scan" if "scan" in keys else "target_scans"
    rows = {k: str(d[k]) for k in _SELECT if k in keys and isinstance(d.get(k), (str, int))
            and not isinstance(d.get(k), bool) and str(d[k]).strip()}
    try:
        rowsel = rowselect.build(meta, rows, per_channel=keys is SOLVE_KEYS)
        meta2 = rowselect.restrict_meta(meta, rowsel)
    except AlakazamError as e:
        msg = str(e).replace("selection: ", "", 1)
        return {"/".join(rows) or "antenna": [f"{msg}; expected a selection with data"]}
    if keys is not SOLVE_KEYS or rows_only:
        return {}
    spw, scan = d.get("spw"), d.get(scan_key)
    out = {}
    for group in _groups(d.get(field_key)):
        try:
            fields = ms_io.resolve_fields(meta2, group if group not in ("", None, []) else None)
            scans = ms_io.resolve_scans(meta2, scan if isinstance(scan, (str, int)) else None)
            spws = ms_io.resolve_spw(meta2, spw if isinstance(spw, (str, int)) else None)
        except (AlakazamError, TypeError, ValueError):
            continue                # (a field that exists has no row left: named by its own check below)
        if any(sc.field_id in fields and (scans is None or sc.scan_number in scans) and sc.ddids & set(spws)
               for sc in meta2.scans):
            continue
        given = {k: d.get(k) for k in (field_key, scan_key, "spw") if d.get(k) not in (None, "", [])}
        given[field_key] = group
        given.update(rows)
        key = "/".join(given)
        out.setdefault(key, []).append(
            "the selection " + ", ".join(f"{k}={v!r}" for k, v in given.items()) + f" has no data in "
            f"{meta.path}; expected fields, scans and SPWs observed together (listobs: 'alakazam info "
            f"{meta.path}')")
    return out


def merge(errors: dict, d: dict, keys=None, where="", names=None) -> dict:
    """``errors`` ({path: [message]}) with :func:`ms_errors` of block ``d`` added under ``where.<name>``
    (``names``: YAML key -> task parameter), except for parameters already named there."""
    have = {k.split("[", 1)[0] for k in errors}
    for key, msgs in ms_errors(d, keys).items():
        shown = (names or {}).get(key, key)
        path = f"{where}.{shown}" if where else shown
        if path not in have:
            errors.setdefault(path, []).extend(msgs)
    return errors


def not_a_table(path):
    """Why an existing ``path`` is no solution table -- a plain file that is not HDF5 (a CASA caltable is
    a directory) -- or None (the one message akcal, akapply, akflag and the YAML preflight give)."""
    import h5py

    if os.path.isfile(path) and not h5py.is_hdf5(path):
        return f"{path!r} is not a solution table (neither an HDF5 file nor a CASA caltable directory)"
    return None


def table_errors(tables, keys, where="", table_name="gaintable", key_name="jones", planned=None) -> dict:
    """{'<where>.<table_name>[i]' / '<where>.<key_name>[i]': [message]}: a solution table that does not
    exist, a file that is neither HDF5 nor a CASA caltable, a key that is not in its table (HDF5 or CASA
    caltable; one table may serve every key).  ``planned``: {real path:
    (block, {key: fields})} of the tables earlier blocks of a YAML file write (caltasks/yamlrun.py): a
    key of such a table is looked up among the keys it will hold (the block's ``(block, None)``: not
    checked)."""
    from ..io import hdf5, solutions

    tables = [tables] if isinstance(tables, str) else list(tables or [])
    keys = [keys] if isinstance(keys, str) else list(keys or [])
    if len(tables) == 1:
        tables = tables * len(keys)
    pre = f"{where}." if where else ""
    errors = {}
    for i, (table, key) in enumerate(zip(tables, keys)):
        if not isinstance(table, str) or not isinstance(key, str):
            continue
        table = os.path.expanduser(table)
        if planned and os.path.realpath(table) in planned:
            block, index = planned[os.path.realpath(table)]
            try:
                if index is not None:
                    hdf5.pick_key(index, key, f"{table} as {block} writes it")
            except AlakazamError as e:
                errors[f"{pre}{key_name}[{i}]"] = [str(e)]
            continue
        if not os.path.exists(table):
            if table not in tables[:i]:
                errors[f"{pre}{table_name}[{i}]"] = [f"{table!r} does not exist"]
            continue
        if not_a_table(table):
            if table not in tables[:i]:
                errors[f"{pre}{table_name}[{i}]"] = [not_a_table(table)]
            continue
        try:
            solutions.resolve_key(table, key)
        except AlakazamError as e:
            errors[f"{pre}{key_name}[{i}]"] = [str(e)]
    return errors


def _term_identity(table, key):
    """(real path of ``table``, the table's key for ``key``) as the apply resolves it
    (:func:`alakazam.io.solutions.resolve_key`: 'g0' is G0, a bare 'G' the only G key, any key of a CASA
    caltable its one term); a table that cannot be read (yet: a YAML block's earlier block writes it)
    compares by the key as given, upper-cased."""
    path = os.path.realpath(os.path.expanduser(str(table)))
    real = str(key).strip().upper()
    if os.path.exists(path):
        from ..io import solutions

        try:
            real = solutions.resolve_key(path, key)
        except Exception:       # (not found / ambiguous / not a table: said by the other checks)
            pass
    return path, real


def duplicate_terms(tables, keys) -> list:
    """``[(i, j, real key)]``: entry ``j`` is the same term as the earlier entry ``i`` -- the same table
    file (after '~', relative paths and links) and the same key once resolved as the apply resolves it.
    A term listed twice was applied twice without a word (G0 twice: amplitudes corrected by G0^2).  One
    table for every key (``tables`` of length 1) is broadcast; lists of other lengths are compared
    pairwise as far as they go (their lengths are refused elsewhere).  Different tables with the same
    key are different terms."""
    tables = [tables] if isinstance(tables, str) else list(tables or [])
    keys = [keys] if isinstance(keys, str) else list(keys or [])
    if len(tables) == 1:
        tables = tables * len(keys)
    seen, out = {}, []
    for j, (table, key) in enumerate(zip(tables, keys)):
        if not isinstance(table, str) or not isinstance(key, str) or not table or not key.strip():
            continue
        ident = _term_identity(table, key)
        if ident in seen:
            out.append((seen[ident], j, ident[1]))
        else:
            seen[ident] = j
    return out


def duplicate_message(tables, keys, i, j, real) -> str:
    """The error for :func:`duplicate_terms`' entry ``(i, j, real)``."""
    tables = [tables] if isinstance(tables, str) else list(tables)
    ti, tj = (tables[k] if len(tables) > k else tables[0] for k in (i, j))
    given = f"{keys[i]!r}" if keys[i] == keys[j] else f"{keys[i]!r} and {keys[j]!r}"
    where = f"{ti!r}" if ti == tj else f"{ti!r} (= {tj!r})"
    return (f"entries {i} and {j} ({given}) are the same term, {real} of {where}: it would be applied "
            "twice; list each (table, key) once")


def check_no_duplicates(tables, keys, param):
    """ParameterError naming ``param`` when a (table, key) is listed twice: the engine's own check
    (``run_apply``, a solve's external pre-apply), for a config built without the config builders, or a
    YAML table an earlier block wrote, whose keys could not be resolved at the preflight."""
    errors = [duplicate_message(tables, keys, i, j, real) for i, j, real in duplicate_terms(tables, keys)]
    if errors:
        raise ParameterError({param: errors})
