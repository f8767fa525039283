"""One Measurement Set handle per task: the metadata read once, the main table shared by the reads.

Convention
----------
A task (solve block, apply, flag, info, ...) opens ``with MeasurementSet.open(path) as ms:``.  While the
handle is open (nesting: the outermost ``open`` owns it) every read of that MS in this process goes
through it, also the reads of the :mod:`alakazam.core.ms_io` functions that other modules call by path:

* :func:`alakazam.core.ms_io.read_meta` returns the handle's metadata, read once
  (:attr:`MeasurementSet.meta`; the :class:`~alakazam.core.ms_io.MSMeta` is never modified by its users);
* read-only opens of the main table by ``ms_io`` (row selection, chunked reads, column checks) borrow
  the handle's table (:func:`borrow`) instead of opening it again; writes (``readonly=False``) and
  sub-tables still open their own table, as before.  After a read of data columns
  (:func:`alakazam.core.ms_io.read_rows`) the handle closes its table and reopens it at its next use:
  casacore keeps the tiled-storage caches of a read (about the size of the read) until the table
  closes, and a table held open through the solve would add them to the peak memory (measured:
  bench_flow tier 2, peak / largest read x2.25 instead of x2.07).  A task that writes the MS (apply) calls
  :meth:`MeasurementSet.release_table` before its first write: from then on no read-only table of
  ours is held open beside the writes (column adds/renames, the kill -9 recovery of core/columns.py).

Outside a handle every ``ms_io`` function behaves as it always did (one open per call), so callers that
do not open a handle -- dask workers, scripts, other engineers' code -- are unchanged.  The counters
:data:`STATS` (``main_opens``, ``meta_reads``) count real opens of main tables and metadata reads;
tests pin that a solve block reads the metadata once and opens its main table once plus once per
data read.

Locking: the handle's table is opened read-only with casacore's default (auto) locking, so another
process may still write the MS between our reads; alakazam's own writer lock of a caltable or MS
(:mod:`alakazam.core.locks`) is unchanged.
"""

from __future__ import annotations

import contextlib
import os
import threading

#: counters of real main-table opens and metadata reads in this process (tests, benchmarks)
STATS = {"main_opens": 0, "meta_reads": 0}

_ACTIVE = {}                    # normalised path -> MeasurementSet
_LOCK = threading.Lock()


def _key(path) -> str:
    return os.path.realpath(os.path.abspath(str(path)))


class MeasurementSet:
    """Handle of one MS: :meth:`table` (the main table, opened once, read-only), :attr:`meta` (read
    once), :meth:`row_counts`, :meth:`row_numbers`, :meth:`read_rows`, :meth:`check_columns`,
    :meth:`flag_versions`, :meth:`writer_lock`.  Open it with :meth:`open` (a context manager)."""

    def __init__(self, path):
        self.path = str(path)
        self._table = None
        self._meta = None
        self._depth = 0
        self._lend = True               # ms_io's read-only opens borrow the main table

    # ---- life cycle
    @classmethod
    @contextlib.contextmanager
    def open(cls, path):
        """``with MeasurementSet.open(path) as ms``: the process-wide handle of ``path`` (the same
        object when already open: the outermost ``open`` closes it)."""
        k = _key(path)
        with _LOCK:
            h = _ACTIVE.get(k)
            if h is None:
                h = _ACTIVE[k] = cls(path)
            h._depth += 1
        try:
            yield h
        finally:
            with _LOCK:
                h._depth -= 1
                if h._depth == 0:
                    _ACTIVE.pop(k, None)
                    h.close()

    def close(self):
        if self._table is not None:
            self._table.close()
            self._table = None

    def release_table(self):
        """Before this process writes the MS (apply, flag): close the read-only main table and stop
        lending it, so every later open is the caller's own, as without a handle (the metadata stays)."""
        self.close()
        self._lend = False

    def table(self):
        """The main table, read-only, opened on first use and kept until the handle closes."""
        if self._table is None:
            from casacore.tables import table

            STATS["main_opens"] += 1
            self._table = table(self.path, ack=False)
        return self._table

    # ---- metadata
    @property
    def meta(self):
        """:class:`alakazam.core.ms_io.MSMeta` of the MS, read once per handle."""
        if self._meta is None:
            from . import ms_io

            self._meta = ms_io.read_meta_uncached(self.path)
        return self._meta

    # ---- row selection and reads (the ms_io functions, which borrow this handle's table)
    def where(self, ddid, field_ids, scans=None, time_range=None, rowsel=None) -> str:
        """TaQL WHERE clause of a (DATA_DESC_ID, fields, scans, time range, row selection) selection."""
        from . import ms_io

        return ms_io.where_clause(ddid, field_ids, scans, time_range, rowsel)

    def row_counts(self, ddid, field_ids, scans=None) -> dict:
        """Rows per (FIELD_ID, SCAN_NUMBER) of one DATA_DESC_ID: ``{(field, scan): rows}`` (one query)."""
        import numpy as np
        from casacore.tables import taql

        t = self.table()       # noqa: F841 -- the $t of the query
        q = taql(f"SELECT FIELD_ID, SCAN_NUMBER FROM $t WHERE {self.where(ddid, field_ids, scans)}")
        try:
            if q.nrows() == 0:
                return {}
            f = np.asarray(q.getcol("FIELD_ID"), np.int64)
            sc = np.asarray(q.getcol("SCAN_NUMBER"), np.int64)
        finally:
            q.close()
        pairs, n = np.unique(np.stack([f, sc], axis=1), axis=0, return_counts=True)
        return {(int(a), int(b)): int(c) for (a, b), c in zip(pairs, n)}

    def row_numbers(self, ddid, field_ids, scans=None, time_range=None, rowsel=None):
        from . import ms_io

        return ms_io.row_numbers(self.path, ddid, field_ids, scans, time_range, rowsel)

    def read_rows(self, ddid, field_ids, **kw):
        from . import ms_io

        return ms_io.read_rows(self.path, ddid, field_ids, **kw)

    def check_columns(self, names):
        from . import ms_io

        return ms_io.check_columns(self.path, names)

    def n_rows(self) -> int:
        return int(self.table().nrows())

    def writer_lock(self):
        """``with ms.writer_lock():`` alakazam's exclusive writer lock of this MS
        (:func:`alakazam.core.locks.writer_lock`, kind 'ms'): held by tasks that write it (apply)."""
        from . import locks

        return locks.writer_lock(self.path, "ms")

    def flag_versions(self):
        """The MS's saved flag versions (:func:`alakazam.core.flagversions.list_versions`)."""
        from . import flagversions

        return flagversions.list_versions(self.path)


def active(path):
    """The open handle of ``path`` in this process, or None."""
    if not _ACTIVE:
        return None
    return _ACTIVE.get(_key(path))


class _Borrowed:
    """``with`` on a borrowed table: yields it and does not close it (the handle owns it)."""

    def __init__(self, t):
        self._t = t

    def __enter__(self):
        return self._t

    def __exit__(self, *exc):
        return False


def borrow(path, **kw):
    """The handle's main table for a read-only ``with`` of ``path`` (None when no handle is open for
    it, or the open is not a plain read-only open of the main table)."""
    if kw or "::" in str(path):
        return None
    h = active(path)
    return None if h is None or not h._lend else _Borrowed(h.table())
