"""calibration/driftcheck.py, per channel: a bandpass whose channels' fits differ is warned, with CASA's
recipe too (review 60b).

rflag run on an uncalibrated bright calibrator flags its band edges in a pattern that changes from
scan to scan; CASA's recipe (K per scan, a phase-only G per integration, the bandpass over the scans)
then puts the gain amplitudes' drift into the edge channels: 5.7% off, 100x the noise, silently (the
block check skips a bandpass with a phase-only G before it).  Those channels' chi2/nDOF is 200-360
against 35 mid-band.  Without the flag step nothing is said; the remedy named (an amplitude-and-phase G
per integration and iterations) is silent too.
"""

import shutil

import pytest

from alakazam.sim import simulate_ms

MATCH = "frequency bins ("


@pytest.fixture(scope="module")
def mss(tmp_path_factory):
    from alakazam.caltasks import akflag

    d = tmp_path_factory.mktemp("bpchan")
    raw = str(d / "raw.ms")
    simulate_ms(raw, n_ant=8, n_ant_extra=1, n_chan=(64,), feed="circular", duration_h=2.0, int_s=60.0,
                scan_len_s=600.0, noise=0.1, seed=11, leakage=False, crosshand=False, dead_ant=False,
                rfi_persistent=[20], rfi_intermittent=True, rfi_bursts=3, dead_antenna_scan=(3, 4))
    rfl = str(d / "rflag.ms")
    shutil.copytree(raw, rfl)
    akflag(vis=rfl, mode="rflag")
    return d, {"raw": raw, "rflag": rfl}


def _solve(solve_warnings, d, ms, name, phase_only=True, iterations=1):
    return solve_warnings(MATCH, ms=ms, output=str(d / f"{name}.h5"), ref_ant="C00", field=["3C286"],
                          jones=["K", "G", "G"], time_interval=["scan", "int", "inf"],
                          freq_interval=["full", "full", "1MHz"], phase_only=[False, phase_only, False],
                          apply_parang=True, iterations=iterations)


def test_casa_recipe_after_rflag_is_warned(mss, solve_warnings):
    d, ms = mss
    w = _solve(solve_warnings, d, ms["rflag"], "casa")
    assert len(w) == 1, w
    m = w[0]
    assert m.startswith("G1 (bandpass, time_interval inf): in "), m
    assert "(0-" in m and "-63)" in m, m               # both band edges named
    assert "iterations" in m and "rflag on calibrated data" in m, m


def test_unflagged_and_remedy_silent(mss, solve_warnings):
    d, ms = mss
    assert _solve(solve_warnings, d, ms["raw"], "raw") == []
    assert _solve(solve_warnings, d, ms["rflag"], "remedy", phase_only=False, iterations=4) == []


def test_channel_outliers_rule():
    """Bins above CHANNEL_RATIO x the band's lower quartile (at least 1) in any solution time; the
    ranges written compactly."""
    import numpy as np

    from alakazam.calibration import driftcheck
    from alakazam.io.hdf5 import SolutionSet

    rc = np.full((16, 2), 30.0)
    rc[0, 0] = 200.0                    # 6.7x in the first solution only
    rc[14:, 1] = 140.0                  # 4.7x: not above
    rc[5, 1] = np.nan
    s = SolutionSet(jones=np.ones((2, 16, 2, 2, 2), complex), flags=np.zeros((2, 16, 2), bool),
                    time=np.arange(2.0), freq=np.arange(16.0))
    s.extra = {"rchi2": rc}
    chans, worst, n = driftcheck.channel_outliers([s])
    assert chans == [0] and worst == pytest.approx(200 / 30) and n == 16
    rc[14:, 1] = 160.0
    assert driftcheck.channel_outliers([s])[0] == [0, 14, 15]
    assert driftcheck._ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    s.flags[:, 0, 0] = True                 # bin 0's solutions all flagged: not said
    s.flags[1, 14, 1] = True                # one antenna of bin 14 flagged: still said
    assert driftcheck.channel_outliers([s])[0] == [14, 15]
    s.flags[:] = False
    low = np.full((16, 1), 0.2)
    low[3] = 4.0                        # below 5 x the floor of 1 (a fit better than the noise)
    s.extra = {"rchi2": low}
    assert driftcheck.channel_outliers([s])[0] == []


def test_channel_note_counts_bins_per_spw():
    """One outlying bin in each of 4 SPWs is one bin per band (below MIN_CHANNELS in each), not '4 of
    its 32 frequency bins (5, 9, 13, 20)' (the bins were merged by index over the SPWs: review h60g);
    2 bins in one SPW are warned, that SPW named."""
    from types import SimpleNamespace

    import numpy as np

    from alakazam.calibration import driftcheck
    from alakazam.io.hdf5 import SolutionSet

    def bp(spw, bad):
        rc = np.full((32, 1), 2.0)
        rc[bad, 0] = 20.0
        s = SolutionSet(jones=np.ones((2, 32, 1, 2, 2), complex), flags=np.zeros((2, 32, 1), bool),
                        time=np.arange(1.0), freq=np.arange(32.0))
        s.attrs = {"spw": spw}
        s.extra = {"rchi2": rc}
        return s

    st = SimpleNamespace(key="G1", time_interval=SimpleNamespace(text="inf"))
    one_each = [bp(0, [5]), bp(1, [9]), bp(2, [13]), bp(3, [20])]
    assert driftcheck._channel_note(st, one_each) is None
    m = driftcheck._channel_note(st, one_each[:3] + [bp(3, [20, 21])])
    assert m is not None and "in 2 of SPW 3's 32 frequency bins (20-21)" in m, m
    assert "SPW 0" not in m, m


def test_band_shape_alone_is_silent(tmp_path, solve_warnings):
    """A band whose gain amplitude rises 0.4 -> 1.0 across it, no flags, CASA's recipe (review 60g): the
    drift the phase-only G leaves raises chi2/nDOF with each bin's signal power (1.1 -> 15 across the
    band, the raw ratio to its lower quartile 5.3), so the check divides the excess by the bins' SNR^2:
    silent."""
    import numpy as np
    from casacore.tables import table

    ms = str(tmp_path / "tilt.ms")
    simulate_ms(ms, n_ant=8, n_ant_extra=1, n_chan=(64,), feed="circular", duration_h=2.0, int_s=60.0,
                scan_len_s=600.0, noise=1e-6, seed=11, leakage=False, crosshand=False, dead_ant=False)
    r = 0.4 + 0.6 * np.linspace(0.0, 1.0, 64)
    rng = np.random.default_rng(1011)
    noise = 0.05
    with table(ms, readonly=False, ack=False) as t:
        d = t.getcol("DATA") * (r ** 2)[None, :, None]
        d = d + noise * (rng.normal(size=d.shape) + 1j * rng.normal(size=d.shape))
        t.putcol("DATA", d.astype(np.complex64))
        t.putcol("WEIGHT", np.full(t.getcol("WEIGHT").shape, 1 / noise ** 2, np.float32))
        t.putcol("SIGMA", np.full(t.getcol("SIGMA").shape, noise, np.float32))
    out = str(tmp_path / "tilt.h5")
    assert solve_warnings(MATCH, ms=ms, output=out, ref_ant="C00", field=["3C286"], jones=["K", "G", "G"],
                          time_interval=["scan", "int", "inf"], freq_interval=["full", "full", "1MHz"],
                          phase_only=[False, True, False], apply_parang=True) == []
    from alakazam.io import hdf5

    rc = np.asarray(hdf5.read_term(out, "G1")[0].extra["rchi2"])[:, 0]
    assert rc.max() / np.percentile(rc, 25) > 5        # the raw ratio the check no longer takes as is


def test_misfit_per_signal_needs_an_absolute_size():
    """With SNRs recorded, a bin is said only when its misfit per signal sqrt(chi2/nDOF - 1) / SNR is
    at least CHANNEL_MIN_MISFIT (0.3%) as well as 5x the band's lower quartile (at least that of a
    chi2/nDOF of 2 at the median SNR): chi2/nDOF ~1 in most bins and 7-9 in three is silent at an SNR of
    12,000 (0.02%: a bandpass iterated to convergence with a few flagged rows) and said at 300
    (0.8-0.9%)."""
    import numpy as np

    from alakazam.calibration import driftcheck
    from alakazam.io.hdf5 import SolutionSet

    rc = np.array([1.0, 1.8, 1.0, 7.0, 8.0, 9.0, 1.8, 1.2, 1.7, 1.5, 1.2, 1.3, 1.7, 1.4, 0.9, 1.1])[:, None]
    n_ant = 4
    for snr, said in ((12000.0, []), (300.0, [3, 4, 5])):
        s = SolutionSet(jones=np.ones((n_ant, 16, 1, 2, 2), complex), flags=np.zeros((n_ant, 16, 1), bool),
                        time=np.zeros(1), freq=np.arange(16.0))
        s.extra = {"rchi2": rc, "snr": np.full((n_ant, 16, 1, 2), snr)}
        assert driftcheck.channel_outliers([s])[0] == said, snr


def test_weak_edge_noise_is_silent():
    """A clean band (no drift, no flags) rolling off at its edges (review h60j): a weak bin's chi2/nDOF
    is within its noise of the weights' prediction (1.3-1.5 at nDOF ~40: 6 antennas), but divided by its
    SNR^2 (5-8 at the edges, ~70 mid-band) it was 12-29x the band's lower quartile in 3 of 6 noise
    draws; with WEIGHT twice the noise's (chi2/nDOF ~2 everywhere) 155x.  A bin is said only where its
    own chi2/nDOF is at least CHANNEL_MIN_RCHI2 times the larger of 1 and the band's lower quartile."""
    import numpy as np

    from alakazam.calibration import driftcheck
    from alakazam.io.hdf5 import SolutionSet

    n_ant, n = 6, 32
    x = np.abs(np.linspace(-1, 1, n))
    r = np.where(x > 0.7, 0.3 + 0.7 * 0.5 * (1 + np.cos(np.pi * (x - 0.7) / 0.3)), 1.0)
    snr = 70.0 * r ** 2                                  # SNR ~ |g_a| |g_b|: 5.3 at the edges
    rng = np.random.default_rng(3)

    def band(rc):
        s = SolutionSet(jones=np.ones((n_ant, n, 1, 2, 2), complex), flags=np.zeros((n_ant, n, 1), bool),
                        time=np.zeros(1), freq=np.arange(float(n)))
        s.extra = {"rchi2": rc[:, None], "snr": np.broadcast_to(snr[None, :, None, None], (n_ant, n, 1, 2))}
        return s

    noise = 1.0 + 0.05 * rng.standard_normal(n)
    noise[[0, 1, 30, 31]] = [1.45, 1.3, 1.35, 1.5]        # the edges' draws (chi2/nDOF's noise ~0.23)
    assert driftcheck.channel_outliers([band(noise)])[0] == []
    assert driftcheck.channel_outliers([band(2.0 * noise)])[0] == []      # WEIGHT 2x the noise's
    biased = noise.copy()
    biased[[0, 1, 30, 31]] = [6.0, 5.0, 5.5, 7.0]           # a misfit well above the noise: said
    assert driftcheck.channel_outliers([band(biased)])[0] == [0, 1, 30, 31]
