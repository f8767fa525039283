"""Review of session 33: parameters that passed validation and were then ignored, doubled or crashed the
task (each test fails on the tree before the fix).

A. akcal's pre-apply parameters without gaintable (gainjones / interp / gainfield with gaintable=[])
   were dropped without a word: the solve ran without the pre-apply asked for.  YAML refused the same
   input; now the tasks refuse it too, naming the parameters (alakazam/config._external_preapply,
   caltasks/akcal.build_config).
B. The same (table, key) listed twice was applied twice (akapply jones=['G0', 'G0']: amplitudes corrected
   by G0^2; akcal / akflag pre-apply likewise): refused before anything runs, paths and fuzzy keys
   resolved as the apply resolves them (core/selcheck.duplicate_terms).
C. Huge numbers passed the range checks and crashed inside (maxiter=10**30: numba TypingError;
   memory_limit_gb=1e308: OverflowError, and akflag left its FLAG in-progress marker): the XML now
   bounds maxiter (<= 100000) and memory_limit_gb (<= 1e6) and every integer parameter is a 64-bit
   integer (caltasks/xmlschema.check_value: the one check of Python, akshell, YAML and the CLI).
D. An akflag (or apply) that fails with an error before its first FLAG write leaves no in-progress
   marker (calibration/flagsafety.flag_writes); a failure after FLAG writes began keeps it.
"""

import io
import logging
import os
import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.errors import ParameterError
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small MS and a table with K0 and G0 solved on 3C286: (ms, cal.h5)."""
    from alakazam.caltasks import akcal

    d = tmp_path_factory.mktemp("s33")
    ms = str(d / "r.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(8,), int_s=120.0, scan_len_s=600.0, duration_h=1.0,
                noise=0.05, seed=3, leakage=False, dead_ant=False)
    cal = str(d / "cal.h5")
    akcal(vis=ms, caltable=cal, field="3C286", jones=["K", "G"], solint="inf", refant="C00")
    return ms, cal


@pytest.fixture
def work(base, tmp_path, monkeypatch):
    """A copy of the MS and the table in a fresh directory (the current one)."""
    ms, cal = base
    shutil.copytree(ms, str(tmp_path / "r.ms"))
    shutil.copy(cal, str(tmp_path / "cal.h5"))
    monkeypatch.chdir(tmp_path)
    return str(tmp_path / "r.ms"), str(tmp_path / "cal.h5")


def _errors(fn, **kw) -> dict:
    """{parameter: [messages]} of the task call's ParameterError (the task's 'akcal.' prefix dropped)."""
    with pytest.raises(ParameterError) as e:
        fn(**kw)
    pre = f"{e.value.task}." if e.value.task else ""
    return {k[len(pre):] if pre and k.startswith(pre) else k: v for k, v in e.value.errors.items()}


def _yaml_errors(tmp_path, text) -> dict:
    from alakazam.config import load_run_config

    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ParameterError) as e:
        load_run_config(str(p))
    return e.value.errors


# ---- A: pre-apply parameters without gaintable

def test_akcal_gainjones_without_gaintable_is_refused(work):
    from alakazam.caltasks import akcal

    ms, _ = work
    errs = _errors(akcal, vis=ms, caltable="g.h5", field="3C286", jones=["G"], refant="C00", gaintable=[],
                   gainjones=["K0"], interp=["linear"], gainfield=["pinned"])
    assert "has 0 entries but gainjones has 1" in " ".join(errs["gaintable"]), errs
    assert not os.path.exists("g.h5")


def test_akcal_interp_gainfield_without_any_term_are_refused(work, tmp_path):
    from alakazam.caltasks import akcal

    ms, _ = work
    errs = _errors(akcal, vis=ms, caltable="g.h5", field="3C286", jones=["G"], refant="C00",
                   interp=["linear"], gainfield=["pinned"], gainsolutionfield=["3C286"])
    for p in ("interp", "gainfield", "gainsolutionfield"):
        assert "there is no term to pre-apply (gaintable and gainjones are empty)" in " ".join(errs[p]), errs
    assert not os.path.exists("g.h5")
    # the YAML block says the same, by its keys
    y = _yaml_errors(tmp_path, f"solve:\n  - ms: {ms}\n    output: g.h5\n    jones: [G]\n"
                               "    external_preapply:\n      time_interp: [linear]\n")
    assert "no term to pre-apply (external_preapply.tables and external_preapply.jones are empty)" in \
        " ".join(y["solve[0].external_preapply.time_interp"]), y


def test_akshell_refuses_gainjones_without_gaintable(work):
    from alakazam.shell.akshell import ShellSession

    ms, _ = work
    out = io.StringIO()
    sh = ShellSession(out=out, color=False)
    for line in ("inp akcal", f"vis = {ms!r}", "caltable = 'g.h5'", "field = '3C286'", "jones = ['G']",
                 "refant = 'C00'", "gainjones = ['K0']", "go akcal"):
        sh.handle(line)
    assert "has 0 entries but gainjones has 1" in out.getvalue(), out.getvalue()
    assert not os.path.exists("g.h5")


def test_akflag_gainfield_without_gaintable_is_refused(work):
    from alakazam.caltasks import akflag

    ms, _ = work
    errs = _errors(akflag, vis=ms, mode="clip", clipminmax=[0, 50], gainfield=["nearest_time"])
    assert "no term to apply" in " ".join(errs["gainfield"]), errs


# ---- B: a term listed twice

def _corrected(ms):
    with table(ms, ack=False) as t:
        return t.getcol("CORRECTED_DATA") if "CORRECTED_DATA" in t.colnames() else None


@pytest.mark.parametrize("tables, jones", [(["cal.h5", "cal.h5"], ["G0", "G0"]),
                                           (["cal.h5"], ["G0", "G0"]),
                                           (["cal.h5"], ["K0", "G0", "g0"]),          # fuzzy key
                                           (["cal.h5", "./sub/../cal.h5"], ["G0", "G"])])   # path, bare type
def test_akapply_refuses_a_term_listed_twice(work, tables, jones):
    from alakazam.caltasks import akapply

    ms, _ = work
    os.makedirs("sub", exist_ok=True)
    before = _corrected(ms)
    errs = _errors(akapply, vis=ms, gaintable=tables, jones=jones)
    msg = " ".join(errs["jones"])
    assert "are the same term, G0 of 'cal.h5'" in msg and "applied twice" in msg, errs
    after = _corrected(ms)
    assert (before is None and after is None) or np.array_equal(before, after, equal_nan=True)


def test_the_same_key_of_different_tables_is_accepted(work):
    from alakazam.caltasks import akapply

    ms, cal = work
    shutil.copy(cal, "cal2.h5")
    params, cfg = akapply.prepare(akapply.bind(vis=ms, gaintable=["cal.h5", "cal2.h5"], jones=["G0", "G0"]))
    assert [t.key for t in cfg.terms] == ["G0", "G0"]


def test_akcal_and_akflag_refuse_a_preapplied_term_listed_twice(work):
    from alakazam.caltasks import akcal, akflag

    ms, _ = work
    errs = _errors(akcal, vis=ms, caltable="g.h5", field="3C286", jones=["G"], refant="C00",
                   gaintable=["cal.h5"], gainjones=["K0", "k0"])
    assert "are the same term, K0 of 'cal.h5'" in " ".join(errs["gainjones"]), errs
    assert not os.path.exists("g.h5")
    errs = _errors(akflag, vis=ms, mode="clip", clipminmax=[0, 50], datacolumn="residual",
                   gaintable=["cal.h5"], gainjones=["G0", "G0"])
    assert "are the same term, G0 of 'cal.h5'" in " ".join(errs["gainjones"]), errs
    assert not os.path.exists(ms + ".flagversions")


def test_yaml_apply_and_external_preapply_refuse_a_term_listed_twice(work, tmp_path):
    ms, _ = work
    y = _yaml_errors(tmp_path, f"solve:\n  - ms: {ms}\n    output: g.h5\n    jones: [G]\n"
                               "    external_preapply:\n      tables: [cal.h5]\n      jones: [K0, K0]\n"
                               f"apply:\n  - ms: {ms}\n    tables: [cal.h5, cal.h5]\n    jones: [G0, g0]\n")
    assert "are the same term, K0 of 'cal.h5'" in " ".join(y["solve[0].external_preapply.jones"]), y
    assert "are the same term, G0 of 'cal.h5'" in " ".join(y["apply[0].jones"]), y


def test_the_apply_engine_refuses_a_term_listed_twice(work):
    """A config built without the builders (or a YAML table an earlier block writes): run_apply checks
    too, before anything is written."""
    from alakazam.calibration.apply import run_apply
    from alakazam.config import apply_config_from_dict

    ms, cal = work
    cfg = apply_config_from_dict(dict(ms=ms, tables=[cal], jones=["G0"]))
    cfg.terms = [cfg.terms[0], cfg.terms[0]]
    with pytest.raises(ParameterError, match="applied twice"):
        run_apply(cfg)
    assert _corrected(ms) is None


# ---- C: huge numbers

def test_huge_numbers_are_refused_by_the_tasks(work):
    from alakazam.caltasks import akapply, akcal, akflag

    ms, _ = work
    errs = _errors(akcal, vis=ms, caltable="c.h5", jones=["G"], field="3C286", maxiter=10 ** 30)
    assert errs["maxiter"] == [f"max value is 100000, got {10 ** 30} (allowed range: 1 to 100000)"], errs
    errs = _errors(akcal, vis=ms, caltable="c.h5", jones=["G"], field="3C286", fillgaps=10 ** 30)
    assert "max value is 9223372036854775807" in errs["fillgaps"][0], errs
    want = ["max value is 1000000, got 1e+308 (allowed range: 0 to 1000000)"]
    assert _errors(akcal, vis=ms, caltable="c.h5", jones=["G"], field="3C286",
                   memory_limit_gb=1e308)["memory_limit_gb"] == want
    assert _errors(akapply, vis=ms, gaintable=["cal.h5"], jones=["G0"],
                   memory_limit_gb=1e308)["memory_limit_gb"] == want
    assert _errors(akflag, vis=ms, mode="clip", clipminmax=[0, 50],
                   memory_limit_gb=1e308)["memory_limit_gb"] == want
    assert not os.path.exists("c.h5") and not os.path.exists(ms + ".flagversions")
    assert _corrected(ms) is None


def test_huge_numbers_are_refused_in_yaml(work, tmp_path):
    ms, _ = work
    y = _yaml_errors(tmp_path, f"solve:\n  - ms: {ms}\n    output: c.h5\n    jones: [G]\n"
                               "    max_iter: 99999999999999999999999\n    memory_limit_gb: 1e308\n")
    assert y["solve[0].max_iter"] == ["max value is 100000, got 99999999999999999999999 (allowed range: 1 "
                                      "to 100000)"], y
    assert "max value is 1000000, got 1e+308" in y["solve[0].memory_limit_gb"][0], y


def test_cli_flag_memory_limit_huge_is_refused_and_leaves_nothing(work, capsys):
    from alakazam.cli import main

    ms, _ = work
    assert main(["--quiet", "flag", "--vis", ms, "--mode", "clip", "--clipminmax", "0", "50",
                 "--memory_limit_gb", "1e308"]) == 2
    err = capsys.readouterr().err
    assert "memory_limit_gb" in err and "max value is 1000000" in err and "internal error" not in err, err
    assert not os.path.exists(ms + ".flagversions")


def test_the_largest_memory_limit_runs(work):
    from alakazam.caltasks import akflag

    ms, _ = work
    out = akflag(vis=ms, mode="clip", clipminmax=[0, 50], memory_limit_gb=1e6)
    assert out["total"] > 0


# ---- D: no in-progress marker when FLAG was not written

def _markers(ms):
    d = ms + ".flagversions"
    return sorted(x for x in os.listdir(d) if x.endswith(".in_progress")) if os.path.isdir(d) else []


def _flags(ms):
    with table(ms, ack=False) as t:
        return t.getcol("FLAG")


@pytest.mark.parametrize("where", ["memory_limit", "flag_piece"])
def test_akflag_failing_before_writing_flag_leaves_no_marker(work, monkeypatch, caplog, where):
    from alakazam.caltasks import akflag, akinfo
    from alakazam.flagging import clip, engine

    ms, _ = work
    before = _flags(ms)

    def boom(*a, **k):
        raise RuntimeError("injected")
    if where == "memory_limit":         # (where memory_limit_gb=1e308 failed)
        monkeypatch.setattr(engine.memory, "memory_limit_bytes", boom)
    else:                               # after the main table is open for writing, before a write
        monkeypatch.setattr(clip, "flag_piece", boom)
    with pytest.raises(RuntimeError, match="injected"):
        akflag(vis=ms, mode="clip", clipminmax=[0, 50])
    monkeypatch.undo()
    assert np.array_equal(_flags(ms), before)
    assert _markers(ms) == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        akinfo(vis=ms)
        akflag(vis=ms, mode="clip", clipminmax=[0, 50])
    assert not [r for r in caplog.records if "interrupted" in r.getMessage()], caplog.text
    assert _markers(ms) == []


def test_akflag_failing_after_flag_writes_began_keeps_the_marker(work, monkeypatch, caplog):
    from alakazam.caltasks import akflag
    from alakazam.flagging import engine

    ms, _ = work
    real = engine.putcol_rows

    def put(t, col, rows, values, *a, **k):
        real(t, col, rows, values, *a, **k)
        if col == "FLAG":
            raise RuntimeError("injected after a FLAG write")
    monkeypatch.setattr(engine, "putcol_rows", put)
    with pytest.raises(RuntimeError, match="injected"):
        akflag(vis=ms, mode="clip", clipminmax=[0, 1e-3])
    assert _markers(ms) == ["flags.akflag_1.in_progress"]
    assert "FLAG may be partly changed" in caplog.text


def test_akapply_failing_before_writing_does_not_say_rows_were_rewritten(work, monkeypatch, caplog):
    """memory_limit_gb=1e308 made akapply fail before its first write and log 'the rows written so far
    hold the new correction' though no row changed: said only once a write began."""
    from alakazam.caltasks import akapply
    from alakazam.core import memory

    ms, _ = work
    akapply(vis=ms, gaintable=["cal.h5"], jones=["G0"])            # CORRECTED_DATA exists now
    before = _corrected(ms)

    def boom(*a, **k):
        raise RuntimeError("injected")
    monkeypatch.setattr(memory, "memory_limit_bytes", boom)     # (where memory_limit_gb=1e308 failed)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alakazam"), pytest.raises(RuntimeError, match="injected"):
        akapply(vis=ms, gaintable=["cal.h5"], jones=["K0", "G0"])
    assert "rows written so far" not in caplog.text and "before writing CORRECTED_DATA" in caplog.text
    assert np.array_equal(_corrected(ms), before, equal_nan=True)
