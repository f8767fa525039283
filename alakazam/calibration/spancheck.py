"""A full-band gain or a K whose solution spans several scans of a field: the warning (CASA's 'inf' is per
scan).

In alakazam ``time_interval: inf`` (akcal ``solint='inf'``) is ONE solution over every selected scan of a
field, without ``combine`` (SEED.md); in CASA's gaincal ``solint='inf'`` is one solution per scan unless
``combine='scan'``.  A CASA user's "G per scan" written as ``solint=['inf']`` on a phase calibrator
visited 4 times over an hour with drifting gains became one gain per field (review 58b, finding 3):
the TARGET's scans +7.6%, +19.8%, +6.7%, -28.3% against the truth and the flux scale 2 sigma off, with
``solver_stats/rchi2`` 1.77e5 (166 per scan) and nothing said.

What is measured (:func:`measure`, in the solve; ``SolutionSet.diagnostics['scan_span']``, not
written).  For a G or T of one frequency bin whose time cell holds data of more than one scan, the
accumulation keeps each scan's sums apart (folded into the cell's before the solve, which sees the
same data as before) and, after the solve, fits one gain per scan to those per-scan averages (a few
alternating least-squares passes, phase-only where the step is).  The drift indicator is the ratio of
chi2/nDOF of the solved gain over the per-scan averages to that of the per-scan gains on the same
samples: scale-free (WEIGHT=1 on raw correlator units scales both alike), ~1 for gains constant in
time whatever the noise (the nDOF take the per-scan gains' parameters), and large where the gains
changed between the scans.  ``excess`` is the part of the data power the per-scan gains take out
beyond the noise they fit, ~(rms change of the gains)^2: a change of a per mille is not called drift.

The rule (:func:`notes`, logged after the block by :func:`warn`, README "solint 'inf' spans scans"):

* ``inf`` without ``combine='scan'`` (the CASA trap): warned whenever a cell spans several scans of a
  field, drift or not -- the result is not what CASA's 'inf' gives, and whoever means it says so with
  ``combine='scan'``; the drift measured is quoted when it is there.
* ``combine='scan'`` requested (any time_interval): warned only when the drift indicator fires
  (ratio > :data:`RATIO` and excess > :data:`EXCESS`).
* not warned: a bandpass (G with frequency bins; calibration/driftcheck.py looks at those), KC, CP and
  D (their 'inf' over every scan is the recipe: parallactic-angle coverage), a cell within one scan.
  K has a rule of its own (below).

K (parallel-hand delays) over several scans.  A K cell spanning scans fits one delay and one phase per
antenna and hand to every channel's sum over the scans: where the gains' phases change between the
scans and the channels' mix of scans differs (flags in part of the band in one scan), each channel
averages another mix of the scans' phases and the delays are biased -- session 55's review, 3C147's 4
scans with drifting gains: 0.07-0.20 ns on clean data against 0.006 ns noise per scan; 1.7-2.5 ns on
every antenna with the reference antenna's data flagged in half the band in one scan.  CASA's gaincal
``gaintype='K', solint='inf'`` is one K per scan.  What is measured (:func:`measure_k`,
``SolutionSet.diagnostics['k_scan_span']``, not written): the accumulation keeps each (cell, scan)'s
per-channel sums in arrays of their own (a second pass of the accumulation kernel over the same rows:
the cell's sums, and so the solved delays, are bit for bit those without the check), and after the
solve the K solver's Levenberg-Marquardt fit (solvers/parallel_delay.lm_batch) is run on each scan's
sums from the combined solution.  Each per-scan delay's formal error comes from the Fisher matrix of
the phase-only fit (delays and phases of the antennas but the reference), its noise from the residual
across the model's phase (what amplitude errors do not touch: gain amplitudes are not fitted).  A
per-scan delay differs from the combined one *significantly* when ``|d| > K_SIGMA * error`` and
``pi |d| B > K_FLOOR_DEG`` (``d`` = per-scan minus combined, both relative to the cell's reference; ``B``
the span of the cell's channels with data: the phase the departure turns at the band's edges).  Measured
(tests/test_k_span_warning.py's MS, 6 antennas, 32 x 1 MHz, 3C147's 4 scans; 6 seeds each of constant
and drifting gains at noise 0.05 and 0.005): the largest departure of a cell's 40 per-scan delays was
1.0-2.1 formal errors (0.023-0.056 ns at 0.025 ns per-scan noise); at 10x the SNR, drifting gains showed
up to 4.0 (0.011 ns against 0.0026 ns noise: a systematic the formal error does not hold), which the
floor keeps silent with a factor 7 to spare (0.063 deg at the edges of those 31 MHz).  The floor is a
phase, not a delay: 0.46 deg is 0.02 ns across a 128 MHz band (session 59's fixed floor), 0.08 ns across
32 MHz, where a 0.05 ns departure at 6 errors is 0.29 deg and does not matter, and 0.0013 ns across a
2 GHz baseband, where a 0.01 ns departure turns the edges by 3.6 deg (a fixed 0.02 ns kept it silent).
An antenna flagged in half the band in one scan with drifting gains: 0.30 ns (11.5
errors, C03) and 0.45 ns (17 errors, the reference antenna; the 'inf' K itself 0.40 ns off the truth
there, 0.02 ns on the unflagged MS).  Drifting gains alone (the same flags in every scan) do not bias K
here: every channel holds the same mix of the scans.

* K ``inf`` without ``combine='scan'`` (the CASA trap): warned whenever a cell spans several scans of
  a field, quoting the largest per-scan departure measured and the per-scan noise.
* K with ``combine='scan'``: warned only where some per-scan delay departs significantly.
* Memory: the per-scan sums cost (scans in the cell) x the cell's per-channel sums, 40 bytes per
  (baseline, channel, correlation) each.  They are kept only while they total at most
  :data:`K_BUDGET_BYTES`; above it nothing is measured, ``inf`` is warned without a figure (the message
  says so) and ``combine='scan'`` not at all.  The second kernel pass costs what the first does
  (measured on 3C147's 4 scans of a 20-antenna, 128-channel MS, 11400 rows: 15 MiB of sums, +0.02-0.04 s
  of accumulation and +0.02-0.03 s of per-scan fits on a 0.18 s solve with the read cached).
"""

from __future__ import annotations


import numpy as np


#: chi2/nDOF of the one gain over that of per-scan gains on the same per-scan averages above this ...
RATIO = 5.0
#: ... and the per-scan gains taking out more than this fraction of the data power (beyond the noise):
#: gains changing between the scans by ~sqrt(EXCESS), 1% in amplitude or 0.6 deg in phase
EXCESS = 1e-4

#: fewer degrees of freedom left to the per-scan gains than this: not measured (the ratio's noise)
MIN_DOF = 20

_ITER = 60

#: K: a per-scan delay departs from the combined one beyond this many formal errors (clean data: <= 2.1,
#: 4.0 at high SNR; module docstring) ...
K_SIGMA = 5.0
#: ... and turns the phase at the edges of the cell's band by more than this (deg), pi |d| B: 0.02 ns
#: across 128 MHz; clean data at high SNR <= 0.063 (module docstring)
K_FLOOR_DEG = 0.46
#: K: the per-scan sums are kept (and measured) only while they total at most this many bytes (4 scans of
#: 190 baselines x 128 channels: 15 MiB; 15 scans of 351 x 1024: 0.84 GiB, not kept)
K_BUDGET_BYTES = 256 * 2 ** 20


def wanted(jones_type, n_fsamp, chan_sampled, scan_sampled, group) -> bool:
    """Keep per-scan sums for this group (unit._accumulate_group): a G / T of one frequency sample, a
    time cell holding sample bins of more than one scan."""
    if jones_type not in ("G", "T") or n_fsamp != 1 or chan_sampled or scan_sampled:
        return False
    cells = np.asarray(group.sbin_cell, np.int64)
    scans = np.asarray(group.sbin_scan, np.int64)
    return any(len(np.unique(scans[cells == c])) > 1 for c in np.unique(cells))


def k_pairs(jones_type, chan_sampled, scan_sampled, group, n_bl, n_fsamp):
    """K (unit._accumulate_group): ``(pair_of_sbin, pair_cell, pair_scan, n_bytes)`` -- each sample bin's
    (time cell, scan) pair and the pairs' cells and scans -- when a time cell holds sample bins of more
    than one scan, else None.  ``pair_of_sbin`` is None when the pairs' per-channel sums would exceed
    :data:`K_BUDGET_BYTES` (``n_bytes``: what they would cost)."""
    if jones_type != "K" or not chan_sampled or scan_sampled:
        return None
    cells = np.asarray(group.sbin_cell, np.int64)
    scans = np.asarray(group.sbin_scan, np.int64)
    if not any(len(np.unique(scans[cells == c])) > 1 for c in np.unique(cells)):
        return None
    pairs, pair_of_sbin = np.unique(np.stack([cells, scans], axis=1), axis=0, return_inverse=True)
    n_bytes = int(len(pairs)) * n_bl * n_fsamp * 4 * (16 + 16 + 8)
    ok = n_bytes <= K_BUDGET_BYTES
    return (np.asarray(pair_of_sbin, np.int64).ravel() if ok else None, pairs[:, 0], pairs[:, 1], n_bytes)


def _scan_phases(vis, model, weight, freq, nu_c, params, ant1, ant2, ref, n_iter=_ITER):
    """In place: the phases ``params[:, :, 1]`` (n_ant, 2, 2) of one scan's sums ``vis``/``model``/
    ``weight`` (n_bl, n_samp, 4), fitted with the delays ``params[:, :, 0]`` held (phase-only gain
    iterations on the delay-rotated, band-summed fringes; the reference's phase held at its value; an
    antenna without data keeps its phase).  The combined solution's phases are the gains averaged over
    the scans: where the gains drifted between them, an antenna's phase in one scan can be ~pi from it,
    and the LM started there fell into another minimum -- review h60h: C14's Y delay 7.86 ns for the
    0.21 ns that a per-scan solve (and the LM from these phases) gives, so the check reported a 14.3 ns,
    551-sigma departure for a combined K within 0.003 ns of the truth."""
    from ..solvers.parallel_delay import POL_CORR, TWO_PI_NS

    n_ant = params.shape[0]
    kap = -TWO_PI_NS * (np.asarray(freq, float) - nu_c)                 # (n_samp,)
    for p, k in enumerate(POL_CORR):
        w = weight[:, :, k]
        if not (w > 0).any():
            continue
        dt = params[ant1, p, 0] - params[ant2, p, 0]
        y = np.where(w > 0, w * vis[:, :, k] * np.conj(model[:, :, k]), 0.0)
        yb = (y * np.exp(-1j * kap[None, :] * dt[:, None])).sum(axis=1)  # ~ exp(i(phi_1 - phi_2))
        phi = params[:, p, 1].copy()
        for _ in range(n_iter):
            acc = np.zeros(n_ant, complex)
            np.add.at(acc, ant1, yb * np.exp(1j * phi[ant2]))
            np.add.at(acc, ant2, np.conj(yb) * np.exp(1j * phi[ant1]))
            new = np.where(np.abs(acc) > 0, np.angle(acc), phi)
            new = new - new[ref] + params[ref, p, 1]
            if np.allclose(new, phi, rtol=0.0, atol=1e-12):
                break
            phi = new
        params[:, p, 1] = phi


def _k_errors(vis, model, weight, freq, nu_c, params, ant1, ant2, n_ant, ref):
    """Formal errors (n_ant, 2) in ns of the delays of one K cell's fit ``params`` (n_ant, 2, 2) on
    ``vis``/``model``/``weight`` (n_bl, n_samp, 4), NaN where undetermined (module docstring)."""
    from ..solvers.parallel_delay import POL_CORR, TWO_PI_NS

    out = np.full((n_ant, 2), np.nan)
    kap = -TWO_PI_NS * (np.asarray(freq, float) - nu_c)                 # (n_samp,)
    for p, k in enumerate(POL_CORR):
        w = weight[:, :, k]
        has = w > 0
        if not has.any():
            continue
        dt = params[ant1, p, 0] - params[ant2, p, 0]
        dp = params[ant1, p, 1] - params[ant2, p, 1]
        am = np.abs(model[:, :, k])
        u = np.exp(-1j * (dp[:, None] + kap[None, :] * dt[:, None])) * np.conj(model[:, :, k]) * vis[:, :, k]
        u = np.where(has & (am > 0), u / np.where(am > 0, am, 1.0), 0.0)   # V in the model's phase frame
        h = np.where(has, w * am * np.maximum(u.real, 0.0), 0.0)         # the phase-only curvature
        s0, s1, s2 = h.sum(axis=1), (h * kap).sum(axis=1), (h * kap ** 2).sum(axis=1)
        # Hessian (per baseline b = (i, j), theta_b = phi_i - phi_j + kappa (tau_i - tau_j)) over
        # (tau_0..tau_n-1, phi_0..phi_n-1), halved: sum_b h J J^T
        H = np.zeros((2 * n_ant, 2 * n_ant))
        for (x, y, v) in ((0, 0, s2), (0, 1, s1), (1, 0, s1), (1, 1, s0)):
            for (i, si) in ((ant1, 1.0), (ant2, -1.0)):
                for (j, sj) in ((ant1, 1.0), (ant2, -1.0)):
                    np.add.at(H, (x * n_ant + i, y * n_ant + j), si * sj * v)
        live = np.zeros(n_ant, bool)
        live[ant1[s0 > 0]] = live[ant2[s0 > 0]] = True
        live[ref] = False
        idx = np.concatenate([np.flatnonzero(live), n_ant + np.flatnonzero(live)])
        n_samp = int(has.sum())
        n_par = len(idx)
        if n_par == 0 or n_samp <= n_par:
            continue
        # the noise from the residual across the model's phase (gain amplitudes are not fitted: the
        # residual along it is not noise); E[w Im(u)^2] = sigma^2 / 2
        var = 2.0 * float(np.sum(w * u.imag ** 2)) / (n_samp - n_par)
        try:
            cov = np.linalg.inv(2.0 * H[np.ix_(idx, idx)]) * var
        except np.linalg.LinAlgError:
            continue
        d = np.diag(cov)[: len(idx) // 2]
        out[np.flatnonzero(live), p] = np.sqrt(np.where(d > 0, d, np.nan))
    return out


def measure_k(k_sums, pair_cell, pair_scan, cells_t, cell_index, res, freqs, fbin_of_chan, n_fcell,
              bl_a1, bl_a2, n_ant, max_iter=100, tol=1e-10):
    """K per time cell of the set: ``{"n_scans", "dev", "sigma", "noise"}`` (lists over the set's time
    cells): the largest ``|per-scan - combined|`` delay (ns), its number of formal errors, and the median
    per-scan delay error (ns), among the antennas and hands with a per-scan solution (NaN where none;
    with several frequency bins, the largest over them).  Module docstring."""
    from ..core.averaging import divide_sums
    from ..solvers import parallel_delay as pd

    vis_sum, model_sum, w_sum = k_sums                  # (n_pair, n_bl, n_chan, 4)
    n_t = len(cells_t)
    out = {"n_scans": [0] * n_t, "dev": [float("nan")] * n_t, "sigma": [float("nan")] * n_t,
           "noise": [float("nan")] * n_t, "floor": [float("nan")] * n_t}
    has_w = w_sum.sum(axis=(1, 3))                      # (n_pair, n_chan)
    bounds = np.searchsorted(np.asarray(fbin_of_chan), np.arange(n_fcell + 1), side="left")
    ant1, ant2 = np.asarray(bl_a1, np.int64), np.asarray(bl_a2, np.int64)
    for c, (it, jf) in enumerate(cell_index):
        sl = slice(int(bounds[jf]), int(bounds[jf + 1]))
        pr = np.flatnonzero((pair_cell == cells_t[it]) & (has_w[:, sl].sum(axis=1) > 0))
        n_s = int(len(np.unique(pair_scan[pr])))
        out["n_scans"][it] = max(out["n_scans"][it], n_s)
        p0 = np.asarray(res.params[c], float)
        if n_s < 2 or not np.isfinite(p0).all():
            continue
        ref = int(np.atleast_1d(res.ref_ant)[c])
        n = len(pr)
        # the pairs' sums themselves, divided in place (no copy) where they are one run of the whole band
        take = slice(int(pr[0]), int(pr[-1]) + 1) if np.array_equal(pr, np.arange(pr[0], pr[-1] + 1)) else pr
        if n_fcell != 1:
            take = (take, slice(None), sl)
        vis, model, weight = (np.ascontiguousarray(a[take]) for a in (vis_sum, model_sum, w_sum))
        for s in range(n):
            divide_sums(vis[s], model[s], weight[s], vis[s], model[s], weight[s])
        freq = np.ascontiguousarray(np.repeat(np.asarray(freqs, float)[sl][None], n, axis=0))
        nu_c = np.empty(n)
        pd._band_centre(weight, freq, nu_c)
        params = np.ascontiguousarray(np.repeat(p0[None], n, axis=0))
        for s in range(n):      # each scan's own phases at the combined delays: the LM's start
            _scan_phases(vis[s], model[s], weight[s], freq[s], nu_c[s], params[s], ant1, ant2, ref)
        n_iter = np.zeros((n, 2), np.int64)
        conv = np.zeros((n, 2), bool)
        cost = np.zeros((n, 2))
        pd.lm_batch(vis, model, weight, freq, nu_c, pd.uniform_grid(freq), ant1.astype(np.int32),
                    ant2.astype(np.int32), params, np.full(n, ref, np.int64), int(max_iter), float(tol),
                    n_iter, conv, cost)
        floor = k_floor_ns(np.asarray(freqs, float)[sl][has_w[pr][:, sl].sum(axis=0) > 0])
        flags = np.asarray(res.flags[c], bool)[:, None] | ~np.isfinite(p0[:, :, 0])
        pol = res.extra.get("pol_flags") if isinstance(res.extra, dict) else None
        if pol is not None:
            flags = flags | np.asarray(pol[c], bool)
        cand = []                                       # (significant, |d|, z, floor) per scan
        errs = []
        for s in range(n):
            err = _k_errors(vis[s], model[s], weight[s], freq[s], nu_c[s], params[s], ant1, ant2, n_ant, ref)
            d = np.abs((params[s, :, :, 0] - params[s, ref, :, 0]) - (p0[:, :, 0] - p0[ref, :, 0]))
            ok = np.isfinite(err) & np.isfinite(d) & ~flags & conv[s][None, :]
            if not ok.any():
                continue
            errs.append(err[ok])
            z = np.where(ok, d / np.where(ok, err, 1.0), 0.0)
            sig = ok & (z > K_SIGMA) & (d > floor)
            pick = sig if sig.any() else ok     # the departure quoted: the largest significant one
            i = np.unravel_index(np.argmax(np.where(pick, d, -1.0)), d.shape)
            cand.append((bool(sig.any()), float(d[i]), float(z[i]), floor))
        if cand:                                        # (several frequency bins: the largest)
            top = max(cand)
            was = out["dev"][it]
            if not np.isfinite(was) or top[:2] > (_k_significant(was, out["sigma"][it], out["floor"][it]),
                                                  was):
                _, out["dev"][it], out["sigma"][it], out["floor"][it] = top
        if errs:
            out["noise"][it] = float(np.median(np.concatenate(errs)))
    return out


def k_floor_ns(freqs) -> float:
    """The smallest departure (ns) that counts across channels at ``freqs`` (Hz, those with data):
    :data:`K_FLOOR_DEG` at the band's edges, ``pi |d| B`` with ``B`` their span; inf for one channel."""
    f = np.asarray(freqs, float)
    span = float(f.max() - f.min()) if f.size else 0.0
    return K_FLOOR_DEG / 180.0 / span * 1e9 if span > 0 else float("inf")


def _k_significant(dev, sigma, floor) -> bool:
    return bool(np.isfinite(dev) and np.isfinite(sigma) and sigma > K_SIGMA and dev > floor)


def _fit(v, m, w, g0, shared, phase_only):
    """Gains (n_ant, 2) minimising sum w |v - g_a m conj(g_b)|^2 over the baselines' two parallel hands;
    v, m, w (n_ant, n_ant, 2) Hermitian-filled; ``shared``: one gain for both hands (T)."""
    g = g0.copy()
    for _ in range(_ITER):
        z = m * np.conj(g)[None, :, :]                  # model of (a, b) without g_a
        num = np.einsum("abh,abh->ah", w * v, np.conj(z))
        den = np.einsum("abh,abh->ah", w, np.abs(z) ** 2)
        if shared:
            num = num.sum(axis=1, keepdims=True) * np.ones((1, 2))
            den = den.sum(axis=1, keepdims=True) * np.ones((1, 2))
        has = den > 0
        new = np.where(has, num / np.where(has, den, 1.0), g)
        if phase_only:
            a = np.abs(new)
            new = np.where(a > 0, new / np.where(a > 0, a, 1.0), g)
        g = 0.5 * (g + new)
    return g


def _chi2(v, m, w, g):
    r = v - g[:, None, :] * m * np.conj(g)[None, :, :]
    return 0.5 * float(np.sum(w * np.abs(r) ** 2))      # each baseline twice (a, b) and (b, a)


def measure(scan_sums, group, cells_t, cell_index, res, jones_type, phase_only, bl_a1, bl_a2, n_ant):
    """Per time cell of the set: ``{"n_scans": [...], "ratio": [...], "excess": [...]}`` (lists over the
    set's time cells, NaN where not measurable) -- module docstring."""
    vis_sum, model_sum, w_sum = scan_sums               # (n_sbin, n_bl, 1, 4)
    cells = np.asarray(group.sbin_cell, np.int64)
    scans = np.asarray(group.sbin_scan, np.int64)
    shared = jones_type == "T"
    n_t = len(cells_t)
    out = {"n_scans": [0] * n_t, "ratio": [float("nan")] * n_t, "excess": [float("nan")] * n_t}
    for c, (it, _jf) in enumerate(cell_index):
        ct = cells_t[it]
        sb = np.flatnonzero((cells == ct) & (w_sum[:, :, 0, :].sum(axis=(1, 2)) > 0))
        out["n_scans"][it] = int(len(np.unique(scans[sb])))
        if len(np.unique(scans[sb])) < 2:
            continue
        J = np.asarray(res.jones[c])
        g1 = np.stack([J[:, 0, 0], J[:, 1, 1]], axis=-1)           # (n_ant, 2)
        bad = ~np.isfinite(g1) | (np.abs(g1) == 0)
        fl = np.asarray(res.flags[c], bool)
        bad |= fl[:, None]
        pol = res.extra.get("pol_flags") if isinstance(res.extra, dict) else None
        if pol is not None:
            bad |= np.asarray(pol[c], bool)
        g1 = np.where(bad, 1.0, g1)
        chi_one = chi_per = power = 0.0
        n_w = 0
        p_one = None
        p_per = 0
        for s in sb:
            v = np.zeros((n_ant, n_ant, 2), complex)
            m = np.zeros((n_ant, n_ant, 2), complex)
            w = np.zeros((n_ant, n_ant, 2))
            for h, k in ((0, 0), (1, 3)):
                ws = w_sum[s, :, 0, k]
                ok = ws > 0
                vv = np.where(ok, vis_sum[s, :, 0, k] / np.where(ok, ws, 1.0), 0.0)
                mm = np.where(ok, model_sum[s, :, 0, k] / np.where(ok, ws, 1.0), 0.0)
                ww = np.where(ok & ~bad[bl_a1, h] & ~bad[bl_a2, h], ws, 0.0)
                v[bl_a1, bl_a2, h], v[bl_a2, bl_a1, h] = vv, np.conj(vv)
                m[bl_a1, bl_a2, h], m[bl_a2, bl_a1, h] = mm, np.conj(mm)
                w[bl_a1, bl_a2, h] = w[bl_a2, bl_a1, h] = ww
            c1 = _chi2(v, m, w, g1)
            gs = _fit(v, m, w, g1, shared, phase_only)
            cs = min(_chi2(v, m, w, gs), c1)
            chi_one += c1
            chi_per += cs
            power += 0.5 * float(np.sum(w * np.abs(v) ** 2))
            n_w += int((w > 0).sum() // 2)
            # parameters of this scan's gains: per hand (G) or per antenna (T) with data, less a phase
            has = (w > 0).any(axis=1)                               # (n_ant, 2)
            units = int(has.any(axis=1).sum()) if shared else int(has.sum())
            n_ref = 1 if shared else int(has.any(axis=0).sum())
            p_s = (1 if phase_only else 2) * units - n_ref
            p_per += max(p_s, 0)
            p_one = p_s if p_one is None else max(p_one, p_s)
        dof_one, dof_per = 2 * n_w - (p_one or 0), 2 * n_w - p_per
        if dof_per < MIN_DOF or dof_one <= 0 or power <= 0:
            continue
        r_one, r_per = chi_one / dof_one, chi_per / dof_per
        if r_per > 0:
            out["ratio"][it] = float(r_one / r_per)
        else:
            out["ratio"][it] = float("inf") if r_one > 0 else 1.0
        out["excess"][it] = float(max(chi_one - r_per * dof_one, 0.0) / power)
    return out


def _implicit(step) -> bool:
    """'inf' without combine='scan': alakazam's one solution over every scan (CASA: one per scan)."""
    from ..core.combine import combines

    return step.time_interval.kind == "inf" and not combines(step, "scan")


def _drift(ratio, excess) -> bool:
    return bool(np.isfinite(ratio) and ratio > RATIO and np.isfinite(excess) and excess > EXCESS)


def notes(cfg, pending):
    """The warnings for the block's steps (``pending``: key -> solution sets)."""
    from ..core.combine import combines

    out = []
    for st in cfg.steps:
        sets = pending.get(st.key) or []
        if st.jones_type == "K":
            out += _k_notes(st, sets)
            continue
        if st.jones_type not in ("G", "T") or not sets or max(len(s.freq) for s in sets) != 1:
            continue
        implicit = _implicit(st)
        if not implicit and not combines(st, "scan"):
            continue                    # cells never cross a scan boundary
        fields, spans, worst = {}, [], (0.0, 0.0)
        for s in sets:
            d = s.diagnostics.get("scan_span")
            if d is None and implicit and len(s.time) == 1:
                # not measured (combine 'spw': the sums are kept per SPW instead): the scans it holds
                n = len({int(x) for x in np.atleast_1d(s.attrs.get("scans", []))})
                d = {"n_scans": [n], "ratio": [float("nan")], "excess": [float("nan")]}
            if d is None:
                continue
            for n, r, e in zip(d["n_scans"], d["ratio"], d["excess"]):
                if n < 2:
                    continue
                drift = _drift(r, e)
                if not implicit and not drift:
                    continue
                fields.setdefault(str(s.field_name), set()).add(n)
                spans.append(n)
                if drift and r > worst[0]:
                    worst = (float(r), float(e))
        if not fields:
            continue
        where = "; ".join(f"{f}: {'/'.join(str(n) for n in sorted(ns))} scans" for f, ns in fields.items())
        tint = st.time_interval.text or st.time_interval.kind
        what = f"{st.key} ({st.jones_type}, time_interval {tint}" + (
            f", combine '{st.combine}')" if st.combine else ")")
        if worst[0] > 0:
            drift = (f" The gains changed between those scans: chi2/nDOF of the one solution over the "
                     f"per-scan averages is {worst[0]:.3g}x that of one gain per scan on the same data "
                     f"(an rms change of ~{100 * np.sqrt(worst[1]):.2g}%), so it is an average of "
                     f"different gains and calibrates every scan wrongly.")
        elif any(np.isfinite(r) for s in sets for r in s.diagnostics.get("scan_span", {}).get("ratio", [])):
            drift = " The fit does not show the gains changing between those scans."
        else:
            drift = ""
        if implicit:
            msg = (f"{what}: one solution spans several scans of a field ({where}): alakazam's 'inf' is "
                   f"one solution over every selected scan (CASA's gaincal solint='inf' gives one solution "
                   f"per scan unless combine='scan').{drift} For one gain per scan use time_interval "
                   f"'scan' (akcal solint='scan'); to keep one gain over the scans and silence this, say "
                   f"so with combine 'scan' (akcal combine='scan').")
        else:
            msg = (f"{what}: a solution spans several scans of a field ({where}).{drift} Solve per scan "
                   f"(time_interval 'scan' without combine; akcal solint='scan'), or a shorter interval.")
        out.append(msg)
    return out


def _k_notes(st, sets):
    """The warning for a K step (module docstring), or none."""
    from ..core.combine import combines

    implicit = _implicit(st)
    if not sets or (not implicit and not combines(st, "scan")):
        return []
    fields, worst, noise, unmeasured = {}, None, [], 0
    for s in sets:
        d = s.diagnostics.get("k_scan_span")
        if d is None:
            continue
        unmeasured = max(unmeasured, int(d.get("unmeasured_bytes", 0)))
        for n, dev, sig, nz, fl in zip(d["n_scans"], d["dev"], d["sigma"], d["noise"], d["floor"]):
            if n < 2:
                continue
            hit = _k_significant(dev, sig, fl)
            if not implicit and not hit:
                continue
            fields.setdefault(str(s.field_name), set()).add(n)
            if np.isfinite(nz):
                noise.append(nz)
            if np.isfinite(dev) and (worst is None or (hit, dev) > (worst[0], worst[1])):
                worst = (hit, float(dev), float(sig))
    if not fields:
        return []
    where = "; ".join(f"{f}: {'/'.join(str(n) for n in sorted(ns))} scans" for f, ns in fields.items())
    tint = st.time_interval.text or st.time_interval.kind
    what = f"{st.key} (K, time_interval {tint}" + (f", combine '{st.combine}')" if st.combine else ")")
    nz = f"{float(np.median(noise)):.2g}" if noise else "?"
    if worst is not None and worst[0]:
        meas = (f" Its delays are biased: a delay fitted to one scan's data departs from the one over the "
                f"scans by up to {worst[1]:.3g} ns ({worst[2]:.3g} times its formal error; per-scan noise "
                f"~{nz} ns) -- each channel averages another mix of the scans' phases where the gains "
                f"changed between the scans and the flags differ.")
    elif worst is not None:
        meas = (f" The per-scan fits do not show it biased here (the largest per-scan departure "
                f"{worst[1]:.2g} ns, {worst[2]:.2g} times its formal error; per-scan noise ~{nz} ns).")
    elif unmeasured:
        meas = (f" Not measured: the per-scan sums would take {unmeasured / 2 ** 20:.0f} MiB, above the "
                f"check's {K_BUDGET_BYTES / 2 ** 20:.0f} MiB budget.")
    else:
        meas = ""
    if implicit:
        return [f"{what}: one delay solution spans several scans of a field ({where}): alakazam's 'inf' is "
                f"one solution over every selected scan (CASA's gaincal gaintype='K', solint='inf' gives one "
                f"per scan unless combine='scan'); a K over scans whose gains drift is biased where the "
                f"channels' mix of scans differs (flags).{meas} For "
                f"one K per scan use time_interval 'scan' (akcal solint='scan'); to keep one K over the "
                f"scans, say so with combine 'scan' (akcal combine='scan'), which leaves this warning to "
                f"the cases the per-scan fits show biased."]
    return [f"{what}: a delay solution spans several scans of a field ({where}).{meas} Solve K per scan "
            f"(time_interval 'scan' without combine; akcal solint='scan')."]
