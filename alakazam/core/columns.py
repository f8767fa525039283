"""The output column of apply, and FLAG writes: written so that an interrupted run never leaves
unreadable rows or an MS that does not open.

Convention (pinned by tests/test_reliability.py):

* A NEW output column is created under the temporary name ``<name>_AKPARTIAL`` (initialised with a
  copy of the data column when the run does not write every row), written, and renamed to ``<name>``
  only when every row has been written.  A kill -9 therefore leaves no ``<name>`` column at all (only
  the partial one, which the next apply on that MS removes and redoes); Ctrl-C removes it at once.
  Renaming costs nothing, unlike initialising every row before writing.
* An EXISTING output column is written in place; rows it holds no array for (a column created by
  another tool, or by an older alakazam killed mid-run) are first initialised from the data column,
  so every row is readable afterwards even when this run writes only some fields.
* Only the run that created a partial column removes it, and only while it holds the MS writer lock
  (:mod:`alakazam.core.locks`), so clean-up never deletes a column another run wrote.
* casacore rewrites a storage manager's header file (``table.fN``) when it flushes; a kill -9 in the
  middle of that write can leave a table that casacore cannot open at all (seen once in about 300
  random kills here, while the new column was being written: "FilebufIO::readBlock - incorrect number
  of bytes read for file table.f4").  So when apply starts writing (:func:`begin_writes`),
  ``table.dat``, ``table.info``, ``table.lock`` (casacore's sync data), every storage-manager file
  except the bulk tiled data files (``*_TSM*``) and files over 8 MB, and the list of the MS's files are
  saved in ``<ms>/alakazam.apply.bak``; :func:`end_writes` removes the snapshot when apply ends in any
  orderly way.  The next apply on that MS (:func:`recover`, under the MS lock) finds a snapshot left
  by a kill: if the table opens, a partial column is dropped; if it does not, the saved files (the
  table as it was before the run; apply writes only tiled array columns, whose data are not in the
  saved files) are put back and the files the run added are removed.  Data the killed run wrote into
  existing columns stay as written (FLAG is restorable from its flag version; re-running the apply
  rewrites the output column), except WEIGHT and WEIGHT_SPECTRUM of a calwt apply, which
  :func:`recover` puts back from the copy saved before their first write (core/weightbackup.py).
* Every FLAG write (akflag, apply's propagate_flags, a flag-version restore) is inside the same
  snapshot (:func:`alakazam.calibration.flagsafety.flag_writes`, :func:`alakazam.core.flagversions.restore`)
  and every run that writes FLAG first calls :func:`recover` under the MS writer lock: a kill -9 of
  akflag in the middle of casacore's header flush (seen once in a few hundred kills: "FilebufIO::readBlock
  ... table.f2") is undone by the next akflag, apply or flag restore on that MS.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager

import numpy as np

from ..errors import AlakazamError

log = logging.getLogger("alakazam.apply")

PARTIAL_SUFFIX = "_AKPARTIAL"


def partial_name(name) -> str:
    return f"{name}{PARTIAL_SUFFIX}"


def _table(ms, **kw):
    from casacore.tables import table

    return table(str(ms), ack=False, **kw)


def undefined_rows(ms, name) -> np.ndarray:
    """Row numbers whose cell of array column ``name`` holds no array (one TaQL pass: 3 ms for 121k rows
    where a Python loop over ``iscelldefined`` took 35 ms)."""
    import re

    from casacore.tables import taql

    with _table(ms) as t:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):     # not a plain TaQL name: per row
            return np.array([r for r in range(t.nrows()) if not t.iscelldefined(name, r)], np.int64)
        q = taql(f"SELECT ROWID() AS R FROM $t WHERE NOT ISDEFINED({name})")
        r = np.asarray(q.getcol("R"), np.int64) if q.nrows() else np.zeros(0, np.int64)
        q.close()
    return r


def _fill_rows(ms, name, like, rows, block_rows=20000):
    from .ms import writer

    writer(ms).fill_rows(name, like, rows, block_rows)


SNAPSHOT = "alakazam.apply.bak"
_MAX_SAVED = 8 * 2**20
# table.lock too: casacore keeps sync data there (rows, columns, storage-manager counters) that must
# match table.dat (a missing or newer one makes the restored table fail to open)
_SAVED = ("table.dat", "table.info", "table.lock")


def _snapshot(ms):
    snap = os.path.join(str(ms), SNAPSHOT)
    tmp = snap + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        names = sorted(os.listdir(str(ms)))
        small = [n for n in names if n.startswith("table.f") and "_TSM" not in n
                 and os.path.getsize(os.path.join(str(ms), n)) <= _MAX_SAVED]
        for f in list(_SAVED) + small:
            if os.path.exists(os.path.join(str(ms), f)):
                shutil.copy2(os.path.join(str(ms), f), os.path.join(tmp, f))
        with open(os.path.join(tmp, "files.txt"), "w") as fh:
            fh.write("\n".join(names))
    except BaseException:           # e.g. a full disk: no half snapshot left in the MS
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, snap)


def _clear_snapshot(ms):
    """Remove the snapshot: renamed first (one atomic step, after which :func:`recover` sees none), then
    deleted, so an interrupt in the middle of the deletion never leaves a snapshot behind."""
    snap = os.path.join(str(ms), SNAPSHOT)
    try:
        os.replace(snap, snap + ".done")
    except FileNotFoundError:
        pass
    shutil.rmtree(snap + ".done", ignore_errors=True)


@contextmanager
def _interrupts_deferred():
    """SIGINT / SIGTERM arriving inside are recorded and delivered again, through the handlers in place
    before, on exit (main thread only; elsewhere a no-op).  Unlike a blocked signal mask this also holds
    a signal the kernel hands to another thread: Python runs every handler in the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            signal.raise_signal(got[0])


_DEPTH = {}                     # realpath of the MS -> nesting depth of begin_writes in this process


def begin_writes(ms):
    """Save what :func:`recover` needs to undo a kill during this run's writes (module doc).  Nested
    calls (apply with propagate_flags: the column writes, then FLAG writes inside them) keep the
    outermost snapshot."""
    k = os.path.realpath(str(ms))
    if _DEPTH.get(k, 0) == 0:
        _snapshot(ms)
    _DEPTH[k] = _DEPTH.get(k, 0) + 1


def end_writes(ms):
    """The run ended in an orderly way (success, error or Ctrl-C): the snapshot is not needed (removed
    when the outermost :func:`begin_writes` ends).  A Ctrl-C or SIGTERM arriving meanwhile is delivered
    once the snapshot is gone (before: one arriving during the removal left part of it behind)."""
    with _interrupts_deferred():
        k = os.path.realpath(str(ms))
        d = _DEPTH.get(k, 0) - 1      # < 0: begin_writes was interrupted before it counted (cleared too)
        if d > 0:
            _DEPTH[k] = d
            return
        _DEPTH.pop(k, None)
        _clear_snapshot(ms)


def _opens(ms) -> bool:
    """Whether casacore can open ``ms``, probed in a child process: a failed open in this process would
    stay in casacore's per-process table cache and spoil every later open of the repaired table."""
    import subprocess
    import sys

    code = "import sys; from casacore.tables import table; table(sys.argv[1], ack=False).close()"
    r = subprocess.run([sys.executable, "-c", code, str(ms)], capture_output=True)
    return r.returncode == 0


def recover(ms):
    """Undo what an apply killed while its partial column existed left behind (module doc).

    Returns None (nothing to do), 'dropped' (the table opened; partial column removed) or 'restored'
    (the table did not open; its description before the column was added was put back).  Then WEIGHT
    and WEIGHT_SPECTRUM are put back from the backup an unfinished calwt apply left
    (:func:`alakazam.core.weightbackup.recover`; it says so)."""
    from . import weightbackup

    r = _recover_table(ms)
    weightbackup.recover(ms)
    return r


def recover_killed(ms):
    """Before a task opens ``ms`` -- also a task that only reads it (akcal, akinfo, akflagmanager list /
    save): a writer killed inside casacore's header flush leaves an MS that does not open, and the task
    would stop on casacore's "FilebufIO::readBlock" error.  When a killed writer's snapshot is left and
    the MS does not open, the table files saved before that run are put back (:func:`_recover_table`).
    Only that: when the MS opens, what the killed run left (a partial column, WEIGHT partly rewritten)
    stays for the next writer's :func:`recover`, so a reading task writes nothing the MS can do without
    (the warnings of an interrupted run still say what to do).  Nothing is done when no snapshot is left
    (the usual case: one ``isdir``), when this process is writing the MS (its own snapshot), or when
    another run holds the MS writer lock (a live writer's snapshot).  Returns what
    :func:`_recover_table` returned ('restored'), or None."""
    def mine():
        return _DEPTH.get(os.path.realpath(str(ms)), 0) > 0

    if not os.path.isdir(os.path.join(str(ms), SNAPSHOT)) or mine() or _opens(ms):
        return None
    from . import locks

    try:
        with locks.writer_lock(ms, "ms"):
            if mine() or not os.path.isdir(os.path.join(str(ms), SNAPSHOT)):
                return None
            return _recover_table(ms)
    except locks.LockedError:       # held by another run: its snapshot, its header flush under way
        return None


def _recover_table(ms):
    snap = os.path.join(str(ms), SNAPSHOT)
    shutil.rmtree(snap + ".tmp", ignore_errors=True)
    shutil.rmtree(snap + ".done", ignore_errors=True)       # a removal cut short (_clear_snapshot)
    if not os.path.isdir(snap):
        return
    if _opens(ms):
        with _table(ms) as t:
            cols = t.colnames()
        for c in cols:
            if c.endswith(PARTIAL_SUFFIX):
                log.warning("%s: removing the partial column %s left by an interrupted apply", ms, c)
                drop(ms, c)
        _clear_snapshot(ms)
        return "dropped"
    log.warning("%s: a run (apply, akflag or a flag restore) was killed while writing and the table no "
                "longer opens; restoring the table description saved before it started", ms)
    for f in sorted(os.listdir(snap)):
        if f == "files.txt":
            continue
        shutil.copy2(os.path.join(snap, f), os.path.join(str(ms), f + ".restore"))
        os.replace(os.path.join(str(ms), f + ".restore"), os.path.join(str(ms), f))
    with open(os.path.join(snap, "files.txt")) as fh:
        before = set(fh.read().split("\n"))
    for n in os.listdir(str(ms)):
        if n.startswith("table.f") and n not in before:
            os.unlink(os.path.join(str(ms), n))

    _clear_snapshot(ms)
    if not _opens(ms):
        raise AlakazamError(f"ms: {ms} cannot be opened even after undoing the interrupted apply; restore it "
                            "from a backup")
    return "restored"


def prepare(ms, name, like, init):
    """(column to write, created) for output column ``name`` (module doc); ``init``: the run will not
    write every row, so a new column is first filled with a copy of ``like``."""
    from . import ms_io

    part = partial_name(name)
    with _table(ms) as t:
        cols = t.colnames()
    if part in cols:
        log.warning("%s: removing the partial column %s left by an interrupted apply; redoing it", ms, part)
        drop(ms, part)
    if name in cols:
        bad = undefined_rows(ms, name)
        if len(bad):
            log.warning("%s: %d rows of %s held no data (interrupted earlier run?); initialised from %s",
                        ms, len(bad), name, like)
            _fill_rows(ms, name, like, bad)
        return name, False
    _MADE[os.path.realpath(str(ms))] = part     # before it exists: an interrupt from here on drops it
    ms_io.ensure_column(ms, part, like=like, init=init)
    return part, True


_MADE = {}      # realpath of the MS -> the partial column this process is creating or writing


def take_made(ms):
    """The partial column this run started to create on ``ms`` (None if none), forgotten: an interrupt
    that lands between the column's creation and :func:`prepare` returning still finds it to drop."""
    return _MADE.pop(os.path.realpath(str(ms)), None)


def commit(ms, written, name):
    """Give the fully written partial column its final name."""
    if written == name:
        return
    from .ms import writer

    writer(ms).rename_column(written, name)


def drop(ms, written):
    """Remove a partial column this run created."""
    from .ms import writer

    writer(ms).remove_column(written)
