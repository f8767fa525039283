"""Disk space: what a write needs, checked before it starts, and a full disk said clearly when it happens.

A full disk (or quota) is a hazard of real reductions: an apply writes a whole new column (4.4 GB on the
issue-16 benchmark MS), a flag version a copy of FLAG.  Two rules:

* **Before writing**, a task that knows the size of what it will write checks that the filesystem
  holding the MS has that much free, plus :data:`MARGIN` (:func:`require`): otherwise an AlakazamError
  names the bytes needed and free and nothing is written.  (Free space can still run out during the
  write, e.g. when another program fills the disk.)
* **When a write fails** because the disk is full -- casacore raises ``RuntimeError("FiledesIO::write -
  write error in <file>: ...")``, h5py and Python an ``OSError`` with errno ENOSPC / EDQUOT / EFBIG --
  the task first undoes what it had started (as for any failure: the partial new column is dropped,
  FLAG put back from its version), then :func:`translate` turns the error into an AlakazamError that
  says so, with the free space, instead of a traceback.

Sizes (:func:`column_bytes`, :func:`flag_bytes`): a column stored by the tiled storage manager takes
its values' bytes (complex64: 8 per sample); a flag version's FLAG is stored as bits.
"""

from __future__ import annotations

import errno
import os
import shutil

from ..errors import AlakazamError

#: also free beyond the estimate: 2% of it plus 1 MiB (table metadata, the tiles' rounding)
MARGIN_FRACTION = 0.02
MARGIN_BYTES = 2 ** 20

_FULL_ERRNO = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def fmt(n) -> str:
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


def free_bytes(path) -> int:
    """Free bytes (for this user) on the filesystem holding ``path`` (its nearest existing parent)."""
    p = os.path.abspath(str(path))
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    return int(shutil.disk_usage(p).free)


def require(path, need: int, what: str) -> None:
    """AlakazamError unless the filesystem of ``path`` has ``need`` bytes free plus the margin."""
    need = int(need)
    if need <= 0:
        return
    want = need + int(need * MARGIN_FRACTION) + MARGIN_BYTES
    free = free_bytes(path)
    if free < want:
        raise AlakazamError(f"not enough disk space for {what}: it needs about {fmt(want)} and the "
                            f"filesystem holding {path} has {fmt(free)} free. Nothing was written; free some "
                            "space (or work on a copy elsewhere) and run again")


def column_bytes(ms, like="DATA") -> int:
    """Bytes of a new column shaped like ``like`` over every row of ``ms``."""
    import numpy as np
    from casacore.tables import table

    from . import rowindex

    with table(str(ms), ack=False) as t:
        idx = rowindex.get(ms, t, build=False)      # rows per DATA_DESC_ID from the task's row index
        ddid = None if idx is not None else t.getcol("DATA_DESC_ID")
        vt = str(t.getcoldesc(like).get("valueType", "complex")).lower()
    item = {"dcomplex": 16, "complex": 8, "double": 8, "float": 4, "boolean": 1, "bool": 1}.get(vt, 8)
    with table(os.path.join(str(ms), "DATA_DESCRIPTION"), ack=False) as dd:
        spw_of, pol_of = dd.getcol("SPECTRAL_WINDOW_ID"), dd.getcol("POLARIZATION_ID")
    with table(os.path.join(str(ms), "SPECTRAL_WINDOW"), ack=False) as s:
        nchan = s.getcol("NUM_CHAN")
    with table(os.path.join(str(ms), "POLARIZATION"), ack=False) as p:
        ncorr = p.getcol("NUM_CORR")
    if ddid is None:
        counts = np.bincount(idx.keys[:, 0], weights=np.diff(idx.bounds),
                             minlength=len(spw_of)).astype(np.int64)
    else:
        counts = np.bincount(np.asarray(ddid, np.int64), minlength=len(spw_of))
    per_row = np.array([int(nchan[spw_of[d]]) * int(ncorr[pol_of[d]]) for d in range(len(spw_of))])
    return int((counts[:len(per_row)] * per_row).sum()) * item


def flag_bytes(ms) -> int:
    """Bytes of a flag version of ``ms`` (FLAG as bits)."""
    return column_bytes(ms, like="FLAG") // 8


def is_disk_full(exc) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a write that failed for lack of space."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNO:
            return True
        text = str(exc)
        if isinstance(exc, RuntimeError) and "write error" in text:
            return True             # casacore's FiledesIO / RegularFileIO
        if "No space left on device" in text or "Disk quota exceeded" in text or "File too large" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def translate(exc, path, what: str):
    """An AlakazamError saying that writing ``what`` failed because the disk is full (``exc`` is one:
    :func:`is_disk_full`), with the free space; None when ``exc`` is something else."""
    if not is_disk_full(exc):
        return None
    try:
        free = fmt(free_bytes(path))
    except OSError:
        free = "unknown"
    return AlakazamError(f"writing {what} failed: the disk is full ({free} free on the filesystem holding "
                         f"{path}; {str(exc).strip()}). What this run had started was undone; free some "
                         "space and run again")
