"""The arguments of :func:`alakazam.sim.simulate_ms` checked before anything is written.

Convention: every bad argument is reported together in one ParameterError naming it, its value and
what was expected (before: ``alakazam simulate x.ms --n-ant 1`` / ``--n-chan 0`` / ``--hours -1`` /
``--int-s 0`` stopped with a ZeroDivisionError or IndexError and left a half-written MS behind).
"""

from __future__ import annotations

import numbers
import os

import numpy as np

from ..errors import ParameterError


def check_args(path, n_ant, n_ant_extra, n_chan, duration_h, int_s, scan_len_s, chan_width, f0, noise,
               rows_per_write):
    errors = {}

    def bad(name, msg):
        errors.setdefault(name, []).append(msg)

    def number(x):
        return isinstance(x, numbers.Real) and not isinstance(x, bool) and x == x

    def integer(x):
        return isinstance(x, numbers.Integral) and not isinstance(x, bool)

    if not integer(n_ant) or n_ant < 2:
        bad("n_ant", f"{n_ant!r}: expected an integer >= 2 (an interferometer needs a baseline)")
    if not integer(n_ant_extra) or n_ant_extra < 0:
        bad("n_ant_extra", f"{n_ant_extra!r}: expected an integer >= 0")
    chans = [n_chan] if isinstance(n_chan, (str, bytes)) else list(np.atleast_1d(n_chan))
    if not chans or any(not integer(c) or c < 1 for c in chans):
        bad("n_chan", f"{n_chan!r}: expected one integer >= 1 per SPW")
    for name, v in (("duration_h", duration_h), ("int_s", int_s), ("scan_len_s", scan_len_s),
                    ("chan_width", chan_width), ("f0", f0)):
        if not number(v) or not 0 < v < float("inf"):
            bad(name, f"{v!r}: expected a finite number > 0")
    if not number(noise) or not 0 <= noise < float("inf"):
        bad("noise", f"{noise!r}: expected a finite number >= 0 (Jy per real/imaginary part)")
    if not integer(rows_per_write) or rows_per_write < 1:
        bad("rows_per_write", f"{rows_per_write!r}: expected an integer >= 1")
    if not errors:
        if scan_len_s < int_s:
            bad("scan_len_s", f"{scan_len_s!r} s is shorter than one integration (int_s {int_s!r} s)")
        if duration_h * 3600.0 < int_s:
            bad("duration_h", f"{duration_h!r} h is shorter than one integration (int_s {int_s!r} s)")
    parent = os.path.dirname(os.path.abspath(str(path)))
    if not os.path.isdir(parent):
        bad("path", f"{str(path)!r}: directory {parent!r} does not exist")
    if errors:
        raise ParameterError(errors)
