"""Cells with weak hands, solved again from a more thorough initial guess.

Convention (pinned by tests/test_weak_cells.py):

* In the solve flow (``SolveOptions.flag_nonconverged``), a cell of a term that has a more thorough
  initial guess (the term module's ``INIT_SEARCH``: K's per-antenna stacked fringe search,
  :mod:`alakazam.solvers.parallel_delay`) that did not converge, or in which some antenna (hand) with
  data was flagged by minsnr or as not converged, is solved once more with ``CellBatch.init_search``.
* The second solve is kept for a cell where it leaves more hands with an unflagged solution; otherwise
  the first is kept (a cell that is weak only because an antenna's data are weak gives the same
  solution both ways).
* Only the cells that need it pay for the search (3x a cell's solve on 27 antennas): on a calibrator
  with signal no cell is weak.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..jones import terms


def searching(jones_type, batch):
    """``batch`` asking for the thorough initial guess where the term has one (else ``batch``)."""
    if getattr(terms.get(jones_type).module, "INIT_SEARCH", False) and not batch.init_search:
        return dataclasses.replace(batch, init_search=True)
    return batch


def weak(res):
    """(n_cell,) bool: cells that did not converge or have a solution flagged by minsnr / nonconverged."""
    bad = ~np.asarray(res.converged, bool)
    for k in ("minsnr", "nonconverged"):
        m = res.extra.get(k)
        if isinstance(m, np.ndarray) and m.ndim == 2:
            bad = bad | m.any(axis=1)
    return bad


def solve_again(jones_type, batch, res, solve, per_hand):
    """``res`` with its :func:`weak` cells replaced by ``solve(searching(sub_batch))`` where that leaves
    more hands with an unflagged solution (module doc)."""
    if not getattr(terms.get(jones_type).module, "INIT_SEARCH", False):
        return res
    from .nosignal import _good_hands, _splice, _take_result

    cells = np.flatnonzero(weak(res))
    if not len(cells):
        return res
    sub = solve(searching(jones_type, batch.take(cells)))
    n_before = _good_hands(res, per_hand)[cells].sum(axis=(1, 2))
    n_after = _good_hands(sub, per_hand).sum(axis=(1, 2))
    keep = np.flatnonzero(n_after > n_before)
    if len(keep):
        _splice(res, _take_result(sub, keep), cells[keep])
    return res
