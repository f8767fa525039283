"""A per-scan K of other fields pre-applied nearest in time, switching inside a gain interval
(calibration/kswitch.py): the delay step puts a phase jump 2 pi d tau nu into the interval (our K is
referenced to 0 Hz) and lowers its amplitudes -- review 57c measured 0.1-0.3% and akfluxscale 0.075% low
at 2-2.5 GHz.  The solve says so, with the jump, before anything runs; not with interp 'linear', not
for a G per integration, and not for a K of the field itself."""

import logging

import numpy as np
import pytest

from alakazam.caltasks import akcal
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

MSG = "changes inside"


@pytest.fixture(scope="module")
def kms(tmp_path_factory):
    """(MS, K table): K0 per scan on 3C286, its solution times moved to 1 min after each 3C286 scan's
    start and every other scan's delays 0.05 ns up, so that the switch between two 3C286 solutions falls
    inside the 3C147 scan between them with a jump of 0.05 ns (23 deg at 1.3 GHz)."""
    d = tmp_path_factory.mktemp("kswitch")
    ms = str(d / "k.ms")
    simulate_ms(ms, n_ant=5, n_chan=(16,), duration_h=1.5, seed=2)
    raw, cal = str(d / "raw.h5"), str(d / "k.h5")
    akcal(vis=ms, caltable=raw, field="3C286", refant="C00", jones=["K"], solint=["scan"], parang=True)
    sets = hdf5.read_term(raw, "K0")
    from casacore.tables import table
    with table(ms, ack=False) as t:
        time, scan = t.getcol("TIME"), t.getcol("SCAN_NUMBER")
    for i, s in enumerate(sorted(sets, key=lambda s: s.scan_id)):
        s.time = np.array([time[scan == s.scan_id].min() + 60.0])
        if i % 2:
            s.delay = s.delay + 0.05
    hdf5.write_terms(cal, {"K0": sets})
    return ms, cal


def _g(ms, cal, out, interp="nearest", solint="2min", field="3C147"):
    akcal(vis=ms, caltable=out, field=field, refant="C00", jones=["G"], solint=[solint], parang=True,
          gaintable=[cal], gainjones=["K0"], interp=[interp])


def test_warned_with_the_jump(kms, tmp_path, caplog):
    ms, cal = kms
    with caplog.at_level(logging.WARNING):
        _g(ms, cal, str(tmp_path / "g.h5"))
    msgs = [r.getMessage() for r in caplog.records if MSG in r.getMessage()]
    assert len(msgs) == 1, msgs
    m = msgs[0]
    assert "K0" in m and "3C147" in m and "interp 'linear'" in m
    jump = float(m.split("phase jump of ")[1].split(" deg")[0])
    # 0.05 ns at the SPW's centre frequency (plus the solutions' own scan-to-scan difference)
    assert 0.05e-9 * 1.3e9 * 360 * 0.8 < jump < 0.08e-9 * 1.5e9 * 360


@pytest.mark.parametrize("case", ["linear", "int", "own"])
def test_not_warned(kms, tmp_path, caplog, case):
    ms, cal = kms
    with caplog.at_level(logging.WARNING):
        if case == "linear":
            _g(ms, cal, str(tmp_path / "g.h5"), interp="linear")
        elif case == "int":
            _g(ms, cal, str(tmp_path / "g.h5"), solint="int")
        else:               # the K's own field: its own scans' solutions, no switch inside a scan
            _g(ms, cal, str(tmp_path / "g.h5"), field="3C286")
    assert not [r for r in caplog.records if MSG in r.getMessage()]
