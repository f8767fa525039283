"""Keywords a task does not have (caltasks/casa_hints.py).

* A call with CASA's name for a parameter (gaintype) or a typo (refnat) is an UnknownParameterError --
  a ParameterError and a TypeError -- naming what to use instead, reported with the call's other bad
  parameters, before anything runs.
* akshell: after ``default akcal``, setting ``gaintype`` prints a note (``go`` would not see it); a
  variable of the user's own (``myvis``) prints nothing.
"""

import io
import os

import pytest

from alakazam.caltasks import akapply, akcal
from alakazam.errors import ParameterError, UnknownParameterError


def _akshell(tmp_path, lines):
    """What a fresh akshell prints for ``lines`` typed one after the other."""
    from alakazam.shell.akshell import ShellSession

    buf = io.StringIO()
    sh = ShellSession(out=buf, color=False, cwd=str(tmp_path))
    try:
        for line in lines:
            sh.handle(line)
    finally:
        sh.close()
    return buf.getvalue()


def test_unknown_keywords_reported_with_the_other_bad_parameters(sim_linear, tmp_path):
    ms, _ = sim_linear
    out = str(tmp_path / "x.h5")
    with pytest.raises(UnknownParameterError) as e:
        akcal(vis=ms, caltable=out, gaintype="K", refnat="C00", refant="Z99", bogus=1)
    err = e.value
    assert isinstance(err, ParameterError) and isinstance(err, TypeError)
    text = str(err)
    assert "gaintype: not a parameter of akcal; CASA gaincal's gaintype is akcal's jones" in text
    assert "refnat: not a parameter of akcal; did you mean refant?" in text
    assert "bogus: not a parameter of akcal (help(akcal) lists them)" in text
    assert "'Z99' is not an antenna" in text                 # the call's other bad parameter, too
    assert not os.path.exists(out)
    with pytest.raises(TypeError, match="flagbackup: not a parameter of akapply; not needed"):
        akapply(vis=ms, gaintable=[out], jones=["G0"], flagbackup=True)


def test_akshell_notes_casa_names_and_typos_only(tmp_path):
    text = _akshell(tmp_path, ["default akcal", "gaintype = 'K'", "refnat = 'C00'", "myvis = 'a.ms'",
                               "jones = ['K']"])
    assert "note: gaintype: not a parameter of akcal; CASA gaincal's gaintype is akcal's jones" in text
    assert "note: refnat: not a parameter of akcal; did you mean refant?" in text
    assert "myvis" not in text and "jones:" not in text


def test_casa_gainfield_value_gets_the_pinned_hint(sim_linear, tmp_path):
    ms, _ = sim_linear
    with pytest.raises(ParameterError) as e:
        akapply(vis=ms, gaintable=[str(tmp_path / "x.h5")], jones=["G0"], gainfield=["3C147"])
    assert ("gainfield: unallowed value '3C147' (allowed: nearest_time, nearest_sky, pinned); CASA's "
            "gainfield names the table's field to use; here that is gainfield='pinned' with solutionfield "
            "set to the field name(s)") in str(e.value)


def test_yaml_names_get_the_task_name(sim_linear, tmp_path):
    """A YAML file's name for a parameter (apply_parang, ref_ant, time_interval) given to the task, in a
    call or in akshell, names the task's own (parang, refant, solint): a CASA user who read the YAML
    examples would otherwise set a variable ``go`` never sees (apply_parang was silently ignored)."""
    ms, _ = sim_linear
    with pytest.raises(UnknownParameterError) as e:
        akcal(vis=ms, caltable=str(tmp_path / "x.h5"), jones=["G"], apply_parang=True, time_interval="inf")
    text = str(e.value)
    assert ("apply_parang: not a parameter of akcal; apply_parang is the name in a YAML file "
            "(alakazam run): the task's is parang") in text
    assert "time_interval: not a parameter of akcal; time_interval is the name in a YAML file" in text
    assert "the task's is solint" in text
    out = _akshell(tmp_path, ["default akcal", "apply_parang = True", "ref_ant = 'C00'"])
    assert "note: apply_parang: not a parameter of akcal; apply_parang is the name in a YAML file" in out
    assert "the task's is parang" in out
    assert "note: ref_ant: not a parameter of akcal; ref_ant is the name in a YAML file" in out


def test_akshell_notes_casa_parameters_the_task_lacks_even_when_another_task_has_them(tmp_path):
    """CASA fluxscale's antenna / timerange / scan / append, flagdata's tbuff / channelavg and gaincal's
    corrcomb / splinetime set after ``default`` of the task that lacks them get a note (they are other
    tasks' parameters, so the rule that lets a user set akflag's mode while akcal is current skipped
    them: the fluxscale ran on every antenna and time without a word; review, session 46)."""
    text = _akshell(tmp_path, [
        "default akfluxscale", "antenna = '!C02'", "timerange = '07:41:00~07:51:00'", "scan = '2'",
        "append = True", "default akflag", "tbuff = 0.5", "channelavg = True", "default akcal",
        "corrcomb = 'all'", "splinetime = 3600",
        "mode = 'list'"])           # akflag's parameter, no CASA gaincal meaning: the user's own
    for name in ("antenna", "timerange", "scan", "append"):
        assert f"note: {name}: not a parameter of akfluxscale; " in text, name
    assert "note: tbuff: not a parameter of akflag; " in text
    assert "note: channelavg: not a parameter of akflag; " in text
    assert "note: corrcomb: not a parameter of akcal; one gain for both polarisations is jones='T'" in text
    assert "note: splinetime: not a parameter of akcal; " in text
    assert "note: mode" not in text
