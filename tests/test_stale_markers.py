"""Two interrupted FLAG writers, the second saved on top of the first's partial FLAG (a review, session
50: two `alakazam run` akflag runs stopped by Ctrl-C, akflag_1 restored as the first warning said, the
run re-done to completion -- and every later task still told the user to restore akflag_2, which holds
the partial FLAG of the first run; following that advice replaced the correct FLAG).

Convention (calibration/flagsafety.py): restoring a version with merge 'replace' ends the interrupted
runs whose saved versions came after it (FLAG then predates their writes); with several interrupted
runs, each later one's warning names the earliest version as the one that undoes them all.
"""

import logging
import os

import numpy as np
from casacore.tables import table

from alakazam.caltasks import akflagmanager
from alakazam.calibration import flagsafety
from alakazam.core import flagversions
from alakazam.sim import simulate_ms


def _ms(path):
    simulate_ms(path, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.1, int_s=60.0, seed=1,
                dead_ant=False, leakage=False)
    return path


def _flag(ms):
    with table(ms, ack=False) as t:
        return t.getcol("FLAG").copy()


def _interrupted_writer(ms, row):
    """An akflag-like run: its version saved, its marker written, one row of FLAG set, then stopped
    as a Ctrl-C would leave it (the marker stays)."""
    v = flagversions.save(ms, task="akflag", comment="before akflag")
    with open(flagsafety.marker_path(ms, v), "w") as fh:
        fh.write(f"FLAG writes in progress; restore with: {flagsafety.restore_command(ms, v)}\n")
    with table(ms, readonly=False, ack=False) as t:
        f = t.getcell("FLAG", row)
        f[:] = True
        t.putcell("FLAG", row, f)
    return v


def test_restoring_the_first_version_ends_both_interrupted_runs(tmp_path, caplog):
    ms = _ms(str(tmp_path / "a.ms"))
    pristine = _flag(ms)
    v1 = _interrupted_writer(ms, 0)
    v2 = _interrupted_writer(ms, 1)
    assert [m[0] for m in flagsafety.interrupted(ms)] == [v1, v2]
    with caplog.at_level(logging.WARNING):
        flagsafety.warn_interrupted(ms)
    said = [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()]
    assert len(said) == 2
    # the later run's warning names the earliest version as the one that undoes both
    assert f"restoring {v1} undoes both" in said[1] and v1 not in said[0].split("restore")[0]
    akflagmanager(vis=ms, mode="restore", versionname=v1)
    np.testing.assert_array_equal(_flag(ms), pristine)
    assert flagsafety.interrupted(ms) == []                 # both markers gone
    assert not os.path.exists(flagsafety.marker_path(ms, v2))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        flagsafety.warn_interrupted(ms)
    assert not [r for r in caplog.records if "interrupted" in r.getMessage()]


def test_restoring_the_later_version_or_merging_leaves_the_earlier_marker(tmp_path):
    """Restoring v2 (saved after v1's run started writing) does not undo the first run; a merge 'or'
    of v1 undoes nothing, not even v1's own run: those markers stay."""
    ms = _ms(str(tmp_path / "a.ms"))
    v1 = _interrupted_writer(ms, 0)
    v2 = _interrupted_writer(ms, 1)
    akflagmanager(vis=ms, mode="restore", versionname=v2)
    assert [m[0] for m in flagsafety.interrupted(ms)] == [v1]
    v3 = _interrupted_writer(ms, 2)
    before = _flag(ms)
    akflagmanager(vis=ms, mode="restore", versionname=v1, merge="or")
    # FLAG still holds the interrupted runs' writes (or with the saved flags): neither run is undone,
    # both markers stay (it said "undid the interrupted akflag" and dropped v1's: a review)
    np.testing.assert_array_equal(_flag(ms), before)
    left = [m[0] for m in flagsafety.interrupted(ms)]
    assert v3 in left and v1 in left
    akflagmanager(vis=ms, mode="restore", versionname=v1)          # replace: both undone
    assert flagsafety.interrupted(ms) == []


def test_an_interrupt_before_the_first_flag_write_leaves_no_marker(tmp_path, caplog, monkeypatch):
    """Review 54b: Ctrl-C after akflag saved its version, before it wrote FLAG, said "FLAG may be partly
    changed" and left the marker, so every later task repeated that advice although FLAG was as saved.
    An interrupt before the first FLAG write begins now removes the marker and says FLAG is unchanged;
    one after it keeps both."""
    import pytest

    from alakazam.caltasks import akflag
    from alakazam.flagging import engine

    ms = _ms(str(tmp_path / "i.ms"))
    before = _flag(ms)

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_flag_unit", stop)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        akflag(vis=ms, mode="clip", clipminmax=[0.0, 1e-6])
    assert "before writing FLAG: FLAG is unchanged" in caplog.text and "partly changed" not in caplog.text
    assert flagsafety.interrupted(ms) == []
    np.testing.assert_array_equal(_flag(ms), before)

    # after a FLAG write began: the marker stays and the message says so
    real = engine._put_flags

    def put_then_stop(t, rows, flag):
        real(t, rows, flag)
        raise KeyboardInterrupt

    monkeypatch.undo()
    monkeypatch.setattr(engine, "_put_flags", put_then_stop)
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        akflag(vis=ms, mode="clip", clipminmax=[0.0, 1e-6])
    assert "partly changed" in caplog.text
    assert len(flagsafety.interrupted(ms)) == 1
