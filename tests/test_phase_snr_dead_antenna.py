"""The phase-only SNR of small arrays per integration (solvers/quality.phase_only_snr; review 57d F2).

SNR = S / sqrt(f), f the noise's scale against the weights' from the phase-only fit.  With one sample per
baseline a cell of three antennas has one DOF per hand (the closure phase), so a cell's own f is a chi2
of 2 DOF / 2 and S / sqrt(f) has a Student-t's tail: a dead antenna (unflagged, its data noise) whose
noise closed within a few degrees got f ~ 0.005 and SNR 17-32, kept by minsnr 3 in 10% of integrations,
whatever its noise against its weights (here 1% of them), and a live antenna's SNR ranged over 0.7-4.5 x
the truth's.  f is now the cell's shrunk towards the batch's pooled scale (PHASE_POOL_DOF): the dead
antenna's SNR is Rayleigh-like (median ~1, every integration flagged), a live one's within ~20% of
sqrt(sum w |V|^2) of the noise-free data, and where cells have many DOF nothing moves.  A per-antenna f
(the review's proposal) does not help here: the dead antenna's own residuals are the same closure.  K's
cells (many channels) have many DOF: checked flagged as before."""

import os
import shutil

import numpy as np
from casacore.tables import table

from alakazam.sim.cells import make_batch
from alakazam.solvers import SolveOptions, quality, solve


def _kill(b, ants, scale, seed):
    """In place: the baselines of ``ants`` hold complex noise of ``scale`` per real part only."""
    rng = np.random.default_rng(seed)
    sel = np.isin(b.ant1, ants) | np.isin(b.ant2, ants)
    sh = b.vis[:, sel].shape
    b.vis[:, sel] = scale * (rng.normal(size=sh) + 1j * rng.normal(size=sh))


def _truth_snr(b, tr, dead=()):
    """(n_cell, n_ant) sqrt(sum w |V|^2) of the noise-free pp data over each antenna's live baselines."""
    jpp = tr["J"][..., 0, 0]
    vt = (jpp[:, b.ant1] * np.conj(jpp[:, b.ant2]))[..., None] * b.model[..., [0]]
    p = (b.weight[..., [0]] * np.abs(vt) ** 2).sum(axis=(2, 3))
    p[:, np.isin(b.ant1, dead) | np.isin(b.ant2, dead)] = 0.0
    out = np.zeros((b.n_cell, b.n_ant))
    for a in (b.ant1, b.ant2):
        np.add.at(out, (slice(None), a), p)
    return np.sqrt(out)


def test_dead_antenna_of_three_is_flagged_in_every_integration():
    """Three antennas, one sample per baseline (G 'p' per integration, the band averaged), antenna 2's
    data noise at 1% of its weights' sigma, 300 cells: every one of its hands below minsnr 3 and
    flagged, median SNR ~1 (measured 0.84, at most 2.5; Rayleigh(1): 1.18).  Before: 8.3% above 3 (up to
    19)."""
    noise = 1.0
    b, _ = make_batch("G", n_cell=300, n_ant=3, n_samp=1, noise=noise, seed=1, phase_only=True)
    b.weight[:] = 2.0 / noise ** 2                  # sigma per real part noise / sqrt(2): w = 1 / sigma^2
    _kill(b, [2], 0.01 * noise / np.sqrt(2), seed=101)
    r = solve("G", b, opts=SolveOptions(phase_only=True, min_snr=3.0))
    snr = r.extra["snr"][:, 2]                                                  # (n_cell, 2)
    assert snr.max() < 3.0, (np.sort(snr.ravel())[-5:], np.mean(snr > 3))
    assert r.extra["pol_flags"][:, 2].all()
    assert 0.5 < np.median(snr) < 1.5, np.median(snr)
    # the live antennas: kept
    assert not r.extra["pol_flags"][:, :2].any()


def test_two_dead_antennas_of_four():
    """Four antennas, 1 and 2 dead (noise at the weights' sigma), one sample per baseline, 400 cells:
    fewer than 0.5% of the dead hands above minsnr 3 (measured 0.06%; before, 1.75%, up to 6.3)."""
    noise = 1.0
    b, _ = make_batch("G", n_cell=400, n_ant=4, n_samp=1, noise=noise, seed=1, phase_only=True)
    b.weight[:] = 2.0 / noise ** 2
    _kill(b, [1, 2], noise / np.sqrt(2), seed=101)
    r = solve("G", b, opts=SolveOptions(phase_only=True, min_snr=0.0))
    snr = r.extra["snr"][:, [1, 2]]
    assert np.mean(snr > 3.0) < 0.005, np.mean(snr > 3.0)


def test_live_snr_of_three_antennas_is_the_truths():
    """Three live antennas, one sample per baseline, per-sample SNR ~7 (300 cells): the SNR over
    sqrt(sum w |V|^2) of the noise-free data has median within 10% of 1 and its 5-95% range within
    0.8-1.25 (measured 1.02, 0.83-1.22).  Before, each cell's own f (2 DOF): median 1.26, range
    0.68-4.5."""
    noise = 2.0
    b, tr = make_batch("G", n_cell=300, n_ant=3, n_samp=1, noise=noise, seed=2, phase_only=True)
    b.weight[:] = 2.0 / noise ** 2
    r = solve("G", b, opts=SolveOptions(phase_only=True, min_snr=0.0))
    ratio = (r.extra["snr"][..., 0] / _truth_snr(b, tr)).ravel()
    lo, med, hi = np.percentile(ratio, [5, 50, 95])
    assert abs(med - 1.0) < 0.10, med
    assert 0.8 < lo and hi < 1.25, (lo, hi)


def test_many_dof_cells_are_their_own(monkeypatch):
    """Twelve antennas, four samples per baseline (~100 DOF per cell): the pooled scale moves no SNR by
    more than 1% (the weights scaled per cell by up to 1.5: each cell keeps its own f, as CASA's k2)."""
    noise = 1.0
    b, _ = make_batch("G", n_cell=40, n_ant=12, n_samp=4, noise=noise, seed=3, phase_only=True)
    w = 2.0 / noise ** 2 * np.linspace(1.0, 1.5, b.n_cell)
    b.weight[:] = w[:, None, None, None]
    r = solve("G", b, opts=SolveOptions(phase_only=True, min_snr=0.0))
    monkeypatch.setattr(quality, "PHASE_POOL_DOF", 0.0)      # each cell's own f alone (the definition before)
    r0 = solve("G", b, opts=SolveOptions(phase_only=True, min_snr=0.0))
    ratio = r.extra["snr"] / r0.extra["snr"]
    assert np.all(np.abs(ratio - 1.0) < 0.01), (ratio.min(), ratio.max())


def test_k_of_three_antennas_dead_flagged():
    """K per integration on 32 channels, three antennas, antenna 2 dead at 1% of its weights' sigma:
    every hand of it flagged (its cells have 90 DOF per hand: the pool changes little there)."""
    noise = 1.0
    freq = 1.3e9 + 2e6 * np.arange(32)
    b, _ = make_batch("K", n_cell=60, n_ant=3, n_samp=32, freq=freq, noise=noise, seed=4)
    b.weight[:] = 2.0 / noise ** 2
    _kill(b, [2], 0.01 * noise / np.sqrt(2), seed=7)
    r = solve("K", b, opts=SolveOptions(min_snr=3.0))
    assert r.extra["snr"][:, 2].max() < 3.0
    assert r.extra["pol_flags"][:, 2].all()
    assert not r.extra["pol_flags"][:, :2].any()


def test_three_antenna_ms_dead_antenna_flagged(tmp_path):
    """End to end (akcal G 'p' per integration, rfi_threshold=0, minsnr 3 as CASA's default): a 3-antenna
    MS whose antenna C02 holds noise at 1% of its weights' sigma, unflagged -- every C02 solution
    flagged, C00 and C01 kept.  Before, integrations whose noise closed within a few degrees kept C02
    (review 57d: 1 of 10, SNR 17 and 32)."""
    from alakazam.caltasks import akcal
    from alakazam.io import hdf5
    from alakazam.sim import simulate_ms

    base = str(tmp_path / "base.ms")
    simulate_ms(base, n_ant=3, n_ant_extra=0, n_chan=(8,), feed="circular", duration_h=0.5, int_s=20.0,
                dead_ant=False, flag_rows=0.0, seed=3)
    ms = str(tmp_path / "dead.ms")
    shutil.copytree(base, ms)
    rng = np.random.default_rng(5)
    with table(ms, readonly=False, ack=False) as t:
        names = list(table(os.path.join(ms, "ANTENNA"), ack=False).getcol("NAME"))
        dead = names.index("C02")
        rows = (t.getcol("ANTENNA1") == dead) | (t.getcol("ANTENNA2") == dead)
        d = t.getcol("DATA")
        sigma = 1.0 / np.sqrt(t.getcol("WEIGHT"))[rows][:, None, :]
        sh = d[rows].shape
        d[rows] = 0.01 * sigma * (rng.normal(size=sh) + 1j * rng.normal(size=sh))
        t.putcol("DATA", d)
    cal = str(tmp_path / "g.h5")
    akcal(vis=ms, caltable=cal, field="3C286", refant="C00", jones=["G"], solint=["int"], calmode=["p"],
          parang=True, rfi_threshold=0.0)
    sets = hdf5.read_term(cal, "G0")
    pf = np.concatenate([s.pol_flags for s in sets], axis=2)        # (n_ant, n_f, n_t, 2)
    snr = np.concatenate([s.extra["snr"] for s in sets], axis=2)
    n_t = pf.shape[2]
    assert n_t >= 20
    assert pf[dead].all(), snr[dead][~pf[dead]]
    assert snr[dead].max() < 3.0, snr[dead].max()
    live = [a for a in range(pf.shape[0]) if a != dead]
    assert not pf[live].any()
