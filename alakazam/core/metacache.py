"""The metadata of an unchanged MS, read once for all the blocks of one ``alakazam run`` (issue 16).

Every task reads its MS's metadata once (:attr:`alakazam.core.ms.MeasurementSet.meta`: four TaQL
aggregates over the main table and eight sub-tables, 0.04-0.06 s for the 121k rows of the
QuartiCal-style job).  The YAML runner's blocks (a solve, then the apply of its tables) read the same
metadata again; inside :func:`keep` a later task takes the one read before when the MS has not changed.

Convention (pinned by tests/test_metacache.py):

* **Scope.**  Only inside ``with keep():`` -- the YAML runner's blocks
  (:class:`alakazam.core.readcache.Blocks` enters it for the whole run), one call of akfluxscale,
  akexport or akinfo (caltasks/task.py ``keep_reads``; a fluxscale's checks and run,
  calibration/fluxscale.py) or a Python session that asks for it; the outermost exit drops everything.
  Outside, every task reads the metadata itself, as before.  Inside, both a handle's metadata
  (:attr:`alakazam.core.ms.MeasurementSet.meta`) and a read by path
  (:func:`alakazam.core.ms_io.read_meta` without an open handle) are taken from here.
* **Key.**  The MS (real path) and the state of its tables: name, size, modification time and inode of
  every file of the main table (:func:`alakazam.core.flagcache.ms_state`, also the tables a
  concatenated MS reads its rows from) and of every sub-table directory of the MS (ANTENNA,
  SPECTRAL_WINDOW, FIELD, ...), the lock files excepted.  Any write by anyone (a new column, FLAG,
  a sub-table) changes it, and the metadata is read again.
* **Value.**  The :class:`alakazam.core.ms_io.MSMeta` as read (its users never modify it: they derive
  restricted copies with ``dataclasses.replace``).
* ``ALAKAZAM_META_CACHE=0`` in the environment turns it off.
"""

from __future__ import annotations

import os

from .scope import Scope

_CACHE: dict = {}
STATS = {"hits": 0, "misses": 0}
_SCOPE = Scope("ALAKAZAM_META_CACHE", _CACHE)
_LOCK = _SCOPE.lock


def enabled() -> bool:
    return _SCOPE.enabled()


def active() -> bool:
    """Inside :func:`keep` (and not turned off)."""
    return _SCOPE.active()


def keep():
    """Keep each MS's metadata for the later tasks inside the ``with`` (re-entrant; the outermost exit
    drops it)."""
    return _SCOPE.keep()


def state(ms) -> tuple:
    """The files of the main table (:func:`alakazam.core.flagcache.ms_state`) and of every sub-table
    directory: (path, size, mtime_ns, inode)."""
    from .flagcache import _IGNORED, main_table_state

    path = os.path.realpath(str(ms))
    out = [tuple(x) for x in main_table_state(path)]     # the main table's files, with their inodes
    with os.scandir(path) as it:
        subs = sorted(e.path for e in it if e.is_dir(follow_symlinks=False))
    for d in subs:
        if not os.path.exists(os.path.join(d, "table.dat")):
            continue
        with os.scandir(d) as it:
            for e in it:
                if e.is_file(follow_symlinks=False) and e.name not in _IGNORED:
                    st = e.stat(follow_symlinks=False)
                    out.append((e.path, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(out, key=repr))


def meta(path, read):
    """The metadata of ``path``: kept from an earlier task when :func:`active` and the MS is unchanged,
    else ``read(path)`` (kept when active)."""
    if not active():
        return read(path)
    k = (os.path.realpath(str(path)), state(path))
    with _LOCK:
        m = _CACHE.get(k[0])
        if m is not None and m[0] == k[1]:
            STATS["hits"] += 1
            return m[1]
    m = read(path)
    with _LOCK:
        STATS["misses"] += 1
        if active():
            _CACHE[k[0]] = (k[1], m)
    return m


def clear():
    with _LOCK:
        _CACHE.clear()
