"""Memory reused by a sequence of chunk reads (the apply's chunks; issue 16).

A read into fresh memory pays a page fault per page on its first touch, and with numpy's huge-page
advice, on a machine whose RAM is full of page cache, the kernel's compaction too. The apply of the
QuartiCal-style job (benchmarks/bench_quartical.py; 0.56 GB of DATA + FLAG after a solve in the same
process) read its chunk in 0.9-1.1 s that way, against 0.27-0.5 s into ordinary pages.  The apply
reads its chunks one after another and nothing of a chunk outlives its turn
(:func:`alakazam.calibration.apply._apply_field`), so :class:`ReadBuffers` gives each chunk's read
the memory of the previous chunk: after the first chunk, no page is faulted again.

Convention (pinned by tests/test_readbuffers.py):

* A buffer is handed out again only when nothing but the pool references it (no view or array of an
  earlier chunk alive, counted as :func:`alakazam.unit._unreferenced` counts): otherwise a new one is
  allocated.  A live array is never overwritten, whatever the consumer keeps.
* New buffers are allocated with ordinary pages (:func:`alakazam.core.memory.small_pages`).
* Only the array columns read by runs of rows (``getcolnp`` into the buffer,
  :func:`alakazam.core.ms_io._getcol_rows`) use a pool: every element of the rows handed out is
  overwritten by the read, so the values are those of a read into new memory.
* A pool is active only inside :func:`using` (one read call, in this thread): nothing else shares it.
* **Spare memory** (:func:`donate`): the YAML runner's solve blocks keep their reads for each other
  (:mod:`alakazam.core.readcache`) and drop them before the next block; before an apply block their
  arrays are handed over here instead of freed (:meth:`alakazam.core.readcache.Blocks.before`), and a
  pool's new buffer is carved from one of them (the smallest that holds it, only when nothing else
  references it) instead of fresh memory: the apply's first read then faults no page (the solve's read
  touched them) and the solve's memory is not unmapped before the apply maps as much again.  Only
  memory passes over, never a value (the read overwrites every element handed out).  What the first
  read under a pool does not take is freed at its end (:func:`using`); everything at
  :func:`release` (the runner's next block or its end).  Spare bytes count as available to the
  memory planner (:func:`alakazam.core.memory.memory_limit_bytes`).  A buffer carved from a spare
  array keeps the whole array until the pool ends: the apply's read buffers hold at most what the solve's read
  held (which fitted that block's memory limit).
"""

from __future__ import annotations

import contextlib
import sys
import threading

import numpy as np

_ACTIVE = threading.local()


class ReadBuffers:
    """One reusable array per column name (the largest read so far)."""

    def __init__(self):
        self.arrays = {}
        self.reused = 0         # reads served from a kept buffer (tests, benchmarks)
        self.allocated = 0      # new buffers
        self.from_spare = 0     # of them, carved from spare memory (donate)

    def empty(self, col, shape, dtype):
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` for column ``col``: the leading
        rows of the kept buffer when it fits and nothing else references it, else a new buffer."""
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        buf = self.arrays.get(col)
        fits = (buf is not None and buf.dtype == dtype and buf.shape[1:] == shape[1:]
                and buf.shape[0] >= shape[0])
        buf = None                      # no reference of ours while counting
        if fits and self._free(col):
            self.reused += 1
            return self.arrays[col][:shape[0]]
        self.arrays.pop(col, None)      # a still-referenced buffer stays with whoever holds it
        buf = _take_spare(shape, dtype)
        if buf is not None:
            self.from_spare += 1
        else:
            from .memory import small_pages

            with small_pages():
                buf = np.empty(shape, dtype)
        self.arrays[col] = buf
        self.allocated += 1
        return buf[:shape[0]]           # a view, as when reused: the chunk's arrays die with the chunk

    def _free(self, col):
        """Nothing but this pool references its buffer of ``col``: the references to the memory's owning
        array (every view of it, also of a view, references the owner: numpy's ``base``) compared with
        those of a fresh array held the same way (what the interpreter counts for a dict value or a
        local name differs between Python versions).  The buffer is the owner, or a view of a spare
        array (:func:`donate`) that only it references."""
        owner = _owner(self.arrays[col])
        p_owner = np.empty(1)
        probe = {col: p_owner if owner is self.arrays[col] else p_owner[:]}     # noqa: F841 -- held alike
        return sys.getrefcount(owner) <= sys.getrefcount(p_owner)


@contextlib.contextmanager
def using(buffers):
    """Reads in this thread take their memory from ``buffers`` (None: new arrays) until the block ends
    (then the spare memory it did not take is freed: module doc)."""
    prev = getattr(_ACTIVE, "pool", None)
    _ACTIVE.pool = buffers
    try:
        yield
    finally:
        _ACTIVE.pool = prev
        if buffers is not None:
            release()


# ---- spare memory (module doc): owning, C-contiguous arrays nobody else uses any more
_SPARE: list = []
_SPARE_LOCK = threading.Lock()
#: arrays smaller than this are not kept as spare memory (a page fault costs little there)
MIN_SPARE_BYTES = 1 << 20


def _owner(a):
    while isinstance(getattr(a, "base", None), np.ndarray):
        a = a.base
    return a


def donate(arrays) -> int:
    """Keep the memory of ``arrays`` (their owning arrays: C-contiguous, writeable, >=
    :data:`MIN_SPARE_BYTES`) for the next pool's new buffers instead of freeing it; returns the bytes
    kept.  The caller must drop its own references: an array is handed out only when nothing but this
    module references it."""
    n = 0
    with _SPARE_LOCK:
        have = {id(a) for a in _SPARE}
        for a in arrays:
            if not isinstance(a, np.ndarray):
                continue
            b = _owner(a)
            if (id(b) in have or not b.flags.c_contiguous or not b.flags.writeable or not b.flags.owndata
                    or b.nbytes < MIN_SPARE_BYTES):
                continue
            have.add(id(b))
            _SPARE.append(b)
            n += b.nbytes
    return n


def spare_bytes() -> int:
    """Bytes of spare memory held (:func:`donate`)."""
    with _SPARE_LOCK:
        return sum(a.nbytes for a in _SPARE)


def release() -> None:
    """Free the spare memory (what no buffer took)."""
    with _SPARE_LOCK:
        _SPARE.clear()


def _take_spare(shape, dtype):
    """An uninitialised ``shape``/``dtype`` C-contiguous view into the smallest spare array that holds
    it and that nothing else references (removed from the spares), or None."""
    if not _SPARE:
        return None
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if need <= 0:
        return None
    with _SPARE_LOCK:
        probe = [np.empty(0)]
        free = sys.getrefcount(probe[0])
        best = None
        for i in range(len(_SPARE)):
            if _SPARE[i].nbytes >= need and sys.getrefcount(_SPARE[i]) <= free and \
                    (best is None or _SPARE[i].nbytes < _SPARE[best].nbytes):
                best = i
        if best is None:
            return None
        base = _SPARE.pop(best)
    buf = base.reshape(-1).view(np.uint8)[:need].view(dtype).reshape(shape)
    if not (buf.flags.aligned and buf.flags.c_contiguous):      # (numpy's allocations are aligned)
        return None
    return buf


_SHARED = threading.local()


@contextlib.contextmanager
def shared():
    """``iter_chunks(reuse=True)`` calls inside this block, in this thread, share one pool: an apply's
    fields and SPWs, read one after another, each start in the memory of the previous one's last chunk
    (one pool per call left each field's first chunk in fresh memory: 3 of the 6 chunk reads of the
    issue-16 recipe's apply)."""
    prev = getattr(_SHARED, "pool", None)
    _SHARED.pool = ReadBuffers()
    try:
        yield _SHARED.pool
    finally:
        _SHARED.pool = prev
        release()           # spare memory no read took (an apply with nothing to read here)


def pool_for_reuse():
    """The pool of the enclosing :func:`shared` block in this thread, else a new one."""
    return getattr(_SHARED, "pool", None) or ReadBuffers()


def empty(col, shape, dtype):
    """``np.empty(shape, dtype)``, or memory of the pool active in this thread (:func:`using`)."""
    pool = getattr(_ACTIVE, "pool", None)
    if pool is None:
        return np.empty(shape, dtype)
    return pool.empty(col, shape, dtype)
