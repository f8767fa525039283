"""Write strategies for a distributed apply (issue 15, docs/scaling.md): one writer vs per-partition writers.

    python benchmarks/bench_write_strategy.py MS [--chunk 2000] [--kills 5]

On ``MS`` (a scratch copy: a column WTEST is added and removed), times writing DATA into WTEST:

* ``one_writer``: one process writes every row chunk (what alakazam does: workers compute, the client
  writes under the MS lock);
* ``two_writers``: two processes write alternate row chunks of the same column concurrently, each with
  its own read-write table open (casacore's table lock -- AutoLocking -- passed between them);

then checks the written values, and (``--kills``) starts the two writers again and SIGKILLs one of them
mid-write, and records whether the MS still opens and WTEST reads back.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write(ms, starts, chunk, n_rows):
    from casacore.tables import table

    with table(ms, readonly=False, ack=False) as t:
        for s in starts:
            n = min(chunk, n_rows - s)
            t.putcol("WTEST", t.getcol("DATA", s, n), s, n)


def _nrows(ms):
    from casacore.tables import table

    with table(ms, ack=False) as t:
        return t.nrows()


def _check(ms, chunk):
    from casacore.tables import table

    with table(ms, ack=False) as t:
        for s in range(0, t.nrows(), chunk * 7):
            if not np.array_equal(t.getcol("WTEST", s, 10), t.getcol("DATA", s, 10)):
                return False
    return True


def main(argv=None):
    from alakazam.core import ms_io

    ap = argparse.ArgumentParser()
    ap.add_argument("ms")
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument("--kills", type=int, default=5)
    a = ap.parse_args(argv)
    ms_io.ensure_column(a.ms, "WTEST", like="DATA", init=False)
    n = _nrows(a.ms)
    starts = list(range(0, n, a.chunk))
    ctx = mp.get_context("spawn")
    out = {"rows": n, "chunk_rows": a.chunk, "load1_before": os.getloadavg()[0]}
    t = time.perf_counter()
    _write(a.ms, starts, a.chunk, n)
    out["one_writer_s"] = round(time.perf_counter() - t, 2)
    out["one_writer_ok"] = _check(a.ms, a.chunk)
    t = time.perf_counter()
    ps = [ctx.Process(target=_write, args=(a.ms, starts[i::2], a.chunk, n)) for i in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    out["two_writers_s"] = round(time.perf_counter() - t, 2)
    out["two_writers_ok"] = _check(a.ms, a.chunk) and all(p.exitcode == 0 for p in ps)
    broken = 0
    for k in range(a.kills):
        ps = [ctx.Process(target=_write, args=(a.ms, starts[i::2], a.chunk, n)) for i in range(2)]
        for p in ps:
            p.start()
        time.sleep(0.5 + 0.3 * k)
        os.kill(ps[0].pid, signal.SIGKILL)
        for p in ps:
            p.join()
        try:
            _check(a.ms, a.chunk)
        except Exception as e:                  # the table no longer opens / reads
            broken += 1
            out.setdefault("kill_errors", []).append(f"{type(e).__name__}: {str(e)[:200]}")
            break
    out["kills"] = a.kills
    out["kills_leaving_unreadable_ms"] = broken
    out["load1_after"] = os.getloadavg()[0]
    print(out, flush=True)
    if not broken:
        from casacore.tables import table

        with table(a.ms, readonly=False, ack=False) as t:
            t.removecols(["WTEST"])


if __name__ == "__main__":
    main()
