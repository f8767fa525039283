"""mode='aoflagger': the AOFlagger library (SumThreshold + scale-invariant rank operator) on the
time-frequency plane of every baseline of each (DATA_DESC_ID, scan) unit.

* Column: ``datacolumn`` 'data' (DATA), 'corrected' (CORRECTED_DATA), 'residual' (DATA - MODEL_DATA) or
  'corrected_residual' (CORRECTED_DATA - MODEL_DATA: after a first calibration, the right column for a
  bright calibrator, whose own signal AOFlagger would otherwise flag -- see the README).
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
  give the same wall time as one, with CPU time = wall time), so baselines run one after another on the
  calling thread; memory is bounded by the engine's pieces (whole baselines of one scan).
"""

from __future__ import annotations

import os

import numpy as np

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


def start(cfg, sel):
    ao = _library()
    flagger = ao.AOFlagger()
    path = strategy_path(cfg.strategy, sel.meta.telescope_name)
    import logging

    logging.getLogger("alakazam.flag").info("akflag aoflagger %s: strategy %s", flagger.get_version_string(),
                                            path)
    return {"flagger": flagger, "strategy": flagger.load_strategy_file(path)}


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


def flag_piece(piece, cfg, state):
    out = piece.flag.copy()
    data = piece.data
    groups, times = piece.baseline_groups()
    n_corr = data.shape[2]
    sets = [list(range(n_corr))] if n_corr in (1, 2, 4) else [[c] for c in range(n_corr)]
    nc = data.shape[1]
    for rows, tidx in groups:
        t0 = tidx.min()
        nt = int(tidx.max() - t0 + 1)
        ti = tidx - t0
        d = data[rows]                                       # (t, chan, corr)
        bad = ~(np.isfinite(d.real) & np.isfinite(d.imag))
        inflag = np.ones((nc, nt), bool)                     # missing integrations: flagged
        inflag[:, ti] = (piece.flag[rows] | bad).any(axis=2).T
        mask = np.zeros((nc, nt), bool)
        for cs in sets:
            planes = np.zeros((2 * len(cs), nc, nt), np.float32)
            for j, c in enumerate(cs):
                v = np.where(bad[:, :, c], 0, d[:, :, c])
                planes[2 * j][:, ti] = v.real.T
                planes[2 * j + 1][:, ti] = v.imag.T
            mask |= _run(state, planes, np.ascontiguousarray(inflag))
        add = (mask & ~inflag)[:, ti].T                      # (t, chan)
        out[rows] |= add[:, :, None] | bad
    return out
