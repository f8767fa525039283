"""scipy backend: scipy.optimize.least_squares (method 'lm', MINPACK) per cell, with the same
parametrisation and fixed reference parameters as the numba backend and finite-difference Jacobians
(as designed).  CPU only; much slower than numba (see benchmarks/bench_solvers.py), useful as an
independent cross-check.  ``n_iter`` reports Jacobian evaluations (nfev / (n_params + 1)).
"""

import numpy as np
from scipy.optimize import least_squares

from ..common import antennas_with_data
from ..parallel_delay import band_centre

TWO_PI_NS = 2.0 * np.pi * 1e-9


#: its tests are relative to the cost: K's and phase-only fits get the model at the data's scale
#: (common.model_at_data_scale)
MODEL_SCALE_SENSITIVE = True


#: scipy's lowest accepted tolerance: just above machine epsilon
_EPS_FLOOR = 2.0 * float(np.finfo(float).eps)


def _lm(fun, x0, opts):
    if len(x0) == 0:
        return x0, 0, True
    # convergence on the step (xtol), as the numba LM: with a non-zero cost floor (K, KC do not fit
    # amplitudes) a relative-cost test alone stops before the minimum
    # (scipy refuses tolerances at or below machine epsilon: a tol of 1e-17, which the other backends
    # take, raised "All tolerances must be higher than machine epsilon" mid-run; review 55b)
    r = least_squares(fun, x0, method="lm", ftol=max(min(opts.tol, 1e-14), _EPS_FLOOR), xtol=1e-12,
                      gtol=1e-15,
                      max_nfev=int(opts.max_iter) * (len(x0) + 1))
    return r.x, int(r.nfev // (len(x0) + 1)), bool(r.status > 0)


def _stack(z):
    return np.concatenate([z.real.ravel(), z.imag.ravel()])


def _solve_G(b, c, init, ref, has, opts):
    g = init[c].copy()
    a1, a2 = b.ant1, b.ant2
    free = np.nonzero(has[c])[0]
    n_iter, conv = 0, True
    for p, corr in enumerate((0, 3)):
        V = b.vis[c, :, :, corr]
        M = b.model[c, :, :, corr]
        sw = np.sqrt(b.weight[c, :, :, corr])
        others = free[free != ref]
        if opts.phase_only:
            g0 = g[:, p] / np.abs(g[:, p])

            def model(x):
                gg = g0.copy()
                gg[ref] = 1.0
                gg[others] = np.exp(1j * x)
                return gg
            x0 = np.angle(g0[others] * np.conj(g0[ref]))
        elif opts.amp_only:                 # CASA calmode='a': real gains of every antenna with data
            def model(x):
                gg = np.abs(g[:, p]).astype(complex)
                gg[free] = x
                return gg
            x0 = np.abs(g[free, p])
        else:
            def model(x):
                gg = g[:, p].copy()
                gg[free] = x[:len(free)]
                gg[others] += 1j * x[len(free):]
                gg[ref] = x[list(free).index(ref)] + 0j if ref in free else gg[ref]
                return gg
            gr = g[:, p] * np.conj(g[ref, p]) / max(abs(g[ref, p]), 1e-300)
            x0 = np.concatenate([gr[free].real, gr[others].imag])

        def fun(x):
            gg = model(x)
            return _stack(sw * (V - gg[a1][:, None] * M * np.conj(gg[a2])[:, None]))
        x, it, ok = _lm(fun, x0, opts)
        g[:, p] = np.abs(model(x)) if opts.amp_only and not opts.phase_only else model(x)   # 'a': >= 0
        n_iter, conv = max(n_iter, it), conv and ok
    return g, n_iter, conv


def _solve_K(b, c, init, ref, has, opts, nu_c):
    p_out = init[c].copy()
    free = np.nonzero(has[c])[0]
    others = free[free != ref]
    dnu = b.freq[c] - nu_c[c]
    n_iter, conv = 0, True
    for p, corr in enumerate((0, 3)):
        V = b.vis[c, :, :, corr]
        M = b.model[c, :, :, corr]
        sw = np.sqrt(b.weight[c, :, :, corr])

        def unpack(x):
            tau = np.zeros(b.n_ant)
            phi = np.zeros(b.n_ant)
            phi[others] = x[:len(others)]
            tau[others] = x[len(others):]
            return tau, phi

        def fun(x):
            tau, phi = unpack(x)
            th = (phi[b.ant1] - phi[b.ant2])[:, None] - TWO_PI_NS * (tau[b.ant1] - tau[b.ant2])[:, None] * dnu
            return _stack(sw * (V - np.exp(1j * th) * M))
        x0 = np.concatenate([init[c, others, p, 1] - init[c, ref, p, 1],
                             init[c, others, p, 0] - init[c, ref, p, 0]])
        x, it, ok = _lm(fun, x0, opts)
        tau, phi = unpack(x)
        p_out[:, p, 0] = tau
        p_out[:, p, 1] = phi
        n_iter, conv = max(n_iter, it), conv and ok
    return p_out, n_iter, conv


def _solve_D(b, c, init, ref, has, opts):
    """Free fit with the gauge prior on d_pq[ref], started from d_pq[ref] = 0 (re-referenced after the
    solve: :mod:`alakazam.solvers.leakage`)."""
    from ..leakage import gauge_prior_cell

    free = np.nonzero(has[c])[0]
    V = b.vis[c].reshape(b.vis.shape[1], b.vis.shape[2], 2, 2)
    M = b.model[c].reshape(V.shape)
    sw = np.sqrt(b.weight[c])
    sp = np.sqrt(gauge_prior_cell(b, c, ref))
    d0 = init[c].copy()
    d0[ref, 0] = 0

    def unpack(x):
        d = d0.copy()
        n = len(free)
        d[free, 0] = x[:n] + 1j * x[n:2 * n]
        d[free, 1] = x[2 * n:3 * n] + 1j * x[3 * n:]
        return d

    def fun(x):
        d = unpack(x)
        D = np.zeros((b.n_ant, 2, 2), complex)
        D[:, 0, 0] = D[:, 1, 1] = 1
        D[:, 0, 1] = d[:, 0]
        D[:, 1, 0] = d[:, 1]
        Vm = D[b.ant1][:, None] @ M @ np.conj(np.swapaxes(D[b.ant2], -1, -2))[:, None]
        return np.concatenate([_stack(sw * (V - Vm).reshape(sw.shape)), sp * np.array([d[ref, 0].real,
                                                                                      d[ref, 0].imag])])
    x0 = np.concatenate([d0[free, 0].real, d0[free, 0].imag, d0[free, 1].real, d0[free, 1].imag])
    x, it, ok = _lm(fun, x0, opts)
    return unpack(x), it, ok


def _solve_KC(b, c, init, opts, nu_c):
    dnu = b.freq[c] - nu_c[c]
    sw = np.sqrt(b.weight[c])

    def fun(x):
        th = TWO_PI_NS * x[0] * dnu + x[1]
        r1 = sw[..., 1] * (b.vis[c, ..., 1] - np.exp(-1j * th) * b.model[c, ..., 1])
        r2 = sw[..., 2] * (b.vis[c, ..., 2] - np.exp(1j * th) * b.model[c, ..., 2])
        return np.concatenate([_stack(r1), _stack(r2)])
    return _lm(fun, np.asarray(init[c], float), opts)


def _solve_CP(b, c, init, opts):
    sw = np.sqrt(b.weight[c])

    def fun(x):
        r1 = sw[..., 1] * (b.vis[c, ..., 1] - np.exp(-1j * x[0]) * b.model[c, ..., 1])
        r2 = sw[..., 2] * (b.vis[c, ..., 2] - np.exp(1j * x[0]) * b.model[c, ..., 2])
        return np.concatenate([_stack(r1), _stack(r2)])
    return _lm(fun, np.asarray(init[c], float), opts)


#: type name -> the per-cell solver of this backend (a type solved through another's code, T, needs none)
_CELL_SOLVERS = {
    "G": lambda b, c, p, r, has, opts, nu_c: _solve_G(b, c, p, r, has, opts),
    "K": _solve_K,
    "D": lambda b, c, p, r, has, opts, nu_c: _solve_D(b, c, p, r, has, opts),
    "KC": lambda b, c, p, r, has, opts, nu_c: _solve_KC(b, c, p, opts, nu_c),
    "CP": lambda b, c, p, r, has, opts, nu_c: _solve_CP(b, c, p, opts),
}


def solve_params(jones_type, batch, init, ref, opts):
    solve_cell = _CELL_SOLVERS.get(jones_type)      # this backend's per-type residuals
    if solve_cell is None:
        from ...errors import AlakazamError
        raise AlakazamError(f"jones: type {jones_type!r} is not supported by the scipy backend")
    n_cell = batch.n_cell
    has = antennas_with_data(batch, jones_type)
    params = np.array(init, copy=True)
    n_iter = np.zeros(n_cell, np.int32)
    conv = np.zeros(n_cell, bool)
    nu_c = band_centre(batch)
    for c in range(n_cell):
        r = int(ref[c])
        params[c], n_iter[c], conv[c] = solve_cell(batch, c, params, r, has, opts, nu_c)
    return params, n_iter, conv, None
