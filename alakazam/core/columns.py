"""The output column of apply, and FLAG writes: written so that an interrupted run never leaves
unreadable rows or an MS that does not open.

Convention (pinned by tests/test_reliability.py):

* A NEW output column is created under the temporary name ``<name>_AKPARTIAL`` (initialised with a
  copy of the data column when the run does not write every row), written, and renamed to ``<name>``
  only when every row has been written.  A kill -9 therefore leaves no ``<name>`` column at all (only
  the partial one, which the next apply on that MS removes and redoes); Ctrl-C removes it at once.
  Renaming costs nothing, unlike initialising every row before writing.
* A column apply creates carries the column keyword ``ALAKAZAM_APPLY_OUTPUT`` (:data:`APPLY_OUTPUT`)
  holding its name: it holds corrected data apply wrote, so a later apply (a re-run) may write it
  again, as it may CORRECTED_DATA (calibration/compat.py); any other existing column is never
  written -- also a copy of such a column under another name (a column description copied with its
  keywords, python-casacore's ``makecoldesc(new, t.getcoldesc(old))``), whose keyword names the
  original.
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

import contextlib
import logging
import os
import shutil
from contextlib import contextmanager

import numpy as np

from ..errors import AlakazamError

log = logging.getLogger("alakazam.apply")

PARTIAL_SUFFIX = "_AKPARTIAL"
#: column keyword of a column apply created (module doc)
APPLY_OUTPUT = "ALAKAZAM_APPLY_OUTPUT"


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
#: in the snapshot: touched every HEARTBEAT_S seconds while the run that took it writes (:class:`_Heartbeat`)
ALIVE = "alive"
#: in the snapshot: the table files the run added (its partial column's storage manager, :func:`prepare`)
ADDED = "added.txt"
#: in the snapshot: written before a recovery starts putting files back (a recovery cut short is redone)
RESTORING = "restoring"
HEARTBEAT_S = 5.0
#: a table file changed more than this after the killed run's last heartbeat was changed by someone else
#: (generous: python-casacore holds the GIL inside a putcol, so one long write -- a large chunk on a slow
#: disk -- delays the heartbeat thread; a refusal of the killed run's own snapshot would leave the user
#: to repair the MS by hand)
STALE_GRACE_S = 300.0
#: how long a task waits for the run that holds the MS writer lock while the MS does not open
LOCK_WAIT_S = 120.0
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
        open(os.path.join(tmp, ALIVE), "w").close()
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
_BEATS = {}                     # realpath of the MS -> its _Heartbeat


class _Heartbeat:
    """Touches ``<snapshot>/alive`` every :data:`HEARTBEAT_S` seconds (a daemon thread) while the run
    writes: after a kill -9 its time is the run's last sign of life, and a table file changed more
    than :data:`STALE_GRACE_S` later was changed by another program (:func:`_stale`)."""

    def __init__(self, ms):
        import threading

        self.path = os.path.join(str(ms), SNAPSHOT, ALIVE)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alakazam-snapshot-heartbeat", daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:         # the snapshot is gone (cleared): nothing to keep alive
                return

    def end(self):
        self.stop.set()


def begin_writes(ms):
    """Save what :func:`recover` needs to undo a kill during this run's writes (module doc).  Nested
    calls (apply with propagate_flags: the column writes, then FLAG writes inside them) keep the
    outermost snapshot."""
    k = os.path.realpath(str(ms))
    if _DEPTH.get(k, 0) == 0:
        _snapshot(ms)
        _BEATS[k] = _Heartbeat(ms)
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
        beat = _BEATS.pop(k, None)
        if beat is not None:
            beat.end()
        _clear_snapshot(ms)


def _opens(ms) -> bool:
    """Whether casacore can open ``ms``, probed in a child process: a failed open in this process would
    stay in casacore's per-process table cache and spoil every later open of the repaired table."""
    import subprocess
    import sys

    # lockoptions 'usernoread': the probe does not wait for a lock another program holds (a CASA session
    # with the MS open for writing: the probe then hung in silence); the task's own open says it waits
    code = ("import sys; from casacore.tables import table; "
            "table(sys.argv[1], ack=False, lockoptions='usernoread').close()")
    try:
        r = subprocess.run([sys.executable, "-c", code, str(ms)], capture_output=True, timeout=300)
    except subprocess.TimeoutExpired:
        return True                 # not known to be broken: nothing is put back; the task's open says
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


#: (MS, snapshot inode) -> when recover_killed last saw the MS open with that snapshot: the probe (a
#: child process) is not repeated for _OPENED_FOR_S, e.g. for every metadata read of a run while
#: another run writes the MS
_OPENED = {}
_OPENED_FOR_S = 30.0


def recover_killed(ms):
    """Before a task opens ``ms`` -- also a task that only reads it (akcal, akinfo, akflagmanager list /
    save): a writer killed inside casacore's header flush leaves an MS that does not open, and the task
    would stop on casacore's "FilebufIO::readBlock" error.  When a killed writer's snapshot is left and
    the MS does not open, the table files saved before that run are put back (:func:`_recover_table`,
    which refuses a snapshot that later changes made stale).  Only that: when the MS opens, what the
    killed run left (a partial column, WEIGHT partly rewritten) stays for the next writer's
    :func:`recover`, so a reading task writes nothing the MS can do without (the warnings of an
    interrupted run still say what to do).  Nothing is done when no snapshot is left (the usual case:
    one ``isdir``) or when this process is writing the MS (its own snapshot).  When another run holds
    the MS writer lock (a repair under way, or a live writer mid-flush) the task waits for it, up to
    :data:`LOCK_WAIT_S`, then says who holds it.  Returns what :func:`_recover_table` returned, or None."""
    import time

    from . import locks

    snap = os.path.join(str(ms), SNAPSHOT)

    def mine():
        return _DEPTH.get(os.path.realpath(str(ms)), 0) > 0

    if not os.path.isdir(snap) or mine():
        return None
    try:
        key = (os.path.realpath(str(ms)), os.stat(snap).st_ino)
    except OSError:                 # removed meanwhile
        return None
    if time.monotonic() - _OPENED.get(key, -1e9) < _OPENED_FOR_S:
        return None                 # (this snapshot, seen opening a moment ago: no probe per call)
    if not os.path.exists(os.path.join(snap, RESTORING)) and _opens(ms):
        _OPENED[key] = time.monotonic()
        return None
    t_end = time.monotonic() + LOCK_WAIT_S
    said = False
    while True:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(locks.writer_lock(ms, "ms"))
            except locks.LockedError as e:
                if not os.path.isdir(snap) and _opens(ms):     # the other run repaired it meanwhile
                    return None
                if time.monotonic() > t_end:
                    raise AlakazamError(f"ms: {ms} does not open (a run was killed while writing it) and "
                                        f"another run holds its writer lock, for more than {LOCK_WAIT_S:.0f} "
                                        f"s: {e}. Run the task again once that run has finished (it or the "
                                        "next run puts the table back)") from None
                if not said:
                    log.warning("%s does not open (a run was killed while writing it); waiting for the run "
                                "that holds its writer lock: %s", ms, e)
                    said = True
                time.sleep(0.5)
                continue
            except AlakazamError as e:      # e.g. a read-only MS: no lock file can be made
                raise AlakazamError(f"ms: {ms} does not open (a run was killed while writing it) and the "
                                    f"table files saved before that run ({snap}) cannot be put back: {e}") \
                    from None
            if mine() or not os.path.isdir(snap):
                return None
            return _recover_table(ms)


def _stale(ms, snap):
    """Why the snapshot ``snap`` is not the killed run's view of the table any more (None: it is): a
    table file of the MS changed more than :data:`STALE_GRACE_S` after the run's last heartbeat, or
    table files the run did not add exist (another program added a column after the kill)."""
    import time

    try:
        last = os.path.getmtime(os.path.join(snap, ALIVE))
    except OSError:
        last = os.path.getmtime(snap)
    with open(os.path.join(snap, "files.txt")) as fh:
        before = set(fh.read().split("\n"))
    added = set()
    if os.path.exists(os.path.join(snap, ADDED)):
        with open(os.path.join(snap, ADDED)) as fh:
            added = set(fh.read().split())
    later, unknown = [], []
    for n in sorted(os.listdir(str(ms))):
        path = os.path.join(str(ms), n)
        if not (n.startswith("table.") and os.path.isfile(path)) or n == "table.lock":
            continue
        if os.path.getmtime(path) > last + STALE_GRACE_S:
            later.append(n)
        if n.startswith("table.f") and n not in before and not _of_added(n, added):
            unknown.append(n)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last))
    if later:
        return (f"{', '.join(later)} changed after the killed run's last sign of life ({when}), by another "
                "program")
    if unknown:
        return f"{', '.join(unknown)} were added after it was taken ({when}), by another program"
    return None


def _of_added(name, added) -> bool:
    """Whether table file ``name`` belongs to a storage manager the run added (``table.fN`` listed: also
    its data files ``table.fN_TSM*`` / ``table.fNi``, which casacore creates at the first write)."""
    return any(name == a or name.startswith(a + "_") or name == a + "i" for a in added)


def _recover_table(ms):
    snap = os.path.join(str(ms), SNAPSHOT)
    shutil.rmtree(snap + ".tmp", ignore_errors=True)
    shutil.rmtree(snap + ".done", ignore_errors=True)       # a removal cut short (_clear_snapshot)
    if not os.path.isdir(snap):
        return
    redo = os.path.exists(os.path.join(snap, RESTORING))     # a recovery cut short: finish it
    if not redo and _opens(ms):
        with _table(ms) as t:
            cols = t.colnames()
        for c in cols:
            if c.endswith(PARTIAL_SUFFIX):
                log.warning("%s: removing the partial column %s left by an interrupted apply", ms, c)
                drop(ms, c)
        _clear_snapshot(ms)
        return "dropped"
    why = None if redo else _stale(ms, snap)
    if why:
        raise AlakazamError(
            f"ms: {ms} does not open (a table file is damaged: a program was killed while writing it). The "
            f"table files alakazam saved in {snap} before a run of its own that was killed earlier are not "
            f"put back, because the table changed since ({why}): putting them back would undo those changes. "
            "Restore the MS from a backup (or remove that directory once the MS is repaired)")
    log.warning("%s: a run (apply, akflag or a flag restore) was killed while writing and the table no "
                "longer opens; restoring the table description saved before it started", ms)
    with _interrupts_deferred():        # Ctrl-C / SIGTERM wait for the files; a kill -9 is redone (RESTORING)
        if not redo:
            open(os.path.join(snap, RESTORING), "w").close()
        for f in sorted(os.listdir(snap)):
            if f in ("files.txt", ALIVE, ADDED, RESTORING):
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
        raise AlakazamError(f"ms: {ms} cannot be opened even after undoing the interrupted run; restore it "
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
        _record_rewrite(ms, name)
        bad = undefined_rows(ms, name)
        if len(bad):
            log.warning("%s: %d rows of %s held no data (interrupted earlier run?); initialised from %s",
                        ms, len(bad), name, like)
            _fill_rows(ms, name, like, bad)
        return name, False
    _MADE[os.path.realpath(str(ms))] = part     # before it exists: an interrupt from here on drops it
    before = set(os.listdir(str(ms)))
    ms_io.ensure_column(ms, part, like=like, init=init)
    _record_added(ms, set(os.listdir(str(ms))) - before)
    from .ms import writer

    writer(ms).mark_column(part, APPLY_OUTPUT, str(name))     # survives the rename (commit)
    return part, True


#: in the snapshot: the existing columns the run rewrites in place (:func:`rewritten_by_killed`)
REWRITES = "rewrites.txt"


def _record_rewrite(ms, name):
    """Column ``name`` is rewritten in place by this run: listed in its snapshot, so that a kill -9
    leaves a trace a solve from that column can warn about (:func:`rewritten_by_killed`)."""
    snap = os.path.join(str(ms), SNAPSHOT)
    if _DEPTH.get(os.path.realpath(str(ms)), 0) == 0 or not os.path.isdir(snap):
        return
    with open(os.path.join(snap, REWRITES), "a") as fh:
        fh.write(f"{name}\n")


def rewritten_by_killed(ms, name) -> bool:
    """Whether a run writing ``ms`` left its snapshot (killed, or still running in another process)
    while it rewrote column ``name`` in place: some rows may hold its new values, the others the old
    ones."""
    path = os.path.join(str(ms), SNAPSHOT, REWRITES)
    if _DEPTH.get(os.path.realpath(str(ms)), 0) > 0 or not os.path.exists(path):
        return False
    with open(path) as fh:
        return name in fh.read().split()


def warn_rewritten(ms, name):
    """Log a WARNING when a killed (or running) in-place apply was rewriting column ``name`` of ``ms``
    (:func:`rewritten_by_killed`); said by a solve from that column and by akinfo."""
    if rewritten_by_killed(ms, name):
        log.warning("%s: an apply rewriting %s in place was interrupted (killed) or is still running: some "
                    "rows may hold its new correction and the others the old one; re-run that apply before "
                    "solving from %s", ms, name, name)


def _record_added(ms, names):
    """The table files this run added, listed in its snapshot (if it took one): :func:`_stale` does not
    take them for another program's."""
    snap = os.path.join(str(ms), SNAPSHOT)
    if not names or _DEPTH.get(os.path.realpath(str(ms)), 0) == 0 or not os.path.isdir(snap):
        return
    path = os.path.join(snap, ADDED)
    have = set()
    if os.path.exists(path):
        with open(path) as fh:
            have = set(fh.read().split())
    with open(path + ".tmp", "w") as fh:
        fh.write("\n".join(sorted(have | set(names))))
    os.replace(path + ".tmp", path)


_MADE = {}      # realpath of the MS -> the partial column this process is creating or writing


def apply_outputs(ms, names=None) -> list:
    """The columns of ``ms`` (among ``names``, default all) that apply created (:data:`APPLY_OUTPUT`)."""
    try:
        with _table(ms) as t:
            cols = t.colnames() if names is None else [c for c in names if c in t.colnames()]
            return [c for c in cols if t.getcolkeywords(c).get(APPLY_OUTPUT) == c]
    except RuntimeError:        # unreadable: none (reported where the MS is read)
        return []


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
