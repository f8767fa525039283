"""mode='unflag': unflag every selected sample (flagdata mode='unflag'; FLAG_ROW of a row is cleared
when any of its samples ends up unflagged)."""

import numpy as np


def flag_piece(piece, cfg, state):
    return np.zeros_like(piece.flag)
