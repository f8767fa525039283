"""Task layer without the engine: parameter -> config mapping, CASA coercion, logging, no .last files.

The engine entry points are monkeypatched with recorders, so these tests check what the tasks hand to
the engine (the SolveConfig / FluxscaleConfig / ApplyConfig) against values written here by hand.
"""

import logging
import os

import pytest

from alakazam.caltasks import TASKS, akapply, akcal, akfluxscale
from alakazam.config import ApplyConfig, FluxscaleConfig, SolveConfig
from alakazam.errors import ParameterError


@pytest.fixture(scope="module")
def fake_ms(tmp_path_factory):
    """A tiny simulated MS (vis must be a Measurement Set: ms_io.check_ms; scans of 3C286, 3C147,
    TARGET); the engines are recorders, nothing writes it."""
    from alakazam.sim import simulate_ms

    ms = str(tmp_path_factory.mktemp("tasks") / "fake.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.5, leakage=False, dead_ant=False,
                flag_rows=0.0)
    return ms


@pytest.fixture
def record(monkeypatch):
    """Replace the three engine entry points by recorders returning a small dict."""
    import alakazam.calibration.apply as apply_mod
    import alakazam.calibration.fluxscale as flux_mod
    import alakazam.flow as flow_mod

    seen = []

    def rec(kind):
        def f(cfg):
            seen.append((kind, cfg))
            return {"engine": kind}
        return f

    monkeypatch.setattr(flow_mod, "run_solve", rec("solve"))
    monkeypatch.setattr(flux_mod, "run_fluxscale", rec("fluxscale"))
    monkeypatch.setattr(apply_mod, "run_apply", rec("apply"))
    return seen


def test_akcal_maps_parameters_to_solve_config(fake_ms, tmp_path, record):
    out = akcal(vis=fake_ms, caltable=str(tmp_path / "c.h5"), jones=["K", "G", "G"],
                field=["3C286", "3C286,3C147", "3C286,3C147"], solint=["scan", "inf", "2min"],
                freqint=["full", "4MHz", "full"], refant="3", calmode=["ap", "ap", "p"], solver="scipy",
                maxiter=7, tol=1e-8, rfi_threshold=4, parang=True)
    assert out == {"engine": "solve"}
    kind, cfg = record[0]
    assert kind == "solve" and isinstance(cfg, SolveConfig)
    assert cfg.ms == fake_ms and cfg.output == str(tmp_path / "c.h5")
    assert [s.key for s in cfg.steps] == ["K0", "G0", "G1"]
    assert [s.jones_type for s in cfg.steps] == ["K", "G", "G"]
    assert [s.field for s in cfg.steps] == [["3C286"], ["3C286", "3C147"], ["3C286", "3C147"]]
    assert [s.time_interval.kind for s in cfg.steps][0] == "scan"
    assert cfg.steps[2].time_interval.seconds == 120.0
    assert cfg.steps[0].freq_interval_hz is None and cfg.steps[1].freq_interval_hz == 4e6
    assert [s.phase_only for s in cfg.steps] == [False, False, True]
    assert cfg.ref_ant == 3 and cfg.solver_backend == "scipy" and cfg.apply_parang is True
    assert cfg.max_iter == 7 and cfg.tol == 1e-8 and cfg.rfi_threshold == 4.0


def test_scalars_broadcast_and_list_length_checked(fake_ms, tmp_path, record):
    akcal(vis=fake_ms, caltable=str(tmp_path / "c.h5"), jones="K,G".split(","), solint="60s", field="3C286")
    cfg = record[0][1]
    assert [s.time_interval.seconds for s in cfg.steps] == [60.0, 60.0]
    assert [s.field for s in cfg.steps] == [["3C286"], ["3C286"]]
    with pytest.raises(ParameterError) as e:
        akcal(vis=fake_ms, caltable=str(tmp_path / "c.h5"), jones=["K", "G"], solint=["60s", "inf", "scan"])
    assert any("solint" in k for k in e.value.errors)
    assert len(record) == 1          # the bad call never reached the engine


def test_akfluxscale_and_akapply_mapping(fake_ms, tmp_path, record, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cal.h5").write_bytes(b"")
    # (the parameter mapping only: an empty file is no solution table, which akapply's check says)
    import sys

    import alakazam.calibration.fluxscale as fluxscale_mod
    monkeypatch.setattr(sys.modules["alakazam.caltasks.akapply"], "_table_errors", lambda params: {})
    monkeypatch.setattr(fluxscale_mod, "check_inputs", lambda cfg: {})
    akfluxscale(caltable="cal.h5", reference=["3C286"], transfer=["3C147"], fluxtable="s.h5", jones="G0")
    kind, fc = record[-1]
    assert kind == "fluxscale" and isinstance(fc, FluxscaleConfig)
    assert (fc.reference_table, fc.reference_field, fc.transfer_field, fc.output, fc.jones_type) == \
        ("cal.h5", ["3C286"], ["3C147"], "s.h5", "G0")
    assert fc.transfer_table in (None, "cal.h5")

    akapply(vis=fake_ms, field=["TARGET"], gaintable=["cal.h5", "cal.h5"], jones=["K0", "G0"],
            gainfield=["nearest_time", "pinned"], solutionfield=["", "3C147"], interp=["nearest", "linear"],
            applymode="calonly")
    kind, ac = record[-1]
    assert kind == "apply" and isinstance(ac, ApplyConfig)
    assert ac.target_field == ["TARGET"] and ac.propagate_flags is False
    assert ac.output_col == "CORRECTED_DATA"
    assert [(t.key, t.table, t.field_select, t.time_interp) for t in ac.terms] == \
        [("K0", "cal.h5", "nearest_time", "nearest"), ("G0", "cal.h5", "pinned", "linear")]
    assert ac.terms[1].solution_field == ["3C147"]
    akapply(vis=fake_ms, gaintable="cal.h5", jones="G0", applymode="calflag")
    assert record[-1][1].propagate_flags is True


def test_casa_coercion_rules():
    p = {x.name: x for x in akcal.spec.params}
    from alakazam.caltasks.xmlschema import check_value

    assert check_value(p["gpu"], True) == (True, None)
    assert "cBool" in check_value(p["gpu"], 1)[1]            # bool rejects int
    assert "cInt" in check_value(p["maxiter"], 3.0)[1]      # int rejects float
    v, err = check_value(p["tol"], 1)                       # double accepts int
    assert err is None and v == 1.0 and isinstance(v, float)
    assert check_value(p["jones"], "D") == (["D"], None)    # scalar -> one-element Vec
    err = check_value(p["rfi_threshold"], -2.0)[1]
    assert "min value" in err and "-2.0" in err             # range names the value
    err = check_value(p["solver"], "fortran")[1]
    assert "fortran" in err and "numba" in err              # enum lists the allowed values


def test_all_errors_together_subclass_of_valueerror(tmp_path):
    with pytest.raises(ValueError) as e:
        akcal(vis=str(tmp_path / "nope.ms"), gpu="yes", maxiter="ten")
    assert isinstance(e.value, ParameterError)
    assert set(e.value.errors) >= {"vis", "gpu", "maxiter"}
    msg = str(e.value)
    assert "nope.ms" in msg and "'yes'" in msg and "'ten'" in msg


def test_logging_begin_end_and_severe(fake_ms, tmp_path, record, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cal.h5").write_bytes(b"")
    # (the logging only: an empty file is no solution table, which akfluxscale's check says)
    import alakazam.calibration.fluxscale as fluxscale_mod
    monkeypatch.setattr(fluxscale_mod, "check_inputs", lambda cfg: {})
    caplog.set_level(logging.INFO, logger="alakazam.tasks")
    akfluxscale(caltable="cal.h5", reference=["3C286"], transfer=["3C147"], fluxtable="s.h5")
    text = caplog.text
    assert "##### Begin Task: akfluxscale" in text and "##### End Task: akfluxscale" in text
    assert "reference=['3C286']" in text and "fluxtable='s.h5'" in text   # the full call

    caplog.clear()
    with pytest.raises(ParameterError):
        akcal(vis=str(tmp_path / "nope.ms"))
    assert "Begin Task" not in caplog.text                  # validation errors: nothing logged as run

    import alakazam.flow as flow_mod

    def boom(cfg):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(flow_mod, "run_solve", boom)
    caplog.clear()
    with pytest.raises(RuntimeError, match="disk on fire"):
        akcal(vis=fake_ms, caltable=str(tmp_path / "c.h5"), jones="G")
    assert "SEVERE" in caplog.text and "RuntimeError" in caplog.text
    assert "End Task" not in caplog.text


def test_library_calls_write_no_last_file(fake_ms, tmp_path, record, monkeypatch):
    monkeypatch.chdir(tmp_path)
    akcal(vis=fake_ms, caltable="c.h5", jones="G")
    with pytest.raises(ParameterError):
        akcal(vis="nope.ms")
    assert not any(f.endswith(".last") for f in os.listdir(tmp_path))


@pytest.mark.parametrize("name", list(TASKS))
def test_docstring_and_yamlkeys_from_xml(name):
    t = TASKS[name]
    for p in t.spec.params:
        assert p.name in t.__doc__
    keys = [p.yamlkey for p in t.spec.params if p.yamlkey]
    assert len(keys) == len(set(keys))                      # one parameter per YAML key


def test_yaml_blocks_become_task_calls():
    from alakazam.caltasks.yamlrun import apply_params, fluxscale_params, solve_params

    p = solve_params({"ms": "sim.ms", "output": "cal.h5", "ref_ant": 2, "jones": ["K", "G"],
                      "field": [["3C286"], ["3C286", "3C147"]], "time_interval": ["scan", "2min"],
                      "phase_only": [False, True], "solver_backend": "scipy", "max_iter": 50,
                      "external_preapply": {"tables": ["old.h5"], "jones": ["K0"],
                                            "field_select": ["pinned"], "solution_field": [["3C286"]]}})
    assert p == {"vis": "sim.ms", "caltable": "cal.h5", "refant": "2", "jones": ["K", "G"],
                 "field": ["3C286", "3C286,3C147"], "solint": ["scan", "2min"], "calmode": ["ap", "p"],
                 "solver": "scipy", "maxiter": 50, "gaintable": ["old.h5"], "gainjones": ["K0"],
                 "gainfield": ["pinned"], "gainsolutionfield": ["3C286"]}
    assert solve_params({"field": ["3C286", "3C147"], "phase_only": True}) == \
        {"field": "3C286,3C147", "calmode": "p"}
    assert fluxscale_params({"reference_table": "a.h5", "reference_field": ["3C286"],
                             "transfer_field": ["3C147"], "output": "b.h5", "jones_type": "G1"}) == \
        {"caltable": "a.h5", "reference": ["3C286"], "transfer": ["3C147"], "fluxtable": "b.h5",
         "jones": "G1"}
    assert apply_params({"ms": "t.ms", "output_col": "CORRECTED_DATA", "propagate_flags": False,
                         "jones": ["K0", "G0"], "tables": ["c.h5", "c.h5"],
                         "solution_field": [None, ["3C147"]],
                         "target_field": ["TARGET"]}) == \
        {"vis": "t.ms", "outputcolumn": "CORRECTED_DATA", "applymode": "calonly", "jones": ["K0", "G0"],
         "gaintable": ["c.h5", "c.h5"], "solutionfield": ["", "3C147"], "field": ["TARGET"]}
    with pytest.raises(ValueError, match=r"apply\[1\]\.bogus"):
        apply_params({"bogus": 1}, where="apply[1]")


def test_yaml_runner_validates_whole_file_first(tmp_path, record, fake_ms):
    from alakazam.caltasks.yamlrun import run_yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"solve:\n  - ms: {fake_ms}\n    output: c.h5\n    jones: [K, G]\n"
                   "    time_interval: [scan, 2min, inf]\n"
                   "apply:\n  - ms: x.ms\n    jones: [K0]\n    tables: [c.h5]\n    time_interp: [sideways]\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(cfg))
    keys = " ".join(e.value.errors)
    assert "solve[0].time_interval" in keys and "apply[0].time_interp" in keys
    assert record == []                                 # nothing ran
    cfg.write_text(f"solve:\n  - ms: {fake_ms}\n    output: c.h5\n    jones: K\n    field: 3C286\n")
    out = run_yaml(str(cfg))
    assert out == {"solve": [{"engine": "solve"}], "fluxscale": [], "apply": []}
    assert record[0][1].output == "c.h5" and record[0][1].steps[0].field == ["3C286"]
    cfg.write_text("solve:\n  - ms: missing.ms\n    output: c.h5\n    jones: K\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(cfg))
    assert list(e.value.errors) == ["solve[0].ms"] and "missing.ms" in str(e.value)
