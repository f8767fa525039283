"""alakazam/warmup.py: the solvers' first compilation in a child process (module docstring)."""

import os
import subprocess
import sys
import textwrap

import pytest

from alakazam import warmup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kg_blocks import two_block_yaml  # noqa: E402  (tests/kg_blocks.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(warmup, "_STARTED", set())
    monkeypatch.setattr(warmup, "_CHILDREN", [])
    monkeypatch.setattr(warmup, "_PROGRESS", {})
    monkeypatch.delenv("ALAKAZAM_BACKGROUND_COMPILE", raising=False)
    yield
    warmup.stop()


class _Popen:
    calls = []

    def __init__(self, args):
        _Popen.calls.append(list(args))

    def poll(self):
        return 0

    def wait(self, timeout=None):
        return 0


def test_started_once_per_type_only_when_not_cached(fresh, monkeypatch, sim_linear, tmp_path):
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve

    ms, _ = sim_linear
    _Popen.calls = []
    monkeypatch.setattr(warmup, "_spawn", _Popen)
    monkeypatch.setattr(warmup, "_cached", lambda disp: False)
    d = dict(ms=ms, output=str(tmp_path / "a.h5"), ref_ant="C00", jones=["K", "G"], field=["3C286"],
             time_interval=["scan", "inf"], freq_interval=["full", "full"], quiet=True)
    run_solve(solve_config_from_dict(d))
    assert _Popen.calls == [[sys.executable, "-m", "alakazam.warmup", "K", "G"]]
    run_solve(solve_config_from_dict(dict(d, output=str(tmp_path / "b.h5"))))
    assert len(_Popen.calls) == 1                                 # once per Jones type per process
    assert warmup.start(["K", "G", "D"]) == ["D"]
    # off, another backend, or everything cached: nothing started
    assert warmup.start(["CP"], backend="scipy") == []
    monkeypatch.setenv("ALAKAZAM_BACKGROUND_COMPILE", "0")
    assert warmup.start(["CP"]) == []
    monkeypatch.delenv("ALAKAZAM_BACKGROUND_COMPILE")
    monkeypatch.setattr(warmup, "_cached", lambda disp: True)
    assert warmup.start(["CP", "KC"]) == []
    assert len(_Popen.calls) == 2


def test_the_yaml_runner_starts_every_solve_blocks_types_first(fresh, monkeypatch, sim_linear, tmp_path):
    from alakazam.caltasks.yamlrun import run_yaml

    ms, _ = sim_linear
    seen = []
    real = warmup.start
    monkeypatch.setattr(warmup, "start", lambda types, backend="numba": seen.append(list(types)) or
                        real(types, backend))
    y = two_block_yaml(tmp_path / "run.yaml", ms, tmp_path)
    run_yaml(str(y))
    assert seen[0] == ["K", "G", "G"]          # all blocks' types, before the first block runs
    (tmp_path / "ap").mkdir()
    y = two_block_yaml(tmp_path / "ap" / "run.yaml", ms, tmp_path / "ap", apply=True)
    n = len(seen)                               # (each solve block's run_solve calls start too)
    run_yaml(str(y))
    assert seen[n] == ["K", "G", "G", "apply"]  # an apply block after the solves: its kernels last


def test_stop_terminates_a_running_child(fresh, monkeypatch):
    monkeypatch.setattr(warmup, "_cached", lambda disp: False)
    assert warmup.start(["D"]) == ["D"]
    p = warmup._CHILDREN[0]
    warmup.stop()
    assert p.poll() is not None and warmup._CHILDREN == []


def test_the_child_compiles_what_the_solve_flow_uses(tmp_path):
    """With an empty numba cache: after ``python -m alakazam.warmup K G KC CP D apply``, a K/G/G block and
    a KC/CP/D block compile no solver kernel (the child's batches have the flow's types), and applies of
    their tables -- K + G without parallactic angle (the diagonal path) and K, B, G, KC, CP, D with it (the
    composed full inverse) -- compile no kernel of alakazam.jones.algebra (the child's arrays have the
    apply's types)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "nb"), ALAKAZAM_BACKGROUND_COMPILE="0",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "alakazam.warmup", "K", "G", "KC", "CP", "D", "apply"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    script = textwrap.dedent(f"""
        import collections
        from numba.core import event
        from alakazam.config import solve_config_from_dict
        from alakazam.flow import run_solve
        from alakazam.sim import simulate_ms
        ms = {str(tmp_path / 'fp.ms')!r}
        simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(16,), duration_h=0.5, int_s=120.0, seed=3)
        names = collections.Counter()
        class L(event.Listener):
            def on_start(self, ev):
                pass
            def on_end(self, ev):
                f = ev.data["dispatcher"].py_func
                names[f.__module__ + "." + f.__name__] += 1
        event.register("numba:compile", L())
        common = dict(ms=ms, ref_ant="C00", apply_parang=True, quiet=True)
        b1 = {str(tmp_path / 'b1.h5')!r}
        run_solve(solve_config_from_dict(dict(common, output=b1, jones=["K", "G", "G"], field=["3C286"],
            time_interval=["scan", "60s", "inf"], freq_interval=["full", "full", "1MHz"],
            phase_only=[False, True, False])))
        run_solve(solve_config_from_dict(dict(common, output={str(tmp_path / 'b3.h5')!r},
            jones=["KC", "CP", "D"], field=["3C286"], time_interval=["inf", "inf", "inf"],
            freq_interval=["full", "1MHz", "full"],
            external_preapply=dict(tables=[b1, b1, b1], jones=["K0", "G1", "G0"]))))
        solver = sorted(n for n in names if n.startswith("alakazam.solvers."))
        print("SOLVER_COMPILES", solver)
        print("ALL_COMPILES", sum(names.values()))
        from alakazam.caltasks import akapply
        names.clear()
        akapply(vis=ms, gaintable=[b1, b1], jones=["K0", "G0"], parang=False)
        b3 = {str(tmp_path / 'b3.h5')!r}
        akapply(vis=ms, gaintable=[b1, b1, b1, b3, b3, b3], jones=["K0", "G1", "G0", "KC0", "CP0", "D0"],
                parang=True, applymode="calflag")
        print("APPLY_COMPILES", sorted(n for n in names if n.startswith("alakazam.jones.algebra.")))
        """)
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("SOLVER_COMPILES"))
    total = int(next(x for x in r.stdout.splitlines() if x.startswith("ALL_COMPILES")).split()[1])
    assert line == "SOLVER_COMPILES []", line
    assert total > 0                            # the rest (flags, accumulation, ...) did compile here
    line = next(x for x in r.stdout.splitlines() if x.startswith("APPLY_COMPILES"))
    assert line == "APPLY_COMPILES []", line


def test_a_finished_child_is_reaped_at_once(fresh, monkeypatch):
    """A long session (akshell) keeps no <defunct> warm-up child until it exits."""
    import time

    spawn = warmup._spawn
    monkeypatch.setattr(warmup, "_cached", lambda disp: False)
    monkeypatch.setattr(warmup, "_spawn", lambda args: spawn([sys.executable, "-c", "pass"]))
    assert warmup.start(["G"]) == ["G"]
    pid = warmup._CHILDREN[0].pid
    deadline = time.time() + 20
    while time.time() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")        # exited and reaped (a zombie keeps its /proc entry)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="PYTHONSAFEPATH: Python >= 3.11")
def test_the_child_imports_nothing_from_the_current_directory(fresh, monkeypatch, tmp_path):
    """`alakazam run` changes to the YAML's directory before starting the child: a module there named
    like one the child imports (textwrap, inspect) must not run in it."""
    for m in ("textwrap", "inspect", "numbers"):
        (tmp_path / f"{m}.py").write_text(f"open({str(tmp_path / ('ran_' + m))!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(warmup, "needed", lambda types: ["none"])      # a child that only imports
    assert warmup.start(["G"]) == ["none"]
    p = warmup._CHILDREN[0]
    warmup.wait(60)
    assert p.returncode == 0 and not list(tmp_path.glob("ran_*"))


def test_the_cache_check_imports_only_the_run_types_solvers():
    """warmup.needed({'G'}) imports the gain solver modules only (not cross_phase, leakage,
    parallel_delay: issue 16 start-up), and each type's kernels are those solvers' dispatchers."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys\n"
            "from alakazam import warmup\n"
            "warmup.needed({'G'})\n"
            "names = [m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('alakazam.solvers.')]\n"
            "print(sorted(n for n in names if n in ('cross_phase', 'leakage', 'parallel_delay', 'gains')))\n")
    path = [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), ALAKAZAM_BACKGROUND_COMPILE="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "['gains']"
    from alakazam.solvers import cross_phase, gains, leakage, parallel_delay, quality

    assert warmup._kernels("G") == [gains._stefcal_items, quality._power_sums]
    assert warmup._kernels("K") == [parallel_delay._lm_items, quality._power_sums,
                                    parallel_delay._sums_items]
    assert warmup._kernels("KC") == [parallel_delay._lm_items]
    assert warmup._kernels("D") == [leakage._lm_items]
    assert warmup._kernels("CP") == [cross_phase._leakage_offsets]
    assert warmup._kernels("B") == []
    from alakazam.jones import algebra

    assert warmup._kernels("apply") == [algebra._correct_diag_inv_rows, algebra._correct_full_inv_rows,
                                        algebra._compose_inverse, algebra._correct_lin_d_rows]


def test_the_run_waits_only_for_the_type_the_child_is_compiling(fresh, monkeypatch):
    """wait_for: a type the child reports as started is waited for until it reports it done; a type it
    has not started, one it has finished, or one no child was started for: no wait."""
    import time

    spawn = warmup._spawn
    code = ("import sys, time\n"
            "print('start G', flush=True)\n"
            "time.sleep(1.5)\n"
            "print('done G', flush=True)\n"
            "time.sleep(30)\n")
    monkeypatch.setattr(warmup, "_cached", lambda disp: False)
    monkeypatch.setattr(warmup, "_spawn", lambda args: spawn([sys.executable, "-c", code]))
    assert warmup.start(["G", "D"]) == ["G", "D"]
    deadline = time.time() + 20
    while warmup._PROGRESS.get("G") is None and time.time() < deadline:
        assert not warmup.wait_for("D")         # started for D, but the child is not on D
        time.sleep(0.01)
    assert not warmup.wait_for("K")             # never handed to the child
    t0 = time.monotonic()
    assert warmup.wait_for("G")                 # the child is on G: wait until "done G"
    assert warmup._PROGRESS["G"] == "done" and time.monotonic() - t0 < 15
    t0 = time.monotonic()
    assert not warmup.wait_for("G") and time.monotonic() - t0 < 0.5
    assert warmup._CHILDREN[0].poll() is None   # still running (sleeping): the wait did not need its exit


def test_the_wait_ends_when_the_child_dies(fresh, monkeypatch):
    spawn = warmup._spawn
    code = "import os, time\nprint('start D', flush=True)\ntime.sleep(1)\nos._exit(1)\n"
    monkeypatch.setattr(warmup, "_cached", lambda disp: False)
    monkeypatch.setattr(warmup, "_spawn", lambda args: spawn([sys.executable, "-c", code]))
    assert warmup.start(["D"]) == ["D"]
    import time

    t0 = time.monotonic()
    while warmup._PROGRESS.get("D") is None and time.monotonic() - t0 < 20:
        time.sleep(0.01)
    warmup.wait_for("D")
    assert warmup._CHILDREN[0].poll() is not None and time.monotonic() - t0 < 15
