"""Undo for an interrupted task: the MS and the output files as they were before it.

:func:`transaction` is used by akshell's ``go`` (and Python-style task calls in the shell): when the
task is interrupted (Ctrl-C, ``KeyboardInterrupt``), everything it changed is put back:

- MS columns: while a transaction is active, :func:`alakazam.core.ms_io.write_column` first saves the
  current values of the rows it is about to overwrite (whole rows, in a temporary directory next to
  nothing the user owns: ``tempfile.mkdtemp``) and :func:`alakazam.core.ms_io.ensure_column` notes
  the columns it creates.  Rollback writes the saved rows back in reverse order and removes the
  created columns (a column created by the task is never saved row by row: it is simply dropped).
- files (solution tables): a copy of each existing output file is taken before the task; rollback
  puts it back, or removes the file when it did not exist before.
- FLAG: put back from the flag version(s) the task saved before its first FLAG write (akflag's writes
  are not journaled row by row), then the new files in ``<ms>.flagversions`` are removed (and the
  directory too when the task made it and nothing else is in it).

A task that fails with an error is *not* rolled back (its own documented behaviour applies: e.g. the
solve steps written before a failing step stay); only an interrupt is.  The rollback itself ignores
further Ctrl-C.  Cost: one extra read and write of the rows a task overwrites in an existing column.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager

import numpy as np

_ACTIVE = None


def active():
    """The running :class:`MSJournal`, or None outside a transaction."""
    return _ACTIVE


class MSJournal:
    """Old values of MS rows overwritten during a transaction, and the columns it created."""

    def __init__(self):
        self.dir = None
        self.records = []           # ("write", ms, col, rownr, npy) | ("create", ms, col)
        self.created = set()

    def created_column(self, ms, name):
        key = (os.path.abspath(str(ms)), name)
        self.created.add(key)
        self.records.append(("create", key[0], name))

    def before_write(self, ms, name, rownr):
        key = (os.path.abspath(str(ms)), name)
        if key in self.created or len(rownr) == 0:
            return
        from .ms_io import _table

        with _table(str(ms)) as t:
            q = t.selectrows(np.asarray(rownr))
            old = q.getcol(name)
            q.close()
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="alakazam-undo-")
        path = os.path.join(self.dir, f"{len(self.records)}.npy")
        np.save(path, old)
        self.records.append(("write", key[0], name, np.asarray(rownr, np.int64).copy(), path))

    def rollback(self):
        """Put the saved rows back and remove the created columns, each MS under its writer lock and
        inside a kill -9 snapshot (core/columns.py), as every other write of the MS: another run cannot
        write it meanwhile, and a kill of the shell inside casacore's header flush is undone by the next
        task.  An MS whose lock another run took since is left as it is, and said (its saved rows are
        kept in the journal's directory)."""
        import logging

        from . import columns, locks
        from .ms_io import _table

        kept = False
        for ms in dict.fromkeys(rec[1] for rec in reversed(self.records)):
            try:
                with locks.writer_lock(ms, "ms"):
                    columns.recover(ms)
                    columns.begin_writes(ms)
                    try:
                        self._rollback_ms(ms, _table)
                    finally:
                        columns.end_writes(ms)
            except locks.LockedError as e:
                kept = True
                logging.getLogger("alakazam.tasks").error(
                    "undo: the rows the interrupted task overwrote in %s were NOT put back: %s; they are "
                    "kept in %s (one .npy per write)", ms, e, self.dir)
        if not kept:
            self.discard()

    def _rollback_ms(self, ms, _table):
        for rec in reversed(self.records):
            if rec[1] != ms:
                continue
            if rec[0] == "write":
                _, ms, name, rownr, path = rec
                with _table(ms, readonly=False) as t:
                    q = t.selectrows(rownr)
                    q.putcol(name, np.load(path))
                    q.close()
            else:
                _, ms, name = rec
                with _table(ms, readonly=False) as t:
                    if name in t.colnames():
                        t.removecols([name])

    def discard(self):
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        self.records = []


class _FileSnapshot:
    def __init__(self, paths):
        self.saved = []              # (path, backup or None)
        self.tmpdir = None
        for p in paths:
            p = os.path.abspath(os.path.expanduser(str(p)))
            if os.path.isfile(p):
                if self.tmpdir is None:
                    self.tmpdir = tempfile.mkdtemp(prefix="alakazam-undo-files-")
                b = os.path.join(self.tmpdir, f"{len(self.saved)}")
                shutil.copy2(p, b)
                self.saved.append((p, b))
            else:
                self.saved.append((p, None))

    def rollback(self):
        for p, b in self.saved:
            if b is None:
                if os.path.isfile(p):
                    os.remove(p)
            else:
                shutil.copy2(b, p)
        self.discard()

    def discard(self):
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None


def _listing(d):
    return set(os.listdir(d)) if d and os.path.isdir(d) else set()


@contextmanager
def _no_sigint():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _restore_new_versions(ms, new_files) -> bool:
    """FLAG and FLAG_ROW put back from the flag versions the interrupted task saved (``new_files`` of
    ``<ms>.flagversions``), the latest first so that the earliest -- the flags before the task's first
    FLAG write -- is what stays.  Not every FLAG write is journaled row by row (akflag writes through
    one read-write table), so the saved version is what undoes them.  Returns False (the versions are
    then kept, with their restore command in the log) when a restore fails."""
    import logging

    from . import flagversions

    fv = flagversions.versions_dir(ms)
    names = {f[len("flags."):].removesuffix(".npz") for f in new_files      # tables, older .npz files
             if f.startswith("flags.") and (f.endswith(".npz") or os.path.isdir(os.path.join(fv, f)))}
    if not names:
        return True
    order = [v["name"] for v in flagversions.list_versions(ms) if v["name"] in names]
    try:
        for name in reversed(order):
            flagversions.restore(ms, name)
    except Exception as e:          # noqa: BLE001 -- keep the versions: the user can still restore
        from ..calibration.flagsafety import restore_command

        logging.getLogger("alakazam").error("undo: FLAG could not be restored from %s (%s); the flag "
                                            "versions are kept; restore FLAG with: %s", ", ".join(order), e,
                                            restore_command(ms, order[0]) if order else "-")
        return False
    if order:
        logging.getLogger("alakazam").warning("undo: FLAG put back as it was before the task (from flag "
                                              "version %s, then removed)", order[0])
    return True


@contextmanager
def transaction(files=(), ms=None):
    """Run a task body; on KeyboardInterrupt restore ``files`` and every MS change, then re-raise.

    Parameters
    ----------
    files : paths of output files (solution tables) to restore.
    ms : the task's MS, or its list of MSs (akapply's ``vis``: alakazam/multims.py); each one's FLAG
        is put back and its ``.flagversions`` directory cleaned of new files on rollback.
    """
    global _ACTIVE
    if _ACTIVE is not None:          # nested: the outer transaction covers it
        yield _ACTIVE
        return
    snap = _FileSnapshot([f for f in files if f])
    mss = [m for m in ((ms,) if isinstance(ms, (str, os.PathLike)) else (ms or ())) if m]
    before = {m: _listing(str(m).rstrip("/") + ".flagversions") for m in mss}
    had_fv = {m for m in mss if os.path.isdir(str(m).rstrip("/") + ".flagversions")}
    j = MSJournal()
    _ACTIVE = j
    try:
        yield j
    except KeyboardInterrupt:
        _ACTIVE = None
        from . import signals

        signals.delivered()
        with _no_sigint():
            from ..io import hdf5

            hdf5.remove_interrupted()   # a solution table's temporary left where no handler ran
            j.rollback()
            snap.rollback()
            for m, was in before.items():
                fv = str(m).rstrip("/") + ".flagversions"
                new = _listing(fv) - was
                if _restore_new_versions(m, new):      # FLAG as before the task, then its backups go
                    for f in new:
                        p = os.path.join(fv, f)
                        if os.path.isfile(p):
                            os.remove(p)
                        elif os.path.isdir(p):          # a flag-version table (or a save's temporary)
                            shutil.rmtree(p, ignore_errors=True)
                    from . import flagversions

                    flagversions.unlist_missing(m)     # their FLAG_VERSION_LIST lines (CASA reads it)
                    if m not in had_fv:         # the task made <ms>.flagversions: gone if now empty
                        try:
                            os.rmdir(fv)
                        except OSError:         # not empty (or already gone): kept
                            pass
        raise
    finally:
        _ACTIVE = None
        j.discard()
        snap.discard()
