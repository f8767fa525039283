"""Ctrl-C (or an error) while ``alakazam simulate`` writes never leaves a half-written MS.

A hostile review: an interrupted simulate left ``OUT`` with all rows allocated and most never written
(``TSM: no array in row ... of column DATA``), no truth file, and -- with ``--overwrite`` -- the old
complete MS already deleted while the old seed's ``OUT.truth.npz`` stayed beside the half-written one.
The MS and its truth are now written under temporary names next to ``OUT`` and renamed into place
only when complete (alakazam/sim/simulate.py): an interrupt leaves the old pair (or nothing), never a
partial one, and no temporary.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from alakazam import progress
from alakazam.sim import load_truth, simulate_ms
from alakazam.sim import simulate as simmod

SMALL = dict(n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.1, int_s=60.0, scan_len_s=180.0,
             dead_ant=False)
# one integration per write block: 6 blocks, so an interrupt can land after some of them
BLOCKS = dict(SMALL, n_ant=5, rows_per_write=1)


def _nrows(ms):
    from casacore.tables import table

    with table(ms, ack=False) as t:
        return t.nrows()


def _read_all(ms):
    """(rows of DATA read, rows of the MS).  A half-written MS raises 'TSM: no array in row ...' or
    crashes casacore, so the read runs in a child process; a failed read is (-1, -1)."""
    code = ("import sys; from casacore.tables import table; t = table(sys.argv[1], ack=False); "
            "print(t.getcol('DATA').shape[0], t.nrows())")
    r = subprocess.run([sys.executable, "-c", code, ms], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return -1, -1
    a, b = r.stdout.split()
    return int(a), int(b)


def _leftovers(d, name):
    """Everything in ``d`` besides the MS, its truth and its flag versions (temporaries)."""
    keep = {name, name + ".truth.npz", name + ".flagversions"}
    return sorted(e for e in os.listdir(d) if e not in keep)


def _interrupt_after(monkeypatch, n):
    """The write loop's progress bar raises KeyboardInterrupt on its ``n``-th advance (as a Ctrl-C
    landing there would)."""
    calls = []

    def advance(self, k=1):
        calls.append(k)
        if len(calls) >= n:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress._NoBar, "advance", advance)
    monkeypatch.setattr(progress._Bar, "advance", advance)
    return calls


def test_interrupted_overwrite_keeps_the_old_ms_and_truth(tmp_path, monkeypatch):
    ms = str(tmp_path / "o.ms")
    simulate_ms(ms, seed=0, **SMALL)
    n_old = _nrows(ms)
    with open(ms + ".truth.npz", "rb") as f:
        truth_old = f.read()
    calls = _interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        simulate_ms(ms, seed=5, overwrite=True, **BLOCKS)
    assert len(calls) == 3                      # it did stop mid-write (6 blocks)
    assert _nrows(ms) == n_old
    assert _read_all(ms) == (n_old, n_old)      # the old MS, whole
    with open(ms + ".truth.npz", "rb") as f:
        assert f.read() == truth_old            # and its own truth
    assert _leftovers(str(tmp_path), "o.ms") == []
    monkeypatch.undo()
    t = simulate_ms(ms, seed=5, overwrite=True, **BLOCKS)       # the re-run finishes the job
    assert _read_all(ms)[1] == len(t.times) * 10 and _nrows(ms) != n_old
    assert np.array_equal(load_truth(ms).tau, t.tau) and load_truth(ms).ms == os.path.abspath(ms)
    assert _leftovers(str(tmp_path), "o.ms") == []


def test_interrupted_fresh_target_leaves_nothing(tmp_path, monkeypatch):
    ms = str(tmp_path / "n.ms")
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        simulate_ms(ms, seed=0, **BLOCKS)
    assert not os.path.lexists(ms) and not os.path.lexists(ms + ".truth.npz")
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    simulate_ms(ms, seed=0, **BLOCKS)           # not refused as existing
    assert _read_all(ms)[0] == _nrows(ms)


def test_error_while_writing_the_truth_keeps_the_old_pair(tmp_path, monkeypatch):
    """The truth is written before anything is renamed: an error there changes nothing."""
    ms = str(tmp_path / "o.ms")
    simulate_ms(ms, seed=0, **SMALL)
    n_old = _nrows(ms)
    tau_old = load_truth(ms).tau

    def broken(truth, path):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(simmod, "save_truth", broken)
    with pytest.raises(OSError):
        simulate_ms(ms, seed=5, overwrite=True, **BLOCKS)
    assert _nrows(ms) == n_old and np.array_equal(load_truth(ms).tau, tau_old)
    assert _leftovers(str(tmp_path), "o.ms") == []


def test_failed_swap_puts_the_old_pair_and_flag_versions_back(tmp_path, monkeypatch):
    """A rename of the final swap fails after the old MS, its flag versions and its truth were moved
    aside: all three come back, and the new MS temporary goes."""
    from alakazam.core import flagversions

    ms = str(tmp_path / "o.ms")
    simulate_ms(ms, seed=0, **SMALL)
    flagversions.save(ms, "akflag", "flags of the old MS", name="v1")
    n_old = _nrows(ms)
    tau_old = load_truth(ms).tau
    real = os.rename

    def rename(src, dst, *a, **k):
        if ".simulating-" in os.path.basename(src) and dst == ms + ".truth.npz":
            raise OSError(5, "Input/output error", src)
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="Input/output"):
        simulate_ms(ms, seed=5, overwrite=True, **BLOCKS)
    monkeypatch.undo()
    assert _nrows(ms) == n_old and _read_all(ms) == (n_old, n_old)
    assert np.array_equal(load_truth(ms).tau, tau_old)
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["v1"]
    assert _leftovers(str(tmp_path), "o.ms") == []


def test_leftovers_of_a_killed_run_do_not_block_and_are_removed(tmp_path):
    """A kill -9 leaves its temporaries (named by its pid): the next run to the same name removes
    them, and an old MS the killed run had moved aside (killed between the renames) is put back."""
    ms = str(tmp_path / "o.ms")
    simulate_ms(ms, seed=0, **SMALL)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                             # a pid that no longer runs
    stem = os.path.join(str(tmp_path), ".o.ms")
    partial = f"{stem}.simulating-{dead.pid}-0"
    os.makedirs(partial)
    with open(os.path.join(partial, "table.dat"), "w") as f:
        f.write("half")
    with open(partial + ".truth.npz", "w") as f:
        f.write("half")
    aside = f"{stem}.replaced-{dead.pid}-0"
    os.rename(ms, aside)                                    # killed after moving the old MS aside
    os.rename(ms + ".truth.npz", aside + ".truth.npz")
    t = simulate_ms(ms, seed=5, overwrite=True, **SMALL)    # the old MS was put back, then replaced
    assert np.array_equal(load_truth(ms).tau, t.tau) and _read_all(ms)[0] == _nrows(ms)
    assert _leftovers(str(tmp_path), "o.ms") == []
    # without overwrite the put-back MS is refused as existing (it is the user's), and kept
    os.rename(ms, aside)
    os.rename(ms + ".truth.npz", aside + ".truth.npz")
    from alakazam.errors import AlakazamError

    with pytest.raises(AlakazamError, match="exists; pass overwrite"):
        simulate_ms(ms, seed=0, **SMALL)
    assert np.array_equal(load_truth(ms).tau, t.tau) and _leftovers(str(tmp_path), "o.ms") == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_cli_sigint_mid_write(tmp_path, overwrite):
    """The review's repro: SIGINT to ``alakazam simulate`` while it writes -> exit 130, a message
    about the MS (not about solution files), and OUT is the old MS, a complete new one, or absent."""
    ms = str(tmp_path / "s2.ms")
    n_old = None
    if overwrite:
        simulate_ms(ms, seed=0, **SMALL)
        n_old = _nrows(ms)
        tau_old = load_truth(ms).tau
    cmd = [sys.executable, "-c", "from alakazam.cli import entry; entry()", "simulate", ms,
           "--n-ant", "12", "--int-s", "10", "--seed", "5"] + (["--overwrite"] if overwrite else [])
    before = set(os.listdir(tmp_path))
    p = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                         env=dict(os.environ, ALAKAZAM_NO_PROGRESS="1"))
    t0 = time.time()
    while set(os.listdir(tmp_path)) == before and p.poll() is None and time.time() - t0 < 60:
        time.sleep(0.05)                        # the MS (or its temporary) is being created
    time.sleep(1.0)                             # ... and its rows written
    finished_first = p.poll() is not None
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    if finished_first or p.returncode == 0:
        pytest.skip("simulate finished before the signal (a fast machine)")
    assert p.returncode == 130, err
    assert "solution files" not in err and "was not written" in err, err
    assert _leftovers(str(tmp_path), "s2.ms") == []
    if os.path.lexists(ms):
        nread, nrows = _read_all(ms)            # complete and readable, whichever it is
        assert nread == nrows
        if overwrite and nrows == n_old:
            assert np.array_equal(load_truth(ms).tau, tau_old)     # the old pair
        else:
            assert load_truth(ms).times.size * 66 * 2 == nrows      # a complete new pair
    else:
        assert not overwrite and not os.path.lexists(ms + ".truth.npz")
