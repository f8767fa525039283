"""Apply benchmark on the GB-sized simulated MS of bench_flow.py: wall time vs an I/O floor (issue 4/5).

    python benchmarks/bench_apply.py [--quick] [--ms PATH] [--workdir bench_data] [--hours 1.5]

Uses (or builds) the MS of benchmarks/bench_flow.py and its K0, G0, G1 solutions (solved first when
``<workdir>/<ms>.cal.h5`` is missing), then prints:

* the floor: python-casacore ``getcol`` of DATA over the whole MS plus ``putcol`` of an array of the
  same size to a scratch column (BENCH_SCRATCH, created once without initialisation), warm, best of 2;
* alakazam.calibration.apply.run_apply of K0 + G0 + G1 to CORRECTED_DATA (config from
  alakazam.config.apply_config_from_dict) in a fresh subprocess: the first run (which creates and
  initialises the column when it does not exist yet) and a second run (column present), with wall
  time, ratio to the floor and peak memory (ru_maxrss - baseline RSS, as in bench_flow.py);
* PASS/FAIL for the target apply / floor <= 1.5.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_flow as bf  # noqa: E402

SCRATCH = "BENCH_SCRATCH"


def io_floor(ms, repeat=2):
    """Warm getcol(DATA) + putcol(scratch column of the same shape): (best seconds, bytes read)."""
    from casacore.tables import table

    from alakazam.core import ms_io

    ms_io.ensure_column(ms, SCRATCH, like="DATA", init=False)

    def once():
        with table(ms, readonly=False, ack=False) as t:
            a = t.getcol("DATA")
            t.putcol(SCRATCH, a)
            n = a.nbytes
            del a
        return n

    once()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = once()
        best = min(best, time.perf_counter() - t0)
    return best, n


def apply_dict(ms, caltable, output_col="CORRECTED_DATA"):
    keys = [k for k, _ in zip(("K0", "G0", "G1"), bf.STEPS["jones"])]
    return dict(ms=ms, jones=keys, tables=[caltable] * len(keys), output_col=output_col)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small MS (10 ant x 256 chan) for development")
    ap.add_argument("--ms", default=None, help="use this MS instead of building one")
    ap.add_argument("--workdir", default="bench_data", help="cache of built MSs and solutions")
    ap.add_argument("--hours", type=float, default=None, help="observation length (default 1.5 h)")
    ap.add_argument("--fresh-column", action="store_true",
                    help="remove CORRECTED_DATA first, so the first run includes its creation")
    ap.add_argument("--profile", default=None,
                    help="profile the second apply run: FILE.txt = py-spy raw, else cProfile output")
    args = ap.parse_args(argv)
    bf.quiet_logging()
    ms, workdir, built = bf.prepare(args)
    n_row, n_chan, n_corr, size = bf.describe_ms(ms, built)
    cal = os.path.join(workdir, os.path.basename(ms).replace(".ms", ".cal.h5"))
    if not os.path.exists(cal):
        print(f"solving {cal} first ...")
        bf.run_child(bf.solve_spec(ms, workdir, cal, "", 0.0))
    if args.fresh_column:
        from casacore.tables import table

        with table(ms, readonly=False, ack=False) as t:
            if "CORRECTED_DATA" in t.colnames():
                t.removecols(["CORRECTED_DATA"])
    floor, nbytes = io_floor(ms)
    print(f"I/O floor (getcol DATA + putcol {SCRATCH}, warm): {floor:.2f} s for 2 x {bf.gb(nbytes)}")
    tiny = bf.tiny_ms(workdir)
    tiny_cal = os.path.join(workdir, "tiny_warmup.h5")
    if not os.path.exists(tiny_cal):
        bf.run_child(bf.solve_spec(tiny, workdir, tiny_cal, "", 0.0))
    spec = {"kind": "apply", "warmup": [apply_dict(tiny, tiny_cal)], "cfg": apply_dict(ms, cal)}
    rows = []
    for label in ("first run", "second run"):
        r = bf.run_child(spec, args.profile if label == "second run" else None)
        rows.append((label, r))
    print()
    print("apply K0+G0+G1 -> CORRECTED_DATA")
    for label, r in rows:
        peak = r["maxrss"] - r["base_rss"]
        note = " (created the column)" if r["created_column"] else ""
        print(f"  {label:11s} wall {r['wall']:8.2f} s  x{r['wall'] / floor:5.2f} the floor   "
              f"peak memory {bf.gb(peak)} (largest read {bf.gb(r['largest_chunk_bytes'])}){note}")
    print(f"\ntargets (issues 4/5), MS {bf.gb(size)}{' (--quick: below the 1 GB of the real run)' if args.quick else ''}:")
    for label, r in rows:
        ratio = r["wall"] / floor
        print(f"  apply ({label}) / I/O floor <= 1.5     : x{ratio:.2f}  {'PASS' if ratio <= 1.5 else 'FAIL'}")
    print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    bf.print_hotspots(args.profile)


if __name__ == "__main__":
    main()
