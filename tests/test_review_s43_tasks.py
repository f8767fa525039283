"""Session 43's hostile review of the task layer: each test failed on the code before its fix."""

import io
import logging
import os
import sys

import pytest

from alakazam.errors import AlakazamError, ParameterError

sys.path.insert(0, os.path.dirname(__file__))
import small_flag_ms  # noqa: E402  (tests/small_flag_ms.py)

base_ms, ms = small_flag_ms.base_ms, small_flag_ms.ms      # its two fixtures (module MS, a copy per test)


def test_deleting_the_undo_of_an_interrupted_akflag_says_what_is_lost(ms, caplog):
    """akflagmanager(mode='delete') of the version an interrupted akflag saved -- the only way back to
    FLAG as it was -- removed it and its in-progress marker with nothing but Begin/End: every later
    warning about the half-written FLAG was gone too.  It now says so (and logs every delete)."""
    from alakazam.caltasks import akflag, akflagmanager
    from alakazam.calibration import flagsafety

    akflag(vis=ms, mode="manual", antenna="C00&C02")
    with open(flagsafety.marker_path(ms, "akflag_1"), "w") as fh:      # as an interrupt leaves it
        fh.write(f"{flagsafety._MARKER}; restore with: x\n")
    with caplog.at_level(logging.INFO, logger="alakazam"):
        akflagmanager(vis=ms, mode="delete", versionname="akflag_1")
    msgs = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(lv == logging.INFO and f"deleted flag version akflag_1 of {ms}" in m for lv, m in msgs)
    warn = [m for lv, m in msgs if lv == logging.WARNING and "deleted akflag_1" in m]
    assert len(warn) == 1
    assert "interrupted akflag that left FLAG partly changed" in warn[0]
    assert "no saved version holds it as it was before" in warn[0]
    assert not os.path.exists(flagsafety.marker_path(ms, "akflag_1"))


def test_deleting_a_version_no_run_depends_on_only_logs_it(ms, caplog):
    from alakazam.caltasks import akflag, akflagmanager

    akflag(vis=ms, mode="manual", antenna="C00&C02")
    with caplog.at_level(logging.INFO, logger="alakazam"):
        akflagmanager(vis=ms, mode="delete", versionname="akflag_1")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("deleted flag version akflag_1" in r.getMessage() for r in caplog.records)


def _shell(tmp_path):
    from alakazam.shell.akshell import ShellSession

    buf = io.StringIO()
    return ShellSession(out=buf, color=False, cwd=str(tmp_path)), buf


def test_akshell_go_ignores_a_subparameter_inp_hides(ms, tmp_path):
    """In akshell, save then list failed: `mode='save'; versionname='v'; go`, then `mode='list'; go` gave
    "versionname: 'v' is not used by mode='list'", a parameter `inp` did not show.  As in CASA's shell,
    a hidden subparameter takes its default in go; the variable is kept for when it is shown again."""
    sh, buf = _shell(tmp_path)
    try:
        for line in (f"vis = {ms!r}", "mode = 'save'", "versionname = 'before_x'", "go akflagmanager",
                     "mode = 'list'", "inp akflagmanager"):
            sh.handle(line)
        shown = buf.getvalue().split("# akflagmanager")[-1]
        assert "versionname" not in shown
        res = sh.go("akflagmanager")
        assert res is not None and [v["name"] for v in res["versions"]] == ["before_x"]
        assert "failed" not in buf.getvalue()
        sh.handle("mode = 'delete'")            # shown again: the variable is used again
        assert sh.current(sh._task("akflagmanager"))["versionname"] == "before_x"
        assert sh.go("akflagmanager") == {"deleted": "before_x"}
    finally:
        sh.close()


def test_akshell_hidden_quackinterval_does_not_block_a_manual_flag(ms, tmp_path):
    sh, buf = _shell(tmp_path)
    try:
        for line in ("default akflag", f"vis = {ms!r}", "mode = 'quack'", "quackinterval = -5",
                     "mode = 'manual'", "antenna = 'C03'"):
            sh.handle(line)
        assert sh.go("akflag") is not None, buf.getvalue()
        assert "quackinterval" not in buf.getvalue()
        sh.handle("mode = 'quack'")             # shown again: its bad value is said again
        assert sh.go("akflag") is None
        assert "quackinterval" in buf.getvalue()
    finally:
        sh.close()


def test_akshell_notes_wait_for_a_task_and_skip_other_tasks_parameters(tmp_path):
    """A fresh akshell answered `mode = 'list'` with "not a parameter of akcal; did you mean smodel?":
    no task had been chosen (the notes follow inp / default), and mode is akflag's parameter."""
    sh, buf = _shell(tmp_path)
    try:
        sh.handle("mode = 'list'")
        sh.handle("refnat = 'C00'")
        assert "note:" not in buf.getvalue()
        sh.handle("inp akcal")
        sh.handle("mode = 'list'")              # akflag's / akflagmanager's parameter: no note
        assert "note: mode" not in buf.getvalue()
        sh.handle("refnat = 'C00'")             # still noted after inp
        assert "note: refnat: not a parameter of akcal; did you mean refant?" in buf.getvalue()
    finally:
        sh.close()


def test_akflag_reports_a_count_mismatch_with_the_other_preapply_errors(ms, tmp_path):
    """akflag reported only "gainfield: has 1 entries but gainjones has 2" and hid interp's bad value,
    the unknown key and 'pinned' (akapply lists them together)."""
    from alakazam.caltasks import akflag

    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="clip", clipminmax=[0, 5], gaintable=[str(tmp_path / "nope.h5")],
               gainjones=["K0", "G9"], interp=["linear", "bogus"], gainfield=["pinned"])
    text = str(e.value)
    assert "gainfield: has 1 entries but gainjones has 2" in text
    assert "'bogus' is not allowed" in text
    assert "'pinned' is not supported by akflag" in text
    assert "does not exist" in text


def test_outputs_are_never_written_into_a_table_directory(ms, tmp_path):
    """akplot(outdir=<the MS>) and akexport(casatable='<ms>/G1.tb') wrote PNGs and a caltable into the
    Measurement Set's directory; a solution table there too.  Refused, before anything runs."""
    from alakazam.core import outputs
    from alakazam.plots import outdir_errors

    assert outputs.table_around(ms) == os.path.realpath(ms)
    assert outputs.table_around(os.path.join(ms, "plots", "deeper")) == os.path.realpath(ms)
    assert outputs.table_around(os.path.join(ms, "ANTENNA")) == os.path.realpath(os.path.join(ms, "ANTENNA"))
    fv = ms + ".flagversions"
    os.makedirs(fv, exist_ok=True)
    assert outputs.table_around(os.path.join(fv, "x")) == os.path.realpath(fv)
    assert outputs.table_around(str(tmp_path / "plots")) is None

    for out in (ms, os.path.join(ms, "plots")):
        err = outdir_errors(out)["outdir"][0]
        assert "lies inside the CASA table" in err and os.path.realpath(ms) in err
    assert outdir_errors(str(tmp_path / "plots")) == {}
    with pytest.raises(AlakazamError, match="inside the CASA table"):
        outputs.check_output_file(os.path.join(ms, "cal.h5"), "output")
    outputs.check_output_file(str(tmp_path / "cal.h5"), "output")
    before = sorted(os.listdir(ms))
    from alakazam.caltasks import akexport

    with pytest.raises(ParameterError) as e:
        akexport(caltable=str(tmp_path / "none.h5"), jones="G1", casatable=os.path.join(ms, "G1.tb"))
    assert "casatable" in str(e.value) and "inside the CASA table" in str(e.value)
    assert sorted(os.listdir(ms)) == before
