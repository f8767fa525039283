"""A calibrator corrected with its own per-scan solutions (applymode calflag, interp 'linear'): one
antenna's flagged solution in scan s puts only that antenna on scan s's own solution
(calibration/chain._same_scan_parts).  Review 54c: every antenna of that scan was held at its scan's
solution, where CASA's applycal (and akapply in the scans without a flag) interpolates linearly to the
neighbouring scans -- 0.40 of max |V| from CASA on the antennas whose solutions were all valid."""

import numpy as np
from casacore.tables import table

from alakazam.caltasks import akapply, akcal
from alakazam.io import hdf5
from alakazam.sim.simulate import simulate_ms


def test_a_flag_of_one_antenna_leaves_the_others_interpolated(tmp_path):
    ms = str(tmp_path / "o.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(4,), duration_h=1.5, int_s=60, scan_len_s=300,
                noise=0.01, seed=54, leakage=False, crosshand=False, dead_ant=False, bandpass=False,
                delays=False, flag_rows=0)
    cal = str(tmp_path / "g.h5")
    akcal(vis=ms, caltable=cal, field="3C286,3C147", refant="C00", jones=["G"], solint=["scan"])
    sets = hdf5.read_term(cal, "G0")
    mine = [s for s in sets if s.field_name == "3C147"]
    assert len(mine) >= 3, "3C147 needs a scan between two others"
    hit = mine[1]                               # a middle scan of 3C147
    names = [str(a) for a in hit.attrs["ant_names"]]
    a3 = names.index("C03")
    hit.flags[a3] = True
    hit.jones[a3] = np.nan
    flagged = str(tmp_path / "gf.h5")
    hdf5.write_file(flagged, {"G0": sets}, base=cal)

    def apply(tab):
        with table(ms, readonly=False, ack=False) as t:
            t.putcol("FLAG", np.zeros(t.getcol("FLAG").shape, bool))
        akapply(vis=ms, field=["3C147"], gaintable=[tab], jones=["G0"], interp=["linear"],
                applymode="calflag")
        with table(ms, ack=False) as t:
            scan = t.getcol("SCAN_NUMBER")
            return (t.getcol("CORRECTED_DATA"), t.getcol("FLAG"), scan, t.getcol("ANTENNA1"),
                    t.getcol("ANTENNA2"))

    cd0, fl0, scan, a1, a2 = apply(cal)
    cd1, fl1, _, _, _ = apply(flagged)
    with table(ms + "::ANTENNA", ack=False) as t:
        c03 = list(t.getcol("NAME")).index("C03")
    in_scan = scan == int(hit.scan_id or np.atleast_1d(hit.attrs["scans"])[0])
    assert in_scan.any()
    other = in_scan & (a1 != c03) & (a2 != c03) & (a1 != a2)
    # the other antennas of that scan: the same correction as without the flag (linear across scans)
    np.testing.assert_array_equal(fl1[other], fl0[other])
    np.testing.assert_allclose(cd1[other], cd0[other], rtol=0, atol=1e-6 * np.abs(cd0[other]).max())
    # C03 there: its own scan's (flagged) solution -- flagged, not bridged from the other scans
    assert fl1[in_scan & ((a1 == c03) | (a2 == c03)) & (a1 != a2)].all()


def test_a_flagged_channel_of_a_per_scan_bandpass_holds_only_that_channel(tmp_path):
    """Review 54d: one flagged channel of one antenna's per-scan bandpass put every channel of that antenna
    on its scan's own solutions (0.033 of max |V| from CASA's applycal).  Per (antenna, bin) now: with
    interp 'linear' (each channel its bin) that channel keeps its flag and the others are interpolated as
    without the flag; with 'linear,nearest' (flagged bins bridged in frequency, as CASA) nothing is held."""
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve

    ms = str(tmp_path / "b.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(8,), duration_h=1.5, int_s=60, scan_len_s=300,
                noise=0.01, seed=7, leakage=False, crosshand=False, dead_ant=False, delays=False, flag_rows=0)
    cal = str(tmp_path / "b.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, jones=["G"], field=["3C286"],
                                          time_interval=["scan"], freq_interval=["1ch"], ref_ant="C00",
                                          quiet=True)))
    sets = hdf5.read_term(cal, "G0")
    assert len(sets) >= 3
    hit = sorted(sets, key=lambda s: float(s.time[0]))[1]
    a2i = [str(a) for a in hit.attrs["ant_names"]].index("C02")
    hit.flags[a2i, 5] = True
    hit.jones[a2i, 5] = np.nan
    flagged = str(tmp_path / "bf.h5")
    hdf5.write_file(flagged, {"G0": sets}, base=cal)
    scan = int(hit.scan_id or np.atleast_1d(hit.attrs["scans"])[0])

    def apply(tab, interp):
        with table(ms, readonly=False, ack=False) as t:
            t.putcol("FLAG", np.zeros(t.getcol("FLAG").shape, bool))
        akapply(vis=ms, field=["3C286"], gaintable=[tab], jones=["G0"], interp=[interp], applymode="calflag")
        with table(ms, ack=False) as t:
            return (t.getcol("CORRECTED_DATA"), t.getcol("FLAG"), t.getcol("SCAN_NUMBER"),
                    t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("FIELD_ID"))

    with table(ms + "::ANTENNA", ack=False) as t:
        c02 = list(t.getcol("NAME")).index("C02")
    for interp in ("linear", "linear,nearest"):
        cd0, fl0, sc, a1, a2, fid = apply(cal, interp)
        cd1, fl1, _, _, _, _ = apply(flagged, interp)
        mine = (sc == scan) & ((a1 == c02) | (a2 == c02)) & (a1 != a2)
        assert mine.any()
        others = [c for c in range(8) if c != 5]
        tol = 1e-6 * np.abs(cd0).max()
        # the other channels of C02 in that scan: as without the flag (interpolated, not held)
        np.testing.assert_allclose(cd1[mine][:, others], cd0[mine][:, others], rtol=0, atol=tol)
        assert not fl1[mine][:, others].any()
        if interp == "linear":          # its channel keeps its flag
            assert fl1[mine][:, 5].all()
        else:                           # bridged in frequency: corrected from the neighbouring bins
            assert not fl1[mine][:, 5].any()
