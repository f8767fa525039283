"""The FEED table's receptor angle per SPW (core/ms_io.receptor_angles), as CASA: an antenna's row with
the SPW's own SPECTRAL_WINDOW_ID, else its -1 row.

A review (session 49): FEED rows per SPW (as VLA and ALMA MSs have, with other angles per receiver
band) were read as one angle per antenna, the table's last row winning: rows for SPW 1 at 1.5 rad
stored after SPW 0's at 0.5 rad made a parang solve of SPW 0 use 1.5 rad, |gX / gY| 0.155 off the
truth (0.001 with the rows in the other order), without a word.  Rows of one antenna and SPW that
disagree (time-dependent angles, not interpolated here) are refused where the parallactic angle is
used, naming them."""

import os
import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.core import ms_io
from alakazam.errors import AlakazamError


def test_rows_per_spw_and_the_wildcard():
    rows = [(0, 1, 0, np.array([1.5, 1.5 + np.pi / 2])), (0, -1, 0, np.array([0.5, 0.5 + np.pi / 2])),
            (1, -1, 0, np.array([0.2, 0.2 + np.pi / 2])), (1, 0, 1, np.array([9.0, 9.0]))]
    for order in (rows, rows[::-1]):
        default, per_spw, conflicts = ms_io.receptor_angles(order, 3, [0, 1])
        assert per_spw[0][:, 0].tolist() == [0.5, 0.2, 0.0]        # SPW 0: the -1 rows (FEED_ID 0 first)
        assert per_spw[1][:, 0].tolist() == [1.5, 0.2, 0.0]        # SPW 1: antenna 0's own row
        assert default[:, 0].tolist() == [0.5, 0.2, 0.0] and not conflicts


def test_disagreeing_rows_of_one_spw_are_a_conflict():
    rows = [(0, 0, 0, np.array([0.5, 2.0])), (0, 0, 0, np.array([0.7, 2.2]))]
    _, _, conflicts = ms_io.receptor_angles(rows, 1, [0])
    assert conflicts == {0: [(0, [0.5, 0.7])]}
    # a float32 round trip (2e-8 rad) is the same angle (a review: refused)
    q = np.pi / 4
    rows = [(0, 0, 0, np.array([q, q + 1])), (0, 0, 0, np.array([float(np.float32(q)), q + 1]))]
    assert ms_io.receptor_angles(rows, 1, [0])[2] == {}


def test_an_spw_without_rows_of_its_own_or_minus_one_takes_the_antennas_first_row():
    """Rows for SPW 0 only in a 2-SPW MS: SPW 1 took 0 (a review: |gX/gY| 0.091 off the truth)."""
    rows = [(0, 0, 0, np.array([0.5, 0.5 + np.pi / 2]))]
    _, per_spw, _ = ms_io.receptor_angles(rows, 1, [0, 1])
    assert per_spw[1][0, 0] == 0.5


@pytest.fixture(scope="module")
def linear_05(tmp_path_factory):
    from alakazam.sim import simulate_ms

    d = tmp_path_factory.mktemp("recept")
    ms = str(d / "r.ms")
    truth = simulate_ms(ms, feed="linear", n_ant=6, n_chan=(8,), duration_h=1.5, scan_len_s=300.0,
                        noise=0.05, seed=3, receptor_angle=0.5, time_gains=False, bandpass=False,
                        delays=False, leakage=False, crosshand=False, dead_ant=False, flag_rows=0.0)
    return ms, truth


def _with_feed_rows(ms0, path, spw1_first):
    """A copy of ``ms0`` whose FEED table holds each antenna's rows twice: SPECTRAL_WINDOW_ID 0 at the
    simulated angle and 1 (no data here) at +1 rad, the SPW-1 rows first or last."""
    shutil.copytree(ms0, path)
    with table(path + "::FEED", readonly=False, ack=False) as t:
        n = t.nrows()
        t.copyrows(t, startrowin=0, startrowout=-1, nrow=n)
        sp = t.getcol("SPECTRAL_WINDOW_ID")
        r = t.getcol("RECEPTOR_ANGLE")
        first, last = (slice(0, n), slice(n, 2 * n))
        sp[first], sp[last] = (1, 0) if spw1_first else (0, 1)
        r[first if spw1_first else last] += 1.0
        t.putcol("SPECTRAL_WINDOW_ID", sp)
        t.putcol("RECEPTOR_ANGLE", r)
    return path


@pytest.mark.parametrize("spw1_first", [False, True])
def test_a_solve_uses_its_spws_receptor_angle(linear_05, tmp_path, spw1_first):
    from alakazam.caltasks import akcal
    from alakazam.io import hdf5

    ms0, truth = linear_05
    ms = _with_feed_rows(ms0, str(tmp_path / "f.ms"), spw1_first)
    meta = ms_io.read_meta(ms)
    np.testing.assert_allclose(meta.spws[0].receptor_angle[meta.active_ants, 0], 0.5)
    cal = str(tmp_path / "g.h5")
    akcal(vis=ms, caltable=cal, field="3C286", jones=["G"], solint=["scan"], refant="C00", parang=True)
    tg = truth.time_gain[:, 0, :]
    ratio_true = np.abs(tg[:, 0] / tg[:, 1])
    for s in hdf5.read_term(cal, "G0"):
        j = s.jones[:, 0, 0]
        err = np.abs(np.abs(j[:, 0, 0] / j[:, 1, 1]) - ratio_true)
        assert err.max() < 0.01, err        # 0.155 with SPW 1's angle; noise ~1e-3


def test_time_dependent_rows_are_refused_with_parang(linear_05, tmp_path):
    from alakazam.caltasks import akcal

    ms0, _ = linear_05
    ms = str(tmp_path / "t.ms")
    shutil.copytree(ms0, ms)
    with table(ms + "::FEED", readonly=False, ack=False) as t:
        n = t.nrows()
        t.copyrows(t, startrowin=0, startrowout=-1, nrow=n)
        r = t.getcol("RECEPTOR_ANGLE")
        r[n:] += 0.2
        t.putcol("RECEPTOR_ANGLE", r)
    cal = str(tmp_path / "g.h5")
    with pytest.raises(AlakazamError, match="different RECEPTOR_ANGLE") as e:
        akcal(vis=ms, caltable=cal, field="3C286", jones=["G"], solint=["scan"], refant="C00", parang=True)
    assert "antenna C00 and SPW 0" in str(e.value) and "0.5, 0.7" in str(e.value)
    assert "(task parameter parang)" in str(e.value)
    assert not os.path.exists(cal)
    akcal(vis=ms, caltable=cal, field="3C286", jones=["G"], solint=["scan"], refant="C00")   # no parang
