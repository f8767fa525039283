"""SPW selection by name, by a frequency range over several SPWs, and by a bare frequency range
(core/selection.parse_spw), as CASA's MSSelection does (pinned against casatools' msseltoindex on a
2-SPW MS: SPW 0 1.300-1.315 GHz, 16 channels; SPW 1 1.320-1.327 GHz, 8 channels; names SPW0, SPW1):

* ``'SPW1'``: every channel of SPW 1; ``'SPW*'`` / ``'*PW1'``: wildcard patterns; ``'spw1'``: no
  match (names are case-sensitive), an error;
* ``'SPW1:0~3'``: channels 0-3 of SPW 1;
* ``'*:1.3205~1.3245GHz'`` and ``'0~1:1.3205~1.3245GHz'``: channels 1-4 of SPW 1 only (SPW 0 does
  not hold the range: left out, not an error);
* ``'0:1.3205~1.3245GHz'``: an error (the one SPW named does not hold it);
* ``'1.3205~1.3245GHz'``: every channel of SPW 1 (the SPWs whose centre frequency lies in the range;
  ``'1.3~1.32GHz'``: SPW 0 only; ``'1.3205~1.3206GHz'`` and a range in the gap between the SPWs: an
  error -- a second review, against msseltoindex);
* id syntax is always ids (``'0'`` is SPW 0 also when SPW 1 is named "0"); ``'"0"'`` is the name.

A review: ``'*:1.3205~1.3245GHz'`` was refused ("selects no channel of SPW 0") and names were not
accepted; akflag on the review's MS now writes the same FLAG | FLAG_ROW as CASA 6.7 flagdata.
"""

import os
import subprocess

import numpy as np
import pytest

from alakazam.core.selection import parse_spw
from alakazam.errors import AlakazamError

N = {0: 16, 1: 8}
F = {0: 1.300e9 + 1e6 * np.arange(16), 1: 1.320e9 + 1e6 * np.arange(8)}
NAMES = {0: "SPW0", 1: "SPW1"}


def sel(text):
    return parse_spw(text, N, F, NAMES)


ALL0, ALL1 = list(range(16)), list(range(8))


@pytest.mark.parametrize("text,want", [
    ("SPW1", [(1, ALL1)]),
    ("SPW*", [(0, ALL0), (1, ALL1)]),
    ("*PW1", [(1, ALL1)]),
    ("SPW1:0~3", [(1, [0, 1, 2, 3])]),
    ("SPW0,1", [(0, ALL0), (1, ALL1)]),
    ("*:1.3205~1.3245GHz", [(1, [1, 2, 3, 4])]),
    ("0~1:1.3205~1.3245GHz", [(1, [1, 2, 3, 4])]),
    ("1.3205~1.3245GHz", [(1, ALL1)]),
    ("1320.5~1324.5MHz", [(1, ALL1)]),
    ("1.3~1.32GHz", [(0, ALL0)]),                               # SPW 1 only overlapped: not selected
    ("1.32~1.33GHz:0~2", [(1, [0, 1, 2])]),                     # CASA: the SPWs by frequency, then channels
    ("*:1.3205~1.3206GHz", [(1, [1])]),     # inside one channel: that channel (CASA 6.7: 0~1, not copied)
    ("*:1.3035~1.3245GHz", [(0, list(range(4, 16))), (1, [0, 1, 2, 3, 4])]),
    ("0:2~3", [(0, [2, 3])]),                                   # ids as before
    # one frequency: the channel whose extent holds it (CASA 6.7: the two channels whose centres
    # bracket it, '0:1.305GHz' -> 4~5; not copied); each end of a range its own unit (as CASA)
    ("0:1.305GHz", [(0, [5])]),
    ("0:1305.4MHz", [(0, [5])]),
    ("0:1.3056GHz", [(0, [6])]),
    ("0:1.3GHz", [(0, [0])]),                                   # CASA: 0 too
    ("0:1.3153GHz", [(0, [15])]),                               # within half a channel of the last
    ("*:1.3232GHz", [(1, [3])]),
    ("*:1.3235GHz", [(1, [4])]),                   # on the edge of two channels: the upper one
    ("0:1.305GHz;1.31GHz", [(0, [5, 10])]),
    ("0:1.303GHz~1.306GHz", [(0, [3, 4, 5, 6])]),               # CASA: 3~6
    ("0:1303MHz~1.306GHz", [(0, [3, 4, 5, 6])]),
    ("0:1.303 GHz ~ 1.306 GHz", [(0, [3, 4, 5, 6])]),
    ("0:1.303e9~1.306e9Hz", [(0, [3, 4, 5, 6])]),
    # one bare frequency: the SPWs whose channels span it (CASA 6.7: an SPW whose centre is within
    # about a channel width of it)
    ("1.3235GHz", [(1, ALL1)]),                                 # SPW 1's centre: CASA the same
    ("1.301GHz", [(0, ALL0)]),
    ("1.3075GHz:2~3", [(0, [2, 3])]),
    ("0:+1.303~1.306GHz", [(0, [3, 4, 5, 6])]),                 # a sign (CASA: 3~6)
    ("0:1.3035GHz~1.3035GHz", [(0, [3, 4])]),       # zero width on the edge of two channels: both (CASA)
])
def test_as_casa_selects(text, want):
    assert sel(text) == want


@pytest.mark.parametrize("text,match", [
    ("0:1.3205~1.3245GHz", "selects no channel of SPW 0"),
    ("spw1", "nor is 'spw1' an SPW name: SPW0, SPW1"),
    ("*:2.0~2.1GHz", "selects no channel of SPWs 0, 1"),
    ("2.0~2.1GHz", "holds no SPW's centre"),
    ("1.3205~1.3206GHz", "holds no SPW's centre"),
    ("1.3155~1.3195GHz", "holds no SPW's centre"),               # the gap between the SPWs
    ('"SPW2"', "not an SPW name"),
    ("*:1.3245~1.3205GHz", "first frequency is above the last"),    # CASA: an error too
    ("1.3245~1.3205GHz", "first frequency is above the last"),
    ("0:1.2GHz", "'1.2GHz' selects no channel of SPW 0"),
    ("0:1.3156GHz", "selects no channel of SPW 0"),             # past the last channel's upper edge
    ("*:1.317GHz", "selects no channel of SPWs 0, 1"),          # the gap between the SPWs
    ("1.317GHz", "'1.317GHz' of '1.317GHz': no SPW's channels span it"),
    ("0:1.3GHzMHz", "cannot parse channel range"),
    ("0:1.303~-1.306GHz", "first frequency is above the last"),     # CASA: start > end
    # an id range past the SPECTRAL_WINDOW table: an error, as CASA's ("No match found for 2,3,4,5")
    ("0~5", "'0~5' goes past the last spw id of the MS, 1 \\(CASA refuses such a range too\\)"),
    ("1~5:0~1", "goes past the last spw id"),
])
def test_errors(text, match):
    with pytest.raises(AlakazamError, match=match):
        sel(text)


def _casa_python():
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from casa_python import casa_python     # tests/casa_python.py (the test is skipped when absent)

    return casa_python() or ""


def test_akflag_star_frequency_range_matches_casa(tmp_path):
    casa = _casa_python()
    if not os.access(casa, os.X_OK):
        pytest.skip("no CASA Python")
    import shutil

    from casacore.tables import table

    from alakazam.caltasks import akflag
    from alakazam.sim import simulate_ms

    base = str(tmp_path / "b.ms")
    simulate_ms(base, n_ant=5, n_ant_extra=0, n_chan=(16, 8), duration_h=0.2, int_s=60.0, seed=2,
                dead_ant=False, leakage=False)
    with table(base + "/SPECTRAL_WINDOW", ack=False) as t:
        names = list(t.getcol("NAME"))
        f1 = t.getcell("CHAN_FREQ", 1)
    lo, hi = f1[1] - 1e3, f1[4] + 1e3                            # channels 1-4 of SPW 1
    spw = f"*:{lo / 1e9:.9f}~{hi / 1e9:.9f}GHz"
    ak, cs = str(tmp_path / "ak.ms"), str(tmp_path / "cs.ms")
    shutil.copytree(base, ak)
    shutil.copytree(base, cs)
    akflag(vis=ak, mode="manual", spw=spw)
    akflag(vis=ak, mode="manual", spw=f"{names[0]}:0~1")
    code = (f"from casatasks import flagdata\n"
            f"flagdata(vis={cs!r}, mode='manual', spw={spw!r}, flagbackup=False)\n"
            f"flagdata(vis={cs!r}, mode='manual', spw='{names[0]}:0~1', flagbackup=False)\n")
    r = subprocess.run([casa, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for d in (0, 1):
        got = []
        for ms in (ak, cs):
            with table(ms, ack=False) as t:
                q = t.query(f"DATA_DESC_ID=={d}")
                got.append(q.getcol("FLAG") | q.getcol("FLAG_ROW")[:, None, None])
        np.testing.assert_array_equal(got[0], got[1])


def test_a_name_that_reads_as_a_frequency():
    """SPW 0 named '1420MHz', SPW 1 named '1.3GHz' (a review): CASA reads both as frequencies (and
    finds no SPW there); alakazam read them as frequencies after the single-frequency change and took
    SPW 0 for '1.3GHz' without a word.  Where the name and the frequency select different SPWs it is an
    error asking for the quoted name; where they agree, those SPWs."""
    odd = {0: "1420MHz", 1: "1.3GHz"}
    with pytest.raises(AlakazamError, match="'1.3GHz' is the name of SPW 1 and, read as a frequency .*"
                                            "selects SPW 0: give '\"1.3GHz\"'"):
        parse_spw("1.3GHz:0~3", N, F, odd)
    with pytest.raises(AlakazamError, match="'1420MHz' is the name of SPW 0 and, read as a frequency .*"
                                            "selects no SPW"):
        parse_spw("1420MHz", N, F, odd)
    assert parse_spw('"1.3GHz":0~3', N, F, odd) == [(1, [0, 1, 2, 3])]
    assert parse_spw('"1420MHz"', N, F, odd) == [(0, ALL0)]
    assert parse_spw("1.3235GHz", N, F, {0: "a", 1: "1.3235GHz"}) == [(1, ALL1)]     # both agree


def test_one_channel_spw_by_its_width():
    """A one-channel SPW (continuum, averaged data) at 1.320 GHz, CHAN_WIDTH 1 MHz: its channel holds
    1.3196-1.3204 GHz; without the width only its exact centre was found (a review)."""
    n, f, w = {0: 16, 1: 1}, {0: F[0], 1: np.array([1.320e9])}, {0: np.full(16, 1e6), 1: np.array([1e6])}
    assert parse_spw("1:1.3202GHz", n, f, widths=w) == [(1, [0])]
    assert parse_spw("*:1.3198GHz", n, f, widths=w) == [(1, [0])]
    assert parse_spw("1.3202GHz", n, f, widths=w) == [(1, [0])]
    assert parse_spw("1:1.32015~1.32018GHz", n, f, widths=w) == [(1, [0])]   # a range inside it
    with pytest.raises(AlakazamError, match="selects no channel of SPW 1"):
        parse_spw("1:1.3206GHz", n, f, widths=w)
    with pytest.raises(AlakazamError, match="selects no channel of SPW 1"):      # no width: the centre only
        parse_spw("1:1.3202GHz", n, f)


def test_id_range_leaves_out_spws_without_data():
    """SPW 2 is in SPECTRAL_WINDOW but has no rows: '0~2' selects 0 and 1 (no error: CASA selects it,
    and it has nothing to select); '0~3' goes past the table."""
    assert parse_spw("0~2", N, F, NAMES, table={0, 1, 2}) == [(0, ALL0), (1, ALL1)]
    assert parse_spw("<5", N, F, NAMES, table={0, 1, 2}) == [(0, ALL0), (1, ALL1)]     # CASA: the same
    with pytest.raises(AlakazamError, match="'0~3' goes past the last spw id of the MS, 2"):
        parse_spw("0~3", N, F, NAMES, table={0, 1, 2})


def test_id_syntax_is_always_ids():
    """SPW 0 named "1" and SPW 1 named "0" (a split of SPWs named by their old ids): ``'0'`` is SPW 0,
    ``'"0"'`` the SPW named "0" (CASA's msseltoindex, measured by the review)."""
    swapped = {0: "1", 1: "0"}
    assert parse_spw("0", N, F, swapped) == [(0, ALL0)]
    assert parse_spw("1:0~3", N, F, swapped) == [(1, [0, 1, 2, 3])]
    assert parse_spw('"0"', N, F, swapped) == [(1, ALL1)]
    assert parse_spw('"1":0~1', N, F, swapped) == [(0, [0, 1])]


def test_field_id_syntax_is_always_ids():
    from alakazam.core.selection import parse_fields

    names = ["2", "3C286", "0"]
    assert parse_fields("2", names) == [2]                      # the id, not the field named "2"
    assert parse_fields('"2"', names) == [0]
    assert parse_fields("3C286,0", names) == [1, 0]
    with pytest.raises(AlakazamError, match="id syntax and no field id"):
        parse_fields("5", ["A", "5"])


def test_one_channel_spw_of_an_ms(tmp_path):
    """resolve_spw hands each SPW's CHAN_WIDTH to the parser: one frequency off the centre of a
    one-channel SPW selects it (it was 'selects no channel')."""
    from alakazam.core.ms_io import read_meta, resolve_spw
    from alakazam.sim import simulate_ms

    ms = str(tmp_path / "one.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(4, 1), duration_h=0.05, int_s=60.0, seed=3,
                dead_ant=False, leakage=False)
    meta = read_meta(ms)
    sp = next(s for s in meta.spws.values() if len(s.freqs) == 1)
    f = float(sp.freqs[0]) + 0.3 * abs(float(sp.chan_width[0]))
    got = resolve_spw(meta, f"{sp.spw_id}:{f / 1e6:.6f}MHz")
    assert {d: list(c) for d, c in got.items()} == {sp.ddid: [0]}
    got = resolve_spw(meta, f"{f / 1e6:.6f}MHz")
    assert list(got) == [sp.ddid]
