"""Fault injection (issue 12): ``python -m alakazam.cli run`` (solve K, G -> apply with propagate_flags)
on a tiny MS is killed at random points -- mostly kill -9, some Ctrl-C (SIGINT) and SIGTERM -- at least
20 times, and after every kill:

* DATA and MODEL_DATA are unchanged;
* the solution file is absent (never written yet), or readable with keys K0, G0 written by ONE replace
  (one write_id): the old file or the new one, never a mix;
* the output column, when present, holds an array in every row (no "TSM: no array in row");
* FLAG is unchanged, or a flag version made by this run restores it exactly (the backup exists
  before the first FLAG write);
* after Ctrl-C / SIGTERM no temporary file and no partial column remain;
* the MS always opens (a kill while apply adds its column is undone by the next apply:
  :func:`alakazam.core.columns.recover`).

A final uninterrupted run finishes the job.  The seed is fixed (reproducible); the kill times are
spread uniformly over a full run's duration, measured first.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from casacore.tables import table

from alakazam.calibration.apply import restore_flags
from alakazam.core import columns, locks
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_KILLS = int(os.environ.get("ALAKAZAM_FAULT_KILLS", "22"))
YAML = """\
solve:
  - {ms: f.ms, output: cal.h5, jones: [K, G], ref_ant: C00, quiet: true}
apply:
  - {ms: f.ms, jones: [K0, G0], tables: [cal.h5, cal.h5], propagate_flags: true, quiet: true}
"""


def _cols(ms, names):
    with table(ms, ack=False) as t:
        return {n: t.getcol(n) for n in names if n in t.colnames()}, t.colnames()


def _versions(ms):
    return sorted(os.path.basename(p)[len("flags."):-len(".npz")]
                  for p in glob.glob(ms + ".flagversions/flags.*.npz"))


def _run(tmp, kill_after=None, sig=signal.SIGKILL):
    env = dict(os.environ, PYTHONPATH=ROOT, ALAKAZAM_NO_PROGRESS="1")
    p = subprocess.Popen([sys.executable, "-m", "alakazam.cli", "--quiet", "run", "f.yaml"], cwd=tmp,
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is None:
        return p.wait(timeout=300), p.stderr.read()
    try:
        p.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        p.send_signal(sig)
    rc = p.wait(timeout=120)
    return rc, p.stderr.read()


def test_random_kills_lose_nothing(tmp_path):
    tmp = str(tmp_path)
    ms = os.path.join(tmp, "f.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=1, n_chan=(8,), duration_h=0.5, int_s=120.0, noise=0.05, seed=5,
                leakage=False, dead_ant=True, flag_rows=0.0)
    with open(os.path.join(tmp, "f.yaml"), "w") as fh:
        fh.write(YAML)
    cal = os.path.join(tmp, "cal.h5")
    ref, _ = _cols(ms, ["DATA", "MODEL_DATA", "FLAG", "FLAG_ROW"])
    # a full run first: its duration sets the kill window; then back to the pristine MS
    pristine = os.path.join(tmp, "pristine.ms")
    shutil.copytree(ms, pristine)
    t0 = time.perf_counter()
    rc, err = _run(tmp)
    t_full = time.perf_counter() - t0
    assert rc == 0, err

    def reset():            # every third kill starts from scratch: no table, no output column yet
        shutil.rmtree(ms)
        shutil.rmtree(ms + ".flagversions", ignore_errors=True)
        shutil.copytree(pristine, ms)
        if os.path.exists(cal):
            os.unlink(cal)

    rng = np.random.default_rng(12)
    seen_states = {"no table": 0, "table": 0, "column": 0, "flag backup": 0}
    t_start = time.perf_counter()
    for i in range(N_KILLS):
        if i % 3 == 0:
            reset()
        sig = rng.choice([signal.SIGKILL] * 6 + [signal.SIGINT, signal.SIGTERM])
        versions_before = _versions(ms)
        old_ids = hdf5.write_ids(cal) if os.path.exists(cal) else None
        rc, err = _run(tmp, kill_after=float(rng.uniform(0.1, 1.1 * t_full)), sig=sig)
        what = f"kill {i} ({signal.Signals(sig).name}, rc {rc})"
        # what the next apply does first (under the MS lock): undo a kill that hit while the output
        # column was being added (the table may not even open then); count how often it was needed
        with locks.writer_lock(ms, "ms"):
            status = columns.recover(ms)
        if status:
            seen_states[status] = seen_states.get(status, 0) + 1
        assert "Traceback" not in err or sig != signal.SIGTERM or "KeyboardInterrupt" in err, what
        now, names = _cols(ms, ["DATA", "MODEL_DATA", "FLAG", "FLAG_ROW"])
        np.testing.assert_array_equal(now["DATA"], ref["DATA"], err_msg=what)
        np.testing.assert_array_equal(now["MODEL_DATA"], ref["MODEL_DATA"], err_msg=what)
        # the solution file: absent, the old one or a complete new one
        if os.path.exists(cal):
            seen_states["table"] += 1
            ids = hdf5.write_ids(cal)
            assert sorted(ids) == ["G0", "K0"] and len(set(ids.values())) == 1, what
            assert old_ids is None or ids == old_ids or set(ids.values()).isdisjoint(old_ids.values()), what
            for key in ids:
                assert hdf5.read_term(cal, key), what
        else:
            seen_states["no table"] += 1
        # the output column: every row readable
        if "CORRECTED_DATA" in names:
            seen_states["column"] += 1
            assert len(columns.undefined_rows(ms, "CORRECTED_DATA")) == 0, what
            with table(ms, ack=False) as t:
                assert t.getcol("CORRECTED_DATA").shape == ref["DATA"].shape, what
        # FLAG: unchanged, or restorable from the version this run saved
        new_versions = [v for v in _versions(ms) if v not in versions_before]
        if new_versions:
            seen_states["flag backup"] += 1
            restore_flags(ms, new_versions[0])
        flags, _ = _cols(ms, ["FLAG", "FLAG_ROW"])
        np.testing.assert_array_equal(flags["FLAG"], ref["FLAG"], err_msg=what)
        np.testing.assert_array_equal(flags["FLAG_ROW"], ref["FLAG_ROW"], err_msg=what)
        if sig != signal.SIGKILL and rc != -sig:
            # an orderly interrupt cleans up after itself
            assert not glob.glob(os.path.join(tmp, ".tmp-*")), what
            assert columns.partial_name("CORRECTED_DATA") not in names, what
    elapsed = time.perf_counter() - t_start
    print(f"{N_KILLS} kills in {elapsed:.1f} s (full run {t_full:.2f} s); states seen: {seen_states}")
    # the kills hit before the table was written, after it, and after the output column was made
    assert seen_states["no table"] and seen_states["table"] and seen_states["column"]
    # re-running finishes the job
    rc, err = _run(tmp)
    assert rc == 0, err
    now, names = _cols(ms, ["DATA", "CORRECTED_DATA"])
    np.testing.assert_array_equal(now["DATA"], ref["DATA"])
    assert len(columns.undefined_rows(ms, "CORRECTED_DATA")) == 0
    assert columns.partial_name("CORRECTED_DATA") not in names
    assert sorted(hdf5.write_ids(cal)) == ["G0", "K0"]
    # no temporaries are left behind once a later writer has run
    assert not glob.glob(os.path.join(tmp, ".tmp-*"))
