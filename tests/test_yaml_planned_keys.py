"""YAML preflight: a block that reads a table an earlier block writes has its keys and fields checked
against what that block will write, and an apply's correlation against the MS, before anything runs
(caltasks/yamlrun.py: ``_planned``, calibration/fluxscale.planned_errors, core/selcheck.py).

Before: the preflight skipped every key of a table an earlier block writes, and a fluxscale's tables'
contents altogether; the solve ran and wrote its table, then the fluxscale stopped with
"jones_type: jones key 'G3' not found in cal.h5" (no block path), the bad transfer field and the apply's
bad key never named.  An apply's correlation ('RR' on linear feeds) was found when the apply ran.
"""

import os
import sys

import pytest
from casacore.tables import table

from alakazam.caltasks.yamlrun import run_yaml
from alakazam.errors import ParameterError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kg_blocks import tiny_g_table, write_yaml  # noqa: E402  (tests/kg_blocks.py)


@pytest.fixture(scope="module")
def ms_cal(tmp_path_factory):
    return tiny_g_table(tmp_path_factory.mktemp("planned"))


_yaml = write_yaml


def _untouched(ms):
    with table(ms, ack=False) as t:
        assert "CORRECTED_DATA" not in t.colnames()


def test_keys_and_fields_of_a_table_an_earlier_block_writes(ms_cal, tmp_path, caplog):
    ms, _ = ms_cal
    out = str(tmp_path / "new.h5")
    y = _yaml(tmp_path, {
        "solve": [dict(ms=ms, output=out, ref_ant="C00", jones=["K", "G"], field=["3C286", "3C147"],
                       time_interval=["inf", "scan"])],
        "fluxscale": [dict(reference_table=out, output=str(tmp_path / "s.h5"), reference_field=["3C286"],
                           transfer_field=["3C147", "NOSUCH"], jones_type="G3")],
        "apply": [dict(ms=ms, tables=[out], jones=["K0", "G5"])]})
    with pytest.raises(ParameterError) as e:
        run_yaml(y)
    errors = e.value.errors
    assert set(errors) == {"fluxscale[0].jones_type", "fluxscale[0].transfer_field",
                           "apply[0].jones[1]"}, errors
    assert "'G3' not found in" in errors["fluxscale[0].jones_type"][0]
    assert "as solve[0] writes it; available: K0, G0" in errors["fluxscale[0].jones_type"][0]
    assert errors["fluxscale[0].transfer_field"] == [
        f"'NOSUCH' has no solutions in {out} as solve[0] writes it (fields: 3C147, 3C286)"]
    assert "'G5' not found" in errors["apply[0].jones[1]"][0]
    assert not os.path.exists(out) and not (tmp_path / "s.h5").exists()
    assert "Begin Task" not in caplog.text
    _untouched(ms)


def test_planned_keys_add_to_the_keys_the_table_keeps(ms_cal, tmp_path):
    """A solve into an existing table keeps its other keys (G0 here) and numbers its steps from 0 (K0,
    G0 replaced); a fluxscale's output holds its reference table's keys; a key of the right type but
    not a gain, and a field the key is not solved on, are named too."""
    import shutil

    ms, cal = ms_cal
    out = str(tmp_path / "c.h5")
    shutil.copy(cal, out)                   # G0 on 3C286
    y = _yaml(tmp_path, {
        "solve": [dict(ms=ms, output=out, ref_ant="C00", jones=["K"], field=["3C147"])],
        "fluxscale": [dict(reference_table=out, output=str(tmp_path / "s.h5"), reference_field=["3C147"],
                           transfer_field=["TARGET"], jones_type="K0"),
                      dict(reference_table=out, output=str(tmp_path / "s2.h5"), reference_field=["3C286"],
                           transfer_field=["3C147"], jones_type="G")],
        "apply": [dict(ms=ms, tables=[out, str(tmp_path / "s.h5")], jones=["G0", "K1"]),
                  dict(ms=ms, tables=[str(tmp_path / "s.h5")], jones=["K0", "G0", "G1"])]})
    with pytest.raises(ParameterError) as e:
        run_yaml(y)
    errors = e.value.errors
    assert set(errors) == {"fluxscale[0].jones_type", "fluxscale[1].transfer_field", "apply[0].jones[1]",
                           "apply[1].jones[2]"}, errors
    assert "fluxscale scales G (gain) solutions; K0 is K" in errors["fluxscale[0].jones_type"]
    assert errors["fluxscale[1].transfer_field"] == [
        f"'3C147' has no G0 solutions in {out} as solve[0] writes it (fields: 3C286)"]
    assert "available: K0, G0" in errors["apply[1].jones[2]"][0]
    assert "as fluxscale[0] writes it" in errors["apply[1].jones[2]"][0]
    assert not (tmp_path / "s.h5").exists()
    with table(ms, ack=False) as t:
        assert "CORRECTED_DATA" not in t.colnames()


def test_apply_only_correlation_absent_from_the_ms_refused_before_anything_runs(ms_cal, tmp_path, caplog):
    ms, cal = ms_cal
    y = _yaml(tmp_path, {"apply": [dict(ms=ms, tables=[cal], jones=["G0"], correlation="RR")]})
    with pytest.raises(ParameterError) as e:
        run_yaml(y)
    assert e.value.errors == {
        "apply[0].correlation": ["'RR' selects none of the correlations present (XX, XY, YX, YY)"]}
    assert "Begin Task" not in caplog.text
    _untouched(ms)


def test_akapply_correlation_absent_from_the_ms_is_a_parameter_error(ms_cal):
    from alakazam.caltasks import akapply

    ms, cal = ms_cal
    with pytest.raises(ParameterError) as e:
        akapply(vis=ms, gaintable=[cal], jones=["G0"], correlation="LL,QQ")
    assert "akapply.correlation" in e.value.errors, e.value.errors
    _untouched(ms)


def test_correct_multi_block_file_still_runs(ms_cal, tmp_path):
    import shutil

    ms = str(tmp_path / "copy.ms")
    shutil.copytree(ms_cal[0], ms)
    out, scaled = str(tmp_path / "k.h5"), str(tmp_path / "ks.h5")
    y = _yaml(tmp_path, {
        "solve": [dict(ms=ms, output=out, ref_ant="C00", jones=["K", "G"], field=["3C286", "3C147"],
                       time_interval=["inf", "scan"], quiet=True)],
        "fluxscale": [dict(reference_table=out, output=scaled, reference_field=["3C286"],
                           transfer_field=["3C147"], jones_type="G")],
        "apply": [dict(ms=ms, tables=[out, scaled], jones=["K0", "G0"], correlation="XX,YY",
                       applymode="calonly", quiet=True)]})
    res = run_yaml(y)
    assert len(res["solve"]) == len(res["fluxscale"]) == len(res["apply"]) == 1
    assert os.path.exists(out) and os.path.exists(scaled)
    with table(ms, ack=False) as t:
        assert "CORRECTED_DATA" in t.colnames()
