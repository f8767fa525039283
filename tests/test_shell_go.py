"""akshell `go`: casashell command forms, logging (terminal + akshell.log), Ctrl-C with the MS and the
solution table restored and every parameter kept."""

import io
import os
import shutil

import numpy as np
import pytest
from casacore.tables import table, taql

from alakazam.shell.akshell import ShellSession


def _col_by_ddid(ms, col):
    out = {}
    with table(ms, ack=False) as t:  # noqa: F841 -- $t in TaQL
        if col not in t.colnames():
            return None
        for d in np.unique(t.getcol("DATA_DESC_ID")):
            q = taql(f"SELECT {col} FROM $t WHERE DATA_DESC_ID=={d}")
            out[int(d)] = q.getcol(col)
            q.close()
    return out


def _same_cols(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.fixture
def session(sim_linear, tmp_path, monkeypatch):
    ms0, _ = sim_linear
    ms = str(tmp_path / "sim.ms")
    shutil.copytree(ms0, ms)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    sh = ShellSession(out=out, color=False, cwd=str(tmp_path), logfile="akshell.log")
    sh.text = lambda: (out.getvalue(), out.truncate(0), out.seek(0))[0]
    for line in (f"vis = {ms!r}", f"caltable = {str(tmp_path / 'cal.h5')!r}", "field = '3C286'",
                 "jones = ['K', 'G']", "solint = ['scan', 'inf']", "refant = 'C00'"):
        sh.handle(line)
    yield sh, ms, tmp_path
    sh.close()


def test_command_forms_and_go_log(session):
    sh, ms, tmp = session
    sh.handle("saveinputs akcal")                    # raised AttributeError before
    assert "saved akcal inputs" in sh.text() and (tmp / "akcal.saved").exists()   # CASA's file
    assert not (tmp / "akcal.last").exists()
    sh.handle("tput akcal")
    assert (tmp / "akcal.last").exists()
    sh.handle("default akcal")
    assert "jones" not in sh.ns
    sh.handle("tget akcal")
    assert sh.ns["jones"] == ["K", "G"] and "restored akcal" in sh.text()
    sh.handle("inp akcal")
    assert sh.text().startswith("# akcal --")
    sh.handle("saveinputs akcal 'mine.last'")
    assert (tmp / "mine.last").exists()
    sh.handle("go akcal")
    text = sh.text()
    # what `alakazam run` shows: Begin/End, the memory plan, one summary line per solved term
    assert "##### Begin Task: akcal #####" in text and "##### End Task: akcal #####" in text
    assert "K0: " in text and "G0: " in text and "solution groups" in text and "flagged" in text
    log = (tmp / "akshell.log").read_text()
    assert "Begin Task: akcal" in log and "G0: " in log and "\tINFO\t" in log
    sh.handle("go akapply")
    text = sh.text()
    assert "failed" in text                           # gaintable missing: the task's own error


def test_ctrl_c_during_go_akcal_restores_the_table(session, monkeypatch):
    sh, ms, tmp = session
    sh.handle("jones = ['K']")
    sh.handle("solint = 'scan'")
    sh.handle("go akcal")
    assert (tmp / "cal.h5").exists()
    before = (tmp / "cal.h5").read_bytes()
    sh.handle("jones = ['K', 'G']")
    sh.handle("solint = ['inf', '60s']")
    sh.text()
    from alakazam import flow
    real, calls = flow._solve_field_spw, []

    def solve_then_interrupt(ctx, step, *a, **k):
        calls.append(step.key)
        if step.key == "G0":                      # K0 is solved already (a solve block writes at its end)
            raise KeyboardInterrupt
        return real(ctx, step, *a, **k)
    monkeypatch.setattr(flow, "_solve_field_spw", solve_then_interrupt)
    assert sh.handle("go") is None                # returns to the prompt
    text = sh.text()
    assert calls[-1] == "G0" and "K0" in calls and "akcal interrupted" in text
    assert (tmp / "cal.h5").read_bytes() == before            # the K0 of before, no G0
    assert not [f for f in os.listdir(tmp) if f.startswith(".tmp-")]
    assert sh.ns["jones"] == ["K", "G"] and sh.ns["solint"] == ["inf", "60s"] and sh.ns["refant"] == "C00"
    # interrupting a new table removes it; a Python-style call is covered too
    calls.clear()
    sh.handle(f"akcal(vis={ms!r}, caltable={str(tmp / 'new.h5')!r}, field='3C286', jones=['K', 'G'])")
    assert "akcal interrupted" in sh.text() and not (tmp / "new.h5").exists()


@pytest.mark.parametrize("existing", [True, False])
def test_ctrl_c_during_go_akapply_restores_the_ms(session, monkeypatch, existing):
    sh, ms, tmp = session
    sh.handle("go akcal")
    sh.handle("gaintable = [caltable, caltable]")
    sh.handle("field = ''")
    sh.handle("jones = ['K0', 'G0']")
    sh.handle("applymode = 'calflag'")
    if existing:
        sh.handle("go akapply")
        assert "End Task: akapply" in sh.text()
        with table(ms, readonly=False, ack=False) as t:  # noqa: F841 -- $t in TaQL
            for d in (0, 1):
                q = taql(f"SELECT CORRECTED_DATA FROM $t WHERE DATA_DESC_ID=={d}")
                q.putcol("CORRECTED_DATA", q.getcol("CORRECTED_DATA") * 2)
                q.close()
    corr0, flag0 = _col_by_ddid(ms, "CORRECTED_DATA"), _col_by_ddid(ms, "FLAG")
    fv = ms + ".flagversions"
    fv0 = sorted(os.listdir(fv)) if os.path.isdir(fv) else []
    from alakazam.core import ms_io
    real, calls = ms_io.write_column, []

    def write_then_interrupt(ms_, name, rownr, values, chans=None):
        calls.append(name)
        real(ms_, name, rownr, values, chans)
        if len(calls) == 3:                         # CORRECTED_DATA and FLAG of one field written
            raise KeyboardInterrupt
    monkeypatch.setattr(ms_io, "write_column", write_then_interrupt)
    sh.text()
    sh.handle("go akapply")
    out = sh.text()
    assert "akapply interrupted" in out and len(calls) == 3 and "FLAG" in calls
    assert "restore it with" not in out and "undo: FLAG put back as it was before the task" in out
    if existing:
        _same_cols(_col_by_ddid(ms, "CORRECTED_DATA"), corr0)
    else:
        assert corr0 is None and _col_by_ddid(ms, "CORRECTED_DATA") is None     # created, then removed
    _same_cols(_col_by_ddid(ms, "FLAG"), flag0)
    assert (sorted(os.listdir(fv)) if os.path.isdir(fv) else []) == fv0
    assert sh.ns["applymode"] == "calflag" and sh.ns["jones"] == ["K0", "G0"]


def test_ctrl_c_during_go_akflag_restores_flag_and_keeps_nothing(session, monkeypatch):
    """akflag writes FLAG through one read-write table (not journaled row by row): Ctrl-C in the shell
    puts FLAG back from the version the task saved, then removes that version."""
    sh, ms, tmp = session
    flag0 = _col_by_ddid(ms, "FLAG")
    fv = ms + ".flagversions"
    fv0 = sorted(os.listdir(fv)) if os.path.isdir(fv) else []
    from alakazam.flagging import engine
    real, calls = engine._put_flags, []

    def put_then_interrupt(t, rows, flag):
        calls.append(len(rows))
        real(t, rows, flag)
        raise KeyboardInterrupt                    # after the first unit's FLAG is written
    monkeypatch.setattr(engine, "_put_flags", put_then_interrupt)
    sh.text()
    sh.handle(f"akflag(vis={ms!r}, mode='manual', field='3C286')")
    out = sh.text()
    assert "akflag interrupted" in out and calls
    # no stale restore command for a version the undo has used and removed: the log says what it did
    assert "restore it with" not in out and "undo: FLAG put back as it was before the task" in out
    _same_cols(_col_by_ddid(ms, "FLAG"), flag0)
    assert (sorted(os.listdir(fv)) if os.path.isdir(fv) else []) == fv0


def _akshell_command():
    """The installed console script, else the module form (never a skip)."""
    import sys

    exe = shutil.which("akshell")
    if exe:
        return exe
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return f"PYTHONPATH={root} {sys.executable} -m alakazam.shell.akshell"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_go_log_and_ctrl_c_in_a_real_terminal(sim_linear, tmp_path):
    import subprocess
    import time

    ms, _ = sim_linear
    sess = f"akgo{os.getpid() % 100000}"
    env = f"AKSHELL_HISTORY={tmp_path / 'hist'}"
    subprocess.run(["tmux", "new-session", "-d", "-s", sess, "-x", "200", "-y", "60",
                    f"cd {tmp_path} && {env} {_akshell_command()}"], check=True)

    def screen():
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", sess, "-S", "-200"], capture_output=True,
                              text=True).stdout

    def send(*keys):
        subprocess.run(["tmux", "send-keys", "-t", sess, *keys], check=True)

    def wait_for(text, timeout=60.0):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if text in screen():
                return True
            time.sleep(0.2)
        return False

    try:
        assert wait_for("akshell>"), screen()
        # a long solve: per-channel G every 60 s on every field with the (slow) scipy backend
        for line in (f"vis = {ms!r}", "caltable = 'cal.h5'", "jones = ['G']", "solint = '60s'",
                     "freqint = '1MHz'", "solver = 'scipy'", "refant = 'C00'"):
            send(line, "Enter")
        send("saveinputs akcal", "Enter")
        assert wait_for("saved akcal inputs"), screen()
        send("go akcal", "Enter")
        assert wait_for("Begin Task: akcal"), screen()
        assert wait_for("solution groups (field by field)", 120), screen()    # the progress bar
        time.sleep(1.0)
        send("C-c")
        assert wait_for("akcal interrupted", 60), screen()
        send("print(solver, solint, freqint)", "Enter")
        assert wait_for("scipy 60s 1MHz"), screen()
        assert not (tmp_path / "cal.h5").exists()
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
        send("exit", "Enter")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", sess], capture_output=True)
    log = (tmp_path / "akshell.log").read_text()
    assert "Begin Task: akcal" in log
    import re
    assert re.search(r"^solver += 'scipy'$", (tmp_path / "akcal.last").read_text(), re.M)


def test_ctrl_c_during_go_akapply_of_several_mss_restores_flag_of_each(session, monkeypatch):
    """akapply's vis may be a list of MSs (multims): a Ctrl-C puts FLAG of every one back and removes the
    flag versions the task saved, as it says (the undo used to look for "['a', 'b'].flagversions")."""
    sh, ms, tmp = session
    ms2 = str(tmp / "sim2.ms")
    shutil.copytree(ms, ms2)
    sh.handle("go akcal")
    for line in ("gaintable = [caltable, caltable]", "field = ''", "jones = ['K0', 'G0']",
                 "applymode = 'calflag'", f"vis = [{ms!r}, {ms2!r}]"):
        sh.handle(line)
    flag0 = {m: _col_by_ddid(m, "FLAG") for m in (ms, ms2)}
    fv0 = {m: sorted(os.listdir(m + ".flagversions")) if os.path.isdir(m + ".flagversions") else []
           for m in (ms, ms2)}
    from alakazam.core import ms_io
    real, calls = ms_io.write_column, []

    def write_then_interrupt(ms_, name, rownr, values, chans=None):
        calls.append((os.path.basename(str(ms_)), name))
        real(ms_, name, rownr, values, chans)
        if ("sim2.ms", "FLAG") in calls:            # FLAG of both MSs written
            raise KeyboardInterrupt
    monkeypatch.setattr(ms_io, "write_column", write_then_interrupt)
    sh.text()
    sh.handle("go akapply")
    out = sh.text()
    assert "akapply interrupted" in out and ("sim.ms", "FLAG") in calls
    assert "restore it with" not in out and out.count("undo: FLAG put back as it was before the task") == 2
    for m in (ms, ms2):
        _same_cols(_col_by_ddid(m, "FLAG"), flag0[m])
        fv = m + ".flagversions"
        assert (sorted(os.listdir(fv)) if os.path.isdir(fv) else []) == fv0[m]
