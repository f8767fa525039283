"""mode='clip' (flagdata's): flag by amplitude of the chosen data column.

* NaN or Inf (in the real or imaginary part) is always flagged;
* ``clipminmax=[min, max]``: with ``clipoutside=True`` (default) samples with |V| < min or |V| > max
  are flagged, with ``clipoutside=False`` samples with min <= |V| <= max; ``[]`` clips no range;
* ``clipzeros=True``: samples with |V| below float32's epsilon (1.19e-7) are flagged -- zero to float
  precision, as CASA 6.7's flagdata (measured, review 54f: 1e-7, 1e-9j and 1e-30 flagged, 1e-6 not; exact
  zeros only until session 54).
Existing flags are kept (clip only adds).

The value clipped follows the CASA expression prefix of ``correlation`` (flagdata's): ``ABS_`` (and no
prefix) |V|, ``REAL_`` Re V, ``IMAG_`` Im V, ``ARG_`` the phase in radians (-pi..pi], ``NORM_`` |V|^2
(casacore's norm); the first prefix given serves the whole list ('REAL_XX,YY': the real part of both).
(Every prefix was an amplitude clip before: a review of session 39, against CASA 6.7 flagdata.)
"""

import numpy as np

NEEDS_DATA = True


PREFIXES = ("ABS", "REAL", "IMAG", "ARG", "NORM")


def expression(correlation) -> str:
    """The CASA clip expression of a correlation text: 'ABS' (the default), 'REAL', 'IMAG', 'ARG', 'NORM'."""
    for item in str(correlation or "").split(","):
        head = item.strip().upper().split("_", 1)
        if len(head) == 2 and head[0] in PREFIXES:
            return head[0]
    return "ABS"


def _value(d, expr):
    if expr == "REAL":
        return d.real
    if expr == "IMAG":
        return d.imag
    if expr == "ARG":
        return np.angle(d)
    if expr == "NORM":
        return d.real * d.real + d.imag * d.imag
    if d.dtype == np.complex64:         # |V| rounded as CASA's VisMapper (tfcrop.amplitude)
        from .tfcrop import amplitude

        return amplitude(d)
    return np.abs(d)


#: clipzeros flags |V| below this: float32's epsilon, CASA flagdata's (measured)
ZERO = float(np.finfo(np.float32).eps)


def flag_piece(piece, cfg, state):
    d = piece.data
    bad = ~(np.isfinite(d.real) & np.isfinite(d.imag))
    out = piece.flag | bad
    amp = _value(np.where(bad, 0, d), expression(getattr(cfg, "correlation", "")))
    if len(cfg.clipminmax) == 2:
        lo, hi = cfg.clipminmax
        inside = (amp >= lo) & (amp <= hi)
        out |= ~bad & (~inside if cfg.clipoutside else inside)
    if cfg.clipzeros:
        out |= ~bad & (np.abs(d) < ZERO)
    return out
