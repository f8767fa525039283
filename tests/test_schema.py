"""The task XML is the one schema (alakazam/schema.py): every YAML key and task parameter round-trips.

For each YAML block (flag, solve, fluxscale, apply) a block setting EVERY key to a non-default value is
turned into the engine's config three ways -- YAML block -> config (:mod:`alakazam.config`, what the
runner parses), YAML block -> task keyword arguments -> task call -> config, and the whole YAML file
through ``run_yaml`` -- and the three dataclasses must be equal.  Every field of the config must differ
from the defaults (so no key is dropped on the way) and every single key must change the config on
its own (so every yamlkey reaches a field); a key added to the XML without a sample here fails.
The engine entry points are replaced by recorders: nothing is read or solved.
"""

import dataclasses
import os

import pytest
import yaml

from alakazam import schema
from alakazam.caltasks import akapply, akcal, akflag, akfluxscale
from alakazam.caltasks import yamlrun
from alakazam.config import (APPLY_MODES, ApplyConfig, FluxscaleConfig, SolveConfig, apply_config_from_dict,
                             fluxscale_config_from_dict, solve_config_from_dict)
from alakazam.errors import ParameterError
from alakazam.flagging.config import MODES, WRITING_MODES, FlagConfig, flag_config_from_dict

SEL = dict(intent="*CAL*", timerange="10:00:00~11:00:00", uvrange=">10m", antenna="C00,C01", observation="0")


def full_blocks(ms):
    """One block per section with every key (task parameter with a yamlkey, and YAML-only key) set to a
    value other than its default."""
    return {
        "flag": dict(ms=ms, mode="clip", field="3C286", spw="0:1~3", antenna="C00", timerange="10:00~11:00",
                     scan="1", correlation="XX", datacolumn="residual", strategy="generic", nproc=2,
                     gaintable=["cal.h5"], gainjones=["G0"], gainfield=["nearest_sky"], interp=["linear"],
                     parang=True,
                     clipminmax=[0.0, 5.0], clipoutside=False, clipzeros=True, quackinterval=5.0,
                     quackmode="end", quackincrement=True, growtime=60.0, growfreq=70.0, extendpols=False,
                     growaround=True,
                     flagneartime=True, flagnearfreq=True, threshold=6.0, action="calculate",
                     memory_limit_gb=1.0, workers=2, scheduler="tcp://127.0.0.1:8786", quiet=True,
                     uvrange=">10m", intent="*CAL*", observation="0", autocorr=True, tolerance=2.0,
                     addantenna="x", lowerlimit=10.0, upperlimit=80.0, flagbackup=False,
                     ntime=60.0, combinescans=True, timecutoff=5.0, freqcutoff=4.0, timefit="poly",
                     freqfit="line", maxnpieces=3, flagdimension="time", usewindowstats="sum", halfwin=2,
                     extendflags=False, winsize=5, timedev=0.3, freqdev=[[0, 0, 0.2]], timedevscale=4.0,
                     freqdevscale=3.0, spectralmax=10.0, spectralmin=0.1, display="none"),
        "solve": dict(ms=ms, output="c.h5", jones=["K", "G", "G"],
                      field=[["3C286"], ["3C286", "3C147"], ["3C147"]], spw="0:1~6", scan="1~3", **SEL,
                      time_interval=["scan", "120s", "5ints"], freq_interval=["full", "4MHz", 2000000],
                      ref_ant=["C01", 2], ref_ant_mode="strict", phase_only=[False, True, False],
                      amp_only=[False, False, True], solnorm=True, normtype="median", fill_gaps=2,
                      apply_parang=True,
                      solver_backend="scipy", gpu=True, preapply_time_interp=["exact", "linear", "cubic"],
                      external_preapply=dict(tables=["old.h5"], jones=["G0"], field_select=["pinned"],
                                             time_interp=["linear,linearflag"], solution_field=[["3C286"]],
                                             spwmap=[[0, 0]]),
                      data_col="CORRECTED_DATA", model_col="MODEL2", rfi_threshold=4.0, iterations=2,
                      leakage_gauge="absolute",
                      min_snr=2.0, min_bl_per_ant=2, max_iter=50, tol=1e-8, memory_limit_gb=1.5, workers=2,
                      scheduler="tcp://host:8786", append=True, plots="plotdir", quiet=True,
                      combine=["", "scan,field", "scan"], smodel=[2.0, 0.1, 0.0, 0.0]),
        "fluxscale": dict(reference_table="cal.h5", reference_field=["3C286"], transfer_table="t.h5",
                          transfer_field=["3C147"], output="s.h5", jones_type="G1", spw="0,1",
                          fluxscale_method="interpolate", refspwmap=[0, 0], fitorder=2, reffreq=1.4e9,
                          gain_threshold=0.5, ms=ms),
        "apply": dict(ms=ms, jones=["K0", "G0"], tables=["cal.h5", "t.h5"],
                      field_select=["nearest_sky", "pinned"],
                      time_interp=["linear,linear", "cubic"], solution_field=[None, ["3C286", "3C147"]],
                      spwmap=[[0, 0], [1, 1]], calwt=[True, False],
                      target_field=["TARGET"], target_scans="3", spw="0", **SEL, correlation="XX,YY",
                      apply_parang=True, propagate_flags=True, applymode="calflagstrict", output_col="MY_COL",
                      data_col="CORRECTED_DATA", memory_limit_gb=2.0, workers=2,
                      scheduler="tcp://127.0.0.1:8786", quiet=True),
    }


MINIMAL = {"flag": lambda ms: dict(ms=ms),
           "solve": lambda ms: dict(ms=ms, output="c.h5", jones=["K", "G", "G"]),
           "fluxscale": lambda ms: dict(reference_table="cal.h5", reference_field=["3C286"], output="s.h5"),
           "apply": lambda ms: dict(ms=ms, jones=["K0", "G0"], tables=["cal.h5", "t.h5"])}
TASKS = {"flag": akflag, "solve": akcal, "fluxscale": akfluxscale, "apply": akapply}
TO_PARAMS = {"flag": yamlrun.flag_params, "solve": yamlrun.solve_params,
             "fluxscale": yamlrun.fluxscale_params, "apply": yamlrun.apply_params}
TO_CONFIG = {"flag": flag_config_from_dict, "solve": solve_config_from_dict,
             "fluxscale": fluxscale_config_from_dict, "apply": apply_config_from_dict}
#: YAML-only keys that are no task parameter: the runner handles them (quiet: progress bars of the block)
RUNNER_ONLY = {"quiet"}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A folder with a fake MS directory and the tables the blocks name; engine calls recorded."""
    import alakazam.calibration.apply as apply_mod
    import alakazam.calibration.fluxscale as flux_mod
    import alakazam.flagging as flag_pkg
    import alakazam.flagging.config as flag_cfg
    import alakazam.flow as flow_mod

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.ms").mkdir()
    for t in ("cal.h5", "t.h5", "old.h5"):
        (tmp_path / t).write_bytes(b"")
    seen = []

    def rec(cfg):
        seen.append(cfg)
        return {}

    for mod, name in ((flow_mod, "run_solve"), (flux_mod, "run_fluxscale"), (apply_mod, "run_apply"),
                      (flag_pkg, "run_flag")):
        monkeypatch.setattr(mod, name, rec)
    monkeypatch.setattr(flag_cfg, "resolve_errors", lambda cfg, resolve: {})   # (no real MS to parse against)
    import alakazam.caltasks.task as task_mod
    import alakazam.caltasks.yamlrun as yamlrun_mod

    for mod in (task_mod, yamlrun_mod):         # (nor to be told an MS: x.ms is a plain directory)
        monkeypatch.setattr(mod, "ms_error", lambda p, v: None)
    import alakazam.solve_precheck as solve_precheck     # (every key non-default: gpu with scipy, combine

    monkeypatch.setattr(solve_precheck, "errors", lambda *a, **k: {})   # with workers; no GPU here)
    import alakazam.plots as plots_mod

    monkeypatch.setattr(plots_mod, "plot_table", lambda *a, **k: [])
    # (nor to be told the empty table files are no solution tables: the keys' mapping is tested here)
    import alakazam.core.selcheck as selcheck_mod
    import alakazam.io.solutions as solutions_mod

    monkeypatch.setattr(selcheck_mod, "table_errors", lambda *a, **k: {})
    monkeypatch.setattr(flag_cfg, "_is_hdf5", lambda p: True)
    monkeypatch.setattr(solutions_mod, "resolve_key", lambda *a, **k: None)
    monkeypatch.setattr(flux_mod, "check_inputs", lambda cfg: {})
    return "x.ms", seen


def leaves(obj, prefix=""):
    """{dotted field path: value} of a config dataclass, one level into
    steps/terms/select/external_preapply."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name in ("steps", "terms"):
            for sf in dataclasses.fields(v[0]):
                out[f"{prefix}{f.name}[].{sf.name}"] = [getattr(s, sf.name) for s in v]
        elif dataclasses.is_dataclass(v):
            out.update(leaves(v, f"{prefix}{f.name}."))
        elif f.name == "select":
            out.update({f"select.{k}": v.get(k) for k in schema.SELECTION_KEYS if k in SEL})
        else:
            out[prefix + f.name] = v
    return out


@pytest.mark.parametrize("section", list(schema.SECTIONS))
def test_every_key_round_trips(section, world):
    ms, seen = world
    block = full_blocks(ms)[section]
    task = TASKS[section]
    top = {k.split(".", 1)[0] for k in schema.keys(section)}
    assert set(block) == top, "a YAML key without a sample here (or a sample of no key)"
    if "external_preapply" in block:
        assert {f"external_preapply.{k}" for k in block["external_preapply"]} == \
            {k for k in schema.keys(section) if "." in k}
    from_yaml = TO_CONFIG[section](block, f"{section}[0]")

    # YAML -> task keyword arguments: every task parameter with a yamlkey is set, none to its default
    params = TO_PARAMS[section](block, f"{section}[0]")
    with_key = {p.name: p for p in task.spec.params if p.yamlkey}
    assert set(params) == set(with_key)
    for name, v in params.items():
        assert v != with_key[name].default, name
    checked, from_task = task.prepare(task.bind(**params))
    task(**params)                                   # the call itself hands the engine the same config
    assert seen[-1] == from_task
    yaml_quiet = dataclasses.replace(from_yaml, quiet=False) if hasattr(from_yaml, "quiet") else from_yaml
    assert from_task == yaml_quiet

    # no field of the config is left at its default: every field is reached from some key
    base = TO_CONFIG[section](MINIMAL[section](ms), f"{section}[0]")
    full, low = leaves(from_yaml), leaves(base)
    same = [k for k in full if full[k] == low.get(k) and k not in ("ms", "reference_table")]
    if section == "solve":
        same = [k for k in same if k not in ("output", "steps[].jones_type", "steps[].key")]
    elif section == "fluxscale":
        same = [k for k in same if k not in ("reference_field", "output")]
    elif section == "apply":
        same = [k for k in same if k not in ("terms[].key", "terms[].table")]
    assert same == [], f"config fields no YAML key sets: {same}"


@pytest.mark.parametrize("section", list(schema.SECTIONS))
def test_each_key_alone_changes_the_config(section, world):
    """A yamlkey without a config field (or one the builder ignores) fails here."""
    ms, _ = world
    full = full_blocks(ms)[section]
    base = MINIMAL[section](ms)
    ref = TO_CONFIG[section](base, f"{section}[0]")
    for key in schema.keys(section):
        top, _, sub = key.partition(".")
        if sub:
            ep0 = dict(tables=["old.h5"], jones=["G0"], field_select=["nearest_time"], solution_field=[["X"]])
            b0 = dict(base, external_preapply=ep0)
            b1 = dict(base, external_preapply=dict(ep0, **{sub: full[top][sub]}))
            if sub in ("tables", "jones", "solution_field"):
                b1[top][sub] = {"tables": ["cal.h5"], "jones": ["K0"], "solution_field": [["3C286"]]}[sub]
            assert TO_CONFIG[section](b0) != TO_CONFIG[section](b1), key
            continue
        if key in ("applymode",):
            changed = dict(base, applymode="trial")
        elif key in ("amp_only",):
            changed = dict(base, amp_only=[False, False, True])
        elif (section, key) == ("apply", "field_select"):
            # (pinned needs solution_field)
            changed = dict(base, field_select=["nearest_sky", "nearest_time"])
        elif (section, key) == ("apply", "data_col"):
            changed = dict(base, data_col="MODEL_DATA")        # (CORRECTED_DATA is the default output)
        elif section == "flag" and key in ("gaintable", "gainjones", "gainfield", "interp", "parang"):
            # the pre-apply keys need each other: the key on top of a minimal pre-apply without it
            pre = dict(mode="clip", gaintable=["cal.h5"], gainjones=["G0"])
            ref = TO_CONFIG[section](dict(base, **pre), f"{section}[0]")
            changed = {**base, **pre, key: full[key]}
            if changed[key] == pre.get(key):
                changed[key] = {"gaintable": ["t.h5"], "gainjones": ["K0"]}[key]
            assert TO_CONFIG[section](changed, f"{section}[0]") != ref, key
            ref = TO_CONFIG[section](base, f"{section}[0]")
            continue
        else:
            changed = dict(base, **{key: full[key]})
        if changed.get(key) == base.get(key):          # the required keys: another value
            changed[key] = {"ms": "other.ms", "reference_table": "t.h5", "output": "other.h5",
                            "reference_field": ["X"], "tables": ["t.h5", "cal.h5"]}.get(
                key, ["G", "G", "K"] if section == "solve" else ["G0", "K0"])
        assert TO_CONFIG[section](changed, f"{section}[0]") != ref, key


def test_whole_file_through_the_runner(world):
    """YAML file -> alakazam run -> the engine gets the configs the YAML parser builds."""
    ms, seen = world
    blocks = full_blocks(ms)
    blocks["solve"]["output"] = "new.h5"
    blocks["fluxscale"]["output"] = "s.h5"
    with open("all.yaml", "w") as fh:
        yaml.safe_dump({k: [v] for k, v in blocks.items()}, fh)
    yamlrun.run_yaml("all.yaml")
    expected = [TO_CONFIG[s](blocks[s], f"{s}[0]") for s in ("flag", "solve", "fluxscale", "apply")]
    assert seen == expected


def test_dataclass_defaults_are_the_xml_defaults():
    """The engine's dataclasses (built directly in code and tests) default as the XML does."""
    for section, cls in (("solve", SolveConfig), ("fluxscale", FluxscaleConfig), ("apply", ApplyConfig),
                         ("flag", FlagConfig)):
        for f in dataclasses.fields(cls):
            key = {"method": "fluxscale_method"}.get(f.name, f.name)
            if key not in schema.keys(section) or key in ("transfer_table", "refspwmap", "applymode",
                                                          "propagate_flags", "jones", "field", "ms", "output",
                                                          "ref_ant", "target_field"):
                continue
            d = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if d is dataclasses.MISSING:
                continue
            assert d == schema.default(section, key), (section, f.name, d, schema.default(section, key))


def test_engine_constants_are_the_xml_enums():
    assert set(APPLY_MODES) == set(schema.allowed("apply", "applymode"))
    assert set(MODES) == set(schema.allowed("flag", "mode"))
    assert set(WRITING_MODES) < set(MODES)


def test_xml_types_ranges_and_enums_apply_to_yaml(world):
    ms, _ = world
    with pytest.raises(ParameterError) as e:
        solve_config_from_dict(dict(ms=ms, output="c.h5", jones=["G"], iterations=0, solver_backend="fortran",
                                    gpu="yes", min_bl_per_ant=-1, preapply_time_interp="sideways"))
    errs = e.value.errors
    assert "min value is 1" in errs["solve[0].iterations"][0]
    assert "fortran" in errs["solve[0].solver_backend"][0] and "cBool" in errs["solve[0].gpu"][0]
    assert "solve[0].min_bl_per_ant" in errs and "solve[0].preapply_time_interp[0]" in errs
    # what the XML has, the YAML has: memory_limit_gb in an apply block is a key of akapply
    assert apply_config_from_dict(dict(ms=ms, jones=["G0"], tables=["cal.h5"], memory_limit_gb=3)
                                  ).memory_limit_gb == 3.0
    with pytest.raises(ParameterError, match=r"apply\[0\]\.memory_limt_gb.*did you mean 'memory_limit_gb'"):
        apply_config_from_dict(dict(ms=ms, jones=["G0"], tables=["cal.h5"], memory_limt_gb=3))
    assert solve_config_from_dict(dict(ms=ms, output="c.h5", jones="G", spw=0, scan=3)).spw == "0"


def test_one_call_reports_every_bad_parameter(tmp_path):
    """The XML's errors and the engine builder's come in one ParameterError."""
    with pytest.raises(ParameterError) as e:
        akcal(vis=str(tmp_path / "nope.ms"), caltable=5, jones=["Q"])
    assert set(e.value.errors) == {"vis", "caltable", "akcal.jones[0]"}
    assert "'Q' is not a Jones type" in e.value.errors["akcal.jones[0]"][0]
    os.mkdir(tmp_path / "x.ms")
    with pytest.raises(ParameterError) as e:        # (x.ms is no MS: said with the others)
        akcal(vis=str(tmp_path / "x.ms"), caltable="c.h5", jones=["K", "G"], solint=["scan", "5parsecs"],
              maxiter=0, calmode="x")
    assert set(e.value.errors) == {"vis", "akcal.solint[1]", "maxiter", "calmode"}
    # the message names every parameter alike, the task once in its head (the keys keep the prefix)
    lines = str(e.value).splitlines()
    assert lines[0] == "akcal: invalid parameters"
    assert any(ln.startswith("  solint[1]: ") for ln in lines) and "akcal.solint" not in str(e.value)
    assert any(ln.startswith("  maxiter: ") for ln in lines)


def test_whole_yaml_file_one_report(world):
    ms, seen = world
    with open("bad.yaml", "w") as fh:
        fh.write(f"flag:\n  - {{ms: {ms}, mode: clip, growtime: 120}}\n"
                 f"solve:\n  - {{ms: {ms}, output: c.h5, jones: [G, Q], tol: -1}}\n"
                 "fluxscale:\n  - {reference_table: nope.h5, reference_field: [A], output: s.h5, "
                 "fitorder: -1}\n"
                 f"apply:\n  - {{ms: {ms}, jones: [G0], tables: [c.h5], time_interp: [sideways], "
                 f"quiet: 3}}\n")
    with pytest.raises(ParameterError) as e:
        yamlrun.run_yaml("bad.yaml")
    assert {"flag[0].growtime", "solve[0].jones[1]", "solve[0].tol", "fluxscale[0].fitorder",
            "apply[0].time_interp[0]", "apply[0].quiet"} <= set(e.value.errors), e.value.errors
    assert seen == []


def test_casa_calibration_types_get_their_jones_here(tmp_path):
    """A CASA user's gaintype ('B', 'Df', 'Xf', 'KCROSS') is answered with the Jones type it is here."""
    for t, said in (("B", "jones 'G' with a per-channel"), ("Df", "jones 'D'"), ("Xf", "jones 'CP'"),
                    ("KCROSS", "jones 'KC'")):
        with pytest.raises(ParameterError) as e:
            akcal(vis=str(tmp_path / "nope.ms"), caltable="c.h5", jones=[t])
        msg = e.value.errors["akcal.jones[0]"][0]
        assert f"{t!r} is not a Jones type" in msg and said in msg, msg
