"""Cells with weak hands, solved again from a more thorough initial guess.

Convention (pinned by tests/test_weak_cells.py):

* In the solve flow (``SolveOptions.flag_nonconverged``), a cell of a term that has a more thorough
  initial guess (the term module's ``INIT_SEARCH``: K's per-antenna stacked fringe search,
  :mod:`alakazam.solvers.parallel_delay`) that did not converge, or in which some antenna (hand) with
  data was flagged by minsnr or as not converged, or a hand's SNR is below :data:`OUTLIER_SHARE` of
  the cell's typical SNR (a local minimum that minsnr does not flag), is solved once more with
  ``CellBatch.init_search``, starting from its first solution (``CellBatch.init_params``; from the
  hub fit, the search left scipy's two hands 8.5 sigma off where they were).
* The second solve is kept for a cell where it leaves more hands of clear signal -- unflagged, with SNR
  at least max(minsnr, ``nosignal.NOISE_S``) -- otherwise the first is kept.  Hands just above minsnr
  are not counted: a fit to noise reaches them (a dead antenna's highest noise peak: S 3.2-3.3), and
  counting them kept second solves with dead hands and noise-fitted delays unflagged (a review); and
  a hand the second solve unflags without clear signal stays flagged if the first had flagged it
  (``nosignal.keep_second``).
* Only such a cell in which one pass of the search from its solution would move some antenna
  (``search_would_move``) is solved again: a cell weak only because an antenna is dead and unflagged
  (``rfi_threshold=0``) would repeat its solve -- every cell of a scan with one dead antenna was solved
  twice, K 2x slower (a review: 4.6 -> 9.8 s).  On a calibrator with signal no cell is weak.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..jones import terms


def searching(jones_type, batch):
    """``batch`` asking for the thorough initial guess where the term has one (else ``batch``); it starts
    from ``batch.init_params`` where set (the cells' first solution)."""
    if getattr(terms.get(jones_type).module, "INIT_SEARCH", False) and not batch.init_search:
        return dataclasses.replace(batch, init_search=True)
    return batch


#: a hand whose SNR is below this fraction of its cell's typical SNR (``nosignal.typical_snr``) makes
#: the cell weak too: numba's K on noise-0.01 data stored one antenna 915 ns off at SNR 1298 beside the
#: others' 20000-26000 (a local minimum; scipy: -0.1 ns), unflagged (a review)
OUTLIER_SHARE = 0.25


def weak(res):
    """(n_cell,) bool: cells that did not converge, have a solution flagged by minsnr / nonconverged, or
    a hand whose SNR is below :data:`OUTLIER_SHARE` of the cell's typical SNR."""
    from .nosignal import typical_snr

    bad = ~np.asarray(res.converged, bool)
    for k in ("minsnr", "nonconverged"):
        m = res.extra.get(k)
        if isinstance(m, np.ndarray) and m.ndim == 2:
            bad = bad | m.any(axis=1)
    snr = res.extra.get("snr")
    if isinstance(snr, np.ndarray) and snr.ndim == 3 and len(bad):
        typ = typical_snr(snr)                                          # NaN: < 3 hands with data
        with np.errstate(invalid="ignore"):
            bad |= ((snr > 0) & (snr < OUTLIER_SHARE * typ[:, None, None])).any(axis=(1, 2))
    return bad


def solve_again(jones_type, batch, res, solve, per_hand, min_snr=0.0):
    """``res`` with its :func:`weak` cells (those the search would change) replaced by ``solve(sub_batch)``
    -- ``solve`` asks for the search (:func:`searching`) -- where ``nosignal.keep_second`` keeps it
    (module doc)."""
    if not getattr(terms.get(jones_type).module, "INIT_SEARCH", False):
        return res
    from .nosignal import keep_second

    cells = np.flatnonzero(weak(res))
    moves = getattr(terms.get(jones_type).module, "search_would_move", None)
    if len(cells) and moves is not None:
        cells = cells[moves(batch.take(cells), np.asarray(res.params)[cells])]
    if not len(cells):
        return res
    sub = dataclasses.replace(batch.take(cells), init_params=np.asarray(res.params)[cells])
    keep_second(res, solve(sub), cells, per_hand, min_snr)
    return res
