"""MS reader: metadata, selections, flag/weight merge, chunking, writing and error messages.

Every read is compared with a direct python-casacore getcol on the same rows, or with the
simulation truth -- never with the reader itself.
"""

import shutil

import numpy as np
import pytest
from casacore.tables import table, taql

from alakazam.core import ms_io
from alakazam.errors import AlakazamError
from alakazam.sim import simulate_ms


def _direct(ms, where, cols):
    with table(ms, ack=False) as t:  # noqa: F841 -- t is used by the TaQL query as $t
        q = taql(f"SELECT ROWID() AS R, * FROM $t WHERE {where}")
        out = {c: q.getcol(c) for c in cols + ["R"]}
        q.close()
    return out


def test_metadata(sim_linear, sim_circular):
    ms, truth = sim_linear
    meta = ms_io.read_meta(ms)
    # active antennas: by name, exactly the truth; the extras (no rows) map to -1
    assert meta.active_names == truth.ant_names
    with table(ms, ack=False) as t:
        ids = np.unique(np.concatenate([t.getcol("ANTENNA1"), t.getcol("ANTENNA2")]))
    np.testing.assert_array_equal(meta.active_ants, ids)
    assert set(np.nonzero(meta.ant_map < 0)[0]) == set(range(len(meta.ant_names))) - set(ids)
    np.testing.assert_array_equal(meta.ant_map[ids], np.arange(len(ids)))
    assert meta.ant_positions.shape == (len(meta.ant_names), 3)
    # per-DDID SPW and frequencies (DDID != SPW id in the simulation)
    for d, spw in meta.spws.items():
        np.testing.assert_array_equal(spw.freqs, truth.spw_freqs[spw.spw_id])
        assert spw.n_corr == 4 and spw.feed_basis == "linear"
        assert spw.corr_types == ["XX", "XY", "YX", "YY"]
    assert any(d != s.spw_id for d, s in meta.spws.items())
    cmeta = ms_io.read_meta(sim_circular[0])
    assert all(s.feed_basis == "circular" and s.corr_types == ["RR", "RL", "LR", "LL"]
               for s in cmeta.spws.values())
    # fields, scans, observatory, receptor angles, interval
    assert [f.name for f in meta.fields] == truth.field_names
    assert np.isclose(meta.fields[0].ra, np.radians(202.784533), atol=1e-5)
    assert {s.scan_number: meta.fields[s.field_id].name for s in meta.scans} == truth.scans
    assert all(s.t_start <= s.t_end for s in meta.scans)
    assert meta.telescope_name == "VLA"
    assert 6.36e6 < np.linalg.norm(meta.observatory) < 6.38e6
    assert np.linalg.norm(meta.ant_positions[meta.active_ants] - meta.observatory, axis=1).max() < 5e3
    np.testing.assert_allclose(meta.receptor_angle[:, 1] - meta.receptor_angle[:, 0], np.pi / 2)
    assert meta.interval == pytest.approx(np.diff(truth.times).min())


def test_selection_resolution(sim_linear):
    ms, _ = sim_linear
    meta = ms_io.read_meta(ms)
    spw_of = {s.spw_id: d for d, s in meta.spws.items()}
    sel = ms_io.resolve_spw(meta, "1:2~5,0:1~2")
    assert list(sel[spw_of[1]]) == [2, 3, 4, 5] and list(sel[spw_of[0]]) == [1, 2]
    f = meta.spws[spw_of[0]].freqs
    sel = ms_io.resolve_spw(meta, f"0:{f[3] / 1e9:.6f}~{f[5] / 1e9:.6f}GHz")
    assert list(sel[spw_of[0]]) == [3, 4, 5] and spw_of[1] not in sel
    assert ms_io.resolve_fields(meta, "3C147,TARGET") == [1, 2]
    assert ms_io.resolve_fields(meta, "") == [0, 1, 2]
    assert ms_io.resolve_scans(meta, "<3") == [1, 2] and ms_io.resolve_scans(meta, "") is None
    # reference antenna: name first, then ANTENNA-table index; result is the active index
    assert ms_io.resolve_antenna(meta, meta.active_names[-1]) == len(meta.active_ants) - 1
    assert ms_io.resolve_antenna(meta, int(meta.active_ants[2])) == 2


def test_read_rows_matches_casacore(sim_linear):
    ms, truth = sim_linear
    meta = ms_io.read_meta(ms)
    ddid = 1
    chans = np.array([0, 3, 4, 9])
    sc = meta.scans[4]
    t0, t1 = sc.t_start, sc.t_end + 1.0
    ch = ms_io.read_rows(ms, ddid, [0, 1, 2], time_range=(t0, t1), chans=chans, meta=meta)
    ref = _direct(ms, f"DATA_DESC_ID=={ddid} AND TIME>={t0!r} AND TIME<{t1!r}",
                  ["DATA", "MODEL_DATA", "FLAG", "FLAG_ROW", "SIGMA", "TIME", "ANTENNA1", "ANTENNA2",
                   "SCAN_NUMBER", "FIELD_ID"])
    assert ch.n_row == len(ref["R"]) > 0
    np.testing.assert_array_equal(ch.rownr, ref["R"])
    np.testing.assert_array_equal(ch.data, ref["DATA"][:, chans])
    np.testing.assert_array_equal(ch.model, ref["MODEL_DATA"][:, chans])
    np.testing.assert_array_equal(ch.flag, ref["FLAG"][:, chans] | ref["FLAG_ROW"][:, None, None])
    # DATA is weighted 1/SIGMA^2 (core/weights.py), a (row, corr) view broadcast over channels
    w_row = (1 / ref["SIGMA"].astype(np.float64) ** 2).astype(np.float32)
    np.testing.assert_array_equal(ch.weight, np.broadcast_to(w_row[:, None, :], ch.data.shape))
    assert ch.weight.strides[1] == 0 and not ch.weight.flags.writeable
    np.testing.assert_array_equal(ch.time, ref["TIME"])
    np.testing.assert_array_equal(meta.active_ants[ch.ant1], ref["ANTENNA1"])
    np.testing.assert_array_equal(meta.active_ants[ch.ant2], ref["ANTENNA2"])
    assert set(ch.scan) == {sc.scan_number} and set(ch.field_id) == {sc.field_id}
    assert ch.data.dtype == np.complex64
    # model_col=None skips the model
    assert ms_io.read_rows(ms, ddid, [0], model_col=None, meta=meta, nrow=3).model is None
    # scans and field selection on columns
    rows = ms_io.row_numbers(ms, 0, [0], scans=[1, 4])
    ref = _direct(ms, "DATA_DESC_ID==0 AND FIELD_ID==0 AND SCAN_NUMBER IN [1,4]", ["TIME"])
    np.testing.assert_array_equal(rows, ref["R"])
    assert ms_io.row_count(ms, 0, [0], scans=[1, 4]) == len(rows)
    assert ms_io.row_count(ms, 0, [1], scans=[1]) == 0        # scan 1 observes 3C286 only


def test_flag_merge_dead_antenna_and_flag_rows(sim_linear):
    ms, truth = sim_linear
    meta = ms_io.read_meta(ms)
    with table(ms, ack=False) as t:
        frow = t.getcol("FLAG_ROW")
        ddid = t.getcol("DATA_DESC_ID")
    assert frow.any()
    d = int(ddid[np.nonzero(frow)[0][0]])
    fid = meta.fields.index(next(f for f in meta.fields if f.name == truth.scans[truth.dead_scan]))
    ch = ms_io.read_rows(ms, d, [0, 1, 2], meta=meta)
    assert ch.flag[frow[ch.rownr]].all()
    dead = truth.ant_names.index(truth.dead_ant)
    m = ((ch.ant1 == dead) | (ch.ant2 == dead)) & (ch.scan == truth.dead_scan)
    assert m.any() and ch.flag[m].all() and fid in set(ch.field_id[m])
    # away from the dead antenna and the flagged rows nothing else is flagged by the simulation
    assert not ch.flag[~m & ~frow[ch.rownr]].any()


def test_chunked_iteration_equals_one_read(sim_linear):
    ms, _ = sim_linear
    meta = ms_io.read_meta(ms)
    sc = meta.scans[1]
    tr = (sc.t_start, sc.t_end + 1)
    one = ms_io.read_rows(ms, 0, [sc.field_id], time_range=tr, meta=meta)
    parts = list(ms_io.iter_chunks(ms, 0, [sc.field_id], time_range=tr, max_rows=7, meta=meta))
    assert len(parts) == -(-one.n_row // 7) and all(p.n_row <= 7 for p in parts)
    for name in ("data", "model", "flag", "weight", "time", "ant1", "ant2", "rownr"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(one, name))
    s = ms_io.read_rows(ms, 0, [sc.field_id], time_range=tr, meta=meta, start=5, nrow=4)
    np.testing.assert_array_equal(s.rownr, one.rownr[5:9])


@pytest.fixture(scope="module")
def small_ws(tmp_path_factory):
    ms = str(tmp_path_factory.mktemp("ws") / "ws.ms")
    simulate_ms(ms, n_ant=3, n_chan=(4,), duration_h=0.25, int_s=120, scan_len_s=300, weight_spectrum=True,
                noise=0.1, dead_ant=False, flag_rows=0)
    return ms


def test_weight_spectrum_used_when_present(small_ws):
    """A column other than DATA (here MODEL_DATA read as the data) is weighted by WEIGHT_SPECTRUM when
    present; DATA by 1/SIGMA^2 (no SIGMA_SPECTRUM here), WEIGHT_SPECTRUM not read (core/weights.py)."""
    ms = small_ws
    with table(ms, ack=False, readonly=False) as t:
        ws = t.getcol("WEIGHT_SPECTRUM")
        ws = ws * np.arange(1, 5, dtype=np.float32)[None, :, None]        # channel-dependent
        t.putcol("WEIGHT_SPECTRUM", ws)
    ch = ms_io.read_rows(ms, 0, [0], data_col="MODEL_DATA", model_col=None)
    np.testing.assert_array_equal(ch.weight, ws[ch.rownr])
    np.testing.assert_allclose(ch.weight[:, 0], 1 / 0.1 ** 2, rtol=1e-6)
    ch = ms_io.read_rows(ms, 0, [0])
    np.testing.assert_allclose(ch.weight, 1 / 0.1 ** 2, rtol=1e-6)
    assert ch.weight.strides[1] == 0


def test_write_column_roundtrip(small_ws, tmp_path):
    ms = str(tmp_path / "w.ms")
    shutil.copytree(small_ws, ms)
    assert ms_io.ensure_column(ms, "CORRECTED_DATA") is True
    assert ms_io.ensure_column(ms, "CORRECTED_DATA") is False
    rows = ms_io.row_numbers(ms, 0, [0])
    with table(ms, ack=False) as t:
        shape = t.getcell("DATA", 0).shape
    vals = (np.arange(len(rows) * np.prod(shape)).reshape((len(rows),) + shape)
            * (1 + 1j)).astype(np.complex64)
    ms_io.write_column(ms, "CORRECTED_DATA", rows, vals)
    with table(ms, ack=False) as t:
        got = t.getcol("CORRECTED_DATA")
        assert t.getcoldesc("CORRECTED_DATA")["valueType"] == t.getcoldesc("DATA")["valueType"]
    np.testing.assert_array_equal(got[rows], vals)
    # channel subset write leaves the other channels alone
    ms_io.write_column(ms, "CORRECTED_DATA", rows[:2], np.zeros((2, 2, shape[1]), np.complex64), chans=[1, 3])
    with table(ms, ack=False) as t:
        got2 = t.getcol("CORRECTED_DATA", startrow=int(rows[0]), nrow=1)[0]
    np.testing.assert_array_equal(got2[[1, 3]], 0)
    np.testing.assert_array_equal(got2[[0, 2]], vals[0][[0, 2]])


def test_to_four_corr_two_correlations():
    data = np.array([[[1 + 1j, 2 - 1j]]], np.complex64)        # (row, chan, corr) XX YY
    flag = np.array([[[False, True]]])
    w = np.array([[[3.0, 4.0]]], np.float32)
    d, f, ww = ms_io.to_four_corr(data, flag, w, ["XX", "YY"])
    np.testing.assert_array_equal(d[0, 0], [1 + 1j, 0, 0, 2 - 1j])
    np.testing.assert_array_equal(f[0, 0], [False, True, True, True])
    np.testing.assert_array_equal(ww[0, 0], [3, 0, 0, 4])
    d4, f4, w4 = ms_io.to_four_corr(np.zeros((1, 1, 4)), np.zeros((1, 1, 4), bool), np.ones((1, 1, 4)),
                                    ["XX", "XY", "YX", "YY"])
    assert d4.shape == (1, 1, 4) and not f4.any()


def test_errors(sim_linear, tmp_path):
    ms, _ = sim_linear
    meta = ms_io.read_meta(ms)
    notms = tmp_path / "plain"
    notms.mkdir()
    cases = [
        (lambda: ms_io.read_meta(str(tmp_path / "nope.ms")), "'.*nope.ms' does not exist"),
        (lambda: ms_io.read_meta(str(notms)), "is not a Measurement Set"),
        (lambda: ms_io.read_rows(ms, 0, [0], model_col="MODEL_NOPE", meta=meta), "column 'MODEL_NOPE'"),
        (lambda: ms_io.resolve_fields(meta, ["NOPE"]), "'NOPE'.*available: 3C286, 3C147, TARGET"),
        (lambda: ms_io.resolve_fields(meta, "9"), "'9'"),
        (lambda: ms_io.resolve_antenna(meta, "C01"), "'C01' has no data.*antennas with data: C00"),
        (lambda: ms_io.resolve_antenna(meta, "ZZ9"), "'ZZ9' is not an antenna"),
        (lambda: ms_io.resolve_antenna(meta, 99), "99"),
        (lambda: ms_io.resolve_spw(meta, "5"), "spw: 5 is not present"),
        (lambda: ms_io.resolve_spw(meta, "0:99~100"), "outside SPW 0"),
        (lambda: ms_io.resolve_scans(meta, "99"), "scan: 99 is not present"),
        (lambda: ms_io.resolve_scans(meta, ">99"), "selects no scan"),
        (lambda: ms_io.read_rows(ms, 7, [0], meta=meta), "DATA_DESC_ID 7"),
    ]
    for fn, match in cases:
        with pytest.raises(AlakazamError, match=match):
            fn()
    # a missing MODEL_DATA says how to create it
    cp = str(tmp_path / "nomodel.ms")
    shutil.copytree(ms, cp)
    with table(cp, ack=False, readonly=False) as t:
        t.removecols(["MODEL_DATA"])
    with pytest.raises(AlakazamError, match="'MODEL_DATA' is not in .* fill it with a model"):
        ms_io.read_rows(cp, 0, [0])
    assert ms_io.read_rows(cp, 0, [0], model_col=None, nrow=2).n_row == 2
