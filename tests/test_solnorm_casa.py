"""akcal's solnorm against CASA 6.7 itself (optional: skipped without CASA, tests/casa_python.py):
gaincal's one factor per SPW for both polarisations (mean: sqrt(mean |g|^2); median), and bandpass's
complex factor per antenna, polarisation and time (calibration/solnorm.py)."""

import os
import sys

import numpy as np
from casacore.tables import table

from alakazam.caltasks import akcal
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import run_casa  # noqa: E402  (tests/casa_python.py)


def _casa_rows(tb):
    with table(tb, ack=False) as t:
        return (t.getcol("TIME"), t.getcol("ANTENNA1"), t.getcol("SPECTRAL_WINDOW_ID"),
                [np.asarray(t.getcell("CPARAM", r)) for r in range(t.nrows())],
                [np.asarray(t.getcell("FLAG", r)) for r in range(t.nrows())])


def test_solnorm_factors_as_casa(tmp_path):
    ms = str(tmp_path / "s.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(8, 4), duration_h=1.0, int_s=60.0, noise=0.05, seed=7,
                leakage=False, dead_ant=False)
    run_casa(f"""
        from casatasks import gaincal, bandpass
        for name, kw in (("raw", {{}}), ("mean", dict(solnorm=True)),
                         ("median", dict(solnorm=True, normtype="median"))):
            gaincal(vis={ms!r}, caltable=name + ".G", field="3C286,3C147", solint="inf", refant="C00", **kw)
        for name, kw in (("raw", dict(solnorm=False)), ("norm", dict(solnorm=True))):
            bandpass(vis={ms!r}, caltable=name + ".B", field="3C286", solint="inf", refant="C00", **kw)
        """, tmp_path)
    ants = [str(x) for x in table(os.path.join(ms, "ANTENNA"), ack=False).getcol("NAME")]
    # gaincal: CASA's factor (raw / normalised: one per SPW) against ours (attr solnorm_factor)
    raw = _casa_rows(str(tmp_path / "raw.G"))
    for normtype in ("mean", "median"):
        norm = _casa_rows(str(tmp_path / f"{normtype}.G"))
        out = str(tmp_path / f"{normtype}.h5")
        akcal(vis=ms, caltable=out, field="3C286,3C147", jones=["G"], solint=["scan"], refant="C00",
              solnorm=True, normtype=normtype)             # (CASA's 'inf' is per scan; ours spans scans)
        ours = {s.spw: float(s.attrs["solnorm_factor"][0]) for s in hdf5.read_term(out, "G0")}
        for spw in (0, 1):
            rs = [r for r in range(len(raw[0])) if raw[2][r] == spw and not raw[4][r].any()]
            fac = np.array([np.abs(raw[3][r]) / np.abs(norm[3][r]) for r in rs]).ravel()
            np.testing.assert_allclose(fac, fac[0], rtol=1e-5)          # CASA: one factor for both hands
            np.testing.assert_allclose(ours[spw], fac[0], rtol=2e-4)    # (the solvers agree to ~1e-5)
    # bandpass: CASA's normalised bandpass against ours, per antenna, channel and polarisation
    out = str(tmp_path / "b.h5")
    akcal(vis=ms, caltable=out, field="3C286", jones=["G"], solint=["inf"], freqint=["1ch"], refant="C00",
          solnorm=True)                                    # (CASA bandpass: combine='scan' by default)
    sets = hdf5.read_term(out, "G0")
    t, a1, spw, par, flg = _casa_rows(str(tmp_path / "norm.B"))
    n = 0
    for r in range(len(t)):
        s = min((x for x in sets if x.spw == int(spw[r])), key=lambda x: abs(float(x.time[0]) - t[r]))
        assert abs(float(s.time[0]) - t[r]) < 600
        a = s.ant_names.index(ants[a1[r]])
        ok = ~flg[r] & ~s.hand_flags()[a, :, 0, :]                                  # (n_chan, 2)
        want = np.stack([s.jones[a, :, 0, 0, 0], s.jones[a, :, 0, 1, 1]], -1)
        np.testing.assert_allclose(par[r][ok], want[ok], atol=2e-4)
        n += ok.sum()
    assert n == 120          # 5 antennas x 12 channels x 2 polarisations
