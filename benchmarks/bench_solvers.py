"""Solver benchmark: time per cell and per 1000-cell batch, per backend, with the issue-3 targets.

    python benchmarks/bench_solvers.py [--backends numba] [--quick]

Prints a table (figures and ratios to the numba backend) and PASS/FAIL for the targets of issue 3:
1000 G cells at 64 antennas <= 1.0 s; one K cell at 27 antennas x 1024 channels <= 25 ms; cold
compile of all solver kernels <= 10 s (measured in a subprocess with an empty NUMBA_CACHE_DIR).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def _timeit(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def cold_compile_seconds():
    code = ("import time; t=time.perf_counter();"
            "from alakazam.sim.cells import make_batch; from alakazam.solvers import solve\n"
            "for jt in ('G','K','D','KC','CP'):\n"
            "    b,_=make_batch(jt, n_cell=1, n_ant=4, n_samp=4 if jt in ('D','CP') else 1)\n"
            "    solve(jt, b)\n"
            "print(time.perf_counter()-t)")
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)
        cold = float(out.stdout.strip().splitlines()[-1])
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)
        warm = float(out.stdout.strip().splitlines()[-1])
    return cold, warm


def main(argv=None):
    from alakazam.sim.cells import make_batch
    from alakazam.solvers import solve

    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="numba")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--max-samp", type=int, default=None,
                    help="skip the cases with more samples per cell (the slow backends on K 1024)")
    args = ap.parse_args(argv)
    backends = args.backends.split(",")
    n_batch = 100 if args.quick else 1000
    cases = [("G", 27, 1, 1), ("G", 64, 1, 1), ("D", 27, 4, 1), ("K", 27, 64, 1), ("K", 27, 1024, 1)]
    rows = []
    for be in backends:
        fast = be == "numba"
        for jt, n_ant, n_samp, _ in cases:
            if args.max_samp is not None and n_samp > args.max_samp and not fast:
                continue
            b1, _ = make_batch(jt, n_cell=1, n_ant=n_ant, n_samp=n_samp, noise=0.1, seed=1)
            t0 = time.perf_counter()
            solve(jt, b1, backend=be)                       # warm-up (compile)
            first = time.perf_counter() - t0
            # the slow cross-check backends: one timed repeat when a cell takes > 1 s
            one = _timeit(lambda: solve(jt, b1, backend=be), repeat=3 if first < 1.0 else 1)
            if fast:
                nb = n_batch if jt != "K" or n_samp <= 64 else max(10, n_batch // 50)
            else:   # per-1000 figure extrapolated from a small batch
                nb = max(2, min(n_batch // 5, int(20.0 / max(one, 1e-3))))
            bb, _ = make_batch(jt, n_cell=nb, n_ant=n_ant, n_samp=n_samp, noise=0.1, seed=2)
            many = _timeit(lambda: solve(jt, bb, backend=be), repeat=1) * 1000 / nb
            rows.append((be, f"{jt} {n_ant} ant x {n_samp} samp", one * 1e3, many, nb))
            print(f"  measured {be} {jt} {n_ant}x{n_samp}: {one * 1e3:.2f} ms/cell", file=sys.stderr,
                  flush=True)
    print(f"{'backend':8s} {'case':24s} {'1 cell (ms)':>12s} {'per 1000 cells (s)':>20s} {'batch':>6s}")
    base = {r[1]: r for r in rows if r[0] == "numba"}
    for be, case, one, many, nb in rows:
        ratio = f"  x{many / base[case][3]:.0f} vs numba" if be != "numba" and case in base else ""
        print(f"{be:8s} {case:24s} {one:12.2f} {many:20.3f} {nb:6d}{ratio}")
    print("(per 1000 cells: measured on a batch of the size shown, scaled to 1000)")
    print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    cold, warm = cold_compile_seconds()
    print(f"\nnumba kernels: cold compile + first solves {cold:.1f} s; with the on-disk cache {warm:.1f} s")
    if "numba" in base:
        g64 = base["G 64 ant x 1 samp"][3]
        k1024 = base["K 27 ant x 1024 samp"][2]
        print("\ntargets (issue 3):")
        print(f"  1000 G cells at 64 antennas <= 1.0 s : {g64:.3f} s  {'PASS' if g64 <= 1.0 else 'FAIL'}")
        print(f"  one K cell 27 ant x 1024 ch <= 25 ms : {k1024:.1f} ms  {'PASS' if k1024 <= 25 else 'FAIL'}")
        print(f"  cold compile of all solvers <= 10 s  : {cold:.1f} s  {'PASS' if cold <= 10 else 'FAIL'}")


if __name__ == "__main__":
    main()
