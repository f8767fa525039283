"""mode='quack' (flagdata's): flag the beginning or end of each scan.

Times are those of the selected rows of each (DATA_DESC_ID, scan): ``t_first`` / ``t_last`` are their
first and last TIME (integration centres).  The convention is CASA's, measured with flagdata
(CASA 6.7.0) on a simulated MS of 60 s integrations, quackinterval 30, 60, 90 and 120 s, every
quackmode (tests/test_flagging.py test_quack_modes, tests/test_flag_parity.py
test_quack_matches_casa): the bounds are inclusive,

* ``quackmode='beg'``: flag the integrations with ``TIME - t_first <= quackinterval``;
* ``'endb'``: flag those with ``t_last - TIME <= quackinterval``;
* ``'end'``: flag all but the last quackinterval seconds (the complement of ``endb``);
* ``'tail'``: flag all but the first quackinterval seconds (the complement of ``beg``).

So quackinterval=120 with 60 s integrations flags three integrations at the start (``beg``).
quackinterval must be > 0 (flagdata refuses 0: "must be greater than zero").

``quackincrement=True`` (flagdata's; measured with CASA 6.7 on tests/test_review_s25_task.py's MS):
``t_first`` / ``t_last`` are instead the first and last TIME, per scan number, of the selected rows
that hold any unflagged sample (FLAG over ALL channels and correlations of the row, also outside a spw
or correlation selection; FLAG_ROW counts as flagged), taken before anything is flagged.  So a scan
whose first integrations are already flagged is quacked from its first unflagged one; a scan without
an unflagged row is left alone.  Running quack again with it moves on by one quackinterval each time.
"""

#: rows of FLAG read at a time for quackincrement's scan bounds
CHUNK_ROWS = 50000


def in_process(cfg) -> bool:
    """quackincrement runs in this process (the bounds are taken once, before any unit is flagged;
    dask workers would read FLAG while this process writes the units already done)."""
    return bool(getattr(cfg, "quackincrement", False))


def start(cfg, sel):
    """quackincrement: ``{scan: (t_first, t_last)}`` of the selected rows with an unflagged sample
    (module docstring); else None."""
    if not getattr(cfg, "quackincrement", False):
        return None
    import numpy as np

    from ..core import ms_io
    from .engine import getcol_rows
    from .select import units

    bounds = {}
    with ms_io.main_table(cfg.ms) as t:
        for ddid in sel.ddids:
            for u in units(t, sel, ddid):
                for s in range(0, len(u.rows), CHUNK_ROWS):
                    rows = u.rows[s:s + CHUNK_ROWS]
                    ok = ~getcol_rows(t, "FLAG", rows).all(axis=(1, 2)) & ~getcol_rows(t, "FLAG_ROW", rows)
                    if ok.any():
                        tm = u.time[s:s + CHUNK_ROWS][ok]
                        lo, hi = bounds.get(u.scan, (np.inf, -np.inf))
                        bounds[u.scan] = (min(lo, float(tm.min())), max(hi, float(tm.max())))
    return bounds


def flag_piece(piece, cfg, state):
    qi = float(cfg.quackinterval)
    t = piece.time
    t0, t1 = piece.scan_t0, piece.scan_t1
    if state is not None:                   # quackincrement: from the scan's first / last unflagged row
        if piece.scan not in state:
            return piece.flag
        t0, t1 = state[piece.scan]
    beg = (t - t0) <= qi
    endb = (t1 - t) <= qi
    rows = {"beg": beg, "endb": endb, "end": ~endb, "tail": ~beg}[cfg.quackmode]
    return piece.flag | rows[:, None, None]
