"""Apply and akflag on dask.distributed: workers compute, this process (the client) alone writes.

Convention (pinned by tests/test_distributed_apply.py)
------------------------------------------------------
* A unit of a distributed **apply** is one row chunk of one (field, SPW) of the apply plan (the
  chunks of :func:`alakazam.calibration.apply._apply_field`, sized to the memory limit divided by the
  number of units in flight + 1).  The worker opens the MS read-only, reads the chunk, evaluates the
  chain and corrects it with the in-process kernels, and returns the corrected chunk (and, for the
  flagging applymodes, its new FLAG) with its row numbers and counts.  A unit of a distributed
  **akflag** is one (DATA_DESC_ID, scan) unit of :mod:`alakazam.flagging.engine`; the worker returns
  the new FLAG / FLAG_ROW of the rows it changed.
* **One writer per table.**  The client writes every returned chunk itself, while it holds the MS
  writer lock (:mod:`alakazam.core.locks`), into the column apply writes in process (a new column
  under ``<name>_AKPARTIAL``, renamed when complete: :mod:`alakazam.core.columns`).  Workers never open
  the MS for writing, so a worker that dies cannot leave a half-written table: its unit is re-run on
  another worker (``RETRIES``); when it keeps failing the run stops with a clear error naming the unit,
  the partial column is dropped as in-process, and re-running completes.  (Per-partition writes by
  the workers would rely on casacore's table lock being passed between processes for every chunk and on
  each worker flushing its storage-manager caches -- measured slower here and unsafe against a worker
  killed mid-flush: docs/scaling.md.)
* At most ``2 x workers`` units are in flight, so the client's memory holds at most that many chunks.
* Corrections and flags are computed by the same code on the same samples, so the result equals the
  in-process run bit for bit (tested).
* The flag version of akflag is saved by the client before any unit is submitted.
"""

from __future__ import annotations

import contextlib
import logging
import math

from .distributed import RETRIES, _fault_injection, captured, client, for_workers, share, unwrap
from .errors import AlakazamError

log = logging.getLogger("alakazam.distributed")


def _stream(c, units, submit, on_result, describe, window, seen=None):
    """Submit ``submit(unit)`` futures with at most ``window`` in flight; ``on_result(unit, result)``
    for each as it completes.  A failed unit raises :class:`AlakazamError` naming ``describe(unit)``.
    The units' warnings are logged as they complete, each message once with ``seen`` (a set,
    :func:`alakazam.distributed.unwrap`)."""
    from distributed import as_completed

    pending = iter(units)
    live = {}
    ac = as_completed()

    def next_one():
        u = next(pending, None)
        if u is not None:
            f = submit(u)
            live[f.key] = (f, u)
            ac.add(f)

    try:
        for _ in range(window):
            next_one()
        for fut in ac:
            _, u = live.pop(fut.key)
            try:
                res = unwrap(fut.result(), seen)    # the unit's warnings logged here, as in process
            except AlakazamError:
                raise
            except Exception as e:          # named and re-raised
                raise AlakazamError(f"{describe(u)} failed on the cluster: {type(e).__name__}: {e}") from e
            fut.release()
            on_result(u, res)
            next_one()
    finally:
        c.cancel([f for f, _ in live.values()])


def _window(c):
    n = max(1, len(c.scheduler_info().get("workers", {})))
    return n, 2 * n


# ---------------------------------------------------------------------------------------------- apply
class _NoBar:
    def advance(self, n=1):
        pass


def _apply_part(shared, fid, ddid, chans, k):
    """Worker: correct chunk ``k`` of (field, SPW); returns (lines, counts, per_term, writes)."""
    from .calibration import apply as ap

    cfg, meta, terms, scans, names, limit, write_col, rowsel, mode = shared
    _fault_injection("apply")
    lines, per_term, writes = [], {}, []
    counts = {"rows": 0, "samples": 0, "unflagged": 0, "no_solution": 0, "flagged_by_solution": 0,
              "flagged_bad_data": 0}
    ap._apply_field(cfg, meta, terms, scans, names, fid, ddid, chans, limit, lines, counts, _NoBar(),
                    write_col, rowsel, mode, per_term,
                    write=lambda _cfg, col, rownr, values, cmask: writes.append((col, rownr, values, cmask)),
                    part=k)
    return lines, counts, per_term, writes


def apply_plan(cfg, meta, terms, plan, scans, names, limit, lines, counts, write_col, rowsel, mode,
               per_term):
    """Run the apply ``plan`` on the cluster of ``cfg.workers`` / ``cfg.scheduler``; the client writes.
    Updates ``lines``, ``counts``, ``per_term`` as the in-process loop does and returns the part of
    the plan left to run in process (nothing)."""
    from . import progress
    from .calibration import apply as ap

    with client(cfg.workers, cfg.scheduler) as c:
        n_workers, window = _window(c)
        part_limit = max(1, int(limit // (window + 1)))
        units = []
        for i, (fid, ddid, chans, n_rows) in enumerate(plan):
            mr = ap._max_rows(part_limit, meta.spws[ddid], len(terms))
            units += [(i, fid, ddid, chans, k, min(mr, n_rows - k * mr))
                      for k in range(math.ceil(n_rows / mr))]
        log.info("apply: %d row chunks of %d (field, SPW) on %d dask workers", len(units), len(plan),
                 n_workers)
        shared = share(c, (for_workers(cfg), meta, terms, scans, names, part_limit, write_col, rowsel, mode))
        first_lines = {}
        warned = set()              # the warnings logged (once each, as the in-process apply does)

        def submit(u):
            _, fid, ddid, chans, k, _ = u
            return c.submit(captured, _apply_part, shared, fid, ddid, chans, k, retries=RETRIES, pure=False,
                            key=f"apply-field{fid}-ddid{ddid}-part{k}-{id(units)}")

        def describe(u):
            _, fid, ddid, _, k, n = u
            return (f"apply: the unit field {meta.fields[fid].name} / DATA_DESC_ID {ddid} / row chunk {k} "
                    f"({n} rows)")

        with progress.bar(f"apply on {n_workers} dask workers: rows", sum(u[5] for u in units),
                          quiet=cfg.quiet) as pbar:
            def on_result(u, res):
                part_lines, part_counts, part_per_term, writes = res
                for col, rownr, values, cmask in writes:
                    ap._write(cfg, col, rownr, values, cmask)       # the one writer (MS lock held)
                for key, n in part_counts.items():
                    counts[key] += n
                for key, n in part_per_term.items():
                    per_term[key] = per_term.get(key, 0) + n
                if u[4] == 0:
                    first_lines[u[0]] = part_lines
                pbar.advance(u[5])

            _stream(c, units, submit, on_result, describe, window, warned)
    for i in sorted(first_lines):                   # the chain lines in plan order, as in process
        for ln in first_lines[i]:
            if ln in warned:        # logged as a warning when its unit completed; kept once, as in process
                if ln not in lines:
                    lines.append(ln)
                continue
            lines.append(ln)
            log.info(ln)
    return []


# ---------------------------------------------------------------------------------------------- akflag
def _flag_part(shared, unit):
    """Worker: flag one (DATA_DESC_ID, scan) unit read-only; returns (counts, [(rows, flag)])."""
    from casacore.tables import table

    from .flagging import engine

    cfg, sel, limit, writes = shared
    _fault_injection("flag")
    mod = engine._mode_module(cfg.mode)
    counts = engine.new_counts()
    out = []
    from .flagging import preapply

    # the tables to apply on the fly (gaintable): each worker loads them from their paths
    pre = preapply.load(cfg, sel.meta) if getattr(mod, "NEEDS_DATA", False) else None
    state = mod.start(cfg, sel) if hasattr(mod, "start") else None
    try:
        with table(cfg.ms, readonly=True, ack=False) as t:
            engine._flag_unit(t, cfg, sel, mod, state, unit.ddid, unit, limit, counts,
                              (lambda rows, flag: out.append((rows, flag))) if writes else None, pre)
    finally:
        if hasattr(mod, "close"):
            mod.close(cfg, sel, state)
    return counts, out


def flag_units(cfg, sel, writes, counts, limit):
    """Run the (DATA_DESC_ID, scan) units of an akflag selection on the cluster; the client (holding
    the MS writer lock) writes FLAG / FLAG_ROW of the changed pieces and adds to ``counts``.  The flag
    version was saved by the caller before."""
    import dataclasses

    from casacore.tables import table

    from . import progress
    from .core import locks
    from .core.ms import writer as ms_writer
    from .flagging import engine
    from .flagging.select import BY_OBSERVATION
    from .flagging.select import units as flag_units_of

    wcfg = for_workers(dataclasses.replace(cfg, nproc=1))   # a worker is one process (aoflagger: no pool)
    with contextlib.ExitStack() as stack:
        if writes:
            stack.enter_context(locks.writer_lock(cfg.ms, "ms"))
        with table(cfg.ms, ack=False) as t:
            units = [u for ddid in sel.ddids for u in flag_units_of(t, sel, ddid, cfg.mode in BY_OBSERVATION)]
        c = stack.enter_context(client(cfg.workers, cfg.scheduler))
        n_workers, window = _window(c)
        # pieces are whole baselines (every mode's statistics are per baseline, or per unit with a first
        # pass over its pieces: rflag), so their size does not change the flags; the workers of one
        # machine share its memory
        part_limit = max(1, int(limit // n_workers))
        shared = share(c, (wcfg, sel, part_limit, writes))

        def submit(u):
            return c.submit(captured, _flag_part, shared, u, retries=RETRIES, pure=False,
                            key=f"flag-ddid{u.ddid}-scan{u.scan}-{u.obs_array}-{id(units)}")

        def describe(u):
            return f"akflag: the unit DATA_DESC_ID {u.ddid} / scan {u.scan} ({len(u.rows)} rows)"

        with progress.bar(f"akflag {cfg.mode} on {n_workers} dask workers: rows",
                          sum(len(u.rows) for u in units), quiet=cfg.quiet) as pbar:
            def on_result(u, res):
                part_counts, pieces = res
                if pieces:
                    with ms_writer(cfg.ms).flag_table() as t:   # the one writer (core/ms.py)
                        for rows, flag in pieces:
                            engine._put_flags(t, rows, flag)
                for key, n in part_counts.items():
                    counts[key] = counts.get(key, 0) + n
                pbar.advance(len(u.rows))

            _stream(c, units, submit, on_result, describe, window, set())   # each warning once (54e)
