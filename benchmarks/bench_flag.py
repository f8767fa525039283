"""akflag mode='aoflagger' on a GB-sized simulated MS: wall time vs the DATA + FLAG I/O floor, peak memory.

    python benchmarks/bench_flag.py [--quick] [--ms PATH] [--workdir /work/bench_data] [--hours 1.5]
                                    [--noise 1.0] [--strategy generic] [--memory-limit-gb 0]

Builds (once; cached under --workdir, outside the repository) the MS of bench_flow.py (27 antennas,
1024 channels, 4 correlations, 60 s integrations in 10-minute scans; --quick: 10 antennas, 256
channels; noise 1 Jy per visibility part, so 3C286 has a per-visibility SNR of ~15 as raw VLA
visibilities of a few seconds and a few hundred kHz would: AOFlagger's strategies are made for such
data, see the README), or uses --ms PATH, and prints in one run:

* the I/O floor: python-casacore ``getcol`` of DATA and FLAG over the whole MS plus one ``putcol`` of
  FLAG, warm (page cache filled by a first read);
* the aoflagger run (:func:`alakazam.flagging.run_flag`, which also saves a flag version first) in a
  subprocess: wall time, its ratio to the floor (target <= 2), the time spent inside AOFlagger's
  ``strategy.run`` (the library's own compute: the part no I/O layout can remove), and the peak memory
  added by the run (``VmHWM`` minus the RSS after imports, /proc/self/status).
The MS's flags are restored from the saved version afterwards, so the MS can be reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def build_ms(workdir, n_ant, n_chan, hours, noise=1.0, log=print):
    from alakazam.sim import simulate_ms

    os.makedirs(workdir, exist_ok=True)
    path = os.path.abspath(os.path.join(workdir, f"flag_{n_ant}a_{n_chan}c_{hours:g}h_n{noise:g}.ms"))
    if os.path.isdir(path) and os.path.exists(path + ".truth.npz"):
        return path
    t = time.perf_counter()
    log(f"building {path} ...")
    simulate_ms(path, n_ant=n_ant, n_ant_extra=2, n_chan=(n_chan,), duration_h=hours, int_s=60.0,
                scan_len_s=600.0, seed=1, noise=noise)
    log(f"built in {time.perf_counter() - t:.0f} s")
    return path


def du_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def io_floor(ms):
    """Seconds to getcol DATA + FLAG of the whole MS and putcol FLAG back (warm: best of 2)."""
    from casacore.tables import table

    best = None
    with table(ms, readonly=False, ack=False) as t:
        t.getcol("DATA")                                   # warm the page cache
        for _ in range(2):
            t0 = time.perf_counter()
            d = t.getcol("DATA")
            f = t.getcol("FLAG")
            t.putcol("FLAG", f)
            t.flush()
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
            del d
    return best, f.size


CHILD = r"""
import json, sys, time
import psutil
sys.path.insert(0, {repo!r})
from alakazam.flagging import FlagConfig, run_flag
from alakazam.flagging import aoflagger as ao
import aoflagger  # noqa: F401
base = psutil.Process().memory_info().rss
spent = [0.0]
real = ao._run
def timed(*a):
    t0 = time.perf_counter()
    try:
        return real(*a)
    finally:
        spent[0] += time.perf_counter() - t0
ao._run = timed
t0 = time.perf_counter()
out = run_flag(FlagConfig(ms={ms!r}, mode="aoflagger", strategy={strategy!r}, memory_limit_gb={mem!r}))
wall = time.perf_counter() - t0
hwm = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        hwm = int(line.split()[1]) * 1024
print(json.dumps(dict(wall=wall, strategy=spent[0], hwm=hwm, base=base, version=out["version"],
                      flagged=out["flagged_after"], total=out["total"])))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ms", default=None)
    ap.add_argument("--workdir", default="/work/bench_data")
    ap.add_argument("--hours", type=float, default=1.5)
    ap.add_argument("--strategy", default="generic")
    ap.add_argument("--noise", type=float, default=1.0, help="Jy per real/imag part of a visibility")
    ap.add_argument("--memory-limit-gb", type=float, default=0.0)
    a = ap.parse_args(argv)
    sys.path.insert(0, REPO)
    n_ant, n_chan = (10, 256) if a.quick else (27, 1024)
    ms = a.ms or build_ms(a.workdir, n_ant, n_chan, a.hours, a.noise)
    from casacore.tables import table

    with table(ms, ack=False) as t:
        n_row, shp = t.nrows(), t.getcell("DATA", 0).shape
    data_gb = n_row * shp[0] * shp[1] * 8 / 1e9
    print(f"MS {ms}: {du_bytes(ms) / 1e9:.2f} GB on disk, {n_row} rows x {shp[0]} chan x {shp[1]} corr "
          f"(DATA {data_gb:.2f} GB, FLAG {data_gb / 8:.2f} GB)")
    floor, _ = io_floor(ms)
    print(f"I/O floor (getcol DATA + FLAG, putcol FLAG; warm): {floor:.2f} s")
    code = CHILD.format(repo=REPO, ms=ms, strategy=a.strategy, mem=a.memory_limit_gb)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        print(r.stderr[-3000:])
        raise SystemExit(r.returncode)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    wall, strat = res["wall"], res["strategy"]
    print(f"akflag aoflagger ({a.strategy}): {wall:.2f} s wall = x{wall / floor:.2f} the floor "
          f"(target <= 2: {'PASS' if wall <= 2 * floor else 'FAIL'}); inside AOFlagger strategy.run "
          f"{strat:.2f} s ({100 * strat / wall:.0f}%), everything else (I/O, planes, version save) "
          f"{wall - strat:.2f} s = x{(wall - strat) / floor:.2f} the floor")
    print(f"flagged {res['flagged']} of {res['total']} samples ({100 * res['flagged'] / res['total']:.2f}%)")
    print(f"peak memory added (VmHWM - RSS after imports): {(res['hwm'] - res['base']) / 1e9:.2f} GB "
          f"(DATA of the whole MS: {data_gb:.2f} GB)")
    from alakazam.core import flagversions

    flagversions.restore(ms, res["version"])
    flagversions.delete(ms, res["version"])
    print(f"restored and deleted flag version {res['version']}")


if __name__ == "__main__":
    main()
