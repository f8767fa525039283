"""Issue 16's per-visibility target: KC, CP and D cells no slower than G cells on the same rows.

    python benchmarks/bench_steps.py [--workdir bench_data] [--hours 7.5] [--ms PATH] [--rounds 4]

On the full-polarisation MS of ``bench_flow.py --fullpol`` (built there; its tables under
``MS.bench_tables`` from a ``bench_flow.py --fullpol`` run), in one process with the read kept as
``alakazam run`` keeps it (``readcache.Blocks``), alternately ``--rounds`` times after one untimed
round (reads, compiles):

* the bandpass G of solve1 (G1: inf, per 1 MHz, K0 + G0 pre-applied) on 3C286, and
* solve3: KC (inf, full band), CP (inf, per 1 MHz), D (inf, full band) on 3C286, K0 + G1 + G0
  pre-applied,

and prints per step the median over the rounds of the pre-apply + accumulation and of the batch +
solve + quality phases (``summary["terms"][key]["phases"]``: the part that works per visibility), of
the time the step spent evaluating the pre-applied terms' tables (``preapply_cache.block``: a block's
first step builds them for its later steps, so KC pays CP's and D's), and each cross-hand step's
accumulation + solve less its tables, as a ratio to G's.
Alternating the steps in one process is what makes the ratio steady: ``bench_flow.py`` runs the two
blocks a minute apart, and on a 2-core machine one step's time moves by 20% between runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default=os.path.join(os.path.dirname(HERE), "bench_data"))
    ap.add_argument("--hours", type=float, default=7.5, help="the fullpol MS's length (default 7.5 h)")
    ap.add_argument("--ms", help="the fullpol MS (default: bench_flow.py's under --workdir)")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    import bench_flow as bf
    from alakazam.core import readcache

    tables = _time_preapply_tables()

    ms = args.ms or os.path.join(os.path.abspath(args.workdir), f"fullpol_25a_1024c_{args.hours:g}h.ms")
    out = ms + ".bench_tables"
    b1 = os.path.join(out, "b1.h5")
    if not (os.path.isdir(ms) and os.path.exists(b1) and os.path.exists(os.path.join(out, "b2.h5"))):
        sys.exit(f"{ms} and its tables {out}/b1.h5, b2.h5 are needed: run bench_flow.py --fullpol first")
    rec = {s: d for s, _, d in bf.fullpol_recipe(ms, out)}
    tmp = tempfile.mkdtemp(prefix="bench_steps_")
    d3 = dict(rec["solve3"], output=os.path.join(tmp, "s3.h5"))
    d1 = rec["solve1"]
    dg = dict(ms=ms, ref_ant="C00", apply_parang=True, output=os.path.join(tmp, "g.h5"), jones=["G"],
              field=d1["field"], time_interval=["inf"], freq_interval=[d1["freq_interval"][2]],
              external_preapply=dict(tables=[b1, b1], jones=["K0", "G0"]))
    phases = {}
    with readcache.Blocks():
        for i in range(args.rounds + 1):
            for d in (dg, d3):
                if os.path.exists(d["output"]):
                    os.remove(d["output"])
                r = bf._run_stage("solve", d)
                if i == 0:
                    continue
                for k, v in r["terms"].items():
                    ph = v.get("phases") or {}
                    phases.setdefault("G (bandpass)" if d is dg else k, []).append(
                        (ph.get("accumulate", 0.0), tables.pop(k, 0.0), ph.get("solve", 0.0)))
                tables.clear()
    print(f"{ms}: median of {args.rounds} alternating rounds (s); 'tables': the pre-applied terms' "
          "tables evaluated in the step (the block's first step builds them for the others)")
    print(f"  {'step':14s} {'accumulate':>10s} {'(tables)':>9s} {'solve':>7s} {'sum - tables':>12s}  vs G")
    g = None
    for k, v in phases.items():
        acc, tab, sol = (statistics.median(x[i] for x in v) for i in range(3))
        tot = statistics.median(x[0] - x[1] + x[2] for x in v)
        g = tot if g is None else g
        ratio = tot / g
        verdict = "" if k.startswith("G") else ("PASS" if ratio <= 1.0 else "FAIL")
        print(f"  {k:14s} {acc:10.2f} {tab:9.2f} {sol:7.2f} {tot:12.2f}  x{ratio:.2f} {verdict}")


def _time_preapply_tables():
    """{step key: seconds in preapply_cache.block} of the steps run from now on (wraps it, and
    unit._accumulate_group to know the step)."""
    import time

    from alakazam import unit
    from alakazam.calibration import preapply_cache

    spent, current = {}, [None]
    block, acc = preapply_cache.block, unit._accumulate_group

    def timed_block(*a, **k):
        t0 = time.perf_counter()
        try:
            return block(*a, **k)
        finally:
            spent[current[0]] = spent.get(current[0], 0.0) + time.perf_counter() - t0

    def tracked(ctx, step, *a, **k):
        current[0] = step.key
        return acc(ctx, step, *a, **k)

    preapply_cache.block = timed_block
    unit._accumulate_group = tracked
    return spent


if __name__ == "__main__":
    main()
