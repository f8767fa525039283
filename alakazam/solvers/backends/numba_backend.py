"""Native numba backend (the default): batched kernels, cells spread over threads, no Python per cell.

G: StEFCal; K and D: Levenberg-Marquardt on analytic normal equations; KC and CP: exact
one-dimensional maximisation (closed form for CP).  See the term modules for the maths.
"""

import numpy as np

from .. import cross_delay, cross_phase, gains, leakage, parallel_delay


#: terms whose returned cost is the final chi2 exactly as common.chi2 defines it (K: sum w|V|^2 +
#: sum w|M|^2 - 2 sum Re(exp(-i theta) z) at the final parameters, the same quantity up to rounding),
#: so the dispatcher does not spend another pass over the data on it
EXACT_COST = ("K",)


def solve_params(jones_type, batch, init, ref, opts):
    n_cell = batch.n_cell
    ref = np.ascontiguousarray(ref, np.int64)
    if jones_type == "G":
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
        gains.stefcal_batch(batch.vis, batch.model, batch.weight, batch.ant1, batch.ant2, g,
                            bool(opts.phase_only), int(5 * opts.max_iter), float(opts.tol), n_iter, conv,
                            amp_only=bool(opts.amp_only))
        return g, n_iter.max(axis=1), conv.all(axis=1), None
    if jones_type == "K":
        p = np.ascontiguousarray(init, np.float64).copy()
        nu_c = parallel_delay.band_centre(batch)
        n_iter = np.zeros((n_cell, 2), np.int64)
        conv = np.zeros((n_cell, 2), bool)
        cost = np.zeros((n_cell, 2))
        uniform = parallel_delay.uniform_grid(batch.freq)
        parallel_delay.lm_batch(batch.vis, batch.model, batch.weight, batch.freq, nu_c, uniform,
                                batch.ant1, batch.ant2, p, ref, int(opts.max_iter), float(opts.tol), n_iter, conv,
                                cost)
        return p, n_iter.max(axis=1), conv.all(axis=1), cost.sum(axis=1)
    if jones_type == "D":
        d = np.ascontiguousarray(init, np.complex128).copy()
        n_iter = np.zeros(n_cell, np.int64)
        conv = np.zeros(n_cell, bool)
        cost = np.zeros(n_cell)
        leakage.lm_batch(batch.vis, batch.model, batch.weight, batch.ant1, batch.ant2, d, ref,
                         int(opts.max_iter), float(opts.tol), n_iter, conv, cost)
        return d, n_iter, conv, cost
    if jones_type == "KC":
        p, n_iter, conv = cross_delay.solve_exact(batch, opts.max_iter, opts.tol)
        return p, n_iter, conv, None
    p, n_iter, conv = cross_phase.solve_exact(batch)
    return p, n_iter, conv, None
