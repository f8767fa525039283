"""The one place numba jit options are set.

cache=True keeps compiled kernels on disk (a new process loads them in ~0.3 s instead of compiling);
nogil=True lets threads overlap; fastmath stays off because flagged data carries NaN.
``parallel=True`` is used only through :data:`pjit`, for kernels proven race-free (each thread owns
its output slice); the kernels that a run compiles on its first use prefer :func:`threaded` (a serial
kernel over interleaved items on a thread pool: the same values, less to compile).

``no_cfunc_wrapper=True``: numba otherwise lowers, optimises and emits, for every compiled function
(each kernel and each helper it calls), a C-ABI wrapper that only first-class function values
(``numba.cfunc`` / function-typed arguments) use; alakazam calls its kernels from Python (the
CPython wrapper, kept) and from other kernels (direct calls), never through that wrapper.  Dropping it
leaves the kernels' code and values unchanged (the tiny recipe's solution tables, CORRECTED_DATA and
FLAG bit-identical) and saves ~0.01 s of compile CPU per compiled function (30 small kernels: 0.072-0.088
vs 0.084-0.093 s each), about 1 s over the ~100 functions of the cold start (issue 16; the run's and
the background compile's, listed by benchmarks/compile_events.py).  Small, but free.
"""

import numba

JIT_OPTS = dict(cache=True, nogil=True, fastmath=False, no_cfunc_wrapper=True)

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


_POOL = None


def _block_interrupts():
    """Pool threads never take SIGINT/SIGTERM: the kernel delivers a process signal to any thread that
    does not block it, and Python then runs the handler in the main thread even where the main thread
    holds the signal (core/signals.held: a save and its marker as one step)."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def threaded(kernel, n_items, *args):
    """Run a ``nogil`` kernel over ``n_items`` independent items on numba's thread count.

    ``kernel(start, stride, *args)`` must process the items ``range(start, n_items, stride)`` and write
    only their own outputs (race-free by construction).  It is called once per worker thread with
    ``start = 0 .. n_threads - 1`` and ``stride = n_threads`` (interleaved, so cells of unequal cost
    balance), from a persistent thread pool: one Python call per thread, never per item.

    Why not ``prange``: a ``parallel=True`` kernel wrapping a large solver costs 4-7 s more to
    compile (numba's parfor lowering re-optimises the inlined solver), while the same kernel with a
    plain loop costs < 1 s more; the solvers' first-call compile time is a target (issue 3).  The same
    holds for the row kernels of the apply and the solve's data pass (0.3-1.3 s less each to compile
    than their prange form, issue 16 cold start).

    Returns the threads' return values (a list, in thread order): a kernel that counts returns its
    count and the caller sums them.
    """
    global _POOL
    n_threads = max(1, min(numba.get_num_threads(), int(n_items)))
    if n_threads == 1:
        return [kernel(0, 1, *args)]
    if _POOL is None or _POOL._max_workers < n_threads:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=max(n_threads, numba.get_num_threads()),
                                   thread_name_prefix="alakazam-solver", initializer=_block_interrupts)
    futures = [_POOL.submit(kernel, t, n_threads, *args) for t in range(n_threads)]
    return [f.result() for f in futures]
