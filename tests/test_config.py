"""Configuration parsing: intervals, per-step lists, keys, the SEED.md example, errors by YAML path."""

import pytest
import yaml

from alakazam.config import (assign_keys, load_run_config, parse_freq_interval, parse_time_interval,
                             run_config_from_dict, solve_config_from_dict)
from alakazam.errors import AlakazamError, ParameterError

SEED_YAML = """
solve:
  - ms: calibrators.ms
    output: cal.h5
    ref_ant: C04
    data_col: DATA
    model_col: MODEL_DATA
    solver_backend: ceres
    apply_parang: false
    rfi_threshold: 5.0
    max_iter: 100
    tol: 1.0e-10
    memory_limit_gb: 0
    gpu: false
    jones: [K, G, G]
    field:
      - [3C286]
      - [3C286, 3C147]
      - [3C286, 3C147]
    time_interval: [scan, inf, 2min]
    freq_interval: [full, 4MHz, full]
    phase_only: [false, false, false]
    preapply_time_interp: [exact, nearest, nearest]
    external_preapply:
      tables: [oldcal.h5, oldcal.h5]
      jones: [K0, G0]
      field_select: [nearest_time, nearest_time]
      time_interp: [nearest, nearest]
fluxscale:
  - reference_table: cal.h5
    reference_field: [3C286]
    transfer_table: cal.h5
    transfer_field: [3C147]
    output: cal_scaled.h5
    jones_type: G0
    spw: "0"
apply:
  - ms: science.ms
    output_col: CORRECTED_DATA
    target_field: [B0329+54, DA240]
    target_scans: ""
    apply_parang: true
    propagate_flags: true
    jones:          [K0, G0, G1]
    tables:         [cal.h5, cal.h5, cal_scaled.h5]
    field_select:   [nearest_time, nearest_time, nearest_time]
    time_interp:    [nearest, nearest, linear]
    solution_field: [~, ~, ~]
"""


@pytest.mark.parametrize("text,kind,sec", [("inf", "inf", 0), ("Infinity", "inf", 0), ("scan", "scan", 0),
                                           ("5min", "seconds", 300), ("2m", "seconds", 120),
                                           ("120s", "seconds", 120), ("1h", "seconds", 3600),
                                           ("1.5h", "seconds", 5400), (90, "seconds", 90)])
def test_time_interval(text, kind, sec):
    t = parse_time_interval(text)
    assert t.kind == kind and t.seconds == sec


@pytest.mark.parametrize("bad", ["5parsecs", "-3s", "0", "", True, "min"])
def test_bad_time_interval(bad):
    with pytest.raises(AlakazamError, match="expected inf, scan"):
        parse_time_interval(bad, "solve[0].time_interval[2]")


def test_freq_interval():
    assert parse_freq_interval("full") == (None, "full") and parse_freq_interval("inf")[0] is None
    assert parse_freq_interval("4MHz")[0] == 4e6 and parse_freq_interval("128kHz")[0] == 128e3
    assert parse_freq_interval("1GHz")[0] == 1e9 and parse_freq_interval(500)[0] == 500
    with pytest.raises(AlakazamError, match="frequency interval"):
        parse_freq_interval("4 parsec")


def test_keys():
    assert assign_keys(["K", "G", "D", "G", "G"]) == ["K0", "G0", "D0", "G1", "G2"]
    assert assign_keys(["g", "kc"], existing_keys=["G0", "G1", "K0"]) == ["G2", "KC0"]
    with pytest.raises(AlakazamError, match="not a Jones type"):
        assign_keys(["Q"])


def test_seed_example_parses():
    cfg = run_config_from_dict(yaml.safe_load(SEED_YAML))
    s = cfg.solve[0]
    assert [st.key for st in s.steps] == ["K0", "G0", "G1"]
    assert s.steps[1].field == ["3C286", "3C147"] and s.steps[0].field == ["3C286"]
    assert s.steps[1].freq_interval_hz == 4e6 and s.steps[2].time_interval.seconds == 120
    assert s.steps[0].preapply_time_interp == "exact" and s.ref_ant == "C04" and s.solver_backend == "ceres"
    assert s.external_preapply.jones == ["K0", "G0"]
    assert cfg.fluxscale[0].jones_type == "G0" and cfg.fluxscale[0].spw == "0"
    a = cfg.apply[0]
    assert [t.key for t in a.terms] == ["K0", "G0", "G1"] and a.terms[2].time_interp == "linear"
    assert a.propagate_flags and a.target_field == ["B0329+54", "DA240"]


def test_all_errors_reported_with_paths(tmp_path):
    d = yaml.safe_load(SEED_YAML)
    d["solve"][0]["time_interval"] = ["scan", "inf", "5parsecs"]
    d["solve"][0]["freq_interval"] = ["full", "4MHz"]
    d["solve"][0]["solver_backend"] = "fortran"
    d["apply"][0]["field_select"] = ["nearest_time", "pinned", "nearest_time"]
    d["apply"][0]["tme_interp"] = ["nearest"]
    with pytest.raises(ParameterError) as e:
        run_config_from_dict(d)
    errs = e.value.errors
    assert "solve[0].time_interval[2]" in errs
    assert "has 2 entries but jones has 3 steps" in errs["solve[0].freq_interval"][0]
    assert "fortran" in errs["solve[0].solver_backend"][0]
    assert "solution_field" in " ".join(errs)
    assert "did you mean 'time_interp'" in errs["apply[0].tme_interp"][0]
    p = tmp_path / "bad.yaml"
    p.write_text("solve:\n  - ms: [unclosed\n")
    with pytest.raises(AlakazamError, match="line"):
        load_run_config(str(p))


def test_scalars_broadcast():
    c = solve_config_from_dict(dict(ms="a.ms", output="c.h5", jones="G", field="3C286,3C147",
                                    time_interval="2min"))
    assert c.steps[0].field == ["3C286", "3C147"] and c.steps[0].time_interval.seconds == 120


def test_names_mapping_and_pinned_ok():
    with pytest.raises(ParameterError) as e:
        solve_config_from_dict(dict(ms="a.ms", output="c.h5", jones=["K", "G"],
                                    time_interval=["inf", "scan", "int"]),
                               where="akcal", names={"time_interval": "solint"})
    msg = " ".join(k + " " + " ".join(v) for k, v in e.value.errors.items())
    assert "solint" in msg and "akcal" in msg
    from alakazam.config import apply_config_from_dict
    a = apply_config_from_dict(dict(ms="t.ms", jones=["G0"], tables=["cal.h5"], field_select=["pinned"],
                                    time_interp=["linear"], solution_field=["3C286"]))
    assert a.terms[0].field_select == "pinned"


def test_one_entry_list_serves_every_step():
    """A one-entry list is a single value for every step (as a scalar; CASA's one-entry gainfield /
    interp lists): `tables: [cal.h5]` with six keys, `time_interval: [inf]` with two steps."""
    d = yaml.safe_load(SEED_YAML)
    n_apply = len(d["apply"][0]["jones"])
    d["apply"][0]["tables"] = [d["apply"][0]["tables"][0] if isinstance(d["apply"][0]["tables"], list)
                               else d["apply"][0]["tables"]]
    n_solve = len(d["solve"][0]["jones"])
    d["solve"][0]["time_interval"] = ["inf"]
    cfg = run_config_from_dict(d)
    assert [s.time_interval.text for s in cfg.solve[0].steps] == ["inf"] * n_solve
    assert len({t.table for t in cfg.apply[0].terms}) == 1 and len(cfg.apply[0].terms) == n_apply
    d["solve"][0]["time_interval"] = ["inf", "scan"] if n_solve != 2 else ["inf", "scan", "int"]
    with pytest.raises(ParameterError, match="entries but jones has"):
        run_config_from_dict(d)


@pytest.mark.parametrize("given, expected, default", [
    ("C05,C09", ["C05", "C09"], False),          # the README's form: a list in priority order
    (" C05 , 3 ", ["C05", 3], False),             # digits -> ANTENNA index, as akcal's refant
    (["C05", "C09"], ["C05", "C09"], False),
    ("C05", "C05", False),
    ("4", 4, False),
    (2, 2, False),
    ("", 0, True),                                # CASA's unset refant: the default
    ([], 0, True),
    (None, 0, True),
])
def test_ref_ant_string_list_as_akcal(given, expected, default):
    """YAML ref_ant takes what akcal's refant takes (review 53c: 'C05,C09' was refused in YAML, given
    whole to the antenna lookup, while akcal split it)."""
    from alakazam.config import parse_ref_ant

    s = solve_config_from_dict(dict(ms="x.ms", output="c.h5", ref_ant=given, jones=["G"],
                                    time_interval=["inf"], freq_interval=["full"]))
    assert s.ref_ant == expected and s.ref_ant_default is default
    assert parse_ref_ant(given) == (None if default else expected)


@pytest.mark.parametrize("bad", ["C05,,C09", [True], [1.5], {"a": 1}])
def test_bad_ref_ant_named(bad):
    with pytest.raises(ParameterError, match="ref_ant"):
        solve_config_from_dict(dict(ms="x.ms", output="c.h5", ref_ant=bad, jones=["G"],
                                    time_interval=["inf"], freq_interval=["full"]))
