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
"""

from __future__ import annotations

import logging

import numpy as np

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
    ms_io.ensure_column(ms, part, like=like, init=init)
    return part, True


def commit(ms, written, name):
    """Give the fully written partial column its final name."""
    if written == name:
        return
    with _table(ms, readonly=False) as t:
        t.renamecol(written, name)


def drop(ms, written):
    """Remove a partial column this run created."""
    with _table(ms, readonly=False) as t:
        if written in t.colnames():
            t.removecols([written])
