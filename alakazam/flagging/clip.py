"""mode='clip' (flagdata's): flag by amplitude of the chosen data column.

* NaN or Inf (in the real or imaginary part) is always flagged;
* ``clipminmax=[min, max]``: with ``clipoutside=True`` (default) samples with |V| < min or |V| > max
  are flagged, with ``clipoutside=False`` samples with min <= |V| <= max; ``[]`` clips no range;
* ``clipzeros=True``: samples with V exactly 0 are flagged.
Existing flags are kept (clip only adds).
"""

import numpy as np

NEEDS_DATA = True


def flag_piece(piece, cfg, state):
    d = piece.data
    bad = ~(np.isfinite(d.real) & np.isfinite(d.imag))
    out = piece.flag | bad
    amp = np.abs(np.where(bad, 0, d))
    if len(cfg.clipminmax) == 2:
        lo, hi = cfg.clipminmax
        inside = (amp >= lo) & (amp <= hi)
        out |= ~bad & (~inside if cfg.clipoutside else inside)
    if cfg.clipzeros:
        out |= ~bad & (d == 0)
    return out
