"""Why AOFlagger flags a bright calibrator's clean samples: the residual after each calibration stage.

    python benchmarks/study_flag_residual.py [--feed linear] [--noise 0.01] [--workdir /tmp/flagstudy]

Simulates 8 antennas, 32 channels, 60 s integrations, 3 h (|d| ~ 0.07) twice -- the simulator's
leakage as drawn, and with d_pq of the reference antenna C00 set to 0 (the gauge the D solve imposes)
-- solves K, G (60 s), G (bandpass), KC, CP, D on 3C286 with parang (one pass, and iterations=3),
then G (60 s) on every field with the rest pre-applied, and prints for each stage the rms of the
residual J^-1 DATA J^-H - MODEL_DATA (computed by akflag's pre-apply, alakazam/flagging/preapply.py)
in units of the noise and the fraction of samples AOFlagger ('generic', datacolumn='residual' with
that gaintable, action='calculate') would flag.  The numbers are in README "Flagging".
"""

import argparse
import os

import numpy as np
from casacore.tables import table

from alakazam.caltasks import akflag
from alakazam.config import solve_config_from_dict
from alakazam.core import ms_io
from alakazam.flagging import preapply
from alakazam.flagging.config import flag_config_from_dict
from alakazam.flow import run_solve
from alakazam.sim import simulate_ms

CHAIN = ["K0", "G0", "G1", "KC0", "CP0", "D0"]


def residual_rms(ms, field_names, field, tables, keys, parang, noise):
    """(parallel, cross) rms per real/imaginary part of the pre-applied residual, in noise units."""
    with table(ms, ack=False) as t:
        q = t.query(f"FIELD_ID=={field_names.index(field)}")
        data, model = q.getcol("DATA"), q.getcol("MODEL_DATA")
        a1, a2, tm, fid, sc, dd = (q.getcol(c) for c in ("ANTENNA1", "ANTENNA2", "TIME", "FIELD_ID",
                                                          "SCAN_NUMBER", "DATA_DESC_ID"))
    bad = np.zeros(data.shape, bool)
    if keys:
        cfg = flag_config_from_dict(dict(ms=ms, mode="clip", datacolumn="residual", gaintable=tables,
                                         gainjones=keys, parang=parang))
        pre = preapply.load(cfg, ms_io.read_meta(ms))
        out = np.empty_like(data)
        for s in np.unique(sc):
            r = sc == s
            out[r], bad[r] = pre.correct(data[r], tm[r], a1[r], a2[r], fid[r], s, int(dd[0]))
        data = out
    res = data - model
    par = res[..., [0, 3]][~bad[..., [0, 3]]]
    crs = res[..., [1, 2]][~bad[..., [1, 2]]]
    rms = lambda x: np.sqrt(np.mean(np.abs(x) ** 2) / 2) / noise     # noqa: E731
    return rms(par), rms(crs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--feed", default="linear")
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--workdir", default="/tmp/flagstudy")
    a = ap.parse_args()
    for refzero in (False, True):
        d = os.path.join(a.workdir, f"{a.feed}_{a.noise}_{'refzero' if refzero else 'asdrawn'}")
        ms = os.path.join(d, "sim.ms")
        cal1, cal3, calf = (os.path.join(d, n) for n in ("one.h5", "it3.h5", "fields.h5"))
        if not os.path.exists(calf):
            os.makedirs(d, exist_ok=True)
            simulate_ms(ms, feed=a.feed, n_ant=8, n_chan=(32,), int_s=60.0, scan_len_s=600.0, duration_h=3.0,
                        noise=a.noise, seed=31, flag_rows=0.0, dead_ant=False, leakage_ref_zero=refzero,
                        overwrite=True)
            chain = dict(ms=ms, ref_ant="C00", apply_parang=True, jones=["K", "G", "G", "KC", "CP", "D"],
                         field=["3C286"], time_interval=["scan", "60s", "inf", "inf", "inf", "inf"],
                         freq_interval=["full", "full", "1MHz", "full", "1MHz", "full"], quiet=True)
            run_solve(solve_config_from_dict(dict(chain, output=cal1)))
            run_solve(solve_config_from_dict(dict(chain, output=cal3, iterations=3)))
            run_solve(solve_config_from_dict(dict(
                ms=ms, output=calf, ref_ant="C00", apply_parang=True, jones=["G"], time_interval=["60s"],
                freq_interval=["full"], quiet=True,
                external_preapply=dict(tables=[cal3] * 5, jones=["K0", "G1", "KC0", "CP0", "D0"]))))
        with table(ms + "::FIELD", ack=False) as t:
            names = list(t.getcol("NAME"))
        print(f"feed {a.feed}, noise {a.noise} Jy, leakage {'d_pq[C00] = 0' if refzero else 'as drawn'}")
        stages = [("DATA - MODEL_DATA", [], [], False), ("K, G, G", [cal1] * 3, CHAIN[:3], False),
                  ("K, G, G + parang", [cal1] * 3, CHAIN[:3], True),
                  ("full chain + parang, one pass", [cal1] * 6, CHAIN, True),
                  ("full chain + parang, iterations 3", [cal3] * 6, CHAIN, True),
                  ("iterations 3 + own-field G", [cal3, calf] + [cal3] * 4, CHAIN, True)]
        for field in names:
            for label, tables, keys, parang in stages:
                p, c = residual_rms(ms, names, field, tables, keys, parang, a.noise)
                kw = dict(gaintable=tables, gainjones=keys, parang=parang) if keys else {}
                # (without tables: DATA - MODEL_DATA, CASA's residual_data)
                o = akflag(vis=ms, mode="aoflagger", datacolumn="residual" if keys else "residual_data",
                           field=field, action="calculate", **kw)
                print(f"  {field:7s} {label:36s} residual / noise: parallel {p:8.2f}, cross {c:8.2f}; "
                      f"AOFlagger flags {100 * o['newly_flagged'] / o['total']:5.2f}%", flush=True)


if __name__ == "__main__":
    main()
