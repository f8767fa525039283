"""G: complex gains diag(g_p, g_q) per antenna, solved on the parallel hands.

.. math:: V_{ab,pp} = g_{a,p} M_{ab,pp} \\overline{g_{b,p}}

Reference: arg g[ref] = 0 per pol (applied in :mod:`alakazam.solvers.common`); amplitude free;
``phase_only`` keeps |g| = 1.  The numba solver is StEFCal (Salvini & Wijnholds 2014): each
antenna's gain is replaced by its exact weighted least-squares value given the others (for phase-only,
the exact best phase), alternating with the average of the last two iterates; it converges to the
least-squares solution.  Initial guess: gain ratios on baselines to the reference antenna.
"""

import numpy as np

from .._numba import njit, threaded

POL_CORR = (0, 3)


def initial_guess(batch, ref):
    """(n_cell, n_ant, 2) complex: g_ref = 1, g_a = conj(<V/M>) on baseline (ref, a), else 1."""
    g = np.ones((batch.n_cell, batch.n_ant, 2), np.complex128)
    threaded(_ratio_init, batch.vis.shape[0], batch.vis, batch.model, batch.weight, batch.ant1,
             batch.ant2, np.asarray(ref, np.int64), g)
    return g


@njit
def _ratio_init(start, stride, vis, model, weight, ant1, ant2, ref, g):
    n_cell, n_bl, n_samp, _ = vis.shape
    for c in range(start, n_cell, stride):
        r = ref[c]
        for p in range(2):
            corr = 0 if p == 0 else 3
            for b in range(n_bl):
                if ant1[b] != r and ant2[b] != r:
                    continue
                num = 0j
                den = 0.0
                for s in range(n_samp):
                    w = weight[c, b, s, corr]
                    if w > 0:
                        m = model[c, b, s, corr]
                        num += w * vis[c, b, s, corr] * np.conj(m)
                        den += w * (m.real * m.real + m.imag * m.imag)
                if den <= 0:
                    continue
                ratio = num / den              # = g_a1 conj(g_a2)
                if ratio == 0 or not np.isfinite(ratio.real) or not np.isfinite(ratio.imag):
                    continue
                if ant1[b] == r:
                    g[c, ant2[b], p] = np.conj(ratio)
                else:
                    g[c, ant1[b], p] = ratio


@njit(inline="always")
def _stefcal_cell(vis, model, weight, ant1, ant2, g, pol, corr, phase_only, max_iter, tol):
    n_bl, n_samp = vis.shape[0], vis.shape[1]
    n_ant = g.shape[0]
    gold = g.copy()
    num = np.zeros(n_ant, np.complex128)
    den = np.zeros(n_ant)
    it = 0
    conv = False
    for it in range(1, max_iter + 1):
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
                if phase_only:
                    amp = abs(num[a])
                    gn = num[a] / amp if amp > 0 else gold[a]
                if it % 2 == 0:
                    gn = 0.5 * (gn + gold[a])
                    if phase_only:
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
    return it, conv


@njit
def _stefcal_items(start, stride, vis, model, weight, ant1, ant2, g, phase_only, max_iter, tol,
                   n_iter, conv):
    """Items j = 2 c + p (cell c, pol p) in range(start, 2 n_cell, stride)."""
    n_ant = g.shape[1]
    for j in range(start, 2 * vis.shape[0], stride):
        c = j // 2
        p = j % 2
        corr = 0 if p == 0 else 3
        gp = np.empty(n_ant, np.complex128)
        for a in range(n_ant):
            gp[a] = g[c, a, p]
        it, ok = _stefcal_cell(vis[c], model[c], weight[c], ant1, ant2, gp, p, corr, phase_only,
                               max_iter, tol)
        for a in range(n_ant):
            g[c, a, p] = gp[a]
        n_iter[c, p] = it
        conv[c, p] = ok


def stefcal_batch(vis, model, weight, ant1, ant2, g, phase_only, max_iter, tol, n_iter, conv):
    """In place: g (n_cell, n_ant, 2); n_iter (n_cell, 2), conv (n_cell, 2).  (cell, pol) items
    spread over numba's threads (:func:`alakazam._numba.threaded`)."""
    threaded(_stefcal_items, 2 * vis.shape[0], vis, model, weight, ant1, ant2, g, phase_only,
             max_iter, tol, n_iter, conv)


def model_vis(params, batch):
    """Model visibilities (n_cell, n_bl, n_samp, 4) of gains params (n_cell, n_ant, 2) (pp, qq only)."""
    g = params
    out = np.zeros_like(batch.model)
    for p, corr in enumerate(POL_CORR):
        out[..., corr] = (g[:, batch.ant1, p][:, :, None] * batch.model[..., corr]
                          * np.conj(g[:, batch.ant2, p])[:, :, None])
    return out
