"""mode='clip' (flagdata's): flag by amplitude of the chosen data column.

* NaN or Inf (in the real or imaginary part) is always flagged;
* ``clipminmax=[min, max]``: with ``clipoutside=True`` (default) samples with |V| < min or |V| > max
  are flagged, with ``clipoutside=False`` samples with min <= |V| <= max; ``[]`` clips no range;
* ``clipzeros=True``: samples with |V| below float32's epsilon (1.19e-7) are flagged -- zero to float
  precision, as CASA 6.7's flagdata (measured, review 54f: 1e-7, 1e-9j and 1e-30 flagged, 1e-6 not; exact
  zeros only until session 54).
Existing flags are kept (clip only adds).

The value clipped follows the CASA expression prefix of ``correlation`` (flagdata's; mapper.py): ``ABS_``
(and no prefix) |V|, ``REAL_`` Re V, ``IMAG_`` Im V, ``ARG_`` the phase in radians (-pi..pi], ``NORM_``
|V|^2 (casacore's norm); the first prefix given serves the whole list ('REAL_XX,YY': the real part of both).
(Every prefix was an amplitude clip before: a review of session 39, against CASA 6.7 flagdata.)
"""

import numpy as np

from . import mapper

NEEDS_DATA = True


#: clipzeros flags |V| below this: float32's epsilon, CASA flagdata's (measured)
ZERO = float(np.finfo(np.float32).eps)


def flag_piece(piece, cfg, state):
    d = piece.data
    bad = ~(np.isfinite(d.real) & np.isfinite(d.imag))
    out = piece.flag | bad
    amp = mapper.values(np.where(bad, 0, d), mapper.expression(getattr(cfg, "correlation", "")))
    if len(cfg.clipminmax) == 2:
        lo, hi = cfg.clipminmax
        inside = (amp >= lo) & (amp <= hi)
        out |= ~bad & (~inside if cfg.clipoutside else inside)
    if cfg.clipzeros:
        out |= ~bad & (np.abs(d) < ZERO)
    return out
