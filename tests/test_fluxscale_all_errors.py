"""akfluxscale / a fluxscale block report every bad parameter at once, named as the interface names it.

A hostile review: a fluxscale block with five bad values -- ``output: sim.ms`` (an MS directory),
``jones_type: K0`` (a K term), ``transfer_field: [TARGET]`` (no G0 solutions), ``refspwmap: [5]`` (no
SPW 5), ``ms: nope.ms`` (missing) -- took four runs to see them all: output, then jones_type, then
transfer_field, then ms and refspwmap (calibration/fluxscale.check_inputs stopped at the first failed
stage); the Python call did the same.  ``akfluxscale(caltable='notes.txt', ...)`` (a text file) failed in
the engine, after the Begin line, naming the YAML key ``reference_table`` without the ``akfluxscale:``
prefix.
"""

import logging
import os
import textwrap

import pytest

from alakazam.caltasks import akcal, akfluxscale
from alakazam.cli import main
from alakazam.errors import ParameterError
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """sim.ms (fields 3C286, 3C147, TARGET; SPWs 0 and 1) and cal.h5 (K0 and G0 of 3C286 and 3C147)."""
    d = tmp_path_factory.mktemp("fs_all_errors")
    ms, cal = str(d / "sim.ms"), str(d / "cal.h5")
    simulate_ms(ms, n_ant=5, n_chan=(8, 4), int_s=120.0, scan_len_s=600.0, duration_h=1.5, noise=0.05,
                seed=3, leakage=False)
    akcal(vis=ms, caltable=cal, field="3C286,3C147", jones=["K", "G"], solint=["scan", "scan"],
          refant="C00", minblperant=3)
    return d


def _tables(d):
    return sorted(p for p in os.listdir(d) if p.endswith(".h5"))


def _yaml(tmp_path, solved, output):
    y = tmp_path / "y.yaml"
    y.write_text(textwrap.dedent(f"""
        fluxscale:
          - reference_table: {solved}/cal.h5
            reference_field: [3C286]
            transfer_field: [TARGET]
            output: {output}
            jones_type: K0
            refspwmap: [5]
            ms: nope.ms
    """))
    return y


FOUR = {"jones_type": "K0 is K", "transfer_field": "'TARGET' has no G0 solutions",
        "refspwmap": "[5] maps to SPW(s) [5]", "ms": "'nope.ms' does not exist"}


def _assert_all(err, expected):
    lines = err.splitlines()
    for key, text in expected.items():
        assert any(f"fluxscale[0].{key}:" in ln and text in ln for ln in lines), (key, err)


def test_yaml_four_bad_values_in_one_run(solved, tmp_path, capsys):
    """The table checks: jones_type, transfer_field, ms and refspwmap in one run (three runs before)."""
    y = _yaml(tmp_path, solved, f"{tmp_path}/out.h5")
    assert main(["--quiet", "run", str(y)]) == 2
    _assert_all(capsys.readouterr().err, FOUR)
    assert _tables(tmp_path) == [] and _tables(solved) == ["cal.h5"]      # nothing written


def test_yaml_five_bad_values_in_one_run(solved, tmp_path, capsys):
    """The review's block: an MS directory as output too -- all five in one run."""
    y = _yaml(tmp_path, solved, f"{solved}/sim.ms")
    assert main(["--quiet", "run", str(y)]) == 2
    _assert_all(capsys.readouterr().err, {"output": "sim.ms' is a directory", **FOUR})
    assert _tables(tmp_path) == [] and _tables(solved) == ["cal.h5"]


def _call_error(**kw):
    with pytest.raises(ParameterError) as e:
        akfluxscale(**kw)
    return e.value, str(e.value)


def _assert_task_names(err, msg, expected):
    """Every entry keyed by akfluxscale's parameter name, the message prefixed 'akfluxscale:', no YAML
    key named."""
    assert msg.startswith("akfluxscale: "), msg
    assert {k.removeprefix("akfluxscale.") for k in err.errors} == set(expected), err.errors
    lines = msg.splitlines()
    for name, text in expected.items():
        assert any(ln.strip().startswith(f"{name}:") and text in ln for ln in lines), (name, msg)
    for yaml_key in ("output", "jones_type", "transfer_field", "reference_table", "ms", "reference_field"):
        assert not any(ln.strip().startswith(f"{yaml_key}:") for ln in lines), (yaml_key, msg)


def test_python_call_reports_every_bad_parameter(solved, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    err, msg = _call_error(caltable=f"{solved}/cal.h5", fluxtable=f"{solved}/sim.ms", reference=["3C286"],
                           transfer=["TARGET"], jones="K0", refspwmap=[5], vis="nope.ms")
    _assert_task_names(err, msg, {"fluxtable": "sim.ms' is a directory", "jones": "K0 is K",
                                  "transfer": "'TARGET' has no G0 solutions",
                                  "refspwmap": "[5] maps to SPW(s) [5]",
                                  "vis": "'nope.ms' does not exist"})
    assert "Begin Task" not in caplog.text                  # refused before anything runs
    assert _tables(tmp_path) == [] and _tables(solved) == ["cal.h5"]


def test_config_error_does_not_hide_the_table_checks(solved, tmp_path, monkeypatch):
    """A value the config refuses (refspwmap=[-5]) and a caltable that does not exist hid every other
    bad parameter."""
    monkeypatch.chdir(tmp_path)
    err, msg = _call_error(caltable=f"{solved}/cal.h5", fluxtable="out.h5", reference=["3C286", "NOPE"],
                           transfer=["TARGET"], jones="K0", refspwmap=[-5], vis=f"{solved}/cal.h5")
    _assert_task_names(err, msg, {"refspwmap": "[-5] must be a list of SPW ids", "jones": "K0 is K",
                                  "reference": "'NOPE' has no G0 solutions",
                                  "transfer": "'TARGET' has no G0 solutions",
                                  "vis": "is a file, not a Measurement Set"})
    err, msg = _call_error(caltable="missing.h5", fluxtable=str(solved / "sim.ms"), reference=["3C286"],
                           transfer=["3C147"], vis="nope.ms")
    _assert_task_names(err, msg, {"caltable": "'missing.h5' does not exist", "fluxtable": "is a directory",
                                  "vis": "'nope.ms' does not exist"})
    assert _tables(tmp_path) == []


def test_text_file_caltable_is_named_caltable(solved, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    (tmp_path / "notes.txt").write_text("my notes\n")
    err, msg = _call_error(caltable="notes.txt", fluxtable="out.h5", reference=["3C286"], transfer=["3C147"])
    _assert_task_names(err, msg, {"caltable": "'notes.txt' is not an HDF5 file"})
    assert "Begin Task" not in caplog.text and "SEVERE" not in caplog.text
    err, msg = _call_error(caltable="notes.txt", fluxtable=str(solved / "sim.ms"), reference=["3C286"],
                           transfer=["3C147"], vis="nope.ms")          # with the others, together
    _assert_task_names(err, msg, {"caltable": "'notes.txt' is not an HDF5 file",
                                  "fluxtable": "is a directory",
                                  "vis": "'nope.ms' does not exist"})
    assert _tables(tmp_path) == []
