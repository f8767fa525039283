"""A per-scan K of other fields pre-applied nearest in time, switching inside a gain interval
(calibration/kswitch.py, unit._k_frame).  Our K is referenced to 0 Hz: the delay step was a phase jump
2 pi d tau nu inside the interval, which lowered its amplitudes (review 57c: 0.1-0.3%, akfluxscale
0.075% low at 2-2.5 GHz).  A G whose cells lie within one scan is now solved in the K's frame: its
amplitudes are those of a solve with no jump in the K.  What the frame does not cover (T: one gain for
both hands) is warned about, with the jump, before anything runs; not with interp 'linear', not per
integration, not for a K of the field itself."""

import logging

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akcal
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

MSG = "changes inside"
JUMP_NS = 0.05


@pytest.fixture(scope="module")
def kms(tmp_path_factory):
    """(MS, K table with jumps, the same without): K0 per scan on 3C286, its solution times moved to 1.5 min
    after each 3C286 scan's start, so that the switch between two 3C286 solutions falls inside the
    3C147 scan between them; in the first table every other scan's delays are JUMP_NS up but the
    reference's (23 deg at 1.3 GHz), in the second not."""
    d = tmp_path_factory.mktemp("kswitch")
    ms = str(d / "k.ms")
    simulate_ms(ms, n_ant=5, n_chan=(16,), duration_h=1.5, seed=2)
    raw, cal, flat = str(d / "raw.h5"), str(d / "k.h5"), str(d / "flat.h5")
    akcal(vis=ms, caltable=raw, field="3C286", refant="C00", jones=["K"], solint=["scan"], parang=True)
    with table(ms, ack=False) as t:
        time, scan = t.getcol("TIME"), t.getcol("SCAN_NUMBER")
    for path, jump in ((cal, JUMP_NS), (flat, 0.0)):
        sets = hdf5.read_term(raw, "K0")
        for i, s in enumerate(sorted(sets, key=lambda s: s.scan_id)):
            s.time = np.array([time[scan == s.scan_id].min() + 90.0])
            if i % 2:       # every antenna but the reference (a common delay cancels in the baselines)
                s.delay = np.array(s.delay)
                s.delay[1:] += jump
        hdf5.write_terms(path, {"K0": sets})
    return ms, cal, flat


def _g(ms, cal, out, interp="nearest", solint="4min", field="3C147", jones="G"):
    akcal(vis=ms, caltable=out, field=field, refant="C00", jones=[jones], solint=[solint], parang=True,
          gaintable=[cal], gainjones=["K0"], interp=[interp])
    return hdf5.read_term(out, jones + "0")


def test_g_solved_in_the_frame(kms, tmp_path, caplog):
    """3C147's G over 4 min (the switch inside its second interval): the same amplitudes with the jumping
    K as with the flat one (to 2e-4; without the frame those intervals lost 1-1.7%, the jump's loss in an
    interval cut in half being up to 1 - cos(11.7 deg) = 2%), and not warned about."""
    ms, cal, flat = kms
    with caplog.at_level(logging.WARNING):
        got = _g(ms, cal, str(tmp_path / "g.h5"))
    assert not [r for r in caplog.records if MSG in r.getMessage()]
    ref = _g(ms, flat, str(tmp_path / "f.h5"))
    for a, b in zip(sorted(got, key=lambda s: s.scan_id), sorted(ref, key=lambda s: s.scan_id)):
        ga = np.abs(a.jones[..., [0, 1], [0, 1]])
        gb = np.abs(b.jones[..., [0, 1], [0, 1]])
        ok = np.isfinite(ga) & np.isfinite(gb)
        assert ok.mean() >= 0.75                # (the simulator flags one antenna in one scan)
        assert np.max(np.abs(ga[ok] / gb[ok] - 1)) < 2e-4


def test_t_warned_with_the_jump(kms, tmp_path, caplog):
    ms, cal, _ = kms
    with caplog.at_level(logging.WARNING):
        _g(ms, cal, str(tmp_path / "t.h5"), jones="T")
    msgs = [r.getMessage() for r in caplog.records if MSG in r.getMessage()]
    assert len(msgs) == 1, msgs
    m = msgs[0]
    assert "K0" in m and "3C147" in m and "interp 'linear'" in m
    jump = float(m.split("phase jump of ")[1].split(" deg")[0])
    # JUMP_NS at the SPW's centre frequency (plus the solutions' own scan-to-scan difference)
    assert JUMP_NS * 1e-9 * 1.3e9 * 360 * 0.8 < jump < 0.08e-9 * 1.5e9 * 360


@pytest.mark.parametrize("case", ["linear", "int", "own"])
def test_t_not_warned(kms, tmp_path, caplog, case):
    ms, cal, _ = kms
    with caplog.at_level(logging.WARNING):
        if case == "linear":
            _g(ms, cal, str(tmp_path / "t.h5"), interp="linear", jones="T")
        elif case == "int":
            _g(ms, cal, str(tmp_path / "t.h5"), solint="int", jones="T")
        else:               # the K's own field: its own scans' solutions, no switch inside a scan
            _g(ms, cal, str(tmp_path / "t.h5"), field="3C286", jones="T")
    assert not [r for r in caplog.records if MSG in r.getMessage()]
