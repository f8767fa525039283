"""Solve units on dask.distributed (LocalCluster of 2 worker processes) equal the in-process solve.

Convention pinned here (alakazam/distributed.py): a unit is (step, field, SPW, scan group); the client
writes the HDF5 file in chain order; a dying worker's unit is re-run elsewhere, and when it keeps
failing the block fails clearly and the failing step is not written.
"""

import os

import numpy as np
import pytest

from alakazam.config import solve_config_from_dict
from alakazam.errors import AlakazamError, ParameterError
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

pytest.importorskip("distributed")

BLOCK = dict(jones=["K", "G", "G"], field=[["3C286"], ["3C286"], ["3C286", "3C147"]],
             time_interval=["scan", "inf", "300s"], freq_interval=["full", "2MHz", "full"], ref_ant="C00")


@pytest.fixture(scope="module")
def small_ms(tmp_path_factory):
    ms = str(tmp_path_factory.mktemp("dist") / "sim.ms")
    simulate_ms(ms, n_ant=5, n_chan=(8, 4), duration_h=1.0, int_s=120.0, noise=0.05, seed=7, leakage=False)
    return ms


def _solve(ms, out, **extra):
    cfg = solve_config_from_dict(dict(BLOCK, ms=ms, output=out, quiet=True, **extra))
    return run_solve(cfg)


def _same_tables(a, b):
    assert hdf5.list_keys(a) == hdf5.list_keys(b)
    for key in hdf5.list_keys(a):
        sa, sb = hdf5.read_term(a, key), hdf5.read_term(b, key)
        assert ([(s.field_name, s.spw, s.scan_id) for s in sa]
                == [(s.field_name, s.spw, s.scan_id) for s in sb])
        for x, y in zip(sa, sb):
            np.testing.assert_array_equal(x.flags, y.flags)
            ok = ~x.flags
            np.testing.assert_allclose(x.jones[ok], y.jones[ok], rtol=0, atol=1e-10)
            np.testing.assert_allclose(x.time, y.time, rtol=0, atol=1e-6)
            if x.delay is not None:
                np.testing.assert_allclose(x.delay[ok], y.delay[ok], rtol=0, atol=1e-10)


def test_two_workers_equal_in_process(small_ms, tmp_path):
    ref = str(tmp_path / "inproc.h5")
    dist = str(tmp_path / "dask.h5")
    s0 = _solve(small_ms, ref)
    s1 = _solve(small_ms, dist, workers=2)
    assert s1["distributed"] and not s0["distributed"]
    _same_tables(ref, dist)


def test_worker_killed_once_is_rerun(small_ms, tmp_path, monkeypatch):
    """The first attempt of a G1 unit kills its worker process (os._exit); dask re-runs it elsewhere
    and the table equals the in-process one."""
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("ALAKAZAM_FAULT_INJECT", f"G1:once:{marker}")
    ref = str(tmp_path / "inproc.h5")
    dist = str(tmp_path / "dask.h5")
    _solve(small_ms, ref)
    _solve(small_ms, dist, workers=2)
    assert marker.exists()                      # the fault really happened
    _same_tables(ref, dist)


def test_worker_always_killed_fails_clearly(small_ms, tmp_path, monkeypatch):
    """A unit whose worker dies every time: a clear error; G1 is not written (K0, G0 were complete and
    are, as in-process when a later step fails)."""
    monkeypatch.setenv("ALAKAZAM_FAULT_INJECT", "G1:always:")
    out = str(tmp_path / "dask.h5")
    with pytest.raises(AlakazamError, match="G1.*failed on the cluster"):
        _solve(small_ms, out, workers=2)
    assert "G1" not in hdf5.list_keys(out)
    assert {"K0", "G0"} <= set(hdf5.list_keys(out))


@pytest.mark.parametrize("extra, message", [
    (dict(workers=-1), "workers"),
    (dict(scheduler="localhost:8786"), "scheduler"),
])
def test_bad_cluster_parameters(small_ms, tmp_path, extra, message):
    with pytest.raises(ParameterError, match=message):
        _solve(small_ms, str(tmp_path / "x.h5"), **extra)
    assert not os.path.exists(tmp_path / "x.h5")


def test_cli_run_workers(small_ms, tmp_path):
    """`alakazam run --workers 2 cfg.yaml` (the option reaches every solve block) equals in-process."""
    import yaml

    from alakazam.cli import main

    ref = str(tmp_path / "inproc.h5")
    _solve(small_ms, ref)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"solve": [dict(BLOCK, ms=small_ms, output=str(tmp_path / "cli.h5"))]}))
    assert main(["--quiet", "run", "--workers", "2", str(cfg)]) == 0
    _same_tables(ref, str(tmp_path / "cli.h5"))


def test_worker_warnings_are_captured_for_the_client():
    """distributed._captured_warnings (worker side of a unit): alakazam's warnings of this thread are
    collected -- not passed on to the worker's own handlers -- and distributed.unwrap logs them on the
    client under the same logger; another thread's warnings (a worker running two units) are not taken."""
    import logging
    import threading

    from alakazam import distributed

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    root = logging.getLogger()
    h = Keep(logging.DEBUG)
    root.addHandler(h)
    try:
        def unit():
            logging.getLogger("alakazam.solve").warning("unit says %d", 1)
            other = threading.Thread(target=lambda: logging.getLogger("alakazam.solve").warning("other"))
            other.start()
            other.join()
            logging.getLogger("alakazam.solve").info("not a warning")
            return 42

        res = distributed.captured(unit)
        assert seen == ["other"]                        # the unit's own warning held back
        assert res.records == [("alakazam.solve", logging.WARNING, "unit says 1")]
        assert distributed.unwrap(res) == 42 and seen == ["other", "unit says 1"]
        assert logging.getLogger("alakazam").propagate     # restored
    finally:
        root.removeHandler(h)


def test_first_failure_is_not_held_back_by_a_stalled_unit(small_ms, tmp_path, monkeypatch):
    """The client raises the first unit that fails and cancels the rest: before, it then took each unit's
    result in order and waited for a unit ahead of the failed one, still running or queued (a local run
    once hung there, session 41).  Here G1's first unit (3C286, DATA_DESC_ID 0, its first scan) stalls for
    STALL_S seconds and then marks that it finished; every other G1 unit fails.  The error must come while
    the first unit still stalls."""
    from casacore.tables import table

    with table(small_ms, ack=False) as t:
        fid = list(table(os.path.join(small_ms, "FIELD"), ack=False).getcol("NAME")).index("3C286")
        scan = int(t.query(f"FIELD_ID=={fid} && DATA_DESC_ID==0").getcol("SCAN_NUMBER").min())
    marker = tmp_path / "stall-ended"
    monkeypatch.setenv("ALAKAZAM_FAULT_INJECT", f"G1:stall:{fid}/0/{scan}/{marker}")
    with pytest.raises(AlakazamError, match="G1: injected failure"):
        _solve(small_ms, str(tmp_path / "dask.h5"), workers=2)
    assert not marker.exists()


def test_int_on_workers_counts_integrations_as_in_process(tmp_path):
    """solint 'int' on an MS whose INTERVAL (144 s) is not its dump spacing (120 s): the units shipped to
    the workers are solved with the integrations counted from the scan's TIMEs, as in process -- one
    solution per integration (their groups came from plan.units_of, a duration of the median INTERVAL:
    integrations merged, residual 68x the noise in a review)."""
    from casacore.tables import table

    ms = str(tmp_path / "iv.ms")
    simulate_ms(ms, n_ant=5, n_chan=(4,), duration_h=1.0, int_s=120.0, noise=0.05, seed=9, leakage=False)
    with table(ms, readonly=False, ack=False) as t:
        t.putcol("INTERVAL", t.getcol("INTERVAL") * 1.2)
        n_int = len(np.unique(t.getcol("TIME")[t.getcol("FIELD_ID") == 0]))
    block = dict(jones=["G"], field=["3C286"], time_interval=["int"], ref_ant="C00", ms=ms, quiet=True)
    for workers, out in ((0, str(tmp_path / "inproc.h5")), (2, str(tmp_path / "dask.h5"))):
        run_solve(solve_config_from_dict(dict(block, output=out, workers=workers)))
        assert sum(s.jones.shape[2] for s in hdf5.read_term(out, "G0")) == n_int, workers
    _same_tables(str(tmp_path / "inproc.h5"), str(tmp_path / "dask.h5"))


def _interrupted_run(small_ms, tmp_path, inject, marker, after_s, poll_s):
    """``alakazam run --workers 2`` of a G solve with the test hook ``ALAKAZAM_FAULT_INJECT=inject``,
    SIGINT to its process group (as a terminal's Ctrl-C) ``after_s`` seconds after ``marker`` appears:
    its (exit status, output)."""
    import signal
    import subprocess
    import sys
    import time

    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"solve:\n  ms: {small_ms}\n  output: {tmp_path / 'c.h5'}\n  jones: [G]\n"
                   "  time_interval: [inf]\n  ref_ant: C00\n")
    env = dict(os.environ, ALAKAZAM_FAULT_INJECT=inject)
    p = subprocess.Popen([sys.executable, "-m", "alakazam", "run", "--workers", "2", str(cfg)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        t0 = time.monotonic()
        while not marker.exists() and p.poll() is None and time.monotonic() - t0 < 180:
            time.sleep(poll_s)
        assert marker.exists(), p.communicate(timeout=60)[0]
        time.sleep(after_s)
        os.killpg(p.pid, signal.SIGINT)
        out = p.communicate(timeout=120)[0]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    return p.returncode, out


def test_ctrl_c_stops_the_client_alone_without_worker_tracebacks(small_ms, tmp_path):
    """A Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the units of a
    LocalCluster run: the workers ignore it (distributed.dask_setup, their preload), the client stops and
    closes the cluster, exit status 130 with alakazam's one-line message.  Each worker printed a 25-line
    KeyboardInterrupt traceback and dask a warning per cancelled unit (review 54e), and dask's INFO lines
    of the nannies closing came after the message when the Ctrl-C fell in the cluster's close."""
    marker = tmp_path / "sleeping"
    rc, out = _interrupted_run(small_ms, tmp_path, f"G0:sleep:{marker}", marker, 1.0, 0.2)
    assert rc == 130, out
    assert "alakazam: interrupted" in out
    for noise in ("Traceback", "KeyboardInterrupt", "Task cancelled", "Nanny"):
        assert noise not in out, out
    assert not os.path.exists(tmp_path / "c.h5")


def test_ctrl_c_while_the_cluster_starts_is_acted_on_once_it_is_up(small_ms, tmp_path):
    """A Ctrl-C to the process group while the LocalCluster's workers start, before their preload ignores
    SIGINT (the test hook pauses each worker there, distributed.PAUSE_S): the workers were started with
    SIGINT blocked (core/signals.spawning), so none prints a KeyboardInterrupt traceback, and the client
    stops once the cluster is up and closes it -- exit 130, alakazam's one line, no table.  Before, each
    worker printed a traceback from wherever its imports were, and dask "Nanny failed to start" and an
    ``AssertionError: Status.init`` at exit (review 55d)."""
    marker = tmp_path / "starting"
    rc, out = _interrupted_run(small_ms, tmp_path, f"preload:pause:{marker}", marker, 0.0, 0.05)
    assert rc == 130, out
    assert "alakazam: interrupted" in out
    for noise in ("Traceback", "KeyboardInterrupt", "Nanny", "Status.init", "Error"):
        assert noise not in out, out
    assert not os.path.exists(tmp_path / "c.h5")
