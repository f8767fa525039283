"""ceres backend: pyceres Levenberg-Marquardt with analytic Jacobians.

One vectorised residual block per cell (all baselines, samples and used correlations of the cell in one
``pyceres.CostFunction``) whose single parameter block holds only the *free* parameters of the cell: the
reference constraints (K: tau[ref] = phi[ref] = 0; G: Im g[ref] = 0, or phase[ref] = 0 for
phase_only; D: d_pq[ref] = 0) and the parameters of antennas without data are left out of the
vector and held at their initial values.  Linear solver DENSE_NORMAL_CHOLESKY, ``num_threads = 1``
(pyceres retakes the GIL per Evaluate, see notes/SOLVER_BENCHMARKS.md).  Per-baseline blocks with
SPARSE_NORMAL_CHOLESKY (faster for large arrays) are not implemented: ceres is the cross-check
backend, numba is the fast path.

Tolerances: ``function_tolerance = min(opts.tol, 1e-16)``, ``parameter_tolerance = 1e-12``,
``gradient_tolerance = 1e-15``, ``max_num_iterations = opts.max_iter``; ``n_iter`` is the number of
successful LM steps, ``converged`` is ceres' CONVERGENCE termination.  The function tolerance is
below the scipy backend's 1e-14 because K's phase-only cost converges only linearly under
Gauss-Newton when the data carry gain amplitudes (|V| != |M|): at 1e-14 ceres stopped 1.6e-7 ns
from a noiseless truth (tests/test_solvers.py::test_phase_only_and_heavy_flagging).

The parametrisation helpers (:func:`pack`, :func:`unpack`, :func:`model_and_jac`) are plain numpy
(an ``xp`` module argument lets the jax backend trace the same model).
"""

from __future__ import annotations

import numpy as np

from ..common import USED_CORR, antennas_with_data
from ..parallel_delay import band_centre

TWO_PI_NS = 2.0 * np.pi * 1e-9


# ---------------------------------------------------------------------------------------------
# parametrisation shared with the jax backend
# ---------------------------------------------------------------------------------------------

def pack(jones_type, init, ref, has, phase_only):
    """Real parameter vectors and free masks for every cell.

    Parameters
    ----------
    jones_type : str
    init : ndarray
        Initial params stacked over cells (contract shapes, see ``alakazam.solvers``).
    ref : int (n_cell,)
    has : bool (n_cell, n_ant)
        Antenna has data on the correlations the term uses.
    phase_only : bool

    Returns
    -------
    x0 : float64 (n_cell, n_par)
        Layout: K (ant, pol, [tau, phi]); G (ant, pol, [re, im]); G phase_only (ant, pol) phases;
        D (ant, [pq, qp], [re, im]); KC [tau, phi]; CP [phi].  Referenced (K: ref subtracted;
        G: each pol rotated so g[ref] is real positive).
    free : bool (n_cell, n_par)
    """
    n_cell = init.shape[0]
    idx = np.arange(n_cell)
    if jones_type == "K":
        x = np.array(init, np.float64) - np.asarray(init, np.float64)[idx, ref][:, None]
        fr = has.copy()
        fr[idx, ref] = False
        free = np.broadcast_to(fr[:, :, None, None], x.shape)
    elif jones_type == "G":
        g = np.asarray(init, np.complex128)
        gr = g[idx, ref]
        amp = np.abs(gr)
        rot = np.where(amp > 0, np.conj(gr) / np.where(amp > 0, amp, 1), 1.0)
        g = g * rot[:, None, :]
        g[idx, ref] = amp                                   # exactly real positive
        if phase_only:
            x = np.angle(g)
            x[idx, ref] = 0.0
            fr = has.copy()
            fr[idx, ref] = False
            free = np.broadcast_to(fr[:, :, None], x.shape)
        else:
            x = np.stack([g.real, g.imag], axis=-1)
            free = np.broadcast_to(has[:, :, None, None], x.shape).copy()
            free[idx, ref, :, 1] = False
    elif jones_type == "D":
        d = np.array(init, np.complex128)
        d[idx, ref, 0] = 0
        x = np.stack([d.real, d.imag], axis=-1)
        free = np.broadcast_to(has[:, :, None, None], x.shape).copy()
        free[idx, ref, 0, :] = False
    else:  # KC, CP: global parameters, free if the cell has any data
        x = np.array(init, np.float64)
        free = np.broadcast_to(has.any(axis=1)[:, None], x.shape)
    return (np.ascontiguousarray(x.reshape(n_cell, -1), np.float64),
            np.ascontiguousarray(free.reshape(n_cell, -1)))


def unpack(jones_type, x, n_ant, phase_only):
    """Inverse of :func:`pack`: (n_cell, n_par) -> params in the contract shapes and dtypes."""
    x = np.asarray(x, np.float64)
    n_cell = x.shape[0]
    if jones_type == "K":
        return x.reshape(n_cell, n_ant, 2, 2).copy()
    if jones_type == "G":
        if phase_only:
            return np.exp(1j * x.reshape(n_cell, n_ant, 2))
        x = x.reshape(n_cell, n_ant, 2, 2)
        return x[..., 0] + 1j * x[..., 1]
    if jones_type == "D":
        x = x.reshape(n_cell, n_ant, 2, 2)
        return x[..., 0] + 1j * x[..., 1]
    return x.copy()


def model_vis(jones_type, x, M, a1, a2, n_ant, dnu, phase_only, xp=np):
    """Model of the used correlations for one cell.

    Parameters
    ----------
    x : (n_par,) real
    M : complex (n_bl, n_samp, 4)
    a1, a2 : int (n_bl,)
    dnu : (n_samp,) frequency minus band centre, Hz
    xp : numpy-like module (numpy or jax.numpy)

    Returns
    -------
    complex (n_bl, n_samp, n_used_corr)
    """
    if jones_type == "K":
        x = x.reshape(n_ant, 2, 2)
        tau, phi = x[..., 0], x[..., 1]
        th = ((phi[a1] - phi[a2])[:, None, :]
              - TWO_PI_NS * (tau[a1] - tau[a2])[:, None, :] * dnu[None, :, None])
        return xp.exp(1j * th) * M[..., ::3]
    if jones_type == "G":
        if phase_only:
            g = xp.exp(1j * x.reshape(n_ant, 2))
        else:
            x = x.reshape(n_ant, 2, 2)
            g = x[..., 0] + 1j * x[..., 1]
        return g[a1][:, None, :] * M[..., ::3] * xp.conj(g[a2])[:, None, :]
    if jones_type == "D":
        x = x.reshape(n_ant, 2, 2)
        d = x[..., 0] + 1j * x[..., 1]
        one = xp.ones(n_ant, d.dtype)
        D = xp.stack([xp.stack([one, d[:, 0]], -1), xp.stack([d[:, 1], one], -1)], -2)
        Da = D[a1][:, None]
        DbH = xp.conj(xp.swapaxes(D[a2], -1, -2))[:, None]
        Mm = M.reshape(M.shape[0], M.shape[1], 2, 2)
        return (Da @ Mm @ DbH).reshape(M.shape)
    if jones_type == "KC":
        th = TWO_PI_NS * x[0] * dnu + x[1]
        return xp.stack([xp.exp(-1j * th) * M[..., 1], xp.exp(1j * th) * M[..., 2]], -1)
    return xp.stack([xp.exp(-1j * x[0]) * M[..., 1], xp.exp(1j * x[0]) * M[..., 2]], -1)


def model_and_jac(jones_type, x, M, a1, a2, n_ant, dnu, phase_only):
    """Model (n_bl, n_samp, n_corr) and analytic complex Jacobian (n_bl, n_samp, n_corr, n_par)."""
    m = model_vis(jones_type, x, M, a1, a2, n_ant, dnu, phase_only)
    nb, ns, nc = m.shape
    r = np.arange(nb)
    if jones_type in ("K", "G"):
        k = 2 if jones_type == "K" or not phase_only else 1
        J = np.zeros((nb, n_ant, 2, k, ns, nc), np.complex128)
        for p in range(2):
            mp = m[..., p]
            if jones_type == "K":
                J[r, a1, p, 1, :, p] = 1j * mp
                J[r, a2, p, 1, :, p] = -1j * mp
                dt = -1j * TWO_PI_NS * dnu[None, :] * mp
                J[r, a1, p, 0, :, p] = dt
                J[r, a2, p, 0, :, p] = -dt
            elif phase_only:
                J[r, a1, p, 0, :, p] = 1j * mp
                J[r, a2, p, 0, :, p] = -1j * mp
            else:
                xx = x.reshape(n_ant, 2, 2)
                g = xx[:, p, 0] + 1j * xx[:, p, 1]
                Mp = M[..., 3 * p]
                da = Mp * np.conj(g[a2])[:, None]
                db = g[a1][:, None] * Mp
                J[r, a1, p, 0, :, p] = da
                J[r, a1, p, 1, :, p] = 1j * da
                J[r, a2, p, 0, :, p] = db
                J[r, a2, p, 1, :, p] = -1j * db
        J = J.reshape(nb, -1, ns, nc)
    elif jones_type == "D":
        xx = x.reshape(n_ant, 2, 2)
        d = xx[..., 0] + 1j * xx[..., 1]
        D = np.zeros((n_ant, 2, 2), np.complex128)
        D[:, 0, 0] = D[:, 1, 1] = 1
        D[:, 0, 1] = d[:, 0]
        D[:, 1, 0] = d[:, 1]
        Mm = M.reshape(nb, ns, 2, 2)
        DbH = np.conj(np.swapaxes(D[a2], -1, -2))[:, None]
        N = Mm @ DbH                                   # M D_b^H
        P = D[a1][:, None] @ Mm                        # D_a M
        z = np.zeros_like(N[..., 0, 0])
        E01N = np.stack([N[..., 1, 0], N[..., 1, 1], z, z], -1)      # E01 @ N
        E10N = np.stack([z, z, N[..., 0, 0], N[..., 0, 1]], -1)      # E10 @ N
        PE10 = np.stack([P[..., 0, 1], z, P[..., 1, 1], z], -1)      # P @ E10
        PE01 = np.stack([z, P[..., 0, 0], z, P[..., 1, 0]], -1)      # P @ E01
        J = np.zeros((nb, n_ant, 2, 2, ns, 4), np.complex128)
        J[r, a1, 0, 0] = E01N
        J[r, a1, 0, 1] = 1j * E01N
        J[r, a1, 1, 0] = E10N
        J[r, a1, 1, 1] = 1j * E10N
        J[r, a2, 0, 0] = PE10
        J[r, a2, 0, 1] = -1j * PE10
        J[r, a2, 1, 0] = PE01
        J[r, a2, 1, 1] = -1j * PE01
        J = J.reshape(nb, -1, ns, nc)
    elif jones_type == "KC":
        s = np.array([-1j, 1j])
        J = np.empty((nb, 2, ns, 2), np.complex128)
        J[:, 0] = s * TWO_PI_NS * dnu[None, :, None] * m
        J[:, 1] = s * m
    else:
        J = (np.array([-1j, 1j]) * m)[:, None]
    return m, np.moveaxis(J, 1, -1)


class CellData:
    """Per-cell arrays used by both backends (used correlations only)."""

    def __init__(self, jones_type, batch, c, nu_c):
        corr = list(USED_CORR[jones_type])
        self.V = batch.vis[c][..., corr]
        self.M = batch.model[c]
        self.sw = np.sqrt(batch.weight[c][..., corr])
        self.a1 = np.asarray(batch.ant1, np.int64)
        self.a2 = np.asarray(batch.ant2, np.int64)
        self.dnu = batch.freq[c] - nu_c[c]
        self.n_ant = batch.n_ant


# ---------------------------------------------------------------------------------------------
# ceres
# ---------------------------------------------------------------------------------------------

def _make_cost(pyceres, jones_type, cd, x_full, free_idx, phase_only):
    n_res = cd.V.size * 2
    n_free = len(free_idx)

    class _Cost(pyceres.CostFunction):
        def __init__(self):
            super().__init__()
            self.set_num_residuals(n_res)
            self.set_parameter_block_sizes([n_free])

        def Evaluate(self, parameters, residuals, jacobians):
            x = x_full.copy()
            x[free_idx] = parameters[0]
            if jacobians is None:
                m = model_vis(jones_type, x, cd.M, cd.a1, cd.a2, cd.n_ant, cd.dnu, phase_only)
            else:
                m, J = model_and_jac(jones_type, x, cd.M, cd.a1, cd.a2, cd.n_ant, cd.dnu, phase_only)
                Jf = -cd.sw[..., None] * J[..., free_idx]                 # (nb, ns, nc, n_free)
                jr = np.stack([Jf.real, Jf.imag], axis=-2)               # (nb, ns, nc, 2, n_free)
                jacobians[0][:] = jr.ravel()
            res = cd.sw * (cd.V - m)
            residuals[:] = np.stack([res.real, res.imag], axis=-1).ravel()
            return True

    return _Cost()


def solve_params(jones_type, batch, init, ref, opts):
    """Solve every cell of ``batch`` with pyceres LM (see the module docstring).

    Returns
    -------
    params : contract shapes (stacked over cells)
    n_iter : int32 (n_cell,)
    converged : bool (n_cell,)
    cost : float64 (n_cell,)  chi2 = sum w |V - model|^2 over the used correlations
    """
    import pyceres

    n_cell = batch.n_cell
    ref = np.asarray(ref, np.int64)
    has = antennas_with_data(batch, jones_type)
    phase_only = bool(opts.phase_only) and jones_type == "G"
    x0, free = pack(jones_type, init, ref, has, phase_only)
    x_out = x0.copy()
    nu_c = band_centre(batch)
    n_iter = np.zeros(n_cell, np.int32)
    conv = np.zeros(n_cell, bool)
    cost = np.zeros(n_cell)
    for c in range(n_cell):
        cd = CellData(jones_type, batch, c, nu_c)
        free_idx = np.nonzero(free[c])[0]
        if len(free_idx) == 0:
            conv[c] = True
        else:
            xf = np.ascontiguousarray(x0[c, free_idx])
            cf = _make_cost(pyceres, jones_type, cd, x0[c], free_idx, phase_only)
            problem = pyceres.Problem()
            problem.add_residual_block(cf, None, [xf])
            options = pyceres.SolverOptions()
            options.linear_solver_type = pyceres.LinearSolverType.DENSE_NORMAL_CHOLESKY
            options.minimizer_progress_to_stdout = False
            options.logging_type = pyceres.LoggingType.SILENT
            options.num_threads = 1
            options.max_num_iterations = int(opts.max_iter)
            # relative cost test as the other backends, capped at 1e-14: with a non-zero cost floor a
            # 1e-10 relative cost change still leaves ~1e-4 sigma in the parameters (agreement between
            # backends is tested to 1e-6); the step test then ends the iterations
            options.function_tolerance = min(float(opts.tol), 1e-16)
            options.parameter_tolerance = 1e-12
            options.gradient_tolerance = 1e-15
            summary = pyceres.SolverSummary()
            pyceres.solve(options, problem, summary)
            x_out[c, free_idx] = xf
            n_iter[c] = summary.num_successful_steps
            conv[c] = summary.termination_type == pyceres.TerminationType.CONVERGENCE
        m = model_vis(jones_type, x_out[c], cd.M, cd.a1, cd.a2, cd.n_ant, cd.dnu, phase_only)
        r = cd.V - m
        cost[c] = float(((cd.sw ** 2) * (r.real ** 2 + r.imag ** 2)).sum())
    return unpack(jones_type, x_out, batch.n_ant, phase_only), n_iter, conv, cost
