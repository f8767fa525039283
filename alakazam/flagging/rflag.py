"""mode='rflag': CASA flagdata's RFlag (its FlagAgentRFlag, after AIPS RFLAG), per baseline and correlation.

The data are cut into chunks as flagdata's iteration cuts them: per (DATA_DESC_ID, scan, FIELD_ID) and,
with a numeric ``ntime``, chunks starting at the first integration >= ``ntime`` seconds after the
current chunk's first (:func:`alakazam.flagging.tfcrop._chunks`, measured for tfcrop).  On each
baseline's (time, channel, correlation) block of the complex visibilities (its integrations in time
order, the baseline's missing ones skipped), with the incoming flags (FLAG | FLAG_ROW and the flags of
earlier steps) left out of every statistic:

1. time analysis: for each integration t with a full window (``winsize`` integrations, or all of the
   chunk's when it has fewer; t from (w-1)/2 to n-1-(w-1)/2), per channel and correlation, the local rms
   ``sqrt(var(Re) + var(Im))`` over the window's unflagged samples (variance = mean of squares - square
   of mean, in float64, < 0 -> 0); above ``timedevscale * timedev`` -> every sample of the window is
   flagged;
2. spectral analysis: for every integration and correlation, the medians of Re and of Im over the
   unflagged channels; a channel is flagged when |Re - median(Re)| or |Im - median(Im)| is above
   ``freqdevscale * freqdev``.  The whole spectrum is flagged when its "spread" is above
   ``spectralmax`` or below ``spectralmin``: the spread is CASA's ``1.4826 * median(x - median(x))``,
   which is 0 (its median() sorts its argument in place, so the deviations are never made absolute):
   with ``spectralmin`` > 0 every integration with an unflagged channel is flagged, and ``spectralmax``
   flags nothing (>= 0); an integration with no unflagged channel has spread 1000 (CASA's start value);
3. ``timedev`` / ``freqdev`` not given ([]): computed from the chunk (all its baselines and
   correlations) in a first pass, as CASA's: per channel the mean of the step-1 rms values (time) or of
   the |Re - median| and |Im - median| deviations (spectral) of the unflagged samples; the threshold is
   median + 1.4826 * MAD of those per-channel means (a channel without samples counts as 0), then
   scaled by ``timedevscale`` / ``freqdevscale``.  A number applies to every field and spw; a matrix
   [[field, spw, dev], ...] to its FIELD_ID / SPECTRAL_WINDOW pairs (others: computed).  A threshold of
   0 turns its analysis off;
4. ``extendflags`` (default True): flagdata's extension after rflag (growtime 50 %, growfreq 80 %,
   extendpols; :func:`alakazam.flagging.tfcrop.extend_chunk`) per baseline and chunk.

Read in CASA's code/flagging/Flagging/FlagAgentRFlag.cc and FlagAgentBase.cc (runCore: the first
pass, passIntermediate, the flagging pass and passFinal per visibility buffer, i.e. per chunk), then
measured: auto-correlation rows are baselines like the others (in the thresholds too); a NaN makes
CASA's std::sort order-dependent and upsets its chunk's thresholds, and CASA leaves it unflagged: akflag
flags NaN / Inf samples and leaves them out of the statistics before this mode runs, as flagdata's clip
first (flagging/engine.py FLAGS_NONFINITE; the kernels still sort a NaN last).
Arithmetic follows CASA's (float32 visibilities, float64 sums; the squares float32 products).  When a
(DATA_DESC_ID, scan) unit does not fit in memory at once, the engine first reads all of its pieces
to accumulate the automatic thresholds (:func:`prepare_unit`), so the flags do not depend on the
memory limit.  Measured against CASA 6.7's flagdata on the same MSs: tests/test_rflag.py and the
README's akflag section.
"""

from __future__ import annotations

import numpy as np

from .._numba import njit
from ..core.rfi import MAD_TO_SIGMA
from .tfcrop import FullPlane, _chunks, extend_chunk, ntime_seconds

NEEDS_DATA = True
#: CASA's normal-consistency factor of the MAD (the solve-time statistics' constant)
MAD_SCALE = MAD_TO_SIGMA
#: CASA's spread of a spectrum with no unflagged channel (simpleMedian's start value)
EMPTY_SPREAD = 1000.0


# ------------------------------------------------------------------------------------------------
# kernels (one baseline's chunk: vis (time, chan, corr) complex64, flag (time, chan, corr) bool)
# ------------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _half_window(nt, winsize):
    eff = winsize if nt > winsize else nt
    return (eff - 1) // 2


@njit(cache=True, error_model="numpy")
def _window_rms(vis, flag, t0, t1, c, k):
    """(rms, n) of the unflagged samples of integrations t0..t1 of channel c, correlation k."""
    sw = 0.0
    sr = 0.0
    srr = 0.0
    si = 0.0
    sii = 0.0
    for t in range(t0, t1 + 1):
        if flag[t, c, k]:
            continue
        re = vis[t, c, k].real
        im = vis[t, c, k].imag
        sw += 1.0
        sr += re
        srr += re * re                  # (a float32 product, as CASA's Float * Float)
        si += im
        sii += im * im
    if sw == 0.0:
        return 0.0, 0
    ar = sr / sw
    vr = srr / sw - ar * ar
    ai = si / sw
    vi = sii / sw - ai * ai
    vr = vr if vr > 0 else 0.0
    vi = vi if vi > 0 else 0.0
    return np.sqrt(vr + vi), 1


@njit(cache=True, error_model="numpy")
def _lt(a, b):
    """a < b with NaN above every number (np.sort's order)."""
    return a < b or (b != b and a == a)


@njit(cache=True, error_model="numpy")
def _kth(a, k):
    """The k-th smallest of ``a`` (float64, NaN last, reordered in place: a[:k] <= a[k] <= a[k+1:]
    after); Wirth's selection, a few lines for numba to compile where np.partition takes seconds."""
    lo, hi = 0, a.size - 1
    while lo < hi:
        x = a[k]
        i, j = lo, hi
        while True:
            while _lt(a[i], x):
                i += 1
            while _lt(x, a[j]):
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
            if i > j:
                break
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


@njit(cache=True, error_model="numpy")
def _middle(a):
    """(lower, upper) middle order statistics of ``a`` (equal for an odd size; ``a`` reordered)."""
    k = a.size // 2
    hi = _kth(a, k)
    if a.size % 2 == 1:
        return hi, hi
    lo = a[0]
    for j in range(1, k):
        if _lt(lo, a[j]):
            lo = a[j]
    return lo, hi


@njit(cache=True, error_model="numpy")
def _median(a):
    """CASA's median (0 for no value; the mean of the two middle values for an even size)."""
    if a.size == 0:
        return 0.0
    lo, hi = _middle(a)
    return hi if a.size % 2 == 1 else 0.5 * (hi + lo)


@njit(cache=True, error_model="numpy")
def _median_spread(x):
    """(CASA's median of x, its 'spread' 1.4826 * median(sorted(x) - median)) from the middle order
    statistics only (the same values as a sort; ``x`` reordered)."""
    lo, hi = _middle(x)
    if x.size % 2 == 1:
        return hi, MAD_SCALE * (hi - hi)
    m = 0.5 * (hi + lo)
    return m, MAD_SCALE * (0.5 * ((hi - m) + (lo - m)))


@njit(cache=True, error_model="numpy")
def _centres(vis, flag, centre):
    """CASA's simpleMedian of each integration and correlation of one baseline chunk, from the
    unflagged channels: ``centre`` (time, corr, 5) = median Re, median Im, spread Re, spread Im, number
    of unflagged channels (none: 0, 0, 1000, 1000, 0)."""
    nt, nc, npol = vis.shape
    bre = np.empty(nc)
    bim = np.empty(nc)
    for t in range(nt):
        for k in range(npol):
            n = 0
            for c in range(nc):
                if flag[t, c, k]:
                    continue
                bre[n] = vis[t, c, k].real
                bim[n] = vis[t, c, k].imag
                n += 1
            if n == 0:
                centre[t, k, 0] = 0.0
                centre[t, k, 1] = 0.0
                centre[t, k, 2] = EMPTY_SPREAD
                centre[t, k, 3] = EMPTY_SPREAD
            else:
                centre[t, k, 0], centre[t, k, 2] = _median_spread(bre[:n])
                centre[t, k, 1], centre[t, k, 3] = _median_spread(bim[:n])
            centre[t, k, 4] = n


@njit(cache=True, error_model="numpy")
def _accumulate(vis, flag, centre, winsize, do_time, do_freq, tsum, tcnt, fsum, fcnt):
    """The first pass (automatic thresholds): per channel, the sums and counts of the time analysis'
    window rms values and of the spectral deviations from the medians ``centre``, added to tsum / tcnt
    / fsum / fcnt in CASA's order (integration, then channel and correlation)."""
    nt, nc, npol = vis.shape
    d = _half_window(nt, winsize)
    for t in range(nt):
        if do_time and d <= t < nt - d:
            for c in range(nc):
                for k in range(npol):
                    rms, ok = _window_rms(vis, flag, t - d, t + d, c, k)
                    if ok:
                        tsum[c] += rms
                        tcnt[c] += 1.0
        if do_freq:
            for k in range(npol):
                if centre[t, k, 4] == 0:
                    continue
                mr = centre[t, k, 0]
                mi = centre[t, k, 1]
                for c in range(nc):
                    if flag[t, c, k]:
                        continue
                    fsum[c] += abs(vis[t, c, k].real - mr)
                    fcnt[c] += 1.0
                    fsum[c] += abs(vis[t, c, k].imag - mi)
                    fcnt[c] += 1.0


@njit(cache=True, error_model="numpy")
def _flag(vis, flag, centre, out, winsize, noise, scutoff, smax, smin):
    """The flagging pass into ``out`` (a copy of ``flag``): the time analysis' windows (noise > 0) and
    the spectral analysis' samples and spectra (scutoff > 0); statistics from ``flag`` only."""
    nt, nc, npol = vis.shape
    d = _half_window(nt, winsize)
    if noise > 0:
        for t in range(d, nt - d):
            for c in range(nc):
                for k in range(npol):
                    rms, ok = _window_rms(vis, flag, t - d, t + d, c, k)
                    if ok and rms > noise:
                        for tt in range(t - d, t + d + 1):
                            out[tt, c, k] = True
    if scutoff > 0:
        for t in range(nt):
            for k in range(npol):
                mr = centre[t, k, 0]
                mi = centre[t, k, 1]
                sr = centre[t, k, 2]
                si = centre[t, k, 3]
                if sr > smax or si > smax or sr < smin or si < smin:
                    for c in range(nc):
                        out[t, c, k] = True
                    continue
                for c in range(nc):
                    if abs(vis[t, c, k].real - mr) > scutoff or abs(vis[t, c, k].imag - mi) > scutoff:
                        out[t, c, k] = True


@njit(cache=True, error_model="numpy")
def _threshold(s, cnt):
    """CASA's computeThreshold: median + 1.4826 * MAD of the per-channel means (0 without samples)."""
    n = s.size
    m = np.zeros(n)
    for c in range(n):
        if cnt[c] > 0:
            m[c] = s[c] / cnt[c]
    med = _median(m.copy())
    dev = np.empty(n)
    for c in range(n):
        dev[c] = abs(m[c] - med)
    return med + MAD_SCALE * _median(dev)


# ------------------------------------------------------------------------------------------------
# thresholds and chunks
# ------------------------------------------------------------------------------------------------
def parse_dev(v, name):
    """timedev / freqdev -> (scalar, {(field, spw): dev}); [] -> (0.0, {}) = computed from the data.
    ValueError naming ``name`` and what was expected otherwise (flagdata's forms: a number, or rows
    [field, spw, dev], also written as a string; a file name is not supported)."""
    form = (f"must be [] (computed from the data), a number > 0, or rows [field, spw, dev] (dev > 0), e.g. "
            f"[[0, 0, 0.5]]; got {v!r}")
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0) or v == "":
        return 0.0, {}
    if isinstance(v, str):                      # (the command line gives strings: '0.5', '[[0, 0, 0.5]]')
        import ast

        try:
            lit = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            lit = None
        if not isinstance(lit, (int, float, list, tuple)) or isinstance(lit, bool):
            raise ValueError(f"{v!r}: a file of thresholds (flagdata's timedev/freqdev file) is not "
                             f"supported by akflag; {name} {form.split('; got')[0]}")
        return parse_dev(lit, name)
    if isinstance(v, bool):
        raise ValueError(form)
    if isinstance(v, (int, float, np.integer, np.floating)):
        x = float(v)
        if not (x > 0 and np.isfinite(x)):
            raise ValueError(form)
        return x, {}
    rows = list(v)
    if rows and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in rows) and len(rows) == 3:
        rows = [rows]                           # one row given flat: [field, spw, dev]
    out = {}
    for r in rows:
        if not isinstance(r, (list, tuple)) or len(r) != 3 or any(
                isinstance(x, bool) or not isinstance(x, (int, float)) for x in r):
            raise ValueError(form)
        f, s, dev = r
        if f != int(f) or s != int(s) or f < 0 or s < 0 or not (dev > 0 and np.isfinite(dev)):
            raise ValueError(form)
        out[(int(f), int(s))] = float(dev)
    return 0.0, out


def _user(scalar, table, field, spw):
    """The user's threshold of (field, spw), 0.0 = none (computed)."""
    return table.get((int(field), int(spw)), scalar)


def _chunk_blocks(piece, seconds, times_by_field=None):
    """{(field, chunk): [row indices of one baseline in time order, ...]} of a piece; the chunks of a
    field start at its first integration of the unit (``times_by_field``: {field: the unit's sorted
    unique times}; None: the piece's own, which are the unit's when the piece is the whole unit)."""
    out = {}
    for f in np.unique(piece.field_id):
        rows_f = np.flatnonzero(piece.field_id == f)
        if times_by_field is not None:
            times = times_by_field[int(f)]
        else:
            times = np.unique(piece.time[rows_f])
        chunk_of_time = _chunks(times, seconds)
        tidx = np.searchsorted(times, piece.time[rows_f])
        code = piece.ant1[rows_f].astype(np.int64) * 100000 + piece.ant2[rows_f]
        order = np.lexsort((piece.time[rows_f], code))
        _, start, counts = np.unique(code[order], return_index=True, return_counts=True)
        for s, n in zip(start, counts):
            r = rows_f[order[s:s + n]]
            ch = chunk_of_time[tidx[order[s:s + n]]]
            for c in np.unique(ch):
                out.setdefault((int(f), int(c)), []).append(r[ch == c])
    return out


class Params:
    """rflag's parameters of a FlagConfig, parsed once."""

    def __init__(self, cfg):
        self.seconds = ntime_seconds(cfg.ntime)
        self.time_scalar, self.time_table = parse_dev(cfg.timedev, "timedev")
        self.freq_scalar, self.freq_table = parse_dev(cfg.freqdev, "freqdev")
        self.winsize = int(cfg.winsize)
        self.timescale = float(cfg.timedevscale)
        self.freqscale = float(cfg.freqdevscale)
        self.smax = float(cfg.spectralmax)
        self.smin = float(cfg.spectralmin)
        self.extend = bool(cfg.extendflags)


def start(cfg, sel):
    return {"params": Params(cfg), "unit": None}


def _accumulate_piece(piece, p, acc, times_by_field=None):
    """Adds a piece's first-pass sums to ``acc`` {(field, chunk): [tsum, tcnt, fsum, fcnt]}."""
    nc = piece.flag.shape[1]
    for key, blocks in _chunk_blocks(piece, p.seconds, times_by_field).items():
        field = key[0]
        do_time = _user(p.time_scalar, p.time_table, field, piece.spw_id) <= 0
        do_freq = _user(p.freq_scalar, p.freq_table, field, piece.spw_id) <= 0
        if not (do_time or do_freq):
            continue
        a = acc.setdefault(key, [np.zeros(nc) for _ in range(4)])
        for r in blocks:
            _accumulate(*_stats(piece, r), p.winsize, do_time, do_freq, *a)


def _stats(piece, r):
    """(vis, flag, the spectral medians :func:`_centres`) of the rows ``r`` (one baseline in time order,
    one chunk) of a piece."""
    v = np.ascontiguousarray(piece.data[r])
    f = np.ascontiguousarray(piece.flag[r])
    centre = np.empty((v.shape[0], v.shape[2], 5))
    _centres(v, f, centre)
    return v, f, centre


def _thresholds(p, acc, field, spw, key):
    """(noise, scutoff) of a chunk, scaled (0 = that analysis off)."""
    t = _user(p.time_scalar, p.time_table, field, spw)
    f = _user(p.freq_scalar, p.freq_table, field, spw)
    a = acc.get(key)
    if t <= 0:
        t = _threshold(a[0], a[1]) if a is not None else 0.0
    if f <= 0:
        f = _threshold(a[2], a[3]) if a is not None else 0.0
    return t * p.timescale, f * p.freqscale


def prepare_unit(unit, pieces, cfg, state):
    """The engine's first pass over a (DATA_DESC_ID, scan) ``unit`` read in several ``pieces``: the
    automatic thresholds' sums of all of them (in the unit's baseline order, as one piece would give)
    and the unit's times (chunk boundaries that do not depend on the pieces)."""
    p = state["params"]
    times = {int(f): np.unique(unit.time[unit.field_id == f]) for f in np.unique(unit.field_id)}
    acc = {}
    for piece in pieces:
        _accumulate_piece(piece, p, acc, times)
    state["unit"] = ((unit.ddid, unit.scan), acc, times)


def flag_piece(piece, cfg, state):
    """New flags of a piece (whole baselines of one (DATA_DESC_ID, scan) unit)."""
    if state is None:
        state = start(cfg, None)
    p = state["params"]
    unit = state.get("unit")
    if unit is not None and unit[0] == (piece.ddid, piece.scan):
        _, acc, times = unit
    else:                                       # the piece is the whole unit
        acc, times = None, None
    blocks = _chunk_blocks(piece, p.seconds, times)
    kept = {}
    if acc is None:                             # the first pass on this piece (blocks and medians kept:
        acc = {}                                # one more copy of the piece's data)
        for key, rs in blocks.items():
            do_time = _user(p.time_scalar, p.time_table, key[0], piece.spw_id) <= 0
            do_freq = _user(p.freq_scalar, p.freq_table, key[0], piece.spw_id) <= 0
            for i, r in enumerate(rs):
                kept[key, i] = st = _stats(piece, r)
                if do_time or do_freq:
                    a = acc.setdefault(key, [np.zeros(piece.flag.shape[1]) for _ in range(4)])
                    _accumulate(*st, p.winsize, do_time, do_freq, *a)
    out = piece.flag.copy()
    full = FullPlane(piece) if p.extend and getattr(piece, "full", None) is not None else None
    for key, rs in blocks.items():
        noise, scutoff = _thresholds(p, acc, key[0], piece.spw_id, key)
        for i, r in enumerate(rs):
            v, f0, centre = kept.pop((key, i), None) or _stats(piece, r)
            f = f0.copy()
            _flag(v, f0, centre, f, p.winsize, noise, scutoff, p.smax, p.smin)
            if full is not None:
                full.put(r, f)
                continue
            if p.extend:
                f = extend_chunk(f)
            out[r] = f
    return out if full is None else full.out
