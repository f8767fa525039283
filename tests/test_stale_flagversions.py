"""A ``<ms>.flagversions`` left behind by a deleted MS is not the new MS's (review h60b).

After ``rm -rf x.ms; cp -r orig.ms x.ms`` the directory ``x.ms.flagversions`` of the earlier x.ms stays
(CASA's flagmanager lists it as it is).  The next ``alakazam run`` said "the flag blocks of run.yaml
already ran on x.ms (a finished run): they flag again on top of their own flags" (or, after an apply,
"its apply blocks wrote FLAG: this run's solves read those flags") of the fresh copy, which holds none
of them; an unfinished run's journal had the re-run put the earlier MS's flags on the copy; an
interrupted apply's in-progress marker had every task warn that FLAG "may be partly changed".  Such
files are now told by time (core/runjournal.of_earlier_ms: the MS made after them, its
``.flagversions`` not) and ignored -- said at INFO, nothing deleted or rewritten.  An MS copied together
with its ``.flagversions`` keeps them."""

import logging
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration import flagsafety
from alakazam.core import flagversions, runjournal
from alakazam.sim import simulate_ms

YAML = """flag:
  - ms: c.ms
    mode: tfcrop
solve:
  - ms: c.ms
    output: cal.h5
    ref_ant: C00
    jones: [G]
    field: [3C286]
    time_interval: [scan]
"""


@pytest.fixture(scope="module")
def orig_ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("stale_fv")
    ms = str(d / "orig.ms")
    simulate_ms(ms, feed="circular", n_ant=6, n_ant_extra=0, n_chan=(32,), int_s=60.0, scan_len_s=600.0,
                duration_h=1.0, noise=0.05, seed=53, leakage=False, rfi_persistent=[5],
                rfi_intermittent=True, rfi_bursts=1)
    return ms


def _setup(orig, d):
    os.makedirs(d, exist_ok=True)
    ms = os.path.join(d, "c.ms")
    subprocess.run(["cp", "-r", orig, ms], check=True)
    y = os.path.join(d, "run.yaml")
    with open(y, "w") as fh:
        fh.write(YAML)
    return y, ms


def _fresh_copy(orig, ms):
    """``rm -rf ms; cp -r orig ms`` a little later (file times have 1 s of slack)."""
    time.sleep(1.2)
    shutil.rmtree(ms)
    subprocess.run(["cp", "-r", orig, ms], check=True)


def _flag(ms):
    with table(ms, ack=False) as t:
        return t.getcol("FLAG")


def _interrupted(y):
    from alakazam.caltasks import yamlrun

    def stop(*a, **k):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as m:
        m.setattr(yamlrun.akcal, "run_prepared", stop)
        with pytest.raises(KeyboardInterrupt):
            yamlrun.run_yaml(y)


@pytest.fixture(scope="module")
def one_run(orig_ms, tmp_path_factory):
    """FLAG after one run of the file on a fresh copy (the reference)."""
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(orig_ms, str(tmp_path_factory.mktemp("ref")))
    run_yaml(y)
    return _flag(ms)


@pytest.mark.parametrize("no_birth_time", [False, True])
def test_a_finished_run_on_a_deleted_ms_is_not_said_of_its_copy(orig_ms, one_run, tmp_path, caplog,
                                                                 monkeypatch, no_birth_time):
    """The "already ran" WARNING is not said of a fresh copy; one INFO line says why; the run's flags
    are those of a first run; the earlier versions stay listed (nothing deleted).  Also where the
    filesystem keeps no birth time (the copy's file times then tell)."""
    from alakazam.caltasks.yamlrun import run_yaml

    if no_birth_time:
        monkeypatch.setattr(runjournal, "_birth_ns", lambda path: None)
    y, ms = _setup(orig_ms, str(tmp_path))
    run_yaml(y)
    assert flagversions.saved_order(ms) == ["akflag_1"]
    _fresh_copy(orig_ms, ms)
    with caplog.at_level(logging.INFO):
        run_yaml(y)
    assert "already ran" not in caplog.text, caplog.text
    assert "holds the journals of 1 run(s) on " in caplog.text and "taken as a new copy" in caplog.text
    assert "the flag versions they saved (akflag_1) are kept and listed" in caplog.text
    np.testing.assert_array_equal(_flag(ms), one_run)
    assert flagversions.saved_order(ms) == ["akflag_1", "akflag_2"]

    # control: a run of the file again on this copy is a second run, said as before
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_yaml(y)
    assert "already ran" in caplog.text and "versionname akflag_2" in caplog.text
    assert "taken as a new copy" not in caplog.text     # (the earlier MS's journal was this file's: replaced)


def test_an_unfinished_run_on_a_deleted_ms_restores_nothing_on_its_copy(orig_ms, one_run, tmp_path, caplog):
    """An interrupted run on the earlier MS (which had hand flags before it): the re-run on a fresh copy
    does not put that MS's flags (its base version) on the copy."""
    from alakazam.caltasks import akflag
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(orig_ms, str(tmp_path))
    akflag(vis=ms, mode="manual", antenna="C01")        # the earlier MS's own flags (akflag_1)
    _interrupted(y)
    assert flagversions.saved_order(ms) == ["akflag_1", "akflag_2"]
    _fresh_copy(orig_ms, ms)
    with caplog.at_level(logging.INFO):
        run_yaml(y)
    assert "did not finish" not in caplog.text and "put back" not in caplog.text, caplog.text
    assert "taken as a new copy" in caplog.text
    np.testing.assert_array_equal(_flag(ms), one_run)


def test_an_ms_copied_with_its_flagversions_keeps_its_journal(orig_ms, one_run, tmp_path, caplog):
    """An interrupted run, then the MS and its .flagversions copied together elsewhere: the re-run there
    still puts FLAG back to the flags before the interrupted run (the journal is the copy's)."""
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(orig_ms, str(tmp_path / "a"))
    _interrupted(y)
    time.sleep(1.2)
    b = str(tmp_path / "b")
    os.makedirs(b)
    for name in ("c.ms", "c.ms.flagversions"):
        shutil.copytree(os.path.join(tmp_path, "a", name), os.path.join(b, name))   # (times kept)
    y2 = os.path.join(b, "run.yaml")
    shutil.copy(y, y2)
    with caplog.at_level(logging.INFO):
        run_yaml(y2)
    assert "put back first to akflag_1" in caplog.text, caplog.text
    assert "taken as a new copy" not in caplog.text
    np.testing.assert_array_equal(_flag(os.path.join(b, "c.ms")), one_run)


def test_an_interrupted_applys_marker_of_a_deleted_ms(orig_ms, tmp_path, caplog):
    """The in-progress marker a kill -9 left in the earlier MS's .flagversions: not taken as the fresh
    copy's (interrupted() leaves it out, no "FLAG may be partly changed" of it) but said with both
    readings -- a birth time cannot tell a fresh copy from the same MS moved back (review 60j) -- with the
    restore command and the marker to remove; kept; for the MS it was written for, warned as before."""
    d = str(tmp_path)
    ms = os.path.join(d, "c.ms")
    subprocess.run(["cp", "-r", orig_ms, ms], check=True)
    flagversions.save(ms, task="akapply", comment="apply")
    m = flagsafety.marker_path(ms, "akapply_1")
    with open(m, "w") as fh:
        fh.write(f"{flagsafety._MARKER}; restore with: {flagsafety.restore_command(ms, 'akapply_1')}\n")
    assert [v for v, _, _ in flagsafety.interrupted(ms)] == ["akapply_1"]
    with caplog.at_level(logging.WARNING):
        flagsafety.warn_interrupted(ms)
    assert "was interrupted while writing FLAG" in caplog.text
    _fresh_copy(orig_ms, ms)
    caplog.clear()
    assert flagsafety.interrupted(ms) == []
    with caplog.at_level(logging.WARNING):
        flagsafety.warn_interrupted(ms)
    assert "FLAG may be partly changed;" not in caplog.text
    assert "before this MS's directory was made" in caplog.text and "moved or copied back" in caplog.text
    assert "fresh copy" in caplog.text and m in caplog.text and "akapply_1" in caplog.text
    assert os.path.isfile(m)
