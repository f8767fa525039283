"""Solve units on dask.distributed: a LocalCluster of worker processes or a running scheduler.

Convention
----------
A *unit* of the distributed solve is a :class:`alakazam.plan.Unit` (step, field, SPW, scan group),
solved by :func:`alakazam.unit.solve_unit` exactly as in-process (where the units of one (field, SPW)
are solved together by :func:`alakazam.unit.solve_field_spw`).  The chain's dependency
is the task graph: all units of a step run in parallel; the next step is submitted when the client has
the previous step's solutions (it needs them to pre-apply).  Each worker opens the MS path itself
(shared filesystem) with python-casacore, reads its rows with per-group reads (memory tier 2, or row
chunks, tier 3, when the client's memory plan said so) -- never the client's cache -- and returns the
small :class:`alakazam.io.hdf5.SolutionSet` arrays.  The client alone writes the HDF5 file, once per
step, atomically (:func:`alakazam.io.hdf5.write_term`), in chain order.

The accumulation is exact (weighted sums), so the solutions equal the in-process run's to rounding
(tested to 1e-10).  A worker that dies makes its unit fail; dask retries it on another worker
(``retries``); if it still fails the run stops with a clear error and no step of the failing block
after the last one completed is written.

``workers: N`` starts a LocalCluster of N single-threaded worker processes for the duration of one
solve block; ``scheduler: tcp://host:port`` connects to a running scheduler (its workers must see the
MS and the tables at the same paths and have alakazam installed).  The dashboard address is logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import threading

from .core import signals
from .errors import AlakazamError

log = logging.getLogger("alakazam.distributed")

#: how often dask re-runs a unit whose worker died before giving up
RETRIES = 1
#: the test hook's stall (:func:`_fault_injection`)
STALL_S = 90.0
#: ... and its pause of a worker's start
PAUSE_S = 3.0


def wanted(workers, scheduler) -> bool:
    """True when a solve block asks for dask.distributed (``workers > 0`` or a scheduler address)."""
    return bool(scheduler) or bool(workers and int(workers) > 0)


@contextlib.contextmanager
def client(workers=0, scheduler=""):
    """A ``distributed.Client``: connected to ``scheduler``, or to a LocalCluster of ``workers`` worker
    processes (one thread each; numba's own threads do the parallel work inside a unit) that is closed
    on exit.  dask's own INFO log (the cluster's start and shutdown, with tracebacks of the connections
    it closes: 'no traceback unless asked') is shown only when the ``alakazam`` logger is at DEBUG
    (``logging.getLogger("alakazam").setLevel(logging.DEBUG)``); its warnings and errors always."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:                                   # pragma: no cover - a declared dependency
        raise AlakazamError("workers/scheduler: dask.distributed is not installed "
                            "(pip install 'dask[distributed]')") from None
    dlog = logging.getLogger("distributed")
    level = dlog.level
    if not logging.getLogger("alakazam").isEnabledFor(logging.DEBUG):
        dlog.setLevel(max(level, logging.WARNING))
    try:
        with _cluster_client(Client, LocalCluster, workers, scheduler) as c:
            yield c
    finally:
        dlog.setLevel(level)


#: seconds a scheduler address has to accept a connection and send its handshake (:func:`_probe`)
PROBE_S = 10.0


def _probe(scheduler):
    """A ``tcp://host:port`` that is no dask scheduler is refused here, naming it: a dask server sends its
    handshake as soon as it accepts a connection, an HTTP server (the dashboard, port 8787) waits for a
    request.  dask's own connect hung there for good (the dashboard) or read 'HTTP/1.1' as a message
    length ("MemoryError: Unable to allocate 3.07 EiB"; review 54e).  Other schemes are left to dask."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(scheduler)
    if u.scheme != "tcp" or not u.hostname or not u.port:
        return
    try:
        sock = socket.create_connection((u.hostname, u.port), timeout=PROBE_S)
    except OSError as e:
        raise AlakazamError(f"scheduler: cannot connect to {scheduler!r}: {e}") from None
    try:
        sock.settimeout(PROBE_S)
        try:
            first = sock.recv(8)
        except OSError:
            first = None
    finally:
        sock.close()
    if not first or first[:4] == b"HTTP":
        raise AlakazamError(
            f"scheduler: {scheduler!r} accepted the connection but did not answer as a dask scheduler within "
            f"{PROBE_S:g} s (a dask scheduler listens on port 8786 by default, its dashboard -- HTTP -- on "
            "8787); give the address the scheduler prints ('Scheduler at: tcp://...')")


@contextlib.contextmanager
def _cluster_client(Client, LocalCluster, workers, scheduler):
    cluster = c = None
    try:
        if scheduler:
            _probe(scheduler)
            try:
                c = Client(scheduler, timeout="10s")
            except (OSError, MemoryError, ValueError, TypeError) as e:
                raise AlakazamError(f"scheduler: cannot connect to {scheduler!r}: {type(e).__name__}: {e}") \
                    from None
        else:
            import dask

            from .core.mainguard import main_hidden

            # a unit whose worker dies is run again RETRIES times (dask's default: 3 more times).  Started
            # with SIGINT blocked (signals.spawning): the workers start without it, and a Ctrl-C meanwhile
            # stops this process once the cluster is up (below: closed)
            with main_hidden(), dask.config.set({"distributed.scheduler.allowed-failures": RETRIES}):
                try:
                    with signals.spawning():
                        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                               dashboard_address=":0", preload=[__name__])  # (dask_setup)
                        c = Client(cluster)
                except KeyboardInterrupt:
                    if c is not None:
                        with signals.held():
                            _quiet_shutdown()
                            c.close()
                    raise
                c.wait_for_workers(int(workers), timeout=120)  # every worker registered before work starts
        log.info("dask: %d workers, dashboard %s", len(c.scheduler_info().get("workers", {})),
                 c.dashboard_link)
        try:
            yield c
        finally:
            with signals.held():        # a Ctrl-C here waits for the close (its logs were shown after)
                _quiet_shutdown()
                c.close()
    finally:
        if cluster is not None:
            with signals.held():
                _quiet_shutdown()
                cluster.close()


def dask_setup(worker):
    """dask's preload hook, run in each worker process of a LocalCluster before it registers (the cluster
    is started with ``preload=["alakazam.distributed"]``, restarted workers too): SIGINT ignored there, so
    a Ctrl-C -- the terminal's SIGINT reaches every process of the group -- stops the client alone, which
    closes the cluster.  Each worker took it itself and printed a 25-line KeyboardInterrupt traceback
    (review 54e); dask's warning for each unit the client then cancels is not shown.  A scheduler's own
    workers are the user's and are left alone."""
    import signal
    import threading

    _fault_injection("preload")         # (a test's Ctrl-C while the workers start)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the units the client cancels on a Ctrl-C: "Async instruction for <Task cancelled ...>" per unit
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)


def _quiet_shutdown():
    """The work is done (or stopped): dask's errors from closing its own connections -- a heartbeat that
    found the scheduler gone, keys no longer gathered -- are not the user's (review 54e: a 30-line
    traceback after a successful run), unless the ``alakazam`` logger is at DEBUG."""
    if not logging.getLogger("alakazam").isEnabledFor(logging.DEBUG):
        logging.getLogger("distributed").setLevel(logging.CRITICAL)


def _fault_injection(step_key, unit=None):
    """Test hook (tests/test_distributed.py): ``ALAKAZAM_FAULT_INJECT=KEY:once:MARKER`` kills the worker
    process running the first unit of step KEY (MARKER records that it happened);
    ``KEY:always:`` kills every attempt; ``KEY:stall:FID/DDID/SCAN/MARKER`` makes that unit of step KEY
    wait STALL_S seconds (then create MARKER and solve) and every other unit of KEY fail with an
    AlakazamError; ``KEY:sleep:MARKER`` makes every unit of KEY create MARKER and wait STALL_S seconds
    (a run to interrupt); ``preload:pause:MARKER`` makes each LocalCluster worker create MARKER and wait
    PAUSE_S seconds in its preload, before it ignores SIGINT (a cluster start to interrupt).  Unset in
    normal use."""
    spec = os.environ.get("ALAKAZAM_FAULT_INJECT", "")
    if not spec:
        return
    key, mode, marker = (spec.split(":", 2) + ["", ""])[:3]
    if key != step_key:
        return
    if mode == "stall" and unit is not None:
        fid, ddid, scan, marker = marker.split("/", 3)
        if (unit.fid, unit.ddid, unit.group.scan_id) != (int(fid), int(ddid), int(scan)):
            raise AlakazamError(f"{key}: injected failure")
        time.sleep(STALL_S)
        open(marker, "w").close()
        return
    if mode == "sleep":                 # every unit of KEY: MARKER created, then STALL_S seconds
        if marker:
            open(marker, "a").close()
        time.sleep(STALL_S)
        return
    if mode == "pause":
        if marker:
            open(marker, "a").close()
        time.sleep(PAUSE_S)
        return
    if mode == "always":
        os._exit(17)
    if mode == "once" and marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(17)


def _identity(x):
    return x


def share(c, obj):
    """A future holding ``obj`` for many tasks.  Computed by a task, not scattered: when the worker
    holding it dies the scheduler recomputes it (scattered data would be lost for good, and every unit
    needing it would fail with "already forgotten")."""
    return c.submit(_identity, obj, pure=False, retries=RETRIES)


#: the unit._Context dicts a solve unit fills for the later rounds of ``iterations``
ROUND_CARRY = ("cp_offset_cells", "cp_model_power")


def _solve_unit(ctx, unit):
    """Worker side of one unit (:class:`alakazam.plan.Unit`: step x field x SPW x scan group): the
    client's context without its cache (tier >= 2: per-group reads) and the in-process solve of that
    group (:func:`alakazam.unit.solve_unit`), reading the MS through one handle."""
    from . import unit as unit_mod
    from .core.ms import MeasurementSet

    _fault_injection(unit.step.key, unit)
    # what this unit decides or measures for the later rounds (a first round: the CP offsets' cells, the
    # CP model power) goes back to the client, which keeps it for them: they run in its own process
    uctx = dataclasses.replace(ctx, **{a: dict(getattr(ctx, a)) for a in ROUND_CARRY})
    with _captured_warnings() as records:
        try:
            with MeasurementSet.open(ctx.cfg.ms):
                sset = unit_mod.solve_unit(uctx, unit)
            carry = {a: {k: v for k, v in getattr(uctx, a).items() if k not in getattr(ctx, a)}
                     for a in ROUND_CARRY}
            return _Done(sset, records, carry)
        except AlakazamError as e:       # the data's answer, not a lost worker: returned, so that dask
            return _UserError(str(e), records)    # neither retries the unit nor prints its traceback


@dataclasses.dataclass
class _Done:
    """A unit's result (a SolutionSet or None; an apply or flag part's tuple) and the warnings it
    logged: (logger name, level, message)."""

    sset: object
    records: list
    carry: dict = dataclasses.field(default_factory=dict)   # a solve unit's ROUND_CARRY entries


@dataclasses.dataclass
class _UserError:
    """A unit's AlakazamError, carried back as a result (raised again on the client, as in process),
    with the warnings logged before it."""

    message: str
    records: list = dataclasses.field(default_factory=list)


class _Collect(logging.Handler):
    """The one capture handler of a worker process: a record of a thread running a unit is kept for
    that unit; any other record goes on as propagation would have taken it (alakazam's logger does
    not propagate while the handler is installed)."""

    def emit(self, record):
        out = _CAPTURE.get(record.thread)
        if out is not None:
            out.append((record.name, record.levelno, record.getMessage()))
        else:
            logging.getLogger("alakazam").parent.handle(record)


_CAPTURE = {}                   # thread id -> the records of the unit it runs
_CAPTURE_LOCK = threading.Lock()
_HANDLER = []                   # [(handler, the logger's propagate and level before)] while installed


@contextlib.contextmanager
def _captured_warnings():
    """The warnings alakazam logs while a unit runs on a worker, collected for the client to log
    (:func:`unwrap`) as an in-process run does -- in the run's log and its format -- instead of on the
    worker's stderr, where the user of ``workers: N`` saw them out of place (or, with a remote
    scheduler, not at all).  Units running at once in threads of one worker each get their own."""
    out = []
    lg = logging.getLogger("alakazam")
    me = threading.get_ident()
    with _CAPTURE_LOCK:
        if not _CAPTURE:
            h = _Collect(logging.WARNING)
            _HANDLER.append((h, lg.propagate, lg.level))
            lg.addHandler(h)
            lg.propagate = False
            if lg.getEffectiveLevel() > logging.WARNING:
                lg.setLevel(logging.WARNING)
        _CAPTURE[me] = out
    try:
        yield out
    finally:
        with _CAPTURE_LOCK:
            del _CAPTURE[me]
            if not _CAPTURE:
                h, prop, level = _HANDLER.pop()
                lg.removeHandler(h)
                lg.propagate, lg.level = prop, level


def captured(fn, *args):
    """Worker side: ``fn(*args)`` with its warnings collected (:func:`_captured_warnings`), as
    ``_Done(result, records)``; the client's :func:`unwrap` logs them and returns the result."""
    with _captured_warnings() as records:
        return _Done(fn(*args), records)


def unwrap(res, seen=None):
    """Client side of :func:`captured`: log the unit's warnings, return its result.  ``seen``: a set
    of the messages already logged for this run (updated); a message in it is not logged again -- the
    row chunks of one apply each say what the in-process apply says once."""
    if isinstance(res, _Done):
        _relay(res.records, seen)
        return res.sset
    return res


def _relay(records, seen=None):
    """Log a unit's warnings on the client, under the loggers that emitted them (those not in
    ``seen``, which is updated; None: all)."""
    from .core import warnonce

    for name, level, msg in records:
        if seen is not None:
            if msg in seen:
                continue
            seen.add(msg)
        warnonce.say(level, name, msg)      # (once with the client's own, in a task call or run)


def for_workers(cfg):
    """``cfg`` (a solve, apply or flag configuration) with the paths a worker opens made absolute here:
    a dask worker resolves a relative path in its own working directory -- an external scheduler's
    workers in theirs, where a YAML file's ``ms: sim.ms`` found another MS of that name and the run
    wrote that MS's solutions and corrections into the user's, exit 0 (review 54e)."""
    def ab(p):
        return os.path.abspath(p) if isinstance(p, (str, os.PathLike)) and str(p) else p

    changes = {}
    if hasattr(cfg, "ms"):
        changes["ms"] = [ab(m) for m in cfg.ms] if isinstance(cfg.ms, (list, tuple)) else ab(cfg.ms)
    if getattr(cfg, "gaintable", None):
        changes["gaintable"] = [ab(t) for t in cfg.gaintable]
    strategy = getattr(cfg, "strategy", "")
    if strategy and (strategy.endswith(".lua") or os.sep in strategy):
        changes["strategy"] = ab(strategy)
    if getattr(cfg, "terms", None):
        changes["terms"] = [dataclasses.replace(t, table=ab(t.table)) if hasattr(t, "table") else t
                            for t in cfg.terms]
    return dataclasses.replace(cfg, **changes)


def solve_step(c, ctx, step, fids, advance=None, step_index=0) -> list:
    """Solve one step on the cluster: one task per unit (scan group, :func:`alakazam.plan.units_of`).
    Returns one list of SolutionSets per (field, SPW), in the in-process order (field, then SPW, then
    scan group), so that what the client does with them afterwards (re-referencing, writing) sees them
    as an in-process run does.  ``advance()`` is called as each unit completes (progress)."""
    from distributed import as_completed

    from . import plan

    # the context travels without the client's cache and progress callback; tier 1's shared cache
    # cannot span processes, so workers read per group (tier 2) or in row chunks (tier 3)
    wctx = dataclasses.replace(ctx, cache={}, advance=None, tier=max(ctx.tier, 2), prior=list(ctx.prior),
                               cfg=for_workers(ctx.cfg))
    units = plan.units_of(ctx.meta, step_index, step, fids, ctx.spw_sel, ctx.scans)
    wctx_f = share(c, wctx)             # once per step, not once per unit
    futs = [c.submit(_solve_unit, wctx_f, u,
                     key=f"{step.key}-field{u.fid}-ddid{u.ddid}-scan{u.group.scan_id}-{id(ctx)}",
                     retries=RETRIES, pure=False)
            for u in units]
    try:
        failed = None
        for fut in as_completed(futs):
            # an error or a cancelled unit (the scheduler lost: review 54e's "internal error
            # (FutureCancelledError)") is raised below, naming the unit
            res = fut.result() if fut.status == "finished" else None
            if res is None or isinstance(res, _UserError):
                failed = fut
                break
            if advance is not None:
                advance()
        order = list(zip(futs, units))
        if failed is not None:
            # the first failure is raised now; the other units are cancelled (below), not waited for: a unit
            # still running or queued (a stalled one, or one that can find no live worker) held the error back
            order = [(f, u) for f, u in order if f is failed]
        out = {(fid, ddid): [] for fid in fids for ddid in ctx.spw_sel}
        for fut, u in order:
            try:
                res = fut.result()
            except AlakazamError:
                raise
            except Exception as e:                          # noqa: BLE001 -- named and re-raised
                name = ctx.meta.fields[u.fid].name
                raise AlakazamError(f"{step.key}: the unit field {name} / DATA_DESC_ID {u.ddid} / scan group "
                                    f"{u.group.scan_id} failed on the cluster: "
                                    f"{type(e).__name__}: {e}") from e
            _relay(res.records)
            if isinstance(res, _UserError):
                raise AlakazamError(res.message)
            for a, new in res.carry.items():
                getattr(ctx, a).update(new)
            if res.sset is not None:
                out[(u.fid, u.ddid)].append(res.sset)
        return list(out.values())
    finally:
        c.cancel(futs)
