"""Flagged solutions in time interpolation: not bridged (CASA 6.7 applycal's rule, measured).

Convention (alakazam/core/interpolation.py): the flag of a target time is that of the solution(s)
its mode uses on the full timeline -- ``nearest``: the nearest solution; ``linear`` / ``cubic``: the two
bracketing ones (either flagged -> flagged; at a solution's time only it; outside the range the held
end solution).  A valid solution further away is never used instead (review-gmrt: a dead antenna's
target data were corrected with its last good solution 40-70 min earlier).

The CASA-free tests pin the convention with the patterns measured with CASA 6.7.0-31 applycal
(applymode calflag) on the MS built below; the CASA test (skipped without CASA) re-measures them and
compares akapply on the same CASA tables.
"""

import json
import os
import shutil
import sys

import numpy as np
import pytest

from alakazam.core.freqinterp import interp_freq
from alakazam.core.interpolation import interp_delay_time, interp_time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import run_casa  # noqa: E402  (tests/casa_python.py)

# 12 solutions at integrations 2, 7, ..., 57 of a 60-integration timeline; solution i has gain 1.1 + 0.1 i
# on one antenna; 'F' = flagged.  Each target integration: '.' corrected, 'F' flagged by CASA 6.7.
SOL_K = np.arange(2, 60, 5)
PATTERNS = {"A": "FGGFGFFGGGGF",        # first/last flagged, one flagged between good, two flagged
            "B": "GFFFFFFFFFFF",        # the antenna dies after the first solution
            "C": "FFFFFFFFFFFG"}        # ... is only good at the last one
CASA67 = {   # measured (tests/test_interp_flags.py::test_matches_casa_applycal); nearestflag = nearest,
    # linearflag = cubic = linear in time
    ("A", "nearest"): "FFFFF..........FFFFF.....FFFFFFFFFF....................FFFFF",
    ("A", "linear"): "FFFFFFF......FFFFFFFFF.FFFFFFFFFFFFFF................FFFFFFF",
    ("B", "nearest"): "....." + "F" * 55,
    ("B", "linear"): "..." + "F" * 57,
    ("C", "nearest"): "F" * 55 + ".....",
    ("C", "linear"): "F" * 57 + "...",
}
# bandpass, 8 channels, value 1.1 + 0.1 c; channels 0, 3, 4, 7 flagged (interp 'nearest,<freq>')
BP_FLAGGED = (0, 3, 4, 7)
CASA67_BP = {"nearest": [1.2, 1.2, 1.3, 1.3, 1.6, 1.6, 1.7, 1.7],
             "linear": [1.2, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.7],
             "nearestflag": [None, 1.2, 1.3, None, None, 1.6, 1.7, None],
             "linearflag": [None, 1.2, 1.3, None, None, 1.6, 1.7, None]}


def _expected(pattern, mode):
    return CASA67[(pattern, "linear" if mode in ("linear", "cubic") else "nearest")]


def _model_gain(mode, k):
    """The interpolated gain at integration k for the ramp 1.1 + 0.1 i at SOL_K (unflagged)."""
    if mode == "nearest":
        return 1.1 + 0.1 * np.argmin(np.abs(SOL_K - k))     # no ties on this grid
    return float(np.clip(1.1 + 0.02 * (k - 2), 1.1, 2.2))


def _sol_arrays(pattern):
    g = 1.1 + 0.1 * np.arange(12)
    j = np.zeros((1, 1, 12, 2, 2), complex)
    j[0, 0, :, 0, 0] = g
    j[0, 0, :, 1, 1] = g * np.exp(0.3j)
    flags = np.array([c == "F" for c in PATTERNS[pattern]])[None, None]
    return j, flags


@pytest.mark.parametrize("mode", ["nearest", "exact", "linear", "cubic"])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_time_interp_flags_follow_casa(pattern, mode):
    j, flags = _sol_arrays(pattern)
    tt = np.arange(60.0)
    out, f = interp_time(SOL_K.astype(float), j, flags, tt, mode)
    want = _expected(pattern, "nearest" if mode == "exact" else mode)
    assert "".join("F" if x else "." for x in f[0, 0]) == want
    assert np.isnan(out[f]).all()
    for k in np.nonzero(~f[0, 0])[0]:
        g = _model_gain("nearest" if mode == "exact" else mode, k)
        assert abs(out[0, 0, k, 0, 0] - g) < 1e-9 and abs(out[0, 0, k, 1, 1] - g * np.exp(0.3j)) < 1e-9
    # delays (K): the same flags
    d = np.stack([np.abs(j[..., 0, 0]), np.abs(j[..., 1, 1])], -1)
    _, fd = interp_delay_time(SOL_K.astype(float), d, flags, tt, "nearest" if mode == "exact" else mode)
    assert (fd == f).all()


def test_a_flagged_nearest_solution_is_not_replaced_by_a_valid_one_further_away():
    """The review-gmrt case in miniature: good, then flagged from the 2nd solution on."""
    t = np.array([0.0, 10.0, 20.0])
    j = np.zeros((2, 1, 3, 2, 2), complex)
    j[..., 0, 0] = j[..., 1, 1] = 1.0
    flags = np.zeros((2, 1, 3), bool)
    flags[1, 0, 1:] = True                       # antenna 1 dead from t=10
    for mode in ("nearest", "linear"):
        out, f = interp_time(t, j, flags, np.array([4.0, 6.0, 15.0, 25.0]), mode)
        assert not f[0].any()
        assert f[1, 0].tolist() == ([False, True, True, True] if mode == "nearest" else [True] * 4)


@pytest.mark.parametrize("flagged", [(), (0,), (1,)])
def test_nearest_tie_takes_the_earlier_solution_and_its_flag(flagged):
    """Solutions at 2 and 6, a target at 4: CASA 6.7 takes the earlier one (gain 1.1 at k=4), flagged
    when it is flagged, also when the later one is valid (measured: k=0..8 -> 1.1 x5, 1.2 x4; earlier
    flagged: F x5, 1.2 x4; later flagged: 1.1 x5, F x4)."""
    j = np.zeros((1, 1, 2, 2, 2), complex)
    j[0, 0, :, 0, 0] = j[0, 0, :, 1, 1] = [1.1, 1.2]
    flags = np.zeros((1, 1, 2), bool)
    flags[0, 0, list(flagged)] = True
    out, f = interp_time(np.array([2.0, 6.0]), j, flags, np.arange(9.0), "nearest")
    want = [1.1] * 5 + [1.2] * 4
    got = [None if f[0, 0, k] else round(float(out[0, 0, k, 0, 0].real), 6) for k in range(9)]
    assert got == [None if (k < 5 and 0 in flagged) or (k >= 5 and 1 in flagged) else w
                   for k, w in enumerate(want)]


@pytest.mark.parametrize("fmode", sorted(CASA67_BP))
def test_freq_interp_of_a_flagged_bandpass_channel_follows_casa(fmode):
    nu = 1.3e9 + 1e6 * np.arange(8)
    g = 1.1 + 0.1 * np.arange(8)
    j = np.zeros((1, 8, 1, 2, 2), complex)
    j[0, :, 0, 0, 0] = j[0, :, 0, 1, 1] = g
    fl = np.zeros((1, 8, 1), bool)
    fl[0, list(BP_FLAGGED)] = True
    out, f, _ = interp_freq(nu, j, fl, nu, fmode)
    got = [None if f[0, c, 0] else round(float(abs(out[0, c, 0, 0, 0])), 6) for c in range(8)]
    assert got == pytest.approx(CASA67_BP[fmode])


# ---------------------------------------------------------------------------------------------------
# against CASA 6.7 applycal (optional)
# ---------------------------------------------------------------------------------------------------

CASA_SCRIPT = r"""
import json, shutil
import numpy as np
from casatools import table as tbtool
from casatasks import gaincal, bandpass, applycal
tb = tbtool()
PATTERNS = json.loads('PATTERNS_JSON')
SOL_K = list(range(2, 60, 5))
tb.open('c.ms', nomodify=False)
d = tb.getcol('DATA'); d[:] = 0; d[0] = 1; d[3] = 1
tb.putcol('MODEL_DATA', d)
rng = np.random.default_rng(1)
tb.putcol('DATA', d + 0.01 * (rng.normal(size=d.shape) + 1j * rng.normal(size=d.shape)))
tb.putcol('WEIGHT', np.ones_like(tb.getcol('WEIGHT'))); tb.putcol('SIGMA', np.ones_like(tb.getcol('SIGMA')))
f = tb.getcol('FLAG'); f[:] = False; tb.putcol('FLAG', f)
tb.close()
gaincal(vis='c.ms', caltable='g0', solint='int', refant='C00', gaintype='G', calmode='ap', minsnr=0,
        minblperant=1)
bandpass(vis='c.ms', caltable='b0', field='3C286', solint='inf', combine='scan', refant='C00', minsnr=0,
         minblperant=1)
tb.open('c.ms', nomodify=False); tb.putcol('DATA', d); T = np.unique(tb.getcol('TIME')); tb.close()

def unflag():
    tb.open('c.ms', nomodify=False); f = tb.getcol('FLAG'); f[:] = False; tb.putcol('FLAG', f); tb.close()

def read01():
    tb.open('c.ms'); q = tb.query('ANTENNA1==0 && ANTENNA2==1')
    cd, fl, tm = q.getcol('CORRECTED_DATA'), q.getcol('FLAG'), q.getcol('TIME'); q.close(); tb.close()
    o = np.argsort(tm)
    return cd[:, :, o], fl[:, :, o]

res = {}
for p, pat in PATTERNS.items():
    for fid in (0, 2):
        name = 'g_%s_%d' % (p, fid)
        tb.open('g0')
        sub = tb.query('TIME IN [%s]' % ','.join(repr(float(T[k])) for k in SOL_K))
        sub.copy(name, deep=True); sub.close(); tb.close()
        tb.open(name, nomodify=False)
        tm, an = tb.getcol('TIME'), tb.getcol('ANTENNA1')
        tb.putcol('FIELD_ID', np.full(tb.nrows(), fid, np.int32))
        cp, fl = tb.getcol('CPARAM'), tb.getcol('FLAG')
        cp[:] = 1; fl[:] = False
        for r in range(tb.nrows()):
            if an[r] == 1:
                i = SOL_K.index(int(np.argmin(abs(T - tm[r]))))
                cp[:, :, r] = 1.1 + 0.1 * i
                fl[:, :, r] = pat[i] == 'F'
        tb.putcol('CPARAM', cp); tb.putcol('FLAG', fl); tb.close()
    for interp in ('nearest', 'linear', 'nearestflag', 'linearflag', 'cubic'):
        applycal(vis='c.ms', gaintable=['g_%s_0' % p], interp=[interp], applymode='calflag',
                 flagbackup=False, calwt=False)
        cd, fl = read01()
        res[p + ':' + interp] = [None if fl[0, 0, k] else float(1 / abs(cd[0, 0, k])) for k in range(60)]
        unflag()
shutil.copytree('b0', 'bA')
tb.open('bA', nomodify=False)
an, cp, fl = tb.getcol('ANTENNA1'), tb.getcol('CPARAM'), tb.getcol('FLAG')
cp[:] = 1; fl[:] = False
for r in range(tb.nrows()):
    if an[r] == 1:
        for c in range(cp.shape[1]):
            cp[:, c, r] = 1.1 + 0.1 * c
            fl[:, c, r] = c in BP_FLAGGED
tb.putcol('CPARAM', cp); tb.putcol('FLAG', fl); tb.close()
for fm in ('nearest', 'linear', 'nearestflag', 'linearflag'):
    applycal(vis='c.ms', field='TARGET', gaintable=['bA'], interp=['nearest,' + fm], applymode='calflag',
             flagbackup=False, calwt=False)
    cd, fl = read01()
    res['bA:' + fm] = [None if fl[0, c, 10] else float(1 / abs(cd[0, c, 10])) for c in range(8)]
    unflag()
# own-field solutions, one per 3C286 scan (1, 4, 7, 10; centres k = 2, 17, 32, 47), scan 4's flagged
KS = [2, 17, 32, 47]
tb.open('g0')
sub = tb.query('TIME IN [%s]' % ','.join(repr(float(T[k])) for k in KS))
sub.copy('gs', deep=True); sub.close(); tb.close()
tb.open('gs', nomodify=False)
tm, an = tb.getcol('TIME'), tb.getcol('ANTENNA1')
kk = [int(np.argmin(abs(T - x))) for x in tm]
tb.putcol('FIELD_ID', np.zeros(tb.nrows(), np.int32))
tb.putcol('SCAN_NUMBER', np.array([[1, 4, 7, 10][KS.index(k)] for k in kk], np.int32))
cp, fl = tb.getcol('CPARAM'), tb.getcol('FLAG')
cp[:] = 1; fl[:] = False
for r in range(tb.nrows()):
    if an[r] == 1:
        cp[:, :, r] = 1.1 + 0.1 * KS.index(kk[r]); fl[:, :, r] = kk[r] == 17
tb.putcol('CPARAM', cp); tb.putcol('FLAG', fl); tb.close()
applycal(vis='c.ms', field='3C286', gaintable=['gs'], interp=['linear'], applymode='calflag',
         flagbackup=False, calwt=False)
cd, fl = read01()
res['ownscan'] = [None if fl[0, 0, k] else float(1 / abs(cd[0, 0, k])) for k in range(60)]
unflag()
json.dump(res, open('casa_res.json', 'w'))
"""


def _same(a, b, tol=2e-3):
    return all((x is None) == (y is None) and (x is None or abs(x - y) < tol) for x, y in zip(a, b))


def test_matches_casa_applycal(tmp_path):
    """CASA 6.7 applycal (calflag) and akapply (calflag) of the same CASA tables on the same MS: the
    flags and gains of every integration of the affected antenna, each pattern and time mode (CASA's
    nearestflag / linearflag are the same as nearest / linear in time), and a bandpass with flagged
    channels in each frequency mode."""
    from casacore.tables import table

    from alakazam.caltasks import akapply
    from alakazam.sim.simulate import simulate_ms

    simulate_ms(str(tmp_path / "t.ms"), n_ant=4, n_ant_extra=0, n_chan=(8,), feed="linear", duration_h=1.0,
                int_s=60, scan_len_s=300, noise=0.0, delays=False, bandpass=False, time_gains=False,
                leakage=False, crosshand=False, dead_ant=False, flag_rows=0)
    shutil.copytree(tmp_path / "t.ms", tmp_path / "c.ms")
    script = (CASA_SCRIPT.replace("PATTERNS_JSON", json.dumps(PATTERNS))
              .replace("BP_FLAGGED", repr(BP_FLAGGED)))
    run_casa(script, tmp_path)
    casa = json.loads((tmp_path / "casa_res.json").read_text())
    # CASA as pinned above
    for p in PATTERNS:
        for m in ("nearest", "linear", "nearestflag", "linearflag", "cubic"):
            want = _expected(p, m.replace("flag", ""))
            assert "".join("F" if x is None else "." for x in casa[f"{p}:{m}"]) == want, (p, m)
    for fm, want in CASA67_BP.items():
        assert _same(casa["bA:" + fm], want), (fm, casa["bA:" + fm])

    ms = str(tmp_path / "c.ms")

    def run(gaintable, field, interp):
        with table(ms, readonly=False, ack=False) as t:
            t.putcol("FLAG", np.zeros(t.getcol("FLAG").shape, bool))
        akapply(vis=ms, field=field, gaintable=[str(tmp_path / gaintable)], jones=["G0"], interp=[interp],
                applymode="calflag")
        with table(ms, ack=False) as t:
            q = t.query("ANTENNA1==0 && ANTENNA2==1", sortlist="TIME")
            return q.getcol("CORRECTED_DATA"), q.getcol("FLAG"), q.getcol("FIELD_ID")

    for p in PATTERNS:
        for m in ("nearest", "linear", "cubic"):
            # no own-field solutions anywhere (CASA ignores the field): table of 3C286 -> 3C147 and
            # TARGET, the same table labelled TARGET -> 3C286
            cd, fl, fid = run(f"g_{p}_0", ["3C147", "TARGET"], m)
            cd2, fl2, _ = run(f"g_{p}_2", ["3C286"], m)
            on0 = fid == 0
            cd[on0], fl[on0] = cd2[on0], fl2[on0]
            mine = [None if fl[k, 0, 0] else float(1 / abs(cd[k, 0, 0])) for k in range(60)]
            assert _same(mine, casa[f"{p}:{m}"]), (p, m, mine, casa[f"{p}:{m}"])
    for fm in CASA67_BP:
        cd, fl, _ = run("bA", ["TARGET"], "nearest," + fm)
        mine = [None if fl[10, c, 0] else float(1 / abs(cd[10, c, 0])) for c in range(8)]
        assert _same(mine, casa["bA:" + fm]), (fm, mine, casa["bA:" + fm])
    # a calibrator's own per-scan solutions, scan 4's flagged, linear: CASA (scan-blind) also flags
    # the halves of scans 1 and 7 that face scan 4; akapply keeps them (their own scan's solution is
    # valid: calibration/chain._same_scan_parts) -- the one deliberate difference
    k286 = [0, 1, 2, 3, 4, 15, 16, 17, 18, 19, 30, 31, 32, 33, 34]
    assert "".join("F" if casa["ownscan"][k] is None else "." for k in k286) == "...FFFFFFFFF..."
    cd, fl, fid = run("gs", ["3C286"], "linear")
    assert "".join("F" if fl[k, 0, 0] else "." for k in k286) == ".....FFFFF....."
    for k in (3, 4, 30, 31):            # kept, with their own scan's gain (1.1 in scan 1, 1.3 in scan 7)
        assert abs(1 / abs(cd[k, 0, 0]) - (1.1 if k < 10 else 1.3)) < 2e-3


# ---------------------------------------------------------------------------------------------------
# K (delays) with 'nearest' and 'linear': the diagonal fast path of apply, end to end
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_k_solutions_flagged_after_an_antenna_died_flag_its_target_data(tmp_path, mode):
    """K solved per scan on 3C286 + 3C147, exported to a CASA table whose C02 rows are flagged from
    scan 7 on (the antenna died): akapply calflag flags C02's TARGET rows of scans 9 and 12 (no valid
    K on either side / after the last valid one) instead of correcting them with its scan-5 delay,
    and leaves scan 3 (valid on both sides) and the other antennas alone."""
    from casacore.tables import table

    from alakazam.caltasks import akapply, akcal, akexport
    from alakazam.sim.simulate import simulate_ms

    ms = str(tmp_path / "k.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(16,), duration_h=2.0, noise=0.01, seed=2,
                leakage=False, crosshand=False, dead_ant=False, bandpass=False, flag_rows=0)
    cal = str(tmp_path / "k.h5")
    akcal(vis=ms, caltable=cal, field="3C286,3C147", refant="C00", jones=["K"], solint=["scan"])
    ktab = str(tmp_path / "k.K")
    akexport(caltable=cal, jones="K0", casatable=ktab)
    with table(ms + "::ANTENNA", ack=False) as a:
        di = list(a.getcol("NAME")).index("C02")
    with table(ms, ack=False) as t:
        t7 = t.getcol("TIME")[t.getcol("SCAN_NUMBER") == 7].min()
    with table(ktab, readonly=False, ack=False) as t:
        f = t.getcol("FLAG")
        bad = (t.getcol("ANTENNA1") == di) & (t.getcol("TIME") >= t7)
        assert bad.any()
        f[bad] = True
        t.putcol("FLAG", f)
    akapply(vis=ms, field=["TARGET"], gaintable=[ktab], jones=["K0"], interp=[mode], applymode="calflag")
    with table(ms, ack=False) as t:
        fl = t.getcol("FLAG").all(axis=(1, 2))
        sc, fld = t.getcol("SCAN_NUMBER"), t.getcol("FIELD_ID")
        on = (t.getcol("ANTENNA1") == di) | (t.getcol("ANTENNA2") == di)
    with table(ms + "::FIELD", ack=False) as f_:
        tid = list(f_.getcol("NAME")).index("TARGET")
    for scan, want in ((3, 0.0), (9, 1.0), (12, 1.0)):
        rows = (sc == scan) & (fld == tid)
        assert rows.any()
        assert fl[rows & on].mean() == want, (scan, fl[rows & on].mean())
        assert not fl[rows & ~on].any()


def test_linearflag_outside_the_band_follows_casa():
    """CASA 6.7 applycal, 'nearest,linearflag', a bandpass of four 4-channel bins on 16 data channels
    (bin centres at channels 1.5, 5.5, 9.5, 13.5), one bin flagged per antenna (measured in session 54,
    review 54c): beyond the first / last centre the end value is held but the channel is flagged when
    either end bin is."""
    from alakazam.core.freqinterp import interp_freq

    sol = np.array([1.5, 5.5, 9.5, 13.5])
    chans = np.arange(16.0)
    casa = {0: "FFFFFF..........", 1: "FFFFFFFFFF......", 2: "......FFFFFFFFFF", 3: "..........FFFFFF"}
    jones = np.tile(np.eye(2, dtype=complex), (4, 4, 1, 1, 1))          # (n_ant, n_f, n_t=1, 2, 2)
    flags = np.zeros((4, 4, 1), bool)
    for a in range(4):
        flags[a, a, 0] = True
    _, fl, _ = interp_freq(sol, jones, flags, chans, "linearflag")
    for a in range(4):
        assert "".join("F" if x else "." for x in fl[a, :, 0]) == casa[a], a
