"""akshell command handling without a terminal (no engine needed): safe tget, Python-style calls,
help, completion, error survival."""

import io

import os

import pytest

from alakazam.caltasks import TASKS
from alakazam.shell.akshell import ShellSession


@pytest.fixture
def sh(tmp_path):
    out = io.StringIO()
    s = ShellSession(out=out, color=False, cwd=str(tmp_path))
    s.text = lambda: (out.getvalue(), out.truncate(0), out.seek(0))[0]
    return s


def test_tget_is_safe_and_task_scoped(sh, tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "akcal.last").write_text(
        "maxiter = 12\n"
        f"solver = __import__('os').system('touch {marker}')\n"
        "ref = 'not an akcal parameter'\n"
        "solint = ['scan', '2min']\n"
        "#akcal( maxiter=12 )\n")
    sh.handle("tget akcal")
    text = sh.text()
    assert not marker.exists()                      # never executed
    assert sh.ns["maxiter"] == 12 and sh.ns["solint"] == ["scan", "2min"]
    assert "solver" not in sh.ns and "ref" not in sh.ns
    assert "cannot read solver" in text


def test_tget_missing_file_changes_nothing(sh):
    # vis/field are shared with akapply: a missing akcal.last must not wipe them (only say so)
    sh.handle("maxiter = 3")
    sh.handle("vis = 'x.ms'")
    sh.handle("tget akcal")
    assert sh.ns["maxiter"] == 3 and sh.ns["vis"] == "x.ms"
    assert "no akcal.last" in sh.text()


def test_akcal_saved_used_when_no_last(sh, tmp_path):
    (tmp_path / "akcal.saved").write_text("tol = 1e-06\n")
    sh.handle("tget akcal")
    assert sh.ns["tol"] == 1e-06


def test_python_style_call_records_last_and_keeps_globals(sh, tmp_path):
    sh.handle("maxiter = 9")
    sh.handle(f"akcal(vis={str(tmp_path / 'nope.ms')!r}, maxiter=4)")
    text = sh.text()
    assert "nope.ms" in text and "must be a path that exists" in text   # the task's own error
    last = (tmp_path / "akcal.last").read_text()
    assert "maxiter" in last and " = 4" in last and "nope.ms" in last
    assert sh.ns["maxiter"] == 9
    # a later go uses the globals, not the Python call's arguments
    sh.handle("go akcal")
    assert "= 9" in (tmp_path / "akcal.last").read_text()


def test_inp_forms_and_header(sh):
    for line in ("inp akfluxscale", "inp(akfluxscale)", "inp('akfluxscale')"):
        sh.handle(line)
        text = sh.text()
        assert text.splitlines()[0].startswith("# akfluxscale -- ")
        assert "reference" in text and "fluxtable" in text
    sh.handle("inp")                                 # bare inp = last task
    assert sh.text().startswith("# akfluxscale -- ")
    sh.handle("inp nosuchtask")
    assert "unknown task 'nosuchtask'" in sh.text()


def test_inp_pads_names_and_quotes_strings(sh):
    sh.handle("inp akinfo")
    # (a description wider than the terminal continues on lines of its own: '   # ...')
    lines = [ln for ln in sh.text().splitlines()[1:] if not ln.lstrip().startswith("#")]
    eq = {ln.index("=") for ln in lines}
    assert len(eq) == 1                              # names padded to a common width
    assert any("caltable" in ln and "= ''" in ln for ln in lines)


def test_help_forms(sh):
    for line in ("help akapply", "akapply?", "help(akapply)"):
        sh.handle(line)
        text = sh.text()
        assert TASKS["akapply"].spec.short in text and "gainfield" in text


def test_python_prompt_and_error_survival(sh):
    sh.handle("x = [1, 2, 3]")
    sh.handle("sum(x)")
    assert sh.text().strip() == "6"
    sh.handle("1/0")
    assert "ZeroDivisionError" in sh.text()
    sh.handle("akcal(bogus=1)")
    assert "bogus" in sh.text()
    sh.handle("x")
    assert "[1, 2, 3]" in sh.text()                  # still alive, namespace kept


def test_completion_words_cover_tasks_and_parameters(sh):
    words = sh.completion_words()
    for t in TASKS.values():
        assert t.name in words
        assert set(t.spec.names) <= set(words)
    assert {"inp", "go", "tget", "tput", "saveinputs", "default"} <= set(words)


@pytest.mark.skipif(__import__("shutil").which("tmux") is None, reason="tmux not installed")
def test_tab_completion_and_history_in_a_real_terminal(tmp_path):
    import shutil
    import subprocess
    import time

    exe = shutil.which("akshell")
    if exe is None:     # not installed: the same shell as a module, from this working tree
        import shlex
        import sys
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        exe = f"PYTHONPATH={shlex.quote(root)} {shlex.quote(sys.executable)} -m alakazam.shell.akshell"
    sess = f"akc{int(time.time() * 1000) % 100000}"
    hist = tmp_path / "hist"
    subprocess.run(["tmux", "new-session", "-d", "-s", sess, "-x", "150", "-y", "50",
                    f"cd {tmp_path} && AKSHELL_HISTORY={hist} {exe}"], check=True)

    def screen():
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", sess], capture_output=True,
                              text=True).stdout

    def wait_for(s, n=100):
        for _ in range(n):
            if s in screen():
                return True
            time.sleep(0.2)
        return False

    try:
        assert wait_for("akshell>")
        # "akflu" + Tab completes to the only match, akfluxscale (akfl: akflag, akflagmanager too)
        subprocess.run(["tmux", "send-keys", "-t", sess, "inp akflu"], check=True)
        time.sleep(0.7)
        subprocess.run(["tmux", "send-keys", "-t", sess, "Tab"], check=True)
        assert wait_for("inp akfluxscale", 25), screen()
        subprocess.run(["tmux", "send-keys", "-t", sess, "Enter"], check=True)
        assert wait_for("# akfluxscale --"), screen()
        subprocess.run(["tmux", "send-keys", "-t", sess, "C-d"], check=True)
        for _ in range(50):                          # Ctrl-D ends the shell (and the tmux session)
            if subprocess.run(["tmux", "has-session", "-t", sess], capture_output=True).returncode:
                break
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", sess], capture_output=True)
    assert "inp akfluxscale" in hist.read_text()    # history kept across sessions


def test_statements_on_one_line_with_a_command(sh, monkeypatch):
    """README: ``mode='save'; versionname='v'; go akflagmanager``, then ``mode='list'; go``.  Typed as one
    line the first was a SyntaxError and the second did nothing (``go`` evaluated, not called): a line of
    ';'-separated statements with a command form runs each in turn; a ';' inside a string or brackets
    (spw='0:0~10;15~60') or a compound statement's body is not a separator; an error stops the rest."""
    from alakazam.shell import akshell

    assert akshell._statements("spw = '0:0~10;15~60'; go") == ["spw = '0:0~10;15~60'", "go"]
    assert akshell._statements("x = [1, 2]; y = (3; 4") == ["x = [1, 2]; y = (3; 4"]      # (no tokens)
    assert akshell._statements("for i in range(2): a = i; b = i") == ["for i in range(2): a = i; b = i"]
    calls = []
    monkeypatch.setattr(akshell.ShellSession, "go", lambda self, name=None: calls.append(
        (name, self.ns.get("mode"), self.ns.get("versionname"))))
    sh.handle("mode='save'; versionname='v'; go akflagmanager")
    sh.handle("mode = 'list'; go")
    assert calls == [("akflagmanager", "save", "v"), (None, "list", "v")]
    sh.handle("spw = '0:0~10;15~60'; inp akcal")
    assert sh.ns["spw"] == "0:0~10;15~60" and sh.text().startswith("# akcal -- ")
    sh.handle("mode = 1/0; go")                     # the error stops the line: go not run
    assert "ZeroDivisionError" in sh.text() and len(calls) == 2
    sh.handle("a = 1; b = 2")                       # plain Python stays one exec
    assert sh.ns["a"] == 1 and sh.ns["b"] == 2


def test_inp_shows_allowed_values(sh):
    """README: inp shows 'parameters, defaults, allowed values'; it showed no allowed values (solver's
    numba / ceres / jax / scipy were only in help and the YAML table)."""
    import re

    sh.handle("inp akcal")
    text = re.sub(r"\s*\n\s+# ", " ", sh.text())        # (a description wrapped to the terminal)
    line = next(ln for ln in text.splitlines() if ln.startswith("solver "))
    assert "(numba | ceres | jax | scipy)" in line


def test_a_parameter_after_default_names_its_default(sh):
    """After ``default akcal`` (which removes the shell's values; the task then uses its defaults) typing
    ``vis`` gave only Python's NameError, where CASA shows vis = ''."""
    sh.handle("vis = 'x.ms'")
    sh.handle("default akcal")
    sh.handle("vis")
    text = sh.text()
    assert "NameError" in text
    assert "note: vis is not set in the shell: akcal uses its default, vis = ''" in text
    sh.handle("nosuchname")
    assert "note:" not in sh.text()


def test_a_stopped_task_stops_its_line(sh, monkeypatch):
    """A hostile review of the ';' lines: Ctrl-C in ``go akcal; go akapply`` stopped akcal and then ran
    akapply (go catches the interrupt and the task's errors itself), a failed go did not stop the line,
    ``if(False): x=1; go`` ran go, ``go akflagmanager;`` was 'unknown task', and a comment after a command
    was 'too many words'."""
    from alakazam.shell import akshell

    assert akshell._statements("if(False): x=1; go akflagmanager") == ["if(False): x=1; go akflagmanager"]
    assert akshell._statements("go akflagmanager;") == ["go akflagmanager"]
    assert akshell._statements("x = 1; go akflagmanager  # list") == ["x = 1", "go akflagmanager"]
    ran = []

    def fake_run(task, params):
        ran.append(task.name)
        if task.name == "akcal":
            raise outcome[0]
        return {}

    monkeypatch.setattr(akshell, "_run_interruptible", fake_run)
    for exc, said in ((KeyboardInterrupt(), "akcal interrupted (Ctrl-C)"),
                      (akshell.AlakazamError("vis: bad"), "akcal failed: vis: bad")):
        outcome = [exc]
        ran.clear()
        sh.handle("go akcal; go akflagmanager; y = 2")
        text = sh.text()
        assert ran == ["akcal"] and "y" not in sh.ns
        assert said in text and "not run (the task above stopped): go akflagmanager; y = 2" in text
    ran.clear()
    sh.handle("go akflagmanager;")
    sh.handle("z = 1; go akflagmanager  # list")
    sh.handle("if(False): w=1; go akflagmanager")
    assert ran == ["akflagmanager", "akflagmanager"] and sh.ns["z"] == 1 and "w" not in sh.ns


def test_tput_and_saveinputs_never_overwrite_a_file_that_is_not_an_inputs_file(sh, tmp_path):
    """A review: ``tput akcal cal.h5`` replaced a 477 kB solution table with 1.8 kB of text.  An existing
    file is replaced only when it is an inputs file (tput / saveinputs / go write those)."""
    import h5py

    with h5py.File(tmp_path / "cal.h5", "w") as f:
        f["K0/x"] = [1.0, 2.0]
    before = (tmp_path / "cal.h5").read_bytes()
    (tmp_path / "notes.txt").write_text("my notes\n")
    sh.handle("maxiter = 7")
    sh.handle("tput akcal cal.h5")
    sh.handle("saveinputs akcal notes.txt")
    text = sh.text()
    assert (tmp_path / "cal.h5").read_bytes() == before
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"
    assert text.count("is not an inputs file") == 2 and "nothing saved" in text
    # an inputs file (its own or another task's) is replaced, a new name written
    sh.handle("tput akcal mine.last")
    sh.handle("maxiter = 8")
    sh.handle("tput akcal mine.last")
    assert "maxiter=8," in (tmp_path / "mine.last").read_text()
    assert not list(tmp_path.glob("*.tmp"))


def test_go_does_not_overwrite_a_user_file_named_like_the_last_file(sh, tmp_path):
    (tmp_path / "akcal.last").write_bytes(b"\x89HDF\r\n\x1a\n binary")
    sh.handle(f"vis = {str(tmp_path / 'nope.ms')!r}")
    sh.handle("go akcal")
    text = sh.text()
    assert (tmp_path / "akcal.last").read_bytes() == b"\x89HDF\r\n\x1a\n binary"
    assert "inputs not saved" in text and "nope.ms" in text      # the task still ran (its own error)


def test_tget_refuses_another_tasks_inputs_file(sh, tmp_path):
    sh.handle("maxiter = 5")
    sh.handle("tput akcal")
    sh.handle("vis = 'other.ms'")
    sh.handle("tget akapply akcal.last")
    text = sh.text()
    assert "holds akcal inputs, not akapply's" in text
    assert sh.ns["vis"] == "other.ms"


def test_file_only_records_skip_the_terminal_handler(tmp_path):
    """akshell's terminal handler skips a record logged file_only (akflag's summary, printed as tables
    already: review 53e saw it twice in akshell); its log file keeps it."""
    import logging

    from alakazam.shell import akshell

    stream = io.StringIO()
    log = tmp_path / "sh.log"
    handlers = akshell.setup_logging(str(log), stream=stream)
    try:
        lg = logging.getLogger("alakazam.flag")
        lg.info("akflag summary: on the terminal already", extra={"file_only": True})
        lg.info("an ordinary line")
    finally:
        for h in handlers:
            logging.getLogger().removeHandler(h)
            h.close()
    assert "an ordinary line" in stream.getvalue() and "terminal already" not in stream.getvalue()
    assert "terminal already" in log.read_text()


def test_casashell_habits_cd_pwd_ls_and_shell_escape(sh, tmp_path, monkeypatch):
    """Review 54b: casashell (IPython) users type ``cd ..``, ``pwd``, ``ls`` and ``!ls``; akshell gave a bare
    SyntaxError / NameError.  They work as there: cd changes the working directory (where tasks resolve
    relative paths), a variable of that name stays Python."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.ms").mkdir()
    sh.handle("cd sub")
    assert os.getcwd() == str(tmp_path / "sub") and sh.cwd == str(tmp_path / "sub")
    assert sh.text().strip() == str(tmp_path / "sub")
    sh.handle("pwd")
    assert sh.text().strip() == str(tmp_path / "sub")
    sh.handle("ls")
    assert "x.ms" in sh.text()
    sh.handle("!echo hello; exit 3")
    out = sh.text()
    assert "hello" in out and "exit status 3" in out
    sh.handle("cd nowhere")
    assert "is not a directory" in sh.text() and os.getcwd() == str(tmp_path / "sub")
    sh.handle("cd ..")
    assert os.getcwd() == str(tmp_path)
    sh.text()
    sh.handle("pwd = 5")                # a variable of that name: Python from then on
    sh.handle("pwd + 1")
    assert sh.text().strip() == "6"


def test_tget_of_a_missing_explicit_file_names_it(sh, tmp_path):
    sh.handle("tget akfluxscale /nonexist/x.last")
    out = sh.text()
    assert "tget: no file /nonexist/x.last; parameters unchanged" in out and " in ." not in out


def test_cd_in_a_line_of_statements_and_a_shell_line_whole(sh, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    sh.handle("cd sub; pwd")
    assert sh.text().split() == [str(tmp_path / "sub")] * 2
    sh.handle("!echo a; echo b")            # the whole line is the shell's
    assert sh.text().split() == ["a", "b"]


def test_cd_dash_and_environment_variables(sh, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    monkeypatch.setenv("AKDIR", str(tmp_path / "a"))
    sh.handle("cd -")
    assert "no previous directory" in sh.text()
    sh.handle("cd $AKDIR")
    assert os.getcwd() == str(tmp_path / "a")
    sh.handle("cd -")
    assert os.getcwd() == str(tmp_path)


def test_session_variables_expand_in_cd_and_shell_lines(sh, tmp_path, monkeypatch):
    """Review 54g: IPython (casashell) expands $name of a Python variable in `cd` and `!` lines."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").mkdir()
    sh.handle('d = "f"')
    sh.handle("cd $d")
    assert os.getcwd() == str(tmp_path / "f")
    sh.text()
    sh.handle('word = "hello"')
    sh.handle("!echo ${word} $HOME_NOT_SET_54")
    assert sh.text().strip() == "hello"


def test_dollar_dollar_is_a_literal_dollar(sh, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sh.handle('d = "sub"')
    sh.handle("!echo 'C=$$d' C=$d")            # $$: a $ for the shell (quoted here: printed as is)
    assert sh.text().strip() == "C=$d C=sub"
