"""akflagmanager and the other writers of an MS (a review, session 41; caltasks/akflagmanager.py,
core/flagversions.py, calibration/flagsafety.py):

* save / restore / delete hold the MS's writer lock: a delete while akflag wrote FLAG took akflag's
  backup and its in-progress marker (a kill -9 of akflag then left FLAG partly written with no way
  back and no warning);
* a version of another MS is refused before the current flags are saved (it was found after the
  save, and its marker then said FLAG was "partly restored" on every later task);
* a CASA version named '<x>.in_progress' (a directory) is not an in-progress marker.
"""

import os
import shutil
import threading

import pytest

from alakazam.caltasks import akflagmanager
from alakazam.calibration import flagsafety
from alakazam.core import flagversions, locks
from alakazam.errors import AlakazamError, ParameterError
from alakazam.sim import simulate_ms


def _ms(path, hours=0.1, seed=1):
    simulate_ms(path, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=hours, int_s=60.0, seed=seed,
                dead_ant=False, leakage=False)
    return path


def test_no_delete_while_another_run_writes(tmp_path):
    ms = _ms(str(tmp_path / "a.ms"))
    v = flagversions.save(ms, task="akflag", comment="before akflag")
    with open(flagsafety.marker_path(ms, v), "w") as fh:                 # akflag's, while it writes FLAG
        fh.write("FLAG writes in progress; restore with: ...\n")
    holding, done = threading.Event(), threading.Event()

    def writer():                                  # another writer (a thread is refused like a process)
        with locks.writer_lock(ms, "ms"):
            holding.set()
            done.wait(30)

    th = threading.Thread(target=writer)
    th.start()
    try:
        holding.wait(30)
        for kw in (dict(mode="delete", versionname=v), dict(mode="save", versionname="mine"),
                   dict(mode="restore", versionname=v)):
            with pytest.raises(AlakazamError, match="in use"):
                akflagmanager(vis=ms, **kw)
    finally:
        done.set()
        th.join()
    assert v in [x["name"] for x in flagversions.list_versions(ms)]
    assert os.path.isfile(flagsafety.marker_path(ms, v))
    akflagmanager(vis=ms, mode="delete", versionname=v)                   # the writer is gone: deleted
    assert v not in [x["name"] for x in flagversions.list_versions(ms)]


def test_a_version_of_another_ms_is_refused_before_anything(tmp_path):
    a = _ms(str(tmp_path / "a.ms"), hours=0.1)
    b = _ms(str(tmp_path / "b.ms"), hours=0.2, seed=2)                   # another number of rows
    flagversions.save(b, task="flagmanager", comment="b's", name="foreign")
    flagversions.save(a, task="flagmanager", comment="a's", name="own")
    shutil.copytree(os.path.join(flagversions.versions_dir(b), "flags.foreign"),
                    os.path.join(flagversions.versions_dir(a), "flags.foreign"))
    with open(os.path.join(flagversions.versions_dir(a), flagversions.LIST_NAME), "a") as fh:
        fh.write("foreign : b's\n")
    before = [x["name"] for x in flagversions.list_versions(a)]
    with pytest.raises(ParameterError) as e:
        akflagmanager(vis=a, mode="restore", versionname="foreign")
    assert "belongs to another MS" in " ".join(e.value.errors["versionname"])
    assert [x["name"] for x in flagversions.list_versions(a)] == before      # no backup saved
    assert flagsafety.interrupted(a) == []                                  # no marker left
    akflagmanager(vis=a, mode="restore", versionname="own")                # its own still restores


def test_a_casa_version_named_in_progress_is_not_a_marker(tmp_path, caplog):
    import logging

    ms = _ms(str(tmp_path / "a.ms"))
    flagversions.save(ms, task="flagmanager", comment="casa-like", name="x")
    # CASA's flagmanager(mode='save', versionname='dots.in_progress'): a version TABLE of that name
    v = flagversions.save(ms, task="flagmanager", comment="casa's", name="y")
    os.rename(os.path.join(flagversions.versions_dir(ms), f"flags.{v}"),
              os.path.join(flagversions.versions_dir(ms), "flags.x.in_progress"))
    assert flagsafety.interrupted(ms) == []
    with caplog.at_level(logging.WARNING):
        akflagmanager(vis=ms, mode="list")
    assert "interrupted" not in caplog.text
    akflagmanager(vis=ms, mode="delete", versionname="x")       # its 'marker' is CASA's table: kept
    assert os.path.isdir(os.path.join(flagversions.versions_dir(ms), "flags.x.in_progress"))


def test_ctrl_c_between_the_save_and_the_restore(tmp_path, caplog):
    """A Ctrl-C held while the current flags are saved is delivered when the hold ends, before FLAG is
    written: it printed only "interrupted" and left the marker (every later task then said FLAG was
    "partly restored").  Now the marker goes and the log says FLAG is unchanged, naming the save."""
    import logging
    import signal

    ms = _ms(str(tmp_path / "a.ms"))
    flagversions.save(ms, task="flagmanager", comment="x", name="x")

    def save():
        v = flagversions.save(ms, task="flagmanager", comment="before restoring x")
        os.kill(os.getpid(), signal.SIGINT)          # held: delivered as the hold ends
        return v

    with caplog.at_level(logging.WARNING, logger="alakazam.apply"):
        with pytest.raises(KeyboardInterrupt):
            with flagsafety.restore_marked(ms, "x", "replace", save):
                raise AssertionError("not reached: FLAG is not written")
    assert flagsafety.interrupted(ms) == []
    assert "interrupted (KeyboardInterrupt) before writing FLAG: FLAG is unchanged" in caplog.text


def test_messages_of_a_call_that_does_nothing(tmp_path):
    """mode='list' without vis said "must be a path that exists ('' does not exist)"; a versionname,
    comment or merge the mode does not use was dropped (akflagmanager(vis, versionname='x') listed the
    versions and restored nothing): both refused, naming the parameter."""
    ms = _ms(str(tmp_path / "a.ms"))
    with pytest.raises(ParameterError) as e:
        akflagmanager(mode="list")
    assert e.value.errors["vis"] == ["the vis parameter is required (a path that exists; none was given)"]
    with pytest.raises(ParameterError) as e:
        akflagmanager(vis=ms, versionname="x", comment="hi", merge="or")
    assert set(e.value.errors) == {"versionname", "comment", "merge"}
    assert "'x' is not used by mode='list'" in e.value.errors["versionname"][0]
    with pytest.raises(ParameterError) as e:
        akflagmanager(vis=ms, mode="save", versionname="y", merge="and")
    assert set(e.value.errors) == {"merge"}
