"""Reliability (issue 12): nothing lost, nothing silently wrong, under bad input, crashes and concurrency.

Each test pins one case of the issue and the class it stands for:
destructive outputs need ``overwrite``; apply's output column rule and interruption safety; FLAG
restorable; writer locks; HDF5 replace semantics; table/MS compatibility; YAML parsing limits and
whole-file validation.  The kill -9 fault-injection run is in tests/test_reliability_faults.py.
"""

import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration import compat
from alakazam.calibration.apply import run_apply
from alakazam.cli import main
from alakazam.config import apply_config_from_dict, load_run_config, solve_config_from_dict
from alakazam.core import columns, locks, ms_io
from alakazam.errors import AlakazamError, ParameterError
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(n_ant=4, n_ant_extra=1, n_chan=(8,), duration_h=0.5, int_s=120.0, noise=0.05, seed=5,
             leakage=False, dead_ant=False, flag_rows=0.0)


def _solve(ms, out, jones=("K", "G"), **kw):
    d = dict(ms=ms, output=out, jones=list(jones), ref_ant="C00", time_interval="inf", quiet=True)
    d.update(kw)
    return run_solve(solve_config_from_dict(d))


def _apply(ms, tables, jones=("K0", "G0"), **kw):
    d = dict(ms=ms, jones=list(jones), tables=list(tables), quiet=True)
    d.update(kw)
    return run_apply(apply_config_from_dict(d))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel")
    ms = str(d / "base.ms")
    simulate_ms(ms, **SMALL)
    cal = str(d / "cal.h5")
    _solve(ms, cal)
    return ms, cal


@pytest.fixture
def ms_copy(base, tmp_path):
    ms = str(tmp_path / "w.ms")
    shutil.copytree(base[0], ms)
    cal = str(tmp_path / "cal.h5")
    shutil.copyfile(base[1], cal)
    return ms, cal


def _col(ms, name):
    with table(ms, ack=False) as t:
        return t.getcol(name) if name in t.colnames() else None


def _colnames(ms):
    with table(ms, ack=False) as t:
        return t.colnames()


# ------------------------------------------------------------------------------------------------
# 1. destructive outputs need overwrite
# ------------------------------------------------------------------------------------------------
def test_simulate_refuses_existing_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "thesis.tex").write_text("years of work")
    # no overwrite: any existing path is refused and untouched
    for p in (str(keep), ".", str(tmp_path / "file.txt")):
        if p.endswith(".txt"):
            open(p, "w").write("x")
        with pytest.raises(AlakazamError, match="exists; pass overwrite"):
            simulate_ms(p, **SMALL)
    # overwrite: still refused for '.', a parent of cwd, home, a non-MS directory, a file, a symlink
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    os.makedirs(tmp_path / "home")
    os.symlink(str(keep), str(tmp_path / "link.ms"))
    for p in (".", "..", str(tmp_path / "home"), str(keep), str(tmp_path / "file.txt"),
              str(tmp_path / "link.ms")):
        with pytest.raises(AlakazamError, match="refusing to replace"):
            simulate_ms(p, overwrite=True, **SMALL)
    assert (keep / "thesis.tex").read_text() == "years of work"
    assert open(tmp_path / "file.txt").read() == "x"
    # the CLI: clean error, exit 2, nothing deleted
    assert main(["simulate", "."]) == 2
    assert "exists; pass overwrite" in capsys.readouterr().err
    assert main(["simulate", ".", "--overwrite"]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (keep / "thesis.tex").exists()
    # an MS simulate wrote is replaced with overwrite only
    ms = str(tmp_path / "s.ms")
    simulate_ms(ms, **SMALL)
    with pytest.raises(AlakazamError, match="exists"):
        simulate_ms(ms, **SMALL)
    simulate_ms(ms, overwrite=True, **dict(SMALL, n_chan=(4,)))
    assert ms_io.read_meta(ms).spws[0].freqs.size == 4


def test_demo_never_replaces_without_overwrite(tmp_path, capsys):
    d = tmp_path / "demo"
    d.mkdir()
    (d / "cal.h5").write_bytes(b"my own solutions")
    assert main(["--quiet", "demo", "--dir", str(d)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (d / "cal.h5").read_bytes() == b"my own solutions"
    assert not (d / "demo.ms").exists()
    # with --overwrite a cal.h5 that is not an alakazam table is still not removed
    assert main(["--quiet", "demo", "--dir", str(d), "--overwrite"]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err
    assert (d / "cal.h5").read_bytes() == b"my own solutions"
    # an existing non-simulated demo.ms is not replaced either
    (d / "cal.h5").unlink()
    (d / "demo.ms").mkdir()
    (d / "demo.ms" / "notes").write_text("x")
    assert main(["--quiet", "demo", "--dir", str(d), "--overwrite"]) == 2
    assert (d / "demo.ms" / "notes").exists()


# ------------------------------------------------------------------------------------------------
# 2. apply's output column
# ------------------------------------------------------------------------------------------------
FORBIDDEN = ["DATA", "MODEL_DATA", "FLAG", "WEIGHT", "UVW", "SIGMA", "WEIGHT_SPECTRUM", "FLAG_ROW",
             "TIME", "ANTENNA1", "MYCOL", "bad name", "CORRECTED_DATA_AKPARTIAL"]


def test_output_column_rule(ms_copy):
    ms, cal = ms_copy
    from alakazam.caltasks import akapply

    # a user column that exists is never overwritten either
    ms_io.ensure_column(ms, "MYCOL", like="DATA", init=True)
    cols = _colnames(ms)
    before = {c: _col(ms, c) for c in ("DATA", "MODEL_DATA", "FLAG", "WEIGHT", "UVW", "MYCOL")}
    for col in FORBIDDEN:
        with pytest.raises(ParameterError, match="output_col"):
            _apply(ms, [cal, cal], output_col=col)
        with pytest.raises(ParameterError, match="outputcolumn"):
            akapply(vis=ms, gaintable=[cal, cal], jones=["K0", "G0"], outputcolumn=col)
    assert _colnames(ms) == cols
    assert not os.path.exists(ms + ".flagversions")
    for c, v in before.items():
        np.testing.assert_array_equal(_col(ms, c), v)
    # CORRECTED_DATA and a new name are accepted
    assert compat.output_column_errors("CORRECTED_DATA", "DATA", cols) == []
    assert compat.output_column_errors("CORRECTED_2", "DATA", cols) == []
    assert compat.output_column_errors("CORRECTED_DATA", "CORRECTED_DATA", cols) != []
    res = _apply(ms, [cal, cal], output_col="CORRECTED_2")
    assert res["created_column"] and "CORRECTED_2" in _colnames(ms)
    np.testing.assert_array_equal(_col(ms, "DATA"), before["DATA"])
    np.testing.assert_array_equal(_col(ms, "MODEL_DATA"), before["MODEL_DATA"])


def test_yaml_output_column_refused_before_any_block_runs(ms_copy, tmp_path, capsys):
    ms, cal = ms_copy
    cfg = tmp_path / "x.yaml"
    cfg.write_text(textwrap.dedent(f"""
        solve:
          - {{ms: {ms}, output: {tmp_path}/new.h5, jones: [G], ref_ant: C00}}
        apply:
          - {{ms: {ms}, jones: [G0], tables: [{tmp_path}/new.h5], output_col: MODEL_DATA}}
    """))
    assert main(["--quiet", "run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "apply[0].output_col" in err and "MODEL_DATA" in err
    assert not (tmp_path / "new.h5").exists()


def test_interrupted_apply_leaves_no_unreadable_rows(ms_copy, monkeypatch):
    ms, cal = ms_copy
    real = ms_io.write_column
    calls = {"n": 0}

    def boom(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(ms_io, "write_column", boom)
    with pytest.raises(KeyboardInterrupt):
        _apply(ms, [cal, cal], memory_limit_gb=1e-5)       # several chunks
    monkeypatch.setattr(ms_io, "write_column", real)
    cols = _colnames(ms)
    assert "CORRECTED_DATA" not in cols and columns.partial_name("CORRECTED_DATA") not in cols
    # kill -9 equivalent: a partial column left behind (rows without arrays) ...
    part, created = columns.prepare(ms, "CORRECTED_DATA", "DATA", init=False)
    assert created and part == "CORRECTED_DATA_AKPARTIAL"
    assert len(columns.undefined_rows(ms, part)) == _col(ms, "DATA").shape[0]
    # ... is removed by the next apply, which finishes the job: every row readable
    res = _apply(ms, [cal, cal], target_field=["3C286"])
    assert res["created_column"]
    assert "CORRECTED_DATA_AKPARTIAL" not in _colnames(ms)
    assert len(columns.undefined_rows(ms, "CORRECTED_DATA")) == 0
    assert _col(ms, "CORRECTED_DATA").shape == _col(ms, "DATA").shape


def test_interrupt_right_after_the_partial_column_is_made_drops_it(ms_copy, monkeypatch):
    """Ctrl-C landing after the partial column exists but before columns.prepare returned (the run does
    not know yet that it created it) still removes it."""
    ms, cal = ms_copy
    real = ms_io.ensure_column

    def made_then_interrupted(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(ms_io, "ensure_column", made_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        _apply(ms, [cal, cal])
    monkeypatch.setattr(ms_io, "ensure_column", real)
    cols = _colnames(ms)
    assert "CORRECTED_DATA" not in cols and columns.partial_name("CORRECTED_DATA") not in cols
    assert columns.take_made(ms) is None


def test_existing_column_with_undefined_rows_is_repaired(ms_copy):
    ms, cal = ms_copy
    ms_io.ensure_column(ms, "CORRECTED_DATA", like="DATA", init=False)   # e.g. an older killed run
    assert len(columns.undefined_rows(ms, "CORRECTED_DATA")) > 0
    _apply(ms, [cal, cal], target_field=["3C286"])      # writes only some rows
    assert len(columns.undefined_rows(ms, "CORRECTED_DATA")) == 0
    meta = ms_io.read_meta(ms)
    other = [f.id for f in meta.fields if f.name != "3C286" and any(s.field_id == f.id for s in meta.scans)]
    rows = ms_io.row_numbers(ms, 0, other)
    with table(ms, ack=False) as t:
        q = t.selectrows(rows)
        np.testing.assert_array_equal(q.getcol("CORRECTED_DATA"), q.getcol("DATA"))   # uncorrected copy
        q.close()


def test_interrupt_with_propagate_flags_is_restorable(ms_copy, monkeypatch, caplog):
    ms, cal = ms_copy
    flag0 = _col(ms, "FLAG")
    flagrow0 = _col(ms, "FLAG_ROW")
    real = ms_io.write_column
    seen = {"flag_writes": 0, "backup_before_first_flag_write": None}

    def boom(m, name, rows, values, chans=None):
        if name == "FLAG":
            if seen["backup_before_first_flag_write"] is None:
                seen["backup_before_first_flag_write"] = os.path.exists(
                    ms + ".flagversions/flags.akapply_1/table.dat")
            seen["flag_writes"] += 1
            values = np.ones_like(values)                      # visibly change FLAG
            real(m, name, rows, values, chans)
            if seen["flag_writes"] == 2:
                raise KeyboardInterrupt
            return None
        return real(m, name, rows, values, chans)

    monkeypatch.setattr(ms_io, "write_column", boom)
    with caplog.at_level(logging.INFO, logger="alakazam"):
        with pytest.raises(KeyboardInterrupt):
            _apply(ms, [cal, cal], propagate_flags=True, memory_limit_gb=1e-5)
    monkeypatch.setattr(ms_io, "write_column", real)
    assert seen["backup_before_first_flag_write"] is True
    assert not np.array_equal(_col(ms, "FLAG"), flag0)
    msg = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert f"alakazam flagmanager --vis {ms} --mode restore --versionname akapply_1" in msg
    marker = ms + ".flagversions/flags.akapply_1.in_progress"
    assert os.path.exists(marker)
    # the next apply reminds the user (kill -9 leaves the same marker)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        _apply(ms, [cal, cal])
    assert any("interrupted while writing FLAG" in r.getMessage() for r in caplog.records)
    # the printed command (the CLI's akflagmanager) restores FLAG and removes the marker
    from alakazam.cli import main as cli_main

    cli_main(["flagmanager", "--vis", ms, "--mode", "restore", "--versionname", "akapply_1"])
    np.testing.assert_array_equal(_col(ms, "FLAG"), flag0)
    np.testing.assert_array_equal(_col(ms, "FLAG_ROW"), flagrow0)
    assert not os.path.exists(marker)


def test_a_completed_rerun_of_the_same_apply_ends_its_interrupted_run(ms_copy, base, tmp_path, monkeypatch,
                                                                     caplog):
    """Review 54b: an apply with propagate_flags interrupted while writing FLAG, then re-run to completion
    (the same FLAG as an uninterrupted run), still left its in-progress marker, so every later task said
    FLAG "may be partly changed" and advised a restore that would drop the completed run's flags.  A
    completed re-run of the same apply (calibration/flagsafety.apply_job: its parameters and the
    solutions applied) now removes it; another apply does not."""
    ms, cal = ms_copy
    ref = str(tmp_path / "ref.ms")
    shutil.copytree(base[0], ref)
    _apply(ref, [cal, cal], propagate_flags=True, memory_limit_gb=1e-5)
    want = _col(ref, "FLAG")
    real = ms_io.write_column
    n = {"flag": 0}

    def stop_in_flag(m, name, rows, values, chans=None):
        out = real(m, name, rows, values, chans)
        if name == "FLAG":
            n["flag"] += 1
            if n["flag"] == 2:
                raise KeyboardInterrupt
        return out

    monkeypatch.setattr(ms_io, "write_column", stop_in_flag)
    with pytest.raises(KeyboardInterrupt):
        _apply(ms, [cal, cal], propagate_flags=True, memory_limit_gb=1e-5)
    monkeypatch.setattr(ms_io, "write_column", real)
    marker = ms + ".flagversions/flags.akapply_1.in_progress"
    assert os.path.exists(marker)
    # another apply (one field) is another job: it warns and leaves the marker
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alakazam"):
        _apply(ms, [cal, cal], propagate_flags=True, target_field=["3C286"])
    assert any("interrupted while writing FLAG" in r.getMessage() for r in caplog.records)
    assert os.path.exists(marker)
    # the same apply again: said as a re-run, not warned about, and its marker removed when it completes
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alakazam"):
        _apply(ms, [cal, cal], propagate_flags=True, memory_limit_gb=1e-5)
    said = [r.getMessage() for r in caplog.records]
    assert not any("interrupted while writing FLAG" in m for m in said)
    assert any("re-running the apply that was interrupted after saving flag version akapply_1" in m
               for m in said)
    assert not os.path.exists(marker)
    np.testing.assert_array_equal(_col(ms, "FLAG"), want)


# ------------------------------------------------------------------------------------------------
# 3. locking
# ------------------------------------------------------------------------------------------------
def _hold_lock(path, kind):
    code = (f"import sys, time; sys.argv = ['alakazam', 'run', 'other.yaml']\n"
            f"from alakazam.core import locks\n"
            f"with locks.writer_lock({path!r}, {kind!r}):\n"
            f"    print('locked', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.stdout.readline().strip() == "locked"
    return p


def test_one_writer_per_table_and_ms(ms_copy):
    ms, cal = ms_copy
    _apply(ms, [cal, cal])
    corrected = _col(ms, "CORRECTED_DATA")
    before = open(cal, "rb").read()
    p = _hold_lock(cal, "table")
    try:
        with pytest.raises(locks.LockedError, match=rf"in use by PID {p.pid} \(alakazam run other.yaml\)"):
            _solve(ms, cal, jones=("G",))
        with pytest.raises(locks.LockedError, match=r"\.cal\.h5\.lock"):
            hdf5.write_term(cal, "G5", hdf5.read_term(cal, "G0"))
    finally:
        p.kill()
        p.wait()
    assert open(cal, "rb").read() == before
    q = _hold_lock(ms, "ms")
    try:
        with pytest.raises(locks.LockedError, match=rf"Measurement Set .* in use by PID {q.pid}"):
            _apply(ms, [cal, cal])
    finally:
        q.kill()
        q.wait()
    # the refused run deleted nothing: the column another run wrote is intact
    np.testing.assert_array_equal(_col(ms, "CORRECTED_DATA"), corrected)
    # the lock dies with its holder (kill -9): the next writer proceeds
    _apply(ms, [cal, cal])
    # re-entrant within a thread
    with locks.writer_lock(cal):
        hdf5.write_term(cal, "G5", hdf5.read_term(cal, "G0"))
    assert "G5" in hdf5.list_keys(cal)


def test_two_concurrent_solves_never_lose_a_key(ms_copy, tmp_path):
    """Two solve processes on one table: one finishes, the other is refused with a clear error (exit
    2); the table holds the complete result of the one that ran."""
    ms, _ = ms_copy
    out = str(tmp_path / "both.h5")
    cfgs = []
    for i, j in enumerate(("[K, G]", "[G, G]")):
        c = tmp_path / f"s{i}.yaml"
        c.write_text(f"solve:\n  - {{ms: {ms}, output: {out}, jones: {j}, ref_ant: C00, quiet: true}}\n")
        cfgs.append(c)
    env = dict(os.environ, PYTHONPATH=ROOT)
    ps = [subprocess.Popen([sys.executable, "-m", "alakazam.cli", "--quiet", "run", str(c)], env=env,
                           stderr=subprocess.PIPE, text=True) for c in cfgs]
    res = [(p.wait(timeout=300), p.stderr.read()) for p in ps]
    codes = sorted(r[0] for r in res)
    assert codes[0] == 0 and codes[1] in (0, 2)
    for code, err in res:
        if code == 2:                   # (rich wraps long log lines: compare with whitespace folded)
            assert "in use by PID" in " ".join(err.split()) and "Traceback" not in err
    keys = hdf5.list_keys(out)
    ids = hdf5.write_ids(out)
    assert keys in (["K0", "G0"], ["G0", "G1"], ["K0", "G0", "G1"])
    if codes == [0, 0]:          # both ran one after the other: the last one's keys share one write
        assert len(set(ids.values())) <= 2
    else:
        assert len(set(ids.values())) == 1


# ------------------------------------------------------------------------------------------------
# 4. HDF5 update semantics
# ------------------------------------------------------------------------------------------------
def test_hdf5_replace_semantics(base, tmp_path):
    _, cal = base
    g0 = hdf5.read_term(cal, "G0")
    p = str(tmp_path / "t.h5")
    old = os.umask(0o022)
    try:
        hdf5.write_term(p, "G0", g0)
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644          # umask honoured (not mkstemp's 0600)
        os.umask(0o077)
        hdf5.write_term(str(tmp_path / "u.h5"), "G0", g0)
        assert stat.S_IMODE(os.stat(tmp_path / "u.h5").st_mode) == 0o600
    finally:
        os.umask(old)
    # other keys kept; an existing file's mode preserved
    hdf5.write_term(p, "K0", hdf5.read_term(cal, "K0"))
    os.chmod(p, 0o640)
    hdf5.write_term(p, "G1", g0)
    assert hdf5.list_keys(p) == ["K0", "G0", "G1"]
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    # no growth on re-runs (fresh file, no dead space)
    sizes = []
    for _ in range(6):
        hdf5.write_term(p, "G1", g0)
        sizes.append(os.path.getsize(p))
    assert max(sizes) == min(sizes)
    # a symlink is followed: the target is replaced, the link stays a link
    link = str(tmp_path / "link.h5")
    os.symlink(p, link)
    hdf5.write_term(link, "G2", g0)
    assert os.path.islink(link) and "G2" in hdf5.list_keys(p)
    # read-only: refused with a clear error, the file untouched
    os.chmod(p, 0o444)
    before = open(p, "rb").read()
    with pytest.raises(AlakazamError, match="read-only"):
        hdf5.write_term(p, "G3", g0)
    assert open(p, "rb").read() == before
    os.chmod(p, 0o644)
    # a temporary left by a killed writer (dead PID) is removed by the next write
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".tmp-t.h5-{dead.pid}-abcd"
    stale.write_bytes(b"x" * 1000)
    hdf5.write_term(p, "G3", g0)
    assert not stale.exists()
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []


def test_interrupt_where_no_handler_runs_leaves_no_temporary(ms_copy, tmp_path, monkeypatch, capsys):
    """An interrupt between _AtomicFile.__enter__ returning and the ``with`` body starting (or inside
    mkstemp) runs no handler of the writer: the temporary is recorded when made (signals held) and the
    CLI removes it once the interrupt has ended the run (CI hit this once in ~40 random SIGTERMs)."""
    ms, cal = ms_copy
    g0 = hdf5.read_term(cal, "G0")
    real_enter = hdf5._AtomicFile.__enter__

    def enter_then_interrupt(self):
        real_enter(self)
        raise KeyboardInterrupt             # as a signal landing right after __enter__ returned

    p = str(tmp_path / "t.h5")
    monkeypatch.setattr(hdf5._AtomicFile, "__enter__", enter_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        hdf5.write_term(p, "G0", g0)
    left = [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
    assert len(left) == 1                   # the race, reproduced: no handler removed it
    # what akshell's rollback does: the writer cleaned up (temporary gone, table lock released), so
    # the next write of the same process works
    hdf5.remove_interrupted()
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == [] and not hdf5._LIVE
    monkeypatch.setattr(hdf5._AtomicFile, "__enter__", real_enter)
    orphan = tmp_path / f".tmp-t.h5-{os.getpid()}-zzzz"      # this process's, held by no writer
    orphan.write_bytes(b"x")
    hdf5.write_term(p, "G0", g0)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []
    # through the CLI: exit 130 and nothing left
    monkeypatch.setattr(hdf5._AtomicFile, "__enter__", enter_then_interrupt)
    cfg = tmp_path / "x.yaml"
    cfg.write_text(f"solve:\n  - {{ms: {ms}, output: {tmp_path}/new.h5, jones: [K], ref_ant: C00}}\n")
    assert main(["--quiet", "run", str(cfg)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []
    assert not (tmp_path / "new.h5").exists() and not hdf5._LIVE


def test_solve_block_written_in_one_replace(ms_copy, monkeypatch):
    """Decision: all keys of a solve block are written by ONE replace at its end (shared write_id), so
    a kill between steps leaves the old file, never a new K0 beside an old G0."""
    ms, cal = ms_copy
    old_ids = hdf5.write_ids(cal)
    calls = []
    real = hdf5.write_terms

    def spy(path, terms):
        calls.append(sorted(terms))
        return real(path, terms)

    monkeypatch.setattr(hdf5, "write_terms", spy)
    _solve(ms, cal, jones=("K", "G", "G"))
    assert calls == [["G0", "G1", "K0"]]
    ids = hdf5.write_ids(cal)
    assert len(set(ids.values())) == 1 and ids["K0"] != old_ids["K0"]

    # a failure in the last step: nothing of it is written, the finished steps are (one replace)
    import alakazam.flow as flow

    real_solve = flow._solve_field_spw

    def fail_on_g1(ctx, step, *a, **k):
        if step.key == "G1":
            raise KeyboardInterrupt
        return real_solve(ctx, step, *a, **k)

    monkeypatch.setattr(flow, "_solve_field_spw", fail_on_g1)
    before = open(cal, "rb").read()
    with pytest.raises(KeyboardInterrupt):
        _solve(ms, cal, jones=("K", "G", "G"))
    assert open(cal, "rb").read() == before                # interrupt: the old file, whole


# ------------------------------------------------------------------------------------------------
# 5. compatibility checks before apply
# ------------------------------------------------------------------------------------------------
def test_table_must_fit_the_ms(base, tmp_path, caplog):
    ms, cal = base
    # frequencies: a table solved at 1.3 GHz applied at 5 GHz
    far = str(tmp_path / "far.ms")
    simulate_ms(far, **dict(SMALL, f0=5.0e9))
    with pytest.raises(AlakazamError, match="no overlap"):
        _apply(far, [cal, cal])
    assert "CORRECTED_DATA" not in _colnames(far)
    # feed basis
    circ = str(tmp_path / "circ.ms")
    simulate_ms(circ, **dict(SMALL, feed="circular"))
    with pytest.raises(AlakazamError, match="linear feeds but SPW 0 .* circular"):
        _apply(circ, [cal, cal])
    # antenna names: none matching -> error; some missing -> warning with the list
    other = str(tmp_path / "names.h5")
    shutil.copyfile(cal, other)
    with h5py.File(other, "a") as f:
        for key in ("K0", "G0"):
            for g in hdf5._leaf_groups(f[key]):
                g.attrs["ant_names"] = np.array(["X1", "X2", "X3", "X4"], dtype=h5py.string_dtype())
    with pytest.raises(AlakazamError, match="no antenna of the table"):
        _apply(str(shutil.copytree(ms, tmp_path / "n.ms")), [other, other])
    part = str(tmp_path / "part.h5")
    shutil.copyfile(cal, part)
    with h5py.File(part, "a") as f:
        for key in ("K0", "G0"):
            for g in hdf5._leaf_groups(f[key]):
                names = [x.decode() if isinstance(x, bytes) else x for x in g.attrs["ant_names"]]
                names[-1] = "ELSEWHERE"
                g.attrs["ant_names"] = np.array(names, dtype=h5py.string_dtype())
    m2 = str(shutil.copytree(ms, tmp_path / "p.ms"))
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        _apply(m2, [part, part])
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "antennas C04 of" in text or "C04" in text and "no solutions in the table" in text
    # another MS than the one solved on: a warning, not an error
    assert "(another MS)" in text


# ------------------------------------------------------------------------------------------------
# 6. validation and parsing
# ------------------------------------------------------------------------------------------------
BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
solve:
  - {ms: x.ms, output: c.h5, jones: [G], scan: [*g,*g,*g,*g,*g,*g,*g,*g,*g]}
"""


def test_yaml_limits(tmp_path, capsys):
    p = tmp_path / "laughs.yaml"
    p.write_text(BILLION_LAUGHS)
    t0 = time.perf_counter()
    assert main(["run", str(p)]) == 2
    assert time.perf_counter() - t0 < 5
    assert "aliases" in capsys.readouterr().err
    p.write_text("solve:\n  - {ms: a.ms, output: c.h5, jones: [G], jones: [K]}\n")
    with pytest.raises(AlakazamError, match="duplicate key 'jones'"):
        load_run_config(str(p))
    p.write_text("solve:\n  - {ms: a.ms, output: c.h5, jones: [G]}\nsolve: []\n")
    with pytest.raises(AlakazamError, match="duplicate key 'solve'"):
        load_run_config(str(p))
    # numbers in any YAML form
    p.write_text("solve:\n  - {ms: a.ms, output: c.h5, jones: [G, G], tol: 1e-10, rfi_threshold: 4E0,\n"
                 "     freq_interval: [1e6, full], time_interval: [120, scan]}\n")
    cfg = load_run_config(str(p)).solve[0]
    assert cfg.tol == 1e-10 and cfg.rfi_threshold == 4.0
    assert cfg.steps[0].freq_interval_hz == 1e6 and cfg.steps[0].time_interval.seconds == 120
    # NaN / Inf refused where meaningless
    for key, val in (("tol", ".nan"), ("rfi_threshold", ".nan"), ("rfi_threshold", ".inf"),
                     ("memory_limit_gb", ".inf"), ("tol", "-.inf")):
        p.write_text(f"solve:\n  - {{ms: a.ms, output: c.h5, jones: [G], {key}: {val}}}\n")
        with pytest.raises(ParameterError, match=rf"solve\[0\]\.{key}"):
            load_run_config(str(p))
    from alakazam.caltasks import akcal

    for kw in (dict(tol=float("nan")), dict(rfi_threshold=float("inf")), dict(tol=float("inf"))):
        with pytest.raises(ParameterError, match=list(kw)[0]):
            akcal(vis=".", caltable="c.h5", jones=["G"], **kw)


def test_yaml_numbers_reach_the_tasks(ms_copy, tmp_path):
    ms, _ = ms_copy
    p = tmp_path / "n.yaml"
    p.write_text(f"solve:\n  - {{ms: {ms}, output: {tmp_path}/n.h5, jones: [G, G], ref_ant: C00, "
                 "tol: 1e-10, freq_interval: [full, 2000000], time_interval: [inf, 600], quiet: true}\n")
    assert main(["--quiet", "run", str(p)]) == 0
    g1 = hdf5.read_term(str(tmp_path / "n.h5"), "G1")
    assert g1[0].jones.shape[1] == 4          # 8 channels of 1 MHz in 2 MHz bins


def test_whole_file_validated_before_anything_runs(ms_copy, tmp_path, capsys):
    ms, cal = ms_copy
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    p = tmp_path / "v.yaml"
    p.write_text(textwrap.dedent(f"""
        solve:
          - {{ms: {ms}, output: {tmp_path}/first.h5, jones: [G], ref_ant: C00}}
          - {{ms: {ms}, output: {ro}/second.h5, jones: [G], ref_ant: C00}}
          - {{ms: {ms}, output: {tmp_path}/nodir/third.h5, jones: [G], ref_ant: C00}}
          - {{ms: {ms}, output: {tmp_path}/fourth.h5, jones: [G], maxiter_typo: 3}}
        fluxscale:
          - {{reference_table: {tmp_path}/first.h5, reference_field: [3C286], transfer_field: [3C147],
              output: {tmp_path}/fs.h5, jones_type: G0, spw: abc}}
        apply:
          - {{ms: {ms}, jones: [G0], tables: [{tmp_path}/missing.h5]}}
    """))
    try:
        rc = main(["--quiet", "run", str(p)])
    finally:
        os.chmod(ro, 0o755)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    for needle in ("solve[1].output", "not writable", "solve[2].output", "does not exist",
                   "solve[3].maxiter_typo", "fluxscale[0].spw", "apply[0].tables[0]"):
        assert needle in err, needle
    assert not (tmp_path / "first.h5").exists()         # nothing ran


def test_cli_inputs_give_clean_errors(base, tmp_path, capsys):
    ms, cal = base
    assert main(["--log", str(tmp_path / "no" / "run.log"), "info", cal]) == 2
    assert "--log" in capsys.readouterr().err
    assert main(["run", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    b = tmp_path / "bin.yaml"
    b.write_bytes(bytes(range(256)) * 4)
    assert main(["run", str(b)]) == 2
    assert "binary file" in capsys.readouterr().err
    u = tmp_path / "latin.yaml"
    u.write_bytes("solve: caf\xe9".encode("latin-1"))
    assert main(["run", str(u)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    from alakazam.caltasks import akfluxscale

    with pytest.raises(ParameterError, match="spw"):
        akfluxscale(caltable=cal, fluxtable=str(tmp_path / "f.h5"), reference=["3C286"],
                    transfer=["3C147"], jones="G0", spw="abc")
    # corrupt table attributes: a clear error naming the file and group
    bad = str(tmp_path / "bad.h5")
    shutil.copyfile(cal, bad)
    with h5py.File(bad, "a") as f:
        g = hdf5._leaf_groups(f["G0"])[0]
        g.attrs["spw"] = "zero"
        del g.attrs["ant_names"]
    with pytest.raises(AlakazamError, match=r"bad\.h5 group /G0/.* is damaged"):
        hdf5.read_term(bad, "G0")
    assert main(["info", bad]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and "Traceback" not in err


@pytest.mark.parametrize("column", ["new", "existing"])
def test_kill_while_adding_the_column_is_undone(ms_copy, tmp_path, column):
    """A kill -9 in the middle of casacore's flush of the output column's storage-manager header (a new
    or an existing column) leaves a table that does not open; the next apply puts back the table
    description saved when the killed apply started writing and finishes the job.  (Separate processes,
    as after a real kill: casacore caches tables per process.)"""
    ms, cal = ms_copy
    if column == "existing":
        _apply(ms, [cal, cal])
    data0 = _col(ms, "DATA")
    cols0 = [c for c in _colnames(ms) if c != "CORRECTED_DATA"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    cut = textwrap.dedent(f"""
        import os
        from casacore.tables import table
        from alakazam.core import columns
        before = set(os.listdir({ms!r}))
        columns.begin_writes({ms!r})
        part, created = columns.prepare({ms!r}, "CORRECTED_DATA", "DATA", init=False)
        assert os.path.isdir(os.path.join({ms!r}, columns.SNAPSHOT))
        with table({ms!r}, ack=False) as t:
            header = "table.f%d" % t.getdminfo(part)["SEQNR"]
        with open(os.path.join({ms!r}, header), "r+b") as fh:     # the header write cut short
            fh.truncate(10)
    """)
    subprocess.run([sys.executable, "-c", cut], env=env, check=True)
    probe = f"from casacore.tables import table; table({ms!r}, ack=False)"
    opens = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True)
    assert opens.returncode != 0                           # the MS no longer opens
    y = tmp_path / "a.yaml"
    y.write_text(f"apply:\n  - {{ms: {ms}, jones: [K0, G0], tables: [{cal}, {cal}], quiet: true}}\n")
    r = subprocess.run([sys.executable, "-m", "alakazam.cli", "--quiet", "run", str(y)], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "restoring the table" in " ".join(r.stderr.split())
    assert not os.path.exists(os.path.join(ms, columns.SNAPSHOT))
    assert _colnames(ms) == cols0 + ["CORRECTED_DATA"]
    np.testing.assert_array_equal(_col(ms, "DATA"), data0)
    assert len(columns.undefined_rows(ms, "CORRECTED_DATA")) == 0
    # with the table still opening, the partial column is simply dropped
    columns.begin_writes(ms)
    part, _ = columns.prepare(ms, "CORRECTED_2", "DATA", init=False)
    assert columns.recover(ms) == "dropped" and part not in _colnames(ms)


@pytest.mark.parametrize("task", ["solve", "akinfo", "live writer"])
def test_cut_flag_header_undone_before_a_reading_task(ms_copy, tmp_path, task, caplog, monkeypatch):
    """A writer of FLAG (akflag, apply with propagate_flags, a flag restore) killed inside casacore's flush
    of FLAG's storage-manager header leaves an MS that does not open.  A task that only reads the MS (a
    solve, akinfo) undoes it first (core/columns.recover_killed) instead of stopping on casacore's
    "FilebufIO::readBlock" error; when another run holds the MS writer lock ('live writer': a repair or a
    flush under way) it waits for it, and names it when it waits too long.  Separate processes for the
    cut, as after a real kill."""
    ms, cal = ms_copy
    flag0 = _col(ms, "FLAG")
    env = dict(os.environ, PYTHONPATH=ROOT)
    cut = textwrap.dedent(f"""
        import os
        from casacore.tables import table
        from alakazam.core import columns
        with table({ms!r}, ack=False) as t:
            header = "table.f%d" % t.getdminfo("FLAG")["SEQNR"]
        columns.begin_writes({ms!r})
        with open(os.path.join({ms!r}, header), "r+b") as fh:     # the header write cut short
            fh.truncate(10)
    """)
    subprocess.run([sys.executable, "-c", cut], env=env, check=True)
    probe = f"from casacore.tables import table; table({ms!r}, ack=False)"
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode != 0
    if task == "live writer":
        def hold(seconds):
            h = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
                import sys, time
                from alakazam.core import locks
                with locks.writer_lock({ms!r}, "ms"):
                    print("held", flush=True)
                    time.sleep({seconds})
            """)], env=env, stdout=subprocess.PIPE)
            assert h.stdout.readline().strip() == b"held"
            return h

        # held longer than the task waits: an error naming the run that holds the lock, nothing put back
        holder = hold(60)
        try:
            with monkeypatch.context() as mp:
                mp.setattr(columns, "LOCK_WAIT_S", 1.0)
                with pytest.raises(AlakazamError, match=f"does not open.*PID {holder.pid}"):
                    columns.recover_killed(ms)
            assert os.path.isdir(os.path.join(ms, columns.SNAPSHOT))
        finally:
            holder.kill()
            holder.wait()
        assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode != 0
        # released within the wait (a repair or a flush under way): the task waits, then puts it back
        holder = hold(3)
        try:
            import logging

            with caplog.at_level(logging.WARNING):
                assert columns.recover_killed(ms) == "restored"
            assert "waiting for the run that holds its writer lock" in caplog.text
        finally:
            holder.wait()
    elif task == "solve":
        import logging

        with caplog.at_level(logging.WARNING):
            _solve(ms, str(tmp_path / "again.h5"))
        assert "restoring the table" in " ".join(caplog.text.split())
    else:
        r = subprocess.run([sys.executable, "-m", "alakazam.cli", "info", ms], env=env, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        assert "restoring the table" in " ".join(r.stderr.split())
    assert not os.path.exists(os.path.join(ms, columns.SNAPSHOT))
    np.testing.assert_array_equal(_col(ms, "FLAG"), flag0)


def test_all_flagged_or_zero_weight_is_an_error(ms_copy, tmp_path):
    """100% flagged next to 100% converged was a silent success; now an error, nothing written.  (Zero
    weight for DATA: SIGMA 0, as DATA is weighted 1/SIGMA^2, core/weights.py.)"""
    ms, cal = ms_copy
    with table(ms, readonly=False, ack=False) as t:
        t.putcol("SIGMA", np.zeros_like(t.getcol("SIGMA")))
    out = str(tmp_path / "zero.h5")
    with pytest.raises(AlakazamError, match=r"K0 \(K\): every solution is flagged.*zero weight"):
        _solve(ms, out)
    assert not os.path.exists(out)
    with table(ms, readonly=False, ack=False) as t:
        t.putcol("SIGMA", np.ones_like(t.getcol("SIGMA")))
        t.putcol("FLAG", np.ones_like(t.getcol("FLAG")))
    with pytest.raises(AlakazamError, match="every solution is flagged"):
        _solve(ms, out, jones=("G",))
    assert not os.path.exists(out)
    # fluxscale with no matching data: an error, no table without a result
    from alakazam.calibration.fluxscale import run_fluxscale
    from alakazam.config import fluxscale_config_from_dict

    fs = str(tmp_path / "fs.h5")
    with pytest.raises(AlakazamError, match="spw: '7' selects no SPW"):
        run_fluxscale(fluxscale_config_from_dict(dict(reference_table=cal, reference_field=["3C286"],
                                                      transfer_field=["3C147"], output=fs,
                                                      jones_type="G0", spw="7")))
    assert not os.path.exists(fs)


def test_flag_backup_location_checked_first(ms_copy, tmp_path):
    ms, cal = ms_copy
    d = tmp_path / "ro"
    d.mkdir()
    ms2 = str(d / "x.ms")
    shutil.copytree(ms, ms2)
    os.chmod(d, 0o555)
    try:
        with pytest.raises(AlakazamError, match="propagate_flags saves FLAG"):
            _apply(ms2, [cal, cal], propagate_flags=True)
    finally:
        os.chmod(d, 0o755)
    assert "CORRECTED_DATA" not in _colnames(ms2)


@pytest.mark.parametrize("when", ["during the snapshot's removal", "inside the writes"])
def test_interrupt_of_flag_writes_leaves_no_snapshot(ms_copy, monkeypatch, when):
    """A Ctrl-C / SIGTERM arriving while akflag writes FLAG, or while the recovery snapshot is being
    removed once the writes are done, interrupts the run (KeyboardInterrupt, restore command
    logged) but leaves no snapshot in the MS: the next writer has nothing to recover (seen in CI: a
    SIGTERM 0.08 s after the flag version appeared left part of the snapshot, and the next run reported
    a recovery)."""
    import signal

    from alakazam.calibration import flagsafety

    ms, _ = ms_copy
    snap = os.path.join(ms, columns.SNAPSHOT)
    os.makedirs(flagsafety.flagversions_dir(ms), exist_ok=True)
    real_rmtree = shutil.rmtree
    sent, written = [], []

    def rmtree_interrupted(path, *a, **kw):
        if written and not sent and str(path) in (snap, snap + ".done"):
            sent.append(path)
            os.kill(os.getpid(), signal.SIGINT)     # delivered while the removal is under way
            time.sleep(0.05)
        return real_rmtree(path, *a, **kw)

    if when == "during the snapshot's removal":
        monkeypatch.setattr(columns.shutil, "rmtree", rmtree_interrupted)
    with pytest.raises(KeyboardInterrupt):
        with flagsafety.flag_writes(ms, "v1", what="akflag"):
            assert os.path.isdir(snap)
            written.append(True)
            if when == "inside the writes":
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)        # the handler runs at the next bytecode: inside the block
    assert not os.path.exists(snap) and not os.path.exists(snap + ".done")
    assert columns.recover(ms) is None
    assert when != "during the snapshot's removal" or sent
