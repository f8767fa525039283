"""akshell: a Ctrl-C that Python swallows in a finalizer still stops the task and undoes it
(core/signals.sticky_interrupts; review of 2026-12-01, a uGMRT user)."""

import os
import sys

import pytest
from casacore.tables import table

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hazards import rr_ll_ms as _rr_ll_ms  # noqa: E402  (tests/hazards.py)




@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")     # the swallowed one
def test_akshell_ctrl_c_in_a_finalizer_still_stops_the_task(tmp_path, monkeypatch):
    """Ctrl-C 1.0 s after `go` of akflag mode='rflag' in akshell (a pty, the 140 MB uGMRT-like MS),
    twice out of two tries: Python raised the KeyboardInterrupt inside asyncio's BaseEventLoop.__del__
    (an event loop of an earlier prompt being garbage-collected mid-task), printed 'Traceback ...
    KeyboardInterrupt' as an ignored exception, and the task carried on: 'akflag mode=rflag: ...
    714546 newly flagged ... End Task: akflag', FLAG written, the shell back at its prompt without an
    'interrupted' line -- not 'Ctrl-C during go stops the task and puts everything back'.  (akapply
    at other delays was interrupted and undone exactly: DATA, FLAG, CORRECTED_DATA, WEIGHT md5 equal.)

    Here the same is made deterministic: during the task an object with a finalizer is collected,
    and SIGINT is delivered while its __del__ runs."""
    import gc
    import io
    import signal

    from alakazam import progress
    from alakazam.shell.akshell import ShellSession

    ms, _ = _rr_ll_ms(tmp_path, "ctrlc", n_chan=(32,))
    with table(ms, ack=False) as t:
        f0 = t.getcol("FLAG")

    class Finalized:
        def __init__(self):
            self.me = self                                           # a cycle: freed by the collector

        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)                     # the user's Ctrl-C lands here
            for _ in range(1000):                                    # (the handler runs in this frame)
                pass

    fired = []
    orig = progress._NoBar.advance

    def advance(self, n=1):
        if not fired:
            fired.append(1)
            Finalized()
            gc.collect()
        return orig(self, n)

    monkeypatch.setattr(progress._NoBar, "advance", advance)
    monkeypatch.setattr(progress, "enabled", lambda quiet=False: False)
    out = io.StringIO()
    sh = ShellSession(out=out, color=False, cwd=str(tmp_path))
    for line in (f"vis = {ms!r}", "mode = 'rflag'", "go akflag"):
        sh.handle(line)
    assert fired, "the task never advanced a progress bar"
    with table(ms, ack=False) as t:
        f1 = t.getcol("FLAG")
    changed = int((f1 != f0).sum())
    text = out.getvalue()
    assert changed == 0 and "interrupted" in text, (
        f"Ctrl-C swallowed: the task ran to its end ({changed} FLAG samples changed), shell said: "
        f"{text[-300:]!r}")
