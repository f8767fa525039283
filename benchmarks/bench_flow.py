"""Solve-flow benchmark on a GB-sized simulated MS: read floor, wall time, peak memory (issue 4/5).

    python benchmarks/bench_flow.py [--quick] [--ms PATH] [--workdir bench_data] [--hours 1.5]
                                    [--memory-limit-gb 0] [--field '']
    python benchmarks/bench_flow.py --fullpol [--ms PATH] [--workers N] [--no-cold-start]
    python benchmarks/bench_flow.py --fullpol --cold-start-only     (~1 min: the cold start alone)
    python benchmarks/bench_flow.py --fullpol --ms PATH --apply-only (the apply stage alone, with the
                                    tables of an earlier run under PATH.bench_tables)

Builds (once; cached under --workdir, git-ignored) a simulated MS with alakazam.sim.simulate_ms
(27 antennas, 1024 channels, 60 s integrations, one SPW; --quick: 10 antennas, 256 channels), or uses
--ms PATH, and prints in one run:

* the read floor: python-casacore ``getcol`` of DATA, MODEL_DATA and FLAG over the whole MS, warm
  (page cache filled by a first read; best of 2 timed reads);
* the solve block K(scan) + G(bandpass: inf, per channel) + G(60 s) of alakazam.flow.run_solve (config
  from alakazam.config.solve_config_from_dict), run in a subprocess: wall time, ratio to the floor,
  bytes read from the MS (read amplification), and peak memory;
* PASS/FAIL for the targets: solve / floor <= 2.5 (warm); peak memory <= 1.5 x the largest chunk read.

Peak memory: the child process imports alakazam, warms every numba kernel with the same block on a
tiny MS, records its current RSS (psutil) as the baseline, runs the solve, and reports
``VmHWM - baseline`` (the high-water mark added by the solve; /proc/self/status, not ru_maxrss, which
Linux carries over from the parent -- the floor's reads -- across fork + exec).  The largest
chunk read is measured by wrapping ``ms_io._read_rows_by_number``: rows x chan x corr x (8 + 8 + 1) B
(DATA + MODEL_DATA + FLAG as stored) of the largest single read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = dict(jones=["K", "G", "G"], time_interval=["scan", "inf", "60s"],
             freq_interval=["full", "1MHz", "full"])          # 1MHz = the simulated channel width


# --------------------------------------------------------------------------------------------------
# the MS
# --------------------------------------------------------------------------------------------------
def sizes(quick, hours):
    if quick:
        return dict(n_ant=10, n_chan=256, hours=hours or 1.5)
    return dict(n_ant=27, n_chan=1024, hours=hours or 1.5)


def simulated(path, log=print, **kwargs):
    """``(path, seconds)``: ``simulate_ms(path, **kwargs)``, or ``(path, None)`` when a complete MS is
    already there (simulate_ms writes the truth file last; an incomplete one is replaced).  The benchmarks'
    one way to build and reuse their MSs."""
    from alakazam.sim import simulate_ms

    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.isdir(path) and os.path.exists(path + ".truth.npz"):
        return path, None
    t = time.perf_counter()
    log(f"building {path} ...")
    simulate_ms(path, overwrite=os.path.exists(path), **kwargs)
    return path, time.perf_counter() - t


def build_ms(workdir, n_ant, n_chan, hours, log=print):
    """Simulated MS under ``workdir`` (reused when complete)."""
    return simulated(os.path.join(workdir, f"sim_{n_ant}a_{n_chan}c_{hours:g}h.ms"), log, n_ant=n_ant,
                     n_ant_extra=2, n_chan=(n_chan,), duration_h=hours, int_s=60.0, scan_len_s=600.0, seed=1)


def du_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def ms_shape(ms):
    from casacore.tables import table

    with table(ms, ack=False) as t:
        n_row = t.nrows()
        shp = t.getcell("DATA", 0).shape
        cols = t.colnames()
    return n_row, shp[0], shp[1], cols


def read_floor(ms, cols=("DATA", "MODEL_DATA", "FLAG"), repeat=2):
    """Warm getcol of whole columns: (best seconds, bytes)."""
    from casacore.tables import table

    def once():
        nbytes = 0
        with table(ms, ack=False) as t:
            for c in cols:
                a = t.getcol(c)
                nbytes += a.nbytes
                del a
        return nbytes

    once()                                    # warm the page cache
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        nbytes = once()
        best = min(best, time.perf_counter() - t0)
    return best, nbytes


def solve_dict(ms, output, field="", memory_limit_gb=0.0):
    d = dict(ms=ms, output=output, ref_ant=0, memory_limit_gb=memory_limit_gb, **STEPS)
    if field:
        d["field"] = [f.strip() for f in field.split(",")]
    return d


# --------------------------------------------------------------------------------------------------
# child process: warm-up, baseline RSS, one measured run
# --------------------------------------------------------------------------------------------------
def _instrument_reads():
    """Wrap ms_io._read_rows_by_number: record rows x chan x corr x 17 B of the largest read and the total."""
    from alakazam.core import ms_io

    stats = {"largest_chunk_bytes": 0, "read_bytes": 0, "n_reads": 0, "read_s": 0.0}
    orig = ms_io._read_rows_by_number

    def wrapped(ms, rows, ddid, chans, data_col, model_col, meta=None, **kw):
        t0 = time.perf_counter()
        out = orig(ms, rows, ddid, chans, data_col, model_col, meta, **kw)
        stats["read_s"] += time.perf_counter() - t0
        if isinstance(out, tuple):
            data = out[0]
            per = 8 + (8 if model_col else 0) + 1
            b = int(np.prod(data.shape)) * per
            stats["largest_chunk_bytes"] = max(stats["largest_chunk_bytes"], b)
            stats["read_bytes"] += b
            stats["n_reads"] += 1
        return out

    ms_io._read_rows_by_number = wrapped
    return stats


def _measured(fn, *args):
    """The measured call (its frame marks the profile samples that count, see :func:`hotspots`)."""
    return fn(*args)


def _vm_hwm():
    """Peak resident memory (bytes) of this process from /proc/self/status (0 if unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child_main(spec):
    import resource

    import psutil

    kind = spec["kind"]
    quiet_logging()
    if kind == "solve":
        from alakazam.config import solve_config_from_dict
        from alakazam.flow import run_solve

        for w in spec.get("warmup", []):
            run_solve(solve_config_from_dict(w))
        base = psutil.Process().memory_info().rss
        stats = _instrument_reads()
        cfg = solve_config_from_dict(spec["cfg"])
        t0 = time.perf_counter()
        summary = _measured(run_solve, cfg)
        wall = time.perf_counter() - t0
        extra = {"tier": summary.get("tier"),
                 "steps": {k: round(v["seconds"], 2) for k, v in summary["terms"].items()}}
    else:
        from alakazam.calibration.apply import run_apply
        from alakazam.config import apply_config_from_dict

        for w in spec.get("warmup", []):
            run_apply(apply_config_from_dict(w))
        base = psutil.Process().memory_info().rss
        stats = _instrument_reads()
        cfg = apply_config_from_dict(spec["cfg"])
        t0 = time.perf_counter()
        res = _measured(run_apply, cfg)
        wall = time.perf_counter() - t0
        extra = {"rows": res["rows"], "created_column": res["created_column"]}
    # the high-water mark of this process's memory (VmHWM: a fresh mm at exec).  Not ru_maxrss: on
    # Linux it carries the parent's peak across fork + exec, i.e. the floor's getcol of the whole column
    maxrss = _vm_hwm() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("BENCH_RESULT " + json.dumps(dict(wall=wall, base_rss=base, maxrss=maxrss, **stats, **extra)))


def run_child(spec, profile=None):
    """Run child_main(spec) in a fresh interpreter; optional py-spy / cProfile output path."""
    cmd = [sys.executable, os.path.join(HERE, "bench_flow.py"), "--child", json.dumps(spec)]
    if profile:
        if shutil.which("py-spy") and profile.endswith(".txt"):
            cmd = ["py-spy", "record", "-f", "raw", "-o", profile, "--"] + cmd
        else:
            cmd = [sys.executable, "-m", "cProfile", "-o", profile] + cmd[1:]
    out = subprocess.run(cmd, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    sys.stderr.write(out.stdout[-3000:] + out.stderr[-5000:])
    raise RuntimeError("benchmark child failed")


def hotspots(raw_path, n=12):
    """Top (alakazam file:line, share of samples) of a py-spy raw profile of the measured call (not the
    warm-up): each sample of the main thread is charged to its innermost alakazam frame (so numpy and
    casacore time is charged to the line that called it; numba worker threads are not sampled)."""
    import collections
    import re

    by_line, total = collections.Counter(), 0
    with open(raw_path) as fh:
        for line in fh:
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit() or "_measured (" not in stack:      # the warm-up does not count
                continue
            total += int(count)
            frames = re.findall(r"([^;]+?) \(([^;]*?):(\d+)\)", stack)
            own = [f for f in frames if "alakazam/" in f[1] and "benchmarks/" not in f[1]]
            key = f"{own[-1][1].split('alakazam/', 1)[-1]}:{own[-1][2]} ({own[-1][0].strip()})" if own \
                else "(outside alakazam)"
            by_line[key] += int(count)
    return [(k, v / max(total, 1)) for k, v in by_line.most_common(n)]


def print_hotspots(path):
    if path and path.endswith(".txt") and os.path.exists(path):
        print(f"\nhotspots of the measured run (py-spy, {path}; share of main-thread samples):")
        for k, share in hotspots(path):
            print(f"  {share * 100:5.1f}%  alakazam/{k}")


def quiet_logging():
    import logging

    logging.basicConfig(level=logging.WARNING, force=True)
    os.environ.setdefault("ALAKAZAM_NO_PROGRESS", "1")


def tiny_ms(workdir):
    """A tiny MS of the same layout (numba warm-up)."""
    from alakazam.sim import simulate_ms

    path = os.path.abspath(os.path.join(workdir, "tiny_warmup.ms"))
    if not (os.path.isdir(path) and os.path.exists(path + ".truth.npz")):
        simulate_ms(path, n_ant=5, n_ant_extra=1, n_chan=(16,), duration_h=0.5, int_s=60.0,
                    scan_len_s=600.0, seed=2)
    return path


def gb(b):
    return f"{b / 1e9:.2f} GB"


def prepare(args):
    """(ms path, workdir, build seconds or None)."""
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    if args.ms:
        return os.path.abspath(args.ms), workdir, None
    sz = sizes(args.quick, args.hours)
    ms, built = build_ms(workdir, sz["n_ant"], sz["n_chan"], sz["hours"])
    return ms, workdir, built


def describe_ms(ms, built):
    n_row, n_chan, n_corr, _ = ms_shape(ms)
    size = du_bytes(ms)
    print(f"MS {ms}: {n_row} rows x {n_chan} chan x {n_corr} corr, {gb(size)} on disk"
          + (f" (built in {built:.0f} s)" if built else " (reused)"))
    return n_row, n_chan, n_corr, size


def solve_spec(ms, workdir, output, field, mem):
    tiny = tiny_ms(workdir)
    warm = solve_dict(tiny, os.path.join(workdir, "tiny_warmup.h5"), field)
    return {"kind": "solve", "warmup": [warm], "cfg": solve_dict(ms, output, field, mem)}


def main(argv=None):
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child_main(json.loads(sys.argv[2]))
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--fullpol-child":
        return fullpol_child(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small MS (10 ant x 256 chan) for development")
    ap.add_argument("--ms", default=None, help="use this MS instead of building one")
    ap.add_argument("--workdir", default="bench_data", help="cache of built MSs and solutions")
    ap.add_argument("--hours", type=float, default=None, help="observation length (default 1.5 h)")
    ap.add_argument("--field", default="", help="fields to solve on ('' = all: the whole MS is read)")
    ap.add_argument("--memory-limit-gb", type=float, default=0.0, help="solve memory_limit_gb (0 = auto)")
    ap.add_argument("--profile", default=None,
                    help="profile the measured solve: FILE.txt = py-spy raw, else cProfile output")
    ap.add_argument("--fullpol", action="store_true",
                    help="the full-polarisation recipe of issue 16 "
                         "(3 solve blocks + fluxscale + 6-term apply)")
    ap.add_argument("--workers", type=int, default=0,
                    help="--fullpol: solve and apply blocks on a dask LocalCluster of N worker processes "
                         "(0 = in process, the default)")
    ap.add_argument("--no-cold-start", action="store_true",
                    help="--fullpol: skip the cold-start measurement (two tiny recipe runs)")
    ap.add_argument("--cold-start-only", action="store_true",
                    help="--fullpol: only the cold-start measurement (the tiny recipe, empty numba "
                         "cache vs cached; ~1 min)")
    ap.add_argument("--apply-only", action="store_true",
                    help="--fullpol: only the apply stage (its floor, wall time and peak memory), "
                         "with the tables an earlier run left under MS.bench_tables")
    args = ap.parse_args(argv)
    quiet_logging()
    if args.fullpol:
        return fullpol_main(args)
    ms, workdir, built = prepare(args)
    n_row, n_chan, n_corr, size = describe_ms(ms, built)
    floor, nbytes = read_floor(ms)
    print(f"read floor (getcol DATA+MODEL_DATA+FLAG, warm): {floor:.2f} s for {gb(nbytes)} "
          f"({nbytes / floor / 1e9:.2f} GB/s)")
    out = os.path.join(workdir, os.path.basename(ms).replace(".ms", ".cal.h5"))
    r = run_child(solve_spec(ms, workdir, out, args.field, args.memory_limit_gb), args.profile)
    peak = r["maxrss"] - r["base_rss"]
    ratio = r["wall"] / floor
    mem_ratio = peak / max(r["largest_chunk_bytes"], 1)
    print()
    print(f"{'solve block K(scan)+G(inf, per chan)+G(60s)':44s}")
    print(f"  {'wall time':34s} {r['wall']:10.2f} s   per step: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in r["steps"].items()))
    print(f"  {'memory tier':34s} {r['tier']:10d}")
    print(f"  {'reads / bytes read (amplification)':34s} {r['n_reads']:10d}   {gb(r['read_bytes'])} "
          f"(x{r['read_bytes'] / nbytes:.2f} the floor's bytes)")
    print(f"  {'largest chunk read':34s} {gb(r['largest_chunk_bytes']):>10s}")
    print(f"  {'peak memory (VmHWM - baseline)':34s} {gb(peak):>10s}   (baseline RSS {gb(r['base_rss'])}, "
          f"VmHWM {gb(r['maxrss'])})")
    print(f"\ntargets (issues 4/5), MS {gb(size)}"
          f"{' (--quick: below the 1 GB of the real run)' if args.quick else ''}:")
    print(f"  solve / read floor <= 2.5 (warm)         : x{ratio:.2f}  {'PASS' if ratio <= 2.5 else 'FAIL'}")
    print(f"  peak memory <= 1.5 x largest chunk read  : x{mem_ratio:.2f}  "
          f"{'PASS' if mem_ratio <= 1.5 else 'FAIL'}")
    if r["tier"] == 1:
        print(f"  (tier 1, field by field when every step solves the same fields: peak / all bytes read = "
              f"x{peak / max(r['read_bytes'], 1):.2f})")
    print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    print_hotspots(args.profile)
    return {"floor": floor, "solve": r, "ms": ms, "caltable": out}



# --------------------------------------------------------------------------------------------------
# the full-polarisation recipe (issue 16): three solve blocks + fluxscale + a six-term apply
# --------------------------------------------------------------------------------------------------
#: fields each block reads (the simulated MS: 3C286 polarised, 3C147 flux bootstrap, TARGET)
FP_FIELDS = {"solve1": ["3C286"], "solve2": ["3C286", "3C147"], "solve3": ["3C286"]}


def fullpol_recipe(ms, out, workers=0):
    """[(stage, kind, config dict)] of the expert recipe on ``ms``; tables under directory ``out``;
    ``workers`` > 0 runs the solve and apply blocks on a dask LocalCluster of that many worker processes
    (one cluster per block, its start-up counted in the block's wall time; 0 = in this process):

    * solve1: K(scan) + phase-only G(60 s) + bandpass G(inf, per channel) on 3C286;
    * solve2: G(2 min) on 3C286 and 3C147 with K + bandpass pre-applied;
    * solve3: KC(inf) + CP(inf, per channel) + D(inf) on 3C286 with K + bandpass + G pre-applied;
    * fluxscale: 3C286 -> 3C147 (G0 of solve2);
    * apply: K, bandpass, G (scaled), KC, CP, D with parallactic angle and propagate_flags, all fields.
    Every block with apply_parang (as examples/full_polarization.yaml)."""
    b1, b2, b2s, b3 = (os.path.join(out, f) for f in ("b1.h5", "b2.h5", "b2s.h5", "b3.h5"))
    common = dict(ms=ms, ref_ant="C00", apply_parang=True)
    ext_kb = dict(tables=[b1, b1], jones=["K0", "G1"])
    if workers:
        common["workers"] = int(workers)
    recipe = [
        ("solve1", "solve", dict(common, output=b1, jones=["K", "G", "G"], field=FP_FIELDS["solve1"],
                                 time_interval=["scan", "60s", "inf"], freq_interval=["full", "full", "1MHz"],
                                 phase_only=[False, True, False])),
        ("solve2", "solve", dict(common, output=b2, jones=["G"], field=FP_FIELDS["solve2"],
                                 time_interval=["2min"], external_preapply=ext_kb)),
        ("solve3", "solve", dict(common, output=b3, jones=["KC", "CP", "D"], field=FP_FIELDS["solve3"],
                                 time_interval=["inf", "inf", "inf"], freq_interval=["full", "1MHz", "full"],
                                 external_preapply=dict(tables=[b1, b1, b2], jones=["K0", "G1", "G0"]))),
        ("fluxscale", "fluxscale", dict(reference_table=b2, reference_field=["3C286"],
                                        transfer_field=["3C147"], output=b2s, jones_type="G0")),
        ("apply", "apply", dict(ms=ms, apply_parang=True, propagate_flags=True,
                                **({"workers": int(workers)} if workers else {}),
                                jones=["K0", "G1", "G0", "KC0", "CP0", "D0"],
                                tables=[b1, b1, b2s, b3, b3, b3],
                                time_interp=["nearest", "nearest", "linear", "nearest", "nearest",
                                             "nearest"])),
    ]
    return recipe


def _reset_hwm():
    """Reset VmHWM to the current RSS (Linux: 5 > /proc/self/clear_refs); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _run_stage(kind, d):
    from alakazam import config

    if kind == "solve":
        from alakazam.flow import run_solve

        return run_solve(config.solve_config_from_dict(d))
    if kind == "fluxscale":
        from alakazam.calibration.fluxscale import run_fluxscale

        return run_fluxscale(config.fluxscale_config_from_dict(d))
    from alakazam.calibration.apply import run_apply

    return run_apply(config.apply_config_from_dict(d))


def _clean_tables(out):
    for f in ("b1.h5", "b2.h5", "b2s.h5", "b3.h5"):
        p = os.path.join(out, f)
        if os.path.exists(p):
            os.remove(p)


def _restore_apply_flags(ms, res):
    """Put FLAG back as it was before the apply (so that repeated runs solve the same data) and drop
    the flag version the apply saved."""
    from alakazam.calibration.apply import restore_flags
    from alakazam.core import flagversions

    v = res.get("flag_backup") if isinstance(res, dict) else None
    if v:
        restore_flags(ms, v)
        flagversions.delete(ms, v)


def _start_warmup(recipe):
    """As `alakazam run` does before its first block (caltasks/yamlrun.py): the solvers of every solve
    block compile in a child process when numba's cache lacks them (alakazam/warmup.py)."""
    from alakazam import warmup

    solved = [jt for _, kind, d in recipe if kind == "solve" for jt in d["jones"]]
    warmup.start(solved + (["apply"] if any(kind == "apply" for _, kind, _ in recipe) else []))


def fullpol_child(spec):
    """Child: (optionally) the recipe on a tiny MS (warm-up), then each stage timed with its VmHWM."""
    import psutil

    from alakazam.core import readcache

    quiet_logging()
    t0 = time.perf_counter()
    c0 = time.process_time()
    if spec.get("warm_ms"):
        os.makedirs(spec["warm_out"], exist_ok=True)
        _clean_tables(spec["warm_out"])
        _start_warmup(fullpol_recipe(spec["warm_ms"], spec["warm_out"]))
        with readcache.Blocks() as kept:         # as `alakazam run` (caltasks/yamlrun.py)
            for name, kind, d in fullpol_recipe(spec["warm_ms"], spec["warm_out"]):
                kept.before(kind)
                r = _run_stage(kind, d)
                if name == "apply":
                    _restore_apply_flags(spec["warm_ms"], r)
    warm = time.perf_counter() - t0
    # CPU seconds of the warm-up (all threads): the compile work, less sensitive than the wall time to
    # the other jobs of a shared machine; plus the background compile's child (alakazam/warmup.py)
    from alakazam import warmup

    warmup.wait()
    res = {"warmup": warm, "warmup_cpu": time.process_time() - c0, "stages": {},
           "warmup_child_cpu": os.times().children_user + os.times().children_system}
    if spec.get("ms"):
        os.makedirs(spec["out"], exist_ok=True)
        only = spec.get("stages")           # None = every stage (the tables are rebuilt)
        if not only:
            _clean_tables(spec["out"])
        from alakazam.core import ms_io

        orig_read = ms_io._read_rows_by_number
        floors = {}
        kept = readcache.Blocks()      # as `alakazam run`: solve blocks share reads; dropped before apply
        try:
            for name, kind, d in fullpol_recipe(spec["ms"], spec["out"], spec.get("workers", 0)):
                kept.before(kind)
                if only and name not in only:
                    continue
                # the stage's floor measured just before it (the same page-cache state as the stage finds)
                if name in FP_FIELDS:
                    floors[name] = field_rows_floor(spec["ms"], FP_FIELDS[name])
                elif name == "apply":
                    import bench_apply

                    bench_apply._settle()
                    floors[name] = bench_apply.io_floor(spec["ms"], repeat=1)
                    from casacore.tables import table

                    with table(spec["ms"], readonly=False, ack=False) as t:     # 4 GB less to cache
                        t.removecols([bench_apply.SCRATCH])
                    bench_apply._settle()
                res["floors"] = floors
                base = psutil.Process().memory_info().rss
                can = _reset_hwm()
                stats = _instrument_reads()
                t1, c1 = time.perf_counter(), time.process_time()
                r = _measured(_run_stage, kind, d)
                wall, cpu = time.perf_counter() - t1, time.process_time() - c1
                ms_io._read_rows_by_number = orig_read          # one wrapper per stage
                res["stages"][name] = dict(wall=wall, cpu=cpu, read_s=stats["read_s"], base_rss=base,
                                           hwm=_vm_hwm() if can else 0,
                                           largest_chunk_bytes=stats["largest_chunk_bytes"],
                                           steps={k: round(v["seconds"], 2) for k, v in r["terms"].items()}
                                           if kind == "solve" else {},
                                           phases={k: v.get("phases") for k, v in r["terms"].items()}
                                           if kind == "solve" else {})
                if name == "apply":
                    _restore_apply_flags(spec["ms"], r)
        finally:
            kept.close()
        res["read_cache"] = dict(on=readcache.enabled(), **readcache.STATS)
    print("BENCH_RESULT " + json.dumps(res))


def run_fullpol_child(spec, env=None, profile=None):
    cmd = [sys.executable, os.path.join(HERE, "bench_flow.py"), "--fullpol-child", json.dumps(spec)]
    if profile:
        cmd = [sys.executable, "-m", "cProfile", "-o", profile] + cmd[1:]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    sys.stderr.write(out.stdout[-3000:] + out.stderr[-5000:])
    raise RuntimeError("benchmark child failed")


def field_rows_floor(ms, fields, repeat=1):
    """Warm getcol of DATA + MODEL_DATA + FLAG of the rows of ``fields``: (best s, bytes) of ``repeat``
    reads after a first one (fills the page cache; on a loaded machine one timed read: the MS of
    issue 16 is ~18 GB with CORRECTED_DATA and the scratch column)."""
    from casacore.tables import table, taql

    with table(os.path.join(ms, "FIELD"), ack=False) as f:
        names = list(f.getcol("NAME"))
    ids = [names.index(n) for n in fields]

    def once():
        nbytes = 0
        with table(ms, ack=False) as t:  # noqa: F841 (used by the query as $t)
            sel = taql(f"select from $t where FIELD_ID in [{','.join(map(str, ids))}]")
            for c in ("DATA", "MODEL_DATA", "FLAG"):
                a = sel.getcol(c)
                nbytes += a.nbytes
                del a
            sel.close()
        return nbytes

    once()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = once()
        best = min(best, time.perf_counter() - t0)
    return best, n


def build_fullpol_ms(workdir, n_ant, n_chan, hours):
    return simulated(os.path.join(workdir, f"fullpol_{n_ant}a_{n_chan}c_{hours:g}h.ms"), print, n_ant=n_ant,
                     n_ant_extra=2, n_chan=(n_chan,), duration_h=hours, int_s=60.0, scan_len_s=600.0, seed=1,
                     leakage_scale=0.003, leakage_ref_zero=True)


def fullpol_main(args):
    """The full-polarisation run: floors, cold start, each block, apply, ratios, peak memory."""
    import tempfile

    sys.path.insert(0, HERE)
    import bench_apply

    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    load = [os.getloadavg()[0]]
    if args.cold_start_only:
        ms = None
    elif args.ms:
        ms, built = os.path.abspath(args.ms), None
    else:
        sz = dict(n_ant=6, n_chan=64, hours=args.hours or 1.5) if args.quick else \
            dict(n_ant=25, n_chan=1024, hours=args.hours or 1.5)
        ms, built = build_fullpol_ms(workdir, sz["n_ant"], sz["n_chan"], sz["hours"])
    if ms:
        describe_ms(ms, built)
    warm_ms, _ = build_fullpol_ms(workdir, 5, 16, 1.5)
    out = ms + ".bench_tables" if ms else None
    warm_out = warm_ms + ".bench_tables"
    if args.workers < 0:
        raise SystemExit(f"--workers {args.workers}: expected >= 0 (0 = in process)")
    cold = hot = None
    if args.apply_only:
        missing = [t for t in ("b1.h5", "b2s.h5", "b3.h5") if not os.path.exists(os.path.join(out, t))]
        if missing:
            raise SystemExit(f"--apply-only: {', '.join(missing)} missing under {out}: run once without it")
    if not args.no_cold_start and not args.apply_only:
        # cold start: the tiny recipe with an empty numba cache, then with the cache it filled
        with tempfile.TemporaryDirectory(prefix="ak_numba_cold_") as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            rc = run_fullpol_child({"warm_ms": warm_ms, "warm_out": warm_out}, env)
            rh = run_fullpol_child({"warm_ms": warm_ms, "warm_out": warm_out}, env)
            cold, hot = rc["warmup"], rh["warmup"]
            cpu = (rc["warmup_cpu"], rh["warmup_cpu"])
            child_cpu = rc.get("warmup_child_cpu", 0.0)
        load.append(os.getloadavg()[0])
        if args.cold_start_only:
            print(f"\ncold start (tiny recipe, empty numba cache): {cold:.1f} s vs {hot:.1f} s cached: "
                  f"+{cold - hot:.1f} s  (target <= 15 s: {'PASS' if cold - hot <= 15 else 'FAIL'}); "
                  f"CPU {cpu[0]:.1f} s vs {cpu[1]:.1f} s: +{cpu[0] - cpu[1]:.1f} s, "
                  f"plus {child_cpu:.1f} s in the background compile (alakazam/warmup.py)")
            print("load average (1 min) at start / after: " + " / ".join(f"{x:.2f}" for x in load)
                  + f" on {os.cpu_count()} cores")
            return {"cold": cold, "hot": hot, "load": load}
    bench_apply._settle()
    # floors are measured by the child right before each stage (interleaved: on a shared machine the
    # page cache and load change within minutes; a floor measured first misstates the later stages)
    # the warm-up (tiny recipe) runs in process: it fills numba's on-disk cache, which the workers load
    r = run_fullpol_child({"warm_ms": warm_ms, "warm_out": warm_out, "ms": ms, "out": out,
                           "workers": args.workers, "stages": ["apply"] if args.apply_only else None},
                          profile=args.profile)
    load.append(os.getloadavg()[0])
    st = r["stages"]
    floors = {k: tuple(v) for k, v in r["floors"].items()}
    print("\nfloors (warm: one untimed read, then one timed; each right before its stage)")
    for name in ("solve1", "solve2", "solve3"):
        if name not in floors:
            continue
        s, b = floors[name]
        print(f"  {name}: getcol DATA+MODEL_DATA+FLAG of {'+'.join(FP_FIELDS[name]):12s} {s:7.2f} s  {gb(b)}")
    print(f"  apply:  getcol DATA + putcol one column (whole MS)  {floors['apply'][0]:7.2f} s  "
          f"{gb(floors['apply'][1])}")
    where = f"dask LocalCluster of {args.workers} workers per solve/apply block" if args.workers \
        else "in process"
    print(f"\nstages ({where})\n{'':44s} wall      ratio  target  peak mem (VmHWM - RSS before"
          f"{', client only' if args.workers else ''})")
    total = 0.0
    for name, s in st.items():
        total += s["wall"]
        fl = floors.get(name, (None,))[0]
        tgt = {"apply": 1.5}.get(name, 2.0 if name.startswith("solve") else None)
        ratio = f"x{s['wall'] / fl:5.2f}" if fl else "      "
        ok = ("PASS" if s["wall"] / fl <= tgt else "FAIL") if fl and tgt else ""
        peak = s["hwm"] - s["base_rss"] if s["hwm"] else 0
        chunk = s["largest_chunk_bytes"]
        steps = ", ".join(f"{k} {v:.2f}" for k, v in s["steps"].items())
        print(f"  {name:10s} {steps:32s} {s['wall']:7.2f} s {ratio}  <= {tgt or '-'} {ok:4s}  {gb(peak)}"
              + (f" (x{peak / chunk:.2f} largest chunk {gb(chunk)})" if chunk and peak else ""))
        if "cpu" in s:
            print(f"  {'':10s} (in its data reads {s['read_s']:.2f} s; process CPU {s['cpu']:.2f} s; "
                  f"RSS before {gb(s['base_rss'])})")
        for k, ph in (s.get("phases") or {}).items():
            if ph:
                print(f"  {'':10s} {k}: " + ", ".join(f"{p} {v:.2f}" for p, v in ph.items()) + " s")
    print(f"  {'total':44s}{total:7.2f} s")
    rc = r.get("read_cache")
    if rc:
        print(f"  read cache (solve blocks share reads, as `alakazam run`; ALAKAZAM_READ_CACHE=0: off): "
              f"{'on' if rc['on'] else 'off'}, {rc['hits']} reads reused, {rc['misses']} made, "
              f"{rc['dropped']} dropped for memory")
    s3 = st["solve3"]["steps"] if "solve3" in st else None
    if cold is not None:
        print(f"\ncold start (tiny recipe, empty numba cache): {cold:.1f} s vs {hot:.1f} s cached: "
              f"+{cold - hot:.1f} s  (target <= 15 s: {'PASS' if cold - hot <= 15 else 'FAIL'})")
    if s3 is not None:
        print(f"solve3 steps (s): {s3}")
    print(f"load average (1 min) at start{'' if cold is None else ' / after cold start'} / after run: "
          + " / ".join(f"{x:.2f}" for x in load) + f" on {os.cpu_count()} cores")
    return {"floors": floors, "stages": st, "cold": cold, "hot": hot, "load": load}


if __name__ == "__main__":
    main()
