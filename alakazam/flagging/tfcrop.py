"""mode='tfcrop': CASA flagdata's TFCrop (U. Rau's time-frequency crop), per baseline and correlation.

On each baseline's time-frequency plane of |V| (one correlation at a time; ``ntime`` chunks of a scan,
'scan' = the whole scan of the (DATA_DESC_ID, scan) unit; :func:`_chunks`), flagged samples (FLAG |
FLAG_ROW and the flags of earlier steps) left out of every statistic:

1. direction 'freq' (``freqfit``, ``freqcutoff``): the mean over time of each channel is a bandpass;
   a piecewise polynomial is fitted to it (:func:`_piecewise`, below); each integration's spectrum is
   divided by the fit and, up to 5 times, samples with |x - 1| > freqcutoff * rms(x - 1) are flagged
   (the rms over the integration's unflagged samples, recomputed each pass; stop when it changes by
   less than 0.1);
2. direction 'time' (``timefit``, ``timecutoff``): the same with the axes swapped (the mean over
   channels of each integration is fitted across time; each channel's time series tested);
   ``flagdimension`` = freqtime (default: 1 then 2), timefreq (2 then 1), freq (1) or time (2);
3. ``usewindowstats`` ('none', 'sum', 'std', 'both'; ``halfwin`` 1-3): after step 1/2's passes, a sample
   whose (2 halfwin + 1)-point window of |x - 1| has a mean ('sum') or rms ('std') above cutoff * rms
   is flagged too (the window runs over the integration's values, flagged ones counting as x = 0);
4. ``extendflags`` (default True): flagdata then extends the chunk's flags with growfreq=80 %,
   growtime=50 % and extendpols (its documentation; order and '>=' as its extension agent:
   :func:`extend_chunk`).

The piecewise fit (``maxnpieces`` 1-9 for 'poly'; 'line' = one straight line): 5 passes; pass j fits
min(2j + 1, maxnpieces) pieces (neighbouring pieces share their end point) of degree 1, 1, 2, 3, 3
(least squares over the unflagged points, x = index + 1; a piece with no more unflagged points than
its degree gets a line), smooths the fit with a running 5-point mean, and flags the points more than
3 (passes 0-1) or 2 (passes 2-4) times the rms of data - fit ABOVE the fit (RFI only adds power).  A
mean of 0 (no unflagged sample) is filled from its neighbours first.  Arithmetic is float32 as
CASA's (its visibilities are Float), and |V| is rounded as CASA's (:func:`amplitude`): a piece left
with one unflagged point (pre-flags and clipping can do that) has a line fit whose denominator is
rounding noise, so 1 ulp of |V| can decide between no flag and a whole flagged channel.  Measured
against CASA 6.7's flagdata on the same MSs: tests/test_tfcrop.py and the README's akflag section.

The value examined is the correlation's CASA expression (mapper.py): |V| by default, the real part for
'REAL_XY', ... (as flagdata's TFCrop, measured).
Correlation selection: every selected correlation is flagged on its own (its |V|, its incoming flags;
nothing spreads between correlations before the extension, and the unselected correlations' flags are
neither read nor, without the extension, changed): ``correlation='XX,YY'`` gives the XX and YY flags of
``correlation=''``.  flagdata does this for '' and 'ABS_ALL' only (one TFCrop agent per correlation); a
list ('XX,YY', 'ABS_XX,YY', 'YY,XX') is one agent whose TFCrop reads, fits and flags only the first
product in CASA's order, not the user's (:func:`casa_tfcrop_correlation`; CASA 6.7 read and measured:
its flags are akflag's with ``correlation`` = that one correlation, with and without extendflags).
That is not copied: the other correlations the user selected would be silently left unexamined.
"""

from __future__ import annotations

import re

import numpy as np

from .._numba import njit
from . import mapper

NEEDS_DATA = True
#: flagdata's extension after tfcrop/rflag (extendflags=True; flagdata's documentation)
EXTEND_GROWTIME = 50.0
EXTEND_GROWFREQ = 80.0
DIMENSIONS = ("freqtime", "timefreq", "freq", "time")
WINDOW_STATS = ("none", "sum", "std", "both")


def ntime_seconds(ntime) -> float:
    """flagdata's ntime -> seconds (0.0 = 'scan'): a number of seconds (> 0), or a string 'scan',
    '60', '60s', '2min', '0.5h'.  ValueError with what was expected otherwise."""
    if isinstance(ntime, bool):
        raise ValueError(f"{ntime!r} must be 'scan' or a time in seconds (> 0), e.g. 60, '60s', '2min'")
    if isinstance(ntime, (int, float)):
        v = float(ntime)
    else:
        s = str(ntime).strip().lower()
        if s == "scan":
            return 0.0
        m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*(s|sec|min|m|h)?", s)
        if not m:
            raise ValueError(f"{ntime!r} must be 'scan' or a time in seconds (> 0), e.g. 60, '60s', '2min'")
        unit = {None: 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}[m.group(2)]
        v = float(m.group(1)) * unit
    if not (v > 0 and np.isfinite(v)):
        raise ValueError(f"{ntime!r} must be > 0 seconds (as flagdata: 'ntime cannot be <= 0') or 'scan'")
    return v


# ------------------------------------------------------------------------------------------------
# kernels (float32 as CASA's Float)
# ------------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _amp_kernel(d, out):
    for i in range(out.size):
        x = np.float64(d[i].real)
        y = np.float64(d[i].imag)
        if np.isinf(x) or np.isinf(y):
            out[i] = np.inf
        else:
            out[i] = np.float32(np.sqrt(x * x + y * y))


def amplitude(data):
    """|V| of complex64 ``data`` as float32, rounded as CASA's: its VisMapper takes std::abs of the
    Complex, i.e. glibc's cabsf/hypotf, which is sqrt(re^2 + im^2) in double rounded to float (the
    squares of floats are exact in double).  numpy's complex64 ``np.abs`` is 1 ulp off in ~20 % of
    samples (measured: 39936 of 200000 random values; this rule: 0), and TFCrop's degenerate fits
    can turn 1 ulp of a mean into a whole flagged channel (tests/test_tfcrop.py)."""
    d = np.ascontiguousarray(data, dtype=np.complex64)
    out = np.empty(d.shape, np.float32)
    _amp_kernel(d.reshape(-1), out.reshape(-1))
    return out


@njit(cache=True, error_model="numpy")
def _mean_std(data, flag):
    """CASA's calcMean (no sample: /1) and calcStd about it (no sample: NaN) over the whole vector."""
    s = np.float32(0.0)
    c = 0
    for i in range(data.size):
        if not flag[i]:
            s += data[i]
            c += 1
    mn = s / np.float32(max(c, 1))
    v = np.float32(0.0)
    for i in range(data.size):
        if not flag[i]:
            v += (data[i] - mn) * (data[i] - mn)
    return mn, np.sqrt(v / np.float32(c))


@njit(cache=True, error_model="numpy")
def _line_fit(data, flag, fit, lo, hi):
    """Weighted (1/sd^2 of the whole vector) straight line over [lo, hi] at x = index."""
    _, sd = _mean_std(data, flag)
    s2 = sd * sd
    S = Sx = Sy = Sxx = Sxy = np.float32(0.0)
    for i in range(lo, hi + 1):                 # (CASA's order of float32 operations)
        if not flag[i]:
            x = np.float32(i)
            S += np.float32(1.0) / s2
            Sx += x / s2
            Sy += data[i] / s2
            Sxx += np.float32(i * i) / s2
            Sxy += (x * data[i]) / s2
    den = S * Sxx - Sx * Sx
    a = (Sxx * Sy - Sx * Sxy) / den
    b = (S * Sxy - Sx * Sy) / den
    for i in range(lo, hi + 1):
        fit[i] = a + b * np.float32(i)


@njit(cache=True, error_model="numpy")
def _poly_fit(data, flag, fit, lo, hi, deg):
    """Least-squares polynomial of ``deg`` over the unflagged points of [lo, hi] (x = index + 1, float64
    normal equations); a line (:func:`_line_fit`) when there are no more points than ``deg``."""
    cnt = 0
    for i in range(lo, hi + 1):
        if not flag[i]:
            cnt += 1
    if cnt <= deg:
        _line_fit(data, flag, fit, lo, hi)
        return
    m = deg + 1
    A = np.zeros((m, m))
    r = np.zeros(m)
    for i in range(lo, hi + 1):
        if flag[i]:
            continue
        x = float(i + 1)
        p = np.empty(m)
        p[0] = 1.0
        for k in range(1, m):
            p[k] = p[k - 1] * x
        for a in range(m):
            r[a] += p[a] * float(data[i])
            for b in range(m):
                A[a, b] += p[a] * p[b]
    # Gaussian elimination with partial pivoting (m <= 4)
    for c in range(m):
        piv = c
        for k in range(c + 1, m):
            if abs(A[k, c]) > abs(A[piv, c]):
                piv = k
        if piv != c:
            for b in range(m):
                A[c, b], A[piv, b] = A[piv, b], A[c, b]
            r[c], r[piv] = r[piv], r[c]
        for k in range(c + 1, m):
            f = A[k, c] / A[c, c]
            for b in range(c, m):
                A[k, b] -= f * A[c, b]
            r[k] -= f * r[c]
    sol = np.zeros(m)
    for c in range(m - 1, -1, -1):
        s = r[c]
        for b in range(c + 1, m):
            s -= A[c, b] * sol[b]
        sol[c] = s / A[c, c]
    for i in range(lo, hi + 1):
        x = float(i + 1)
        v = np.float32(0.0)
        for k in range(m):                      # accumulated in float32, as CASA's Float fit
            v = np.float32(float(v) + sol[k] * x ** k)
        fit[i] = v


@njit(cache=True, error_model="numpy")
def _piecewise(data, flag, maxnpieces, maxdeg):
    """The bandpass / time-series model of a mean vector (module docstring); ``flag`` is updated."""
    n = data.size
    t = data.copy()
    for i in range(n):                      # fill empty (0) means from their neighbours
        if t[i] != 0:
            continue
        if i == 0:
            ind = 0
            for j in range(1, n):
                if t[j] != 0:
                    ind = j
                    break
            t[i] = t[ind] if ind > 0 else np.float32(0.0)
        else:
            indr = 0
            for j in range(i + 1, n):
                if t[j] != 0:
                    indr = j
                    break
            indl = -1
            for j in range(i, -1, -1):
                if t[j] != 0:
                    indl = j
                    break
            if indl > -1 and indr == 0:
                t[i] = t[indl]
            elif indl == -1 and indr > 0:
                t[i] = t[indr]
            elif indl > -1 and indr > 0:
                t[i] = (t[indl] + t[indr]) / np.float32(2.0)
    for i in range(n):
        if t[i] == 0:
            flag[i] = True
    fit = t.copy()
    deg = 1
    for j in range(5):
        npieces = min(2 * j + 1, maxnpieces)
        if j > 1:
            deg = 2
        if j > 2:
            deg = 3
        deg = min(deg, maxdeg)
        psize = n // npieces
        front = (n % npieces) // 2
        left, right = 0, n - 1
        for p in range(npieces):
            if npieces > 1:
                left = front + p * psize
                right = left + psize
                if p == 0:
                    left = 0
                    right = front + psize
                if p == npieces - 1:
                    right = n - 1
            if deg == 1:
                _line_fit(t, flag, fit, left, right)
            else:
                _poly_fit(t, flag, fit, left, right, deg)
        for i in range(2, n - 2):           # running (in-place) 5-point mean
            s = np.float32(0.0)
            for k in range(i - 2, i + 3):
                s += fit[k]
            fit[i] = s / np.float32(5.0)
        ss = np.float32(0.0)
        c = 0
        for i in range(n):
            if not flag[i]:
                ss += (t[i] - fit[i]) * (t[i] - fit[i])
                c += 1
        sd = np.sqrt(ss / np.float32(max(c, 1)))
        tol = np.float32(2.0) if j >= 2 else np.float32(3.0)
        for i in range(n):
            if t[i] - fit[i] > tol * sd:
                flag[i] = True
    return fit


@njit(cache=True, error_model="numpy")
def _fit_and_flag(V, F, poly, maxnpieces, tol, winstats, halfwin):
    """One direction on V (n1, n0) float32 / F (n1, n0) bool (in place): the mean over axis 0 is
    modelled along axis 1 and each row is tested against it (module docstring, steps 1-3)."""
    n1, n0 = V.shape
    avg = np.zeros(n0, np.float32)
    aflag = np.zeros(n0, np.bool_)
    anyvalid = False
    for i0 in range(n0):
        s = np.float32(0.0)
        c = 0
        for i1 in range(n1):
            if not F[i1, i0]:
                s += V[i1, i0]
                c += 1
        if c > 0:
            avg[i0] = s / np.float32(c)
            anyvalid = True
        else:
            aflag[i0] = True
    if not anyvalid:
        return
    npieces, maxdeg = (maxnpieces, 4) if poly else (1, 1)     # one call site: one compile of _piecewise
    fit = _piecewise(avg, aflag, npieces, maxdeg)
    tol = np.float32(tol)
    d = np.zeros(n0, np.float32)
    fl = np.zeros(n0, np.bool_)
    for i1 in range(n1):
        for i0 in range(n0):
            fl[i0] = F[i1, i0]
            d[i0] = np.float32(0.0) if fl[i0] else V[i1, i0] / fit[i0]
        prev = np.float32(0.0)
        sd = np.float32(0.0)
        for _ in range(5):
            ss = np.float32(0.0)
            c = 0
            for i0 in range(n0):
                if not fl[i0]:
                    ss += (d[i0] - np.float32(1.0)) * (d[i0] - np.float32(1.0))
                    c += 1
            sd = np.sqrt(ss / np.float32(c))
            for i0 in range(n0):
                if not fl[i0] and abs(d[i0] - np.float32(1.0)) > tol * sd:
                    fl[i0] = True
            if abs(prev - sd) < 0.1:
                break
            prev = sd
        if winstats > 0:
            w = 2 * halfwin + 1
            for i0 in range(halfwin, n0 - halfwin):
                if winstats == 1 or winstats == 3:
                    s = np.float32(0.0)
                    for k in range(i0 - halfwin, i0 + halfwin + 1):
                        s += abs(d[k] - np.float32(1.0))
                    if s / np.float32(w) > tol * sd:
                        fl[i0] = True
                if winstats == 2 or winstats == 3:
                    s = np.float32(0.0)
                    for k in range(i0 - halfwin, i0 + halfwin + 1):
                        s += (d[k] - np.float32(1.0)) * (d[k] - np.float32(1.0))
                    if np.sqrt(s / np.float32(w)) > tol * sd:
                        fl[i0] = True
        for i0 in range(n0):
            if fl[i0]:
                F[i1, i0] = True


@njit(cache=True, error_model="numpy")
def _plane(amp, flag, dims, timepoly, freqpoly, maxnpieces, timecut, freqcut, winstats, halfwin):
    """TFCrop on one baseline's (time, chan, corr) ``amp`` / ``flag`` (in place), each correlation
    alone; ``dims`` indexes :data:`DIMENSIONS`."""
    # every call of _fit_and_flag on C-contiguous arrays: one compiled specialisation (the transposed
    # views were a second one, with _piecewise and the fits inlined again: seconds of cold compile)
    for k in range(amp.shape[2]):
        A = np.ascontiguousarray(amp[:, :, k])
        Fk = flag[:, :, k].copy()
        if dims == 0 or dims == 2:                      # freq first (freqtime) or alone
            _fit_and_flag(A, Fk, freqpoly, maxnpieces, freqcut, winstats, halfwin)
        if dims != 2:                                   # time (freqtime, timefreq, time)
            Ft = np.ascontiguousarray(Fk.T)
            _fit_and_flag(np.ascontiguousarray(A.T), Ft, timepoly, maxnpieces, timecut, winstats, halfwin)
            Fk[:, :] = Ft.T
        if dims == 1:                                   # timefreq: freq second
            _fit_and_flag(A, Fk, freqpoly, maxnpieces, freqcut, winstats, halfwin)
        flag[:, :, k] = Fk


#: the order in which CASA's VisMapper collects the products of a correlation expression (a substring
#: test per product, CASA 6.7 FlagDataHandler.cc); TFCrop's (channel, row) accessors use the first only
_CASA_PRODUCT_ORDER = ("XX", "YY", "XY", "YX", "RR", "LL", "LR", "RL")


def casa_tfcrop_correlation(text, corr_types):
    """The one correlation CASA 6.7 flagdata's TFCrop examines and flags for ``correlation=text`` on data
    of ``corr_types``, or None when it examines each correlation on its own ('' or an expression with
    ALL: flagdata's AgentFlagger then makes one TFCrop agent per correlation, 'ABS_XX', 'ABS_XY', ...).
    Any other text ('XX,YY', 'ABS_XX,YY') is one agent with the expression 'ABS XX,YY', and its TFCrop
    reads |V|, the incoming flags and writes new flags through the mappers' (channel, row) accessors,
    which use the expression's first product only: the first of XX, YY, XY, YX, RR, LL, LR, RL that the
    text contains and the data have ('YY,XX' -> 'XX', 'XY,YY' -> 'YY').  akflag flags every selected
    correlation (module docstring); :func:`start` says so when the two differ."""
    t = "" if text is None else str(text).upper()
    if t.strip() in ("", "*") or "ALL" in t:
        return None
    have = {str(c).upper() for c in corr_types}
    return next((p for p in _CASA_PRODUCT_ORDER if p in t and p in have), None)


def start(cfg, sel):
    """Logs (info, once, before anything is saved) when a correlation list makes akflag's flags differ
    from flagdata's: CASA's TFCrop would examine and flag one of the selected correlations only
    (:func:`casa_tfcrop_correlation`), akflag flags each."""
    import logging

    for ddid, (_, corrs) in sel.ddids.items():
        first = casa_tfcrop_correlation(cfg.correlation, sel.meta.spws[ddid].corr_types)
        if first is not None and len(corrs) > 1:
            names = ", ".join(sel.meta.spws[ddid].corr_types[c] for c in corrs)
            logging.getLogger("alakazam.flag").info(
                "akflag tfcrop: correlation=%r -- each selected correlation (%s) is flagged on its own; CASA "
                "flagdata's TFCrop would examine and flag %s only (it uses the first product of a "
                "correlation list; correlation=%r gives its flags)", cfg.correlation, names, first, first)
            break
    return None


class FullPlane:
    """flagdata's extension after tfcrop / rflag covers every correlation and channel of the selected
    rows, not only the selected ones (measured, CASA 6.7: rflag with correlation='XX,YY' or
    spw='0:4~27' gives the flags of rflag with extendflags=False, then mode='extend' on the whole
    plane).  With a partial selection (``piece.full``: the rows' incoming flags of every channel and
    correlation, the selected channel and correlation indices), :meth:`put` extends a chunk's flags on
    the whole plane, and :attr:`out` is the piece's new full-plane FLAG."""

    def __init__(self, piece):
        full, chans, corrs = piece.full
        self.out = full.copy()
        self.idx = (chans, corrs)

    def put(self, r, f):
        plane = self.out[r]
        plane[np.ix_(np.arange(len(r)), *self.idx)] = f
        self.out[r] = extend_chunk(plane)


def extend_chunk(f, growtime=EXTEND_GROWTIME, growfreq=EXTEND_GROWFREQ):
    """flagdata's extension after tfcrop (extendflags=True) on one baseline's chunk ``f`` (time, chan,
    corr) bool: growtime / growfreq (">= %", per correlation, from the same flags), then extendpols --
    akflag mode='extend''s code (:mod:`alakazam.flagging.extend`, CASA's extension agent)."""
    from .extend import Rules, extend_plane

    return extend_plane(f, Rules(extendpols=True, growtime=growtime, growfreq=growfreq))


def _chunks(t, seconds):
    """Chunk index of each sorted unique time ``t`` of a unit: 0 for ntime='scan' (``seconds`` 0), else
    a new chunk starts at the first integration >= ``seconds`` after the current chunk's first (CASA
    6.7 flagdata measured: ntime 100, 200, 300, 420 s on 30 s integrations give identical flags; bins
    of ntime from the scan start do not at 100 and 200 s)."""
    out = np.zeros(len(t), np.int64)
    if seconds <= 0 or not len(t):
        return out
    start, k = t[0], 0
    for i, x in enumerate(t):
        if x - start >= seconds:
            k += 1
            start = x
        out[i] = k
    return out


def flag_piece(piece, cfg, state):
    """New flags of a piece (whole baselines of one (DATA_DESC_ID, scan) unit): TFCrop per baseline,
    ``ntime`` chunk and correlation (:func:`_plane`), then the extension per chunk."""
    seconds = ntime_seconds(cfg.ntime)
    dims = DIMENSIONS.index(cfg.flagdimension)
    win = WINDOW_STATS.index(cfg.usewindowstats)
    # the value CASA's TFCrop examines: the correlation's expression (|V| unless REAL_, IMAG_, ARG_, NORM_;
    # mapper.py), float32 as CASA's mappers
    amp = np.asarray(mapper.values(piece.data, mapper.expression(getattr(cfg, "correlation", ""))),
                     np.float32)
    out = piece.flag.copy()
    full = FullPlane(piece) if cfg.extendflags and getattr(piece, "full", None) is not None else None
    groups, times = piece.baseline_groups()
    chunk_of_time = _chunks(times, seconds)
    for rows, tidx in groups:
        ch = chunk_of_time[tidx]
        for c in np.unique(ch):
            r = rows[ch == c]
            a = np.ascontiguousarray(amp[r])
            f = np.ascontiguousarray(out[r])
            _plane(a, f, dims, cfg.timefit == "poly", cfg.freqfit == "poly", int(cfg.maxnpieces),
                   float(cfg.timecutoff), float(cfg.freqcutoff), win, int(cfg.halfwin))
            if full is not None:
                full.put(r, f)
            elif cfg.extendflags:
                f = extend_chunk(f)
            out[r] = f
    return out if full is None else full.out
