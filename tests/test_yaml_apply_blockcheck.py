"""YAML preflight: an apply block whose own ms / tables / jones are bad still has every bad parameter
reported, with the file's other errors, before anything runs (calibration/apply_blockcheck.py).

Before: with tables and jones of different lengths, or a missing MS, the block had no config, so a
table that does not exist, a key missing from an existing table and a bad time_interp value (when the
list's length was wrong too) were not reported; the user met them one run at a time.
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
def solved(tmp_path_factory):
    return tiny_g_table(tmp_path_factory.mktemp("ybc"))


def _run(tmp_path, doc):
    with pytest.raises(ParameterError) as e:
        run_yaml(write_yaml(tmp_path, doc))
    return e.value.errors


def _untouched(ms, tmp_path):
    with table(ms, ack=False) as t:
        assert "CORRECTED_DATA" not in t.colnames()
    assert not os.path.exists(ms + ".flagversions")
    assert not (tmp_path / "other.h5").exists()


def test_bad_ms_and_bad_keys_all_reported(solved, tmp_path):
    ms, cal = solved
    errors = _run(tmp_path, {
        "solve": [dict(ms=ms, output=str(tmp_path / "other.h5"), ref_ant="C00", jones=["G"],
                       field=["3C286"], time_interval=["banana"])],
        "apply": [dict(ms=str(tmp_path / "nothere.ms"), jones=["G0", "G7"], tables=[cal],
                       time_interp=["nearest", "linear", "bogus"])]})
    assert "banana" in " ".join(errors["solve[0].time_interval[0]"])
    assert "does not exist" in " ".join(errors["apply[0].ms"])
    assert "G7" in " ".join(errors["apply[0].jones[1]"])                     # not in cal.h5 (new)
    assert "has 3 entries" in " ".join(errors["apply[0].time_interp"])
    assert "'bogus'" in " ".join(errors["apply[0].time_interp[2]"])           # the value too (new)
    assert not any(k.startswith("apply[0].jones[0]") for k in errors)        # G0 is in cal.h5
    _untouched(ms, tmp_path)


def test_lengths_mismatch_and_missing_table_reported(solved, tmp_path):
    ms, cal = solved
    errors = _run(tmp_path, {
        "solve": [dict(ms=ms, output=str(tmp_path / "other.h5"), ref_ant="C00", jones=["G"],
                       field=["3C286"], time_interval=["banana"])],
        "apply": [dict(ms=ms, jones=["G0", "G0", "G0"], tables=[cal, str(tmp_path / "missing.h5")],
                       time_interp=["nearest", "bogus"], field_select=["nearest_time", "closest"])]})
    assert "banana" in " ".join(errors["solve[0].time_interval[0]"])
    assert "has 2 entries" in " ".join(errors["apply[0].tables"])
    assert "does not exist and no earlier block writes it" in " ".join(errors["apply[0].tables[1]"])
    assert "'bogus'" in " ".join(errors["apply[0].time_interp[1]"])
    assert "'closest'" in " ".join(errors["apply[0].field_select[1]"])
    _untouched(ms, tmp_path)


def test_table_written_by_an_earlier_block_not_reported_missing(solved, tmp_path):
    """A table the solve block writes is not 'missing', and its keys are not checked against the old
    file (the solve rewrites it)."""
    ms, cal = solved
    new = str(tmp_path / "new.h5")
    errors = _run(tmp_path, {
        "solve": [dict(ms=ms, output=new, ref_ant="C00", jones=["G"], field=["3C286"],
                       time_interval=["banana"])],
        "apply": [dict(ms=str(tmp_path / "nothere.ms"), jones=["G0", "G5"], tables=[new],
                       time_interp=["nearest"])]})
    assert set(errors) == {"solve[0].time_interval[0]", "apply[0].ms"}, errors
