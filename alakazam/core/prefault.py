"""Page faults of a large read taken on other threads while casacore reads (issue 16).

A read of GBs into new memory spends most of its time in page faults, not in copying: the 3C286 rows
of the issue-16 MS (DATA + MODEL_DATA + FLAG, 3.13 GB) took 1.3-1.4 s into new ordinary pages and
0.35 s into memory already touched; touching it alone took 0.9-1.4 s.  casacore reads on one thread
and holds the GIL while it does, so the machine's other cores sit idle through those faults.

:func:`populate` hands the pages of the read's buffers to background threads that fault them in with
``madvise(MADV_POPULATE_WRITE)`` (Linux >= 5.14) -- through ctypes, which releases the GIL for the
call, so they run while casacore reads.  The buffers are then mostly present when casacore's copy
reaches them.

Convention (pinned by tests/test_prefault.py):

* Never a value: MADV_POPULATE_WRITE maps the pages writable without writing to them ("as if
  manually writing to each page; however, avoid the actual memory access", madvise(2)), so it is safe
  while another thread writes the same pages; bytes written before, during or after it are kept.
* Only a hint: where the call is not available (not Linux, a kernel older than 5.14, no libc) or fails
  on a range, nothing happens and the read faults its pages itself, as before.
* The threads hold references to the arrays until they end (a buffer is never unmapped under them),
  and :meth:`Populate.join` waits for them; they are daemon threads that only call madvise.
* Only reads of at least :data:`MIN_BYTES`, on at most :func:`n_threads` threads (the process's CPUs
  minus the reading thread, at least one, at most :data:`MAX_THREADS`); ``ALAKAZAM_PREFAULT=0`` turns
  it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

import numpy as np

#: madvise(2) advice: populate (prefault) page tables writable (Linux 5.14)
MADV_POPULATE_WRITE = 23
#: reads smaller than this are left alone (the threads' start costs more than the faults they take)
MIN_BYTES = 64 << 20
#: pages are handed to the threads in pieces of this size (the last piece first)
PIECE_BYTES = 32 << 20
#: at most this many threads
MAX_THREADS = 2

_MADVISE = None          # libc.madvise, or False when unavailable
_LOCK = threading.Lock()


def _madvise():
    global _MADVISE
    with _LOCK:
        if _MADVISE is None:
            _MADVISE = False
            if sys.platform.startswith("linux"):
                try:
                    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
                    f = libc.madvise
                    f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                    f.restype = ctypes.c_int
                    probe = np.empty(1 << 16, np.uint8)          # does this kernel know the advice?
                    lo, hi = _page_range(probe)
                    if hi > lo and f(lo, hi - lo, MADV_POPULATE_WRITE) == 0:
                        _MADVISE = f
                except (OSError, AttributeError):
                    _MADVISE = False
        return _MADVISE


def enabled() -> bool:
    return os.environ.get("ALAKAZAM_PREFAULT", "1") != "0" and bool(_madvise())


def n_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cpus - 1))


def _page_range(a):
    """(first, end) addresses of the whole pages inside array ``a``'s memory."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    addr = a.ctypes.data
    return (addr + page - 1) // page * page, (addr + a.nbytes) // page * page


class Populate:
    """Background page population of some arrays (:func:`populate`); :meth:`join` waits for it."""

    def __init__(self, arrays, n_thr):
        self._arrays = list(arrays)          # referenced until the threads end
        pieces = []
        for a in self._arrays:
            lo, hi = _page_range(a)
            pieces += [(s, min(s + PIECE_BYTES, hi)) for s in range(lo, hi, PIECE_BYTES)]
        # from the last piece back: the reading thread fills the arrays from the front, so the two
        # meet once instead of faulting the same pages side by side
        self._pieces = pieces[::-1]
        self._next = 0
        self._lock = threading.Lock()
        self.failed = 0
        self._threads = [threading.Thread(target=self._work, name="alakazam-prefault", daemon=True)
                         for _ in range(n_thr)]
        for t in self._threads:
            t.start()

    def _work(self):
        f = _madvise()
        while True:
            with self._lock:
                i = self._next
                self._next += 1
            if i >= len(self._pieces):
                return
            lo, hi = self._pieces[i]
            if f(lo, hi - lo, MADV_POPULATE_WRITE) != 0:
                self.failed += 1             # a hint only: the read faults these pages itself

    def join(self):
        for t in self._threads:
            t.join()
        self._arrays = []


class _Nothing:
    failed = 0

    def join(self):
        pass


#: :func:`populate_now` leaves arrays smaller than this alone (a few pages: the call costs more)
NOW_MIN_BYTES = 1 << 20


def populate_now(a):
    """Fault in the pages of ``a`` (a C-contiguous array about to be written) and return ``a`` when it
    is done; its values are kept.  For arrays a kernel fills scattered over their whole size (the
    solve's accumulators): KC's per-scan channel sums on the issue-16 MS (0.74 GB) took 0.4 s more in
    the accumulation kernel, faulting page by page from two threads, than with their pages populated
    first (0.07 s in one madvise call, 0.05 s on two threads).  Arrays of two pieces
    (:data:`PIECE_BYTES`) or more are populated on up to :data:`MAX_THREADS` threads (the caller
    waits: no other work overlaps here), smaller ones in one call on this thread.  A hint only, as
    :func:`populate`: nothing happens when off, unavailable or for less than
    :data:`NOW_MIN_BYTES`."""
    if a is None or a.nbytes < NOW_MIN_BYTES or not a.flags.c_contiguous or not enabled():
        return a
    if a.nbytes >= 2 * PIECE_BYTES:
        Populate([a], max(1, min(MAX_THREADS, n_threads() + 1))).join()
        return a
    lo, hi = _page_range(a)
    if hi > lo:
        _madvise()(lo, hi - lo, MADV_POPULATE_WRITE)
    return a


def populate(arrays):
    """Start faulting in the pages of ``arrays`` (C-contiguous numpy arrays about to be written) on
    background threads, from the end of the last array back (the reader starts at the front); returns
    an object whose ``join()`` waits for them.  Does nothing (``join`` returns at once) when off,
    unavailable or for less than :data:`MIN_BYTES`."""
    arrays = [a for a in arrays if a is not None and a.nbytes > 0 and a.flags.c_contiguous]
    if sum(a.nbytes for a in arrays) < MIN_BYTES or not enabled():
        return _Nothing()
    return Populate(arrays, n_threads())
