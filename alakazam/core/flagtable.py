"""A flag version as CASA writes it: the casacore table ``<ms>.flagversions/flags.<name>``.

What CASA 6.7 (``flagmanager(mode='save')``, ``flagdata(flagbackup=True)``) writes, measured with
casatasks 6.7 (tests/test_flagversions_casa.py repeats the check when a CASA install is present):

* a plain table (empty table info, no table or column keywords) with as many rows as the MS main
  table, row ``i`` holding row ``i`` of the MS (every row, whatever flagdata selected);
* ``FLAG``: Bool array column, ndim 2, variable shape (each cell the MS cell's shape, (chan, corr) in
  python-casacore's order), stored with ``TiledShapeStMan`` (data manager ``TiledFlag``; one hypercube
  per cell shape; tiles of (corr, chan, rows) with about 8 Mbit = 1 MB per tile);
* ``FLAG_ROW``: Bool scalar column, ``StandardStMan``;
* the version is listed in ``FLAG_VERSION_LIST`` as ``<name> : <comment>``.

CASA's restore copies the table into FLAG and FLAG_ROW: ``merge='replace'`` the saved values,
``'or'`` / ``'and'`` elementwise with the current values, on FLAG and on FLAG_ROW alike; it saves no
version itself.

alakazam writes the same layout (plus one table keyword, ``ALAKAZAM_SAVED``: the UTC save time, which
CASA ignores), so CASA's flagmanager restores alakazam's versions and alakazam restores CASA's.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import AlakazamError

#: bits per TiledShapeStMan tile (CASA's choice: 1 MB buckets)
TILE_BITS = 8 * 1024 * 1024
SAVED_KEY = "ALAKAZAM_SAVED"
#: the keyword naming the YAML run that saved a version (core/runjournal.run_id)
RUN_KEY = "ALAKAZAM_RUN"


def get_flag(t, rows):
    """FLAG of ``rows`` (sorted row numbers, one cell shape): contiguous runs read directly, else a
    selection."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return t.getcol("FLAG", int(rows[0]), len(rows))
    q = t.selectrows(rows)
    try:
        return q.getcol("FLAG")
    finally:
        q.close()


def put_flag(t, rows, flag):
    """Write FLAG of ``rows`` (as :func:`get_flag`)."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        t.putcol("FLAG", flag, int(rows[0]), len(rows))
        return
    q = t.selectrows(rows)
    try:
        q.putcol("FLAG", flag)
    finally:
        q.close()


def ddid_rows(t, chunk):
    """{DATA_DESC_ID: row numbers} of an MS main table (DATA_DESC_ID read in chunks of ``chunk``)."""
    n = t.nrows()
    dd = np.empty(n, np.int64)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        dd[s:s + m] = t.getcol("DATA_DESC_ID", s, m)
    return {int(d): np.flatnonzero(dd == d) for d in np.unique(dd)}


def _fsync_tree(path):
    for f in sorted(os.listdir(path)):
        p = os.path.join(path, f)
        if os.path.isfile(p):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(t, path, groups, chunk, saved="", run=""):
    """Write FLAG and FLAG_ROW of the open MS main table ``t`` as a CASA flag-version table at
    ``path`` (which must not exist), then fsync its files.  ``groups``: :func:`ddid_rows` of ``t``;
    FLAG is copied ``chunk`` rows at a time per group, so memory stays bounded by a chunk.  ``run``:
    the YAML run that saved it (keyword :data:`RUN_KEY`, core/runjournal.py), '' none."""
    from casacore.tables import makearrcoldesc, makescacoldesc, maketabdesc, table

    n = t.nrows()
    shapes = {dd: t.getcell("FLAG", int(rows[0])).shape for dd, rows in groups.items() if len(rows)}
    nchan = max((s[0] for s in shapes.values()), default=1)
    ncorr = max((s[1] for s in shapes.values()), default=1)
    tile_rows = int(max(1, min(TILE_BITS // (nchan * ncorr), max(n, 1))))
    desc = maketabdesc([makearrcoldesc("FLAG", False, ndim=2, valuetype="boolean",
                                       datamanagertype="TiledShapeStMan", datamanagergroup="TiledFlag"),
                        makescacoldesc("FLAG_ROW", False, valuetype="boolean")])
    dminfo = {"*1": {"TYPE": "TiledShapeStMan", "NAME": "TiledFlag", "COLUMNS": ["FLAG"],
                     "SPEC": {"DEFAULTTILESHAPE": np.array([ncorr, nchan, tile_rows], np.int32)}},
              "*2": {"TYPE": "StandardStMan", "NAME": "StandardStMan", "COLUMNS": ["FLAG_ROW"],
                     "SPEC": {"BUCKETSIZE": int(min(32768, max(128, n // 8 + 64)))}}}
    with table(path, desc, nrow=n, dminfo=dminfo, ack=False) as v:
        if saved:
            v.putkeyword(SAVED_KEY, saved)
        if run:
            v.putkeyword(RUN_KEY, run)
        for s in range(0, n, 10 * chunk):
            m = min(10 * chunk, n - s)
            v.putcol("FLAG_ROW", t.getcol("FLAG_ROW", s, m), s, m)
        for dd, rows in groups.items():
            for s in range(0, len(rows), chunk):
                r = rows[s:s + chunk]
                put_flag(v, r, get_flag(t, r))
        v.flush()
    _fsync_tree(path)


def check_rows(v, t, name):
    """The version table ``v`` has one row per row of the MS main table ``t``, else an AlakazamError."""
    if v.nrows() != t.nrows():
        raise AlakazamError(f"versionname: {name!r} holds {v.nrows()} rows but the MS has {t.nrows()}; "
                            "the version belongs to another MS")
    missing = [c for c in ("FLAG", "FLAG_ROW") if c not in v.colnames()]
    if missing:
        raise AlakazamError(f"versionname: {name!r} is not a flag-version table (no {', '.join(missing)} "
                            "column)")


def saved_flags(v, groups, chunk, name):
    """Generator of (rows, saved FLAG) of the version table ``v`` for the MS's row ``groups``
    (:func:`ddid_rows`), ``chunk`` rows at a time."""
    for rows in groups.values():
        for s in range(0, len(rows), chunk):
            r = rows[s:s + chunk]
            try:
                f = get_flag(v, r)
            except RuntimeError as e:      # cells of another shape: not this MS's version
                raise AlakazamError(f"versionname: {name!r} does not match the MS (FLAG shapes differ: "
                                    f"{e}); the version belongs to another MS") from None
            yield r, f
