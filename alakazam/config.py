"""Configuration dataclasses (the engine's input) and their YAML / string parsers.

The engine takes these dataclasses; the task layer (``alakazam.caltasks``) and the YAML runner build
them.  Every parse error is an :class:`~alakazam.errors.AlakazamError` naming the YAML path
(e.g. ``solve[0].time_interval[2]``) or task parameter, the value and what was expected.

Conventions
-----------
* ``time_interval`` per step: ``"inf"``/``"infinity"`` (one solution over all selected scans of a
  field, n_time=1), ``"scan"`` (one per scan), or a duration ``"120s"``, ``"5min"``, ``"2m"`` (minutes,
  as SEED.md allows in YAML), ``"1h"``, or a plain number of seconds.  Parsed by
  :func:`parse_time_interval` into :class:`TimeInterval`.
* ``freq_interval`` per step: ``"full"``/``"inf"`` (n_freq=1 per SPW) or a width ``"4MHz"``,
  ``"128kHz"``, ``"1GHz"``, ``"500Hz"``.  Parsed by :func:`parse_freq_interval` (width in Hz, or None
  for full).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Union

JONES_TYPES = ("K", "G", "D", "KC", "CP")
BACKENDS = ("numba", "ceres", "jax", "scipy")
FIELD_SELECT_MODES = ("nearest_time", "nearest_sky", "pinned")
TIME_INTERP_MODES = ("exact", "nearest", "linear", "cubic")


@dataclass(frozen=True)
class TimeInterval:
    """A parsed time_interval.  kind is 'inf', 'scan' or 'seconds' (then ``seconds`` > 0)."""

    kind: str
    seconds: float = 0.0
    text: str = ""

    @property
    def solint_s(self) -> float:
        """Seconds for the HDF5 ``solint_s`` attr: inf -> +inf, scan -> -1 (one per scan)."""
        if self.kind == "inf":
            return float("inf")
        if self.kind == "scan":
            return -1.0
        return float(self.seconds)


@dataclass
class ExternalPreapply:
    """Solutions from earlier runs pre-applied before the block's first step."""

    tables: List[str] = field(default_factory=list)
    jones: List[str] = field(default_factory=list)          # keys, e.g. K0, G0
    field_select: List[str] = field(default_factory=list)   # nearest_time | nearest_sky | pinned
    time_interp: List[str] = field(default_factory=list)    # exact | nearest | linear | cubic
    solution_field: List[Optional[List[str]]] = field(default_factory=list)


@dataclass
class SolveStep:
    """One term of a solve chain (already broadcast from the block's per-step lists)."""

    jones_type: str                 # K | G | D | KC | CP
    key: str                        # K0, G0, G1 ... (per-type counter from 0 within the output file)
    field: List[str]                # field names or ids to solve on
    time_interval: TimeInterval
    freq_interval_hz: Optional[float]   # None = full SPW
    freq_interval_text: str = "full"
    phase_only: bool = False
    preapply_time_interp: str = "nearest"


@dataclass
class SolveConfig:
    """One ``solve`` block."""

    ms: str
    output: str
    steps: List[SolveStep]
    ref_ant: Union[int, str] = 0
    data_col: str = "DATA"
    model_col: str = "MODEL_DATA"
    solver_backend: str = "numba"
    apply_parang: bool = False
    rfi_threshold: float = 5.0      # MAD sigmas; 0 disables
    max_iter: int = 100
    tol: float = 1.0e-10
    memory_limit_gb: float = 0.0    # 0 = 40% of available RAM
    gpu: bool = False
    spw: str = ""                   # CASA SPW/channel selection; "" = all
    scan: str = ""                  # CASA scan selection; "" = all
    external_preapply: Optional[ExternalPreapply] = None
    quiet: bool = False


@dataclass
class FluxscaleConfig:
    """One ``fluxscale`` block."""

    reference_table: str
    reference_field: List[str]
    transfer_field: List[str]
    output: str
    jones_type: str = "G0"          # the key to scale
    transfer_table: Optional[str] = None   # default: reference_table
    spw: str = ""


@dataclass
class ApplyTerm:
    """One term to apply."""

    key: str                    # e.g. K0, G1
    table: str
    field_select: str = "nearest_time"
    time_interp: str = "nearest"
    solution_field: Optional[List[str]] = None   # required when field_select == 'pinned'


@dataclass
class ApplyConfig:
    """One ``apply`` block."""

    ms: str
    terms: List[ApplyTerm]
    output_col: str = "CORRECTED_DATA"
    data_col: str = "DATA"
    target_field: Optional[List[str]] = None     # None = all fields
    target_scans: str = ""
    spw: str = ""
    apply_parang: bool = False
    propagate_flags: bool = False
    memory_limit_gb: float = 0.0
    quiet: bool = False


@dataclass
class RunConfig:
    """A whole YAML file: blocks executed in order solve -> fluxscale -> apply."""

    solve: List[SolveConfig] = field(default_factory=list)
    fluxscale: List[FluxscaleConfig] = field(default_factory=list)
    apply: List[ApplyConfig] = field(default_factory=list)
