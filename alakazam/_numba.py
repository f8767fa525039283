"""The one place numba jit options are set.

cache=True keeps compiled kernels on disk (a new process loads them in ~0.3 s instead of compiling);
nogil=True lets threads overlap; fastmath stays off because flagged data carries NaN.
``parallel=True`` is used only through :data:`pjit`, for kernels proven race-free (each thread owns
its output slice).
"""

import numba

JIT_OPTS = dict(cache=True, nogil=True, fastmath=False)

jit = numba.njit(**JIT_OPTS)


def njit(*args, **kwargs):
    """``numba.njit`` with the project options (overridable)."""
    opts = dict(JIT_OPTS)
    opts.update(kwargs)
    if args and callable(args[0]):
        return numba.njit(**opts)(args[0])
    return numba.njit(*args, **opts)


def pjit(func):
    """Parallel (prange) kernel: only for loops where each iteration writes its own output."""
    return numba.njit(parallel=True, **JIT_OPTS)(func)
