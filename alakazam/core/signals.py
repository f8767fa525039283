"""Holding SIGINT / SIGTERM over a few statements that must happen together.

A Ctrl-C (or a SIGTERM, which the CLI turns into one) raises KeyboardInterrupt at whatever Python
statement is running.  Where two effects must be one step -- a file created and its name recorded so
that an interrupt can remove it; a flag version saved and its in-progress marker written -- the two
are done inside :func:`held`: the signals are blocked for the thread and delivered as soon as the
block ends (so the interrupt still happens, just not in between).
"""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def held():
    """SIGINT and SIGTERM held (acted on when the block ends) -- main thread; elsewhere a no-op.

    Done at the Python level: the two handlers are replaced by one that records the signal, and the
    handler that was in place is called with it after the block.  Blocking the signals with
    ``pthread_sigmask`` held them only for the main thread: with any other thread that does not block
    them (rich's refresh thread, a dask or h5py thread) the kernel delivers the signal there and Python
    runs its handler in the main thread inside the block all the same -- the temporary of a solution
    table made but not yet recorded, the exact race this is for (tests/test_signals.py).  Nested blocks
    record into the outermost one."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []

    def defer(signum, frame):
        pending.append(signum)

    sigs = (signal.SIGINT, signal.SIGTERM)
    prev = {sg: signal.signal(sg, defer) for sg in sigs}
    try:
        yield
    finally:
        for sg in sigs:
            signal.signal(sg, prev[sg])
        if pending:
            sg = pending[0]
            h = prev[sg]
            if callable(h):
                h(sg, None)             # Python's default_int_handler, the CLI's SIGTERM one: raise here
            elif h == signal.SIG_DFL:
                os.kill(os.getpid(), sg)    # the default action (SIGTERM: end the process), now
            # SIG_IGN: ignored, as it would have been


@contextmanager
def spawning():
    """:func:`held`, and SIGINT also blocked in the calling thread's signal mask -- for a block that starts
    threads and processes (a dask LocalCluster): a thread inherits the mask of the thread that creates
    it, and a process the mask of the thread that forks it, across ``exec`` too; a Python process that
    starts with SIGINT blocked never receives the terminal's Ctrl-C, which reaches every process of the
    group.  The workers of a LocalCluster ignore SIGINT once their preload has run
    (``alakazam.distributed.dask_setup``); a Ctrl-C in the second or so before, while they imported dask,
    gave each a KeyboardInterrupt traceback, and the cluster's half-done start dask's errors ("Nanny
    failed to start", an ``AssertionError: Status.init`` at exit; review 55d).  With this, the Ctrl-C is
    acted on in this process when the block ends: the cluster is up, and the caller closes it.  The mask
    is restored on the way out (a SIGINT that arrived meanwhile is then delivered, and held).  Main thread
    only; elsewhere a no-op."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # multiprocessing's resource tracker, started by a process's first spawn, unblocks SIGINT in the
    # thread that starts it (resource_tracker.ensure_running blocks it around its own spawn, then
    # unblocks it): started first, so that no spawn in the block starts it
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    with held():
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


# ------------------------------------------------------------------------- a Ctrl-C that is not lost
_PENDING = [False]


def _sigint(signum, frame):
    _PENDING[0] = True
    raise KeyboardInterrupt


@contextmanager
def sticky_interrupts():
    """While held (main thread), a Ctrl-C raises KeyboardInterrupt as Python's own handler does AND is
    recorded, so that one Python swallows is not lost: a KeyboardInterrupt raised while a finalizer
    runs (``__del__`` -- asyncio's event loop of an earlier akshell prompt, collected mid-task -- or a
    weakref callback) is printed as "Exception ignored" and the code carries on.  :func:`checkpoint`
    (called as progress advances and when the task returns) raises it again; :func:`delivered` clears
    it once the interrupt has been handled (core/undo.transaction's rollback)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _PENDING[0] = False
    prev = signal.signal(signal.SIGINT, _sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, prev)
        _PENDING[0] = False


def checkpoint():
    """Raise KeyboardInterrupt when a Ctrl-C was recorded (:func:`sticky_interrupts`) but not handled."""
    if _PENDING[0]:
        raise KeyboardInterrupt


def delivered():
    """The recorded Ctrl-C has been handled."""
    _PENDING[0] = False
