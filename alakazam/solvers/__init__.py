"""Solver interface, backend registry and dispatcher.

Every Jones solve goes through :func:`solve`: it takes a :class:`CellBatch` (averaged data for many
solution cells at once, e.g. all channels of a bandpass) and returns a :class:`SolveResult` with one
(n_ant, 2, 2) Jones matrix per antenna and cell.  No Python-level call per cell on the hot path.

Data model (per cell, baseline b = (ant1[b], ant2[b]), sample s, correlation c)::

    V[b, s] = J[ant1] @ M[b, s] @ J[ant2]^H          (2x2; c = 0 pp, 1 pq, 2 qp, 3 qq)

with correlations in MS order (XX XY YX YY or RR RL LR LL), p/q the two feeds.  ``weight`` is the
inverse variance of each averaged visibility (0 = flagged / absent); the cost of a cell is
chi2 = sum w |V - model|^2 over the correlations the term uses (K, G: parallel hands; KC, CP: cross
hands; D: all four).

Parametrisations (what a backend fits; ``params`` arrays, per cell):

====  ==============================  =========================================================
term  params shape (per cell)          meaning / constraint
====  ==============================  =========================================================
K     float (n_ant, 2, 2)              [a, pol, 0] = tau (ns), [a, pol, 1] = nuisance phase phi (rad).
                                       model phase for pol p on (a,b): (phi_a - phi_b)
                                       - 2 pi (tau_a - tau_b) 1e-9 (nu - nu_c),  nu_c = mean(freq[cell]).
                                       tau[ref] = 0, phi[ref] = 0.  Jones = diag(exp(-2 pi i tau nu)).
G     complex (n_ant, 2)               g_p, g_q; Jones = diag(g_p, g_q); arg g[ref] = 0 per pol;
                                       phase_only: |g| = 1.
T     complex (n_ant, 1)               g; Jones = diag(g, g) (G with g_p = g_q); arg g[ref] = 0.
D     complex (n_ant, 2)               d_pq, d_qp; Jones = [[1, d_pq], [d_qp, 1]]; d_pq[ref] = 0.
KC    float (2,)                       [0] = tau (ns), [1] = nuisance cross-hand phase (rad); one
                                       for all antennas; Jones = diag(exp(-2 pi i tau nu), 1).
                                       pq model: exp(-i(2 pi tau 1e-9 (nu - nu_c) + phi)) M_pq.
CP    float (1,)                       phi (rad); Jones = diag(1, exp(i phi)) for all antennas.
====  ==============================  =========================================================

Backends
--------
``numba`` (default, native batched kernels), ``ceres`` (pyceres LM), ``jax`` (jit LM), ``scipy``
(least_squares LM).  A backend module ``alakazam.solvers.backends.<name>_backend`` exposes::

    solve_params(jones_type, batch, init, ref, opts) -> (params, n_iter, converged, cost)

where ``init`` are the initial params (same shapes as above, stacked over cells, from the term
module's ``initial_guess``), ``ref`` (n_cell,) int the reference antenna actually used per cell, and
``opts`` a :class:`SolveOptions`.  The dispatcher does initial guesses, re-referencing, flagging and
the conversion params -> Jones once for every backend (``alakazam.solvers.common``), each through
the term's solver module named by the registry (:mod:`alakazam.jones.terms`).  A type whose module
defines ``solve_with(backend_module, batch, init, ref, opts)`` (T) is solved through another type's
``solve_params`` in the chosen backend.
A backend whose package is missing raises :class:`~alakazam.errors.BackendUnavailableError` at once:
there is no fallback.
"""

from __future__ import annotations

import importlib
import importlib.util
import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import AlakazamError, BackendUnavailableError
from ..jones import terms

#: every Jones type (the registry, :mod:`alakazam.jones.terms`)
JONES_TYPES = terms.names()

#: backend name -> (module, python package that must be importable, pip name)
BACKENDS = {
    "numba": ("alakazam.solvers.backends.numba_backend", "numba", "numba"),
    "ceres": ("alakazam.solvers.backends.ceres_backend", "pyceres", "pyceres"),
    "jax": ("alakazam.solvers.backends.jax_backend", "jax", "'alakazam[jax]' (jax and jaxlib)"),
    "scipy": ("alakazam.solvers.backends.scipy_backend", "scipy", "scipy"),
}
DEFAULT_BACKEND = "numba"


@dataclass
class CellBatch:
    """Averaged data for a batch of solution cells that share one baseline layout.

    Attributes
    ----------
    vis, model : complex128 (n_cell, n_bl, n_samp, 4)
        Averaged (pre-corrected) data and (sky-side corrupted) model, correlations pp, pq, qp, qq.
    weight : float64 (n_cell, n_bl, n_samp, 4)
        Inverse variance; 0 marks flagged or missing samples.
    ant1, ant2 : int32 (n_bl,)
        Antenna indices in 0..n_ant-1 (active-antenna numbering), ant1 != ant2.
    freq : float64 (n_cell, n_samp)
        Frequency of each sample in Hz (used by K and KC; others may ignore it).
    n_ant : int
    ref_ant : int
        Requested reference antenna (active numbering).
    ref_ants : tuple of int
        The reference antennas in priority order (``ref_ant`` first); empty = ``(ref_ant,)``.
    """

    vis: np.ndarray
    model: np.ndarray
    weight: np.ndarray
    ant1: np.ndarray
    ant2: np.ndarray
    freq: np.ndarray
    n_ant: int
    ref_ant: int = 0
    ref_ants: tuple = ()
    feed_basis: str = ""        # "linear" / "circular" when known (D's gauge, solvers/leakage.py)
    leakage_gauge: str = "reference"   # D: "absolute" keeps the free fit (linear feeds; solvers/leakage.py)
    #: K: the initial guess adds the per-antenna stacked fringe search (solvers/parallel_delay.py); set for
    #: the cells solved again (solvers/weak_cells.py, solvers/nosignal.py)
    init_search: bool = False
    #: K with ``init_search``: the solution the search starts from, (n_cell, n_ant, 2, 2) params (the
    #: cells' first solve), else the hub fit's
    init_params: Optional[np.ndarray] = None

    @property
    def n_cell(self) -> int:
        return self.vis.shape[0]

    def take(self, cells, weight=None) -> "CellBatch":
        """The cells ``cells`` (indices or a slice) as a batch of their own, with ``weight`` in place of
        theirs when given (the per-hand, no-signal and matched-SNR sub-solves share this)."""
        w = self.weight[cells].copy() if weight is None else weight
        return dataclasses.replace(self, vis=np.ascontiguousarray(self.vis[cells]),
                                   model=np.ascontiguousarray(self.model[cells]), weight=w,
                                   freq=np.ascontiguousarray(self.freq[cells]),
                                   init_params=None if self.init_params is None else self.init_params[cells])

    def validate(self) -> None:
        nc, nb, ns, ncorr = self.vis.shape
        if ncorr != 4:
            raise AlakazamError(f"CellBatch.vis must have 4 correlations, got {ncorr}")
        for name in ("model", "weight"):
            if getattr(self, name).shape != self.vis.shape:
                raise AlakazamError(
                    f"CellBatch.{name} shape {getattr(self, name).shape} != vis shape {self.vis.shape}")
        if self.ant1.shape != (nb,) or self.ant2.shape != (nb,):
            raise AlakazamError("CellBatch.ant1/ant2 must have shape (n_bl,)")
        if self.freq.shape != (nc, ns):
            raise AlakazamError(f"CellBatch.freq shape {self.freq.shape} != {(nc, ns)}")
        if not (0 <= self.ref_ant < self.n_ant):
            raise AlakazamError(f"ref_ant {self.ref_ant} outside 0..{self.n_ant - 1}")


#: backends that implement amp_only (CASA calmode='a'; ceres and jax through solvers/models.py's
#: AMP_ONLY gain model); any other refuses it (no fallback)
AMP_ONLY_BACKENDS = ("numba", "scipy", "ceres", "jax")


@dataclass
class SolveOptions:
    phase_only: bool = False
    amp_only: bool = False          # G: real positive gains (CASA calmode='a'); every backend
    max_iter: int = 100
    tol: float = 1.0e-10
    gpu: bool = False
    # solution quality (alakazam.solvers.quality); 0 / False = off, as for a direct solver call.  The
    # solve flow passes minblperant (4), minsnr (3) and flags non-converged cells.
    min_bl_per_ant: int = 0
    min_snr: float = 0.0
    flag_nonconverged: bool = False


@dataclass
class SolveResult:
    """Per-cell solutions.

    Attributes
    ----------
    jones : complex128 (n_cell, n_ant, 2, 2)
        NaN where flagged.
    flags : bool (n_cell, n_ant)
        True = no valid solution (no unflagged data, NaN/Inf, zero determinant); for K and G (flags per
        hand, :mod:`alakazam.solvers.handsolve`): the solution is not whole, ``extra['pol_flags'].any(-1)``.
    delay : float64 (n_cell, n_ant, 2) or None
        K: per-pol delay in ns; KC: (tau, 0) for every antenna.  None for G, D, CP.
    params : ndarray
        The fitted parameters (see module docstring), referenced.
    converged : bool (n_cell,)
    n_iter : int32 (n_cell,)
    cost : float64 (n_cell,)
        Final chi2 of the cell.
    ref_ant : int32 (n_cell,)
        Reference antenna actually used (differs from the requested one when it had no data).
    extra : dict
        ``snr`` (n_cell, n_ant, 2) per pol (:func:`alakazam.solvers.quality.snr`); bool
        (n_cell, n_ant) masks of the solutions flagged by ``minblperant``, ``amplitude_undetermined``
        (G / T amplitudes the baselines do not determine, flagged whatever ``min_snr`` is), ``minsnr`` and
        ``nonconverged`` (each counted where the antenna was not already flagged for lack of data).
        K and G also: ``pol_flags`` (n_cell, n_ant, 2) the flags per hand (a flagged hand's diagonal
        element NaN, the other kept) and ``ref_ant_hand`` (n_cell, 2) each hand's reference; their
        reason masks count a solution (not whole) flagged by the check in some hand.
    """

    jones: np.ndarray
    flags: np.ndarray
    delay: Optional[np.ndarray]
    params: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    cost: np.ndarray
    ref_ant: np.ndarray
    extra: dict = field(default_factory=dict)


def check_backend(name: str):
    """Return the backend module, or raise a clear error if it is unknown or not installed."""
    if name not in BACKENDS:
        raise AlakazamError(
            f"solver_backend: unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    check_package(name)
    return importlib.import_module(BACKENDS[name][0])


def check_package(name: str):
    """BackendUnavailableError unless the package of backend ``name`` (one of BACKENDS) imports: missing,
    or present but broken -- jax without jaxlib, a pyceres whose library does not load -- which was an
    "internal error" once the solve imported it, after the data were read (review 55b).  The parameter
    checks call this (alakazam/solve_precheck.py), before anything runs; the backend module itself is
    imported only by :func:`check_backend` (the numba kernels load on first use)."""
    _, pkg, pipname = BACKENDS[name]
    install = f"Install it with: pip install {pipname} (alakazam never falls back to another backend)"
    if importlib.util.find_spec(pkg) is None:
        raise BackendUnavailableError(
            f"solver_backend: {name!r} needs the Python package '{pkg}', which is not installed. {install}")
    try:
        importlib.import_module(pkg)
    except Exception as e:          # noqa: BLE001 -- ImportError, OSError of a shared library, ...
        raise BackendUnavailableError(
            f"solver_backend: {name!r} needs the Python package '{pkg}', which is installed but does not "
            f"import ({type(e).__name__}: {e}). {install}") from None


def check_amp_only(name: str, amp_only: bool):
    """calmode='a' (amplitude-only G) exists in the backends of AMP_ONLY_BACKENDS (all four now): a
    clear error for any other (never a silent switch of backend)."""
    if amp_only and name not in AMP_ONLY_BACKENDS:
        raise AlakazamError(f"calmode: 'a' (amplitude-only G) is implemented by the solver backends "
                            f"{', '.join(AMP_ONLY_BACKENDS)}, not {name!r}; choose one of those")


def check_device(name: str, gpu: bool):
    """``gpu=True``: only the jax backend runs on a GPU, and a GPU must be present (no CPU fallback)."""
    if not gpu:
        return
    if name != "jax":
        raise AlakazamError(f"gpu: True needs solver_backend/solver 'jax' (the {name!r} backend runs on the "
                            "CPU only); set the backend to jax or gpu to False")
    check_backend(name).require_gpu()


def solve(jones_type: str, batch: CellBatch, backend: str = DEFAULT_BACKEND,
          opts: Optional[SolveOptions] = None) -> SolveResult:
    """Solve one Jones type for a batch of cells with the chosen backend (no fallback)."""
    tt = terms.get(jones_type)                   # an unknown type: error naming the known ones
    opts = opts or SolveOptions()
    batch.validate()
    mod = check_backend(backend)
    check_amp_only(backend, opts.amp_only and tt.gain)
    from . import common

    return common.run(jones_type, batch, mod, opts, backend)
