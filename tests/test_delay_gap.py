"""K and KC on a band with a wide gap (channels 0-3 and 28-31: a selection around RFI).

The delay's starting point is the peak of the fringe's FFT (parallel_delay.fringe_fft).  Two groups of
channels far apart make fringe lobes of nearly equal height; the 2x padded coarse FFT ranked them at
random and the fit kept the alias it started in, unflagged: a noiseless -4.7 ns fringe came out at
+31.25 ns, K 35-177 ns off, KC -30.96 ns for 4.52 ns (a review, session 34).  On a band with a gap
wider than a quarter of it the lobes' tops are now interpolated on the fine spectrum and compared."""

import numpy as np
import pytest

from alakazam.caltasks import akcal
from alakazam.io import hdf5
from alakazam.sim import simulate_ms
from alakazam.solvers import parallel_delay

LAYOUTS = [np.r_[0:4, 28:32], np.r_[0:8, 56:64], np.r_[0:10, 20:24, 50:64], np.r_[0:100, 400:500],
           np.r_[0:3, 61:64], np.r_[0:1, 30:32]]
DELAYS = [-4.7, 5.0, 12.3, -33.0, 100.0, -150.0, 400.0]


def _errors():
    err = []
    for chans in LAYOUTS:
        f = 1.4e9 + 1e6 * chans
        for tau in DELAYS:
            t, _ = parallel_delay.fringe_fft(np.exp(2j * np.pi * tau * 1e-9 * f)[None], f,
                                             np.ones(len(f), bool))
            err.append(abs(float(t[0]) - tau))
    return np.array(err)


def test_fringe_fft_finds_the_true_lobe_on_gapped_bands(monkeypatch):
    """Noiseless fringes on gapped channel layouts: the true delay to 0.02 ns (the coarse path alone,
    the behaviour before, is off by a lobe in many of them)."""
    err = _errors()
    assert err.max() < 0.02, err
    monkeypatch.setattr(parallel_delay, "GAP_FRACTION", 1e9)      # every band through the coarse path
    before = _errors()
    assert (before > 10).sum() >= 5, before                        # the defect, as found


def test_filled_band_takes_the_coarse_path(monkeypatch):
    """A band without a wide gap (scattered flags included) is not sent to the full spectrum."""
    called = []
    monkeypatch.setattr(parallel_delay, "_gapped_peak", lambda *a: called.append(1))
    rng = np.random.default_rng(3)
    chans = np.sort(rng.choice(256, 180, replace=False))           # 30% of the channels flagged at random
    f = 1.4e9 + 1e6 * chans
    t, _ = parallel_delay.fringe_fft(np.exp(2j * np.pi * 7.0e-9 * f)[None], f, np.ones(len(f), bool))
    assert not called and abs(float(t[0]) - 7.0) < 0.25          # half a fine step (0.49 ns)


@pytest.fixture(scope="module")
def gap_ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("kgap")
    ms = str(d / "k.ms")
    truth = simulate_ms(ms, feed="linear", n_ant=6, n_ant_extra=1, n_chan=(32,), duration_h=0.5, int_s=60.0,
                        scan_len_s=600.0, noise=0.01, seed=51, bandpass=False, time_gains=False,
                        leakage=True, leakage_scale=0.05, leakage_ref_zero=True, dead_ant=False,
                        flag_rows=0.0)
    return d, ms, truth


@pytest.mark.parametrize("solver", ["numba", "scipy"])
def test_k_and_kc_on_a_gapped_selection_match_the_full_band(gap_ms, solver):
    """K(scan) on spw '0:0~3;28~31' against the truth, and KC on it against KC on the full band (K and
    a bandpass pre-applied): the same delays within the noise (they were 35-177 ns / 35 ns off)."""
    d, ms, truth = gap_ms
    out = str(d / f"k_{solver}.h5")
    akcal(vis=ms, caltable=out, field="3C286", jones=["K"], solint="scan", refant="C00", parang=True,
          spw="0:0~3;28~31", solver=solver)
    true = truth.tau - truth.tau[:1]
    for s in hdf5.read_term(out, "K0"):
        assert not s.flags.any()
        assert np.abs(s.delay[:, 0, 0, :] - true).max() < 0.05
    kg = str(d / "kg.h5")
    if not (d / "kg.h5").exists():
        akcal(vis=ms, caltable=kg, field="3C286", jones=["K", "G"], solint=["scan", "inf"],
              freqint=["full", "1MHz"], refant="C00", parang=True)
    kc = {}
    for spw in ("", "0:0~3;28~31"):
        o = str(d / f"kc_{solver}{len(spw)}.h5")
        akcal(vis=ms, caltable=o, field="3C286", jones=["KC"], solint="inf", refant="C00", parang=True,
              spw=spw, gaintable=[kg, kg], gainjones=["K0", "G0"], solver=solver)
        kc[spw] = hdf5.read_term(o, "KC0")[0].delay[0, 0, 0, 0]
    assert abs(kc["0:0~3;28~31"] - kc[""]) < 0.05, kc
