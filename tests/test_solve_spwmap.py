"""akcal's spwmap (CASA gaincal's): a gaintable term of SPW 0 pre-applied to the data of SPW 1
(calibration/spwmap.py).  Pinned against the same solve on data corrected beforehand by akapply with the
same spwmap (the apply's spwmap is pinned against CASA's semantics in test_apply_params.py)."""

import logging
import shutil

import numpy as np
import pytest

from alakazam.caltasks import akapply, akcal
from alakazam.errors import AlakazamError, ParameterError
from alakazam.io import hdf5
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def bandpass(tmp_path_factory):
    """A 2-SPW MS and a bandpass (G per channel, inf) + K solved on SPW 0 only."""
    d = tmp_path_factory.mktemp("solvespwmap")
    ms = str(d / "p.ms")
    simulate_ms(ms, feed="circular", n_ant=5, n_ant_extra=0, n_chan=(8, 8), duration_h=0.5, int_s=60,
                scan_len_s=300, noise=0.05, seed=7, leakage=False, dead_ant=False, flag_rows=0.0,
                weight_spectrum=True)
    cal = str(d / "bp.h5")
    akcal(vis=ms, caltable=cal, refant="C00", jones=["K", "G"], spw="0", field="3C286",
          solint=["inf", "inf"], freqint=["full", "1MHz"], minblperant=0)
    return ms, cal


def _g(cal, key, spw):
    sets = [s for s in hdf5.read_term(cal, key) if s.spw == spw]
    assert sets
    return np.concatenate([s.jones for s in sets], axis=2), np.concatenate([s.flags for s in sets], axis=2)


def test_gaintable_spwmap_equals_solving_data_corrected_with_it(bandpass, tmp_path, caplog):
    ms, bp = bandpass
    # SPW 1's gains with SPW 0's K and bandpass pre-applied through spwmap
    out = str(tmp_path / "g.h5")
    caplog.set_level(logging.INFO)
    akcal(vis=ms, caltable=out, refant="C00", jones=["G"], spw="1", field="3C286", solint="60s",
          gaintable=[bp, bp], gainjones=["K0", "G0"], spwmap=[0, 0], minblperant=0)
    # the mapping is logged once per term, not in every block of times; the bandpass's bins (SPW 0's
    # band) matched by position in SPW 1's band: a warning, once (CASA's applycal would hold the edge bin)
    said = [r.getMessage() for r in caplog.records if "spwmap:" in r.getMessage()]
    assert said[:2] == ["spwmap: K0: SPW 0 solutions pre-applied to SPW 1",
                        "spwmap: G0: SPW 0 solutions pre-applied to SPW 1"], said
    assert len(said) == 3 and said[2].startswith("spwmap: G0: SPW 0's frequency bins serve SPW 1, whose band "
                                                 "they do not cover: matched by position in the band"), said
    got, gflag = _g(out, "G0", 1)
    # the same G solved from CORRECTED_DATA written by akapply with the same spwmap, nothing pre-applied,
    # with the weights of the corrected data (calwt; per channel: WEIGHT_SPECTRUM), which a solve's
    # pre-apply gives its corrected samples (w |g_a g_b|^2)
    ms2 = str(tmp_path / "c.ms")
    shutil.copytree(ms, ms2)
    akapply(vis=ms2, gaintable=[bp, bp], jones=["K0", "G0"], spw="1", spwmap=[0, 0], calwt=True)
    ref_out = str(tmp_path / "r.h5")
    akcal(vis=ms2, caltable=ref_out, refant="C00", jones=["G"], spw="1", field="3C286", solint="60s",
          datacolumn="CORRECTED_DATA", minblperant=0)
    want, wflag = _g(ref_out, "G0", 1)
    assert np.array_equal(gflag, wflag) and not gflag.all()
    ok = ~gflag
    # CORRECTED_DATA is stored in complex64: equal to its rounding
    assert np.abs(got - want)[ok].max() < 1e-6
    # and the pre-apply did something: without it the gains carry the bandpass
    plain = str(tmp_path / "p.h5")
    akcal(vis=ms, caltable=plain, refant="C00", jones=["G"], spw="1", field="3C286", solint="60s",
          minblperant=0)
    raw, _ = _g(plain, "G0", 1)
    assert np.nanmax(np.abs(raw - got)) > 1e-2


def test_gaintable_spwmap_same_in_every_memory_tier(bandpass, tmp_path):
    """Tier 1 evaluates the pre-apply through the kept product (calibration/preapply_cache.py), tiers
    2/3 through chain.preapply_tables per block: both map the SPW, with the same gains."""
    ms, bp = bandpass
    got = {}
    for label, limit in (("tier1", 0.0), ("tier3", 2e-5)):
        out = str(tmp_path / f"{label}.h5")
        res = akcal(vis=ms, caltable=out, refant="C00", jones=["G", "G"], spw="1", field="3C286",
                    solint=["60s", "inf"], freqint=["full", "1MHz"], gaintable=[bp, bp],
                    gainjones=["K0", "G0"], spwmap=[0, 0], minblperant=0, memory_limit_gb=limit)
        assert res["tier"] == int(label[-1]), res["tier"]
        got[label] = [_g(out, k, 1) for k in ("G0", "G1")]
    for (a, fa), (b, fb) in zip(got["tier1"], got["tier3"]):
        assert np.array_equal(fa, fb) and not fa.all()
        assert np.abs(a - b)[~fa].max() < 1e-9


def test_gaintable_without_the_spw_is_refused_before_the_solve(bandpass, tmp_path):
    ms, bp = bandpass
    out = str(tmp_path / "x.h5")
    # (since session 48 found by akcal's parameter check, named by gainjones: before the Begin line)
    with pytest.raises(AlakazamError, match=r"gainjones\[0\]: K0 of .* has no solutions for SPW 1 \(the "
                                            r"solve reads SPW 1; the table has SPW 0\); select spw, or give "
                                            r"spwmap"):
        akcal(vis=ms, caltable=out, refant="C00", jones=["G"], spw="1", field="3C286", solint="60s",
              gaintable=[bp], gainjones=["K0"])
    with pytest.raises(AlakazamError, match=r"spwmap: \[0\] \(entry 1\) does not reach SPW 1 .* G0 of .* has "
                                            r"no solutions for SPW 1; extend the list; the table has SPW 0"):
        akcal(vis=ms, caltable=out, refant="C00", jones=["G"], spw="1", field="3C286", solint="60s",
              gaintable=[bp, bp], gainjones=["K0", "G0"], spwmap=[[0, 0], [0]])
    with pytest.raises(AlakazamError, match=r"spwmap: \[0, 3\] \(entry 0\) maps SPW 1 to SPW 3, which K0 "
                                            r"of .* has no solutions for"):
        akcal(vis=ms, caltable=out, refant="C00", jones=["G"], spw="1", field="3C286", solint="60s",
              gaintable=[bp], gainjones=["K0"], spwmap=[0, 3])
    with pytest.raises(ParameterError, match=r"\n  spwmap: \[0, 'x'\]: 'x' is not an SPW id"):
        akcal(vis=ms, caltable=out, refant="C00", jones=["G"], spw="1", field="3C286", solint="60s",
              gaintable=[bp], gainjones=["K0"], spwmap=[0, "x"])
    with pytest.raises(ParameterError, match="spwmap.*2 lists but there are 1 terms"):
        akcal(vis=ms, caltable=out, refant="C00", jones=["G"], spw="1", field="3C286", solint="60s",
              gaintable=[bp], gainjones=["K0"], spwmap=[[0], [0]])
    import os
    assert not os.path.exists(out)


def test_spwmap_as_numpy_array_or_numpy_ints(bandpass, tmp_path):
    """A Python user's numpy spwmap (np.array([0, 0]), numpy integers) is the same list, not an internal
    error ('truth value of an array is ambiguous')."""
    from alakazam.calibration.spwmap import parse_spwmap

    assert parse_spwmap(np.array([0, 0]), 2) == [[0, 0], [0, 0]]
    assert parse_spwmap([np.int64(0), np.int32(0)], 1) == [[0, 0]]
    assert parse_spwmap(np.array([[0, 0], [0, 0]]), 2) == [[0, 0], [0, 0]]
    with pytest.raises(AlakazamError, match="spwmap.*is not an SPW id"):
        parse_spwmap(np.array([0.5, 0]), 1)
    ms, bp = bandpass
    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    for out, sm in ((a, [0, 0]), (b, np.array([0, 0]))):
        akcal(vis=ms, caltable=out, refant="C00", jones=["G"], spw="1", field="3C286", solint="60s",
              gaintable=[bp, bp], gainjones=["K0", "G0"], spwmap=sm, minblperant=0)
    assert np.array_equal(_g(a, "G0", 1)[0], _g(b, "G0", 1)[0], equal_nan=True)
