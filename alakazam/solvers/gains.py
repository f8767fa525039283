"""G: complex gains diag(g_p, g_q) per antenna, solved on the parallel hands.

.. math:: V_{ab,pp} = g_{a,p} M_{ab,pp} \\overline{g_{b,p}}

Reference: arg g[ref] = 0 per pol (applied in :mod:`alakazam.solvers.common`); amplitude free;
``phase_only`` keeps |g| = 1; ``amp_only`` (CASA calmode='a') keeps g real and positive: the
per-antenna update is then the real-constrained least-squares one, Re(sum w z* v) / sum w |z|^2
(an update <= 0 keeps the previous value).  The numba solver is StEFCal (Salvini & Wijnholds 2014): each
antenna's gain is replaced by its exact weighted least-squares value given the others (for phase-only,
the exact best phase), alternating with the average of the last two iterates; it converges to the
least-squares solution, but slowly where gains differ widely in amplitude (one antenna 70x the
others: ~1 - 1/70^2 per iteration).  Where its step shrinks by less than CRAWL over two iterations
(or after STEFCAL_MAX iterations) Gauss-Newton on the whole normal matrix finishes the (cell, pol)
(:mod:`alakazam.solvers.gains_newton`); where Gauss-Newton does not converge StEFCal resumes
from where it handed over, so its result is then the previous one.  Initial guess: gain ratios on
baselines to the reference antenna.
"""

import numpy as np

from .._numba import njit, threaded
from .gains_newton import gauss_newton

POL_CORR = (0, 3)
#: StEFCal hands over to Gauss-Newton (:mod:`alakazam.solvers.gains_newton`) when its relative step
#: shrinks by less than CRAWL over two iterations (checked from iteration 8), or after STEFCAL_MAX
#: iterations without converging.  Measured on sim.cells G batches (gains 0.8-1.2): the step shrinks by
#: 0.16 (median) to 0.45 (90th percentile) per two iterations at SNR >= 30 per visibility, 0.24 / 0.55
#: at SNR 3; no cell of 7-27 antennas at SNR >= 3 hands over (results bit for bit as before), most
#: cells of 3 antennas do (StEFCal alone took up to 68 iterations there, now <= 44), and so do most
#: cells at SNR 1.  With one antenna 70x the others it shrinks by 0.9999.
CRAWL = 0.6
STEFCAL_MAX = 40
#: at most this many Gauss-Newton iterations (2-8 on the wide-gain cases measured; one cell of 4
#: antennas at SNR 3 per visibility needed more than 20)
GN_MAX = 50


def initial_guess(batch, ref):
    """(n_cell, n_ant, 2) complex from the weighted gain ratios r_a = <V conj(M)> / <|M|^2>
    (= g_a conj(g_ref)) on the baselines (ref, a): g_ref = s, g_a = r_a / s, with s = sqrt(median |r_a|)
    over the antennas that have one (per cell and hand), and s where a baseline has no usable data.

    s puts every antenna at the data's amplitude scale: with g_ref = 1 (before) data far from the
    model's scale -- raw correlator units, e.g. gains of 0.01 (DATA 1e-4 of MODEL_DATA) -- started the
    other antennas at |g|^2 and the products g_a conj(g_b) at |g|^4, and no solution converged within
    maxiter (review 56b); at a scale near 1, s is near 1.

    numpy, vectorised over cells (a numba kernel here cost 0.6 s of first-call compile for a step
    that takes milliseconds)."""
    n_cell, n_ant = batch.n_cell, batch.n_ant
    ref = np.asarray(ref, np.int64)
    g = np.ones((n_cell, n_ant, 2), np.complex128)
    a1 = np.asarray(batch.ant1, np.int64)
    a2 = np.asarray(batch.ant2, np.int64)
    on1 = a1[None, :] == ref[:, None]                 # (n_cell, n_bl): baseline (ref, a2)
    on2 = a2[None, :] == ref[:, None]                 # baseline (a1, ref)
    cells, bls = np.nonzero(on1 | on2)
    if len(cells) == 0:
        return g
    for p, corr in enumerate(POL_CORR):
        w = batch.weight[cells, bls, :, corr]             # (n_sel, n_samp)
        ok = w > 0
        v = batch.vis[cells, bls, :, corr]
        m = batch.model[cells, bls, :, corr]
        num = np.where(ok, w * v * np.conj(m), 0).sum(axis=1)
        den = np.where(ok, w * (m.real ** 2 + m.imag ** 2), 0).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = num / den
        good = (den > 0) & np.isfinite(ratio) & (ratio != 0)
        first = on1[cells, bls]                            # ref is ant1: g_a2 = conj(ratio)
        tgt = np.where(first, a2[bls], a1[bls])
        val = np.where(first, np.conj(ratio), ratio)
        # per cell: s = sqrt(median |r_a|) over its good ratios (1 without any)
        scale = np.ones(n_cell)
        cg, amp = cells[good], np.abs(val[good])
        order = np.lexsort((amp, cg))
        cg, amp = cg[order], amp[order]
        starts = np.flatnonzero(np.r_[True, cg[1:] != cg[:-1]]) if len(cg) else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], len(cg)]
        for lo, hi in zip(starts, ends):
            mid = (lo + hi - 1) / 2.0
            med = 0.5 * (amp[int(np.floor(mid))] + amp[int(np.ceil(mid))])
            if np.isfinite(med) and med > 0:
                scale[cg[lo]] = np.sqrt(med)
        g[:, :, p] = scale[:, None]
        g[cells[good], tgt[good], p] = val[good] / scale[cells[good]]
    return g


@njit(inline="always")
def _stefcal_cell(vis, model, weight, ant1, ant2, g, pol, corr, mode, max_iter, tol, it0, detect):
    # mode: 0 amplitude and phase, 1 phase only (|g| = 1), 2 amplitude only (g real > 0); iterations
    # it0 + 1 .. max_iter (it0 > 0: StEFCal resumed where it handed over); detect: hand over (status 2)
    # where it crawls
    n_bl, n_samp = vis.shape[0], vis.shape[1]
    n_ant = g.shape[0]
    gold = g.copy()
    num = np.zeros(n_ant, np.complex128)
    den = np.zeros(n_ant)
    it = it0
    conv = False
    dprev = 0.0
    for it in range(it0 + 1, max_iter + 1):
        for a in range(n_ant):
            num[a] = 0.0
            den[a] = 0.0
        for b in range(n_bl):
            a1 = ant1[b]
            a2 = ant2[b]
            for s in range(n_samp):
                w = weight[b, s, corr]
                if w <= 0:
                    continue
                v = vis[b, s, corr]
                m = model[b, s, corr]
                # antenna a1: V = g1 (M conj(g2)) -> z = M conj(g2)
                z1 = m * np.conj(gold[a2])
                num[a1] += w * v * np.conj(z1)
                den[a1] += w * (z1.real * z1.real + z1.imag * z1.imag)
                # antenna a2: conj(V) = g2 (conj(M) conj(g1)) -> z = conj(M) conj(g1)
                z2 = np.conj(m) * np.conj(gold[a1])
                num[a2] += w * np.conj(v) * np.conj(z2)
                den[a2] += w * (z2.real * z2.real + z2.imag * z2.imag)
        dnorm = 0.0
        gnorm = 0.0
        for a in range(n_ant):
            if den[a] > 0:
                gn = num[a] / den[a]
                if mode == 1:
                    amp = abs(num[a])
                    gn = num[a] / amp if amp > 0 else gold[a]
                elif mode == 2:
                    gn = num[a].real / den[a] + 0j
                    if gn.real <= 0:
                        gn = gold[a]
                if it % 2 == 0:
                    gn = 0.5 * (gn + gold[a])
                    if mode == 1:
                        amp = abs(gn)
                        gn = gn / amp if amp > 0 else gold[a]
            else:
                gn = gold[a]
            dnorm += abs(gn - gold[a]) ** 2
            gnorm += abs(gn) ** 2
            g[a] = gn
        for a in range(n_ant):       # (element loops, not slice assignment: cheaper to compile)
            gold[a] = g[a]
        if it > 1 and dnorm <= tol * tol * gnorm:
            conv = True
            break
        if detect and it % 2 == 0:
            # crawling (gains of very different amplitudes: gains_newton's docstring): the step
            # shrank by less than CRAWL over the last two iterations, or STEFCAL_MAX iterations
            # passed; the caller finishes the item by Gauss-Newton
            if (it >= 8 and dnorm > CRAWL * CRAWL * dprev) or it >= STEFCAL_MAX:
                return it, 2
            dprev = dnorm
    return it, 1 if conv else 0


@njit
def _stefcal_items(start, stride, vis, model, weight, ant1, ant2, g, mode, max_iter, tol,
                   n_iter, conv, crawl):
    """Items j = 2 c + p (cell c, pol p) in range(start, 2 n_cell, stride); crawl[c, p] marks
    the items handed over to Gauss-Newton."""
    n_ant = g.shape[1]
    for j in range(start, 2 * vis.shape[0], stride):
        c = j // 2
        p = j % 2
        corr = 0 if p == 0 else 3
        gp = np.empty(n_ant, np.complex128)
        for a in range(n_ant):
            gp[a] = g[c, a, p]
        it, st = _stefcal_cell(vis[c], model[c], weight[c], ant1, ant2, gp, p, corr, mode,
                               max_iter, tol, 0, True)
        for a in range(n_ant):
            g[c, a, p] = gp[a]
        n_iter[c, p] = it
        conv[c, p] = st == 1
        crawl[c, p] = st == 2


def stefcal_batch(vis, model, weight, ant1, ant2, g, phase_only, max_iter, tol, n_iter, conv,
                  amp_only=False):
    """In place: g (n_cell, n_ant, 2); n_iter (n_cell, 2), conv (n_cell, 2).  (cell, pol) items
    spread over numba's threads (:func:`alakazam._numba.threaded`); the items where StEFCal crawls
    are finished by :func:`_finish_items` (a kernel compiled only when first needed), their
    iterations counted on."""
    mode = 1 if phase_only else (2 if amp_only else 0)
    crawl = np.zeros(conv.shape, bool)
    threaded(_stefcal_items, 2 * vis.shape[0], vis, model, weight, ant1, ant2, g, np.int64(mode),
             max_iter, tol, n_iter, conv, crawl)
    if crawl.any():
        _gauss_newton_finish(crawl, vis, model, weight, ant1, ant2, g, mode, max_iter, tol, n_iter,
                             conv)


@njit
def _finish_items(start, stride, cells, pols, vis, model, weight, ant1, ant2, g, mode, max_iter,
                  tol, n_iter, conv):
    """The crawling items k in range(start, len(cells), stride): Gauss-Newton (at most GN_MAX
    iterations) from StEFCal's iterate; where it does not converge, StEFCal resumes from that iterate
    as if it had never handed over (the previous behaviour), to max_iter."""
    n_ant = g.shape[1]
    for k in range(start, len(cells), stride):
        c = cells[k]
        p = pols[k]
        corr = 0 if p == 0 else 3
        gp = np.empty(n_ant, np.complex128)
        for a in range(n_ant):
            gp[a] = g[c, a, p]
        it0 = n_iter[c, p]
        gi, ok = gauss_newton(vis[c], model[c], weight[c], ant1, ant2, gp, corr, mode,
                              min(GN_MAX, max_iter - it0), tol)
        if ok:
            n_iter[c, p] = it0 + gi
        else:
            it, st = _stefcal_cell(vis[c], model[c], weight[c], ant1, ant2, gp, p, corr, mode,
                                   max_iter, tol, it0, False)
            ok = st == 1
            n_iter[c, p] = it + gi
        for a in range(n_ant):
            g[c, a, p] = gp[a]
        conv[c, p] = ok


def _gauss_newton_finish(crawl, vis, model, weight, ant1, ant2, g, mode, max_iter, tol, n_iter,
                         conv):
    """In place: :func:`_finish_items` on the (cell, pol) items where crawl (n_cell, 2) is True."""
    cells, pols = np.nonzero(crawl)
    threaded(_finish_items, len(cells), cells.astype(np.int64), pols.astype(np.int64), vis, model,
             weight, ant1, ant2, g, np.int64(mode), max_iter, tol, n_iter, conv)


def model_vis(params, batch):
    """Model visibilities (n_cell, n_bl, n_samp, 4) of gains params (n_cell, n_ant, 2) (pp, qq only)."""
    g = params
    out = np.zeros_like(batch.model)
    for p, corr in enumerate(POL_CORR):
        out[..., corr] = (g[:, batch.ant1, p][:, :, None] * batch.model[..., corr]
                          * np.conj(g[:, batch.ant2, p])[:, :, None])
    return out


def solve_numba(batch, init, ref, opts):
    """numba backend: StEFCal on every (cell, pol); (params, n_iter, converged, cost=None)."""
    n_cell = batch.n_cell
    g = np.ascontiguousarray(init, np.complex128).copy()
    if opts.phase_only:
        amp = np.abs(g)
        g = np.where(amp > 0, g / np.where(amp > 0, amp, 1), 1.0 + 0j)
    elif opts.amp_only:
        g = np.abs(g).astype(np.complex128)
    n_iter = np.zeros((n_cell, 2), np.int64)
    conv = np.zeros((n_cell, 2), bool)
    # StEFCal's test is on the relative gain change; its iterations are cheap, so it may run
    # up to 5 x max_iter (documented in the README)
    stefcal_batch(batch.vis, batch.model, batch.weight, batch.ant1, batch.ant2, g,
                  bool(opts.phase_only), int(5 * opts.max_iter), float(opts.tol), n_iter, conv,
                  amp_only=bool(opts.amp_only))
    return g, n_iter.max(axis=1), conv.all(axis=1), None


def reference(params, ref):
    """arg g[ref] = 0 per pol (the last axis: p, q; or the one shared gain of T)."""
    p = params.copy()
    idx = np.arange(p.shape[0])
    gr = p[idx, ref]                                     # (n_cell, n_pol)
    amp = np.abs(gr)
    rot = np.where(amp > 0, np.conj(gr) / np.where(amp > 0, amp, 1), 1.0)
    return p * rot[:, None, :]


def to_jones(params, batch):
    """diag(g_p, g_q); no delay."""
    J = np.zeros((batch.n_cell, batch.n_ant, 2, 2), np.complex128)
    J[..., 0, 0] = params[..., 0]
    J[..., 1, 1] = params[..., 1]
    return J, None
