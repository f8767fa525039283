"""A task called from Python with no logging set up by the caller appends its log to ``alakazam.log``
in the working directory (``$ALAKAZAM_LOG``; empty: none), for the call only (alakazam/tasklog.py).

pytest's logging plugin puts handlers on the root logger for the whole session and for each test
phase (the caplog and report handlers of setup, call, teardown) -- which, by the convention, is a
caller with its own logging: no file.  So every test here calls the task inside :func:`_no_logging`,
in the test's body (the call phase's handlers are added after any fixture ran), which takes the
handlers of the root and ``alakazam`` loggers off and puts them back after.  conftest.py sets
``ALAKAZAM_LOG=`` for every test (no stray alakazam.log); the ``cwd`` fixture here unsets it.
"""

import contextlib
import logging
import os

import pytest

from alakazam.caltasks import akcal, akinfo
from alakazam.sim import simulate_ms
from alakazam.tasklog import LOG_LINE


@pytest.fixture(scope="module")
def small_ms(tmp_path_factory):
    ms = str(tmp_path_factory.mktemp("tasklog") / "s.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.2, int_s=120.0, noise=0.05, seed=3,
                leakage=False, dead_ant=False)
    return ms


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALAKAZAM_LOG", raising=False)
    return tmp_path


@contextlib.contextmanager
def _no_logging():
    """No handler on the root nor the ``alakazam`` logger inside (a plain Python script's logging)."""
    loggers = [logging.getLogger(), logging.getLogger("alakazam")]
    saved = [(lg, list(lg.handlers), lg.level) for lg in loggers]
    for lg, hs, _ in saved:
        for h in hs:
            lg.removeHandler(h)
    try:
        yield
    finally:
        for lg, hs, level in saved:
            for h in list(lg.handlers):         # (what the call left: asserted by the tests)
                lg.removeHandler(h)
            for h in hs:
                lg.addHandler(h)
            lg.setLevel(level)


def _handlers():
    return list(logging.getLogger().handlers) + list(logging.getLogger("alakazam").handlers)


def _call(task, **kw):
    """``task(**kw)`` as a script calls it; returns (result, handlers left after the call)."""
    with _no_logging():
        res = task(**kw)
        return res, _handlers()


def test_akinfo_call_writes_alakazam_log(small_ms, cwd):
    _, left = _call(akinfo, vis=small_ms)
    assert left == []                                   # the handler is gone after the call
    text = (cwd / "alakazam.log").read_text()
    assert LOG_LINE.match(text.encode())               # recognised as a log (--log appends to it)
    assert "##### Begin Task: akinfo #####" in text and "##### End Task: akinfo #####" in text
    assert "INFO alakazam.tasks: akinfo( " in text and f"vis={small_ms!r}" in text     # the full call
    _call(akinfo, vis=small_ms)                         # appended, as casa.log
    assert (cwd / "alakazam.log").read_text().startswith(text)
    assert (cwd / "alakazam.log").read_text().count("Begin Task: akinfo") == 2


def test_akcal_call_logs_begin_end_and_solve_summary(small_ms, cwd):
    _, left = _call(akcal, vis=small_ms, caltable="g.h5", field="3C286", jones=["G"], solint=["inf"],
                    refant="C00")
    assert left == []
    text = (cwd / "alakazam.log").read_text()
    assert "##### Begin Task: akcal #####" in text and "##### End Task: akcal #####" in text
    assert "G0: " in text and "solution groups" in text        # the solve's summary line
    assert " INFO alakazam.flow: memory: " in text              # the memory plan


def test_alakazam_log_names_another_file_and_empty_disables(small_ms, cwd, monkeypatch):
    (cwd / "logs").mkdir()
    monkeypatch.setenv("ALAKAZAM_LOG", "logs/mine.log")
    _call(akinfo, vis=small_ms)
    assert "Begin Task: akinfo" in (cwd / "logs" / "mine.log").read_text()
    assert not (cwd / "alakazam.log").exists()
    monkeypatch.setenv("ALAKAZAM_LOG", "")
    _, left = _call(akinfo, vis=small_ms)
    assert left == []
    assert sorted(os.listdir(cwd)) == ["logs"] and os.listdir(cwd / "logs") == ["mine.log"]


def test_existing_non_log_file_left_alone_with_a_warning(small_ms, cwd, capsys):
    mine = cwd / "alakazam.log"
    mine.write_bytes(b"my notes\nabout the run\n")
    res, left = _call(akinfo, vis=small_ms)              # the task still runs
    assert res and left == []
    assert mine.read_bytes() == b"my notes\nabout the run\n"
    err = capsys.readouterr().err
    assert err.count("no log file for this call") == 1 and "not an alakazam log" in err
    assert "ALAKAZAM_LOG" in err


def test_unwritable_directory_warns_and_runs(small_ms, cwd, monkeypatch, capsys):
    monkeypatch.setenv("ALAKAZAM_LOG", str(cwd / "missing_dir" / "a.log"))
    res, left = _call(akinfo, vis=small_ms)
    assert res and left == []
    err = capsys.readouterr().err
    assert err.count("no log file for this call") == 1 and "does not exist" in err


def test_failing_call_logs_its_error_and_removes_the_handler(small_ms, cwd):
    with _no_logging():
        with pytest.raises(Exception) as ei:
            akcal(vis=small_ms, caltable="g.h5", field="NOSUCHFIELD", jones=["G"], solint=["inf"],
                  refant="C00")
        left = _handlers()
    assert left == []
    text = (cwd / "alakazam.log").read_text()
    assert LOG_LINE.match(text.encode())
    first = str(ei.value).splitlines()[0]
    assert first in text and " ERROR " in text           # the error the user saw
    assert logging.getLogger("alakazam").level == logging.NOTSET


def test_interrupted_call_removes_the_handler(small_ms, cwd, monkeypatch):
    from alakazam.caltasks import akinfo as task

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(task, "_body", interrupted)
    with _no_logging():
        with pytest.raises(KeyboardInterrupt):
            task(vis=small_ms)
        left = _handlers()
    assert left == []
    assert "akinfo: interrupted" in (cwd / "alakazam.log").read_text()


def test_callers_own_handler_means_no_file(small_ms, cwd):
    _call(akinfo, vis=small_ms)                             # no logging of the caller's: the file
    before = (cwd / "alakazam.log").read_text()
    assert before.count("Begin Task: akinfo") == 1
    with _no_logging():
        mine = logging.StreamHandler()
        logging.getLogger("alakazam").addHandler(mine)      # a handler on the alakazam logger
        try:
            akinfo(vis=small_ms)
            assert _handlers() == [mine]
        finally:
            logging.getLogger("alakazam").removeHandler(mine)
    with _no_logging():
        logging.basicConfig(level=logging.INFO)            # a script's usual set-up (a root handler)
        akinfo(vis=small_ms)
    assert (cwd / "alakazam.log").read_text() == before     # nothing more in the file


def test_terminal_shows_warnings_only_and_nested_calls_log_once(small_ms, cwd, capsys, monkeypatch):
    from alakazam.caltasks import akinfo as task

    body, depth = task._body, []

    def noisy(*a, **k):
        if not depth:
            depth.append(1)
            lg = logging.getLogger("alakazam.flow")
            lg.warning("a warning inside the call")
            lg.info("a note inside the call")
            task(vis=small_ms)                              # a task called by a task
        return body(*a, **k)

    monkeypatch.setattr(task, "_body", noisy)
    with _no_logging():
        task(vis=small_ms)
        left = _handlers()
    assert left == []
    err = capsys.readouterr().err
    assert "a warning inside the call" in err and "a note inside the call" not in err
    text = (cwd / "alakazam.log").read_text()
    assert text.count("a warning inside the call") == 1 and text.count("a note inside the call") == 1
    assert text.count("##### Begin Task: akinfo #####") == 2        # the inner call's lines, once each
    assert text.count("##### End Task: akinfo #####") == 2


def test_yaml_runner_from_python_logs_to_the_callers_directory(small_ms, cwd, tmp_path_factory):
    from alakazam.caltasks.yamlrun import run_yaml

    d = tmp_path_factory.mktemp("yaml")
    (d / "r.yaml").write_text(f"solve:\n  - ms: {small_ms}\n    output: {d / 'g.h5'}\n    field: [3C286]\n"
                              "    jones: [G]\n    time_interval: [inf]\n    ref_ant: C00\n")
    _, left = _call(run_yaml, path=str(d / "r.yaml"))
    assert left == []
    text = (cwd / "alakazam.log").read_text()          # the caller's directory, not the YAML's
    assert text.count("##### Begin Task: akcal #####") == 1 and "G0: " in text
    assert not (d / "alakazam.log").exists()
