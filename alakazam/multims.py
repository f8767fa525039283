"""Several Measurement Sets processed as one job (MeerKAT / uGMRT pipelines split per SPW or observation).

Convention (pinned by tests/test_multims.py)
--------------------------------------------
* ``ms: [a.ms, b.ms]`` on a solve block (akcal ``vis=['a.ms', 'b.ms']``): the block's chain is solved on
  each MS in turn (each MS's later steps pre-apply that MS's earlier steps, as in a run on that MS
  alone) and ONE table is written: each key holds the solutions of every (field, SPW, scan group) from
  whichever MS holds them.  All the keys are written together in one atomic replace at the end
  (:func:`alakazam.io.hdf5.write_terms`, under the table's writer lock), so a failure on any MS writes
  nothing.
* The MSs must have the same antennas (ANTENNA::NAME, in order): otherwise an AlakazamError names the
  two MSs and the first difference, before anything is solved.  The same (field, SPW, scan group) in two
  MSs is an error too (a solution interval does not span MSs; split per SPW, or solve per scan).
* ``append`` is not available with several MSs (an error).
* ``ms: [...]`` on an apply block (akapply ``vis=[...]``): the same terms are applied to each MS in turn,
  each under its own writer lock and partial-column protection (:mod:`alakazam.calibration.apply`);
  the counts are summed and the per-MS results returned under ``per_ms``.
* With ``workers`` / ``scheduler`` each MS's run uses the cluster (one cluster per MS run).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile

from .errors import AlakazamError, ParameterError

log = logging.getLogger("alakazam.multims")


def config_many(build, d, where, names, **kw):
    """A config for ``d['ms']`` = a list of MSs: ``build`` (solve/apply_config_from_dict) checks the
    block against each MS; the returned config has ``ms`` = the list of paths."""
    from .config import _name

    paths = list(d["ms"])
    key = _name("ms", where, names)
    bad = [p for p in paths if not isinstance(p, str) or not p]
    if not paths or bad:
        raise ParameterError({key: [f"{d['ms']!r}: expected a Measurement Set path or a non-empty list "
                                    "of paths"]})
    if len({os.path.realpath(p) for p in paths}) != len(paths):
        raise ParameterError({key: [f"{paths!r}: an MS is listed twice"]})
    cfgs = [build(dict(d, ms=p), where, names, **kw) for p in paths]
    cfg = cfgs[0]
    if getattr(cfg, "append", False):
        raise ParameterError({_name("append", where, names): ["true is not available with several MSs "
                                                              f"({key} is a list)"]})
    cfg.ms = paths
    return cfg


def check_antennas(paths):
    """The MSs of one job have the same antennas (names, in order); AlakazamError otherwise."""
    from .core import ms_io

    first = ms_io.read_meta(paths[0]).ant_names
    for p in paths[1:]:
        other = ms_io.read_meta(p).ant_names
        if list(other) != list(first):
            diff = next((i for i, (x, y) in enumerate(zip(first, other)) if x != y),
                        min(len(first), len(other)))
            a = first[diff] if diff < len(first) else "(none)"
            b = other[diff] if diff < len(other) else "(none)"
            raise AlakazamError(f"ms: {paths[0]} and {p} have different antennas (ANTENNA row {diff}: {a} "
                                f"vs {b}; {len(first)} vs {len(other)} antennas); one job needs the same "
                                "antennas in every MS")


def run_solve(cfg) -> dict:
    """Solve ``cfg`` (``cfg.ms`` a list) on each MS and write one table (module doc)."""
    from . import flow
    from .core import locks
    from .io import hdf5

    paths = list(cfg.ms)
    for p in paths:
        from .core import ms_io
        ms_io.check_ms(p)
    check_antennas(paths)
    out_dir = os.path.dirname(os.path.abspath(cfg.output))
    tmp = tempfile.mkdtemp(prefix=".akmultims-", dir=out_dir)
    try:
        parts, per_ms = [], []
        for i, p in enumerate(paths):
            log.info("solve: MS %d of %d: %s", i + 1, len(paths), p)
            part = os.path.join(tmp, f"ms{i}.h5")
            per_ms.append(flow.run_solve(dataclasses.replace(cfg, ms=p, output=part)))
            parts.append(part)
        merged, where = {}, {}
        for part, p in zip(parts, paths):
            for key in hdf5.list_keys(part):
                for s in hdf5.read_term(part, key):
                    k = (key, s.field_name, s.spw, s.scan_id)
                    if k in where:
                        raise AlakazamError(f"{key}: field {s.field_name} SPW {s.spw} scan group {s.scan_id} "
                                            f"is in {where[k]} and in {p}; a solution cannot combine MSs "
                                            "(split per SPW, or solve per scan)")
                    where[k] = p
                    merged.setdefault(key, []).append(s)
        with locks.writer_lock(cfg.output):
            hdf5.write_terms(cfg.output, merged)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = dict(per_ms[0])
    out.update(ms=paths, output=cfg.output, per_ms=per_ms, keys=list(merged))
    return out


def run_apply(cfg) -> dict:
    """Apply ``cfg`` (``cfg.ms`` a list) to each MS in turn; summed counts and ``per_ms`` results."""
    from .calibration.apply import run_apply as one

    paths = list(cfg.ms)
    per_ms = []
    for i, p in enumerate(paths):
        log.info("apply: MS %d of %d: %s", i + 1, len(paths), p)
        per_ms.append(one(dataclasses.replace(cfg, ms=p)))
    out = dict(per_ms[-1])
    for k in ("rows", "samples", "no_solution", "flagged_by_solution", "flagged_bad_data", "seconds"):
        out[k] = sum(r.get(k, 0) for r in per_ms)
    out["log"] = [ln for r in per_ms for ln in r.get("log", [])]
    out.update(ms=paths, per_ms=per_ms)
    return out
