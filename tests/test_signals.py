"""core/signals.held: a Ctrl-C or SIGTERM inside the block is acted on when it ends -- also when other
threads exist (the kernel may deliver a process signal to any thread that does not block it, and
Python then runs the handler in the main thread; a pthread_sigmask of the main thread held nothing
then)."""

import os
import signal
import threading
import time

import pytest

from alakazam.core import signals


@pytest.mark.parametrize("other_thread", [False, True])
def test_sigint_inside_held_is_raised_after_the_block(other_thread):
    stop = threading.Event()
    t = None
    if other_thread:
        t = threading.Thread(target=stop.wait, daemon=True)     # a thread that does not block SIGINT
        t.start()
    reached = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals.held():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(50):
                    time.sleep(0.002)           # the handler would run here, inside the block
                reached.append("end of block")
        assert reached == ["end of block"]
    finally:
        stop.set()
        if t is not None:
            t.join()


def test_sigterm_inside_held_calls_the_handler_in_place_after_the_block():
    seen = []

    def handler(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    prev = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals.held():
                with signals.held():            # nested: recorded by the outer block
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.02)
                seen.append("inner done")
                time.sleep(0.02)
        assert seen == ["inner done", signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handler       # restored
    finally:
        signal.signal(signal.SIGTERM, prev)
