"""mode='aoflagger': the AOFlagger library (SumThreshold + scale-invariant rank operator) on the
time-frequency plane of every baseline of each (DATA_DESC_ID, scan) unit.

* Column: ``datacolumn`` 'data' (DATA), 'corrected' (CORRECTED_DATA), 'residual' (CORRECTED_DATA -
  MODEL_DATA, as CASA's flagdata: after a first calibration, the right column for a bright calibrator,
  whose own signal AOFlagger would otherwise flag -- see the README; with a gaintable, DATA corrected on
  the fly - MODEL_DATA), 'residual_data' (DATA - MODEL_DATA) or 'corrected_residual' (= 'residual').
* Images: the real and imaginary part of every selected correlation (AOFlagger's layout: 2 images for
  one correlation, 4 for two, 8 for four); other counts run each correlation on its own.  The image is
  (channel, integration) over the selected channels and the baseline's integrations in the scan; a
  missing integration is a zero column given to AOFlagger as flagged.
* Existing flags (FLAG | FLAG_ROW, any selected correlation) go in as AOFlagger's input mask; NaN/Inf
  samples are zeroed and flagged the same way.  AOFlagger's mask is per baseline and sample: it is
  applied to every selected correlation, and only samples AOFlagger adds are added (existing flags are
  kept as they are).
* ``strategy``: '' = 'generic'; 'auto' = from the MS's telescope (VLA/EVLA/JVLA -> jvla, LOFAR -> lofar,
  MWA, WSRT, Parkes, ATCA, AARTFAAC, Arecibo, Bighorns, NenuFAR, Apertif; otherwise generic); a strategy
  name AOFlagger ships (``<name>-default.lua`` or ``<name>.lua`` in its strategies folder: generic, jvla,
  lofar, ...); or the path of a user ``.lua`` file.  The default is generic, not the telescope's: on
  32-channel SPWs the jvla strategy (subband normalisation over 48 channels, a 1-channel frequency
  smoothing kernel, no channel-RMS test) flagged only 17-34% of a persistent RFI channel's samples where
  generic flagged 100% (measured on the simulated MSs of tests/test_flagging.py).
* Parallelism: the aoflagger Python binding holds the GIL while a strategy runs (measured: two threads
  give the same wall time as one, with CPU time = wall time), so a thread pool cannot help.  With
  ``nproc`` > 1, batches of baselines go to that many spawned worker processes (each loads the strategy
  once); by default (1) baselines run one after another on the calling thread.  Memory is bounded by
  the engine's pieces (whole baselines of one scan) plus the planes in flight (2 x nproc batches).
"""

from __future__ import annotations

import os

import numpy as np

from ..core.mainguard import main_hidden as _main_hidden   # (workers skip the user's script)
from ..errors import AlakazamError

NEEDS_DATA = True

_TELESCOPES = {"vla": "jvla", "evla": "jvla", "jvla": "jvla", "lofar": "lofar", "mwa": "mwa", "wsrt": "wsrt",
               "parkes": "parkes", "atca": "atca", "aartfaac": "aartfaac", "arecibo": "arecibo",
               "bighorns": "bighorns", "nenufar": "nenufar", "apertif": "apertif"}


def _library():
    try:
        import aoflagger
    except ImportError:
        raise AlakazamError("mode='aoflagger' needs the aoflagger package: pip install 'aoflagger>=3.4'") \
            from None
    return aoflagger


def strategies_dir() -> str:
    ao = _library()
    return os.path.dirname(str(ao.AOFlagger().find_strategy_file(ao.TelescopeId.Generic)))


def shipped_strategies():
    """Names of the strategies AOFlagger ships ('generic', 'jvla', ...; '-default' dropped)."""
    names = set()
    for f in os.listdir(strategies_dir()):
        if f.endswith(".lua"):
            names.add(f[:-len("-default.lua")] if f.endswith("-default.lua") else f[:-4])
    return sorted(names)


def strategy_path(strategy, telescope=None) -> str:
    """Path of the .lua strategy for ``strategy`` ('' = generic, 'auto' = from ``telescope``)."""
    s = str(strategy or "").strip() or "generic"
    if s.lower() == "auto":
        s = _TELESCOPES.get(str(telescope or "").strip().lower(), "generic")
    if s.endswith(".lua") or os.sep in s:
        p = os.path.expanduser(s)
        if not os.path.isfile(p):
            raise AlakazamError(f"strategy: {s!r} does not exist (expected a .lua file or one of "
                                f"{', '.join(shipped_strategies())})")
        return os.path.abspath(p)
    d = strategies_dir()
    for cand in (f"{s.lower()}-default.lua", f"{s.lower()}.lua"):
        if os.path.isfile(os.path.join(d, cand)):
            return os.path.join(d, cand)
    raise AlakazamError(f"strategy: {s!r} is not a strategy AOFlagger ships; expected one of "
                        f"{', '.join(shipped_strategies())} or the path of a .lua file")


def check_strategy(strategy, telescope=None) -> str:
    """:func:`strategy_path`, and a user .lua file loaded now and required to define ``execute`` (the
    function AOFlagger calls): a bad file is a parameter error before anything is saved or written."""
    import re

    path = strategy_path(strategy, telescope)
    if os.path.dirname(path) == strategies_dir():
        return path
    try:
        _library().AOFlagger().load_strategy_file(path)
    except RuntimeError as e:
        raise AlakazamError(f"strategy: {path!r} is not a valid AOFlagger strategy: {e}") from None
    with open(path, errors="replace") as fh:
        if not re.search(r"\bfunction\s+execute\s*\(|\bexecute\s*=\s*function\b", fh.read()):
            raise AlakazamError(f"strategy: {path!r} defines no function execute(input), the entry point "
                                "AOFlagger calls")
    return path


def start(cfg, sel):
    ao = _library()
    flagger = ao.AOFlagger()
    path = strategy_path(cfg.strategy, sel.meta.telescope_name)
    import logging

    nproc = int(getattr(cfg, "nproc", 1) or 1)
    logging.getLogger("alakazam.flag").info("akflag aoflagger %s: strategy %s, %d process(es)",
                                            flagger.get_version_string(), path, nproc)
    state = {"flagger": flagger, "strategy": flagger.load_strategy_file(path), "pool": None}
    if nproc > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawned (not forked) workers: the parent holds open casacore tables and threads.  They are
        # all started here, with the caller's __main__ hidden, so a worker never re-runs the user's
        # script (or fails on '<stdin>'): it needs only this module
        pool = ProcessPoolExecutor(max_workers=nproc, mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker, initargs=(path,))
        state["pool"] = pool
        with _main_hidden():
            for f in [pool.submit(_ping) for _ in range(nproc)]:
                f.result()
    return state


def _ping():
    return True


def close(cfg, sel, state):
    """Shut the worker processes down (called by the engine also when a run fails)."""
    if state and state.get("pool") is not None:
        state["pool"].shutdown(wait=True, cancel_futures=True)
        state["pool"] = None


_WORKER = {}


def _init_worker(path):
    ao = _library()
    fl = ao.AOFlagger()
    _WORKER.update(flagger=fl, strategy=fl.load_strategy_file(path))


def _worker_run(jobs):
    return [_run(_WORKER, planes, inflag) for planes, inflag in jobs]


def _run(state, planes, inflag):
    """AOFlagger mask (chan, time) bool for images ``planes`` (k, chan, time) float32 (k in 2, 4, 8)."""
    fl = state["flagger"]
    n, nc, nt = planes.shape
    im = fl.make_image_set(nt, nc, n)
    for k in range(n):
        im.set_image_buffer(k, planes[k])
    fm = fl.make_flag_mask(nt, nc, False)
    fm.set_buffer(inflag)
    return np.asarray(state["strategy"].run(im, fm).get_buffer(), bool)


def _jobs(piece, sets):
    """Per baseline: (rows, time index, input flags (chan, time), bad samples, [(planes, inflag)] per
    correlation set)."""
    data = piece.data
    nc = data.shape[1]
    groups, _ = piece.baseline_groups()
    for rows, tidx in groups:
        t0 = tidx.min()
        nt = int(tidx.max() - t0 + 1)
        ti = tidx - t0
        d = data[rows]                                       # (t, chan, corr)
        bad = ~(np.isfinite(d.real) & np.isfinite(d.imag))
        inflag = np.ones((nc, nt), bool)                     # missing integrations: flagged
        inflag[:, ti] = (piece.flag[rows] | bad).any(axis=2).T
        jobs = []
        for cs in sets:
            planes = np.zeros((2 * len(cs), nc, nt), np.float32)
            for j, c in enumerate(cs):
                v = np.where(bad[:, :, c], 0, d[:, :, c])
                planes[2 * j][:, ti] = v.real.T
                planes[2 * j + 1][:, ti] = v.imag.T
            jobs.append((planes, inflag))
        yield rows, ti, inflag, bad, jobs


def _apply(out, rows, ti, inflag, bad, masks):
    mask = np.zeros_like(inflag)
    for m in masks:
        mask |= m
    add = (mask & ~inflag)[:, ti].T                          # (t, chan)
    out[rows] |= add[:, :, None] | bad


#: baselines sent to a worker process at once (bounds the planes in flight to ~2 x nproc x this)
BATCH = 16


def flag_piece(piece, cfg, state):
    out = piece.flag.copy()
    n_corr = piece.data.shape[2]
    sets = [list(range(n_corr))] if n_corr in (1, 2, 4) else [[c] for c in range(n_corr)]
    pool = state.get("pool")
    if pool is None:
        for rows, ti, inflag, bad, jobs in _jobs(piece, sets):
            _apply(out, rows, ti, inflag, bad, [_run(state, p, f) for p, f in jobs])
        return out
    pending, batch, meta = [], [], []
    limit = 2 * pool._max_workers

    def drain(k):
        while len(pending) > k:
            fut, info = pending.pop(0)
            masks = fut.result()
            for rows, ti, inflag, bad, n in info:
                _apply(out, rows, ti, inflag, bad, masks[:n])
                masks = masks[n:]

    for rows, ti, inflag, bad, jobs in _jobs(piece, sets):
        batch.extend(jobs)
        meta.append((rows, ti, inflag, bad, len(jobs)))
        if len(meta) >= BATCH:
            pending.append((pool.submit(_worker_run, batch), meta))
            batch, meta = [], []
            drain(limit)
    if meta:
        pending.append((pool.submit(_worker_run, batch), meta))
    drain(0)
    return out
