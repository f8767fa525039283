"""Session-23 review: defects a CASA user meets on the less-trodden surfaces (akplot, akexport, akinfo,
akflagmanager, akfluxscale, akshell, the YAML runner), each pinned by the test written before its fix."""

import os

import pytest

from alakazam.errors import AlakazamError, ParameterError
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 5-antenna MS (two SPWs of 4 channels, 1 h of 120 s integrations) and a table whose K0 has
    3C286 only and whose G0 (solint inf) has 3C286 and 3C147 -> (ms, cal.h5)."""
    from alakazam.caltasks import akcal

    d = tmp_path_factory.mktemp("review23")
    ms, cal = str(d / "t.ms"), str(d / "cal.h5")
    simulate_ms(ms, feed="linear", n_ant=5, n_chan=(4, 4), int_s=120.0, scan_len_s=600.0, duration_h=1.0,
                noise=0.05, seed=23, leakage=False, dead_ant=False)
    akcal(vis=ms, caltable=cal, field=["3C286", "3C286,3C147"], jones=["K", "G"], solint=["scan", "inf"],
          refant="C00", minblperant=2)
    return ms, cal


def _errors(exc):
    """{parameter name without a task/block prefix: messages} of a ParameterError."""
    return {k.split(".")[-1]: v for k, v in exc.errors.items()}


# ------------------------------------------------------------------ akcal / YAML solve: MS selections
def test_akcal_reports_every_bad_ms_selection_together(tiny, tmp_path):
    """field, spw, scan, antenna, timerange, refant that do not exist in the MS were reported one at a
    time (the first the engine resolved), after the Begin line; now all together, before anything."""
    from alakazam.caltasks import akcal

    ms, _ = tiny
    out = str(tmp_path / "c.h5")
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=out, jones=["G"], field="NOPE", spw="9", scan="77", antenna="ZZ",
              timerange="xx", refant="C99", modelcolumn="MODEL")
    errs = _errors(e.value)
    for k in ("field", "spw", "scan", "antenna", "timerange", "refant", "modelcolumn"):
        assert k in errs, (k, errs)
    assert "NOPE" in errs["field"][0] and "C99" in errs["refant"][0]
    assert not os.path.exists(out)


def test_yaml_preflight_checks_solve_selections_before_a_flag_block_runs(tiny, tmp_path):
    """A solve block's field typo was found only when the block ran, after the flag blocks had written
    FLAG; the preflight now names it (with the YAML path) and nothing runs."""
    import shutil

    from alakazam.caltasks.yamlrun import run_yaml

    ms, _ = tiny
    ms2 = str(tmp_path / "y.ms")
    shutil.copytree(ms, ms2)
    y = tmp_path / "x.yaml"
    y.write_text(f"flag:\n  - ms: {ms2}\n    mode: manual\n    antenna: C02\n"
                 f"solve:\n  - ms: {ms2}\n    output: {tmp_path / 'c.h5'}\n    jones: [G]\n"
                 f"    field: [3C28]\n    ref_ant: C77\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(y))
    assert "solve[0].field" in e.value.errors and "solve[0].ref_ant" in e.value.errors
    assert not os.path.exists(ms2 + ".flagversions")          # the flag block did not run


# ------------------------------------------------------------------ akplot
def test_akplot_field_of_one_key_plots_that_key(tiny, tmp_path):
    """akplot(field='3C147') on a table whose K0 has only 3C286 failed ('3C147 has no solutions in this
    key') although G0 has it; the keys that have the field are plotted."""
    from alakazam.caltasks import akplot

    _, cal = tiny
    res = akplot(caltable=cal, field="3C147", outdir=str(tmp_path / "p"), iteraxis="field")
    names = [os.path.basename(f) for f in res["files"]]
    assert "G0_overview.png" in names and "K0_overview.png" not in names
    assert all("3C286" not in f for f in res["files"])


def test_akplot_reports_every_bad_parameter_and_no_traceback_for_a_file_outdir(tiny, tmp_path):
    """outdir naming an existing file raised FileExistsError from os.makedirs (a traceback) after the
    Begin line; unknown keys, fields and SPWs were reported one at a time, at run time."""
    from alakazam.caltasks import akplot

    _, cal = tiny
    f = tmp_path / "afile"
    f.write_text("mine")
    with pytest.raises(ParameterError) as e:
        akplot(caltable=cal, outdir=str(f))
    assert "outdir" in e.value.errors and f.read_text() == "mine"
    with pytest.raises(ParameterError) as e:
        akplot(caltable=cal, jones=["X9"], field="NOPE", spw="7", iteraxis="baseline", outdir=str(f))
    assert set(e.value.errors) == {"jones", "field", "spw", "iteraxis", "outdir"}, e.value.errors
    assert "X9" in e.value.errors["jones"][0] and "NOPE" in e.value.errors["field"][0]


def test_akcal_plotdir_that_is_a_file_is_refused_before_the_solve(tiny, tmp_path):
    """akcal(plotdir=<a file>) solved and wrote the table, then failed naming 'outdir'."""
    from alakazam.caltasks import akcal

    ms, _ = tiny
    f = tmp_path / "afile"
    f.write_text("mine")
    out = tmp_path / "c.h5"
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=str(out), jones=["G"], field="3C286", refant="C00", plotdir=str(f))
    assert "plotdir" in _errors(e.value) and not out.exists()


# ------------------------------------------------------------------ akfluxscale
def test_akfluxscale_reports_every_bad_parameter_together(tiny, tmp_path):
    """A bad reference field, transfer field and spw were reported one at a time, after the Begin line,
    under YAML names (reference_field, ...); a missing transfertable was named 'caltable'."""
    from alakazam.caltasks import akfluxscale

    _, cal = tiny
    out = tmp_path / "fs.h5"
    with pytest.raises(ParameterError) as e:
        akfluxscale(caltable=cal, fluxtable=str(out), reference=["NOPE"], transfer=["ALSO"], jones="G0",
                    spw="7")
    errs = _errors(e.value)
    assert set(errs) == {"reference", "transfer", "spw"}, errs
    with pytest.raises(ParameterError) as e:
        akfluxscale(caltable=cal, fluxtable=str(out), reference=["3C286"], jones="G0",
                    transfertable=str(tmp_path / "nope.h5"))
    assert set(_errors(e.value)) == {"transfertable"}
    with pytest.raises(ParameterError) as e:                      # K is not a gain
        akfluxscale(caltable=cal, fluxtable=str(tmp_path), reference=["3C286"], jones="K0")
    assert set(_errors(e.value)) == {"jones", "fluxtable"}
    assert not out.exists()


def test_fluxscale_block_reports_every_bad_field_at_run_time(tiny, tmp_path):
    """The YAML path (run_fluxscale on a config): all bad parts together, named by YAML key."""
    from alakazam.calibration.fluxscale import run_fluxscale
    from alakazam.config import fluxscale_config_from_dict

    _, cal = tiny
    cfg = fluxscale_config_from_dict(dict(reference_table=cal, output=str(tmp_path / "f.h5"),
                                          reference_field=["NOPE"], transfer_field=["ALSO"], jones_type="G0"))
    with pytest.raises(ParameterError) as e:
        run_fluxscale(cfg)
    assert set(e.value.errors) == {"reference_field", "transfer_field"}


# ------------------------------------------------------------------ akexport
def test_akexport_reports_every_bad_parameter_together(tiny, tmp_path):
    """An existing casatable hid an unknown key, a missing vis and an unknown crossphase key."""
    from alakazam.caltasks import akexport

    ms, cal = tiny
    with pytest.raises(ParameterError) as e:
        akexport(caltable=cal, jones="X3", casatable=ms, vis=str(tmp_path / "nope.ms"), crossphase="CP9")
    assert set(e.value.errors) == {"casatable", "vis", "jones", "crossphase"}, e.value.errors
    with pytest.raises(ParameterError) as e:                      # an MS given as the caltable
        akexport(caltable=ms, jones="G0", casatable=str(tmp_path / "g.tb"))
    assert "is a directory" in e.value.errors["caltable"][0] and "errno" not in str(e.value)
    with pytest.raises(ParameterError) as e:                      # (was casacore's RuntimeError)
        akexport(caltable=cal, jones="G0", casatable=str(tmp_path / "no" / "dir" / "g.tb"))
    assert "does not exist" in e.value.errors["casatable"][0]


def test_akexport_interrupted_leaves_no_half_written_table(tiny, tmp_path, monkeypatch):
    """Ctrl-C (or any error) while the subtables were copied left a half-written casatable, which the
    re-run then refused as existing."""
    from alakazam.caltasks import akexport
    from alakazam.io import casatable

    _, cal = tiny
    out = tmp_path / "g.tb"

    def boom(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(casatable, "_history", boom)
        with pytest.raises(KeyboardInterrupt):
            akexport(caltable=cal, jones="G0", casatable=str(out))
    assert os.listdir(tmp_path) == []
    res = akexport(caltable=cal, jones="G0", casatable=str(out))
    assert res["path"] == str(out) and len(casatable.read_table(str(out))) > 0


# ------------------------------------------------------------------ akshell
def _shell(tmp_path):
    import io

    from alakazam.shell.akshell import ShellSession

    out = io.StringIO()
    return ShellSession(out=out, color=False, cwd=str(tmp_path)), out


def test_akshell_tput_tget_bad_paths_print_one_line_and_change_nothing(tmp_path):
    """saveinputs / tput into a missing directory or onto a directory, and tget of a directory, printed
    Python tracebacks; tget of a file that is not a .last file said 'restored'."""
    sh, out = _shell(tmp_path)
    sh.handle("vis = 'mine.ms'")
    for line in ("saveinputs akcal /nonexistent/dir/x.last", f"tput akcal {tmp_path}",
                 f"tget akcal {tmp_path}"):
        sh.handle(line)
    other = tmp_path / "notes.txt"
    other.write_text("import os\nx = f(1)\n")
    sh.handle(f"tget akcal {other}")
    text = out.getvalue()
    assert "Traceback" not in text and "restored" not in text, text
    assert text.count("saveinputs:") == 1 and text.count("tput:") == 1 and text.count("tget:") == 2, text
    assert sh.ns["vis"] == "mine.ms"


def test_akshell_python_error_is_one_line(tmp_path):
    """A NameError typed at the prompt printed a traceback of akshell.py's own frame."""
    sh, out = _shell(tmp_path)
    sh.handle("inp(akfoo)")
    assert out.getvalue().strip() == "NameError: name 'akfoo' is not defined"
    sh.debug = True
    sh.handle("inp(akfoo)")
    assert "Traceback" in out.getvalue()


# ------------------------------------------------------------------ akinfo / akflagmanager
def test_akinfo_and_akflagmanager_say_what_a_wrong_path_is(tiny, tmp_path):
    """akinfo(vis='cal.h5') said the existing cal.h5 'does not exist'; akflagmanager(mode='list') of
    any path (a file, a table) listed 'no flag versions saved' as if it were an MS."""
    from alakazam.caltasks import akflagmanager, akinfo

    ms, cal = tiny
    with pytest.raises(AlakazamError, match="is a file, not a Measurement Set"):
        akinfo(vis=cal)
    with pytest.raises(ParameterError) as e:
        akflagmanager(vis=cal)
    assert "is a file, not a Measurement Set" in e.value.errors["vis"][0]
    with pytest.raises(ParameterError) as e:             # restore of a version that is not there
        akflagmanager(vis=ms, mode="restore", versionname="nope")
    assert "not found" in e.value.errors["versionname"][0]
    assert not os.path.exists(ms + ".flagversions")


def test_akflag_unknown_gainjones_reported_with_the_other_parameters(tiny, tmp_path):
    """A gainjones key missing from its gaintable was found at run time, after the Begin line (and hid
    every other bad parameter)."""
    from alakazam.caltasks import akflag

    ms, cal = tiny
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="clip", field="NOPE", clipminmax=[0, 100], gaintable=[cal], gainjones=["X0"])
    assert set(e.value.errors) == {"field", "gainjones"}, e.value.errors
    assert "X0" in e.value.errors["gainjones"][0]
    assert not os.path.exists(ms + ".flagversions")


def test_yaml_block_with_errors_still_reports_its_missing_files(tmp_path):
    """A fluxscale block without reference_field did not report that its reference_table does not exist
    (the must-exist paths were checked only on blocks without other errors)."""
    from alakazam.caltasks.yamlrun import run_yaml

    y = tmp_path / "x.yaml"
    y.write_text("fluxscale:\n  - reference_table: never.h5\n    output: f.h5\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(y))
    assert set(e.value.errors) == {"fluxscale[0].reference_field", "fluxscale[0].reference_table"}


# ------------------------------------------------------------------ akapply
def test_akapply_reports_every_bad_parameter_together(tiny, tmp_path):
    """A bad interp hid a missing gaintable, an unknown key and a field / spw / scan / antenna that the MS
    does not have (those were found at run time, one at a time, after the Begin line)."""
    from alakazam.caltasks import akapply
    from casacore.tables import table

    ms, cal = tiny
    with pytest.raises(ParameterError) as e:
        akapply(vis=ms, gaintable=[cal, str(tmp_path / "nope.h5")], jones=["G9", "G0"], field="NOPE",
                spw="9", scan="77", antenna="ZZ", interp=["zz", "nearest"])
    errs = _errors(e.value)
    assert {"interp[0]", "field", "spw", "scan", "antenna", "jones[0]", "gaintable[1]"} <= set(errs), errs
    with table(ms, ack=False) as t:
        assert "CORRECTED_DATA" not in t.colnames()


def test_akapply_one_gaintable_serves_every_key(tiny):
    """gaintable='cal.h5' with two keys was refused ('has 1 entries ... or a single value for all'),
    although the message offered a single value and akflag / YAML accept one table for every key."""
    from alakazam.caltasks import akapply

    ms, cal = tiny
    _, cfg = akapply.prepare(akapply.bind(vis=ms, gaintable=cal, jones=["K0", "G0"]))
    assert [(t.table, t.key) for t in cfg.terms] == [(cal, "K0"), (cal, "G0")]


def test_fluxscale_one_fully_flagged_spw_does_not_stop_the_others(tiny, tmp_path, caplog):
    """A transfer field whose solutions in one SPW are all flagged made the whole akfluxscale fail
    ('no antenna has valid solutions ... in SPW 0'), so the SPWs (and fields) with good solutions got no
    flux density either; CASA's fluxscale reports the others.  The bad SPW is now a warning, and only
    'nothing to scale' is an error."""
    import shutil

    import h5py

    from alakazam.caltasks import akfluxscale

    _, cal = tiny
    c2 = str(tmp_path / "c2.h5")
    shutil.copy(cal, c2)
    with h5py.File(c2, "r+") as f:
        def flag(name, obj):
            if name.endswith("flags") and "3C147" in name and "/spw_0/" in name:
                obj[...] = True
        f["G0"].visititems(flag)
    full = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "full.h5"), reference=["3C286"], jones="G0")
    res = akfluxscale(caltable=c2, fluxtable=str(tmp_path / "fs.h5"), reference=["3C286"], jones="G0")
    fid = next(k for k, v in res.items() if isinstance(v, dict) and v.get("fieldName") == "3C147")
    assert "0" not in res[fid] and "1" in res[fid]
    assert res[fid]["1"]["fluxd"][0] == pytest.approx(full[fid]["1"]["fluxd"][0], rel=1e-9)
    assert "3C147 SPW 0 is not scaled" in caplog.text
    with h5py.File(c2, "r+") as f:                                 # every SPW flagged: an error
        f["G0"].visititems(lambda n, o: o.__setitem__(Ellipsis, True)
                           if n.endswith("flags") and "3C147" in n else None)
    with pytest.raises(AlakazamError, match="nothing to scale"):
        akfluxscale(caltable=c2, fluxtable=str(tmp_path / "fs2.h5"), reference=["3C286"], jones="G0")


# ------------------------------------------------------------------ outputs
def test_an_output_that_is_not_an_hdf5_table_is_never_replaced(tiny, tmp_path):
    """akfluxscale(fluxtable='p1.py') replaced the user's script by an HDF5 file; akcal(caltable=<a text
    file>) solved, then failed with h5py's 'file signature not found' (an OSError)."""
    from alakazam.caltasks import akcal, akfluxscale

    ms, cal = tiny
    script = tmp_path / "p1.py"
    script.write_text("print('mine')\n")
    with pytest.raises(ParameterError) as e:
        akfluxscale(caltable=cal, fluxtable=str(script), reference=["3C286"], jones="G0")
    assert "not an alakazam HDF5 solution table" in _errors(e.value)["fluxtable"][0]
    with pytest.raises(AlakazamError, match="not an alakazam HDF5 solution table"):
        akcal(vis=ms, caltable=str(script), jones=["G"], field="3C286", refant="C00")
    assert script.read_text() == "print('mine')\n"
    import h5py
    import numpy as np

    other = tmp_path / "other.h5"                  # another program's HDF5 file
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(ParameterError):
        akfluxscale(caltable=cal, fluxtable=str(other), reference=["3C286"], jones="G0")
    with h5py.File(other, "r") as f:
        assert list(f) == ["data"]


def test_akapply_outputcolumn_differing_only_in_case_is_refused(tiny):
    """outputcolumn='corrected_data' (a CASA user's lower case) made a second full-size column beside
    CORRECTED_DATA, which CASA's tools never read."""
    from casacore.tables import table

    from alakazam.caltasks import akapply

    ms, cal = tiny
    with pytest.raises(ParameterError) as e:
        akapply(vis=ms, gaintable=cal, jones=["G0"], outputcolumn="corrected_data")
    assert "only in case" in _errors(e.value)["outputcolumn"][0]
    with table(ms, ack=False) as t:
        assert not {"corrected_data", "CORRECTED_DATA"} & set(t.colnames())


def test_akplot_interrupted_page_leaves_no_truncated_png(tiny, tmp_path, monkeypatch):
    """A Ctrl-C while matplotlib wrote a page left a truncated PNG under the page's name."""
    from alakazam.caltasks import akplot

    _, cal = tiny
    out = tmp_path / "p"

    def cut(self, path, *a, **k):
        with open(path, "wb") as fh:
            fh.write(b"\x89PNG")                     # the first bytes, then the interrupt
        raise KeyboardInterrupt

    from matplotlib.figure import Figure

    monkeypatch.setattr(Figure, "savefig", cut)
    with pytest.raises(KeyboardInterrupt):
        akplot(caltable=cal, jones=["G0"], outdir=str(out))
    assert [f for f in out.rglob("*") if f.is_file()] == []


def test_akshell_command_with_extra_words_does_nothing(tmp_path):
    """'go akflag extra words' ignored the extra words and ran akflag (default mode 'manual': every
    selected sample flagged); a command line the shell does not understand now does nothing."""
    sh, out = _shell(tmp_path)
    ran = []
    sh.go = lambda name=None: ran.append(name)
    sh.handle("go akflag extra words")
    sh.handle("tget akcal a.last more")
    assert ran == [] and out.getvalue().count("too many words") == 2
    sh.handle("go akflag")
    assert ran == ["akflag"]


def test_akshell_task_call_with_a_non_path_vis_names_the_parameter(tmp_path):
    """akcal(vis=3) typed at the prompt printed "TypeError: 'int' object is not iterable" (the Ctrl-C
    undo iterated vis) instead of the task's error naming vis."""
    sh, out = _shell(tmp_path)
    sh.handle("akcal(vis=3, caltable=4)")
    text = out.getvalue()
    assert "TypeError" not in text and "vis: must be one of the types" in text, text


def test_akflagmanager_restore_saves_the_flags_it_replaces(tiny, tmp_path):
    """restore wrote FLAG without saving the current flags: restoring the wrong version lost every flag
    set since, with no way back."""
    import shutil

    import numpy as np
    from casacore.tables import table

    from alakazam.caltasks import akflag, akflagmanager

    ms = str(tmp_path / "r.ms")
    shutil.copytree(tiny[0], ms)
    akflag(vis=ms, mode="manual", antenna="C02")                 # saves akflag_1, then flags C02
    with table(ms, ack=False) as t:
        mine = t.getcol("FLAG")
    res = akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    assert res["restored"] == "akflag_1" and res["backup"]
    akflagmanager(vis=ms, mode="restore", versionname=res["backup"])
    with table(ms, ack=False) as t:
        np.testing.assert_array_equal(t.getcol("FLAG"), mine)


def test_a_casa_caltable_given_as_vis_is_named_as_such(tiny, tmp_path):
    """alakazam info <CASA caltable> (told by content: a table directory = an MS) failed with casacore's
    'RuntimeError: Error in TaQL command' after the Begin line; akcal / akapply vis=<caltable> likewise."""
    from alakazam.caltasks import akexport, akinfo

    ms, cal = tiny
    tb = str(tmp_path / "g.tb")
    akexport(caltable=cal, jones="G0", casatable=tb)
    with pytest.raises(ParameterError) as e:
        akinfo(vis=tb)
    assert "is a CASA calibration table" in e.value.errors["vis"][0]
    from alakazam.core import ms_io

    with pytest.raises(AlakazamError, match="CASA calibration table"):
        ms_io.check_ms(tb)
    ms_io.check_ms(ms)


def test_yaml_section_that_is_not_a_list_of_blocks_is_named(tmp_path):
    """'solve: 5' or 'apply: [1, 2]' stopped 'alakazam run' with "internal error (TypeError): 'int' object
    is not iterable" instead of naming the section."""
    from alakazam.caltasks.yamlrun import run_yaml

    y = tmp_path / "x.yaml"
    y.write_text("solve: 5\napply: [1, 2]\nfluxscale:\n  - reference_table: nope.h5\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(y))
    assert {"solve", "apply[0]", "apply[1]", "fluxscale[0].reference_field"} <= set(e.value.errors)


def test_output_paths_expand_the_home_directory_as_input_paths_do(tiny, tmp_path, monkeypatch):
    """Input paths (vis, caltable) expanded '~'; outputs did not: akplot(outdir='~/pl') made a directory
    literally named '~' in the working directory, and akcal(caltable='~/c.h5') passed its checks, then
    failed on the lock file of './~/c.h5'."""
    from alakazam.caltasks import akcal, akplot

    ms, cal = tiny
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    akplot(caltable=cal, jones=["K0"], outdir="~/pl")
    akcal(vis=ms, caltable="~/c.h5", jones=["G"], field="3C286", refant="C00", minblperant=2)
    assert (home / "pl" / "K0_overview.png").exists() and (home / "c.h5").exists()
    assert list(cwd.iterdir()) == []
    import shutil

    from alakazam.caltasks.yamlrun import run_yaml                 # and in a YAML file (ms, tables)
    shutil.copytree(ms, home / "h.ms")
    y = tmp_path / "x.yaml"
    y.write_text("solve:\n  - ms: ~/h.ms\n    output: ~/y.h5\n    jones: [G]\n    field: [3C286]\n"
                 "    ref_ant: C00\n    min_bl_per_ant: 2\n"
                 "apply:\n  - ms: ~/h.ms\n    tables: [~/y.h5]\n    jones: [G0]\n    applymode: trial\n")
    out = run_yaml(str(y))
    assert (home / "y.h5").exists() and list(cwd.iterdir()) == []
    assert out["apply"][0]["samples"] > 0


def test_akcal_gaintable_and_gainjones_reported_with_the_other_parameters(tiny, tmp_path):
    """A pre-apply table that does not exist or a key not in it was found only at run time (after the
    Begin line), one at a time, and hid nothing else only because nothing else was checked with it."""
    from alakazam.caltasks import akcal

    ms, cal = tiny
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=str(tmp_path / "c.h5"), jones=["G"], field="NOPE", refant="C00",
              gaintable=[cal, str(tmp_path / "nope.h5")], gainjones=["X5", "G0"])
    assert {"field", "gainjones[0]", "gaintable[1]"} <= set(_errors(e.value)), e.value.errors


def test_yaml_preapply_and_apply_tables_checked_in_the_preflight(tiny, tmp_path):
    """A solve block's external_preapply table that does not exist was found when the block ran (named
    'caltable'); a key missing from an existing table (apply or pre-apply) likewise, one at a time."""
    from alakazam.caltasks.yamlrun import run_yaml

    ms, cal = tiny
    y = tmp_path / "x.yaml"
    y.write_text(f"solve:\n  - ms: {ms}\n    output: {tmp_path / 'c.h5'}\n    jones: [G]\n"
                 f"    field: [3C286]\n    ref_ant: C00\n    external_preapply:\n"
                 f"      tables: [{tmp_path / 'nope.h5'}, {cal}]\n"
                 f"      jones: [K0, X9]\n"
                 f"apply:\n  - ms: {ms}\n    tables: [{cal}]\n    jones: [Q7]\n    applymode: trial\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(y))
    assert {"solve[0].external_preapply.tables[0]", "solve[0].external_preapply.jones[1]",
            "apply[0].jones[0]"} <= set(e.value.errors), e.value.errors
    assert not (tmp_path / "c.h5").exists()


def test_simulate_bad_sizes_are_named_and_nothing_is_written(tmp_path):
    """alakazam simulate x.ms --n-ant 1 / --n-chan 0 / --hours -1 / --int-s 0 stopped with an internal
    ZeroDivisionError or IndexError and left a half-written MS behind."""
    from alakazam.sim import simulate_ms

    out = tmp_path / "z.ms"
    with pytest.raises(ParameterError) as e:
        simulate_ms(str(out), n_ant=1, n_chan=(4, 0), duration_h=-1, int_s=0, noise=-1)
    assert set(e.value.errors) == {"n_ant", "n_chan", "duration_h", "int_s", "noise"}
    with pytest.raises(ParameterError, match="shorter than one integration"):
        simulate_ms(str(out), n_ant=3, n_chan=(2,), duration_h=0.01, int_s=1000.0)
    assert list(tmp_path.iterdir()) == []


def test_akflag_selection_without_data_says_so(tiny, tmp_path, caplog):
    """akflag on a selection without rows (a field of the FIELD table that was never observed) returned
    total 0 without a word."""
    import shutil

    from casacore.tables import table

    from alakazam.caltasks import akflag

    ms = str(tmp_path / "e.ms")
    shutil.copytree(tiny[0], ms)
    with table(ms + "/FIELD", readonly=False, ack=False) as t:
        t.addrows(1)
        n = t.nrows() - 1
        for c in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            t.putcell(c, n, t.getcell(c, 0))
        t.putcell("NAME", n, "EMPTY")
    r = akflag(vis=ms, mode="manual", field="EMPTY", action="calculate")
    assert r["total"] == 0 and "has no data" in caplog.text


def test_akcal_empty_refant_is_the_default(tiny, tmp_path):
    """refant='' (CASA's unset) was refused as "'' is not an antenna"; it is the default, index 0."""
    import numpy as np

    from alakazam.caltasks import akcal
    from alakazam.io import hdf5

    ms, _ = tiny
    for i, ref in enumerate(("", [])):
        out = str(tmp_path / f"r{i}.h5")
        akcal(vis=ms, caltable=out, field="3C286", jones=["G"], solint=["inf"], refant=ref, minblperant=2)
        for s in hdf5.read_term(out, "G0"):        # antenna index 0 (C00) is the phase reference
            assert s.ant_names[0] == "C00"
            assert np.abs(np.angle(s.jones[0, ..., [0, 1], [0, 1]])).max() < 1e-9
            assert np.abs(np.angle(s.jones[1:, ..., 0, 0])).max() > 1e-3


def test_akexport_crossphase_only_for_a_d_term(tiny, tmp_path):
    """crossphase on a non-D key was ignored silently; a non-CP crossphase key too."""
    from alakazam.caltasks import akexport

    _, cal = tiny
    with pytest.raises(ParameterError) as e:
        akexport(caltable=cal, jones="G0", casatable=str(tmp_path / "g.tb"), crossphase="K0")
    msgs = " ".join(e.value.errors["crossphase"])
    assert "applies only with a D (leakage) key" in msgs and "'G0' is a G" in msgs, e.value.errors
    assert not os.path.exists(tmp_path / "g.tb")


def test_akexport_crossphase_with_a_gain_key_says_d_only_not_not_found(tiny, tmp_path):
    """jones='G0', crossphase='CP0' on a table without CP said "CP0 not found" (review 55a): the CP
    key is not looked up for a gain -- crossphase applies only with a D key."""
    from alakazam.caltasks import akexport

    _, cal = tiny
    with pytest.raises(ParameterError) as e:
        akexport(caltable=cal, jones="G0", casatable=str(tmp_path / "g.tb"), crossphase="CP0")
    msgs = " ".join(e.value.errors["crossphase"])
    assert "applies only with a D (leakage) key" in msgs and "not found" not in msgs, e.value.errors
    assert set(e.value.errors) == {"crossphase"}


def test_export_interrupt_message(tiny, tmp_path, monkeypatch, capsys):
    """Ctrl-C during `alakazam export` says what export guarantees (the table is renamed whole), not
    the solve's "blocks that finished are kept, and plot pages drawn so far" (review 55a)."""
    from alakazam import cli
    from alakazam.io import casatable

    _, cal = tiny
    real = casatable.write_table

    def interrupted(*a, **k):
        real(*a, **k)                       # the temporary is complete: cut before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(casatable, "write_table", interrupted)
    out = tmp_path / "g.tb"
    assert cli.main(["export", cal, "G0", str(out)]) == 130
    err = capsys.readouterr().err
    assert "renamed only when complete" in err and "plot pages" not in err and "blocks" not in err, err
    assert not os.path.exists(out) and not [p for p in os.listdir(tmp_path) if "akpartial" in p]


def test_plot_interrupt_message(tiny, tmp_path, monkeypatch, capsys):
    """Ctrl-C during `alakazam plot` says what akplot guarantees (each page whole), not the solve's
    "solution files ... blocks that finished are kept" (review 57d)."""
    from alakazam import cli, plots

    _, cal = tiny
    real, n = plots._save, []

    def interrupted(*a, **k):
        if n:
            raise KeyboardInterrupt
        n.append(real(*a, **k))             # one page written whole, then the interrupt
        return n[0]

    monkeypatch.setattr(plots, "_save", interrupted)
    out = tmp_path / "pages"
    assert cli.main(["plot", cal, "--outdir", str(out)]) == 130
    err = capsys.readouterr().err
    assert "pages drawn so far stay" in err and "solution files" not in err and "blocks" not in err, err
    pages = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
    assert pages == [n[0]] and pages[0].endswith(".png")
