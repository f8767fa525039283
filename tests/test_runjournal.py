"""A re-run of an interrupted `alakazam run` starts from the flags the interrupted run started from
(alakazam/core/runjournal.py): flag blocks are not idempotent, so a plain re-run flagged on top of the
first run's flags and gave other solutions (review 53c: 10,530 FLAG samples, 0.08 Jy in CORRECTED_DATA)."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.core import flagversions, runjournal
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def rfi_ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("runjournal")
    ms = str(d / "base.ms")
    simulate_ms(ms, feed="circular", n_ant=6, n_ant_extra=0, n_chan=(32,), int_s=60.0, scan_len_s=600.0,
                duration_h=1.0, noise=0.05, seed=53, leakage=False, rfi_persistent=[5],
                rfi_intermittent=True, rfi_bursts=1)
    return ms


YAML = """flag:
  - ms: c.ms
    mode: tfcrop
  - ms: c.ms
    mode: rflag
solve:
  - ms: c.ms
    output: cal.h5
    ref_ant: C00
    jones: [G]
    field: [3C286]
    time_interval: [scan]
"""


def _setup(rfi_ms, d, text=YAML):
    os.makedirs(d, exist_ok=True)
    shutil.copytree(rfi_ms, os.path.join(d, "c.ms"))
    y = os.path.join(d, "run.yaml")
    with open(y, "w") as fh:
        fh.write(text)
    return y, os.path.join(d, "c.ms")


def _flag(ms):
    with table(ms, ack=False) as t:
        return t.getcol("FLAG")


def _journal(ms, y):
    with open(runjournal.journal_path(ms, y)) as fh:
        return json.load(fh)


def _stop(*a, **k):
    raise KeyboardInterrupt


def _interrupt_solve(monkeypatch, task="akcal"):
    """The run's ``task`` (the task object the YAML runner calls) interrupted as it starts."""
    from alakazam.caltasks import yamlrun

    monkeypatch.setattr(getattr(yamlrun, task), "run_prepared", _stop)


def _interrupted(y, task="akcal"):
    """``run_yaml(y)`` with the run's ``task`` interrupted as it starts (its KeyboardInterrupt expected)."""
    from alakazam.caltasks.yamlrun import run_yaml

    with pytest.MonkeyPatch.context() as m:
        _interrupt_solve(m, task)
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y)


def _killed_before_the_entry(y):
    """``run_yaml(y)`` stopped right after its first flag version is saved, before the journal records it
    (as a kill -9 there leaves it)."""
    from alakazam.caltasks.yamlrun import run_yaml

    def killed(ms_, name):
        if name is not None:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as m:
        m.setattr(runjournal, "note_saved", killed)
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y)


def test_rerun_after_an_interrupt_gives_the_uninterrupted_flags(rfi_ms, tmp_path, monkeypatch, caplog):
    from alakazam.caltasks.yamlrun import run_yaml

    y_ref, ms_ref = _setup(rfi_ms, str(tmp_path / "ref"))
    run_yaml(y_ref)
    want = _flag(ms_ref)
    assert _journal(ms_ref, y_ref)["finished"] is True

    y, ms = _setup(rfi_ms, str(tmp_path / "int"))
    _interrupted(y)                 # both flag blocks wrote FLAG, then the solve was interrupted
    assert _journal(ms, y).get("finished") is None
    assert flagversions.saved_order(ms) == ["akflag_1", "akflag_2"]
    with caplog.at_level(logging.WARNING):
        run_yaml(y)
    assert "did not finish" in caplog.text and "put back first to akflag_1" in caplog.text
    np.testing.assert_array_equal(_flag(ms), want)
    j = _journal(ms, y)
    assert j["finished"] is True and j["base"] == "akflag_1"
    assert os.path.exists(os.path.join(os.path.dirname(y), "cal.h5"))

    # control: running the finished file again flags on top of its own flags (what the restore
    # prevents after an interrupt), and says so, naming the version of the flags before one run
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_yaml(y_ref)
    assert "already ran" in caplog.text and "versionname akflag_1" in caplog.text
    assert (_flag(ms_ref) != want).any(), "the test MS must make a second flag pass flag more"


def test_second_interrupt_goes_back_to_the_first_runs_flags(rfi_ms, tmp_path, monkeypatch):
    from alakazam.caltasks.yamlrun import run_yaml

    y_ref, ms_ref = _setup(rfi_ms, str(tmp_path / "ref"))
    run_yaml(y_ref)
    y, ms = _setup(rfi_ms, str(tmp_path / "int"))
    with monkeypatch.context() as m:
        _interrupt_solve(m)
        for _ in range(2):              # interrupted, then its re-run interrupted too
            with pytest.raises(KeyboardInterrupt):
                run_yaml(y)
    assert _journal(ms, y)["base"] == "akflag_1"
    run_yaml(y)
    np.testing.assert_array_equal(_flag(ms), _flag(ms_ref))


def test_an_edited_file_restores_nothing_and_names_the_version(rfi_ms, tmp_path, monkeypatch, caplog):
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(rfi_ms, str(tmp_path / "ed"))
    _interrupted(y)
    before = _flag(ms)
    with open(y) as fh:
        text = fh.read()
    with open(y, "w") as fh:            # another job: the solve's interval changed
        fh.write(text.replace("time_interval: [scan]", "time_interval: [inf]"))
    with monkeypatch.context() as m:    # stopped again right after the journal is read: FLAG as it was
        calls = []
        m.setattr("alakazam.caltasks.yamlrun._restore_flags", lambda *a: calls.append(a))
        _interrupt_solve(m, "akflag")
        with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
            run_yaml(y)
    assert calls == []
    assert "another version of the file" in caplog.text and "versionname akflag_1" in caplog.text
    np.testing.assert_array_equal(_flag(ms), before)


def test_a_run_without_flag_writes_restores_nothing(rfi_ms, tmp_path, monkeypatch):
    """An interrupted run that saved no flag version left FLAG as it was: nothing to restore."""
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(rfi_ms, str(tmp_path / "nf"), YAML.split("solve:")[0].replace("tfcrop", "summary")
                   .replace("rflag", "summary") + "solve:" + YAML.split("solve:")[1])
    _interrupted(y)
    calls = []
    monkeypatch.setattr("alakazam.caltasks.yamlrun._restore_flags", lambda *a: calls.append(a))
    run_yaml(y)
    assert calls == [] and flagversions.saved_order(ms) == []


def test_a_yaml_run_says_a_repeated_warning_once(rfi_ms, tmp_path, caplog):
    """run_yaml is warn-once scoped (review 53d: a helper inserted between the decorator and run_yaml
    took it, and a field range past the last id was warned 4 times per run)."""
    from alakazam.caltasks.yamlrun import run_yaml

    y, _ = _setup(rfi_ms, str(tmp_path / "w"), "solve:\n  - ms: c.ms\n    output: w.h5\n    ref_ant: C00\n"
                  "    jones: [G]\n    field: ['0~9']\n    time_interval: [scan]\n")
    with caplog.at_level(logging.WARNING):
        run_yaml(y)
    assert caplog.text.count("goes past the last field id") == 1, caplog.text


def _c00_rows(ms):
    with table(ms, ack=False) as t:
        q = t.query("ANTENNA1==0 || ANTENNA2==0")
        return q.getcol("FLAG").all(axis=(1, 2))


def _flag_c00(ms):
    from alakazam.caltasks import akflag

    akflag(vis=ms, mode="manual", antenna="C00")


def test_user_flags_after_an_interrupt_are_not_overwritten(rfi_ms, tmp_path, monkeypatch, caplog):
    """Review 53d: after a run interrupted before any FLAG write, a manual flag's backup was taken for the
    flags before the run and restored (C00: 990 flagged rows back to 57); after one interrupted past its
    flag blocks, the manual flag was overwritten.  Now only a version the job saved is its base, and FLAG
    changed by another task since is left alone, with a warning naming the base."""
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(rfi_ms, str(tmp_path / "a"))
    _interrupted(y, "akflag")                   # stopped before its first FLAG write
    _flag_c00(ms)
    with caplog.at_level(logging.WARNING):
        run_yaml(y)
    assert _c00_rows(ms).all() and "did not finish" not in caplog.text

    y, ms = _setup(rfi_ms, str(tmp_path / "b"))
    with monkeypatch.context() as m:
        _interrupt_solve(m)                     # past both flag blocks
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y)
    _flag_c00(ms)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_yaml(y)
    assert _c00_rows(ms).all()
    assert "changed since by other tasks (flag versions akflag_3" in caplog.text
    assert "versionname akflag_1" in caplog.text


def test_deleted_base_is_said(rfi_ms, tmp_path, monkeypatch, caplog):
    from alakazam.caltasks import akflagmanager
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(rfi_ms, str(tmp_path / "d"))
    _interrupted(y)
    akflagmanager(vis=ms, mode="delete", versionname="akflag_1")
    with caplog.at_level(logging.WARNING):
        run_yaml(y)
    assert "saving flag version akflag_1" in caplog.text and "has been deleted, so FLAG cannot be put back" \
        in caplog.text


def test_same_file_through_a_symlink_or_alakazam_flag(rfi_ms, tmp_path, monkeypatch):
    """Review 53d: the journal was keyed by the absolute (not real) path and the sections, so a re-run
    through a symlink, or `alakazam run` after an interrupted `alakazam flag` of the file, restored
    nothing."""
    from alakazam.caltasks.yamlrun import run_yaml

    y_ref, ms_ref = _setup(rfi_ms, str(tmp_path / "ref"))
    run_yaml(y_ref)
    y, ms = _setup(rfi_ms, str(tmp_path / "s"))
    link = os.path.join(os.path.dirname(y), "link.yaml")
    os.symlink("run.yaml", link)
    _interrupted(y)
    run_yaml(link)
    np.testing.assert_array_equal(_flag(ms), _flag(ms_ref))

    y, ms = _setup(rfi_ms, str(tmp_path / "f"))
    with monkeypatch.context() as m:
        calls = {"n": 0}
        from alakazam.caltasks import yamlrun

        real = yamlrun.akflag.run_prepared

        def second_stops(*a, **k):             # the second flag block interrupted, the first done
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
            return real(*a, **k)

        m.setattr(yamlrun.akflag, "run_prepared", second_stops)
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y, sections=("flag",))     # alakazam flag FILE
    run_yaml(y)
    np.testing.assert_array_equal(_flag(ms), _flag(ms_ref))


def test_a_comment_or_a_copy_of_the_file_is_the_same_job(rfi_ms, tmp_path, monkeypatch):
    """Review 53e: a comment added to the file before the re-run (its text's digest changed), or the
    file copied under another name, restored nothing: the content as parsed is the job."""
    from alakazam.caltasks.yamlrun import run_yaml

    y_ref, ms_ref = _setup(rfi_ms, str(tmp_path / "ref"))
    run_yaml(y_ref)
    for how in ("comment", "copy"):
        y, ms = _setup(rfi_ms, str(tmp_path / how))
        _interrupted(y)
        if how == "comment":
            with open(y, "a") as fh:
                fh.write("# fixed the data, running again\n")
        else:
            y2 = os.path.join(os.path.dirname(y), "again.yaml")
            shutil.copy(y, y2)
            y = y2
        run_yaml(y)
        np.testing.assert_array_equal(_flag(ms), _flag(ms_ref))


def test_an_interrupt_in_the_restore_still_goes_back(rfi_ms, tmp_path, monkeypatch):
    """Review 53e: the restore's own backup was saved before the re-run's journal recorded saves, so
    an interrupt in the restore left it 'another task's' and the next run restored nothing (216,864
    FLAG samples off).  The journal records it now."""
    from alakazam.caltasks import yamlrun
    from alakazam.caltasks.yamlrun import run_yaml
    from alakazam.core import flagversions as fv

    y_ref, ms_ref = _setup(rfi_ms, str(tmp_path / "ref"))
    run_yaml(y_ref)
    y, ms = _setup(rfi_ms, str(tmp_path / "r"))
    _interrupted(y)
    with monkeypatch.context() as m:    # the restore saves its backup, then is interrupted
        def save_then_stop(ms_, version):
            fv.save(ms_, task="flagmanager")
            raise KeyboardInterrupt
        m.setattr(yamlrun, "_restore_flags", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y)
    j = _journal(ms, y)
    assert j["base"] == "akflag_1" and "flagmanager_1" in j["ours"]
    run_yaml(y)
    np.testing.assert_array_equal(_flag(ms), _flag(ms_ref))


def test_a_running_job_a_refused_restore_an_edited_copy_and_a_kill_in_the_save(rfi_ms, tmp_path, monkeypatch,
                                                                               caplog):
    """Review 53f: (1) a copy of the file took over the journal of a run still in progress and restored
    FLAG under it; (2) a run refused before its restore saved anything had already rewritten both
    journals; (3) an edited copy run after an interrupt flagged on top of it unsaid; (4) a kill -9
    between a version's save and its journal entry left it 'another task's'."""
    import subprocess
    import sys

    from alakazam.caltasks import yamlrun
    from alakazam.caltasks.yamlrun import run_yaml
    from alakazam.errors import AlakazamError

    y, ms = _setup(rfi_ms, str(tmp_path / "a"))
    _interrupted(y)
    j = runjournal.journal_path(ms, y)
    # (1) the journal's process alive: nothing restored, its journal untouched
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        d = _journal(ms, y)
        d["pid"], d["pid_start"] = live.pid, runjournal._proc_start(live.pid)
        with open(j, "w") as fh:
            json.dump(d, fh)
        calls = []
        with monkeypatch.context() as m, caplog.at_level(logging.WARNING):
            m.setattr(yamlrun, "_restore_flags", lambda *a: calls.append(a))
            _interrupt_solve(m, "akflag")       # (the live run's writer lock would stop it there)
            with pytest.raises(KeyboardInterrupt):
                run_yaml(y)
        assert calls == [] and "is in progress (process" in caplog.text
        assert _journal(ms, y)["pid"] == live.pid
    finally:
        live.kill()
        live.wait()
    # (2) a restore refused before saving anything: the journals as they were
    before = _journal(ms, y)
    with monkeypatch.context() as m:
        def refuse(*a):
            raise AlakazamError("Measurement Set c.ms is in use by PID 1")
        m.setattr(yamlrun, "_restore_flags", refuse)
        with pytest.raises(AlakazamError):
            run_yaml(y)
    assert _journal(ms, y) == before
    # (3) an edited copy: warned, nothing restored
    y2 = os.path.join(os.path.dirname(y), "edited.yaml")
    with open(y) as fh:
        text = fh.read()
    with open(y2, "w") as fh:
        fh.write(text.replace("time_interval: [scan]", "time_interval: [inf]"))
    caplog.clear()
    with monkeypatch.context() as m, caplog.at_level(logging.WARNING):
        _interrupt_solve(m)
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y2)
    assert "an earlier run of" in caplog.text and "versionname akflag_1" in caplog.text
    # (4) a kill -9 between a version's save and its entry: announced, so still the job's
    y3, ms3 = _setup(rfi_ms, str(tmp_path / "k"))
    y_ref, ms_ref = _setup(rfi_ms, str(tmp_path / "ref"))
    run_yaml(y_ref)
    _killed_before_the_entry(y3)
    assert _journal(ms3, y3)["pending"] == "akflag_1"
    run_yaml(y3)
    np.testing.assert_array_equal(_flag(ms3), _flag(ms_ref))


def test_kill_in_a_save_reused_pid_and_another_host(rfi_ms, tmp_path, monkeypatch, caplog):
    """Review 53g: (1) a kill -9 during a save (the version never listed) left the version before it
    recorded, so the next version anyone saved -- a manual flag's backup -- was taken as the job's and
    restored away (336,380 manual flags lost); the pending save is now recorded by its name.  (2) A
    reused pid made an interrupted run look alive forever (the process start time is compared now);
    (3) a journal of another host was taken as gone and its live run restored under (now: alive)."""
    from alakazam.caltasks import yamlrun
    from alakazam.caltasks.yamlrun import run_yaml

    # (1) the job's first save killed before it is listed; the user flags C00 (akflag_1 is theirs)
    y, ms = _setup(rfi_ms, str(tmp_path / "a"))
    with monkeypatch.context() as m:
        from alakazam.core import flagversions as fv

        def killed_in_save(*a, **k):
            raise KeyboardInterrupt         # as a kill -9 inside the save: nothing listed, no entry
        m.setattr(fv, "_save", killed_in_save)
        m.setattr(runjournal, "note_saved", lambda *a: None)
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y)
    assert _journal(ms, y)["pending"] == "akflag_1" and fv.saved_order(ms) == []
    _flag_c00(ms)
    calls = []
    with monkeypatch.context() as m:
        m.setattr(yamlrun, "_restore_flags", lambda *a: calls.append(a))
        _interrupt_solve(m)
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y)
    assert calls == [] and _c00_rows(ms).all()

    # (2) the journal's pid alive but another process (start time differs): the run is gone
    y2, ms2 = _setup(rfi_ms, str(tmp_path / "p"))
    y_ref, ms_ref = _setup(rfi_ms, str(tmp_path / "ref"))
    run_yaml(y_ref)
    _interrupted(y2)
    j = runjournal.journal_path(ms2, y2)
    d = _journal(ms2, y2)
    d["pid"], d["pid_start"] = 1, -5            # pid 1 is alive, but started otherwise
    with open(j, "w") as fh:
        json.dump(d, fh)
    run_yaml(y2)
    np.testing.assert_array_equal(_flag(ms2), _flag(ms_ref))

    # (3) a journal of another host: taken as alive, nothing restored, said
    y3, ms3 = _setup(rfi_ms, str(tmp_path / "h"))
    _interrupted(y3)
    j = runjournal.journal_path(ms3, y3)
    d = _journal(ms3, y3)
    d["host"] = "node-elsewhere"
    with open(j, "w") as fh:
        json.dump(d, fh)
    calls = []
    with monkeypatch.context() as m, caplog.at_level(logging.WARNING):
        m.setattr(yamlrun, "_restore_flags", lambda *a: calls.append(a))
        _interrupt_solve(m, "akflag")
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y3)
    assert calls == [] and "on node-elsewhere" in caplog.text



def test_the_base_restored_by_hand_settles_the_journal(rfi_ms, tmp_path, monkeypatch, caplog):
    """Review 53g: the warnings' advice -- restore the interrupted run's base first -- was followed,
    and every later run still warned (an edited copy: 'an earlier run of ... did not finish'; the same
    file: 'FLAG was changed since by other tasks').  A restore of the base settles the journal."""
    from alakazam.caltasks import akflagmanager
    from alakazam.caltasks.yamlrun import run_yaml

    y_ref, ms_ref = _setup(rfi_ms, str(tmp_path / "ref"))
    run_yaml(y_ref)
    # the same file: a manual flag after the interrupt keeps the run from restoring; the user restores
    # the base as the warning says, and the re-run then gives the uninterrupted flags, unsaid
    y, ms = _setup(rfi_ms, str(tmp_path / "same"))
    _interrupted(y)
    _flag_c00(ms)
    with caplog.at_level(logging.WARNING):
        _interrupted(y, "akflag")
    assert "changed since by other tasks" in caplog.text
    caplog.clear()
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    assert _journal(ms, y).get("settled") is None, "a run that restored nothing keeps its own journal open"
    with caplog.at_level(logging.WARNING):
        run_yaml(y)
    assert "did not finish" not in caplog.text and "changed since" not in caplog.text
    np.testing.assert_array_equal(_flag(ms), _flag(ms_ref))

    # an edited copy: warned once; after the base is restored, its later runs no longer warn
    y, ms = _setup(rfi_ms, str(tmp_path / "other"))
    _interrupted(y)
    y2 = os.path.join(os.path.dirname(y), "edited.yaml")
    with open(y) as fh:
        text = fh.read()
    with open(y2, "w") as fh:
        fh.write(text.replace("time_interval: [scan]", "time_interval: [inf]"))
    with caplog.at_level(logging.WARNING):
        _interrupted(y2, "akflag")
    assert "an earlier run of" in caplog.text
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    assert _journal(ms, y)["settled"] == "akflag_1"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_yaml(y2)
    assert "an earlier run of" not in caplog.text and "did not finish" not in caplog.text
    # merge 'or' does not put the flags back: it settles nothing
    y, ms = _setup(rfi_ms, str(tmp_path / "or"))
    _interrupted(y)
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1", merge="or")
    assert _journal(ms, y).get("settled") is None


def test_a_copy_of_a_finished_run_says_it_already_ran(rfi_ms, tmp_path, caplog):
    """Review 53g: a copy of a file whose run finished, run on the same MS, flagged on top of that run's
    flags unsaid (the file itself run again says so)."""
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(rfi_ms, str(tmp_path / "c"))
    run_yaml(y)
    y2 = os.path.join(os.path.dirname(y), "copy.yaml")
    shutil.copy(y, y2)
    with caplog.at_level(logging.WARNING):
        run_yaml(y2)
    assert "already ran" in caplog.text and "the same content" in caplog.text
    assert "versionname akflag_1" in caplog.text


def test_a_kill_after_a_raced_save_names_only_the_other_tasks_version(rfi_ms, tmp_path, monkeypatch, caplog):
    """Review 53g: another process saved a version of the MS while the run announced its second save
    (taking the announced name; the run's save took the next), and a kill -9 came before the run
    recorded it: the re-run called the job's own version 'another task's'.  The job's versions are
    told by the run's id."""
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(rfi_ms, str(tmp_path / "r"))
    real_saving, real_saved = runjournal.note_saving, runjournal.note_saved
    seen = {"n": 0, "raced": False}

    def saving(ms_, name):
        real_saving(ms_, name)
        if not runjournal._ACTIVE:      # the other task's own save
            return
        seen["n"] += 1
        if seen["n"] == 2:              # another task's save inside the run's second announcement
            mine = dict(runjournal._ACTIVE)
            runjournal._ACTIVE.clear()
            try:
                flagversions.save(ms_, "akflag", comment="another task")
            finally:
                runjournal._ACTIVE.update(mine)
            seen["raced"] = True

    def saved(ms_, name):
        if seen["raced"] and runjournal._ACTIVE and name is not None:
            raise KeyboardInterrupt     # killed before the entry, as a kill -9
        real_saved(ms_, name)

    with monkeypatch.context() as m:
        m.setattr(runjournal, "note_saving", saving)
        m.setattr(runjournal, "note_saved", saved)
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y)
    assert flagversions.saved_order(ms) == ["akflag_1", "akflag_2", "akflag_3"]
    assert _journal(ms, y)["pending"] == "akflag_2" and _journal(ms, y)["ours"] == ["akflag_1"]
    with caplog.at_level(logging.WARNING):
        run_yaml(y)
    assert "changed since by other tasks (flag versions akflag_2 saved" in caplog.text


def test_undoing_the_hand_restore_reopens_and_a_killed_entry_still_settles(rfi_ms, tmp_path, caplog):
    """Review 54d: (1) the undo of a hand restore of the base (restoring the backup that restore saved)
    brought the interrupted run's flags back, yet the journal stayed settled and the re-run flagged on
    top unsaid; (2) after a kill between the base's save and its journal entry, restoring the base by
    hand did not settle the journal (the re-run asked for the restore just done)."""
    from alakazam.caltasks import akflagmanager
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(rfi_ms, str(tmp_path / "u"))
    _interrupted(y)
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")        # saves flagmanager_1 first
    assert _journal(ms, y)["settled"] == "akflag_1"
    akflagmanager(vis=ms, mode="restore", versionname="flagmanager_1")   # its undo
    assert "settled" not in _journal(ms, y)
    # and an undo by merge='or' (review 54g: it brought the run's flags back, the journal stayed settled)
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    assert _journal(ms, y)["settled"] == "akflag_1"
    akflagmanager(vis=ms, mode="restore", versionname="flagmanager_1", merge="or")
    assert "settled" not in _journal(ms, y)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _interrupted(y, "akflag")
    assert "changed since by other tasks" in caplog.text

    y2, ms2 = _setup(rfi_ms, str(tmp_path / "k"))
    _killed_before_the_entry(y2)
    assert _journal(ms2, y2)["ours"] == [] and _journal(ms2, y2)["pending"] == "akflag_1"
    akflagmanager(vis=ms2, mode="restore", versionname="akflag_1")
    assert _journal(ms2, y2)["settled"] == "akflag_1"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_yaml(y2)
    assert "did not finish" not in caplog.text and "changed since" not in caplog.text


def test_already_ran_names_the_versions_a_restore_would_drop(rfi_ms, tmp_path, caplog):
    """Review 54d: after a finished run and other tasks' flags, the "already ran" advice (restore the
    run's base) did not say it would drop those flags too."""
    from alakazam.caltasks import akflag
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(rfi_ms, str(tmp_path / "a"))
    run_yaml(y)
    akflag(vis=ms, mode="manual", antenna="C00")         # another task: saves akflag_3
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_yaml(y)
    assert "already ran" in caplog.text and "other tasks saved flag versions since (akflag_3)" in caplog.text


def test_a_finished_runs_base_restored_by_hand_settles_it(rfi_ms, tmp_path, caplog):
    """Review 58b: after a finished run the user restored its base (akflagmanager, as the "already ran"
    WARNING advises) and flagged by hand; a copy of the file, run next, still said "already ran ...
    restore flag version akflag_1" -- a restore already done, which would now drop the hand flags.  A
    replace restore of a finished run's base settles its journal as it settles an unfinished one's; the
    undo of that restore opens it again."""
    from alakazam.caltasks import akflag, akflagmanager
    from alakazam.caltasks.yamlrun import run_yaml

    y, ms = _setup(rfi_ms, str(tmp_path / "f"))
    run_yaml(y)
    assert _journal(ms, y)["finished"] is True and runjournal.base_of(_journal(ms, y)) == "akflag_1"
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")        # saves flagmanager_1 first
    assert _journal(ms, y)["settled"] == "akflag_1"
    akflag(vis=ms, mode="manual", antenna="C00")                          # the user's own flags
    hand = _flag(ms)
    y3 = os.path.join(os.path.dirname(y), "copy.yaml")
    shutil.copy(y, y3)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_yaml(y3)
    assert "already ran" not in caplog.text and "versionname akflag_1" not in caplog.text, caplog.text
    assert (_flag(ms) >= hand).all(), "the hand flags are kept under the copy's run"
    # the undo of the hand restore brings the finished run's flags back: it warns again
    y4, ms4 = _setup(rfi_ms, str(tmp_path / "g"))
    run_yaml(y4)
    akflagmanager(vis=ms4, mode="restore", versionname="akflag_1")
    akflagmanager(vis=ms4, mode="restore", versionname="flagmanager_1")
    assert "settled" not in _journal(ms4, y4)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_yaml(y4)
    assert "already ran" in caplog.text and "versionname akflag_1" in caplog.text


def test_apply_flags_are_put_back_before_a_rerun_solves(tmp_path, caplog):
    """An apply block with propagate_flags writes FLAG (samples without a valid solution); a re-run's solves
    read FLAG.  After a run stopped once its apply had written FLAG (here: at the very end, before the
    journal is marked finished) the re-run solved on those flags and its solutions and CORRECTED_DATA
    differed from an uninterrupted run's (the README hazard MS through examples/fluxscale.yaml: 3C147
    2.4673 and TARGET 0.6888 against 2.5094 and 0.7001).  The apply is journaled as a flag block is: the
    re-run puts FLAG back to the apply's version first and gives the uninterrupted run's results bit for
    bit; a run after a finished one says that its solves read the first run's apply flags."""
    from casacore.tables import taql

    from alakazam.caltasks.yamlrun import run_yaml
    from alakazam.io import hdf5

    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    runs = {}
    for name in ("ref", "int"):
        d = tmp_path / name
        d.mkdir()
        simulate_ms(str(d / "sim.ms"), rfi_persistent=[5], rfi_intermittent=True, rfi_bursts=2,
                    dead_antenna_scan=("C04", 4))
        shutil.copy(os.path.join(examples, "fluxscale.yaml"), d / "run.yaml")
        runs[name] = (str(d / "run.yaml"), str(d / "sim.ms"), str(d / "gains.h5"))

    def results(name):
        y, ms, gains = runs[name]
        cols = []
        for dd in range(2):
            q = taql(f"select CORRECTED_DATA, FLAG from {ms} where DATA_DESC_ID=={dd}")
            cols.append((q.getcol("CORRECTED_DATA"), q.getcol("FLAG")))
        return cols, [s.jones for s in hdf5.read_term(gains, "G0")]

    run_yaml(runs["ref"][0])
    y, ms, _ = runs["int"]
    with pytest.MonkeyPatch.context() as m:         # every block ran, the apply wrote FLAG: then stopped
        m.setattr(runjournal, "end", _stop)
        with pytest.raises(KeyboardInterrupt):
            run_yaml(y)
    assert "akapply_1" in flagversions.saved_order(ms)
    with caplog.at_level(logging.WARNING):
        run_yaml(y)
    assert "apply blocks' FLAG writes (samples without a valid solution) would reach this run's solves, " \
           "so FLAG was put back first to akapply_1" in caplog.text
    (want, gw), (got, gg) = results("ref"), results("int")
    for (c0, f0), (c1, f1) in zip(want, got):
        assert np.array_equal(f0, f1) and np.array_equal(c0, c1, equal_nan=True)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(gw, gg))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_yaml(y)
    assert "already ran on" in caplog.text and "its apply blocks wrote FLAG" in caplog.text
