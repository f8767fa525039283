"""Native numba backend (the default): batched kernels, cells spread over threads, no Python per cell.

G: StEFCal; K and D: Levenberg-Marquardt on analytic normal equations; KC and CP: exact
one-dimensional maximisation (closed form for CP).  Each term module holds its kernels and their
driver ``solve_numba(batch, init, ref, opts)`` (the registry, :mod:`alakazam.jones.terms`, names the
module); this backend only dispatches.
"""

from ...jones import terms

#: a returned cost is the final chi2 exactly as common.chi2 defines it; a term module returns None
#: where it is not (K returns sum w|V|^2 + sum w|M|^2 - 2 sum Re(exp(-i theta) z) at the final
#: parameters, the same quantity up to rounding, so the dispatcher does not spend another pass on it)
COST_IS_CHI2 = True


def solve_params(jones_type, batch, init, ref, opts):
    return terms.get(jones_type).module.solve_numba(batch, init, ref, opts)
