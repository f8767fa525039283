"""Log files: their format, the check before appending to one, and the log of a task called from Python.

One place for what ``alakazam --log FILE`` (alakazam/cli.py), ``alakazam demo`` (alakazam/demo.py),
akshell (shell/akshell.py) and a Python task call share: :func:`file_handler`, the file format
:data:`FORMAT` (a time-stamped line ``2026-12-03 05:00:15,123 INFO alakazam.tasks: ...``; akshell.log keeps
casashell's tab-separated columns), :func:`check_log_file` (a log is appended to only when the file is
new, empty or an earlier log -- its first line is a log line, :data:`LOG_LINE`) and :func:`to_files`
(the error a run ended with, in its log files).

**A task called from Python** (``from alakazam.caltasks import akcal; akcal(vis=..., ...)``, and
:func:`alakazam.caltasks.yamlrun.run_yaml`) writes its log as casatasks writes casa.log:

- when the caller has configured no logging of its own -- no handler on the root logger nor on the
  ``alakazam`` logger (the command line, akshell, ``alakazam demo`` and pytest's logging plugin all
  install root handlers, so they are unaffected) -- the call appends its INFO log (the Begin/End lines
  with the full call, the memory plan, a summary line per solved term, the apply lines) to
  ``alakazam.log`` in the working directory;
- ``$ALAKAZAM_LOG`` names another file; ``ALAKAZAM_LOG=`` (empty) turns the file off;
- the file is written for the duration of the call only: the handler is removed at its end, also when
  the call fails or is interrupted (Ctrl-C); a task called inside another (the YAML runner's blocks, a
  flag restore) adds nothing: the outer call's file has its lines;
- the terminal shows warnings and errors as without the file (Python's last-resort handler, on stderr);
- the file is refused as ``--log`` refuses it: an existing file that is not an alakazam log (its first
  line is not a log line), a directory, a file inside a table, a directory that does not exist or
  cannot be written.  The call then warns once (on the terminal) and runs without a log file: a log
  file never fails a calibration;
- the task's error (what the user sees raised) goes into the file too, as ``--log`` records how a run
  ended; Ctrl-C is recorded as an interruption.

Pinned by tests/test_python_tasklog.py.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import threading

from .errors import AlakazamError

#: the format of every alakazam log file (``--log``, ``alakazam demo``'s demo.log, a Python call's)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: the first line of a log in :data:`FORMAT` (what :func:`check_log_file` accepts to append to)
LOG_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
#: the environment variable naming a Python call's log file (empty: none), and its default
ENV = "ALAKAZAM_LOG"
DEFAULT = "alakazam.log"

log = logging.getLogger("alakazam.tasks")


def check_log_file(logfile):
    """Raise AlakazamError (its message names ``logfile``) when a log may not be appended to
    ``logfile``: its directory does not exist, it is a directory, it is inside a table (an MS the run
    may replace, as simulate --overwrite does), or it exists, is not empty and is not a log (its first
    line in :data:`FORMAT`) -- appending to any other file (the YAML being run, a script, a table)
    would change what the user owns."""
    d = os.path.dirname(os.path.abspath(logfile))
    if not os.path.isdir(d):
        raise AlakazamError(f"directory {d!r} of {logfile!r} does not exist")
    if os.path.isdir(logfile):
        raise AlakazamError(f"{logfile!r} is a directory, expected a file name")
    from .core.outputs import inside_table_message, table_around

    tab = table_around(d)
    if tab:
        raise AlakazamError(inside_table_message(logfile, tab))
    if not os.path.isfile(logfile):
        return
    try:
        with open(logfile, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise AlakazamError(f"cannot read {logfile!r} ({e.strerror})") from None
    if head and not LOG_LINE.match(head):
        raise AlakazamError(f"{logfile!r} exists and is not an alakazam log (its first line is not "
                            "a time-stamped log line); the log is appended to FILE, so choose a new file "
                            "name or an earlier log")


def file_handler(logfile, mode="a", fmt=FORMAT):
    """A FileHandler writing INFO and above to ``logfile`` in ``fmt`` (OSError when it cannot be
    opened)."""
    fh = logging.FileHandler(logfile, mode=mode)
    fh.setFormatter(logging.Formatter(fmt))
    fh.setLevel(logging.INFO)
    return fh


def to_files(text, handlers=None, name="alakazam", level=logging.ERROR):
    """``text`` as one record in the log files only (the terminal showed it already): the FileHandlers
    among ``handlers`` (default: the root logger's)."""
    rec = logging.LogRecord(name, level, __file__, 0, text, None, None)
    for h in logging.getLogger().handlers if handlers is None else handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(rec)


def configured():
    """The caller has logging of its own: a handler on the root logger or on the ``alakazam`` logger."""
    return bool(logging.getLogger().handlers or logging.getLogger("alakazam").handlers)


_LOCK = threading.Lock()
_DEPTH = 0          # python_call contexts entered (a nested task call adds nothing)


class _ErrorsSeen(logging.Filter):
    """Remembers the messages of the ERROR records the file got (a task's SEVERE line names its error
    already: :func:`python_call` does not write it twice)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def filter(self, record):
        if record.levelno >= logging.ERROR:
            self.seen.append(record.getMessage())
        return True


def _open_log():
    """The FileHandler of a Python call's log, or None (no file: ``ALAKAZAM_LOG=``, or refused -- then
    warned)."""
    path = os.environ.get(ENV, DEFAULT)
    if not path:
        return None
    try:
        check_log_file(path)
        return file_handler(path)
    except AlakazamError as e:
        why = str(e)
    except OSError as e:
        why = f"cannot write {path!r} ({e.strerror or e})"
    log.warning("no log file for this call: %s (set %s to another file name, or %s= for none)",
                why, ENV, ENV)
    return None


@contextlib.contextmanager
def python_call(name):
    """The log file of a task call ``name`` from Python (the module docstring's convention)."""
    global _DEPTH
    with _LOCK:
        outer = _DEPTH == 0 and not configured()
        _DEPTH += 1
    fh = None
    try:
        fh = _open_log() if outer else None
        if fh is None:
            yield
            return
        seen = _ErrorsSeen()
        fh.addFilter(seen)
        lg = logging.getLogger("alakazam")
        level = lg.level
        term = logging.lastResort       # what the terminal showed without the file: warnings, errors
        try:
            lg.addHandler(fh)
            if term is not None:
                lg.addHandler(term)
            if lg.getEffectiveLevel() > logging.INFO:
                lg.setLevel(logging.INFO)
            yield
        except KeyboardInterrupt:
            to_files(f"{name}: interrupted (KeyboardInterrupt)", [fh], "alakazam.tasks")
            raise
        except BaseException as e:
            msg = str(e)
            if not any(msg and msg in s for s in seen.seen):        # (not said already: SEVERE line)
                text = f"{type(e).__name__}: {msg}"                 # as Python's traceback ends
                to_files(text if msg.startswith(f"{name}:") else f"{name}: {text}", [fh], "alakazam.tasks")
            raise
        finally:
            lg.removeHandler(fh)
            if term is not None:
                lg.removeHandler(term)
            lg.setLevel(level)
            fh.close()
    finally:
        with _LOCK:
            _DEPTH -= 1


def logged_call(name):
    """Decorator: the function runs inside :func:`python_call` ``(name)``."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with python_call(name):
                return fn(*args, **kwargs)
        return wrapper
    return deco
