"""CASA's virtual model kept in the SOURCE subtable.

Measured with CASA 6.7 (setjy field='0' standard='Perley-Butler 2017' usescratch=False on an MS without
MODEL_DATA): without a SOURCE subtable setjy writes the main-table keywords definedmodel_field_0 ->
'model_0' and model_0 (a componentlist record: cl_0, numcl, version); with a SOURCE subtable it writes
none of those but the SOURCE keywords definedmodel_field_0 -> 'model_0', model_0 -> 0 (the row) and a
new record column SOURCE_MODEL (row 0: cl_0, numcl, version; other rows empty).  The missing-MODEL_DATA
error names the virtual model in both layouts (it named it only for the main-table keywords).
"""

import os

import numpy as np
import pytest

from alakazam.core import ms_io
from alakazam.errors import AlakazamError
from alakazam.sim import simulate_ms


def _ms_with_source(tmp_path, virtual):
    """A small simulated MS without MODEL_DATA, with a SOURCE subtable; ``virtual``: as CASA 6.7
    setjy usescratch=False leaves it."""
    from casacore.tables import default_ms_subtable, makescacoldesc, maketabdesc, table

    ms = str(tmp_path / "v.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.5, noise=0.05, seed=1,
                leakage=False)
    with table(ms, readonly=False, ack=False) as t:
        t.removecols(["MODEL_DATA"])
        tmin = t.getcol("TIME").min()
    with table(ms + "/FIELD", readonly=False, ack=False) as f:
        n = f.nrows()
        names = list(f.getcol("NAME"))
        dirs = f.getcol("PHASE_DIR")
        f.putcol("SOURCE_ID", np.arange(n, dtype=np.int32))
    s = default_ms_subtable("SOURCE", ms + "/SOURCE")
    s.addrows(n)
    s.putcol("SOURCE_ID", np.arange(n, dtype=np.int32))
    s.putcol("NAME", names)
    s.putcol("TIME", np.full(n, tmin))
    s.putcol("INTERVAL", np.full(n, 1e10))
    s.putcol("SPECTRAL_WINDOW_ID", np.full(n, -1, np.int32))
    s.putcol("DIRECTION", dirs[:, 0, :])
    if virtual:
        s.addcols(maketabdesc(makescacoldesc("SOURCE_MODEL", {"numcl": 0})))
        s.putcell("SOURCE_MODEL", 0, {"cl_0": {"shape": {"type": "Point"}}, "numcl": 1, "version": 2})
        s.putkeyword("definedmodel_field_0", "model_0")
        s.putkeyword("model_0", 0)
    s.close()
    with table(ms, readonly=False, ack=False) as t:
        t.putkeyword("SOURCE", "Table: " + ms + "/SOURCE")
    return ms


def test_virtual_model_in_source_table_named(tmp_path):
    ms = _ms_with_source(tmp_path, virtual=True)
    with pytest.raises(AlakazamError, match=r"MODEL_DATA.*CASA virtual model.*usescratch=True.*smodel"):
        ms_io.check_columns(ms, ["DATA", "MODEL_DATA"])
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve

    cal = str(tmp_path / "g.h5")
    with pytest.raises(AlakazamError, match=r"CASA virtual model"):
        run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant=0, jones="G", field=["3C286"],
                                              time_interval="inf", quiet=True)))
    assert not os.path.exists(cal)


def test_source_table_without_virtual_model_keeps_the_plain_hint(tmp_path):
    ms = _ms_with_source(tmp_path, virtual=False)
    with pytest.raises(AlakazamError, match=r"MODEL_DATA.*fill it with a model first") as e:
        ms_io.check_columns(ms, ["DATA", "MODEL_DATA"])
    assert "virtual" not in str(e.value)


CASA_PY = os.environ.get("ALAKAZAM_CASA_PYTHON", "/work/casavenv/bin/python")


@pytest.mark.skipif(not os.access(CASA_PY, os.X_OK), reason=f"no CASA Python at {CASA_PY}")
def test_casa_setjy_virtual_model_with_source_table(tmp_path):
    """CASA's own setjy usescratch=False on the MS with a SOURCE table: the layout above, and the hint."""
    import subprocess

    ms = _ms_with_source(tmp_path, virtual=False)
    code = ("from casatasks import setjy\n"
            f"setjy(vis={ms!r}, field='0', standard='Perley-Butler 2017', usescratch=False)\n")
    r = subprocess.run([CASA_PY, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-3000:]
    from casacore.tables import table

    with table(ms, ack=False) as t:
        assert not any(str(k).startswith("definedmodel_field_") for k in t.getkeywords())
        assert "MODEL_DATA" not in t.colnames()
    with table(ms + "/SOURCE", ack=False) as s:
        assert s.getkeyword("definedmodel_field_0") == "model_0" and "SOURCE_MODEL" in s.colnames()
    with pytest.raises(AlakazamError, match=r"CASA virtual model.*usescratch=True"):
        ms_io.check_columns(ms, ["DATA", "MODEL_DATA"])
