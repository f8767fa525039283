"""Several MSs as one job (alakazam/multims.py): an MS split by SPW (rows of one DATA_DESC_ID removed
from each copy, as MeerKAT / uGMRT pipelines split them) solves into one table equal to the solve of the
unsplit MS, and apply takes the list too; MSs with different antennas are refused before anything runs.
"""

import shutil

import numpy as np
import pytest
import yaml

from alakazam.calibration.apply import run_apply
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.errors import AlakazamError
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

BLOCK = dict(jones=["K", "G"], field=["3C286", "3C147"], time_interval=["scan", "300s"],
             freq_interval=["full", "full"], ref_ant="C00", quiet=True)


def split_by_ddid(ms, dest, keep_ddid):
    """A copy of ``ms`` at ``dest`` holding only the rows of DATA_DESC_ID ``keep_ddid`` (subtables whole)."""
    from casacore.tables import table

    with table(str(ms), ack=False) as t:
        q = t.selectrows(np.nonzero(t.getcol("DATA_DESC_ID") == keep_ddid)[0])
        q.copy(str(dest), deep=True)        # (the tiled storage managers cannot remove rows in place)
        q.close()
    return str(dest)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    d = tmp_path_factory.mktemp("multims")
    ms = str(d / "full.ms")
    simulate_ms(ms, n_ant=5, n_chan=(8, 4), duration_h=1.0, int_s=120.0, noise=0.05, seed=3, leakage=False)
    return ms, split_by_ddid(ms, d / "spw0.ms", 0), split_by_ddid(ms, d / "spw1.ms", 1)


def _cell_rows(ms, col):
    from casacore.tables import table

    with table(ms, ack=False) as t:
        dd = t.getcol("DATA_DESC_ID")
        return {d: np.stack([t.getcell(col, int(r)) for r in np.nonzero(dd == d)[0]]) for d in np.unique(dd)}


def test_split_by_spw_solves_and_applies_as_one(split, tmp_path, caplog):
    full, a, b = split
    ref = str(tmp_path / "full.h5")
    run_solve(solve_config_from_dict(dict(BLOCK, ms=full, output=ref)))
    out = str(tmp_path / "both.h5")
    # the YAML form: ms is a list (through alakazam run -> akcal, as a user writes it)
    from caltasks.yamlrun import run_yaml

    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"solve": [dict(BLOCK, ms=[a, b], output=out)]}))
    run_yaml(str(cfg), sections=("solve",))
    assert hdf5.list_keys(out) == hdf5.list_keys(ref) == ["K0", "G0"]
    for key in ("K0", "G0"):
        sr = {(s.field_name, s.spw, s.scan_id): s for s in hdf5.read_term(ref, key)}
        sm = {(s.field_name, s.spw, s.scan_id): s for s in hdf5.read_term(out, key)}
        assert sorted(sr) == sorted(sm) and {k[1] for k in sm} == {0, 1}
        for k in sr:
            np.testing.assert_array_equal(sr[k].flags, sm[k].flags)
            ok = ~sr[k].flags
            np.testing.assert_allclose(sm[k].jones[ok], sr[k].jones[ok], rtol=0, atol=1e-10)
    # apply takes the list: each MS's CORRECTED_DATA equals the unsplit MS's rows of its SPW
    from caltasks.akapply import akapply

    tbl = dict(jones=["K0", "G0"], tables=[out, out], quiet=True)
    import logging
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        res = akapply(vis=[a, b], gaintable=[out, out], jones=["K0", "G0"])      # the task form
    assert len(res["per_ms"]) == 2
    # the table was solved on both: neither MS is 'another MS' (a review, session 49: the first set's)
    assert not [r for r in caplog.records if "(another MS)" in r.getMessage()]
    run_apply(apply_config_from_dict(dict(tbl, ms=full)))
    cf = _cell_rows(full, "CORRECTED_DATA")
    for ms, d in ((a, 0), (b, 1)):
        got = _cell_rows(ms, "CORRECTED_DATA")
        assert list(got) == [d]
        np.testing.assert_array_equal(got[d], cf[d])
    assert res["rows"] == sum(len(v) for v in cf.values())


def test_different_antennas_refused(split, tmp_path):
    """Different ANTENNA names: an error before anything is solved; a missing MS in vis=[...] is a
    parameter error naming it."""
    from caltasks.akcal import akcal

    from alakazam.errors import ParameterError

    from casacore.tables import table

    full, a, _ = split
    c = str(tmp_path / "renamed.ms")
    shutil.copytree(a, c)
    with table(c + "::ANTENNA", readonly=False, ack=False) as t:
        t.putcell("NAME", 1, "XX99")
    out = tmp_path / "x.h5"
    with pytest.raises(AlakazamError, match="different antennas.*XX99"):
        run_solve(solve_config_from_dict(dict(BLOCK, ms=[full, c], output=str(out))))
    assert not out.exists()
    with pytest.raises(ParameterError, match="nope.ms"):
        akcal(vis=[a, str(tmp_path / "nope.ms")], caltable=str(out), jones=["G"], field="3C286")
    assert not out.exists()
