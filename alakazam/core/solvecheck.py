"""The selections of a solve block checked against its Measurement Set, all at once.

``solve_config_from_dict`` (akcal's parameters and a YAML ``solve`` block) calls :func:`ms_errors`, so a
field, spw, scan, antenna, timerange, uvrange, intent, observation or ref_ant that does not exist in the
MS is reported with every other bad parameter, before anything runs (as akflag does): the YAML runner's
preflight sees them before any flag block writes FLAG, and akcal names all of them, not only the first
one the engine happens to resolve.  The engine resolves them again when it runs (``flow._validate``).
A ``plots`` directory that cannot be made is reported too (before: after the solve had written the table).
"""

from __future__ import annotations

import os

from ..errors import AlakazamError, ParameterError

_SELECT = ("antenna", "uvrange", "timerange", "intent", "observation")


def _strip(msg: str, *heads) -> str:
    """The message without a leading 'key: ' that names the parameter again."""
    head, sep, rest = msg.partition(": ")
    return rest if sep and (head in heads or head == "ref_ant/refant") else msg


def _field_items(f):
    """Every field selection string of a block's ``field`` (string, list, or list of lists)."""
    if f is None or f == "":
        return []
    if isinstance(f, (list, tuple)):
        return [x for v in f for x in _field_items(v)]
    return [s.strip() for s in str(f).split(",") if s.strip()]


def ms_errors(d: dict) -> dict:
    """{yaml key: [message]} for the selections of solve block ``d`` (YAML keys) that do not resolve
    against ``d['ms']``; {} when it is not a Measurement Set here (the engine then says so)."""
    from . import ms_io, rowselect

    out = {}
    if isinstance(d.get("plots"), str) and d["plots"]:       # (checked here: the plots follow the solve)
        from ..plots import outdir_errors
        for msg in outdir_errors(d["plots"]).get("outdir", []):
            out.setdefault("plots", []).append(msg)
    ms = d.get("ms")
    if not isinstance(ms, str) or not os.path.isdir(os.path.expanduser(ms)):
        return out
    try:
        ms_io.check_ms(os.path.expanduser(ms))
    except AlakazamError:                 # not an MS: the engine says so when it opens it
        return out
    try:
        meta = ms_io.read_meta(os.path.expanduser(ms))
    except (AlakazamError, RuntimeError) as e:
        return {"ms": [str(e)]}

    def attempt(key, fn, *a):
        try:
            fn(*a)
        except ParameterError as e:
            for msgs in e.errors.values():
                for m in msgs:
                    out.setdefault(key, []).append(_strip(m, key))
        except AlakazamError as e:
            m = _strip(str(e), key)
            if m not in out.get(key, []):
                out.setdefault(key, []).append(m)

    for item in dict.fromkeys(_field_items(d.get("field"))):
        attempt("field", ms_io.resolve_fields, meta, item)
    if str(d.get("spw", "") or "").strip():
        attempt("spw", ms_io.resolve_spw, meta, str(d["spw"]))
    if str(d.get("scan", "") or "").strip():
        attempt("scan", ms_io.resolve_scans, meta, str(d["scan"]))
    for key in _SELECT:
        v = d.get(key)
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip():
            attempt(key, rowselect.build, meta, {key: str(v)})
    ref = d.get("ref_ant", 0)
    refs = ref if isinstance(ref, (list, tuple)) else [ref]
    if refs and all(isinstance(r, (int, str)) and not isinstance(r, bool) for r in refs):
        attempt("ref_ant", ms_io.resolve_antenna, meta, list(ref) if isinstance(ref, (list, tuple)) else ref)
    return out
