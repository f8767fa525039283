"""akflag / akflagmanager / flag versions / selection parsers (small simulated MSs; expected flags written
out by hand from CASA flagdata's documented semantics)."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from alakazam.core import flagtable, flagversions
from alakazam.core import msselect
from alakazam.core.selection import parse_correlation
from alakazam.errors import AlakazamError, ParameterError
from alakazam.sim import simulate_ms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from signal_child import signal_when_writing  # noqa: E402  (tests/signal_child.py)
from hazards import rfi_ms  # noqa: E402
import small_flag_ms  # noqa: E402  (tests/small_flag_ms.py)
from small_flag_ms import cols, put  # noqa: E402

base_ms, ms = small_flag_ms.base_ms, small_flag_ms.ms      # its two fixtures (module MS, a copy per test)

REPO = os.path.dirname(HERE)


# --------------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------------
def ant_names(ms):
    from casacore.tables import table

    with table(ms + "::ANTENNA", ack=False) as t:
        return list(t.getcol("NAME"))


def field_names(ms):
    from casacore.tables import table

    with table(ms + "::FIELD", ack=False) as t:
        return list(t.getcol("NAME"))


# --------------------------------------------------------------------------------------------------
# selection parsers (pure)
# --------------------------------------------------------------------------------------------------
NAMES = ["ea01", "ea02", "ea03", "ea04", "ea05"]


def bls(text, names=NAMES):
    """Baselines (i <= j) that akflag selects for ``text``: msselect's parser (shared with akcal /
    akapply) through akflag's resolve step (which adds the 'selects no baseline' check)."""
    from alakazam.flagging.select import _parse_antenna

    asel = _parse_antenna(text, names)
    i, j = np.triu_indices(len(names))
    keep = np.ones(len(i), bool) if asel is None else asel.mask(i, j)
    return {(int(a), int(b)) for a, b in zip(i[keep], j[keep])}


def test_parse_antenna_casa_syntax():
    assert bls("ea01&ea02") == {(0, 1)}
    assert bls("ea02&ea01") == {(0, 1)}
    assert bls("ea01&*") == {(0, 1), (0, 2), (0, 3), (0, 4)}
    assert bls("ea01&&*") == {(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)}
    assert bls("ea01&&&") == {(0, 0)}
    assert bls("ea01") == bls("ea01&*")          # CASA 6.7 flagdata, measured: no auto-correlation
    assert bls("ea01,ea02&ea03") == {(0, 2), (1, 2)}
    assert bls("ea01&ea02;ea03&ea04") == {(0, 1), (2, 3)}
    every = {(i, j) for i in range(5) for j in range(i, 5)}
    assert bls("") == every
    assert bls("!ea05") == {b for b in every if 4 not in b or b == (4, 4)}     # (its auto stays: CASA)
    assert bls("ea01;!ea01&ea02") == {(0, 2), (0, 3), (0, 4)}
    assert bls("ea0[12]&ea03") == {(0, 2), (1, 2)}
    assert bls("0~1&4") == {(0, 4), (1, 4)}          # indices when not names
    assert bls("3", ["3", "x", "y", "z"]) == bls("0", ["3", "x", "y", "z"])  # name first
    # CASA 'A&' = 'A&A' (baselines among the antennas of A), 'A&&' = 'A&&A' (msselect's convention)
    assert bls("ea01,ea02,ea03&") == {(0, 1), (0, 2), (1, 2)}
    assert bls("ea01,ea02&&") == {(0, 0), (0, 1), (1, 1)}
    # the same expression selects the same rows in akcal/akapply (core/rowselect) as in akflag
    a1, a2 = np.array([0, 0, 1, 2, 3, 4]), np.array([0, 1, 2, 3, 4, 4])
    for text in ("ea01&ea02", "!ea05", "ea01;!ea01&ea02", "ea01,ea02&&"):
        want = [(int(x), int(y)) in bls(text) for x, y in zip(a1, a2)]
        assert msselect.parse_antenna(text, NAMES).mask(a1, a2).tolist() == want, text
        assert msselect.parse_antenna(text, NAMES).mask(a2, a1).tolist() == want, text   # either order
    with pytest.raises(AlakazamError, match="'ea09'.*antennas: ea01"):
        bls("ea01&ea09")
    with pytest.raises(AlakazamError, match="selects no baseline"):
        bls("ea01&ea02;!ea01")
    with pytest.raises(AlakazamError, match="selects no baseline"):
        bls("ea01&")                                 # = ea01&ea01: cross-correlations only, none


def test_parse_timerange_and_correlation():
    day = 60401 * 86400.0
    tr = msselect.parse_timerange
    assert tr("2024/04/01/10:00:00~10:30:00", day) == [(day + 36000, day + 37800, False)]
    assert tr("10:00:00~10:30:30", day + 5) == [(day + 36000, day + 37830, False)]
    assert tr(">10:00:00", day) == [(day + 36000, np.inf, False)]
    assert tr("<2024/04/01/01:00:00", day) == [(-np.inf, day + 3600, False)]
    assert tr("10:00:00+00:05:00", day) == [(day + 36000, day + 36300, False)]
    assert tr("10:00:00+300", day) == [(day + 36000, day + 36300, False)]     # duration in seconds
    # a single time selects the integrations whose [TIME - INTERVAL/2, TIME + INTERVAL/2] contains it
    t = day + np.array([35994.0, 35995.0, 36005.0, 36006.0])
    assert msselect.time_mask(tr("10:00:00", day), t, np.full(4, 10.0)).tolist() == [False, True, True, False]
    # ranges: ends included
    t = day + np.array([35999.0, 36000.0, 37800.0, 37801.0])
    assert msselect.time_mask(tr("10:00:00~10:30:00", day), t).tolist() == [False, True, True, False]
    with pytest.raises(AlakazamError, match="timerange: cannot parse time 'ab:cd'"):
        tr("ab:cd~10:00:00", day)
    with pytest.raises(AlakazamError, match="ends before it starts"):
        tr("11:00:00~10:00:00", day)
    # across midnight without dates: the message gives the range with them (review 56b)
    d0 = msselect.mjds_to_str(day)[:10]
    d1 = msselect.mjds_to_str(day + 86400.0)[:10]
    dated = f"'{d0}/23:30:00~{d1}/00:30:00'"
    with pytest.raises(AlakazamError, match=f"across midnight needs the dates, e.g. {dated}"):
        tr("23:30:00~00:30:00", day)
    with pytest.raises(AlakazamError, match=f"give the end's date, e.g. '{d0}/23:30:00~{d1}/00:30:00'"):
        tr(f"{d0}/23:30:00~00:30:00", day)
    assert tr(f"{d0}/23:30:00~{d1}/00:30:00", day) == [(day + 84600.0, day + 88200.0, False)]
    lin = ["XX", "XY", "YX", "YY"]
    assert parse_correlation("xx,YY", lin) == [0, 3]
    assert parse_correlation("", lin) == [0, 1, 2, 3]
    assert parse_correlation("ABS_XY", lin) == [1]
    assert parse_correlation("PARALLEL", ["RR", "RL", "LR", "LL"]) == [0, 3]
    assert parse_correlation("CROSS", lin) == [1, 2]
    with pytest.raises(AlakazamError, match="'RR' is not a correlation.*XX, XY, YX, YY"):
        parse_correlation("RR", lin)


# --------------------------------------------------------------------------------------------------
# manual / unflag / clip / quack / summary on the MS, exact expected flags
# --------------------------------------------------------------------------------------------------
def test_manual_selection_exact_and_version_saved(ms):
    from alakazam.caltasks import akflag

    names = ant_names(ms)
    a1, a2, scan, flag0 = cols(ms, "ANTENNA1", "ANTENNA2", "SCAN_NUMBER", "FLAG")
    assert not flag0.any()
    c0, c2 = names.index("C00"), names.index("C02")
    out = akflag(vis=ms, mode="manual", antenna="C00&C02", spw="0:2~3;6", correlation="XX,YY", scan="2")
    assert out["version"] == "akflag_1"
    flag, flag_row = cols(ms, "FLAG", "FLAG_ROW")
    rows = (((a1 == c0) & (a2 == c2)) | ((a1 == c2) & (a2 == c0))) & (scan == 2)
    expect = np.zeros_like(flag)
    expect[np.ix_(rows, [2, 3, 6], [0, 3])] = True
    assert rows.sum() > 0
    np.testing.assert_array_equal(flag, expect)
    assert not flag_row.any()
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1"]
    # negation: everything except antenna C00, whole rows -> FLAG_ROW set
    akflag(vis=ms, mode="manual", antenna="!C00")
    flag, flag_row = cols(ms, "FLAG", "FLAG_ROW")
    other = (a1 != c0) & (a2 != c0)
    assert flag[other].all() and flag_row[other].all() and not flag_row[~other].any()
    np.testing.assert_array_equal(flag[~other], expect[~other])
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1", "akflag_2"]


def test_unflag_clears_selection_and_flag_row(ms):
    from alakazam.caltasks import akflag

    flag, = cols(ms, "FLAG")
    flag[:] = True
    put(ms, "FLAG", flag)
    put(ms, "FLAG_ROW", np.ones(len(flag), bool))
    akflag(vis=ms, mode="unflag", spw="0:0~3", correlation="XY")
    flag, flag_row = cols(ms, "FLAG", "FLAG_ROW")
    expect = np.ones_like(flag)
    expect[:, 0:4, 1] = False
    np.testing.assert_array_equal(flag, expect)
    assert not flag_row.any()              # a row with unflagged samples is not row-flagged


def test_clip_minmax_zeros_nan(ms):
    from alakazam.caltasks import akflag

    data, = cols(ms, "DATA")
    data[0, 1, 0] = np.nan
    data[1, 2, 3] = np.inf + 0j
    data[2, 3, 1] = 0
    data[3, 4, 2] = 1e6
    put(ms, "DATA", data)
    amp = np.abs(np.nan_to_num(data, nan=0, posinf=0))
    # NaN/Inf always, plus |V| outside [0.5, 100]
    akflag(vis=ms, mode="clip", clipminmax=[0.5, 100.0])
    flag, = cols(ms, "FLAG")
    expect = (amp < 0.5) | (amp > 100)
    expect[0, 1, 0] = expect[1, 2, 3] = True
    np.testing.assert_array_equal(flag, expect)
    assert flag[3, 4, 2] and flag[2, 3, 1]
    # only NaN/Inf and zeros
    flagversions.restore(ms, "akflag_1")
    akflag(vis=ms, mode="clip", clipzeros=True)
    flag, = cols(ms, "FLAG")
    expect = np.zeros_like(flag)
    expect[0, 1, 0] = expect[1, 2, 3] = expect[2, 3, 1] = True
    np.testing.assert_array_equal(flag, expect)
    # clipoutside=False flags inside the range (the zero sample is at 0, inside [0, 0.5])
    flagversions.restore(ms, "akflag_1")
    akflag(vis=ms, mode="clip", clipminmax=[0.0, 0.5], clipoutside=False, correlation="XY,YX")
    flag, = cols(ms, "FLAG")
    expect = np.zeros_like(flag)
    expect[:, :, 1:3] = amp[:, :, 1:3] <= 0.5
    expect[1, 2, 3] = False                  # Inf is in YY, not selected
    expect[0, 1, 0] = False                  # NaN is in XX, not selected
    np.testing.assert_array_equal(flag, expect)


# CASA's convention, measured with CASA 6.7.0 flagdata on this MS's layout (60 s integrations, 10 per
# scan; quackinterval 30, 60, 90, 120 s, every quackmode): the bounds are inclusive (TIME - t_first <=
# quackinterval: 60 s flags two integrations, 120 s three), 'end' flags all but the LAST quackinterval
# and 'tail' all but the FIRST (alakazam had both the strict '<' and end/tail swapped before);
# quackinterval 0 is refused by CASA ("must be greater than zero"): test_quack_zero_refused.
@pytest.mark.parametrize("mode,qi,expect_k", [("beg", 60.0, [0, 1]), ("beg", 59.0, [0]), ("beg", 30.0, [0]),
                                             ("beg", 120.0, [0, 1, 2]), ("endb", 60.0, [-2, -1]),
                                             ("endb", 30.0, [-1]), ("end", 60.0, "all_but_last2"),
                                             ("tail", 120.0, "all_but_first3")])
def test_quack_modes(ms, mode, qi, expect_k):
    from alakazam.caltasks import akflag

    tm, scan = cols(ms, "TIME", "SCAN_NUMBER")
    akflag(vis=ms, mode="quack", quackinterval=qi, quackmode=mode)
    flag, = cols(ms, "FLAG")
    for s in np.unique(scan):
        ut = np.unique(tm[scan == s])
        assert len(ut) == 10
        if expect_k == "all_but_first3":
            want = set(ut[3:])
        elif expect_k == "all_but_last2":
            want = set(ut[:-2])
        else:
            want = {ut[k] for k in expect_k}
        for t_ in ut:
            rows = (scan == s) & (tm == t_)
            assert flag[rows].all() == (t_ in want) and flag[rows].any() == (t_ in want), (s, t_)


@pytest.mark.parametrize("mode", ["beg", "endb", "end", "tail"])
def test_quack_zero_refused(ms, mode):
    from alakazam.caltasks import akflag

    with pytest.raises(ParameterError, match="quackinterval.*must be > 0"):
        akflag(vis=ms, mode="quack", quackinterval=0.0, quackmode=mode)
    assert not os.path.exists(ms + ".flagversions")


def test_summary_matches_counts(ms):
    from alakazam.caltasks import akflag

    flag, a1, a2, fld, scan = cols(ms, "FLAG", "ANTENNA1", "ANTENNA2", "FIELD_ID", "SCAN_NUMBER")
    rng = np.random.default_rng(0)
    flag = rng.uniform(size=flag.shape) < 0.3
    put(ms, "FLAG", flag)
    before = flag.copy()
    s = akflag(vis=ms, mode="summary")
    assert not os.path.exists(ms + ".flagversions")          # summary writes nothing
    np.testing.assert_array_equal(cols(ms, "FLAG")[0], before)
    assert s["total"] == flag.size and s["flagged"] == int(flag.sum())
    names, fnames = ant_names(ms), field_names(ms)
    for a in np.unique(np.concatenate([a1, a2])):
        m = (a1 == a) | (a2 == a)
        assert s["antenna"][names[a]] == {"flagged": int(flag[m].sum()), "total": int(flag[m].size)}
    for f in np.unique(fld):
        assert s["field"][fnames[f]]["flagged"] == int(flag[fld == f].sum())
    for sc in np.unique(scan):
        assert s["scan"][str(sc)]["flagged"] == int(flag[scan == sc].sum())
    for k, c in enumerate(["XX", "XY", "YX", "YY"]):
        assert s["correlation"][c] == {"flagged": int(flag[..., k].sum()), "total": int(flag[..., k].size)}
    for ch in range(8):
        assert s["spw:channel"][f"0:{ch}"]["flagged"] == int(flag[:, ch].sum())
    assert s["spw"]["0"]["flagged"] == int(flag.sum())
    # with a selection: only the selected samples are counted
    s2 = akflag(vis=ms, mode="summary", correlation="YY", spw="0:1~2")
    assert s2["total"] == flag[:, 1:3, 3].size and s2["flagged"] == int(flag[:, 1:3, 3].sum())


# --------------------------------------------------------------------------------------------------
# extend (CASA semantics), on planes and on the MS
# --------------------------------------------------------------------------------------------------
class _Cfg:
    def __init__(self, **kw):
        self.extendpols, self.growtime, self.growfreq = True, 0.0, 0.0
        self.growaround = self.flagneartime = self.flagnearfreq = False
        self.__dict__.update(kw)


def test_extend_plane_rules():
    from alakazam.flagging.extend import extend_plane

    f = np.zeros((6, 5, 2), bool)          # (time, chan, corr)
    f[1, 2, 0] = True
    np.testing.assert_array_equal(extend_plane(f, _Cfg())[1, 2], [True, True])
    assert extend_plane(f, _Cfg(extendpols=False)).sum() == 1
    # growtime: channel 3 flagged in 4 of 6 integrations (66.7%) -> whole channel at 50, not at 70
    g = np.zeros((6, 5, 1), bool)
    g[:4, 3] = True
    assert extend_plane(g, _Cfg(growtime=50.0))[:, 3].all()
    assert extend_plane(g, _Cfg(growtime=70.0)).sum() == 4
    g3 = np.zeros((6, 5, 1), bool)
    g3[:3, 3] = True                        # exactly 50%: grown (flagdata, measured: ">= growtime %")
    assert extend_plane(g3, _Cfg(growtime=50.0))[:, 3].all()
    assert extend_plane(g3, _Cfg(growtime=51.0)).sum() == 3
    # growfreq: integration 2 has 3 of 5 channels (60%)
    h = np.zeros((6, 5, 1), bool)
    h[2, :3] = True
    assert extend_plane(h, _Cfg(growfreq=50.0))[2].all() and extend_plane(h, _Cfg(growfreq=50.0)).sum() == 5
    assert extend_plane(h, _Cfg(growfreq=60.0))[2].all()       # exactly 60%: grown
    assert extend_plane(h, _Cfg(growfreq=61.0)).sum() == 3
    # growaround: centre (2, 2) has 5 flagged neighbours -> flagged; (0, 0) corner with 2 -> not
    a = np.zeros((5, 5, 1), bool)
    for t_, c in [(1, 1), (1, 2), (1, 3), (2, 1), (3, 1)]:
        a[t_, c] = True
    out = extend_plane(a, _Cfg(growaround=True))[:, :, 0]
    expect = a[:, :, 0].copy()
    expect[2, 2] = True                     # neighbours (1,1),(1,2),(1,3),(2,1),(3,1) = 5 > 4
    np.testing.assert_array_equal(out, expect)
    # flagneartime / flagnearfreq
    n = np.zeros((5, 5, 1), bool)
    n[2, 2] = True
    nt = extend_plane(n, _Cfg(flagneartime=True))[:, :, 0]
    assert nt[1:4, 2].all() and nt.sum() == 3
    nf = extend_plane(n, _Cfg(flagnearfreq=True))[:, :, 0]
    assert nf[2, 1:4].all() and nf.sum() == 3


def test_extend_on_ms_per_baseline_and_scan(ms):
    from alakazam.caltasks import akflag

    a1, a2, scan, tm, flag = cols(ms, "ANTENNA1", "ANTENNA2", "SCAN_NUMBER", "TIME", "FLAG")
    bl = (a1 == a1[0]) & (a2 == a2[0])
    s1 = bl & (scan == scan[0])
    idx = np.flatnonzero(s1)                      # the 10 integrations of one baseline in one scan
    flag[idx[:6], 4, 0] = True                     # 60% of the time in channel 4, XX
    flag[idx[7], :5, 3] = True                     # 5 of 8 channels of one integration, YY
    put(ms, "FLAG", flag)
    akflag(vis=ms, mode="extend", growtime=50.0, growfreq=50.0, extendpols=True)
    out, = cols(ms, "FLAG")
    expect = flag.copy()
    expect[idx[:6], 4, :] = True                   # extendpols
    expect[idx, 4, :] = True                       # growtime (60% > 50%), every correlation
    expect[idx[7], :5, :] = True                   # extendpols
    expect[idx[7], :, :] = True                    # growfreq (5/8 > 50%)
    np.testing.assert_array_equal(out, expect)     # nothing outside that baseline and scan


# --------------------------------------------------------------------------------------------------
# flag versions
# --------------------------------------------------------------------------------------------------
def test_save_flag_restore_bit_exact_and_merges(ms):
    from alakazam.caltasks import akflag, akflagmanager

    rng = np.random.default_rng(5)
    f0 = rng.uniform(size=cols(ms, "FLAG")[0].shape) < 0.2
    fr0 = rng.uniform(size=len(f0)) < 0.1
    put(ms, "FLAG", f0)
    put(ms, "FLAG_ROW", fr0)
    akflagmanager(vis=ms, mode="save", versionname="mine", comment="random flags")
    akflag(vis=ms, mode="manual", spw="0:1~4")
    f1, fr1 = cols(ms, "FLAG", "FLAG_ROW")
    assert not np.array_equal(f1, f0)
    lst = akflagmanager(vis=ms, mode="list")["versions"]
    assert [v["name"] for v in lst] == ["mine", "akflag_1"]
    assert lst[0]["comment"] == "random flags" and lst[0]["time"]
    akflagmanager(vis=ms, mode="restore", versionname="mine")
    f, fr = cols(ms, "FLAG", "FLAG_ROW")
    np.testing.assert_array_equal(f, f0)
    np.testing.assert_array_equal(fr, fr0)
    # merge 'or' / 'and' of the saved akflag_1 (= f0 | FLAG_ROW) with the current flags
    g = rng.uniform(size=f0.shape) < 0.5
    put(ms, "FLAG", g)
    put(ms, "FLAG_ROW", np.zeros(len(g), bool))
    saved1 = f0 | fr0[:, None, None]           # akflag_1 saved the flags as they were: f0 and fr0
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1", merge="or")
    np.testing.assert_array_equal(cols(ms, "FLAG")[0], g | f0)
    np.testing.assert_array_equal(cols(ms, "FLAG_ROW")[0], fr0)
    put(ms, "FLAG", g)
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1", merge="and")
    np.testing.assert_array_equal(cols(ms, "FLAG")[0], g & f0)
    assert saved1.shape == g.shape
    akflagmanager(vis=ms, mode="delete", versionname="mine")
    # (each restore first saved the flags it replaced: flagmanager_1..3)
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1", "flagmanager_1",
                                                                   "flagmanager_2", "flagmanager_3"]
    with pytest.raises(AlakazamError, match="'mine' not found.*akflag_1"):
        akflagmanager(vis=ms, mode="restore", versionname="mine")
    with pytest.raises(ParameterError, match="versionname"):
        akflagmanager(vis=ms, mode="restore")


def test_apply_backup_flags_delegates(ms):
    from alakazam.calibration.apply import backup_flags, restore_flags

    f0, = cols(ms, "FLAG")
    f0[::3, 2] = True
    put(ms, "FLAG", f0)
    assert backup_flags(ms) == "akapply_1"
    assert backup_flags(ms) == "akapply_2"
    put(ms, "FLAG", np.ones_like(f0))
    restore_flags(ms, "akapply_1")
    np.testing.assert_array_equal(cols(ms, "FLAG")[0], f0)
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akapply_1", "akapply_2"]
    with open(os.path.join(ms + ".flagversions", "FLAG_VERSION_LIST")) as fh:
        assert fh.readline().startswith("akapply_1 : ")


def _tiles(ms, header):
    """The bytes of a tiled storage manager's data files (``<header>_TSM*``), read without casacore."""
    return [open(os.path.join(ms, n), "rb").read() for n in sorted(os.listdir(ms))
            if n.startswith(header + "_TSM")]


@pytest.mark.parametrize("header", ["intact", "cut"])
def test_kill_during_flag_write_leaves_version_restorable(ms, tmp_path, header):
    """akflag is killed (SIGKILL) while it writes FLAG: the version it saved first restores bit-exactly
    through akflagmanager.  'cut': the kill also landed inside casacore's flush of FLAG's storage-manager
    header (seen about once in a few hundred kills under load: the header file short, the MS does not
    open -- "FilebufIO::readBlock ... table.f2"); the restore's recovery (core/columns.recover) puts back
    the header saved before the first FLAG write.  Nothing here opens the MS in this process before the
    restore, as a user's next command would not: a failed open stays in casacore's per-process cache."""
    from alakazam.caltasks import akflagmanager
    from alakazam.core import columns
    from casacore.tables import table

    rng = np.random.default_rng(9)
    f0 = rng.uniform(size=cols(ms, "FLAG")[0].shape) < 0.25
    put(ms, "FLAG", f0)
    fr0, = cols(ms, "FLAG_ROW")
    with table(ms, ack=False) as t:
        flag_header = "table.f%d" % t.getdminfo("FLAG")["SEQNR"]
    tiles0 = _tiles(ms, flag_header)
    script = tmp_path / "killme.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from alakazam.flagging import engine
        from alakazam.caltasks import akflag
        real = engine.putcol_rows
        def slow(t, col, rows, values, chunk=engine.flagversions.CHUNK_ROWS):
            # write FLAG a few rows at a time, forever, announcing the first flushed write
            first = True
            while True:
                for s in range(0, len(rows), 3):
                    real(t, col, rows[s:s + 3], values[s:s + 3], chunk=3)
                    t.flush()
                    if first:
                        print("writing", flush=True)
                        first = False
                    values = ~values
                    time.sleep(0.01)
        engine.putcol_rows = slow
        akflag(vis={ms!r}, mode="manual")
    """))
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env)
    signal_when_writing(p, signal.SIGKILL, after=0.5)
    assert p.returncode == -signal.SIGKILL
    assert os.path.isdir(os.path.join(ms, columns.SNAPSHOT))      # taken before the first FLAG write
    if header == "cut":
        with open(os.path.join(ms, flag_header), "r+b") as fh:
            fh.truncate(10)
        probe = f"from casacore.tables import table; table({ms!r}, ack=False)"
        assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode != 0
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1"]
    assert _tiles(ms, flag_header) != tiles0                        # the write was under way
    if header == "intact":
        # what the killed run left, seen after the recovery any next writer does first (a kill inside
        # the header flush, rare, is undone by it too)
        assert columns.recover(ms) in ("dropped", "restored")
        assert not np.array_equal(cols(ms, "FLAG")[0], f0)
    # 'cut': akflagmanager itself undoes the cut header before restoring
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    np.testing.assert_array_equal(cols(ms, "FLAG")[0], f0)
    np.testing.assert_array_equal(cols(ms, "FLAG_ROW")[0], fr0)
    assert not os.path.exists(os.path.join(ms, columns.SNAPSHOT))


# --------------------------------------------------------------------------------------------------
# bad parameters: every bad one, nothing written
# --------------------------------------------------------------------------------------------------
def test_bad_parameters_all_reported(ms):
    from alakazam.caltasks import akflag

    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="clip", clipminmax=[5.0, 1.0], antenna="C00&C99", growtime=300.0,
               quackmode="middle", timerange="xx:yy~10:00", correlation="RR", spw="7", strategy="nope",
               datacolumn="corrected")
    errs = e.value.errors
    for k in ("clipminmax", "antenna", "growtime", "quackmode", "timerange", "correlation", "spw"):
        assert k in errs, (k, errs)
    assert "C99" in " ".join(errs["antenna"]) and "C00" in " ".join(errs["antenna"])
    assert not os.path.exists(ms + ".flagversions")
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="aoflagger", strategy="nope", datacolumn="corrected")
    assert set(e.value.errors) == {"strategy", "datacolumn"}
    assert "jvla" in " ".join(e.value.errors["strategy"])
    with pytest.raises(ParameterError, match=r"mode: 'antint' \(flagdata's\) is not supported.*tfcrop.*aof"):
        akflag(vis=ms, mode="antint")


def test_yaml_flag_blocks_validated_first_then_run_before_solve(ms, tmp_path):
    from alakazam.caltasks.yamlrun import run_yaml

    rel = os.path.relpath(ms, tmp_path)
    cfg = tmp_path / "f.yaml"
    cfg.write_text(f"flag:\n  - ms: {rel}\n    mode: manual\n    antenna: C00&C02\n"
                   f"  - ms: {rel}\n    mode: quack\n    quackmode: sideways\n    antenna: [C00, Cxx]\n"
                   f"  - ms: {rel}\n    mode: clip\n    clipminmax: [3]\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(cfg))
    keys = set(e.value.errors)
    assert {"flag[1].quackmode", "flag[1].antenna", "flag[2].clipminmax"} <= keys, keys
    assert not os.path.exists(ms + ".flagversions")           # nothing ran
    cfg.write_text(f"flag:\n  - ms: {rel}\n    mode: manual\n    antenna: C00&C02\n    spw: '0:3'\n"
                   f"  - ms: {rel}\n    mode: summary\n    quiet: true\n")
    out = run_yaml(str(cfg))
    assert out["flag"][0]["newly_flagged"] == out["flag"][1]["flagged"] > 0
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1"]


def test_cli_flag_and_flagmanager(ms, capsys):
    from alakazam.cli import main

    assert main(["flag", "--vis", ms, "--mode", "manual", "--antenna", "C00", "--correlation", "XY"]) == 0
    flag, a1, a2 = cols(ms, "FLAG", "ANTENNA1", "ANTENNA2")
    c0 = ant_names(ms).index("C00")
    m = (a1 == c0) | (a2 == c0)
    assert flag[m][..., 1].all() and not flag[~m].any() and not flag[..., [0, 2, 3]].any()
    assert main(["flagmanager", "--vis", ms, "--mode", "list"]) == 0
    assert "akflag_1" in capsys.readouterr().out
    assert main(["flagmanager", "--vis", ms, "--mode", "restore", "--versionname", "akflag_1"]) == 0
    assert not cols(ms, "FLAG")[0].any()
    assert main(["flag", "--vis", ms, "--mode", "clip", "--clipminmax", "5", "1", "--antenna", "Cxx"]) == 2
    err = capsys.readouterr().err
    assert "clipminmax" in err and "antenna" in err


# --------------------------------------------------------------------------------------------------
# AOFlagger and mad on injected RFI; the solve after flagging
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rfi(tmp_path_factory):
    d = tmp_path_factory.mktemp("flag_rfi")
    ms = str(d / "rfi.ms")
    # per-visibility SNR ~15 on 3C286 (noise 1 Jy per part); RFI channel 5, 2-6x the calibrator flux
    truth, masks = rfi_ms(ms, persistent=(5,), noise=1.0)
    return ms, truth, masks


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_aoflagger_persistent_channel(rfi, tmp_path):
    from alakazam.caltasks import akflag

    src, truth, masks = rfi
    ms = _copy(src, str(tmp_path / "ao.ms"))
    out = akflag(vis=ms, mode="aoflagger")            # default strategy: generic
    assert out["version"] == "akflag_1"
    flag, = cols(ms, "FLAG")
    m = masks[0]
    flag = flag[masks[("rows", 0)]]
    hit = flag[m].mean()
    false = flag[~m].mean()
    print(f"aoflagger: RFI samples flagged {hit:.5f}, clean samples flagged {false:.5f}")
    assert hit >= 0.999
    assert false <= 0.02


def test_mad_mode_catches_persistent_channel(rfi, tmp_path):
    from alakazam.caltasks import akflag

    src, truth, masks = rfi
    ms = _copy(src, str(tmp_path / "mad.ms"))
    akflag(vis=ms, mode="mad", threshold=5.0)
    flag, = cols(ms, "FLAG")
    flag = flag[masks[("rows", 0)]]
    assert flag[masks[0]].mean() == 1.0
    assert flag[~masks[0]].mean() <= 0.01


def test_solve_after_aoflagger_equals_hand_flagged_solve(rfi, tmp_path):
    """G per scan (band average) on 3C286 after akflag(aoflagger) equals the solve with the RFI channel
    flagged by hand, within the noise (the two differ only by AOFlagger's few clean-sample flags)."""
    from alakazam.caltasks import akcal, akflag
    from alakazam.io import hdf5

    src, truth, masks = rfi
    ao = _copy(src, str(tmp_path / "ao.ms"))
    hand = _copy(src, str(tmp_path / "hand.ms"))
    akflag(vis=ao, mode="aoflagger")
    akflag(vis=hand, mode="manual", spw="0:5")
    sols = {}
    for name, ms in (("ao", ao), ("hand", hand)):
        cal = str(tmp_path / f"{name}.h5")
        akcal(vis=ms, caltable=cal, jones=["G"], field="3C286", solint="scan", freqint="full", refant="C00",
              parang=True)
        sols[name] = hdf5.read_term(cal, "G0")
    # Cramer-Rao sigma of gain p (per real/imag part) from the hand-flagged cell: noise /
    # sqrt(sum_q |g_q|^2 |M|^2 over the cell's samples), |M| >= 14.9 * (1 - 0.1) (3C286's parallel hands
    # with its 10% polarisation), (n_t integrations x 31 unflagged channels) per baseline
    n_t, n_chan = 900 // 30, 31
    worst = 0.0
    for a, b in zip(sols["ao"], sols["hand"]):
        ok = ~(a.flags | b.flags)
        assert ok.mean() > 0.9
        ga, gb = a.jones[..., [0, 1], [0, 1]], b.jones[..., [0, 1], [0, 1]]      # (ant, freq, time, pol)
        g2 = np.abs(gb) ** 2
        info = (g2.sum(axis=0, keepdims=True) - g2) * (14.9 * 0.9) ** 2 * n_t * n_chan
        sigma = truth.noise / np.sqrt(info)
        z = (np.abs(ga - gb) / (np.sqrt(2) * sigma))[ok]
        worst = max(worst, float(z.max()))
    print(f"max |g_ao - g_hand| / (sqrt(2) sigma_CR) = {worst:.2f}")
    assert worst < 5.0


def test_aoflagger_strategy_names(tmp_path):
    from alakazam.flagging.aoflagger import shipped_strategies, strategy_path

    assert {"generic", "jvla", "lofar"} <= set(shipped_strategies())
    assert strategy_path("").endswith("generic-default.lua")
    assert strategy_path("JVLA").endswith("jvla-default.lua")
    assert strategy_path("auto", "EVLA").endswith("jvla-default.lua")
    assert strategy_path("auto", "SomeDish").endswith("generic-default.lua")
    user = tmp_path / "mine.lua"
    user.write_text(open(strategy_path("generic")).read())
    assert strategy_path(str(user)) == str(user)
    with pytest.raises(AlakazamError, match="'nope' is not a strategy AOFlagger ships; expected.*generic"):
        strategy_path("nope")
    with pytest.raises(AlakazamError, match="does not exist"):
        strategy_path(str(tmp_path / "missing.lua"))


def test_residual_column_and_timerange(ms):
    """clip on datacolumn='residual_data' (DATA - MODEL_DATA; CASA's name) inside a timerange: exact
    samples."""
    from alakazam.caltasks import akflag

    data, model, tm = cols(ms, "DATA", "MODEL_DATA", "TIME")
    res = np.abs(data - model)
    thr = float(np.median(res))
    ut = np.unique(tm)
    day = np.floor(ut[0] / 86400.0) * 86400.0
    hms = lambda x: "%02d:%02d:%06.3f" % ((x - day) // 3600, (x - day) % 3600 // 60, (x - day) % 60)  # noqa: E731
    akflag(vis=ms, mode="clip", datacolumn="residual_data", clipminmax=[0.0, thr],
           timerange=f"{hms(ut[3] - 1)}~{hms(ut[7] + 1)}")
    flag, = cols(ms, "FLAG")
    inside = (tm >= ut[3]) & (tm <= ut[7])
    expect = np.zeros_like(flag)
    expect[inside] = res[inside] > thr
    np.testing.assert_array_equal(flag, expect)
    assert expect.any() and inside.sum() < len(tm)


@pytest.mark.parametrize("mode,kw", [("aoflagger", {}), ("mad", {}), ("extend", {"growaround": True})])
def test_pieces_of_few_baselines_give_the_same_flags(rfi, tmp_path, mode, kw):
    """A memory limit that splits every scan into pieces of single baselines flags exactly as one piece."""
    from alakazam.caltasks import akflag

    src, truth, masks = rfi
    a = _copy(src, str(tmp_path / "a.ms"))
    b = _copy(src, str(tmp_path / "b.ms"))
    if mode == "extend":                     # something to extend
        for ms in (a, b):
            akflag(vis=ms, mode="clip", clipminmax=[0.0, 40.0])
    akflag(vis=a, mode=mode, **kw)
    akflag(vis=b, mode=mode, memory_limit_gb=2e-6, **kw)      # ~2 kB: one baseline per piece
    fa, fb = cols(a, "FLAG")[0], cols(b, "FLAG")[0]
    assert fa.any()
    np.testing.assert_array_equal(fa, fb)


def test_action_calculate_counts_without_writing(ms):
    from alakazam.caltasks import akflag

    out = akflag(vis=ms, mode="manual", spw="0:0~1", action="calculate")
    n_row = len(cols(ms, "TIME")[0])
    assert out["version"] is None and out["newly_flagged"] == out["total"] == n_row * 2 * 4
    assert not cols(ms, "FLAG")[0].any()
    assert not os.path.exists(ms + ".flagversions")


def test_cli_flag_runs_only_the_flag_blocks_of_a_yaml(ms, tmp_path):
    from alakazam.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"flag:\n  - ms: {ms}\n    mode: manual\n    correlation: YY\n"
                   f"solve:\n  - ms: {ms}\n    output: never.h5\n    jones: [G]\n")
    assert main(["--quiet", "flag", str(cfg)]) == 0
    flag, = cols(ms, "FLAG")
    assert flag[..., 3].all() and not flag[..., :3].any()
    assert not (tmp_path / "never.h5").exists()
    assert main(["flag", str(cfg), "--mode", "unflag"]) == 2          # a file or options, not both


def test_aoflagger_intermittent_and_bursts(tmp_path):
    """Persistent channel, intermittent narrow-band RFI (2 channels in ~10% of the integrations) and
    broadband bursts (3 integrations): AOFlagger flags every RFI sample and <= 2% of the clean ones."""
    from alakazam.caltasks import akflag

    ms = str(tmp_path / "h.ms")
    _, masks = rfi_ms(ms, persistent=(5,), intermittent=(12, 20), bursts=3, noise=1.0, seed=8)
    akflag(vis=ms, mode="aoflagger")
    f = cols(ms, "FLAG")[0][masks[("rows", 0)]]
    m = masks[0]
    burst = m.all(axis=(1, 2))
    assert burst.sum() > 0 and m[:, 12].any() and not m[:, 12].all()
    assert f[m].mean() >= 0.999 and f[burst].all()
    assert f[~m].mean() <= 0.02


def test_casa_flag_version_tables_are_listed_and_restored(ms):
    """A version saved by CASA (a flags.<name> table, listed by CASA) is listed, counted by next_name and
    restored (tests/test_flagversions_casa.py compares with CASA itself)."""
    from casacore.tables import table

    d = ms + ".flagversions"
    flagversions.save(ms, name="applycal_1")                 # a table of CASA's layout, then listed as CASA
    with open(os.path.join(d, "FLAG_VERSION_LIST"), "w") as fh:
        fh.write("applycal_1 : Flags autosave on 2024-04-01\n")
    with table(os.path.join(d, "flags.applycal_1"), readonly=False, ack=False) as v:
        v.removekeyword(flagtable.SAVED_KEY)                  # CASA writes none
    assert flagversions.next_name(ms, "applycal") == "applycal_2"
    f0, = cols(ms, "FLAG")
    name = flagversions.save(ms, task="akflag", comment="mine")
    v = flagversions.list_versions(ms)
    assert [(x["name"], x["time"]) for x in v] == [("applycal_1", ""), (name, v[1]["time"])] and v[1]["time"]
    with open(os.path.join(d, "FLAG_VERSION_LIST")) as fh:
        assert fh.read().splitlines() == ["applycal_1 : Flags autosave on 2024-04-01", f"{name} : mine"]
    put(ms, "FLAG", np.ones_like(f0))
    flagversions.restore(ms, "applycal_1")
    np.testing.assert_array_equal(cols(ms, "FLAG")[0], f0)


def test_aoflagger_worker_processes_give_the_same_flags(rfi, tmp_path):
    from alakazam.caltasks import akflag

    src, truth, masks = rfi
    a = _copy(src, str(tmp_path / "a.ms"))
    b = _copy(src, str(tmp_path / "b.ms"))
    akflag(vis=a, mode="aoflagger")
    akflag(vis=b, mode="aoflagger", nproc=2)
    fa, fb = cols(a, "FLAG")[0], cols(b, "FLAG")[0]
    assert fa[:, 5].all()
    np.testing.assert_array_equal(fa, fb)


def test_two_spws_of_different_shapes_flag_and_restore(tmp_path):
    """FLAG has a different shape per DATA_DESC_ID: selection by spw/channel, save and restore per DDID."""
    from casacore.tables import table

    from alakazam.caltasks import akflag, akflagmanager

    ms = str(tmp_path / "two.ms")
    simulate_ms(ms, n_ant=3, n_ant_extra=0, n_chan=(8, 4), duration_h=0.2, int_s=60.0, noise=0.05, seed=4,
                leakage=False, dead_ant=False, flag_rows=0.0)

    def flags():
        with table(ms, ack=False) as t:
            dd = t.getcol("DATA_DESC_ID")
            out = {}
            for d in np.unique(dd):
                q = t.selectrows(np.flatnonzero(dd == d))
                out[int(d)] = q.getcol("FLAG")
                q.close()
            return out

    before = flags()
    assert {v.shape[1] for v in before.values()} == {8, 4}
    akflag(vis=ms, mode="manual", spw="1:1~2")            # SPW 1 (4 channels) is DATA_DESC_ID 0
    after = flags()
    spw1 = [d for d, v in after.items() if v.shape[1] == 4][0]
    other = [d for d in after if d != spw1][0]
    assert after[spw1][:, 1:3].all() and not after[spw1][:, [0, 3]].any() and not after[other].any()
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    for d, v in flags().items():
        np.testing.assert_array_equal(v, before[d])


@pytest.mark.parametrize("cmd", ["flag", "flagmanager"])
def test_cli_help(cmd, capsys):
    from alakazam.cli import main

    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "--vis" in capsys.readouterr().out
