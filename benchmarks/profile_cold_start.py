"""Where the cold start's seconds go (issue 16): every numba compile of the tiny full-polarisation recipe.

    python benchmarks/profile_cold_start.py [--workdir bench_data] [--json out.json] [--no-background]

Runs the tiny recipe of ``bench_flow.py --fullpol --cold-start-only`` (the same MS, built once under
--workdir) in a child process with an empty ``NUMBA_CACHE_DIR`` and prints, from numba's
``numba:compile`` events: every top-level compile of the run's process in time order (wall and thread
CPU, callees included), the kernels by exclusive CPU, the waits for the background compile
(``alakazam.warmup.wait_for``) and the background child's CPU.  ``--no-background``
(``ALAKAZAM_BACKGROUND_COMPILE=0``): everything compiles in the run's process -- the whole list of
kernels and what each costs.  CPU seconds are the measure to compare on a shared machine; wall
seconds follow the load.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(out_path, warm_ms):
    from numba.core import event as ev

    events, local = [], threading.local()
    t_start = time.perf_counter()

    class Compiles(ev.Listener):
        def on_start(self, event):
            st = getattr(local, "stack", None)
            if st is None:
                st = local.stack = []
            fn = event.data["dispatcher"].py_func
            st.append(dict(name=f"{fn.__module__}.{fn.__qualname__}", args=str(event.data["args"]),
                           t0=time.perf_counter(), c0=time.thread_time(), child_c=0.0, depth=len(st),
                           at=time.perf_counter() - t_start, thread=threading.current_thread().name))

        def on_end(self, event):
            st = local.stack
            e = st.pop()
            wall, cpu = time.perf_counter() - e.pop("t0"), time.thread_time() - e.pop("c0")
            e.update(wall=wall, cpu=cpu, excl_cpu=cpu - e.pop("child_c"))
            if st:
                st[-1]["child_c"] += cpu
            events.append(e)

    ev.register("numba:compile", Compiles())
    sys.path.insert(0, HERE)
    import bench_flow
    from alakazam import warmup
    from alakazam.core import readcache

    waits = []
    real_wait = getattr(warmup, "wait_for", None)     # (a tree before it: no waits)

    def timed_wait(jt, timeout=None):
        t = time.perf_counter()
        r = real_wait(jt, timeout)
        if r:
            waits.append((jt, t - t_start, time.perf_counter() - t))
        return r

    if real_wait is not None:
        warmup.wait_for = timed_wait
    bench_flow.quiet_logging()
    out = warm_ms + ".profile_tables"
    os.makedirs(out, exist_ok=True)
    bench_flow._clean_tables(out)
    stages = {}
    c0 = time.process_time()
    recipe = bench_flow.fullpol_recipe(warm_ms, out)
    bench_flow._start_warmup(recipe)
    with readcache.Blocks() as kept:
        for name, kind, d in recipe:
            kept.before(kind)
            t1 = time.perf_counter()
            r = bench_flow._run_stage(kind, d)
            stages[name] = time.perf_counter() - t1
            if name == "apply":
                bench_flow._restore_apply_flags(warm_ms, r)
    wall, cpu = time.perf_counter() - t_start, time.process_time() - c0
    warmup.wait()
    times = os.times()
    with open(out_path, "w") as fh:
        json.dump(dict(wall=wall, cpu=cpu, stages=stages, events=events, waits=waits,
                       background_cpu=times.children_user + times.children_system), fh)


def report(d, top=30):
    stages = ", ".join(f"{k} {v:.1f}" for k, v in d["stages"].items())
    print(f"run: wall {d['wall']:.1f} s, CPU {d['cpu']:.1f} s; background compile CPU "
          f"{d['background_cpu']:.1f} s; stages: {stages}")
    print("waits for the background compile: " + (", ".join(f"{j} at {a:.1f} s: {w:.2f} s"
                                                            for j, a, w in d["waits"]) or "none"))
    tops = [e for e in d["events"] if e["depth"] == 0]
    print(f"\n{len(tops)} top-level compiles in the run's process, {sum(e['cpu'] for e in tops):.1f} s CPU "
          "(callees included), in time order:\n     at    wall     CPU  kernel")
    for e in sorted(tops, key=lambda e: e["at"]):
        print(f"{e['at']:7.1f} {e['wall']:7.2f} {e['cpu']:7.2f}  {e['name'].replace('alakazam.', '')}"
              f"  {e['args'][:70]}")
    agg = collections.defaultdict(lambda: [0, 0.0])
    for e in d["events"]:
        agg[e["name"]][0] += 1
        agg[e["name"]][1] += e["excl_cpu"]
    print(f"\nby exclusive CPU (top {top}):")
    for name, (n, c) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"{c:7.2f}  x{n:<3d} {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="bench_data", help="where bench_flow.py keeps its MSs")
    ap.add_argument("--json", default=None, help="also write the events here")
    ap.add_argument("--no-background", action="store_true",
                    help="ALAKAZAM_BACKGROUND_COMPILE=0: every kernel compiles in the run's process")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    sys.path.insert(0, HERE)
    import bench_flow

    warm_ms, _ = bench_flow.build_fullpol_ms(os.path.abspath(args.workdir), 5, 16, 1.5)
    with tempfile.TemporaryDirectory(prefix="ak_numba_profile_") as cache:
        out = args.json or os.path.join(cache, "events.json")
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
        if args.no_background:
            env["ALAKAZAM_BACKGROUND_COMPILE"] = "0"
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", out, warm_ms], env=env,
                       check=True)
        with open(out) as fh:
            d = json.load(fh)
    report(d, args.top)
    print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
