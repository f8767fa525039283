"""A warning said once per task call or YAML run, where the run's checks would repeat it.

A selection is parsed by the precheck, the plan and the flow of each block (a field range past the
table: the same warning 3-8 times in one ``alakazam run``).  Inside ``with SCOPE.keep():`` -- entered
by every task call (caltasks/task.py) and by the YAML runner for the whole run -- :func:`warning`
logs a message the first time only; outside, every time.  ``ALAKAZAM_WARN_ONCE=0`` turns the
de-duplication off.  Pinned by tests/test_selection.py.
"""

from __future__ import annotations

import contextlib
import functools
import logging

from .scope import Scope

_SAID: dict = {}
SCOPE = Scope("ALAKAZAM_WARN_ONCE", _SAID)


def warning(logger: str, msg: str, *args) -> None:
    """``logging.getLogger(logger).warning(msg, *args)``, once per message inside :data:`SCOPE`."""
    _once(logging.WARNING, logger, msg, args)


def info(logger: str, msg: str, *args) -> None:
    """:func:`warning` at INFO (a note that every chunk of a run would repeat)."""
    _once(logging.INFO, logger, msg, args)


def say(level, logger: str, text: str) -> None:
    """``text`` (already formatted) at ``level``, once inside :data:`SCOPE` like :func:`warning`: a
    worker's warning relayed by the client (alakazam/distributed.py) is then said once with the client's
    own warnings of the same text (review 54e: a distributed akflag said an SPW's warning twice)."""
    _once(level, logger, text, ())


def _once(level, logger, msg, args):
    text = msg % args if args else msg
    if SCOPE.active():
        with SCOPE.lock:
            if text in _SAID:
                return
            _SAID[text] = True
    logging.getLogger(logger).log(level, text)


@contextlib.contextmanager
def unsaid():
    """What is said inside is forgotten after it (a run's probe whose messages are not shown: they must
    not keep the run's own, later ones from being said; solve_rounds.probe_changes)."""
    with SCOPE.lock:
        kept = dict(_SAID)
    try:
        yield
    finally:
        with SCOPE.lock:
            _SAID.clear()
            _SAID.update(kept)


def scoped(func):
    """Run ``func`` inside :data:`SCOPE` (a task call, a YAML run)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with SCOPE.keep():
            return func(*args, **kwargs)

    return wrapper
