"""mode='extend' (flagdata's flag extension), per baseline over the time-frequency plane of each
(DATA_DESC_ID, scan) unit, in CASA 6.7 flagdata's order (measured against it on random mixed-correlation
flags, every parameter alone, in pairs and all together: identical flags; tests/test_extend_casa.py):

1. the neighbour rules, each from the flags as they came in (not from one another's result), per
   correlation:
   ``growaround`` (default False): a sample with more than 4 of its (up to 8) time-frequency neighbours
   flagged is flagged; ``flagneartime`` (default False): the integrations just before and after a
   flagged one are flagged; ``flagnearfreq`` (default False): the channels either side of a flagged
   channel are flagged;
2. the growth rules, each from the flags after step 1, per correlation:
   ``growtime`` (percent, default 50; 0 = off): per channel, if growtime % or MORE of the baseline's
   integrations are flagged, all of them are; ``growfreq`` (percent, default 50; 0 = off): per
   integration, if growfreq % or more of the selected channels are flagged, all of them are
   (flagdata's help says "more than"; it flags at exactly the percentage too, measured);
3. ``extendpols`` (default True): a (time, channel) flagged in any selected correlation is flagged in all.

Before this order was measured, extendpols ran first and the neighbour rules after the growth rules,
each on the previous result: on random flags in XX and YY (30% each) growtime = growfreq = 50 flagged
90% of the samples where flagdata flags 63%.

Neighbours in time are the baseline's integrations of the unit in time order: where the baseline misses
an integration, the ones either side of it are neighbours (flagdata measured: flagneartime flags the
integration after the gap; before, a gap broke adjacency).  Step 2 sees the baseline's whole scan.
Existing flags are kept (extend only adds).
"""

import numpy as np


class Rules:
    """The extension's parameters (akflag's; :func:`rules` for tfcrop's extendflags)."""

    def __init__(self, extendpols=True, growtime=0.0, growfreq=0.0, growaround=False, flagneartime=False,
                 flagnearfreq=False):
        self.extendpols, self.growtime, self.growfreq = extendpols, growtime, growfreq
        self.growaround, self.flagneartime, self.flagnearfreq = growaround, flagneartime, flagnearfreq


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
    return _pols(_grow(_near(f, cfg), cfg), cfg)


def _near(f, cfg):
    """Step 1 (growaround, flagneartime, flagnearfreq), each from ``f``, on contiguous integrations."""
    g = f.copy()
    nt, nc, _ = f.shape
    if cfg.growaround:
        for k in range(f.shape[2]):
            g[:, :, k] |= _neighbours(f[:, :, k]) > 4
    if cfg.flagneartime and nt > 1:
        g[1:] |= f[:-1]
        g[:-1] |= f[1:]
    if cfg.flagnearfreq and nc > 1:
        g[:, 1:] |= f[:, :-1]
        g[:, :-1] |= f[:, 1:]
    return g


def _grow(f, cfg):
    """Step 2 (growtime, growfreq), each from ``f``, on a baseline's whole plane (gaps do not matter)."""
    g = f.copy()
    nt, nc, _ = f.shape
    if cfg.growtime > 0 and nt:
        g |= (100.0 * f.sum(axis=0) / nt >= cfg.growtime)[None]          # (chan, corr)
    if cfg.growfreq > 0 and nc:
        g |= (100.0 * f.sum(axis=1) / nc >= cfg.growfreq)[:, None]       # (time, corr)
    return g


def _pols(f, cfg):
    """Step 3 (extendpols)."""
    return f | f.any(axis=2, keepdims=True) if cfg.extendpols else f


def flag_piece(piece, cfg, state):
    out = piece.flag.copy()
    groups, _ = piece.baseline_groups()
    for rows, _ in groups:
        # the baseline's integrations in time order, adjacent in that order (as flagdata: a missing
        # integration does not break adjacency); growtime counts the baseline's whole scan
        out[rows] = extend_plane(piece.flag[rows], cfg)
    return out
