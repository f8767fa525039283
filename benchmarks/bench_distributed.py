"""Apply and akflag: in process vs dask LocalCluster of 1 and 2 workers (issue 15, docs/scaling.md).

    python benchmarks/bench_distributed.py --ms PATH --workdir DIR [--field 3C286]

Copies nothing: ``--ms`` is written (CORRECTED_DATA, FLAG; FLAG restored from its flag version after
each akflag run).  Solves one G (inf, full band) on ``--field`` into DIR/cal.h5 once, then times:
apply of that G to every field (in process, workers=1, workers=2, in process again), akflag mode='mad'
(same).  Prints wall times, the 1-minute load average before/after each run and the number of CPUs;
checks that CORRECTED_DATA and FLAG of the distributed runs equal the in-process ones on every 50th row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sample(ms, col):
    from casacore.tables import table

    with table(ms, ack=False) as t:
        return np.stack([t.getcell(col, r) for r in range(0, t.nrows(), 50)])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--ms", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--field", default="3C286")
    a = ap.parse_args(argv)
    from alakazam.calibration.apply import run_apply
    from alakazam.config import apply_config_from_dict, solve_config_from_dict
    from alakazam.core import flagversions
    from alakazam.flagging import run_flag
    from alakazam.flagging.config import flag_config_from_dict
    from alakazam.flow import run_solve

    os.makedirs(a.workdir, exist_ok=True)
    cal = os.path.join(a.workdir, "cal.h5")
    out = {"cpus": os.cpu_count(), "ms_bytes": sum(os.path.getsize(os.path.join(d, f))
                                                   for d, _, fs in os.walk(a.ms) for f in fs)}
    if not os.path.exists(cal):
        t = time.perf_counter()
        run_solve(solve_config_from_dict(dict(ms=a.ms, output=cal, jones=["G"], field=[a.field],
                                              time_interval=["inf"], freq_interval=["full"], ref_ant=0,
                                              quiet=True)))
        out["solve_s"] = time.perf_counter() - t

    def timed(name, fn):
        l0 = os.getloadavg()[0]
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        out[name] = {"s": round(dt, 1), "load1_before": round(l0, 2),
                     "load1_after": round(os.getloadavg()[0], 2)}
        print(name, out[name], flush=True)

    ref = {}
    for name, w in (("apply_inproc", 0), ("apply_w1", 1), ("apply_w2", 2), ("apply_inproc_again", 0)):
        timed(name, lambda w=w: run_apply(apply_config_from_dict(dict(ms=a.ms, jones=["G0"], tables=[cal],
                                                                      quiet=True, workers=w))))
        s = _sample(a.ms, "CORRECTED_DATA")
        if "c" in ref:
            out[name]["equal_to_inproc"] = bool(np.array_equal(s, ref["c"]))
        else:
            ref["c"] = s
    for name, w in (("flag_mad_inproc", 0), ("flag_mad_w1", 1), ("flag_mad_w2", 2)):
        res = {}
        timed(name, lambda w=w, res=res: res.update(run_flag(flag_config_from_dict(
            dict(ms=a.ms, mode="mad", quiet=True, workers=w)))))
        s = _sample(a.ms, "FLAG")
        out[name]["newly_flagged"] = res["newly_flagged"]
        if "f" in ref:
            out[name]["equal_to_inproc"] = bool(np.array_equal(s, ref["f"]))
        else:
            ref["f"] = s
        flagversions.restore(a.ms, res["version"], merge="replace")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
