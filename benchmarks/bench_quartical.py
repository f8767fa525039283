"""alakazam against QuartiCal on a QuartiCal-style job (issue 16): G per integration + B per channel + apply.

    python -m venv /work/qcvenv && /work/qcvenv/bin/pip install quartical      # once (its own venv)
    python benchmarks/bench_quartical.py [--workdir bench_data] [--quartical PATH] [--threads 2]
                                         [--qc-dask-threads 1] [--qc-solver-threads N] [--quick]
                                         [--no-warmup] [--no-rfi-off] [--profile FILE.prof]

Builds (once; cached under --workdir, git-ignored, reruns reuse it) with alakazam.sim.simulate_ms a
64-antenna x 128-channel x 60-integration MS (1 h of 60 s integrations, one scan of 3C286, one SPW of
1 MHz channels, 2016 baselines, no autocorrelations, 120960 rows, 4 correlations, LINEAR feeds XX XY YX
YY): DATA = G(t) B(nu) M B^H G^H + noise, with a time-variable diagonal G (amplitude +-10%, phase drift
~1 rad/h), a per-channel diagonal bandpass B and complex Gaussian noise of 0.05 Jy per real/imag part
(WEIGHT = 1/0.05^2); no delays, leakage, cross-hand terms or parallactic angle in DATA; 0.5% of the rows
FLAG_ROW'ed.  MODEL_DATA is 3C286's (polarised) point-source model.  Then, in ONE run:

(a) the floors: getcol DATA + putcol of one column of that size (the apply's I/O floor), and getcol
    DATA + MODEL_DATA + FLAG (the solve's read floor), warm;
(b) alakazam: one solve block G(time_interval int, freq_interval full) then G(inf, per channel = 1MHz)
    with the first pre-applied (the per-integration phases must come out before a bandpass is
    averaged over the hour), defaults otherwise (solve-time RFI flagging at 5 MAD sigmas, min_snr 3),
    then an apply of both into CORRECTED_DATA (calonly: FLAG not written) -- one fresh process
    (``--child``; it ends as ``alakazam run`` does, alakazam/exitgc.py), wall time from launch to exit
    (start-up, solve, apply, exit) and the per-step
    phases of run_solve's summary (read / flags / accumulate / solve); first the same job with
    rfi_threshold 0 (no solve-time RFI flags: QuartiCal's job flags nothing either; --no-rfi-off skips
    it), then with the defaults (whose CORRECTED_DATA and table are the ones compared);
(c) QuartiCal: ``goquartical`` (``--quartical PATH``, default /work/qcvenv/bin/goquartical; skipped with
    a message when absent) with a generated parset: terms [G, B], both diag_complex, G time_interval 1
    (per integration) freq_interval 0 (full band), B time_interval 0 (full chunk = the scan) freq_interval
    1 (per channel), iter_recipe [25, 25] (one pass: G then B, as alakazam), reference_antenna 0, input
    model MODEL_DATA, weights from WEIGHT, output corrected_data -> QC_CORRECTED_DATA, output.flags
    False (FLAG untouched), dask threads scheduler with dask.threads 1 (--qc-dask-threads) and
    solver.threads = --threads (--qc-solver-threads): the job is one chunk (time_chunk 0 for B over the
    hour, freq_chunk 0 for G over the band), so QuartiCal's parallelism is its solver's threads (38 s
    here against 52 s with dask.threads 2 x solver.threads 1) -- wall time from launch to exit, and
    its own log's graph-build and graph-execute times.

Both run once untimed on a tiny MS of the same layout first (fills both numba on-disk caches: the
timed runs pay for loading cached kernels, as a user's second run would, not for compiling them).
Both get NUMBA_NUM_THREADS = --threads (default 2: the machine's cores).

Printed: both wall times, the ratio alakazam / QuartiCal against the target <= 0.05 (issue 16: 20x),
the corrected residual of both (rms per real/imag part of CORRECTED - MODEL_DATA over the samples not
flagged in FLAG / FLAG_ROW where both outputs are finite, parallel hands and cross hands apart: the
parallel hands should agree and be close to the noise, 0.05 x the rms 1/|g_p g_q|; the cross hands of
the polarised 3C286 keep the reference antenna's X-Y phase, a cross-hand phase neither job solves),
alakazam's and QuartiCal's gain error against the simulated truth (the
product G(t) B(nu) per antenna, time, channel and feed, both referenced to antenna 0's phase; rms and
max |error|, with the noise-derived standard error) and a check that DATA, MODEL_DATA and FLAG are
unchanged (checksums before/after; this script never writes them).

``--profile FILE.prof``: cProfile of alakazam's child (the whole process; read with pstats).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

NOISE = 0.05
QC_COLUMN = "QC_CORRECTED_DATA"
AK_COLUMN = "CORRECTED_DATA"
TARGET = 0.05                    # alakazam / QuartiCal wall time (issue 16: 20x faster)
DEFAULT_QC = "/work/qcvenv/bin/goquartical"


# --------------------------------------------------------------------------------------------------
# the MS
# --------------------------------------------------------------------------------------------------
def sizes(quick):
    """(n_ant, n_chan, n_int): the issue's job, or a small one for development."""
    return (8, 16, 10) if quick else (64, 128, 60)


def build_ms(workdir, n_ant, n_chan, n_int, seed=16, log=print):
    """The simulated MS under ``workdir`` (reused when complete: simulate_ms writes the truth file last).
    One scan of 3C286 (scan_len = duration), linear feeds, G(t) B(nu) only."""
    import bench_flow

    dur_s = 60.0 * n_int
    return bench_flow.simulated(
        os.path.join(workdir, f"qc_{n_ant}a_{n_chan}c_{n_int}t.ms"), log, n_ant=n_ant, n_ant_extra=0,
        n_chan=(n_chan,), feed="linear", duration_h=dur_s / 3600.0, int_s=60.0, scan_len_s=dur_s, noise=NOISE,
        seed=seed, delays=False, bandpass=True, time_gains=True, leakage=False, crosshand=False,
        parang_in_data=False, dead_ant=False, flag_rows=0.005)


# --------------------------------------------------------------------------------------------------
# floors, checksums, residuals
# --------------------------------------------------------------------------------------------------
def floors(ms):
    """(io floor s, io bytes, read floor s, read bytes): getcol DATA + putcol a scratch column (the
    apply's floor, bench_apply.io_floor; the scratch column is removed afterwards), and getcol DATA +
    MODEL_DATA + FLAG (the solve's floor, bench_flow.read_floor); warm, best of 2."""
    import bench_apply
    import bench_flow
    from casacore.tables import table

    io_s, io_b = bench_apply.io_floor(ms, repeat=2)
    with table(ms, readonly=False, ack=False) as t:
        t.removecols([bench_apply.SCRATCH])
    bench_apply._settle()
    rd_s, rd_b = bench_flow.read_floor(ms, repeat=2)
    return io_s, io_b, rd_s, rd_b


def checksums(ms, cols=("DATA", "MODEL_DATA", "FLAG"), block=20000):
    """sha1 of each column (read in row blocks): the script must leave them as they were."""
    from casacore.tables import table

    out = {}
    with table(ms, ack=False) as t:
        n = t.nrows()
        for c in cols:
            h = hashlib.sha1()
            for r0 in range(0, n, block):
                h.update(np.ascontiguousarray(t.getcol(c, r0, min(block, n - r0))).tobytes())
            out[c] = h.hexdigest()[:16]
    return out


def residuals(ms, columns, block=20000):
    """{column: {"parallel": (rms, n), "cross": (rms, n)}}: rms per real/imag part of column - MODEL_DATA
    over the parallel hands (XX, YY) and the cross hands (XY, YX), over the samples not flagged (FLAG |
    FLAG_ROW) where every listed column is finite; and the count of samples so excluded.

    G and B are diagonal and solved from the parallel hands, so the reference antenna's X-Y phase
    difference (a cross-hand phase, CP) is free: the corrected cross hands of the polarised 3C286 keep
    it (|U| x |1 - exp(i dphi)|), in both jobs.  The parallel hands are the residual that compares."""
    from casacore.tables import table

    s2 = {c: np.zeros(2) for c in columns}
    n_ok = np.zeros(2, np.int64)
    n_bad = 0
    hands = (np.array([0, 3]), np.array([1, 2]))
    with table(ms, ack=False) as t:
        n = t.nrows()
        for r0 in range(0, n, block):
            nr = min(block, n - r0)
            m = t.getcol("MODEL_DATA", r0, nr)
            ok = ~(t.getcol("FLAG", r0, nr) | t.getcol("FLAG_ROW", r0, nr)[:, None, None])
            cols = {c: t.getcol(c, r0, nr) for c in columns}
            fin = ok.copy()
            for v in cols.values():
                fin &= np.isfinite(v)
            n_bad += int(ok.sum() - fin.sum())
            for h, corr in enumerate(hands):
                sel = fin[:, :, corr]
                n_ok[h] += int(sel.sum())
                for c, v in cols.items():
                    d = (v[:, :, corr] - m[:, :, corr])[sel]
                    s2[c][h] += float(np.vdot(d, d).real)
    return {c: {k: (float(np.sqrt(s2[c][h] / (2 * max(n_ok[h], 1)))), int(n_ok[h]))
                for h, k in enumerate(("parallel", "cross"))} for c in columns}, n_bad


def expected_residual(truth):
    """Noise of the corrected parallel hands: NOISE x rms of 1 / |g_p g_q| over baselines, times,
    channels and the two parallel hands (the true gains)."""
    g = np.abs(truth.bandpass[0][:, None, :, :] * truth.time_gain[:, :, None, :])  # a,t,c,p
    inv2 = 1.0 / g ** 2
    n_ant = g.shape[0]
    tot = inv2.sum(0)
    pair = (tot ** 2 - (inv2 ** 2).sum(0)) / 2            # sum over a < b of inv2_a inv2_b
    mean = pair.sum() / (n_ant * (n_ant - 1) / 2 * pair.size)
    return NOISE * np.sqrt(mean)


# --------------------------------------------------------------------------------------------------
# gains against the truth
# --------------------------------------------------------------------------------------------------
def true_product(truth):
    """(n_ant, n_time, n_chan, 2) true G(t) B(nu) diagonal."""
    return truth.time_gain[:, :, None, :] * truth.bandpass[0][:, None, :, :]


def referenced(x, ref=0):
    r = x[ref:ref + 1]
    return x * np.conj(r) / np.abs(r)


def gain_error(solved, flags, truth):
    """(rms |error|, max |error|, n compared) of a solved (a, t, c, 2) product against the truth, both
    referenced to antenna 0's phase; ``flags`` (a, t, c) excludes flagged solutions."""
    true = referenced(true_product(truth))
    s = referenced(solved)
    ok = ~flags & np.isfinite(s).all(-1)
    err = np.abs(s - true)[ok]
    return float(np.sqrt(np.mean(err ** 2))), float(err.max()), int(ok.sum())


def expected_gain_error(truth):
    """Noise-derived rms |error| of the referenced product: per real/imag part, a G per integration has a
    standard error NOISE / (S sqrt(n_bl n_chan)) and a B per channel NOISE / (S sqrt(n_bl n_int)) (S =
    the parallel-hand flux, n_bl = n_ant - 1 baselines per antenna); the product sums both, |error| of a
    complex value is sqrt(2) x that, and referencing to antenna 0 adds its error once more."""
    n_ant, n_int, _ = truth.time_gain.shape
    n_chan = truth.bandpass[0].shape[1]
    stokes = truth.flux_true["3C286"]
    S = np.mean([stokes[0] + stokes[1], stokes[0] - stokes[1]])
    n_bl = n_ant - 1
    var = NOISE ** 2 / S ** 2 * (1 / (n_bl * n_chan) + 1 / (n_bl * n_int))
    return float(np.sqrt(2 * 2 * var))


def alakazam_product(cal, truth):
    """(a, t, c, 2) product G0(t) G1(nu) of the alakazam table and its flags (a, t, c)."""
    from alakazam.io import hdf5

    times = truth.times
    n_ant, n_t, _ = truth.time_gain.shape
    n_chan = truth.bandpass[0].shape[1]
    g = np.full((n_ant, n_t, 2), np.nan, complex)
    gf = np.ones((n_ant, n_t), bool)
    for s in hdf5.read_term(cal, "G0"):
        ti = np.abs(times[None, :] - s.time[:, None]).argmin(1)
        g[:, ti] = np.stack([s.jones[:, 0, :, 0, 0], s.jones[:, 0, :, 1, 1]], -1)
        gf[:, ti] = s.flags[:, 0, :]
    b = np.full((n_ant, n_chan, 2), np.nan, complex)
    bf = np.ones((n_ant, n_chan), bool)
    for s in hdf5.read_term(cal, "G1"):
        ch = np.asarray(s.attrs["channels"])
        b[:, ch] = np.stack([s.jones[:, :, 0, 0, 0], s.jones[:, :, 0, 1, 1]], -1)
        bf[:, ch] = s.flags[:, :, 0]
    return g[:, :, None, :] * b[:, None, :, :], gf[:, :, None] | bf[:, None, :]


QC_GAINS_SCRIPT = r"""
import glob, os, sys
import numpy as np
import zarr
root, out = sys.argv[1], sys.argv[2]
for term in ("G", "B"):
    sets = [p for p in sorted(glob.glob(os.path.join(root, term, term + "_*")))]
    # gains (gain_time, gain_freq, antenna, direction, correlation), gain_flags without correlation
    g = np.concatenate([zarr.open_array(os.path.join(p, "gains"), mode="r")[:] for p in sets], 0)
    f = np.concatenate([zarr.open_array(os.path.join(p, "gain_flags"), mode="r")[:] for p in sets], 0)
    np.save(os.path.join(out, term + "_gains.npy"), g)
    np.save(os.path.join(out, term + "_flags.npy"), f)
    it = np.concatenate([np.ravel(zarr.open_array(os.path.join(p, "conv_iter"), mode="r")[:]) for p in sets])
    np.save(os.path.join(out, term + "_conv_iter.npy"), it)
"""


def quartical_product(gain_dir, qc_python, tmp, truth):
    """(a, t, c, 2) product G(t) B(nu) of QuartiCal's gains (its zarr arrays, read with its own venv's
    zarr) and its flags; None when they cannot be read."""
    os.makedirs(tmp, exist_ok=True)
    script = os.path.join(tmp, "qc_gains.py")
    with open(script, "w") as fh:
        fh.write(QC_GAINS_SCRIPT)
    r = subprocess.run([qc_python, script, gain_dir, tmp], capture_output=True, text=True)
    if r.returncode:
        print(f"  (QuartiCal's gains not read: {r.stderr.strip().splitlines()[-1:]})")
        return None
    G, B = (np.load(os.path.join(tmp, f"{k}_gains.npy")) for k in "GB")
    print("  (QuartiCal's solver iterations per chunk: " + ", ".join(
        f"{k} {np.load(os.path.join(tmp, f'{k}_conv_iter.npy')).tolist()}" for k in "GB") + ")")
    Gf, Bf = (np.load(os.path.join(tmp, f"{k}_flags.npy")) for k in "GB")
    diag = [0, -1]                       # diag_complex: correlations of the 4-corr gain (XX, YY)
    g = G[:, 0, :, 0][..., diag].transpose(1, 0, 2)          # (a, t, 2)
    b = B[0, :, :, 0][..., diag].transpose(1, 0, 2)          # (a, c, 2)
    gf = Gf[:, 0, :, 0].T.astype(bool)
    bf = Bf[0, :, :, 0].T.astype(bool)
    n_t = truth.time_gain.shape[1]
    if g.shape[1] != n_t:
        print(f"  (QuartiCal's G has {g.shape[1]} times, the truth {n_t}: not compared)")
        return None
    return g[:, :, None, :] * b[:, None, :, :], gf[:, :, None] | bf[:, None, :]


# --------------------------------------------------------------------------------------------------
# alakazam: the child process
# --------------------------------------------------------------------------------------------------
def ak_solve_dict(ms, cal, rfi_threshold=None):
    """G per integration (full band), then G(inf) per channel (1MHz = the channel width) with the first
    pre-applied; ``rfi_threshold`` None = the default (5 MAD sigmas), 0 = no solve-time RFI flags."""
    d = dict(ms=ms, output=cal, ref_ant=0, jones=["G", "G"], time_interval=["int", "inf"],
             freq_interval=["full", "1MHz"])
    if rfi_threshold is not None:
        d["rfi_threshold"] = rfi_threshold
    return d


def ak_apply_dict(ms, cal):
    return dict(ms=ms, jones=["G0", "G1"], tables=[cal, cal], output_col=AK_COLUMN)


def child_main(spec):
    """Solve + apply in this process; prints BENCH_RESULT {json}."""
    ready = time.time()                       # the parent's launch time -> start-up of the interpreter
    import logging

    logging.basicConfig(level=logging.WARNING, force=True)
    from alakazam import exitgc

    exitgc.register()               # the process's exit as `alakazam run`'s (alakazam/exitgc.py)
    from alakazam.calibration.apply import run_apply
    from alakazam.config import apply_config_from_dict, solve_config_from_dict
    from alakazam.flow import run_solve

    from alakazam.core import readcache

    res = {"ready": ready}
    with readcache.Blocks() as blocks:      # the blocks as `alakazam run` runs them (caltasks/yamlrun.py)
        blocks.before("solve")
        t0 = time.perf_counter()
        summary = run_solve(solve_config_from_dict(ak_solve_dict(spec["ms"], spec["cal"], spec.get("rfi"))))
        t1 = time.perf_counter()
        blocks.before("apply")
        ar = run_apply(apply_config_from_dict(ak_apply_dict(spec["ms"], spec["cal"])))
        t2 = time.perf_counter()
    res.update(solve=t1 - t0, apply=t2 - t1,
               steps={k: round(v["seconds"], 3) for k, v in summary["terms"].items()},
               phases={k: v.get("phases") for k, v in summary["terms"].items()},
               flag_backup=ar.get("flag_backup") if isinstance(ar, dict) else None)
    print("BENCH_RESULT " + json.dumps(res))


def run_alakazam(ms, cal, env, profile=None, rfi_threshold=None):
    """(process wall s, child result) of solve + apply in a fresh process; the result's ``startup`` is
    the time from launch to the child's first statement (interpreter, numpy, this module)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child",
           json.dumps({"ms": ms, "cal": cal, "rfi": rfi_threshold})]
    if profile:
        cmd = [sys.executable, "-m", "cProfile", "-o", profile] + cmd[1:]
    launch = time.time()
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            r = json.loads(line[len("BENCH_RESULT "):])
            r["startup"] = r.pop("ready") - launch
            return wall, r
    sys.stderr.write(out.stdout[-3000:] + out.stderr[-5000:])
    raise RuntimeError("alakazam child failed")


# --------------------------------------------------------------------------------------------------
# QuartiCal
# --------------------------------------------------------------------------------------------------
def qc_parset(ms, out, dask_threads, solver_threads):
    """The QuartiCal parset (YAML text) of the equivalent job."""
    return f"""\
input_ms:
  path: {ms}
  data_column: DATA
  weight_column: WEIGHT
  time_chunk: 0
  freq_chunk: 0
  group_by: [SCAN_NUMBER, FIELD_ID, DATA_DESC_ID]
input_model:
  recipe: MODEL_DATA
  apply_p_jones: false
output:
  gain_directory: {out}/gains.qc
  log_directory: {out}/logs.qc
  log_to_terminal: true
  overwrite: true
  products: [corrected_data]
  columns: [{QC_COLUMN}]
  flags: false
mad_flags:
  enable: false
solver:
  terms: [G, B]
  iter_recipe: [25, 25]
  propagate_flags: true
  threads: {solver_threads}
  reference_antenna: 0
dask:
  threads: {dask_threads}
  scheduler: threads
G:
  type: diag_complex
  time_interval: 1
  freq_interval: 0
B:
  type: diag_complex
  time_interval: 0
  freq_interval: 1
"""


def run_quartical(exe, ms, out, dask_threads, solver_threads, env):
    """(process wall s, returncode, log) of goquartical on ``ms`` with the generated parset."""
    os.makedirs(out, exist_ok=True)
    parset = os.path.join(out, "parset.yaml")
    with open(parset, "w") as fh:
        fh.write(qc_parset(ms, out, dask_threads, solver_threads))
    t0 = time.perf_counter()
    r = subprocess.run([exe, parset], capture_output=True, text=True, env=env, cwd=out)
    wall = time.perf_counter() - t0
    return wall, r.returncode, (r.stdout + r.stderr)


def qc_phase_times(log):
    """{"graph": s, "execute": s} from QuartiCal's log lines ('N seconds taken to build/execute graph')."""
    import re

    out = {}
    for key, word in (("graph", "build"), ("execute", "execute")):
        m = re.search(r"([0-9.]+) seconds taken to " + word + " graph", log)
        if m:
            out[key] = float(m.group(1))
    return out


def quartical_version(exe):
    py = os.path.join(os.path.dirname(exe), "python")
    try:
        r = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version('quartical'))"],
                           capture_output=True, text=True)
        return r.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------
def print_alakazam(label, wall, r, floor_s):
    print(f"\nalakazam, {label}")
    rest = wall - r["startup"] - r["solve"] - r["apply"]
    print(f"  wall time (launch to exit)         {wall:7.2f} s   (start-up {r['startup']:.2f} s, "
          f"solve {r['solve']:.2f} s, apply {r['apply']:.2f} s, exit {rest:.2f} s)")
    print("  solve per step: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["steps"].items()))
    for k, ph in (r.get("phases") or {}).items():
        if ph:
            print(f"    {k}: " + ", ".join(f"{p} {v:.2f}" for p, v in ph.items()) + " s")
    print(f"  solve + apply / (read floor + I/O floor) = x{(r['solve'] + r['apply']) / floor_s:.2f}")


def main(argv=None):
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child_main(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="bench_data", help="cache of the built MSs and outputs")
    ap.add_argument("--quartical", default=DEFAULT_QC, help="goquartical executable ('' = skip QuartiCal)")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads of each tool (NUMBA_NUM_THREADS; QuartiCal solver.threads)")
    ap.add_argument("--qc-dask-threads", type=int, default=1,
                    help="QuartiCal dask.threads (default 1: the job is one chunk, so its parallelism is "
                         "solver.threads; dask.threads x solver.threads should not exceed the cores)")
    ap.add_argument("--qc-solver-threads", type=int, default=0,
                    help="QuartiCal solver.threads (0 = --threads)")
    ap.add_argument("--quick", action="store_true", help="a small MS (8 ant x 16 chan x 10 int)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed runs on the tiny MS")
    ap.add_argument("--no-rfi-off", action="store_true",
                    help="skip alakazam's second run without solve-time RFI flags (rfi_threshold 0)")
    ap.add_argument("--profile", default=None, help="cProfile output of alakazam's timed child (default run)")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.qc_dask_threads < 1 or args.qc_solver_threads < 0:
        raise SystemExit(f"--threads {args.threads} / --qc-dask-threads {args.qc_dask_threads} / "
                         f"--qc-solver-threads {args.qc_solver_threads}: expected >= 1 (>= 0)")
    workdir = os.path.abspath(args.workdir)
    n_ant, n_chan, n_int = sizes(args.quick)
    ms, built = build_ms(workdir, n_ant, n_chan, n_int)
    tiny, _ = build_ms(workdir, 6, 8, 4, seed=17)
    import bench_apply
    import bench_flow

    size = bench_flow.du_bytes(ms)
    n_row = bench_flow.ms_shape(ms)[0]
    print(f"MS {ms}: {n_ant} antennas x {n_chan} channels x {n_int} integrations, {n_row} rows, "
          f"4 corr (linear feeds), {size / 1e9:.2f} GB on disk"
          + (f" (built in {built:.0f} s)" if built else " (reused)"))
    exe = args.quartical
    have_qc = bool(exe) and os.path.isfile(exe) and os.access(exe, os.X_OK)
    if not have_qc:
        print(f"QuartiCal: {exe or '(none)'} is not an executable: QuartiCal part SKIPPED "
              f"(install: python -m venv /work/qcvenv && /work/qcvenv/bin/pip install quartical)")
    env = dict(os.environ, NUMBA_NUM_THREADS=str(args.threads), OMP_NUM_THREADS="1",
               ALAKAZAM_NO_PROGRESS="1", PYTHONPATH=os.pathsep.join(
                   [os.path.dirname(HERE)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    # an installed package has its bytecode (pip compiles it): a shell with PYTHONDONTWRITEBYTECODE set
    # made every alakazam process compile ~100 modules from source (0.2 s of the QuartiCal-style job);
    # without it the warm-up run writes the .pyc files, as it fills numba's cache
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    qc_env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    qc_threads = (args.qc_dask_threads, args.qc_solver_threads or args.threads)
    out = ms + ".bench_out"
    os.makedirs(out, exist_ok=True)
    cal = os.path.join(out, "alakazam.cal.h5")
    load = [os.getloadavg()[0]]

    before = checksums(ms)
    if not args.no_warmup:                      # fill both numba caches (untimed)
        t0 = time.perf_counter()
        run_alakazam(tiny, tiny + ".bench_out.h5", env)
        if not args.no_rfi_off:     # its bad-value flag kernel, which the default run does not use
            run_alakazam(tiny, tiny + ".bench_out.h5", env, rfi_threshold=0)
        print(f"warm-up: alakazam on the tiny MS {time.perf_counter() - t0:.1f} s", end="")
        if have_qc:
            w, rc, log = run_quartical(exe, tiny, tiny + ".bench_out", *qc_threads, qc_env)
            print(f", QuartiCal {w:.1f} s" + ("" if rc == 0 else f" (FAILED rc {rc})"), end="")
            if rc:
                print("\n" + log[-3000:])
        print()

    io_s, io_b, rd_s, rd_b = floors(ms)
    print(f"\nfloors (warm, best of 2)\n  getcol DATA + putcol one column    {io_s:7.2f} s  "
          f"({io_b / 1e9:.2f} GB each way)\n  getcol DATA + MODEL_DATA + FLAG    {rd_s:7.2f} s  "
          f"({rd_b / 1e9:.2f} GB)")

    if not args.no_rfi_off:       # first, so that CORRECTED_DATA and the table are the default run's
        bench_apply._settle()
        w0, r0 = run_alakazam(ms, cal, env, rfi_threshold=0)
        print_alakazam("without solve-time RFI flags (rfi_threshold 0: QuartiCal's job has mad_flags off)",
                       w0, r0, rd_s + io_s)
    bench_apply._settle()
    ak_wall, r = run_alakazam(ms, cal, env, args.profile)
    load.append(os.getloadavg()[0])
    print_alakazam(f"defaults (one process: solve G(int) + G(inf, per channel), apply -> {AK_COLUMN})",
                   ak_wall, r, rd_s + io_s)

    qc_wall = None
    if have_qc:
        bench_apply._settle()
        qc_wall, rc, log = run_quartical(exe, ms, out, *qc_threads, qc_env)
        load.append(os.getloadavg()[0])
        ver = quartical_version(exe)
        print(f"\nQuartiCal {ver} ({exe}; dask.threads {qc_threads[0]}, solver.threads {qc_threads[1]}, "
              f"NUMBA_NUM_THREADS {args.threads}; parset {os.path.join(out, 'parset.yaml')})")
        if rc:
            print(f"  FAILED (rc {rc}):\n{log[-4000:]}")
            qc_wall = None
        else:
            ph = qc_phase_times(log)
            g, x = ph.get("graph", float("nan")), ph.get("execute", float("nan"))
            print(f"  wall time (launch to exit)         {qc_wall:7.2f} s   (its log: graph built in "
                  f"{g:.2f} s, executed in {x:.2f} s)")

    from alakazam.sim.simulate import load_truth

    truth = load_truth(ms)
    cols = [AK_COLUMN] + ([QC_COLUMN] if qc_wall is not None else [])
    res, n_bad = residuals(ms, cols)
    print("\ncorrected residual: rms per real/imag part of column - MODEL_DATA (unflagged, finite in every "
          f"compared column; {n_bad} unflagged samples excluded as non-finite)")
    for c in cols:
        p, x = res[c]["parallel"], res[c]["cross"]
        print(f"  {'alakazam' if c == AK_COLUMN else 'QuartiCal':10s} {c:18s} parallel hands {p[0]:.5f} "
              f"({p[1]} samples); cross hands {x[0]:.5f}")
    print(f"  expected for the parallel hands from the noise ({NOISE} x rms 1/|g_p g_q|): "
          f"{expected_residual(truth):.5f}; the cross hands keep the reference antenna's X-Y phase "
          f"(a cross-hand phase: neither job solves one)")

    print(f"\ngain error vs truth: |G(t) B(nu) - true|, both referenced to antenna 0 "
          f"(noise-derived rms {expected_gain_error(truth):.2e})")
    sol, fl = alakazam_product(cal, truth)
    e = gain_error(sol, fl, truth)
    print(f"  alakazam   rms {e[0]:.2e}  max {e[1]:.2e}  ({e[2]} (ant, time, chan) values; "
          f"{int(fl.sum())} flagged)")
    if qc_wall is not None:
        q = quartical_product(os.path.join(out, "gains.qc"), os.path.join(os.path.dirname(exe), "python"),
                              os.path.join(out, "qc_npy"), truth)
        if q is not None:
            eq = gain_error(q[0], q[1], truth)
            d = np.abs(referenced(sol) - referenced(q[0]))[~(fl | q[1])]
            print(f"  QuartiCal  rms {eq[0]:.2e}  max {eq[1]:.2e}  ({eq[2]} values; "
                  f"{int(q[1].sum())} flagged); alakazam - QuartiCal: max {d.max():.2e}")

    after = checksums(ms)
    same = "yes" if after == before else f"NO: {before} -> {after}"
    print(f"\nDATA, MODEL_DATA, FLAG unchanged: {same}")
    if qc_wall is not None:
        ratio = ak_wall / qc_wall
        inproc = r["solve"] + r["apply"]
        print(f"\nalakazam / QuartiCal wall time: {ak_wall:.2f} / {qc_wall:.2f} s = x{ratio:.3f} "
              f"({1 / ratio:.1f}x faster); target <= {TARGET} (20x): {'PASS' if ratio <= TARGET else 'FAIL'}")
        print(f"  alakazam's solve + apply in process {inproc:.2f} s: x{inproc / qc_wall:.3f}"
              + (f"; without solve-time RFI flags {w0:.2f} s: x{w0 / qc_wall:.3f}" if not args.no_rfi_off
                 else "")
              + f"; x{TARGET} is {TARGET * qc_wall:.2f} s")
    print("load average (1 min) at start / after alakazam" + (" / after QuartiCal" if len(load) > 2 else "")
          + ": " + " / ".join(f"{x:.2f}" for x in load) + f" on {os.cpu_count()} cores")
    return {"ak_wall": ak_wall, "qc_wall": qc_wall, "alakazam": r, "residuals": res}


if __name__ == "__main__":
    main()
