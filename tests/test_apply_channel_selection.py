"""A channel-selected apply into an existing CORRECTED_DATA changes the selected channels only (as CASA
applycal): the other channels of the same rows keep what an earlier apply wrote there.  (It reset them to
raw DATA: review of session 39, helper's t3_chansel.py; CASA 6.7 applycal keeps them, max change 0.)"""

import shutil

import numpy as np
from casacore.tables import table

from alakazam.caltasks import akapply


def _spw0_rows(ms):
    with table(ms, ack=False) as t:
        dd = table(t.getkeyword("DATA_DESCRIPTION"), ack=False)
        ddid = int(np.flatnonzero(dd.getcol("SPECTRAL_WINDOW_ID") == 0)[0])
        dd.close()
        q = t.query(f"DATA_DESC_ID=={ddid}", sortlist="ROWID()")
        out = {c: q.getcol(c) for c in ("DATA", "CORRECTED_DATA", "FLAG")}
        q.close()
    return out


def test_channel_selection_keeps_other_channels_of_existing_column(constant_gains, tmp_path):
    src, cals = constant_gains
    ms = str(tmp_path / "c.ms")
    shutil.copytree(src, ms)
    akapply(vis=ms, gaintable=[cals["scan"]], jones=["G0"])            # every channel corrected
    first = _spw0_rows(ms)
    live = ~first["FLAG"]
    assert np.abs(first["CORRECTED_DATA"] - first["DATA"])[live].max() > 0.1   # the apply changed them
    # the same rows again, channels 0-3 only, with another table (K + G): only channels 0-3 change
    akapply(vis=ms, gaintable=[cals["scan"], cals["scan"]], jones=["K0", "G0"], spw="0:0~3")
    second = _spw0_rows(ms)
    np.testing.assert_array_equal(second["CORRECTED_DATA"][:, 4:], first["CORRECTED_DATA"][:, 4:])
    assert np.abs(second["CORRECTED_DATA"][:, :4] - first["CORRECTED_DATA"][:, :4])[live[:, :4]].max() > 0
    np.testing.assert_array_equal(second["DATA"], first["DATA"])
