"""A refant list names antennas in priority order (CASA's): one of them without any data in the MS is
left out with a warning when another listed antenna has data; alone, or with no listed antenna
having data, it is an error naming the antennas with data; unknown names are errors either way."""

import logging

import pytest

from alakazam.core import ms_io
from alakazam.errors import ParameterError


def test_refant_list_skips_an_antenna_without_data(sim_linear, caplog):
    ms, _ = sim_linear
    meta = ms_io.read_meta(ms)
    c00 = ms_io.resolve_antenna(meta, "C00")
    with caplog.at_level(logging.WARNING):
        assert ms_io.resolve_antenna(meta, ["C01", "C00"]) == [c00]           # C01: no rows in this MS
    assert "antenna 'C01' has no data" in caplog.text and "the list's other antennas serve" in caplog.text
    with pytest.raises(ParameterError, match="'C01' has no data"):
        ms_io.resolve_antenna(meta, "C01")                                   # alone: an error
    with pytest.raises(ParameterError, match="'C01' has no data"):
        ms_io.resolve_antenna(meta, ["C01"])
    with pytest.raises(ParameterError) as e:
        ms_io.resolve_antenna(meta, ["C01", "ZZ9", "C00"])                   # with an unknown name
    assert "'ZZ9' is not an antenna" in str(e.value) and "'C01' has no data" in str(e.value)


def test_yaml_ref_ant_comma_string_passes_the_precheck(sim_linear):
    """The run's pre-check reads YAML ref_ant 'C02,C00' as the list akcal's refant makes of it (review
    53c: it was looked up whole, 'C02,C00' is not an antenna, and the run refused it); a bad name in
    the string is still named."""
    from alakazam.core import selcheck

    ms, _ = sim_linear
    assert "ref_ant" not in selcheck.ms_errors(dict(ms=ms, ref_ant="C02,C00"))
    assert "ref_ant" not in selcheck.ms_errors(dict(ms=ms, ref_ant=""))
    errs = selcheck.ms_errors(dict(ms=ms, ref_ant="C02,ZZ9"))
    assert any("'ZZ9' is not an antenna" in m for m in errs["ref_ant"])
