"""Review (session of 2026-12-01): the reference antenna dead (noise-only DATA, FLAG False) for the whole
observation, 8 antennas x 32 channels, default rfi_threshold.  Since adf6f80 its samples reach the solver;
K per scan then takes the dead C00 as a hand's reference in scan 1 and converges to delays tens of ns off
(82.8 ns), stored unflagged with SNR ~1e4, and flags the whole p hand of scan 4 (every antenna).  At
792ca32 (dead samples flagged by the solve-time statistics) and with C00's rows flagged, every live
antenna's delay is right."""

import os
import sys

import numpy as np
import pytest

from alakazam.caltasks import akcal
from alakazam.io import hdf5

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dead_antenna_ms import dead_antenna_ms  # noqa: E402  (tests/dead_antenna_ms.py)


@pytest.fixture(scope="module", params=[("linear", False), ("circular", False), ("linear", True)],
                ids=["linear", "circular", "linear-percorr"])
def dead_ref_ms(request, tmp_path_factory):
    feed, per_corr = request.param
    return dead_antenna_ms(tmp_path_factory.mktemp("deadref"), ["C00"], feed=feed, n_chan=32, seed=7,
                           per_corr=per_corr)


def _k(ms, cal, **kw):
    akcal(vis=ms, caltable=cal, field="3C286", refant="C00", parang=True, jones=["K"], solint=["scan"], **kw)
    return {s.scan_id: s for s in hdf5.read_term(cal, "K0")}


@pytest.mark.parametrize("rfi_threshold", [None, 0.0])
def test_dead_refant_does_not_corrupt_or_lose_the_others(dead_ref_ms, tmp_path, rfi_threshold):
    """Also with rfi_threshold=0: the dead reference's samples reach the solver, its SNR is below minsnr,
    and the cell is solved again with the next reference (solvers/nosignal.py; before, the live
    antennas' delays were relative to its noise: up to 4e5 ns off, stored unflagged)."""
    ms, fl = dead_ref_ms
    kw = {} if rfi_threshold is None else {"rfi_threshold": rfi_threshold}
    got = _k(ms, str(tmp_path / "dead.h5"), **kw)
    ref = _k(fl, str(tmp_path / "flagged.h5"), **kw)
    for scan, g in got.items():
        r = ref[scan]
        names = list(g.attrs["ant_names"])
        live = np.arange(len(names)) != names.index("C00")
        fg, fr = g.hand_flags(), r.hand_flags()
        # nothing of the live antennas lost that the flagged solve keeps
        assert not (fg[live] & ~fr[live]).any(), (scan, fg[live].mean())
        # delays relative to one live antenna (gauge-free): equal to the flagged solve's within 0.05 ns
        j = np.flatnonzero(live)[0]
        dg = g.delay - g.delay[j]
        dr = r.delay - r.delay[j]
        diff = np.abs(dg - dr)[live]
        assert np.nanmax(diff) < 0.05, (scan, np.nanmax(diff))
