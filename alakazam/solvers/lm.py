"""Shared numba pieces of the Levenberg-Marquardt solvers: a damped Cholesky solve of the normal
equations.  Small dense systems (a few hundred parameters at most) are solved in-kernel, without LAPACK,
so that solving cells in parallel threads never oversubscribes BLAS threads.
"""

import numpy as np

from .._numba import njit


@njit
def chol_solve(a, b, lam):
    """Solve (A + lam * diag(A)) x = b for symmetric positive semi-definite A (n, n).

    Zero diagonal entries (parameters without data) get a unit diagonal so the step is 0 for them.
    Returns (x, ok); ok is False if the matrix is not positive definite.
    """
    n = a.shape[0]
    m = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            m[i, j] = a[i, j]
        d = a[i, i]
        m[i, i] = d * (1.0 + lam) if d > 0 else 1.0
    # in-place Cholesky (lower)
    for j in range(n):
        s = m[j, j]
        for k in range(j):
            s -= m[j, k] * m[j, k]
        if s <= 0.0:
            return np.zeros(n), False
        s = np.sqrt(s)
        m[j, j] = s
        for i in range(j + 1, n):
            t = m[i, j]
            for k in range(j):
                t -= m[i, k] * m[j, k]
            m[i, j] = t / s
    y = np.empty(n)
    for i in range(n):
        t = b[i]
        for k in range(i):
            t -= m[i, k] * y[k]
        y[i] = t / m[i, i]
    x = np.empty(n)
    for i in range(n - 1, -1, -1):
        t = y[i]
        for k in range(i + 1, n):
            t -= m[k, i] * x[k]
        x[i] = t / m[i, i]
    return x, True


@njit
def converged_test(cost_old, cost_new, step_norm, x_norm, tol):
    """Shared convergence test: (relative cost change < tol and relative step < 1e-9), or relative
    step < 1e-10.  The step condition keeps cells whose cost floor is not zero (e.g. K, which does not
    fit amplitudes) iterating to the minimum instead of stopping on a flat cost."""
    if cost_old > 0 and abs(cost_old - cost_new) <= tol * cost_old and \
            step_norm <= 1e-9 * (x_norm + 1e-3):
        return True
    if step_norm <= 1e-10 * (x_norm + 1e-10):
        return True
    return False


@njit
def damped_step(jtj, jtr, lam, it, max_iter):
    """The next Levenberg-Marquardt step: solve (A + lam diag A) x = -jtr, multiplying lam by 10
    until A + lam diag A is positive definite.  Every attempt counts as an iteration.

    Returns (step, ok, lam, it); ok is False when max_iter or lam > 1e12 was reached first.
    """
    ok = False
    step = np.zeros(jtr.shape[0])
    while it < max_iter and lam <= 1e12:
        it += 1
        step, ok = chol_solve(jtj, -jtr, lam)
        if ok:
            break
        lam *= 10.0
    return step, ok, lam, it


@njit
def norm(x):
    """Euclidean norm of a real vector (a loop: cheaper to compile than an array expression)."""
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return np.sqrt(s)
