"""Session 24 review of akflag (CASA flagdata's conventions) and of the README's first-contact commands:
each test failed before its fix (small simulated MSs)."""

import os
import sys

import numpy as np
import pytest

from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import small_flag_ms  # noqa: E402  (tests/small_flag_ms.py)
from small_flag_ms import cols, put  # noqa: E402

base_ms, ms = small_flag_ms.base_ms, small_flag_ms.ms      # its two fixtures (module MS, a copy per test)


def test_extend_growtime_counts_the_whole_scan_of_a_baseline_with_a_missing_integration(ms):
    """growtime is per baseline and scan (flagdata; alakazam/flagging/extend.py): a baseline missing one
    integration in the middle of a scan is one plane for growtime/growfreq, not two (before, each side
    of the gap was its own plane, so 3 flagged of 9 integrations (33%) grew the channel over the 5
    integrations before the gap (60%))."""
    from alakazam.caltasks import akflag

    a1, a2, scan = cols(ms, "ANTENNA1", "ANTENNA2", "SCAN_NUMBER")
    idx = np.flatnonzero((a1 == a1[0]) & (a2 == a2[0]) & (scan == scan[0]))
    assert len(idx) == 10
    extra = 1                                      # the antenna without data (n_ant_extra=1)
    assert extra not in a1 and extra not in a2
    a2[idx[5]] = extra                             # the baseline misses its 6th integration
    put(ms, "ANTENNA2", a2)
    a1, a2, scan, flag = cols(ms, "ANTENNA1", "ANTENNA2", "SCAN_NUMBER", "FLAG")
    idx = np.flatnonzero((a1 == a1[0]) & (a2 == a2[0]) & (scan == scan[0]))
    assert len(idx) == 9
    flag[idx[:3], 4, 0] = True                     # channel 4 XX: 3 of 9 integrations (33% < 50%)
    put(ms, "FLAG", flag)
    akflag(vis=ms, mode="extend", growtime=50.0, growfreq=0.0, extendpols=True)
    out, = cols(ms, "FLAG")
    expect = flag.copy()
    expect[idx[:3], 4, :] = True                   # extendpols only
    np.testing.assert_array_equal(out, expect)


def test_cli_flag_gaintable_takes_several_tables():
    """`alakazam flag --gaintable a.h5 b.h5 --gainjones K0 G0`: gaintable is a list like gainjones (the
    second table used to be taken as the YAML-file argument: 'give either a YAML file or --options')."""
    from alakazam.cli import build_parser

    args = build_parser().parse_args(["flag", "--vis", "x.ms", "--mode", "clip", "--gaintable", "a.h5",
                                      "b.h5", "--gainjones", "K0", "G0"])
    assert args.config is None
    assert args.gaintable == ["a.h5", "b.h5"] and args.gainjones == ["K0", "G0"]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_yaml_commands():
    with open(os.path.join(REPO, "README.md")) as fh:
        text = fh.read()
    block = text[text.index("### YAML (batch)"):text.index("Each `solve`, `fluxscale` and `apply` block")]
    return [ln.split("#")[0].split() for ln in block.splitlines() if ln.strip().startswith("alakazam ")]


def test_readme_hazard_simulate_command_runs(tmp_path):
    """README's `alakazam simulate haz.ms --rfi-persistent ... --dead-antenna C03:2` on the default
    channels (only smaller in time here): it used to name channel 20 of a 16-channel SPW and fail."""
    from alakazam.cli import main

    cmd = next(c for c in _readme_yaml_commands() if c[1] == "simulate" and "--rfi-persistent" in c)
    argv = cmd[1:]
    argv[1] = str(tmp_path / argv[1])
    assert main(argv + ["--hours", "1"]) == 0              # (scan 4 of the dead antenna: >= 40 min)
    assert os.path.isdir(argv[1])


def test_readme_simulated_ms_is_the_one_the_example_yaml_reads():
    """README: `alakazam simulate X` then `alakazam run examples/fluxscale.yaml`: the runner reads a YAML
    file's relative paths from the file's folder, so X must be that folder's ms (it was sim.ms in the
    current directory: 'solve[0].ms: sim.ms does not exist')."""
    import yaml

    cmds = _readme_yaml_commands()
    sim = next(c for c in cmds if c[1] == "simulate")[2]
    run = next(c for c in cmds if c[1] == "run")[-1]
    with open(os.path.join(REPO, run)) as fh:
        ms = yaml.safe_load(fh)["solve"][0]["ms"]
    assert os.path.normpath(os.path.join(os.path.dirname(run), ms)) == os.path.normpath(sim)


@pytest.mark.parametrize("text", ["solve:\n  - ms: x.ms\n    output: cal.h5\n    jones: [K]\n",
                                  "flag: []\n", ""])
def test_cli_flag_yaml_without_flag_blocks_is_an_error(tmp_path, capsys, text):
    """`alakazam flag CONFIG.yaml` on a file without flag blocks said nothing and exited 0."""
    from alakazam.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["flag", str(cfg)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "has no flag block; nothing to run (expected 'flag:' with a list of blocks" in err


def test_cli_flag_datacolumn_ignores_case_and_help_shows_defaults(capsys):
    """akflag.xml's datacolumn ignores case (the task takes 'DATA', as flagdata), but the CLI refused
    `--datacolumn DATA`; `alakazam flag --help` did not say that mode defaults to manual (flag every
    selected sample) nor any other default."""
    from alakazam.cli import build_parser

    args = build_parser().parse_args(["flag", "--vis", "x.ms", "--datacolumn", "CORRECTED"])
    assert args.datacolumn == "corrected"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["flag", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Flagging mode (default: manual)" in out
    assert "Flag outside clipminmax (False: inside) (default: true)" in out
    assert "Seconds at the scan start/end (default: 1.0)" in out


@pytest.mark.parametrize("lua", ["garbage lua(\n", "-- a strategy without its entry point\nlocal x = 1\n"])
def test_aoflagger_bad_lua_strategy_is_a_parameter_error_before_anything_is_written(ms, tmp_path, lua):
    """A user .lua strategy that does not parse, or defines no execute() (what AOFlagger calls), was
    found only inside the run: after the flag version was saved, with an 'interrupted while writing
    FLAG: restore with ...' marker left behind and the error blamed on casacore."""
    from alakazam.caltasks import akflag
    from alakazam.errors import ParameterError

    path = tmp_path / "mine.lua"
    path.write_text(lua)
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="aoflagger", strategy=str(path))
    assert "strategy" in e.value.errors and str(path) in str(e.value)
    assert not os.path.exists(ms + ".flagversions")


def test_yaml_sexagesimal_looking_selections_stay_strings(tmp_path):
    """YAML 1.1 (PyYAML) reads 1:3 and 12:30:00 as base-60 numbers (63, 45000): `spw: 1:3` in a flag
    block became SPW 63 ('63 is not present', or on a 64-SPW VLA MS the whole of SPW 63 flagged) and
    `timerange: 12:30:00` became '45000'.  alakazam's loader keeps them strings (YAML 1.2 has no
    base-60 numbers)."""
    from alakazam.caltasks.yamlrun import run_yaml
    from alakazam.safeyaml import loads

    assert loads("spw: 1:3\ntimerange: 12:30:00\nt2: 1:00:00.5\nn: 12\nx: 1.5\n") == {
        "spw": "1:3", "timerange": "12:30:00", "t2": "1:00:00.5", "n": 12, "x": 1.5}
    ms = str(tmp_path / "two.ms")
    simulate_ms(ms, n_ant=3, n_ant_extra=0, n_chan=(8, 4), duration_h=0.2, int_s=60.0, noise=0.05, seed=4,
                leakage=False, dead_ant=False, flag_rows=0.0)
    cfg = tmp_path / "f.yaml"
    cfg.write_text("flag:\n  - ms: two.ms\n    mode: manual\n    action: calculate\n    spw: 1:3\n")
    r = run_yaml(str(cfg), sections=("flag",))["flag"][0]
    rows = cols(ms, "DATA_DESC_ID")[0].size // 2
    assert r["total"] == rows * 1 * 4                 # SPW 1, channel 3, four correlations


@pytest.mark.parametrize("name", ["akflag_1.in_progress", "../x", "a b"])
def test_flagmanager_save_refuses_reserved_and_bad_names_as_parameter_errors(ms, name):
    """akflagmanager(mode='save', versionname='a.in_progress') made a version named like the in-progress
    marker of version 'a' (restoring 'a' then failed with 'Is a directory', after saving a backup);
    a malformed name was a run-time error logged SEVERE, not a parameter error before the Begin line."""
    from alakazam.caltasks import akflagmanager
    from alakazam.errors import ParameterError

    with pytest.raises(ParameterError) as e:
        akflagmanager(vis=ms, mode="save", versionname=name)
    assert list(e.value.errors) == ["versionname"] and name in str(e.value)
    assert not os.path.exists(ms + ".flagversions")


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_akflag_vis_not_an_ms_is_one_parameter_error(tmp_path, kind):
    """vis naming a file was found only when the run opened it (a SEVERE run-time error, after the
    Begin line); a directory that is no MS said 'vis: vis/ms: ...'."""
    from alakazam.caltasks import akflag
    from alakazam.errors import ParameterError

    p = tmp_path / "x.ms"
    p.write_text("not an MS") if kind == "file" else p.mkdir()
    with pytest.raises(ParameterError) as e:
        akflag(vis=str(p), mode="summary", spw="9")
    msg = e.value.errors["vis"][0]
    assert "is not a Measurement Set" in msg or "not a Measurement Set" in msg
    assert not msg.startswith("vis/ms")


@pytest.mark.parametrize("spw, expect", [("0:0~7^x", "cannot parse channel range"), ("0:0~7^0", "step"),
                                         ("0:0~7^-1", "step"),
                                         ("0:3~1", "first channel 3 is after the last 1"),
                                         ("0:", "selects no channel"), ("0:;", "selects no channel")])
def test_bad_channel_selections_are_parameter_errors(ms, spw, expect):
    """spw channel syntax errors: '^x' / '^0' escaped as ValueError ('internal error' on the command line),
    '^-1', '0:' and '0:;' selected no channel without an error (akflag: 'nothing was flagged'), and
    '3~1' was said to be 'outside SPW 0 (0~7)'."""
    from alakazam.caltasks import akflag
    from alakazam.errors import ParameterError

    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="manual", spw=spw)
    assert list(e.value.errors) == ["spw"] and expect in str(e.value)
    assert not os.path.exists(ms + ".flagversions")


@pytest.mark.parametrize("kw", [dict(antenna="!"), dict(antenna=";;"), dict(antenna="! ;"),
                                dict(field=","), dict(field=" , ")])
def test_selection_of_separators_only_is_an_error_not_all_or_nothing(ms, kw):
    """antenna '!' (negation of nothing) and ';;' selected every baseline -- with mode='manual' the whole
    MS was flagged -- and field ',' selected no field ('nothing was flagged'); each is a parameter error."""
    from alakazam.caltasks import akflag
    from alakazam.errors import ParameterError

    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="manual", **kw)
    assert list(e.value.errors) == list(kw)
    assert not os.path.exists(ms + ".flagversions")


def test_unguarded_user_script_with_workers_runs_once(ms, tmp_path):
    """A script calling akflag(..., workers=2) at the top level (no `if __name__ == "__main__":`, as CASA
    scripts are written): dask's spawned workers ran the script again, each blocked on the MS writer
    lock, the cluster never started ('Nanny failed to start'), and the run failed after saving its flag
    version, leaving an 'interrupted while writing FLAG' marker."""
    import subprocess
    import sys

    script = tmp_path / "user_script.py"
    script.write_text("from alakazam.caltasks import akflag\n"
                      "print('SCRIPT RUN', flush=True)\n"
                      f"r = akflag(vis={ms!r}, mode='clip', clipminmax=[0.0, 3.0], workers=2)\n"
                      "print('VERSION', r['version'])\n")
    env = dict(os.environ, PYTHONPATH=REPO, ALAKAZAM_NO_PROGRESS="1")
    p = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env, capture_output=True,
                       text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("SCRIPT RUN") == 1 and "VERSION akflag_1" in p.stdout
    assert not [f for f in os.listdir(ms + ".flagversions") if f.endswith(".in_progress")]


def test_mode_start_failure_leaves_no_flag_version(ms, monkeypatch):
    """A mode that fails to start (AOFlagger's strategy or worker processes) did so after the flag
    version was saved and its in-progress marker written ('FLAG may be partly changed; restore it with
    ...' although nothing had been written)."""
    from alakazam.caltasks import akflag
    from alakazam.errors import AlakazamError
    from alakazam.flagging import aoflagger

    def boom(cfg, sel):
        raise AlakazamError("nproc: worker processes could not start")

    monkeypatch.setattr(aoflagger, "start", boom)
    with pytest.raises(AlakazamError, match="could not start"):
        akflag(vis=ms, mode="aoflagger")
    assert not os.path.exists(ms + ".flagversions")


def test_quackinterval_zero_and_threshold_zero_are_refused_and_help_says_so(ms):
    """quackinterval=0 with quackmode='end'/'tail' flagged every sample ('all but the first 0 s');
    flagdata refuses quackinterval <= 0, in every quackmode (measured with CASA 6.7: "must be greater
    than zero"; alakazam now refuses it for beg/endb too, tests/test_flagging.py test_quack_zero_refused)
    threshold=0 was refused while the help and README said '0 <= value'."""
    from alakazam.caltasks import TASKS, akflag
    from alakazam.errors import ParameterError

    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="quack", quackinterval=0.0, quackmode="tail")
    assert list(e.value.errors) == ["quackinterval"] and "must be > 0" in str(e.value)
    assert not os.path.exists(ms + ".flagversions")
    spec = {p.name: p for p in TASKS["akflag"].spec.params}
    assert "> 0" in spec["threshold"].short


def test_demo_bad_backend_is_refused_before_anything_is_written(tmp_path, capsys):
    """`alakazam demo --backend bogus` simulated demo.ms first and only then failed on the solve block."""
    from alakazam.cli import main

    d = tmp_path / "demo"
    assert main(["demo", "--dir", str(d), "--backend", "bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert not d.exists()


def test_yaml_run_prints_restore_commands_for_the_users_directory(ms, tmp_path, caplog, monkeypatch):
    """A YAML file's paths are read from its folder, so `alakazam flag sub/f.yaml` logged the undo as
    `alakazam flagmanager --vis work.ms ...` -- wrong from the directory the user typed it in (it names
    no MS there, or another MS with its own akflag_1).  The command now names the MS as seen from there,
    also in the in-progress marker a kill leaves."""
    import logging

    from alakazam.caltasks.yamlrun import run_yaml
    from alakazam.calibration import flagsafety

    sub = tmp_path / "sub"
    sub.mkdir()
    cfg = sub / "f.yaml"
    cfg.write_text(f"flag:\n  - ms: {os.path.relpath(ms, sub)}\n    mode: manual\n    antenna: C00&C02\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(flagsafety, "clear_marker", lambda ms_, version: None)   # keep it to read it
    with caplog.at_level(logging.INFO, logger="alakazam"):
        run_yaml(os.path.join("sub", "f.yaml"), sections=("flag",))
    want = f"alakazam flagmanager --vis {os.path.relpath(ms, tmp_path)} --mode restore --versionname akflag_1"
    assert want in " ".join(r.getMessage() for r in caplog.records)
    with open(flagsafety.marker_path(ms, "akflag_1")) as fh:
        assert want in fh.read()
    assert flagsafety.restore_command("x.ms", "v").endswith("--vis x.ms --mode restore --versionname v")


def test_flagmanager_delete_removes_the_versions_in_progress_marker(ms, caplog):
    """Deleting a version that an interrupted run left a marker for kept the marker: every later run
    warned 'restore ... with: alakazam flagmanager ... --versionname akflag_1', a version that no longer
    existed (or, once the name was reused, a newer one)."""
    import logging

    from alakazam.caltasks import akflag, akflagmanager
    from alakazam.calibration import flagsafety

    akflag(vis=ms, mode="manual", antenna="C00&C02")
    with open(flagsafety.marker_path(ms, "akflag_1"), "w") as fh:      # as a kill -9 leaves it
        fh.write("FLAG writes in progress\n")
    akflagmanager(vis=ms, mode="delete", versionname="akflag_1")
    assert not os.path.exists(flagsafety.marker_path(ms, "akflag_1"))
    caplog.clear()          # (the delete itself warns that the undo is gone: test_review_s43_tasks)
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        akflag(vis=ms, mode="manual", antenna="C00&C03")
    assert "interrupted" not in " ".join(r.getMessage() for r in caplog.records)


def test_simulate_and_demo_help_say_what_the_options_do(capsys):
    """`alakazam simulate --help` listed --n-ant, --seed, --hours, --int-s and --rfi without a word (and
    --n-ant 5 gives an ANTENNA table of 7); nor did it give the channel default the README's hazard
    example had to respect."""
    from alakazam.cli import build_parser

    for cmd in ("simulate", "demo", "run"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([cmd, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("the ANTENNA table has 2 more, without data", "channels per SPW (default 16 8)",
                 "integration time in s (default 60)", "strong spikes in one channel of some rows",
                 "solver backend: numba (default), ceres, jax, scipy", "relative paths in it are read from "
                 "its folder"):
        assert text in out, text


def test_summary_table_does_not_print_thousands_of_channel_rows(capsys):
    """The summary printed one 'spw:channel' row per channel: 8192 rows on a 2 x 4096-channel MS (CASA's
    summary leaves channels out unless spwchan=True).  Above 64 channels the table is left out and a
    line says where they are (the returned dict keeps every channel)."""
    from alakazam.flagging.summary import print_summary

    chans = {f"{s}:{c}": {"flagged": c % 3, "total": 10} for s in (0, 1) for c in range(4096)}
    s = {"flagged": 10, "total": 100, "antenna": {"C00": {"flagged": 1, "total": 10}}, "spw:channel": chans}
    print_summary(s)
    out = capsys.readouterr().out
    assert "0:4095" not in out and "8192 channels" in out and "'spw:channel'" in out
    small = {"flagged": 1, "total": 2, "spw:channel": {"0:0": {"flagged": 1, "total": 2}}}
    print_summary(small)
    assert "0:0" in capsys.readouterr().out
