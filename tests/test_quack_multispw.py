"""akflag quackincrement on an MS with two SPWs whose scan edges are flagged differently, against CASA 6.7
flagdata (measured on this MS, 2026-12-01): the first (last) unflagged integration is that of the scan's
rows in every SPW, and the quack window from it is flagged in every SPW -- so an SPW whose own first
integrations are already flagged gets nothing new when another SPW of the scan still has them."""

import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.sim import simulate_ms

#: (quackmode, spw) -> DATA_DESC_ID -> new flags per integration of scans 1, 2, 3 (CASA 6.7 flagdata,
#: quackinterval 60 s, quackincrement=True; the simulator writes DATA_DESC_ID 1 for SPECTRAL_WINDOW 0).
#: With spw='0' only that SPW's rows decide and are flagged.
_B = ["..........", "XX........", "XX........"]
_E = ["........XX", "........XX", "........XX"]
_N = [".........."] * 3
CASA = {
    ("beg", ""): {0: _B, 1: ["XX........", ".X........", "XX........"]},
    ("endb", ""): {0: _E, 1: _E},
    ("beg", "0"): {0: _N, 1: ["XX........", ".XX.......", "XX........"]},
    ("endb", "0"): {0: _N, 1: _E},
}


@pytest.fixture(scope="module")
def two_spw(tmp_path_factory):
    """4 antennas, SPWs of 4 + 4 channels, 30 x 60 s in scans of 10 min; scan 1's first two integrations
    flagged in SPW 0 only, scan 2's first one in SPW 1 only."""
    ms = str(tmp_path_factory.mktemp("quack2") / "q.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(4, 4), duration_h=0.5, int_s=60.0, scan_len_s=600.0,
                noise=0.05, seed=3, leakage=False, dead_ant=False, flag_rows=0.0)
    with table(ms, readonly=False, ack=False) as t:
        tm, sc, dd, f = (t.getcol(c) for c in ("TIME", "SCAN_NUMBER", "DATA_DESC_ID", "FLAG"))
        u = {s: np.unique(tm[sc == s]) for s in (1, 2)}
        f[(sc == 1) & np.isin(tm, u[1][:2]) & (dd == 0)] = True
        f[(sc == 2) & (tm == u[2][0]) & (dd == 1)] = True
        t.putcol("FLAG", f)
        t.putcol("FLAG_ROW", f.all(axis=(1, 2)))
    return ms


def _cols(ms):
    with table(ms, ack=False) as t:
        return {c: t.getcol(c) for c in ("TIME", "SCAN_NUMBER", "DATA_DESC_ID", "FLAG")}


@pytest.mark.parametrize("mode,spw", sorted(CASA))
def test_quackincrement_over_two_spws_as_casa(two_spw, tmp_path, mode, spw):
    from alakazam.caltasks import akflag

    ms = str(tmp_path / "q.ms")
    shutil.copytree(two_spw, ms)
    b = _cols(ms)
    akflag(vis=ms, mode="quack", quackinterval=60.0, quackmode=mode, quackincrement=True, spw=spw)
    a = _cols(ms)
    tm, sc, dd = b["TIME"], b["SCAN_NUMBER"], b["DATA_DESC_ID"]
    new = (a["FLAG"] & ~b["FLAG"]).any(axis=(1, 2))
    got = {d: ["".join("X" if new[(sc == s) & (tm == x) & (dd == d)].any() else "."
                       for x in np.unique(tm[sc == s])) for s in (1, 2, 3)] for d in (0, 1)}
    assert got == CASA[(mode, spw)]
