"""Gauss-Newton finish of G's StEFCal when StEFCal crawls (gains of very different amplitudes).

Why: StEFCal replaces each antenna's gain by its least-squares value given the others (a Jacobi
iteration on the normal equations, damped by the odd/even averaging).  With one antenna's gain 70x
the others', every small antenna's update is dominated by its baseline to the big one, so the mode
"big antenna x c, small antennas / c" (only the weak small-small baselines constrain it) maps almost to
itself: its contraction per iteration is about 1 - 1/70^2 and StEFCal needs ~10^4 iterations where the
normal case needs 10-24 (measured: 5 antennas, one at 70x, SNR 10 per visibility: relative step still
4e-7 after 500 iterations).  The averaging only removes the eigenvalue -1 (the overall scale).

Gauss-Newton uses the whole normal matrix, so the conditioning does not slow it down.  In log-gain
coordinates g_a -> g_a exp(x_a + i y_a) the linearised model of baseline (a, b) changes by
m (x_a + x_b) + i m (y_a - y_b), m = g_a M conj(g_b), so the real normal matrix splits into an
amplitude block (D + C: signless Laplacian of the weights c_ab = sum w |m|^2) and a phase block
(D - C: the Laplacian, whose null vector, one common phase, is the gauge; it is fixed by adding
s 1 1^T over the antennas with data, which leaves the common phase of the step at zero because the
right-hand side sums to zero).  Each step is two n_ant x n_ant Cholesky solves
(:func:`alakazam.solvers.lm.chol_solve`) and one pass over the data; a step that raises chi2 is halved.
phase_only solves the phase block only, amp_only (real positive g) the amplitude block only.

Safeguards (for data whose least-squares minimum is not finite, e.g. 3 antennas at SNR 1 per
visibility, or amp_only on data with phases: there a gain runs towards 0 or infinity): a step is
scaled to move no log-amplitude or phase by more than MAX_STEP (1 e-fold, 1 rad), and an item whose
amplitude leaves [1/MAX_EXCURSION, MAX_EXCURSION] x the amplitude StEFCal handed over gives up: it keeps
StEFCal's iterate, not converged.
"""

import numpy as np

from .._numba import njit
from .lm import chol_solve

#: largest change of any log-amplitude or phase (rad) in one step
MAX_STEP = 1.0
#: largest factor by which Gauss-Newton may move an amplitude away from StEFCal's iterate
MAX_EXCURSION = 100.0


@njit
def _normal(vis, model, weight, ant1, ant2, g, corr, A, B, bx, by):
    """Fill the amplitude (A, bx) and phase (B, by) normal equations at g; return chi2."""
    n_ant = g.shape[0]
    for i in range(n_ant):
        bx[i] = 0.0
        by[i] = 0.0
        for j in range(n_ant):
            A[i, j] = 0.0
            B[i, j] = 0.0
    chi2 = 0.0
    for b in range(vis.shape[0]):
        a1 = ant1[b]
        a2 = ant2[b]
        gg = g[a1] * np.conj(g[a2])
        for s in range(vis.shape[1]):
            w = weight[b, s, corr]
            if w <= 0:
                continue
            m = gg * model[b, s, corr]
            r = vis[b, s, corr] - m
            chi2 += w * (r.real * r.real + r.imag * r.imag)
            c = w * (m.real * m.real + m.imag * m.imag)
            q = w * np.conj(m) * r
            A[a1, a1] += c
            A[a2, a2] += c
            A[a1, a2] += c
            A[a2, a1] += c
            B[a1, a1] += c
            B[a2, a2] += c
            B[a1, a2] -= c
            B[a2, a1] -= c
            bx[a1] += q.real
            bx[a2] += q.real
            by[a1] += q.imag
            by[a2] -= q.imag
    return chi2


@njit
def _gn(vis, model, weight, ant1, ant2, g, corr, mode, max_iter, tol):
    """Gauss-Newton from g (in place) for one (cell, pol); mode as in StEFCal (0 amplitude and
    phase, 1 phase only, 2 amplitude only).  Stops when the relative gain step is below tol (the
    StEFCal test) or when no step along the Gauss-Newton direction lowers chi2 and the predicted
    decrease is at rounding level; gives up when an amplitude leaves MAX_EXCURSION.  Returns
    (iterations, converged)."""
    n_ant = g.shape[0]
    g0 = g.copy()
    lo = np.log(1.0 / MAX_EXCURSION)
    hi = np.log(MAX_EXCURSION)
    A = np.empty((n_ant, n_ant))
    B = np.empty((n_ant, n_ant))
    bx = np.empty(n_ant)
    by = np.empty(n_ant)
    A2 = np.empty((n_ant, n_ant))
    B2 = np.empty((n_ant, n_ant))
    bx2 = np.empty(n_ant)
    by2 = np.empty(n_ant)
    gn = g.copy()
    dx = np.zeros(n_ant)
    dy = np.zeros(n_ant)
    chi2 = _normal(vis, model, weight, ant1, ant2, g, corr, A, B, bx, by)
    for it in range(1, max_iter + 1):
        if mode != 1:
            dx, ok = chol_solve(A, bx, 1e-12)
            if not ok:
                return it, False
        if mode != 2:
            s = 0.0
            n_on = 0
            for a in range(n_ant):
                if B[a, a] > 0:
                    s += B[a, a]
                    n_on += 1
            if n_on > 0:
                s /= n_on * n_on
                for a in range(n_ant):
                    if B[a, a] > 0:
                        for b in range(n_ant):
                            if B[b, b] > 0:
                                B[a, b] += s
            dy, ok = chol_solve(B, by, 1e-12)
            if not ok:
                return it, False
        pred = 0.0                       # predicted chi2 decrease of the full step, ~ b . d
        for a in range(n_ant):
            pred += (dx[a] * bx[a] if mode != 1 else 0.0) + (dy[a] * by[a] if mode != 2 else 0.0)
        big = 0.0
        for a in range(n_ant):
            big = max(big, abs(dx[a]) if mode != 1 else 0.0, abs(dy[a]) if mode != 2 else 0.0)
        t = 1.0 if big <= MAX_STEP else MAX_STEP / big
        accepted = False
        for _half in range(30):
            dnorm = 0.0
            gnorm = 0.0
            for a in range(n_ant):
                e = (t * dx[a] if mode != 1 else 0.0) + 1j * (t * dy[a] if mode != 2 else 0.0)
                gn[a] = g[a] * np.exp(e)
                d = gn[a] - g[a]
                dnorm += d.real * d.real + d.imag * d.imag
                gnorm += gn[a].real * gn[a].real + gn[a].imag * gn[a].imag
            chi2n = _normal(vis, model, weight, ant1, ant2, gn, corr, A2, B2, bx2, by2)
            if chi2n <= chi2 * (1.0 + 1e-13):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            # no decrease along the Gauss-Newton direction: a minimum to rounding if the predicted
            # decrease is negligible
            return it, pred <= 1e-12 * chi2
        for a in range(n_ant):
            g[a] = gn[a]
            if g0[a] != 0:
                e = np.log(abs(g[a]) / abs(g0[a]))
                if not lo <= e <= hi:
                    return it, False
        A, A2 = A2, A
        B, B2 = B2, B
        bx, bx2 = bx2, bx
        by, by2 = by2, by
        chi2 = chi2n
        if dnorm <= tol * tol * gnorm:
            return it, True
    return max_iter, False


@njit
def gauss_newton(vis, model, weight, ant1, ant2, g, corr, mode, max_iter, tol):
    """Gauss-Newton from g (in place) for one (cell, pol), at most max_iter iterations; mode as in
    StEFCal (0 amplitude and phase, 1 phase only, 2 amplitude only).  Returns (iterations,
    converged); g is back at its start when not converged."""
    g0 = g.copy()
    it, ok = _gn(vis, model, weight, ant1, ant2, g, corr, mode, max_iter, tol)
    if not ok:
        for a in range(g.shape[0]):
            g[a] = g0[a]
    return it, ok
