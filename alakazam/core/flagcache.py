"""The solve-time sample flags of a chunk, computed once per process for the same rows.

Several solve blocks of one run (``alakazam run``, or a Python session) often read the same rows: the
expert recipe flags the 3C286 rows in its K/bandpass block, again in the gain block and again in the
cross-hand/leakage block.  :func:`alakazam.core.cellflags.flag_chunk` is a pure function of the chunk
as read and of the solve's parameters, so its result is kept here and reused.

Convention (pinned by tests/test_flagcache.py):

* The key is everything the flags depend on: the MS (real path) and the state of its main-table files
  (name, size and modification time of every file directly in the MS directory except the lock files,
  and of the tables a concatenated MS -- CASA's multi-MS -- or a reference MS reads its rows from:
  any write of DATA, MODEL_DATA, FLAG, FLAG_ROW or the weights by anyone changes it, so flags are
  never reused after the MS changed), the data and model columns, the point-source model (smodel), the
  RFI threshold, the correlation types, the MS row numbers of the chunk, its channels, the row
  groups of the statistics and the chunk's flags as read (they also carry what the reader adds: a
  uvrange in wavelengths flags channels, FLAG_ROW).
* The value is the flag array packed to bits (1/8 of a byte per sample); a hit returns the identical
  array.  At most :data:`MAX_BYTES` of packed flags are kept (least recently used first out).
* ``ALAKAZAM_FLAG_CACHE=0`` in the environment turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

import numpy as np

#: packed flags kept at most (bytes; 256 MB = 2e9 samples)
MAX_BYTES = 256 * 2 ** 20
#: files of the MS directory that change without the data changing
_IGNORED = ("table.lock", "alakazam.lock")

_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_LOCK = threading.Lock()
STATS = {"hits": 0, "misses": 0}


def enabled() -> bool:
    return os.environ.get("ALAKAZAM_FLAG_CACHE", "1") != "0"


def ms_state(ms) -> tuple:
    """(name, size, mtime_ns) of every file directly in the MS directory but the lock files; for an MS
    whose rows live in other tables (a concatenated MS -- CASA's multi-MS, its parts in SUBMSS/ -- or
    a reference table), the same of the files of each of those tables (named by their path)."""
    path = os.path.realpath(str(ms))
    out = _dir_state(path)
    for part in _parts(path):
        out += [(os.path.join(part, n), size, mtime) for n, size, mtime in _dir_state(part)]
    return tuple(sorted(out))


def main_table_state(ms) -> tuple:
    """:func:`ms_state` and the inodes of the files directly in the MS directory: what tells a main
    table replaced or rewritten (the row index, core/rowindex.py; the kept metadata, core/metacache.py)."""
    path = os.path.realpath(str(ms))
    with os.scandir(path) as it:
        ino = sorted((e.name, e.inode()) for e in it
                     if e.is_file(follow_symlinks=False) and e.name not in _IGNORED)
    return tuple(ms_state(path)) + tuple(ino)


def _dir_state(path) -> list:
    out = []
    with os.scandir(path) as it:
        for e in it:
            if e.is_file(follow_symlinks=False) and e.name not in _IGNORED:
                st = e.stat(follow_symlinks=False)
                out.append((e.name, st.st_size, st.st_mtime_ns))
    return out


def _parts(path) -> list:
    """The tables a concatenated or reference table reads its rows from ([] for a plain table, read
    from the table.dat header without opening it)."""
    try:
        with open(os.path.join(path, "table.dat"), "rb") as fh:
            if b"PlainTable" in fh.read(64):
                return []
        from casacore.tables import table

        t = table(path, ack=False)
        try:
            names = t.partnames(True)
        finally:
            t.close()
    except Exception:           # noqa: BLE001 -- not a table here: the directory's own files only
        return []
    return sorted({os.path.realpath(n) for n in names} - {path})


def _digest(*arrays) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def key(cfg, chunk, corr_types, chans, groups) -> tuple:
    return (os.path.realpath(str(cfg.ms)), ms_state(cfg.ms), cfg.data_col,
            None if cfg.smodel else cfg.model_col, repr(cfg.smodel), float(cfg.rfi_threshold or 0.0),
            tuple(str(c) for c in corr_types),
            _digest(chunk.rownr, np.asarray(chans if chans is not None else [], np.int64),
                    np.asarray(groups if groups is not None else [], np.int64),
                    np.packbits(chunk.flag, axis=None)),
            chunk.flag.shape)


def flags(cfg, chunk, corr_types, chans=None, groups=None) -> np.ndarray:
    """``cellflags.flag_chunk(chunk, corr_types, cfg.rfi_threshold, groups)``, from the cache when the
    same rows of the same unchanged MS were flagged with the same parameters before."""
    from . import cellflags

    if not enabled() or chunk.n_row == 0:
        return cellflags.flag_chunk(chunk, corr_types, cfg.rfi_threshold, groups=groups)
    k = key(cfg, chunk, corr_types, chans, groups)
    with _LOCK:
        hit = _CACHE.get(k)
        if hit is not None:
            _CACHE.move_to_end(k)
    if hit is not None:
        STATS["hits"] += 1
        packed, shape = hit
        return np.unpackbits(packed, count=int(np.prod(shape))).view(np.bool_).reshape(shape)   # 0/1 bytes
    STATS["misses"] += 1
    out = cellflags.flag_chunk(chunk, corr_types, cfg.rfi_threshold, groups=groups)
    packed = np.packbits(out, axis=None)
    if packed.nbytes <= MAX_BYTES:
        with _LOCK:
            _CACHE[k] = (packed, out.shape)
            total = sum(v[0].nbytes for v in _CACHE.values())
            while total > MAX_BYTES and len(_CACHE) > 1:
                _, (old, _) = _CACHE.popitem(last=False)
                total -= old.nbytes
    return out


def clear():
    with _LOCK:
        _CACHE.clear()
