"""The registry of Jones types: every fact about a term type lives here, once.

Every other module asks this registry (:func:`get`, :func:`names`, the :class:`JonesType` fields) instead
of keeping its own table or comparing type strings.  A new type is one :class:`JonesType` entry below
plus its solver module under :mod:`alakazam.solvers` (and tests, docs).

Conventions (pinned by tests/test_terms.py)
-------------------------------------------
* RIME (docs/conventions.md): ``J_a = [K G T KC CP]_a D_a P_a`` (antenna side ... sky side).
  ``rime_order`` is the place of a type in that product; the diagonal types (``matrix_form ==
  'diagonal'``) commute with each other and are applied together as ``Diag``; the full types (D)
  come after them; P (parallactic angle) is not a solved type.
* ``corr``: correlations the solve uses, MS order 0 pp, 1 pq, 2 qp, 3 qq (parallel hands ``(0, 3)``;
  cross hands only ``(1, 2)``; all four for a full matrix).
* ``params``: the fitted parameters of one cell (shape and dtype of ``SolveResult.params`` per cell;
  ``n_par_ant``: real parameters per antenna, or per cell when ``is_global``; ``n_ref_fixed``: the real
  parameters the reference constraint fixes).  ``calmode``: ``phase_only`` / ``amp_only`` (CASA calmode
  'p' / 'a') apply; then phase-only keeps half the real parameters per antenna.
* ``channel_sampled``: a cell keeps every channel as a sample (delay types fit a slope over frequency);
  ``scan_sampled``: a cell keeps one time sample per scan (parallactic-angle diversity).
* ``is_global``: one value for all antennas (flags: a cell is flagged for every antenna at once).
* ``phase_ref``: how a reference antenna fixes the gauge and how cells are re-referenced
  (:mod:`alakazam.solvers.rereference`): ``'phase'`` (arg g[ref] = 0 per pol), ``'delay'`` (tau[ref] = 0),
  ``'leakage'`` (d_pq[ref] = 0; no re-referencing across cells), ``None`` (global types).
* ``pol_shared``: one parameter for both polarisations (T: diag(g, g)); the SNR of the shared gain
  counts both hands.
* ``freq``: frequency behaviour on a data grid.  ``'delay'``: stored as delays (``delay_pols`` of them:
  2 = tau_p, tau_q; 1 = tau_p with the q entry 1) and evaluated per channel as
  ``exp(-2 pi i tau nu)``; ``'per_bin'``: one Jones matrix per frequency bin, mapped onto the channels
  of the bin (one bin over the band: the same matrix broadcast to every channel).
* ``casa_viscal``: the VisCal names an export writes (first: one frequency bin; second, if present:
  more than one, e.g. G as 'G Jones' / 'B Jones'); ``casa_import``: the VisCal names read as this type
  (a CASA 'T Jones' table is read as a G with p = q, so it applies under every key a G does).
  ``casa_elements``: which Jones elements are the CASA parameters (``casa_conj``: CASA stores their
  complex conjugate); delay types export their delays (``delay_pols``) as Float parameters.
* ``matrix_form``: the HDF5 attr ``matrix_form`` of a solution set ('diagonal' or 'full').
* ``value_hands``: which of the two elements a table holds per antenna -- ``delay[..., h]`` for a delay
  type, ``J[h, h]`` for a diagonal one, ``(d_pq, d_qp)`` for D -- carry a solved value; the others are
  constants (KC: only tau_p, delay_pols 1, J[1, 1] = 1; CP: only J[1, 1] = exp(i phi), J[0, 0] = 1).
  Plots draw these hands only; akinfo and akplot count a non-finite unflagged value on them.
* Iteration order of the registry (``names()``): the order of keys in a cal table listing
  (K, G, T, D, KC, CP), which is not the RIME order.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional, Tuple

from ..errors import AlakazamError

PARALLEL = (0, 3)
CROSS = (1, 2)
ALL4 = (0, 1, 2, 3)


@dataclass(frozen=True)
class JonesType:
    name: str
    long_name: str
    matrix_form: str                      # 'diagonal' | 'full'  (also the HDF5 attr)
    rime_order: int                       # place in J = [K G T KC CP] D P
    corr: Tuple[int, ...]                 # correlations the solve uses
    params: str                           # per-cell params: shape, dtype and meaning
    n_par_ant: int                        # real parameters per antenna (per cell if is_global)
    n_ref_fixed: int                      # real parameters the reference fixes
    channel_sampled: bool
    scan_sampled: bool
    is_global: bool
    phase_ref: Optional[str]              # 'phase' | 'delay' | 'leakage' | None
    solver: str                           # module under alakazam.solvers
    freq: str                             # 'delay' | 'per_bin'
    casa_viscal: Tuple[str, ...]          # export VisCal (one freq bin[, several])
    casa_import: Tuple[str, ...] = ()     # VisCal names read as this type
    casa_elements: Tuple[Tuple[int, int], ...] = ()
    casa_conj: bool = False
    delay_pols: int = 0                   # delays stored per antenna (delay types)
    gain: bool = False                    # a complex gain: calmode p/a, solnorm, outlier channels
    pol_shared: bool = False              # one parameter for both polarisations
    value_hands: Tuple[int, ...] = (0, 1)  # the elements (p, q) holding a solved value (docstring)

    @property
    def diagonal(self) -> bool:
        return self.matrix_form == "diagonal"

    @property
    def cross_only(self) -> bool:
        """Solved from the cross hands only (KC, CP: their solve order matters for D's frame)."""
        return tuple(self.corr) == CROSS

    @property
    def uses_cross(self) -> bool:
        """Uses a cross hand (the feed basis matters)."""
        return any(c in CROSS for c in self.corr)

    @property
    def module(self):
        """The solver module (imported on first use)."""
        return importlib.import_module(f"alakazam.solvers.{self.solver}")

    def viscal(self, n_freq: int) -> str:
        """The CASA VisCal an export of ``n_freq`` frequency bins is written as."""
        return self.casa_viscal[1] if n_freq > 1 and len(self.casa_viscal) > 1 else self.casa_viscal[0]

    def n_params(self, n_ant_data, phase_only=False):
        """Free real parameters of a cell with ``n_ant_data`` antennas with data (for the DOF)."""
        import numpy as np

        if self.is_global:
            return self.n_par_ant * np.ones_like(n_ant_data)
        per = self.n_par_ant // 2 if (phase_only and self.gain) else self.n_par_ant
        return per * n_ant_data - self.n_ref_fixed


_TYPES = (
    JonesType("K", "parallel-hand delay", "diagonal", 0, PARALLEL,
              "float (n_ant, 2, 2): [a, pol, 0] tau (ns), [a, pol, 1] nuisance phase (rad)", 4, 4,
              channel_sampled=True, scan_sampled=False, is_global=False, phase_ref="delay",
              solver="parallel_delay", freq="delay", casa_viscal=("K Jones",), casa_import=("K Jones",),
              delay_pols=2),
    JonesType("G", "complex gain (per frequency bin: bandpass)", "diagonal", 1, PARALLEL,
              "complex (n_ant, 2): g_p, g_q", 4, 2,
              channel_sampled=False, scan_sampled=False, is_global=False, phase_ref="phase",
              solver="gains", freq="per_bin", casa_viscal=("G Jones", "B Jones"),
              casa_import=("G Jones", "B Jones", "T Jones"), casa_elements=((0, 0), (1, 1)), gain=True),
    JonesType("T", "one complex gain for both polarisations", "diagonal", 2, PARALLEL,
              "complex (n_ant, 1): g (Jones diag(g, g))", 2, 1,
              channel_sampled=False, scan_sampled=False, is_global=False, phase_ref="phase",
              solver="scalar_gain", freq="per_bin", casa_viscal=("T Jones",),
              casa_elements=((0, 0),), gain=True, pol_shared=True),
    JonesType("D", "polarisation leakage", "full", 5, ALL4,
              "complex (n_ant, 2): d_pq, d_qp", 4, 2,
              channel_sampled=False, scan_sampled=True, is_global=False, phase_ref="leakage",
              solver="leakage", freq="per_bin", casa_viscal=("Df Jones",),
              casa_import=("Df Jones", "D Jones"), casa_elements=((0, 1), (1, 0))),
    JonesType("KC", "cross-hand delay", "diagonal", 3, CROSS,
              "float (2,): tau (ns), nuisance cross-hand phase (rad); all antennas", 2, 0,
              channel_sampled=True, scan_sampled=True, is_global=True, phase_ref=None,
              solver="cross_delay", freq="delay", casa_viscal=("Kcross Jones",),
              casa_import=("Kcross Jones",), delay_pols=1, value_hands=(0,)),
    JonesType("CP", "cross-hand phase", "diagonal", 4, CROSS,
              "float (1,): phi (rad); Jones diag(1, exp(i phi)) for all antennas", 1, 0,
              channel_sampled=False, scan_sampled=True, is_global=True, phase_ref=None,
              solver="cross_phase", freq="per_bin", casa_viscal=("Xf Jones",), casa_import=("Xf Jones",),
              casa_elements=((1, 1),), casa_conj=True, value_hands=(1,)),
)

REGISTRY = {t.name: t for t in _TYPES}


def names() -> Tuple[str, ...]:
    """Every type name, in cal-table listing order."""
    return tuple(REGISTRY)


def get(name) -> JonesType:
    """The entry of a type; an unknown name is an error naming the known ones."""
    try:
        return REGISTRY[str(name)]
    except KeyError:
        raise AlakazamError(f"jones: unknown Jones type {name!r}; expected one of {', '.join(REGISTRY)}") \
            from None


def key_pattern() -> str:
    """Regex alternation of the names, longest first (so 'KC' is not read as 'K' + 'C')."""
    return "|".join(sorted(REGISTRY, key=len, reverse=True))


def from_viscal(viscal: str) -> Optional[str]:
    """The type a CASA VisCal name (any case) is read as, or None."""
    v = str(viscal).strip().lower()
    for t in _TYPES:
        if v in (x.lower() for x in t.casa_import):
            return t.name
    return None


def viscal_names() -> Tuple[str, ...]:
    """Every VisCal name that can be read."""
    return tuple(x for t in _TYPES for x in t.casa_import)
