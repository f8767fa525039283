"""The rows of an MS by (DATA_DESC_ID, FIELD_ID, SCAN_NUMBER), found in one pass over the main table
(review 56a: the selection columns were read over all rows once per (field, SPW) unit, so an apply or
a solve cost grew with SPWs x fields: 32 SPWs x 3 fields = 96 full reads of DATA_DESC_ID and FIELD_ID).

:func:`alakazam.core.ms_io.row_numbers` (the one place where rows are chosen) asks :func:`get` for the
index of its MS and takes each selection's rows from it: the same ascending row numbers as the
column scan :func:`alakazam.core.ms_io._rows_where` (pinned by tests/test_rowindex.py).

Convention:

* **Scope.**  An index is kept while the MS has an open :class:`alakazam.core.ms.MeasurementSet`
  handle in this process (a task call: akapply, akcal, akflag ... open one for their whole run) --
  on the handle, dropped with it -- and inside :func:`alakazam.core.metacache.keep` (the YAML
  runner's blocks: one index for every block of the run while the MS is unchanged;
  ``ALAKAZAM_META_CACHE=0`` leaves only the handle's).  Elsewhere
  :func:`get` returns None and the rows are found by the column scan, as before.
* **Key.**  The state of the main table's files (name, size, modification time and inode:
  :func:`state`; also the tables a concatenated MS reads its rows from), checked at every use: a write
  to the main table by anyone (this process's own apply or flag writes too) makes the next use read the
  columns again.  An index is never served for an MS that changed since it was built.
* **Memory.**  One int32 array of row numbers (int64 beyond 2**31 rows) ordered by (DATA_DESC_ID,
  FIELD_ID, SCAN_NUMBER, row), plus one small int64 array per distinct (DATA_DESC_ID, FIELD_ID,
  SCAN_NUMBER) group: 4 B per row (40 MB for 10 million rows); no per-row Python objects.  A row
  selection's plain-column terms (OBSERVATION_ID, STATE_ID, time bounds: TaQL, as without an index) add
  one bool per row for each distinct selection, found once.
* ``ALAKAZAM_ROW_INDEX=0`` in the environment turns it off (every selection scans the columns).
"""

from __future__ import annotations

import os
import threading

import numpy as np

#: builds and uses of an index (tests count them)
STATS = {"builds": 0, "hits": 0}
_RUN = {}                       # real path -> (state, RowIndex), kept inside metacache.keep()
_LOCK = threading.RLock()


def _hook():
    from . import metacache

    if not any(c is _RUN for c in metacache._SCOPE.also):   # emptied with the run's metadata (keep())
        metacache._SCOPE.also.append(_RUN)


#: the main table's columns an index is built from
COLUMNS = ("DATA_DESC_ID", "FIELD_ID", "SCAN_NUMBER")


def enabled() -> bool:
    return os.environ.get("ALAKAZAM_ROW_INDEX", "1") != "0"


class RowIndex:
    """Rows of one MS grouped by (DATA_DESC_ID, FIELD_ID, SCAN_NUMBER): ``order`` holds the row numbers
    sorted by group then row; group ``g`` (key ``keys[g]`` = (ddid, field, scan)) is
    ``order[bounds[g]:bounds[g + 1]]``, ascending."""

    def __init__(self, n_rows, order, keys, bounds):
        self.n_rows = int(n_rows)
        self.order = order
        self.keys = keys                # (group, 3) int64
        self.bounds = bounds            # (group + 1,) int64
        self._rowsel = {}               # TaQL of a row selection -> (row,) bool mask over the MS's rows

    @property
    def nbytes(self) -> int:
        return int(self.order.nbytes + self.keys.nbytes + self.bounds.nbytes +
                   sum(m.nbytes for m in self._rowsel.values()))

    @classmethod
    def build(cls, t, block=None):
        """The index of the open main table ``t``: its selection columns read once, in blocks of
        ``block`` rows (:data:`alakazam.core.ms_io.WHERE_BLOCK`)."""
        from .ms_io import WHERE_BLOCK

        block = int(block or WHERE_BLOCK)
        n = int(t.nrows())
        STATS["builds"] += 1
        cols = {c: [] for c in COLUMNS}
        for r0 in range(0, n, block):
            nr = min(block, n - r0)
            for c in COLUMNS:
                cols[c].append(np.asarray(t.getcol(c, r0, nr), np.int64))
        itype = np.int32 if n < 2 ** 31 else np.int64
        if n == 0:
            return cls(0, np.zeros(0, itype), np.zeros((0, 3), np.int64), np.zeros(1, np.int64))
        dd, fl, sc = (np.concatenate(cols[c]) for c in COLUMNS)
        del cols
        # one int64 key per row when the three ranges fit in it, else a lexicographic sort
        lo = [int(v.min()) for v in (dd, fl, sc)]
        span = [int(v.max()) - a + 1 for v, a in zip((dd, fl, sc), lo)]
        if span[0] * span[1] * span[2] < 2 ** 62:
            key = ((dd - lo[0]) * span[1] + (fl - lo[1])) * span[2] + (sc - lo[2])
            order = np.argsort(key, kind="stable")
            ks = key[order]
            del key
            brk = np.flatnonzero(ks[1:] != ks[:-1]) + 1
            first = np.r_[0, brk]
            g = ks[first]
            keys = np.stack([g // (span[1] * span[2]) + lo[0], (g // span[2]) % span[1] + lo[1],
                             g % span[2] + lo[2]], axis=1)
        else:
            order = np.lexsort((sc, fl, dd))            # stable: ascending rows within a group
            d2, f2, s2 = dd[order], fl[order], sc[order]
            chg = (d2[1:] != d2[:-1]) | (f2[1:] != f2[:-1]) | (s2[1:] != s2[:-1])
            first = np.r_[0, np.flatnonzero(chg) + 1]
            keys = np.stack([d2[first], f2[first], s2[first]], axis=1)
        bounds = np.r_[first, n].astype(np.int64)
        return cls(n, order.astype(itype), np.ascontiguousarray(keys, np.int64), bounds)

    def _groups(self, ddid, field_ids, scans):
        m = self.keys[:, 0] == int(ddid)
        if field_ids is not None:
            m &= np.isin(self.keys[:, 1], np.asarray([int(f) for f in field_ids], np.int64))
        if scans is not None:
            m &= np.isin(self.keys[:, 2], np.asarray([int(s) for s in scans], np.int64))
        return np.flatnonzero(m)

    def rows(self, ddid, field_ids=None, scans=None) -> np.ndarray:
        """Ascending int64 row numbers of DATA_DESC_ID ``ddid``, ``field_ids`` and ``scans`` (None = all):
        those of :func:`alakazam.core.ms_io._rows_where` (without a time range)."""
        gs = self._groups(ddid, field_ids, scans)
        if len(gs) == 0:
            return np.zeros(0, np.int64)
        parts = [self.order[self.bounds[g]:self.bounds[g + 1]] for g in gs]
        r = np.concatenate(parts).astype(np.int64)
        if len(parts) > 1:
            r.sort()
        return r

    def counts(self, ddid, field_ids=None, scans=None) -> dict:
        """{(field, scan): rows} of DATA_DESC_ID ``ddid`` (as
        :meth:`alakazam.core.ms.MeasurementSet.row_counts`)."""
        out = {}
        for g in self._groups(ddid, field_ids, scans):
            k = (int(self.keys[g, 1]), int(self.keys[g, 2]))
            out[k] = out.get(k, 0) + int(self.bounds[g + 1] - self.bounds[g])
        return out

    def rowsel_mask(self, t, where: str) -> np.ndarray:
        """(row,) bool: the rows TaQL's ``WHERE where`` keeps (a row selection's plain-column terms:
        OBSERVATION_ID, STATE_ID, time bounds), found once per selection."""
        m = self._rowsel.get(where)
        if m is None:
            from casacore.tables import taql

            q = taql(f"SELECT ROWID() AS R FROM $t WHERE {where}")
            r = np.asarray(q.getcol("R"), np.int64) if q.nrows() else np.zeros(0, np.int64)
            q.close()
            m = np.zeros(self.n_rows, bool)
            m[r] = True
            self._rowsel[where] = m
        return m


def state(ms) -> tuple:
    """The main table's files and their inodes (:func:`alakazam.core.flagcache.main_table_state`)."""
    from .flagcache import main_table_state

    return main_table_state(ms)


def get(ms, t, build=True):
    """The row index of ``ms`` (its open main table ``t``) when one may be kept (module doc: an open
    handle or a run's scope), built now if there is none for the MS's current state (with ``build``
    False: None then); else None."""
    from . import metacache
    from . import ms as _ms

    if not enabled() or "::" in str(ms) or not os.path.isdir(str(ms)):
        return None
    h = _ms.active(ms)
    run = metacache.active()
    if h is None and not run:
        return None
    if run:
        _hook()
    st = state(ms)
    key = os.path.realpath(str(ms))
    with _LOCK:
        for held in ((getattr(h, "_row_index", None) if h is not None else None),
                     (_RUN.get(key) if run else None)):
            if held is not None and held[0] == st:
                STATS["hits"] += 1
                if h is not None:
                    h._row_index = held
                return held[1]
        if not build:
            return None
        idx = RowIndex.build(t)
        held = (st, idx)
        if h is not None:
            h._row_index = held
        if run:
            _RUN[key] = held
    return idx


def clear():
    with _LOCK:
        _RUN.clear()
