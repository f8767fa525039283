"""Session-25 review of the task interface, selection and flagging (each test failed before its fix).

1. ``vis`` that is a directory but not a Measurement Set is a bad parameter, reported before the Begin
   line with the call's other bad parameters (akcal, akapply, akflag, akinfo, akflagmanager, the YAML
   runner), and nothing is written into that directory.
2. A date-only timerange, measured with CASA 6.7 (casatools ms.msselect and flagdata on the MS of
   :func:`tr_ms`): ``'D'`` alone is the day D at the time of day of the data's first integration (one
   integration: casacore fills a time's missing fields from the first row); in a range (``'D1~D2'``,
   ``'>D'``, ``'<D'``) a date alone is 00:00 of that day, so ``'D~D'`` is empty (flagdata: "The selected
   table has zero rows") and is refused, naming timerange and the whole-day form.
3. ``nproc`` / ``workers`` above 4 per usable CPU core are refused (tasks and YAML alike; the XML's
   ``range="max" percpu="true"``), naming the machine's core count.
4. An akflagmanager restore killed (SIGKILL) halfway through writing FLAG leaves a marker; the next task
   on that MS says which restore was interrupted, how to finish it and how to undo it; either clears it.
5. Interface: unknown keywords reported with positional/duplicate-argument problems; a typo of an
   allowed value gets a did-you-mean, not the CASA gainfield hint; HINTS never names a real parameter.
"""

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from casacore.tables import table

from alakazam.errors import ParameterError, UnknownParameterError
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import casa_python  # noqa: E402  (tests/casa_python.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASA_PY = casa_python() or ""
needs_casa = pytest.mark.skipif(not os.access(CASA_PY, os.X_OK), reason=f"no CASA Python at {CASA_PY}")


def tr_ms(path):
    """4 antennas, 4 channels, 30 x 60 s from 2024/04/01/07:46:24.8 (scans of 10 min)."""
    simulate_ms(path, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.5, int_s=60.0, scan_len_s=600.0,
                noise=0.05, seed=3, leakage=False, dead_ant=False, flag_rows=0.0)
    return path


@pytest.fixture(scope="module")
def base_ms(tmp_path_factory):
    return tr_ms(str(tmp_path_factory.mktemp("s25") / "b.ms"))


@pytest.fixture
def ms(base_ms, tmp_path):
    out = str(tmp_path / "w.ms")
    shutil.copytree(base_ms, out)
    return out


def _cols(ms, *names):
    with table(ms, ack=False) as t:
        return [t.getcol(n) for n in names]


def _began(caplog):
    return any("Begin Task" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------------
# 1. vis: a directory that is not a Measurement Set
# --------------------------------------------------------------------------------------------------
@pytest.fixture(params=["empty", "files"])
def not_ms(request, tmp_path):
    d = tmp_path / "x.ms"
    d.mkdir()
    if request.param == "files":
        (d / "notes.txt").write_text("not a table\n")
        (d / "sub").mkdir()
    return str(d)


def _listing(d):
    return sorted(os.path.relpath(os.path.join(r, f), d) for r, ds, fs in os.walk(d) for f in fs + ds)


CALLS = {
    "akcal": lambda v: dict(vis=v, caltable=v + "_cal.h5", jones=["G"]),
    "akapply": lambda v: dict(vis=v, gaintable=[v + "_cal.h5"], jones=["G0"]),
    "akflag": lambda v: dict(vis=v, mode="manual"),
    "akinfo": lambda v: dict(vis=v),
    "akflagmanager": lambda v: dict(vis=v, mode="list"),
}


@pytest.mark.parametrize("task", sorted(CALLS))
def test_vis_directory_not_ms_refused_up_front(task, not_ms, caplog):
    import alakazam.caltasks as ct

    before = _listing(not_ms)
    caplog.set_level(logging.INFO)
    with pytest.raises(ParameterError) as e:
        getattr(ct, task)(**CALLS[task](not_ms))
    keys = [k for k in e.value.errors if k.split(".")[-1] == "vis"]
    assert keys, e.value.errors
    msg = " ".join(e.value.errors[keys[0]])
    assert repr(not_ms) in msg and "is not a Measurement Set (no table.dat" in msg
    assert not _began(caplog)
    assert _listing(not_ms) == before
    assert not os.path.exists(not_ms + ".flagversions")


def test_vis_not_ms_reported_with_the_other_bad_parameters(not_ms, caplog):
    from alakazam.caltasks import akcal, akflag

    with pytest.raises(ParameterError) as e:
        akcal(vis=not_ms, caltable=not_ms + "_c.h5", jones=["Q"], solint="bogus")
    assert {"vis", "jones"} <= {k.split(".")[-1].split("[")[0] for k in e.value.errors}, e.value.errors
    with pytest.raises(ParameterError) as e:
        akflag(vis=not_ms, mode="quack", quackinterval=-1.0)
    assert {"vis", "quackinterval"} <= set(e.value.errors), e.value.errors


def test_vis_list_with_one_directory_not_ms(ms, not_ms):
    from alakazam.caltasks import akcal

    with pytest.raises(ParameterError) as e:
        akcal(vis=[ms, not_ms], caltable=ms + "_c.h5", jones=["G"])
    msg = " ".join(e.value.errors["vis"])
    assert repr(not_ms) in msg and repr(ms) not in msg


def test_yaml_ms_directory_not_ms_refused_in_preflight(tmp_path, not_ms, caplog):
    from alakazam.caltasks.yamlrun import run_yaml

    y = tmp_path / "r.yaml"
    y.write_text(f"solve:\n  - {{ms: {not_ms}, output: c.h5, jones: [G]}}\n"
                 f"apply:\n  - {{ms: {not_ms}, tables: [c.h5], jones: [G0]}}\n")
    before = _listing(not_ms)
    caplog.set_level(logging.INFO)
    with pytest.raises(ParameterError) as e:
        run_yaml(str(y))
    for where in ("solve[0].ms", "apply[0].ms"):
        assert any("is not a Measurement Set (no table.dat" in m for m in e.value.errors.get(where, [])), \
            e.value.errors
    assert not _began(caplog)
    assert _listing(not_ms) == before and not (tmp_path / "c.h5").exists()


# --------------------------------------------------------------------------------------------------
# 2. date-only timerange (measured with CASA 6.7; see the module docstring)
# --------------------------------------------------------------------------------------------------
def _flag_rows(ms, **kw):
    from alakazam.caltasks import akflag

    akflag(vis=ms, mode="manual", **kw)
    f, = _cols(ms, "FLAG")
    return f.all(axis=(1, 2))


def test_date_alone_is_the_first_integrations_time_of_day(ms, caplog):
    from alakazam.core import msselect

    msselect._warn_date_alone.cache_clear()
    tm, = _cols(ms, "TIME")
    rows = _flag_rows(ms, timerange="2024/04/01")
    np.testing.assert_array_equal(rows, tm == tm.min())       # CASA: 6 rows, the first integration
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2024/04/01/07:46:24.8" in m and "'2024/04/01~2024/04/02'" in m for m in said), said


def test_date_range_bounds_are_midnight(ms):
    tm, = _cols(ms, "TIME")
    from alakazam.core.msselect import parse_time, parse_timerange, time_mask

    d0 = parse_time("2024/04/01", 0.0)
    for text, want in [("2024/04/01~2024/04/02", np.ones(len(tm), bool)),
                       (">2024/04/01", np.ones(len(tm), bool)),
                       ("<2024/04/01", np.zeros(len(tm), bool)),
                       ("2024/04/01~2024/04/01/07:50:00", tm <= d0 + 7 * 3600 + 50 * 60),
                       ("2024/04/01~08:00:00", tm <= d0 + 8 * 3600)]:
        np.testing.assert_array_equal(time_mask(parse_timerange(text, tm.min()), tm), want, err_msg=text)
    assert (tm <= d0 + 7 * 3600 + 50 * 60).sum() == 24          # as CASA selected: 4 integrations


def test_date_alone_on_a_later_day_uses_the_first_time_of_day():
    from alakazam.core.msselect import parse_time, parse_timerange

    t_first = parse_time("2024/04/01/23:30:10.25", 0.0)
    (t0, t1, point), = parse_timerange("2024/04/02", t_first)
    assert point and t0 == t1 == parse_time("2024/04/02/23:30:10.25", 0.0)


@pytest.mark.parametrize("text", ["2024/04/01~2024/04/01", "07:00:00~09:00:00,2024/04/01~2024/04/01"])
def test_empty_date_range_refused(ms, text):
    from alakazam.caltasks import akcal, akflag

    for call in (lambda: akflag(vis=ms, mode="manual", timerange=text),
                 lambda: akcal(vis=ms, caltable=ms + "_c.h5", jones=["G"], timerange=text)):
        with pytest.raises(ParameterError) as e:
            call()
        k = [k for k in e.value.errors if k.endswith("timerange")]
        msg = " ".join(e.value.errors[k[0]])
        assert "2024/04/01~2024/04/02" in msg and "00:00" in msg, msg
    assert not os.path.exists(ms + "_c.h5")


CASA_CASES = ["2024/04/01", "2024/04/01~2024/04/02", ">2024/04/01", "2024/04/01~2024/04/01/07:50:00",
              "2024/04/01~08:00:00"]


@needs_casa
def test_date_timeranges_match_casa_flagdata(base_ms, tmp_path):
    code = textwrap.dedent(f"""
        import json, shutil
        import numpy as np
        from casatasks import flagdata
        from casatools import table
        tb = table()
        out = {{}}
        for i, tr in enumerate(json.loads({json.dumps(json.dumps(CASA_CASES + ['2024/04/01~2024/04/01']))})):
            ms = "c%d.ms" % i
            shutil.copytree({base_ms!r}, ms)
            try:
                flagdata(vis=ms, mode="manual", timerange=tr, flagbackup=False)
            except RuntimeError as e:
                out[tr] = "error: " + str(e)
                continue
            tb.open(ms)
            out[tr] = np.transpose(tb.getcol("FLAG"), (2, 1, 0)).all(axis=(1, 2)).tolist()
            tb.close()
        json.dump(out, open("out.json", "w"))
    """)
    r = subprocess.run([CASA_PY, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-3000:]
    casa = json.load(open(tmp_path / "out.json"))
    assert "zero rows" in casa["2024/04/01~2024/04/01"]          # CASA refuses the empty range too
    for i, text in enumerate(CASA_CASES):
        ms = str(tmp_path / f"a{i}.ms")
        shutil.copytree(base_ms, ms)
        np.testing.assert_array_equal(_flag_rows(ms, timerange=text), casa[text], err_msg=text)


# --------------------------------------------------------------------------------------------------
# 3. nproc / workers: an upper limit
# --------------------------------------------------------------------------------------------------
def _limit():
    from alakazam.caltasks.xmlschema import usable_cpus

    return 4 * usable_cpus()


@pytest.mark.parametrize("task,kw", [("akcal", dict(jones=["G"], workers=10000)),
                                     ("akapply", dict(gaintable=[], jones=[], workers=10000)),
                                     ("akflag", dict(mode="aoflagger", nproc=10000)),
                                     ("akflag", dict(mode="manual", workers=10000))])
def test_nproc_workers_upper_limit(ms, task, kw, caplog):
    import alakazam.caltasks as ct
    from alakazam.caltasks.xmlschema import usable_cpus

    caplog.set_level(logging.INFO)
    name = "nproc" if "nproc" in kw else "workers"
    with pytest.raises(ParameterError) as e:
        getattr(ct, task)(vis=ms, **({"caltable": ms + "_c.h5"} if task == "akcal" else {}), **kw)
    msg = " ".join(e.value.errors[name])
    assert f"max value is {_limit()}" in msg and f"{usable_cpus()} usable CPU core" in msg, msg
    assert "10000" in msg and not _began(caplog)


def test_nproc_workers_limit_itself_accepted():
    from alakazam.caltasks import akcal, akflag

    assert akflag.check({"nproc": _limit(), "workers": _limit()}) == {}
    assert set(akflag.check({"nproc": _limit() + 1, "workers": _limit() + 1})) == {"nproc", "workers"}
    assert akcal.check({"workers": _limit()}) == {}


def test_yaml_workers_limit(tmp_path, ms):
    from alakazam.caltasks.yamlrun import run_yaml

    y = tmp_path / "r.yaml"
    y.write_text(f"flag:\n  - {{ms: {ms}, mode: aoflagger, nproc: 10000}}\n"
                 f"solve:\n  - {{ms: {ms}, output: c.h5, jones: [G], workers: 10000}}\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(y))
    for k in ("flag[0].nproc", "solve[0].workers"):
        assert any(f"max value is {_limit()}" in m for m in e.value.errors.get(k, [])), e.value.errors
    y.write_text(f"solve:\n  - {{ms: {ms}, output: c.h5, jones: [G]}}\n")
    with pytest.raises(ParameterError) as e:            # alakazam run --workers N
        run_yaml(str(y), workers=10000)
    assert any(f"max value is {_limit()}" in m for m in e.value.errors.get("solve[0].workers", [])), \
        e.value.errors
    assert not (tmp_path / "c.h5").exists()


# --------------------------------------------------------------------------------------------------
# 4. an akflagmanager restore killed halfway
# --------------------------------------------------------------------------------------------------
KILLED_RESTORE = """
import os, signal, sys
from alakazam.core import flagversions
from alakazam.caltasks import akflagmanager
flagversions.CHUNK_ROWS = 30                # several FLAG writes per DATA_DESC_ID
put, calls = flagversions._put_merged, []
def put_then_die(t, *a):
    put(t, *a)
    calls.append(1)
    if len(calls) == 2:                     # halfway: two chunks written (and on disk), then kill -9
        t.flush()
        os.kill(os.getpid(), signal.SIGKILL)
flagversions._put_merged = put_then_die
akflagmanager(vis=sys.argv[1], mode="restore", versionname="akflag_1")
"""


def _killed_restore(ms):
    """FLAG all True, saved as akflag_1 by an akflag that then unflags everything; a restore of
    akflag_1 killed after two of its six chunks.  Returns (FLAG before the restore, FLAG of akflag_1)."""
    from alakazam.caltasks import akflag

    akflag(vis=ms, mode="manual")                        # FLAG all True (saves akflag_1: all False)
    akflag(vis=ms, mode="unflag", antenna="C00")          # saves akflag_2; C00's baselines unflagged
    want, = _cols(ms, "FLAG")
    assert want.any() and not want.all()
    env = dict(os.environ, PYTHONPATH=ROOT, ALAKAZAM_NO_PROGRESS="1")
    p = subprocess.run([sys.executable, "-c", KILLED_RESTORE, ms], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == -9, p.stderr[-2000:]
    return want


def test_killed_restore_is_detected_and_finished(ms, caplog, monkeypatch):
    from alakazam.caltasks import akcal, akflag, akflagmanager
    from alakazam.core import flagversions

    before = _killed_restore(ms)
    half, = _cols(ms, "FLAG")
    saved = {v["name"] for v in flagversions.list_versions(ms)}
    backup = max((n for n in saved if n.startswith("flagmanager_")), key=lambda n: int(n.split("_")[1]))
    assert half[:60].sum() == 0 and half.any(), "the kill must land halfway through the FLAG write"
    assert glob.glob(ms + ".flagversions/*.in_progress")
    caplog.set_level(logging.INFO)
    akflagmanager(vis=ms, mode="list")                     # the next task on the MS says it
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "restore of flag version akflag_1" in text and "interrupted" in text, text
    assert "versionname='akflag_1'" in text and backup in text, text
    caplog.clear()
    akflag(vis=ms, mode="summary")                         # (also akflag)
    assert any("restore of flag version akflag_1" in r.getMessage() for r in caplog.records)
    caplog.clear()
    import alakazam.flow as flow_mod

    monkeypatch.setattr(flow_mod, "run_solve", lambda cfg: {})         # (and akcal, before it solves)
    akcal(vis=ms, caltable=ms + "_c.h5", jones=["G"])
    assert any("restore of flag version akflag_1" in r.getMessage() for r in caplog.records)
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")      # finish it
    done, = _cols(ms, "FLAG")
    assert not done.any()                                  # akflag_1: nothing flagged
    assert not glob.glob(ms + ".flagversions/*.in_progress")
    caplog.clear()
    akflagmanager(vis=ms, mode="list")
    assert not any("interrupted" in r.getMessage() for r in caplog.records)
    akflagmanager(vis=ms, mode="restore", versionname=backup)           # the saved-before still undoes it
    np.testing.assert_array_equal(_cols(ms, "FLAG")[0], before)


def test_killed_restore_undone_with_the_saved_version(ms):
    from alakazam.core import flagversions
    from alakazam.caltasks import akflagmanager

    before = _killed_restore(ms)
    backup = max((v["name"] for v in flagversions.list_versions(ms) if v["name"].startswith("flagmanager_")),
                 key=lambda n: int(n.split("_")[1]))
    akflagmanager(vis=ms, mode="restore", versionname=backup)
    np.testing.assert_array_equal(_cols(ms, "FLAG")[0], before)
    assert not glob.glob(ms + ".flagversions/*.in_progress")


def test_deleting_the_backup_of_a_killed_restore_says_flag_stays_partly_restored(ms, caplog):
    from alakazam.caltasks import akflagmanager

    _killed_restore(ms)
    caplog.set_level(logging.INFO)
    akflagmanager(vis=ms, mode="delete", versionname="flagmanager_1")
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "FLAG stays partly restored" in said[0] and "'akflag_1'" in said[0], said
    assert not glob.glob(ms + ".flagversions/*.in_progress")


def test_ctrl_c_during_restore_says_how_to_finish_or_undo(ms, monkeypatch, caplog):
    from alakazam.caltasks import akflag, akflagmanager
    from alakazam.core import flagversions

    akflag(vis=ms, mode="manual")
    put, calls = flagversions._put_merged, []

    def put_then_interrupt(t, *a):
        put(t, *a)
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(flagversions, "CHUNK_ROWS", 30)
    monkeypatch.setattr(flagversions, "_put_merged", put_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    said = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "restore of flag version akflag_1 was interrupted (KeyboardInterrupt)" in said, said
    assert "versionname='akflag_1'" in said and "--versionname flagmanager_1" in said, said
    assert glob.glob(ms + ".flagversions/flags.flagmanager_1.in_progress")
    monkeypatch.setattr(flagversions, "_put_merged", put)
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    assert not _cols(ms, "FLAG")[0].any() and not glob.glob(ms + ".flagversions/*.in_progress")


def test_ctrl_c_during_restore_in_akshell_is_undone(ms, tmp_path, monkeypatch):
    import io

    from alakazam.caltasks import akflag
    from alakazam.core import flagversions
    from alakazam.shell.akshell import ShellSession

    akflag(vis=ms, mode="manual")
    flag0 = _cols(ms, "FLAG")[0]
    fv0 = sorted(os.listdir(ms + ".flagversions"))
    put, calls = flagversions._put_merged, []

    def put_then_interrupt(t, *a):          # the first FLAG chunk written, then Ctrl-C (the undo's own
        put(t, *a)                          # restore then runs through)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(flagversions, "CHUNK_ROWS", 30)
    monkeypatch.setattr(flagversions, "_put_merged", put_then_interrupt)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    sh = ShellSession(out=out, color=False, cwd=str(tmp_path), logfile="akshell.log")
    try:
        sh.handle(f"akflagmanager(vis={ms!r}, mode='restore', versionname='akflag_1')")
    finally:
        sh.close()
    text = out.getvalue() + (tmp_path / "akshell.log").read_text()
    assert "the undo puts FLAG back from flag version flagmanager_1" in text, text
    assert "partly restored" not in text and "undo: FLAG put back as it was before the task" in text
    np.testing.assert_array_equal(_cols(ms, "FLAG")[0], flag0)
    assert sorted(os.listdir(ms + ".flagversions")) == fv0          # no backup, no marker left


def test_completed_restore_leaves_no_marker(ms):
    from alakazam.caltasks import akflag, akflagmanager

    akflag(vis=ms, mode="manual")
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    assert not _cols(ms, "FLAG")[0].any()
    assert not glob.glob(ms + ".flagversions/*.in_progress")


# --------------------------------------------------------------------------------------------------
# 5. interface
# --------------------------------------------------------------------------------------------------
def test_unknown_keyword_hint_kept_with_duplicate_argument(ms):
    from alakazam.caltasks import akcal

    with pytest.raises(UnknownParameterError) as e:
        akcal(ms, vis=ms, gaintype="K")
    assert "jones" in " ".join(e.value.errors["gaintype"])
    assert e.value.errors["vis"] == ["given twice: positionally (argument 1) and as a keyword"]
    assert isinstance(e.value, TypeError)


def test_too_many_positionals_reported_with_unknown_keyword(ms):
    from alakazam.caltasks import akflag

    n = len(akflag.spec.names)
    with pytest.raises(UnknownParameterError) as e:
        akflag(*([ms] + [""] * n), flagbackp=True)
    assert "did you mean flagbackup" in " ".join(e.value.errors["flagbackp"])
    assert f"{n + 1} given, but akflag has {n} parameters" in " ".join(e.value.errors["positional arguments"])


def test_duplicate_argument_alone_still_a_type_error(ms):
    from alakazam.caltasks import akcal

    with pytest.raises(TypeError, match="vis"):
        akcal(ms, vis=ms)


@pytest.mark.parametrize("task", ["akapply", "akcal"])
def test_gainfield_typo_gets_did_you_mean(ms, task):
    import alakazam.caltasks as ct

    kw = dict(vis=ms, gaintable=[ms + "_c.h5"], gainfield="nearest_tme")
    kw.update(jones=["G0"] if task == "akapply" else ["G"], gainjones=["G0"] if task == "akcal" else None)
    kw = {k: v for k, v in kw.items() if v is not None}
    if task == "akcal":
        kw["caltable"] = ms + "_out.h5"
    with pytest.raises(ParameterError) as e:
        getattr(ct, task)(**kw)
    msg = " ".join(e.value.errors["gainfield"])
    assert "did you mean 'nearest_time'" in msg and "CASA's gainfield" not in msg, msg
    kw["gainfield"] = ["3C147"]                  # CASA's field name: the CASA hint, as before
    with pytest.raises(ParameterError) as e:
        getattr(ct, task)(**kw)
    assert "gainfield='pinned'" in " ".join(e.value.errors["gainfield"])


def test_hints_never_name_a_real_parameter():
    import alakazam.caltasks as ct
    from alakazam.caltasks.casa_hints import HINTS, VALUE_HINTS

    for task, hints in HINTS.items():
        names = getattr(ct, task).spec.names
        assert not set(hints) & set(names), (task, set(hints) & set(names))
    for task, name in VALUE_HINTS:
        assert name in getattr(ct, task).spec.names


def test_akflag_flagbackup_is_a_parameter_not_a_hint(ms):
    from alakazam.caltasks import akflag

    r = akflag(vis=ms, mode="summary", flagbackup=False)
    assert isinstance(r, dict)


# --------------------------------------------------------------------------------------------------
# 6. quackincrement (flagdata's), measured with CASA 6.7 on quack_ms
# --------------------------------------------------------------------------------------------------
def quack_ms(base_ms, out):
    """The MS with scan 1's first two integrations flagged, scan 2's last one flagged and its first one
    flagged except baseline C01-C02, and scan 3's first one flagged except channel 3 of the 4th
    correlation."""
    shutil.copytree(base_ms, out)
    with table(out, readonly=False, ack=False) as t:
        tm, sc, a1, a2, f = (t.getcol(c) for c in ("TIME", "SCAN_NUMBER", "ANTENNA1", "ANTENNA2", "FLAG"))
        u = {s: np.unique(tm[sc == s]) for s in (1, 2, 3)}
        f[(sc == 1) & np.isin(tm, u[1][:2])] = True
        f[(sc == 2) & (tm == u[2][-1])] = True
        f[(sc == 2) & (tm == u[2][0]) & ~((a1 == 1) & (a2 == 2))] = True
        m3 = (sc == 3) & (tm == u[3][0])
        f[m3] = True
        f[np.ix_(np.flatnonzero(m3), [3], [3])] = False
        t.putcol("FLAG", f)
        t.putcol("FLAG_ROW", f.all(axis=(1, 2)))
    return out


#: (job, integrations of scans 1, 2, 3 with newly flagged samples) as CASA 6.7 flagdata flagged them
QUACK_CASA = [
    (dict(quackmode="beg"), ["..........", "XX........", "XX........"]),
    (dict(quackmode="endb"), ["........XX", "........X.", "........XX"]),
    (dict(quackmode="end"), ["..XXXXXX..", "XXXXXXXX..", "XXXXXXXX.."]),
    (dict(quackmode="tail"), ["..XXXXXXXX", "..XXXXXXX.", "..XXXXXXXX"]),
    (dict(quackmode="beg", quackincrement=True), ["..XX......", "XX........", "XX........"]),
    (dict(quackmode="endb", quackincrement=True), ["........XX", ".......XX.", "........XX"]),
    (dict(quackmode="end", quackincrement=True), ["..XXXXXX..", "XXXXXXX...", "XXXXXXXX.."]),
    (dict(quackmode="tail", quackincrement=True), ["....XXXXXX", "..XXXXXXX.", "..XXXXXXXX"]),
    (dict(quackmode="beg", quackincrement=True, spw="0:0~2"), ["..XX......", "XX........", ".X........"]),
    (dict(quackmode="beg", quackincrement=True, correlation="XX"),
     ["..XX......", "XX........", ".X........"]),
    (dict(quackmode="beg", quackincrement=True, antenna="C00&C01"),
     ["..XX......", ".XX.......", "XX........"]),
    (dict(quackmode="beg", quackincrement=True, timerange="07:57:00~09:00:00"),
     ["..........", ".XX.......", "XX........"]),
]


def _new_by_integration(before, after, tm, sc):
    new = (after & ~before).any(axis=(1, 2))
    return ["".join("X" if new[(sc == s) & (tm == x)].any() else "." for x in np.unique(tm[sc == s]))
            for s in (1, 2, 3)]


@pytest.fixture(scope="module")
def q_ms(base_ms, tmp_path_factory):
    return quack_ms(base_ms, str(tmp_path_factory.mktemp("quack") / "q.ms"))


@pytest.mark.parametrize("i", range(len(QUACK_CASA)), ids=[",".join(f"{k}={v}" for k, v in j.items())
                                                          for j, _ in QUACK_CASA])
def test_quackincrement_as_casa_measured(q_ms, tmp_path, i):
    from alakazam.caltasks import akflag

    job, want = QUACK_CASA[i]
    ms = str(tmp_path / "q.ms")
    shutil.copytree(q_ms, ms)
    before, tm, sc = _cols(ms, "FLAG", "TIME", "SCAN_NUMBER")
    akflag(vis=ms, mode="quack", quackinterval=60.0, **job)
    assert _new_by_integration(before, _cols(ms, "FLAG")[0], tm, sc) == want


def test_quackincrement_moves_on_each_run(ms):
    from alakazam.caltasks import akflag

    tm, sc = _cols(ms, "TIME", "SCAN_NUMBER")
    for k in range(1, 4):
        akflag(vis=ms, mode="quack", quackinterval=60.0, quackincrement=True)
        rows = _cols(ms, "FLAG")[0].all(axis=(1, 2))
        for s in (1, 2, 3):
            u = np.unique(tm[sc == s])
            np.testing.assert_array_equal([rows[(sc == s) & (tm == x)].all() for x in u],
                                          np.arange(len(u)) < 2 * k)
    akflag(vis=ms, mode="quack", quackinterval=60.0, quackincrement=False)     # (plain: nothing new)
    assert _cols(ms, "FLAG")[0].all(axis=(1, 2)).sum() == 6 * 6 * 3


def test_quackincrement_with_workers_runs_in_process(q_ms, tmp_path):
    from alakazam.caltasks import akflag

    ms = str(tmp_path / "q.ms")
    shutil.copytree(q_ms, ms)
    before, tm, sc = _cols(ms, "FLAG", "TIME", "SCAN_NUMBER")
    akflag(vis=ms, mode="quack", quackinterval=60.0, quackincrement=True, workers=1)
    assert _new_by_integration(before, _cols(ms, "FLAG")[0], tm, sc) == QUACK_CASA[4][1]


@needs_casa
def test_quackincrement_matches_casa_flagdata(q_ms, tmp_path):
    from alakazam.caltasks import akflag

    jobs = [dict(quackinterval=60.0, **j) for j, _ in QUACK_CASA]
    code = textwrap.dedent(f"""
        import json, shutil
        import numpy as np
        from casatasks import flagdata
        from casatools import table
        tb = table()
        for i, kw in enumerate(json.loads({json.dumps(json.dumps(jobs))})):
            ms = "c%d.ms" % i
            shutil.copytree({q_ms!r}, ms)
            flagdata(vis=ms, mode="quack", flagbackup=False, **kw)
            tb.open(ms)
            np.save(ms + ".npy", np.transpose(tb.getcol("FLAG"), (2, 1, 0)))
            tb.close()
    """)
    r = subprocess.run([CASA_PY, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-3000:]
    for i, kw in enumerate(jobs):
        ms = str(tmp_path / f"a{i}.ms")
        shutil.copytree(q_ms, ms)
        akflag(vis=ms, mode="quack", **kw)
        np.testing.assert_array_equal(_cols(ms, "FLAG")[0], np.load(tmp_path / f"c{i}.ms.npy"),
                                      err_msg=str(kw))
