"""Time interpolation and frequency mapping of solutions (field selection lives in
:mod:`alakazam.calibration.chain`).

Time modes, per antenna and frequency bin (and hand, :func:`alakazam.calibration.chain.hand_views`).
Flagged solutions are *not bridged*: the flag of a target time is that of the solution(s) the mode
uses on the full solution timeline, flagged ones included -- CASA 6.7 applycal's rule, measured
(tests/test_interp_flags.py; a solution is flagged when its flag is set or a value is not finite):

* ``exact`` / ``nearest``: the nearest solution in time (a tie takes the earlier one); the target time
  is flagged when that solution is flagged.  A flagged nearest solution is not replaced by the
  nearest valid one further away.
* ``linear``: amplitude and (unwrapped) phase of every Jones element interpolated linearly between the
  two solutions bracketing the target time (t_lo < t <= t_hi); flagged when either of them is flagged
  (at a solution's own time only that solution counts).  Outside the solution range the end solution
  is held, flagged when it is flagged.
* ``cubic``: CASA 6.7 applycal's cubic (synthesis/CalTables/CTTimeInterp1, measured: agreement to
  float32 rounding, tests/test_interp_cubic.py): between the bracketing solutions k and k+1 the cubic
  polynomial (Lagrange) through the 4 consecutive solutions k-1 .. k+2 of the full timeline, the window
  shifted to the first / last 4 in the first / last interval; amplitude and phase as ``linear``.  Flags
  as ``linear`` (the bracketing pair only): the two outer solutions of the window may be flagged and
  their stored values are used, as CASA does (a flagged solution's value in a CASA table: the solve's
  or 1 where it failed).  Where an outer one has no finite value (alakazam's tables store NaN for a
  flagged solution; a CASA table's flagged hand of a per-hand term is read as NaN) the target time is
  interpolated linearly between the bracketing pair instead.  At a solution's own time that solution;
  outside the range the end solution held.  The term needs >= 4 solution times on the field's timeline
  (CASA's applycal aborts with fewer), otherwise an error naming ``time_interp``; a series (antenna,
  frequency bin) with fewer valid ones is interpolated where its bracketing pair is valid and flagged
  elsewhere, as in CASA.

Phase unwrapping is relative to the antennas' common phase (:func:`common_phase`), so that ``linear``
and ``cubic`` do not depend on the gauge: a phase common to every antenna of one solution time (per
frequency bin and diagonal element) cancels in every baseline, and the solutions may carry any such
phase -- a cell re-referenced through another antenna (solvers/rereference.py: a bridge across 45 min
left common offsets of 0.8 rad, review 58b), a gain stored in a per-scan K's delay frame (2-3 rad at
a K switch).  Each antenna's phase taken the short way round on its own turned such an offset near
+-pi into a 2 pi turn for some antennas and not for others between two solutions: baselines
decorrelated in between (the review: a TARGET scan 12% low, silently).  Here the common phase c(t) is
unwrapped first (each step the phase of sum_a u_a(t) conj(u_a(t')) over the antennas valid at both of
two consecutive solution times, u the unit phasors), each antenna's phase relative to it is unwrapped
and interpolated, and c(t) -- interpolated over every solution time -- is added back: the values at
the solution times are the solutions', every baseline's phase between them is its own the short way
round (where the antennas' own steps relative to the common one are below pi), and where no antenna's
step is ambiguous the result is the per-antenna unwrap's (linear interpolation is linear in the phase).
The off-diagonal elements (leakage) are unwrapped on their own, as before.

So an antenna whose solutions are flagged from some time on (it died) is flagged from the last valid
solution on for ``linear`` / ``cubic`` (from half-way to the first flagged one for ``nearest``), and is
not corrected with a solution from before it died.  CASA's ``nearestflag`` / ``linearflag`` time
parts behave the same (they differ from ``nearest`` / ``linear`` in frequency only,
:mod:`alakazam.core.freqinterp`).

Frequency mapping (:func:`map_freq`): one solution bin -> broadcast; identical grids -> pass-through;
otherwise the nearest solution frequency.  Delays (K, KC) are rebuilt as Jones matrices at every target
channel by :func:`delay_to_jones`.
"""

from __future__ import annotations

import numpy as np

from ..errors import AlakazamError

TWO_PI_NS = 2.0 * np.pi * 1e-9
MODES = ("exact", "nearest", "linear", "cubic")


def _nearest_index(src, dst):
    j = np.clip(np.searchsorted(src, dst), 1, max(len(src) - 1, 1))
    lo = np.clip(j - 1, 0, len(src) - 1)
    hi = np.clip(j, 0, len(src) - 1)
    return np.where(np.abs(dst - src[lo]) <= np.abs(src[hi] - dst), lo, hi)


def _nearest_flagged(t, values, ok, tt):
    """``nearest`` for every (antenna, freq) at once: values (n_ant, n_f, n_t, ...) at the nearest
    solution to each of tt (t sorted) -> (out (n_ant, n_f, n_tt, ...), valid (n_ant, n_f, n_tt)); a
    target time whose nearest solution is not valid (ok (n_ant, n_f, n_t) False) is NaN and not valid."""
    idx, valid = nearest_solution_index(t, ok, tt)
    out = values[:, :, idx].copy()
    out[~valid] = np.nan
    return out, valid


def nearest_solution_index(t, ok, tt):
    """The choice of :func:`_nearest_flagged` without the values: (idx (n_tt,) into the sorted solution
    time axis t, the same for every antenna and freq; valid (n_ant, n_f, n_tt) = ok at idx).  A tie
    takes the earlier solution.  A flagged nearest solution gives an invalid target time: the valid
    one further away is not used (flags are not bridged; module docstring)."""
    if len(t) == 0:
        return np.zeros(len(tt), np.int64), np.zeros(ok.shape[:2] + (len(tt),), bool)
    idx = _nearest_index(np.asarray(t, float), np.asarray(tt, float))
    return idx, ok[:, :, idx]


#: seconds within which a target time is the solution's own time ("exact", as CASA's applycal, which
#: compares times as float32 offsets from the table's first time: a step of ~1e-4 s in the first
#: 10 min, ~4 ms after 10 h).  CASA's gaincal writes a
#: solint='int' solution at the mean of its rows' TIMEs, which differs from the integration's TIME by
#: microseconds; an exact float comparison then bracketed the integration with the neighbouring
#: solution and flagged it when that one was flagged (review h60a).
EXACT_TIME_TOL = 1e-3


def _bracket(t, tt):
    """``(j, exact, lo, hi)`` of sorted solution times t (n_t >= 1) at target times tt: j the first
    solution at or after tt - tol (tol: :data:`EXACT_TIME_TOL`, at most a quarter of the smallest
    spacing), exact where that one is within tol of tt, and the bracketing pair lo <= hi (lo = hi where
    exact, and at the ends)."""
    n_t = len(t)
    tol = EXACT_TIME_TOL
    if n_t > 1:
        step = float(np.diff(t).min())
        tol = min(tol, 0.25 * step) if step > 0 else tol
    j = np.searchsorted(t, tt - tol)                   # t[j-1] < tt - tol <= t[j]
    exact = (j < n_t) & (t[np.minimum(j, n_t - 1)] <= tt + tol)
    hi = np.minimum(j, n_t - 1)
    lo = np.where(exact, hi, np.maximum(j - 1, 0))
    return j, exact, lo, hi


def bracket_valid(t, ok, tt):
    """Validity of ``linear`` / ``cubic`` at target times tt: (n_ant, n_f, n_tt), True where the
    solutions bracketing tt (t sorted; t_lo < tt <= t_hi; tt within :data:`EXACT_TIME_TOL` of a
    solution time: that solution only; outside the range: the end solution) are all valid
    (ok (n_ant, n_f, n_t))."""
    t = np.asarray(t, float)
    tt = np.asarray(tt, float)
    n_t = len(t)
    if n_t == 0:
        return np.zeros(ok.shape[:2] + (len(tt),), bool)
    j, exact, lo, hi = _bracket(t, tt)
    return ok[:, :, lo] & ok[:, :, hi]


def _interp_series(t, y, ok, tt, mode, what="time_interp"):
    """Interpolate y (n_t, k) real/complex over valid samples ok (n_t,) to tt; returns (n_tt, k), valid.
    ``exact`` / ``nearest`` / ``linear`` (``cubic``: :func:`cubic_casa`)."""
    tv = t[ok]
    yv = y[ok]
    n_tt = len(tt)
    if len(tv) == 0:
        return np.full((n_tt,) + y.shape[1:], np.nan, y.dtype), np.zeros(n_tt, bool)
    if len(tv) == 1 or mode in ("exact", "nearest"):
        return yv[_nearest_index(tv, tt)], np.ones(n_tt, bool)
    if mode == "linear":
        out = np.empty((n_tt,) + y.shape[1:], y.dtype)
        for k in range(y.shape[1]):
            out[:, k] = np.interp(tt, tv, yv[:, k])
        return out, np.ones(n_tt, bool)
    raise AlakazamError(f"{what}: unknown mode {mode!r}; expected one of {', '.join(MODES)}")


def _check_cubic(n_t, what="time_interp"):
    if n_t < 4:
        raise AlakazamError(f"{what}: 'cubic' needs at least 4 solution times, this term has {n_t} (CASA's "
                            f"applycal aborts with fewer); use 'linear' or 'nearest'")


def cubic_weights(t, tt):
    """CASA's cubic on the sorted solution times t (n_t >= 4) at target times tt: (idx (n_tt, 4) into t,
    w (n_tt, 4)) such that the value at tt is sum_m w[:, m] y[idx[:, m]], and (lo, hi, x) of the linear
    interpolation y[lo] + x (y[hi] - y[lo]) between the bracketing pair (:func:`bracket_valid`'s).

    Between t_k and t_k+1 (t_k < tt < t_k+1): the Lagrange weights of t_(k-1) .. t_(k+2), the window
    clipped to 0 .. n_t-1 (the first / last 4 solutions in the first / last interval) -- CASA 6.7's
    CTTimeInterp1 'cubic', measured against applycal (tests/test_interp_cubic.py).  Within
    :data:`EXACT_TIME_TOL` of a solution's time: that solution; outside the range: the end solution."""
    t = np.asarray(t, float)
    tt = np.asarray(tt, float)
    n_t = len(t)
    j, exact, lo, hi = _bracket(t, tt)
    single = exact | (j == 0) | (j >= n_t)             # one solution: its own time, or outside the range
    lo = np.where(single, hi, lo)
    start = np.clip(lo - 1, 0, max(n_t - 4, 0))
    idx = start[:, None] + np.arange(4)[None, :]
    idx = np.minimum(idx, n_t - 1)
    x = t[idx] - t[0]                                   # relative times (conditioning)
    xt = (tt - t[0])[:, None]
    w = np.ones(idx.shape)
    for m in range(4):
        for q in range(4):
            if q != m:
                with np.errstate(invalid="ignore", divide="ignore"):
                    w[:, m] *= (xt[:, 0] - x[:, q]) / (x[:, m] - x[:, q])
    w[single] = np.array([1.0, 0.0, 0.0, 0.0])
    idx[single] = hi[single, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(single, 0.0, (tt - t[lo]) / np.where(single, 1.0, t[hi] - t[lo]))
    return idx, w, (lo, hi, frac)


def cubic_casa(t, y, usable, tt, whole=None):
    """CASA's cubic (:func:`cubic_weights`) of y (n_ant, n_f, n_t, k) real at tt -> (n_ant, n_f, n_tt, k).
    ``usable`` (n_ant, n_f, n_t): y holds a finite value (flagged solutions included: CASA uses them
    as the outer points of the window); where a point of the window is not usable (or where ``whole``
    (n_ant, n_f, n_tt), when given, is False) the linear interpolation between the bracketing pair is
    taken (NaN where that pair is not usable either -- such target times are flagged by
    :func:`bracket_valid`)."""
    if whole is None:
        whole = cubic_window_usable(t, usable, tt)
    cub, lin = _cubic_and_linear(t, y, usable, tt)
    return np.where(whole[..., None], cub, lin)


def _cubic_and_linear(t, y, usable, tt):
    """(cubic, linear) of :func:`cubic_casa`, each (n_ant, n_f, n_tt, k); the cubic is garbage where the
    window is not usable (:func:`cubic_window_usable`)."""
    idx, w, (lo, hi, frac) = cubic_weights(t, tt)
    yz = np.where(usable[..., None], y, 0.0)
    cub = np.zeros(y.shape[:2] + (len(tt),) + y.shape[3:])
    for m in range(4):                                  # (no (n_ant, n_f, n_tt, 4, k) copy)
        cub += w[None, None, :, m, None] * yz[:, :, idx[:, m]]
    lin = y[:, :, lo] + frac[None, None, :, None] * (y[:, :, hi] - y[:, :, lo])
    return cub, lin


def cubic_window_usable(t, usable, tt):
    """(n_ant, n_f, n_tt): every solution of the cubic window of each target time (:func:`cubic_weights`)
    holds a finite value (``usable`` (n_ant, n_f, n_t))."""
    idx, _, _ = cubic_weights(t, tt)
    return usable[:, :, idx].all(axis=-1)


def common_phase(jones, ok):
    """(n_f, n_t, 4) the antennas' common phase c of solutions ``jones`` (n_ant, n_f, n_t, 2, 2), sorted
    in time, valid where ``ok`` (n_ant, n_f, n_t): per frequency bin and diagonal element, c(t_0) = 0 and
    c(t_k) - c(t_k-1) = arg sum_a u_a(t_k) conj(u_a(t_k-1)) over the antennas valid at both (u = y / |y|;
    0 where none is, or the sum is 0); the off-diagonal elements' c is 0 (module docstring)."""
    n_ant, n_f, n_t = jones.shape[:3]
    out = np.zeros((n_f, n_t, 4))
    if n_t < 2 or n_ant == 0:
        return out
    for k, (i, j) in ((0, (0, 0)), (3, (1, 1))):
        y = jones[..., i, j]
        with np.errstate(invalid="ignore", divide="ignore"):
            u = np.where(ok & (y != 0), y / np.abs(y), 0.0)                 # (n_ant, n_f, n_t)
        step = np.angle((u[:, :, 1:] * np.conj(u[:, :, :-1])).sum(axis=0))  # (n_f, n_t - 1)
        out[:, 1:, k] = np.cumsum(step, axis=1)
    return out


def _cubic_jones(sol_time, jones, ok, tt):
    """:func:`cubic_casa` of every Jones element's amplitude and phase (n_ant, n_f, n_t, 2, 2) ->
    (n_ant, n_f, n_tt, 2, 2): the diagonal's phase relative to the antennas' common phase
    (:func:`common_phase`, from the valid solutions ``ok``), unwrapped over every solution with a finite
    value (flagged ones included: they may be outer points of the window), the common phase
    interpolated the same way and added back; the off-diagonal elements' phase unwrapped on its own."""
    n_ant, n_f, n_t = jones.shape[:3]
    y = jones.reshape(n_ant, n_f, n_t, 4)
    fin = np.isfinite(y).all(axis=-1)                   # (n_ant, n_f, n_t)
    c = common_phase(jones, ok)                         # (n_f, n_t, 4)
    amp = np.abs(y)
    with np.errstate(invalid="ignore"):
        ph = np.angle(y * np.exp(-1j * c)[None])
    rel = np.zeros_like(amp)
    for a in range(n_ant):
        for f in range(n_f):
            m = fin[a, f]
            if m.any():
                rel[a, f, m] = np.unwrap(ph[a, f, m], axis=0)
    whole = cubic_window_usable(sol_time, fin, tt)     # else linear, the common phase's part too
    ya = cubic_casa(sol_time, amp, fin, tt, whole)
    yp = cubic_casa(sol_time, rel, fin, tt, whole)
    c_cub, c_lin = _cubic_and_linear(sol_time, c[None], np.ones((1, n_f, n_t), bool), tt)
    ct = np.where(whole[..., None], c_cub, c_lin)
    return (ya * np.exp(1j * (yp + ct))).reshape(n_ant, n_f, len(tt), 2, 2)


def interp_time(sol_time, jones, flags, target_time, mode):
    """Jones (n_ant, n_f, n_t, 2, 2) at target times -> (n_ant, n_f, n_tt, 2, 2), flags (n_ant, n_f, n_tt).

    Flags as the module docstring says (a target time is flagged when a solution its mode uses is
    flagged; no bridging to a valid solution further away); flagged target times are NaN.
    """
    sol_time = np.asarray(sol_time, float)
    tt = np.asarray(target_time, float)
    n_ant, n_f, n_t = jones.shape[:3]
    order = np.argsort(sol_time, kind="stable")
    sol_time = sol_time[order]
    jones = jones[:, :, order]
    flags = flags[:, :, order]
    out = np.full((n_ant, n_f, len(tt), 2, 2), np.nan + 0j)
    oflag = np.ones((n_ant, n_f, len(tt)), bool)
    if mode not in MODES:
        raise AlakazamError(f"time_interp: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode in ("exact", "nearest") and n_t and len(tt):     # vectorised: no loop over (ant, freq)
        ok = ~flags & np.isfinite(jones).all(axis=(-1, -2))
        out, valid = _nearest_flagged(sol_time, jones.astype(np.complex128, copy=False), ok, tt)
        return out, ~valid
    if n_t == 0 or not len(tt):
        return out, oflag
    ok_all = ~flags & np.isfinite(jones).all(axis=(-1, -2))
    valid = bracket_valid(sol_time, ok_all, tt)
    if mode == "cubic":
        _check_cubic(n_t)
        out = _cubic_jones(sol_time, jones, ok_all, tt)
        oflag = ~valid | ~np.isfinite(out).all(axis=(-1, -2))
        out[oflag] = np.nan
        return out, oflag
    if mode == "linear":
        c = common_phase(jones, ok_all)                     # (n_f, n_t, 4), 0 off the diagonal
        all_t = np.ones(n_t, bool)
        c_tt = {}           # the common phase at the target times, once per freq bin (every antenna's)
    for a in range(n_ant):
        for f in range(n_f):
            ok = ok_all[a, f]
            if not ok.any():
                continue
            y = jones[a, f].reshape(n_t, 4)
            if mode == "linear" and ok.sum() > 1:
                amp = np.abs(y)
                # each antenna's phase relative to the common one, unwrapped (module docstring)
                rel = np.zeros_like(amp)
                rel[ok] = np.unwrap(np.angle(y[ok] * np.exp(-1j * c[f][ok])), axis=0)
                ya, _ = _interp_series(sol_time, amp, ok, tt, mode)
                yp, _ = _interp_series(sol_time, rel, ok, tt, mode)
                if f not in c_tt:
                    c_tt[f] = _interp_series(sol_time, c[f], all_t, tt, mode)[0]
                val = ya * np.exp(1j * (yp + c_tt[f]))
            else:
                val, _ = _interp_series(sol_time, y, ok, tt, mode)
            out[a, f] = val.reshape(len(tt), 2, 2)
            oflag[a, f] = False
    oflag |= ~valid
    out[oflag] = np.nan
    return out, oflag


def interp_delay_time(sol_time, delay, flags, target_time, mode):
    """Delays (n_ant, n_f, n_t, 2) ns -> (n_ant, n_f, n_tt, 2), flags; linear/cubic in delay value.
    Flags as :func:`interp_time` (module docstring)."""
    sol_time = np.asarray(sol_time, float)
    tt = np.asarray(target_time, float)
    n_ant, n_f, n_t = delay.shape[:3]
    order = np.argsort(sol_time, kind="stable")
    sol_time, delay, flags = sol_time[order], delay[:, :, order], flags[:, :, order]
    out = np.full((n_ant, n_f, len(tt), 2), np.nan)
    oflag = np.ones((n_ant, n_f, len(tt)), bool)
    if mode in ("exact", "nearest") and n_t and len(tt):     # vectorised: no loop over (ant, freq)
        ok = ~flags & np.isfinite(delay).all(axis=-1)
        out, valid = _nearest_flagged(sol_time, delay.astype(float, copy=False), ok, tt)
        return out, ~valid
    if n_t == 0 or not len(tt):
        return out, oflag
    valid = bracket_valid(sol_time, ~flags & np.isfinite(delay).all(axis=-1), tt)
    if mode == "cubic":         # CASA's cubic in the delay value; flagged solutions' values used (cubic_casa)
        _check_cubic(n_t)
        out = cubic_casa(sol_time, delay.astype(float), np.isfinite(delay).all(axis=-1), tt)
        oflag = ~valid | ~np.isfinite(out).all(axis=-1)
        out[oflag] = np.nan
        return out, oflag
    for a in range(n_ant):
        for f in range(n_f):
            ok = ~flags[a, f] & np.isfinite(delay[a, f]).all(axis=-1)
            if not ok.any():
                continue
            out[a, f], _ = _interp_series(sol_time, delay[a, f], ok, tt, mode)
            oflag[a, f] = False
    oflag |= ~valid
    out[oflag] = np.nan
    return out, oflag


def map_freq(sol_freq, target_freq):
    """(index (n_chan,) into the solution freq axis, description for the log line)."""
    sol_freq = np.asarray(sol_freq, float)
    target_freq = np.asarray(target_freq, float)
    n_f, n_c = len(sol_freq), len(target_freq)
    if n_f == 1:
        return np.zeros(n_c, np.int64), f"broadcast 1->{n_c}"
    if n_f == n_c and np.allclose(sol_freq, target_freq, rtol=0, atol=1e-3):
        return np.arange(n_c), "pass-through"
    order = np.argsort(sol_freq)
    idx = order[_nearest_index(sol_freq[order], target_freq)]
    return idx.astype(np.int64), f"nearest {n_f}->{n_c}"


def delay_to_jones(delay, freqs, jones_type):
    """Delays (n_ant, n_chan, n_tt, 2) ns at each target channel -> Jones (n_ant, n_chan, n_tt, 2, 2).

    K: diag(exp(-2 pi i tau_p nu), exp(-2 pi i tau_q nu)); KC: diag(exp(-2 pi i tau nu), 1).
    """
    nu = np.asarray(freqs, float)[None, :, None]
    out = np.zeros(delay.shape[:3] + (2, 2), np.complex128)
    out[..., 0, 0] = np.exp(-1j * TWO_PI_NS * delay[..., 0] * nu)
    from ..jones import terms

    if terms.get(jones_type).delay_pols == 1:       # KC: one delay, q entry 1
        out[..., 1, 1] = np.where(np.isfinite(delay[..., 0]), 1.0, np.nan)
    else:
        out[..., 1, 1] = np.exp(-1j * TWO_PI_NS * delay[..., 1] * nu)
    return out
