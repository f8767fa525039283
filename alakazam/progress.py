"""Progress bars (rich) for the solve and apply flows, on stderr.

A bar is shown only when stderr is a terminal and progress is not turned off: ``alakazam --quiet``,
a block's ``quiet: true`` (``cfg.quiet``), :func:`set_quiet`, or the environment variable
``ALAKAZAM_NO_PROGRESS=1``.  Bars are transient (they disappear when done) and use the same stderr
:func:`console` as the log handler installed by the command line, so log lines are printed above a
live bar instead of breaking it.  When off, :func:`bar` yields a no-op object: callers never test.

    with progress.bar("G0 solution groups", total=n, quiet=cfg.quiet) as b:
        for ...:
            b.advance()
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from .core import signals

_CONSOLE = None
_QUIET = False


def console():
    """The shared rich Console on stderr (also used by the CLI's RichHandler)."""
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(stderr=True)
    return _CONSOLE


def not_file_only(record) -> bool:
    """A terminal log handler's filter: a record logged with ``extra={"file_only": True}`` (what was
    printed already, e.g. akflag's summary tables) goes to log files only (the CLI's and akshell's
    terminal handlers)."""
    return not getattr(record, "file_only", False)


def set_quiet(quiet=True):
    """Turn progress bars off (True) or back on (False) for this process."""
    global _QUIET
    _QUIET = bool(quiet)


@contextmanager
def quieted(quiet=True):
    """Progress bars off inside the block when ``quiet`` (e.g. a YAML block's ``quiet: true``)."""
    global _QUIET
    old = _QUIET
    _QUIET = old or bool(quiet)
    try:
        yield
    finally:
        _QUIET = old


def enabled(quiet=False) -> bool:
    """Whether a bar would be shown: not quiet, not disabled, and stderr is a terminal."""
    if quiet or _QUIET or os.environ.get("ALAKAZAM_NO_PROGRESS", "") not in ("", "0"):
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


class _NoBar:
    def advance(self, n=1):
        signals.checkpoint()        # a Ctrl-C swallowed by a finalizer stops the task here (akshell)

    def describe(self, text):
        pass


class _Bar:
    def __init__(self, prog, task):
        self._prog, self._task = prog, task

    def advance(self, n=1):
        signals.checkpoint()
        self._prog.advance(self._task, n)

    def describe(self, text):
        self._prog.update(self._task, description=text)


@contextmanager
def bar(description, total, quiet=False):
    """A transient progress bar of ``total`` units; yields an object with ``advance(n=1)`` and
    ``describe(text)`` (a no-op one when progress is off, see :func:`enabled`)."""
    if not enabled(quiet) or not total:
        yield _NoBar()
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console(), transient=True)
    try:
        prog.start()
    except Exception:          # e.g. another live display is active: run without a bar
        yield _NoBar()
        return
    try:
        yield _Bar(prog, prog.add_task(description, total=total))
    finally:
        prog.stop()
