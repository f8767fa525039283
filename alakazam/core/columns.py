"""The output column of apply: written so that an interrupted run never leaves unreadable rows.

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
* casacore rewrites the new column's storage-manager header (``table.fN``) at every flush; a kill -9
  in the middle of that write can leave a table that casacore cannot open at all (measured: 1 in ~25
  random kills of the fault-injection test).  So before the partial column is added, ``table.dat``,
  ``table.info``, ``table.lock`` (casacore's sync data) and the list of the MS's files are saved in ``<ms>/alakazam.partial-column.bak``;
  the snapshot is removed once the column is renamed (or dropped).  The next apply on that MS
  (:func:`recover`, under the MS lock) finds the snapshot: if the table opens, the partial column is
  dropped; if it does not, the saved files (the table as it was before the column was added) are put back and the files the interrupted run added are removed.  Other columns'
  data (FLAG written with propagate_flags) stay as written and are restorable from their flag version.
"""

from __future__ import annotations

import logging
import os
import shutil

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
    """Row numbers whose cell of array column ``name`` holds no array."""
    with _table(ms) as t:
        return np.array([r for r in range(t.nrows()) if not t.iscelldefined(name, r)], np.int64)


def _fill_rows(ms, name, like, rows, block_rows=20000):
    with _table(ms, readonly=False) as t:
        for s0 in range(0, len(rows), block_rows):
            q = t.selectrows(rows[s0:s0 + block_rows])
            q.putcol(name, q.getcol(like))
            q.close()


SNAPSHOT = "alakazam.partial-column.bak"
# table.lock too: casacore keeps sync data there (rows, columns, storage-manager counters) that must
# match table.dat (a missing or newer one makes the restored table fail to open)
_SAVED = ("table.dat", "table.info", "table.lock")


def _snapshot(ms):
    snap = os.path.join(str(ms), SNAPSHOT)
    tmp = snap + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for f in _SAVED:
        if os.path.exists(os.path.join(str(ms), f)):
            shutil.copy2(os.path.join(str(ms), f), os.path.join(tmp, f))
    with open(os.path.join(tmp, "files.txt"), "w") as fh:
        fh.write("\n".join(sorted(os.listdir(str(ms)))))
    os.replace(tmp, snap)


def _clear_snapshot(ms):
    shutil.rmtree(os.path.join(str(ms), SNAPSHOT), ignore_errors=True)


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
    (the table did not open; its description before the column was added was put back)."""
    snap = os.path.join(str(ms), SNAPSHOT)
    shutil.rmtree(snap + ".tmp", ignore_errors=True)
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
    log.warning("%s: an apply was killed while adding its output column and the table no longer opens; "
                "restoring the table description saved before the column was added", ms)
    for f in _SAVED:
        if not os.path.exists(os.path.join(snap, f)):
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
    _snapshot(ms)
    ms_io.ensure_column(ms, part, like=like, init=init)
    return part, True


def commit(ms, written, name):
    """Give the fully written partial column its final name."""
    if written == name:
        return
    with _table(ms, readonly=False) as t:
        t.renamecol(written, name)
    _clear_snapshot(ms)


def drop(ms, written):
    """Remove a partial column this run created."""
    with _table(ms, readonly=False) as t:
        if written in t.colnames():
            t.removecols([written])
    _clear_snapshot(ms)
