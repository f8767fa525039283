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
"""


def flag_piece(piece, cfg, state):
    qi = float(cfg.quackinterval)
    t = piece.time
    beg = (t - piece.scan_t0) <= qi
    endb = (piece.scan_t1 - t) <= qi
    rows = {"beg": beg, "endb": endb, "end": ~endb, "tail": ~beg}[cfg.quackmode]
    return piece.flag | rows[:, None, None]
