"""Progress bars (solve groups, apply rows) on a terminal's stderr; off with --quiet, with a block's
``quiet: true`` and when stderr is not a terminal; --log FILE gets the log lines."""

import os
import pty
import select
import subprocess
import sys

import pytest

from alakazam import progress
from alakazam.cli import main
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("progress")
    ms = str(d / "p.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(8,), duration_h=0.5, int_s=60, noise=0.05, seed=3,
                leakage=False)
    return d, ms


def _yaml(d, ms, name, quiet_block=False):
    cfg = d / f"{name}.yaml"
    q = "\n    quiet: true" if quiet_block else ""
    cfg.write_text(f"solve:\n  - ms: {ms}\n    output: {d / name}.h5\n    jones: [K, G]\n"
                   f"    time_interval: [scan, 60s]{q}\n"
                   f"apply:\n  - ms: {ms}\n    jones: [K0, G0]\n"
                   f"    tables: [{d / name}.h5, {d / name}.h5]{q}\n")
    return str(cfg)


def _run_on_a_terminal(args, cwd):
    """Run ``python -m alakazam.cli ARGS`` with stderr on a pseudo-terminal; returns what it showed."""
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm", COLUMNS="120")
    env.pop("ALAKAZAM_NO_PROGRESS", None)
    p = subprocess.Popen([sys.executable, "-m", "alakazam.cli"] + args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:          # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    assert p.wait(timeout=600) == 0, out.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


def test_bars_on_a_terminal_and_quiet_turns_them_off(small):
    d, ms = small
    shown = _run_on_a_terminal(["run", _yaml(d, ms, "loud")], d)
    # one bar per step, or one for the whole block when it runs field by field (flow.FIELD_MAJOR)
    assert ("K0 (K): solution groups" in shown and "G0 (G): solution groups" in shown) or \
        "K0, G0: solution groups (field by field)" in shown
    assert "apply 3C286 spw 0: rows" in shown
    for args in (["--quiet", "run", _yaml(d, ms, "q1")], ["run", "--quiet", _yaml(d, ms, "q2")],
                 ["run", _yaml(d, ms, "q3", quiet_block=True)]):
        shown = _run_on_a_terminal(args, d)
        assert "(K): solution groups" not in shown and "(field by field)" not in shown \
            and "spw 0: rows" not in shown, args


def test_off_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("ALAKAZAM_NO_PROGRESS", raising=False)
    progress.set_quiet(False)
    assert not progress.enabled()                      # pytest's captured stderr is not a tty
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.enabled()
    assert not progress.enabled(quiet=True)
    with progress.quieted(True):
        assert not progress.enabled()
    assert progress.enabled()
    monkeypatch.setenv("ALAKAZAM_NO_PROGRESS", "1")
    assert not progress.enabled()


def test_log_file_gets_the_log_lines_even_when_quiet(small, capsys):
    d, ms = small
    log = d / "run.log"
    assert main(["--quiet", "--log", str(log), "run", _yaml(d, ms, "logged")]) == 0
    text = log.read_text()
    assert "Begin Task: akcal" in text and "End Task: akapply" in text
    assert "K0: " in text and "solution groups" in text and "INFO alakazam.flow" in text
    err = capsys.readouterr().err
    assert "Begin Task" not in err and "solution groups" not in err        # quiet console
    log2 = d / "run2.log"
    assert main(["run", "--log", str(log2), _yaml(d, ms, "logged2")]) == 0
    assert "Begin Task: akcal" in log2.read_text()
    assert "Begin Task: akcal" in capsys.readouterr().err                 # log lines go to stderr
