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
    """SIGINT and SIGTERM held (delivered on exit) -- main thread on POSIX; elsewhere a no-op."""
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
