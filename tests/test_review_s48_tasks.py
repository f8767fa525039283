"""Session 48's hostile review of the task interface: CASA's comma-separated field string in akapply, the
place of a bad field in its selection."""

import os
import shutil

import numpy as np
import pytest

from alakazam.caltasks import akapply, akcal
from alakazam.errors import ParameterError


@pytest.fixture
def chain(small_chain_table, tmp_path):
    ms, cal, _ = small_chain_table
    shutil.copytree(ms, tmp_path / "sim.ms")
    return str(tmp_path / "sim.ms"), cal


def test_akapply_takes_casas_comma_separated_field_string(chain):
    """applycal(field='3C286,3C147') selects two fields; akapply refused it as one field named
    '3C286,3C147' ('item 0 is not a field name ... or one comma-separated string for every step')."""
    ms, cal = chain
    r = akapply(vis=ms, field="3C286,3C147", gaintable=[cal], jones=["K0"])
    assert set(r["flagged_by_term"]) == {"K0/3C286", "K0/3C147"}        # both fields, not TARGET
    with pytest.raises(ParameterError) as e:
        akapply(vis=ms, field="3C286,NOPE", gaintable=[cal], jones=["K0"])
    assert "'NOPE' (item 1) is not a field name" in str(e.value)


@pytest.mark.parametrize("task", ["akapply", "akcal"])
def test_a_bad_field_is_named_with_its_place_in_the_selection(chain, tmp_path, task):
    """'(item N)' was always 0: each item is checked alone."""
    ms, cal = chain
    with pytest.raises(ParameterError) as e:
        if task == "akapply":
            akapply(vis=ms, field=["3C286", "NOPE", "BAR"], gaintable=[cal], jones=["K0"])
        else:
            akcal(vis=ms, caltable=str(tmp_path / "x.h5"), field="3C286,NOPE,BAR", jones=["G"])
    msg = str(e.value)
    assert "'NOPE' (item 1)" in msg and "'BAR' (item 2)" in msg, msg


def _yaml(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return str(p)


def _solve_then_apply(ms, out, table, extra=""):
    """A YAML file's text: a G solve of 3C286 into ``out``, then an apply of G0 from ``table``."""
    return f"""
solve:
  - ms: {ms}
    output: {out}
    ref_ant: C00
    jones: [G]
    field: [3C286]
    time_interval: [scan]
apply:
  - ms: {ms}
    jones: [G0]
    tables: [{table}]
{extra}"""


def test_a_file_that_is_no_solution_table_is_refused_before_anything_runs(chain, tmp_path):
    """A text file as a table was found only when the block reading it ran (after the solve before it
    had written its table), named 'caltable'; in akcal, akflag too."""
    from alakazam.caltasks import akflag
    from alakazam.caltasks.yamlrun import run_yaml

    ms, cal = chain
    (tmp_path / "notes.txt").write_text("my notes\n")
    y = _yaml(tmp_path, _solve_then_apply(ms, tmp_path / "z.h5", tmp_path / "notes.txt"))
    with pytest.raises(ParameterError) as e:
        run_yaml(y)
    assert "apply[0].tables[0]" in str(e.value) and "is not a solution table" in str(e.value)
    assert not (tmp_path / "z.h5").exists()
    notes = str(tmp_path / "notes.txt")
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=str(tmp_path / "q.h5"), jones=["G"], gaintable=[notes], gainjones=["K0"])
    assert "gaintable[0]" in str(e.value) and "is not a solution table" in str(e.value)
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="rflag", datacolumn="residual", gaintable=[notes], gainjones=["K0"])
    assert "gaintable" in str(e.value) and "is not a solution table" in str(e.value)


def test_pinned_preapply_without_solution_field_is_found_before_a_flag_block_runs(chain, tmp_path):
    """A flag block rewrote FLAG (and saved a version), then the solve after it stopped: 'K0:
    field_select pinned needs solution_field' (no YAML path; only that error)."""
    from alakazam.caltasks.yamlrun import run_yaml

    ms, cal = chain
    y = _yaml(tmp_path, f"""
flag:
  - ms: {ms}
    mode: clip
    clipminmax: [0, 50]
solve:
  - ms: {ms}
    output: {tmp_path / 'z.h5'}
    ref_ant: C99
    jones: [G]
    field: [3C147]
    time_interval: [scan]
    external_preapply:
      tables: [{cal}]
      jones: [K0]
      field_select: [pinned]
""")
    with pytest.raises(ParameterError) as e:
        run_yaml(y)
    msg = str(e.value)
    assert ("solve[0].external_preapply.solution_field[0]: is required when "
            "external_preapply.field_select is 'pinned'") in msg
    assert "solve[0].ref_ant" in msg                # with the others
    assert not os.path.exists(ms + ".flagversions")
    with pytest.raises(ParameterError) as e:        # akcal: its own names, with the others
        akcal(vis=ms, caltable=str(tmp_path / "q.h5"), jones=["G"], field="3C147", gaintable=[cal],
              gainjones=["K0"], gainfield=["pinned"], refant="C99")
    assert "gainsolutionfield[0]: is required when gainfield is 'pinned'" in str(e.value)
    assert "refant" in str(e.value)


def test_akcal_spwmap_to_a_missing_spw_names_spwmap_before_the_solve(chain, tmp_path):
    ms, cal = chain
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=str(tmp_path / "q.h5"), jones=["G"], field="3C147", gaintable=[cal],
              gainjones=["K0"], spwmap=[9])
    assert "spwmap: [9]" in str(e.value) and "SPW 9" in str(e.value)
    assert not (tmp_path / "q.h5").exists()


def test_a_flagversions_file_is_found_before_the_solve_block_runs(chain, tmp_path):
    from alakazam.caltasks.yamlrun import run_yaml

    ms, cal = chain
    with open(ms + ".flagversions", "w") as f:
        f.write("junk\n")
    y = _yaml(tmp_path, _solve_then_apply(ms, tmp_path / "z.h5", tmp_path / "z.h5",
                                          "    propagate_flags: true\n"))
    with pytest.raises(ParameterError) as e:
        run_yaml(y)
    assert "apply[0].ms" in str(e.value) and "flagversions' exists and is not a directory" in str(e.value)
    assert not (tmp_path / "z.h5").exists()
    assert open(ms + ".flagversions").read() == "junk\n"


def test_unset_refant_takes_the_first_antenna_with_data(tmp_path):
    """ANTENNA 0 without rows and no refant given: 'solve[0].ref_ant: antenna C00 has no data' blamed a
    parameter the user never set.  Now the first antenna with data serves (CASA's refant='' runs too);
    a refant given that has no data stays an error."""
    from casacore.tables import table

    from alakazam.io import hdf5
    from alakazam.sim import simulate_ms

    ms = str(tmp_path / "na.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=2, n_chan=(8, 4), duration_h=0.5, seed=3)
    # (ANTENNA ids 1 and 6 have no rows in the simulator's MS) ANTENNA 0's rows go to ANTENNA 6
    with table(ms, readonly=False, ack=False) as t:
        for col in ("ANTENNA1", "ANTENNA2"):
            a = t.getcol(col)
            t.putcol(col, np.where(a == 0, 6, a))
    out = str(tmp_path / "g.h5")
    akcal(vis=ms, caltable=out, field="3C286", jones=["G"], solint=["scan"])
    s = hdf5.read_term(out, "G0")[0]
    assert s.attrs.get("ref_ant_name") == "C02" and "C00" not in s.ant_names and "C06" in s.ant_names
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=str(tmp_path / "h.h5"), field="3C286", jones=["G"], refant="C00")
    assert "'C00' has no data" in str(e.value)


def test_log_file_inside_a_table_directory_is_refused(chain, tmp_path):
    """--log MS/x.log wrote into the MS directory (plots and tables refuse such paths); with simulate
    --overwrite the log went away with the old MS."""
    import subprocess
    import sys

    ms, cal = chain
    r = subprocess.run([sys.executable, "-m", "alakazam.cli", "info", cal, "--log", ms + "/y.log"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "lies inside the CASA table" in r.stderr, r.stderr
    assert not os.path.exists(ms + "/y.log")


def test_warnings_name_the_scans_of_a_set_spanning_scans():
    """'G0 field 3C147 spw 1 scan 0: every solution flagged' named a scan the MS does not have (the
    HDF5 group of a time_interval inf set is scan_0)."""
    from types import SimpleNamespace

    from alakazam.flow import _scan_words

    assert _scan_words(SimpleNamespace(scan_id=0, attrs={"scans": np.array([1, 2, 3, 4])})) == "scans 1-4"
    assert _scan_words(SimpleNamespace(scan_id=0, attrs={"scans": np.array([2, 5])})) == "scans 2, 5"
    assert _scan_words(SimpleNamespace(scan_id=7, attrs={})) == "scan 7"


@pytest.mark.parametrize("spw", ["", "0:2~5"])
def test_calflag_flags_samples_whose_data_are_not_finite(chain, spw):
    """A review: NaN DATA (unflagged) went into CORRECTED_DATA as NaN, unflagged, with applymode calflag;
    no solution corrects them.  Now flagged (and counted) with the samples without a solution; calonly
    leaves FLAG alone."""
    from casacore.tables import table

    ms, cal = chain
    with table(ms, readonly=False, ack=False) as t:
        q = t.query("DATA_DESC_ID==1 && ANTENNA1!=ANTENNA2")   # (SPW 0, 8 channels)
        d = q.getcol("DATA")
        d[5:9, 3, :] = np.nan
        d[20, 4, 1] = np.inf
        d[7, 4, :] = 0                  # a dropout: 0 in every correlation
        d[8, 4, 0] = 0                  # one correlation 0: kept
        q.putcol("DATA", d)
        rows = q.rownumbers()
    r = akapply(vis=ms, gaintable=[cal], jones=["K0", "G0"], applymode="calflag", spw=spw)
    assert r["flagged_bad_data"] == 4 * 4 + 1 + 4
    with table(ms, ack=False) as t:
        q = t.query("DATA_DESC_ID==1 && ANTENNA1!=ANTENNA2")
        assert list(q.rownumbers()) == list(rows)
        f, c = q.getcol("FLAG"), q.getcol("CORRECTED_DATA")
    assert f[5:9, 3, :].all() and f[20, 4, 1] and not f[20, 4, 0]
    assert f[7, 4, :].all() and not f[8, 4, :].any()
    assert np.isfinite(c[~f]).all()


def test_replacing_note_once_per_key_with_iterations(chain, tmp_path, caplog):
    """'K0: replacing the existing K0 in ...' was logged once per round of iterations."""
    import logging

    ms, _ = chain
    out = str(tmp_path / "r.h5")
    kw = dict(vis=ms, caltable=out, field="3C286", jones=["K", "G"], solint=["scan", "inf"],
              freqint=["full", "1MHz"], iterations=3, minblperant=3)
    akcal(**kw)
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="alakazam")
    akcal(**kw)
    notes = [r.getMessage() for r in caplog.records if "replacing the existing" in r.getMessage()]
    assert len(notes) == 2 and notes[0].startswith("K0:") and notes[1].startswith("G0:"), notes


def test_bad_data_counted_in_the_correlations_written(chain):
    """A review: with correlation='XX,YY' the count covered all four correlations where FLAG is written
    for two."""
    from casacore.tables import table

    ms, cal = chain
    with table(ms, readonly=False, ack=False) as t:
        q = t.query("DATA_DESC_ID==1 && ANTENNA1!=ANTENNA2")   # (SPW 0, 8 channels)
        d = q.getcol("DATA")
        d[5:9, 3, :] = np.nan
        d[7, 4, :] = 0
        q.putcol("DATA", d)
    r = akapply(vis=ms, gaintable=[cal], jones=["K0", "G0"], applymode="calflag", correlation="XX,YY")
    assert r["flagged_bad_data"] == 4 * 2 + 2
    with table(ms, ack=False) as t:
        f = t.query("DATA_DESC_ID==1 && ANTENNA1!=ANTENNA2").getcol("FLAG")
    assert f[5:9, 3][:, [0, 3]].all() and not f[5:9, 3][:, [1, 2]].any() and f[7, 4, [0, 3]].all()


def test_negative_numbers_in_scientific_notation_are_values():
    """'alakazam flag --mode shadow --tolerance -1e9' failed with 'expected one argument' (argparse of
    Python < 3.13 reads '-1e9' as an option)."""
    from alakazam.cli import build_parser

    for text, value in (("-1e9", -1e9), ("-2.5E-3", -2.5e-3), ("-5", -5.0), ("-.5", -0.5)):
        a = build_parser().parse_args(["flag", "--vis", "x.ms", "--mode", "shadow", "--tolerance", text])
        assert float(a.tolerance) == value
