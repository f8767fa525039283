"""T: one complex gain per antenna for both polarisations, Jones diag(g, g) (CASA gaintype 'T').

.. math:: V_{ab,pp} = g_a M_{ab,pp} \\overline{g_b}, \\qquad V_{ab,qq} = g_a M_{ab,qq} \\overline{g_b}

T is G with g_p = g_q: the two parallel hands are stacked as samples of one hand
(:func:`stack_hands`) and solved by G's code in whichever backend is chosen (numba: StEFCal; ceres,
jax: the shared models of :mod:`alakazam.solvers.models`; scipy: its G residuals), so calmode 'p' and
'a' behave as for G.  The stacked batch carries the same samples in both hands, so G's two
polarisation solutions are identical; the first is T's gain.  Reference: arg g[ref] = 0, as G.
params per cell: complex (n_ant, 1).
"""

import numpy as np

from . import CellBatch, gains

POL_CORR = (0, 3)


def stack_hands(batch):
    """A G-shaped batch whose samples are the pp samples followed by the qq samples, in both hands
    (n_samp doubled; the cross hands carry no weight)."""
    def stacked(a):
        both = np.concatenate([a[..., 0], a[..., 3]], axis=2)       # (n_cell, n_bl, 2 n_samp)
        out = np.zeros(both.shape + (4,), a.dtype)
        out[..., 0] = both
        out[..., 3] = both
        return out

    return CellBatch(vis=stacked(batch.vis), model=stacked(batch.model), weight=stacked(batch.weight),
                     ant1=batch.ant1, ant2=batch.ant2, freq=np.concatenate([batch.freq, batch.freq], axis=1),
                     n_ant=batch.n_ant, ref_ant=batch.ref_ant, ref_ants=batch.ref_ants)


def initial_guess(batch, ref):
    """(n_cell, n_ant, 1): G's gain-ratio guess on the stacked hands."""
    return gains.initial_guess(stack_hands(batch), ref)[..., :1]


def solve_with(backend_module, batch, init, ref, opts):
    """Solve with the backend's G code on the stacked hands; cost None (common.chi2 recomputes it)."""
    # the one type literal of T: it is solved by G's code
    g, n_iter, conv, _ = backend_module.solve_params("G", stack_hands(batch), np.repeat(init, 2, axis=-1),
                                                     ref, opts)
    return np.ascontiguousarray(g[..., :1]), n_iter, conv, None


reference = gains.reference


def to_jones(params, batch):
    """diag(g, g); no delay."""
    J = np.zeros((batch.n_cell, batch.n_ant, 2, 2), np.complex128)
    J[..., 0, 0] = params[..., 0]
    J[..., 1, 1] = params[..., 0]
    return J, None


def model_vis(params, batch):
    """Model visibilities (n_cell, n_bl, n_samp, 4) of params (n_cell, n_ant, 1) (pp, qq only)."""
    return gains.model_vis(np.repeat(params, 2, axis=-1), batch)


def hand_mismatch(batch, g):
    """How far the two hands' gains differ from the one gain ``g`` (n_cell, n_ant, 1) of T:
    ``(median |d|, median |a|, median noise)`` over the (cell, antenna) pairs with data in both hands,
    or None: d = arg(x) in radians and a = |x| - 1 (relative amplitude) of x = r_q / r_p,
    r_h = sum_b w V_h conj(g_a M_h conj(g_b)) / sum_b w |g_a M_h g_b|^2 (one step of a per-hand gain on
    top of T); the noise (of d, and of a) sqrt(1/S_p + 1/S_q), S_h the denominator.  A phase common to
    every antenna's q hand cancels in the parallel hands and is not seen (nor does it matter to them);
    an amplitude common to them is (it scales the q hand of every baseline)."""
    n_cell, n_ant = g.shape[0], g.shape[1]
    a1, a2 = np.asarray(batch.ant1), np.asarray(batch.ant2)
    gg = g[..., 0]
    num = np.zeros((n_cell, n_ant, 2), np.complex128)
    den = np.zeros((n_cell, n_ant, 2))
    cells = np.arange(n_cell)[:, None]
    for j, c in enumerate(POL_CORR):
        w = batch.weight[..., c]
        pred = gg[:, a1, None] * batch.model[..., c] * np.conj(gg[:, a2, None])
        # (a flagged solution is NaN: its baselines left out, not every antenna of the cell -- 53e)
        ok = (w > 0) & np.isfinite(batch.vis[..., c]) & np.isfinite(pred)
        wv = np.where(ok, w, 0.0)
        s = np.sum(wv * np.where(ok, batch.vis[..., c], 0) * np.conj(np.where(ok, pred, 0)), axis=-1)
        e = np.sum(wv * np.abs(np.where(ok, pred, 0)) ** 2, axis=-1)
        np.add.at(num[..., j], (cells, a1[None, :]), s)
        np.add.at(num[..., j], (cells, a2[None, :]), np.conj(s))
        np.add.at(den[..., j], (cells, a1[None, :]), e)
        np.add.at(den[..., j], (cells, a2[None, :]), e)
    use = (den > 0).all(-1) & np.isfinite(num).all(-1)
    if not use.any():
        return None
    r = num[use] / den[use]
    x = r[:, 1] / r[:, 0]
    noise = np.sqrt(1.0 / den[use][:, 0] + 1.0 / den[use][:, 1])
    return (float(np.median(np.abs(np.angle(x)))), float(np.median(np.abs(np.abs(x) - 1))),
            float(np.median(noise)))

