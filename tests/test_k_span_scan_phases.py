"""calibration/spancheck.measure_k: each scan's LM starts from that scan's own phases (review h60h).

The K span check refits each scan's sums starting from the combined solution.  Its phases are the
gains averaged over the scans: where an antenna's phase moved between the scans (drifting gains, a
phase jump), the start is up to ~pi off in that scan and the LM fell into another minimum -- on the
review's MeerKAT-like MS (16 antennas, 4 x 256 channels) C14's Y delay came out 7.86 ns in one scan
for the 0.21 ns a per-scan solve gives, and a K with combine='scan' within 0.003 ns of the truth was
warned as "biased ... by up to 14.3 ns (551 times its formal error)".  Here: one antenna's Y feed
jumps in phase by 2.9 rad in one of 3C147's scans, every delay constant: the per-scan delays equal the
combined ones (the same flags in every scan), so combine='scan' must stay silent and the figure of
'inf' be of the order of the noise."""

import numpy as np
import pytest

from alakazam.sim import simulate_ms

MSG = "spans several scans"


def _jump(ms, ant_name, scan_index, dphi):
    """Turn the Y feed of ``ant_name`` by ``dphi`` rad in 3C147's ``scan_index``-th scan (DATA)."""
    from casacore.tables import table

    with table(ms + "/ANTENNA", ack=False) as ta:
        ant = list(ta.getcol("NAME")).index(ant_name)
    with table(ms, readonly=False, ack=False) as t:
        scans = sorted(set(t.getcol("SCAN_NUMBER")[t.getcol("FIELD_ID") == 1].tolist()))
        rows = np.flatnonzero(t.getcol("SCAN_NUMBER") == scans[scan_index])
        a1, a2 = t.getcol("ANTENNA1")[rows], t.getcol("ANTENNA2")[rows]
        d = t.getcol("DATA")
        e = np.exp(1j * dphi)
        for r, x, y in zip(rows, a1, a2):
            if x == ant:                    # Y of ANTENNA1: YX, YY
                d[r, :, 2] *= e
                d[r, :, 3] *= e
            if y == ant:                    # Y of ANTENNA2: XY, YY (conjugated)
                d[r, :, 1] *= np.conj(e)
                d[r, :, 3] *= np.conj(e)
        t.putcol("DATA", d)


@pytest.fixture(scope="module")
def jump_ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("kjump")
    ms = str(d / "jump.ms")
    simulate_ms(ms, n_ant=6, n_ant_extra=0, n_chan=(256,), duration_h=1.0, int_s=60.0, scan_len_s=300.0,
                noise=0.05, seed=4, time_gains=False, delays=True, bandpass=False, leakage=False,
                crosshand=False, dead_ant=False, flag_rows=0.0)
    _jump(ms, "C04", 1, 2.9)
    return d, ms


def test_k_combine_scan_phase_jump_silent(jump_ms, solve_warnings):
    d, ms = jump_ms
    w = solve_warnings(MSG, ms=ms, output=str(d / "cs.h5"), ref_ant="C00", field=["3C147"], jones=["K"],
                       apply_parang=True, time_interval=["inf"], combine="scan")
    assert w == [], w


def test_k_inf_phase_jump_figure_is_noise(jump_ms, solve_warnings):
    d, ms = jump_ms
    w = solve_warnings(MSG, ms=ms, output=str(d / "inf.h5"), ref_ant="C00", field=["3C147"], jones=["K"],
                       apply_parang=True, time_interval=["inf"])
    assert len(w) == 1, w
    assert "do not show it biased" in w[0], w[0]
