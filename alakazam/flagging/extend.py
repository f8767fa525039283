"""mode='extend' (flagdata's flag extension), per baseline over the time-frequency plane of each
(DATA_DESC_ID, scan) unit, applied in this order, each step on the result of the previous one:

1. ``extendpols`` (default True): a (time, channel) flagged in any selected correlation is flagged in all;
2. ``growtime`` (percent, default 50; 0 = off): per channel and correlation, if MORE than growtime % of
   the baseline's integrations are flagged, all of them are;
3. ``growfreq`` (percent, default 50; 0 = off): per integration and correlation, if MORE than growfreq %
   of the selected channels are flagged, all of them are;
4. ``growaround`` (default False): a sample with more than 4 of its (up to 8) time-frequency neighbours
   flagged is flagged (neighbours counted on the flags before this step);
5. ``flagneartime`` (default False): the integrations just before and after a flagged one are flagged;
6. ``flagnearfreq`` (default False): the channels either side of a flagged channel are flagged.

Neighbours in time are adjacent integrations of the baseline in the unit (a missing integration is a
gap: it is neither flagged nor counted); a gap only breaks adjacency (steps 4-6): steps 1-3 see the
baseline's whole scan.  Existing flags are kept (extend only adds).
"""

import numpy as np


def _neighbours(f):
    """Number of flagged 8-neighbours of each (time, chan) of f (time, chan) bool."""
    p = np.pad(f.astype(np.int8), 1)
    n = np.zeros(f.shape, np.int8)
    for dt in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dt or dc:
                n += p[1 + dt:1 + dt + f.shape[0], 1 + dc:1 + dc + f.shape[1]]
    return n


def extend_plane(f, cfg):
    """Extension of one baseline's flags ``f`` (time, chan, corr) bool (contiguous integrations)."""
    return _near(_grow(f, cfg), cfg)


def _grow(f, cfg):
    """Steps 1-3 (extendpols, growtime, growfreq) on a baseline's whole plane (gaps do not matter)."""
    f = f.copy()
    if cfg.extendpols:
        f |= f.any(axis=2, keepdims=True)
    nt, nc, _ = f.shape
    if cfg.growtime > 0 and nt:
        grow = f.sum(axis=0) * 100.0 > cfg.growtime * nt          # (chan, corr)
        f |= grow[None]
    if cfg.growfreq > 0 and nc:
        grow = f.sum(axis=1) * 100.0 > cfg.growfreq * nc          # (time, corr)
        f |= grow[:, None]
    return f


def _near(f, cfg):
    """Steps 4-6 (growaround, flagneartime, flagnearfreq) on contiguous integrations."""
    f = f.copy()
    if cfg.growaround:
        for k in range(f.shape[2]):
            f[:, :, k] |= _neighbours(f[:, :, k]) > 4
    nt, nc, _ = f.shape
    if cfg.flagneartime and nt > 1:
        g = f.copy()
        g[1:] |= f[:-1]
        g[:-1] |= f[1:]
        f = g
    if cfg.flagnearfreq and nc > 1:
        g = f.copy()
        g[:, 1:] |= f[:, :-1]
        g[:, :-1] |= f[:, 1:]
        f = g
    return f


def flag_piece(piece, cfg, state):
    out = piece.flag.copy()
    groups, times = piece.baseline_groups()
    for rows, tidx in groups:
        g = _grow(piece.flag[rows], cfg)            # growtime counts the baseline's whole scan
        # split the baseline's integrations at gaps (a missing integration breaks adjacency)
        brk = np.flatnonzero(np.diff(tidx) != 1) + 1
        for seg in np.split(np.arange(len(rows)), brk):
            out[rows[seg]] = _near(g[seg], cfg)
    return out
