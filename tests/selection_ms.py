"""An MS made ready for intent and observation selections (tests/test_rowselect.py, test_rowindex.py)."""

import numpy as np
from casacore.tables import table


def add_intents_and_observation(path, intents, obs1_from_scan):
    """In place: STATE rows with OBS_MODE ``intents`` and STATE_ID = FIELD_ID; a second OBSERVATION row,
    OBSERVATION_ID 1 from scan ``obs1_from_scan`` on."""
    with table(f"{path}::STATE", readonly=False, ack=False) as st:
        st.addrows(len(intents))
        st.putcol("OBS_MODE", intents)
    with table(f"{path}::OBSERVATION", readonly=False, ack=False) as ob:
        ob.addrows(1)
        for c in ("TELESCOPE_NAME", "OBSERVER", "PROJECT", "TIME_RANGE"):
            ob.putcell(c, 1, ob.getcell(c, 0))
    with table(path, readonly=False, ack=False) as t:
        t.putcol("STATE_ID", t.getcol("FIELD_ID"))
        t.putcol("OBSERVATION_ID", (t.getcol("SCAN_NUMBER") >= obs1_from_scan).astype(np.int32))
