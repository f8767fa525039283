"""An interrupted flag-version save leaves nothing new behind (alakazam/core/flagversions.py).

The defect: the first save of an MS made ``<ms>.flagversions`` before writing the version, and an
interrupt (Ctrl-C, SIGTERM through the CLI, an error such as a casacore failure or a full disk) before
the version was complete left the directory behind, empty (or, after a kill -9, holding only the
version's temporary).  A version table renamed into place but not yet listed stayed as an unlisted
table.  akshell's undo removed the versions a task saved but not the directory the task made.

Now: the first version is made with its directory (built beside the MS as
``.tmp-<ms>.flagversions.<host>.<pid>`` and renamed into place whole); into an existing directory a
version is renamed into place and listed as one step; the undo removes the directory it made when
empty.  Each test interrupts at a given point (monkeypatch) and checks what is left: nothing new, and
never a directory or version that existed before removed.  The first ones fail on the old code.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration import flagsafety
from alakazam.core import flagtable, flagversions, undo
from alakazam.errors import AlakazamError
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from signal_child import signal_when_writing  # noqa: E402  (tests/signal_child.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def base_ms(tmp_path_factory):
    ms = str(tmp_path_factory.mktemp("fvi") / "base.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(8,), duration_h=0.3, int_s=60.0, noise=0.05, seed=4,
                leakage=False, dead_ant=False, flag_rows=0.02)
    return ms


@pytest.fixture
def ms(base_ms, tmp_path):
    p = str(tmp_path / "v.ms")
    shutil.copytree(base_ms, p)
    return p


def _flag(ms):
    with table(ms, ack=False) as t:
        return t.getcol("FLAG"), t.getcol("FLAG_ROW")


def _temporaries(ms):
    """What a save leaves beside the MS or in its flag-version directory under a temporary name."""
    parent = os.path.dirname(ms)
    d = flagversions.versions_dir(ms)
    return ([f for f in os.listdir(parent) if f.startswith(".tmp")]
            + ([f for f in os.listdir(d) if f.startswith(".tmp")] if os.path.isdir(d) else []))


def _tree(d):
    """{file: bytes} of a directory tree (a flag-version directory as it is on disk)."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = fh.read()
    return out


def _interrupt_mid_table(monkeypatch, exc):
    """``exc`` raised after the first chunk of FLAG is in the version table (half written)."""
    real = flagtable.put_flag

    def put_then_fail(t, rows, f):
        real(t, rows, f)
        raise exc

    monkeypatch.setattr(flagtable, "put_flag", put_then_fail)


def _interrupt_when_listing(monkeypatch, exc):
    """``exc`` raised when FLAG_VERSION_LIST is written: the version table is complete, not yet listed."""
    def fail(*a, **kw):
        raise exc

    monkeypatch.setattr(flagversions, "_write_list", fail)            # into an existing directory
    monkeypatch.setattr(flagversions, "_write_list_in", fail, raising=False)   # with a new one


POINTS = {"mid-table": _interrupt_mid_table, "table complete, not listed": _interrupt_when_listing}
EXCS = {"Ctrl-C": KeyboardInterrupt, "casacore error": lambda: RuntimeError("casacore: table write failed")}


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("kind", list(EXCS))
def test_interrupted_first_save_leaves_no_directory(ms, monkeypatch, point, kind):
    """The first save interrupted before its version is complete and listed: no ``<ms>.flagversions``
    (the old code left it, empty), no temporary; FLAG unchanged; a re-run saves the version."""
    before = _flag(ms)
    POINTS[point](monkeypatch, EXCS[kind]())
    with pytest.raises((KeyboardInterrupt, RuntimeError)):
        flagversions.save(ms, task="akflag")
    assert not os.path.exists(flagversions.versions_dir(ms)), os.listdir(flagversions.versions_dir(ms))
    assert _temporaries(ms) == []
    assert flagversions.list_versions(ms) == []
    for a, b in zip(_flag(ms), before):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    assert flagversions.save(ms, task="akflag") == "akflag_1"        # a re-run finishes the job
    d = flagversions.versions_dir(ms)
    assert sorted(os.listdir(d)) == ["FLAG_VERSION_LIST", "flags.akflag_1"]
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1"]
    with table(os.path.join(d, "flags.akflag_1"), ack=False) as v:
        np.testing.assert_array_equal(v.getcol("FLAG_ROW"), before[1])


@pytest.mark.parametrize("point", list(POINTS))
def test_interrupted_save_keeps_the_existing_directory(ms, monkeypatch, point):
    """A save into an existing ``<ms>.flagversions`` interrupted: the directory, its list and its
    versions are exactly as before (the old code left ``flags.akflag_2`` there, complete but unlisted,
    when the interrupt came between its rename and the list)."""
    assert flagversions.save(ms, task="akflag") == "akflag_1"
    d = flagversions.versions_dir(ms)
    was = _tree(d)
    POINTS[point](monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        flagversions.save(ms, task="akflag")
    assert _tree(d) == was
    assert _temporaries(ms) == []
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1"]
    monkeypatch.undo()
    assert flagversions.save(ms, task="akflag") == "akflag_2"


def test_existing_empty_directory_is_never_removed(ms, monkeypatch):
    """An empty ``<ms>.flagversions`` that was there before (made by the user, or left by an older
    alakazam) stays when a save into it is interrupted: only what this run made is removed."""
    d = flagversions.versions_dir(ms)
    os.mkdir(d)
    _interrupt_mid_table(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        flagversions.save(ms, task="akflag")
    assert os.path.isdir(d) and os.listdir(d) == []
    assert _temporaries(ms) == []


def test_a_symlink_in_place_of_the_directory_is_never_replaced(ms, tmp_path):
    """``<ms>.flagversions`` a symlink to a directory elsewhere: the version goes there; a dangling one
    (its disk not mounted): the save fails and the symlink stays (the rename into place would have
    replaced it)."""
    d = flagversions.versions_dir(ms)
    elsewhere = tmp_path / "elsewhere"
    os.symlink(elsewhere, d)
    with pytest.raises(AlakazamError, match="is not a directory"):
        flagversions.save(ms, task="akflag")
    assert os.path.islink(d) and os.readlink(d) == str(elsewhere) and not elsewhere.exists()
    assert _temporaries(ms) == []
    elsewhere.mkdir()
    assert flagversions.save(ms, task="akflag") == "akflag_1"
    assert os.path.islink(d) and sorted(os.listdir(elsewhere)) == ["FLAG_VERSION_LIST", "flags.akflag_1"]


def test_failed_save_before_flag_writes_leaves_no_directory_nor_marker(ms, monkeypatch):
    """akapply / akflag's save-then-mark step (calibration/flagsafety.saved_then_marked) failing in the
    save: no directory, no in-progress marker; FLAG untouched."""
    _interrupt_mid_table(monkeypatch, OSError(5, "Input/output error"))
    with pytest.raises(OSError):
        with flagsafety.saved_then_marked(ms, lambda: flagversions.save(ms, task="akapply")):
            raise AssertionError("not reached: the save failed")
    assert not os.path.exists(flagversions.versions_dir(ms))
    assert flagsafety.interrupted(ms) == [] and _temporaries(ms) == []


@pytest.mark.parametrize("had", [False, True])
def test_undo_removes_the_directory_the_task_made(ms, had):
    """akshell's undo of an interrupted task that saved a flag version: FLAG put back and the version
    removed, and the directory too when the task made it (the old code left it empty); a directory
    that was there before stays, with its versions."""
    d = flagversions.versions_dir(ms)
    if had:
        flagversions.save(ms, task="akflag")
        was = _tree(d)
    before = _flag(ms)
    with pytest.raises(KeyboardInterrupt):
        with undo.transaction(ms=ms):
            flagversions.save(ms, task="akflag")
            with table(ms, readonly=False, ack=False) as t:
                t.putcol("FLAG_ROW", np.ones(t.nrows(), bool))
            raise KeyboardInterrupt
    for a, b in zip(_flag(ms), before):
        np.testing.assert_array_equal(a, b)
    if had:
        assert _tree(d) == was
    else:
        assert not os.path.exists(d)


def test_stale_stage_of_a_killed_process_is_removed(ms):
    """A kill -9 during the first save leaves its temporary directory beside the MS: the next save
    removes it when its process is gone, keeps it while the process runs."""
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        parent = os.path.dirname(ms)
        pre = f".tmp-v.ms.flagversions.{socket.gethostname()}."
        for pid in (dead.pid, live.pid):
            os.makedirs(os.path.join(parent, f"{pre}{pid}", f".tmp.x.{pid}.flags.akflag_1"))
        assert flagversions.save(ms, task="akflag") == "akflag_1"
        assert sorted(f for f in os.listdir(parent) if f.startswith(".tmp")) == [f"{pre}{live.pid}"]
    finally:
        live.kill()
        live.wait()


def test_directory_made_meanwhile_by_another_process(ms, monkeypatch):
    """Another process's first save publishes ``<ms>.flagversions`` while this one writes its own: this
    version joins that directory under the next free name; the other one's version is kept."""
    d = flagversions.versions_dir(ms)
    real = flagversions._publish

    def other_first(stage, dd):
        os.mkdir(d)
        shutil.copytree(os.path.join(stage, "flags.akflag_1"), os.path.join(d, "flags.akflag_1"))
        with open(os.path.join(d, "FLAG_VERSION_LIST"), "w") as fh:
            fh.write("akflag_1 : the other process\n")
        return real(stage, dd)

    monkeypatch.setattr(flagversions, "_publish", other_first)
    assert flagversions.save(ms, task="akflag", comment="this one") == "akflag_2"
    assert [(v["name"], v["comment"]) for v in flagversions.list_versions(ms)] == [
        ("akflag_1", "the other process"), ("akflag_2", "this one")]
    assert _temporaries(ms) == []


def test_cli_sigterm_during_the_first_save_leaves_nothing(ms, tmp_path):
    """``alakazam flagmanager --mode save`` (the CLI, ``python -m alakazam.cli``) sent SIGTERM while the
    version table is half written: exit 130, no ``<ms>.flagversions`` (the old code left it empty), no
    temporary; the same command then saves the version."""
    script = tmp_path / "cli_slow.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from alakazam.core import flagtable
        real = flagtable.put_flag
        def slow(t, rows, f):
            real(t, rows, f)
            print("writing", flush=True)
            time.sleep(60)
        flagtable.put_flag = slow
        from alakazam.cli import main
        sys.exit(main(sys.argv[1:]))
    """))
    env = dict(os.environ, PYTHONPATH=REPO, ALAKAZAM_NO_PROGRESS="1")
    args = ["flagmanager", "--vis", "v.ms", "--mode", "save"]
    p = subprocess.Popen([sys.executable, str(script), *args], cwd=str(tmp_path), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rc = signal_when_writing(p, signal.SIGTERM, timeout=60)
    assert rc == 130, p.stderr.read().decode()[-2000:]
    assert not os.path.exists(flagversions.versions_dir(ms))
    assert _temporaries(ms) == []
    r = subprocess.run([sys.executable, "-m", "alakazam.cli", *args], cwd=str(tmp_path), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["flagmanager_1"]


def _kill_between_rename_and_listing(ms):
    """A save in a child process killed -9 right after its version table was moved into place, before it
    was listed (signals.held cannot hold a SIGKILL)."""
    code = ("import os, signal, sys\n"
            "from alakazam.core import flagversions as fv\n"
            "fv._write_list = lambda ms, entries: os.kill(os.getpid(), signal.SIGKILL)\n"
            "fv.save(sys.argv[1], task='akflag')\n")
    p = subprocess.run([sys.executable, "-c", code, ms], env=dict(os.environ, PYTHONPATH=REPO),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, p.stderr


def test_kill_between_rename_and_listing_leaves_a_table_the_next_save_removes(ms):
    """Before: the unlisted table stayed for good (disk space; the next name skipped it).  Now its
    marker tells a later save that it was never listed, and the table goes; FLAG is as it was."""
    flag0 = _flag(ms)
    assert flagversions.save(ms, task="akflag") == "akflag_1"
    _kill_between_rename_and_listing(ms)
    d = flagversions.versions_dir(ms)
    assert os.path.isdir(os.path.join(d, "flags.akflag_2"))            # moved into place ...
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1"]      # ... not listed
    assert any(".installing.akflag_2" in f for f in os.listdir(d))
    for a, b in zip(_flag(ms), flag0):
        np.testing.assert_array_equal(a, b)
    # the next save removes the leftover first: the name is free again and nothing else is left
    assert flagversions.save(ms, task="akflag") == "akflag_2"
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1", "akflag_2"]
    assert not [f for f in os.listdir(d) if f.startswith(".tmp")]
    flagversions.restore(ms, "akflag_2")
    for a, b in zip(_flag(ms), flag0):
        np.testing.assert_array_equal(a, b)


def test_installing_marker_never_removes_a_listed_or_foreign_table(ms):
    """A marker of a dead process whose version was listed (a kill after the listing, before the marker
    went) loses only the marker; an unlisted table without a marker (CASA's, a user's) is never
    touched; a running process's marker and table stay."""
    import socket

    assert flagversions.save(ms, task="akflag") == "akflag_1"
    d = flagversions.versions_dir(ms)
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        shutil.copytree(os.path.join(d, "flags.akflag_1"), os.path.join(d, "flags.casa_made"))
        shutil.copytree(os.path.join(d, "flags.akflag_1"), os.path.join(d, "flags.inflight"))
        open(os.path.join(d, f".tmp.{host}.{dead.pid}.installing.akflag_1"), "w").close()
        live_marker = f".tmp.{host}.{live.pid}.installing.inflight"
        open(os.path.join(d, live_marker), "w").close()
        assert flagversions.save(ms, task="akflag") == "akflag_2"
        assert sorted(f for f in os.listdir(d) if f.startswith("flags.")) == \
            ["flags.akflag_1", "flags.akflag_2", "flags.casa_made", "flags.inflight"]
        assert [f for f in os.listdir(d) if f.startswith(".tmp")] == [live_marker]
        assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1", "akflag_2"]
    finally:
        live.kill()
        live.wait()


def test_a_failed_move_leaves_no_marker_that_removes_another_partys_table(ms):
    """The move of the version table into place fails when ``flags.<name>`` appears between the check
    and the rename (another party's table, here a non-empty directory: ENOTEMPTY).  Before: the save's
    installing marker stayed, and once its process was gone the next save took it for a kill after the
    move and removed that party's table (this save never made it).  Now the marker goes with the
    failure and the table stays."""
    assert flagversions.save(ms, task="akflag") == "akflag_1"
    d = flagversions.versions_dir(ms)
    code = ("import os, shutil, sys\n"
            "from alakazam.core import flagversions as fv\n"
            "d = fv.versions_dir(sys.argv[1])\n"
            "real = os.rename\n"
            "def rename(src, dst):\n"
            "    if os.path.basename(dst) == 'flags.akflag_2':\n"
            "        shutil.copytree(os.path.join(d, 'flags.akflag_1'), dst)\n"
            "        open(os.path.join(dst, 'THEIRS'), 'w').close()\n"
            "    return real(src, dst)\n"
            "os.rename = rename\n"
            "try:\n"
            "    fv.save(sys.argv[1], task='akflag')\n"
            "except OSError:\n"
            "    sys.exit(3)\n")
    p = subprocess.run([sys.executable, "-c", code, ms], env=dict(os.environ, PYTHONPATH=REPO),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr
    assert not [f for f in os.listdir(d) if f.startswith(".tmp")]
    flagversions.save(ms, task="akflag")
    assert os.path.exists(os.path.join(d, "flags.akflag_2", "THEIRS"))


def test_a_temporary_named_beyond_a_process_id_does_not_stop_saves(ms):
    """A ``.tmp.<host>.<number>.<...>`` entry whose number is no process id (beyond a C int: another
    tool's temporary named by a timestamp) made every save fail (OverflowError from os.kill); likewise
    beside the MS for the first save's directory.  Now such entries are not ours: left alone."""
    import socket

    host = socket.gethostname()
    parent = os.path.dirname(os.path.abspath(ms))
    stage = f".tmp-{os.path.basename(flagversions.versions_dir(ms))}.{host}.99999999999999999999"
    os.mkdir(os.path.join(parent, stage))
    assert flagversions.save(ms, task="akflag") == "akflag_1"
    d = flagversions.versions_dir(ms)
    other = f".tmp.{host}.1764644000123456789.x"
    open(os.path.join(d, other), "w").close()
    assert flagversions.save(ms, task="akflag") == "akflag_2"
    assert os.path.exists(os.path.join(d, other)) and os.path.isdir(os.path.join(parent, stage))
