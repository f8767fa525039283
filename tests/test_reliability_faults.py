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
    """Flag-version tables on disk (their appearance times a signal: the FLAG write follows)."""
    return sorted(os.path.basename(os.path.dirname(p))[len("flags."):]
                  for p in glob.glob(ms + ".flagversions/flags.*/table.dat"))


def _listed(ms):
    """The saved versions: those listed (core/flagversions.py: a version is listed once it is whole).  A
    kill -9 between a version's table being moved into place and its listing leaves an unlisted table,
    and FLAG not yet written (CI under load, once: the table on disk but 'not found' by the restore)."""
    from alakazam.core import flagversions

    return [v["name"] for v in flagversions.list_versions(ms)]


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
    # a full run first: its duration sets the kill window; then back to the pristine MS.  Timed on a
    # second run: the first may compile kernels numba's cache lacks (a fresh clone, a changed kernel),
    # and a window set by a compiling run would let the later, cached runs finish before their kill
    pristine = os.path.join(tmp, "pristine.ms")
    shutil.copytree(ms, pristine)

    def reset():            # every third kill starts from scratch: no table, no output column yet
        shutil.rmtree(ms)
        shutil.rmtree(ms + ".flagversions", ignore_errors=True)
        shutil.copytree(pristine, ms)
        if os.path.exists(cal):
            os.unlink(cal)

    for _ in range(2):
        reset()
        t0 = time.perf_counter()
        rc, err = _run(tmp)
        t_full = time.perf_counter() - t0
        assert rc == 0, err
        assert "SEVERE" not in err              # solve + apply through the CLI (issue 14)

    rng = np.random.default_rng(12)
    window = 1.1 * t_full
    seen_states = {"no table": 0, "table": 0, "column": 0, "flag backup": 0}
    t_start = time.perf_counter()
    for i in range(N_KILLS):
        if i % 3 == 0:
            reset()
        sig = rng.choice([signal.SIGKILL] * 6 + [signal.SIGINT, signal.SIGTERM])
        versions_before = _listed(ms)
        # a SIGKILLed run's temporary stays until a later writer removes it (its PID is gone): only
        # what this run leaves is its own doing
        tmps_before = set(glob.glob(os.path.join(tmp, ".tmp-*")))
        old_ids = hdf5.write_ids(cal) if os.path.exists(cal) else None
        # the kill window follows the machine: a run slower than the timed one (CI under load: 0 of 22
        # kills reached the output column once) widens it from the second half of the kills on
        if i >= N_KILLS // 2 and not seen_states["column"]:
            window *= 1.5
        t0 = time.perf_counter()
        rc, err = _run(tmp, kill_after=float(rng.uniform(0.1, window)), sig=sig)
        if rc == 0:                                 # finished before its kill: as slow as runs are now
            window = max(window, 1.1 * (time.perf_counter() - t0))
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
        new_versions = [v for v in _listed(ms) if v not in versions_before]
        if new_versions:
            seen_states["flag backup"] += 1
            restore_flags(ms, new_versions[0])
        flags, _ = _cols(ms, ["FLAG", "FLAG_ROW"])
        np.testing.assert_array_equal(flags["FLAG"], ref["FLAG"], err_msg=what)
        np.testing.assert_array_equal(flags["FLAG_ROW"], ref["FLAG_ROW"], err_msg=what)
        if sig != signal.SIGKILL and rc != -sig:
            # an orderly interrupt cleans up after itself
            assert not set(glob.glob(os.path.join(tmp, ".tmp-*"))) - tmps_before, what
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


# --------------------------------------------------------------------------------------------------
# akflag killed mid-FLAG-write
# --------------------------------------------------------------------------------------------------
N_FLAG_KILLS = int(os.environ.get("ALAKAZAM_FAULT_FLAG_KILLS", "12"))


def _flag_run(tmp, sig=None, when="version", delay=0.0):
    """``alakazam flag --vis f.ms --mode clip`` (flags ~all samples: FLAG rewritten in every row); with
    ``sig``, the signal is sent ``delay`` s after the run's flag version appears (when='version': the
    FLAG write is then under way or about to start) or ``delay`` s after the start (when='start')."""
    env = dict(os.environ, PYTHONPATH=ROOT, ALAKAZAM_NO_PROGRESS="1")
    before = set(_versions(os.path.join(tmp, "f.ms")))
    p = subprocess.Popen([sys.executable, "-m", "alakazam.cli", "flag", "--vis", "f.ms", "--mode", "clip",
                          "--clipminmax", "0", "1e-3"], cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    if sig is not None:
        t0 = time.perf_counter()
        while p.poll() is None and time.perf_counter() - t0 < 120:
            if when == "start" or set(_versions(os.path.join(tmp, "f.ms"))) - before:
                time.sleep(delay)
                p.send_signal(sig)
                break
            time.sleep(0.002)
    rc = p.wait(timeout=180)
    return rc, p.stderr.read()


def test_killed_akflag_leaves_flag_restorable(tmp_path):
    """kill -9 / Ctrl-C / SIGTERM of akflag while it writes FLAG: the MS opens, DATA is unchanged, the
    version saved before the write restores FLAG exactly (through the CLI command the run prints on
    Ctrl-C), and an uninterrupted re-run completes."""
    from alakazam.cli import main as cli_main

    tmp = str(tmp_path)
    ms = os.path.join(tmp, "f.ms")
    simulate_ms(ms, n_ant=8, n_ant_extra=0, n_chan=(64,), duration_h=1.5, int_s=10.0, noise=0.05, seed=6,
                leakage=False, dead_ant=False, flag_rows=0.01)
    ref, _ = _cols(ms, ["DATA", "FLAG", "FLAG_ROW"])
    rng = np.random.default_rng(3)
    hit = {"killed after the save": 0, "FLAG changed when killed": 0, "restore command printed": 0}
    for i in range(N_FLAG_KILLS):
        sig = [signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGTERM][i % 4]
        when = "start" if i % 8 == 7 else "version"
        delay = float(rng.uniform(0.0, 0.15)) if when == "version" else float(rng.uniform(0.5, 4.0))
        before = _listed(ms)
        rc, err = _flag_run(tmp, sig, when, delay)
        what = f"akflag kill {i} ({signal.Signals(sig).name} {when}+{delay:.2f}s, rc {rc})"
        # what the next akflag / apply / flag restore does first (under the MS lock): undo a kill that
        # hit casacore's header flush (core/columns.py; the table may not open then)
        with locks.writer_lock(ms, "ms"):
            status = columns.recover(ms)
        if sig != signal.SIGKILL:
            assert status is None, what             # an orderly exit leaves no snapshot behind
        now, _ = _cols(ms, ["DATA", "FLAG", "FLAG_ROW"])          # the MS opens and reads
        np.testing.assert_array_equal(now["DATA"], ref["DATA"], err_msg=what)
        new = [v for v in _listed(ms) if v not in before]
        if rc == 0:
            assert new, what                       # finished before the signal: its version exists
        if new:
            hit["killed after the save"] += rc != 0
            hit["FLAG changed when killed"] += rc != 0 and not np.array_equal(now["FLAG"], ref["FLAG"])
            cmd = f"alakazam flagmanager --vis f.ms --mode restore --versionname {new[0]}"
            if rc != 0 and sig != signal.SIGKILL:
                assert cmd in " ".join(err.split()), (what, err)      # Ctrl-C says how to restore
                hit["restore command printed"] += 1
            cwd = os.getcwd()
            os.chdir(tmp)
            try:
                assert cli_main(cmd.split()[1:] + ["--merge", "replace"]) == 0, what
            finally:
                os.chdir(cwd)
            assert not glob.glob(ms + ".flagversions/*.in_progress"), what
        flags, _ = _cols(ms, ["FLAG", "FLAG_ROW"])
        np.testing.assert_array_equal(flags["FLAG"], ref["FLAG"], err_msg=what)
        np.testing.assert_array_equal(flags["FLAG_ROW"], ref["FLAG_ROW"], err_msg=what)
    print(f"{N_FLAG_KILLS} akflag kills: {hit}")
    assert hit["killed after the save"] >= 2 and hit["restore command printed"] >= 1, hit
    rc, err = _flag_run(tmp)
    assert rc == 0, err
    assert "SEVERE" not in err              # casacore's stale leap-second lines (issue 14)
    flags, _ = _cols(ms, ["FLAG"])
    assert flags["FLAG"].mean() > 0.99
