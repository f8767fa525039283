"""A step names the antennas with no valid solution in any cell of an SPW (flow._antennas_without_solution):
review 54a's antenna, dead in one SPW, was flagged in every solution there -- rightly -- but the log said
only "K0: 12/160 flagged", and calflag then removed 20% of that SPW from every field unexplained."""

import logging

from casacore.tables import table

from alakazam.config import solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.sim import simulate_ms


def test_an_antenna_flagged_in_one_spw_is_named(tmp_path, caplog):
    ms = str(tmp_path / "d.ms")
    simulate_ms(ms, n_ant=7, n_ant_extra=0, n_chan=[4, 4], duration_h=0.5, int_s=120.0, scan_len_s=480.0,
                noise=0.01, seed=54, leakage=False, dead_ant=False, flag_rows=0)
    with table(ms + "::ANTENNA", ack=False) as a:
        c2 = list(a.getcol("NAME")).index("C02")
    with table(ms + "::DATA_DESCRIPTION", ack=False) as d:
        spw_of_dd = d.getcol("SPECTRAL_WINDOW_ID")
    with table(ms, readonly=False, ack=False) as t:
        f = t.getcol("FLAG")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        hit = (spw_of_dd[t.getcol("DATA_DESC_ID")] == 1) & ((a1 == c2) | (a2 == c2))
        f[hit] = True
        t.putcol("FLAG", f)
    with caplog.at_level(logging.INFO, logger="alakazam"):
        summary = run_solve(solve_config_from_dict(dict(ms=ms, output=str(tmp_path / "g.h5"), jones=["G"],
                                                        field=["3C286"], time_interval=["scan"],
                                                        ref_ant="C00", quiet=True)))
    said = [r.getMessage() for r in caplog.records if "no valid solution in any cell" in r.getMessage()]
    assert said == [said[0]] and "for C02 (SPW 1)" in said[0] and "SPW 0" not in said[0]
    assert summary["terms"]["G0"]["no_solution_antennas"] == {1: ["C02"]}
