"""Structural variety of real Measurement Sets that simulate_ms does not write (VLA, uGMRT, MeerKAT, ASKAP,
LOFAR-converted, CASA-concatenated MSs).

Each test rewrites a small simulated MS with python-casacore so that it carries one oddity while holding the
same visibilities (rows with ANTENNA1 > ANTENNA2, correlations in another order or only the parallel
hands, rows shuffled or duplicated ...), solves it and compares with the solutions of the unmodified MS --
which the module fixture checks against the simulator's truth.  Where the information is the same the
solutions must be the same (to float rounding: only the order of sums may differ).
"""

import os
import shutil

import numpy as np
import pytest

from alakazam.errors import AlakazamError
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

TWO_PI_NS = 2 * np.pi * 1e-9
CODES = {"XX": 9, "XY": 10, "YX": 11, "YY": 12, "RR": 5, "RL": 6, "LR": 7, "LL": 8}
NAMES = {v: k for k, v in CODES.items()}
ORDER = {"XX": 0, "XY": 1, "YX": 2, "YY": 3, "RR": 0, "RL": 1, "LR": 2, "LL": 3}
CHAIN = dict(jones=["K", "G", "G", "KC", "CP", "D"], solint=["scan", "inf", "scan", "inf", "inf", "inf"],
             freqint=["full", "1MHz", "full", "full", "1MHz", "full"], parang=True, minblperant=3)
KGG = dict(jones=["K", "G", "G"], solint=["scan", "inf", "scan"], freqint=["full", "1MHz", "full"])
NOISE = 0.05


def _solve(ms, cal, **kw):
    from alakazam.caltasks import akcal

    akcal(vis=ms, caltable=cal, field="3C286", refant="C00", **kw)
    return {k: sorted(hdf5.read_term(cal, k), key=lambda s: (s.scan_id, s.spw, s.field_name))
            for k in hdf5.list_keys(cal)}


def _assert_same(a, b, atol=1e-9):
    assert list(a) == list(b)
    for k in a:
        assert len(a[k]) == len(b[k]), k
        for x, y in zip(a[k], b[k]):
            assert (x.scan_id, x.spw) == (y.scan_id, y.spw)
            np.testing.assert_array_equal(x.flags, y.flags, err_msg=k)
            np.testing.assert_allclose(y.jones, x.jones, rtol=0, atol=atol, err_msg=k)
            if getattr(x, "delay", None) is not None:
                np.testing.assert_allclose(y.delay, x.delay, rtol=0, atol=atol, err_msg=k)


def _copy(ms, tmp_path, name):
    out = str(tmp_path / name)
    shutil.copytree(ms, out)
    return out


def _per_ddid(ms, fn):
    """fn(reference table of one DATA_DESC_ID's rows, ddid), writable (a multi-SPW MS has columns of
    different shapes per DDID, which one getcol cannot read)."""
    from casacore.tables import table

    with table(ms, readonly=False, ack=False) as t:
        for d in np.unique(t.getcol("DATA_DESC_ID")):
            q = t.query(f"DATA_DESC_ID=={d}")
            fn(q, int(d))
            q.close()


def swap_baselines(ms, pick):
    """Rewrite the cross-correlation rows ``pick(row index within its DDID)`` as the conjugate baseline
    (ANTENNA1 > ANTENNA2): V_ba = V_ab^H (pp, qq conjugated; pq <-> qp swapped and conjugated), UVW
    negated, FLAG / WEIGHT / SIGMA following their correlations."""
    def fn(t, d):
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        rows = np.nonzero(pick(np.arange(t.nrows())) & (a1 != a2))[0]
        perm = [0, 2, 1, 3]
        for c in ("DATA", "MODEL_DATA"):
            v = t.getcol(c)
            v[rows] = np.conj(v[rows][:, :, perm])
            t.putcol(c, v)
        v = t.getcol("FLAG")
        v[rows] = v[rows][:, :, perm]
        t.putcol("FLAG", v)
        for c in ("WEIGHT", "SIGMA"):
            v = t.getcol(c)
            v[rows] = v[rows][:, perm]
            t.putcol(c, v)
        u = t.getcol("UVW")
        u[rows] *= -1
        t.putcol("UVW", u)
        b1, b2 = a1.copy(), a2.copy()
        b1[rows], b2[rows] = a2[rows], a1[rows]
        t.putcol("ANTENNA1", b1)
        t.putcol("ANTENNA2", b2)
    _per_ddid(ms, fn)


def recorrelate(ms, perms):
    """Rewrite DDID d's correlation axis as the stored correlations ``perms[d]`` (indices, any order, any
    subset), each DDID with a POLARIZATION row of its own."""
    from casacore.tables import makearrcoldesc, maketabdesc, table

    with table(ms, readonly=False, ack=False) as t:
        three = [c for c in ("DATA", "MODEL_DATA", "CORRECTED_DATA", "FLAG") if c in t.colnames()]
        cols = three + ["WEIGHT", "SIGMA"]
        vals = {}
        for d, p in perms.items():
            q = t.query(f"DATA_DESC_ID=={d}")
            vals[d] = (q.rownumbers(), {c: np.ascontiguousarray(q.getcol(c)[..., p]) for c in cols})
            q.close()
        for c in cols:
            vt = t.getcoldesc(c)["valueType"]
            t.removecols(c)
            sample = next(iter(vals.values()))[1][c].flat[0]
            t.addcols(maketabdesc(makearrcoldesc(c, sample, ndim=2 if c in three else 1, valuetype=vt)), {})
        for d, (rows, v) in vals.items():
            q = t.selectrows(rows)
            for c in cols:
                q.putcol(c, v[c])
            q.close()
    with table(ms + "::POLARIZATION", ack=False) as t:
        old = [list(t.getcell("CORR_TYPE", i)) for i in range(t.nrows())]
    with table(ms + "::DATA_DESCRIPTION", readonly=False, ack=False) as dd, \
            table(ms + "::POLARIZATION", readonly=False, ack=False) as pt:
        for d, p in perms.items():
            ct = [old[dd.getcell("POLARIZATION_ID", d)][i] for i in p]
            names = [NAMES[int(c)] for c in ct]
            prod = np.array([["XYRL".index(n[k]) % 2 for n in names] for k in (0, 1)])
            pt.addrows(1)
            r = pt.nrows() - 1
            pt.putcell("NUM_CORR", r, len(p))
            pt.putcell("CORR_TYPE", r, np.array(ct, np.int32))
            pt.putcell("CORR_PRODUCT", r, prod.astype(np.int32))
            pt.putcell("FLAG_ROW", r, False)
            dd.putcell("POLARIZATION_ID", d, r)


def _corrected(ms):
    """CORRECTED_DATA per DDID in the pp, pq, qp, qq order of the a < b baseline, rows sorted by
    (TIME, a, b) -- comparable between an MS and its rewritten copy."""
    from casacore.tables import table

    from alakazam.core import ms_io

    meta = ms_io.read_meta_uncached(ms)
    out = {}
    with table(ms, ack=False) as t:
        for d, sp in meta.spws.items():
            q = t.query(f"DATA_DESC_ID=={d}")
            a1, a2, tm = q.getcol("ANTENNA1"), q.getcol("ANTENNA2"), q.getcol("TIME")
            c = q.getcol("CORRECTED_DATA")
            q.close()
            c4 = np.full(c.shape[:2] + (4,), np.nan, c.dtype)
            for i, n in enumerate(sp.corr_types):
                c4[..., ORDER[n]] = c[..., i]
            s = a1 > a2
            c4[s] = np.conj(c4[s][:, :, [0, 2, 1, 3]])
            key = np.lexsort((np.maximum(a1, a2), np.minimum(a1, a2), tm))
            out[sp.spw_id] = c4[key]
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """5 active antennas (+1 without data at ANTENNA id 1), SPWs of 8 and 4 channels, 1 h of 120-s
    integrations in 10-min scans, linear feeds, small leakages (d_pq[C00] = 0): the full chain on
    3C286, applied; and K, G, G without parang.  K is checked against the truth here."""
    d = tmp_path_factory.mktemp("ms_variety")
    ms = str(d / "base.ms")
    truth = simulate_ms(ms, feed="linear", n_ant=5, n_ant_extra=1, n_chan=(8, 4), int_s=120.0,
                        scan_len_s=600.0, duration_h=1.0, noise=NOISE, seed=7, leakage_scale=0.003,
                        leakage_ref_zero=True, dead_ant=False, flag_rows=0.0, bandpass=False)
    from alakazam.caltasks import akapply

    chain = _solve(ms, str(d / "chain.h5"), **CHAIN)
    akapply(vis=ms, gaintable=[str(d / "chain.h5")], jones=list(chain), parang=True)
    kgg = _solve(ms, str(d / "kgg.h5"), **KGG)
    # anchor: K per integration against the truth (Cramer-Rao bound as tests/test_flow.py, 4 baselines of
    # one integration; the flat bandpass leaves the delay to K).  (Per scan, K is off the truth by more
    # than its noise here -- 0.06 ns at noise 0.005 Jy, 8 channels -- as the gains drift within the scan:
    # reported, not this module's subject.)
    S = truth.flux_true["3C286"][0]
    kint = _solve(ms, str(d / "kint.h5"), jones=["K"], solint=["int"])
    for s in kint["K0"]:
        f = truth.spw_freqs[s.spw]
        crb = 1e9 / (2 * np.pi * np.sqrt(S ** 2 / NOISE ** 2 * ((f - f.mean()) ** 2).sum() * 4 / 2))
        err = np.abs(s.delay[:, 0, 0] - (truth.tau - truth.tau[0]))
        assert err.max() < 5 * crb * np.sqrt(2), (s.spw, err.max(), crb)
    return ms, truth, chain, kgg, _corrected(ms)


# ------------------------------------------------------------------ 1. rows with ANTENNA1 > ANTENNA2
def _chain_equals_base(base, ms, tmp_path):
    """The full chain solved on ``ms`` and its corrected data equal the base MS's."""
    from alakazam.caltasks import akapply

    cal = str(tmp_path / "chain.h5")
    sol = _solve(ms, cal, **CHAIN)
    _assert_same(base[2], sol)
    akapply(vis=ms, gaintable=[cal], jones=list(sol), parang=True)
    got = _corrected(ms)
    for spw, want in base[4].items():
        np.testing.assert_allclose(got[spw], want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_reversed_baseline_rows_solve_and_apply_as_normal_order(base, tmp_path):
    """A third of the rows written as the conjugate baseline (ANTENNA1 > ANTENNA2, as some converters
    write them): the full chain K, G, G, KC, CP, D and the corrected data equal the normal-order MS's."""
    ms = _copy(base[0], tmp_path, "swapped.ms")
    swap_baselines(ms, lambda r: r % 3 == 1)
    _chain_equals_base(base, ms, tmp_path)


# ------------------------------------------------------------------ 2. correlations: subsets and orders
@pytest.mark.parametrize("perms", [{0: [0, 3], 1: [0, 3]}, {0: [3, 0], 1: [3, 0]},
                                   {0: [0, 1, 2, 3], 1: [3, 0]}], ids=["XX,YY", "YY,XX", "mixed-4-and-2"])
def test_parallel_hands_only_solve_as_four_correlations(base, tmp_path, perms):
    """Only XX, YY (or YY, XX; or one SPW with four correlations, the other with two): K, G, G use the
    parallel hands only, so they equal the solutions of the 4-correlation MS."""
    ms = _copy(base[0], tmp_path, "two.ms")
    recorrelate(ms, perms)
    _assert_same(base[3], _solve(ms, str(tmp_path / "kgg.h5"), **KGG))


def test_four_correlations_in_another_order(base, tmp_path):
    """XX YY XY YX in one SPW, YY YX XY XX in the other: correlations are taken by name.  They were
    taken by position (4 correlations passed through as pp, pq, qp, qq): K off by 2800 ns, CORRECTED_DATA
    wrong.  Now the full chain and the corrected data equal the canonical MS's."""
    ms = _copy(base[0], tmp_path, "reord.ms")
    recorrelate(ms, {0: [0, 3, 1, 2], 1: [3, 2, 1, 0]})
    _chain_equals_base(base, ms, tmp_path)


@pytest.mark.parametrize("jt", ["D", "KC", "CP"])
def test_cross_hand_step_on_two_correlations_is_refused(base, tmp_path, jt):
    """D, KC or CP on an SPW with only XX, YY: an error naming the step and the SPW's correlations before
    anything is written (it was 'every solution is flagged' for D, 'needs a polarised model' for KC/CP).
    On a mixed MS, selecting the 4-correlation SPW solves."""
    ms = _copy(base[0], tmp_path, "mixed.ms")
    recorrelate(ms, {0: [0, 1, 2, 3], 1: [0, 3]})        # DDID 0 = SPW 1 keeps 4; SPW 0 gets XX, YY
    cal = str(tmp_path / "c.h5")
    with pytest.raises(AlakazamError, match=rf"{jt}0 \({jt}, step 1\).*SPW 0 .*only the correlations XX, YY"):
        _solve(ms, cal, jones=["G", jt], solint=["inf", "inf"])
    assert not os.path.exists(cal)
    sol = _solve(ms, cal, spw="1", jones=["G", jt], solint=["inf", "inf"], parang=True)   # (3C286: 58f)
    assert list(sol) == ["G0", f"{jt}0"] and all(s.spw == 1 for s in sol[f"{jt}0"])


# ------------------------------------------------------------------ 4. SPW layout: a descending SPW
def test_descending_spw_equals_the_reversed_ascending_one(base, tmp_path):
    """SPW 1 rewritten with its channels in descending frequency (CHAN_FREQ reversed, CHAN_WIDTH < 0,
    DATA / MODEL_DATA / FLAG reversed along channels), beside the ascending SPW 0: every solution is the
    ascending MS's, with the per-channel ones (bandpass G0, CP0) in the reversed channel order, and the
    corrected data are the same samples."""
    from casacore.tables import table

    from alakazam.caltasks import akapply

    ms = _copy(base[0], tmp_path, "desc.ms")

    def rev(t, d):
        if d == 0:                                      # DATA_DESC_ID 0 is SPW 1
            for c in ("DATA", "MODEL_DATA", "FLAG"):
                t.putcol(c, np.ascontiguousarray(t.getcol(c)[:, ::-1]))
    _per_ddid(ms, rev)
    with table(ms + "::SPECTRAL_WINDOW", readonly=False, ack=False) as t:
        for c in ("CHAN_FREQ", "CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION"):
            v = t.getcell(c, 1)[::-1]
            t.putcell(c, 1, -np.abs(v) if c == "CHAN_WIDTH" else v)
    cal = str(tmp_path / "chain.h5")
    sol = _solve(ms, cal, **CHAIN)
    assert list(sol) == list(base[2])
    for k in sol:
        for x, y in zip(base[2][k], sol[k]):
            yj = y.jones[:, ::-1] if y.spw == 1 else y.jones
            np.testing.assert_allclose(yj, x.jones, rtol=0, atol=1e-9, err_msg=k)
    akapply(vis=ms, gaintable=[cal], jones=list(sol), parang=True)
    got = _corrected(ms)
    np.testing.assert_allclose(got[1][:, ::-1], base[4][1], rtol=0, atol=1e-5 * np.abs(base[4][1]).max())
    np.testing.assert_allclose(got[0], base[4][0], rtol=0, atol=1e-5 * np.abs(base[4][0]).max())


# ------------------------------------------------------------------ 3, 4, 5, 6: layouts with the same data
def _rewrite(ms, out, where=None, sort=None):
    """A deep copy of the MS's rows ``where``, in the order ``sort`` (TaQL), subtables included."""
    from casacore.tables import table

    with table(ms, ack=False) as t:
        q = t.query(where) if where else t
        if sort:
            q = q.sort(sort)
        q.copy(out, deep=True).close()
    return out


def _add_spectrum(ms, name, fn):
    from casacore.tables import makearrcoldesc, maketabdesc, table

    with table(ms, readonly=False, ack=False) as t:
        t.addcols(maketabdesc(makearrcoldesc(name, 0.0, ndim=2, valuetype="float")), {})
    _per_ddid(ms, lambda q, d: q.putcol(name, fn(q, q.getcol("DATA").shape).astype(np.float32)))


def _variant(ms, tmp_path, kind):
    from casacore.tables import table

    out = str(tmp_path / f"{kind}.ms")
    if kind == "interleaved-ddid":             # SPWs alternate within each timestamp (CASA concat, VLA)
        return _rewrite(ms, out, sort="TIME,ANTENNA1,ANTENNA2,DATA_DESC_ID")
    if kind == "time-descending":
        return _rewrite(ms, out, sort="TIME DESC,ANTENNA2 DESC")
    if kind == "shuffled":
        return _rewrite(ms, out, sort="rand()")
    if kind == "duplicated-rows":              # every row twice (a concat artefact): twice the weight
        _rewrite(ms, out)
        with table(out, readonly=False, ack=False) as t:
            t.copyrows(t, startrowin=0, startrowout=-1, nrow=t.nrows())
        return out
    if kind == "autocorrelations":             # VLA, MeerKAT, uGMRT write them: |g|^2 T_sys-like, ignored
        _rewrite(ms, out)
        with table(out, readonly=False, ack=False) as t:
            a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
            last = a2.max()
            on_last = a2 == last
            src = np.concatenate([np.nonzero(on_last)[0], np.nonzero((a1 == a1[on_last].max()) & on_last)[0]])
            n0 = t.nrows()
            for r in src:
                t.copyrows(t, startrowin=int(r), startrowout=-1, nrow=1)
            new = np.arange(n0, t.nrows())
            b1, b2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
            k = int((a2 == last).sum())
            b2[new[:k]] = b1[new[:k]]              # (a, last) -> (a, a); one more copy -> (last, last)
            b1[new[k:]] = last
            b2[new[k:]] = last
            t.putcol("ANTENNA1", b1)
            t.putcol("ANTENNA2", b2)
            rng = np.random.default_rng(0)
            for r in new:
                d = t.getcell("DATA", int(r))
                d[:] = 3 + 2j
                d[:, 0] = d[:, 3] = 100 + rng.normal(0, 1, d.shape[0])
                t.putcell("DATA", int(r), d)
        return out
    out = _copy(ms, tmp_path, f"{kind}.ms")
    with table(out, readonly=False, ack=False) as t:
        if kind == "interval-zero":
            t.putcol("INTERVAL", np.zeros(t.nrows()))
            t.putcol("EXPOSURE", np.zeros(t.nrows()))
        elif kind == "time-centroid-offset":
            t.putcol("TIME_CENTROID", t.getcol("TIME") + 17.0)
        elif kind == "no-flag-category":
            t.removecols(["FLAG_CATEGORY"])
    if kind == "antenna-and-spw-flag-row":     # CASA 6.7 gaincal ignores both (measured: gains equal to 0.0)
        for sub, i in (("ANTENNA", 3), ("SPECTRAL_WINDOW", 1)):
            with table(out + "::" + sub, readonly=False, ack=False) as t:
                f = t.getcol("FLAG_ROW")
                f[i] = True
                t.putcol("FLAG_ROW", f)
    elif kind == "weight-spectrum-equal-to-weight":
        _add_spectrum(out, "WEIGHT_SPECTRUM", lambda q, s: np.broadcast_to(q.getcol("WEIGHT")[:, None, :], s))
    elif kind == "sigma-spectrum-only":
        # random: a SIGMA_SPECTRUM without a WEIGHT_SPECTRUM is not read (CASA 6.7 gaincal: measured)
        _add_spectrum(out, "SIGMA_SPECTRUM", lambda q, s: np.random.default_rng(5).uniform(0.01, 1.0, s))
    elif kind == "weight-spectrum-cells-undefined":   # column added, cells written for one SPW only
        from casacore.tables import makearrcoldesc, maketabdesc

        with table(out, readonly=False, ack=False) as t:
            t.addcols(maketabdesc(makearrcoldesc("WEIGHT_SPECTRUM", 0.0, ndim=2, valuetype="float")), {})
            q = t.query("DATA_DESC_ID==1")
            q.putcol("WEIGHT_SPECTRUM", np.broadcast_to(q.getcol("WEIGHT")[:, None, :],
                                                        q.getcol("DATA").shape).astype(np.float32))
            q.close()
    return out


@pytest.mark.parametrize("kind", ["interleaved-ddid", "time-descending", "shuffled", "duplicated-rows",
                                  "autocorrelations", "interval-zero", "time-centroid-offset",
                                  "no-flag-category", "antenna-and-spw-flag-row",
                                  "weight-spectrum-equal-to-weight", "sigma-spectrum-only",
                                  "weight-spectrum-cells-undefined"])
def test_layouts_holding_the_same_data_solve_the_same(base, tmp_path, kind):
    """Rows interleaved by DATA_DESC_ID, out of time order or shuffled, every row duplicated, autocorrelation
    rows added (100 Jy in the parallel hands: the solve uses cross-correlations only), INTERVAL and
    EXPOSURE 0, TIME_CENTROID != TIME, no FLAG_CATEGORY, ANTENNA / SPECTRAL_WINDOW FLAG_ROW set on an
    antenna / SPW with data (ignored, as CASA 6.7 gaincal does), WEIGHT_SPECTRUM equal to WEIGHT or with
    undefined cells, or only a (random) SIGMA_SPECTRUM (DATA is weighted 1/SIGMA^2: WEIGHT_SPECTRUM is not
    read for DATA, and SIGMA_SPECTRUM only beside a WEIGHT_SPECTRUM, as CASA 6.7 gaincal: measured,
    core/weights.py): K, G, G equal the plain MS's."""
    ms = _variant(base[0], tmp_path, kind)
    _assert_same(base[3], _solve(ms, str(tmp_path / "kgg.h5"), **KGG))


def test_flag_row_flags_the_whole_row(base, tmp_path):
    """FLAG_ROW True on rows whose FLAG is False: the same solutions as FLAG True on those rows (and not the
    unflagged MS's)."""
    outs = []
    for col in ("FLAG_ROW", "FLAG"):
        ms = _copy(base[0], tmp_path, f"{col}.ms")

        def fn(t, d, col=col):
            v = t.getcol(col)
            v[np.arange(t.nrows()) % 7 == 3] = True
            t.putcol(col, v)
        _per_ddid(ms, fn)
        outs.append(_solve(ms, str(tmp_path / f"{col}.h5"), **KGG))
    _assert_same(outs[1], outs[0])
    assert np.abs(outs[0]["G0"][0].jones - base[3]["G0"][0].jones).max() > 1e-6


# ------------------------------------------------------------------ 3. an antenna in some scans only
def test_antenna_absent_from_a_scan(tmp_path):
    """Antenna C03 (ANTENNA id 3; id 1 has no data, so ids are not contiguous) has no rows at all in scan 1
    (added mid-observation / another subarray): K per scan is flagged for it there only, the others'
    delays and every delay of scan 4 are within 5 Cramer-Rao sigma of the truth, and the applied
    3C286 data equal its true Stokes I within the noise.  (No time-variable gains here: per-scan K
    takes up a bias from gains drifting within the scan, see the module fixture.)"""
    from casacore.tables import table

    from alakazam.caltasks import akapply

    full = str(tmp_path / "full.ms")
    truth = simulate_ms(full, feed="circular", n_ant=5, n_ant_extra=1, n_chan=(8,), int_s=120.0,
                        scan_len_s=600.0, duration_h=1.0, noise=NOISE, seed=11, leakage=False, dead_ant=False,
                        flag_rows=0.0, bandpass=False, time_gains=False)
    ms = _rewrite(full, str(tmp_path / "sub.ms"), where="!((ANTENNA1==3 || ANTENNA2==3) && SCAN_NUMBER==1)")
    cal = str(tmp_path / "k.h5")
    sol = _solve(ms, cal, jones=["K", "G"], solint=["scan", "scan"], minblperant=3)
    c03 = truth.ant_names.index("C03")
    S = truth.flux_true["3C286"][0]
    f = truth.spw_freqs[0]
    for s in sol["K0"]:
        missing = s.scan_id == 1
        assert s.flags[c03].all() == missing and not np.delete(s.flags, c03, axis=0).any()
        n_bl = 3 if missing else 4
        crb = 1e9 / (2 * np.pi * np.sqrt(S ** 2 / NOISE ** 2 * ((f - f.mean()) ** 2).sum() * 5 * n_bl / 2))
        err = np.abs(s.delay[:, 0, 0] - (truth.tau - truth.tau[0]))
        ok = ~s.flags[:, 0, 0]
        assert err[ok].max() < 5 * crb * np.sqrt(2), (s.scan_id, err[ok].max(), crb)
    akapply(vis=ms, gaintable=[cal], jones=["K0", "G0"], field="3C286")
    with table(ms, ack=False) as t:
        q = t.query("FIELD_ID==0 && ANTENNA1!=ANTENNA2")
        c, scan = q.getcol("CORRECTED_DATA"), q.getcol("SCAN_NUMBER")
        c03_rows = (q.getcol("ANTENNA1") == 3) | (q.getcol("ANTENNA2") == 3)
    assert c03_rows.sum() == 5 * 4 and not (c03_rows & (scan == 1)).any()     # scan 4: 5 integrations
    stokes_i = 0.5 * (c[..., 0] + c[..., 3]).mean(axis=1)     # per row, over channels (RR, LL: I +- V, V = 0)
    # per-row noise sigma / sqrt(2 n_chan) plus the two gains' errors (sigma / (S sqrt(n_bl 5 n_chan)) each,
    # relative; times S in Jy)
    bound = 5 * NOISE * (1 / np.sqrt(2 * len(f)) + 2 / np.sqrt(3 * 5 * len(f)))
    assert np.abs(stokes_i - S).max() < bound, (np.abs(stokes_i - S).max(), bound)


# ------------------------------------------------------------------ 5. WEIGHT_SPECTRUM all zero
def test_all_zero_weight_spectrum_is_named(base, tmp_path):
    """A WEIGHT_SPECTRUM of zeros beside a valid WEIGHT (some MeerKAT products carry one).  Solving DATA,
    it is not read (DATA is weighted 1/SIGMA^2, core/weights.py): K, G, G equal the plain MS's, as CASA
    6.7 gaincal gives the same gains (to 0.0) with WEIGHT_SPECTRUM absent, all zero, random or zero on
    half the rows (measured on this MS; tests/test_solve_weights.py has the rest).  Solving
    CORRECTED_DATA, WEIGHT_SPECTRUM is read instead of WEIGHT, so every sample has weight 0 and the solve
    stops before writing; the error names WEIGHT_SPECTRUM (it said 'check FLAG, WEIGHT', which the user
    finds valid).  With SIGMA 0 on every row a DATA solve stops too, naming SIGMA."""
    from casacore.tables import table

    ms = _copy(base[0], tmp_path, "wszero.ms")
    _add_spectrum(ms, "WEIGHT_SPECTRUM", lambda q, s: np.zeros(s))
    _assert_same(base[3], _solve(ms, str(tmp_path / "kgg.h5"), **KGG))
    cal = str(tmp_path / "k.h5")
    with pytest.raises(AlakazamError, match=r"no usable data.*FLAG, WEIGHT_SPECTRUM \(read instead of W"):
        _solve(ms, cal, jones=["K"], solint=["scan"], datacolumn="CORRECTED_DATA")
    assert not os.path.exists(cal)
    with table(ms, readonly=False, ack=False) as t:
        t.putcol("SIGMA", np.zeros_like(t.getcol("SIGMA")))
    with pytest.raises(AlakazamError, match=r"no usable data.*FLAG, SIGMA \(weights 1/SIGMA\^2 for DATA"):
        _solve(ms, cal, jones=["K"], solint=["scan"])
    assert not os.path.exists(cal)


# ------------------------------------------------------------------ 6. INTERVAL 0 and solint in integrations
def test_interval_zero_integration_solints(base, tmp_path):
    """INTERVAL (and EXPOSURE) 0 on every row: solint 'int' and '2ints' were refused ('needs the MS
    integration time, which is unknown'); the integration time is now the spacing of the TIMEs, so they
    give the plain MS's solutions."""
    ms = _variant(base[0], tmp_path, "interval-zero")
    from alakazam.core import ms_io

    assert ms_io.read_meta_uncached(ms).interval == pytest.approx(120.0)
    kw = dict(jones=["K", "G"], solint=["int", "2ints"])
    _assert_same(_solve(base[0], str(tmp_path / "a.h5"), **kw), _solve(ms, str(tmp_path / "b.h5"), **kw))


# ------------------------------------------------------------------ 6. scan numbers restarting per obs
def _restart_scan(ms, new_obs):
    """3C286's scan 4 relabelled scan 1 (1800 s after the first scan 1), in a new OBSERVATION row or not."""
    from casacore.tables import table

    if new_obs:
        with table(ms + "::OBSERVATION", readonly=False, ack=False) as t:
            t.copyrows(t, startrowin=0, startrowout=-1, nrow=1)
    with table(ms, readonly=False, ack=False) as t:
        s, o = t.getcol("SCAN_NUMBER"), t.getcol("OBSERVATION_ID")
        if new_obs:
            o[s == 4] = 1
        s[s == 4] = 1
        t.putcol("SCAN_NUMBER", s)
        t.putcol("OBSERVATION_ID", o)


def test_scan_number_restarting_per_observation(base, tmp_path):
    """A concatenated MS whose scan numbers restart: 3C286's two scans are both scan 1, of OBSERVATION_IDs
    0 and 1.  CASA 6.7 gaincal (solint 'inf' = per scan) gives two solutions there, one when both rows are
    of observation 0.  A per-scan solint silently gave one solution over both observations; now it is
    refused before anything is written, naming the scan and the observations; with observation='0'
    selected, or in one observation (as CASA: one scan), it solves."""
    ms = _copy(base[0], tmp_path, "restart.ms")
    _restart_scan(ms, new_obs=True)
    cal = str(tmp_path / "k.h5")
    with pytest.raises(AlakazamError, match=r"scan 1 of field '3C286' has rows of OBSERVATION_IDs \[0, 1\]"):
        _solve(ms, cal, jones=["K"], solint=["scan"])
    assert not os.path.exists(cal)
    sol = _solve(ms, cal, jones=["K"], solint=["scan"], observation="0")
    k_base = [s for s in base[3]["K0"] if s.scan_id == 1]
    _assert_same({"K0": k_base}, sol)
    one = _copy(base[0], tmp_path, "one_obs.ms")
    _restart_scan(one, new_obs=False)
    sol = _solve(one, str(tmp_path / "one.h5"), jones=["K"], solint=["scan"])
    assert sorted((s.scan_id, s.spw) for s in sol["K0"]) == [(1, 0), (1, 1)]


def test_leakage_on_two_correlations_is_refused_in_apply_and_preapply(base, tmp_path):
    """A D table applied to (or pre-applied in a solve on) an XX, YY MS: its inverse needs the cross hands.
    akapply corrected the parallel hands as if XY, YX were 0 (first order in d x the polarised flux);
    CASA 6.7 applycal refuses it ('JonesGenLin matrix apply (J::aR) incompatible with VisVector',
    measured).  Now both refuse before anything is written, naming the term and the SPW; K, G, KC and CP
    (diagonal) apply."""
    from casacore.tables import table

    from alakazam.caltasks import akapply

    ms = _copy(base[0], tmp_path, "xxyy.ms")
    recorrelate(ms, {0: [0, 3], 1: [0, 3]})
    chain_h5 = str(os.path.join(os.path.dirname(base[0]), "chain.h5"))

    def corrected():
        with table(ms, ack=False) as t:
            return [t.query(f"DATA_DESC_ID=={d}").getcol("CORRECTED_DATA") for d in (0, 1)]
    before = corrected()            # (the copy carries the fixture's CORRECTED_DATA)
    with pytest.raises(AlakazamError, match=r"D0 \(D\) mixes the cross hands.*only the correlations XX, YY"):
        akapply(vis=ms, gaintable=[chain_h5], jones=["K0", "G0", "G1", "KC0", "CP0", "D0"])
    for x, y in zip(before, corrected()):
        np.testing.assert_array_equal(x, y)
    cal = str(tmp_path / "g.h5")
    with pytest.raises(AlakazamError, match=r"external_preapply: D0 \(D\)"):
        _solve(ms, cal, jones=["G"], solint=["inf"], gaintable=[chain_h5], gainjones=["D0"])
    assert not os.path.exists(cal)
    akapply(vis=ms, gaintable=[chain_h5], jones=["K0", "G0", "G1", "KC0", "CP0"])


# ------------------------------------------------------------------ 2. one correlation
def _one_corr(base, tmp_path, name, code=None):
    from casacore.tables import table

    ms = _copy(base[0], tmp_path, f"{name}.ms")
    recorrelate(ms, {0: [0], 1: [0]})
    if code is not None:
        with table(ms + "::POLARIZATION", readonly=False, ack=False) as t:
            for r in range(t.nrows()):
                if t.getcell("NUM_CORR", r) == 1:
                    t.putcell("CORR_TYPE", r, np.array([code], np.int32))
    return ms


def test_stokes_correlation_is_refused_naming_it(base, tmp_path):
    """A POLARIZATION row of Stokes I (CORR_TYPE 1; some converted continuum MSs): akcal and akapply raised
    KeyError '1' with a traceback; now an error naming the SPW and the correlation, before anything runs."""
    from alakazam.caltasks import akapply

    ms = _one_corr(base, tmp_path, "stokes_i", code=1)
    cal = str(tmp_path / "g.h5")
    with pytest.raises(AlakazamError, match=r"SPW 1 \(DATA_DESC_ID 0\).*correlation\(s\) I \(.*not a feed"):
        _solve(ms, cal, jones=["G"], solint=["inf"])
    assert not os.path.exists(cal)
    with pytest.raises(AlakazamError, match=r"correlation\(s\) I \("):
        akapply(vis=ms, gaintable=[os.path.join(os.path.dirname(base[0]), "kgg.h5")], jones=["K0", "G0"])


def test_single_polarisation_ms_solves_its_hand(base, tmp_path):
    """Only XX (a single-polarisation MS; the same as a dead Y feed): K and G of the X hand equal those of
    the 4-correlation MS.  Every solution came out flagged by minsnr (the Y hand's SNR is 0) while flags
    were per antenna; they are per hand now (core/handflags.py, tests/test_pol_flags.py)."""
    ms = _one_corr(base, tmp_path, "xx_only")
    sol = _solve(ms, str(tmp_path / "k.h5"), jones=["K", "G"], solint=["scan", "scan"])
    for x, y in zip(base[3]["K0"], sol["K0"]):
        assert not y.flags.any()
        np.testing.assert_allclose(y.delay[..., 0], x.delay[..., 0], rtol=0, atol=1e-9)


# ------------------------------------------------------------------ 5. which weights describe DATA
def test_resolve_after_calwt_apply_is_unchanged(base, tmp_path):
    """akcal on DATA, akapply(calwt=True), akcal on DATA again: the second solve equals the first (DATA
    did not change).  Before core/weights.py the re-solve read the calwt-scaled WEIGHT: K0 moved by
    0.36, G0 by 0.23, G1 by 1.7 (Jones elements); now DATA is weighted 1/SIGMA^2 as CASA 6.7 gaincal
    does (measured, tests/test_solve_weights.py), and calwt never writes SIGMA."""
    from alakazam.caltasks import akapply

    ms = _copy(base[0], tmp_path, "calwt.ms")
    first = _solve(ms, str(tmp_path / "a.h5"), **KGG)
    akapply(vis=ms, gaintable=[str(tmp_path / "a.h5")], jones=list(first), calwt=True)
    _assert_same(first, _solve(ms, str(tmp_path / "b.h5"), **KGG), atol=1e-6)


# ------------------------------------------------------------------ 5. no MODEL_DATA, CASA virtual model
def test_virtual_model_named_when_model_data_is_missing(base, tmp_path):
    """No MODEL_DATA column but CASA's virtual model (setjy usescratch=False writes the main-table keywords
    definedmodel_field_0 -> model_0, measured with CASA 6.7): the error says so and how to fill MODEL_DATA
    (it said 'fill it with a model first (e.g. CASA setjy ...)', which the user had just run)."""
    from casacore.tables import table

    ms = _copy(base[0], tmp_path, "virtual.ms")
    with table(ms, readonly=False, ack=False) as t:
        t.removecols(["MODEL_DATA"])
        t.putkeyword("definedmodel_field_0", "model_0")
        t.putkeyword("model_0", {"numcl": 0})
    cal = str(tmp_path / "g.h5")
    with pytest.raises(AlakazamError, match=r"MODEL_DATA.*CASA virtual model.*usescratch=True.*smodel"):
        _solve(ms, cal, jones=["G"], solint=["inf"])
    assert not os.path.exists(cal)
    # a point-source model instead of MODEL_DATA solves (3C286's I; parallel hands)
    assert list(_solve(ms, cal, jones=["G"], solint=["inf"], smodel=[14.9, 0.0, 0.0, 0.0])) == ["G0"]


@pytest.fixture(scope="module")
def kgg_corrected(base, tmp_path_factory):
    """The plain MS corrected with the fixture's K, G, G (by spw: (row, chan, 4) as :func:`_corrected`)."""
    from alakazam.caltasks import akapply

    ms = _copy(base[0], tmp_path_factory.mktemp("kgg_corrected"), "plain.ms")
    akapply(vis=ms, gaintable=[os.path.join(os.path.dirname(base[0]), "kgg.h5")], jones=["K0", "G0", "G1"])
    return _corrected(ms)


@pytest.mark.parametrize("kind", ["interleaved-ddid", "time-descending", "shuffled", "interval-zero",
                                  "time-centroid-offset", "no-flag-category", "antenna-and-spw-flag-row",
                                  "weight-spectrum-cells-undefined"])
def test_layouts_holding_the_same_data_apply_the_same(base, kgg_corrected, tmp_path, kind):
    """akapply of the same K, G, G on the rewritten layouts writes the same corrected samples (rows matched
    by time and baseline)."""
    from alakazam.caltasks import akapply

    ms = _variant(base[0], tmp_path, kind)
    akapply(vis=ms, gaintable=[os.path.join(os.path.dirname(base[0]), "kgg.h5")], jones=["K0", "G0", "G1"])
    got = _corrected(ms)
    for spw, want in kgg_corrected.items():
        np.testing.assert_array_equal(got[spw], want)
