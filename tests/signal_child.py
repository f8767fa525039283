"""Test helper: signal a child process once it says it is writing (the tests that kill or interrupt a
writer at a known point)."""

import signal
import time


def signal_when_writing(p, sig=signal.SIGKILL, after=0.0, timeout=30, line=b"writing"):
    """Wait for ``p`` (a Popen with stdout=PIPE) to print ``line``, then after ``after`` seconds send it
    ``sig``; returns its exit code (waited for up to ``timeout`` s; killed if still running)."""
    try:
        got = p.stdout.readline()
        assert got.strip() == line, got
        time.sleep(after)
        p.send_signal(sig)
        return p.wait(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
