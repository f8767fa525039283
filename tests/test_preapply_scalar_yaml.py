"""YAML external_preapply: a scalar ``tables`` or ``jones`` is one entry, as an apply block's
``tables: cal.h5`` and akcal(gaintable='cal.h5', gainjones='K0') (it was split into characters: 'has 6
entries', "jones key '0' not found"; review of session 39)."""

import pytest

from alakazam.config import solve_config_from_dict


@pytest.mark.parametrize("ep", [dict(tables="CAL", jones=["K0"]), dict(tables=["CAL"], jones="K0"),
                                dict(tables="CAL", jones="K0")])
def test_scalar_tables_and_jones(small_chain_table, tmp_path, ep):
    ms, cal, _ = small_chain_table
    ep = {k: (cal if v == "CAL" else [cal] if v == ["CAL"] else v) for k, v in ep.items()}
    cfg = solve_config_from_dict(dict(ms=ms, output=str(tmp_path / "o.h5"), ref_ant="C00", jones=["G"],
                                      field=["3C286"], external_preapply=ep))
    assert cfg.external_preapply.tables == [cal] and cfg.external_preapply.jones == ["K0"]
