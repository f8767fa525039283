"""Review (session of 2026-12-01): a dead antenna (noise-only DATA, FLAG False) in ONE of the scans a
solution interval spans.  Since adf6f80 (solve-time flags judged per baseline) its noise-only samples
are no longer flagged, and nosignal / the data-bounded SNR only act on a whole cell without signal: a
bandpass G(inf) over 3C286's two scans, after K(inf), mixes C03's live scan with its dead one.  At
792ca32 the solve equalled the one with C03's scan-4 rows flagged; now C03's bandpass comes out at half
its amplitude, unflagged, and the other antennas' bandpasses move by ~1% / 0.05 rad (thermal ~6e-5)."""

import os
import sys

import numpy as np
import pytest

from alakazam.caltasks import akcal
from alakazam.io import hdf5

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dead_antenna_ms  # noqa: E402  (tests/dead_antenna_ms.py)


@pytest.fixture(scope="module", params=["linear", "circular"])
def dead_scan_ms(request, tmp_path_factory):
    return dead_antenna_ms.dead_scan_ms(tmp_path_factory.mktemp("deadscan"), 32, feed=request.param)


def _bandpass(ms, cal):
    akcal(vis=ms, caltable=cal, field="3C286", refant="C00", parang=True, jones=["K", "G"],
          solint=["inf", "inf"], freqint=["full", "1MHz"])
    return hdf5.read_term(cal, "G0")[0]


def test_bandpass_over_a_dead_scan_equals_the_flagged_solve(dead_scan_ms, tmp_path):
    ms, fl = dead_scan_ms
    a = _bandpass(ms, str(tmp_path / "dead.h5"))
    b = _bandpass(fl, str(tmp_path / "flagged.h5"))
    k = list(a.attrs["ant_names"]).index("C03")
    ga = np.stack([a.jones[..., 0, 0], a.jones[..., 1, 1]], -1)
    gb = np.stack([b.jones[..., 0, 0], b.jones[..., 1, 1]], -1)
    ok = ~a.hand_flags() & ~b.hand_flags()
    # C03: flagged, or (its dead scan left out) equal to the flagged solve's
    ratio_c03 = np.abs(ga[k][ok[k]]) / np.abs(gb[k][ok[k]])
    assert ratio_c03.size == 0 or np.allclose(ratio_c03, 1.0, atol=2e-3), np.median(ratio_c03)
    others = np.arange(ga.shape[0]) != k
    rel = np.abs(ga[others] / gb[others] - 1)[ok[others]]
    assert rel.max() < 2e-3, rel.max()       # thermal error of a bandpass point ~6e-5


def test_amplitude_only_gains_of_a_dead_scan_are_flagged(dead_scan_ms, tmp_path):
    """G(int, calmode 'a') after G(inf, 'p'): the amplitude-only SNR is not bounded by the data, so C03's
    scan-4 cells (noise only) are stored unflagged with |g| ~ 6e-4 (SNR 3.4-5.7: applying them multiplies
    C03's data by ~1e3) or |g| = 1.0, never moved, with SNR ~5000; at 792ca32 all 20 are flagged."""
    ms, fl = dead_scan_ms
    cal = str(tmp_path / "amp.h5")
    akcal(vis=ms, caltable=cal, field="3C286", refant="C00", parang=True, jones=["K", "G", "G", "G"],
          solint=["inf", "inf", "inf", "int"], freqint=["full", "1MHz", "full", "full"],
          calmode=["ap", "ap", "p", "a"])
    s = [x for x in hdf5.read_term(cal, "G2") if x.scan_id == 4][0]
    k = list(s.attrs["ant_names"]).index("C03")
    kept = ~s.hand_flags()[k]
    assert not kept.any(), np.abs(np.stack([s.jones[k, ..., 0, 0], s.jones[k, ..., 1, 1]], -1))[kept]
