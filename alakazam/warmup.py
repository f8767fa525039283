"""The solvers' first compilation on the machine's other core, while the run reads and flags.

The first run after an install compiles every numba kernel it uses (the cold start, issue 16): about
15 s on the expert recipe, a third of it the Levenberg-Marquardt solvers of K/KC and D and the gain
solver.  numba compiles one kernel at a time in a process (a global lock), so a run compiles on one
core while the other waits.  :func:`start` hands the solvers of the run's Jones types to a child
process (``python -m alakazam.warmup K G KC ...``) that solves tiny synthetic batches of the exact
types the solve flow builds (:func:`batch`) with the numba backend: the kernels land in numba's
on-disk cache, and the run, reaching its first solve after reading, flagging and accumulating, loads
them instead of compiling them.  If the run gets there first it compiles them itself, as before: the
child changes only when a kernel is compiled, never a value.  When an apply follows the solves
(``alakazam run`` with an apply block), the child then compiles the apply's row kernels too (the
pseudo-type ``"apply"``, :func:`compile_apply`): the run compiled them last, on one core, after the child
had finished (1.8 s of the expert recipe's cold start).

Convention (pinned by tests/test_warmup.py):

* Started only when a solver kernel of those types is not in numba's cache yet (so never once the
  cache is warm), at most once per Jones type per process, and never under
  ``ALAKAZAM_BACKGROUND_COMPILE=0``, on a backend other than numba, or with numba's cache off.
* The child writes nothing but numba's cache (atomic file replaces), imports nothing from the current
  directory (Python >= 3.11: ``PYTHONSAFEPATH``), prints nothing but its progress ("start K", "done
  K") on a pipe to the run, and is terminated when the run's process exits (Linux: a parent-death
  signal it sets itself; elsewhere at the run's exit); a child that has finished is reaped at once (no
  zombie in a long session).
* It runs at the run's CPU priority: its kernels are ones the run needs (else the run compiles them
  itself), and at a lower priority (nice 10) it got almost no CPU on a machine busy with other jobs,
  so the run compiled everything itself (the tiny recipe at load 4-6: every solver kernel compiled in
  the run, none loaded).
* The run's first solve of a type whose solvers the child is compiling at that moment waits for the
  child to finish them (:func:`wait_for`) instead of compiling the same kernels again beside it; a type
  the child has not started yet is compiled by the run (the child then loads it from the cache).
* The child's batches have the dtypes, shapes and memory layout of the solve flow's
  (:func:`alakazam.unit._make_batch`, ``_slot_batch``), so its compilations are the run's: after the
  child, the tiny recipe compiles no solver kernel.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading

import numpy as np

#: Jones types whose solvers the child compiles, in the order a run needs them, then ``"apply"``: the
#: apply's row kernels (:func:`compile_apply`), for a run whose apply comes after its solves
ORDER = ("K", "G", "KC", "CP", "D", "apply")

_STARTED: set = set()
_CHILDREN: list = []
#: Jones type -> "start" / "done", as the child reports it (read by the reaper thread)
_PROGRESS: dict = {}
_COND = threading.Condition()
#: longest wait of :func:`wait_for` (a child that stops reporting: the run compiles the kernels itself)
WAIT_MAX_S = 120.0


def enabled() -> bool:
    return os.environ.get("ALAKAZAM_BACKGROUND_COMPILE", "1") != "0" and \
        os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0")


#: per Jones type, the (solver module, kernel) pairs whose numba cache files tell whether the type's
#: solvers were compiled on this machine; only the modules of the run's types are imported (a G-only
#: run imported cross_phase, leakage and parallel_delay, and loaded their eagerly compiled kernels,
#: just to look: 0.05-0.09 s of the QuartiCal-style job's start, issue 16)
KERNELS = {"K": (("solvers.parallel_delay", "_lm_items"), ("solvers.quality", "_power_sums"),
                 ("solvers.parallel_delay", "_sums_items")),
           "KC": (("solvers.parallel_delay", "_lm_items"),),
           "G": (("solvers.gains", "_stefcal_items"), ("solvers.quality", "_power_sums")),
           "D": (("solvers.leakage", "_lm_items"),),
           "CP": (("solvers.cross_phase", "_leakage_offsets"),),
           "apply": (("jones.algebra", "_correct_diag_inv_rows"), ("jones.algebra", "_correct_full_inv_rows"),
                     ("jones.algebra", "_compose_inverse"), ("jones.algebra", "_correct_lin_d_rows"))}


def _kernels(jt):
    """A compiled kernel that the solve of Jones type ``jt`` (or the apply) uses (its cache file tells
    whether the type's kernels were compiled on this machine)."""
    import importlib

    return [getattr(importlib.import_module(f"{__package__}.{mod}"), name)
            for mod, name in KERNELS.get(jt, ())]


def _cached(disp) -> bool:
    """The kernel's numba cache index exists (True when that cannot be told: never start on doubt)."""
    try:
        return os.path.exists(disp._cache._cache_file._index_path)
    except Exception:           # noqa: BLE001 -- another numba version or no cache: treat as cached
        return True


def needed(jones_types) -> list:
    """The Jones types (of ``jones_types``) whose solvers are not yet compiled on this machine."""
    out = []
    for jt in ORDER:
        if jt in jones_types and jt not in _STARTED and any(not _cached(k) for k in _kernels(jt)):
            out.append(jt)
    return out


def start(jones_types, backend="numba"):
    """Compile the solvers of ``jones_types`` in a child process when they are not cached (module
    docstring); returns the types handed to it (empty when nothing was started)."""
    if backend != "numba" or not enabled():
        return []
    types = needed(set(jones_types))
    if not types:
        return []
    _STARTED.update(types)
    try:
        p = _spawn([sys.executable, "-m", "alakazam.warmup", *types])
    except (OSError, ValueError, TypeError):        # no interpreter to start: compile in the run
        return []
    _CHILDREN.append(p)
    # reaped as soon as it exits: a long session (akshell, Python) keeps no <defunct> child
    threading.Thread(target=_reap, args=(p,), daemon=True, name="alakazam-warmup-reap").start()
    if len(_CHILDREN) == 1:
        atexit.register(stop)
    return types


def _reap(p):
    try:
        out = getattr(p, "stdout", None)
        if out is not None:         # the child's progress lines: "start K", "done K"
            for line in out:
                word, _, jt = line.decode("ascii", "replace").strip().partition(" ")
                if word in ("start", "done") and jt in ORDER:
                    with _COND:
                        _PROGRESS[jt] = word
                        _COND.notify_all()
            out.close()
        p.wait()
    except Exception:           # noqa: BLE001 -- stop() reaps it then
        pass
    finally:
        with _COND:
            _COND.notify_all()


def wait_for(jt, timeout=None) -> bool:
    """Before the run solves Jones type ``jt``: when this process's child is compiling ``jt``'s solvers
    right now, wait until it has finished them (the run then loads them from numba's cache instead of
    compiling them beside the child), at most ``timeout`` seconds (default :data:`WAIT_MAX_S`).  A type
    the child has finished or not started yet, or no child running: returns at once.  Returns True when
    it waited."""
    if jt not in _STARTED:
        return False
    import time

    deadline = time.monotonic() + (WAIT_MAX_S if timeout is None else timeout)
    waited = False
    with _COND:
        while _PROGRESS.get(jt) == "start" and any(p.poll() is None for p in _CHILDREN):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            waited = True
            _COND.wait(min(left, 0.5))
    return waited


def _spawn(args):
    # no preexec_fn: Python code between fork and exec is unsafe in a threaded process (the child sets
    # its priority and parent-death signal itself, _child_setup)
    # PYTHONSAFEPATH (Python >= 3.11): ``-m`` would put the current directory -- with ``alakazam run``,
    # the YAML's -- first on sys.path, and a user's inspect.py or textwrap.py there would run in the child
    env = dict(os.environ, ALAKAZAM_WARMUP_PARENT=str(os.getpid()), PYTHONSAFEPATH="1")
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)


def _child_setup(parent: int):
    """In the child: terminated with the run's process (Linux: parent-death signal; the run already
    gone: exit).  The run's priority (module docstring)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))     # PR_SET_PDEATHSIG
    except Exception:           # noqa: BLE001 -- not Linux: the run's atexit stop() covers it
        pass
    if parent and os.getppid() != parent:
        sys.exit(0)


def wait(timeout=120.0):
    """Wait for the children to finish (benchmarks: their CPU time is then in ``os.times()``)."""
    for p in _CHILDREN:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass


def stop():
    """Terminate the children still compiling (at exit: a kernel half compiled is simply not cached)."""
    for p in _CHILDREN:
        if p.poll() is None:
            p.terminate()
    for p in _CHILDREN:
        try:
            p.wait(timeout=5)
        except Exception:       # noqa: BLE001
            p.kill()
    _CHILDREN.clear()


def batch(jt, n_ant=6, n_cell=2, n_samp=3, seed=0):
    """A tiny CellBatch with the types of the solve flow's (complex128/float64 (n_cell, n_bl, n_samp,
    4) C-contiguous, int32 baselines, float64 (n_cell, n_samp) frequencies)."""
    from .solvers import CellBatch

    rng = np.random.default_rng(seed)
    a1, a2 = np.triu_indices(n_ant, 1)
    n_bl = len(a1)
    shape = (n_cell, n_bl, n_samp, 4)
    model = np.zeros(shape, np.complex128)
    model[..., 0] = model[..., 3] = 1.0
    model[..., 1] = model[..., 2] = 0.05 + 0.02j
    vis = model + 0.01 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    weight = np.ones(shape, np.float64)
    freq = np.tile(1.4e9 + 1e6 * np.arange(n_samp, dtype=np.float64), (n_cell, 1))
    b = CellBatch(vis=vis, model=model, weight=weight, ant1=a1.astype(np.int32), ant2=a2.astype(np.int32),
                  freq=freq, n_ant=n_ant, ref_ant=0)
    b.ref_ants = (0,)
    return b


def compile_apply():
    """Run the apply's row kernels (:mod:`alakazam.jones.algebra`) on tiny arrays of the types
    :func:`alakazam.calibration.apply._apply_field` passes: a complex64 DATA chunk (rows, channels, 4)
    corrected in place, int64 time / antenna indices, a bool flag chunk; the diagonal path (a
    complex128 (time, antenna, channel, 2) table inverted, then applied) and the full path (the
    diagonal terms, a D table and a parallactic-angle matrix composed and inverted, then applied), the
    linearised-D path (calibration/dapply.py), and the flags merged.  A chain whose DATA is not
    complex64 compiles its own in the run."""
    from .jones import algebra

    n_t, n_ant, n_chan, n_row = 2, 3, 4, 6
    t = np.array([0, 0, 0, 1, 1, 1], np.int64)
    a1 = np.array([0, 0, 1, 0, 0, 1], np.int64)
    a2 = np.array([1, 2, 2, 1, 2, 2], np.int64)
    diag = np.ones((n_t, n_ant, n_chan, 2), np.complex128)
    sky = np.zeros((n_t, n_ant, n_chan, 2, 2), np.complex128)
    sky[..., 0, 0] = sky[..., 1, 1] = 1.0
    par = np.ascontiguousarray(sky[:, :, 0])
    for path in ("diag", "full", "lin"):
        data = np.ones((n_row, n_chan, 4), np.complex64)
        bad = np.zeros(data.shape, np.bool_)
        if path == "diag":
            algebra.correct_diag_inv(data, algebra.diag_inverse_table(diag), t, a1, a2, data, bad, True)
        elif path == "lin":         # D linearised (calibration/dapply.py), as _apply_field builds its tables
            leak = np.stack([sky[..., 0, 1], sky[..., 1, 0]], axis=-1)
            algebra.correct_lin_d(data, algebra.diag_inverse_table(diag), leak,
                                  np.conj(np.swapaxes(par, -1, -2)), t, a1, a2, data, bad, True)
        else:
            inv, ok = algebra.compose_inverse_table(n_t, n_ant, n_chan, diag, sky, par)
            algebra.correct_full_inv(data, inv, ok, t, a1, a2, data, bad, True)
        algebra.merge_flags(np.zeros(data.shape, np.bool_), bad)
        algebra.merge_flags_nonfinite(np.zeros(data.shape, np.bool_), bad, data, np.ones(4, np.bool_))


def compile_types(types):
    """Solve a tiny batch of each Jones type with the options the solve flow uses (both gain modes);
    ``"apply"``: :func:`compile_apply`."""
    from . import solvers
    from .solvers import cross_phase

    for jt in types:
        _report("start", jt)
        if jt == "apply":
            try:
                compile_apply()
            except Exception:   # noqa: BLE001 -- a warm-up only: the run compiles what failed here
                pass
            _report("done", jt)
            continue
        for phase_only in ((False, True) if jt == "G" else (False,)):
            b = batch(jt)
            if jt == "CP":
                cross_phase.remove_leakage_offsets(b)
                cross_phase.swap_sums(b)        # the exchanged-hands check (misfitcheck.swap_ratio)
            if jt == "D":               # the gauge's information (leakage_gauge, the gauge note)
                from .solvers import leakage
                leakage.absolute_gauge_info(b)
            opts = solvers.SolveOptions(phase_only=phase_only, min_bl_per_ant=4, min_snr=3.0,
                                        flag_nonconverged=True)
            try:
                solvers.solve(jt, b, backend="numba", opts=opts)
            except Exception:   # noqa: BLE001 -- a warm-up only: the run compiles what failed here
                pass
        _report("done", jt)


def _report(word, jt):
    """The child's progress to the run (its stdout is a pipe the run's reaper thread reads)."""
    try:
        sys.stdout.write(f"{word} {jt}\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    _child_setup(int(os.environ.get("ALAKAZAM_WARMUP_PARENT", "0") or 0))
    compile_types([a for a in sys.argv[1:] if a in ORDER])
