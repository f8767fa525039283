"""akcal append (CASA semantics: add fields/scans/SPWs to a key; compatible or a clear error; append=False
replaces and says so) and solnorm (G amplitudes normalised per SPW and polarisation)."""

import logging
import shutil

import h5py
import numpy as np
import pytest

from alakazam.caltasks import akcal
from alakazam.errors import AlakazamError
from alakazam.io import hdf5


def _groups(path, key):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "jones" in obj:
                out[name] = (obj["jones"][()], obj["flags"][()])
        f[key].visititems(visit)
    return out


def test_append_adds_fields_and_keeps_everything(sim_linear, tmp_path, caplog):
    ms, _ = sim_linear
    cal = str(tmp_path / "cal.h5")
    kw = dict(vis=ms, caltable=cal, jones=["G"], solint="scan", refant="C00")
    akcal(field="3C286", **kw)
    first = _groups(cal, "G0")
    assert first and all(k.startswith("field_3C286/") for k in first)
    akcal(field="3C147", append=True, **kw)
    both = _groups(cal, "G0")
    assert {k.split("/")[0] for k in both} == {"field_3C286", "field_3C147"}
    for k, (j, fl) in first.items():                          # the 3C286 solutions are untouched
        np.testing.assert_array_equal(both[k][0], j)
        np.testing.assert_array_equal(both[k][1], fl)
    assert len(hdf5.read_term(cal, "G0")) == len(both)
    before = open(cal, "rb").read()
    # incompatible appends: a clear error, nothing written
    with pytest.raises(AlakazamError, match="already has G0/field_3C147"):
        akcal(field="3C147", append=True, **kw)
    with pytest.raises(AlakazamError, match="different frequency grid"):
        akcal(field="TARGET", append=True, freqint="2MHz", **kw)
    other = str(tmp_path / "other.ms")
    shutil.copytree(ms, other)
    with pytest.raises(AlakazamError, match="append needs the same MS"):
        akcal(**dict(kw, vis=other), field="TARGET", append=True)
    assert open(cal, "rb").read() == before
    # append=False replaces the key and says so
    with caplog.at_level(logging.WARNING, logger="alakazam.flow"):
        akcal(field="3C147", **kw)
    assert "replacing the existing G0" in caplog.text and "fields 3C147, 3C286" in caplog.text
    assert {k.split("/")[0] for k in _groups(cal, "G0")} == {"field_3C147"}


def test_solnorm_mean_and_median(sim_linear, tmp_path):
    """CASA gaincal's solnorm: per SPW ONE positive factor for both polarisations, so that the mean of
    |g|^2 ('mean': "normalize (squared) solution amplitudes") or the median of |g|^2 ('median') over the
    unflagged solutions of both hands is 1; phases and |g_p / g_q| unchanged.  (Until session 41 each
    polarisation had its own factor: |g_p / g_q| went from 1.196 to 1.0085, a review against CASA.)"""
    ms, _ = sim_linear
    kw = dict(vis=ms, field="3C286,3C147", jones=["K", "G"], solint=["scan", "60s"], refant="C00")
    akcal(caltable=str(tmp_path / "raw.h5"), **kw)
    for normtype in ("mean", "median"):
        out = str(tmp_path / f"{normtype}.h5")
        akcal(caltable=out, solnorm=True, normtype=normtype, **kw)
        raw = {(s.field_name, s.scan_id, s.spw): s for s in hdf5.read_term(str(tmp_path / "raw.h5"), "G0")}
        norm = hdf5.read_term(out, "G0")
        for spw in (0, 1):
            sets = [s for s in norm if s.spw == spw]
            amps = np.concatenate([np.abs(s.jones[..., p, p])[~s.flags] for s in sets for p in (0, 1)])
            if normtype == "mean":
                assert np.mean(amps ** 2) == pytest.approx(1.0, abs=1e-12)
            else:
                assert np.median(amps ** 2) == pytest.approx(1.0, abs=1e-12)
            # one positive real factor per SPW, the same for both hands; phases unchanged
            with np.errstate(invalid="ignore", divide="ignore"):     # flagged cells hold 0
                ratios = np.concatenate([(s.jones[..., p, p] / raw[(s.field_name, s.scan_id, s.spw)]
                                          .jones[..., p, p])[~s.flags] for s in sets for p in (0, 1)])
            np.testing.assert_allclose(ratios, ratios[0].real, rtol=1e-9)
            assert ratios[0].real > 0 and abs(ratios[0].real - 1) > 1e-3
        # K is left as solved
        for a, b in zip(hdf5.read_term(out, "K0"), hdf5.read_term(str(tmp_path / "raw.h5"), "K0")):
            np.testing.assert_array_equal(a.delay, b.delay)


def test_solnorm_of_a_bandpass(sim_linear, tmp_path):
    """CASA bandpass's solnorm on a G per channel: each antenna's bandpass per polarisation and time
    divided by sqrt(mean |b|^2) exp(i arg sum b/|b|) over its unflagged channels -- its rms amplitude 1
    and its mean phase 0 (before session 41 the gaincal rule, per SPW and polarisation, left each
    antenna's amplitude and phase in the bandpass: up to 174 deg from CASA's, a review)."""
    ms, _ = sim_linear
    kw = dict(vis=ms, field="3C286", jones=["G"], solint=["inf"], freqint=["1MHz"], refant="C00")
    akcal(caltable=str(tmp_path / "raw.h5"), **kw)
    akcal(caltable=str(tmp_path / "bn.h5"), solnorm=True, **kw)
    raw = {(s.field_name, s.scan_id, s.spw): s for s in hdf5.read_term(str(tmp_path / "raw.h5"), "G0")}
    n = 0
    for s in hdf5.read_term(str(tmp_path / "bn.h5"), "G0"):
        r = raw[(s.field_name, s.scan_id, s.spw)]
        hf = s.hand_flags()
        for a in range(s.jones.shape[0]):
            for t in range(s.jones.shape[2]):
                for p in (0, 1):
                    ok = ~hf[a, :, t, p]
                    if ok.sum() < 2:
                        continue
                    b, b0 = s.jones[a, ok, t, p, p], r.jones[a, ok, t, p, p]
                    assert np.mean(np.abs(b) ** 2) == pytest.approx(1.0, abs=1e-9)
                    assert abs(np.angle(np.sum(b / np.abs(b)))) < 1e-9
                    fac = b0 / b                                  # one complex factor per cell
                    np.testing.assert_allclose(fac, fac[0], rtol=1e-9)
                    n += 1
    assert n >= 20


def test_solnorm_of_a_gain_whose_freqint_is_the_whole_spw(sim_linear, tmp_path):
    """freqint as wide as an SPW gives one bin there: a gain over the band (gaincal's rule).  The
    bandpass rule, chosen by a finite freqint, set every such gain to exactly 1 (a review)."""
    ms, _ = sim_linear
    kw = dict(vis=ms, field="3C286", jones=["G"], solint=["120s"], refant="C00", solnorm=True)
    akcal(caltable=str(tmp_path / "full.h5"), **kw)
    akcal(caltable=str(tmp_path / "wide.h5"), freqint=["64MHz"], **kw)     # wider than both SPWs
    full = {(s.scan_id, s.spw): s for s in hdf5.read_term(str(tmp_path / "full.h5"), "G0")}
    for s in hdf5.read_term(str(tmp_path / "wide.h5"), "G0"):
        assert s.jones.shape[1] == 1
        g = s.jones[..., 0, 0][~s.flags]
        assert np.std(np.abs(g)) > 1e-3 and np.std(np.angle(g)) > 1e-3          # not all 1 + 0j
        np.testing.assert_allclose(s.jones, full[(s.scan_id, s.spw)].jones, rtol=1e-6, atol=1e-9)
