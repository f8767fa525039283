"""Apply benchmark on the GB-sized simulated MS of bench_flow.py: wall time vs an I/O floor (issue 4/5).

    python benchmarks/bench_apply.py [--quick] [--ms PATH] [--workdir bench_data] [--hours 1.5]

Uses (or builds) the MS of benchmarks/bench_flow.py and its K0, G0, G1 solutions (solved first when
``<workdir>/<ms>.cal.h5`` is missing), then prints:

* the floor: python-casacore ``getcol`` of DATA over the whole MS plus ``putcol`` of an array of the
  same size to a scratch column (BENCH_SCRATCH, created once without initialisation), warm, best of 2;
  every measured phase starts after ``os.sync()`` (no write-back of the previous phase's ~1 GB);
* alakazam.calibration.apply.run_apply of K0 + G0 + G1 to CORRECTED_DATA (config from
  alakazam.config.apply_config_from_dict) in a fresh subprocess: the first run (which creates and
  initialises the column when it does not exist yet) and a second run (column present), with wall
  time, ratio to the floor and peak memory (VmHWM - baseline RSS, as in bench_flow.py; the 1.92 GB
  reported before was ru_maxrss inherited from this parent's floor getcol + putcol, not apply's);
* a chunked floor (getcolnp + putcol in blocks, as apply does; informative, no target);
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


def _settle():
    """Flush dirty pages (os.sync) before a measured phase, so that it does not pay for the write-back
    of the previous one (the floor's putcols leave ~1 GB dirty; the first apply run used to be timed
    during that write-back)."""
    if hasattr(os, "sync"):
        os.sync()


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
        _settle()
        t0 = time.perf_counter()
        n = once()
        best = min(best, time.perf_counter() - t0)
    return best, n


def chunked_floor(ms, block_rows=10530, repeat=2):
    """The same bytes moved the way apply moves them: getcolnp(DATA) into one preallocated block and
    putcol(scratch) of it, block by block (informative: python-casacore's whole-column getcol of
    :func:`io_floor` is itself slower than this, which can put apply below that floor)."""
    from casacore.tables import table

    def once():
        with table(ms, readonly=False, ack=False) as t:
            n_row = t.nrows()
            shape = np.asarray(t.getcell("DATA", 0)).shape
            buf = np.empty((min(block_rows, n_row),) + shape, np.asarray(t.getcell("DATA", 0)).dtype)
            for r0 in range(0, n_row, block_rows):
                n = min(block_rows, n_row - r0)
                t.getcolnp("DATA", buf[:n], r0, n)
                t.putcol(SCRATCH, buf[:n], r0, n)
        return buf.nbytes

    best = np.inf
    for _ in range(repeat):
        _settle()
        t0 = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t0)
    return best


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
    tight = chunked_floor(ms)
    print(f"chunked floor (getcolnp DATA + putcol, blocks of 10530 rows, warm; informative): {tight:.2f} s")
    tiny = bf.tiny_ms(workdir)
    tiny_cal = os.path.join(workdir, "tiny_warmup.h5")
    if not os.path.exists(tiny_cal):
        bf.run_child(bf.solve_spec(tiny, workdir, tiny_cal, "", 0.0))
    spec = {"kind": "apply", "warmup": [apply_dict(tiny, tiny_cal)], "cfg": apply_dict(ms, cal)}
    rows = []
    for label in ("first run", "second run"):
        _settle()
        r = bf.run_child(spec, args.profile if label == "second run" else None)
        rows.append((label, r))
    print()
    print("apply K0+G0+G1 -> CORRECTED_DATA")
    for label, r in rows:
        peak = r["maxrss"] - r["base_rss"]
        note = " (created the column)" if r["created_column"] else ""
        print(f"  {label:11s} wall {r['wall']:8.2f} s  x{r['wall'] / floor:5.2f} the floor "
              f"(x{r['wall'] / tight:5.2f} the chunked floor)   "
              f"peak memory {bf.gb(peak)} (largest read {bf.gb(r['largest_chunk_bytes'])}){note}")
    print(f"\ntargets (issues 4/5), MS {bf.gb(size)}"
          f"{' (--quick: below the 1 GB of the real run)' if args.quick else ''}:")
    for label, r in rows:
        ratio = r["wall"] / floor
        print(f"  apply ({label}) / I/O floor <= 1.5     : x{ratio:.2f}  "
              f"{'PASS' if ratio <= 1.5 else 'FAIL'}")
    print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    bf.print_hotspots(args.profile)


if __name__ == "__main__":
    main()
