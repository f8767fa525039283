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
        from .memory import small_pages

        with small_pages():
            buf = np.empty(shape, dtype)
        self.arrays[col] = buf
        self.allocated += 1
        return buf[:shape[0]]           # a view, as when reused: the chunk's arrays die with the chunk

    def _free(self, col):
        """Nothing but this pool references its buffer of ``col``: compared with a fresh array held the
        same way (what the interpreter counts for a dict value differs between Python versions)."""
        probe = {col: np.empty(0)}
        return _count(self.arrays, col) <= _count(probe, col)


def _count(d, key):
    return sys.getrefcount(d[key])


@contextlib.contextmanager
def using(buffers):
    """Reads in this thread take their memory from ``buffers`` (None: new arrays) until the block ends."""
    prev = getattr(_ACTIVE, "pool", None)
    _ACTIVE.pool = buffers
    try:
        yield
    finally:
        _ACTIVE.pool = prev


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


def pool_for_reuse():
    """The pool of the enclosing :func:`shared` block in this thread, else a new one."""
    return getattr(_SHARED, "pool", None) or ReadBuffers()


def empty(col, shape, dtype):
    """``np.empty(shape, dtype)``, or memory of the pool active in this thread (:func:`using`)."""
    pool = getattr(_ACTIVE, "pool", None)
    if pool is None:
        return np.empty(shape, dtype)
    return pool.empty(col, shape, dtype)
