"""Shared fixtures: small simulated Measurement Sets with known truth."""

import os

import pytest

from alakazam.sim import simulate_ms


# No alakazam.log from a task a test calls (alakazam/tasklog.py): pytest's logging plugin puts handlers on
# the root logger, which turns the file off already, but not under `-p no:logging` nor in a script a test
# runs in a subprocess (which inherits this environment -- also through an ENV dict a test module copies
# from os.environ at import, after this).  tests/test_python_tasklog.py unsets it in its tests.
os.environ["ALAKAZAM_LOG"] = ""


@pytest.fixture(scope="session")
def sim_linear(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim_linear")
    ms = str(d / "sim.ms")
    return ms, simulate_ms(ms, feed="linear", noise=0.05, seed=1, leakage=False, n_chan=(32, 16))


@pytest.fixture(scope="session")
def sim_circular(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim_circular")
    ms = str(d / "sim.ms")
    return ms, simulate_ms(ms, feed="circular", noise=0.05, seed=2, leakage=False, n_chan=(32, 16))


@pytest.fixture(scope="session")
def small_chain_table(tmp_path_factory):
    """Every term type solved on a tiny simulated MS (5 antennas, SPWs of 8 and 4 channels, linear
    feeds): the chain of examples/full_polarization.yaml, one round -> (ms, cal.h5, truth).  For the plot and
    CASA-table tests (shapes and conventions, not accuracy)."""
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve

    d = tmp_path_factory.mktemp("small_chain")
    ms, cal = str(d / "sim.ms"), str(d / "cal.h5")
    truth = simulate_ms(ms, feed="linear", n_ant=5, n_chan=(8, 4), int_s=120.0, scan_len_s=600.0,
                        noise=0.05, seed=31, leakage_scale=0.003, leakage_ref_zero=True)
    run_solve(solve_config_from_dict(dict(
        ms=ms, output=cal, ref_ant="C00", apply_parang=True, jones=["K", "G", "G", "KC", "CP", "D"],
        field=["3C286"], time_interval=["scan", "inf", "2min", "inf", "inf", "inf"],
        freq_interval=["full", "1MHz", "full", "full", "1MHz", "full"], quiet=True,
        # 5 antennas, one of them dead in some scans: 3 baselines per antenna there, which CASA's default
        # minblperant (4) flags whole; these tables are for shapes and conventions
        min_bl_per_ant=3)))
    return ms, cal, truth


@pytest.fixture(scope="session")
def constant_gains(tmp_path_factory):
    """6 antennas, 16 channels, 1.5 h; gains constant in time, no bandpass / leakage; 3C147's model set
    to its true 2.5 Jy.  K(scan) + G(2 min) and K(inf) + G(2 min) on 3C147 (tests/test_delay_frame.py,
    tests/test_export_delay_frame.py; the tests apply to the MS's CORRECTED_DATA)."""
    from casacore.tables import table

    from alakazam.caltasks import akcal

    d = tmp_path_factory.mktemp("dframe")
    ms = str(d / "c.ms")
    simulate_ms(ms, n_ant=6, n_chan=(16,), duration_h=1.5, noise=0.05, seed=11, time_gains=False,
                bandpass=False, leakage=False, crosshand=False, dead_ant=False, flag_rows=0.0)
    with table(ms, readonly=False, ack=False) as t:
        q = t.query("FIELD_ID==1")
        q.putcol("MODEL_DATA", q.getcol("MODEL_DATA") * 2.5)
        q.close()
    cals = {}
    for ksol in ("scan", "inf"):
        cals[ksol] = str(d / f"{ksol}.h5")
        akcal(vis=ms, caltable=cals[ksol], field="3C147", jones=["K", "G"], solint=[ksol, "2min"],
              refant="C00")
    cals["kbg"] = str(d / "kbg.h5")       # K per scan, a bandpass over all scans, G per 2 min
    akcal(vis=ms, caltable=cals["kbg"], field="3C147", jones=["K", "G", "G"], solint=["scan", "inf", "2min"],
          freqint=["full", "1MHz", "full"], refant="C00")
    for ksol in ("scan", "inf"):          # a T, and a G of 4-channel bins (for 'time,freq' interp)
        cals[ksol + "T"] = str(d / f"{ksol}T.h5")
        akcal(vis=ms, caltable=cals[ksol + "T"], field="3C147", jones=["K", "T"], solint=[ksol, "2min"],
              refant="C00")
        cals[ksol + "F"] = str(d / f"{ksol}F.h5")
        akcal(vis=ms, caltable=cals[ksol + "F"], field="3C147", jones=["K", "G"], solint=[ksol, "2min"],
              freqint=["full", "4MHz"], refant="C00")
    return ms, cals


@pytest.fixture
def solve_warnings(caplog):
    """``solve_warnings(match, **config)``: run_solve with the solve block ``config`` (quiet), and the
    alakazam warnings it logged whose text contains ``match``."""
    import logging

    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve

    def run(match, **config):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="alakazam"):
            run_solve(solve_config_from_dict(dict(quiet=True, **config)))
        return [r.getMessage() for r in caplog.records if match in r.getMessage()]

    return run
