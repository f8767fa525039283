"""akinfo (hdf5.summary): the groups of a key are listed in time order -- scan 4 before scan 10 -- not
in the file's order of group names (strings: '1', '10', '4', '7'; review of 2026-12-01)."""

from alakazam.config import solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms


def test_summary_lists_scans_in_time_order(tmp_path):
    ms = str(tmp_path / "o.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=3.0, noise=0.05, seed=2, flag_rows=0.0,
                dead_ant=False, leakage=False, crosshand=False)
    cal = str(tmp_path / "k.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones=["K"], field=["3C286"],
                                          time_interval=["scan"], quiet=True)))
    scans = [r["scan"] for r in hdf5.summary(cal) if r["key"] == "K0" and r["spw"] == 0]
    assert max(scans) >= 10 and min(scans) < 10, scans            # the case: one- and two-digit scans
    assert scans == sorted(scans), scans


class _Set:
    def __init__(self, scan, spw, t, field="CALA"):
        self.scan_id, self.spw, self.time, self.field_name = scan, spw, [t], field


def test_simultaneous_scans_listed_by_scan_number():
    """CASA's simulator writes one scan per SPW at the same times (scans 1 and 2, 5 and 6); a K per scan is
    timed at its data's weighted centroid, a few ms apart between them (measured 5217640517.931 for scan
    1, .927 for scan 2): listobs's order is 1, 2, 5, 6 (scan 2 came first before)."""
    t = 5217640517.93
    sets = [_Set(2, 1, t - 0.004), _Set(1, 0, t), _Set(6, 1, t + 540 - 0.0036), _Set(5, 0, t + 540 - 0.0001),
            _Set(3, 0, t + 300.2), _Set(4, 1, t + 300.0)]
    order = [s.scan_id for s in hdf5._listobs_order(sets)]
    assert order == [1, 2, 3, 4, 5, 6], order
