"""ceres backend: pyceres Levenberg-Marquardt with analytic Jacobians.

One vectorised residual block per cell (all baselines, samples and used correlations of the cell in one
``pyceres.CostFunction``) whose single parameter block holds only the *free* parameters of the cell: the
reference constraints (K: tau[ref] = phi[ref] = 0; G: Im g[ref] = 0, or phase[ref] = 0 for
phase_only) and the parameters of antennas without data are left out of the
vector and held at their initial values.  D is fitted free with its gauge prior (a second residual
block, :func:`alakazam.solvers.models.prior`) and re-referenced afterwards
(:mod:`alakazam.solvers.leakage`).  Linear solver DENSE_NORMAL_CHOLESKY, ``num_threads = 1``
(pyceres retakes the GIL per Evaluate, see notes/SOLVER_BENCHMARKS.md).  Per-baseline blocks with
SPARSE_NORMAL_CHOLESKY (faster for large arrays) are not implemented: ceres is the cross-check
backend, numba is the fast path.

Tolerances: ``function_tolerance = min(opts.tol, 1e-16)``, ``parameter_tolerance = 1e-12``,
``gradient_tolerance = 1e-15``, ``max_num_iterations = opts.max_iter``; ``n_iter`` is the number of
successful LM steps (ceres counts the initial point as one).  ``converged`` is ceres' CONVERGENCE
termination, or, after a FAILURE or NO_CONVERGENCE, the numba LM's test
(:func:`alakazam.solvers.lm.converged_test`) applied to the Gauss-Newton step from ceres' final point
(:func:`_at_minimum`): started at its optimum (CP's and KC's initial guesses are the closed-form /
FFT-polished optimum) ceres' linearised model predicts no cost decrease to rounding, it counts every
step "invalid" and gives up with FAILURE after 5 of them ("Number of consecutive invalid steps more
than max_num_consecutive_invalid_steps") although the point is the minimum -- 3 of 200 noisy CP cells
and 1 of 200 KC cells were flagged "nonconverged" for it, with values equal to numba's.  A final point
whose Gauss-Newton step is not negligible is still not converged.  The function tolerance is
below the scipy backend's 1e-14 because K's phase-only cost converges only linearly under
Gauss-Newton when the data carry gain amplitudes (|V| != |M|): at 1e-14 ceres stopped 1.6e-7 ns
from a noiseless truth (tests/test_solvers.py::test_phase_only_and_heavy_flagging).

The parametrisation and model (``pack``, ``unpack``, ``model_vis``, ``model_and_jac``) are shared with
the jax backend in :mod:`alakazam.solvers.models`.
"""

from __future__ import annotations

import numpy as np

from ..common import antennas_with_data
from ..lm import converged_test
from ..models import CellData, calmode, model_and_jac, model_vis, pack, prior, unpack
from ..parallel_delay import band_centre


#: its tests are relative to the cost too: K's and phase-only fits get the model at the data's scale
#: (common.model_at_data_scale)
MODEL_SCALE_SENSITIVE = True
#: its gradient tolerance is absolute: the weights are normalised per cell first (common.unit_information)
SCALE_SENSITIVE_TOLERANCES = True


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


def _BestPoint(pyceres, xf):
    """An iteration callback keeping a copy of the parameter block ``xf`` after each successful step
    (with ``update_state_every_iteration`` ceres writes it there first)."""

    class _Best(pyceres.IterationCallback):
        def __init__(self):
            super().__init__()
            self.x = None

        def __call__(self, summary):
            if summary.step_is_successful:
                self.x = xf.copy()
            return pyceres.CallbackReturnType.SOLVER_CONTINUE

    return _Best()


def _make_prior(pyceres, p_free):
    """Residuals sqrt(p) x on the free parameters with p > 0 (:func:`alakazam.solvers.models.prior`)."""
    sel = np.nonzero(p_free > 0)[0]
    sq = np.sqrt(p_free[sel])
    n_free = len(p_free)

    class _Prior(pyceres.CostFunction):
        def __init__(self):
            super().__init__()
            self.set_num_residuals(len(sel))
            self.set_parameter_block_sizes([n_free])

        def Evaluate(self, parameters, residuals, jacobians):
            residuals[:] = sq * parameters[0][sel]
            if jacobians is not None:
                jac = np.zeros((len(sel), n_free))
                jac[np.arange(len(sel)), sel] = sq
                jacobians[0][:] = jac.ravel()
            return True

    return _Prior()


def _at_minimum(jones_type, cd, x_full, free_idx, phase_only, tol, p_free=None):
    """Whether the cell's point ``x_full`` is a minimum by the numba LM's convergence test
    (:func:`alakazam.solvers.lm.converged_test`), with the step and cost change of the Gauss-Newton step
    from that point (least-squares solve of J dx = -r on the free parameters: the minimum-norm step,
    well defined where J^T J is singular) in place of the last accepted step.  Non-finite residuals or
    Jacobian: False."""
    m, J = model_and_jac(jones_type, x_full, cd.M, cd.a1, cd.a2, cd.n_ant, cd.dnu, phase_only)
    res = cd.sw * (cd.V - m)
    Jf = -cd.sw[..., None] * J[..., free_idx]
    r = np.concatenate([res.real.ravel(), res.imag.ravel()])
    A = np.concatenate([Jf.real.reshape(-1, len(free_idx)), Jf.imag.reshape(-1, len(free_idx))])
    if p_free is not None and (p_free > 0).any():          # the prior's residuals sqrt(p) x
        sel = np.nonzero(p_free > 0)[0]
        r = np.concatenate([r, np.sqrt(p_free[sel]) * x_full[free_idx][sel]])
        rows = np.zeros((len(sel), len(free_idx)))
        rows[np.arange(len(sel)), sel] = np.sqrt(p_free[sel])
        A = np.concatenate([A, rows])
    if not (np.isfinite(r).all() and np.isfinite(A).all()):
        return False
    dx = np.linalg.lstsq(A, -r, rcond=None)[0]
    cost = float(r @ r)
    rn = r + A @ dx
    cost_n = float(rn @ rn)                 # the linearised cost after the step (<= cost)
    return bool(converged_test.py_func(cost, cost_n, float(np.sqrt(dx @ dx)),
                                       float(np.sqrt(x_full[free_idx] @ x_full[free_idx])), float(tol)))


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
    phase_only = calmode(opts, jones_type)          # False, True or models.AMP_ONLY
    x0, free = pack(jones_type, init, ref, has, phase_only)
    pw = prior(jones_type, batch, ref, x0.shape[1])
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
            if (pw[c, free_idx] > 0).any():
                problem.add_residual_block(_make_prior(pyceres, pw[c, free_idx]), None, [xf])
            options = pyceres.SolverOptions()
            options.linear_solver_type = pyceres.LinearSolverType.DENSE_NORMAL_CHOLESKY
            options.minimizer_progress_to_stdout = False
            options.logging_type = pyceres.LoggingType.SILENT
            options.num_threads = 1
            # the parameter block follows every accepted step, and a callback keeps the last one: after
            # a FAILURE (5 invalid steps in a row, e.g. at the minimum, below) ceres puts the starting
            # point back, and the cell kept it (D's free fit: cost 23213 -> 33 reported, then all
            # d = 0 returned and flagged)
            options.update_state_every_iteration = True
            best = _BestPoint(pyceres, xf)
            options.callbacks = [best]
            options.max_num_iterations = int(opts.max_iter)
            # relative cost test as the other backends, capped at 1e-14: with a non-zero cost floor a
            # 1e-10 relative cost change still leaves ~1e-4 sigma in the parameters (agreement between
            # backends is tested to 1e-6); the step test then ends the iterations
            options.function_tolerance = min(float(opts.tol), 1e-16)
            options.parameter_tolerance = 1e-12
            options.gradient_tolerance = 1e-15
            summary = pyceres.SolverSummary()
            pyceres.solve(options, problem, summary)
            if summary.termination_type == pyceres.TerminationType.FAILURE and best.x is not None:
                xf[:] = best.x                  # the last accepted point, not the restored start
            x_out[c, free_idx] = xf
            n_iter[c] = summary.num_successful_steps
            conv[c] = summary.termination_type == pyceres.TerminationType.CONVERGENCE
            if not conv[c] and summary.termination_type in (pyceres.TerminationType.FAILURE,
                                                             pyceres.TerminationType.NO_CONVERGENCE):
                # ceres gives up at a minimum its linear model cannot improve (see the module docstring)
                xc = x0[c].copy()
                xc[free_idx] = xf
                conv[c] = _at_minimum(jones_type, cd, xc, free_idx, phase_only, opts.tol, pw[c, free_idx])
        m = model_vis(jones_type, x_out[c], cd.M, cd.a1, cd.a2, cd.n_ant, cd.dnu, phase_only)
        r = cd.V - m
        cost[c] = float(((cd.sw ** 2) * (r.real ** 2 + r.imag ** 2)).sum())
    return unpack(jones_type, x_out, batch.n_ant, phase_only), n_iter, conv, cost
