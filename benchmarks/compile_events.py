"""What numba compiles in a command, per process: every (function, signature) with its compile time.

    python benchmarks/compile_events.py [--dir DIR] -- \
        python benchmarks/bench_flow.py --fullpol --cold-start-only --workdir /tmp/bench
    python benchmarks/compile_events.py --report DIR [--top N] [-v]

The first form runs the command with this directory's ``sitecustomize`` hook on ``PYTHONPATH`` (so every
Python process it starts -- the run and the background compile of alakazam/warmup.py -- records) and
``ALAKAZAM_COMPILE_EVENTS=DIR``: each process appends one JSON line per numba compile (numba's event
API, ``numba:compile``: function, signature, wall and CPU seconds, nesting depth, exclusive time) and per
cache lookup (hit or miss) to ``DIR/<pid>.jsonl``, then prints the report.  Nothing else in the run
changes (the hook only listens).  The report lists, per process, the compiled functions sorted by
exclusive wall time (a kernel's own time, less the helpers it compiled on the way), the CPU of each
top-level compile, and every function compiled with more than one signature (each one a full compile).

Wall times on a loaded machine overstate the work: compare the CPU column (process CPU during the
compile; the compile itself runs on one thread).  Issue 16 (cold start).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile

HOOK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compile_events_hook")


def report(d, top=60, verbose=False, out=print):
    for f in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
        ev = [json.loads(line) for line in open(f)]
        comp = [e for e in ev if e["kind"] == "compile"]
        loads = [e for e in ev if e["kind"] == "load"]
        end = [e for e in ev if e["kind"] == "end"]
        if not comp and not loads:
            continue
        argv = ev[0].get("argv", [])
        out("=" * 100)
        out(f"pid {os.path.basename(f)[:-6]}: {' '.join(argv[:3])}")
        if end:
            out(f"process: wall {end[-1]['wall']:.1f} s, CPU {end[-1]['cpu']:.1f} s, "
                f"children CPU {end[-1]['children']:.1f} s")
        tops = [e for e in comp if e["depth"] == 0]
        out(f"compiles {len(comp)} ({len(tops)} top-level): wall {sum(e['dur'] for e in tops):.1f} s, "
            f"CPU {sum(e['cpu'] for e in tops):.1f} s; cache hits {sum(e['hit'] for e in loads)} "
            f"({sum(e['dur'] for e in loads if e['hit']):.2f} s), misses {sum(not e['hit'] for e in loads)}")
        byfn = collections.defaultdict(list)
        for e in comp:
            byfn[e["fn"]].append(e)
        out(f"{'excl s':>7} {'top s':>7} {'top CPU':>7} {'typing':>7} {'lower':>7} {'llvm':>7} {'n':>3}  "
            "function  (top-level compiles: wall and CPU s; numba's typing / lowering / LLVM wall s, "
            "each with the helpers compiled on the way)")
        for fn, es in sorted(byfn.items(), key=lambda kv: -sum(e["excl"] for e in kv[1]))[:top]:
            t = [e for e in es if e["depth"] == 0]
            out(f"{sum(e['excl'] for e in es):7.2f} {sum(e['dur'] for e in t):7.2f} "
                f"{sum(e['cpu'] for e in t):7.2f} {sum(e.get('typing', 0) for e in t):7.2f} "
                f"{sum(e.get('lowering', 0) for e in t):7.2f} {sum(e.get('llvm', 0) for e in t):7.2f} "
                f"{len(es):3d}  {fn}")
            if len(es) > 1 or verbose:
                for e in sorted(es, key=lambda e: -e["excl"]):
                    out(f"{'':>24}{e['excl']:6.2f} depth {e['depth']} {e['sig'][:200]}")
        dup = collections.Counter((e["fn"], e["sig"]) for e in comp)
        for (fn, sig), n in dup.items():
            if n > 1:
                out(f"  same signature compiled {n} times: {fn} {sig}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", help="where the processes write their events (default: a new temp dir)")
    ap.add_argument("--report", metavar="DIR", help="only print the report of DIR")
    ap.add_argument("--top", type=int, default=60)
    ap.add_argument("-v", action="store_true", help="every signature, not only repeated functions")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    if a.report:
        report(a.report, a.top, a.v)
        return 0
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command")
    d = a.dir or tempfile.mkdtemp(prefix="compile_events_")
    os.makedirs(d, exist_ok=True)
    env = dict(os.environ, ALAKAZAM_COMPILE_EVENTS=d,
               PYTHONPATH=os.pathsep.join(p for p in (HOOK_DIR, os.environ.get("PYTHONPATH", "")) if p))
    rc = subprocess.call(cmd, env=env)
    report(d, a.top, a.v)
    print(f"events: {d}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
