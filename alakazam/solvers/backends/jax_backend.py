"""jax backend: a jit-compiled Levenberg-Marquardt solver, one compiled function per problem shape.

Algorithm
---------
Plain Levenberg-Marquardt on the structured normal equations ``(J^T J + lam diag(J^T J)) dx = -J^T r``
with the Jacobian of the (real, weighted) residual vector from ``jax.jacfwd`` -- the parameter counts
(4 n_ant at most) are small, so forward-mode autodiff is cheap.  Same parametrisation and reference
constraints and D's gauge prior (residuals sqrt(p) x, :func:`alakazam.solvers.models.prior`) as
the ceres backend (:func:`alakazam.solvers.models.pack`): fixed
parameters (reference, antennas without data) are masked out of the Jacobian and get a unit diagonal,
so their step is exactly 0 and every cell of a shape uses the same compiled code.  The design's
"jaxopt LM / BFGS" is not used: jaxopt is unmaintained, and its dense-Jacobian LM was measured
2-150x slower (notes/SOLVER_BENCHMARKS.md).

Convergence (as ceres): an accepted step with relative cost decrease <= ``min(opts.tol, 1e-14)``, or a step
``|dx| <= xtol (|x| + xtol)`` (xtol = 1e-12 in float64), or ``max |J^T r| <= 1e-15`` (float64) /
the float32 equivalents (both tolerances raised to 10 eps in float32).  ``n_iter`` counts accepted
steps; at most ``opts.max_iter`` iterations.

Compilation and batching
------------------------
Functions are cached in :data:`_CACHE` keyed by (term, phase_only, n_ant, n_bl, n_samp, dtype, chunk):
compiled once per shape, never per cell.  Cells are solved in chunks of :data:`CHUNK` (4) cells
(a batch of fewer cells: one chunk of that size),
``vmap`` inside a chunk (a ``while_loop`` under ``vmap`` runs to the slowest cell, so large vmaps are
slower, see the notes); the last chunk is padded by repeating its last cell so shapes stay stable.
:data:`TRACE_COUNT` counts traces per key (for tests).

Precision
---------
float64 on CPU.  x64 is enabled only *inside* this backend, with the ``jax.enable_x64(True)``
context manager around tracing and every call, so other jax users in the process keep their global
setting.  float32 (complex64) when ``opts.gpu`` is set (on the GPU); ``opts.gpu`` without a GPU
that jax can use is an error naming the missing device (:func:`require_gpu`; never a silent CPU
run).  ``solve_params(..., precision="float32")`` forces the float32
path on any device (used by the tests).
"""

from __future__ import annotations

import numpy as np

from ..common import antennas_with_data
from ..models import AMP_ONLY, CellData, calmode, model_vis, pack, prior, unpack
from ..parallel_delay import band_centre

#: its gradient test (max |J^T r| <= 1e-15) is absolute: the weights are normalised per cell first
#: (common.unit_information)
SCALE_SENSITIVE_TOLERANCES = True
#: and K's and phase-only fits get the model at the data's scale (common.model_at_data_scale)
MODEL_SCALE_SENSITIVE = True

#: cells per compiled call (vmapped)
CHUNK = 4
#: compiled functions, keyed by (term, phase_only, n_ant, n_bl, n_samp, dtype, chunk)
_CACHE: dict = {}
#: number of traces per key (a Python side effect executed only while tracing)
TRACE_COUNT: dict = {}


def _gpu_present():
    import jax
    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:
        return False


def require_gpu():
    """Raise AlakazamError unless jax sees a GPU (the no-fallback rule: ``gpu: true`` never runs on
    the CPU)."""
    if _gpu_present():
        return
    import jax

    from ...errors import AlakazamError
    try:
        have = ", ".join(f"{d.platform}:{d.id}" for d in jax.devices()) or "none"
    except RuntimeError:
        have = "none"
    raise AlakazamError(
        "gpu: True needs a GPU device (CUDA or ROCm) usable by jax, but jax finds no 'gpu' platform "
        f"(devices present: {have}). Install a GPU build of jax (e.g. pip install \"jax[cuda12]\") on "
        "a machine with a GPU, or set gpu=False (gpu: false) to solve on the CPU")


def _select_precision(opts, precision):
    if precision is not None:
        if precision not in ("float32", "float64"):
            from ...errors import AlakazamError
            raise AlakazamError(f"jax backend: precision {precision!r}; expected 'float32' or 'float64'")
        return precision
    if opts.gpu:
        require_gpu()
        return "float32"
    return "float64"


def _build(key):
    import jax
    import jax.numpy as jnp

    term, phase_only, n_ant, n_bl, n_samp, dtype, chunk = key
    fdt = jnp.float32 if dtype == "float32" else jnp.float64
    eps = float(np.finfo(dtype).eps)
    xtol = max(1e-12, 10 * eps)
    gtol = 1e-15 if dtype == "float64" else 10 * eps

    def lm_one(x0, free, pw, V, M, sw, dnu, a1, a2, max_iter, tol):
        f = free.astype(fdt)
        sp = jnp.sqrt(pw)

        def resid(x):                 # the data's residuals, then the prior's sqrt(p) x (0 but for D)
            r = sw * (V - model_vis(term, x, M, a1, a2, n_ant, dnu, phase_only, xp=jnp))
            return jnp.concatenate([r.real.ravel(), r.imag.ravel(), sp * x])

        jac = jax.jacfwd(resid)
        tol_eff = jnp.maximum(jnp.minimum(tol, 1e-14), 10 * eps)

        def cond(s):
            x, cost, lam, it, n_ok, done, conv = s
            return (~done) & (it < max_iter)

        def body(s):
            x, cost, lam, it, n_ok, done, conv = s
            r = resid(x)
            J = jac(x) * f[None, :]
            A = J.T @ J
            g = J.T @ r
            d = jnp.diag(A)
            dd = jnp.where(d > 0, d, 1.0)
            Am = A + jnp.diag(lam * dd + (1.0 - f) + jnp.where(d > 0, 0.0, f))
            dx = -jnp.linalg.solve(Am, g) * f
            x_new = x + dx
            r_new = resid(x_new)
            cost_new = jnp.sum(r_new * r_new)
            ok = jnp.isfinite(cost_new) & (cost_new < cost)
            small_step = jnp.linalg.norm(dx) <= xtol * (jnp.linalg.norm(x) + xtol)
            small_grad = jnp.max(jnp.abs(g)) <= gtol
            small_f = ok & ((cost - cost_new) <= tol_eff * cost)
            c = small_step | small_grad | small_f | (cost == 0)
            x = jnp.where(ok, x_new, x)
            cost = jnp.where(ok, cost_new, cost)
            lam = jnp.where(ok, jnp.maximum(lam / 3.0, 1e-12), lam * 4.0)
            c = c | (lam > 1e16)
            return (x, cost, lam, it + 1, n_ok + ok.astype(jnp.int32), c, c & ~(lam > 1e16))

        r0 = resid(x0)
        s0 = (x0, jnp.sum(r0 * r0), jnp.asarray(1e-3, fdt), jnp.int32(0), jnp.int32(0),
              jnp.asarray(False), jnp.asarray(False))
        x, cost, lam, it, n_ok, done, conv = jax.lax.while_loop(cond, body, s0)
        return x, n_ok, conv, cost

    def chunk_fn(x0, free, pw, V, M, sw, dnu, a1, a2, max_iter, tol):
        TRACE_COUNT[key] = TRACE_COUNT.get(key, 0) + 1
        return jax.vmap(lm_one, in_axes=(0, 0, 0, 0, 0, 0, 0, None, None, None, None))(
            x0, free, pw, V, M, sw, dnu, a1, a2, max_iter, tol)

    return jax.jit(chunk_fn)


def get_compiled(jones_type, phase_only, n_ant, n_bl, n_samp, precision, chunk=CHUNK):
    """The cached jitted chunk solver for one problem shape (built on first use)."""
    key = (jones_type, phase_only if phase_only == AMP_ONLY else bool(phase_only), int(n_ant), int(n_bl),
           int(n_samp), precision, int(chunk))
    fn = _CACHE.get(key)
    if fn is None:
        fn = _CACHE[key] = _build(key)
    return key, fn


def solve_params(jones_type, batch, init, ref, opts, precision=None):
    """Solve every cell of ``batch`` with the jitted LM (see the module docstring).

    Parameters
    ----------
    jones_type, batch, init, ref, opts
        As in the backend contract (``alakazam.solvers``).
    precision : {None, 'float32', 'float64'}
        None: float32 if ``opts.gpu`` and a GPU is present, else float64.

    Returns
    -------
    params : contract shapes and dtypes (float64 / complex128), stacked over cells
    n_iter : int32 (n_cell,)
    converged : bool (n_cell,)
    cost : float64 (n_cell,)
    """
    import jax
    import jax.numpy as jnp

    precision = _select_precision(opts, precision)
    n_cell, n_bl, n_samp, _ = batch.vis.shape
    ref = np.asarray(ref, np.int64)
    has = antennas_with_data(batch, jones_type)
    phase_only = calmode(opts, jones_type)          # False, True or models.AMP_ONLY
    x0, free = pack(jones_type, init, ref, has, phase_only)
    pw = prior(jones_type, batch, ref, x0.shape[1])
    nu_c = band_centre(batch)
    cds = [CellData(jones_type, batch, c, nu_c) for c in range(n_cell)]
    V = np.stack([cd.V for cd in cds])
    M = np.stack([cd.M for cd in cds])
    sw = np.stack([cd.sw for cd in cds])
    dnu = np.stack([cd.dnu for cd in cds])
    # chunks of CHUNK cells; a batch of fewer cells is one chunk of its own size (padding one cell
    # to four made single-cell solves four times slower); so at most CHUNK shapes per problem
    chunk = CHUNK if n_cell >= CHUNK else n_cell
    n_pad = (-n_cell) % chunk
    if n_pad:
        pad = lambda a: np.concatenate([a, np.repeat(a[-1:], n_pad, axis=0)])  # noqa: E731
        x0, free, pw, V, M, sw, dnu = map(pad, (x0, free, pw, V, M, sw, dnu))
    fdt = np.float32 if precision == "float32" else np.float64
    cdt = np.complex64 if precision == "float32" else np.complex128
    x_out = np.empty(x0.shape)
    n_iter = np.empty(x0.shape[0], np.int32)
    conv = np.empty(x0.shape[0], bool)
    cost = np.empty(x0.shape[0])
    with jax.enable_x64(True):
        key, fn = get_compiled(jones_type, phase_only, batch.n_ant, n_bl, n_samp, precision, chunk)
        a1 = jnp.asarray(np.asarray(batch.ant1, np.int32))
        a2 = jnp.asarray(np.asarray(batch.ant2, np.int32))
        mi = jnp.int32(int(opts.max_iter))
        tol = jnp.asarray(float(opts.tol), fdt)
        for s in range(0, x0.shape[0], chunk):
            sl = slice(s, s + chunk)
            xs, its, cs, cos = fn(jnp.asarray(x0[sl], fdt), jnp.asarray(free[sl]), jnp.asarray(pw[sl], fdt),
                                  jnp.asarray(V[sl], cdt), jnp.asarray(M[sl], cdt),
                                  jnp.asarray(sw[sl], fdt), jnp.asarray(dnu[sl], fdt),
                                  a1, a2, mi, tol)
            x_out[sl] = np.asarray(xs, np.float64)
            n_iter[sl] = np.asarray(its)
            conv[sl] = np.asarray(cs)
            cost[sl] = np.asarray(cos, np.float64)
    x_out, n_iter, conv, cost = x_out[:n_cell], n_iter[:n_cell], conv[:n_cell], cost[:n_cell]
    return unpack(jones_type, x_out, batch.n_ant, phase_only), n_iter, conv, cost
