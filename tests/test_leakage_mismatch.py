"""D when the corrected parallel hands do not match the model (solvers/leakage.cross_hands_only,
check_parallel_hands): the pre-applied gains fitted to another field, or a flux model a few per cent
off, leave the parallel hands R x the model.

Convention pinned here: D is fitted on the cross hands only, on every calibrator (CASA's polcal Df), so
the leakage comes out R x the truth -- what CASA's Df returns (benchmarks/dmismatch_casa.py) -- and not
the fit of all four correlations, which at R = 1.05 was 9x further off (0.044) and at R = 1.1 did not
converge.  |R - 1| > 0.1 is a warning, > 0.5 an error that names the step, the field and R.
"""

import logging
import os
import sys

import numpy as np
import pytest
from casacore.tables import table

from alakazam.config import solve_config_from_dict
from alakazam.errors import AlakazamError
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms
from alakazam.solvers import CellBatch, leakage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import run_casa  # noqa: E402  (tests/casa_python.py)

NOISE = 0.05
BACKENDS = ["numba", "scipy", "ceres", "jax"]


def _ms(tmp_path, feed, r):
    """8 antennas, 4 x 1 MHz, 3 h; no gains (nothing to pre-apply), leakage |d| ~ 0.05 with
    d_pq[C00] = 0; 3C147 (unpolarised, 2.5 Jy) with MODEL_DATA 2.5 / r Jy."""
    ms = str(tmp_path / f"{feed}.ms")
    truth = simulate_ms(ms, feed=feed, n_ant=8, n_ant_extra=0, n_chan=(4,), int_s=120.0, scan_len_s=600.0,
                        noise=NOISE, seed=31, flag_rows=0.0, dead_ant=False, delays=False, bandpass=False,
                        time_gains=False, crosshand=False, leakage_scale=0.05, leakage_ref_zero=True)
    with table(ms + "/FIELD", ack=False) as f:
        fid = list(f.getcol("NAME")).index("3C147")
    with table(ms, readonly=False, ack=False) as t:
        sel = t.getcol("FIELD_ID") == fid
        m = t.getcol("MODEL_DATA")
        assert np.allclose(m[sel][..., [0, 3]], 1.0)          # the sim's 1 Jy model of a 2.5 Jy source
        m[sel] *= 2.5 / r
        t.putcol("MODEL_DATA", m)
        n_vis = int(sel.sum()) * m.shape[1]                   # (row, channel) samples on 3C147
    return ms, truth, n_vis


def _solve(ms, cal, backend="numba"):
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", apply_parang=True, jones=["D"],
                                          field=["3C147"], time_interval=["inf"], freq_interval=["full"],
                                          quiet=True, solver_backend=backend)))
    (s,) = hdf5.read_term(cal, "D0")
    assert s.converged.all() and not s.flags.any()
    j = s.jones[:, 0, 0]
    return np.stack([j[:, 0, 1], j[:, 1, 0]], -1)


def _sigma_d(n_vis, n_ant):
    """Standard error of one d (per real component): d_pq,a is seen in pq of the n_ant - 1 baselines
    to a, each sample with noise NOISE per component on a 2.5 Jy signal."""
    return NOISE / (2.5 * np.sqrt(n_vis / (n_ant * (n_ant - 1) / 2) * (n_ant - 1)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("feed", ["circular", "linear"])
def test_d_scaled_by_the_parallel_misfit(tmp_path, feed, backend):
    """R = 1.05: D = 1.05 x the truth within 5 standard errors, as CASA's Df (0.0064 off the truth,
    alakazam 0.0050; the fit of all four correlations was 0.044 off).  The cross hands of an unpolarised
    source are linear in d (V_pq = d_pq,a I + conj(d_qp,b) I), so the error is the noise's alone."""
    if backend in ("ceres", "jax"):
        pytest.importorskip("pyceres" if backend == "ceres" else "jax")
    r = 1.05
    ms, truth, n_vis = _ms(tmp_path, feed, r)
    d = _solve(ms, str(tmp_path / "d.h5"), backend)
    sig = _sigma_d(n_vis, 8)
    err = np.abs(d - r * truth.leakage).max()
    print(f"{feed} {backend}: max |D - R d_true| = {err:.5f}, sigma {sig:.5f}; "
          f"max |D - d_true| = {np.abs(d - truth.leakage).max():.4f}")
    assert err < 5 * np.sqrt(2) * sig                  # |complex| of 5 sigma per component


def test_misfit_warns_then_stops(tmp_path, caplog):
    """R = 1.3: a warning naming the step, the field and R; D is 1.3 x the truth.  R = 2.5 (a 1 Jy model
    of a 2.5 Jy source, nothing pre-applied): an error before anything is solved or written."""
    ms, truth, n_vis = _ms(tmp_path, "circular", 1.3)
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        d = _solve(ms, str(tmp_path / "d13.h5"))
    msgs = [r.getMessage() for r in caplog.records if "the parallel hands (with" in r.getMessage()]
    assert len(msgs) == 1 and "D0 (D) on field(s) ['3C147']" in msgs[0] and "1.3 x the model" in msgs[0]
    assert np.abs(d - 1.3 * truth.leakage).max() < 0.01
    with table(ms, readonly=False, ack=False) as t:                 # now R = 2.5
        m = t.getcol("MODEL_DATA")
        with table(ms + "/FIELD", ack=False) as f:
            sel = t.getcol("FIELD_ID") == list(f.getcol("NAME")).index("3C147")
        m[sel] *= 1.3 / 2.5
        t.putcol("MODEL_DATA", m)
    cal = tmp_path / "d25.h5"
    with pytest.raises(AlakazamError, match=r"D0 \(D\) on field\(s\) \['3C147'\].* 2\.5 x the model.*"
                                            r"Solve an amplitude-and-phase G on this field"):
        _solve(ms, str(cal))
    assert not cal.exists() or "D0" not in hdf5.list_keys(str(cal))


def test_parallel_hand_scale_and_its_error():
    """R and sigma_R recover a known complex scale and the spread of R over noise realisations
    (weights on an arbitrary absolute scale: only their ratios are used)."""
    rng = np.random.default_rng(5)
    a1, a2 = np.triu_indices(6, 1)
    shape = (4, len(a1), 10, 4)
    m = np.zeros(shape, complex)
    m[..., 0] = 1.0 + 0.3 * rng.random(shape[:-1])
    m[..., 3] = 0.8
    w = 7.0 * rng.uniform(0.5, 1.0, shape)                # variance 1 / (w / 7) per component
    scale = 1.2 * np.exp(0.1j)
    rs = []
    for _ in range(200):
        noise = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) / np.sqrt(w / 7.0)
        b = CellBatch(vis=scale * m + noise, model=m, weight=w, ant1=a1, ant2=a2, freq=np.ones((4, 10)),
                      n_ant=6)
        r, sig = leakage.parallel_hand_scale(b)
        rs.append(r)
    rs = np.array(rs)
    assert abs(rs.mean() - scale) < 4 * rs.std() / np.sqrt(len(rs))
    emp = np.sqrt(np.var(rs.real))                        # per component
    assert 0.85 < sig / emp < 1.15
    w0 = w.copy()
    w0[..., [0, 3]] = 0
    assert np.isnan(leakage.parallel_hand_scale(CellBatch(vis=m, model=m, weight=w0, ant1=a1, ant2=a2,
                                                          freq=np.ones((4, 10)), n_ant=6))[0])


@pytest.mark.casa
@pytest.mark.parametrize("feed", ["circular", "linear"])
def test_casa_df_is_scaled_too(tmp_path, feed):
    """CASA 6 polcal Df on the same data (R = 1.05) returns the same scaled leakage: the least-squares
    scale of its D and of alakazam's against the truth are both R within 0.02 (measured: CASA 1.042,
    alakazam 1.044, both feeds), and the two solutions are within 0.006 of each other (measured 0.0037;
    at R = 1 CASA's is 0.0045 off the truth, alakazam's 0.0022)."""
    from casacore.tables import table as tb

    r = 1.05
    ms, truth, _ = _ms(tmp_path, feed, r)
    out = str(tmp_path / "c.Df")
    run_casa(f"""
        from casatasks import polcal
        polcal(vis={ms!r}, caltable={out!r}, field='3C147', poltype='Df', solint='inf', combine='scan',
               refant='C00', minblperant=3)
        """, tmp_path)
    with tb(out, ack=False) as t:
        a1, par = t.getcol("ANTENNA1"), t.getcol("CPARAM")[:, 0, :]
    casa = np.zeros_like(truth.leakage)
    casa[a1] = par
    ours = _solve(ms, str(tmp_path / "d.h5"))
    t = truth.leakage.ravel()
    for d in (casa, ours):
        s = np.vdot(t, d.ravel()) / np.vdot(t, t)
        print(f"{feed}: scale {abs(s):.4f}")
        assert abs(s - r) < 0.02, s
    print(f"{feed}: max |casa - ours| {np.abs(casa - ours).max():.4f}")
    assert np.abs(casa - ours).max() < 0.006


def test_misfit_error_on_the_cluster(tmp_path):
    """The same error with workers=1 (dask.distributed): raised as in process, with its message -- the
    unit returns it instead of failing (no retry, no worker traceback)."""
    pytest.importorskip("distributed")
    ms, _, _ = _ms(tmp_path, "circular", 2.5)
    cfg = solve_config_from_dict(dict(ms=ms, output=str(tmp_path / "d.h5"), ref_ant="C00", apply_parang=True,
                                      jones=["D"], field=["3C147"], time_interval=["inf"],
                                      freq_interval=["full"], quiet=True, workers=1))
    with pytest.raises(AlakazamError, match=r"D0 \(D\) on field\(s\) \['3C147'\].* 2\.5 x the model"):
        run_solve(cfg)


def test_misfit_warning_on_the_cluster_reaches_the_client(tmp_path, caplog):
    """With workers=1 the R = 1.3 warning is logged by the client (the run's log and format), once, and
    not printed by the worker process (it was, on the worker's stderr, outside the run's log)."""
    pytest.importorskip("distributed")
    ms, truth, _ = _ms(tmp_path, "circular", 1.3)
    cfg = solve_config_from_dict(dict(ms=ms, output=str(tmp_path / "d.h5"), ref_ant="C00", apply_parang=True,
                                      jones=["D"], field=["3C147"], time_interval=["inf"],
                                      freq_interval=["full"], quiet=True, workers=1))
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        run_solve(cfg)
    msgs = [r for r in caplog.records if "the parallel hands (with" in r.getMessage()]
    assert len(msgs) == 1 and "1.3 x the model" in msgs[0].getMessage()
    assert msgs[0].name.startswith("alakazam.") and msgs[0].process == os.getpid()     # the client's
    (s,) = hdf5.read_term(str(tmp_path / "d.h5"), "D0")
    j = s.jones[:, 0, 0]
    assert np.abs(np.stack([j[:, 0, 1], j[:, 1, 0]], -1) - 1.3 * truth.leakage).max() < 0.01
