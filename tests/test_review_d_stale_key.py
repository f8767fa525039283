"""Hostile review of the D solve's parallel-hand check (solvers/leakage.check_parallel_hands).

A block whose D step stops with the new |R - 1| > 0.5 error still writes the steps before it (flow.run_solve:
"the failing one never is"), and keeps every other key of the table.  When the table already holds a D0
of an earlier run, the result is the new K0 / G0 beside the OLD D0, solved against the old gains -- and
the error did not say so; akapply of [K0, G0, D0] then applies a leakage that does not belong to those
gains.  Measured: |G0| 1.58 (amplitude and phase) -> 1.00 (phase-only) while D0 stayed the first run's.
Now the error (and a warning) names the stale key (flow._stale_note); the key itself is kept.
"""

import h5py
import numpy as np
import pytest
from casacore.tables import table

from alakazam.config import solve_config_from_dict
from alakazam.errors import AlakazamError
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms


def test_failed_d_step_does_not_leave_an_older_d_beside_new_gains(tmp_path):
    ms = str(tmp_path / "d.ms")
    simulate_ms(ms, feed="linear", n_ant=6, n_ant_extra=0, n_chan=(2,), duration_h=1.0, int_s=120.0,
                scan_len_s=600.0, noise=0.05, seed=3, flag_rows=0.0, dead_ant=False, delays=False,
                bandpass=False, time_gains=False, crosshand=False, leakage_ref_zero=True)
    with table(ms + "/FIELD", ack=False) as f:
        assert "3C147" in list(f.getcol("NAME"))          # true 2.5 Jy, MODEL_DATA 1 Jy
    cal = str(tmp_path / "cal.h5")
    base = dict(ms=ms, output=cal, ref_ant="C00", apply_parang=True, jones=["G", "D"], field=["3C147"],
                quiet=True)
    run_solve(solve_config_from_dict(base))                     # G absorbs the 2.5: R = 1, D0 solved
    (d_old,) = hdf5.read_term(cal, "D0")
    with pytest.raises(AlakazamError) as e:                     # phase-only G: R = 2.5 -> error at D
        run_solve(solve_config_from_dict(dict(base, phase_only=[True, False])))
    (g_new,) = hdf5.read_term(cal, "G0")
    assert np.allclose(np.abs(g_new.jones[..., 0, 0]), 1.0)    # the new, phase-only G0 was written
    with h5py.File(cal, "r") as f:
        stale = "D0" in f
    # the older D0 is kept (nothing the user did not ask to change is deleted), and the error says so
    assert stale and "still holds D0 from an earlier run, solved against the earlier G0" in str(e.value), \
        f"{cal} holds the new G0 beside the earlier run's D0 and the error does not say so: {e.value}"
    assert "R - 1" in str(e.value)
    del d_old
