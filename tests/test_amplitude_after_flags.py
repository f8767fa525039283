"""Gain amplitudes left undetermined by the solve's own flags (solvers/quality.undetermined_after_flags).

The amplitude check before the solve counts every antenna with data; a dead antenna whose noise the flags
do not mark (``rfi_threshold=0``) is flagged only after the solve, by minsnr.  On four antennas with two
dead, the two live ones share one baseline, which fixes only |g0| |g3|: they were kept unflagged at |g|
0.02 and 50 (truth 1.10, 0.96) with SNR ~7000 (review 57d; CASA kept them at 0.62 / 1.79).  Every
solution is now flagged -- the live ones for amplitude_undetermined -- and the step says so; the same
MS solved phase-only keeps the live antennas, and with one antenna dead the three others (a triangle)
keep their amplitudes at the truth."""

import os
import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akcal
from alakazam.errors import AlakazamError
from alakazam.io import hdf5
from alakazam.sim import simulate_ms
from alakazam.solvers import quality


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """{n dead: MS} of four antennas, antennas 1.. n dead (DATA noise of 0.01, unflagged); the truth."""
    d = tmp_path_factory.mktemp("four")
    base = str(d / "base.ms")
    truth = simulate_ms(base, n_ant=4, n_ant_extra=0, n_chan=(32,), feed="circular", duration_h=0.5,
                        dead_ant=False, flag_rows=0.0, seed=4)
    out = {}
    rng = np.random.default_rng(1)
    for n_dead in (1, 2):
        ms = str(d / f"dead{n_dead}.ms")
        shutil.copytree(base, ms)
        with table(ms, readonly=False, ack=False) as t:
            a1, a2, v = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("DATA")
            for a in range(1, n_dead + 1):
                r = (a1 == a) | (a2 == a)
                v[r] = 0.01 * (rng.normal(size=v[r].shape) + 1j * rng.normal(size=v[r].shape))
            t.putcol("DATA", v)
        out[n_dead] = ms
    return out, truth


def _g(ms, cal, calmode):
    akcal(vis=ms, caltable=cal, field="3C286", refant="C00", jones=["G"], solint=["int"], calmode=[calmode],
          parang=True, rfi_threshold=0.0)
    return hdf5.read_term(cal, "G0")


def test_two_dead_of_four_flag_the_undetermined_amplitudes(four, tmp_path):
    mss, _ = four
    with pytest.raises(AlakazamError, match="amplitude_undetermined flagged 20"):
        _g(mss[2], str(tmp_path / "ap.h5"), "ap")
    assert not os.path.exists(str(tmp_path / "ap.h5"))
    # phase-only: one baseline fixes the live antennas' relative phase -- kept (the dead ones are flagged
    # by minsnr in most integrations: a dead antenna's noise far below the weights' lowers the cell's
    # phase-scatter scale and lifts its SNR, an open issue of the phase-only SNR, review 57d F2)
    s = _g(mss[2], str(tmp_path / "p.h5"), "p")[0]
    fl = s.pol_flags[:, 0].all(axis=-1)                      # (ant, time): both hands flagged
    assert not fl[[0, 3]].any() and fl[[1, 2]].mean() > 0.8


def test_one_dead_of_four_keeps_the_triangle(four, tmp_path):
    """One dead: the three others form a triangle and keep amplitudes within their thermal error of a
    solve with the dead antenna's rows flagged."""
    mss, _ = four
    s = _g(mss[1], str(tmp_path / "ap1.h5"), "ap")[0]
    fl = s.pol_flags[:, 0].all(axis=-1)
    assert fl[1].all() and not fl[[0, 2, 3]].any()
    flagged = str(tmp_path / "flagged.ms")
    shutil.copytree(mss[1], flagged)
    with table(flagged, readonly=False, ack=False) as t:
        a1, a2, f = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("FLAG")
        f[(a1 == 1) | (a2 == 1)] = True
        t.putcol("FLAG", f)
    r = _g(flagged, str(tmp_path / "f.h5"), "ap")[0]
    live = [0, 2, 3]
    g, g_ref = s.jones[live, 0][..., [0, 1], [0, 1]], r.jones[live, 0][..., [0, 1], [0, 1]]
    snr = r.extra["snr"][live, 0]
    assert (snr > 0).all()
    err = np.abs(g_ref) / snr                                          # |g| / SNR, per hand
    assert np.isfinite(g).all() and (np.abs(np.abs(g) - np.abs(g_ref)) <= 5 * err).all()


def test_unit_rule():
    """The rule on its own: a cell of four antennas, 1 and 2 flagged without signal: 0 and 3 share one
    baseline (undetermined); 1 alone: 0, 2, 3 form a triangle (determined); an antenna whose baselines
    all go to silent antennas has nothing left (flagged); antennas flagged with signal (a minsnr above
    their SNR) still fix the others (cell 3: nothing new)."""
    a1 = np.array([0, 0, 0, 1, 1, 2])
    a2 = np.array([1, 2, 3, 2, 3, 3])
    bl = np.ones((4, 6), bool)
    flagged = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0]], bool)
    silent = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], bool)
    bl[2] = [True, False, False, True, True, False]          # cell 2: 0-1, 1-2, 1-3 only
    got = quality.undetermined_after_flags(bl, a1, a2, 4, flagged, silent)
    assert got.tolist() == [[True, False, False, True], [False, False, False, False],
                            [True, False, True, True], [False, False, False, False]]
