"""mode='quack' (flagdata's): flag the beginning or end of each scan.

Times are those of the selected rows of each (DATA_DESC_ID, scan): ``t_first`` / ``t_last`` are their
first and last TIME (integration centres).  An integration is "in the first quackinterval seconds" when
it starts before ``t_first - interval/2 + quackinterval``, i.e. ``TIME - t_first < quackinterval``
(every integration overlapping that span); likewise at the end, ``t_last - TIME < quackinterval``.

* ``quackmode='beg'``: flag the integrations in the first quackinterval seconds;
* ``'endb'``: flag those in the last quackinterval seconds;
* ``'end'``: flag all but the first quackinterval seconds;
* ``'tail'``: flag all but the last quackinterval seconds.
"""



def flag_piece(piece, cfg, state):
    qi = float(cfg.quackinterval)
    t = piece.time
    beg = (t - piece.scan_t0) < qi
    endb = (piece.scan_t1 - t) < qi
    rows = {"beg": beg, "endb": endb, "end": ~beg, "tail": ~endb}[cfg.quackmode]
    return piece.flag | rows[:, None, None]
