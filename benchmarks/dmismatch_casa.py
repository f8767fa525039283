"""D on an unpolarised calibrator whose corrected parallel hands are R x the model: CASA's polcal Df
against alakazam's D fitted on the cross hands only (now) and on all four correlations (before
session 28).

    PYTHONPATH=$PWD python benchmarks/dmismatch_casa.py [--feed circular|linear] [--out DIR]

Simulates (alakazam.sim.simulate_ms) 8 antennas, 4 x 1 MHz, 3 h, no gains, leakage |d| <= 0.1 with
d_pq[C00] = 0, noise 0.05 Jy; 3C147 is unpolarised, 2.5 Jy.  Its MODEL_DATA is set to 2.5 / R Jy (so
the data are R x the model, as when the gains pre-applied were fitted to another field or the flux
model is off), D is solved on 3C147 (solint inf, refant C00) by CASA 6 polcal Df in a CASA python
($ALAKAZAM_CASA_PYTHON or /work/casavenv/bin/python) and by alakazam, and max |D - truth| is printed.

Measured (CASA 6.7; the same for both feeds to +-0.0003):

======  ========  =====================  ========================
R       CASA Df   alakazam, cross hands  alakazam, all four corr.
======  ========  =====================  ========================
1.00    0.0045    0.0022                 0.0022
1.05    0.0064    0.0050                 0.0441
1.10    0.0097    0.0100                 not converged
2.50    0.147     (error: |R - 1| > 0.5)  not converged
======  ========  =====================  ========================

So CASA's Df, like the cross-hand fit, returns R x the leakage; the fit of all four correlations moves
every d towards |d_a d_b| ~ |R - 1| through the parallel hands.  alakazam warns at |R - 1| > 0.1 and
stops at > 0.5 (solvers/leakage.check_parallel_hands).
"""
import argparse
import os
import shutil
import subprocess
import sys

import numpy as np


def make_ms(base, feed):
    from alakazam.sim import simulate_ms

    if not os.path.exists(base):
        simulate_ms(base, feed=feed, n_ant=8, n_ant_extra=0, n_chan=(4,), int_s=120.0, scan_len_s=600.0,
                    noise=0.05, seed=31, flag_rows=0.0, dead_ant=False, delays=False, bandpass=False,
                    time_gains=False, crosshand=False, leakage_scale=0.05, leakage_ref_zero=True)
    return np.load(base + ".truth.npz")["leakage"]


def with_ratio(base, ms, r):
    from casacore.tables import table

    shutil.rmtree(ms, ignore_errors=True)
    shutil.copytree(base, ms)
    with table(ms + "/FIELD", ack=False) as f:
        fid = list(f.getcol("NAME")).index("3C147")
    with table(ms, readonly=False, ack=False) as t:
        sel = t.getcol("FIELD_ID") == fid
        m = t.getcol("MODEL_DATA")
        m[sel] *= 2.5 / r
        t.putcol("MODEL_DATA", m)


def casa_df(ms, n_ant):
    from casacore.tables import table

    py = os.environ.get("ALAKAZAM_CASA_PYTHON", "/work/casavenv/bin/python")
    out = ms + ".Df"
    shutil.rmtree(out, ignore_errors=True)
    code = (f"from casatasks import polcal\npolcal(vis={ms!r}, caltable={out!r}, field='3C147', "
            f"poltype='Df', solint='inf', combine='scan', refant='C00', minblperant=3)")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    subprocess.run([py, "-c", code], check=True, capture_output=True, env=env)
    with table(out, ack=False) as t:
        a1, par = t.getcol("ANTENNA1"), t.getcol("CPARAM")[:, 0, :]
    d = np.zeros((n_ant, 2), complex)
    d[a1] = par
    return d


def alakazam_d(ms, four):
    from alakazam.config import solve_config_from_dict
    from alakazam.errors import AlakazamError
    from alakazam.flow import run_solve
    from alakazam.io import hdf5
    from alakazam.solvers import leakage

    real_only, real_check = leakage.cross_hands_only, leakage.check_parallel_hands
    if four:                                  # the fit before session 28: every correlation, no check
        leakage.cross_hands_only = lambda b: True
        leakage.check_parallel_hands = lambda *a: None
    cal = ms + (".four.h5" if four else ".h5")
    if os.path.exists(cal):
        os.remove(cal)
    try:
        run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", apply_parang=True,
                                              jones=["D"], field=["3C147"], time_interval=["inf"],
                                              freq_interval=["full"], quiet=True)))
    except AlakazamError as e:
        return "not converged" if "did not converge" in str(e) else "error: " + str(e)[:60]
    finally:
        leakage.cross_hands_only, leakage.check_parallel_hands = real_only, real_check
    (s,) = hdf5.read_term(cal, "D0")
    j = s.jones[:, 0, 0]
    return np.stack([j[:, 0, 1], j[:, 1, 0]], -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--feed", default="circular", choices=["circular", "linear"])
    ap.add_argument("--out", default="/tmp/dmismatch")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, f"{a.feed}.ms")
    truth = make_ms(base, a.feed)
    print(f"{a.feed} feeds; max |d_true| = {np.abs(truth).max():.3f}; max |D - truth|:")
    print(f"{'R':>6} {'CASA Df':>10} {'cross hands':>14} {'all four':>14}")
    for r in (1.0, 1.05, 1.1, 2.5):
        ms = os.path.join(a.out, f"{a.feed}_{r}.ms")
        with_ratio(base, ms, r)
        cols = [casa_df(ms, len(truth)), alakazam_d(ms, False), alakazam_d(ms, True)]
        txt = [f"{np.abs(c - truth).max():.4f}" if isinstance(c, np.ndarray) else c[:14] for c in cols]
        print(f"{r:6.2f} {txt[0]:>10} {txt[1]:>14} {txt[2]:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
