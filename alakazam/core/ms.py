"""One Measurement Set handle per task: the metadata read once, the main table shared by the reads,
and every write of the MS's tables.

Convention
----------
A task (solve block, apply, flag, info, ...) opens ``with MeasurementSet.open(path) as ms:``.  While the
handle is open (nesting: the outermost ``open`` owns it) every read of that MS in this process goes
through it, also the reads of the :mod:`alakazam.core.ms_io` functions that other modules call by path:

* :func:`alakazam.core.ms_io.read_meta` returns the handle's metadata, read once
  (:attr:`MeasurementSet.meta`; the :class:`~alakazam.core.ms_io.MSMeta` is never modified by its users);
* read-only opens of the main table by ``ms_io`` (row selection, chunked reads, column checks) borrow
  the handle's table (:func:`borrow`) instead of opening it again; sub-tables still open their own
  table, as before.  After a read of data columns
  (:func:`alakazam.core.ms_io.read_rows`) the handle closes its table and reopens it at its next use:
  casacore keeps the tiled-storage caches of a read (about the size of the read) until the table
  closes, and a table held open through the solve would add them to the peak memory (measured:
  bench_flow tier 2, peak / largest read x2.25 instead of x2.07).

Writes
------
Every write of an MS goes through a :class:`MeasurementSet` (the open handle of the path, or a
transient one when none is open -- :func:`writer`):

* an existing MS (apply, calwt, the output column of core/columns.py): :meth:`~MeasurementSet.write_column`
  (chunked: runs of consecutive rows with ``putcol(start, n)``, else a row selection),
  :meth:`~MeasurementSet.add_column` (tiled, initialised from a template column),
  :meth:`~MeasurementSet.fill_rows`, :meth:`~MeasurementSet.rename_column`,
  :meth:`~MeasurementSet.remove_column`.  :func:`alakazam.core.ms_io.write_column` and
  :func:`~alakazam.core.ms_io.ensure_column` are these methods called by path.  Each write opens the
  table read-write for that write and closes it, exactly the casacore calls of before the handle owned
  them (so apply is not slower), and counts ``STATS['write_opens']``.  The first write releases the
  handle's read-only table (:meth:`~MeasurementSet.release_table`): no read-only table of ours is held
  open beside the writes (column adds/renames, the kill -9 recovery of core/columns.py).
  DATA and MODEL_DATA are never written (AlakazamError); FLAG and FLAG_ROW only inside
  :func:`flag_writes` of that MS, which :func:`alakazam.calibration.flagsafety.flag_writes` enters once
  the flag version is saved and its in-progress marker exists; WEIGHT and WEIGHT_SPECTRUM (calwt) only
  inside :func:`weight_writes`, which :func:`alakazam.core.weightbackup.weight_writes` enters once their
  backup is saved.
* a new MS (the simulator): :meth:`MeasurementSet.create` makes it and returns its handle, the only
  kind whose :meth:`~MeasurementSet.write_table` hands out read-write main and sub-tables (and which
  may write DATA and MODEL_DATA: they are being made).

* akflag (:mod:`alakazam.flagging.engine`, and its one writer under dask): :meth:`~MeasurementSet.flag_table`,
  the main table read-write for the run's FLAG / FLAG_ROW writes, only inside :func:`flag_writes`.

Not through the handle: restoring saved state (:mod:`alakazam.core.flagversions` restore,
:mod:`alakazam.core.weightbackup` restore and :mod:`alakazam.core.undo` rollback write back what was
saved).

Outside a handle every ``ms_io`` function behaves as it always did (one open per call), so callers that
do not open a handle -- dask workers, scripts, other engineers' code -- are unchanged.  The counters
:data:`STATS` (``main_opens``, ``meta_reads``, ``write_opens``) count real opens of main tables,
metadata reads and read-write opens; tests pin that a solve block reads the metadata once and opens
its main table once plus once per data read, and that every read-write open of apply and of the
simulator is the handle's (tests/test_ms_handle_writes.py).

Locking: the handle's table is opened read-only with casacore's default (auto) locking, so another
process may still write the MS between our reads; alakazam's own writer lock of a caltable or MS
(:mod:`alakazam.core.locks`) is unchanged.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from ..errors import AlakazamError

#: counters of real main-table opens, metadata reads and read-write opens (any table of an MS) in this
#: process (tests, benchmarks)
STATS = {"main_opens": 0, "meta_reads": 0, "write_opens": 0}

#: columns never written in an existing MS (docs/conventions.md)
NEVER_WRITTEN = ("DATA", "MODEL_DATA")
#: columns written only inside :func:`flag_writes` (a saved flag version)
FLAG_COLUMNS = ("FLAG", "FLAG_ROW")
#: written (calwt) only inside :func:`weight_writes`, once their backup is saved (core/weightbackup.py)
WEIGHT_COLUMNS = ("WEIGHT", "WEIGHT_SPECTRUM")

_ACTIVE = {}                    # normalised path -> MeasurementSet
_LOCK = threading.Lock()
_FLAG_WRITES = {}               # normalised path -> depth of flag_writes
_WEIGHT_WRITES = {}             # normalised path -> depth of weight_writes
_WRITES = {}                    # (normalised path, column) -> writes begun (writes_begun, flag_written)


def _key(path) -> str:
    return os.path.realpath(os.path.abspath(str(path)))


class MeasurementSet:
    """Handle of one MS: :meth:`table` (the main table, opened once, read-only), :attr:`meta` (read
    once), :meth:`row_counts`, :meth:`row_numbers`, :meth:`read_rows`, :meth:`check_columns`,
    :meth:`flag_versions`, :meth:`writer_lock`; the writes :meth:`write_column`, :meth:`add_column`,
    :meth:`fill_rows`, :meth:`rename_column`, :meth:`remove_column` (and :meth:`write_table` of a new
    MS).  Open it with :meth:`open` (a context manager); make a new MS with :meth:`create`."""

    def __init__(self, path, new=False):
        self.path = str(path)
        self.new = bool(new)            # made by create(): its tables are being written from scratch
        self._table = None
        self._meta = None
        self._depth = 0
        self._lend = True               # ms_io's read-only opens borrow the main table
        self._row_index = None          # (state, RowIndex) of the main table (core/rowindex.py)

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
        """:class:`alakazam.core.ms_io.MSMeta` of the MS, read once per handle (or kept from an earlier
        task of the run when the MS is unchanged: :mod:`alakazam.core.metacache`)."""
        if self._meta is None:
            from . import metacache, ms_io

            self._meta = metacache.meta(self.path, ms_io.read_meta_uncached)
        return self._meta

    # ---- row selection and reads (the ms_io functions, which borrow this handle's table)
    def where(self, ddid, field_ids, scans=None, time_range=None, rowsel=None) -> str:
        """TaQL WHERE clause of a (DATA_DESC_ID, fields, scans, time range, row selection) selection."""
        from . import ms_io

        return ms_io.where_clause(ddid, field_ids, scans, time_range, rowsel)

    def row_counts(self, ddid, field_ids, scans=None) -> dict:
        """Rows per (FIELD_ID, SCAN_NUMBER) of one DATA_DESC_ID: ``{(field, scan): rows}`` (one query)."""
        import numpy as np

        from . import rowindex
        from .ms_io import _rows_where

        idx = rowindex.get(self.path, self.table())     # the MS's row index (core/rowindex.py)
        if idx is not None:
            return idx.counts(ddid, field_ids, scans)
        # the rows of the WHERE found from the columns (as TaQL's SELECT ... WHERE, in a third of its time)
        rows, v = _rows_where(self.table(), ddid, field_ids, scans, cols=("FIELD_ID", "SCAN_NUMBER"))
        if len(rows) == 0:
            return {}
        f = np.asarray(v["FIELD_ID"], np.int64)
        sc = np.asarray(v["SCAN_NUMBER"], np.int64)
        # one int64 key per row, ordered as the (field, scan) pairs (np.unique of the pairs with axis=0:
        # 50 ms for 121k rows, this 5 ms); the pairs themselves when the key could overflow
        f0, s0 = (int(f.min()), int(sc.min()))
        span = int(sc.max()) - s0 + 1
        if (int(f.max()) - f0 + 1) * span >= 2 ** 62:
            pairs, n = np.unique(np.stack([f, sc], axis=1), axis=0, return_counts=True)
            return {(int(a), int(b)): int(c) for (a, b), c in zip(pairs, n)}
        keys, n = np.unique((f - f0) * span + (sc - s0), return_counts=True)
        return {(int(k // span) + f0, int(k % span) + s0): int(c) for k, c in zip(keys, n)}

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


    # ---- writes (module doc, "Writes")
    @classmethod
    def create(cls, path, desc, dminfo):
        """A new, empty MS at ``path`` (casacore ``default_ms`` with the extra main-table columns
        ``desc`` stored by the data managers ``dminfo``); returns its handle (``new``), whose
        :meth:`write_table` opens its tables read-write."""
        from casacore.tables import default_ms

        default_ms(str(path), desc, dminfo).close()
        return cls(path, new=True)

    def _open_rw(self, sub=None):
        self.release_table()
        from casacore.tables import table

        STATS["write_opens"] += 1
        return table(self.path if sub is None else f"{self.path}::{sub}", readonly=False, ack=False)

    def write_table(self, sub=None):
        """``with ms.write_table() as t`` (or ``write_table('ANTENNA')``): the main table (or a
        sub-table) opened read-write, closed on exit -- only for a new MS (:meth:`create`); an existing
        MS is written with the column methods, which keep its safety rules."""
        if not self.new:
            raise AlakazamError(f"ms: {self.path} exists; its tables are written only through the "
                                "MeasurementSet column methods (write_column, add_column, ...)")
        return self._open_rw(sub)

    def flag_table(self):
        """``with ms.flag_table() as t``: the main table read-write for a run of FLAG / FLAG_ROW writes
        (akflag writes its units' flags through ``t``; it reads through it too) -- only inside
        :func:`flag_writes` of this MS (a saved flag version).  Each write through ``t`` calls
        :func:`note_flag_write` first (flagging/engine._put_flags)."""
        self._check_write("FLAG")
        return self._open_rw()

    def _check_write(self, name):
        if self.new:
            return
        if name in NEVER_WRITTEN:
            raise AlakazamError(f"{name} of {self.path} is never written by alakazam (the column to write "
                                "must be CORRECTED_DATA or a new column)")
        if name in FLAG_COLUMNS and not _FLAG_WRITES.get(_key(self.path)):
            raise AlakazamError(f"{name} of {self.path} is written only after its flag version is saved "
                                "(inside core.ms.flag_writes; calibration/flagsafety.py)")
        if name in WEIGHT_COLUMNS and not _WEIGHT_WRITES.get(_key(self.path)):
            raise AlakazamError(f"{name} of {self.path} is written only after its backup is saved "
                                "(inside core.ms.weight_writes; core/weightbackup.py)")

    def write_column(self, name, rownr, values, chans=None):
        """Write ``values`` (row, chan, corr) to rows ``rownr`` of column ``name`` (channel subset
        ``chans`` optional): runs of consecutive rows straight into the table (``putcol(start, n)``,
        faster than putcol on a row selection), else through a row selection."""
        from . import undo, weightbackup
        from .ms_io import _row_runs

        self._check_write(name)
        note_write(self.path, name)
        if undo.active() is not None:       # an interruptible task: keep the old rows (core/undo.py)
            undo.active().before_write(self.path, name, rownr)
        with self._open_rw() as t:
            rownr = np.asarray(rownr)
            if len(rownr) == 0:
                return
            runs = _row_runs(rownr)
            if chans is None and len(runs) <= max(1, len(rownr) // 16):
                values = np.asarray(values)
                weightbackup.intend(self.path, name, rownr, values)     # WEIGHT: what a kill would leave
                for r0, n, i0 in runs:
                    t.putcol(name, values[i0:i0 + n], r0, n)
                return
            q = t.selectrows(rownr)
            if chans is not None:
                full = q.getcol(name)
                full[:, chans] = values
                values = full
            weightbackup.intend(self.path, name, rownr, values)
            q.putcol(name, values)
            q.close()

    def add_column(self, name, like="DATA", init=True, block_rows=20000) -> bool:
        """Create column ``name`` like column ``like`` (same value type and per-row shape) if it is
        missing; True when created, False when it existed.

        The new column uses tiled storage (TiledShapeStMan, which allows the per-DDID channel counts to
        differ) and, with ``init``, is initialised with a copy of ``like`` in blocks of ``block_rows``
        rows, so every row holds an array (CASA convention for CORRECTED_DATA) even when only a subset
        is written later."""
        from casacore.tables import makecoldesc

        from . import undo

        with self._open_rw() as t:
            if name in t.colnames():
                return False
            self._check_write(name)
            if like not in t.colnames():
                raise AlakazamError(f"column {like!r} (template for the new column {name!r}) is not in "
                                    f"{self.path}")
            desc = dict(t.getcoldesc(like))
            desc.pop("dataManagerType", None)
            desc.pop("dataManagerGroup", None)
            cd = makecoldesc(name, desc)
            cd["desc"]["dataManagerType"] = "TiledShapeStMan"
            cd["desc"]["dataManagerGroup"] = f"{name}_dm"
            dminfo = {"TYPE": "TiledShapeStMan", "NAME": f"{name}_dm",
                      "SPEC": {"DEFAULTTILESHAPE": np.array([4, 64, 128], np.int32)}}
            t.addcols(cd, dminfo)
            if undo.active() is not None:
                undo.active().created_column(self.path, name)
            if init and t.nrows():
                dd = t.getcol("DATA_DESC_ID")
                for d in np.unique(dd):
                    rows = np.nonzero(dd == d)[0]
                    for s0 in range(0, len(rows), block_rows):
                        r = rows[s0:s0 + block_rows]
                        q = t.selectrows(r)
                        q.putcol(name, q.getcol(like))
                        q.close()
        return True

    def fill_rows(self, name, like, rows, block_rows=20000):
        """Copy column ``like`` into column ``name`` at ``rows`` (rows of ``name`` holding no array)."""
        self._check_write(name)
        with self._open_rw() as t:
            for s0 in range(0, len(rows), block_rows):
                q = t.selectrows(rows[s0:s0 + block_rows])
                q.putcol(name, q.getcol(like))
                q.close()

    def mark_column(self, name, keyword, value):
        """Set column keyword ``keyword`` of column ``name`` (e.g. core/columns.APPLY_OUTPUT)."""
        self._check_write(name)
        with self._open_rw() as t:
            t.putcolkeyword(name, keyword, value)

    def rename_column(self, old, new):
        self._check_write(old)
        with self._open_rw() as t:
            t.renamecol(old, new)

    def remove_column(self, name):
        """Remove column ``name`` if present (a partial column this run or a killed one created)."""
        self._check_write(name)
        with self._open_rw() as t:
            if name in t.colnames():
                t.removecols([name])


def writer(path) -> MeasurementSet:
    """The handle that writes ``path``: the open one, or a transient one (it holds no table: every
    write opens and closes its own)."""
    return active(path) or MeasurementSet(path)


@contextlib.contextmanager
def _permitted(counts, path):
    """Count ``path`` in ``counts`` (a permission: writes of some columns allowed) while the block runs."""
    k = _key(path)
    with _LOCK:
        counts[k] = counts.get(k, 0) + 1
    try:
        yield
    finally:
        with _LOCK:
            counts[k] -= 1
            if not counts[k]:
                del counts[k]


def flag_writes(path):
    """``with flag_writes(ms):`` FLAG / FLAG_ROW of ``ms`` may be written through the handle (entered by
    :func:`alakazam.calibration.flagsafety.flag_writes` once the flag version is saved)."""
    return _permitted(_FLAG_WRITES, path)


def note_write(path, name):
    """A write of column ``name`` of ``path`` begins (:func:`writes_begun`)."""
    k = (_key(path), str(name))
    with _LOCK:
        _WRITES[k] = _WRITES.get(k, 0) + 1


def note_flag_write(path):
    """A FLAG / FLAG_ROW write of ``path`` begins (:func:`flag_written`)."""
    note_write(path, "FLAG")


def writes_begun(path, name) -> int:
    """How many writes of column ``name`` of ``path`` this process began
    (:meth:`~MeasurementSet.write_column`): compared before and after a run, whether it may have changed
    the column (apply: an apply that failed before its first write does not say the column is half
    rewritten)."""
    return _WRITES.get((_key(path), str(name)), 0)


def flag_written(path) -> int:
    """How many FLAG / FLAG_ROW writes of ``path`` this process began (:meth:`~MeasurementSet.write_column`
    of FLAG, akflag's writes through :meth:`~MeasurementSet.flag_table`): compared before and after a
    run, whether it may have changed FLAG (calibration/flagsafety.flag_writes: a run that failed before
    its first FLAG write leaves no in-progress marker)."""
    return sum(writes_begun(path, c) for c in FLAG_COLUMNS)


def weight_writes(path):
    """``with weight_writes(ms):`` WEIGHT / WEIGHT_SPECTRUM of ``ms`` may be written through the handle
    (entered by :func:`alakazam.core.weightbackup.weight_writes` once their backup is saved)."""
    return _permitted(_WEIGHT_WRITES, path)


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
