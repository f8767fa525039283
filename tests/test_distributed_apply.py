"""Apply and akflag on dask.distributed (LocalCluster of 2 worker processes) equal the in-process run.

Convention pinned here (alakazam/distributed_apply.py): workers compute, the client alone writes the MS
(one writer, MS lock held); the output is bit-identical to the in-process run; a worker killed
mid-apply has its chunk re-run elsewhere, and when it keeps dying the run fails clearly, the MS stays
readable without a half-written output column, and re-running completes.
"""

import shutil

import numpy as np
import pytest

from alakazam.calibration.apply import run_apply
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.core import flagversions
from alakazam.errors import AlakazamError
from alakazam.flagging import run_flag
from alakazam.flagging.config import flag_config_from_dict
from alakazam.flow import run_solve
from alakazam.sim import simulate_ms

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    d = tmp_path_factory.mktemp("dapply")
    ms = str(d / "sim.ms")
    simulate_ms(ms, n_ant=5, n_chan=(8, 4), duration_h=1.0, int_s=120.0, noise=0.05, seed=11, leakage=False,
                rfi=True)
    cal = str(d / "cal.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, jones=["K", "G"], field=["3C286", "3C147"],
                                          time_interval=["scan", "300s"], freq_interval=["full", "full"],
                                          ref_ant="C00", quiet=True)))
    return ms, cal


@pytest.fixture(scope="module")
def scheduler():
    """One LocalCluster of 2 worker processes for the equality tests (runs reach it by its address,
    the ``scheduler:`` path; the fault tests start their own through ``workers: 2``)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c.scheduler_address


def _copy(ms, dest):
    shutil.copytree(ms, dest)
    return str(dest)


def _col(ms, name):
    """Column ``name`` as one flat array (None when missing): the DATA_DESC_IDs' shapes differ."""
    from casacore.tables import table

    with table(ms, ack=False) as t:
        if name not in t.colnames():
            return None
        return np.concatenate([np.ravel(t.getcell(name, r)) for r in range(t.nrows())])


def _apply(ms, cal, **extra):
    # memory_limit_gb small enough for several row chunks per (field, SPW)
    return run_apply(apply_config_from_dict(dict(ms=ms, jones=["K0", "G0"], tables=[cal, cal], quiet=True,
                                                 time_interp=["nearest", "linear"], memory_limit_gb=2e-4,
                                                 **extra)))


@pytest.mark.parametrize("parang", [False, True])
def test_apply_two_workers_bit_identical(solved, scheduler, tmp_path, caplog, parang):
    """CORRECTED_DATA and (applymode calflag) FLAG equal the in-process run bit for bit; counts too.
    With ``parang`` too: each time's parallactic angle comes from its own 300-s interval's two
    anchors, converted once per process (jones/parang.zenith_j2000), whichever row chunk or worker
    asks (before session 38 the anchors spread over each chunk's time range, and casacore's history
    of conversions reached the array's angle: 1-2 ULP in 3-27% of the samples)."""
    import logging
    import re

    ms, cal = solved
    a, b = _copy(ms, tmp_path / "a.ms"), _copy(ms, tmp_path / "b.ms")
    ra = _apply(a, cal, applymode="calflag", apply_parang=parang)
    with caplog.at_level(logging.INFO, logger="alakazam.distributed"):
        rb = _apply(b, cal, applymode="calflag", scheduler=scheduler, apply_parang=parang)
    m = [re.match(r"apply: (\d+) row chunks of (\d+) \(field, SPW\)", r.getMessage()) for r in caplog.records]
    n_chunks, n_units = [tuple(map(int, x.groups())) for x in m if x][0]
    assert n_units == 6 and n_chunks >= 3 * n_units             # several chunks per (field, SPW)
    assert ra["rows"] == rb["rows"] > 0
    for k in ("samples", "no_solution", "flagged_by_solution", "flagged_by_term"):
        assert ra[k] == rb[k], k
    assert ra["log"] == rb["log"]
    assert rb["flag_backup"] and flagversions.list_versions(b)
    ca, cb = _col(a, "CORRECTED_DATA"), _col(b, "CORRECTED_DATA")
    assert not np.array_equal(ca, _col(a, "DATA"))             # something was corrected
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(_col(a, "FLAG"), _col(b, "FLAG"))
    assert _col(b, "CORRECTED_DATA_AKPARTIAL") is None


def test_flag_two_workers_identical(solved, scheduler, tmp_path):
    """akflag mode='mad' (reads DATA and MODEL_DATA) on 2 workers: FLAG / FLAG_ROW and the counts equal
    the in-process run's; the flag version is saved first."""
    ms, _ = solved
    a, b = _copy(ms, tmp_path / "a.ms"), _copy(ms, tmp_path / "b.ms")
    fa = run_flag(flag_config_from_dict(dict(ms=a, mode="mad", threshold=4.0, quiet=True)))
    fb = run_flag(flag_config_from_dict(dict(ms=b, mode="mad", threshold=4.0, quiet=True,
                                             scheduler=scheduler)))
    assert fa["newly_flagged"] > 0
    for k in ("total", "flagged_before", "flagged_after", "newly_flagged", "unflagged"):
        assert fa[k] == fb[k], k
    np.testing.assert_array_equal(_col(a, "FLAG"), _col(b, "FLAG"))
    np.testing.assert_array_equal(_col(a, "FLAG_ROW"), _col(b, "FLAG_ROW"))
    assert fb["version"] == "akflag_1"
    flagversions.restore(b, fb["version"], merge="replace")     # the saved version is the FLAG before
    np.testing.assert_array_equal(_col(b, "FLAG"), _col(ms, "FLAG"))


def test_worker_killed_mid_apply(solved, tmp_path, monkeypatch):
    """Every attempt of every apply chunk kills its worker: a clear error, no output column (the partial
    one is dropped), the MS opens; re-running completes and equals the in-process result.  A worker
    killed once has its chunk re-run elsewhere (same result)."""
    ms, cal = solved
    ref, b = _copy(ms, tmp_path / "ref.ms"), _copy(ms, tmp_path / "b.ms")
    _apply(ref, cal, output_col="CAL_DATA")
    monkeypatch.setenv("ALAKAZAM_FAULT_INJECT", "apply:always:")
    with pytest.raises(AlakazamError, match="apply: the unit field .* failed on the cluster"):
        _apply(b, cal, output_col="CAL_DATA", workers=2)
    assert _col(b, "CAL_DATA") is None and _col(b, "CAL_DATA_AKPARTIAL") is None
    assert _col(b, "DATA").shape == _col(ref, "DATA").shape         # readable
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("ALAKAZAM_FAULT_INJECT", f"apply:once:{marker}")
    _apply(b, cal, output_col="CAL_DATA", workers=2)
    assert marker.exists()
    np.testing.assert_array_equal(_col(b, "CAL_DATA"), _col(ref, "CAL_DATA"))


def test_run_workers_reaches_apply_and_flag_blocks(solved, tmp_path, monkeypatch):
    """`alakazam run --workers 3` sets workers on flag and apply blocks that do not set their own (the
    distributed entry points are replaced by recorders: no cluster starts); workers: -1 is refused."""
    import yaml

    from alakazam import distributed_apply
    from alakazam.errors import ParameterError
    from caltasks.yamlrun import run_yaml

    ms, cal = solved
    m = _copy(ms, tmp_path / "m.ms")
    seen = []
    monkeypatch.setattr(distributed_apply, "flag_units", lambda cfg, *a: seen.append(("flag", cfg.workers)))

    def apply_plan(cfg, meta, terms, plan, *a):
        seen.append(("apply", cfg.workers))
        return plan                         # the in-process loop then runs the plan

    monkeypatch.setattr(distributed_apply, "apply_plan", apply_plan)
    doc = {"flag": [dict(ms=m, mode="manual", antenna="C02", quiet=True)],
           "apply": [dict(ms=m, jones=["G0"], tables=[cal], quiet=True),
                     dict(ms=m, jones=["G0"], tables=[cal], output_col="SELF_DATA", workers=0, quiet=True)]}
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    run_yaml(str(cfg), workers=3)
    assert seen == [("flag", 3), ("apply", 3)]          # the block with workers: 0 ran in process
    doc["apply"][0]["workers"] = -1
    cfg.write_text(yaml.safe_dump(doc))
    with pytest.raises(ParameterError, match="workers"):
        run_yaml(str(cfg))


def test_dask_info_log_hidden(solved, tmp_path, caplog):
    """A run with workers logs no dask INFO (the cluster's start and shutdown, with tracebacks of the
    connections it closes -- a review, session 49: two CommClosedError tracebacks per run, exit 0);
    alakazam's own lines stay, and the distributed logger's level is restored afterwards."""
    import logging

    ms, cal = solved
    b = _copy(ms, tmp_path / "b.ms")
    before = logging.getLogger("distributed").level
    with caplog.at_level(logging.INFO):
        _apply(b, cal, output_col="CAL_DATA", workers=2)
    recs = caplog.records
    dask_info = [r for r in recs if r.name.startswith("distributed") and r.levelno < logging.WARNING]
    assert dask_info == [], [r.getMessage()[:80] for r in dask_info[:3]]
    assert any(r.name == "alakazam.distributed" and "dask: 2 workers" in r.getMessage() for r in recs)
    assert logging.getLogger("distributed").level == before


def test_apply_warnings_once_as_in_process(solved, scheduler, tmp_path, caplog):
    """A warning the apply says once per run in process (a bandpass solved on channels 2~5 applied to
    all 8: the channels outside its band) is said once on the cluster too, as a WARNING -- each field
    and row chunk's worker said it again (the review of session 49: the same line once per field,
    then replayed as INFO with the chain lines); the result's log equals the in-process run's."""
    import logging

    ms, _ = solved
    bp = str(tmp_path / "bp.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=bp, jones=["G"], field=["3C286"], spw="0:2~5",
                                          time_interval=["inf"], freq_interval=["1MHz"], ref_ant="C00",
                                          quiet=True)))
    a, b = _copy(ms, tmp_path / "a.ms"), _copy(ms, tmp_path / "b.ms")
    runs = []
    for m, extra in ((a, {}), (b, dict(scheduler=scheduler))):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            r = run_apply(apply_config_from_dict(dict(ms=m, jones=["G0"], tables=[bp], spw="0", quiet=True,
                                                      memory_limit_gb=2e-4, **extra)))
        said = [(rec.levelno, rec.getMessage()) for rec in caplog.records
                if "lie outside the band its solutions cover" in rec.getMessage()]
        runs.append((r, said))
    (ra, said_a), (rb, said_b) = runs
    assert len(said_a) == 1 and said_a[0][0] == logging.WARNING, said_a
    assert said_b == said_a
    assert ra["log"] == rb["log"]


def test_relative_paths_reach_the_workers_as_the_clients(solved, scheduler, tmp_path, monkeypatch):
    """Review 54e: with a running scheduler, a relative ``ms``/table path was resolved in each worker's own
    directory -- another MS of that name there was solved, flagged and corrected, and the results written
    into the user's MS, exit 0.  The client makes the paths absolute before they travel
    (distributed.for_workers); the workers of this scheduler run in another directory."""
    ms, cal = solved
    ref = _copy(ms, tmp_path / "ref.ms")
    _apply(ref, cal)
    shutil.copytree(ms, tmp_path / "w.ms")
    shutil.copyfile(cal, tmp_path / "cal.h5")
    monkeypatch.chdir(tmp_path)
    _apply("w.ms", "cal.h5", scheduler=scheduler)
    np.testing.assert_array_equal(_col("w.ms", "CORRECTED_DATA"), _col(ref, "CORRECTED_DATA"))
    run_solve(solve_config_from_dict(dict(ms="w.ms", output="g.h5", jones=["G"], field=["3C286"],
                                          time_interval=["scan"], ref_ant="C00", quiet=True,
                                          scheduler=scheduler)))
    run_flag(flag_config_from_dict(dict(ms="w.ms", mode="clip", clipminmax=[0.0, 1e6], quiet=True,
                                        scheduler=scheduler)))


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n"])
def test_an_address_that_is_no_dask_scheduler_is_refused(monkeypatch, reply):
    """Review 54e: a dashboard's port (HTTP, waits for a request) hung the run for good; a server that
    answers with an HTTP status line crashed it ("MemoryError: Unable to allocate 3.07 EiB")."""
    import socket
    import threading

    from alakazam import distributed

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    conns = []

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            if reply:
                c.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(distributed, "PROBE_S", 0.5)
    try:
        with pytest.raises(AlakazamError, match="did not answer as a dask scheduler"):
            with distributed.client(scheduler=f"tcp://127.0.0.1:{port}"):
                pass
    finally:
        srv.close()
        for c in conns:
            c.close()
