"""CASA-style tasks from XML, the akshell inp/go shell, and the same calibration three ways."""

import inspect
import io
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import os

import pytest

from alakazam.caltasks import TASKS, akcal
from alakazam.errors import ParameterError
from alakazam.shell.akshell import ShellSession
from alakazam.tasks_xml import xml_path

NS = {"c": "http://casa.nrao.edu/schema/psetTypes.html"}


@pytest.mark.parametrize("name", list(TASKS))
def test_signature_matches_xml(name):
    root = ET.parse(xml_path(name)).getroot()
    xml_names = [p.get("name") for p in root.iter(f"{{{NS['c']}}}param")]
    sig = inspect.signature(TASKS[name])
    assert list(sig.parameters) == xml_names
    for p in TASKS[name].spec.params:
        assert sig.parameters[p.name].default == p.default
    assert TASKS[name].spec.short in TASKS[name].__doc__


def test_validation_reports_every_bad_parameter(tmp_path, sim_linear):
    with pytest.raises(ParameterError) as e:
        akcal(vis=str(tmp_path / "nope.ms"), caltable="c.h5", maxiter=1.5, solver="fortran", parang=1,
              tol=-1.0)
    errs = e.value.errors
    assert "must be a path that exists" in errs["vis"][0] and "nope.ms" in errs["vis"][0]
    assert "cInt" in errs["maxiter"][0] and "unallowed value 'fortran'" in errs["solver"][0]
    assert "cBool" in errs["parang"][0] and "must be > 0, got -1.0" in errs["tol"][0]
    with pytest.raises(TypeError, match="bogus"):
        akcal(vis="x", bogus=1)
    # a scalar for a *Vec parameter becomes a one-element list; double accepts int
    params = akcal.validate(akcal.bind(vis=sim_linear[0], jones="K", rfi_threshold=4))   # (vis: an MS)
    assert params["jones"] == ["K"] and params["rfi_threshold"] == 4.0


def test_engine_errors_name_the_task_parameters(sim_linear, tmp_path):
    ms, truth = sim_linear
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=str(tmp_path / "c.h5"), jones=["K", "G"], solint=["scan", "5parsecs"])
    assert "akcal.solint[1]" in e.value.errors
    assert not (tmp_path / "c.h5").exists()


#: unique per solve (the term's identity and those of its pre-applied terms: calibration/chainid.py)
_PER_SOLVE = ("term_id", "term_written", "preapply_ids", "preapply_written")


def _h5_contents(path):
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]
        out[name + "@attrs"] = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in obj.attrs.items()
                                if k != "write_id"      # unique per write (alakazam.io.hdf5.write_terms)
                                and k not in _PER_SOLVE}
        if isinstance(obj, h5py.Group) and "jones" in obj:      # each run's own identities: present
            out[name + "@identity"] = sorted(k for k in obj.attrs if k in _PER_SOLVE)
    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k])
        else:
            assert a[k] == b[k], k


def test_same_calibration_three_ways(sim_linear, tmp_path, monkeypatch):
    ms0, truth = sim_linear
    ms = str(tmp_path / "sim.ms")
    shutil.copytree(ms0, ms)
    monkeypatch.chdir(tmp_path)
    kw = dict(vis=ms, field="3C286", jones=["K", "G"], solint=["scan", "2min"], refant="C00")
    # 1. Python call
    akcal(caltable=str(tmp_path / "py.h5"), **kw)
    # 2. akshell: inp / go
    out = io.StringIO()
    sh = ShellSession(out=out, color=False)
    sh.handle("inp akcal")
    for k, v in kw.items():
        sh.handle(f"{k} = {v!r}")
    sh.handle(f"caltable = {str(tmp_path / 'sh.h5')!r}")
    sh.handle("go akcal")
    assert (tmp_path / "akcal.last").exists()
    # 3. YAML
    (tmp_path / "c.yaml").write_text(
        f"solve:\n  - ms: {ms}\n    output: {tmp_path / 'yaml.h5'}\n    ref_ant: C00\n    jones: [K, G]\n"
        "    field: [3C286]\n    time_interval: [scan, 2min]\n")
    from alakazam.cli import main
    assert main(["--quiet", "run", str(tmp_path / "c.yaml")]) == 0
    a, b, c = (_h5_contents(str(tmp_path / f"{n}.h5")) for n in ("py", "sh", "yaml"))
    _same(a, b)
    _same(a, c)


def test_shell_inp_go_tget_tput_default(sim_linear, tmp_path):
    ms, truth = sim_linear
    out = io.StringIO()
    sh = ShellSession(out=out, color=True, cwd=str(tmp_path))
    sh.handle("inp akcal")
    text = out.getvalue()
    assert text.startswith("# akcal -- Solve a chain")
    assert "vis" in text and "gpu" not in text            # subparameter hidden until solver='jax'
    sh.handle("solver = 'jax'")
    sh.handle("maxiter = 1.5")
    out.truncate(0)
    out.seek(0)
    sh.handle("inp")
    text = out.getvalue()
    assert "   gpu" in text and "\033[32m" in text          # active subparameter: indented, green
    assert "\033[31mmaxiter" in text                       # invalid: red
    assert "\033[34msolver" in text or "\033[1m\033[34msolver" in text   # changed and valid: blue
    # go records the attempt in akcal.last even when validation fails, and the shell survives
    out.truncate(0)
    out.seek(0)
    sh.handle("go")
    assert "akcal failed" in out.getvalue() and "maxiter" in out.getvalue()
    last = (tmp_path / "akcal.last").read_text()
    assert "maxiter" in last and "1.5" in last and last.splitlines()[-1].startswith("#akcal( vis=")
    sh.handle("default akcal")
    assert "maxiter" not in sh.ns and "solver" not in sh.ns
    sh.handle("tget akcal")
    assert sh.ns["maxiter"] == 1.5 and sh.ns["solver"] == "jax"
    sh.handle("maxiter = 7")
    sh.handle("tput akcal mine.last")
    sh.handle("default akcal")
    sh.handle("tget akcal mine.last")
    assert sh.ns["maxiter"] == 7
    # a Python-style call ignores the shell variables and leaves them unchanged
    sh.handle(f"r = akinfo(caltable={str(tmp_path / 'none.h5')!r})")
    assert sh.ns["maxiter"] == 7
    out.truncate(0)
    out.seek(0)
    sh.handle("akcal?")
    assert "Parameters" in out.getvalue() and "solint" in out.getvalue()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_akshell_in_a_real_terminal(tmp_path):
    exe = shutil.which("akshell")
    if exe is None:     # not installed: the same shell as a module, from this working tree
        import shlex
        import sys
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        exe = f"PYTHONPATH={shlex.quote(root)} {shlex.quote(sys.executable)} -m alakazam.shell.akshell"
    sess = f"ak{int(time.time() * 1000) % 100000}"
    env = f"AKSHELL_HISTORY={tmp_path / 'hist'}"
    subprocess.run(["tmux", "new-session", "-d", "-s", sess, "-x", "160", "-y", "50",
                    f"cd {tmp_path} && {env} {exe}"], check=True)
    try:
        def screen():
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", sess], capture_output=True,
                                  text=True).stdout
        for _ in range(100):
            if "akshell>" in screen():
                break
            time.sleep(0.2)
        subprocess.run(["tmux", "send-keys", "-t", sess, "inp akfluxscale", "Enter"], check=True)
        for _ in range(50):
            if "# akfluxscale --" in screen():
                break
            time.sleep(0.2)
        s = screen()
        assert "# akfluxscale --" in s and "reference" in s
        subprocess.run(["tmux", "send-keys", "-t", sess, "go", "Enter"], check=True)
        for _ in range(50):
            if "akfluxscale failed" in screen():
                break
            time.sleep(0.2)
        assert "akfluxscale failed" in screen() and "caltable" in screen()
        subprocess.run(["tmux", "send-keys", "-t", sess, "exit", "Enter"], check=True)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", sess], capture_output=True)
    assert (tmp_path / "akfluxscale.last").exists()
