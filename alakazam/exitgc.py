"""A command-line run's exit without the interpreter's final garbage collections (issue 16).

When a process ends, CPython runs full garbage collections over every object still alive (while and
after it clears the modules).  After a run that used numba (its type system
and kernels: 110,000-180,000 tracked objects) that took 0.13-0.2 s of the QuartiCal-style job's 3-4 s
(benchmarks/bench_quartical.py).  Those collections matter only for objects kept alive by reference
cycles whose destruction does something outside the process: a casacore table open for writing
flushes its rows when it is destroyed, a Python file its buffer.

:func:`register` -- called by a command-line entry point whose process ends after the command, never
by a library call or a long session (akshell) -- adds an exit handler, :func:`freeze_if_safe`, which
calls ``gc.freeze()`` (the final collections then skip every object) only when nothing is open that a
skipped collection could leave unflushed (:func:`open_resources`): no casacore table, no HDF5 file,
no Python file open for writing other than the standard streams and logging's files (logging closes
those itself at exit, after this handler).  Otherwise the exit is the interpreter's own.

Convention (pinned by tests/test_exitgc.py): a table open for writing and held only by a reference
cycle still has its rows on disk after the process ends; with nothing open, the exit freezes.
"""

from __future__ import annotations

import _io
import atexit
import gc
import itertools
import sys

_REGISTERED = False


def register() -> None:
    """Freeze the garbage collector at this process's exit when that is safe (once per process)."""
    global _REGISTERED
    if not _REGISTERED:
        _REGISTERED = True
        atexit.register(freeze_if_safe)


def _streams_closed_by_others():
    """ids of the files closed explicitly at exit: the standard streams and logging's handlers'."""
    out = set()
    streams = [sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__]
    logging = sys.modules.get("logging")
    if logging is not None:
        for ref in list(getattr(logging, "_handlerList", [])):
            h = ref() if callable(ref) else None
            streams.append(getattr(h, "stream", None))
    for s in streams:
        while s is not None and id(s) not in out:       # a text file, its buffer, its raw file
            out.add(id(s))
            try:
                s = getattr(s, "buffer", None) or getattr(s, "raw", None)
            except ValueError:          # a detached stream
                s = None
    return out


def open_resources() -> list:
    """What a skipped final collection could leave unflushed: casacore tables still open (any mode),
    HDF5 files still open, Python files open for writing (not the standard streams nor logging's)."""
    found = []
    h5py = sys.modules.get("h5py")
    if h5py is not None:
        try:
            n = int(h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE))
        except Exception:       # noqa: BLE001 -- cannot tell: treat as open
            n = 1
        if n:
            found.append(f"{n} HDF5 file(s)")
    tables = sys.modules.get("casacore.tables.table")
    table_cls = getattr(tables, "table", None)
    skip = _streams_closed_by_others()
    objs = gc.get_objects()
    # the types present, then only their tables and files (C-level passes over ~10^5 objects; a Python
    # loop over them costs 0.02-0.04 s)
    kinds = {t: _kind(t, table_cls) for t in set(map(type, objs))}
    wanted = {t for t, k in kinds.items() if k}
    for o in itertools.compress(objs, map(wanted.__contains__, map(type, objs))):
        k = kinds[type(o)]
        if k == 2:
            try:
                o.iswritable()          # raises on a closed table
            except Exception:           # noqa: BLE001 -- closed
                continue
            found.append(f"casacore table {o.name()}")
        elif id(o) not in skip:
            try:
                if not o.closed and o.writable():
                    found.append(f"file {getattr(o, 'name', o)!r}")
            except Exception:           # noqa: BLE001 -- a detached or broken stream: treat as open
                found.append(f"file {type(o).__name__}")
    return found


def _kind(t, table_cls):
    """2: a casacore table class, 1: a Python file class (every one derives from the C base of
    io.IOBase, whose subclass check is a C call, not io.IOBase's ABC check), 0: neither."""
    try:
        if table_cls is not None and issubclass(t, table_cls):
            return 2
        return 1 if issubclass(t, _io._IOBase) else 0
    except Exception:       # noqa: BLE001 -- a class that refuses the check: neither
        return 0


def freeze_if_safe() -> bool:
    """``gc.freeze()`` when :func:`open_resources` finds nothing; True when frozen.  Ctrl-C is ignored
    from here on: the command has ended (its exit status is set), and a KeyboardInterrupt inside this
    exit handler printed "Exception ignored in atexit callback" with a traceback (a review)."""
    _ignore_interrupts()
    if open_resources():
        return False
    gc.freeze()
    return True


def _ignore_interrupts():
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
