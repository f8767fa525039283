"""One read of a calibrator's rows serving several solve blocks of one run.

The expert recipe reads the same rows in several blocks: the K/bandpass block, the gain block and the
cross-hand/leakage block all read DATA, MODEL_DATA and FLAG of the polarisation calibrator.  In memory
tier 1 a block reads each (field, SPW) once and keeps it for all its steps
(:func:`alakazam.unit._iter_group_chunks`); inside :func:`keep` that read is also kept for the next
blocks, and a block asking for the same rows of the unchanged MS takes it instead of reading again.

Convention (pinned by tests/test_readcache.py):

* **Scope.**  Reads are kept only inside ``with keep():`` -- the YAML runner's solve and fluxscale blocks
  (caltasks/yamlrun.py), or a Python session that asks for it.  Leaving the outermost ``keep()`` drops
  everything, so a single ``akcal`` call, or the apply after the solves, never holds a solve's read.
* **Key.**  Everything the read depends on: the MS (real path) and the state of its main-table files
  (:func:`alakazam.core.flagcache.ms_state`: any write by anyone to DATA, MODEL_DATA, FLAG, the weights
  or any other column changes it), the DATA_DESC_ID, the field, the scans, the channels, the data and
  model columns and the row selection (its text and whether a uvrange in wavelengths flags channels).
* **Value.**  The chunk exactly as read: the raw flags, no model from ``smodel``, no solve-time flags
  (the caller works on a shallow copy: :func:`get` and :func:`put` return one); beside it, what the
  solve derives from it alone (:func:`derived`: the solve-time sample flags per RFI threshold, model
  and correlation types), dropped with it.  The solve never
  writes into a chunk's data, model, weight or flag arrays (the tier-1 read is shared by every step of a
  block on the same terms); a test checks the arrays are unchanged after a solve.
* **Memory.**  What is kept counts as available to the memory planner
  (:func:`alakazam.core.memory.memory_limit_bytes`: it can be dropped), and before a new read
  :func:`make_room` drops the least recently used reads until what is kept plus the new read fits the
  block's memory limit (a block in memory tier 2/3 or on dask workers makes room for its largest read
  before its first: :func:`alakazam.flow.run_solve`).  So a block never holds more than its limit.
* ``ALAKAZAM_READ_CACHE=0`` in the environment turns it off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections import OrderedDict

import numpy as np

from .scope import Scope


class _Entry:
    __slots__ = ("chunk", "derived")

    def __init__(self, chunk):
        self.chunk = chunk
        self.derived = {}

    def nbytes(self) -> int:
        return chunk_bytes(self.chunk) + sum(getattr(v, "nbytes", 0) for v in self.derived.values())


_CACHE: "OrderedDict[tuple, _Entry]" = OrderedDict()
STATS = {"hits": 0, "misses": 0, "dropped": 0}
_SCOPE = Scope("ALAKAZAM_READ_CACHE", _CACHE)
_LOCK = _SCOPE.lock


def enabled() -> bool:
    return _SCOPE.enabled()


def active() -> bool:
    """Inside :func:`keep` (and not turned off)."""
    return _SCOPE.active()


def keep():
    """Keep the solve blocks' tier-1 reads for the blocks that follow, inside the ``with``; the
    outermost exit drops them all (re-entrant)."""
    return _SCOPE.keep()


class Blocks:
    """The runner's rule, as a context manager: reads are kept across consecutive solve and fluxscale
    blocks and dropped before any other block (flag, apply) and at the end; the MS metadata is kept for
    every block of the ``with`` (core/metacache.py).  Call :meth:`before` with
    each block's section name before running it (caltasks/yamlrun.py, benchmarks/bench_flow.py)."""

    def __init__(self):
        self._stack = contextlib.ExitStack()
        self._on = False
        self._meta = contextlib.ExitStack()     # the MS metadata kept for every block (core/metacache.py)

    def before(self, section: str) -> None:
        from . import readbuffers

        if section in ("solve", "fluxscale"):
            readbuffers.release()
            if not self._on:
                self._stack.enter_context(keep())
                self._on = True
        else:
            # before an apply the kept reads' memory (not their values) goes to the apply's first read
            # instead of being freed (core/readbuffers.py, "spare memory")
            arrays = _arrays() if section == "apply" and self._on else []
            self.close()
            readbuffers.donate(arrays)
            del arrays

    def close(self) -> None:
        from . import readbuffers

        readbuffers.release()
        self._stack.close()
        self._on = False

    def __enter__(self):
        from . import metacache

        self._meta.enter_context(metacache.keep())
        return self

    def __exit__(self, *exc):
        try:
            self.close()
        finally:
            self._meta.close()
        return False


def chunk_bytes(chunk) -> int:
    """Bytes held by a chunk's arrays (a broadcast WEIGHT view counts what it owns)."""
    n = 0
    for f in dataclasses.fields(chunk):
        a = getattr(chunk, f.name)
        if isinstance(a, np.ndarray):
            base = a
            while isinstance(base.base, np.ndarray):
                base = base.base
            n += base.nbytes
    return n


def _arrays() -> list:
    """The arrays of every kept read and of what was derived from it."""
    out = []
    with _LOCK:
        for e in _CACHE.values():
            out.extend(getattr(e.chunk, f.name) for f in dataclasses.fields(e.chunk))
            out.extend(e.derived.values())
    return [a for a in out if isinstance(a, np.ndarray)]


def held_bytes() -> int:
    with _LOCK:
        return sum(e.nbytes() for e in _CACHE.values())


def key(ms, ddid, fid, scans, chans, data_col, model_col, rowsel) -> tuple:
    from .flagcache import ms_state

    sel = None if rowsel is None else (repr(sorted(rowsel.text.items())), bool(rowsel.per_channel))
    return (os.path.realpath(str(ms)), ms_state(ms), int(ddid), int(fid),
            None if scans is None else tuple(int(s) for s in scans),
            None if chans is None else tuple(int(c) for c in np.asarray(chans).ravel()),
            data_col, model_col, sel)


def _copy(chunk):
    return dataclasses.replace(chunk)


def get(k):
    """A shallow copy of the kept chunk (arrays shared, fields free to rebind), or None."""
    if not active():
        return None
    with _LOCK:
        e = _CACHE.get(k)
        if e is None:
            STATS["misses"] += 1
            return None
        _CACHE.move_to_end(k)
        STATS["hits"] += 1
        return _copy(e.chunk)


def derived(k):
    """The dict of what the solve derived from the kept read ``k`` (the caller's keys; never written
    into once stored), or None when ``k`` is not kept."""
    if not active() or k is None:
        return None
    with _LOCK:
        e = _CACHE.get(k)
        return None if e is None else e.derived


def make_room(need: int, limit: int) -> None:
    """Drop the least recently used reads until what is kept plus ``need`` bytes fits ``limit``."""
    if not _CACHE:
        return
    with _LOCK:
        held = held_bytes()
        while _CACHE and held + need > limit:
            _, old = _CACHE.popitem(last=False)
            held -= old.nbytes()
            STATS["dropped"] += 1


def put(k, chunk, limit: int):
    """Keep ``chunk`` (as read) when inside :func:`keep` and it fits ``limit`` with what is kept;
    returns a shallow copy for the caller to modify (or the chunk itself when it is not kept)."""
    if not active():
        return chunk
    nb = chunk_bytes(chunk)
    if nb > limit:
        return chunk
    with _LOCK:
        make_room(nb, limit)
        _CACHE[k] = _Entry(chunk)
    return _copy(chunk)


def clear():
    with _LOCK:
        _CACHE.clear()
