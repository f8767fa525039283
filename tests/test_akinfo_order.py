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
