"""akexport's SNR, PARAMERR, WEIGHT and INTERVAL columns, and the FIELD_ID of a combine='field' solution
(review 55a: SNR 1, PARAMERR 0, WEIGHT 1 in every table; a combine='field' table failed to export).

CASA's layout, measured with CASA 6.7's gaincal (the CASA checks below run it when it is available,
tests/casa_python.py): SNR and PARAMERR have the shape of FLAG / CPARAM, SNR = |CPARAM| / PARAMERR
for G, B and T Jones, INTERVAL is 0 whatever the solint, the WEIGHT cells are left undefined, and a
solution combining fields is labelled with the lowest FIELD_ID of its fields and that field's first
scan.
"""

import os
import sys

import numpy as np
import pytest
from alakazam.caltasks import akcal, akexport
from casacore.tables import table

from alakazam.io import hdf5

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import run_casa  # noqa: E402  (tests/casa_python.py)

KEYS = ("K0", "G0", "G1", "KC0", "CP0", "D0")


@pytest.fixture(scope="module")
def columns(small_chain_table, tmp_path_factory):
    ms, cal, _ = small_chain_table
    d = tmp_path_factory.mktemp("export_columns")
    out = {}
    for k in KEYS:
        out[k] = str(d / f"{k}.tb")
        akexport(caltable=cal, jones=k, casatable=out[k], crossphase="none" if k == "D0" else "")
    return ms, cal, out


def _rows(path):
    with table(path, ack=False) as t:
        pcol = "CPARAM" if "CPARAM" in t.colnames() else "FPARAM"
        return dict(par=[t.getcell(pcol, r) for r in range(t.nrows())],
                    snr=[t.getcell("SNR", r) for r in range(t.nrows())],
                    err=[t.getcell("PARAMERR", r) for r in range(t.nrows())],
                    flag=[t.getcell("FLAG", r) for r in range(t.nrows())],
                    weight=[t.iscelldefined("WEIGHT", r) for r in range(t.nrows())],
                    interval=t.getcol("INTERVAL"), time=t.getcol("TIME"), ant=t.getcol("ANTENNA1"),
                    spw=t.getcol("SPECTRAL_WINDOW_ID"), names=list(table(os.path.join(path, "ANTENNA"),
                                                                          ack=False).getcol("NAME")))


@pytest.mark.parametrize("key", KEYS)
def test_snr_is_the_stored_snr(columns, key):
    """Each row's SNR (shape of its parameters) is solver_stats/snr of that antenna, time, bin and hand,
    divided by sqrt(chi2/nDOF) of its cell where that exceeds 1 (CASA's errors scale with the fit) --
    K's (and phase-only G / T's), already a phase-only fit's, by sqrt(rchi2_phase / 2) where that exceeds
    1 instead (tests/test_export_snr.py)."""
    ms, cal, out = columns
    r = _rows(out[key])
    n_checked = 0
    for s in hdf5.read_term(cal, key):
        # alakazam's SNR scaled as CASA's by the cell's chi2/nDOF where it exceeds 1 (review 55d)
        rchi2 = np.asarray(s.extra["rchi2"], float)           # (n_f, n_t)
        k = np.sqrt(np.where(np.isfinite(rchi2) & (rchi2 > 1), rchi2, 1.0))
        if key == "K0" or s.attrs.get("phase_only"):          # quality.phase_only_snr: not by rchi2, by
            f = np.asarray(s.extra["rchi2_phase"], float) / 2   # the phase-only fit's f / 2 beyond 1
            k = np.sqrt(np.where(np.isfinite(f) & (f > 1), f, 1.0))
        snr = np.asarray(s.extra["snr"]) / k[None, :, :, None]   # (n_ant, n_f, n_t, 2)
        for ia, a in enumerate(s.ant_names):
            for it, t in enumerate(s.time):
                i = [j for j in range(len(r["time"])) if r["spw"][j] == int(s.spw) and r["ant"][j] ==
                     r["names"].index(a) and abs(r["time"][j] - t) < 1e-3]
                assert len(i) == 1
                got = r["snr"][i[0]]                          # (n_chan, n_par)
                assert got.shape == r["par"][i[0]].shape == r["flag"][i[0]].shape
                want = snr[ia, :, it, :got.shape[1]]
                if key in ("CP0",):                           # Xf: one parameter, hand 0
                    want = snr[ia, :, it, :1]
                assert np.allclose(got, want.astype(np.float32), rtol=1e-6, atol=0)
                n_checked += 1
    assert n_checked and max(float(np.max(x)) for x in r["snr"]) > 1.0     # not the old placeholder 1


@pytest.mark.parametrize("key", KEYS)
def test_paramerr_interval_weight(columns, key):
    ms, cal, out = columns
    r = _rows(out[key])
    assert np.all(r["interval"] == 0.0)                 # CASA writes 0 for every solint (G1: 2 min)
    assert not any(r["weight"])                         # CASA leaves WEIGHT undefined
    for p, e, s in zip(r["par"], r["err"], r["snr"]):
        if key in ("G0", "G1"):                         # B, G Jones: CASA's SNR = |par| / PARAMERR
            ok = s > 0
            assert np.allclose(e[ok], np.abs(p[ok]) / s[ok], rtol=1e-6)
            assert np.all(e[~ok] == 0)
        else:                                           # no error stored for K, KC, Xf, Df
            assert np.all(e == 0)
    if key in ("G0", "G1"):
        assert max(float(np.max(e)) for e in r["err"]) > 0


def test_casa_gaincal_columns_convention(small_chain_table, tmp_path):
    """CASA's own gaincal: INTERVAL 0 for solint 'inf', combine='scan' and '120s'; SNR = |CPARAM| /
    PARAMERR (the relation the export follows); WEIGHT undefined."""
    ms, cal, _ = small_chain_table
    r = run_casa(f"""
        import numpy as np
        from casatasks import gaincal
        from casatools import table
        tb = table()
        for name, kw in (('inf', dict(solint='inf')), ('scan', dict(solint='inf', combine='scan')),
                         ('120s', dict(solint='120s'))):
            gaincal(vis={ms!r}, caltable=name + '.G', field='3C286', refant='C00', gaintype='G',
                    minblperant=3, **kw)
            tb.open(name + '.G')
            iv = np.unique(tb.getcol('INTERVAL'))
            rel = 0.0
            for i in range(tb.nrows()):
                p, e, s = tb.getcell('CPARAM', i), tb.getcell('PARAMERR', i), tb.getcell('SNR', i)
                ok = e > 0
                if ok.any():
                    rel = max(rel, float(np.max(np.abs(np.abs(p[ok]) / e[ok] - s[ok]) / s[ok])))
            w = any(tb.iscelldefined('WEIGHT', i) for i in range(tb.nrows()))
            print('RESULT', name, list(iv), rel, w)
            tb.close()
    """, tmp_path)
    res = [ln.split()[1:] for ln in r.stdout.splitlines() if ln.startswith("RESULT")]
    assert len(res) == 3, r.stdout[-2000:]
    for name, iv, rel, w in [(x[0], " ".join(x[1:-2]), float(x[-2]), x[-1]) for x in res]:
        assert iv == "[0.0]" or iv == "[np.float64(0.0)]", (name, iv)
        assert rel < 1e-5, (name, rel)
        assert w == "False", name


@pytest.fixture(scope="module")
def combined(small_chain_table, tmp_path_factory):
    """G 'inf' combine='field' on 3C147's scan 2 (FIELD_ID 1, first in time) and 3C286's scan 4 (0)."""
    ms, _, _ = small_chain_table
    d = tmp_path_factory.mktemp("export_combine_field")
    h5 = str(d / "fld.h5")
    akcal(vis=ms, caltable=h5, field="3C286,3C147", scan="2,4", jones=["G"], solint=["inf"],
          combine="field", refant="C00", minblperant=3)
    out = str(d / "fld.tb")
    akexport(caltable=h5, jones="G0", casatable=out)
    return ms, h5, out


def test_combine_field_exports_as_casa_labels_it(combined):
    ms, h5, out = combined
    with table(os.path.join(ms, "FIELD"), ack=False) as t:
        names = list(t.getcol("NAME"))
    with table(ms, ack=False) as t:
        fid = {int(s): int(f) for s, f in zip(t.getcol("SCAN_NUMBER"), t.getcol("FIELD_ID"))}
    assert fid[2] == names.index("3C147") and fid[4] == names.index("3C286")   # the premise
    (s,) = [x for x in hdf5.read_term(h5, "G0") if int(x.spw) == 0]
    assert s.field_name == "3C286+3C147"
    with table(out, ack=False) as t:
        assert set(t.getcol("FIELD_ID").tolist()) == {names.index("3C286")}
        assert set(t.getcol("SCAN_NUMBER").tolist()) == {4}


def test_combine_field_matches_casa_gaincal(combined, tmp_path):
    ms, h5, out = combined
    r = run_casa(f"""
        import numpy as np
        from casatasks import gaincal
        from casatools import table
        gaincal(vis={ms!r}, caltable='c.G', field='3C286,3C147', scan='2,4', solint='inf',
                combine='scan,field', refant='C00', gaintype='G', minblperant=3)
        tb = table(); tb.open('c.G')
        f, sc = sorted(set(tb.getcol('FIELD_ID').tolist())), sorted(set(tb.getcol('SCAN_NUMBER').tolist()))
        print('RESULT', f, sc)
    """, tmp_path)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")][0]
    with table(out, ack=False) as t:
        f, sc = sorted(set(t.getcol("FIELD_ID").tolist())), sorted(set(t.getcol("SCAN_NUMBER").tolist()))
    ours = f"RESULT {f} {sc}"
    assert line == ours
