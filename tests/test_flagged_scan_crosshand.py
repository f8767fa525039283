"""A calibrator scan flagged whole, solved per scan: the cross-hand terms (KC, CP) flag that scan's
solutions like every other type, instead of stopping the run with 'needs a polarised model'
(solvers/common.run: the polarised-model and cross-hand checks are for data without the signal,
not for a batch without any data)."""

import numpy as np
from casacore.tables import table

from alakazam.config import solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms


def _sets(path, key):
    return {s.scan_id: s for s in hdf5.read_term(path, key)}


def test_kc_cp_per_scan_with_a_scan_flagged_whole(tmp_path):
    ms = str(tmp_path / "sim.ms")
    simulate_ms(ms, feed="linear", n_ant=5, n_chan=(8,), int_s=120.0, scan_len_s=600.0, noise=0.05, seed=31,
                leakage_scale=0.003, leakage_ref_zero=True)
    with table(ms, readonly=False, ack=False) as t:
        scan, fid = t.getcol("SCAN_NUMBER"), t.getcol("FIELD_ID")
        cal = np.unique(scan[fid == 0])
        bad = int(cal[1])
        f = t.getcol("FLAG")
        f[scan == bad] = True
        t.putcol("FLAG", f)
    base = dict(ms=ms, ref_ant="C00", apply_parang=True, field=["3C286"], quiet=True, min_bl_per_ant=3,
                jones=["K", "G", "KC", "CP"], time_interval=["scan", "inf", "scan", "scan"],
                freq_interval=["full", "full", "full", "full"])
    run_solve(solve_config_from_dict(dict(base, output=str(tmp_path / "all.h5"))))
    good = ",".join(str(int(s)) for s in cal if s != bad)
    run_solve(solve_config_from_dict(dict(base, output=str(tmp_path / "good.h5"), scan=good)))
    for key in ("KC0", "CP0"):
        a, b = _sets(str(tmp_path / "all.h5"), key), _sets(str(tmp_path / "good.h5"), key)
        assert a[bad].flags.all()                       # the flagged scan: flagged solutions
        for s in b:                                     # the other scans: as solved without it
            np.testing.assert_array_equal(a[s].jones, b[s].jones)
            np.testing.assert_array_equal(a[s].flags, b[s].flags)
            assert not b[s].flags.all()
