"""What a solve would refuse when it starts, found before it does and reported with every other bad
parameter (akcal's parameter check, the YAML runner's preflight of a solve block).

``run_solve`` / ``flow._run_solve`` raise these again when they run (after the Begin line, one at a
time): the output table's path (a directory, a missing directory, read-only, not an alakazam table),
``gpu=True`` with a backend other than jax or without a GPU jax can use, and ``combine`` 'field' / 'spw'
with dask ``workers`` / ``scheduler``.  Keys are the YAML keys (``output``, ``gpu``, ``combine``); the
callers name them by their own parameter names.
"""

from __future__ import annotations

from .errors import AlakazamError


def _strip(msg: str, head: str) -> str:
    h, sep, rest = msg.partition(": ")
    return rest if sep and h == head else msg


def errors(output=None, solver="numba", gpu=False, combine="", workers=0, scheduler="") -> dict:
    """{YAML key: [message]} for these solve parameters (values as given; a bad type is left to the
    schema check)."""
    out = {}
    if isinstance(output, str) and output.strip():
        from .core import outputs
        try:
            outputs.check_output_file(output, "output")
        except AlakazamError as e:
            out["output"] = [_strip(str(e), "output")]
    if isinstance(solver, str) and gpu is not True:
        # a backend whose package is missing or broken: before anything runs, every block of a YAML file
        # (a later block's was found only after the earlier blocks had run, review 55b)
        from .solvers import BACKENDS, BackendUnavailableError, check_package
        if solver in BACKENDS:
            try:
                check_package(solver)
            except BackendUnavailableError as e:
                out["solver_backend"] = [_strip(str(e), "solver_backend")]
    if gpu is True and isinstance(solver, str):
        from .solvers import check_device
        try:
            check_device(solver, True)
        except AlakazamError as e:
            out["gpu"] = [_strip(str(e), "gpu")]
        except Exception as e:      # noqa: BLE001 -- an unknown backend is named by its own check
            if solver in ("numba", "ceres", "jax", "scipy"):
                out["gpu"] = [f"True: {type(e).__name__}: {e}"]
    items = combine if isinstance(combine, (list, tuple)) else [combine]
    joint = sorted({p.strip() for c in items if isinstance(c, str) for p in c.split(",")} & {"field", "spw"})
    distributed = (isinstance(workers, int) and not isinstance(workers, bool) and workers > 0) or \
        (isinstance(scheduler, str) and bool(scheduler.strip()))
    if joint and distributed:
        which = " / ".join(repr(j) for j in joint)
        out["combine"] = [f"{combine!r}: combine {which} cannot run on dask workers "
                          "(a distributed unit is one field and SPW); expected no combine 'field'/'spw', or "
                          "run without workers / scheduler"]
    return out


def self_preapply_errors(cfg) -> dict:
    """{'external_preapply.jones': [message]} when a solve pre-applies a key of its own output table that
    it also solves (caltable == gaintable, e.g. K0 pre-applied while solving K0): the new key would replace
    the pre-applied solutions by the residual left after them (the old K0 is lost, the new one is ~0)."""
    import os

    ep = getattr(cfg, "external_preapply", None)
    if ep is None or not isinstance(cfg.output, str) or getattr(cfg, "append", False):
        return {}
    out_real = os.path.realpath(os.path.expanduser(cfg.output))
    solved = {st.key.upper() for st in cfg.steps}
    msgs = []
    for i, (table, key) in enumerate(zip(ep.tables, ep.jones)):
        if not isinstance(table, str) or os.path.realpath(os.path.expanduser(table)) != out_real:
            continue
        real = str(key).strip().upper()
        if os.path.exists(out_real):
            try:
                from .io import solutions
                real = solutions.resolve_key(out_real, key)
            except AlakazamError:
                continue
        if real in solved:
            msgs.append(f"{key!r} (entry {i}) is pre-applied from {table}, the output table, and solved "
                        f"again as {real}: the new {real} would replace it by the residual left after "
                        "it; expected another output table (caltable / output) or another key")
    return {"external_preapply.jones": msgs} if msgs else {}


def solve_spws(cfg):
    """The SPW ids a solve block reads data of (its fields' scans, scan and spw selections, in every
    MS; the row selections are left out, so this may be more than the solve finds), or None when the
    MS cannot be read."""
    from .core import ms_io

    out = set()
    try:
        for ms in (cfg.ms if isinstance(cfg.ms, (list, tuple)) else [cfg.ms]):
            meta = ms_io.read_meta(ms)
            fields = set()
            for st in cfg.steps:
                fields |= set(ms_io.resolve_fields(meta, st.field or None))
            scans = ms_io.resolve_scans(meta, cfg.scan) if cfg.scan else None
            spw_sel = ms_io.resolve_spw(meta, cfg.spw)
            for sc in meta.scans:
                if sc.field_id in fields and (scans is None or sc.scan_number in scans):
                    out |= {int(meta.spws[d].spw_id) for d in sc.ddids if d in spw_sel}
    except (AlakazamError, RuntimeError, OSError, IndexError, KeyError):
        return None
    return out


def preapply_errors(cfg, known) -> dict:
    """{'external_preapply.<key>[i]' / 'external_preapply.spwmap': [message]} for a solve block's
    pre-applied terms whose table's contents are ``known``: {entry i: (name, SPW ids, field names)}
    (None: not known, that check skipped; the YAML preflight passes the tables as they are now or as
    an earlier block will write them).  The SPWs the block reads (:func:`solve_spws`, a subset of
    those the solve checks when it starts) must have solutions in each term, directly or through its
    spwmap (flow: calibration/spwmap.check_solve_terms), and a pinned solution_field must name a field
    with solutions (calibration/chain: 'solution_field ... has no solutions in this table')."""
    from .calibration.spwmap import as_dict

    ep = getattr(cfg, "external_preapply", None)
    if ep is None or not known:
        return {}
    out = {}

    def add(key, msg):
        if msg not in out.get(key, []):
            out.setdefault(key, []).append(msg)

    spws = None
    for i, (name, have_spws, fields) in sorted(known.items()):
        fs = ep.field_select[i] if i < len(ep.field_select) else "nearest_time"
        want = ep.solution_field[i] if i < len(ep.solution_field) else None
        if fields is not None and fs == "pinned" and want and not any(f in fields for f in want):
            add(f"external_preapply.solution_field[{i}]",
                f"{list(want)!r}: no solutions for these fields in {name}; fields with solutions: "
                f"{', '.join(sorted(fields)) or '(none)'}")
        if have_spws is None:
            continue
        spws = solve_spws(cfg) if spws is None else spws
        if not spws:
            continue
        given = list(ep.spwmap[i]) if i < len(ep.spwmap) else []
        smap = as_dict(given)
        for spw_id in sorted(spws):
            tspw = smap.get(spw_id, spw_id)
            if tspw in have_spws:
                continue
            have = ", ".join(map(str, sorted(have_spws))) or "none"
            if tspw != spw_id:
                add("external_preapply.spwmap", f"{given!r} (entry {i}) maps SPW {spw_id} to SPW {tspw}, "
                    f"which {name} has no solutions for; expected SPWs of the table: {have}")
            elif given:         # a spwmap too short to reach this SPW
                add("external_preapply.spwmap", f"{given!r} (entry {i}) does not reach SPW {spw_id} (an SPW "
                    f"beyond the end of the list keeps its own id), and {name} has no solutions for SPW "
                    f"{spw_id}; extend the list; the table has SPW {have}")
            else:
                add(f"external_preapply.jones[{i}]", f"{name} has no solutions for SPW {spw_id} (the solve "
                    f"reads SPW {', '.join(map(str, sorted(spws)))}; the table has SPW {have}); select spw, "
                    "or give spwmap (e.g. [0, 0]) to pre-apply another SPW's solutions")
    return out
