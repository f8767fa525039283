"""A target time within rounding of a solution's own time is that solution's ("exact"), as in CASA's
applycal (review h60a).

CASA's gaincal writes a solint='int' solution at the mean of its rows' TIMEs, which differs from the
integration's TIME by about a microsecond either way.  ``linear`` / ``cubic`` compared the times
exactly, so an integration a microsecond before its own (valid) solution was bracketed with the
previous solution, and flagged (calflag) or left uncorrected (calonly) when that one was flagged --
measured on a CASA gaincal solint='int' table with three of one antenna's solutions flagged: akapply
flagged 800 samples of 3C286 in one SPW where CASA 6.7's applycal flags 480 (and the same 480 in the
other SPW, whose times happened to round the other way).
"""

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akapply, akcal
from alakazam.core.interpolation import bracket_valid, interp_time
from alakazam.io import hdf5
from alakazam.sim import simulate_ms


def test_bracket_valid_takes_a_solution_within_rounding_as_exact():
    t = np.array([0.0, 60.0, 120.0, 180.0]) + 5.2e9
    ok = np.array([[[True, False, True, True]]])
    for eps in (-1e-6, 0.0, 1e-6):
        tt = t + eps
        got = bracket_valid(t, ok, tt)[0, 0]
        # each target time is its own solution's: only the flagged one is invalid
        assert got.tolist() == [True, False, True, True], eps
    # between solutions the bracketing pair still decides
    assert bracket_valid(t, ok, t[:3] + 30.0)[0, 0].tolist() == [False, False, True]
    jones = np.ones((1, 1, 4, 2, 2), complex)
    out, fl = interp_time(t, jones, ~ok, t[[2]] - 1e-6, "linear")
    assert not fl[0, 0, 0] and np.allclose(out[0, 0, 0], 1.0)


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    d = tmp_path_factory.mktemp("exact")
    ms = str(d / "t.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(8,), duration_h=1.0, int_s=60.0, scan_len_s=600.0,
                noise=0.01, seed=3, leakage=False, crosshand=False, parang_in_data=False, dead_ant=False,
                flag_rows=0.0)
    cal = str(d / "gi.h5")
    akcal(vis=ms, caltable=cal, field="3C286", jones=["G"], solint=["int"], refant="C00")
    return ms, cal, d


@pytest.mark.parametrize("shift", [1e-6, -1e-6])
def test_int_solutions_with_jittered_times_flag_only_their_own_integration(solved, tmp_path, shift):
    import shutil

    ms0, cal, _ = solved
    sets = hdf5.read_term(cal, "G0")
    s = sets[0]                                   # 3C286's first scan
    ia = s.attrs["ant_names"].index("C02")
    k = 4
    s.flags[ia, :, k] = True
    s.jones[ia, :, k] = np.nan
    flagged_time = s.time[k]
    for x in sets:
        x.time = x.time + shift                  # CASA's mean-of-rows TIME: microseconds off
    jit = str(tmp_path / "jit.h5")
    hdf5.write_file(jit, {"G0": sets})
    ms = str(tmp_path / "t.ms")
    shutil.copytree(ms0, ms)
    akapply(vis=ms, field=["3C286"], gaintable=[jit], jones=["G0"], interp=["linear"], applymode="calflag")
    with table(ms, ack=False) as t:
        q = t.query("FIELD_ID==0")
        fl = q.getcol("FLAG").any(axis=(1, 2))
        tm = q.getcol("TIME")
        a1, a2 = q.getcol("ANTENNA1"), q.getcol("ANTENNA2")
    names = list(table(ms + "/ANTENNA", ack=False).getcol("NAME"))
    c02 = names.index("C02")
    on = (a1 == c02) | (a2 == c02)
    flagged_times = np.unique(tm[fl])
    # only C02's baselines at the flagged solution's integration
    assert len(flagged_times) == 1 and abs(flagged_times[0] - flagged_time) < 1e-3, \
        flagged_times - flagged_time
    assert fl[on & (np.abs(tm - flagged_time) < 1e-3)].all() and not fl[~on].any()
