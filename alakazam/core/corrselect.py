"""akapply's ``correlation`` selection: which correlations of the output column are written.

``correlation='XX,YY'`` (or ``'RR,LL'``, ``'XY'`` ...; '' = all) corrects the data with the full
Jones chain as always and then writes only the selected correlations; the others keep the values the
output column held before (for a new column: the copy of the data column it was initialised with).
With ``applymode='calflag'`` the FLAG of the unselected correlations is not changed either.
akcal has no correlation parameter (as CASA's gaincal): a solve uses the parallel hands together.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..errors import AlakazamError


def parse_correlation(text, corr_types: List[str]) -> Optional[np.ndarray]:
    """(n_corr,) bool mask of the native correlations selected by ``text``; None = all."""
    if text is None or not str(text).strip():
        return None
    want = [c.strip().upper() for c in str(text).replace(";", ",").split(",") if c.strip()]
    bad = [c for c in want if c not in ("XX", "XY", "YX", "YY", "RR", "RL", "LR", "LL")]
    if bad:
        raise AlakazamError(f"correlation: {bad[0]!r} in {text!r} is not a correlation; expected e.g. "
                            "'XX,YY', 'RR,LL', 'XY'")
    m = np.array([c in want for c in corr_types], bool)
    if not m.any():
        raise AlakazamError(f"correlation: {text!r} selects none of the correlations present "
                            f"({', '.join(corr_types)})")
    return None if m.all() else m


def keep_unselected(ms, column, rownr, values, mask):
    """``values`` (row, chan, corr; native order) with the unselected correlations replaced by the
    column's current contents in rows ``rownr``."""
    if mask is None:
        return values
    from .ms_io import _table

    with _table(str(ms)) as t:
        q = t.selectrows(np.asarray(rownr))
        old = q.getcol(column)
        q.close()
    out = np.array(values, copy=True)
    out[..., ~mask] = old[..., ~mask]
    return out
