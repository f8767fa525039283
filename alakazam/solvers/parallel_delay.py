"""K: parallel-hand delays, diag(exp(-2 pi i tau_p nu), exp(-2 pi i tau_q nu)) per antenna.

The data a K solve sees still carry unknown per-antenna phases (G is not solved yet), so each
antenna and pol has a nuisance phase phi and the fit is made relative to the band centre nu_c
(the mean frequency of the cell's weighted samples); absolute-frequency fits have a cost periodic in
1/nu and do not converge (notes/SOLVER_BENCHMARKS.md)::

    V_ab,pp = exp(i[(phi_a - phi_b) - 2 pi (tau_a - tau_b) 1e-9 (nu - nu_c)]) M_ab,pp   (tau in ns)

The amplitude is not fitted: with z = w conj(M) V ("fringe" samples) the cost is

    chi2 = sum w |V|^2 + sum w |M|^2 - 2 sum Re(exp(-i theta) z),
    theta = (phi_a - phi_b) + kappa (tau_a - tau_b),   kappa = -2 pi 1e-9 (nu - nu_c),

so only z enters and unknown gain amplitudes do not bias the delays.  Constraint
tau[ref] = phi[ref] = 0.

Initial guess: an FFT fringe fit (8x zero padding, uniform channel grid) of every baseline that
touches one of two hub antennas (the reference and the antenna with the most weight), combined into
per-antenna delays by weighted least squares over those baselines (weights = fringe peak amplitude),
so each antenna's delay rests on two independent baselines and no single edge decides it.  On a band
with a wide gap (:func:`is_gapped`: two chunks far apart make many fringe lobes of nearly equal height)
the fringe tops are compared exactly (:func:`_gapped_peak`), and the guess is taken to a fit in which no
antenna is better on another lobe (the stacked search below, then :func:`_lobe_polish`).

For the cells solved again (``CellBatch.init_search``: a cell with a hand flagged by minsnr or not
converged, :mod:`alakazam.solvers.weak_cells`; also after the no-signal re-solves) the cell's first
solution (``CellBatch.init_params``) is followed by up to :data:`STACK_PASSES` passes of a per-antenna
stacked fringe search: each antenna's baselines, with the other end's current delay and phase taken off,
are summed into one spectrum (the antenna's SNR, sqrt(n_ant - 1) times a baseline's) and FFT'd; an
antenna moves to that peak where its amplitude is :data:`STACK_GAIN` times the coherent amplitude at its
current delay and its S (the peak over its noise, sqrt(sum w |M|^2)) is at least ``nosignal.NOISE_S``:
the highest noise peak of a dead antenna passed minsnr 3 (S 3.2-3.3) and was stored unflagged hundreds
of ns off (a review). A weak cell's baselines have SNR ~4 (K per integration at noise 20, 8 antennas):
hub fringes landed on noise peaks, the fit stayed in a local minimum with the reference's hand
inconsistent with the others, and whole hands of a cell were flagged (104 of 140 live hands kept; now
138, each within 5 sigma of the scan's; tests/test_weak_cells.py). Not in every cell's first guess: it
costs 3x a 27-antenna cell's solve (bench_solvers.py, 5.5 -> 18 ms at 64 samples).

Fit (numba, one thread per cell and pol):

1. coarse passes: rotate z by the current delays and sum it into <= 64 frequency bins (with the
   bins' h-weighted mean kappa, h = w |M|^2); Levenberg-Marquardt on the binned fringes for the
   residual delays and the phases.  Binning after rotation loses < 1e-4 of the coherence, so the
   coarse solution is already within a small fraction of the noise of the final one;
   another pass is made only if the delays moved the phase across the band by more than 1 rad
   (a poor initial guess); at most 3 passes;
2. polish: Levenberg-Marquardt on the full-resolution fringes from there (usually one step), with
   the exact curvature of the phase-only cost, so the result is the maximum-likelihood solution of
   the full data and agrees with the other backends to ~1e-9.

On a uniform channel grid exp(-i theta) is advanced channel by channel by a phasor recurrence
(re-seeded exactly every 64 channels) instead of a sin/cos per sample.
"""

import numpy as np

from .._numba import njit, threaded
from .lm import converged_test, damped_step, norm

POL_CORR = (0, 3)
TWO_PI_NS = 2.0 * np.pi * 1e-9
N_BINS = 64          # coarse frequency bins of the first passes
MIN_SAMP_BINNED = 4 * N_BINS   # fewer samples than this: fit the full resolution directly
N_HUB = 2
#: the initial guess has a more thorough search for the cells solved again (solvers/weak_cells.py)
INIT_SEARCH = True
#: passes of the per-antenna stacked fringe search after the hub fit (module doc)
STACK_PASSES = 3
#: an antenna moves to its stacked fringe's peak only where that peak's amplitude is this many times the
#: coherent amplitude at its current delay (the fine peak of a right guess is within a few % of it)
STACK_GAIN = 1.2
RESYNC = 64


@njit
def _band_centre(weight, freq, out):
    for c in range(weight.shape[0]):
        num = 0.0
        n = 0
        for s in range(weight.shape[2]):
            has = False
            for b in range(weight.shape[1]):
                for k in range(weight.shape[3]):
                    if weight[c, b, s, k] > 0:
                        has = True
                        break
                if has:
                    break
            if has:
                num += freq[c, s]
                n += 1
        if n == 0:                     # no weighted sample: the plain mean (a loop: no array method,
            for s in range(freq.shape[1]):   # cheaper to compile)
                num += freq[c, s]
            n = freq.shape[1]
        out[c] = num / max(n, 1)


def band_centre(batch):
    """nu_c (n_cell,): mean frequency of the samples that carry weight (else of all samples)."""
    out = np.empty(batch.vis.shape[0])
    _band_centre(np.ascontiguousarray(batch.weight, np.float64),
                 np.ascontiguousarray(batch.freq, np.float64), out)
    return out


@njit
def _refine_peak(start, stride, y, k, nfft, kc, factor, tau_out, amp_out):
    """Rows range(start, n, stride) of y (n, n_samp) on grid channels k: the maximum of |DFT| over
    the fine grid (nfft points) within one coarse bin (factor fine points) of the coarse peak kc."""
    for i in range(start, y.shape[0], stride):
        best = -1.0
        kbest = 0
        for j in range(-factor, factor + 1):
            kf = kc[i] * factor + j
            st = np.exp(-2j * np.pi * kf / nfft)
            acc = 0j
            e = 1.0 + 0j
            kprev = 0
            for s in range(y.shape[1]):
                if s % RESYNC == 0:
                    e = np.exp(-2j * np.pi * ((kf * k[s]) % nfft) / nfft)
                else:
                    for _ in range(k[s] - kprev):
                        e = e * st
                kprev = k[s]
                acc += y[i, s] * e
            a = abs(acc)
            if a > best:
                best = a
                kbest = kf
        tau_out[i] = kbest
        amp_out[i] = best


#: a band with an empty stretch wider than this fraction of its channel grid is "gapped" (fringe_fft):
#: two groups of widths w around a gap g have lobes of relative height ~ sinc(w / (w + g)), near 1
#: (where the coarse FFT can rank a side lobe first) only for g of several w; scattered flags do not
#: make such lobes (their side lobes are ~ 1 / sqrt(n))
GAP_FRACTION = 0.25
#: at most this many lobes (the highest on the fine spectrum) are refined and compared on a gapped
#: band (fringe_fft, :func:`_gapped_peak`); all of those that can hold the highest top are, unless noise
#: makes more of them eligible than this
N_PEAKS = 64
#: Newton steps on |F|^2 from a lobe's interpolated top (each at most one fine grid step)
N_NEWTON = 6


def _gapped_peak(yy, k, nfft):
    """(fine peak index, fractional; amplitude) per row of a band with gaps (the samples ``yy`` on
    grid channels ``k``).

    Two groups of channels with a gap between them (channels 0-3 and 28-31: a selection around RFI;
    channels 40-99 and 1950-2009 of 2048) make fringe lobes one per 1 / (distance of the groups) of
    delay, many of them under the envelope of one group (1 / its width), of nearly equal height: a
    lobe next to the true one is lower by only 1 - sinc(w / d) (0.16% for 60-channel groups 1910
    channels apart).  A sample of the fine (``nfft``-point) spectrum can be off a lobe's top by
    1 - cos(pi / 8) (8 points a lobe) and a parabola through the samples misjudges it by more than
    that 0.16%: with the 4 highest samples interpolated and compared the fit started a lobe or more
    off in 3 of 200 noiseless fringes and the LM kept it, unflagged (5.36-96 ns on a 16-antenna
    uGMRT-like K, 600 ns on MeerKAT-like chunks; a review).  So every lobe whose sampled height can
    still belong to the highest top is refined: a sample within half a fine step (du) of a top of
    height H is at least H - (pi du max|q|)^2 / 2 sum|y| (the curvature of |F(u)|, F(u) = sum y
    exp(-2 pi i u q), is at most (2 pi max|q|)^2 sum|y|, q the channel from the grid centre), so
    the lobes within that of the highest sample (the :data:`N_PEAKS` highest of them) have their
    tops found by Newton on the exact |F|^2 from the interpolated maximum (:data:`N_NEWTON` steps of
    at most one fine step, staying on the lobe), and the highest exact top wins."""
    grid = np.zeros((yy.shape[0], nfft), np.complex128)
    if np.all(np.diff(k) > 0):
        grid[:, k] = yy
    else:                                   # several samples on one grid channel: sum them
        np.add.at(grid, (slice(None), k), yy)
    a = np.abs(np.fft.fft(grid, axis=-1))
    am, ap = np.roll(a, 1, axis=-1), np.roll(a, -1, axis=-1)
    p = np.where((a >= am) & (a >= ap), a, -1.0)
    q = (k - 0.5 * (k[0] + k[-1])).astype(np.float64)           # from the grid's centre: |F| unchanged
    qmax = float(np.max(np.abs(q)))
    margin = 0.5 * (np.pi * qmax / nfft) ** 2 * np.abs(yy).sum(axis=1)       # (n_row,)
    kq = -2j * np.pi * q
    kf = np.zeros(yy.shape[0])
    amp = np.zeros(yy.shape[0])
    for i in range(yy.shape[0]):
        pr = p[i]
        cand = np.flatnonzero(pr >= pr.max() * (1.0 - 1e-12) - margin[i])
        if len(cand) > N_PEAKS:
            cand = cand[np.argpartition(-pr[cand], N_PEAKS - 1)[:N_PEAKS]]
        left, mid, right = am[i, cand], a[i, cand], ap[i, cand]
        den = left - 2.0 * mid + right
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.clip(np.where(den < 0, 0.5 * (left - right) / den, 0.0), -0.5, 0.5)
        u = (cand + d) / nfft                                    # cycles per grid channel
        y = yy[i]
        for _ in range(N_NEWTON):
            e = np.exp(-2j * np.pi * np.outer(u, q))             # (n_cand, n_samp)
            F = e @ y
            F1 = e @ (kq * y)
            F2 = e @ (kq * kq * y)
            g = (np.conj(F) * F1).real
            h = np.abs(F1) ** 2 + (np.conj(F) * F2).real
            step = np.where(h < 0, -g / np.where(h < 0, h, -1.0), 0.0)
            step = np.clip(step, -1.0 / nfft, 1.0 / nfft)
            u = u + step
            if np.all(np.abs(step) <= 1e-13 * (np.abs(u) + 1.0 / nfft)):
                break
        top = np.abs(np.exp(-2j * np.pi * np.outer(u, q)) @ y)
        j = int(np.argmax(top))
        kf[i] = (u[j] * nfft) % nfft
        amp[i] = top[j]
    return kf, amp


def fringe_fft(y, freq, weight_present, pad=8):
    """Delay (ns) and peak amplitude of y(freq) ~ A exp(2 pi i tau 1e-9 freq) per leading index.

    y : (..., n_samp) complex; freq : (n_samp,); the samples are put on a uniform channel grid
    (spacing = the smallest frequency step).  The result is the peak of the pad x zero-padded FFT
    (default 8x): a 2x-padded FFT locates the peak, then the DFT on the pad x grid within one
    coarse bin of it picks the maximum (same answer, a quarter of the FFT work).
    """
    f = np.asarray(freq, float)
    ok = np.asarray(weight_present, bool)
    lead = y.shape[:-1]
    if ok.sum() < 2:
        return np.zeros(lead), np.zeros(lead)
    fu = np.unique(f[ok])
    df = np.min(np.diff(fu)) if len(fu) > 1 else 1.0
    k = np.rint((f[ok] - fu[0]) / df).astype(np.int64)
    order = np.argsort(k, kind="stable")
    k = k[order]
    yy = np.ascontiguousarray(y[..., ok][..., order].reshape(-1, len(k)), np.complex128)
    n = int(k[-1]) + 1
    nfft_c = int(2 ** np.ceil(np.log2(max(n, 2) * 2)))
    factor = max(1, int(2 ** np.ceil(np.log2(max(n, 2) * pad))) // nfft_c)
    grid = np.zeros((yy.shape[0], nfft_c), np.complex128)
    if np.all(np.diff(k) > 0):
        grid[:, k] = yy
    else:                                   # several samples on one grid channel: sum them
        np.add.at(grid, (slice(None), k), yy)
    # numpy's pocketfft: importing scipy.fft costs 0.1 s (scipy.special, docstrings) in a K/KC run;
    # the peak is located again by the DFT below, and the spectra are numpy's and scipy's alike (issue 16)
    spec = np.fft.fft(grid, axis=-1)
    power = spec.real ** 2 + spec.imag ** 2
    nfft = nfft_c * factor
    if n < 3 or int(np.max(np.diff(k))) - 1 <= GAP_FRACTION * n:   # no wide gap: the highest coarse peak
        kc = np.argmax(power, axis=-1).astype(np.int64)
        kf = np.empty(yy.shape[0])
        amp = np.empty(yy.shape[0])
        threaded(_refine_peak, yy.shape[0], yy, k, nfft, kc, factor, kf, amp)
    else:
        kf, amp = _gapped_peak(yy, k, nfft)
    # peak at k = tau df nfft for exp(+2 pi i tau f)
    kf = np.where(kf > nfft // 2, kf - nfft, kf)
    tau = kf / (nfft * df) * 1e9
    return tau.reshape(lead), amp.reshape(lead)


def _hubs(batch, c, ref):
    """The reference and the antenna (other than it) with the most weight on the parallel hands."""
    w = batch.weight[c, :, :, 0].sum(axis=1) + batch.weight[c, :, :, 3].sum(axis=1)   # (n_bl,)
    tot = np.zeros(batch.n_ant)
    np.add.at(tot, batch.ant1, w)
    np.add.at(tot, batch.ant2, w)
    tot[ref] = -1.0
    hubs = [int(ref)]
    for a in np.argsort(-tot, kind="stable")[:N_HUB - 1]:
        if tot[a] > 0:
            hubs.append(int(a))
    return hubs


def _unwrap_hub_fringes(dtau, amp, b1, b2, ref, n_ant, step):
    """In place: each hub baseline's fringe delay ``dtau`` (2, n_sel) (tau_b2 - tau_b1, from an FFT: known
    modulo 1/step) moved by a multiple of 1/step to the value the baselines to the reference predict
    (tau_b2 - tau_b1 of their fringes), where both antennas have one.  The reference's baselines fix
    each antenna's delay in the FFT's range, as CASA's K does; a baseline between two other antennas can
    exceed that range (+300 and -400 ns on 1 MHz channels: 700 ns, found at -300) and, combined as it came,
    pulled the least-squares guess hundreds of ns off, from which the fit did not recover (review 56b:
    delays of -112 ns stored for +300).  Only where the fringe is the prediction moved by whole periods
    (to an eighth of one): on weak data a fringe on a noise peak disagrees by anything, and is left to the
    least squares as before.  ``step`` None: the frequencies are on no uniform grid, nothing changes."""
    if step is None:
        return
    period = 1e9 / step
    for p in range(dtau.shape[0]):
        t0 = np.full(n_ant, np.nan)
        t0[ref] = 0.0
        for k in range(len(b1)):
            if amp[p, k] > 0 and b1[k] == ref:
                t0[b2[k]] = dtau[p, k]
            elif amp[p, k] > 0 and b2[k] == ref:
                t0[b1[k]] = -dtau[p, k]
        pred = t0[b2] - t0[b1]
        ok = np.isfinite(pred)
        k = np.zeros(len(b1))
        k[ok] = np.round((pred[ok] - dtau[p, ok]) / period)
        # only where the fringe is the prediction moved by whole periods (within an eighth of one):
        # an alias; a fringe on a noise peak (weak data) disagrees by anything and is left as it is
        ok &= (k != 0) & (np.abs(pred - dtau[p] - k * period) < period / 8)
        dtau[p, ok] += period * k[ok]


def initial_guess(batch, ref):
    """(n_cell, n_ant, 2, 2) float: [..., 0] tau ns, [..., 1] phi rad (relative to nu_c)."""
    n_cell = batch.vis.shape[0]
    n_ant = batch.n_ant
    nu_c = band_centre(batch)
    a1, a2 = batch.ant1, batch.ant2
    out = np.zeros((n_cell, n_ant, 2, 2))
    for c in range(n_cell):
        r = int(ref[c])
        hubs = _hubs(batch, c, r)
        sel = np.flatnonzero(np.isin(a1, hubs) | np.isin(a2, hubs))
        free = np.array([a for a in range(n_ant) if a != r], np.int64)
        col = -np.ones(n_ant, np.int64)
        col[free] = np.arange(len(free))
        A = np.zeros((len(sel), len(free)))
        rows = np.arange(len(sel))
        m2 = col[a2[sel]] >= 0
        m1 = col[a1[sel]] >= 0
        A[rows[m2], col[a2[sel]][m2]] += 1.0
        A[rows[m1], col[a1[sel]][m1]] -= 1.0
        # fringes of the hub baselines, (2, n_sel, n_samp)
        w = np.moveaxis(batch.weight[c][sel][:, :, POL_CORR], 2, 0)
        y = w * np.moveaxis(batch.vis[c][sel][:, :, POL_CORR], 2, 0) * np.conj(
            np.moveaxis(batch.model[c][sel][:, :, POL_CORR], 2, 0))
        present = (w > 0).any(axis=(0, 1))
        # y ~ exp(i(phi_a1 - phi_a2)) exp(-2 pi i (tau_a1 - tau_a2) nu): a fringe of
        # exp(+2 pi i tau f) with tau = tau_a2 - tau_a1
        dtau, amp = fringe_fft(y, batch.freq[c], present)
        amp = amp * (w > 0).any(axis=2)
        _unwrap_hub_fringes(dtau, amp, a1[sel], a2[sel], r, n_ant, grid_step(batch.freq[c][present]))
        dnu = batch.freq[c] - nu_c[c]
        for p in range(2):
            # weighted LS: tau_a2 - tau_a1 = dtau over the hub baselines, tau_ref = 0
            AtA = (A * amp[p][:, None]).T @ A
            Atb = (A * amp[p][:, None]).T @ dtau[p]
            d = np.diag(AtA).copy()
            AtA[np.diag_indices_from(AtA)] = np.where(d > 0, d, 1.0)
            t_all = np.zeros(n_ant)
            t_all[free] = np.linalg.solve(AtA, Atb)
            out[c, :, p, 0] = t_all
            # phases: the delay-corrected baselines to the reference
            on = np.flatnonzero((a1[sel] == r) | (a2[sel] == r))      # rows of y
            bl = sel[on]
            rot = np.exp(1j * TWO_PI_NS * (t_all[a1[bl]] - t_all[a2[bl]])[:, None] * dnu[None, :])
            s = (y[p, on] * rot).sum(axis=1)
            for b, sb in zip(bl, s):
                if sb == 0:
                    continue
                if a1[b] == r:
                    out[c, a2[b], p, 1] = -np.angle(sb)
                else:
                    out[c, a1[b], p, 1] = np.angle(sb)
        gapped = is_gapped(batch.freq[c], present)
        if batch.init_search:
            if batch.init_params is not None:          # from the cell's first solution (weak_cells)
                p0 = np.asarray(batch.init_params[c], float)
                out[c] = np.where(np.isfinite(p0), p0, out[c])
        if batch.init_search or gapped:
            _stacked_search(batch, c, r, -TWO_PI_NS * dnu, out[c])
        if gapped:
            _lobe_polish(batch, c, r, nu_c[c], -TWO_PI_NS * dnu, out[c])
    return out


def is_gapped(freq, present):
    """A band with an empty stretch of more than :data:`GAP_FRACTION` of its channel grid (the samples
    ``present`` of ``freq``; the test of :func:`fringe_fft`): its fringes have many lobes of nearly equal
    height."""
    f = np.unique(np.asarray(freq, float)[np.asarray(present, bool)])
    if len(f) < 2:
        return False
    df = np.min(np.diff(f))
    k = np.rint((f - f[0]) / df).astype(np.int64)
    n = int(k[-1]) + 1
    return n >= 3 and int(np.max(np.diff(k))) - 1 > GAP_FRACTION * n


#: passes of the lobe check on a gapped band (:func:`_lobe_polish`)
LOBE_PASSES = 4
#: the lobe check moves an antenna to another lobe of its stacked fringe where that lobe's top is higher
#: than the coherent amplitude at its solved delay by more than rounding (the chi2 then drops by twice
#: the difference)
LOBE_GAIN = 1.0 + 1e-9


def _lobe_polish(batch, c, r, nu_c, kappa, out_c):
    """Cell ``c`` on a gapped band: its initial params ``out_c`` (n_ant, 2, 2), in place, made a fit in
    which no antenna's delay is better on another lobe.

    The hub baselines' fringes each find their own highest lobe, and a baseline whose SNR leaves the
    lobes undecided (while the antenna's, from all its baselines, does not) moves the least-squares
    delays of every antenna by a fraction of a lobe; the stacked search (STACK_GAIN) takes the ones
    left between lobes to their antenna's best, and the LM from there reached a local minimum with
    antennas one lobe off (5 of 36 hands at 10 antennas, 60 + 60 of 2048 uGMRT channels, chi2 15-70
    above the fit from the truth).  So: up to :data:`LOBE_PASSES` times, the LM (:func:`lm_batch`) on the
    cell, then one pass of the stacked search moving an antenna to the exact top (fringe_fft on a gapped
    band) of another lobe wherever it is higher than at its solution (:data:`LOBE_GAIN`; the chi2 with
    the other antennas held drops by twice the difference), until no antenna moves.  The backend's
    solve then starts at (or next to) that minimum."""
    from . import SolveOptions

    opts = SolveOptions()
    ref = np.array([r], np.int64)
    sl = slice(c, c + 1)
    args = (np.ascontiguousarray(batch.vis[sl], np.complex128),
            np.ascontiguousarray(batch.model[sl], np.complex128),
            np.ascontiguousarray(batch.weight[sl], np.float64),
            np.ascontiguousarray(batch.freq[sl], np.float64), np.array([nu_c], np.float64),
            uniform_grid(batch.freq[sl]), np.ascontiguousarray(batch.ant1, np.int64),
            np.ascontiguousarray(batch.ant2, np.int64))
    for _ in range(LOBE_PASSES):
        p = np.where(np.isfinite(out_c), out_c, 0.0)[None].copy()
        n_iter = np.zeros((1, 2), np.int64)
        conv = np.zeros((1, 2), bool)
        cost = np.zeros((1, 2))
        lm_batch(*args, p, ref, int(opts.max_iter), float(opts.tol), n_iter, conv, cost)
        if not np.isfinite(p).all():
            return
        out_c[:] = p[0]
        if not _stacked_search(batch, c, r, kappa, out_c, gain=LOBE_GAIN, passes=1):
            return


def search_would_move(batch, params):
    """(n_cell,) bool: the cells in which one pass of the stacked fringe search (module doc) from the
    solved ``params`` (n_cell, n_ant, 2, 2) would move some antenna -- the weak cells worth solving
    again (:mod:`alakazam.solvers.weak_cells`): in a cell weak only because an antenna is dead, nothing
    moves (its noise peaks are below NOISE_S) and the second solve would repeat the first."""
    nu_c = band_centre(batch)
    p = np.where(np.isfinite(params), params, 0.0)
    return np.array([_stacked_search(batch, c, 0, -TWO_PI_NS * (batch.freq[c] - nu_c[c]), p[c].copy(),
                                     check=True) for c in range(batch.n_cell)], bool)


def _stacked_search(batch, c, r, kappa, out_c, check=False, gain=STACK_GAIN, passes=STACK_PASSES):
    """Cell ``c``'s initial delays and phases ``out_c`` (n_ant, 2, 2), in place: up to ``passes``
    passes of a per-antenna stacked fringe search (module doc; an antenna moves where the peak is
    ``gain`` times its current coherent amplitude), then referenced to ``r`` (tau = phi = 0).
    ``check``: only whether the first pass moves an antenna (``out_c`` not changed).  Returns whether
    some antenna moved."""
    a1, a2 = batch.ant1, batch.ant2
    n_ant = batch.n_ant
    w = np.moveaxis(batch.weight[c][:, :, POL_CORR], 2, 0)                       # (2, n_bl, n_samp)
    y = w * np.moveaxis(batch.vis[c][:, :, POL_CORR], 2, 0) * np.conj(
        np.moveaxis(batch.model[c][:, :, POL_CORR], 2, 0))
    present = (w > 0).any(axis=(0, 1))
    on = (w > 0).any(axis=2)                                                     # (2, n_bl)
    has = np.zeros((2, n_ant), bool)
    for p in range(2):
        np.logical_or.at(has[p], a1, on[p])
        np.logical_or.at(has[p], a2, on[p])
    inc1 = np.zeros((n_ant, len(a1)))
    inc1[a1, np.arange(len(a1))] = 1.0
    inc2 = np.zeros((n_ant, len(a2)))
    inc2[a2, np.arange(len(a2))] = 1.0
    tau = out_c[:, :, 0].T.copy()                                                # (2, n_ant)
    phi = out_c[:, :, 1].T.copy()
    # the noise of an antenna's stacked fringe: sqrt(sum w |M|^2) over its baselines
    h = (w * np.abs(np.moveaxis(batch.model[c][:, :, POL_CORR], 2, 0)) ** 2).sum(axis=2)   # (2, n_bl)
    noise = np.sqrt(h @ inc1.T + h @ inc2.T)                                     # (2, n_ant)
    from .nosignal import NOISE_S
    moved = False
    for _ in range(passes):
        e = np.exp(1j * (phi[:, :, None] + kappa[None, None, :] * tau[:, :, None]))   # (2, n_ant, n_samp)
        # each antenna's baselines with the other end's current term taken off: ~ its own term e_a
        z = inc1 @ (y * e[:, a2]) + inc2 @ (np.conj(y) * e[:, a1])
        cur = np.abs((z * np.conj(e)).sum(axis=2))
        t_new, amp = fringe_fft(np.conj(z), batch.freq[c], present)              # conj: exp(+2 pi i tau nu)
        # a peak that noise would give (S < NOISE_S: a fit to a dead antenna's noise finds ~3.3 at the
        # highest of its delays) is not followed: the search would store a dead hand at its noise peak
        move = has & (amp > gain * cur) & (amp >= NOISE_S * noise)
        if check:
            return bool(move.any())
        if not move.any():
            break
        moved = True
        tau[move] = t_new[move]
        rot = np.exp(-1j * kappa[None, None, :] * tau[:, :, None])
        phi[move] = np.angle((z * rot).sum(axis=2))[move]
    out_c[:, :, 0] = (tau - tau[:, r:r + 1]).T
    out_c[:, :, 1] = np.angle(np.exp(1j * (phi - phi[:, r:r + 1]))).T
    return moved


# ---------------------------------------------------------------------------------------------
# numba kernels


@njit
def _scatter(jtj, jtr, i1, i2, g0, g1, h0, h1, h2):
    """Add one baseline's sums to the normal equations; params [phi, tau] per antenna, the baseline
    coefficients are (+1, +kappa) for ant1 and (-1, -kappa) for ant2."""
    if i1 >= 0:
        jtr[i1] += g0
        jtr[i1 + 1] += g1
        jtj[i1, i1] += h0
        jtj[i1, i1 + 1] += h1
        jtj[i1 + 1, i1] += h1
        jtj[i1 + 1, i1 + 1] += h2
    if i2 >= 0:
        jtr[i2] -= g0
        jtr[i2 + 1] -= g1
        jtj[i2, i2] += h0
        jtj[i2, i2 + 1] += h1
        jtj[i2 + 1, i2] += h1
        jtj[i2 + 1, i2 + 1] += h2
    if i1 >= 0 and i2 >= 0:
        jtj[i1, i2] -= h0
        jtj[i2, i1] -= h0
        jtj[i1, i2 + 1] -= h1
        jtj[i2 + 1, i1] -= h1
        jtj[i1 + 1, i2] -= h1
        jtj[i2, i1 + 1] -= h1
        jtj[i1 + 1, i2 + 1] -= h2
        jtj[i2 + 1, i1 + 1] -= h2


@njit
def _normal_eq(z, kap, uniform, ant1, ant2, tau, phi, index):
    """Normal equations of the phase-only cost at (tau, phi) and sum Re(u), u = exp(-i theta) z.

    z (n_bl, n_x) complex fringes; kappa per sample from kap (1, n_x) or per baseline and sample
    from kap (n_bl, n_x); uniform (int) != 0: kap is (1, n_x) on a uniform grid (phasor recurrence).
    jtr = 1/2 d chi2/dx, jtj = 1/2 d2 chi2/dx2 with the per-sample
    curvature Re(u) clamped at 0 far from the minimum (LM damping does the rest):
    the exact curvature, not Gauss-Newton's w|M|^2 -- the amplitude is not fitted, so |V| != |M| and
    Gauss-Newton would converge only linearly.
    """
    n_par = 2 * (index.shape[0] - 1)
    jtj = np.zeros((n_par, n_par))
    jtr = np.zeros(n_par)
    sre = 0.0
    n_bl, n_x = z.shape
    kap_bl = kap.shape[0] > 1
    for b in range(n_bl):
        a1 = ant1[b]
        a2 = ant2[b]
        dt = tau[a1] - tau[a2]
        dp = phi[a1] - phi[a2]
        g0 = 0.0
        g1 = 0.0
        h0 = 0.0
        h1 = 0.0
        h2 = 0.0
        e = 0j
        st = 0j
        if uniform:
            st = np.exp(-1j * (kap[0, 1] - kap[0, 0]) * dt)
        for s in range(n_x):
            k = kap[b, s] if kap_bl else kap[0, s]
            if (not uniform) or s % RESYNC == 0:
                e = np.exp(-1j * (dp + k * dt))
            zz = z[b, s]
            if zz.real != 0.0 or zz.imag != 0.0:
                ur = e.real * zz.real - e.imag * zz.imag
                ui = e.real * zz.imag + e.imag * zz.real
                sre += ur
                g0 -= ui
                g1 -= k * ui
                if ur > 0:
                    h0 += ur
                    h1 += k * ur
                    h2 += k * k * ur
            if uniform:
                e = e * st
        _scatter(jtj, jtr, index[a1], index[a2], g0, g1, h0, h1, h2)
    return jtj, jtr, sre


@njit(inline="always")
def _lm(z, kap, uniform, ant1, ant2, tau, phi, ref, c0, lam0, max_iter, tol):
    """LM on the fringes z; tau, phi (n_ant,) updated in place; chi2 = c0 - 2 sum Re(u); lam0 the
    initial damping (small when starting next to the minimum).  A step that changes chi2 by less
    than the rounding error of the sum (1e-13 relative) counts as accepted, so a start at the
    minimum converges in one iteration instead of damping up on rounding noise; when the next
    step is negligible the minimum is reached without another evaluation.
    Returns (n_iter, converged, sum Re(u)).  (One call site of _normal_eq: it is inlined.)"""
    n_ant = tau.shape[0]
    index = -np.ones(n_ant, np.int64)
    k = 0
    for a in range(n_ant):
        if a != ref:
            index[a] = k
            k += 2
    n_par = k
    tau[ref] = 0.0
    phi[ref] = 0.0
    lam = lam0
    tau_c = np.empty(n_ant)      # the candidate point to evaluate (element loops, not copy(): cheaper
    phi_c = np.empty(n_ant)      # to compile)
    for a in range(n_ant):
        tau_c[a] = tau[a]
        phi_c[a] = phi[a]
    jtj = np.zeros((n_par, n_par))
    jtr = np.zeros(n_par)
    sre = 0.0
    step = np.zeros(n_par)
    first = True
    conv = False
    it = np.int64(0)      # not a literal 0: damped_step compiles once (int64), not twice
    while True:
        jtj_n, jtr_n, sre_n = _normal_eq(z, kap, uniform, ant1, ant2, tau_c, phi_c, index)
        if first or sre_n >= sre - 1e-13 * abs(sre):      # chi2 = c0 - 2 sre did not increase
            done = False
            if not first:
                xn = 0.0
                for a in range(n_ant):
                    xn += tau[a] * tau[a] + phi[a] * phi[a]
                done = converged_test(c0 - 2.0 * sre, c0 - 2.0 * sre_n, norm(step), np.sqrt(xn), tol)
                lam = max(lam * 0.1, 1e-12)
            for a in range(n_ant):
                tau[a] = tau_c[a]
                phi[a] = phi_c[a]
            jtj, jtr, sre = jtj_n, jtr_n, sre_n
            first = False
            if done:
                conv = True
                break
        else:
            lam *= 10.0
            if lam > 1e12:
                conv = True      # no further decrease possible: at the minimum to machine precision
                break
        # next candidate: damped Newton step from the current point
        step, ok, lam, it = damped_step(jtj, jtr, lam, it, max_iter)
        if not ok:
            break
        xn = 0.0
        for a in range(n_ant):
            xn += tau[a] * tau[a] + phi[a] * phi[a]
        if norm(step) <= 1e-10 * (np.sqrt(xn) + 1e-3):
            conv = True          # the next step is negligible: at the minimum
            break
        for a in range(n_ant):
            i = index[a]
            tau_c[a] = tau[a] + (step[i + 1] if i >= 0 else 0.0)
            phi_c[a] = phi[a] + (step[i] if i >= 0 else 0.0)
    return it, conv, sre


@njit
def _fringes(vis, model, weight, corr, z):
    """z = w conj(M) V per (baseline, sample); returns (sum w|V|^2 + sum w|M|^2)."""
    c0 = 0.0
    for b in range(vis.shape[0]):
        for s in range(vis.shape[1]):
            w = weight[b, s, corr]
            if w > 0:
                v = vis[b, s, corr]
                m = model[b, s, corr]
                z[b, s] = (w * (m.real * v.real + m.imag * v.imag)
                           + 1j * w * (m.real * v.imag - m.imag * v.real))
                c0 += w * (v.real * v.real + v.imag * v.imag + m.real * m.real + m.imag * m.imag)
            else:
                z[b, s] = 0.0
    return c0


@njit
def _bin_kappa(model, weight, corr, kap, bin_of, n_bins, kb):
    """kb (n_bl, n_bins): h-weighted mean kappa of each bin, h = w |M|^2 (bin centre if empty)."""
    n_bl, n_x = model.shape[0], model.shape[1]
    num = np.zeros(n_bins)
    den = np.zeros(n_bins)
    cnt = np.zeros(n_bins)
    ctr = np.zeros(n_bins)
    for s in range(n_x):
        ctr[bin_of[s]] += kap[s]
        cnt[bin_of[s]] += 1.0
    for b in range(n_bl):
        for k in range(n_bins):
            num[k] = 0.0
            den[k] = 0.0
        for s in range(n_x):
            w = weight[b, s, corr]
            if w > 0:
                m = model[b, s, corr]
                h = w * (m.real * m.real + m.imag * m.imag)
                num[bin_of[s]] += h * kap[s]
                den[bin_of[s]] += h
        for k in range(n_bins):
            kb[b, k] = num[k] / den[k] if den[k] > 0 else ctr[k] / max(cnt[k], 1.0)


@njit
def _bin_rotated(z, kap, uniform, bin_of, ant1, ant2, tau, zb):
    """zb[b, k] = sum over bin k of z exp(-i kappa (tau_a1 - tau_a2))."""
    n_bl, n_x = z.shape
    for b in range(n_bl):
        dt = tau[ant1[b]] - tau[ant2[b]]
        for k in range(zb.shape[1]):
            zb[b, k] = 0.0
        e = 0j
        st = 0j
        if uniform:
            st = np.exp(-1j * (kap[1] - kap[0]) * dt)
        for s in range(n_x):
            if (not uniform) or s % RESYNC == 0:
                e = np.exp(-1j * kap[s] * dt)
            zz = z[b, s]
            if zz.real != 0.0 or zz.imag != 0.0:
                zb[b, bin_of[s]] += zz * e
            if uniform:
                e = e * st


@njit
def _lm_items(start, stride, vis_all, model_all, weight_all, freq_all, nu_c_all, uniform_all, ant1,
              ant2, params, ref_all, max_iter, tol, n_iter, conv_out, cost):
    """Items j = 2 c + p (cell c, pol p) in range(start, 2 n_cell, stride); each writes only its own
    (cell, pol) outputs.  The per-item solve is written out here rather than called: one function
    less for LLVM to optimise twice (first-call compile time, issue 3)."""
    n_cell = vis_all.shape[0]
    n_ant = params.shape[1]
    for j in range(start, 2 * n_cell, stride):
        c = j // 2
        p = j % 2
        corr = 0 if p == 0 else 3
        vis = vis_all[c]
        model = model_all[c]
        weight = weight_all[c]
        freq = freq_all[c]
        nu_c = nu_c_all[c]
        ref = ref_all[c]
        tau = np.empty(n_ant)
        phi = np.empty(n_ant)
        for a in range(n_ant):
            tau[a] = params[c, a, p, 0]
            phi[a] = params[c, a, p, 1]
        n_bl, n_x = vis.shape[0], vis.shape[1]
        kap = np.empty(n_x)
        kspan = 0.0
        for s in range(n_x):
            kap[s] = -2.0 * np.pi * 1e-9 * (freq[s] - nu_c)
            kspan = max(kspan, abs(kap[s]))
        z = np.empty((n_bl, n_x), np.complex128)
        c0 = _fringes(vis, model, weight, corr, z)
        kap2 = np.empty((1, n_x))
        for s in range(n_x):
            kap2[0, s] = kap[s]
        uni = 1 if uniform_all[c] else 0
        binned = n_x >= MIN_SAMP_BINNED
        nb = N_BINS if binned else 1
        bin_of = np.empty(n_x, np.int64)
        for s in range(n_x):
            bin_of[s] = s * nb // n_x
        kb = np.empty((n_bl, nb))
        zb = np.empty((n_bl, nb), np.complex128)
        if binned:
            _bin_kappa(model, weight, corr, kap, bin_of, nb, kb)
        dtau = np.zeros(n_ant)
        n_it = 0
        conv = False
        sre = 0.0
        # stages 0..2: coarse binned passes (residual delay dtau); last stage: full resolution.
        # One call site of _lm (compile time grows with every inlined copy).
        stage = 0 if binned else 3
        while True:
            full = stage == 3
            if not full:
                _bin_rotated(z, kap, uni, bin_of, ant1, ant2, tau, zb)
                for a in range(n_ant):
                    dtau[a] = 0.0
            it, conv, sre = _lm(z if full else zb, kap2 if full else kb, uni if full else 0, ant1,
                                ant2, tau if full else dtau, phi, ref, c0,
                                1e-3 if stage == 0 or (full and n_it == 0) else 1e-8, max_iter, tol)
            n_it += it
            if full:
                break
            big = 0.0
            for a in range(n_ant):
                tau[a] += dtau[a]
                big = max(big, abs(dtau[a]))
            stage = 3 if (2.0 * big * kspan < 1.0 or stage == 2) else stage + 1
        for a in range(n_ant):
            params[c, a, p, 0] = tau[a]
            params[c, a, p, 1] = phi[a]
        n_iter[c, p] = n_it
        conv_out[c, p] = conv
        cost[c, p] = max(c0 - 2.0 * sre, 0.0)      # (an exact fit: rounding could make it < 0)


def lm_batch(vis, model, weight, freq, nu_c, uniform, ant1, ant2, params, ref, max_iter, tol,
             n_iter, conv, cost):
    """In place: params (n_cell, n_ant, 2, 2); n_iter/conv/cost (n_cell, 2).  One (cell, pol) per
    item, spread over numba's threads (:func:`alakazam._numba.threaded`)."""
    threaded(_lm_items, 2 * vis.shape[0], vis, model, weight, freq, nu_c, uniform, ant1, ant2, params,
             ref, max_iter, tol, n_iter, conv, cost)


def uniform_grid(freq):
    """(n_cell,) bool: the cell's sample frequencies are equally spaced (phasor recurrence allowed)."""
    if freq.shape[1] < 2:
        return np.zeros(freq.shape[0], bool)
    d = np.diff(freq, axis=1)
    return np.all(np.abs(d - d[:, :1]) <= 1e-9 * np.abs(d[:, :1]), axis=1) & (d[:, 0] != 0)


@njit
def _sums_items(start, stride, vis, model, weight, freq, nu_c, uniform, ant1, ant2, params, out, num, den):
    """For K params (n_cell, n_ant, 2, 2) and V^ the model of :func:`model_vis`: out (n_cell, 2) =
    sum w |V - V^|^2, and num, den (n_cell, n_bl, 2) = sum w Re(conj(V^) V), sum w |V^|^2, on pp and
    qq; items j = 2 c + p in range(start, 2 n_cell, stride).  One kernel for :func:`chi2` and
    :func:`matched_sums` (one compilation)."""
    n_cell = vis.shape[0]
    n_x = vis.shape[2]
    for j in range(start, 2 * n_cell, stride):
        c = j // 2
        p = j % 2
        corr = 0 if p == 0 else 3
        acc = 0.0
        for b in range(vis.shape[1]):
            a1 = ant1[b]
            a2 = ant2[b]
            dt = params[c, a1, p, 0] - params[c, a2, p, 0]
            dp = params[c, a1, p, 1] - params[c, a2, p, 1]
            e = 0j
            st = 0j
            if uniform[c]:
                st = np.exp(-1j * 2.0 * np.pi * 1e-9 * (freq[c, 1] - freq[c, 0]) * dt)
            sn = 0.0
            sd = 0.0
            for s in range(n_x):
                if (not uniform[c]) or s % RESYNC == 0:
                    e = np.exp(1j * (dp - 2.0 * np.pi * 1e-9 * (freq[c, s] - nu_c[c]) * dt))
                w = weight[c, b, s, corr]
                if w > 0:
                    m = e * model[c, b, s, corr]
                    v = vis[c, b, s, corr]
                    r = v - m
                    acc += w * (r.real * r.real + r.imag * r.imag)
                    sn += w * (m.real * v.real + m.imag * v.imag)
                    sd += w * (m.real * m.real + m.imag * m.imag)
                if uniform[c]:
                    e = e * st
            num[c, b, p] = sn
            den[c, b, p] = sd
        out[c, p] = acc


def _sums(params, batch):
    out = np.zeros((batch.n_cell, 2))
    num = np.zeros((batch.n_cell, len(batch.ant1), 2))
    den = np.zeros_like(num)
    if batch.n_cell:
        threaded(_sums_items, 2 * batch.n_cell, batch.vis, batch.model, batch.weight, batch.freq,
                 band_centre(batch), uniform_grid(batch.freq), batch.ant1, batch.ant2,
                 np.ascontiguousarray(params, np.float64), out, num, den)
    return out, num, den


def chi2(params, batch):
    """(n_cell,) final cost sum w |V - model|^2 over pp and qq (numba; same maths as model_vis)."""
    return _sums(params, batch)[0].sum(axis=1)


def matched_sums(params, batch):
    """(num, den) (n_cell, n_bl, 2) per parallel hand: sum w Re(conj(V^) V), sum w |V^|^2 at K params
    (:func:`alakazam.solvers.quality.matched_snr`; one compiled pass, no model array)."""
    _, num, den = _sums(params, batch)
    return num, den


def model_vis(params, batch):
    """Model (n_cell, n_bl, n_samp, 4) for K params (n_cell, n_ant, 2, 2) (pp, qq only)."""
    nu_c = band_centre(batch)
    out = np.zeros_like(batch.model)
    dnu = batch.freq - nu_c[:, None]                       # (n_cell, n_samp)
    for p, corr in enumerate(POL_CORR):
        tau = params[:, :, p, 0]
        phi = params[:, :, p, 1]
        dt = (tau[:, batch.ant1] - tau[:, batch.ant2])[:, :, None]
        dp = (phi[:, batch.ant1] - phi[:, batch.ant2])[:, :, None]
        th = dp - TWO_PI_NS * dt * dnu[:, None, :]
        out[..., corr] = np.exp(1j * th) * batch.model[..., corr]
    return out


def solve_numba(batch, init, ref, opts):
    """numba backend: LM per (cell, pol); the returned cost is the final chi2 (numba_backend)."""
    n_cell = batch.n_cell
    ref = np.ascontiguousarray(ref, np.int64)
    p = np.ascontiguousarray(init, np.float64).copy()
    nu_c = band_centre(batch)
    n_iter = np.zeros((n_cell, 2), np.int64)
    conv = np.zeros((n_cell, 2), bool)
    cost = np.zeros((n_cell, 2))
    uniform = uniform_grid(batch.freq)
    lm_batch(batch.vis, batch.model, batch.weight, batch.freq, nu_c, uniform,
             batch.ant1, batch.ant2, p, ref, int(opts.max_iter), float(opts.tol), n_iter, conv, cost)
    return p, n_iter.max(axis=1), conv.all(axis=1), cost.sum(axis=1)


#: :func:`reference` takes the batch (the cells' frequency grids: :func:`wrap_delays`)
REFERENCE_USES_BATCH = True


def reference(params, ref, batch=None):
    """tau[ref] = phi[ref] = 0 per pol; then every delay in its cell's principal range
    (:func:`wrap_delays`, given the batch)."""
    p = params.copy()
    p -= p[np.arange(p.shape[0]), ref][:, None]
    if batch is not None:
        wrap_delays(p, batch)
    return p


def grid_step(freq):
    """The step d (Hz, > 0) of a uniform grid nu_0 + n d (n integer) that holds every frequency of
    ``freq`` (one cell's samples: the channels of a selection, with gaps or a step), or None (fewer than
    two frequencies, or none such to 1e-6 of d)."""
    f = np.unique(np.asarray(freq, float))
    if len(f) < 2:
        return None
    d = float(np.min(np.diff(f)))
    if not d > 0:
        return None
    n = (f - f[0]) / d
    return d if np.all(np.abs(n - np.round(n)) <= 1e-6) else None


def wrap_delays(params, batch):
    """In place: each antenna's delay per hand moved by a multiple of 1/d into [-1/(2d), 1/(2d)) (d: the
    cell's channel step, :func:`grid_step`; relative to the reference, whose delay is 0), and its
    nuisance phase by -2 pi k (nu_0 - nu_c) / d, so that the model is the same at every sample: on a grid
    nu_0 + n d, exp(-2 pi i (k/d) (nu - nu_c)) is that one phase.  The data cannot tell the delays apart;
    CASA's K returns this one (its FFT's range).  The fit converged to another where the delay of a
    baseline exceeded 1/(2d) -- antennas at +300 and -400 ns on 1 MHz channels came out at -700 ns, where
    CASA gives +300 -- and on another frequency grid (an SPW half a channel off, through spwmap) that
    delay's phases were pi off on every baseline of the antenna (review 56b).  A cell whose frequencies lie
    on no such grid is left as it is (its data do tell the delays apart)."""
    nu_c = band_centre(batch)
    for c in range(params.shape[0]):
        d = grid_step(batch.freq[c])
        if d is None:
            continue
        period = 1e9 / d                                     # ns
        k = np.round(params[c, :, :, 0] / period)
        if not k.any():
            continue
        params[c, :, :, 0] -= k * period
        params[c, :, :, 1] -= 2.0 * np.pi * k * ((batch.freq[c, 0] - nu_c[c]) / d)


def to_jones(params, batch):
    """diag(exp(-2 pi i tau_p nu_c), exp(-2 pi i tau_q nu_c)) at the band centre, and the delays."""
    J = np.zeros((batch.n_cell, batch.n_ant, 2, 2), np.complex128)
    nu_c = band_centre(batch)
    tau = params[..., 0]                                          # (n_cell, n_ant, 2)
    ph = np.exp(-1j * TWO_PI_NS * tau * nu_c[:, None, None])
    J[..., 0, 0] = ph[..., 0]
    J[..., 1, 1] = ph[..., 1]
    return J, tau.copy()
