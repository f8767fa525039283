"""The apply's warning when a field's data lie far beyond the time gains that serve it
(calibration/timecover.py): further than the largest gap between those solution times.

A review (session 49): TARGET scans 10-40 min after the last calibrator scan were corrected with the
last gains held (TARGET's amplitude 0.35-0.66 of its true 0.7 Jy on the drifting simulated gains), with
nothing said.  Delays and bandpasses, solved once and applied to everything by design, are not
judged."""

import logging

import pytest

from alakazam.sim import simulate_ms

MSG = "x the calibrator cadence"


def _simulated(tmp_path_factory, hours):
    """A small MS of ``hours``: 10-min scans of 2-min integrations cycling 3C286, 3C147, TARGET."""
    d = tmp_path_factory.mktemp("tcov")
    ms = str(d / "t.ms")
    simulate_ms(ms, n_ant=4, n_chan=(4,), duration_h=hours, int_s=120.0, scan_len_s=600.0, dead_ant=False,
                leakage=False, flag_rows=0.0)
    return ms, d


@pytest.fixture(scope="module")
def cal(tmp_path_factory):
    from alakazam.caltasks import akcal

    # scans of 10 min cycling 3C286, 3C147, TARGET: 3C286 in scans 1, 4, 7, 10; TARGET 3, 6, 9, 12
    ms, d = _simulated(tmp_path_factory, 2.0)
    early, every = str(d / "early.h5"), str(d / "every.h5")
    akcal(vis=ms, caltable=early, field="3C286", scan="1,4", jones=["K", "G"], solint=["inf", "scan"],
          refant="C00", minblperant=2)
    akcal(vis=ms, caltable=every, field="3C286", jones=["K", "G"], solint=["inf", "scan"], refant="C00",
          minblperant=2)
    return ms, early, every


def _warnings(caplog, ms, table, keys):
    from alakazam.caltasks import akapply

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        akapply(vis=ms, gaintable=[table] * len(keys), jones=keys, field="TARGET", interp=["linear"])
    return [r.getMessage() for r in caplog.records if MSG in r.getMessage()]


def test_target_long_after_the_last_gain_is_warned(cal, caplog):
    ms, early, _ = cal
    w = _warnings(caplog, ms, early, ["K0", "G0"])
    # 3C286's gains at scans 1 and 4 (30 min apart); TARGET up to scan 12, 80 min after scan 4
    assert len(w) == 1 and w[0].startswith("G0: TARGET SPW 0: 10 of 20 data times"), w
    assert "(after the last solutions)" in w[0] and "cadence (30.0 min)" in w[0], w


def test_bracketed_target_and_delays_are_not_warned(cal, caplog):
    ms, early, every = cal
    assert _warnings(caplog, ms, every, ["K0", "G0"]) == []     # TARGET within the 3C286 cadence
    assert _warnings(caplog, ms, early, ["K0"]) == []           # K over 'inf': constant by design


@pytest.fixture(scope="module")
def long_ms(tmp_path_factory):
    return _simulated(tmp_path_factory, 4.0)        # 3C286 in scans 1, 4, ..., 22


def test_a_hole_in_the_solutions_is_warned(long_ms, caplog):
    """3C286's gains of scans 1, 4, 7 and 19, 22 (a 2 h hole; a table of two epochs has a day): the
    TARGET scans in the hole are up to an hour from every solution, against a cadence of 30 min (a
    review: the largest gap between the solutions was the measure, and a hole never exceeds itself)."""
    from alakazam.caltasks import akcal

    ms, d = long_ms
    cal = str(d / "hole.h5")
    akcal(vis=ms, caltable=cal, field="3C286", scan="1,4,7,19,22", jones=["G"], solint=["scan"],
          refant="C00", minblperant=2)
    w = _warnings(caplog, ms, cal, ["G0"])
    assert len(w) == 1 and "(between solutions)" in w[0] and "(30.0 min)" in w[0], w


def test_gains_over_inf_on_two_calibrators_are_not_warned(long_ms, caplog):
    """One gain per calibrator over the whole run, chosen by nearest_time: constant by design (a review:
    the two fields' solution times, 10 min apart, were taken for a cadence)."""
    from alakazam.caltasks import akcal

    ms, d = long_ms
    cal = str(d / "inf.h5")
    akcal(vis=ms, caltable=cal, field="3C286,3C147", jones=["G"], solint=["inf"], refant="C00",
          minblperant=2)
    assert _warnings(caplog, ms, cal, ["G0"]) == []
